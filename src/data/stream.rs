//! Training from a labelled text file larger than memory: [`Streamed`] reads it line by line
//! every epoch and shuffles through a bounded buffer, so memory is `O(buffer_rows +
//! batch_size)` whatever the file's size (Criteo's 45M lines, 11 GB, do not fit beside a
//! model on most machines; a full in-memory shuffle would need them to).
//!
//! The shuffle is the buffered one of `tf.data.Dataset.shuffle` and torchdata's
//! `Shuffler`: the first `buffer_rows` samples fill a buffer; from then on each new sample
//! takes the place of a uniformly chosen buffered one, which is emitted; at the end of the file
//! the buffer is emitted in random order. A sample can therefore only move up to about
//! `buffer_rows` places earlier, and arbitrarily later: choose a buffer much larger than any run
//! of similar lines (Criteo's lines are in time order), or pre-shuffle the file once. The
//! random stream is seeded from `(seed, epoch)`: an epoch's order is reproducible and differs
//! from the other epochs'.
//!
//! A [`LineParser`] turns one line into one sample and its label: the Criteo preprocessor
//! ([`crate::data::criteo::CriteoPreprocessor`]) and [`LabelledTsv`] (a label, then the
//! columns of the scoring TSV, [`crate::data::tsv`]) implement it.

use super::error::{At, DataError};
use crate::batch::{BatchBuf, Value};
use crate::rng::Rng;
use crate::spec::ModelSpec;
use crate::train::{BatchSink, TrainData, TrainError};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// The longest line read by default (1 MiB; a Criteo line is under 1 KiB). A longer line is a
/// [`DataError::LineTooLong`]: it would otherwise be held whole, unbounded, in memory.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

/// Turns one line of a text file into one labelled sample.
pub trait LineParser {
    /// An empty batch with the columns [`LineParser::parse`] fills.
    fn new_batch(&self) -> BatchBuf;

    /// Whether `line` (1-based `line_no`) holds a sample; `false` skips it silently (a header,
    /// a blank line). The default skips lines that are empty or only whitespace.
    fn accepts(&self, line: &str, line_no: usize) -> bool {
        let _ = line_no;
        !line.trim().is_empty()
    }

    /// Parses `line` (without its `\n`; it may end in `\r`) and appends exactly one row to
    /// `batch` (made by [`LineParser::new_batch`]) and one label to `labels`, or appends
    /// nothing and returns an error naming the line and field (the file may be left empty:
    /// the caller names it with [`DataError::in_file`]).
    fn parse(
        &self,
        line: &str,
        line_no: usize,
        batch: &mut BatchBuf,
        labels: &mut Vec<f32>,
    ) -> Result<(), DataError>;
}

/// Reads lines one at a time into one reused buffer, each at most `max` bytes, numbering them
/// from 1. Shared by the streaming source and the fitting passes.
pub(crate) struct LineReader<R> {
    reader: R,
    name: String,
    max: usize,
    buf: Vec<u8>,
    line_no: usize,
}

impl<R: BufRead> LineReader<R> {
    pub(crate) fn new(reader: R, name: &str, max: usize) -> Self {
        LineReader {
            reader,
            name: name.to_string(),
            max,
            buf: Vec::new(),
            line_no: 0,
        }
    }

    /// The next line's number and text (without `\n`), `None` at the end of the input. The
    /// outer error is an I/O failure (reading cannot go on); the inner one a bad line (too long,
    /// not UTF-8), already consumed, so reading can go on past it.
    #[allow(clippy::type_complexity)]
    pub(crate) fn next_line(
        &mut self,
    ) -> Result<Option<(usize, Result<&str, DataError>)>, DataError> {
        self.buf.clear();
        let (mut any, mut too_long) = (false, false);
        loop {
            let available = match self.reader.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(DataError::Io {
                        path: PathBuf::from(&self.name),
                        source,
                    });
                }
            };
            if available.is_empty() {
                break;
            }
            any = true;
            let (chunk, used, done) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (&available[..i], i + 1, true),
                None => (available, available.len(), false),
            };
            if !too_long {
                if self.buf.len() + chunk.len() > self.max {
                    too_long = true;
                    self.buf.clear();
                } else {
                    self.buf.extend_from_slice(chunk);
                }
            }
            self.reader.consume(used);
            if done {
                break;
            }
        }
        if !any {
            return Ok(None);
        }
        self.line_no += 1;
        let line = self.line_no;
        if too_long {
            let e = DataError::LineTooLong {
                file: self.name.clone(),
                line,
                limit: self.max,
            };
            return Ok(Some((line, Err(e))));
        }
        let text = std::str::from_utf8(&self.buf).map_err(|e| {
            let at = At {
                file: &self.name,
                line,
            };
            let bad = &self.buf[e.valid_up_to()..];
            at.err(
                1,
                "(line)",
                format!("not UTF-8 at byte {}", e.valid_up_to() + 1),
                bad,
            )
        });
        Ok(Some((line, text)))
    }
}

/// A label, a tab, then the columns of the scoring TSV ([`crate::data::tsv::push_line`]) for
/// a spec: `1\t17\t0.5\t3,4`. The label is any finite number (the trainer checks its range
/// for the loss).
#[derive(Debug, Clone)]
pub struct LabelledTsv {
    spec: ModelSpec,
}

impl LabelledTsv {
    /// A parser for samples of `spec`.
    pub fn new(spec: ModelSpec) -> Self {
        LabelledTsv { spec }
    }
}

impl LineParser for LabelledTsv {
    fn new_batch(&self) -> BatchBuf {
        BatchBuf::new(&self.spec)
    }

    fn parse(
        &self,
        line: &str,
        line_no: usize,
        batch: &mut BatchBuf,
        labels: &mut Vec<f32>,
    ) -> Result<(), DataError> {
        let at = At {
            file: "",
            line: line_no,
        };
        let line = line.strip_suffix('\r').unwrap_or(line);
        let (label_text, rest) = line.split_once('\t').unwrap_or((line, ""));
        let label = label_text
            .parse::<f32>()
            .ok()
            .filter(|y| y.is_finite())
            .ok_or_else(|| at.err(1, "label", "not a finite number", label_text.as_bytes()))?;
        if !line.contains('\t') {
            let problem = format!(
                "no tab after the label ({} fields expected)",
                self.spec.fields.len()
            );
            return Err(at.err(1, "label", problem, line.as_bytes()));
        }
        let mut row: Vec<Value> = Vec::with_capacity(self.spec.fields.len());
        super::tsv::push_line(&self.spec, rest, line_no, batch, &mut row).map_err(|e| {
            // Label is column 1, so field i is column i + 2.
            let (column, text) = match self.spec.fields.iter().position(|f| f.name == e.field) {
                Some(i) => (i + 2, rest.split('\t').nth(i).unwrap_or("")),
                None => (2, rest),
            };
            at.err(column, e.field, e.problem, text.as_bytes())
        })?;
        labels.push(label);
        Ok(())
    }
}

/// What the last epoch of a [`Streamed`] source read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Lines read.
    pub lines: usize,
    /// Samples emitted.
    pub samples: usize,
    /// Lines skipped because they did not parse (only with `skip_bad_lines`).
    pub bad_lines: usize,
    /// The first such line's error message.
    pub first_bad: Option<String>,
    /// The most rows the shuffle storage held at once (at most `2 × buffer_rows`: the live
    /// buffer plus emitted rows not yet compacted away). The batch being filled holds at most
    /// `batch_size` more.
    pub peak_rows: usize,
}

/// A [`TrainData`] source streaming a labelled text file through a shuffle buffer (see the
/// module documentation). Every epoch re-opens and re-reads the file.
#[derive(Debug, Clone)]
pub struct Streamed<P> {
    path: PathBuf,
    parser: P,
    buffer_rows: usize,
    seed: u64,
    skip_bad_lines: bool,
    max_line_bytes: usize,
    stats: StreamStats,
}

impl<P: LineParser> Streamed<P> {
    /// A source reading `path` with `parser`, shuffling through `buffer_rows` samples (0: file
    /// order) with a stream seeded by `seed` and the epoch. Fails if the file cannot be opened.
    pub fn new(
        path: impl AsRef<Path>,
        parser: P,
        buffer_rows: usize,
        seed: u64,
    ) -> Result<Self, DataError> {
        let path = path.as_ref().to_path_buf();
        File::open(&path).map_err(|source| DataError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(Streamed {
            path,
            parser,
            buffer_rows,
            seed,
            skip_bad_lines: false,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            stats: StreamStats::default(),
        })
    }

    /// With `true`, lines that do not parse (or are too long, or not UTF-8) are counted in
    /// [`StreamStats::bad_lines`] and skipped instead of ending the epoch with an error.
    pub fn skip_bad_lines(mut self, skip: bool) -> Self {
        self.skip_bad_lines = skip;
        self
    }

    /// The longest line accepted, in bytes (default [`DEFAULT_MAX_LINE_BYTES`]).
    pub fn max_line_bytes(mut self, max: usize) -> Self {
        self.max_line_bytes = max;
        self
    }

    /// The parser.
    pub fn parser(&self) -> &P {
        &self.parser
    }

    /// What the last (or current) epoch read.
    pub fn stats(&self) -> &StreamStats {
        &self.stats
    }

    /// One epoch: every sample of the file, shuffled, in batches of `batch_size` rows (the
    /// last one may be short).
    fn epoch(
        &mut self,
        epoch: usize,
        batch_size: usize,
        f: &mut BatchSink<'_>,
    ) -> Result<(), TrainError> {
        if batch_size == 0 {
            return Err(TrainError::Config("batch_size must be at least 1".into()));
        }
        self.stats = StreamStats::default();
        let name = self.path.display().to_string();
        let file = File::open(&self.path).map_err(|source| DataError::Io {
            path: self.path.clone(),
            source,
        })?;
        let mut lines = LineReader::new(
            BufReader::with_capacity(1 << 16, file),
            &name,
            self.max_line_bytes,
        );
        let mut rng = Rng::for_epoch(self.seed, epoch);
        let mut buffer = Shuffle::new(&self.parser, self.buffer_rows);
        let (mut one, mut one_label) = (self.parser.new_batch(), Vec::with_capacity(1));
        let mut out = Out {
            batch: self.parser.new_batch(),
            labels: Vec::with_capacity(batch_size),
            size: batch_size,
        };
        while let Some((line_no, line)) = lines.next_line()? {
            self.stats.lines += 1;
            let parsed = line.and_then(|line| {
                if !self.parser.accepts(line, line_no) {
                    return Ok(false);
                }
                one.clear();
                one_label.clear();
                let result = self.parser.parse(line, line_no, &mut one, &mut one_label);
                let expected = if result.is_ok() { 1 } else { 0 };
                if (one.len(), one_label.len()) != (expected, expected) {
                    return Err(DataError::Parser {
                        file: name.clone(),
                        line: line_no,
                        rows: one.len(),
                        labels: one_label.len(),
                    });
                }
                result.map(|()| true).map_err(|e| e.in_file(&name))
            });
            match parsed {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e @ DataError::Parser { .. }) => return Err(e.into()),
                Err(e) if self.skip_bad_lines => {
                    self.stats.bad_lines += 1;
                    self.stats.first_bad.get_or_insert_with(|| e.to_string());
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            self.stats.samples += 1;
            match buffer.push(&one, one_label[0], &mut rng)? {
                Some(row) => out.push(&buffer.store, row, buffer.labels[row], f)?,
                None if self.buffer_rows == 0 => out.push(&one, 0, one_label[0], f)?,
                None => {}
            }
            buffer.compact_if_needed()?;
            self.stats.peak_rows = self.stats.peak_rows.max(buffer.peak);
        }
        // End of file: the buffer in random order (Fisher–Yates over its slots).
        for i in (1..buffer.slots.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            buffer.slots.swap(i, j);
        }
        for &row in &buffer.slots {
            out.push(&buffer.store, row, buffer.labels[row], f)?;
        }
        if !out.labels.is_empty() {
            f(&out.batch, &out.labels)?;
        }
        Ok(())
    }
}

/// Reads every sample of `path` in file order into memory (a validation or test set).
pub fn read_all<P: LineParser>(
    path: impl AsRef<Path>,
    parser: P,
) -> Result<(BatchBuf, Vec<f32>), TrainError> {
    read_all_skipping(path, parser, false)
}

/// [`read_all`], skipping the lines that do not parse when `skip_bad_lines` (as
/// [`Streamed::skip_bad_lines`]): the held-out side of a file trained with skipping.
pub fn read_all_skipping<P: LineParser>(
    path: impl AsRef<Path>,
    parser: P,
    skip_bad_lines: bool,
) -> Result<(BatchBuf, Vec<f32>), TrainError> {
    let mut all = parser.new_batch();
    let mut labels = Vec::new();
    let mut source = Streamed::new(path, parser, 0, 0)?.skip_bad_lines(skip_bad_lines);
    source.for_each_batch(1, 4096, &mut |batch, y| {
        for r in 0..y.len() {
            all.push_from(batch, r).map_err(DataError::from)?;
        }
        labels.extend_from_slice(y);
        Ok(())
    })?;
    Ok((all, labels))
}

impl<P: LineParser> TrainData for Streamed<P> {
    fn for_each_batch(
        &mut self,
        epoch: usize,
        batch_size: usize,
        f: &mut BatchSink<'_>,
    ) -> Result<(), TrainError> {
        self.epoch(epoch, batch_size, f)
    }
}

/// The batch being filled.
struct Out {
    batch: BatchBuf,
    labels: Vec<f32>,
    size: usize,
}

impl Out {
    /// Appends `row` of `source`; hands the batch to `f` when it is full.
    fn push(
        &mut self,
        source: &BatchBuf,
        row: usize,
        label: f32,
        f: &mut BatchSink<'_>,
    ) -> Result<(), TrainError> {
        self.batch.push_from(source, row).map_err(DataError::from)?;
        self.labels.push(label);
        if self.labels.len() >= self.size {
            f(&self.batch, &self.labels)?;
            self.batch.clear();
            self.labels.clear();
        }
        Ok(())
    }
}

/// The shuffle buffer. A [`BatchBuf`] cannot overwrite a row in place (multi-hot rows vary in
/// length), so new rows are appended to `store` and `slots` says which stored rows are live;
/// when `store` reaches twice the buffer, the live rows are copied into `spare` and the two
/// swap (amortised O(1) a row, memory at most 2 × `cap` rows in each).
struct Shuffle {
    store: BatchBuf,
    labels: Vec<f32>,
    spare: BatchBuf,
    spare_labels: Vec<f32>,
    /// Live rows of `store`, at most `cap`.
    slots: Vec<usize>,
    cap: usize,
    /// Largest `store.len()` seen.
    peak: usize,
}

impl Shuffle {
    fn new(parser: &impl LineParser, cap: usize) -> Self {
        Shuffle {
            store: parser.new_batch(),
            labels: Vec::new(),
            spare: parser.new_batch(),
            spare_labels: Vec::new(),
            slots: Vec::with_capacity(cap),
            cap,
            peak: 0,
        }
    }

    /// Adds row 0 of `one`; returns the stored row to emit, if one was displaced (never with
    /// `cap == 0`: the caller emits `one` itself).
    fn push(
        &mut self,
        one: &BatchBuf,
        label: f32,
        rng: &mut Rng,
    ) -> Result<Option<usize>, DataError> {
        if self.cap == 0 {
            return Ok(None);
        }
        self.store.push_from(one, 0)?;
        self.labels.push(label);
        self.peak = self.peak.max(self.store.len());
        let new = self.store.len() - 1;
        if self.slots.len() < self.cap {
            self.slots.push(new);
            return Ok(None);
        }
        let j = rng.below(self.cap as u64) as usize;
        let old = std::mem::replace(&mut self.slots[j], new);
        Ok(Some(old))
    }

    /// Drops the emitted rows once they fill half of `store`.
    fn compact_if_needed(&mut self) -> Result<(), DataError> {
        if self.store.len() < 2 * self.cap.max(1) {
            return Ok(());
        }
        self.spare.clear();
        self.spare_labels.clear();
        for slot in &mut self.slots {
            self.spare.push_from(&self.store, *slot)?;
            self.spare_labels.push(self.labels[*slot]);
            *slot = self.spare.len() - 1;
        }
        std::mem::swap(&mut self.store, &mut self.spare);
        std::mem::swap(&mut self.labels, &mut self.spare_labels);
        Ok(())
    }
}

#[cfg(test)]
mod tests;

//! The Criteo display-advertising data (Kaggle 2014, `dac`), preprocessed as the published
//! benchmarks do, so that numbers trained here can be set beside theirs (DeepFM paper code,
//! DeepCTR, FuxiCTR / BARS).
//!
//! ## Format
//! One impression a line: `label`, 13 integer fields `I1..I13`, 26 categorical fields
//! `C1..C26` (32-bit hashes written as 8 hex digits), tab-separated as in Kaggle's `train.txt`,
//! or comma-separated with a header line `label,I1,…,C26` as in DeepCTR's `criteo_sample.txt`.
//! Any value may be empty (missing), and some copies of the data strip trailing empty columns,
//! so a line with fewer than 40 columns is read as if the missing ones were empty. A line with
//! more than 40 columns is an error. CSV quoting is not supported (Criteo's values never need
//! it): a `"` is an ordinary character. Integer values are read as numbers (`260.0` and `-1`
//! occur), must be finite, and are transformed by [`IntegerMode`]:
//!
//! - [`IntegerMode::LogBucket`]: `v > 2 ? floor(ln(v)²) : v` (truncated toward zero), the
//!   transform of the Kaggle winners and of FuxiCTR's Criteo pipeline; the bucket becomes a
//!   categorical token and a missing value its own token ([`MISSING`]). A few hundred buckets
//!   cover every 32-bit count. As in the reference, values in `(2, e)` share bucket 0 with 0.
//! - [`IntegerMode::Log1p`]: a numeric field `ln(1 + max(v, 0))`, missing as 0 (DeepCTR's
//!   examples scale to `[0, 1]` instead; the log keeps Criteo's heavy-tailed counts bounded
//!   without a first pass).
//!
//! Categorical tokens (and log buckets) become ids through [`CategoricalMode`]: a counted
//! [`Vocab`] with a minimum count (FuxiCTR's default 10; rarer tokens, and tokens never seen
//! while fitting, share id 0), or hashing into a fixed number of buckets ([`hash_token`],
//! seeded with the field's index 0..39). A missing value is the token [`MISSING`] (the empty
//! string), which no real value can equal, so "missing" learns its own embedding when it is
//! frequent enough.
//!
//! ## Use
//! [`CriteoPreprocessor::fit`] reads the training file once to count tokens (memory: one
//! entry per distinct token, large on the full 45M-line file; hashing needs no pass at all),
//! [`CriteoPreprocessor::spec`] gives the model's 39 fields, and
//! [`CriteoPreprocessor::parse_line`] (or [`crate::data::stream::Streamed`], through
//! [`LineParser`]) turns lines into samples. The preprocessor serializes (serde) to be saved
//! beside the model: scoring new data must map tokens exactly as training did.

use super::error::{At, DataError};
use super::stream::{DEFAULT_MAX_LINE_BYTES, LineParser, LineReader};
use super::vocab::{Vocab, VocabBuilder, hash_token};
use crate::batch::{BatchBuf, Value};
use crate::spec::{Field, FieldKind, ModelSpec, Output};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

/// Integer fields per line (`I1..I13`).
pub const INTEGER_FIELDS: usize = 13;
/// Categorical fields per line (`C1..C26`).
pub const CATEGORICAL_FIELDS: usize = 26;
/// Fields per line, label excluded.
pub const FIELDS: usize = INTEGER_FIELDS + CATEGORICAL_FIELDS;
/// The token standing for a missing value (the empty string: no real value is empty).
pub const MISSING: &str = "";

/// What becomes of the 13 integer fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntegerMode {
    /// Categorical: the token of `v > 2 ? floor(ln(v)²) : trunc(v)`, missing as [`MISSING`];
    /// ids through the [`CategoricalMode`] like the `C` fields.
    LogBucket,
    /// Numeric: `ln(1 + max(v, 0))`, missing as 0.
    Log1p,
}

/// How categorical tokens (and log buckets) become ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CategoricalMode {
    /// A [`Vocab`] per field counted by [`CriteoPreprocessor::fit`], keeping tokens seen at
    /// least [`CriteoConfig::min_count`] times; vocab = kept tokens + 1 (id 0 for the rest).
    Vocab,
    /// [`hash_token`] into [`CriteoConfig::buckets`] ids per field; no fitting pass.
    Hash,
}

/// How columns are separated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delimiter {
    /// Per line: tab if the line has one, else comma (Criteo values contain neither).
    Auto,
    /// Tab (Kaggle's `train.txt`).
    Tab,
    /// Comma (DeepCTR's `criteo_sample.txt`).
    Comma,
}

/// Preprocessing settings. The default is FuxiCTR's Criteo setup: log buckets for the
/// integers, vocabularies with a minimum count of 10, delimiter detected per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CriteoConfig {
    /// Integer fields: log buckets (categorical) or `ln(1 + v)` (numeric).
    pub integers: IntegerMode,
    /// Categorical fields: counted vocabulary or hashing.
    pub categoricals: CategoricalMode,
    /// [`CategoricalMode::Vocab`]: tokens seen fewer times while fitting map to id 0
    /// (0 and 1 keep every token).
    pub min_count: u64,
    /// [`CategoricalMode::Hash`]: ids per field (at least 1).
    pub buckets: u64,
    /// Column separator.
    pub delimiter: Delimiter,
}

impl Default for CriteoConfig {
    fn default() -> Self {
        CriteoConfig {
            integers: IntegerMode::LogBucket,
            categoricals: CategoricalMode::Vocab,
            min_count: 10,
            buckets: 100_000,
            delimiter: Delimiter::Auto,
        }
    }
}

impl CriteoConfig {
    /// Checks the settings: hashing needs `buckets >= 1`.
    pub fn validate(&self) -> Result<(), DataError> {
        if self.categoricals == CategoricalMode::Hash && self.buckets == 0 {
            return Err(DataError::Config(
                "criteo: hashing needs at least 1 bucket per field".into(),
            ));
        }
        Ok(())
    }

    /// Whether field `i` (0..39: `I1..I13`, then `C1..C26`) is categorical.
    fn is_categorical(&self, i: usize) -> bool {
        i >= INTEGER_FIELDS || self.integers == IntegerMode::LogBucket
    }
}

/// The name of field `i` (0..39): `I1..I13`, then `C1..C26`.
pub fn field_name(i: usize) -> String {
    if i < INTEGER_FIELDS {
        format!("I{}", i + 1)
    } else {
        format!("C{}", i - INTEGER_FIELDS + 1)
    }
}

/// The log bucket of an integer value: `v > 2 ? floor(ln(v)²) : trunc(v)` (saturating at the
/// ends of `i64`; `v` is finite).
pub fn log_bucket(v: f64) -> i64 {
    if v > 2.0 {
        v.ln().powi(2).floor() as i64
    } else {
        v.trunc() as i64
    }
}

/// The numeric value of an integer field: `ln(1 + max(v, 0))`.
pub fn log1p_value(v: f64) -> f32 {
    v.max(0.0).ln_1p() as f32
}

/// Turns Criteo lines into samples: the settings and, in [`CategoricalMode::Vocab`], one
/// fitted [`Vocab`] per categorical field. Serializes as
/// `{"config": {...}, "vocabs": [null | {"tokens": [...]}, ...]}` (39 entries in vocabulary
/// mode, `null` for numeric fields; none in hashing mode); reading checks that the two agree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawPreprocessor", into = "RawPreprocessor")]
pub struct CriteoPreprocessor {
    config: CriteoConfig,
    /// One per field in vocabulary mode (`None` for numeric fields), empty when hashing.
    vocabs: Vec<Option<Vocab>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPreprocessor {
    config: CriteoConfig,
    vocabs: Vec<Option<Vocab>>,
}

impl TryFrom<RawPreprocessor> for CriteoPreprocessor {
    type Error = String;
    fn try_from(raw: RawPreprocessor) -> Result<Self, String> {
        raw.config.validate().map_err(|e| e.to_string())?;
        let c = raw.config;
        let ok = match c.categoricals {
            CategoricalMode::Hash => raw.vocabs.is_empty(),
            CategoricalMode::Vocab => {
                raw.vocabs.len() == FIELDS
                    && (raw.vocabs.iter().enumerate())
                        .all(|(i, v)| v.is_some() == c.is_categorical(i))
            }
        };
        if !ok {
            return Err(
                "criteo preprocessor: the vocabularies do not match the configuration (39 in \
                 vocabulary mode, null exactly for numeric fields; none when hashing)"
                    .into(),
            );
        }
        Ok(CriteoPreprocessor {
            config: raw.config,
            vocabs: raw.vocabs,
        })
    }
}

impl From<CriteoPreprocessor> for RawPreprocessor {
    fn from(p: CriteoPreprocessor) -> Self {
        RawPreprocessor {
            config: p.config,
            vocabs: p.vocabs,
        }
    }
}

/// One line cut into its label and 39 field texts (missing trailing columns empty).
struct Split<'a> {
    label: f32,
    fields: [&'a str; FIELDS],
}

impl CriteoPreprocessor {
    /// A preprocessor that needs no fitting: [`CategoricalMode::Hash`] only (vocabulary mode
    /// is a [`DataError::Config`]: use [`CriteoPreprocessor::fit`]).
    pub fn hashing(config: CriteoConfig) -> Result<Self, DataError> {
        config.validate()?;
        if config.categoricals != CategoricalMode::Hash {
            return Err(DataError::Config(
                "criteo: vocabulary mode needs CriteoPreprocessor::fit on training data".into(),
            ));
        }
        Ok(CriteoPreprocessor {
            config,
            vocabs: Vec::new(),
        })
    }

    /// Counts the tokens of the file at `path` (one pass, streamed) and builds the
    /// vocabularies. Headers and blank lines are skipped; any other line must parse (an error
    /// names file, line and field). In hashing mode nothing needs counting and the file is not
    /// read.
    pub fn fit(path: &Path, config: CriteoConfig) -> Result<Self, DataError> {
        if config.categoricals == CategoricalMode::Hash {
            return Self::hashing(config);
        }
        let file = File::open(path).map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::fit_reader(BufReader::new(file), &path.display().to_string(), config)
    }

    /// [`CriteoPreprocessor::fit`] on any reader; `name` stands for the file in errors.
    pub fn fit_reader<R: BufRead>(
        reader: R,
        name: &str,
        config: CriteoConfig,
    ) -> Result<Self, DataError> {
        config.validate()?;
        if config.categoricals == CategoricalMode::Hash {
            return Self::hashing(config);
        }
        let mut builders: Vec<Option<VocabBuilder>> = (0..FIELDS)
            .map(|i| config.is_categorical(i).then(VocabBuilder::new))
            .collect();
        let this = CriteoPreprocessor {
            config,
            vocabs: Vec::new(),
        };
        let mut lines = LineReader::new(reader, name, DEFAULT_MAX_LINE_BYTES);
        let mut buf = [0u8; 24];
        while let Some((line_no, line)) = lines.next_line()? {
            let line = line?;
            if !this.accepts(line, line_no) {
                continue;
            }
            let at = At {
                file: name,
                line: line_no,
            };
            let split = this.split(line, at)?;
            for (i, (&text, builder)) in split.fields.iter().zip(&mut builders).enumerate() {
                if i < INTEGER_FIELDS {
                    let v = integer(text, i, at)?;
                    if let Some(b) = builder {
                        b.add(bucket_token(v, &mut buf));
                    }
                } else if let Some(b) = builder {
                    b.add(text);
                }
            }
        }
        let min_count = config.min_count;
        Ok(CriteoPreprocessor {
            config,
            vocabs: builders
                .iter()
                .map(|b| b.as_ref().map(|b| b.build(min_count)))
                .collect(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &CriteoConfig {
        &self.config
    }

    /// The vocabulary of field `i` (0..39: `I1..I13`, then `C1..C26`); `None` when hashing,
    /// for a numeric field, or past the end.
    pub fn vocab(&self, i: usize) -> Option<&Vocab> {
        self.vocabs.get(i)?.as_ref()
    }

    /// The 39 fields in file order (`I1..I13`, `C1..C26`) with their kinds and vocabulary
    /// sizes.
    pub fn fields(&self) -> Vec<Field> {
        (0..FIELDS)
            .map(|i| Field {
                name: field_name(i),
                kind: if !self.config.is_categorical(i) {
                    FieldKind::Numeric
                } else {
                    let vocab = match self.vocab(i) {
                        Some(v) => v.len(),
                        None => self.config.buckets,
                    };
                    FieldKind::Categorical { vocab }
                },
                table: None,
            })
            .collect()
    }

    /// A click model for these fields: sigmoid output, `embedding_dim` and `hidden` as given.
    /// Call [`ModelSpec::validate`] (or let the trainer do it) to check the sizes.
    pub fn spec(&self, embedding_dim: usize, hidden: &[usize]) -> ModelSpec {
        ModelSpec {
            mlp: Default::default(),
            table: Default::default(),
            fields: self.fields(),
            embedding_dim,
            hidden: hidden.to_vec(),
            output: Output::Sigmoid,
            clamp: None,
        }
    }

    /// Whether `line` (1-based `line_no`) is the CSV header (`label,I1,…`, or its tab-separated
    /// twin) on the first line.
    pub fn is_header(line: &str, line_no: usize) -> bool {
        line_no == 1 && line.split(['\t', ',']).next() == Some("label")
    }

    /// Parses one line (without its `\n`; a trailing `\r` is ignored) and appends the sample
    /// to `batch` (made for [`CriteoPreprocessor::spec`]'s fields) and its label to `labels`.
    /// On an error nothing is appended; the error's file is empty (see
    /// [`DataError::in_file`]). The label must be a number in `[0, 1]`.
    pub fn parse_line(
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
        let split = self.split(line, at)?;
        let mut row: [Value; FIELDS] = std::array::from_fn(|_| Value::Id(0));
        let mut buf = [0u8; 24];
        for (i, (&text, value)) in split.fields.iter().zip(&mut row).enumerate() {
            *value = if i < INTEGER_FIELDS {
                let v = integer(text, i, at)?;
                match self.config.integers {
                    IntegerMode::Log1p => Value::Num(v.map_or(0.0, log1p_value)),
                    IntegerMode::LogBucket => Value::Id(self.id(i, bucket_token(v, &mut buf))),
                }
            } else {
                Value::Id(self.id(i, text))
            };
        }
        batch.push_row(&row)?;
        labels.push(split.label);
        Ok(())
    }

    /// The id of `token` in categorical field `i`.
    fn id(&self, i: usize, token: &str) -> u64 {
        match self.vocab(i) {
            Some(v) => v.get(token),
            None => hash_token(i, token, self.config.buckets),
        }
    }

    /// Cuts a line into label and fields, checking the column count and the label.
    fn split<'a>(&self, line: &'a str, at: At) -> Result<Split<'a>, DataError> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let sep = match self.config.delimiter {
            Delimiter::Tab => '\t',
            Delimiter::Comma => ',',
            Delimiter::Auto if line.contains('\t') => '\t',
            Delimiter::Auto => ',',
        };
        let mut columns = line.split(sep);
        let label_text = columns.next().unwrap_or("");
        let label = label_text
            .parse::<f32>()
            .ok()
            .filter(|y| (0.0..=1.0).contains(y))
            .ok_or_else(|| at.err(1, "label", "not a number in [0, 1]", label_text.as_bytes()))?;
        let mut fields = [""; FIELDS];
        for (slot, text) in fields.iter_mut().zip(&mut columns) {
            *slot = text;
        }
        if let Some(extra) = columns.next() {
            let problem = format!("more than the {} columns expected", FIELDS + 1);
            return Err(at.err(FIELDS + 2, "(extra)", problem, extra.as_bytes()));
        }
        Ok(Split { label, fields })
    }
}

/// Integer field `i`'s value, `None` when empty; anything but a finite number is an error.
fn integer(text: &str, i: usize, at: At) -> Result<Option<f64>, DataError> {
    if text.is_empty() {
        return Ok(None);
    }
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Some(v)),
        _ => Err(at.err(i + 2, field_name(i), "not a finite number", text.as_bytes())),
    }
}

/// The token of a log bucket, written into `buf` (no allocation); [`MISSING`] for `None`.
fn bucket_token(v: Option<f64>, buf: &mut [u8; 24]) -> &str {
    let Some(v) = v else { return MISSING };
    let n = {
        let mut cursor = std::io::Cursor::new(&mut buf[..]);
        // An i64 has at most 20 characters, so the write cannot run out of room.
        let _ = write!(cursor, "{}", log_bucket(v));
        cursor.position() as usize
    };
    std::str::from_utf8(&buf[..n]).unwrap_or(MISSING)
}

impl LineParser for CriteoPreprocessor {
    fn new_batch(&self) -> BatchBuf {
        BatchBuf::new(&self.spec(1, &[]))
    }

    /// Not blank, and not the header on line 1.
    fn accepts(&self, line: &str, line_no: usize) -> bool {
        !line.trim().is_empty() && !Self::is_header(line, line_no)
    }

    fn parse(
        &self,
        line: &str,
        line_no: usize,
        batch: &mut BatchBuf,
        labels: &mut Vec<f32>,
    ) -> Result<(), DataError> {
        self.parse_line(line, line_no, batch, labels)
    }
}

#[cfg(test)]
mod tests;

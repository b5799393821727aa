//! A validation split cut from one training file as it streams: each line belongs to the
//! training or the validation side by a hash of its line number and a seed, so both sides are
//! the same every epoch and every run with that seed, the file is never copied or held in
//! memory for the split, and a line is on exactly one side.
//!
//! [`HoldOut`] wraps any [`LineParser`]: the training source ([`super::stream::Streamed`])
//! reads the file through `HoldOut::training`, the validation set ([`super::stream::read_all`])
//! through `HoldOut::validation`. Which lines go where depends only on their numbers, not on
//! what they hold (a header or a blank line is skipped by the inner parser on either side).

use super::error::DataError;
use super::stream::LineParser;
use crate::batch::BatchBuf;

/// Which side of a [`HoldOut`] split a parser reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The lines not held out.
    Training,
    /// The held-out lines.
    Validation,
}

/// A [`LineParser`] that reads one side of a split of the file's lines: a line is held out
/// when a hash of `(seed, line number)` falls below `fraction` of the hash range.
#[derive(Debug, Clone)]
pub struct HoldOut<P> {
    inner: P,
    threshold: u64,
    seed: u64,
    side: Side,
}

impl<P> HoldOut<P> {
    /// The training side of the split holding out `fraction` (clamped to `[0, 1]`; NaN is 0)
    /// of the lines, chosen by `seed`.
    pub fn training(inner: P, fraction: f64, seed: u64) -> Self {
        Self::new(inner, fraction, seed, Side::Training)
    }

    /// The held-out side of the same split.
    pub fn validation(inner: P, fraction: f64, seed: u64) -> Self {
        Self::new(inner, fraction, seed, Side::Validation)
    }

    fn new(inner: P, fraction: f64, seed: u64, side: Side) -> Self {
        let fraction = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        // 2^64 · fraction, saturating: fraction 1 holds out every line.
        let threshold = (fraction * 18_446_744_073_709_551_616.0) as u64;
        HoldOut {
            inner,
            threshold,
            seed,
            side,
        }
    }

    /// Whether line `line_no` (1-based) is held out.
    pub fn held_out(&self, line_no: usize) -> bool {
        let hash = splitmix64(self.seed ^ splitmix64(line_no as u64));
        hash < self.threshold || self.threshold == u64::MAX
    }

    /// The wrapped parser.
    pub fn inner(&self) -> &P {
        &self.inner
    }
}

/// SplitMix64's output function: a bijection of `u64` whose outputs are uniform enough for a
/// split (Steele, Lea & Flood 2014).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl<P: LineParser> LineParser for HoldOut<P> {
    fn new_batch(&self) -> BatchBuf {
        self.inner.new_batch()
    }

    fn accepts(&self, line: &str, line_no: usize) -> bool {
        let held = self.held_out(line_no);
        let mine = match self.side {
            Side::Training => !held,
            Side::Validation => held,
        };
        mine && self.inner.accepts(line, line_no)
    }

    fn parse(
        &self,
        line: &str,
        line_no: usize,
        batch: &mut BatchBuf,
        labels: &mut Vec<f32>,
    ) -> Result<(), DataError> {
        self.inner.parse(line, line_no, batch, labels)
    }
}

/// The share of a file of `lines` lines to hold out so that the validation set is `fraction`
/// of it but at most `max_rows` rows (it is held in memory and scored every epoch).
pub fn capped_fraction(fraction: f64, lines: usize, max_rows: usize) -> f64 {
    if lines == 0 {
        return fraction;
    }
    fraction.min(max_rows as f64 / lines as f64)
}

/// Counts the lines of a file (its `\n` bytes, plus one for a last line without one), reading
/// it once in large blocks.
pub fn count_lines(path: &std::path::Path) -> Result<usize, DataError> {
    use std::io::Read;
    let io = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut lines, mut last) = (0usize, b'\n');
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count();
        last = buf[n - 1];
    }
    Ok(lines + usize::from(last != b'\n'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Columns;
    use crate::data::stream::{LabelledTsv, Streamed, read_all};
    use crate::spec::{Field, FieldKind, ModelSpec, Output};
    use crate::train::TrainData;
    use std::io::Write;

    fn spec() -> ModelSpec {
        ModelSpec {
            fields: vec![Field {
                name: "c".into(),
                kind: FieldKind::Categorical { vocab: 1000 },
                table: None,
            }],
            embedding_dim: 4,
            hidden: vec![],
            output: Output::Sigmoid,
            clamp: None,
            mlp: Default::default(),
            table: Default::default(),
        }
    }

    /// Lines `label \t id` with id = line number − 1, so a row says which line it came from.
    fn file(lines: usize) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        for k in 0..lines {
            writeln!(f, "{}\t{k}", k % 2).unwrap();
        }
        f
    }

    fn ids(batch: &BatchBuf) -> Vec<u64> {
        use crate::batch::Column;
        let Column::Categorical(ids) = batch.column(0) else {
            panic!("id column")
        };
        ids.to_vec()
    }

    #[test]
    fn the_two_sides_partition_the_lines_in_the_asked_share() {
        let f = file(1000);
        let parser = LabelledTsv::new(spec());
        let (valid, labels) =
            read_all(f.path(), HoldOut::validation(parser.clone(), 0.1, 3)).unwrap();
        assert_eq!(valid.rows(), labels.len());
        let mut seen = ids(&valid);
        assert!((60..=140).contains(&seen.len()), "{} held out", seen.len());
        let mut train = Streamed::new(f.path(), HoldOut::training(parser, 0.1, 3), 64, 1).unwrap();
        train
            .for_each_batch(1, 32, &mut |b, _| {
                seen.extend(ids(b));
                Ok(())
            })
            .unwrap();
        seen.sort_unstable();
        assert_eq!(
            seen,
            (0..1000).collect::<Vec<u64>>(),
            "every line on exactly one side"
        );
    }

    #[test]
    fn a_bad_held_out_line_is_skipped_when_training_skips_bad_lines() {
        use crate::data::stream::read_all_skipping;
        let parser = LabelledTsv::new(spec());
        let valid = HoldOut::validation(parser, 0.3, 9);
        let bad = (1..100).find(|&l| valid.held_out(l)).unwrap();
        let mut f = tempfile::NamedTempFile::new().unwrap();
        for line in 1..100 {
            if line == bad {
                writeln!(f, "1\tnot-an-id").unwrap();
            } else {
                writeln!(f, "1\t{line}").unwrap();
            }
        }
        let err = read_all_skipping(f.path(), valid.clone(), false).unwrap_err();
        assert!(err.to_string().contains(&format!("line {bad}")), "{err}");
        let (rows, labels) = read_all_skipping(f.path(), valid, true).unwrap();
        assert_eq!(rows.rows(), labels.len());
        assert!(!ids(&rows).contains(&(bad as u64)));
    }

    #[test]
    fn the_split_depends_on_the_seed_and_nothing_else() {
        let parser = LabelledTsv::new(spec());
        let a = HoldOut::validation(parser.clone(), 0.2, 1);
        let b = HoldOut::validation(parser.clone(), 0.2, 1);
        let c = HoldOut::validation(parser, 0.2, 2);
        let held =
            |h: &HoldOut<LabelledTsv>| (1..500).filter(|&l| h.held_out(l)).collect::<Vec<_>>();
        assert_eq!(held(&a), held(&b));
        assert_ne!(held(&a), held(&c));
    }

    #[test]
    fn fractions_at_the_edges() {
        let parser = LabelledTsv::new(spec());
        let none = HoldOut::validation(parser.clone(), 0.0, 1);
        let all = HoldOut::validation(parser.clone(), 1.0, 1);
        let nan = HoldOut::validation(parser, f64::NAN, 1);
        assert!((1..1000).all(|l| !none.held_out(l) && all.held_out(l) && !nan.held_out(l)));
        assert_eq!(capped_fraction(0.1, 1_000, 50), 0.05);
        assert_eq!(capped_fraction(0.1, 1_000, 500), 0.1);
    }

    #[test]
    fn lines_are_counted_with_or_without_a_final_newline() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        write!(f, "a\nb\nc").unwrap();
        assert_eq!(count_lines(f.path()).unwrap(), 3);
        writeln!(f).unwrap();
        assert_eq!(count_lines(f.path()).unwrap(), 3);
        let empty = tempfile::NamedTempFile::new().unwrap();
        assert_eq!(count_lines(empty.path()).unwrap(), 0);
    }
}

//! Structured columns (built with `arbitrary`) → `score` / `score_parallel` on a `mixed_small()`
//! model (user: categorical 500, age: numeric, genres: multi_hot 18 mean, tags: multi_hot 40 sum).
//!
//! Ids, values (NaN, infinities, huge and subnormal values included), offsets, row counts,
//! column order and count, and the output length are all fuzzed; `align_rows` pads or trims every
//! column to the first one's row count and `Offsets::Lens` builds well-formed offsets, so that
//! both the error paths and the scoring path are reached often.
//!
//! Invariants: no panic; `score` accepts exactly the batches that are valid by an independent
//! check of the documented rules (one column per field, matching kinds, equal non-zero row
//! counts, ids below the vocabulary, finite values, offsets starting at 0, never decreasing and
//! ending at the id count, output long enough); on a validation Err nothing is written to the
//! output; a valid batch gives Ok, or `NonFiniteScore` naming the first NaN row (allowed only for
//! rows with |age| > 1e15: an f32 overflow, the known issue in `deepfm_fuzz::HUGE`); nothing past
//! the batch's rows is written; every other score is in [0, 1]; `score_parallel` gives the same
//! result and bit-identical scores; rows with moderate values (|age| <= 16) agree with the f64
//! reference.

#![no_main]

use arbitrary::Arbitrary;
use deepfm::{Batch, Column, ScoreError, Scratch, ScratchPool, score, score_parallel};
use deepfm_fuzz::{HUGE, MODERATE, assert_matches_reference, base_model};
use libfuzzer_sys::fuzz_target;

const VOCAB: [u64; 4] = [500, 1, 18, 40];

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Id {
    /// `n % vocab`: always valid.
    InRange(u16),
    /// `vocab - 1` (false) or `vocab` (true): the boundary.
    Edge(bool),
    /// Any u64.
    Raw(u64),
}

impl Id {
    fn get(self, vocab: u64) -> u64 {
        match self {
            Id::InRange(n) => n as u64 % vocab,
            Id::Edge(past) => vocab - 1 + past as u64,
            Id::Raw(v) => v,
        }
    }
}

const SPECIAL: [f32; 16] = [
    f32::NAN,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::MAX,
    f32::MIN,
    f32::MIN_POSITIVE,
    -0.0,
    1e-45,
    1e10,
    -1e10,
    1e19,
    -1e19,
    1e30,
    -1e30,
    3e38,
    1e18,
];

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Num {
    /// `n / 64`.
    Small(i16),
    /// One of [`SPECIAL`].
    Special(u8),
    /// Any f32 bit pattern.
    Raw(f32),
}

impl Num {
    fn get(self) -> f32 {
        match self {
            Num::Small(n) => n as f32 / 64.0,
            Num::Special(i) => SPECIAL[i as usize % SPECIAL.len()],
            Num::Raw(v) => v,
        }
    }
}

#[derive(Arbitrary, Debug, Clone)]
enum Offsets {
    /// Row lengths (each `% 8`): well-formed offsets; the ids are padded or trimmed to fit.
    Lens(Vec<u8>),
    /// Offsets as given.
    Raw(Vec<usize>),
}

#[derive(Arbitrary, Debug, Clone)]
struct MultiHot {
    ids: Vec<Id>,
    offsets: Offsets,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Shape {
    Normal,
    Drop(u8),
    Duplicate(u8),
    Swap(u8, u8),
}

#[derive(Arbitrary, Debug, Clone)]
struct Input {
    user: Vec<Id>,
    age: Vec<Num>,
    genres: MultiHot,
    tags: MultiHot,
    /// Pad or trim every column to `user.len()` rows.
    align_rows: bool,
    shape: Shape,
    /// Output length = rows + this (saturating at 0).
    out_extra: i8,
    portable: bool,
}

struct Built {
    users: Vec<u64>,
    ages: Vec<f32>,
    multi: [(Vec<u64>, Vec<usize>); 2],
}

fn build(input: &Input) -> Built {
    let rows = input.user.len();
    let users = input.user.iter().map(|id| id.get(VOCAB[0])).collect();
    let mut ages: Vec<f32> = input.age.iter().map(|n| n.get()).collect();
    if input.align_rows {
        ages.resize(rows, 0.0);
    }
    let multi = [(&input.genres, VOCAB[2]), (&input.tags, VOCAB[3])].map(|(m, vocab)| {
        let mut ids: Vec<u64> = m.ids.iter().map(|id| id.get(vocab)).collect();
        let offsets = match &m.offsets {
            Offsets::Lens(lens) => {
                let mut lens: Vec<usize> = lens.iter().map(|&l| l as usize % 8).collect();
                if input.align_rows {
                    lens.resize(rows, 0);
                }
                let mut offsets = vec![0usize];
                for l in lens {
                    offsets.push(offsets.last().unwrap() + l);
                }
                ids.resize(*offsets.last().unwrap(), 0);
                offsets
            }
            Offsets::Raw(raw) => {
                let mut raw = raw.clone();
                if input.align_rows {
                    raw.resize(rows + 1, ids.len());
                }
                raw
            }
        };
        (ids, offsets)
    });
    Built { users, ages, multi }
}

/// The documented validity rules, checked independently of the crate. Column `p` of the batch
/// carries the data built for field `order[p]`.
fn expected_valid(b: &Built, order: &[usize], out_len: usize) -> bool {
    // One column per field, kinds matching: only the two multi-hot columns may trade places.
    if order.len() != 4 || order[0] != 0 || order[1] != 1 {
        return false;
    }
    let rows = b.users.len();
    if rows == 0 || b.ages.len() != rows {
        return false;
    }
    if b.users.iter().any(|&id| id >= VOCAB[0]) || b.ages.iter().any(|v| !v.is_finite()) {
        return false;
    }
    for p in 2..4 {
        // Checked against the vocabulary of the field at position p.
        let (ids, offsets) = &b.multi[order[p] - 2];
        if offsets.len() != rows + 1 || offsets[0] != 0 || offsets[rows] != ids.len() {
            return false;
        }
        if offsets.windows(2).any(|w| w[0] > w[1]) || ids.iter().any(|&id| id >= VOCAB[p]) {
            return false;
        }
    }
    out_len >= rows
}

const SENTINEL: f32 = -7.25;

fuzz_target!(|input: Input| {
    let b = build(&input);
    let all = [
        Column::Categorical(&b.users),
        Column::Numeric(&b.ages),
        Column::MultiHot {
            ids: &b.multi[0].0,
            offsets: &b.multi[0].1,
        },
        Column::MultiHot {
            ids: &b.multi[1].0,
            offsets: &b.multi[1].1,
        },
    ];
    let mut order = vec![0usize, 1, 2, 3];
    match input.shape {
        Shape::Normal => {}
        Shape::Drop(i) => {
            order.remove(i as usize % 4);
        }
        Shape::Duplicate(i) => order.push(i as usize % 4),
        Shape::Swap(i, j) => order.swap(i as usize % 4, j as usize % 4),
    }
    let columns: Vec<Column> = order.iter().map(|&i| all[i]).collect();
    let batch = Batch::new(&columns);
    let rows = b.users.len();
    let out_len = rows.saturating_add_signed(input.out_extra as isize);
    let valid = expected_valid(&b, &order, out_len);

    let model = base_model(input.portable);
    let mut scratch = Scratch::new(model);
    let mut out = vec![SENTINEL; out_len];
    let result = score(model, &batch, &mut scratch, &mut out);
    match &result {
        Ok(()) => assert!(valid, "score accepted a batch the rules refuse: {input:?}"),
        // Found after scoring (an overflow inside the model): the scores are written.
        Err(ScoreError::NonFiniteScore { row }) => {
            assert!(
                valid,
                "NonFiniteScore for a batch the rules refuse: {input:?}"
            );
            assert!(
                *row < rows && out[*row].is_nan() && !out[..*row].iter().any(|v| v.is_nan()),
                "NonFiniteScore names row {row}, not the first NaN: {input:?}"
            );
        }
        Err(e) => {
            let _ = e.to_string();
            assert!(!valid, "score refused a valid batch ({e}): {input:?}");
            assert!(
                out.iter().all(|v| v.to_bits() == SENTINEL.to_bits()),
                "score wrote output before failing ({e}): {input:?}"
            );
            return;
        }
    }
    assert!(
        out[rows..]
            .iter()
            .all(|v| v.to_bits() == SENTINEL.to_bits()),
        "score wrote past the batch's rows: {input:?}"
    );
    let out = &out[..rows];
    for (r, &p) in out.iter().enumerate() {
        if p.is_nan() {
            // Only an f32 overflow (known issue, see `deepfm_fuzz::HUGE`) may give NaN, and
            // then `score` must say so.
            assert!(result.is_err(), "row {r}: Ok with a NaN score: {input:?}");
            assert!(
                b.ages[r].abs() > HUGE,
                "row {r}: NaN score from moderate values: {input:?}"
            );
        } else {
            assert!(
                (0.0..=1.0).contains(&p),
                "row {r}: score {p} is not a probability: {input:?}"
            );
        }
    }
    assert_matches_reference(model, &batch, out, |r| b.ages[r].abs() <= MODERATE, &input);

    let pool = ScratchPool::with_threads(model, 1);
    let mut par = vec![SENTINEL; rows];
    let par_result = score_parallel(model, &batch, &pool, &mut par);
    assert_eq!(
        par_result, result,
        "score_parallel and score disagree: {input:?}"
    );
    for (r, (a, p)) in out.iter().zip(&par).enumerate() {
        assert_eq!(
            a.to_bits(),
            p.to_bits(),
            "row {r}: score {a} vs score_parallel {p}: {input:?}"
        );
    }
});

//! Text lines → `data::tsv::push_line` against the `mixed_small()` spec (user: categorical 500,
//! age: numeric, genres: multi_hot 18 mean, tags: multi_hot 40 sum), then `score` on a
//! `mixed_small` model with both kernel sets.
//!
//! Invariants: no panic; a refused line leaves the batch unchanged and an accepted one adds one
//! row; a batch `push_line` filled passes validation, so `score` returns Ok or, when a huge
//! numeric value overflows inside the model, `NonFiniteScore` (only for rows with |age| above
//! `deepfm_fuzz::HUGE`); every other score is a probability (finite, in [0, 1]); on rows with
//! moderate values (|age| <= 16) both kernel sets agree up to rounding and match the f64
//! reference.

#![no_main]

use deepfm::data::tsv::push_line;
use deepfm::fixtures::mixed_small;
use deepfm::{BatchBuf, Column, Columns, ModelSpec, ScoreError, Scratch, score};
use deepfm_fuzz::{
    HUGE, MODERATE, assert_matches_reference, assert_probabilities_where, base_model,
};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn spec() -> &'static ModelSpec {
    static SPEC: OnceLock<ModelSpec> = OnceLock::new();
    SPEC.get_or_init(mixed_small)
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let spec = spec();
    let mut batch = BatchBuf::new(spec);
    let mut row = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let before = batch.len();
        match push_line(spec, line, i + 1, &mut batch, &mut row) {
            Ok(()) => assert_eq!(batch.len(), before + 1),
            Err(e) => {
                assert_eq!(batch.len(), before, "a refused line changed the batch");
                assert_eq!(e.line, i + 1);
            }
        }
    }
    if batch.is_empty() {
        return;
    }
    let rows = batch.len();
    let ages: Vec<f32> = match batch.column(1) {
        Column::Numeric(v) => v.to_vec(),
        other => panic!("column 1 of a mixed_small batch is {}", other.kind_name()),
    };
    let mut results = Vec::new();
    for portable in [false, true] {
        let model = base_model(portable);
        let mut scratch = Scratch::new(model);
        let mut out = vec![0.0f32; rows];
        let overflowed = match score(model, &batch, &mut scratch, &mut out) {
            Ok(()) => false,
            // An overflow inside the model: the scores are written, NaN included.
            Err(ScoreError::NonFiniteScore { row }) if ages[row].abs() > HUGE => true,
            Err(e) => panic!(
                "push_line accepted every row but score refused the batch: {e}; input: {text:?}"
            ),
        };
        assert_probabilities_where(&out, |r| !(overflowed && ages[r].abs() > HUGE), &text);
        assert_matches_reference(model, &batch, &out, |r| ages[r].abs() <= MODERATE, &text);
        results.push(out);
    }
    for (r, (a, b)) in results[0].iter().zip(&results[1]).enumerate() {
        if ages[r].abs() > MODERATE {
            continue; // huge inputs cancel differently with and without FMA
        }
        assert!(
            (a - b).abs() <= 1e-4,
            "row {r}: kernels disagree: {a} vs {b}; input: {text:?}"
        );
    }
});

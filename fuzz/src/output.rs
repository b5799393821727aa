//! The invariants on scores every target checks: probabilities, agreement with the f64 reference.

use super::*;

/// The invariant on a sigmoid model's scores: every one finite and in `[0, 1]`.
pub fn assert_probabilities(out: &[f32], context: &dyn std::fmt::Debug) {
    for (row, &p) in out.iter().enumerate() {
        assert!(
            p.is_finite() && (0.0..=1.0).contains(&p),
            "row {row}: score {p} is not a probability; input: {context:?}"
        );
    }
}

/// Numeric inputs up to this magnitude are "moderate": scores of such rows are compared with the
/// f64 reference forward pass.
pub const MODERATE: f32 = 16.0;

/// Largest accepted `|optimized − reference|` for a moderate row (scores are probabilities, so
/// this is an absolute error; the crate's own tests use 1e-5 on inputs in `[0, 3)`).
pub const REFERENCE_TOLERANCE: f64 = 1e-4;

/// Compares `out` with the f64 reference pass, for the rows where `moderate(row)` holds.
pub fn assert_matches_reference<C: deepfm::Columns + ?Sized>(
    model: &Model,
    batch: &C,
    out: &[f32],
    moderate: impl Fn(usize) -> bool,
    context: &dyn std::fmt::Debug,
) {
    let want = deepfm::reference::score_reference(model, batch);
    for (row, (&got, &want)) in out.iter().zip(&want).enumerate() {
        if moderate(row) {
            let err = (got as f64 - want).abs() / want.abs().max(1.0);
            assert!(
                err <= REFERENCE_TOLERANCE,
                "row {row}: score {got} vs reference {want} (isa {:?}); input: {context:?}",
                model.isa()
            );
        }
    }
}

/// Numeric values above this may overflow f32 inside the model (fuzz/regressions/*/
/// nan-huge-numeric: an age of 1e30): `score` then reports `ScoreError::NonFiniteScore`, the
/// documented outcome; below it, every score must be a probability.
pub const HUGE: f32 = 1e15;

/// [`assert_probabilities`] on the rows where `check(row)` holds.
pub fn assert_probabilities_where(
    out: &[f32],
    check: impl Fn(usize) -> bool,
    context: &dyn std::fmt::Debug,
) {
    for (row, &p) in out.iter().enumerate() {
        assert!(
            !check(row) || (p.is_finite() && (0.0..=1.0).contains(&p)),
            "row {row}: score {p} is not a probability; input: {context:?}"
        );
    }
}

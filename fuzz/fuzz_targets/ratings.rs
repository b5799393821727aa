//! Interaction files with string ids (`deepfm train --ratings`, `eval`, `predict --pairs`) →
//! `data::ratings::parse_interactions`, then the parsed ids → the recommender API
//! (`batch_predict`, `predict`, `evaluate`, `recommend`) of a small fitted `DeepFM<String,
//! String>`. The first byte's bit 0 asks for pairs (rating column optional).
//!
//! Invariants: no panic; parsing does not depend on read buffering; errors name an existing
//! line; columns of equal length with non-empty ids and finite ratings; every prediction (known
//! or unknown ids) in the clamp range `[1, 5]`, `predict` equal to `batch_predict`; `evaluate`
//! Ok; `recommend` at most `k` distinct known items. Details in `deepfm_fuzz::check_ratings`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    deepfm_fuzz::check_ratings(data);
});

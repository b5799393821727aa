//! Replays the committed fuzz corpus (`fuzz/seeds/<target>/`) on stable Rust, with the same
//! invariants as the cargo-fuzz targets in `fuzz/fuzz_targets/`:
//!
//! - `model_bytes`: `validate_bytes` never panics; accepted bytes open with `Model::open` (same
//!   spec) and score a batch built from the spec. Each input goes through
//!   `deepfm_fuzz::check_model_bytes` (from `fuzz/src/lib.rs`, included below), the same code as
//!   the target.
//! - `spec_json`: `ModelSpec::from_json` never panics; accepted specs keep their derived shapes
//!   consistent and round-trip through `to_json`.
//! - `score_tsv`: lines go through `push_line`; a batch it filled passes validation, so `score`
//!   returns Ok or, when the model overflows (huge numeric values), `NonFiniteScore`; every
//!   other score is a probability, and moderate rows match the f64 reference.
//!
//! - `movielens`, `criteo`, `ratings`, `labelled_tsv`, `schema` (the data parsers, and the
//!   recommender API fed the parsed ids): each input goes through `deepfm_fuzz::check_<target>`, the same code as
//!   the target.
//!
//! `fuzz/regressions/` holds minimised crash inputs, replayed by `regressions`.

use deepfm::data::tsv::push_line;
use deepfm::fixtures::mixed_small;
use deepfm::format::tensor_shapes;
use deepfm::{Batch, BatchBuf, Column, Columns, Isa, Model, ModelSpec, ScoreError, Scratch, score};
use std::path::{Path, PathBuf};

/// The fuzz crate's helpers (`fuzz/src/lib.rs` and its module per target use only `deepfm`,
/// `std` and `xxhash_rust`, so they build here too); this file uses part of them.
#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code, unused_imports)]
mod deepfm_fuzz;

use deepfm_fuzz::{
    MODERATE, assert_matches_reference, assert_probabilities, assert_probabilities_where,
    base_model_bytes, check_criteo, check_labelled_tsv, check_model_bytes, check_movielens,
    check_ratings, check_schema, open_bytes,
};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `fuzz/<sub>/<target>/`, sorted by name (none if the folder is missing).
fn files(sub: &str, target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = fuzz_dir().join(sub).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<u8>)> = entries
        .map(|e| e.expect("read a corpus entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).expect("read a corpus file");
            (p.file_name().unwrap().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    out.sort();
    out
}

/// The fuzz targets' base model (`mixed_small()` with weights of seed 1), opened with `isa`.
fn base_model(isa: Isa) -> Model {
    open_bytes(base_model_bytes(), Some(isa)).expect("open the base model")
}

fn replay_spec_json(name: &str, data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(spec) = ModelSpec::from_json(text) else {
        return false;
    };
    assert_eq!(spec.validate(), Ok(()), "{name}");
    let rows = spec.total_rows().expect("total rows");
    let sum: u128 = spec.fields.iter().map(|f| f.kind.rows() as u128).sum();
    assert_eq!(rows as u128, sum, "{name}");
    let mut next = 0u64;
    for (f, &o) in spec.fields.iter().zip(&spec.row_offsets()) {
        assert_eq!(o, next, "{name}");
        next += f.kind.rows();
    }
    let shapes = spec.layer_shapes();
    assert_eq!(shapes.len(), spec.hidden.len() + 1, "{name}");
    let mut input = spec.fields.len() * spec.embedding_dim;
    assert_eq!(spec.mlp_input_width(), input, "{name}");
    for (i, &(i_w, o_w)) in shapes.iter().enumerate() {
        assert_eq!(i_w, input, "{name}");
        assert_eq!(o_w, spec.hidden.get(i).copied().unwrap_or(1), "{name}");
        input = o_w;
    }
    let _ = spec.mlp_macs_per_sample();
    assert_eq!(
        tensor_shapes(&spec).len(),
        2 * spec.hidden.len() + 5,
        "{name}"
    );
    let json = spec.to_json();
    let again = ModelSpec::from_json(&json).unwrap_or_else(|e| panic!("{name}: {e}: {json}"));
    assert_eq!(again, spec, "{name}");
    assert_eq!(again.to_json(), json, "{name}");
    true
}

/// Returns the number of rows scored.
fn replay_score_tsv(name: &str, data: &[u8], models: &[Model]) -> usize {
    let text = String::from_utf8_lossy(data);
    let spec = mixed_small();
    let mut batch = BatchBuf::new(&spec);
    let mut row = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let before = batch.len();
        match push_line(&spec, line, i + 1, &mut batch, &mut row) {
            Ok(()) => assert_eq!(batch.len(), before + 1, "{name}"),
            Err(e) => {
                assert_eq!(
                    batch.len(),
                    before,
                    "{name}: a refused line changed the batch"
                );
                assert_eq!(e.line, i + 1, "{name}");
            }
        }
    }
    if batch.is_empty() {
        return 0;
    }
    let rows = batch.len();
    let ages: Vec<f32> = match batch.column(1) {
        Column::Numeric(v) => v.to_vec(),
        other => panic!("column 1 is {}", other.kind_name()),
    };
    let mut results = Vec::new();
    for model in models {
        let mut scratch = Scratch::new(model);
        let mut out = vec![0.0f32; rows];
        // An overflow inside the model (e.g. `fuzz/regressions/score_tsv/nan-huge-numeric`, an
        // age of 1e30) is reported as `NonFiniteScore` with the scores written, NaN included.
        let overflowed = match score(model, &batch, &mut scratch, &mut out) {
            Ok(()) => false,
            Err(ScoreError::NonFiniteScore { row }) => {
                assert!(
                    out[row].is_nan(),
                    "{name}: row {row} reported NaN but is not"
                );
                true
            }
            Err(e) => panic!("{name}: push_line accepted every row but score refused: {e}"),
        };
        let exempt = |r: usize| overflowed && out[r].is_nan();
        let context = (name, model.isa(), &text);
        assert_probabilities_where(&out, |r| !exempt(r), &context);
        assert_matches_reference(model, &batch, &out, |r| ages[r].abs() <= MODERATE, &context);
        results.push(out);
    }
    for pair in results.windows(2) {
        for r in (0..rows).filter(|&r| ages[r].abs() <= MODERATE) {
            assert!(
                (pair[0][r] - pair[1][r]).abs() <= 1e-4,
                "{name}: row {r}: kernels disagree"
            );
        }
    }
    rows
}

fn models() -> Vec<Model> {
    Isa::available().into_iter().map(base_model).collect()
}

/// Replays every seed of `fuzz/seeds/<target>/` (there must be some) with `replay`; returns how
/// many it accepted, and the number of seeds.
fn replay_seeds(target: &str, replay: impl Fn(&str, &[u8]) -> bool) -> (usize, usize) {
    let seeds = files("seeds", target);
    assert!(!seeds.is_empty(), "fuzz/seeds/{target} is empty");
    let valid = seeds
        .iter()
        .filter(|(name, data)| replay(name, data))
        .count();
    (valid, seeds.len())
}

#[test]
fn model_bytes_seeds() {
    let (valid, seeds) = replay_seeds("model_bytes", |name, data| check_model_bytes(data, name));
    eprintln!("model_bytes: {valid} of {seeds} seeds open and score");
    assert!(valid > 0, "no seed reaches Model::open");
}

#[test]
fn spec_json_seeds() {
    let (valid, seeds) = replay_seeds("spec_json", replay_spec_json);
    eprintln!("spec_json: {valid} of {seeds} seeds are valid specs");
    assert!(valid > 0, "no seed is a valid spec");
}

#[test]
fn score_tsv_seeds() {
    let seeds = files("seeds", "score_tsv");
    assert!(!seeds.is_empty(), "fuzz/seeds/score_tsv is empty");
    let models = models();
    let rows: usize = seeds
        .iter()
        .map(|(name, data)| replay_score_tsv(name, data, &models))
        .sum();
    eprintln!("score_tsv: {rows} rows scored from {} seeds", seeds.len());
    assert!(rows > 0, "no seed line was accepted");
}

#[test]
fn movielens_seeds() {
    let (valid, seeds) = replay_seeds("movielens", |_, data| check_movielens(data));
    eprintln!("movielens: {valid} of {seeds} seeds parse");
    assert!(valid > 0, "no seed parses");
}

#[test]
fn criteo_seeds() {
    let (valid, seeds) = replay_seeds("criteo", |_, data| check_criteo(data) > 0);
    eprintln!("criteo: {valid} of {seeds} seeds give rows");
    assert!(valid > 0, "no seed gives a row");
}

#[test]
fn ratings_seeds() {
    let (valid, seeds) = replay_seeds("ratings", |_, data| check_ratings(data) > 0);
    eprintln!("ratings: {valid} of {seeds} seeds give pairs that score");
    assert!(valid > 0, "no seed gives a pair");
}

#[test]
fn labelled_tsv_seeds() {
    let (valid, seeds) = replay_seeds("labelled_tsv", |_, data| check_labelled_tsv(data) > 0);
    eprintln!("labelled_tsv: {valid} of {seeds} seeds stream samples");
    assert!(valid > 0, "no seed streams a sample");
}

#[test]
fn schema_seeds() {
    let (valid, seeds) = replay_seeds("schema", |_, data| check_schema(data) > 0);
    eprintln!("schema: {valid} of {seeds} seeds give rows");
    assert!(valid > 0, "no seed gives a row");
}

/// Minimised inputs of past crashes (see `fuzz/README.md`).
#[test]
fn regressions() {
    let models = models();
    let regressions = files("regressions", "score_tsv");
    assert!(!regressions.is_empty());
    for (name, data) in regressions {
        replay_score_tsv(&name, &data, &models);
    }
}

/// `fuzz/regressions/score_columns/nan-huge-numeric` (found before d9e4fd7, when `score` returned
/// Ok with a NaN score), decoded from its `arbitrary` encoding: one row, user 265, age
/// `f32::MAX`, genres and tags empty. A typed error or a probability, never Ok with NaN.
#[test]
fn score_columns_regression_huge_numeric() {
    for model in &models() {
        let (users, ages, offsets) = ([265u64], [f32::MAX], [0usize, 0]);
        let columns = [
            Column::Categorical(&users),
            Column::Numeric(&ages),
            Column::MultiHot {
                ids: &[],
                offsets: &offsets,
                weights: None,
            },
            Column::MultiHot {
                ids: &[],
                offsets: &offsets,
                weights: None,
            },
        ];
        let mut out = [0.0f32];
        let result = score(
            model,
            &Batch::new(&columns),
            &mut Scratch::new(model),
            &mut out,
        );
        if result.is_ok() {
            assert_probabilities(&out, &model.isa());
        }
    }
}

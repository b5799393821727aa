//! Replays the committed fuzz corpus (`fuzz/seeds/<target>/`) on stable Rust, with the same
//! invariants as the cargo-fuzz targets in `fuzz/fuzz_targets/`:
//!
//! - `model_bytes`: `validate_bytes` never panics; accepted bytes open with `Model::open` (same
//!   spec) and score a batch built from the spec. The first byte of each input selects raw or
//!   mutation mode exactly as in `fuzz/fuzz_targets/model_bytes.rs` (decoded again below).
//! - `spec_json`: `ModelSpec::from_json` never panics; accepted specs keep their derived shapes
//!   consistent and round-trip through `to_json`.
//! - `score_tsv`: lines go through `push_line`; a batch it filled passes validation, so `score`
//!   returns Ok or, when the model overflows (huge numeric values), `NonFiniteScore`; every
//!   other score is a probability, and moderate rows match the f64 reference.
//!
//! `fuzz/regressions/` holds minimised crash inputs, replayed by `regressions`.

use deepfm::data::tsv::push_line;
use deepfm::format::reader::validate_bytes;
use deepfm::format::tensor_shapes;
use deepfm::random::{mixed_small, random_batch, write_random_model};
use deepfm::reference::score_reference;
use deepfm::{
    Batch, BatchBuf, Column, Columns, Isa, Model, ModelSpec, OpenOptions, ScoreError, Scratch,
    score,
};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

/// Rows with numeric values up to this are compared with the f64 reference.
const MODERATE: f32 = 16.0;
const REFERENCE_TOLERANCE: f64 = 1e-4;

const HEADER_LEN: usize = 64;
const ENTRY_LEN: usize = 64;
const CHECKSUM_CHUNK: usize = 1 << 20;

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

/// Writes `bytes` to a file in a fresh temporary directory and opens it; the directory is
/// removed before returning (the map keeps the data alive).
fn open_bytes(bytes: &[u8], isa: Isa) -> Result<Model, deepfm::FormatError> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("model.dfm");
    std::fs::write(&path, bytes).expect("write a temporary model");
    Model::open_with(
        &path,
        &OpenOptions {
            isa: Some(isa),
            verify: false,
        },
    )
}

/// The fuzz targets' base model: `mixed_small()` with weights of seed 1.
fn base_model_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("base.dfm");
        write_random_model(&path, &mixed_small(), 1).expect("write the base model");
        std::fs::read(&path).expect("read the base model")
    })
}

fn base_model(isa: Isa) -> Model {
    open_bytes(base_model_bytes(), isa).expect("open the base model")
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn section_checksum(bytes: &[u8]) -> u64 {
    let mut outer = Xxh3::new();
    for chunk in bytes.chunks(CHECKSUM_CHUNK) {
        outer.update(&xxh3_64(chunk).to_le_bytes());
    }
    outer.digest()
}

fn fix_section_checksums(bytes: &mut [u8]) {
    let Some(count) = u32_at(bytes, 40) else {
        return;
    };
    for i in 0..count.min(256) as usize {
        let e = HEADER_LEN + i * ENTRY_LEN;
        let (Some(offset), Some(length)) = (u64_at(bytes, e + 32), u64_at(bytes, e + 40)) else {
            return;
        };
        let Some(end) = offset.checked_add(length) else {
            continue;
        };
        if end > bytes.len() as u64 || e + ENTRY_LEN > bytes.len() {
            continue;
        }
        let sum = section_checksum(&bytes[offset as usize..end as usize]);
        bytes[e + 48..e + 56].copy_from_slice(&sum.to_le_bytes());
    }
}

fn fix_meta_checksum(bytes: &mut [u8]) {
    let (Some(count), Some(spec_offset), Some(spec_len)) =
        (u32_at(bytes, 40), u64_at(bytes, 24), u64_at(bytes, 32))
    else {
        return;
    };
    let table_end = HEADER_LEN as u64 + ENTRY_LEN as u64 * count as u64;
    let Some(spec_end) = spec_offset.checked_add(spec_len) else {
        return;
    };
    if table_end > bytes.len() as u64 || spec_end > bytes.len() as u64 {
        return;
    }
    let mut meta = Xxh3::new();
    meta.update(&bytes[..48]);
    meta.update(&bytes[HEADER_LEN..table_end as usize]);
    meta.update(&bytes[spec_offset as usize..spec_end as usize]);
    bytes[48..56].copy_from_slice(&meta.digest().to_le_bytes());
}

/// Mutation mode of the `model_bytes` target (see its doc comment for the encoding).
fn mutate(flags: u8, mut rest: &[u8]) -> Vec<u8> {
    let mut bytes = base_model_bytes().to_vec();
    if flags & 0x10 != 0 && rest.len() >= 3 {
        let v = u32::from_le_bytes([rest[0], rest[1], rest[2], 0]) as usize;
        bytes.resize(v % (2 * bytes.len() + 1), 0);
        rest = &rest[3..];
    }
    while let [tag, lo, hi, tail @ ..] = rest {
        let n = ((tag & 15) as usize + 1).min(tail.len());
        let (data, next) = tail.split_at(n);
        rest = next;
        if bytes.is_empty() {
            continue;
        }
        let mut at = (*lo as usize | (*hi as usize) << 8) + if tag & 0x10 != 0 { 65536 } else { 0 };
        for &b in data {
            at %= bytes.len();
            if tag & 0x20 != 0 {
                bytes[at] = b;
            } else {
                bytes[at] ^= b;
            }
            at += 1;
        }
    }
    if flags & 0x08 != 0 {
        let len = bytes.len() as u64;
        if let Some(field) = bytes.get_mut(16..24) {
            field.copy_from_slice(&len.to_le_bytes());
        }
    }
    if flags & 0x02 != 0 {
        fix_section_checksums(&mut bytes);
    }
    if flags & 0x04 != 0 {
        fix_meta_checksum(&mut bytes);
    }
    bytes
}

/// Returns true when the input was a valid model (for the count check below).
fn replay_model_bytes(name: &str, data: &[u8]) -> bool {
    let Some((&flags, rest)) = data.split_first() else {
        return false;
    };
    let bytes = if flags & 1 == 0 {
        rest.to_vec()
    } else {
        mutate(flags, rest)
    };
    let Ok((spec, sections)) = validate_bytes(&bytes) else {
        return false;
    };
    assert_eq!(sections.len(), tensor_shapes(&spec).len(), "{name}");
    let isa = if flags & 0x20 != 0 {
        Isa::Portable
    } else {
        Isa::detect()
    };
    let model = open_bytes(&bytes, isa)
        .unwrap_or_else(|e| panic!("{name}: validate_bytes accepted, Model::open refused: {e}"));
    assert_eq!(model.spec(), &spec, "{name}");
    let _ = model.file().verify();
    let mut scratch = Scratch::new(&model);
    let (users, ages) = ([3u64, 499], [0.5f32, -2.0]);
    let (genres, genre_offsets) = ([1u64, 2, 17], [0usize, 3, 3]);
    let (tags, tag_offsets) = ([0u64, 39], [0usize, 1, 2]);
    for rows in [1usize, 2] {
        let columns = [
            Column::Categorical(&users[..rows]),
            Column::Numeric(&ages[..rows]),
            Column::MultiHot {
                ids: &genres[..genre_offsets[rows]],
                offsets: &genre_offsets[..=rows],
            },
            Column::MultiHot {
                ids: &tags[..tag_offsets[rows]],
                offsets: &tag_offsets[..=rows],
            },
        ];
        let mut out = [0.0f32; 2];
        let result = score(&model, &Batch::new(&columns), &mut scratch, &mut out);
        if spec == mixed_small() {
            match result {
                // Finite but huge weights can overflow (not checked at open).
                Ok(()) | Err(ScoreError::NonFiniteScore { .. }) => {}
                Err(e) => panic!("{name}: fixed batch: {e}"),
            }
        }
    }
    for rows in [1usize, 3] {
        let batch = random_batch(&spec, rows, 7);
        let mut out = vec![0.0f32; rows];
        match score(&model, &batch, &mut scratch, &mut out) {
            Ok(()) | Err(ScoreError::NonFiniteScore { .. }) => {}
            Err(e) => panic!("{name}: a batch of the model's own spec: {e}"),
        }
    }
    true
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

fn is_probability(p: f32) -> bool {
    p.is_finite() && (0.0..=1.0).contains(&p)
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
        let want = score_reference(model, &batch);
        for r in 0..rows {
            assert!(
                exempt(r) || is_probability(out[r]),
                "{name}: row {r}: score {} is not a probability (isa {:?}, input {text:?})",
                out[r],
                model.isa()
            );
            if ages[r].abs() <= MODERATE {
                let err = (out[r] as f64 - want[r]).abs() / want[r].abs().max(1.0);
                assert!(
                    err <= REFERENCE_TOLERANCE,
                    "{name}: row {r}: {} vs reference {}",
                    out[r],
                    want[r]
                );
            }
        }
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

#[test]
fn model_bytes_seeds() {
    let seeds = files("seeds", "model_bytes");
    assert!(!seeds.is_empty(), "fuzz/seeds/model_bytes is empty");
    let valid = seeds
        .iter()
        .filter(|(name, data)| replay_model_bytes(name, data))
        .count();
    eprintln!(
        "model_bytes: {valid} of {} seeds open and score",
        seeds.len()
    );
    assert!(valid > 0, "no seed reaches Model::open");
}

#[test]
fn spec_json_seeds() {
    let seeds = files("seeds", "spec_json");
    assert!(!seeds.is_empty(), "fuzz/seeds/spec_json is empty");
    let valid = seeds
        .iter()
        .filter(|(name, data)| replay_spec_json(name, data))
        .count();
    eprintln!(
        "spec_json: {valid} of {} seeds are valid specs",
        seeds.len()
    );
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
            },
            Column::MultiHot {
                ids: &[],
                offsets: &offsets,
            },
        ];
        let mut out = [0.0f32];
        let result = score(
            model,
            &Batch::new(&columns),
            &mut Scratch::new(model),
            &mut out,
        );
        assert!(
            result.is_err() || is_probability(out[0]),
            "{:?}: Ok with score {}",
            model.isa(),
            out[0]
        );
    }
}

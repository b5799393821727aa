//! Helpers shared by the fuzz targets (and by `tests/fuzz_corpus.rs`, which replays the seeds
//! on stable Rust): the base `mixed_small()` model (as bytes and opened), checksum fixers for
//! mutated files, the whole `model_bytes` check, and the output invariants. Only `deepfm`, `std`
//! and `xxhash_rust` are used here, so the integration test can include this file as a module.
//!
//! Everything heavy is built once per process and kept in a `OnceLock`. Temporary model files
//! are written to `/dev/shm` when it exists (else the system temp dir) and unlinked right after
//! they are opened: the map stays valid, and nothing is left behind.

use deepfm::format::reader::validate_bytes;
use deepfm::format::tensor_shapes;
use deepfm::random::{mixed_small, random_batch, write_random_model};
use deepfm::{Batch, Column, FormatError, Isa, Model, OpenOptions, ScoreError, Scratch, score};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

/// Seed of the base model's weights.
pub const BASE_SEED: u64 = 1;

/// Header length, section table entry length, and the section checksum's chunk size (see the
/// doc comment of `deepfm::format`).
pub const HEADER_LEN: usize = 64;
pub const ENTRY_LEN: usize = 64;
const CHECKSUM_CHUNK: usize = 1 << 20;

fn temp_path(tag: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("deepfm-fuzz-{}-{tag}-{n}.dfm", std::process::id()))
}

/// The bytes of a valid `mixed_small()` model file (written once through the crate's writer).
pub fn base_model_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let path = temp_path("base");
        write_random_model(&path, &mixed_small(), BASE_SEED).expect("write the base model");
        let bytes = std::fs::read(&path).expect("read the base model back");
        let _ = std::fs::remove_file(&path);
        validate_bytes(&bytes).expect("the base model validates");
        bytes
    })
}

/// Writes `bytes` to a temporary file and opens it as a model (the file is unlinked before
/// returning; the map keeps the data alive).
pub fn open_bytes(bytes: &[u8], isa: Option<Isa>) -> Result<Model, FormatError> {
    let path = temp_path("open");
    std::fs::write(&path, bytes).expect("write a temporary model file");
    let model = Model::open_with(&path, &OpenOptions { isa, verify: false });
    let _ = std::fs::remove_file(&path);
    model
}

/// The base model opened with `isa` (`Portable` or the best this CPU has), once per process.
pub fn base_model(portable: bool) -> &'static Model {
    static PORTABLE: OnceLock<Model> = OnceLock::new();
    static BEST: OnceLock<Model> = OnceLock::new();
    let (cell, isa) = if portable {
        (&PORTABLE, Isa::Portable)
    } else {
        (&BEST, Isa::detect())
    };
    cell.get_or_init(|| open_bytes(base_model_bytes(), Some(isa)).expect("open the base model"))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The section checksum: XXH3-64 of each 1 MiB chunk, then XXH3-64 of those digests (LE).
pub fn section_checksum(bytes: &[u8]) -> u64 {
    let mut outer = Xxh3::new();
    for chunk in bytes.chunks(CHECKSUM_CHUNK) {
        outer.update(&xxh3_64(chunk).to_le_bytes());
    }
    outer.digest()
}

/// Rewrites the stored checksum of every table entry whose `[offset, offset + length)` lies
/// inside `bytes`, so that edits of section data (or of the entries) get past the checksum
/// check. Entries out of bounds are left alone.
pub fn fix_section_checksums(bytes: &mut [u8]) {
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

/// Rewrites the meta checksum (header bytes 48..56): XXH3-64 of header bytes 0..48, then the
/// section table (count from the header), then the spec (offset and length from the header).
/// Does nothing when those ranges are not inside `bytes`.
pub fn fix_meta_checksum(bytes: &mut [u8]) {
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

/// Writes the actual length into the header's file-length field (bytes 16..24).
pub fn fix_file_len(bytes: &mut [u8]) {
    let len = bytes.len() as u64;
    if let Some(field) = bytes.get_mut(16..24) {
        field.copy_from_slice(&len.to_le_bytes());
    }
}

/// Mutation mode of the `model_bytes` target: `rest` edits a copy of [`base_model_bytes`] as
/// `flags` says (the encoding is in the doc comment of `fuzz_targets/model_bytes.rs`).
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
        fix_file_len(&mut bytes);
    }
    if flags & 0x02 != 0 {
        fix_section_checksums(&mut bytes);
    }
    if flags & 0x04 != 0 {
        fix_meta_checksum(&mut bytes);
    }
    bytes
}

/// One `model_bytes` input, decoded and checked as the doc comment of
/// `fuzz_targets/model_bytes.rs` says: the first byte picks raw or mutation mode and the kernels;
/// bytes that `validate_bytes` accepts must open with the same spec, and score a fixed
/// `mixed_small` batch (while the spec is still `mixed_small`) and a batch drawn from the spec,
/// with Ok or `NonFiniteScore`. Panics (messages prefixed by `name`) when an invariant fails;
/// returns whether `validate_bytes` accepted the bytes.
pub fn check_model_bytes(data: &[u8], name: &str) -> bool {
    let Some((&flags, rest)) = data.split_first() else {
        return false;
    };
    let mutated;
    let bytes: &[u8] = if flags & 1 == 0 {
        rest
    } else {
        mutated = mutate(flags, rest);
        &mutated
    };
    let Ok((spec, sections)) = validate_bytes(bytes) else {
        return false;
    };
    assert_eq!(sections.len(), tensor_shapes(&spec).len(), "{name}");

    let isa = if flags & 0x20 != 0 {
        Isa::Portable
    } else {
        Isa::detect()
    };
    let model = open_bytes(bytes, Some(isa)).unwrap_or_else(|e| {
        panic!("{name}: validate_bytes accepted the file but Model::open refused it: {e}")
    });
    assert_eq!(
        model.spec(),
        &spec,
        "{name}: open and validate_bytes disagree on the spec"
    );
    // Verifying reads the row-indexed sections too: any result, no panic.
    let _ = model.file().verify();

    let mut scratch = Scratch::new(&model);
    // A fixed mixed_small batch (1 and 2 rows: the GEMV and GEMM paths). Must score when the
    // spec is still mixed_small; any typed result otherwise.
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
                Err(e) => panic!("{name}: a valid mixed_small batch did not score: {e}"),
            }
        }
    }
    // A batch drawn from the accepted spec always fits it.
    for rows in [1usize, 3] {
        let batch = random_batch(&spec, rows, 7);
        let mut out = vec![0.0f32; rows];
        match score(&model, &batch, &mut scratch, &mut out) {
            Ok(()) | Err(ScoreError::NonFiniteScore { .. }) => {}
            Err(e) => panic!("{name}: a batch built from the model's own spec did not score: {e}"),
        }
    }
    true
}

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

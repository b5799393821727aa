//! Helpers shared by the fuzz targets (and by `tests/fuzz_corpus.rs`, which replays the seeds
//! on stable Rust): the base `mixed_small()` model (as bytes and opened), checksum fixers for
//! mutated files, the whole `model_bytes` check, the output invariants, and the whole check of
//! each data-parser target (`check_movielens`, `check_criteo`, `check_ratings`,
//! `check_labelled_tsv`, `check_schema`). Only `deepfm`, `serde_json`, `std` and `xxhash_rust` are
//! used here, so the integration test can include this file as a module.
//!
//! Everything heavy is built once per process and kept in a `OnceLock`. Temporary model files
//! are written to `/dev/shm` when it exists (else the system temp dir) and unlinked right after
//! they are opened: the map stays valid, and nothing is left behind.

use deepfm::api::DeepFM;
use deepfm::data::DataError;
use deepfm::data::criteo::{
    CategoricalMode, CriteoConfig, CriteoPreprocessor, Delimiter, IntegerMode,
};
use deepfm::data::movielens::{
    ML100K_GENRES, parse_genres, parse_movies, parse_ratings, parse_users,
};
use deepfm::data::ratings::parse_interactions;
use deepfm::data::stream::{LabelledTsv, LineParser, Streamed};
use deepfm::fixtures::{mixed_small, random_batch, write_random_model};
use deepfm::format::reader::validate_bytes;
use deepfm::format::tensor_shapes;
use deepfm::train::TrainData;
use deepfm::{
    Batch, BatchBuf, Column, Columns, FieldKind, FormatError, Isa, Model, ModelSpec, OpenOptions,
    ScoreError, Scratch, score,
};
use std::borrow::Cow;
use std::io::{BufRead, BufReader};
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
        (&PORTABLE, Isa::portable())
    } else {
        (&BEST, Isa::best())
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
        Isa::portable()
    } else {
        Isa::best()
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

// ---------------------------------------------------------------------------------------------
// Data parsers (targets `movielens`, `criteo`, `ratings`, `labelled_tsv`)
// ---------------------------------------------------------------------------------------------

/// Runs a reader-based parser on `text` twice: as one slice, and through a 7-byte
/// `BufReader` (so lines, `\r\n` pairs and `::` separators straddle buffer refills). Both must
/// give the same result (values compared with `==`, errors by their `Debug` text); returns the
/// first.
fn twice<T: PartialEq>(
    text: &[u8],
    parse: impl Fn(&mut dyn BufRead) -> Result<T, DataError>,
) -> Result<T, DataError> {
    let whole = parse(&mut &text[..]);
    let pieces = parse(&mut BufReader::with_capacity(7, text));
    let same = match (&whole, &pieces) {
        (Ok(a), Ok(b)) => a == b,
        (Err(a), Err(b)) => format!("{a:?}") == format!("{b:?}"),
        _ => false,
    };
    assert!(
        same,
        "the result depends on how the input is buffered ({:?} vs {:?}); input: {:?}",
        whole.as_ref().err(),
        pieces.as_ref().err(),
        String::from_utf8_lossy(text)
    );
    whole
}

/// Lines of `text` as the crate's readers count them: split at `\n`, a final `\n` ends the last
/// line rather than starting an empty one.
fn line_count(text: &[u8]) -> usize {
    let n = text.split(|&b| b == b'\n').count();
    if text.is_empty() || text.ends_with(b"\n") {
        n - 1
    } else {
        n
    }
}

/// A data error names a line that exists and a column from 1, shows at most ~40 characters of
/// the offending text, and formats without panicking.
fn check_data_error(e: &DataError, lines: usize, context: &dyn std::fmt::Debug) {
    let _ = e.to_string();
    if let DataError::Parse {
        line, column, text, ..
    } = e
    {
        assert!(
            (1..=lines.max(1)).contains(line),
            "error on line {line} of {lines}: {e}; input: {context:?}"
        );
        assert!(*column >= 1, "column 0: {e}; input: {context:?}");
        assert!(
            text.chars().count() <= 41,
            "snippet of {} characters; input: {context:?}",
            text.chars().count()
        );
    }
}

/// One `movielens` input: the first byte picks the parser (`% 4`: ratings, users, movies with
/// ML-100k's genre names, `u.genre`), the rest is the file. Checks: no panic; the same result
/// with any read buffering; errors name an existing line; at most one record per line; ratings in
/// `0.5..=5`; ratings written back with the detected separator parse to the same ratings.
/// Returns whether the file parsed.
pub fn check_movielens(data: &[u8]) -> bool {
    let Some((&which, text)) = data.split_first() else {
        return false;
    };
    let lines = line_count(text);
    let context = String::from_utf8_lossy(text);
    let ok = |n: usize| assert!(n <= lines, "{n} records from {lines} lines: {context:?}");
    let result: Result<usize, DataError> = match which % 4 {
        0 => twice(text, |r| parse_ratings(r, "ratings")).map(|ratings| {
            ok(ratings.len());
            for r in &ratings {
                assert!(
                    (0.5..=5.0).contains(&r.rating),
                    "rating {} accepted: {context:?}",
                    r.rating
                );
            }
            // The separator is chosen on the first non-empty line: `::` if it has one.
            let first = text
                .split(|&b| b == b'\n')
                .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
                .find(|l| !l.is_empty())
                .unwrap_or_default();
            let sep = if first.windows(2).any(|w| w == b"::") {
                "::"
            } else {
                "\t"
            };
            let again: String = ratings
                .iter()
                .map(|r| {
                    let (u, i, s, t) = (r.user, r.item, r.rating, r.timestamp);
                    format!("{u}{sep}{i}{sep}{s}{sep}{t}\n")
                })
                .collect();
            let reparsed = parse_ratings(again.as_bytes(), "again")
                .unwrap_or_else(|e| panic!("written-back ratings do not parse: {e}: {again:?}"));
            assert_eq!(reparsed, ratings, "round trip changed ratings: {context:?}");
            ratings.len()
        }),
        1 => twice(text, |r| parse_users(r, "users")).map(|users| {
            ok(users.len());
            users.len()
        }),
        2 => twice(text, |r| parse_movies(r, "movies", &ML100K_GENRES)).map(|movies| {
            ok(movies.len());
            for m in &movies {
                assert!(
                    m.genres.iter().all(|g| !g.contains('|')),
                    "a genre name holds the separator: {context:?}"
                );
            }
            movies.len()
        }),
        _ => twice(text, |r| parse_genres(r, "genres")).map(|genres| {
            ok(genres.len());
            genres.len()
        }),
    };
    match result {
        Ok(_) => true,
        Err(e) => {
            check_data_error(&e, lines, &context);
            false
        }
    }
}

/// Hash buckets per field of the `criteo` target's hashing mode (and its two scoring models).
pub const CRITEO_BUCKETS: u64 = 61;

/// A random model for the Criteo fields of `integers` (hashing into [`CRITEO_BUCKETS`], D = 4,
/// one hidden layer of 8), written once per mode.
fn criteo_model(integers: IntegerMode) -> &'static Model {
    static MODELS: [OnceLock<Model>; 2] = [OnceLock::new(), OnceLock::new()];
    let cell = &MODELS[(integers == IntegerMode::Log1p) as usize];
    cell.get_or_init(|| {
        let pre = CriteoPreprocessor::hashing(criteo_config(integers, Delimiter::Auto))
            .expect("hashing config");
        let path = temp_path("criteo");
        write_random_model(&path, &pre.spec(4, &[8]), BASE_SEED).expect("write a criteo model");
        let model = Model::open(&path).expect("open the criteo model");
        let _ = std::fs::remove_file(&path);
        model
    })
}

fn criteo_config(integers: IntegerMode, delimiter: Delimiter) -> CriteoConfig {
    CriteoConfig {
        integers,
        categoricals: CategoricalMode::Hash,
        min_count: 1,
        buckets: CRITEO_BUCKETS,
        delimiter,
    }
}

/// Every id of `batch` below its field's vocabulary and every numeric value finite: what
/// scoring validates.
fn assert_batch_fits(spec: &ModelSpec, batch: &BatchBuf, context: &dyn std::fmt::Debug) {
    for (i, field) in spec.fields.iter().enumerate() {
        let vocab = field.kind.rows();
        match (batch.column(i), field.kind) {
            (Column::Categorical(ids), FieldKind::Categorical { .. }) => assert!(
                ids.iter().all(|&id| id < vocab),
                "field {}: id out of range; input: {context:?}",
                field.name
            ),
            (Column::Numeric(values), FieldKind::Numeric) => assert!(
                values.iter().all(|v| v.is_finite()),
                "field {}: non-finite value; input: {context:?}",
                field.name
            ),
            (Column::MultiHot { ids, .. }, FieldKind::MultiHot { .. }) => assert!(
                ids.iter().all(|&id| id < vocab),
                "field {}: id out of range; input: {context:?}",
                field.name
            ),
            (c, _) => panic!("field {}: a {} column", field.name, c.kind_name()),
        }
    }
}

/// Row `r` of every column, for comparing two batches.
fn row_debug(batch: &BatchBuf, r: usize) -> String {
    let mut s = String::new();
    for i in 0..batch.num_columns() {
        let cell = match batch.column(i) {
            Column::Categorical(ids) => format!("{}", ids[r]),
            Column::Numeric(v) => format!("{:?}", v[r].to_bits()),
            Column::MultiHot { ids, offsets } => format!("{:?}", &ids[offsets[r]..offsets[r + 1]]),
        };
        s.push_str(&cell);
        s.push('\t');
    }
    s
}

/// Writes `bytes` to a fresh temporary file (removed by the caller).
fn temp_file(tag: &str, bytes: &[u8]) -> PathBuf {
    let path = temp_path(tag);
    std::fs::write(&path, bytes).expect("write a temporary data file");
    path
}

/// One `criteo` input: the first byte is the setup (bit 0: `Log1p` integers, else log buckets;
/// bits 1–2: delimiter auto/tab/comma/auto; bit 3: vocabulary mode fitted on the input itself
/// with `min_count = flags >> 4`, else hashing into [`CRITEO_BUCKETS`]), the rest is the file.
///
/// Checks: no panic; fitting gives the same result with any read buffering; every line the
/// preprocessor accepts either adds exactly one row and one label in `[0, 1]` or nothing and an
/// error naming that line; the rows fit the preprocessor's spec (ids in range, values finite);
/// in hashing mode they score **Ok** on a random model of that spec, every score a probability;
/// and `stream::read_all` over the same file agrees: Ok with the same rows and labels exactly
/// when every line parsed (valid UTF-8 text), an error otherwise. Returns the rows parsed.
pub fn check_criteo(data: &[u8]) -> usize {
    let Some((&flags, bytes)) = data.split_first() else {
        return 0;
    };
    let integers = if flags & 1 != 0 {
        IntegerMode::Log1p
    } else {
        IntegerMode::LogBucket
    };
    let delimiter = [
        Delimiter::Auto,
        Delimiter::Tab,
        Delimiter::Comma,
        Delimiter::Auto,
    ][(flags >> 1 & 3) as usize];
    let hashing = flags & 8 == 0;
    let text = String::from_utf8_lossy(bytes);
    let pre = if hashing {
        CriteoPreprocessor::hashing(criteo_config(integers, delimiter)).expect("hashing config")
    } else {
        let config = CriteoConfig {
            categoricals: CategoricalMode::Vocab,
            min_count: (flags >> 4) as u64,
            ..criteo_config(integers, delimiter)
        };
        match twice(bytes, |r| CriteoPreprocessor::fit_reader(r, "fit", config)) {
            Ok(pre) => pre,
            Err(e) => {
                check_data_error(&e, line_count(bytes), &text);
                return 0;
            }
        }
    };
    let spec = pre.spec(4, &[8]);
    spec.validate()
        .unwrap_or_else(|e| panic!("the preprocessor's spec is invalid: {e}; input: {text:?}"));
    let mut batch = pre.new_batch();
    let mut labels = Vec::new();
    let mut all_parsed = true;
    for (i, line) in text.split('\n').enumerate() {
        let line_no = i + 1;
        if !pre.accepts(line, line_no) {
            continue;
        }
        let before = batch.len();
        match pre.parse_line(line, line_no, &mut batch, &mut labels) {
            Ok(()) => {
                assert_eq!(batch.len(), before + 1, "input: {text:?}");
                assert_eq!(labels.len(), batch.len(), "input: {text:?}");
                let y = labels[before];
                assert!((0.0..=1.0).contains(&y), "label {y}; input: {text:?}");
            }
            Err(e) => {
                all_parsed = false;
                assert_eq!(batch.len(), before, "a refused line added a row: {text:?}");
                assert_eq!(
                    labels.len(),
                    before,
                    "a refused line added a label: {text:?}"
                );
                let _ = e.to_string();
                if let DataError::Parse { line, .. } = e {
                    assert_eq!(line, line_no, "input: {text:?}");
                }
            }
        }
    }
    assert_batch_fits(&spec, &batch, &text);
    if hashing && !batch.is_empty() {
        let model = criteo_model(integers);
        let mut out = vec![0.0f32; batch.len()];
        score(model, &batch, &mut Scratch::new(model), &mut out).unwrap_or_else(|e| {
            panic!("parse_line accepted every row but score refused the batch: {e}; {text:?}")
        });
        assert_probabilities(&out, &text);
    }

    let path = temp_file("criteo", bytes);
    let streamed = deepfm::data::stream::read_all(&path, pre);
    let _ = std::fs::remove_file(&path);
    let utf8 = std::str::from_utf8(bytes).is_ok();
    match streamed {
        Ok((all, all_labels)) => {
            assert!(all_parsed && utf8, "read_all accepted a bad file: {text:?}");
            assert_eq!(all_labels, labels, "read_all labels differ: {text:?}");
            assert_eq!(all.len(), batch.len(), "read_all rows differ: {text:?}");
            for r in 0..all.len() {
                assert_eq!(
                    row_debug(&all, r),
                    row_debug(&batch, r),
                    "row {r}: {text:?}"
                );
            }
        }
        Err(e) => {
            let _ = e.to_string();
            assert!(
                !(all_parsed && utf8),
                "read_all refused a file whose every line parses ({e}): {text:?}"
            );
        }
    }
    batch.len()
}

/// The fitted recommender the `ratings` target scores with: string ids, ratings 1–5 (so the
/// predictions are clamped to `[1, 5]`), trained once per process on a fixed small set.
pub fn ratings_model() -> &'static DeepFM<String, String> {
    static MODEL: OnceLock<DeepFM<String, String>> = OnceLock::new();
    MODEL.get_or_init(|| {
        let mut users = Vec::new();
        let mut items = Vec::new();
        let mut ratings = Vec::new();
        for u in 0..12u32 {
            for i in 0..9u32 {
                if (u + i) % 3 != 0 {
                    users.push(format!("u{u}"));
                    items.push(format!("i{i}"));
                    ratings.push(1.0 + ((u * 7 + i * 3) % 5) as f32);
                }
            }
        }
        DeepFM::builder()
            .embedding_dim(4)
            .deep_layers(&[8])
            .epochs(2)
            .batch_size(16)
            .threads(1)
            .seed(1)
            .fit(&users, &items, &ratings)
            .expect("fit the ratings model")
    })
}

/// One `ratings` input: the first byte's bit 0 asks for pairs (`predict --pairs`: the rating
/// column optional), the rest is the file. Checks: no panic; the same result with any read
/// buffering; errors name an existing line; parallel columns of equal length, ids non-empty,
/// ratings finite, exactly one record per non-blank line but a detected header. Parsed ids
/// then go through the recommender API
/// ([`ratings_model`]; unknown ids use the out-of-vocabulary rows): `batch_predict` gives one
/// score per pair, each in the clamp range `[1, 5]`, equal to `predict` on the same pair;
/// `evaluate` is Ok with finite, non-negative errors; `recommend` gives at most `k` distinct
/// known items. Returns the pairs parsed.
pub fn check_ratings(data: &[u8]) -> usize {
    let Some((&flags, bytes)) = data.split_first() else {
        return 0;
    };
    let pairs_only = flags & 1 != 0;
    let lines = line_count(bytes);
    let context = String::from_utf8_lossy(bytes);
    let parsed = match twice(bytes, |r| parse_interactions(r, "ratings", pairs_only)) {
        Ok(p) => p,
        Err(e) => {
            check_data_error(&e, lines, &context);
            return 0;
        }
    };
    let n = parsed.users.len();
    assert!(n <= lines, "{n} records from {lines} lines: {context:?}");
    // One record per non-blank line but the header: never one more or one fewer.
    let samples = bytes
        .split(|&b| b == b'\n')
        .filter(|l| !String::from_utf8_lossy(l).trim().is_empty())
        .count();
    assert_eq!(
        n + parsed.header.is_some() as usize,
        samples,
        "records and header against non-blank lines: {context:?}"
    );
    assert_eq!(parsed.header.is_some(), parsed.header_reason.is_some());
    assert_eq!(parsed.items.len(), n);
    assert_eq!(parsed.ratings.len(), n);
    assert_eq!(parsed.timestamps.len(), n);
    assert!(
        parsed
            .users
            .iter()
            .chain(&parsed.items)
            .all(|id| !id.is_empty())
    );
    assert!(parsed.ratings.iter().all(|r| r.is_finite()), "{context:?}");
    if n == 0 {
        return 0;
    }

    let model = ratings_model();
    let pairs: Vec<(String, String)> = parsed
        .users
        .iter()
        .cloned()
        .zip(parsed.items.iter().cloned())
        .collect();
    let scores = model
        .batch_predict(&pairs)
        .unwrap_or_else(|e| panic!("batch_predict failed: {e}; input: {context:?}"));
    assert_eq!(scores.len(), n);
    for ((u, i), &s) in pairs.iter().zip(&scores).take(64) {
        assert!(
            (1.0..=5.0).contains(&s),
            "score {s} outside [1, 5]: {context:?}"
        );
        let one = model.predict(u, i);
        assert_eq!(
            one.to_bits(),
            s.to_bits(),
            "predict vs batch_predict: {context:?}"
        );
    }
    let (rmse, mae) = model
        .evaluate(&parsed.users, &parsed.items, &parsed.ratings)
        .unwrap_or_else(|e| panic!("evaluate failed: {e}; input: {context:?}"));
    assert!(rmse.is_finite() && mae.is_finite() && rmse >= 0.0 && mae >= 0.0);
    let k = (flags >> 1) as usize % 12;
    let recs = model
        .recommend(&parsed.users[0], k)
        .unwrap_or_else(|e| panic!("recommend failed: {e}; input: {context:?}"));
    assert!(
        recs.len() <= k,
        "{} recommendations for k = {k}",
        recs.len()
    );
    for (j, item) in recs.iter().enumerate() {
        assert!(
            model.items().get(item).is_some(),
            "unknown item recommended"
        );
        assert!(!recs[..j].contains(item), "item recommended twice");
    }
    n
}

/// Splits `bytes` into lines as `LineReader` does (at `\n`; a final `\n` ends the last line).
fn lines_of(bytes: &[u8]) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        lines.pop();
    }
    lines
}

/// One `labelled_tsv` input: bytes 0 and 1 are the setup, the rest is a file of labelled
/// `mixed_small()` samples (`label\tuser\tage\tgenres\ttags`) streamed by `Streamed` with
/// `LabelledTsv`: byte 0 bit 0 skips bad lines, bits 1–3 give the batch size (1–8), bits 4–7
/// the shuffle buffer (0–15 rows); byte 1 the longest line (`4 × b + 1` bytes, or the 1 MiB
/// default for 255).
///
/// Checks against an independent model of the stream (each line too long or not UTF-8 is bad;
/// blank lines are skipped; the rest go through `LabelledTsv::parse`): with `skip`, the epoch is
/// Ok and emits exactly the parsed samples (as a multiset, and in file order without a buffer),
/// counting the bad lines; without it, Ok exactly when no line is bad. Batches hold at most the
/// batch size and score Ok on the `mixed_small` model, or `NonFiniteScore` on rows with |age|
/// above [`HUGE`]. Returns the samples emitted.
pub fn check_labelled_tsv(data: &[u8]) -> usize {
    let [flags, limit, bytes @ ..] = data else {
        return 0;
    };
    let skip = flags & 1 != 0;
    let batch_size = 1 + (flags >> 1 & 7) as usize;
    let buffer_rows = (flags >> 4) as usize;
    let max_line = if *limit == 255 {
        deepfm::data::stream::DEFAULT_MAX_LINE_BYTES
    } else {
        4 * *limit as usize + 1
    };
    let context = String::from_utf8_lossy(bytes);
    let parser = LabelledTsv::new(mixed_small());

    // The independent model of the stream.
    let mut want = parser.new_batch();
    let mut want_labels = Vec::new();
    let mut bad = 0;
    for (i, line) in lines_of(bytes).into_iter().enumerate() {
        let Some(text) = (line.len() <= max_line)
            .then(|| std::str::from_utf8(line).ok())
            .flatten()
        else {
            bad += 1;
            continue;
        };
        if !parser.accepts(text, i + 1) {
            continue;
        }
        if parser
            .parse(text, i + 1, &mut want, &mut want_labels)
            .is_err()
        {
            bad += 1;
        }
        assert_eq!(want.len(), want_labels.len(), "{context:?}");
    }

    let path = temp_file("labelled", bytes);
    let mut source = Streamed::new(&path, parser, buffer_rows, 7)
        .expect("open the temporary file")
        .skip_bad_lines(skip)
        .max_line_bytes(max_line);
    let model = base_model(false);
    let mut scratch = Scratch::new(model);
    let mut got: Vec<(String, u32)> = Vec::new();
    let result = source.for_each_batch(0, batch_size, &mut |batch, labels| {
        assert!(
            !labels.is_empty() && labels.len() <= batch_size && batch.len() == labels.len(),
            "a batch of {} rows and {} labels (size {batch_size}): {context:?}",
            batch.len(),
            labels.len()
        );
        for (r, y) in labels.iter().enumerate() {
            got.push((row_debug(batch, r), y.to_bits()));
        }
        let mut out = vec![0.0f32; batch.len()];
        match score(model, batch, &mut scratch, &mut out) {
            Ok(()) => assert_probabilities(&out, &context),
            Err(ScoreError::NonFiniteScore { row }) => match batch.column(1) {
                Column::Numeric(ages) => assert!(ages[row].abs() > HUGE, "{context:?}"),
                other => panic!("column 1 is {}", other.kind_name()),
            },
            Err(e) => panic!("a streamed batch did not score: {e}; input: {context:?}"),
        }
        Ok(())
    });
    let _ = std::fs::remove_file(&path);
    let stats = source.stats().clone();
    match result {
        Ok(()) => {
            assert!(
                skip || bad == 0,
                "{bad} bad lines but the epoch is Ok: {context:?}"
            );
            assert_eq!(stats.bad_lines, bad, "bad lines counted: {context:?}");
            let mut expected: Vec<(String, u32)> = (0..want.len())
                .map(|r| (row_debug(&want, r), want_labels[r].to_bits()))
                .collect();
            assert_eq!(stats.samples, expected.len(), "{context:?}");
            if buffer_rows > 0 {
                expected.sort();
                got.sort();
            }
            assert_eq!(got, expected, "streamed samples differ: {context:?}");
        }
        Err(e) => {
            let _ = e.to_string();
            assert!(
                !skip && bad > 0,
                "the epoch failed ({e}) with {bad} bad lines: {context:?}"
            );
        }
    }
    got.len()
}

// ---------------------------------------------------------------------------------------------
// Schema CSV (target `schema`)
// ---------------------------------------------------------------------------------------------

/// The fixed schemas of the `schema` target (picked by the first byte's bits 0–2, when below
/// 6): every kind, header and headerless files, each delimiter mode, hashing and counted
/// vocabularies with `min_count`, renamed columns, both poolings and outputs.
pub const SCHEMAS: [&str; 6] = [
    // Header, delimiter from line 1, counted vocabularies.
    r#"{"label": "y", "fields": [{"name": "c", "kind": "categorical"},
        {"name": "n", "kind": "numeric"}, {"name": "m", "kind": "multi_hot"}]}"#,
    // Header; hashing, log1p, a renamed column, `;` lists with sum pooling, min_count.
    r#"{"label": "click", "fields": [
        {"name": "site", "kind": "categorical", "hash_buckets": 61},
        {"name": "cnt", "kind": "numeric", "transform": "log1p"},
        {"name": "tags", "column": "t", "kind": "multi_hot", "sep": ";", "pooling": "sum",
         "hash_buckets": 17},
        {"name": "u", "kind": "categorical", "min_count": 2}]}"#,
    // Headerless CSV with an ignored column.
    r#"{"label": "y", "columns": ["y", "a", "b", "skip", "c"], "delimiter": ",", "fields": [
        {"name": "a", "kind": "categorical"}, {"name": "b", "kind": "numeric"},
        {"name": "c", "kind": "multi_hot", "sep": "|", "min_count": 2}]}"#,
    // Headerless TSV, linear output (ratings).
    r#"{"label": "r", "columns": ["u", "i", "r"], "delimiter": "\t", "output": "linear",
        "fields": [{"name": "u", "kind": "categorical"},
                   {"name": "i", "kind": "categorical", "hash_buckets": 5}]}"#,
    // Header with `;` delimiter, the label also read as a field, a two-character list separator.
    r#"{"label": "y", "delimiter": ";", "fields": [
        {"name": "y2", "column": "y", "kind": "numeric"},
        {"name": "g", "kind": "multi_hot", "sep": "::", "min_count": 1},
        {"name": "x", "kind": "categorical", "min_count": 3}]}"#,
    // Header, space delimiter, hashed lists.
    r#"{"label": "label", "delimiter": " ", "fields": [
        {"name": "a", "kind": "multi_hot", "sep": ",", "hash_buckets": 7, "pooling": "mean"},
        {"name": "b", "kind": "numeric"}, {"name": "c", "kind": "categorical"}]}"#,
];

/// Models with more embedding rows than this are not written (a schema from the input may ask
/// for billions of hash buckets).
const SCHEMA_MAX_ROWS: u64 = 1 << 16;

/// One `schema` input. Byte 0 is the setup: bits 0–2 below 6 pick one of [`SCHEMAS`] and the
/// rest of the input is the file; 6 or 7 take the schema JSON from the input up to its first NUL
/// byte, the file after it. Bit 3: parse without labels (scoring files). Bit 4: the labelled
/// parser and `Streamed` skip bad lines, compared with `fit_skipping_bad_lines`.
///
/// Checks: no panic; `Schema::from_json` errors are `Config` errors, accepted schemas round-trip
/// through JSON; fitting (`fit_reader`) and `parser_for` give the same result with any read
/// buffering, and their errors name an existing line; the fitted encoder round-trips through
/// JSON as a `Preprocessing`; every line the parser accepts either adds exactly one row and one
/// label (finite; 0 without labels) or nothing and an error naming that line; when the fit
/// succeeded and labels are read, every counted token with `min_count` ≤ 1 has its own id (the
/// fit saw it); the rows fit `encoder.spec` (ids below the vocabulary, values finite) and score
/// Ok on a random model of that spec (or `NonFiniteScore` when a value is above [`HUGE`]), each
/// score a probability for sigmoid output; `stream::read_all` with `Preprocessing::parser` gives
/// the same rows and labels exactly when every line parsed (valid UTF-8); with skipping,
/// `Streamed` skips exactly as many lines as `fit_skipping_bad_lines` did. Returns the rows
/// parsed.
pub fn check_schema(data: &[u8]) -> usize {
    use deepfm::Output;
    use deepfm::data::prep::Preprocessing;
    use deepfm::data::schema::{Schema, SchemaEncoder, SchemaKind};

    let Some((&flags, rest)) = data.split_first() else {
        return 0;
    };
    let unlabelled = flags & 8 != 0;
    let skipping = flags & 16 != 0;
    let (json, bytes): (Cow<str>, &[u8]) = match (flags & 7) as usize {
        i @ 0..=5 => (Cow::Borrowed(SCHEMAS[i]), rest),
        _ => {
            let cut = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            let Ok(json) = std::str::from_utf8(&rest[..cut]) else {
                return 0;
            };
            (Cow::Borrowed(json), rest.get(cut + 1..).unwrap_or_default())
        }
    };
    let schema = match Schema::from_json(&json) {
        Ok(s) => s,
        Err(e) => {
            let _ = e.to_string();
            assert!(matches!(e, DataError::Config(_)), "{e:?}; schema: {json:?}");
            assert!(flags & 7 >= 6, "a fixed schema is refused: {e}");
            return 0;
        }
    };
    let again = serde_json::to_string(&schema).expect("serialize a schema");
    assert_eq!(
        Schema::from_json(&again).as_ref().ok(),
        Some(&schema),
        "the schema does not round-trip: {again}"
    );

    let lines = line_count(bytes);
    let text = String::from_utf8_lossy(bytes);
    let context = (&json, &text);
    if skipping && !unlabelled {
        check_schema_skipping(bytes, &schema, lines, &context);
    }
    let encoder = match twice(bytes, |r| {
        SchemaEncoder::fit_reader(r, "fit", schema.clone())
    }) {
        Ok(e) => e,
        Err(e) => {
            check_data_error(&e, lines, &context);
            return 0;
        }
    };
    let prep = Preprocessing::Schema(encoder.clone());
    let prep_json = serde_json::to_string(&prep).expect("serialize the preprocessing");
    let prep_again: Preprocessing = serde_json::from_str(&prep_json)
        .unwrap_or_else(|e| panic!("the preprocessing does not read back: {e}: {prep_json}"));
    assert_eq!(prep_again, prep, "{context:?}");
    assert_eq!(prep.fields(), encoder.fields(), "{context:?}");

    let labelled = !unlabelled;
    let made = twice(bytes, |r| {
        (encoder.parser_for(r, "parse", labelled)).map(|p| format!("{p:?}"))
    });
    if let Err(e) = made {
        check_data_error(&e, lines, &context);
        return 0;
    }
    let parser = encoder
        .parser_for(bytes, "parse", labelled)
        .expect("the parser was made above");

    let spec = encoder.spec(4, &[8]);
    let mut batch = parser.new_batch();
    let mut labels = Vec::new();
    let mut all_parsed = true;
    for (i, line) in text.split('\n').enumerate() {
        let line_no = i + 1;
        if !parser.accepts(line, line_no) {
            continue;
        }
        let before = batch.len();
        match parser.parse(line, line_no, &mut batch, &mut labels) {
            Ok(()) => {
                assert_eq!(batch.len(), before + 1, "{context:?}");
                assert_eq!(labels.len(), batch.len(), "{context:?}");
                let y = labels[before];
                assert!(y.is_finite(), "label {y}; {context:?}");
                assert!(
                    labelled || y == 0.0,
                    "label {y} without labels; {context:?}"
                );
            }
            Err(e) => {
                all_parsed = false;
                assert_eq!(
                    batch.len(),
                    before,
                    "a refused line added a row: {context:?}"
                );
                assert_eq!(
                    labels.len(),
                    before,
                    "a refused line added a label: {context:?}"
                );
                let _ = e.to_string();
                if let DataError::Parse { line, column, .. } = e {
                    assert_eq!(line, line_no, "{context:?}");
                    assert!(column >= 1, "{context:?}");
                }
            }
        }
    }
    assert_batch_fits(&spec, &batch, &context);
    // The fit counted every token of every line (it refuses a file with a bad line), so a
    // vocabulary keeping tokens seen once knows them all.
    if labelled {
        for (i, f) in schema.fields.iter().enumerate() {
            let counted = f.kind != SchemaKind::Numeric && f.hash_buckets.is_none();
            if !counted || f.min_count.unwrap_or(1) > 1 {
                continue;
            }
            let ids = match batch.column(i) {
                Column::Categorical(ids) => ids,
                Column::MultiHot { ids, .. } => ids,
                Column::Numeric(_) => unreachable!(),
            };
            assert!(
                ids.iter().all(|&id| id != 0),
                "field {}: a token of the training file is out of vocabulary: {context:?}",
                f.name
            );
        }
    }

    // Scoring with a random model of the encoder's spec.
    let small =
        spec.validate().is_ok() && spec.total_rows().is_ok_and(|rows| rows <= SCHEMA_MAX_ROWS);
    if small && !batch.is_empty() {
        let path = temp_path("schema");
        write_random_model(&path, &spec, BASE_SEED).expect("write a schema model");
        let model = Model::open(&path).expect("open the schema model");
        let _ = std::fs::remove_file(&path);
        let mut out = vec![0.0f32; batch.len()];
        let huge = (0..batch.num_columns()).any(|c| match batch.column(c) {
            Column::Numeric(v) => v.iter().any(|x| x.abs() > HUGE),
            _ => false,
        });
        match score(&model, &batch, &mut Scratch::new(&model), &mut out) {
            Ok(()) => {
                if spec.output == Output::Sigmoid {
                    assert_probabilities(&out, &context);
                } else {
                    assert!(out.iter().all(|s| s.is_finite()), "{context:?}");
                }
            }
            Err(ScoreError::NonFiniteScore { .. }) if huge => {}
            Err(e) => panic!("the parsed rows did not score: {e}; {context:?}"),
        }
    } else if flags & 7 < 6 {
        assert!(spec.validate().is_ok(), "a fixed schema's spec is invalid");
    }

    // read_all through `Preprocessing::parser` (the saved preprocessing's path).
    let path = temp_file("schema", bytes);
    let utf8 = std::str::from_utf8(bytes).is_ok();
    let streamed = prep
        .parser(&path, labelled)
        .map_err(deepfm::train::TrainError::from)
        .and_then(|p| deepfm::data::stream::read_all(&path, p));
    match streamed {
        Ok((all, all_labels)) => {
            assert!(
                all_parsed && utf8,
                "read_all accepted a bad file: {context:?}"
            );
            assert_eq!(all_labels, labels, "read_all labels differ: {context:?}");
            assert_eq!(all.len(), batch.len(), "read_all rows differ: {context:?}");
            for r in 0..all.len() {
                assert_eq!(
                    row_debug(&all, r),
                    row_debug(&batch, r),
                    "row {r}: {context:?}"
                );
            }
        }
        Err(e) => {
            let _ = e.to_string();
            assert!(
                !(all_parsed && utf8),
                "read_all refused a file whose every line parses ({e}): {context:?}"
            );
        }
    }

    let _ = std::fs::remove_file(&path);
    batch.len()
}

/// `fit_skipping_bad_lines` and `Streamed::skip_bad_lines` (with the parser of the encoder it
/// fitted) skip the same number of lines; with none skipped, the fit equals `fit_reader`'s, and
/// `fit_reader` works exactly when nothing is skipped.
fn check_schema_skipping(
    bytes: &[u8],
    schema: &deepfm::data::schema::Schema,
    lines: usize,
    context: &dyn std::fmt::Debug,
) {
    use deepfm::data::schema::SchemaEncoder;
    let fitted = SchemaEncoder::fit_reader(bytes, "fit", schema.clone());
    let path = temp_file("schema-skip", bytes);
    let skip_fit = SchemaEncoder::fit_skipping_bad_lines(&path, schema.clone());
    let (encoder, skipped) = match skip_fit {
        Ok(fit) => fit,
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            check_data_error(&e, lines, &context);
            assert!(
                fitted.is_err(),
                "only the skipping fit failed ({e}): {context:?}"
            );
            return;
        }
    };
    assert!(
        skipped <= lines,
        "{skipped} of {lines} lines skipped: {context:?}"
    );
    match &fitted {
        Ok(f) => {
            assert_eq!(
                skipped, 0,
                "fit_reader took a line the skipping fit skipped: {context:?}"
            );
            assert_eq!(f, &encoder, "{context:?}");
        }
        Err(e) => assert!(
            skipped > 0,
            "fit_reader failed ({e}) but nothing was skipped: {context:?}"
        ),
    }
    // The fit placed the columns with line 1, so the parser can too; an empty file has no
    // line 1 (the fit is empty, the parser finds no label column).
    let parser = match encoder.parser(&path, true) {
        Ok(p) => p,
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            assert_eq!(lines, 0, "the fit read line 1, the parser refused it: {e}");
            check_data_error(&e, lines, &context);
            return;
        }
    };
    let mut source = Streamed::new(&path, parser, 0, 0)
        .expect("open the temporary file")
        .skip_bad_lines(true);
    let epoch = source.for_each_batch(0, 64, &mut |_, _| Ok(()));
    let _ = std::fs::remove_file(&path);
    epoch.unwrap_or_else(|e| panic!("a skipping epoch failed: {e}; {context:?}"));
    assert_eq!(
        source.stats().bad_lines,
        skipped,
        "training skips other lines than fitting: {context:?}"
    );
}

//! Helpers shared by the fuzz targets (and by `tests/fuzz_corpus.rs`, which replays the seeds
//! on stable Rust): the base `mixed_small()` model (as bytes and opened), checksum fixers for
//! mutated files, the whole `model_bytes` check, the output invariants, and the whole check of
//! each data-parser target (`check_movielens`, `check_criteo`, `check_ratings`,
//! `check_labelled_tsv`, `check_schema`), one module per target (`model_bytes.rs`,
//! `movielens.rs`, `criteo.rs`, `ratings.rs`, `labelled_tsv.rs`, `schema.rs`) beside the shared
//! `output.rs` (score invariants) and `data.rs` (parser helpers). Only `deepfm`, `serde_json`,
//! `std` and `xxhash_rust` are used, so the integration test can include this file as a module.
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

mod criteo;
mod data;
mod labelled_tsv;
mod model_bytes;
mod movielens;
mod output;
mod ratings;
mod schema;

pub use criteo::{CRITEO_BUCKETS, check_criteo};
use data::*;
pub use labelled_tsv::check_labelled_tsv;
pub use model_bytes::{
    check_model_bytes, fix_file_len, fix_meta_checksum, fix_section_checksums, section_checksum,
};
pub use movielens::check_movielens;
pub use output::{
    HUGE, MODERATE, REFERENCE_TOLERANCE, assert_matches_reference, assert_probabilities,
    assert_probabilities_where,
};
pub use ratings::{check_ratings, ratings_model};
pub use schema::{SCHEMAS, check_schema};

/// Seed of the base model's weights.
pub const BASE_SEED: u64 = 1;

/// Header length, section table entry length, and the section checksum's chunk size (see the
/// doc comment of `deepfm::format`).
pub const HEADER_LEN: usize = 64;
pub const ENTRY_LEN: usize = 64;
pub(crate) const CHECKSUM_CHUNK: usize = 1 << 20;

pub(crate) fn temp_path(tag: &str) -> PathBuf {
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
    let model = Model::open_with(
        &path,
        &OpenOptions {
            isa,
            verify: false,
            mlp: None,
        },
    );
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

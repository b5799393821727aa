//! # deepfm
//!
//! Fast CPU scoring of DeepFM models (Guo et al. 2017) from a memory-mapped model file.
//!
//! The crate is cut in layers, lowest first. Each module uses only itself and the modules before
//! it in this list, so its dependencies run one way and have no cycle (`tests/layers.rs` checks
//! the code against this list; doc links and tests do not count). The modules marked *(train)*
//! are built only with the `train` feature (see [Features](#features)):
//!
//! 1. [`spec`]: what a model *is* (fields, embedding dimension, hidden layers, output), as JSON.
//! 2. `rng` *(train)*: the seeded random number generator of initialisation, dropout, shuffling
//!    and sampling.
//! 3. [`batch`]: the columnar input (ids, values, multi-hot lists) and its check against a spec.
//! 4. [`kernels`]: the numeric kernels (blocked GEMM with fused bias + ReLU, one-row GEMV, FM),
//!    each with a scalar reference, chosen once per model by CPU features.
//! 5. [`format`](mod@format): the model file: its layout, a streaming crash-safe
//!    [`format::ModelWriter`], and a validating reader that hands out zero-copy views of the map.
//! 6. [`infer`]: [`Model`] (immutable, `Send + Sync`, backed by the map), [`Scratch`] (per
//!    thread) and the zero-allocation [`score`] / [`score_parallel`] entry points.
//! 7. [`reference`](mod@reference): a plain f64 forward pass used to check the optimized path.
//! 8. [`reload`]: a hot-swappable handle that serves one model to many threads and swaps in a
//!    new, validated one while they keep scoring.
//! 9. [`metrics`]: AUC, log loss, RMSE, MAE and top-K ranking metrics, accumulated in f64.
//! 10. `train` *(train)*: the trainer (exact gradients, Adam / lazy Adam / Adagrad, batch norm,
//!     dropout), writing the same model file; it defines the training-data interface
//!     (`train::TrainData`) that `data` implements.
//! 11. `data` *(train)*: samples from text: data-set loaders, vocabularies, splits, streamed
//!     training files.
//! 12. `interop` *(train)*: import from and export to safetensors + JSON spec (PyTorch naming).
//! 13. `api` *(train)*: the recommender API of the DeepFM tutorial (`fit`, `predict`,
//!     `batch_predict`, `recommend`, `save`, `load`) over raw user and item ids.
//! 14. `fixtures` *(train)*: benchmark shapes, random models and batches, planted data, for the
//!     demo, tests, benchmarks, examples and fuzzing.
//!
#![cfg_attr(feature = "train", doc = "```")]
// The example writes its model with `fixtures`, which the inference-only build lacks.
#![cfg_attr(not(feature = "train"), doc = "```ignore")]
//! use deepfm::{Batch, Column, Model, Scratch, score};
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("model.dfm");
//! # let mut spec = deepfm::fixtures::mixed_small();
//! # spec.fields.truncate(2); // user (categorical, 500 ids), age (numeric)
//! # deepfm::fixtures::write_random_model(&path, &spec, 1)?;
//! let model = Model::open(&path)?;          // validates; never reads the embedding table
//! let mut scratch = Scratch::new(&model);    // once per thread
//! let (users, ages) = ([3u64, 7], [0.5f32, 1.25]);
//! let columns = [Column::Categorical(&users), Column::Numeric(&ages)];
//! let mut out = [0.0f32; 2];
//! score(&model, &Batch::new(&columns), &mut scratch, &mut out)?; // no heap allocation
//! assert!(out.iter().all(|p| (0.0..=1.0).contains(p)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Features
//!
//! - `train`: the modules marked *(train)* above, and the crates only they use (rand,
//!   indicatif, csv-core, safetensors).
//! - `cli` (default): `train`, and what the `deepfm` command-line tool needs (clap, anyhow,
//!   tempfile).
//!
//! A service that only scores depends on `deepfm = { version = "0.1", default-features = false }`
//! and gets modules 1 and 3–9: the model file, the kernels, the scorer, the reload handle and the
//! metrics, without the trainer's or the tool's crates
//! (`cargo tree -p deepfm --no-default-features -e normal` lists what it pulls in).

// Every public item is documented, and every `unsafe` block says why it is sound; CI runs clippy
// with `-D warnings`, so either lapse fails the build.
#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

// The inference layers: always built.
pub mod batch;
pub mod format;
pub mod infer;
pub mod kernels;
pub mod metrics;
pub mod reference;
pub mod reload;
pub mod spec;

// The trainer and what sits on it: the `train` feature. `rng` and `fixtures` are also built for
// the unit tests of the inference layers, which draw random models and batches from them.
#[cfg(feature = "train")]
pub mod api;
#[cfg(feature = "train")]
pub mod data;
#[cfg(any(test, feature = "train"))]
pub mod fixtures;
#[cfg(feature = "train")]
pub mod interop;
#[cfg(any(test, feature = "train"))]
pub mod rng;
#[cfg(feature = "train")]
pub mod train;

pub use batch::{Batch, BatchBuf, Column, Columns, ScoreError, Value};
pub use format::{FormatError, ModelWriter};
pub use infer::{Model, OpenOptions, PairedScorer, Scratch, ScratchPool, score, score_parallel};
pub use kernels::{Isa, IsaError, IsaKind, IsaSource};
pub use spec::{
    Field, FieldKind, MlpPrecision, ModelSpec, Output, Pooling, SpecError, TablePrecision,
};

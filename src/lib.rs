//! # deepfm
//!
//! Fast CPU scoring of DeepFM models (Guo et al. 2017) from a memory-mapped model file.
//!
//! The crate is cut along the path data takes:
//!
//! - [`spec`]: what a model *is* (fields, embedding dimension, hidden layers, output), as JSON.
//! - [`format`](mod@format): the model file: its layout, a streaming crash-safe [`format::ModelWriter`], and a
//!   validating reader that hands out zero-copy views of the map.
//! - [`kernels`]: the numeric kernels (blocked GEMM with fused bias + ReLU, one-row GEMV, FM),
//!   each with a scalar reference, chosen once per model by CPU features.
//! - [`infer`]: [`Model`] (immutable, `Send + Sync`, backed by the map), [`Scratch`] (per thread)
//!   and the zero-allocation [`score`] / [`score_parallel`] entry points.
//! - [`metrics`]: AUC, log loss, RMSE and MAE, accumulated in f64, for evaluating predictions.
//! - [`reference`](mod@reference): a plain f64 forward pass used to check the optimized path.
//! - [`interop`]: import from and export to safetensors + JSON spec (PyTorch naming).
//! - [`train`]: the trainer (exact gradients, Adam / lazy Adam / Adagrad, batch norm, dropout),
//!   writing the same model file.
//! - [`api`]: the recommender API of the DeepFM tutorial (`fit`, `predict`, `batch_predict`,
//!   `recommend`, `save`, `load`) over raw user and item ids.
//! - [`reload`]: a hot-swappable handle that serves one model to many threads and swaps in a
//!   new, validated one while they keep scoring.
//! - [`random`]: random models and batches of a given shape, for demos, tests and benchmarks.
//!
//! ```
//! use deepfm::{Batch, Column, Model, Scratch, score};
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("model.dfm");
//! # let mut spec = deepfm::random::mixed_small();
//! # spec.fields.truncate(2); // user (categorical, 500 ids), age (numeric)
//! # deepfm::random::write_random_model(&path, &spec, 1)?;
//! let model = Model::open(&path)?;          // validates; never reads the embedding table
//! let mut scratch = Scratch::new(&model);    // once per thread
//! let (users, ages) = ([3u64, 7], [0.5f32, 1.25]);
//! let columns = [Column::Categorical(&users), Column::Numeric(&ages)];
//! let mut out = [0.0f32; 2];
//! score(&model, &Batch::new(&columns), &mut scratch, &mut out)?; // no heap allocation
//! assert!(out.iter().all(|p| (0.0..=1.0).contains(p)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod api;
pub mod batch;
pub mod data;
pub mod format;
pub mod infer;
pub mod interop;
pub mod kernels;
pub mod metrics;
pub mod random;
pub mod reference;
pub mod reload;
pub mod spec;
pub mod train;

pub use batch::{Batch, BatchBuf, Column, Columns, Value};
pub use format::{FormatError, ModelWriter};
pub use infer::{
    Model, OpenOptions, PairedScorer, ScoreError, Scratch, ScratchPool, score, score_parallel,
};
pub use kernels::{Isa, IsaError, IsaSource};
pub use spec::{Field, FieldKind, ModelSpec, Output, Pooling, SpecError};

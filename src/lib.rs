//! # deepfm
//!
//! Fast CPU scoring of DeepFM models (Guo et al. 2017) from a memory-mapped model file.
//!
//! The crate is cut along the path data takes:
//!
//! - [`spec`]: what a model *is* (fields, embedding dimension, hidden layers, output), as JSON.
//! - [`format`]: the model file: its layout, a streaming crash-safe [`format::ModelWriter`], and a
//!   validating reader that hands out zero-copy views of the map.
//! - [`kernels`]: the numeric kernels (blocked GEMM with fused bias + ReLU, fused gather + FM),
//!   each with a scalar reference, chosen once per model by CPU features.
//! - [`infer`]: [`Model`] (immutable, `Send + Sync`, backed by the map), [`Scratch`] (per thread)
//!   and the zero-allocation [`score`] / [`score_parallel`] entry points.
//! - [`reference`]: a plain f64 forward pass used to check the optimized path.
//! - [`interop`]: import from and export to safetensors + JSON spec (PyTorch naming).
//! - [`random`]: random models and batches of a given shape, for demos, tests and benchmarks.
//!
//! ```no_run
//! use deepfm::{Model, Scratch, BatchBuf, score};
//! let model = Model::open("model.dfm")?;
//! let mut scratch = Scratch::new(&model);
//! let mut batch = BatchBuf::new(model.spec());
//! // ... fill one column per field, e.g. batch.push_row(...) ...
//! let mut out = vec![0.0f32; batch.len()];
//! score(&model, &batch.as_batch(), &mut scratch, &mut out)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod batch;
pub mod bench;
pub mod data;
pub mod format;
pub mod infer;
pub mod interop;
pub mod kernels;
pub mod random;
pub mod reference;
pub mod spec;

pub use batch::{Batch, BatchBuf, Column, Columns, Value};
pub use format::{FormatError, ModelWriter};
pub use infer::{Model, OpenOptions, ScoreError, Scratch, ScratchPool, score, score_parallel};
pub use kernels::Isa;
pub use spec::{Field, FieldKind, ModelSpec, Output, Pooling, SpecError};

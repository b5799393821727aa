//! Reading samples from text.
//!
//! - [`tsv`]: the scoring input of `deepfm score`: one sample a line, one column per field.
//! - [`holdout`]: a validation split cut from a training file as it streams.
//! - [`movielens`]: the MovieLens 100K / 1M files as GroupLens distributes them, and
//!   [`movielens::features`] to turn them into samples.
//! - [`TokenIndex`]: dense indices for raw tokens in order of first appearance (ids, zip
//!   prefixes, genre names).
//! - [`vocab`]: raw tokens to dense ids: counted vocabularies with a minimum count, or hashing.
//! - [`criteo`]: the Criteo display-advertising files, preprocessed as the benchmarks do.
//! - [`schema`]: generic CSV/TSV click data described by a JSON schema (label column, field
//!   kinds, hashing or counted vocabularies per field).
//! - [`prep`]: the fitted preprocessing (schema or Criteo) saved with a click model.
//! - [`ratings`]: `user, item[, rating[, timestamp]]` files with string ids, format detected.
//! - [`split`]: random, per-user leave-one-out by time, and time-based train/test splits.
//! - [`stream`]: training from a file larger than memory, shuffled through a bounded buffer.

pub mod criteo;
pub(crate) mod error;
pub mod holdout;
pub mod movielens;
pub mod prep;
pub mod ratings;
pub mod schema;
pub mod split;
pub mod stream;
mod token_index;
pub mod tsv;
pub mod vocab;

pub use error::DataError;
pub use token_index::TokenIndex;

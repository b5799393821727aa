//! Reading samples from text.
//!
//! - [`tsv`]: the scoring input of `deepfm score`: one sample a line, one column per field.
//! - [`movielens`]: the MovieLens 100K / 1M files as GroupLens distributes them, and
//!   [`movielens::features`] to turn them into samples.
//! - [`Vocab`]: dense indices for raw tokens (ids, zip prefixes, genre names).

mod error;
pub mod movielens;
pub mod tsv;
mod vocab;

pub use error::DataError;
pub use vocab::Vocab;

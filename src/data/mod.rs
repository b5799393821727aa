//! Reading samples from text.
//!
//! - [`tsv`]: the scoring input of `deepfm score`: one sample a line, one column per field.
//! - [`movielens`]: the MovieLens 100K / 1M files as GroupLens distributes them.

mod error;
pub mod movielens;
pub mod tsv;

pub use error::DataError;

//! Reading samples from text.
//!
//! - [`tsv`]: the scoring input of `deepfm score`: one sample a line, one column per field.

pub mod tsv;

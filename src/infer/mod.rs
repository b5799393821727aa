//! Scoring: [`Model`] (immutable, shared), [`Scratch`] (per thread), [`score`] and
//! [`score_parallel`].
//!
//! A score is `out(bias + Σ first-order + FM pairwise + MLP(x))` where `x` is the concatenation
//! of the field embeddings and `out` is the sigmoid or the (optionally clamped) identity.
//! Batches are processed in blocks of [`BLOCK_ROWS`] rows so that the activations of a block stay
//! in cache whatever the batch size; a [`Scratch`] holds one block's buffers, allocated once.

mod int8;
mod model;
mod paired;
mod score;
mod scratch;

pub use crate::batch::ScoreError;
pub use model::{Model, OpenOptions};
pub use paired::{PairedScorer, SPIN_AFTER_CALL, SPLIT_MIN_BYTES};
pub use score::{score, score_parallel};
pub use scratch::{Scratch, ScratchPool};

/// Rows per internal block.
pub const BLOCK_ROWS: usize = 144;

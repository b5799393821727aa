//! What a fit is told: the tutorial's settings and the task.

use super::NegativeSampling;
use crate::train::EmbeddingOptimizer;
use serde::{Deserialize, Serialize};

/// What the model learns from the third column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// `Rating` when the values take more than two distinct values, `Click` when they are 0
    /// and 1, `Implicit` when they are all the same (positives only).
    Auto,
    /// Explicit ratings: MSE, predictions on the rating scale (clamped to the range seen).
    Rating,
    /// Implicit feedback: every pair is a positive; negatives are sampled each epoch; BCE.
    Implicit,
    /// Clicks: BCE on 0/1 labels.
    Click,
}

/// The largest embedding table (rows × (dimension + 1) weights, first-order weights included)
/// that the default optimizer updates whole at every step (Adam); larger tables use lazy Adam.
/// Whole-table Adam generalises better on rating data (MovieLens-1M, ids only, one split:
/// test RMSE 0.866 against 0.877 with lazy Adam); at 4M weights its pass costs about twice a
/// step of the tutorial's network, a bound `tune`'s largest embeddings stay under on
/// MovieLens-1M with side features.
pub const DENSE_ADAM_MAX_WEIGHTS: u64 = 1 << 22;

/// The tutorial's settings, with its names and defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// A name, kept with the model.
    pub name: String,
    /// Embedding dimension (32).
    pub embedding_dim: usize,
    /// Hidden layer widths (256, 128, 64).
    pub deep_layers: Vec<usize>,
    /// Dropout after each hidden layer (0.5: the tutorial's 0.3 overfits; 0.5 had the lower
    /// validation loss on MovieLens-100k and -1M, ids only and with side features, but for a tie
    /// on ML-1M with side features).
    pub dropout: f32,
    /// Batch norm after each hidden layer (true).
    pub use_bn: bool,
    /// Passes over the data (20).
    pub epochs: usize,
    /// Samples per step (256).
    pub batch_size: usize,
    /// Adam learning rate (0.001).
    pub learning_rate: f32,
    /// Per-epoch progress on stderr (false).
    pub verbose: bool,
    /// Seed of everything random (0).
    pub seed: u64,
    /// Training threads (all cores).
    pub threads: usize,
    /// What to learn (`auto`).
    pub task: Task,
    /// L2 penalty on the embeddings of each batch (0).
    pub l2: f32,
    /// L2 penalty on the layer weights and the output unit (0; see
    /// [`TrainConfig::l2_dense`](crate::train::TrainConfig::l2_dense)).
    #[serde(default, skip_serializing_if = "crate::train::is_zero")]
    pub l2_dense: f32,
    /// Decoupled (AdamW) weight decay of the embeddings and first-order weights (0: off; see
    /// [`TrainConfig::weight_decay_embedding`](crate::train::TrainConfig::weight_decay_embedding)).
    #[serde(default, skip_serializing_if = "crate::train::is_zero")]
    pub weight_decay_embedding: f32,
    /// Decoupled (AdamW) weight decay of the layer weights and output unit (0: off; see
    /// [`TrainConfig::weight_decay_dense`](crate::train::TrainConfig::weight_decay_dense)).
    #[serde(default, skip_serializing_if = "crate::train::is_zero")]
    pub weight_decay_dense: f32,
    /// Early stopping: after this many epochs without a better validation loss, training
    /// stops and keeps the best epoch's weights, so `epochs` is the most it trains (3). It
    /// validates on the validation set given to the fit, or else on `valid_fraction` of the
    /// data held out of training. `None` trains every epoch on all the data.
    pub patience: Option<usize>,
    /// Share of the data held out for validation when `patience` is set and no validation
    /// set is given (0.1).
    pub valid_fraction: f32,
    /// After early stopping on a share held out of the data, train again from the start on
    /// all of it, for as many epochs as the best one and with the same learning rates (true).
    /// The held-out share is then not lost to the model: on MovieLens this lowered the mean
    /// test RMSE of 2–3 splits by 0.003–0.004, for about twice the training time. No effect
    /// with a validation set of the caller's (the model already trains on all it is given) or
    /// without `patience`.
    /// Models saved before this setting existed read as `false`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refit: bool,
    /// Optimizer of the embeddings and first-order weights (`None`, the default: Adam over the
    /// whole table when it holds at most [`DENSE_ADAM_MAX_WEIGHTS`] weights, as PyTorch's
    /// Adam does with `nn.Embedding`, lazy Adam over the rows of each batch above that, where
    /// a pass over the table at every step would cost more than the batch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_optimizer: Option<EmbeddingOptimizer>,
    /// Multiply the learning rates by this after each epoch without a better validation loss
    /// (PyTorch's `ReduceLROnPlateau` with patience 0; needs `patience`) (none).
    #[serde(default)]
    pub lr_decay: Option<f32>,
    /// Implicit feedback: negatives per positive (4).
    pub negatives: usize,
    /// Implicit feedback: how negatives are drawn (uniform).
    pub negative_sampling: NegativeSampling,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            name: "DeepFM".into(),
            embedding_dim: 32,
            deep_layers: vec![256, 128, 64],
            dropout: 0.5,
            use_bn: true,
            epochs: 20,
            batch_size: 256,
            learning_rate: 1e-3,
            verbose: false,
            seed: 0,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            task: Task::Auto,
            l2: 0.0,
            l2_dense: 0.0,
            weight_decay_embedding: 0.0,
            weight_decay_dense: 0.0,
            patience: Some(3),
            valid_fraction: 0.1,
            refit: true,
            lr_decay: None,
            embedding_optimizer: None,
            negatives: 4,
            negative_sampling: NegativeSampling::Uniform,
        }
    }
}

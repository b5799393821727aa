//! What a training run is told: loss, optimizers, regularisation, initialisation, threads.
//!
//! Defaults follow the implementations people compare against (PyTorch's `Adam`, `BatchNorm1d`
//! and `SparseAdam`, DeepCTR's DeepFM) so that a model trained here and one trained there with
//! the same settings mean the same thing.

use super::error::TrainError;
use serde::{Deserialize, Serialize};

/// The training loss (the mean over the batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Binary cross-entropy on the logit (clicks, implicit feedback); labels in `[0, 1]`.
    /// Pair it with `Output::Sigmoid`.
    Bce,
    /// Mean squared error of the raw output (explicit ratings on their own scale). Pair it with
    /// `Output::Linear`; a clamp in the spec applies when scoring, not to the loss.
    Mse,
}

/// How the embedding table and the first-order weights are updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbeddingOptimizer {
    /// Adam over every row at every step (rows not in the batch have gradient zero but their
    /// moments still decay): what `torch.optim.Adam` does with dense embedding gradients.
    /// Costs a pass over the whole table per step.
    Adam,
    /// Adam that touches only the rows in the batch (`torch.optim.SparseAdam`, TF `LazyAdam`):
    /// bias correction uses the global step. The default: the cost is per batch, not per table.
    LazyAdam,
    /// Adagrad (`acc += g²; w -= lr · g / (√acc + eps)`), sparse by nature: the CTR classic.
    Adagrad,
}

/// Batch normalisation after each hidden layer (Linear → BN → ReLU → Dropout, as DeepCTR),
/// with PyTorch's conventions: biased batch variance to normalise, unbiased variance in the
/// running estimate, `running = (1 − momentum) · running + momentum · batch`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BatchNorm {
    /// Weight of the new batch in the running statistics (PyTorch default 0.1).
    pub momentum: f32,
    /// Added to the variance before the square root (PyTorch default 1e-5).
    pub eps: f32,
}

impl Default for BatchNorm {
    fn default() -> Self {
        BatchNorm {
            momentum: 0.1,
            eps: 1e-5,
        }
    }
}

/// How embedding rows start.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbeddingInit {
    /// Normal with mean 0 and this standard deviation.
    Normal {
        /// Standard deviation.
        std: f32,
    },
    /// Uniform in `[-limit, limit]`.
    Uniform {
        /// Half-width.
        limit: f32,
    },
}

/// Settings of the trainer itself (one step); the epoch loop has its own [`super::FitConfig`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// The loss.
    pub loss: Loss,
    /// Adam learning rate of the dense weights (layers, batch norm, output unit, global bias).
    pub learning_rate: f32,
    /// Learning rate of the embeddings and first-order weights (`None`: `learning_rate`).
    pub embedding_learning_rate: Option<f32>,
    /// Adam's β₁ and β₂.
    pub betas: (f32, f32),
    /// Adam's and Adagrad's ε.
    pub eps: f32,
    /// Optimizer of the embedding table and first-order weights.
    pub embedding_optimizer: EmbeddingOptimizer,
    /// L2 penalty `λ/2 · ‖e‖²` on the embedding rows and first-order weights of the rows in
    /// the batch (each row once per step, however often it occurs).
    pub l2_embedding: f32,
    /// L2 penalty `λ/2 · ‖W‖²` on the layer weights and the output unit (not on biases or batch
    /// norm), added to the gradient like PyTorch's `weight_decay`.
    pub l2_dense: f32,
    /// Decoupled weight decay `λ` (AdamW, Loshchilov & Hutter) of the embedding rows and
    /// first-order weights: before each update, every row the embedding optimizer updates at
    /// that step is multiplied by `1 − lr · λ` (`lr` the embedding learning rate in effect).
    /// That is every row with [`EmbeddingOptimizer::Adam`] (as `torch.optim.AdamW`), the rows
    /// in the batch with the sparse optimizers. Unlike `l2_embedding` it bypasses the
    /// optimizer's per-coordinate scaling, so rare and frequent rows shrink at the same rate.
    /// 0 (the default) is off.
    #[serde(skip_serializing_if = "is_zero")]
    pub weight_decay_embedding: f32,
    /// Decoupled weight decay `λ` (AdamW) of the layer weights and the output unit (not
    /// biases or batch norm, like `l2_dense`): multiplied by `1 − lr · λ` before each update.
    /// 0 (the default) is off.
    #[serde(skip_serializing_if = "is_zero")]
    pub weight_decay_dense: f32,
    /// Dropout probability after each hidden layer (inverted dropout, training only).
    pub dropout: f32,
    /// Batch norm after each hidden layer, or none.
    pub batch_norm: Option<BatchNorm>,
    /// Clip the gradient (all parameters together) to this L2 norm. Clipping needs the norm
    /// of every gradient before any weight moves, so with it set the hidden layers' Adam
    /// update runs as a pass of its own after the backward pass, instead of inside the
    /// weight-gradient GEMM (the results are the same either way when nothing is clipped).
    pub clip_norm: Option<f32>,
    /// Initial embedding rows (first-order weights start at 0; hidden layers use He-normal,
    /// the output unit Glorot-uniform, biases 0, batch norm γ = 1 and β = 0).
    pub embedding_init: EmbeddingInit,
    /// Initial global bias (e.g. the mean rating for `Mse`, the log-odds of the base rate for
    /// `Bce`).
    pub initial_bias: f32,
    /// Seed of the initialisation and the dropout masks.
    pub seed: u64,
    /// Threads of the trainer's own pool (≥ 1). Results do not depend on it (see the module
    /// documentation).
    pub threads: usize,
}

/// Serde: an unset weight decay is left out, so that configurations (and the checkpoints and
/// recommender metadata that record them) written before it existed stay the same, and load.
pub(crate) fn is_zero(x: &f32) -> bool {
    *x == 0.0
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            loss: Loss::Bce,
            learning_rate: 1e-3,
            embedding_learning_rate: None,
            betas: (0.9, 0.999),
            eps: 1e-8,
            embedding_optimizer: EmbeddingOptimizer::LazyAdam,
            l2_embedding: 0.0,
            l2_dense: 0.0,
            weight_decay_embedding: 0.0,
            weight_decay_dense: 0.0,
            dropout: 0.0,
            batch_norm: None,
            clip_norm: None,
            embedding_init: EmbeddingInit::Normal { std: 0.01 },
            initial_bias: 0.0,
            seed: 0,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

impl TrainConfig {
    /// Checks every setting; a bad one is named in the error.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |what: &str, value: String| {
            Err(TrainError::Config(format!(
                "{what} = {value} is out of range"
            )))
        };
        let positive = |x: f32| x.is_finite() && x > 0.0;
        if !positive(self.learning_rate) {
            return bad("learning_rate", self.learning_rate.to_string());
        }
        if let Some(lr) = self.embedding_learning_rate
            && !positive(lr)
        {
            return bad("embedding_learning_rate", lr.to_string());
        }
        let (b1, b2) = self.betas;
        if !(0.0..1.0).contains(&b1) || !(0.0..1.0).contains(&b2) {
            return bad("betas", format!("({b1}, {b2})"));
        }
        if !positive(self.eps) {
            return bad("eps", self.eps.to_string());
        }
        for (name, l2) in [
            ("l2_embedding", self.l2_embedding),
            ("l2_dense", self.l2_dense),
        ] {
            if !(l2.is_finite() && l2 >= 0.0) {
                return bad(name, l2.to_string());
            }
        }
        for (name, wd, lr) in [
            (
                "weight_decay_embedding",
                self.weight_decay_embedding,
                self.embedding_lr(),
            ),
            (
                "weight_decay_dense",
                self.weight_decay_dense,
                self.learning_rate,
            ),
        ] {
            // `1 − lr · λ` must stay a shrinking factor.
            if !(wd.is_finite() && wd >= 0.0 && lr * wd < 1.0) {
                return bad(name, format!("{wd} (with learning rate {lr})"));
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad("dropout", self.dropout.to_string());
        }
        if let Some(bn) = self.batch_norm
            && (!(0.0..=1.0).contains(&bn.momentum) || !positive(bn.eps))
        {
            return bad("batch_norm", format!("{bn:?}"));
        }
        if let Some(c) = self.clip_norm
            && !positive(c)
        {
            return bad("clip_norm", c.to_string());
        }
        let init_ok = match self.embedding_init {
            EmbeddingInit::Normal { std } => std.is_finite() && std >= 0.0,
            EmbeddingInit::Uniform { limit } => limit.is_finite() && limit >= 0.0,
        };
        if !init_ok {
            return bad("embedding_init", format!("{:?}", self.embedding_init));
        }
        if !self.initial_bias.is_finite() {
            return bad("initial_bias", self.initial_bias.to_string());
        }
        if self.threads == 0 || self.threads > 1024 {
            return bad("threads", self.threads.to_string());
        }
        Ok(())
    }

    /// The embedding learning rate in effect.
    pub fn embedding_lr(&self) -> f32 {
        self.embedding_learning_rate.unwrap_or(self.learning_rate)
    }
}

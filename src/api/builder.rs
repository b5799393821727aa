//! [`DeepFMBuilder`]: the tutorial's settings, changed one at a time, then a fit.

use super::{ApiError, DeepFM, Id, Interactions, NegativeSampling, Settings, Task};
use crate::train::Checkpointing;
use std::path::{Path, PathBuf};

/// Builds a [`DeepFM`]: set what differs from the tutorial's defaults, then [`DeepFMBuilder::fit`].
#[derive(Debug, Clone, Default)]
pub struct DeepFMBuilder {
    settings: Settings,
    checkpoint: Option<PathBuf>,
    resume: bool,
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty),* $(,)?) => {
        $($(#[$doc])* pub fn $name(mut self, value: $ty) -> Self {
            self.settings.$name = value;
            self
        })*
    };
}

impl DeepFMBuilder {
    setters! {
        /// Embedding dimension.
        embedding_dim: usize,
        /// Dropout after each hidden layer.
        dropout: f32,
        /// Batch norm after each hidden layer.
        use_bn: bool,
        /// The most passes over the data (early stopping may end sooner).
        epochs: usize,
        /// Samples per step.
        batch_size: usize,
        /// Adam learning rate.
        learning_rate: f32,
        /// Per-epoch progress on stderr.
        verbose: bool,
        /// Seed of everything random.
        seed: u64,
        /// Training threads.
        threads: usize,
        /// What to learn.
        task: Task,
        /// L2 penalty on the embeddings of each batch.
        l2: f32,
        /// L2 penalty `λ/2 · ‖W‖²` on the hidden layers' weights and the output unit (not
        /// biases or batch norm), added to their gradients like PyTorch's `weight_decay`.
        l2_dense: f32,
        /// Decoupled (AdamW) weight decay `λ` of the embeddings and first-order weights: before
        /// each update, the rows the update touches are multiplied by `1 − lr · λ`, whatever
        /// their gradients (unlike [`DeepFMBuilder::l2`], rare and frequent ids shrink at the
        /// same rate). 0 (the default) is off; `lr · λ` must stay below 1, or `fit` fails.
        weight_decay_embedding: f32,
        /// Decoupled (AdamW) weight decay `λ` of the hidden layers' weights and the output
        /// unit (not biases or batch norm): multiplied by `1 − lr · λ` before each update.
        /// 0 (the default) is off; `lr · λ` must stay below 1, or `fit` fails.
        weight_decay_dense: f32,
        /// Early stopping: epochs without a better validation loss before training stops
        /// and keeps the best epoch's weights (3; `None`: every epoch, on all the data).
        patience: Option<usize>,
        /// Share of the data held out for early stopping when no validation set is given.
        valid_fraction: f32,
        /// After early stopping on the held-out share, train again on all the data for the
        /// best epoch's number of epochs (true; see [`Settings::refit`]).
        refit: bool,
        /// Learning-rate decay on plateau: the factor applied after each epoch without a
        /// better validation loss (`None`: constant learning rate).
        lr_decay: Option<f32>,
        /// Optimizer of the embeddings (`None`: Adam for tables up to
        /// [`super::DENSE_ADAM_MAX_WEIGHTS`] weights, lazy Adam above).
        embedding_optimizer: Option<crate::train::EmbeddingOptimizer>,
        /// Implicit feedback: negatives per positive.
        negatives: usize,
        /// Implicit feedback: how negatives are drawn.
        negative_sampling: NegativeSampling,
    }

    /// A name kept with the model.
    pub fn name(mut self, name: &str) -> Self {
        self.settings.name = name.to_string();
        self
    }

    /// Hidden layer widths.
    pub fn deep_layers(mut self, widths: &[usize]) -> Self {
        self.settings.deep_layers = widths.to_vec();
        self
    }

    /// The settings so far.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Writes a training checkpoint to `path` after every epoch, crash-safely (see
    /// [`crate::train::checkpoint`]).
    pub fn checkpoint(mut self, path: impl AsRef<Path>) -> Self {
        self.checkpoint = Some(path.as_ref().to_path_buf());
        self
    }

    /// With [`DeepFMBuilder::checkpoint`]: if the checkpoint exists, `fit` goes on from it
    /// (the same data and settings give the same model as an uninterrupted fit; a checkpoint
    /// of other settings or data shapes is an error). Without a checkpoint path, no effect.
    pub fn resume(mut self, resume: bool) -> Self {
        self.resume = resume;
        self
    }

    /// Trains on `(user_ids[k], item_ids[k], ratings[k])` triples and returns the fitted model.
    pub fn fit<U: Id, I: Id>(
        self,
        user_ids: &[U],
        item_ids: &[I],
        ratings: &[f32],
    ) -> Result<DeepFM<U, I>, ApiError> {
        self.fit_interactions(Interactions::new(user_ids, item_ids, ratings))
    }

    /// Trains on interactions with optional side features and validation set (see
    /// [`Interactions`]).
    pub fn fit_interactions<U: Id, I: Id>(
        self,
        data: Interactions<'_, U, I>,
    ) -> Result<DeepFM<U, I>, ApiError> {
        let checkpoint = self.checkpoint.map(|path| Checkpointing {
            path,
            resume: self.resume,
        });
        DeepFM::train(self.settings, checkpoint.as_ref(), data, None, None)
    }
}

impl DeepFM<u64, u64> {
    /// A builder with the tutorial's defaults.
    pub fn builder() -> DeepFMBuilder {
        DeepFMBuilder::default()
    }
}

use crate::batch::ScoreError;
use crate::format::FormatError;
use crate::spec::SpecError;
use thiserror::Error;

/// Ways training can fail.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TrainError {
    /// A setting is out of range.
    #[error("training configuration: {0}")]
    Config(String),
    /// The kernels cannot be chosen: `DEEPFM_ISA` holds an unknown name, or it or
    /// [`super::Trainer::with_isa`] asks for an instruction set this CPU lacks.
    #[error(transparent)]
    Isa(#[from] crate::kernels::IsaError),
    /// The model spec is invalid.
    #[error("model spec: {0}")]
    Spec(#[from] SpecError),
    /// The spec and the configuration do not fit together (e.g. MSE with a sigmoid output).
    #[error("{0}")]
    Mismatch(String),
    /// A batch does not fit the model (wrong columns, an id out of range, a non-finite value).
    #[error("batch: {0}")]
    Batch(#[from] ScoreError),
    /// The label count differs from the batch's row count.
    #[error("{found} labels for a batch of {expected} rows")]
    LabelCount {
        /// Rows in the batch.
        expected: usize,
        /// Labels given.
        found: usize,
    },
    /// A label is not finite, or outside `[0, 1]` for binary cross-entropy.
    #[error("row {row}: label {value} is not valid for this loss")]
    BadLabel {
        /// Row in the batch.
        row: usize,
        /// The label.
        value: f32,
    },
    /// The loss or a gradient became NaN or infinite (learning rate too high?). The weights
    /// are left as they were before the step.
    #[error("training diverged at step {step}: the loss is not finite")]
    Diverged {
        /// The step (1-based) that diverged.
        step: u64,
    },
    /// Writing the model file failed.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// A checkpoint could not be loaded (damaged, or of another run).
    #[error(transparent)]
    Checkpoint(#[from] super::checkpoint::CheckpointError),
    /// Reading the training data failed, with the data source's own error, whose message this
    /// is (the crate's readers give a `deepfm::data::DataError`, which names file, line and
    /// field; [`Box::downcast`] or `downcast_ref` recovers it). A [`super::TrainData`] source or
    /// a [`super::BatchSink`] returns any error of its own this way.
    #[error(transparent)]
    Data(Box<dyn std::error::Error + Send + Sync>),
}

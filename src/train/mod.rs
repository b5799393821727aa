//! Training a DeepFM: exact gradients, Adam (dense) with Adam, lazy Adam or Adagrad for the
//! embeddings, batch norm, dropout, BCE and MSE, written to the model file the inference core
//! reads.
//!
//! - [`TrainConfig`]: loss, optimizers, regularisation, initialisation, seed, threads.
//! - [`Trainer`]: the parameters and optimizer state; [`Trainer::step`] trains on one batch,
//!   [`Trainer::predict`] scores in evaluation mode, [`Trainer::write`] exports (batch norm
//!   folded into the layer weights).
//! - [`LogisticRegression`]: the first-order part alone, the baseline on click data.
//! - [`fit`]: epochs over a data source with validation, early stopping (restoring the best
//!   weights) and learning-rate decay on plateau; [`fit_checkpointed`] also writes a
//!   [`checkpoint`] after every epoch and resumes from it.
//!
//! ## Determinism
//! A run is a function of the seed, the configuration and the order of the batches: **the
//! thread count does not change any result, bit for bit.** Every parallel split is over rows
//! of a matrix product (each element is computed by the same instructions however rows are
//! split), every sum over the batch (bias and batch-norm statistics, gradient columns, the
//! per-row embedding gradients) runs over rows in order on one thread, and dropout masks come
//! from one random stream per block of 64 rows. What does change results is the instruction
//! set (`Isa`): AVX2 + FMA and the portable kernels round differently.
//!
//! ## Memory
//! The trainer holds the embedding table and its optimizer state in memory (3 × the table for
//! Adam and lazy Adam, 2 × for Adagrad); the data are streamed (see [`crate::data`]).

mod backward;
pub mod checkpoint;
mod config;
mod data;
mod error;
mod fit;
mod forward;
mod fused;
mod logistic;
mod optim;
mod params;
mod regularize;
mod sparse;
mod table;
mod workspace;

#[cfg(test)]
mod gradcheck;

pub use checkpoint::{CheckpointError, Checkpointing};
pub(crate) use config::is_zero;
pub use config::{BatchNorm, EmbeddingInit, EmbeddingOptimizer, Loss, TrainConfig};
pub use data::InMemory;
pub use error::TrainError;
pub use fit::{
    BatchSink, EpochReport, FitConfig, FitObserver, FitReport, Plateau, TrainData, best_validation,
    fit, fit_checkpointed, fit_observed, validation_loss,
};
pub use logistic::LogisticRegression;
pub use params::{Dense, Params};
pub use table::Table;

use crate::batch::{Columns, validate};
use crate::kernels::Isa;
use crate::kernels::gather::FieldPlan;
use crate::kernels::gemm::PackedMatrix;
use crate::spec::{ModelSpec, Output};
use forward::Mode;
use fused::Regularization;
use optim::{AdamStep, DenseAdam, EmbeddingState};
use sparse::RowGrads;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use workspace::Workspace;

/// A model being trained: parameters, optimizer state and reusable buffers.
///
/// ```
/// use deepfm::train::{Loss, TrainConfig, Trainer};
/// use deepfm::{Batch, Column, Model};
/// let spec = deepfm::ModelSpec::from_json(
///     r#"{"fields":[{"name":"user","kind":"categorical","vocab":10},
///                  {"name":"item","kind":"categorical","vocab":20}],
///         "embedding_dim":4,"hidden":[8],"output":"sigmoid"}"#)?;
/// let mut trainer = Trainer::new(spec, TrainConfig { threads: 1, ..TrainConfig::default() })?;
/// let (users, items) = ([1u64, 2, 3], [4u64, 5, 6]);
/// let columns = [Column::Categorical(&users), Column::Categorical(&items)];
/// let loss = trainer.step(&Batch::new(&columns), &[1.0, 0.0, 1.0])?;
/// assert!(loss.is_finite());
/// # let dir = tempfile::tempdir()?;
/// let path = trainer.write(dir.path().join("m.dfm"))?;   // what the inference core opens
/// let model = Model::open(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Trainer {
    spec: ModelSpec,
    config: TrainConfig,
    isa: Isa,
    pool: Arc<rayon::ThreadPool>,
    offsets: Vec<u64>,
    /// The fields as the gather shared with scoring reads them (kind and first row).
    fields: Vec<FieldPlan>,
    params: Params,
    grads: Dense,
    /// Embedding-row gradients of the last batch, one per field.
    row_grads: Vec<RowGrads>,
    adam: DenseAdam,
    embedding_state: EmbeddingState,
    /// Hidden layers packed for the forward GEMM, refreshed after every update.
    packed: Vec<PackedMatrix>,
    /// Hidden layers' weights packed transposed for the backward `dX = dZ · W`, refreshed
    /// after every update.
    packed_wt: Vec<PackedMatrix>,
    ws: Workspace,
    /// Steps taken (the Adam step count; also seeds dropout).
    step: u64,
    /// Multiplier of both learning rates (learning-rate decay on plateau).
    lr_scale: f32,
}

/// One empty packed matrix per hidden layer, for `Trainer::repack` to fill.
fn empty_per_layer(layers: usize) -> Vec<PackedMatrix> {
    (0..layers)
        .map(|_| PackedMatrix::pack(&[], &[], 0, 0))
        .collect()
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("spec", &self.spec)
            .field("config", &self.config)
            .field("isa", &self.isa)
            .field("step", &self.step)
            .finish_non_exhaustive()
    }
}

impl Trainer {
    /// A trainer with freshly initialised parameters (from `config.seed`), on the best kernels
    /// this CPU supports (`DEEPFM_ISA` overrides, as for scoring: see [`Isa::detect`]).
    ///
    /// # Errors
    /// As [`Trainer::with_isa`], and [`TrainError::Isa`] if `DEEPFM_ISA` holds an unknown name
    /// or one this CPU lacks.
    pub fn new(spec: ModelSpec, config: TrainConfig) -> Result<Trainer, TrainError> {
        Trainer::with_isa(spec, config, Isa::detect()?)
    }

    /// As [`Trainer::new`], on the given kernels.
    ///
    /// # Errors
    /// An invalid spec or configuration, a loss that does not fit the output, or a table too
    /// large to train in memory. (`isa` is a token of an instruction set this CPU has.)
    pub fn with_isa(spec: ModelSpec, config: TrainConfig, isa: Isa) -> Result<Trainer, TrainError> {
        spec.validate()?;
        config.validate()?;
        if let Some(field) = spec
            .fields
            .iter()
            .find(|f| !f.kind.is_trainable() || f.table.is_some())
        {
            return Err(TrainError::Mismatch(format!(
                "field {f:?}: the trainer trains categorical, numeric, dense and sum- or \
                 mean-pooled multi-hot fields with tables of their own; max pooling, a \
                 separate first-order pooling, padding ids, per-id weights and shared tables \
                 are for serving imported models",
                f = field.name
            )));
        }
        if spec.mlp != crate::MlpPrecision::F32 {
            return Err(TrainError::Mismatch(format!(
                "the spec's MLP is {}: the trainer trains f32 models; quantize the trained file \
                 (`deepfm quantize --mlp {0}`)",
                spec.mlp.name()
            )));
        }
        if spec.table != crate::TablePrecision::F32 {
            return Err(TrainError::Mismatch(format!(
                "the spec's table is {}: the trainer trains f32 tables; quantize the trained \
                 file (`deepfm quantize --table {0}`)",
                spec.table.name()
            )));
        }
        match (config.loss, spec.output) {
            (Loss::Bce, Output::Sigmoid) | (Loss::Mse, Output::Linear) => {}
            (loss, output) => {
                return Err(TrainError::Mismatch(format!(
                    "loss {loss:?} does not go with output {output:?} (BCE needs sigmoid, MSE linear)"
                )));
            }
        }
        let rows = spec.total_rows()?;
        let elements = rows.checked_mul(spec.embedding_dim as u64);
        // Table, two optimizer moments: refuse what cannot be addressed here.
        if elements.is_none_or(|e| e.saturating_mul(3) > isize::MAX as u64 / 4) {
            return Err(TrainError::Config(format!(
                "an embedding table of {rows} rows × {} is too large to train in memory",
                spec.embedding_dim
            )));
        }
        let rows = rows as usize;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.threads)
            .build()
            .map_err(|e| TrainError::Config(format!("thread pool: {e}")))?;
        let pool = Arc::new(pool);
        let params = Params::init(&spec, &config, rows);
        let grads = Dense(params.dense.0.iter().map(|t| vec![0.0; t.len()]).collect());
        let adam = DenseAdam::new(&params.dense);
        let embedding_state =
            EmbeddingState::new(config.embedding_optimizer, rows, spec.embedding_dim);
        let ws = Workspace::new(&spec, config.threads, config.dropout > 0.0);
        let mut trainer = Trainer {
            offsets: spec.row_offsets(),
            fields: FieldPlan::of(&spec),
            row_grads: (0..spec.fields.len())
                .map(|_| RowGrads::new(spec.embedding_dim))
                .collect(),
            packed: empty_per_layer(spec.hidden.len()),
            packed_wt: empty_per_layer(spec.hidden.len()),
            spec,
            config,
            isa,
            pool,
            params,
            grads,
            adam,
            embedding_state,
            ws,
            step: 0,
            lr_scale: 1.0,
        };
        trainer.repack();
        Ok(trainer)
    }

    /// The model's shape.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// The current parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Replaces the parameters (e.g. the best ones kept by early stopping). Optimizer state is
    /// kept.
    ///
    /// # Panics
    /// If `params` has another shape than this trainer's.
    pub fn set_params(&mut self, params: Params) {
        assert_eq!(params.embedding.len(), self.params.embedding.len());
        assert!(
            params
                .dense
                .0
                .iter()
                .zip(&self.params.dense.0)
                .all(|(a, b)| a.len() == b.len())
        );
        self.params = params;
        self.repack();
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Multiplies both learning rates by `factor` from now on (learning-rate decay).
    pub fn scale_learning_rate(&mut self, factor: f32) {
        self.lr_scale *= factor;
    }

    /// Sets the dense learning rate in effect, and the embeddings' in proportion (as
    /// [`Trainer::scale_learning_rate`] moves both).
    pub fn set_learning_rate(&mut self, rate: f32) {
        self.lr_scale = rate / self.config.learning_rate;
    }

    /// The dense learning rate in effect.
    pub fn learning_rate(&self) -> f32 {
        self.config.learning_rate * self.lr_scale
    }

    /// One optimisation step on a batch; returns the batch's mean loss (before the update).
    ///
    /// The batch is validated like a scoring batch (columns, ids, values), and the labels
    /// must be finite (and in `[0, 1]` for BCE). On an error, nothing has changed.
    pub fn step<C: Columns + Sync + ?Sized>(
        &mut self,
        batch: &C,
        labels: &[f32],
    ) -> Result<f64, TrainError> {
        let m = self.check(batch, labels)?;
        let pool = Arc::clone(&self.pool);
        pool.install(|| self.step_validated(batch, labels, m))
    }

    fn step_validated<C: Columns + Sync + ?Sized>(
        &mut self,
        batch: &C,
        labels: &[f32],
        m: usize,
    ) -> Result<f64, TrainError> {
        let loss = self.forward_and_loss(batch, labels, m);
        if !loss.is_finite() {
            return Err(TrainError::Diverged {
                step: self.step + 1,
            });
        }
        // Without clipping, a hidden layer's weights need only their own gradients: Adam
        // updates them as the weight-gradient GEMM produces them (`fused`). Clipping needs
        // the norm of every gradient first.
        let fused = self.config.clip_norm.is_none();
        let step = AdamStep::new(self.learning_rate(), &self.config, self.step + 1);
        let reg = Regularization {
            l2: self.config.l2_dense,
            keep: self.dense_decay(self.learning_rate()),
        };
        self.backward(batch, m, fused.then_some((step, reg)));
        self.update_running_stats(m);
        self.regularize_and_clip(fused);
        let lr = self.config.embedding_lr() * self.lr_scale;
        self.decay_weights(self.learning_rate(), lr, fused);
        self.step += 1;
        // The forward GEMM's packed weights are refreshed as the layers are updated.
        let shapes = self.spec.layer_shapes();
        self.adam.step_and_pack(
            &mut self.params.dense,
            &self.grads,
            step,
            &mut self.packed,
            &shapes,
            fused,
        );
        if !fused {
            self.repack_transposed();
        }
        let embedding_step = AdamStep::new(lr, &self.config, self.step);
        self.embedding_state.step(
            &mut self.params,
            &self.row_grads,
            &self.offsets,
            lr,
            embedding_step,
        );
        Ok(loss)
    }

    /// Forward (training mode) and backward over a validated batch: fills `self.grads` and
    /// `self.row_grads`, returns the mean loss. Nothing of the model changes (not even the
    /// batch-norm running statistics: see `update_running_stats`).
    #[cfg(test)]
    pub(crate) fn gradients<C: Columns + Sync + ?Sized>(
        &mut self,
        batch: &C,
        labels: &[f32],
        m: usize,
    ) -> f64 {
        let loss = self.forward_and_loss(batch, labels, m);
        self.backward(batch, m, None);
        loss
    }

    /// The training-mode forward pass and the mean loss, with `∂loss/∂logit` in `ws.dlogit`.
    fn forward_and_loss<C: Columns + Sync + ?Sized>(
        &mut self,
        batch: &C,
        labels: &[f32],
        m: usize,
    ) -> f64 {
        self.forward(batch, m, Mode::Train);
        backward::loss_and_gradient(
            self.config.loss,
            &self.ws.logit[..m],
            labels,
            &mut self.ws.dlogit[..m],
        )
    }

    /// Scores a batch in evaluation mode (running batch-norm statistics, no dropout), with
    /// the output transform and clamp of the spec: what the exported model file scores.
    pub fn predict<C: Columns + Sync + ?Sized>(
        &mut self,
        batch: &C,
        out: &mut [f32],
    ) -> Result<(), TrainError> {
        let m = validate(&self.spec, batch, out.len())?;
        self.forward_eval(batch, m);
        let (output, clamp) = (self.spec.output, self.spec.clamp);
        for (o, &logit) in out.iter_mut().zip(&self.ws.logit[..m]) {
            *o = output.activate(clamp, logit);
        }
        Ok(())
    }

    /// Mean loss of a batch in evaluation mode (no update).
    pub fn evaluate_loss<C: Columns + Sync + ?Sized>(
        &mut self,
        batch: &C,
        labels: &[f32],
    ) -> Result<f64, TrainError> {
        let m = self.check(batch, labels)?;
        self.forward_eval(batch, m);
        Ok(backward::loss_and_gradient(
            self.config.loss,
            &self.ws.logit[..m],
            labels,
            &mut self.ws.dlogit[..m],
        ))
    }

    /// The evaluation-mode logits of `m` validated rows into `ws.logit`, on the trainer's pool.
    fn forward_eval<C: Columns + Sync + ?Sized>(&mut self, batch: &C, m: usize) {
        let pool = Arc::clone(&self.pool);
        pool.install(|| self.forward(batch, m, Mode::Eval));
    }

    /// Writes the model file the inference core reads, batch norm folded into the layers
    /// (streaming, crash-safe: temp file, fsync, rename).
    pub fn write(&self, path: impl AsRef<Path>) -> Result<PathBuf, TrainError> {
        let eps = self.config.batch_norm.map(|bn| bn.eps);
        Ok(self.params.write(&self.spec, eps, path.as_ref(), None)?)
    }

    /// As [`Trainer::write`], with `metadata` (JSON: e.g. the preprocessing that turns raw data
    /// into this model's samples) in the file's metadata section, so model and metadata are
    /// replaced together by one rename.
    pub fn write_with_metadata(
        &self,
        path: impl AsRef<Path>,
        metadata: String,
    ) -> Result<PathBuf, TrainError> {
        let eps = self.config.batch_norm.map(|bn| bn.eps);
        Ok(self
            .params
            .write(&self.spec, eps, path.as_ref(), Some(metadata))?)
    }

    /// Writes the trainer's whole state — parameters, batch-norm statistics, optimizer state,
    /// step count, learning-rate scale — to a checkpoint at `path`, crash-safely (see
    /// [`checkpoint`]). For loops that call [`Trainer::step`] themselves;
    /// [`fit_checkpointed`] writes its own checkpoints, which also hold the epoch loop's state.
    pub fn write_checkpoint(&self, path: impl AsRef<Path>) -> Result<(), TrainError> {
        let state = checkpoint::FitState::default();
        checkpoint::write(path.as_ref(), self, &checkpoint::trainer_only(), &state)
    }

    /// Restores a state written by [`Trainer::write_checkpoint`]: the next steps are those the
    /// writing trainer would have taken. This trainer must have the same spec and
    /// configuration (any thread count). A damaged checkpoint, one of another run, or one
    /// written by [`fit_checkpointed`] is a [`CheckpointError`]; if reading a tensor fails, the
    /// parameters are left partly overwritten.
    pub fn read_checkpoint(&mut self, path: impl AsRef<Path>) -> Result<(), TrainError> {
        checkpoint::read(path.as_ref(), self, &checkpoint::trainer_only())?;
        Ok(())
    }

    fn check<C: Columns + ?Sized>(&self, batch: &C, labels: &[f32]) -> Result<usize, TrainError> {
        let m = validate(&self.spec, batch, usize::MAX)?;
        if labels.len() != m {
            return Err(TrainError::LabelCount {
                expected: m,
                found: labels.len(),
            });
        }
        let ok = |y: f32| match self.config.loss {
            Loss::Bce => (0.0..=1.0).contains(&y),
            Loss::Mse => y.is_finite(),
        };
        if let Some(row) = labels.iter().position(|&y| !ok(y)) {
            return Err(TrainError::BadLabel {
                row,
                value: labels[row],
            });
        }
        Ok(m)
    }

    fn repack(&mut self) {
        let shapes = self.spec.layer_shapes();
        for (l, packed) in self.packed.iter_mut().enumerate() {
            let (k, n) = shapes[l];
            let t = &self.params.dense.0;
            packed.repack(&t[Dense::layer(l)], &t[Dense::layer(l) + 1], n, k);
        }
        self.repack_transposed();
    }

    /// Packs every hidden layer's weights transposed for the backward `dX = dZ · W`.
    fn repack_transposed(&mut self) {
        let shapes = self.spec.layer_shapes();
        for (l, packed) in self.packed_wt.iter_mut().enumerate() {
            let (k, n) = shapes[l];
            packed.repack_transposed(&self.params.dense.0[Dense::layer(l)], k, n);
        }
    }
}

#[cfg(test)]
mod tests;

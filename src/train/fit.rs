//! The epoch loop: batches from a [`TrainData`], validation after each epoch, early stopping
//! that restores the best weights, learning-rate decay on plateau, and checkpoints.

use super::checkpoint::{self, Checkpointing, FitState};
use super::{TrainError, Trainer};
use crate::batch::{BatchBuf, Columns};
use std::time::Instant;

/// What a [`TrainData`] source calls with each batch and its labels.
pub type BatchSink<'a> = dyn FnMut(&BatchBuf, &[f32]) -> Result<(), TrainError> + 'a;

/// Training data that hands out batches, once per epoch (re-reading or re-shuffling as it
/// sees fit; the epoch number lets a source shuffle differently every epoch).
pub trait TrainData {
    /// Calls `f` with every batch of the epoch (`batch_size` rows, the last one may be short).
    fn for_each_batch(
        &mut self,
        epoch: usize,
        batch_size: usize,
        f: &mut BatchSink<'_>,
    ) -> Result<(), TrainError>;
}

/// Learning-rate decay when the validation loss stops improving (PyTorch's
/// `ReduceLROnPlateau` in `min` mode).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plateau {
    /// Multiply the learning rates by this (0 < factor < 1).
    pub factor: f32,
    /// Epochs without improvement before a decay.
    pub patience: usize,
    /// Do not decay the dense learning rate below this.
    pub min_lr: f32,
}

impl Plateau {
    /// Decay by `factor` after every epoch without a better validation loss (patience 0),
    /// down to a learning rate of 1e-6: what `--lr-decay` and `Settings::lr_decay` ask for.
    pub fn each_epoch(factor: f32) -> Self {
        Plateau {
            factor,
            patience: 0,
            min_lr: 1e-6,
        }
    }
}

/// The epoch loop's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct FitConfig {
    /// Maximum number of passes over the training data.
    pub epochs: usize,
    /// Rows per step.
    pub batch_size: usize,
    /// Stop after this many epochs without a better validation loss, and restore the best
    /// weights (needs validation data).
    pub patience: Option<usize>,
    /// Learning-rate decay on plateau (needs validation data).
    pub plateau: Option<Plateau>,
    /// The dense learning rate of each epoch, from the first (empty: the trainer's own, moved
    /// only by `plateau`). A refit on all the data replays the rates its validated run used;
    /// epochs past the end of the list keep the last rate set.
    pub learning_rates: Vec<f32>,
}

impl Default for FitConfig {
    fn default() -> Self {
        FitConfig {
            epochs: 10,
            batch_size: 256,
            patience: None,
            plateau: None,
            learning_rates: Vec::new(),
        }
    }
}

/// What one epoch did.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochReport {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss over the epoch's steps (training mode, before each update).
    pub train_loss: f64,
    /// Mean validation loss (evaluation mode), when validation data were given.
    pub valid_loss: Option<f64>,
    /// Samples trained on.
    pub samples: usize,
    /// Wall time of the epoch's training steps (not validation).
    pub seconds: f64,
    /// Dense learning rate during the epoch.
    pub learning_rate: f32,
}

/// What a whole run did.
#[derive(Debug, Clone, PartialEq)]
pub struct FitReport {
    /// One report per epoch run.
    pub epochs: Vec<EpochReport>,
    /// The epoch whose weights the trainer holds at the end (the best one when validating).
    pub best_epoch: usize,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
}

/// Mean loss over a validation set, in chunks of 4,096 rows (evaluation mode).
pub fn validation_loss(
    trainer: &mut Trainer,
    valid: &BatchBuf,
    labels: &[f32],
) -> Result<f64, TrainError> {
    const CHUNK: usize = 4096;
    let mut chunk = BatchBuf::new(trainer.spec());
    let (mut total, rows) = (0.0, valid.rows());
    for start in (0..rows).step_by(CHUNK) {
        let end = (start + CHUNK).min(rows);
        chunk.clear();
        for r in start..end {
            chunk
                .push_from(valid, r)
                .map_err(|e| TrainError::Data(Box::new(e)))?;
        }
        total += trainer.evaluate_loss(&chunk, &labels[start..end])? * (end - start) as f64;
    }
    Ok(total / rows.max(1) as f64)
}

/// What [`fit_observed`] tells an observer (a progress bar, a logger) as training goes.
pub trait FitObserver {
    /// After every step of epoch `epoch`: samples trained on so far in the epoch and their
    /// mean loss.
    fn on_step(&mut self, epoch: usize, samples: usize, running_loss: f64) {
        let _ = (epoch, samples, running_loss);
    }
    /// After every epoch (and its validation).
    fn on_epoch(&mut self, report: &EpochReport) {
        let _ = report;
    }

    /// Asked after each epoch's `on_epoch`: `false` ends the fit there, as early stopping
    /// does (the best epoch's weights are kept when validating). A search uses it to drop a
    /// trial that is doing worse than the others did at the same epoch.
    fn keep_going(&mut self) -> bool {
        true
    }
}

/// An epoch callback is an observer.
impl<F: FnMut(&EpochReport)> FitObserver for F {
    fn on_epoch(&mut self, report: &EpochReport) {
        self(report)
    }
}

/// Trains for up to `config.epochs` epochs, calling `on_epoch` after each. With validation
/// data, early stopping (if `patience` is set) restores the weights of the best epoch.
pub fn fit(
    trainer: &mut Trainer,
    train: &mut dyn TrainData,
    valid: Option<(&BatchBuf, &[f32])>,
    config: &FitConfig,
    on_epoch: &mut dyn FnMut(&EpochReport),
) -> Result<FitReport, TrainError> {
    fit_observed(trainer, train, valid, config, &mut |e: &EpochReport| {
        on_epoch(e)
    })
}

/// As [`fit`], reporting every step and epoch to `observer`.
pub fn fit_observed(
    trainer: &mut Trainer,
    train: &mut dyn TrainData,
    valid: Option<(&BatchBuf, &[f32])>,
    config: &FitConfig,
    observer: &mut dyn FitObserver,
) -> Result<FitReport, TrainError> {
    fit_checkpointed(trainer, train, valid, config, None, observer)
}

/// As [`fit_observed`], with a checkpoint (see [`super::checkpoint`]) written crash-safely to
/// `checkpoint.path` after every epoch. With `checkpoint.resume` and an existing file, the run
/// first loads it and goes on after its last epoch: given the same data, it ends with the same
/// model as a run that was never interrupted. The trainer must have been created with the same
/// spec and configuration (any thread count), and `config` must have the same batch size,
/// patience and plateau (`epochs` may be larger, to train longer); a checkpoint of another run
/// is [`super::CheckpointError::Mismatch`]. A run that already ended (all epochs, or early
/// stopping) resumes to its end state without training.
pub fn fit_checkpointed(
    trainer: &mut Trainer,
    train: &mut dyn TrainData,
    valid: Option<(&BatchBuf, &[f32])>,
    config: &FitConfig,
    checkpoint: Option<&Checkpointing>,
    observer: &mut dyn FitObserver,
) -> Result<FitReport, TrainError> {
    if config.batch_size == 0 || config.epochs == 0 {
        return Err(TrainError::Config(
            "epochs and batch_size must be at least 1".into(),
        ));
    }
    if let Some((v, labels)) = valid
        && v.rows() != labels.len()
    {
        return Err(TrainError::LabelCount {
            expected: v.rows(),
            found: labels.len(),
        });
    }
    if let Some(p) = config.plateau
        && !(p.factor > 0.0 && p.factor < 1.0 && p.min_lr >= 0.0)
    {
        return Err(TrainError::Config(format!(
            "learning-rate decay factor {} must lie strictly between 0 and 1 (min_lr {} ≥ 0)",
            p.factor, p.min_lr
        )));
    }
    if let Some(rate) = config
        .learning_rates
        .iter()
        .find(|r| !(r.is_finite() && **r > 0.0))
    {
        return Err(TrainError::Config(format!(
            "learning rate {rate} in the per-epoch schedule must be positive and finite"
        )));
    }
    if valid.is_none() && (config.patience.is_some() || config.plateau.is_some()) {
        return Err(TrainError::Config(
            "early stopping and plateau decay need validation data".into(),
        ));
    }
    let mut state = match checkpoint {
        Some(c) if c.resume && c.path.exists() => checkpoint::read(&c.path, trainer, config)?,
        _ => FitState::default(),
    };
    while !state.stopped && state.epoch < config.epochs {
        let epoch = state.epoch + 1;
        if let Some(&rate) = config.learning_rates.get(epoch - 1) {
            trainer.set_learning_rate(rate);
        }
        let started = Instant::now();
        let (mut loss_sum, mut samples) = (0.0, 0usize);
        let learning_rate = trainer.learning_rate();
        train.for_each_batch(epoch, config.batch_size, &mut |batch, labels| {
            let loss = trainer.step(batch, labels)?;
            loss_sum += loss * labels.len() as f64;
            samples += labels.len();
            observer.on_step(epoch, samples, loss_sum / samples as f64);
            Ok(())
        })?;
        let seconds = started.elapsed().as_secs_f64();
        let valid_loss = match valid {
            Some((v, labels)) => Some(validation_loss(trainer, v, labels)?),
            None => None,
        };
        let epoch_report = EpochReport {
            epoch,
            train_loss: loss_sum / samples.max(1) as f64,
            valid_loss,
            samples,
            seconds,
            learning_rate,
        };
        observer.on_epoch(&epoch_report);
        state.reports.push(epoch_report);
        state.epoch = epoch;
        if let Some(loss) = valid_loss {
            end_of_epoch(trainer, config, &mut state, loss);
        }
        if !observer.keep_going() {
            state.stopped = true;
        }
        if let Some(c) = checkpoint {
            checkpoint::write(&c.path, trainer, config, &state)?;
        }
    }
    let mut report = FitReport {
        best_epoch: state.epoch,
        stopped_early: state.stopped && state.epoch < config.epochs,
        epochs: state.reports,
    };
    if let Some(params) = state.best_params {
        let best_epoch = best_epoch(&report);
        if best_epoch != report.epochs.len() {
            trainer.set_params(params);
        }
        report.best_epoch = best_epoch;
    }
    Ok(report)
}

/// Early stopping and plateau decay after an epoch with validation loss `loss`.
fn end_of_epoch(trainer: &mut Trainer, config: &FitConfig, state: &mut FitState, loss: f64) {
    if state.best_loss.is_none_or(|b| loss < b) {
        state.best_loss = Some(loss);
        state.since_best = 0;
        state.since_decay = 0;
        if config.patience.is_some() {
            state.best_params = Some(trainer.params().clone());
        }
    } else {
        state.since_best += 1;
        state.since_decay += 1;
    }
    if let Some(p) = config.plateau
        && state.since_decay > p.patience
        && trainer.learning_rate() * p.factor >= p.min_lr
    {
        trainer.scale_learning_rate(p.factor);
        state.since_decay = 0;
    }
    if let Some(patience) = config.patience
        && state.since_best >= patience
    {
        state.stopped = true;
    }
}

/// The 1-based epoch with the lowest validation loss (the first, on ties).
fn best_epoch(report: &FitReport) -> usize {
    best_validation(&report.epochs).map_or(0, |(epoch, _)| epoch)
}

/// The epoch with the lowest validation loss, and that loss (the first such epoch on ties;
/// a loss that is not a number never wins): `None` if no epoch was validated.
///
/// ```
/// use deepfm::train::{EpochReport, best_validation};
/// let e = |epoch, valid_loss| EpochReport {
///     epoch, train_loss: 1.0, valid_loss, samples: 10, seconds: 0.1, learning_rate: 1e-3,
/// };
/// let run = [e(1, Some(0.5)), e(2, Some(0.4)), e(3, Some(0.4)), e(4, Some(f64::NAN)), e(5, None)];
/// assert_eq!(best_validation(&run), Some((2, 0.4)));
/// assert_eq!(best_validation(&run[4..]), None);
/// ```
pub fn best_validation(epochs: &[EpochReport]) -> Option<(usize, f64)> {
    epochs
        .iter()
        .filter_map(|e| e.valid_loss.map(|loss| (e.epoch, loss)))
        .filter(|(_, loss)| !loss.is_nan())
        .fold(None, |best, (epoch, loss)| match best {
            Some((_, b)) if b <= loss => best,
            _ => Some((epoch, loss)),
        })
}

//! [`DeepFMBuilder::tune`]: a search over the settings that matter, within a time budget.
//!
//! Every trial fits on the same training part and early-stops on the same validation part,
//! both cut from the training data the search is given (`valid_fraction` of it, by the
//! builder's seed), so trials are compared on data none of them trained on and the caller's
//! test data are never seen. The first trial is the builder's own settings; the next few are
//! drawn at random from the search space, and from then on half of the trials change one or
//! two settings of the best trial so far, the other half are drawn afresh (random search
//! with local refinement). Each trial's epoch cap is cut to what the remaining budget allows,
//! estimated from the time per epoch of the trials before it, so the search ends near its
//! budget; a trial that could not run at least [`MIN_EPOCHS`] epochs is not started. A trial
//! doing worse than the earlier trials' median at the same epoch is stopped there (the median
//! stopping rule), so the budget goes to more trials.

use super::{ApiError, DeepFM, DeepFMBuilder, EpochReport, Id, Interactions, Settings, Task};
use crate::rng::Rng;
use serde::Serialize;
use std::time::{Duration, Instant};

/// The fewest epochs a trial is started with (fewer would compare undertrained models).
pub const MIN_EPOCHS: usize = 3;

/// Trials drawn wholly at random before the search starts to refine the best.
const EXPLORE_FIRST: usize = 4;

/// How long a search may take, and how many trials at most.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TuneOptions {
    /// Wall time of the whole search. The first trial (the builder's settings) always runs to
    /// its end; later trials are sized to fit what is left.
    pub budget: Duration,
    /// Stop after this many trials even if time is left (`None`: only the budget).
    pub max_trials: Option<usize>,
}

/// One fit of the search.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    /// 1-based.
    pub number: usize,
    /// The settings it trained with (`epochs` is the cap the budget allowed).
    pub settings: Settings,
    /// What it learned (`auto` resolved).
    pub task: Task,
    /// Its best validation loss (MSE for ratings, BCE for clicks and implicit feedback).
    pub valid_loss: f64,
    /// The epoch whose weights it kept.
    pub best_epoch: usize,
    /// Epochs it trained.
    pub epochs: usize,
    /// Wall time of the fit, validation included.
    pub seconds: f64,
    /// Whether it was stopped for doing worse than the median of the trials before it at the
    /// same epoch (the median stopping rule, from epoch [`MIN_EPOCHS`] on).
    pub pruned: bool,
}

impl Trial {
    /// The validation loss on the scale users read: RMSE for ratings, the BCE itself else.
    pub fn valid_metric(&self) -> f64 {
        if self.task == Task::Rating {
            self.valid_loss.sqrt()
        } else {
            self.valid_loss
        }
    }
}

/// What a search found: the best model and every trial.
#[derive(Debug)]
pub struct Tuned<U: Id, I: Id> {
    /// The model of the trial with the lowest validation loss: with the builder's `refit`
    /// (the default), its settings trained again on all the data for its best epoch's number
    /// of epochs (after the budget; its `history` is the refit's), else the trial's own fit.
    pub best: DeepFM<U, I>,
    /// All trials, in the order they ran.
    pub trials: Vec<Trial>,
    /// Index into `trials` of the best one.
    pub best_index: usize,
}

impl DeepFMBuilder {
    /// Searches embedding size, layer widths, dropout, weight decay, learning rate, its decay
    /// and batch size for the lowest validation loss within `options.budget`, starting from
    /// this builder's settings (which also fix the task, seed, threads, patience and
    /// validation share). `on_trial` is called after each trial with it and whether it is the
    /// best so far. Needs early stopping (`patience` set): the validation part it uses is
    /// what the trials are compared on. Checkpointing is not used by the search.
    ///
    /// ```
    /// use deepfm::api::{DeepFM, TuneOptions};
    /// # let users: Vec<u32> = (0..600).map(|i| i % 20).collect();
    /// # let items: Vec<u32> = (0..600).map(|i| (i * 7) % 30).collect();
    /// # let ratings: Vec<f32> = (0..600).map(|i| 1.0 + ((i * 13) % 5) as f32).collect();
    /// let options = TuneOptions { budget: std::time::Duration::from_secs(2), max_trials: Some(3) };
    /// let tuned = DeepFM::builder()
    ///     .embedding_dim(8)
    ///     .deep_layers(&[16])
    ///     .epochs(4)
    ///     .tune(deepfm::api::Interactions::new(&users, &items, &ratings), options, |_, _| {})?;
    /// assert!(tuned.trials.len() <= 3);
    /// let best = &tuned.trials[tuned.best_index];
    /// assert!(tuned.trials.iter().all(|t| t.valid_loss >= best.valid_loss));
    /// # Ok::<(), deepfm::api::ApiError>(())
    /// ```
    pub fn tune<U: Id, I: Id>(
        self,
        data: Interactions<'_, U, I>,
        options: TuneOptions,
        mut on_trial: impl FnMut(&Trial, bool),
    ) -> Result<Tuned<U, I>, ApiError> {
        let base = self.settings().clone();
        if base.patience.is_none() {
            return Err(ApiError::Invalid(
                "tune compares trials on their validation loss: it needs patience (early stopping)"
                    .into(),
            ));
        }
        let started = Instant::now();
        let mut rng = Rng::new(base.seed ^ 0x7475_6E65);
        let mut trials: Vec<Trial> = Vec::new();
        let mut best: Option<(usize, DeepFM<U, I>)> = None;
        // Seconds per epoch per unit of `cost`, the slowest seen (a pessimistic estimate).
        let mut seconds_per_cost: f64 = 0.0;
        let mut fields = 2;
        // Each finished trial's best validation loss so far, after each of its epochs.
        let mut curves: Vec<Vec<f64>> = Vec::new();
        while options.max_trials.is_none_or(|m| trials.len() < m) {
            let mut settings = match &best {
                None => base.clone(),
                Some((i, _)) if trials.len() > EXPLORE_FIRST && rng.uniform() < 0.5 => {
                    mutate(&trials[*i].settings, &base, &mut rng)
                }
                Some(_) => draw(&base, &mut rng),
            };
            settings.verbose = false;
            // Trials are compared on the held-out share; only the winner is refitted.
            settings.refit = false;
            if !trials.is_empty() {
                let left = options
                    .budget
                    .saturating_sub(started.elapsed())
                    .as_secs_f64();
                let per_epoch = seconds_per_cost * cost(&settings, fields);
                let affordable = (left / per_epoch.max(1e-9)).floor() as usize;
                if affordable < MIN_EPOCHS {
                    break;
                }
                settings.epochs = base.epochs.min(affordable);
            }
            let trial_started = Instant::now();
            let mut curve: Vec<f64> = Vec::new();
            let mut pruned = false;
            let mut rule = |e: &EpochReport| {
                let Some(loss) = e.valid_loss else {
                    return true;
                };
                let best = curve.last().map_or(loss, |&b: &f64| b.min(loss));
                curve.push(best);
                pruned = worse_than_median(best, e.epoch, &curves);
                !pruned
            };
            let model = DeepFM::train(settings.clone(), None, data.clone(), Some(&mut rule), None)?;
            let seconds = trial_started.elapsed().as_secs_f64();
            curves.push(curve);
            fields = model.model().spec().fields.len();
            let history = model.history();
            let epochs = history.len();
            let Some((best_epoch, valid_loss)) = crate::train::best_validation(history) else {
                return Err(ApiError::Invalid(
                    "tune needs a validation loss: the data are too few to hold out a validation \
                     part"
                        .into(),
                ));
            };
            seconds_per_cost =
                seconds_per_cost.max(seconds / epochs.max(1) as f64 / cost(&settings, fields));
            let trial = Trial {
                number: trials.len() + 1,
                settings,
                task: model.task(),
                valid_loss,
                best_epoch,
                epochs,
                seconds,
                pruned,
            };
            let is_best = best
                .as_ref()
                .is_none_or(|(i, _)| valid_loss < trials[*i].valid_loss);
            on_trial(&trial, is_best);
            trials.push(trial);
            if is_best {
                best = Some((trials.len() - 1, model));
            }
        }
        let (best_index, mut best) =
            best.ok_or_else(|| ApiError::Invalid("no trial ran".into()))?;
        if base.refit && data.valid.is_none() {
            best = refit(&trials[best_index], &best, &base, data)?;
        }
        Ok(Tuned {
            best,
            trials,
            best_index,
        })
    }
}

/// The best trial's settings trained again, from the start, on all of `data` (the held-out
/// share too) for as many epochs as its best one, with the learning rate it had in each.
fn refit<U: Id, I: Id>(
    trial: &Trial,
    model: &DeepFM<U, I>,
    base: &Settings,
    data: Interactions<'_, U, I>,
) -> Result<DeepFM<U, I>, ApiError> {
    let rates: Vec<f32> = model.history()[..trial.best_epoch]
        .iter()
        .map(|e| e.learning_rate)
        .collect();
    let settings = Settings {
        epochs: trial.best_epoch,
        patience: None,
        verbose: base.verbose,
        ..trial.settings.clone()
    };
    let mut refitted = DeepFM::train(settings, None, data, None, Some(&rates))?;
    refitted.settings = Settings {
        refit: true,
        ..trial.settings.clone()
    };
    Ok(refitted)
}

/// The median stopping rule (Golovin et al., "Google Vizier", 2017): a trial whose best
/// validation loss after `epoch` epochs is above the median of what the earlier trials had
/// after as many epochs (a trial that ended sooner counts with its final best) is stopped, from
/// epoch [`MIN_EPOCHS`] on and once at least [`PRUNE_AFTER`] trials have finished. It frees
/// the budget for more trials; a good trial is never above the median, so it is never stopped.
fn worse_than_median(best: f64, epoch: usize, curves: &[Vec<f64>]) -> bool {
    if epoch < MIN_EPOCHS || curves.len() < PRUNE_AFTER {
        return false;
    }
    let mut at: Vec<f64> = curves
        .iter()
        .filter_map(|c| c.get(epoch.min(c.len()).wrapping_sub(1)).copied())
        .collect();
    if at.len() < PRUNE_AFTER {
        return false;
    }
    at.sort_by(f64::total_cmp);
    let median = if at.len() % 2 == 1 {
        at[at.len() / 2]
    } else {
        (at[at.len() / 2 - 1] + at[at.len() / 2]) / 2.0
    };
    best > median
}

/// Finished trials needed before the median stopping rule stops any.
const PRUNE_AFTER: usize = 3;

/// Embedding dimensions the search tries.
const DIMS: [usize; 5] = [16, 32, 64, 128, 256];
/// Hidden layer stacks the search tries.
const LAYERS: [&[usize]; 5] = [
    &[64],
    &[128, 64],
    &[256, 128, 64],
    &[512, 256, 128],
    &[256, 256],
];
/// Batch sizes the search tries.
const BATCHES: [usize; 4] = [128, 256, 512, 1024];
/// Decoupled weight decays of the embeddings it tries (sized for the default optimizer of a
/// recommender's table, Adam over the whole table, which decays every row at every step).
const EMBEDDING_DECAYS: [f32; 4] = [0.0, 0.01, 0.1, 1.0];
/// Decoupled weight decays of the dense layers it tries.
const DENSE_DECAYS: [f32; 4] = [0.0, 0.01, 0.1, 1.0];
/// Learning-rate decays on plateau it tries.
const LR_DECAYS: [Option<f32>; 3] = [None, Some(0.3), Some(0.5)];

/// The settings one search dimension changes.
const DIMENSIONS: usize = 8;

/// Sets search dimension `which` of `s` to a random value.
fn set(s: &mut Settings, which: usize, rng: &mut Rng) {
    fn pick<T: Copy>(rng: &mut Rng, of: &[T]) -> T {
        of[rng.below(of.len() as u64) as usize]
    }
    match which {
        0 => s.embedding_dim = pick(rng, &DIMS),
        1 => s.deep_layers = pick(rng, &LAYERS).to_vec(),
        2 => s.dropout = (rng.uniform() * 0.7 * 20.0).round() / 20.0,
        3 => s.weight_decay_embedding = pick(rng, &EMBEDDING_DECAYS),
        4 => s.weight_decay_dense = pick(rng, &DENSE_DECAYS),
        // Log-uniform over [3e-4, 3e-3], two significant digits.
        5 => {
            // Rounded in f64, so that the f32 is the one nearest the short decimal (and prints
            // as it).
            let lr = 3e-4 * 10f64.powf(rng.uniform() as f64);
            let scale = 10f64.powi(lr.log10().floor() as i32 - 1);
            s.learning_rate = ((lr / scale).round() * scale) as f32;
        }
        6 => s.batch_size = pick(rng, &BATCHES),
        _ => s.lr_decay = pick(rng, &LR_DECAYS),
    }
}

/// A trial drawn at random in every dimension (the rest as in `base`).
fn draw(base: &Settings, rng: &mut Rng) -> Settings {
    let mut s = base.clone();
    for which in 0..DIMENSIONS {
        set(&mut s, which, rng);
    }
    s
}

/// `best` with one or two dimensions drawn afresh.
fn mutate(best: &Settings, base: &Settings, rng: &mut Rng) -> Settings {
    let mut s = best.clone();
    s.epochs = base.epochs;
    let changes = 1 + rng.below(2) as usize;
    for _ in 0..changes {
        set(&mut s, rng.below(DIMENSIONS as u64) as usize, rng);
    }
    s
}

/// Relative training cost of one epoch: multiply-adds per sample of the embedding and FM
/// work and the MLP (forward and backward alike), plus a per-batch overhead.
fn cost(s: &Settings, fields: usize) -> f64 {
    let mut input = fields * s.embedding_dim;
    let mut flops = input as f64;
    for &width in &s.deep_layers {
        flops += (input * width) as f64;
        input = width;
    }
    // Small batches pay a fixed per-step cost (optimizer passes over the dense weights).
    let dense = flops - (fields * s.embedding_dim) as f64;
    flops + 4.0 * dense / s.batch_size.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_stay_in_the_search_space_and_depend_on_the_seed() {
        let base = Settings::default();
        let (mut a, mut b) = (Rng::new(1), Rng::new(1));
        for _ in 0..200 {
            let s = draw(&base, &mut a);
            assert_eq!(s, draw(&base, &mut b));
            assert!(DIMS.contains(&s.embedding_dim));
            assert!(LAYERS.contains(&s.deep_layers.as_slice()));
            assert!((0.0..=0.7).contains(&s.dropout));
            assert!(
                (2.99e-4..=3.01e-3).contains(&s.learning_rate),
                "{}",
                s.learning_rate
            );
            assert!(BATCHES.contains(&s.batch_size));
            assert_eq!(
                (s.seed, s.task, s.patience),
                (base.seed, base.task, base.patience)
            );
        }
        let mut c = Rng::new(2);
        let (x, y) = (draw(&base, &mut Rng::new(1)), draw(&base, &mut c));
        assert_ne!(x, y);
    }

    #[test]
    fn a_mutation_changes_at_most_two_settings_and_restores_the_epoch_cap() {
        let base = Settings::default();
        let mut rng = Rng::new(5);
        for _ in 0..100 {
            let mut best = draw(&base, &mut rng);
            best.epochs = 3;
            let m = mutate(&best, &base, &mut rng);
            assert_eq!(m.epochs, base.epochs);
            let changed = [
                m.embedding_dim != best.embedding_dim,
                m.deep_layers != best.deep_layers,
                m.dropout != best.dropout,
                m.weight_decay_embedding != best.weight_decay_embedding,
                m.weight_decay_dense != best.weight_decay_dense,
                m.learning_rate != best.learning_rate,
                m.batch_size != best.batch_size,
                m.lr_decay != best.lr_decay,
            ];
            assert!(changed.iter().filter(|&&c| c).count() <= 2);
        }
    }

    #[test]
    fn the_median_rule_stops_only_trials_above_the_median_from_min_epochs_on() {
        let curves = vec![
            vec![1.0, 0.8, 0.7, 0.6],
            vec![1.0, 0.9, 0.85],
            vec![1.2, 1.0, 0.95, 0.9],
        ];
        // Epoch 3: the earlier trials had 0.7, 0.85, 0.95: median 0.85.
        assert!(worse_than_median(0.86, 3, &curves));
        assert!(!worse_than_median(0.85, 3, &curves));
        // Epoch 4: 0.6, 0.85 (ended at 3, carried), 0.9: median 0.85.
        assert!(worse_than_median(0.87, 4, &curves));
        // Before MIN_EPOCHS, or with too few finished trials, nothing is stopped.
        assert!(!worse_than_median(5.0, MIN_EPOCHS - 1, &curves));
        assert!(!worse_than_median(5.0, 3, &curves[..2]));
    }

    #[test]
    fn wider_models_cost_more() {
        let small = Settings {
            embedding_dim: 16,
            deep_layers: vec![64],
            ..Settings::default()
        };
        let large = Settings {
            embedding_dim: 128,
            deep_layers: vec![512, 256, 128],
            ..Settings::default()
        };
        assert!(cost(&large, 10) > 10.0 * cost(&small, 10));
    }
}

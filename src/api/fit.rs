//! Fitting: ids to rows, the model spec, the training data (negatives, OOV replacement, side
//! features), the validation set, and the refit.

use super::features::side_values;
use super::input::Interactions;
use super::pairs::Pairs;
use super::progress::Progress;
use super::settings::DENSE_ADAM_MAX_WEIGHTS;
use super::{
    ApiError, DeepFM, EpochReport, FeatureTable, Id, IdMap, NegativeSampling, Settings, Sides, Task,
};
use crate::infer::{Model, ScratchPool};
use crate::spec::{Field, FieldKind, ModelSpec, Output};
use crate::train::{
    BatchNorm, Checkpointing, EmbeddingOptimizer, FitConfig, Loss, Plateau, TrainConfig, Trainer,
    fit_checkpointed, fit_observed,
};

/// Validation pairs (a user and an item, borrowed) and their labels.
type LabelledPairs<'a, U, I> = (Vec<(&'a U, &'a I)>, Vec<f32>);

/// The task `auto` stands for, given the labels.
fn resolve_task(task: Task, ratings: &[f32]) -> Task {
    if task != Task::Auto {
        return task;
    }
    let mut distinct: Vec<f32> = Vec::new();
    for &r in ratings {
        if !distinct.contains(&r) {
            distinct.push(r);
            if distinct.len() > 2 {
                return Task::Rating;
            }
        }
    }
    match distinct.as_slice() {
        [_] => Task::Implicit,
        [a, b] if (*a == 0.0 || *a == 1.0) && (*b == 0.0 || *b == 1.0) => Task::Click,
        _ => Task::Rating,
    }
}

impl<U: Id, I: Id> DeepFM<U, I> {
    /// Fits `data` with `settings`. `keep_going`, when given, is asked after every epoch (with
    /// its report) whether to train on; `false` ends the fit with the best epoch's weights.
    /// `learning_rates`, when given, are the dense learning rate of each epoch (a refit
    /// replaying a validated run's; `settings.learning_rate` is the first epoch's otherwise).
    pub(super) fn train(
        settings: Settings,
        checkpoint: Option<&Checkpointing>,
        data: Interactions<'_, U, I>,
        keep_going: Option<&mut dyn FnMut(&EpochReport) -> bool>,
        learning_rates: Option<&[f32]>,
    ) -> Result<Self, ApiError> {
        let (user_ids, item_ids, ratings) = (data.users, data.items, data.ratings);
        let n = ratings.len();
        if user_ids.len() != n || item_ids.len() != n || n == 0 {
            return Err(ApiError::Lengths {
                users: user_ids.len(),
                items: item_ids.len(),
                ratings: n,
            });
        }
        if let Some(k) = ratings.iter().position(|r| !r.is_finite()) {
            return Err(ApiError::Invalid(format!(
                "rating {k} is {}: ratings must be finite",
                ratings[k]
            )));
        }
        if let Some((vu, vi, vr)) = data.valid {
            if vu.len() != vr.len() || vi.len() != vr.len() || vr.is_empty() {
                return Err(ApiError::Lengths {
                    users: vu.len(),
                    items: vi.len(),
                    ratings: vr.len(),
                });
            }
            if vr.iter().any(|r| !r.is_finite()) {
                return Err(ApiError::Invalid(
                    "validation ratings must be finite".into(),
                ));
            }
        }
        let task = resolve_task(settings.task, ratings);
        if settings.verbose {
            eprintln!(
                "{}: task {task:?}{}",
                settings.name,
                if settings.task == Task::Auto {
                    " (picked by task = auto from the ratings)"
                } else {
                    ""
                }
            );
        }
        let mut users = IdMap::default();
        let mut items = IdMap::default();
        let user_rows: Vec<u64> = user_ids.iter().map(|u| users.insert(u)).collect();
        let item_rows: Vec<u64> = item_ids.iter().map(|i| items.insert(i)).collect();
        let mut seen = vec![Vec::new(); users.rows() as usize];
        for (&u, &i) in user_rows.iter().zip(&item_rows) {
            seen[u as usize].push(i);
        }
        seen.iter_mut().for_each(|s| {
            s.sort_unstable();
            s.dedup();
        });
        let (lo, hi) = ratings
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &r| {
                (lo.min(r), hi.max(r))
            });
        let user_features = data.user_features.map(|f| FeatureTable::fit(f, &users));
        let item_features = data.item_features.map(|f| FeatureTable::fit(f, &items));
        let mut fields = vec![
            Field {
                name: "user".into(),
                kind: FieldKind::Categorical {
                    vocab: users.rows(),
                },
                table: None,
            },
            Field {
                name: "item".into(),
                kind: FieldKind::Categorical {
                    vocab: items.rows(),
                },
                table: None,
            },
        ];
        if let Some(t) = &user_features {
            fields.extend(t.spec_fields("user"));
        }
        if let Some(t) = &item_features {
            fields.extend(t.spec_fields("item"));
        }
        let spec = ModelSpec {
            mlp: Default::default(),
            table: Default::default(),
            fields,
            embedding_dim: settings.embedding_dim,
            hidden: settings.deep_layers.clone(),
            output: if task == Task::Rating {
                Output::Linear
            } else {
                Output::Sigmoid
            },
            clamp: (task == Task::Rating && lo < hi).then_some([lo, hi]),
        };
        let labels: Vec<f32> = match task {
            Task::Implicit => vec![1.0; n],
            Task::Click => ratings.iter().map(|&r| (r > 0.5) as u8 as f32).collect(),
            _ => ratings.to_vec(),
        };
        let mean = labels.iter().map(|&y| y as f64).sum::<f64>() / n as f64;
        // An invalid spec is reported by `Trainer::new` below.
        let table_weights = (spec.total_rows().unwrap_or(u64::MAX))
            .saturating_mul(settings.embedding_dim as u64 + 1);
        let embedding_optimizer =
            settings
                .embedding_optimizer
                .unwrap_or(if table_weights <= DENSE_ADAM_MAX_WEIGHTS {
                    EmbeddingOptimizer::Adam
                } else {
                    EmbeddingOptimizer::LazyAdam
                });
        let config = TrainConfig {
            embedding_optimizer,
            loss: if task == Task::Rating {
                Loss::Mse
            } else {
                Loss::Bce
            },
            learning_rate: settings.learning_rate,
            l2_embedding: settings.l2,
            l2_dense: settings.l2_dense,
            weight_decay_embedding: settings.weight_decay_embedding,
            weight_decay_dense: settings.weight_decay_dense,
            dropout: settings.dropout,
            batch_norm: settings.use_bn.then(BatchNorm::default),
            initial_bias: if task == Task::Rating {
                mean as f32
            } else {
                0.0
            },
            seed: settings.seed,
            threads: settings.threads,
            ..TrainConfig::default()
        };
        let mut trainer = Trainer::new(spec.clone(), config.clone())?;
        // A validation split only when early stopping asks for one.
        let mut order: Vec<usize> = (0..n).collect();
        let mut rng = crate::rng::Rng::new(settings.seed ^ 0x5EED);
        rng.shuffle(&mut order);
        // An explicit validation set replaces the held-out share; a single rating cannot be
        // split (it trains every epoch, without early stopping).
        let held = match settings.patience {
            Some(_) if data.valid.is_none() && n >= 2 => {
                ((n as f32 * settings.valid_fraction) as usize).clamp(1, n - 1)
            }
            _ => 0,
        };
        let patience = settings
            .patience
            .filter(|_| held > 0 || data.valid.is_some());
        let (valid_idx, train_idx) = order.split_at(held);
        let interactions = data;
        let mut data = Pairs::new(&spec, settings.seed);
        for &k in train_idx {
            data.users.push(user_rows[k]);
            data.items.push(item_rows[k]);
            data.labels.push(labels[k]);
        }
        data.item_rows = items.rows();
        data.oov_rate = 0.01;
        data.user_side = side_values(user_features.as_ref(), users.rows());
        data.item_side = side_values(item_features.as_ref(), items.rows());
        if task == Task::Implicit {
            data.negatives = settings.negatives;
            // Lent to the sampler for the fit, taken back after it (no copy).
            data.seen = std::mem::take(&mut seen);
            if settings.negative_sampling == NegativeSampling::Popularity {
                data.popularity();
            }
        }
        let sides = Sides {
            users: &users,
            items: &items,
            user_features: user_features.as_ref(),
            item_features: item_features.as_ref(),
        };
        let valid_pairs: Option<LabelledPairs<U, I>> = match interactions.valid {
            Some((vu, vi, vr)) => {
                let labels = match task {
                    Task::Implicit => vec![1.0; vr.len()],
                    Task::Click => vr.iter().map(|&r| (r > 0.5) as u8 as f32).collect(),
                    _ => vr.to_vec(),
                };
                Some((vu.iter().zip(vi).collect(), labels))
            }
            None if held > 0 => {
                let pairs = valid_idx
                    .iter()
                    .map(|&k| (&user_ids[k], &item_ids[k]))
                    .collect();
                Some((pairs, valid_idx.iter().map(|&k| labels[k]).collect()))
            }
            None => None,
        };
        let valid = match valid_pairs {
            Some((mut pairs, mut labels)) => {
                if task == Task::Implicit {
                    // The seen lists were lent to the sampler above.
                    let negatives = validation_negatives(
                        &pairs,
                        &users,
                        &items,
                        &data.seen,
                        settings.negatives,
                        settings.seed,
                    );
                    labels.extend(std::iter::repeat_n(0.0, negatives.len()));
                    pairs.extend(negatives);
                }
                Some((sides.batch(&spec, &pairs)?, labels))
            }
            None => None,
        };
        let fit_config = FitConfig {
            epochs: settings.epochs,
            batch_size: settings.batch_size,
            patience,
            plateau: settings
                .lr_decay
                .filter(|_| patience.is_some())
                .map(Plateau::each_epoch),
            learning_rates: learning_rates.map(<[f32]>::to_vec).unwrap_or_default(),
        };
        let mut progress =
            Progress::new(settings.verbose, settings.epochs, data.samples_per_epoch());
        progress.keep_going = keep_going;
        let report = fit_checkpointed(
            &mut trainer,
            &mut data,
            valid.as_ref().map(|(b, y)| (b, y.as_slice())),
            &fit_config,
            checkpoint,
            &mut progress,
        )?;
        progress.finish();
        let mut settings = settings;
        let mut history = report.epochs;
        // A share held out of the caller's data (not a validation set of theirs) chose the
        // epoch; the refit trains a fresh model on all the data for that many epochs, with the
        // learning rates the validated run had in each.
        settings.refit &= held > 0 && report.best_epoch > 0;
        let trainer = if settings.refit {
            for &k in valid_idx {
                data.users.push(user_rows[k]);
                data.items.push(item_rows[k]);
                data.labels.push(labels[k]);
            }
            let refit_config = FitConfig {
                epochs: report.best_epoch,
                batch_size: settings.batch_size,
                patience: None,
                plateau: None,
                learning_rates: history[..report.best_epoch]
                    .iter()
                    .map(|e| e.learning_rate)
                    .collect(),
            };
            if settings.verbose {
                eprintln!(
                    "{}: training again on all {n} samples for {} epochs (the best epoch on the \
                     held-out share)",
                    settings.name, report.best_epoch
                );
            }
            let mut again = Trainer::new(spec.clone(), config)?;
            let mut progress = Progress::new(
                settings.verbose,
                refit_config.epochs,
                data.samples_per_epoch(),
            );
            let refitted = fit_observed(&mut again, &mut data, None, &refit_config, &mut progress)?;
            progress.finish();
            history.extend(refitted.epochs);
            again
        } else {
            trainer
        };
        if task == Task::Implicit {
            seen = std::mem::take(&mut data.seen);
        }
        let model = open_trained(&trainer)?;
        let scratch = ScratchPool::new(&model);
        Ok(DeepFM {
            settings,
            task,
            users,
            items,
            seen,
            history,
            model,
            scratch,
            user_features,
            item_features,
            columns: None,
        })
    }
}

/// Implicit feedback validates on its positives and, for each, `per_positive` items drawn
/// uniformly from those the user has no interaction with (fixed by `seed`), labelled 0: on
/// positives alone the loss would reward scoring every item high. A user who has seen every
/// item gets none.
fn validation_negatives<'a, U: Id, I: Id>(
    positives: &[(&'a U, &'a I)],
    users: &IdMap<U>,
    items: &'a IdMap<I>,
    seen: &[Vec<u64>],
    per_positive: usize,
    seed: u64,
) -> Vec<(&'a U, &'a I)> {
    let mut rng = crate::rng::Rng::new(seed ^ 0x004E_4547);
    let known = items.rows().saturating_sub(1);
    let mut out = Vec::with_capacity(positives.len() * per_positive);
    for &(user, _) in positives {
        let user_seen = users
            .get(user)
            .and_then(|u| seen.get(u as usize))
            .map_or(&[][..], |s| s.as_slice());
        if known == 0 || user_seen.len() as u64 >= known {
            continue;
        }
        for _ in 0..per_positive {
            // Rejection sampling over the known items (row 0 is the OOV row); a user has
            // seen few of them, so this ends after a few draws.
            let row = loop {
                let row = 1 + rng.below(known);
                if user_seen.binary_search(&row).is_err() {
                    break row;
                }
            };
            if let Some(item) = items.id(row) {
                out.push((user, item));
            }
        }
    }
    out
}

/// Writes the trainer's model to a private temporary file, maps it, and unlinks the file
/// (the map keeps it alive), so that a fitted model predicts through the inference core,
/// exactly as the file it saves.
fn open_trained(trainer: &Trainer) -> Result<Model, ApiError> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "deepfm-fit-{}-{}.dfm",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    trainer.write(&path)?;
    let model = Model::open(&path);
    let _ = std::fs::remove_file(&path);
    Ok(model?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_that_says_stop_ends_the_fit_after_that_epoch() {
        let (users, items, ratings) = crate::fixtures::planted_ratings(20, 15, 600, 3);
        let settings = Settings {
            embedding_dim: 4,
            deep_layers: vec![8],
            epochs: 6,
            threads: 1,
            // The validated run alone (a search's trials are not refitted).
            refit: false,
            ..Settings::default()
        };
        let data = Interactions::new(&users, &items, &ratings);
        let mut asked = Vec::new();
        let mut rule = |e: &EpochReport| {
            asked.push(e.epoch);
            e.epoch < 2
        };
        let model = DeepFM::train(settings.clone(), None, data, Some(&mut rule), None).unwrap();
        assert_eq!(asked, [1, 2]);
        assert_eq!(model.history().len(), 2);
        // Without a rule the same fit goes on (early stopping permitting).
        let full = DeepFM::train(settings, None, data, None, None).unwrap();
        assert!(full.history().len() > 2);
    }

    /// The default refit: after early stopping on the held-out share, a fresh model trains on
    /// every rating for the best epoch's number of epochs; the validated run is the same as
    /// without it. No refit with the caller's own validation set or without early stopping.
    #[test]
    fn refit_trains_again_on_all_the_data_for_the_best_epoch() {
        let (users, items, ratings) = crate::fixtures::planted_ratings(30, 20, 2_000, 5);
        let settings = Settings {
            embedding_dim: 4,
            deep_layers: vec![8],
            epochs: 6,
            threads: 1,
            ..Settings::default()
        };
        assert!(settings.refit, "refit is the default");
        let data = Interactions::new(&users, &items, &ratings);
        let refitted = DeepFM::train(settings.clone(), None, data, None, None).unwrap();
        let no_refit = Settings {
            refit: false,
            ..settings.clone()
        };
        let kept = DeepFM::train(no_refit, None, data, None, None).unwrap();
        assert!(refitted.settings().refit && !kept.settings().refit);
        let losses = |h: &[EpochReport]| -> Vec<(f64, Option<f64>, usize)> {
            h.iter()
                .map(|e| (e.train_loss, e.valid_loss, e.samples))
                .collect()
        };
        let validated = kept.history();
        assert_eq!(
            losses(&refitted.history()[..validated.len()]),
            losses(validated)
        );
        let best = validated
            .iter()
            .min_by(|a, b| a.valid_loss.unwrap().total_cmp(&b.valid_loss.unwrap()))
            .unwrap()
            .epoch;
        let refit = &refitted.history()[validated.len()..];
        assert_eq!(refit.len(), best);
        let held = (2_000.0 * settings.valid_fraction) as usize;
        for e in refit {
            assert_eq!((e.valid_loss, e.samples), (None, 2_000));
        }
        assert!(validated.iter().all(|e| e.samples == 2_000 - held));
        assert_ne!(refitted.predict(&1, &2), kept.predict(&1, &2));
        // A validation set of the caller's: the model already trains on everything it has.
        let (vu, vi, vr) = crate::fixtures::planted_ratings(30, 20, 300, 6);
        let with_valid = DeepFM::train(
            settings.clone(),
            None,
            data.validation(&vu, &vi, &vr),
            None,
            None,
        )
        .unwrap();
        assert!(!with_valid.settings().refit);
        assert!(with_valid.history().iter().all(|e| e.valid_loss.is_some()));
        let every_epoch = Settings {
            patience: None,
            ..settings
        };
        let plain = DeepFM::train(every_epoch, None, data, None, None).unwrap();
        assert!(!plain.settings().refit);
        assert_eq!(plain.history().len(), 6);
    }

    #[test]
    fn validation_negatives_are_unseen_items_of_each_user() {
        let mut users = IdMap::default();
        let mut items = IdMap::default();
        let (u1, u2) = (users.insert(&10u32), users.insert(&20u32));
        let rows: Vec<u64> = (0..6u32).map(|i| items.insert(&(100 + i))).collect();
        let mut seen = vec![Vec::new(); users.rows() as usize];
        seen[u1 as usize] = vec![rows[0], rows[1]];
        // User 20 has seen every item: no negative can be drawn for it.
        seen[u2 as usize] = rows.clone();
        let positives = [(&10u32, &100u32), (&20u32, &101u32)];
        let negatives = validation_negatives(&positives, &users, &items, &seen, 4, 7);
        assert_eq!(negatives.len(), 4);
        for (u, i) in &negatives {
            assert_eq!(**u, 10);
            assert!(![100, 101].contains(*i), "{i} was seen");
        }
        let again = validation_negatives(&positives, &users, &items, &seen, 4, 7);
        assert_eq!(negatives, again);
    }
}

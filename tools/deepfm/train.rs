//! `deepfm train`: train a model from a labelled file and write the model file.

use crate::args::{DataFormat, Optim, TrainArgs};
use crate::{recommender, tabular};
use anyhow::{Context, Result, bail};
use deepfm::ModelSpec;
use std::path::Path;

/// `deepfm train`: with `--ratings`, the recommender ([`recommender::train_ratings`]); with
/// `--schema`, a CSV/TSV file ([`tabular::train_schema`]); otherwise `--data` in the `score`
/// format with a label, or Criteo.
pub fn train(args: TrainArgs) -> Result<()> {
    use deepfm::data::criteo::{CriteoConfig, CriteoPreprocessor};
    use deepfm::data::stream::LabelledTsv;
    if let Some(ratings) = &args.ratings {
        return recommender::train_ratings(&args, ratings);
    }
    let data = args
        .data
        .clone()
        .context("--data or --ratings is required")?;
    if let Some(schema) = &args.schema {
        return tabular::train_schema(&args, &data, schema);
    }
    match args.format {
        DataFormat::Tsv => {
            let Some(spec_path) = &args.spec else {
                bail!("--format tsv needs --spec");
            };
            let json = std::fs::read_to_string(spec_path)
                .with_context(|| format!("reading {}", spec_path.display()))?;
            let spec = ModelSpec::from_json(&json)?;
            let parser = LabelledTsv::new(spec.clone());
            train_with(&args, spec, &|_| Ok(parser.clone()), None)
        }
        DataFormat::Criteo => {
            eprintln!("building vocabularies from {}", data.display());
            let pre = CriteoPreprocessor::fit(&data, CriteoConfig::default())?;
            let hidden = args.hidden.clone().unwrap_or_else(|| vec![400, 400, 400]);
            let spec = pre.spec(args.dim.unwrap_or(16), &hidden);
            let prep = deepfm::data::prep::Preprocessing::Criteo(pre.clone());
            train_with(&args, spec, &|_| Ok(pre.clone()), Some(&prep))
        }
    }
}

/// The most rows a validation set held out of `--data` takes (it is held in memory and scored
/// after every epoch): 10% of a file up to 5M lines, fewer beyond.
const MAX_HELD_OUT_ROWS: usize = 500_000;

/// Mixed into `--seed` to choose the held-out lines (so they do not follow the shuffle).
const HOLD_OUT_SEED: u64 = 0x0048_444F_5554;

/// Trains on `--data` read by the parsers `parser_for` makes for each file (training and
/// validation files may lay out their columns differently).
/// `prep`, when given, is saved in the model file's metadata section.
pub fn train_with<P: deepfm::data::stream::LineParser>(
    args: &TrainArgs,
    spec: ModelSpec,
    parser_for: &dyn Fn(&Path) -> Result<P>,
    prep: Option<&deepfm::data::prep::Preprocessing>,
) -> Result<()> {
    use deepfm::data::holdout::{HoldOut, capped_fraction, count_lines};
    use deepfm::data::stream::{Streamed, read_all, read_all_skipping};
    use deepfm::train::{
        BatchNorm, Checkpointing, FitConfig, Loss, TrainConfig, Trainer, fit_checkpointed,
    };
    let loss = match spec.output {
        deepfm::Output::Sigmoid => Loss::Bce,
        deepfm::Output::Linear => Loss::Mse,
    };
    let config = TrainConfig {
        loss,
        learning_rate: args.lr.unwrap_or(1e-3),
        embedding_optimizer: args.optim.unwrap_or(Optim::LazyAdam).get(),
        batch_norm: args.bn.unwrap_or(false).then(BatchNorm::default),
        dropout: args.dropout.unwrap_or(0.0),
        l2_embedding: args.l2_embedding.unwrap_or(0.0),
        l2_dense: args.l2_dense.unwrap_or(0.0),
        weight_decay_embedding: args.weight_decay_embedding.unwrap_or(0.0),
        weight_decay_dense: args.weight_decay_dense.unwrap_or(0.0),
        seed: args.seed,
        threads: args
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        ..TrainConfig::default()
    };
    let started = std::time::Instant::now();
    let mut trainer = Trainer::new(spec.clone(), config.clone())?;
    let data = args.data.as_ref().context("--data is required")?;
    let patience = args.early_stopping();
    // Without --valid, early stopping validates on lines held out of --data (by a hash of
    // the line number: the same lines every epoch, never trained on).
    let held_out = match (&args.valid, patience) {
        (None, Some(_)) => {
            let lines = count_lines(data)?;
            let fraction = capped_fraction(args.valid_fraction as f64, lines, MAX_HELD_OUT_ROWS);
            eprintln!(
                "holding out {:.1}% of {} for validation (early stopping; --valid FILE or \
                 --patience 0 to change)",
                100.0 * fraction,
                data.display()
            );
            Some(fraction)
        }
        _ => None,
    };
    let split_seed = args.seed ^ HOLD_OUT_SEED;
    let mut patience = patience;
    let (valid, mut source) = match held_out {
        Some(fraction) => {
            let valid = HoldOut::validation(parser_for(data)?, fraction, split_seed);
            let valid = read_all_skipping(data, valid, args.skip_bad_lines)?;
            let train = HoldOut::training(parser_for(data)?, fraction, split_seed);
            let train = Streamed::new(data, train, args.buffer, args.seed)?;
            if valid.1.is_empty() {
                eprintln!(
                    "{}: too few lines to hold any out: training every epoch on all of them, \
                     without early stopping",
                    data.display()
                );
                patience = None;
                (None, train)
            } else {
                (Some(valid), train)
            }
        }
        None => {
            let valid = match &args.valid {
                Some(path) => Some(read_all(
                    path,
                    HoldOut::training(parser_for(path)?, 0.0, 0),
                )?),
                None => None,
            };
            let all = HoldOut::training(parser_for(data)?, 0.0, 0);
            (valid, Streamed::new(data, all, args.buffer, args.seed)?)
        }
    };
    source = source.skip_bad_lines(args.skip_bad_lines);
    let fit_config = FitConfig {
        epochs: args.epochs.unwrap_or(5),
        batch_size: args.batch.unwrap_or(256),
        patience,
        plateau: args
            .lr_decay
            .filter(|&f| f > 0.0)
            .map(deepfm::train::Plateau::each_epoch),
        learning_rates: Vec::new(),
    };
    let checkpoint = args.checkpoint.clone().map(|path| Checkpointing {
        path,
        resume: args.resume,
    });
    if let Some(c) = &checkpoint
        && c.resume
        && c.path.exists()
    {
        eprintln!("resuming from {}", c.path.display());
    }
    let report = fit_checkpointed(
        &mut trainer,
        &mut source,
        valid.as_ref().map(|(b, y)| (b, y.as_slice())),
        &fit_config,
        checkpoint.as_ref(),
        &mut print_epoch,
    )?;
    let stats = source.stats();
    if stats.bad_lines > 0 {
        eprintln!(
            "skipped {} of {} lines that did not parse (each epoch); the first: {}",
            stats.bad_lines,
            stats.lines,
            stats.first_bad.as_deref().unwrap_or("?")
        );
    }
    // The held-out lines chose the epoch; a refit trains a fresh model on every line for that
    // many epochs, with the learning rates the validated run had.
    let refit = args.refit.unwrap_or(false) && held_out.is_some() && valid.is_some();
    if refit && report.best_epoch > 0 {
        eprintln!(
            "training again on all of {} for {} epochs (the best on the held-out lines)",
            data.display(),
            report.best_epoch
        );
        trainer = Trainer::new(spec, config)?;
        let all = HoldOut::training(parser_for(data)?, 0.0, 0);
        let mut source =
            Streamed::new(data, all, args.buffer, args.seed)?.skip_bad_lines(args.skip_bad_lines);
        let refit_config = FitConfig {
            epochs: report.best_epoch,
            patience: None,
            plateau: None,
            learning_rates: report.epochs[..report.best_epoch]
                .iter()
                .map(|e| e.learning_rate)
                .collect(),
            ..fit_config
        };
        fit_checkpointed(
            &mut trainer,
            &mut source,
            None,
            &refit_config,
            None,
            &mut print_epoch,
        )?;
    }
    let path = match prep {
        Some(prep) => trainer.write_with_metadata(&args.out, tabular::metadata_json(prep)?)?,
        None => trainer.write(&args.out)?,
    };
    println!(
        "wrote {} (weights of epoch {} of {}{})",
        path.display(),
        report.best_epoch,
        report.epochs.len(),
        if report.stopped_early {
            ", stopped early"
        } else {
            ""
        }
    );
    let refitted = refit && report.best_epoch > 0;
    if refitted {
        println!(
            "refitted: {} epochs on every line of {}",
            report.best_epoch,
            data.display()
        );
    }
    if args.json {
        let last = report.epochs.last();
        let best = deepfm::train::best_validation(&report.epochs);
        println!(
            "{}",
            serde_json::json!({
                "model": path,
                "epochs": report.epochs.len(),
                "stopped_early": report.stopped_early,
                "train_loss": last.map(|e| e.train_loss),
                "valid_loss": last.and_then(|e| e.valid_loss),
                "best_epoch": best.map(|b| b.0),
                "best_valid_loss": best.map(|b| b.1),
                "refit_epochs": refitted.then_some(report.best_epoch),
                "bad_lines": stats.bad_lines,
                "seconds": started.elapsed().as_secs_f64(),
            })
        );
    }
    Ok(())
}

/// An epoch's line on stderr.
fn print_epoch(e: &deepfm::train::EpochReport) {
    eprintln!(
        "epoch {}: train loss {:.5}{}, {} samples in {:.1} s ({:.0}/s)",
        e.epoch,
        e.train_loss,
        e.valid_loss
            .map(|v| format!(", valid loss {v:.5}"))
            .unwrap_or_default(),
        e.samples,
        e.seconds,
        e.samples as f64 / e.seconds.max(1e-9)
    )
}

//! `deepfm tune`: the recommender's settings searched within a time budget
//! ([`deepfm::api::DeepFMBuilder::tune`]), the trials as a table, the best model written with
//! its settings beside it.

use crate::args::TuneArgs;
use crate::recommender::{RatingsInput, ratings_builder};
use anyhow::{Context, Result, bail};
use deepfm::api::{Settings, Task, Trial, TuneOptions};
use std::time::Instant;

/// `deepfm tune --ratings R [--users U --items I] --out M --budget 10m`.
pub fn tune(args: TuneArgs) -> Result<()> {
    let train = &args.train;
    let Some(path) = &train.ratings else {
        bail!("deepfm tune searches the recommender's settings: it needs --ratings");
    };
    if train.checkpoint.is_some() {
        bail!("--checkpoint does not apply to tune (every trial is a fit of its own)");
    }
    if train.early_stopping().is_none() {
        bail!("tune compares trials on their validation loss: --patience must be at least 1");
    }
    let builder = ratings_builder(train)?.verbose(false);
    let input = RatingsInput::read(train, path)?;
    let options = TuneOptions {
        budget: args.budget,
        max_trials: args.max_trials,
    };
    eprintln!(
        "tuning for up to {}; trial 1 is the settings given, the rest are searched; every \
         trial early-stops on {} of the training data",
        minutes(args.budget.as_secs_f64()),
        match &train.valid {
            Some(v) => v.display().to_string(),
            None => format!("{:.0}% held out", 100.0 * train.valid_fraction),
        }
    );
    let started = Instant::now();
    let tuned = builder.tune(input.interactions(), options, |trial, best| {
        eprintln!(
            "trial {:>2} at {}: {} → validation {} {:.4} (epoch {} of {}{}, {:.1} s){}",
            trial.number,
            minutes(started.elapsed().as_secs_f64()),
            describe(&trial.settings),
            metric_name(trial.task == Task::Rating),
            trial.valid_metric(),
            trial.best_epoch,
            trial.epochs,
            if trial.pruned {
                ", stopped: above the median"
            } else {
                ""
            },
            trial.seconds,
            if best { "  best so far" } else { "" }
        );
    })?;
    let mut best = tuned.best;
    let rating = best.task() == Task::Rating;
    print_table(&tuned.trials, tuned.best_index, rating);
    best.set_column_names(input.data.header.clone());
    best.save(&train.out)?;
    let chosen = &tuned.trials[tuned.best_index];
    let command = train_command(train, &chosen.settings);
    let report = serde_json::json!({
        "model": train.out,
        "task": format!("{:?}", best.task()).to_lowercase(),
        "metric": if rating { "rmse" } else { "bce" },
        "best_trial": chosen.number,
        "best_valid": chosen.valid_metric(),
        "best_settings": chosen.settings,
        "train_command": command,
        "seconds": started.elapsed().as_secs_f64(),
        "trials": tuned.trials.iter().map(|t| serde_json::json!({
            "trial": t.number,
            "valid": t.valid_metric(),
            "valid_loss": t.valid_loss,
            "best_epoch": t.best_epoch,
            "epochs": t.epochs,
            "stopped_above_median": t.pruned,
            "seconds": t.seconds,
            "settings": t.settings,
        })).collect::<Vec<_>>(),
    });
    let settings_path = {
        let mut p = train.out.clone().into_os_string();
        p.push(".tune.json");
        std::path::PathBuf::from(p)
    };
    std::fs::write(&settings_path, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", settings_path.display()))?;
    println!(
        "wrote {} (trial {}, validation {} {:.4}) and its settings to {}; to train it again: {}",
        train.out.display(),
        chosen.number,
        metric_name(rating),
        chosen.valid_metric(),
        settings_path.display(),
        command
    );
    if train.json {
        println!("{report}");
    }
    Ok(())
}

fn metric_name(rating: bool) -> &'static str {
    if rating { "RMSE" } else { "loss" }
}

fn minutes(seconds: f64) -> String {
    let s = seconds.round() as u64;
    format!("{}:{:02}", s / 60, s % 60)
}

/// Layer widths joined by `sep` (`-` to read, `,` for the command line).
fn layers_joined(widths: &[usize], sep: &str) -> String {
    widths
        .iter()
        .map(|w| w.to_string())
        .collect::<Vec<_>>()
        .join(sep)
}

fn layers(widths: &[usize]) -> String {
    layers_joined(widths, "-")
}

/// Names of the searched settings, in the order [`searched`] gives their values.
const SEARCHED: [&str; 8] = [
    "D", "layers", "dropout", "wd-emb", "wd-dense", "lr", "decay", "batch",
];

/// The values of the searched settings, as the trial lines and the table show them.
fn searched(s: &Settings) -> [String; 8] {
    [
        s.embedding_dim.to_string(),
        layers(&s.deep_layers),
        format!("{:.2}", s.dropout),
        s.weight_decay_embedding.to_string(),
        s.weight_decay_dense.to_string(),
        s.learning_rate.to_string(),
        s.lr_decay.map_or("none".into(), |d| d.to_string()),
        s.batch_size.to_string(),
    ]
}

/// The searched settings in one line.
fn describe(s: &Settings) -> String {
    SEARCHED
        .iter()
        .zip(searched(s))
        .map(|(name, value)| format!("{name} {value}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The trials, best first, as a Markdown table on stdout.
fn print_table(trials: &[Trial], best: usize, rating: bool) {
    let mut order: Vec<usize> = (0..trials.len()).collect();
    order.sort_by(|&a, &b| trials[a].valid_loss.total_cmp(&trials[b].valid_loss));
    println!(
        "| trial | validation {} | {} | epoch | seconds |",
        metric_name(rating),
        SEARCHED.join(" | ")
    );
    println!("|---|---|{}---|---|", "---|".repeat(SEARCHED.len()));
    for i in order {
        let t = &trials[i];
        println!(
            "| {}{} | {:.4} | {} | {} of {}{} | {:.1} |",
            t.number,
            if i == best { " (best)" } else { "" },
            t.valid_metric(),
            searched(&t.settings).join(" | "),
            t.best_epoch,
            t.epochs,
            if t.pruned { " (stopped)" } else { "" },
            t.seconds
        );
    }
}

/// The `deepfm train` command line that trains the chosen settings again (same data, seed
/// and validation part: the same model).
fn train_command(args: &crate::args::TrainArgs, s: &Settings) -> String {
    let mut c = vec!["deepfm train".to_string()];
    let mut path = |flag: &str, p: &Option<std::path::PathBuf>| {
        if let Some(p) = p {
            c.push(format!("{flag} {}", p.display()));
        }
    };
    path("--ratings", &args.ratings);
    path("--users", &args.users);
    path("--items", &args.items);
    path("--valid", &args.valid);
    if let Some(cols) = &args.user_columns {
        c.push(format!("--user-columns {}", cols.join(",")));
    }
    if let Some(cols) = &args.item_columns {
        c.push(format!("--item-columns {}", cols.join(",")));
    }
    c.push(format!(
        "--dim {} --hidden {} --dropout {} --weight-decay-embedding {} --weight-decay-dense {} \
         --lr {} --lr-decay {} --batch {} --epochs {} --seed {} --patience {} --valid-fraction {}",
        s.embedding_dim,
        layers_joined(&s.deep_layers, ","),
        s.dropout,
        s.weight_decay_embedding,
        s.weight_decay_dense,
        s.learning_rate,
        s.lr_decay.unwrap_or(0.0),
        s.batch_size,
        s.epochs,
        s.seed,
        s.patience.unwrap_or(0),
        s.valid_fraction
    ));
    if s.l2 != 0.0 {
        c.push(format!("--l2-embedding {}", s.l2));
    }
    if s.l2_dense != 0.0 {
        c.push(format!("--l2-dense {}", s.l2_dense));
    }
    c.push(format!("--out {}", args.out.display()));
    c.join(" ")
}

//! Click prediction on Criteo-shaped data drawn from a planted DeepFM "teacher": 13 numeric and
//! 26 categorical fields with skewed id frequencies, about a quarter positives. Trains a DeepFM
//! student and a logistic-regression baseline on the same split and reports AUC and logloss of
//! both, next to the teacher's own (the best any model can do on these labels).
//!
//! ```text
//! cargo run --release --example planted_clicks -- --train 1000000 --epochs 3
//! ```

use anyhow::Result;
use clap::Parser;
use deepfm::fixtures::{Planted, planted};
use deepfm::metrics::{auc, logloss};
use deepfm::rng::Rng;
use deepfm::spec::{Field, FieldKind, ModelSpec, Output};
use deepfm::train::{
    BatchNorm, EmbeddingInit, FitConfig, InMemory, LogisticRegression, Loss, TrainConfig,
    TrainData, Trainer, fit,
};
use std::time::Instant;

#[derive(Parser)]
struct Args {
    /// Training samples.
    #[arg(long, default_value_t = 1_000_000)]
    train: usize,
    /// Validation and test samples (each).
    #[arg(long, default_value_t = 200_000)]
    test: usize,
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    #[arg(long, default_value_t = 2)]
    threads: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// DeepFM's L2 penalty on the embedding rows of each batch.
    #[arg(long, default_value_t = 1e-4)]
    l2: f32,
    /// DeepFM's dropout after each hidden layer.
    #[arg(long, default_value_t = 0.0)]
    dropout: f32,
}

/// 13 numeric fields, then 26 categorical ones with vocabularies from 10 to about 20,000.
fn spec(embedding_dim: usize, hidden: Vec<usize>) -> ModelSpec {
    let mut fields: Vec<Field> = (1..=13)
        .map(|i| Field {
            name: format!("I{i}"),
            kind: FieldKind::Numeric,
            table: None,
        })
        .collect();
    fields.extend((1..=26).map(|i| Field {
        name: format!("C{i}"),
        kind: FieldKind::Categorical {
            vocab: (10.0 * 1.35f64.powi(i - 1)).round() as u64,
        },
        table: None,
    }));
    ModelSpec {
        mlp: Default::default(),
        table: Default::default(),
        fields,
        embedding_dim,
        hidden,
        output: Output::Sigmoid,
        clamp: None,
    }
}

fn report(name: &str, scores: &[f32], data: &Planted) -> Result<()> {
    let a = auc(scores, &data.labels)?.unwrap_or(f64::NAN);
    let l = logloss(scores, &data.labels)?;
    println!("{name:<22} AUC {a:.4}  logloss {l:.4}");
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let spec = spec(8, vec![64, 32]);
    // The teacher: small embeddings (39 fields make 741 pairwise terms), first-order weights
    // of its own, a bias that puts about a quarter of the samples positive.
    let mut teacher = Trainer::new(
        spec.clone(),
        TrainConfig {
            embedding_init: EmbeddingInit::Normal { std: 0.12 },
            initial_bias: -2.6,
            seed: args.seed,
            threads: args.threads,
            ..TrainConfig::default()
        },
    )?;
    let mut params = teacher.params().clone();
    let mut rng = Rng::new(args.seed ^ 0xF00D);
    params
        .linear
        .iter_mut()
        .for_each(|w| *w = 0.3 * rng.normal());
    teacher.set_params(params);
    let started = Instant::now();
    let train = planted(&mut teacher, args.train, 0.0, args.seed + 1)?;
    let valid = planted(&mut teacher, args.test, 0.0, args.seed + 2)?;
    let test = planted(&mut teacher, args.test, 0.0, args.seed + 3)?;
    let positives = train.labels.iter().sum::<f32>() / train.labels.len() as f32;
    println!(
        "{} train / {} valid / {} test samples, {:.1}% positive (generated in {:.1} s)",
        args.train,
        args.test,
        args.test,
        100.0 * positives,
        started.elapsed().as_secs_f64()
    );
    report("teacher (Bayes)", &test.truth, &test)?;

    let mut student = Trainer::new(
        spec.clone(),
        TrainConfig {
            loss: Loss::Bce,
            batch_norm: Some(BatchNorm::default()),
            l2_embedding: args.l2,
            dropout: args.dropout,
            seed: args.seed + 10,
            threads: args.threads,
            ..TrainConfig::default()
        },
    )?;
    let mut source = InMemory::new(
        &spec,
        train.batch.clone(),
        train.labels.clone(),
        args.seed,
        true,
    )?;
    let started = Instant::now();
    let fit_report = fit(
        &mut student,
        &mut source,
        Some((&valid.batch, &valid.labels)),
        &FitConfig {
            epochs: args.epochs,
            batch_size: 1024,
            patience: Some(1),
            plateau: None,
            learning_rates: Vec::new(),
        },
        &mut |e| {
            eprintln!(
                "  DeepFM epoch {}: train {:.4}, valid {:.4}, {:.1} s",
                e.epoch,
                e.train_loss,
                e.valid_loss.unwrap_or(f64::NAN),
                e.seconds
            )
        },
    )?;
    let deepfm_secs = started.elapsed().as_secs_f64();
    let mut scores = vec![0.0; test.labels.len()];
    student.predict(&test.batch, &mut scores)?;
    report("DeepFM", &scores, &test)?;
    println!(
        "  (best epoch {}, {deepfm_secs:.1} s with validation)",
        fit_report.best_epoch
    );

    let mut lr = LogisticRegression::new(&spec, 1e-3, 0.0)?;
    let started = Instant::now();
    for epoch in 1..=args.epochs {
        source.for_each_batch(epoch, 1024, &mut |b, y| lr.step(b, y).map(|_| ()))?;
    }
    lr.predict(&test.batch, &mut scores)?;
    report("logistic regression", &scores, &test)?;
    println!("  ({:.1} s)", started.elapsed().as_secs_f64());
    Ok(())
}

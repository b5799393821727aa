//! The trainer end to end: export agrees with the trainer's own evaluation, runs are
//! reproducible bit for bit whatever the thread count, a planted model is recovered, and bad
//! input is refused.

use deepfm::fixtures::{mixed_small, planted};
use deepfm::reference::max_abs_difference;
use deepfm::rng::Rng;
use deepfm::train::{
    BatchNorm, EmbeddingInit, EmbeddingOptimizer, FitConfig, InMemory, Loss, TrainConfig,
    TrainError, Trainer, fit,
};
use deepfm::{
    Batch, Column, Columns, Field, FieldKind, MlpPrecision, Model, ModelSpec, Output, Pooling,
    Scratch, TablePrecision, score,
};

fn config(loss: Loss, threads: usize, seed: u64) -> TrainConfig {
    TrainConfig {
        loss,
        batch_norm: Some(BatchNorm::default()),
        dropout: 0.2,
        l2_embedding: 1e-5,
        l2_dense: 1e-5,
        clip_norm: Some(10.0),
        seed,
        threads,
        ..TrainConfig::default()
    }
}

/// A teacher with large enough weights that its labels carry signal.
fn teacher(spec: &ModelSpec, seed: u64) -> Trainer {
    let loss = match spec.output {
        Output::Sigmoid => Loss::Bce,
        Output::Linear => Loss::Mse,
    };
    let config = TrainConfig {
        loss,
        embedding_init: EmbeddingInit::Normal { std: 0.4 },
        initial_bias: if loss == Loss::Mse { 3.5 } else { -1.0 },
        seed,
        threads: 1,
        ..TrainConfig::default()
    };
    Trainer::new(spec.clone(), config).unwrap()
}

fn train_some(spec: &ModelSpec, config: TrainConfig, rows: usize, epochs: usize) -> Trainer {
    let mut t = teacher(spec, 99);
    let data = planted(&mut t, rows, 0.3, 7).unwrap();
    let mut trainer = Trainer::new(spec.clone(), config).unwrap();
    let mut source = InMemory::new(spec, data.batch, data.labels, 3, true).unwrap();
    let fit_config = FitConfig {
        epochs,
        batch_size: 64,
        ..FitConfig::default()
    };
    fit(&mut trainer, &mut source, None, &fit_config, &mut |_| {}).unwrap();
    trainer
}

#[test]
fn exported_model_scores_like_the_trainer() {
    let dir = tempfile::tempdir().unwrap();
    for output in [Output::Sigmoid, Output::Linear] {
        let mut spec = mixed_small();
        spec.output = output;
        spec.clamp = (output == Output::Linear).then_some([1.0, 5.0]);
        let loss = if output == Output::Sigmoid {
            Loss::Bce
        } else {
            Loss::Mse
        };
        let mut trainer = train_some(&spec, config(loss, 2, 1), 2000, 2);
        assert!(trainer.steps() > 0);
        let path = trainer.write(dir.path().join("m.dfm")).unwrap();
        let model = Model::open(&path).unwrap();
        let mut t = teacher(&spec, 5);
        let test = planted(&mut t, 1000, 0.3, 11).unwrap();
        let mut want = vec![0.0; 1000];
        trainer.predict(&test.batch, &mut want).unwrap();
        let mut got = vec![0.0; 1000];
        score(&model, &test.batch, &mut Scratch::new(&model), &mut got).unwrap();
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
            .fold(0.0f32, f32::max);
        assert!(worst <= 1e-5, "{output:?}: worst difference {worst}");
        // The trained model is not the initial one.
        let fresh = Trainer::new(spec.clone(), config(loss, 1, 1)).unwrap();
        assert_ne!(fresh.params(), trainer.params());
    }
}

/// A dense field (a raw value into the MLP after the embedded fields, outside the FM term, with
/// a first-order weight) trains, and the written model scores as the trainer predicts; the
/// forms that exist only to serve imported models are refused by field name.
#[test]
fn dense_fields_train_and_import_only_forms_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = mixed_small();
    spec.fields.insert(1, Field::new("price", FieldKind::Dense));
    let mut trainer = train_some(&spec, config(Loss::Bce, 2, 1), 2000, 2);
    let path = trainer.write(dir.path().join("m.dfm")).unwrap();
    let model = Model::open(&path).unwrap();
    let mut t = teacher(&spec, 5);
    let test = planted(&mut t, 1000, 0.3, 11).unwrap();
    let (mut want, mut got) = (vec![0.0; 1000], vec![0.0; 1000]);
    trainer.predict(&test.batch, &mut want).unwrap();
    score(&model, &test.batch, &mut Scratch::new(&model), &mut got).unwrap();
    let worst = max_abs_difference(&got, &want);
    assert!(worst <= 1e-5, "worst difference {worst}");
    // The dense field's first-order weight (its one row, after user's 500) was trained.
    let fresh = Trainer::new(spec.clone(), config(Loss::Bce, 1, 1)).unwrap();
    assert_ne!(fresh.params().linear[500], trainer.params().linear[500]);

    for (i, kind, table) in [
        (
            2,
            FieldKind::MultiHot {
                vocab: 18,
                pooling: Pooling::Max,
                linear_pooling: Pooling::Max,
                padding: None,
                weighted: false,
            },
            None,
        ),
        (
            2,
            FieldKind::MultiHot {
                vocab: 18,
                pooling: Pooling::Mean,
                linear_pooling: Pooling::Sum,
                padding: None,
                weighted: false,
            },
            None,
        ),
        (
            2,
            FieldKind::MultiHot {
                vocab: 18,
                pooling: Pooling::Mean,
                linear_pooling: Pooling::Mean,
                padding: Some(0),
                weighted: false,
            },
            None,
        ),
        (
            2,
            FieldKind::MultiHot {
                vocab: 18,
                pooling: Pooling::Sum,
                linear_pooling: Pooling::Sum,
                padding: None,
                weighted: true,
            },
            None,
        ),
        (
            3,
            FieldKind::multi_hot(18, Pooling::Sum),
            Some("genres".to_string()),
        ),
    ] {
        let mut other = mixed_small();
        other.fields[i].kind = kind;
        other.fields[i].table = table;
        let name = other.fields[i].name.clone();
        let err = Trainer::new(other, config(Loss::Bce, 1, 1))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("field {name:?}")) && err.contains("imported"),
            "{err}"
        );
    }
}

#[test]
fn same_seed_gives_the_same_file_for_any_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let spec = mixed_small();
    let files: Vec<Vec<u8>> = [1, 2, 1, 3]
        .iter()
        .enumerate()
        .map(|(i, &threads)| {
            let trainer = train_some(&spec, config(Loss::Bce, threads, 42), 1500, 2);
            let path = trainer.write(dir.path().join(format!("m{i}.dfm"))).unwrap();
            std::fs::read(path).unwrap()
        })
        .collect();
    for f in &files[1..] {
        assert!(f == &files[0], "model files differ");
    }
    let other = train_some(&spec, config(Loss::Bce, 2, 43), 1500, 2);
    let path = other.write(dir.path().join("other.dfm")).unwrap();
    assert!(
        std::fs::read(path).unwrap() != files[0],
        "the seed has no effect"
    );
}

#[test]
fn every_embedding_optimizer_lowers_the_loss() {
    let spec = mixed_small();
    for optimizer in [
        EmbeddingOptimizer::Adam,
        EmbeddingOptimizer::LazyAdam,
        EmbeddingOptimizer::Adagrad,
    ] {
        let mut t = teacher(&spec, 4);
        let data = planted(&mut t, 3000, 0.0, 8).unwrap();
        let mut trainer = Trainer::new(
            spec.clone(),
            TrainConfig {
                embedding_optimizer: optimizer,
                embedding_learning_rate: Some(if optimizer == EmbeddingOptimizer::Adagrad {
                    0.05
                } else {
                    0.003
                }),
                threads: 1,
                ..TrainConfig::default()
            },
        )
        .unwrap();
        let before = trainer.evaluate_loss(&data.batch, &data.labels).unwrap();
        let mut source =
            InMemory::new(&spec, data.batch.clone(), data.labels.clone(), 1, true).unwrap();
        let fit_config = FitConfig {
            epochs: 3,
            batch_size: 128,
            ..FitConfig::default()
        };
        fit(&mut trainer, &mut source, None, &fit_config, &mut |_| {}).unwrap();
        let after = trainer.evaluate_loss(&data.batch, &data.labels).unwrap();
        assert!(
            after < before - 0.01,
            "{optimizer:?}: loss {before} -> {after}"
        );
    }
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let spec = mixed_small();
    let mut trainer = Trainer::new(spec.clone(), config(Loss::Bce, 1, 0)).unwrap();
    let before = trainer.params().clone();
    let batch = deepfm::fixtures::random_batch(&spec, 4, 1);
    assert!(matches!(
        trainer.step(&batch, &[1.0, 0.0, 1.0]),
        Err(TrainError::LabelCount {
            expected: 4,
            found: 3
        })
    ));
    assert!(matches!(
        trainer.step(&batch, &[1.0, 0.0, 2.0, 0.0]),
        Err(TrainError::BadLabel { row: 2, .. })
    ));
    assert!(matches!(
        trainer.step(&batch, &[1.0, f32::NAN, 0.0, 0.0]),
        Err(TrainError::BadLabel { row: 1, .. })
    ));
    let ids = [600u64];
    let columns = [Column::Categorical(&ids)];
    assert!(matches!(
        trainer.step(&Batch::new(&columns), &[1.0]),
        Err(TrainError::Batch(_))
    ));
    assert_eq!(trainer.params(), &before);
    assert_eq!(trainer.steps(), 0);
    // Loss and output must go together.
    let mut linear = spec.clone();
    linear.output = Output::Linear;
    assert!(matches!(
        Trainer::new(linear, config(Loss::Bce, 1, 0)),
        Err(TrainError::Mismatch(_))
    ));
    assert!(matches!(
        Trainer::new(
            spec,
            TrainConfig {
                dropout: 1.0,
                ..TrainConfig::default()
            }
        ),
        Err(TrainError::Config(_))
    ));
}

#[test]
fn divergence_is_reported_and_leaves_the_weights() {
    let spec = mixed_small();
    let mut trainer = Trainer::new(
        spec.clone(),
        TrainConfig {
            loss: Loss::Bce,
            learning_rate: 1e30,
            embedding_learning_rate: Some(1e30),
            threads: 1,
            ..TrainConfig::default()
        },
    )
    .unwrap();
    let batch = deepfm::fixtures::random_batch(&spec, 32, 2);
    let mut rng = Rng::new(1);
    let labels: Vec<f32> = (0..batch.rows()).map(|_| rng.below(2) as f32).collect();
    let mut diverged = None;
    for _ in 0..20 {
        let before = trainer.params().clone();
        match trainer.step(&batch, &labels) {
            Ok(_) => {}
            Err(e) => {
                assert!(matches!(e, TrainError::Diverged { .. }), "{e}");
                assert_eq!(trainer.params(), &before);
                diverged = Some(e);
                break;
            }
        }
    }
    assert!(diverged.is_some(), "a learning rate of 1e30 never diverged");
}

/// A Criteo-shaped teacher (numeric fields, categorical fields with skewed id frequencies, a
/// multi-hot field, ~27% positives) with few enough parameters (~1,000) that 300k samples
/// pin it down: the student's excess logloss shrinks like parameters / samples.
fn planted_spec() -> ModelSpec {
    ModelSpec::from_json(
        r#"{"fields":[
            {"name":"I1","kind":"numeric"},{"name":"I2","kind":"numeric"},
            {"name":"C1","kind":"categorical","vocab":5},
            {"name":"C2","kind":"categorical","vocab":10},
            {"name":"C3","kind":"categorical","vocab":30},
            {"name":"C4","kind":"categorical","vocab":100},
            {"name":"tags","kind":"multi_hot","vocab":10,"pooling":"mean"}],
           "embedding_dim":4,"hidden":[8,4],"output":"sigmoid"}"#,
    )
    .unwrap()
}

#[test]
fn student_recovers_a_planted_teacher() {
    let spec = planted_spec();
    let mut t = teacher(&spec, 2024);
    let train = planted(&mut t, 300_000, 0.0, 1).unwrap();
    let valid = planted(&mut t, 20_000, 0.0, 2).unwrap();
    let test = planted(&mut t, 50_000, 0.0, 3).unwrap();
    let positives = train.labels.iter().sum::<f32>() / train.labels.len() as f32;
    let teacher_auc = deepfm::metrics::auc(&test.truth, &test.labels)
        .unwrap()
        .unwrap();

    let mut student = Trainer::new(
        spec.clone(),
        TrainConfig {
            learning_rate: 5e-3,
            seed: 5,
            threads: 2,
            ..TrainConfig::default()
        },
    )
    .unwrap();
    let mut source = InMemory::new(&spec, train.batch, train.labels, 9, true).unwrap();
    let fit_config = FitConfig {
        epochs: 20,
        batch_size: 256,
        patience: Some(3),
        plateau: Some(deepfm::train::Plateau {
            factor: 0.3,
            patience: 0,
            min_lr: 1e-5,
        }),
        learning_rates: Vec::new(),
    };
    let report = fit(
        &mut student,
        &mut source,
        Some((&valid.batch, &valid.labels)),
        &fit_config,
        &mut |_| {},
    )
    .unwrap();
    let mut scores = vec![0.0; test.labels.len()];
    student.predict(&test.batch, &mut scores).unwrap();
    let student_auc = deepfm::metrics::auc(&scores, &test.labels)
        .unwrap()
        .unwrap();
    eprintln!(
        "positives {positives:.3}, teacher AUC {teacher_auc:.4}, student AUC {student_auc:.4}, best epoch {}",
        report.best_epoch
    );
    assert!(
        student_auc >= teacher_auc - 0.005,
        "student AUC {student_auc} vs teacher {teacher_auc}"
    );

    // The trained model scored with the int8 MLP: the issue's accuracy bounds (AUC within
    // 0.001 of f32, probabilities within 5e-3).
    let dir = tempfile::tempdir().unwrap();
    let path = student.write(dir.path().join("m.dfm")).unwrap();
    let run = |mlp| {
        let options = deepfm::OpenOptions {
            mlp: Some(mlp),
            ..Default::default()
        };
        let model = Model::open_with(&path, &options).unwrap();
        let mut out = vec![0.0f32; test.labels.len()];
        score(&model, &test.batch, &mut Scratch::new(&model), &mut out).unwrap();
        out
    };
    let (exact, int8) = (run(MlpPrecision::F32), run(MlpPrecision::Int8));
    let auc = |p: &[f32]| deepfm::metrics::auc(p, &test.labels).unwrap().unwrap();
    let (exact_auc, int8_auc) = (auc(&exact), auc(&int8));
    // The tables in each reduced-precision row format: the same bounds.
    for table in [
        TablePrecision::F16,
        TablePrecision::Bf16,
        TablePrecision::Int8,
    ] {
        let file = deepfm::format::ModelFile::open(&path).unwrap();
        let to = dir.path().join(format!("{}.dfm", table.name()));
        deepfm::format::writer::copy_with_precision(&file, &to, MlpPrecision::F32, table).unwrap();
        let model = Model::open(&to).unwrap();
        let mut out = vec![0.0f32; test.labels.len()];
        score(&model, &test.batch, &mut Scratch::new(&model), &mut out).unwrap();
        let max = max_abs_difference(&exact, &out);
        let table_auc = auc(&out);
        eprintln!("{table:?} table: AUC {table_auc:.5}, max |dp| {max:.2e}");
        assert!(
            (table_auc - exact_auc).abs() <= 1e-3 && max <= 5e-3,
            "{table:?}"
        );
    }
    // 4-bit rows (16 levels a row) do not hold the same bounds: their own, as measured.
    let to = dir.path().join("int4.dfm");
    let file = deepfm::format::ModelFile::open(&path).unwrap();
    deepfm::format::writer::copy_with_precision(
        &file,
        &to,
        MlpPrecision::F32,
        TablePrecision::Int4,
    )
    .unwrap();
    let model = Model::open(&to).unwrap();
    let mut out = vec![0.0f32; test.labels.len()];
    score(&model, &test.batch, &mut Scratch::new(&model), &mut out).unwrap();
    let (max, int4_auc) = (max_abs_difference(&exact, &out), auc(&out));
    let mean = exact
        .iter()
        .zip(&out)
        .map(|(a, b)| (a - b).abs())
        .sum::<f32>()
        / out.len() as f32;
    eprintln!("Int4 table: AUC {int4_auc:.5}, max |dp| {max:.2e}, mean {mean:.2e}");
    // Measured: AUC 1.3e-4 from f32, max |dp| 8.2e-2, mean 5.7e-3 over the test samples.
    assert!(
        (int4_auc - exact_auc).abs() <= 1e-3 && max <= 0.1 && mean <= 1e-2,
        "int4: AUC {int4_auc} vs {exact_auc}, max |dp| {max}, mean {mean}"
    );
    let max = max_abs_difference(&exact, &int8);
    eprintln!("int8: AUC {int8_auc:.5} (f32 {exact_auc:.5}), max |dp| {max:.2e}");
    assert!(
        (int8_auc - exact_auc).abs() <= 1e-3,
        "int8 AUC {int8_auc} vs f32 {exact_auc}"
    );
    assert!(max <= 5e-3, "int8 moved a probability by {max}");
}

/// A per-epoch learning-rate list is what each epoch trains with: a run that replays the
/// rates a plateau run reported takes the same steps (bit for bit, on the same data and
/// seed), and a rate that is not positive and finite is refused before any step.
#[test]
fn a_learning_rate_schedule_replays_a_plateau_run() {
    let spec = planted_spec();
    let mut t = teacher(&spec, 31);
    let train = planted(&mut t, 3_000, 0.0, 1).unwrap();
    let valid = planted(&mut t, 1_000, 0.0, 2).unwrap();
    // A high rate on few samples overfits within a few epochs.
    let fast = TrainConfig {
        learning_rate: 0.05,
        ..config(Loss::Bce, 1, 4)
    };
    let run = |fit_config: &FitConfig, valid: Option<(&deepfm::batch::BatchBuf, &[f32])>| {
        let mut trainer = Trainer::new(spec.clone(), fast.clone()).unwrap();
        let mut source =
            InMemory::new(&spec, train.batch.clone(), train.labels.clone(), 9, true).unwrap();
        let report = fit(&mut trainer, &mut source, valid, fit_config, &mut |_| {}).unwrap();
        (trainer.params().clone(), report)
    };
    // Decays after every epoch that does not improve: with a high rate, some do not.
    let plateau = FitConfig {
        epochs: 10,
        batch_size: 64,
        plateau: Some(deepfm::train::Plateau::each_epoch(0.5)),
        ..FitConfig::default()
    };
    let (decayed, report) = run(&plateau, Some((&valid.batch, &valid.labels)));
    let rates: Vec<f32> = report.epochs.iter().map(|e| e.learning_rate).collect();
    assert!(
        rates.windows(2).any(|w| w[1] < w[0]),
        "the plateau run never decayed: {rates:?}"
    );
    let replay = FitConfig {
        epochs: 10,
        batch_size: 64,
        learning_rates: rates.clone(),
        ..FitConfig::default()
    };
    let (replayed, replay_report) = run(&replay, None);
    let replayed_rates: Vec<f32> = replay_report
        .epochs
        .iter()
        .map(|e| e.learning_rate)
        .collect();
    assert_eq!(replayed_rates, rates);
    assert!(replayed == decayed, "the replay trained other weights");
    // Without the list the same run keeps its first rate and ends elsewhere.
    let (constant, _) = run(
        &FitConfig {
            learning_rates: Vec::new(),
            ..replay.clone()
        },
        None,
    );
    assert!(constant != decayed);
    for bad in [0.0, -1e-3, f32::NAN, f32::INFINITY] {
        let mut trainer = Trainer::new(spec.clone(), fast.clone()).unwrap();
        let mut source =
            InMemory::new(&spec, train.batch.clone(), train.labels.clone(), 9, true).unwrap();
        let config = FitConfig {
            learning_rates: vec![1e-3, bad],
            ..replay.clone()
        };
        let before = trainer.params().clone();
        let err = fit(&mut trainer, &mut source, None, &config, &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("learning rate"), "{err}");
        assert!(
            trainer.params() == &before,
            "a refused schedule changed the weights"
        );
    }
}

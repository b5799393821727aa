//! Training checkpoints: a run interrupted mid-epoch and resumed from its last checkpoint ends
//! with the same model file, byte for byte, as a run never interrupted; a damaged checkpoint
//! or one of another run is a typed error.

use deepfm::batch::BatchBuf;
use deepfm::fixtures::{mixed_small, planted};
use deepfm::train::{
    BatchNorm, BatchSink, CheckpointError, Checkpointing, EmbeddingInit, EmbeddingOptimizer,
    FitConfig, FitReport, InMemory, Loss, Plateau, TrainConfig, TrainData, TrainError, Trainer,
    fit_checkpointed,
};
use deepfm::{ModelSpec, Output};
use std::path::Path;

/// Passes batches through until `fail_at` batches have gone by in total, then fails: the
/// process "crashes" mid-epoch, after some steps of that epoch changed the trainer.
struct Interrupted {
    inner: InMemory,
    seen: usize,
    fail_at: usize,
}

impl TrainData for Interrupted {
    fn for_each_batch(
        &mut self,
        epoch: usize,
        batch_size: usize,
        f: &mut BatchSink<'_>,
    ) -> Result<(), TrainError> {
        let (seen, fail_at) = (&mut self.seen, self.fail_at);
        self.inner.for_each_batch(
            epoch,
            batch_size,
            &mut |batch: &BatchBuf, labels: &[f32]| {
                *seen += 1;
                if *seen > fail_at {
                    return Err(TrainError::Data("simulated crash".into()));
                }
                f(batch, labels)
            },
        )
    }
}

struct Case {
    name: &'static str,
    config: TrainConfig,
    fit: FitConfig,
}

fn cases() -> Vec<Case> {
    let base = TrainConfig {
        loss: Loss::Bce,
        seed: 5,
        threads: 1,
        ..TrainConfig::default()
    };
    let fit = FitConfig {
        epochs: 5,
        batch_size: 64,
        patience: None,
        plateau: None,
        learning_rates: Vec::new(),
    };
    vec![
        Case {
            name: "lazy adam, batch norm, dropout, patience and plateau",
            config: TrainConfig {
                batch_norm: Some(BatchNorm::default()),
                dropout: 0.2,
                l2_embedding: 1e-5,
                l2_dense: 1e-5,
                clip_norm: Some(10.0),
                ..base.clone()
            },
            fit: FitConfig {
                patience: Some(3),
                plateau: Some(Plateau {
                    factor: 0.5,
                    patience: 0,
                    min_lr: 1e-6,
                }),
                ..fit.clone()
            },
        },
        Case {
            name: "dense adam everywhere, no validation",
            config: TrainConfig {
                embedding_optimizer: EmbeddingOptimizer::Adam,
                ..base.clone()
            },
            fit: fit.clone(),
        },
        Case {
            name: "adagrad, early stopping that triggers",
            config: TrainConfig {
                embedding_optimizer: EmbeddingOptimizer::Adagrad,
                learning_rate: 0.05,
                embedding_learning_rate: Some(0.5),
                batch_norm: Some(BatchNorm::default()),
                ..base
            },
            fit: FitConfig {
                epochs: 12,
                patience: Some(1),
                ..fit
            },
        },
    ]
}

struct Data {
    spec: ModelSpec,
    train: (BatchBuf, Vec<f32>),
    valid: (BatchBuf, Vec<f32>),
}

fn data() -> Data {
    let spec = mixed_small();
    assert_eq!(spec.output, Output::Sigmoid);
    let teacher_config = TrainConfig {
        embedding_init: EmbeddingInit::Normal { std: 0.4 },
        initial_bias: -1.0,
        seed: 99,
        threads: 1,
        ..TrainConfig::default()
    };
    let mut teacher = Trainer::new(spec.clone(), teacher_config).unwrap();
    let train = planted(&mut teacher, 600, 0.3, 7).unwrap();
    let valid = planted(&mut teacher, 300, 0.3, 8).unwrap();
    Data {
        spec,
        train: (train.batch, train.labels),
        valid: (valid.batch, valid.labels),
    }
}

fn source(d: &Data) -> InMemory {
    InMemory::new(&d.spec, d.train.0.clone(), d.train.1.clone(), 3, true).unwrap()
}

fn run(
    d: &Data,
    case: &Case,
    threads: usize,
    data: &mut dyn TrainData,
    checkpoint: Option<&Checkpointing>,
) -> Result<(Trainer, FitReport), TrainError> {
    let config = TrainConfig {
        threads,
        ..case.config.clone()
    };
    let mut trainer = Trainer::new(d.spec.clone(), config).unwrap();
    let valid = case
        .fit
        .patience
        .map(|_| (&d.valid.0, d.valid.1.as_slice()));
    let report = fit_checkpointed(
        &mut trainer,
        data,
        valid,
        &case.fit,
        checkpoint,
        &mut |_: &deepfm::train::EpochReport| {},
    )?;
    Ok((trainer, report))
}

fn model_bytes(trainer: &Trainer, path: &Path) -> Vec<u8> {
    trainer.write(path).unwrap();
    std::fs::read(path).unwrap()
}

/// Reports agree on everything but wall time.
fn same_reports(a: &FitReport, b: &FitReport) {
    assert_eq!(a.best_epoch, b.best_epoch);
    assert_eq!(a.stopped_early, b.stopped_early);
    assert_eq!(a.epochs.len(), b.epochs.len());
    for (x, y) in a.epochs.iter().zip(&b.epochs) {
        assert_eq!(x.epoch, y.epoch);
        assert_eq!(x.train_loss.to_bits(), y.train_loss.to_bits());
        assert_eq!(
            x.valid_loss.map(f64::to_bits),
            y.valid_loss.map(f64::to_bits)
        );
        assert_eq!(x.samples, y.samples);
        assert_eq!(x.learning_rate.to_bits(), y.learning_rate.to_bits());
    }
}

#[test]
fn resumed_run_equals_uninterrupted_run() {
    let d = data();
    let dir = tempfile::tempdir().unwrap();
    let batches_per_epoch = d.train.1.len().div_ceil(64);
    let mut stopped_early = false;
    for case in cases() {
        let (whole, whole_report) = run(&d, &case, 1, &mut source(&d), None).unwrap();
        let want = model_bytes(&whole, &dir.path().join("whole.dfm"));
        stopped_early |= whole_report.stopped_early;
        // Crash in the middle of epoch 3 (and, for the early stopper, also in epoch 1 before
        // any checkpoint exists, and after the run ended).
        for fail_at in [2 * batches_per_epoch + 3, 4, usize::MAX] {
            let ckpt = dir.path().join(format!("run-{fail_at}.ckpt"));
            let _ = std::fs::remove_file(&ckpt);
            let checkpointing = Checkpointing {
                path: ckpt.clone(),
                resume: true,
            };
            let mut interrupted = Interrupted {
                inner: source(&d),
                seen: 0,
                fail_at,
            };
            let first = run(&d, &case, 2, &mut interrupted, Some(&checkpointing));
            match first {
                // The run ended before the crash point.
                Ok((_, report)) => assert!(report.epochs.len() * batches_per_epoch <= fail_at),
                Err(err) => assert!(matches!(err, TrainError::Data(_)), "{}: {err}", case.name),
            }
            // The "crashed" trainer is gone; a new one (on another thread count) resumes.
            let (resumed, report) =
                run(&d, &case, 3, &mut source(&d), Some(&checkpointing)).unwrap();
            let got = model_bytes(&resumed, &dir.path().join("resumed.dfm"));
            assert!(got == want, "{}: crash after batch {fail_at}", case.name);
            same_reports(&whole_report, &report);
        }
    }
    assert!(stopped_early, "no case exercised early stopping");
}

/// Resuming a finished run with more epochs trains on, as if the run had been that long.
#[test]
fn resume_with_more_epochs_trains_longer() {
    let d = data();
    let dir = tempfile::tempdir().unwrap();
    let case = &cases()[1];
    let longer = Case {
        name: "longer",
        config: case.config.clone(),
        fit: FitConfig {
            epochs: case.fit.epochs + 2,
            ..case.fit.clone()
        },
    };
    let (whole, _) = run(&d, &longer, 1, &mut source(&d), None).unwrap();
    let checkpointing = Checkpointing {
        path: dir.path().join("c.ckpt"),
        resume: false,
    };
    run(&d, case, 1, &mut source(&d), Some(&checkpointing)).unwrap();
    let resume = Checkpointing {
        resume: true,
        ..checkpointing
    };
    let (longer_run, report) = run(&d, &longer, 1, &mut source(&d), Some(&resume)).unwrap();
    assert_eq!(report.epochs.len(), longer.fit.epochs);
    assert_eq!(
        model_bytes(&whole, &dir.path().join("a.dfm")),
        model_bytes(&longer_run, &dir.path().join("b.dfm"))
    );
}

fn checkpoint_error(err: TrainError) -> CheckpointError {
    match err {
        TrainError::Checkpoint(e) => e,
        other => panic!("expected a checkpoint error, got {other}"),
    }
}

#[test]
fn damaged_or_foreign_checkpoints_are_typed_errors() {
    let d = data();
    let dir = tempfile::tempdir().unwrap();
    let case = &cases()[0];
    let path = dir.path().join("c.ckpt");
    let checkpointing = Checkpointing {
        path: path.clone(),
        resume: true,
    };
    run(&d, case, 1, &mut source(&d), Some(&checkpointing)).unwrap();
    let good = std::fs::read(&path).unwrap();
    let resume_with = |bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        let err = run(&d, case, 1, &mut source(&d), Some(&checkpointing)).unwrap_err();
        checkpoint_error(err)
    };
    let state_len = u64::from_le_bytes(good[24..32].try_into().unwrap()) as usize;
    let data_start = (64 + state_len).div_ceil(64) * 64;

    // Truncations anywhere, and a grown file.
    for cut in [
        0,
        10,
        63,
        64,
        64 + state_len / 2,
        data_start + 5,
        good.len() - 1,
    ] {
        let err = resume_with(&good[..cut]);
        assert!(
            matches!(
                err,
                CheckpointError::TooSmall(_) | CheckpointError::FileLength { .. }
            ),
            "cut at {cut}: {err}"
        );
    }
    let mut grown = good.clone();
    grown.push(0);
    assert!(matches!(
        resume_with(&grown),
        CheckpointError::FileLength { .. }
    ));

    let flipped = |at: usize| {
        let mut b = good.clone();
        b[at] ^= 0x20;
        b
    };
    assert!(matches!(
        resume_with(&flipped(1)),
        CheckpointError::BadMagic
    ));
    assert!(matches!(
        resume_with(&flipped(8)),
        CheckpointError::UnsupportedVersion(_)
    ));
    for at in [12, 20, 33, 45, 50, 63] {
        assert!(
            matches!(resume_with(&flipped(at)), CheckpointError::Header),
            "header byte {at}"
        );
    }
    for at in [64, 64 + state_len / 2, 64 + state_len - 1] {
        assert!(
            matches!(resume_with(&flipped(at)), CheckpointError::StateChecksum),
            "state byte {at}"
        );
    }
    // Any byte of any tensor.
    for at in [data_start, data_start + 1001, good.len() - 1] {
        assert!(
            matches!(
                resume_with(&flipped(at)),
                CheckpointError::TensorChecksum(_)
            ),
            "tensor byte {at}"
        );
    }
    assert!(matches!(
        resume_with(b"not a checkpoint at all, but long enough to have a header of 64 bytes"),
        CheckpointError::BadMagic
    ));

    // A checkpoint of another run.
    std::fs::write(&path, &good).unwrap();
    let other_seed = Case {
        name: "other seed",
        config: TrainConfig {
            seed: 6,
            ..case.config.clone()
        },
        fit: case.fit.clone(),
    };
    let err = run(&d, &other_seed, 1, &mut source(&d), Some(&checkpointing)).unwrap_err();
    assert!(matches!(
        checkpoint_error(err),
        CheckpointError::Mismatch("the training configuration")
    ));
    let other_batch = Case {
        name: "other batch",
        config: case.config.clone(),
        fit: FitConfig {
            batch_size: 32,
            ..case.fit.clone()
        },
    };
    let err = run(&d, &other_batch, 1, &mut source(&d), Some(&checkpointing)).unwrap_err();
    assert!(matches!(
        checkpoint_error(err),
        CheckpointError::Mismatch("the batch size")
    ));
    let mut spec = d.spec.clone();
    spec.hidden[0] += 1;
    let mut trainer = Trainer::new(spec, case.config.clone()).unwrap();
    let err = fit_checkpointed(
        &mut trainer,
        &mut source(&d),
        Some((&d.valid.0, d.valid.1.as_slice())),
        &case.fit,
        Some(&checkpointing),
        &mut |_: &deepfm::train::EpochReport| {},
    )
    .unwrap_err();
    assert!(matches!(
        checkpoint_error(err),
        CheckpointError::Mismatch("the model spec")
    ));
    // The intact checkpoint still resumes.
    run(&d, case, 1, &mut source(&d), Some(&checkpointing)).unwrap();
}

/// A loop of its own: `write_checkpoint`, more steps; a new trainer that reads the checkpoint
/// and takes the same steps ends with the same parameters. A fit checkpoint is not a trainer
/// checkpoint.
#[test]
fn trainer_checkpoint_round_trip() {
    let d = data();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.ckpt");
    let case = &cases()[0];
    let batches: Vec<(BatchBuf, Vec<f32>)> = {
        let mut out = Vec::new();
        source(&d)
            .for_each_batch(1, 50, &mut |b: &BatchBuf, y: &[f32]| {
                out.push((b.clone(), y.to_vec()));
                Ok(())
            })
            .unwrap();
        out
    };
    let new_trainer = |threads| {
        let config = TrainConfig {
            threads,
            ..case.config.clone()
        };
        Trainer::new(d.spec.clone(), config).unwrap()
    };
    let mut a = new_trainer(1);
    for (b, y) in &batches[..4] {
        a.step(b, y).unwrap();
    }
    a.scale_learning_rate(0.5);
    a.write_checkpoint(&path).unwrap();
    for (b, y) in &batches[4..] {
        a.step(b, y).unwrap();
    }
    let mut b = new_trainer(2);
    b.read_checkpoint(&path).unwrap();
    assert_eq!(b.steps(), 4);
    assert_eq!(b.learning_rate(), a.config().learning_rate * 0.5);
    for (batch, y) in &batches[4..] {
        b.step(batch, y).unwrap();
    }
    assert!(a.params() == b.params());
    assert_eq!(
        model_bytes(&a, &dir.path().join("a.dfm")),
        model_bytes(&b, &dir.path().join("b.dfm"))
    );

    let fit_ckpt = Checkpointing {
        path: dir.path().join("fit.ckpt"),
        resume: false,
    };
    run(&d, case, 1, &mut source(&d), Some(&fit_ckpt)).unwrap();
    let err = new_trainer(1).read_checkpoint(&fit_ckpt.path).unwrap_err();
    assert!(matches!(
        checkpoint_error(err),
        CheckpointError::Mismatch("the batch size")
    ));
}

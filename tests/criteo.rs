//! The Criteo loader on real rows: the first 1,000 lines of Kaggle's `train.txt` (about half
//! with trailing empty columns stripped) and DeepCTR's 200-row CSV sample. The files are not
//! redistributable and live outside the repository (`../shared/data`, or `$DEEPFM_DATA`);
//! without them the tests say so and pass, except under CI (`CI` set), where they fail.

mod common;

use deepfm::batch::{Column, Columns};
use deepfm::data::criteo::{
    CategoricalMode, CriteoConfig, CriteoPreprocessor, FIELDS, IntegerMode, MISSING,
};
use deepfm::data::stream::{LineParser, Streamed};
use deepfm::train::{FitConfig, TrainConfig, TrainData, Trainer, fit};
use deepfm::{BatchBuf, FieldKind, ModelSpec};
use std::io::BufRead;
use std::path::{Path, PathBuf};

fn data_file(name: &str) -> Option<PathBuf> {
    common::shared_data(&format!("criteo-samples/{name}"))
}

/// Every sample of `path` through `parse_line`, plus the number of lines with fewer than 40
/// columns.
fn parse_file(p: &CriteoPreprocessor, path: &Path) -> (BatchBuf, Vec<f32>, usize) {
    let mut batch = p.new_batch();
    let mut labels = Vec::new();
    let mut short = 0;
    let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    for (i, line) in file.lines().enumerate() {
        let line = line.unwrap();
        if !p.accepts(&line, i + 1) {
            continue;
        }
        short += (line.split(['\t', ',']).count() < 40) as usize;
        p.parse_line(&line, i + 1, &mut batch, &mut labels)
            .unwrap_or_else(|e| panic!("{}", e.in_file(&path.display().to_string())));
    }
    (batch, labels, short)
}

/// Every id below its field's vocabulary, every numeric value finite.
fn check_ranges(spec: &ModelSpec, batch: &BatchBuf) {
    for (i, field) in spec.fields.iter().enumerate() {
        match (field.kind, batch.column(i)) {
            (FieldKind::Categorical { vocab }, Column::Categorical(ids)) => {
                assert!(ids.iter().all(|&id| id < vocab), "{}", field.name)
            }
            (FieldKind::Numeric, Column::Numeric(v)) => {
                assert!(v.iter().all(|x| x.is_finite()), "{}", field.name)
            }
            (kind, column) => panic!("{}: {kind:?} vs {}", field.name, column.kind_name()),
        }
    }
}

/// Rows, positives and lines with stripped columns, for each preprocessing mode.
fn check_file(path: &Path, rows: usize, positives: usize, stripped: usize) {
    let modes = [
        (IntegerMode::LogBucket, CategoricalMode::Vocab),
        (IntegerMode::Log1p, CategoricalMode::Hash),
    ];
    for (integers, categoricals) in modes {
        let config = CriteoConfig {
            integers,
            categoricals,
            min_count: 2,
            buckets: 1 << 12,
            ..CriteoConfig::default()
        };
        let p = CriteoPreprocessor::fit(path, config).unwrap();
        let spec = p.spec(16, &[400, 400, 400]);
        spec.validate().unwrap();
        assert_eq!(spec.fields.len(), FIELDS);
        let (batch, labels, short) = parse_file(&p, path);
        assert_eq!(batch.len(), rows);
        assert_eq!(labels.len(), rows);
        assert_eq!(labels.iter().filter(|&&y| y == 1.0).count(), positives);
        assert!(labels.iter().all(|&y| y == 0.0 || y == 1.0));
        assert_eq!(short, stripped);
        check_ranges(&spec, &batch);
        if categoricals == CategoricalMode::Vocab {
            // I1 is missing on about 45% of rows: "missing" is a token of its own.
            assert!(p.vocab(0).unwrap().get(MISSING) > 0);
            let sizes: Vec<u64> = spec.fields.iter().map(|f| f.kind.rows()).collect();
            println!("{}: vocab sizes (min count 2) {sizes:?}", path.display());
        }
        // Streaming gives the same samples (a shuffle of them).
        let mut stream = Streamed::new(path, p.clone(), 64, 1).unwrap();
        let (mut streamed, mut streamed_positives) = (0, 0);
        stream
            .for_each_batch(1, 100, &mut |b, y| {
                check_ranges(&spec, b);
                streamed += y.len();
                streamed_positives += y.iter().filter(|&&y| y == 1.0).count();
                Ok(())
            })
            .unwrap();
        assert_eq!((streamed, streamed_positives), (rows, positives));
        assert_eq!(stream.stats().bad_lines, 0);
    }
}

#[test]
fn kaggle_train_first_1000() {
    let Some(path) = data_file("train_first1000.txt") else {
        return;
    };
    // 205 clicks (20.5%); 498 lines carry 37 or 38 columns (trailing empties stripped).
    check_file(&path, 1000, 205, 498);
    // The batches fit a trainer: one epoch of a small model, streamed.
    let p = CriteoPreprocessor::fit(&path, CriteoConfig::default()).unwrap();
    let config = TrainConfig {
        threads: 1,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(p.spec(4, &[16]), config).unwrap();
    let mut data = Streamed::new(&path, p, 256, 1).unwrap();
    let fit_config = FitConfig {
        epochs: 1,
        batch_size: 128,
        ..FitConfig::default()
    };
    let report = fit(&mut trainer, &mut data, None, &fit_config, &mut |_| {}).unwrap();
    assert_eq!(report.epochs[0].samples, 1000);
    assert!(report.epochs[0].train_loss.is_finite());
}

#[test]
fn deepctr_csv_sample() {
    let Some(path) = data_file("criteo_sample.txt") else {
        return;
    };
    // 49 clicks (24.5%); every line has all 40 columns.
    check_file(&path, 200, 49, 0);
}

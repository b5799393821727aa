//! DeepFM rating quality on the real MovieLens 100K: user and item ids only, the tutorial's
//! settings (D = 32, hidden 256-128-64, dropout 0.3, batch norm, batch 256, Adam 1e-3, MSE),
//! random 80/20 split, 10% of the training part for early stopping. Test RMSE on predictions
//! clamped to [1, 5] must be at most 0.93 (Surprise's SVD: 0.934).
//!
//! The tutorial settings alone give 0.9308 on this split (seed 42), just above the floor; the
//! test adds what the validation split chose (`examples/movielens_quality`, not the test split): L2 0.3
//! on the embedding rows in each batch, 1e-3 on the layer weights, and learning-rate decay ×0.3
//! after each epoch without a better validation loss. That gives 0.9277. The data set is not
//! redistributable and lives outside the repository (`../shared/data`, or `$DEEPFM_DATA`);
//! without it the test says so and passes (under CI, `CI` set, it fails). Run in release mode (about 20 s):
//! `cargo test --release --test movielens_quality`.

mod common;

use deepfm::data::movielens::features::{Encoder, Features, random_split};
use deepfm::data::movielens::{Rating, load_dir};
use deepfm::metrics::{mae, rmse};
use deepfm::train::{
    BatchNorm, EmbeddingOptimizer, FitConfig, InMemory, Loss, Plateau, TrainConfig, Trainer, fit,
};
use deepfm::{BatchBuf, Columns};
use std::path::PathBuf;

fn data_dir(name: &str) -> Option<PathBuf> {
    common::shared_data(name)
}

#[test]
fn ml_100k_ids_only_tutorial_shape_beats_svd() {
    let Some(dir) = data_dir("ml-100k") else {
        return;
    };
    let ml = load_dir(&dir).unwrap();
    let encoder = Encoder::new(&ml, &Features::default());
    let spec = encoder.spec(32, vec![256, 128, 64]);
    let seed = 42;
    let (train_all, test) = random_split(ml.ratings.len(), 0.2, seed);
    let (train, valid) = random_split(train_all.len(), 0.1, seed ^ 1);
    let encode = |idx: &mut dyn Iterator<Item = usize>| {
        let ratings: Vec<Rating> = idx.map(|i| ml.ratings[i]).collect();
        encoder.encode(&spec, &ratings).unwrap()
    };
    let (train_batch, train_labels) = encode(&mut train.iter().map(|&i| train_all[i]));
    let (valid_batch, valid_labels) = encode(&mut valid.iter().map(|&i| train_all[i]));
    let (test_batch, test_labels) = encode(&mut test.iter().copied());
    let mean = train_labels.iter().map(|&y| y as f64).sum::<f64>() / train_labels.len() as f64;

    let config = TrainConfig {
        loss: Loss::Mse,
        learning_rate: 1e-3,
        embedding_optimizer: EmbeddingOptimizer::Adam,
        dropout: 0.3,
        l2_embedding: 0.3,
        l2_dense: 1e-3,
        batch_norm: Some(BatchNorm::default()),
        initial_bias: mean as f32,
        seed,
        threads: 2,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(spec.clone(), config).unwrap();
    let mut source = InMemory::new(&spec, train_batch, train_labels, seed, true).unwrap();
    let fit_config = FitConfig {
        epochs: 30,
        batch_size: 256,
        patience: Some(3),
        plateau: Some(Plateau {
            factor: 0.3,
            patience: 0,
            min_lr: 1e-6,
        }),
        learning_rates: Vec::new(),
    };
    let report = fit(
        &mut trainer,
        &mut source,
        Some((&valid_batch, &valid_labels)),
        &fit_config,
        &mut |e| println!("{e:?}"),
    )
    .unwrap();

    let mut predictions = vec![0.0; test_batch.rows()];
    let mut chunk = BatchBuf::new(&spec);
    for (c, out) in predictions.chunks_mut(4096).enumerate() {
        chunk.clear();
        for r in c * 4096..c * 4096 + out.len() {
            chunk.push_from(&test_batch, r).unwrap();
        }
        trainer.predict(&chunk, out).unwrap();
    }
    assert!(predictions.iter().all(|p| (1.0..=5.0).contains(p)));
    let (rmse, mae) = (
        rmse(&predictions, &test_labels).unwrap(),
        mae(&predictions, &test_labels).unwrap(),
    );
    println!(
        "ML-100k ids only: test RMSE {rmse:.4} MAE {mae:.4} after {} epochs (best {})",
        report.epochs.len(),
        report.best_epoch
    );
    assert!(rmse <= 0.93, "test RMSE {rmse:.4} > 0.93");
    assert!(mae <= 0.75, "test MAE {mae:.4} > 0.75");
}

/// The recommender API with nothing set but the thread count (as `deepfm train --ratings`
/// with no flag): early stopping on 10% held out of the training part is on by default, so
/// the tutorial's 20 epochs no longer overfit (with every epoch trained, this split gives
/// RMSE 0.96 and more). Bound: the defaults' RMSE on this split plus rounding differences
/// between instruction sets.
#[test]
fn ml_100k_defaults_early_stop_and_generalise() {
    let Some(dir) = data_dir("ml-100k") else {
        return;
    };
    let ml = load_dir(&dir).unwrap();
    let (train, test) = random_split(ml.ratings.len(), 0.2, 7);
    let column = |idx: &[usize]| -> (Vec<u32>, Vec<u32>, Vec<f32>) {
        let r = idx.iter().map(|&k| ml.ratings[k]);
        (
            r.clone().map(|r| r.user).collect(),
            r.clone().map(|r| r.item).collect(),
            r.map(|r| r.rating).collect(),
        )
    };
    let (users, items, ratings) = column(&train);
    let model = deepfm::api::DeepFM::builder()
        .threads(2)
        .fit(&users, &items, &ratings)
        .unwrap();
    let (test_users, test_items, test_ratings) = column(&test);
    let (rmse, mae) = model
        .evaluate(&test_users, &test_items, &test_ratings)
        .unwrap();
    let history = model.history();
    // Validated epochs, then the refit's on all the ratings (no validation loss).
    let validated = history
        .iter()
        .take_while(|e| e.valid_loss.is_some())
        .count();
    println!(
        "ML-100k ids only, API defaults: test RMSE {rmse:.4} MAE {mae:.4}, {validated} epochs \
         validated, {} refitted",
        history.len() - validated
    );
    assert!(validated > 0, "no validation by default");
    assert!(model.settings().refit, "no refit by default");
    assert!(
        history[validated..].iter().all(|e| e.valid_loss.is_none()),
        "validation after the refit started"
    );
    assert!(rmse <= 0.94, "test RMSE {rmse:.4} > 0.94");
}

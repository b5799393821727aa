//! Unit tests of the trainer's step: the fused update against the separate passes, the
//! packed weights after each step, weight decay.

use super::*;
use crate::batch::BatchBuf;
use crate::{Batch, Column};

/// Ragged shapes, batch norm, dropout, L2 and weight decay: everything the fused update
/// (`fused`) does per weight. The batch is large enough that the weight-gradient GEMMs
/// split between two threads, with a ragged last share.
fn fused_test_setup(threads: usize, clip_norm: Option<f32>) -> (Trainer, BatchBuf, Vec<f32>) {
    let spec = ModelSpec::from_json(
        r#"{"fields":[{"name":"a","kind":"categorical","vocab":9},
                     {"name":"b","kind":"numeric"},
                     {"name":"c","kind":"categorical","vocab":4}],
            "embedding_dim":5,"hidden":[40,37,33],"output":"sigmoid"}"#,
    )
    .unwrap();
    let config = TrainConfig {
        threads,
        batch_norm: Some(Default::default()),
        dropout: 0.2,
        l2_dense: 1e-3,
        weight_decay_dense: 0.01,
        clip_norm,
        ..TrainConfig::default()
    };
    let trainer = Trainer::new(spec.clone(), config).unwrap();
    let batch = crate::fixtures::random_batch(&spec, 200, 3);
    let labels: Vec<f32> = (0..200).map(|i| (i % 3 == 0) as u8 as f32).collect();
    (trainer, batch, labels)
}

/// Both packed copies of the hidden layers' weights, refreshed as Adam updates them (in the
/// weight-gradient GEMM, or after it when clipping needs every gradient first), are
/// exactly a fresh packing of the updated weights after every step.
#[test]
fn packed_weights_follow_the_updates() {
    for (threads, clip) in [(1, None), (2, None), (1, Some(1e-3)), (2, Some(1e-3))] {
        let (mut trainer, batch, labels) = fused_test_setup(threads, clip);
        let shapes = trainer.spec.layer_shapes();
        for _ in 0..3 {
            trainer.step(&batch, &labels).unwrap();
            let t = &trainer.params.dense.0;
            for (l, &(k, n)) in shapes[..3].iter().enumerate() {
                let (w, b) = (&t[Dense::layer(l)], &t[Dense::layer(l) + 1]);
                let fresh = PackedMatrix::pack(w, b, n, k);
                let what = format!("layer {l}, {threads} threads, clip {clip:?}");
                assert_eq!(trainer.packed[l], fresh, "{what}");
                let mut fresh_t = PackedMatrix::pack(&[], &[], 0, 0);
                fresh_t.repack_transposed(w, k, n);
                assert_eq!(trainer.packed_wt[l], fresh_t, "{what}");
            }
        }
    }
}

/// The fused update gives the weights the separate passes give, bit for bit: a clipping
/// threshold no gradient reaches takes the unfused path without changing any gradient.
#[test]
fn fused_update_matches_separate_passes() {
    for threads in [1, 2] {
        let (mut fused, batch, labels) = fused_test_setup(threads, None);
        let (mut separate, ..) = fused_test_setup(threads, Some(f32::MAX));
        for step in 0..4 {
            fused.step(&batch, &labels).unwrap();
            separate.step(&batch, &labels).unwrap();
            assert_eq!(
                fused.params, separate.params,
                "step {step}, {threads} threads"
            );
            assert_eq!(
                fused.grads, separate.grads,
                "step {step}, {threads} threads"
            );
        }
    }
}

/// One step from the same start with and without decoupled weight decay: the gradients
/// and optimizer moments are the same, so the runs differ by exactly `−lr · λ · p₀` on
/// what is decayed (rows the step updates, layer and output weights) and not at all
/// elsewhere (biases; with lazy Adam, rows outside the batch).
fn one_step(optimizer: EmbeddingOptimizer) -> (Params, Params, Params) {
    let spec = ModelSpec::from_json(
        r#"{"fields":[{"name":"user","kind":"categorical","vocab":6},
                     {"name":"item","kind":"categorical","vocab":5}],
            "embedding_dim":4,"hidden":[8],"output":"linear"}"#,
    )
    .unwrap();
    let base = TrainConfig {
        loss: Loss::Mse,
        learning_rate: 0.01,
        embedding_learning_rate: Some(0.05),
        embedding_optimizer: optimizer,
        embedding_init: EmbeddingInit::Normal { std: 0.5 },
        initial_bias: 3.0,
        seed: 11,
        threads: 1,
        ..TrainConfig::default()
    };
    let decayed = TrainConfig {
        weight_decay_embedding: 2.0,
        weight_decay_dense: 3.0,
        ..base.clone()
    };
    let (users, items) = ([0u64, 2, 2], [1u64, 3, 4]);
    let columns = [Column::Categorical(&users), Column::Categorical(&items)];
    let batch = Batch::new(&columns);
    let labels = [4.0, 1.0, 5.0];
    let mut plain = Trainer::new(spec.clone(), base).unwrap();
    let mut decay = Trainer::new(spec, decayed).unwrap();
    let start = plain.params().clone();
    assert_eq!(&start, decay.params());
    plain.step(&batch, &labels).unwrap();
    decay.step(&batch, &labels).unwrap();
    (start, plain.params().clone(), decay.params().clone())
}

fn assert_decayed(start: &[f32], plain: &[f32], decay: &[f32], shrink: f32, what: &str) {
    for (i, ((&p0, &a), &b)) in start.iter().zip(plain).zip(decay).enumerate() {
        let want = a - shrink * p0;
        assert!(
            (b - want).abs() <= 1e-6 * (1.0 + want.abs()),
            "{what}[{i}]: {b} vs {want} (start {p0}, no decay {a})"
        );
    }
}

#[test]
fn weight_decay_is_decoupled_and_follows_the_formula() {
    let (start, plain, decay) = one_step(EmbeddingOptimizer::LazyAdam);
    let d = 4;
    // Rows in the batch: users 0, 2 (rows 0, 2), items 1, 3, 4 (rows 6 + id).
    let touched = [0usize, 2, 7, 9, 10];
    for r in 0..11 {
        let span = r * d..(r + 1) * d;
        let (p0, a, b) = (
            &start.embedding[span.clone()],
            &plain.embedding[span.clone()],
            &decay.embedding[span],
        );
        if touched.contains(&r) {
            assert_ne!(a, p0, "row {r} is trained");
            assert_decayed(p0, a, b, 0.05 * 2.0, &format!("row {r}"));
            let lin = r..r + 1;
            assert_decayed(
                &start.linear[lin.clone()],
                &plain.linear[lin.clone()],
                &decay.linear[lin],
                0.05 * 2.0,
                &format!("linear {r}"),
            );
        } else {
            assert_eq!((a, b), (p0, p0), "row {r} is not in the batch");
            assert_eq!(decay.linear[r], start.linear[r]);
        }
    }
    let hidden = 1;
    for (i, ((p0, a), b)) in start
        .dense
        .0
        .iter()
        .zip(&plain.dense.0)
        .zip(&decay.dense.0)
        .enumerate()
    {
        if Dense::is_weight(i, hidden) {
            assert!(p0.iter().any(|&v| v != 0.0));
            assert_decayed(p0, a, b, 0.01 * 3.0, &format!("dense[{i}]"));
        } else {
            assert_eq!(a, b, "dense[{i}] (a bias) is not decayed");
        }
    }
}

/// With dense Adam every row is updated at every step, so every row decays: a row outside
/// the batch (zero gradient, zero moments at the first step) is exactly `p₀ · (1 − lr·λ)`.
#[test]
fn weight_decay_with_dense_adam_shrinks_every_row() {
    let (start, plain, decay) = one_step(EmbeddingOptimizer::Adam);
    let keep = 1.0 - 0.05f32 * 2.0;
    let d = 4;
    let untouched = 1;
    let span = untouched * d..(untouched + 1) * d;
    assert_eq!(plain.embedding[span.clone()], start.embedding[span.clone()]);
    let want: Vec<f32> = start.embedding[span.clone()]
        .iter()
        .map(|&p| p * keep)
        .collect();
    assert_eq!(decay.embedding[span], want[..]);
    assert_decayed(
        &start.embedding,
        &plain.embedding,
        &decay.embedding,
        0.05 * 2.0,
        "embedding",
    );
}

#[test]
fn weight_decay_out_of_range_is_refused() {
    for (emb, dense) in [(-1.0, 0.0), (0.0, f32::NAN), (1e3, 0.0), (0.0, 1e3)] {
        let config = TrainConfig {
            weight_decay_embedding: emb,
            weight_decay_dense: dense,
            ..TrainConfig::default()
        };
        assert!(
            matches!(config.validate(), Err(TrainError::Config(_))),
            "{emb} {dense}"
        );
    }
    let off = serde_json::to_string(&TrainConfig::default()).unwrap();
    assert!(
        !off.contains("weight_decay"),
        "unset decay is not serialized"
    );
}

//! Gradients of every parameter group against central finite differences of an independent,
//! plain f64 implementation of the training-mode loss (batch statistics in batch norm, the
//! trainer's own dropout masks), over random shapes.

use super::Trainer;
use super::config::{BatchNorm, Loss, TrainConfig};
use super::params::Dense;
use crate::batch::{BatchBuf, Columns, Value};
use crate::rng::Rng;
use crate::spec::{Field, FieldKind, ModelSpec, Output, Pooling};
use proptest::prelude::*;

/// All parameters in f64.
#[derive(Clone)]
struct Flat {
    embedding: Vec<f64>,
    linear: Vec<f64>,
    dense: Vec<Vec<f64>>,
}

/// The training-mode mean loss, written for clarity.
fn loss_f64(
    spec: &ModelSpec,
    config: &TrainConfig,
    p: &Flat,
    batch: &BatchBuf,
    labels: &[f32],
    masks: &[Vec<f32>],
) -> f64 {
    let d = spec.embedding_dim;
    let offsets = spec.row_offsets();
    let m = batch.rows();
    let hidden = spec.hidden.len();
    let mut xs = Vec::new();
    let mut fms = Vec::new();
    for r in 0..m {
        // The embedded fields' vectors, then the dense fields' raw values.
        let (mut x, mut dense) = (Vec::new(), Vec::new());
        let mut fm = p.dense[Dense::BIAS][0];
        for (f, field) in spec.fields.iter().enumerate() {
            let base = offsets[f] as usize;
            let mut terms: Vec<(usize, f64)> = Vec::new();
            batch.column(f).for_each_term(&field.kind, r, |id, w| {
                terms.push((base + id as usize, w as f64))
            });
            if field.kind == FieldKind::Dense {
                let (row, v) = terms[0];
                dense.push(v);
                fm += p.linear[row] * v;
                continue;
            }
            for j in 0..d {
                x.push(
                    terms
                        .iter()
                        .map(|&(row, w)| p.embedding[row * d + j] * w)
                        .sum(),
                );
            }
            fm += terms.iter().map(|&(row, w)| p.linear[row] * w).sum::<f64>();
        }
        let embedded = x.len() / d;
        x.extend(dense);
        for j in 0..d {
            let col: Vec<f64> = (0..embedded).map(|f| x[f * d + j]).collect();
            let s: f64 = col.iter().sum();
            fm += 0.5 * (s * s - col.iter().map(|v| v * v).sum::<f64>());
        }
        xs.push(x);
        fms.push(fm);
    }
    let mut h = xs;
    for (l, &n) in spec.hidden.iter().enumerate() {
        let (w, b) = (&p.dense[Dense::layer(l)], &p.dense[Dense::layer(l) + 1]);
        let k = h[0].len();
        let mut z: Vec<Vec<f64>> = h
            .iter()
            .map(|x| {
                (0..n)
                    .map(|o| b[o] + (0..k).map(|i| w[o * k + i] * x[i]).sum::<f64>())
                    .collect()
            })
            .collect();
        if let Some(bn) = config.batch_norm {
            let (gamma, beta) = (&p.dense[Dense::layer(l) + 2], &p.dense[Dense::layer(l) + 3]);
            for o in 0..n {
                let mean = z.iter().map(|r| r[o]).sum::<f64>() / m as f64;
                let var = z.iter().map(|r| (r[o] - mean).powi(2)).sum::<f64>() / m as f64;
                for row in z.iter_mut() {
                    row[o] = gamma[o] * (row[o] - mean) / (var + bn.eps as f64).sqrt() + beta[o];
                }
            }
        }
        for (r, row) in z.iter_mut().enumerate() {
            for (o, v) in row.iter_mut().enumerate() {
                *v = v.max(0.0);
                if let Some(mask) = masks.get(l) {
                    *v *= mask[r * n + o] as f64;
                }
            }
        }
        h = z;
    }
    let (w, b) = (
        &p.dense[Dense::out(hidden)],
        p.dense[Dense::out(hidden) + 1][0],
    );
    let mut total = 0.0;
    for r in 0..m {
        let logit = fms[r] + b + h[r].iter().zip(w).map(|(a, w)| a * w).sum::<f64>();
        let y = labels[r] as f64;
        total += match config.loss {
            Loss::Bce => logit.max(0.0) - logit * y + (-logit.abs()).exp().ln_1p(),
            Loss::Mse => (logit - y).powi(2),
        };
    }
    total / m as f64
}

/// A random spec: 1–4 fields of random kinds, small D and layers.
fn random_spec(rng: &mut Rng, output: Output) -> ModelSpec {
    let fields = 1 + rng.below(4) as usize;
    let fields = (0..fields)
        .map(|i| Field {
            name: format!("f{i}"),
            kind: match rng.below(5) {
                0 => FieldKind::Numeric,
                4 => FieldKind::Dense,
                1 => FieldKind::multi_hot(
                    1 + rng.below(6),
                    if rng.below(2) == 0 {
                        Pooling::Mean
                    } else {
                        Pooling::Sum
                    },
                ),
                _ => FieldKind::Categorical {
                    vocab: 1 + rng.below(6),
                },
            },
            table: None,
        })
        .collect();
    ModelSpec {
        mlp: Default::default(),
        table: Default::default(),
        fields,
        embedding_dim: 1 + rng.below(5) as usize,
        hidden: (0..rng.below(3))
            .map(|_| 1 + rng.below(7) as usize)
            .collect(),
        output,
        clamp: None,
    }
}

fn random_rows(spec: &ModelSpec, rng: &mut Rng, m: usize) -> BatchBuf {
    let mut batch = BatchBuf::new(spec);
    for _ in 0..m {
        let row: Vec<Value> = spec
            .fields
            .iter()
            .map(|f| match f.kind {
                FieldKind::Categorical { vocab } => Value::Id(rng.below(vocab)),
                FieldKind::Numeric | FieldKind::Dense => Value::Num(rng.uniform() * 2.0 - 0.5),
                FieldKind::MultiHot { vocab, .. } => {
                    Value::Ids((0..rng.below(4)).map(|_| rng.below(vocab)).collect())
                }
            })
            .collect();
        batch.push_row(&row).unwrap();
    }
    batch
}

/// Central finite differences of `loss` in every parameter `get` selects.
fn finite_differences(
    flat: &Flat,
    get: &dyn Fn(&mut Flat) -> &mut Vec<f64>,
    loss: &dyn Fn(&Flat) -> f64,
) -> Vec<f64> {
    let h = 1e-6;
    let mut p = flat.clone();
    let n = get(&mut p).len();
    (0..n)
        .map(|i| {
            let orig = get(&mut p)[i];
            get(&mut p)[i] = orig + h;
            let up = loss(&p);
            get(&mut p)[i] = orig - h;
            let down = loss(&p);
            get(&mut p)[i] = orig;
            (up - down) / (2.0 * h)
        })
        .collect()
}

/// Each element must be within 0.2% of its group's largest gradient, plus 1e-4 of the largest
/// gradient of the model: f32 rounding where an exact gradient cancels to zero (batch norm
/// over a few rows amplifies it) is relative to the magnitudes in play, not to the result.
fn compare(groups: &[(String, Vec<f32>, Vec<f64>)]) -> Result<(), TestCaseError> {
    let max_abs = |v: &[f64]| v.iter().fold(0.0f64, |a, &x| a.max(x.abs()));
    let global = groups.iter().map(|g| max_abs(&g.2)).fold(0.0, f64::max);
    for (name, analytic, fd) in groups {
        let scale = max_abs(fd);
        for (i, (&a, &f)) in analytic.iter().zip(fd).enumerate() {
            prop_assert!(
                (a as f64 - f).abs() <= 2e-3 * scale + 1e-4 * global + 1e-7,
                "{name}[{i}]: analytic {a} vs finite difference {f} (group {scale}, all {global})"
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn gradients_match_finite_differences(
        seed: u64, mse: bool, bn: bool, dropout: bool, rows in 2usize..12,
    ) {
        let mut rng = Rng::new(seed);
        let output = if mse { Output::Linear } else { Output::Sigmoid };
        let spec = random_spec(&mut rng, output);
        let config = TrainConfig {
            loss: if mse { Loss::Mse } else { Loss::Bce },
            batch_norm: bn.then(BatchNorm::default),
            dropout: if dropout { 0.3 } else { 0.0 },
            embedding_init: super::EmbeddingInit::Normal { std: 0.5 },
            seed,
            threads: 1,
            ..TrainConfig::default()
        };
        let mut trainer = Trainer::new(spec.clone(), config.clone()).unwrap();
        // Non-zero first-order weights and biases so that every term is exercised.
        for w in trainer.params.linear.iter_mut() {
            *w = rng.normal() * 0.3;
        }
        for t in trainer.params.dense.0.iter_mut() {
            for v in t.iter_mut() {
                *v += rng.normal() * 0.2;
            }
        }
        trainer.repack();
        let batch = random_rows(&spec, &mut rng, rows);
        let labels: Vec<f32> = (0..rows)
            .map(|_| if mse { 1.0 + 4.0 * rng.uniform() } else { rng.below(2) as f32 })
            .collect();
        let m = trainer.check(&batch, &labels).unwrap();
        let loss = trainer.gradients(&batch, &labels, m);
        // A batch of identical samples has zero variance under batch norm: the loss does not
        // depend on the layer below at all, and f32 gradients are rounding amplified by 1/√ε.
        let width = spec.mlp_input_width();
        let x0 = &trainer.ws.x0[..m * width];
        prop_assume!(!bn || x0.chunks_exact(width).any(|r| r != &x0[..width]));
        // Likewise a unit whose batch variance is within a few hundred ε of zero: its x̂ is
        // (z − mean) of nearly equal f32 values times up to 1/√ε, mostly rounding. Such
        // batches say nothing about the formulas; the f64 check would only measure f32 noise.
        prop_assume!(!bn || trainer.ws.inv_std.iter().flatten().all(|&s| s < 30.0));
        let params = &trainer.params;
        let flat = Flat {
            embedding: params.embedding.iter().map(|&v| v as f64).collect(),
            linear: params.linear.iter().map(|&v| v as f64).collect(),
            dense: params.dense.0.iter().map(|t| t.iter().map(|&v| v as f64).collect()).collect(),
        };
        let masks = trainer.ws.masks.clone();
        let f = |p: &Flat| loss_f64(&spec, &config, p, &batch, &labels, &masks);
        let want = f(&flat);
        prop_assert!((loss - want).abs() <= 1e-5 * want.abs().max(1.0), "loss {loss} vs {want}");

        let mut groups = Vec::new();
        for (i, g) in trainer.grads.0.iter().enumerate() {
            let fd = finite_differences(&flat, &|p: &mut Flat| &mut p.dense[i], &f);
            groups.push((format!("dense[{i}]"), g.clone(), fd));
        }
        // Embedding rows: scatter the sparse gradients to full size (rows not in the batch
        // must have a zero finite difference too).
        let d = spec.embedding_dim;
        let mut table = vec![0.0f32; flat.embedding.len()];
        let mut linear = vec![0.0f32; flat.linear.len()];
        for (rg, &base) in trainer.row_grads.iter().zip(&trainer.offsets) {
            for (slot, &row) in rg.rows.iter().enumerate() {
                let r = (base + row) as usize;
                table[r * d..(r + 1) * d].copy_from_slice(&rg.grad[slot * d..(slot + 1) * d]);
                linear[r] = rg.linear[slot];
            }
        }
        let fd = finite_differences(&flat, &|p: &mut Flat| &mut p.embedding, &f);
        groups.push(("embedding".into(), table, fd));
        let fd = finite_differences(&flat, &|p: &mut Flat| &mut p.linear, &f);
        groups.push(("linear".into(), linear, fd));
        compare(&groups)?;
    }
}

//! A plain forward pass in f64, written for clarity, used to check the optimized scorer.
//!
//! It reads the same file (embedding rows, first-order weights, the unpacked `[out, in]` layer
//! weights) with straightforward loops. Input must already be valid (see [`crate::score`]).

use crate::batch::{Column, Columns};
use crate::format::SectionId;
use crate::infer::Model;
use crate::spec::{FieldKind, Output, Pooling};

/// The score of every row of `batch`, in f64.
pub fn score_reference<C: Columns + ?Sized>(model: &Model, batch: &C) -> Vec<f64> {
    let spec = model.spec();
    let file = model.file();
    let d = spec.embedding_dim;
    // Rows decoded from the file's row format (exact for f32 tables).
    let row_of = |row: usize| {
        let mut e = vec![0.0f32; d];
        model.embedding_row(row, &mut e);
        e
    };
    let linear = model.linear();
    let offsets = spec.row_offsets();
    let section = |id| file.f32s(id).expect("validated files have every section");
    let rows = batch.rows();
    let mut scores = Vec::with_capacity(rows);
    for r in 0..rows {
        // The embedded fields' vectors, then the dense fields' values.
        let mut x: Vec<f64> = Vec::with_capacity(spec.mlp_input_width());
        let mut dense: Vec<f64> = Vec::new();
        let mut first_order = section(SectionId::Bias)[0] as f64;
        for (f, field) in spec.fields.iter().enumerate() {
            let base = offsets[f] as usize;
            let embedding = |row: usize| row_of(row).into_iter().map(|v| v as f64);
            match (batch.column(f), field.kind) {
                (Column::Numeric(values), FieldKind::Dense) => {
                    dense.push(values[r] as f64);
                    first_order += linear[base] as f64 * values[r] as f64;
                }
                (Column::Numeric(values), _) => {
                    x.extend(embedding(base).map(|e| e * values[r] as f64));
                    first_order += linear[base] as f64 * values[r] as f64;
                }
                (Column::Categorical(ids), _) => {
                    x.extend(embedding(base + ids[r] as usize));
                    first_order += linear[base + ids[r] as usize] as f64;
                }
                (
                    Column::MultiHot {
                        ids,
                        offsets,
                        weights,
                    },
                    FieldKind::MultiHot {
                        pooling,
                        linear_pooling,
                        padding,
                        ..
                    },
                ) => {
                    // (row, its own weight: 1 in an unweighted field)
                    let terms: Vec<(usize, f64)> = (offsets[r]..offsets[r + 1])
                        .filter(|&i| Some(ids[i]) != padding)
                        .map(|i| (base + ids[i] as usize, weights.map_or(1.0, |w| w[i] as f64)))
                        .collect();
                    let vectors: Vec<Vec<f32>> =
                        terms.iter().map(|&(row, _)| row_of(row)).collect();
                    for j in 0..d {
                        let weighted = vectors.iter().zip(&terms).map(|(e, t)| e[j] as f64 * t.1);
                        x.push(pool(pooling, weighted));
                    }
                    let weighted = terms.iter().map(|&(row, w)| linear[row] as f64 * w);
                    first_order += pool(linear_pooling, weighted);
                }
                (Column::MultiHot { .. }, _) => unreachable!("validated against the spec"),
            }
        }
        let embedded = x.len() / d;
        x.extend(dense);
        let mut pairwise = 0.0;
        for j in 0..d {
            let column: Vec<f64> = (0..embedded).map(|f| x[f * d + j]).collect();
            let sum: f64 = column.iter().sum();
            let squares: f64 = column.iter().map(|v| v * v).sum();
            pairwise += 0.5 * (sum * sum - squares);
        }
        let mut h = x;
        for (i, &(input, output)) in spec.layer_shapes().iter().enumerate() {
            let hidden = i < spec.hidden.len();
            let (w, b) = SectionId::layer(i, spec.hidden.len());
            let (w, b) = (section(w), section(b));
            h = (0..output)
                .map(|o| {
                    let z = b[o] as f64
                        + (0..input)
                            .map(|k| w[o * input + k] as f64 * h[k])
                            .sum::<f64>();
                    if hidden { z.max(0.0) } else { z }
                })
                .collect();
        }
        let logit = first_order + pairwise + h[0];
        scores.push(match (spec.output, spec.clamp) {
            (Output::Sigmoid, _) => 1.0 / (1.0 + (-logit).exp()),
            (Output::Linear, Some([lo, hi])) => logit.clamp(lo as f64, hi as f64),
            (Output::Linear, None) => logit,
        });
    }
    scores
}

/// `values` pooled in f64: summed, averaged (0 for none) or their maximum.
fn pool(pooling: Pooling, values: impl Iterator<Item = f64>) -> f64 {
    let values: Vec<f64> = values.collect();
    match pooling {
        Pooling::Sum => values.iter().sum(),
        Pooling::Mean => values.iter().sum::<f64>() / values.len().max(1) as f64,
        Pooling::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    }
}

/// Largest `|a − b|` over two score vectors of the same model in two precisions (0 for
/// empty ones; NaN-free inputs assumed, as a NaN difference is skipped by `max`).
pub fn max_abs_difference(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

/// Largest `|a − b| / max(|b|, 1)` over two score vectors: the agreement measure used by tests,
/// the demo and the peer scripts (relative for large scores, absolute below 1).
pub fn max_relative_error(a: &[f32], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&a, &b)| (a as f64 - b).abs() / b.abs().max(1.0))
        .fold(0.0, f64::max)
}

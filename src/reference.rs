//! A plain forward pass in f64, written for clarity, used to check the optimized scorer.
//!
//! It reads the same file (embedding rows, first-order weights, the unpacked `[out, in]` layer
//! weights) with straightforward loops. Input must already be valid (see [`crate::score`]).

use crate::batch::Columns;
use crate::format::SectionId;
use crate::infer::Model;
use crate::spec::Output;

/// The score of every row of `batch`, in f64.
pub fn score_reference<C: Columns + ?Sized>(model: &Model, batch: &C) -> Vec<f64> {
    let spec = model.spec();
    let file = model.file();
    let d = spec.embedding_dim;
    let table = model.embedding();
    let linear = model.linear();
    let offsets = spec.row_offsets();
    let section = |id| file.f32s(id).expect("validated files have every section");
    let rows = batch.rows();
    let mut scores = Vec::with_capacity(rows);
    for r in 0..rows {
        let mut x: Vec<f64> = Vec::with_capacity(spec.mlp_input_width());
        let mut first_order = section(SectionId::Bias)[0] as f64;
        for (f, field) in spec.fields.iter().enumerate() {
            let base = offsets[f] as usize;
            // (row, weight) pairs whose weighted sum is this field's embedding.
            let mut terms: Vec<(usize, f64)> = Vec::new();
            batch.column(f).for_each_term(&field.kind, r, |id, w| {
                terms.push((base + id as usize, w as f64))
            });
            for j in 0..d {
                x.push(
                    terms
                        .iter()
                        .map(|&(row, w)| table[row * d + j] as f64 * w)
                        .sum(),
                );
            }
            first_order += terms
                .iter()
                .map(|&(row, w)| linear[row] as f64 * w)
                .sum::<f64>();
        }
        let mut pairwise = 0.0;
        for j in 0..d {
            let column: Vec<f64> = (0..spec.fields.len()).map(|f| x[f * d + j]).collect();
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

/// Largest `|a − b| / max(|b|, 1)` over two score vectors: the agreement measure used by tests,
/// the demo and the peer scripts (relative for large scores, absolute below 1).
pub fn max_relative_error(a: &[f32], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&a, &b)| (a as f64 - b).abs() / b.abs().max(1.0))
        .fold(0.0, f64::max)
}

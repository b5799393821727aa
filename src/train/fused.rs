//! Adam fused into the weight-gradient GEMM.
//!
//! A hidden layer's `dW = dZᵀ · X` comes out of the GEMM one block of 48 rows at a time. When a
//! block is final, the optimizer updates those weights right there, while their gradients are
//! in L2, and writes the updated weights into both packed copies: the forward GEMM's and the
//! backward `dX = dZ · W`'s. As passes of their own, the update and the two packings read the
//! gradients and the weights again from L3 or memory after the GEMMs have evicted them.
//!
//! Each weight gets exactly the arithmetic of the unfused path, in the same order (L2 term,
//! decoupled decay, Adam), so both paths give bit-identical weights. The update needs nothing
//! but the weight's own gradient, so it is only fused when no gradient clipping is configured
//! (clipping scales every gradient by the norm of all of them).

use super::forward::par_gemm_rows;
use super::optim::AdamStep;
use crate::kernels::Isa;
use crate::kernels::gemm::{DoneRows, Line, MC, NR, Operand, PackBuffer, PackedMatrix, fill_panel};
use rayon::prelude::*;

/// What the fused update of one layer does to each weight before Adam.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Regularization {
    /// L2 coefficient added to the gradient (`g += l2 · w`).
    pub l2: f32,
    /// Decoupled weight decay: the weight is multiplied by this (1: none).
    pub keep: f32,
}

/// One layer's weights `[n, k]` with their Adam moments, their packed copies, and the settings
/// of the update.
pub(crate) struct LayerWeights<'a> {
    pub weight: &'a mut [f32],
    pub m: &'a mut [f32],
    pub v: &'a mut [f32],
    /// Packed for the forward GEMM (`PackedMatrix` of `[n, k]`).
    pub forward: &'a mut PackedMatrix,
    /// Packed transposed for `dX = dZ · W` (`PackedMatrix` of `[k, n]`).
    pub transposed: &'a mut PackedMatrix,
    pub k: usize,
    pub n: usize,
    pub step: AdamStep,
    pub reg: Regularization,
}

/// One thread's share of the layer: a range of weight rows starting at a multiple of 16.
struct Share<'a> {
    k: usize,
    weight: &'a mut [f32],
    m: &'a mut [f32],
    v: &'a mut [f32],
    /// The forward panels holding the share's rows.
    forward: &'a mut [Line],
    /// For every panel of the transposed packing, its lines for the share's rows.
    transposed: Vec<&'a mut [Line]>,
    step: AdamStep,
    reg: Regularization,
}

// Blocks of finished rows start at multiples of `MC`, shares at multiples of 16: a block's
// rows fill whole forward panels (but for the layer's last).
const _: () = assert!(MC.is_multiple_of(NR));

impl Share<'_> {
    /// Updates the weights of a finished block of gradient rows (share-relative) and writes
    /// them into both packings: row by row, each a contiguous stream of `k` values.
    fn update(&mut self, done: DoneRows<'_>) {
        let k = self.k;
        for (r, row) in done.rows.clone().enumerate() {
            let span = row * k..(row + 1) * k;
            let g = &mut done.c[r * done.ldc..r * done.ldc + k];
            let w = &mut self.weight[span.clone()];
            if self.reg.l2 > 0.0 {
                g.iter_mut()
                    .zip(&*w)
                    .for_each(|(g, &w)| *g += self.reg.l2 * w);
            }
            if self.reg.keep != 1.0 {
                w.iter_mut().for_each(|w| *w *= self.reg.keep);
            }
            self.step
                .update(w, Some(g), &mut self.m[span.clone()], &mut self.v[span]);
        }
        let rows = done.rows;
        // Transposed packing: line `row` of panel `j` is the row's weights `16j..16j + 16`.
        // Panel by panel, so that the writes run through consecutive lines.
        for (j, panel) in self.transposed.iter_mut().enumerate() {
            for (line, row) in panel[rows.clone()].iter_mut().zip(rows.clone()) {
                line.set(&self.weight[row * k + j * NR..row * k + k.min((j + 1) * NR)]);
            }
        }
        // Forward packing: panel `p` holds rows `16p..16p + 16`.
        for p0 in rows.clone().step_by(NR) {
            let p1 = (p0 + NR).min(rows.end);
            let panel = &mut self.forward[p0 / NR * k..(p0 / NR + 1) * k];
            fill_panel(panel, &self.weight[p0 * k..p1 * k], k);
        }
    }
}

/// `dW = dZᵀ · X` into `grad` (`n × k`, from `dz`, `m × n`, and `X` packed transposed), each
/// block of finished rows followed by the Adam update of its weights and their re-packing. Rows are split
/// between the pool's threads in multiples of 16, so that threads own whole forward panels.
#[allow(clippy::too_many_arguments)]
pub(crate) fn weight_gradient_and_update(
    isa: Isa,
    dz: &[f32],
    m: usize,
    x_packed: &PackedMatrix,
    grad: &mut [f32],
    layer: LayerWeights<'_>,
    pack: &mut [PackBuffer],
) {
    let LayerWeights {
        weight,
        m: mom,
        v,
        forward,
        transposed,
        k,
        n,
        step,
        reg,
    } = layer;
    let chunk = par_gemm_rows(pack.len(), n, k * m, NR);
    let forward = forward.panels_for(n, k);
    // Every panel of the transposed packing is `n` lines, one per weight row: cut each into
    // the threads' row ranges.
    let mut shares_t: Vec<Vec<&mut [Line]>> = (0..n.div_ceil(chunk)).map(|_| Vec::new()).collect();
    for panel in transposed.panels_for(k, n).chunks_exact_mut(n.max(1)) {
        for (share, lines) in shares_t.iter_mut().zip(panel.chunks_mut(chunk)) {
            share.push(lines);
        }
    }
    let shares: Vec<Share<'_>> = weight
        .chunks_mut(chunk * k)
        .zip(mom.chunks_mut(chunk * k))
        .zip(v.chunks_mut(chunk * k))
        .zip(forward.chunks_mut(chunk.div_ceil(NR) * k))
        .zip(shares_t)
        .map(|((((weight, m), v), forward), transposed)| Share {
            k,
            weight,
            m,
            v,
            forward,
            transposed,
            step,
            reg,
        })
        .collect();
    grad[..n * k]
        .par_chunks_mut(chunk * k)
        .zip(pack.par_iter_mut())
        .zip(shares)
        .enumerate()
        .for_each(|(i, ((c, pack), mut share))| {
            let rows = c.len() / k;
            Operand::Columns(&dz[i * chunk..], n)
                .gemm_then(isa, rows, x_packed, c, k, pack, |t| share.update(t));
        });
}

#[cfg(test)]
mod tests {
    use super::super::params::Dense;
    use super::super::{BatchNorm, TrainConfig, Trainer};
    use crate::kernels::gemm::PackedMatrix;
    use crate::spec::ModelSpec;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Over random shapes (layer widths that are and are not multiples of 16, one row to
        /// several hundred, one to three threads, so that weight rows split between threads
        /// with ragged last shares), the fused update and the separate passes give the same
        /// weights bit for bit, and both packed copies equal a fresh packing of them.
        #[test]
        fn fused_equals_separate_on_random_shapes(
            dim in 1usize..9, vocab in 1u64..20, hidden in prop::collection::vec(1usize..60, 1..4),
            rows in 1usize..300, threads in 1usize..4, bn: bool, dropout: bool, seed: u64,
        ) {
            let hidden: Vec<String> = hidden.iter().map(|w| w.to_string()).collect();
            let spec = ModelSpec::from_json(&format!(
                r#"{{"fields":[{{"name":"a","kind":"categorical","vocab":{vocab}}},
                              {{"name":"b","kind":"numeric"}}],
                    "embedding_dim":{dim},"hidden":[{}],"output":"sigmoid"}}"#,
                hidden.join(",")
            ))
            .unwrap();
            let config = |clip_norm| TrainConfig {
                threads,
                seed,
                batch_norm: bn.then(BatchNorm::default),
                dropout: if dropout { 0.25 } else { 0.0 },
                l2_dense: 1e-3,
                weight_decay_dense: 0.02,
                clip_norm,
                ..TrainConfig::default()
            };
            let mut fused = Trainer::new(spec.clone(), config(None)).unwrap();
            let mut separate = Trainer::new(spec.clone(), config(Some(f32::MAX))).unwrap();
            let batch = crate::fixtures::random_batch(&spec, rows, seed);
            let labels: Vec<f32> = (0..rows).map(|i| (i % 4 == 0) as u8 as f32).collect();
            for _ in 0..2 {
                fused.step(&batch, &labels).unwrap();
                separate.step(&batch, &labels).unwrap();
            }
            prop_assert_eq!(&fused.params, &separate.params);
            let t = &fused.params.dense.0;
            for (l, &(k, n)) in spec.layer_shapes()[..spec.hidden.len()].iter().enumerate() {
                let w = &t[Dense::layer(l)];
                prop_assert_eq!(&fused.packed[l], &PackedMatrix::pack(w, &t[Dense::layer(l) + 1], n, k));
                let mut transposed = PackedMatrix::pack(&[], &[], 0, 0);
                transposed.repack_transposed(w, k, n);
                prop_assert_eq!(&fused.packed_wt[l], &transposed);
            }
        }
    }
}

//! The backward pass: exact gradients of the mean loss with respect to every parameter.
//!
//! Per hidden layer (Linear → batch norm → ReLU → dropout), with `m` rows:
//! - through dropout and ReLU: `dy = da · mask` where the unit was kept and positive;
//! - batch norm (training mode): `dβ = Σ dy`, `dγ = Σ dy·x̂`,
//!   `dz = γ/σ · (dy − dβ/m − x̂ · dγ/m)`;
//! - the linear layer: `db = Σ dz` (exactly 0 under batch norm, which removes any shift), `dW = dzᵀ · X`, `dX = dz · W`, both products on the
//!   blocked GEMM kernel of inference (the backward operands are packed transposed).
//!
//! Then each field's embedding gets `dX₀` plus the FM term `dlogit · (Σ_f e_f − e_f)` and the
//! rows are accumulated per distinct row in sample order. Sums over the batch are taken per
//! block of 64 rows (in parallel) and the block sums added in block order; GEMMs split by
//! rows: gradients do not depend on the thread count.

use super::Trainer;
use super::config::Loss;
use super::forward::{Operand, ROW_BLOCK, par_gemm};
use super::fused::{LayerWeights, Regularization, weight_gradient_and_update};
use super::optim::AdamStep;
use super::params::Dense;
use crate::batch::{Column, Columns};
use crate::spec::FieldKind;
use rayon::prelude::*;

/// `out = Σ_b partials[b]` over blocks of `width` values, in block order: with blocks of a
/// fixed number of rows this sum does not depend on the thread count.
pub(crate) fn add_blocks(partials: &[f32], width: usize, out: &mut [f32]) {
    out.fill(0.0);
    for part in partials.chunks_exact(width) {
        for (o, &p) in out.iter_mut().zip(part) {
            *o += p;
        }
    }
}

/// Mean loss over `logit` and `labels`, and `∂loss/∂logit` into `dlogit`.
pub(crate) fn loss_and_gradient(
    loss: Loss,
    logit: &[f32],
    labels: &[f32],
    dlogit: &mut [f32],
) -> f64 {
    let inv = 1.0 / logit.len() as f32;
    let mut total = 0.0f64;
    for ((&z, &y), g) in logit.iter().zip(labels).zip(dlogit.iter_mut()) {
        match loss {
            Loss::Bce => {
                // log(1 + e^z) − y·z, stable for large |z|.
                let (z64, y64) = (z as f64, y as f64);
                total += z64.max(0.0) - z64 * y64 + (-z64.abs()).exp().ln_1p();
                let p = 1.0 / (1.0 + (-z).exp());
                *g = (p - y) * inv;
            }
            Loss::Mse => {
                let e = z - y;
                total += (e as f64) * (e as f64);
                *g = 2.0 * e * inv;
            }
        }
    }
    total / logit.len() as f64
}

impl Trainer {
    /// Backward pass over the `m` rows of the last `forward` (in training mode): dense
    /// gradients into `self.grads`, embedding rows into `self.row_grads`. With `update`, each
    /// hidden layer's weights are also updated (and re-packed) by Adam as blocks of their
    /// gradient rows come out of the GEMM (see `fused`); the rest is left to the caller.
    pub(crate) fn backward<C: Columns + Sync + ?Sized>(
        &mut self,
        batch: &C,
        m: usize,
        update: Option<(AdamStep, Regularization)>,
    ) {
        let hidden = self.spec.hidden.len();
        let width0 = self.spec.mlp_input_width();
        let ws = &mut self.ws;
        let grads = &mut self.grads.0;
        let dlogit = &ws.dlogit[..m];
        grads[Dense::BIAS][0] = dlogit.iter().sum();

        // Output unit: dW = Σ_r dlogit_r · a_r (blocked sums), da_r = dlogit_r · w.
        let out = Dense::out(hidden);
        let out_w = &self.params.dense.0[out];
        let last = out_w.len();
        let input: &[f32] = if hidden == 0 {
            &ws.x0
        } else {
            &ws.acts[hidden - 1]
        };
        let blocks = m.div_ceil(ROW_BLOCK);
        let partials = &mut ws.partials[..blocks * last];
        input[..m * last]
            .par_chunks(ROW_BLOCK * last)
            .zip(dlogit.par_chunks(ROW_BLOCK))
            .zip(partials.par_chunks_mut(last))
            .zip(ws.da[..m * last].par_chunks_mut(ROW_BLOCK * last))
            .for_each(|(((a, dl), part), da)| {
                part.fill(0.0);
                for ((a, &dl), da) in a.chunks_exact(last).zip(dl).zip(da.chunks_exact_mut(last)) {
                    for (((p, &a), da), &w) in part.iter_mut().zip(a).zip(da.iter_mut()).zip(out_w)
                    {
                        *p += dl * a;
                        *da = dl * w;
                    }
                }
            });
        add_blocks(partials, last, &mut grads[out]);
        grads[out + 1][0] = dlogit.iter().sum();

        let bn = self.config.batch_norm.is_some();
        for l in (0..hidden).rev() {
            let n = self.spec.hidden[l];
            let k = if l == 0 {
                width0
            } else {
                self.spec.hidden[l - 1]
            };
            let t = Dense::layer(l);
            let da = &ws.da[..m * n];
            let dz = &mut ws.dz[..m * n];
            let acts = &ws.acts[l][..m * n];
            let xhat = &ws.xhat[l][..m * n];
            let mask = ws.masks.get(l).map(|mask| &mask[..m * n]);
            // Pass 1, by row blocks: through dropout and ReLU (a unit that was dropped or not
            // positive passes nothing), with the block's column sums of dy (and dy · x̂).
            let width = if bn { 2 * n } else { n };
            let partials = &mut ws.partials[..blocks * width];
            dz.par_chunks_mut(ROW_BLOCK * n)
                .zip(partials.par_chunks_mut(width))
                .enumerate()
                .for_each(|(b, (dz, part))| {
                    let r0 = b * ROW_BLOCK * n;
                    let span = r0..r0 + dz.len();
                    let (da, acts, xhat) =
                        (&da[span.clone()], &acts[span.clone()], &xhat[span.clone()]);
                    match mask {
                        Some(mask) => {
                            for (((dz, &da), &a), &mk) in
                                dz.iter_mut().zip(da).zip(acts).zip(&mask[span])
                            {
                                *dz = if a > 0.0 { da * mk } else { 0.0 };
                            }
                        }
                        None => {
                            for ((dz, &da), &a) in dz.iter_mut().zip(da).zip(acts) {
                                *dz = if a > 0.0 { da } else { 0.0 };
                            }
                        }
                    }
                    part.fill(0.0);
                    let (sum, sum_x) = part.split_at_mut(n);
                    for (dy, xh) in dz.chunks_exact(n).zip(xhat.chunks_exact(n)) {
                        for (s, &dy) in sum.iter_mut().zip(dy) {
                            *s += dy;
                        }
                        if bn {
                            for ((s, &dy), &xh) in sum_x.iter_mut().zip(dy).zip(xh) {
                                *s += dy * xh;
                            }
                        }
                    }
                });
            if bn {
                let sums = &mut ws.col_a[..2 * n];
                add_blocks(partials, 2 * n, sums);
                let (dbeta, dgamma) = sums.split_at(n);
                grads[t + 2].copy_from_slice(dgamma);
                grads[t + 3].copy_from_slice(dbeta);
                // Batch norm subtracts the batch mean: a bias before it has no effect on the
                // loss, and its exact gradient is zero (summing dz would only add rounding).
                grads[t + 1].fill(0.0);
                // Pass 2: dz = γ/σ · (dy − dβ/m − x̂ · dγ/m).
                // As `dz = c·dy − c·dβ/m − c·dγ/m · x̂` with `c = γ/σ` per unit, so that the
                // row loop is three zipped streams the compiler vectorises.
                let gamma = &self.params.dense.0[t + 2];
                let inv_std = &ws.inv_std[l];
                let inv_m = 1.0 / m as f32;
                let coef = &mut ws.col_b[..3 * n];
                for o in 0..n {
                    let c = gamma[o] * inv_std[o];
                    coef[o] = c;
                    coef[n + o] = c * dbeta[o] * inv_m;
                    coef[2 * n + o] = c * dgamma[o] * inv_m;
                }
                let (scale, rest) = coef.split_at(n);
                let (shift, slope) = rest.split_at(n);
                dz.par_chunks_mut(ROW_BLOCK * n)
                    .zip(xhat.par_chunks(ROW_BLOCK * n))
                    .for_each(|(dz, xhat)| {
                        for (dy, xh) in dz.chunks_exact_mut(n).zip(xhat.chunks_exact(n)) {
                            for ((((dy, &xh), &c), &sh), &sl) in
                                dy.iter_mut().zip(xh).zip(scale).zip(shift).zip(slope)
                            {
                                *dy = c * *dy - sh - sl * xh;
                            }
                        }
                    });
            } else {
                add_blocks(partials, n, &mut grads[t + 1]);
            }
            // dX = dz · W, first: a fused update below changes W (`packed_wt` holds W as it
            // was before this step).
            par_gemm(
                self.isa,
                Operand::Rows(&ws.dz[..m * n], n),
                m,
                &self.packed_wt[l],
                false,
                &mut ws.dx[..m * k],
                k,
                &mut ws.pack,
            );
            // dW = dzᵀ · X: dz read as a transposed operand, X packed transposed.
            let input: &[f32] = if l == 0 { &ws.x0 } else { &ws.acts[l - 1] };
            ws.packed_x[l].repack_transposed(&input[..m * k], k, m);
            match update {
                Some((step, reg)) => weight_gradient_and_update(
                    self.isa,
                    &ws.dz[..m * n],
                    m,
                    &ws.packed_x[l],
                    &mut grads[t],
                    LayerWeights {
                        weight: &mut self.params.dense.0[t],
                        m: &mut self.adam.m.0[t],
                        v: &mut self.adam.v.0[t],
                        forward: &mut self.packed[l],
                        transposed: &mut self.packed_wt[l],
                        k,
                        n,
                        step,
                        reg,
                    },
                    &mut ws.pack,
                ),
                None => par_gemm(
                    self.isa,
                    Operand::Columns(&ws.dz[..m * n], n),
                    n,
                    &ws.packed_x[l],
                    false,
                    &mut grads[t],
                    k,
                    &mut ws.pack,
                ),
            }
            std::mem::swap(&mut ws.da, &mut ws.dx);
        }
        self.embedding_gradients(batch, m);
    }

    /// Adds the FM gradient to `dX₀` (now in `ws.da`) and accumulates it per embedding row,
    /// one task per field.
    fn embedding_gradients<C: Columns + Sync + ?Sized>(&mut self, batch: &C, m: usize) {
        let spec = &self.spec;
        let d = spec.embedding_dim;
        let width = spec.mlp_input_width();
        // The FM term covers the embedded fields, the first `embedded` values of a row; the
        // dense fields' raw values after them have no embedding to update.
        let embedded = spec.embedded_fields() * d;
        let starts = spec.input_offsets();
        let zeros = vec![0.0f32; d];
        let ws = &mut self.ws;
        let (x0, sum, dlogit) = (&ws.x0, &ws.sum, &ws.dlogit);
        ws.da[..m * width]
            .par_chunks_mut(width)
            .enumerate()
            .for_each(|(r, dx)| {
                let dl = dlogit[r];
                let x = &x0[r * width..][..embedded];
                let s = &sum[r * d..(r + 1) * d];
                for (dxf, xf) in dx[..embedded].chunks_exact_mut(d).zip(x.chunks_exact(d)) {
                    for ((g, &e), &s) in dxf.iter_mut().zip(xf).zip(s) {
                        *g += dl * (s - e);
                    }
                }
            });
        let dx = &ws.da;
        self.row_grads
            .par_iter_mut()
            .zip(&spec.fields)
            .enumerate()
            .for_each(|(f, (rg, field))| {
                rg.clear();
                let g = |r: usize| &dx[r * width + starts[f]..][..d];
                match (batch.column(f), field.kind) {
                    // Only the first-order weight: a dense value has no embedding.
                    (Column::Numeric(values), FieldKind::Dense) => {
                        for (r, &v) in values[..m].iter().enumerate() {
                            rg.add(0, v, &zeros, dlogit[r]);
                        }
                    }
                    (Column::Categorical(ids), _) => {
                        for (r, &id) in ids[..m].iter().enumerate() {
                            rg.add(id, 1.0, g(r), dlogit[r]);
                        }
                    }
                    (Column::Numeric(values), _) => {
                        for (r, &v) in values[..m].iter().enumerate() {
                            rg.add(0, v, g(r), dlogit[r]);
                        }
                    }
                    // Trainable multi-hot fields have no per-id weights (`is_trainable`).
                    (
                        Column::MultiHot { ids, offsets, .. },
                        FieldKind::MultiHot { pooling, .. },
                    ) => {
                        for r in 0..m {
                            let list = &ids[offsets[r]..offsets[r + 1]];
                            let w = pooling.weight(list.len());
                            for &id in list {
                                rg.add(id, w, g(r), dlogit[r]);
                            }
                        }
                    }
                    _ => unreachable!("columns were validated against the spec"),
                }
            });
    }
}

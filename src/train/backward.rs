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
//! rows are accumulated per distinct row in sample order. Column sums run over rows in order
//! and GEMMs split by rows, so gradients do not depend on the thread count.

use super::Trainer;
use super::config::Loss;
use super::forward::{par_gemm, pool_weight};
use super::params::Dense;
use crate::batch::{Column, Columns};
use crate::spec::FieldKind;

/// `out[o] = Σ_r mat[r][o]`, rows in order.
fn column_sums(mat: &[f32], n: usize, out: &mut [f32]) {
    out.fill(0.0);
    for row in mat.chunks_exact(n) {
        for (s, &v) in out.iter_mut().zip(row) {
            *s += v;
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
    /// gradients into `self.grads`, embedding rows into `self.row_grads`.
    pub(crate) fn backward<C: Columns + ?Sized>(&mut self, batch: &C, m: usize) {
        let hidden = self.spec.hidden.len();
        let width0 = self.spec.mlp_input_width();
        let ws = &mut self.ws;
        let grads = &mut self.grads.0;
        let dlogit = &ws.dlogit[..m];
        grads[Dense::BIAS][0] = dlogit.iter().sum();

        // Output unit.
        let out = Dense::out(hidden);
        let out_w = &self.params.dense.0[out];
        let last = out_w.len();
        let input: &[f32] = if hidden == 0 {
            &ws.x0
        } else {
            &ws.acts[hidden - 1]
        };
        let g = &mut grads[out];
        g.fill(0.0);
        for (&dl, a) in dlogit.iter().zip(input.chunks_exact(last)) {
            for (g, &a) in g.iter_mut().zip(a) {
                *g += dl * a;
            }
        }
        grads[out + 1][0] = dlogit.iter().sum();
        for (&dl, da) in dlogit.iter().zip(ws.da.chunks_exact_mut(last)) {
            for (da, &w) in da.iter_mut().zip(out_w) {
                *da = dl * w;
            }
        }

        for l in (0..hidden).rev() {
            let n = self.spec.hidden[l];
            let k = if l == 0 {
                width0
            } else {
                self.spec.hidden[l - 1]
            };
            let t = Dense::layer(l);
            let (da, dz) = (&ws.da[..m * n], &mut ws.dz[..m * n]);
            let acts = &ws.acts[l][..m * n];
            // Through dropout and ReLU (a unit that was dropped or not positive passes nothing).
            match ws.masks.get(l) {
                Some(mask) => {
                    for (((dz, &da), &a), &mk) in
                        dz.iter_mut().zip(da).zip(acts).zip(&mask[..m * n])
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
            if self.config.batch_norm.is_some() {
                let xhat = &ws.xhat[l][..m * n];
                let (dbeta, dgamma) = (&mut ws.col_a[..n], &mut ws.col_b[..n]);
                column_sums(dz, n, dbeta);
                dgamma.fill(0.0);
                for (dy, xh) in dz.chunks_exact(n).zip(xhat.chunks_exact(n)) {
                    for ((s, &dy), &xh) in dgamma.iter_mut().zip(dy).zip(xh) {
                        *s += dy * xh;
                    }
                }
                grads[t + 2].copy_from_slice(dgamma);
                grads[t + 3].copy_from_slice(dbeta);
                let gamma = &self.params.dense.0[t + 2];
                let inv_std = &ws.inv_std[l];
                let inv_m = 1.0 / m as f32;
                for (dy, xh) in dz.chunks_exact_mut(n).zip(xhat.chunks_exact(n)) {
                    for o in 0..n {
                        dy[o] = gamma[o]
                            * inv_std[o]
                            * (dy[o] - dbeta[o] * inv_m - xh[o] * dgamma[o] * inv_m);
                    }
                }
            }
            if self.config.batch_norm.is_some() {
                // Batch norm subtracts the batch mean: a bias before it has no effect on the
                // loss, and its exact gradient is zero (summing dz would only add rounding).
                grads[t + 1].fill(0.0);
            } else {
                column_sums(dz, n, &mut grads[t + 1]);
            }
            // dW = dzᵀ · X: transpose dz, pack X transposed.
            let dzt = &mut ws.dzt[..n * m];
            for (r, row) in dz.chunks_exact(n).enumerate() {
                for (o, &v) in row.iter().enumerate() {
                    dzt[o * m + r] = v;
                }
            }
            let input: &[f32] = if l == 0 { &ws.x0 } else { &ws.acts[l - 1] };
            ws.packed_x.repack_transposed(&input[..m * k], k, m);
            par_gemm(
                self.isa,
                dzt,
                m,
                n,
                &ws.packed_x,
                false,
                &mut grads[t],
                k,
                &mut ws.pack,
            );
            // dX = dz · W.
            ws.packed_wt
                .repack_transposed(&self.params.dense.0[t], k, n);
            par_gemm(
                self.isa,
                &ws.dz[..m * n],
                n,
                m,
                &ws.packed_wt,
                false,
                &mut ws.dx[..m * k],
                k,
                &mut ws.pack,
            );
            std::mem::swap(&mut ws.da, &mut ws.dx);
        }
        self.embedding_gradients(batch, m);
    }

    /// Adds the FM gradient to `dX₀` (now in `ws.da`) and accumulates it per embedding row.
    fn embedding_gradients<C: Columns + ?Sized>(&mut self, batch: &C, m: usize) {
        let spec = &self.spec;
        let d = spec.embedding_dim;
        let width = spec.mlp_input_width();
        let ws = &mut self.ws;
        let rg = &mut self.row_grads;
        rg.clear();
        for r in 0..m {
            let dl = ws.dlogit[r];
            let dx = &mut ws.da[r * width..(r + 1) * width];
            let x = &ws.x0[r * width..(r + 1) * width];
            let s = &ws.sum[r * d..(r + 1) * d];
            for (dxf, xf) in dx.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
                for ((g, &e), &s) in dxf.iter_mut().zip(xf).zip(s) {
                    *g += dl * (s - e);
                }
            }
            for (f, field) in spec.fields.iter().enumerate() {
                let base = self.offsets[f];
                let g = &dx[f * d..(f + 1) * d];
                match (batch.column(f), field.kind) {
                    (Column::Categorical(ids), _) => rg.add(base + ids[r], 1.0, g, dl),
                    (Column::Numeric(values), _) => rg.add(base, values[r], g, dl),
                    (Column::MultiHot { ids, offsets }, FieldKind::MultiHot { pooling, .. }) => {
                        let list = &ids[offsets[r]..offsets[r + 1]];
                        let w = pool_weight(pooling, list.len());
                        for &id in list {
                            rg.add(base + id, w, g, dl);
                        }
                    }
                    _ => unreachable!("columns were validated against the spec"),
                }
            }
        }
    }
}

//! The forward pass: gather and pool embeddings (the gather of scoring, `kernels::gather`),
//! FM term, MLP (GEMM kernels of inference), batch norm with batch or running statistics,
//! dropout, output unit.
//!
//! Every parallel split here is by rows (or by fixed 64-row blocks for dropout), and no value
//! is summed across a split, so results are the same for any thread count.

use super::Trainer;
use super::backward::add_blocks;
use super::params::Dense;
use crate::batch::Columns;
use crate::kernels::Isa;
use crate::kernels::dot::dot;
use crate::kernels::gather::{Tables, gather};
use crate::kernels::gemm::{PackBuffer, PackedMatrix};
use crate::kernels::rows::F32Rows;
use crate::rng::Rng;
use rayon::prelude::*;

/// Rows per parallel task of the element-wise passes, and per dropout random stream.
pub(crate) const ROW_BLOCK: usize = 64;

/// Whether batch norm uses the batch's statistics (training) or the running ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Train,
    Eval,
}

pub(crate) use crate::kernels::gemm::Operand;

/// `C = act(A · Wᵀ + b)` with the rows of `A` split between the pool's threads. Each element
/// is computed by the same instructions whatever the split.
#[allow(clippy::too_many_arguments)]
pub(crate) fn par_gemm(
    isa: Isa,
    a: Operand<'_>,
    m: usize,
    w: &PackedMatrix,
    relu: bool,
    c: &mut [f32],
    ldc: usize,
    pack: &mut [PackBuffer],
) {
    if m == 0 || w.n() == 0 {
        return;
    }
    // Whole tiles of the GEMM kernel per thread.
    let chunk = par_gemm_rows(pack.len(), m, w.n() * w.k(), isa.tile_rows());
    c[..m * ldc]
        .par_chunks_mut(chunk * ldc)
        .zip(pack.par_iter_mut())
        .enumerate()
        .for_each(|(i, (c, pack))| {
            let i0 = i * chunk;
            let rows = c.len() / ldc;
            a.skip_rows(i0)
                .gemm_bias_act(isa, rows, w, relu, c, ldc, pack)
        });
}

/// Rows of `C` per thread when a product of `m` rows (`work` multiply-adds each) is split
/// between `threads`: a multiple of `multiple`, or all `m` on one thread when there is not
/// enough work to share.
pub(crate) fn par_gemm_rows(threads: usize, m: usize, work: usize, multiple: usize) -> usize {
    if threads <= 1 || m * work < 1 << 16 {
        m
    } else {
        m.div_ceil(threads).next_multiple_of(multiple)
    }
}

/// A random stream for (seed, step, layer, row block): the dropout mask of a block does not
/// depend on how rows are split between threads.
fn stream(seed: u64, step: u64, layer: usize, block: usize) -> Rng {
    let mut h = seed ^ 0x6A09_E667_F3BC_C908;
    for v in [step, layer as u64, block as u64] {
        h = (h ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^= h >> 32;
    }
    Rng::new(h)
}

/// The FM pairwise term of one gathered row `x` (`fields × d`), leaving the sum of its field
/// embeddings `Σ_f e_f` in `sum` for the backward pass (the FM gradient of `e_f` is
/// `sum − e_f`). Scalar, in field order: the trainer's own order, not the SIMD kernel's of
/// scoring (`kernels::fm`), which sums differently and keeps no sum.
fn pairwise(x: &[f32], d: usize, sum: &mut [f32]) -> f32 {
    sum.fill(0.0);
    let mut squares = 0.0;
    for e in x.chunks_exact(d) {
        for (s, &v) in sum.iter_mut().zip(e) {
            *s += v;
            squares += v * v;
        }
    }
    0.5 * (sum.iter().map(|v| v * v).sum::<f32>() - squares)
}

impl Trainer {
    /// Runs the forward pass over the first `m` rows of `batch` (validated) and leaves the
    /// logits in `ws.logit`. In `Mode::Train`, batch norm uses (and updates the running
    /// estimates with) the batch's statistics and dropout is applied.
    pub(crate) fn forward<C: Columns + Sync + ?Sized>(&mut self, batch: &C, m: usize, mode: Mode) {
        let ws = &mut self.ws;
        ws.ensure(m);
        let (spec, params) = (&self.spec, &self.params);
        let (d, width) = (spec.embedding_dim, spec.mlp_input_width());
        let embedded = spec.embedded_fields();
        let tables = Tables {
            fields: &self.fields,
            embedding: F32Rows {
                data: &params.embedding,
                dim: d,
            },
            linear: &params.linear,
            dim: d,
            width,
        };
        let bias = params.dense.0[Dense::BIAS][0];
        // Per block of rows: embeddings into `x0`, bias + first-order terms into `fm` (the
        // gather shared with scoring), then the pairwise term, keeping each row's field sum.
        ws.x0[..m * width]
            .par_chunks_mut(ROW_BLOCK * width)
            .zip(ws.sum[..m * d].par_chunks_mut(ROW_BLOCK * d))
            .zip(ws.fm[..m].par_chunks_mut(ROW_BLOCK))
            .enumerate()
            .for_each(|(b, ((x, s), fm))| {
                let first = b * ROW_BLOCK;
                fm.fill(bias);
                gather(tables, batch, first..first + fm.len(), x, fm);
                for ((x, s), fm) in x.chunks_exact(width).zip(s.chunks_exact_mut(d)).zip(fm) {
                    // The FM term is over the embedded fields, not the dense values after them.
                    *fm += pairwise(&x[..embedded * d], d, s);
                }
            });
        let hidden = spec.hidden.len();
        for l in 0..hidden {
            self.forward_layer(l, m, mode);
        }
        let ws = &mut self.ws;
        let params = &self.params;
        let out_w = &params.dense.0[Dense::out(hidden)];
        let out_b = params.dense.0[Dense::out(hidden) + 1][0];
        let last = out_w.len();
        let input: &[f32] = if hidden == 0 {
            &ws.x0
        } else {
            &ws.acts[hidden - 1]
        };
        let isa = self.isa;
        for ((logit, fm), a) in ws.logit[..m]
            .iter_mut()
            .zip(&ws.fm[..m])
            .zip(input.chunks_exact(last))
        {
            *logit = fm + dot(isa, a, out_w) + out_b;
        }
    }

    fn forward_layer(&mut self, l: usize, m: usize, mode: Mode) {
        let n = self.spec.hidden[l];
        let ws = &mut self.ws;
        let (before, rest) = ws.acts.split_at_mut(l);
        let out = &mut rest[0][..m * n];
        let input: &[f32] = if l == 0 { &ws.x0 } else { &before[l - 1] };
        let k = self.packed[l].k();
        let bn = self.config.batch_norm;
        let Some(bn) = bn else {
            par_gemm(
                self.isa,
                Operand::Rows(input, k),
                m,
                &self.packed[l],
                true,
                out,
                n,
                &mut ws.pack,
            );
            self.dropout(l, m, mode);
            return;
        };
        let z = &mut ws.xhat[l][..m * n];
        par_gemm(
            self.isa,
            Operand::Rows(input, k),
            m,
            &self.packed[l],
            false,
            z,
            n,
            &mut ws.pack,
        );
        let inv_std = &mut ws.inv_std[l];
        // Training normalises with the batch's statistics (kept for the running estimates,
        // which `update_running_stats` moves once the step is known to be finite).
        let (mean, var): (&[f32], &[f32]) = match mode {
            Mode::Train => {
                let (mean, var) = (&mut ws.batch_mean[l], &mut ws.batch_var[l]);
                column_mean_var(z, n, &mut ws.partials, mean, var);
                (mean, var)
            }
            Mode::Eval => (&self.params.running_mean[l], &self.params.running_var[l]),
        };
        for (s, &v) in inv_std.iter_mut().zip(var) {
            *s = 1.0 / (v + bn.eps).sqrt();
        }
        let t = &self.params.dense.0;
        let (gamma, beta) = (&t[Dense::layer(l) + 2], &t[Dense::layer(l) + 3]);
        let inv_std = &*inv_std;
        z.par_chunks_mut(ROW_BLOCK * n)
            .zip(out.par_chunks_mut(ROW_BLOCK * n))
            .for_each(|(z, out)| {
                for (z, a) in z.chunks_exact_mut(n).zip(out.chunks_exact_mut(n)) {
                    for (((((z, a), &mu), &s), &g), &b) in z
                        .iter_mut()
                        .zip(a.iter_mut())
                        .zip(mean)
                        .zip(inv_std)
                        .zip(gamma)
                        .zip(beta)
                    {
                        let xhat = (*z - mu) * s;
                        *z = xhat;
                        *a = (g * xhat + b).max(0.0);
                    }
                }
            });
        self.dropout(l, m, mode);
    }

    /// Moves the batch-norm running estimates towards the statistics of the last training
    /// forward pass over `m` rows (PyTorch: `(1 − momentum) · running + momentum · batch`, the
    /// variance unbiased). A one-row batch says nothing about the variance: nothing moves.
    pub(crate) fn update_running_stats(&mut self, m: usize) {
        let Some(bn) = self.config.batch_norm else {
            return;
        };
        if m < 2 {
            return;
        }
        let unbias = m as f32 / (m - 1) as f32;
        let mom = bn.momentum;
        let ws = &self.ws;
        for (l, (rm, rv)) in self
            .params
            .running_mean
            .iter_mut()
            .zip(&mut self.params.running_var)
            .enumerate()
        {
            for (((rm, rv), &mean), &var) in rm
                .iter_mut()
                .zip(rv.iter_mut())
                .zip(&ws.batch_mean[l])
                .zip(&ws.batch_var[l])
            {
                *rm = (1.0 - mom) * *rm + mom * mean;
                *rv = (1.0 - mom) * *rv + mom * var * unbias;
            }
        }
    }

    /// Inverted dropout on layer `l`'s output (training only), recording the mask.
    fn dropout(&mut self, l: usize, m: usize, mode: Mode) {
        let p = self.config.dropout;
        if mode == Mode::Eval || p == 0.0 {
            return;
        }
        let n = self.spec.hidden[l];
        let scale = 1.0 / (1.0 - p);
        // Keep a unit when 16 random bits are at least p · 2¹⁶.
        let threshold = (p as f64 * 65_536.0).round() as u64;
        let (seed, step) = (self.config.seed, self.step);
        let ws = &mut self.ws;
        ws.acts[l][..m * n]
            .par_chunks_mut(ROW_BLOCK * n)
            .zip(ws.masks[l][..m * n].par_chunks_mut(ROW_BLOCK * n))
            .enumerate()
            .for_each(|(b, (a, mask))| {
                let mut rng = stream(seed, step, l, b);
                for (a4, m4) in a.chunks_mut(4).zip(mask.chunks_mut(4)) {
                    let bits = rng.bits();
                    for (j, (a, m)) in a4.iter_mut().zip(m4.iter_mut()).enumerate() {
                        let keep = (bits >> (16 * j)) & 0xFFFF >= threshold;
                        *m = if keep { scale } else { 0.0 };
                        *a *= *m;
                    }
                }
            });
    }
}

/// Mean and biased variance of each column of the row-major `z` (`n` columns), two-pass,
/// each summed per block of [`ROW_BLOCK`] rows in parallel and the blocks added in order.
pub(crate) fn column_mean_var(
    z: &[f32],
    n: usize,
    partials: &mut [f32],
    mean: &mut [f32],
    var: &mut [f32],
) {
    let rows = z.len() / n;
    let blocks = rows.div_ceil(ROW_BLOCK);
    let partials = &mut partials[..blocks * n];
    let inv = 1.0 / rows as f32;
    z.par_chunks(ROW_BLOCK * n)
        .zip(partials.par_chunks_mut(n))
        .for_each(|(z, part)| {
            part.fill(0.0);
            for row in z.chunks_exact(n) {
                for (s, &v) in part.iter_mut().zip(row) {
                    *s += v;
                }
            }
        });
    add_blocks(partials, n, mean);
    mean.iter_mut().for_each(|s| *s *= inv);
    let mean = &*mean;
    z.par_chunks(ROW_BLOCK * n)
        .zip(partials.par_chunks_mut(n))
        .for_each(|(z, part)| {
            part.fill(0.0);
            for row in z.chunks_exact(n) {
                for ((s, &v), &mu) in part.iter_mut().zip(row).zip(mean) {
                    *s += (v - mu) * (v - mu);
                }
            }
        });
    add_blocks(partials, n, var);
    var.iter_mut().for_each(|s| *s *= inv);
}

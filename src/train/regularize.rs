//! The step's regularization: L2 penalties added to the gradients, clipping of the whole
//! gradient to a norm, and decoupled (AdamW) weight decay, for the tensors the fused update in
//! the weight-gradient GEMM (`fused.rs`) does not cover.

use super::Trainer;
use super::params::Dense;

/// Whether dense tensor `i` is a weight matrix that the step's own passes regularize and
/// decay: all of them, but for the hidden layers' when the update is fused into the
/// weight-gradient GEMM (which does both there).
fn separate_pass_weight(i: usize, hidden: usize, fused: bool) -> bool {
    Dense::is_weight(i, hidden) && !(fused && Dense::is_hidden_weight(i, hidden))
}

impl Trainer {
    /// L2 penalties, then clipping of the whole gradient to `clip_norm`. With `fused`, the
    /// hidden layers' weights had theirs in the weight-gradient GEMM.
    pub(super) fn regularize_and_clip(&mut self, fused: bool) {
        let hidden = self.spec.hidden.len();
        let l2 = self.config.l2_dense;
        if l2 > 0.0 {
            for (i, (g, p)) in self
                .grads
                .0
                .iter_mut()
                .zip(&self.params.dense.0)
                .enumerate()
            {
                if separate_pass_weight(i, hidden, fused) {
                    g.iter_mut().zip(p).for_each(|(g, &p)| *g += l2 * p);
                }
            }
        }
        let l2 = self.config.l2_embedding;
        let d = self.spec.embedding_dim;
        if l2 > 0.0 {
            for (rg, &base) in self.row_grads.iter_mut().zip(&self.offsets) {
                for (slot, &row) in rg.rows.iter().enumerate() {
                    let r = (base + row) as usize;
                    let p = &self.params.embedding[r * d..(r + 1) * d];
                    for (g, &p) in rg.grad[slot * d..(slot + 1) * d].iter_mut().zip(p) {
                        *g += l2 * p;
                    }
                    rg.linear[slot] += l2 * self.params.linear[r];
                }
            }
        }
        if let Some(max) = self.config.clip_norm {
            let squares = |v: &[f32]| v.iter().map(|&g| (g as f64) * (g as f64)).sum::<f64>();
            let dense: f64 = self.grads.0.iter().map(|g| squares(g)).sum();
            let rows: f64 = self
                .row_grads
                .iter()
                .map(|rg| squares(&rg.grad) + squares(&rg.linear))
                .sum();
            let norm = (dense + rows).sqrt();
            if norm > max as f64 {
                let s = (max as f64 / norm) as f32;
                self.grads.0.iter_mut().flatten().for_each(|g| *g *= s);
                for rg in &mut self.row_grads {
                    rg.grad.iter_mut().for_each(|g| *g *= s);
                    rg.linear.iter_mut().for_each(|g| *g *= s);
                }
            }
        }
    }

    /// Decoupled weight decay (AdamW): the weights `weight_decay_dense` covers are multiplied
    /// by `1 − lr · λ`, the embedding rows the coming update touches by
    /// `1 − embedding_lr · λ`, before the optimizers' updates (which do not depend on the
    /// parameters themselves, so the order only matters to rounding). With `fused`, the hidden
    /// layers' weights were decayed in the weight-gradient GEMM.
    pub(super) fn decay_weights(&mut self, lr: f32, embedding_lr: f32, fused: bool) {
        let wd = self.config.weight_decay_dense;
        if wd > 0.0 {
            let keep = self.dense_decay(lr);
            let hidden = self.spec.hidden.len();
            for (i, p) in self.params.dense.0.iter_mut().enumerate() {
                if separate_pass_weight(i, hidden, fused) {
                    p.iter_mut().for_each(|p| *p *= keep);
                }
            }
        }
        let wd = self.config.weight_decay_embedding;
        if wd > 0.0 {
            let keep = 1.0 - embedding_lr * wd;
            self.embedding_state
                .decay(&mut self.params, &self.row_grads, &self.offsets, keep);
        }
    }

    /// The factor decoupled weight decay multiplies the dense weights by at learning rate `lr`
    /// (1: no decay).
    pub(super) fn dense_decay(&self, lr: f32) -> f32 {
        let wd = self.config.weight_decay_dense;
        if wd > 0.0 { 1.0 - lr * wd } else { 1.0 }
    }
}

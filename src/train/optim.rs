//! Optimizers: Adam for the dense tensors; Adam, lazy Adam or Adagrad for the embedding rows.
//!
//! Formulas are PyTorch's (`torch.optim.Adam` without AMSGrad, `SparseAdam`, `Adagrad` with a
//! zero initial accumulator), so learning rates carry over.

use super::config::{EmbeddingOptimizer, TrainConfig};
use super::params::{Dense, Params};
use super::sparse::{RowGrads, split_fields};
use super::table::Table;
use crate::kernels::gemm::{NR, PackedMatrix, fill_panel};
use crate::kernels::prefetch::prefetch;
use rayon::prelude::*;

/// Slots between a prefetch and the update that uses it.
const PREFETCH_AHEAD: usize = 8;

/// Elements per parallel task in element-wise updates (big enough to amortise the dispatch).
const CHUNK: usize = 1 << 15;

/// The per-step constants of an Adam update.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdamStep {
    b1: f32,
    b2: f32,
    eps: f32,
    /// `lr / (1 − β₁ᵗ)`.
    step_size: f32,
    /// `1 / √(1 − β₂ᵗ)`.
    inv_sqrt_bc2: f32,
}

impl AdamStep {
    pub(crate) fn new(lr: f32, config: &TrainConfig, t: u64) -> Self {
        let (b1, b2) = config.betas;
        let t = t.min(i32::MAX as u64) as i32;
        let bc1 = 1.0 - (b1 as f64).powi(t);
        let bc2 = 1.0 - (b2 as f64).powi(t);
        AdamStep {
            b1,
            b2,
            eps: config.eps,
            step_size: (lr as f64 / bc1) as f32,
            inv_sqrt_bc2: (1.0 / bc2.sqrt()) as f32,
        }
    }

    /// One Adam update of `p` with gradient `g` (`None`: zero) and moments `m`, `v`.
    #[inline]
    pub(crate) fn update(&self, p: &mut [f32], g: Option<&[f32]>, m: &mut [f32], v: &mut [f32]) {
        let (b1, b2) = (self.b1, self.b2);
        match g {
            Some(g) => {
                for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                    *m = b1 * *m + (1.0 - b1) * g;
                    *v = b2 * *v + (1.0 - b2) * g * g;
                    *p -= self.step_size * *m / (v.sqrt() * self.inv_sqrt_bc2 + self.eps);
                }
            }
            None => {
                for ((p, m), v) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()) {
                    *m *= b1;
                    *v *= b2;
                    *p -= self.step_size * *m / (v.sqrt() * self.inv_sqrt_bc2 + self.eps);
                }
            }
        }
    }
}

/// Adam moments of the dense tensors.
#[derive(Debug, Clone)]
pub(crate) struct DenseAdam {
    pub(super) m: Dense,
    pub(super) v: Dense,
}

impl DenseAdam {
    pub(crate) fn new(shape: &Dense) -> Self {
        let zeros = Dense(shape.0.iter().map(|t| vec![0.0; t.len()]).collect());
        DenseAdam {
            m: zeros.clone(),
            v: zeros,
        }
    }

    /// Updates every dense tensor (in parallel chunks; each element's arithmetic is the same
    /// whatever the split) and re-packs each hidden layer's weights and bias into `packed[l]`
    /// for the forward GEMM. A layer's weights are updated 16 rows at a time, each block
    /// packed into its panel right after its update, while it is in cache: one pass over the
    /// weights where updating and then re-packing would take two. `shapes` are the spec's
    /// layer shapes `(k, n)`. With `hidden_done`, the hidden layers' weights were updated and
    /// packed already, by the weight-gradient GEMM (see `fused`), and are left alone.
    pub(crate) fn step_and_pack(
        &mut self,
        params: &mut Dense,
        grads: &Dense,
        step: AdamStep,
        packed: &mut [PackedMatrix],
        shapes: &[(usize, usize)],
        hidden_done: bool,
    ) {
        let hidden = packed.len();
        for (i, (((p, g), m), v)) in params
            .0
            .iter_mut()
            .zip(&grads.0)
            .zip(&mut self.m.0)
            .zip(&mut self.v.0)
            .enumerate()
        {
            match (0..hidden).find(|&l| Dense::layer(l) == i) {
                Some(_) if hidden_done => {}
                Some(l) => {
                    let (k, n) = shapes[l];
                    let (block, k1) = (NR * k.max(1), k.max(1));
                    let panels = packed[l].panels_for(n, k);
                    p.par_chunks_mut(block)
                        .zip(g.par_chunks(block))
                        .zip(m.par_chunks_mut(block))
                        .zip(v.par_chunks_mut(block))
                        .zip(panels.par_chunks_exact_mut(k1))
                        .for_each(|((((p, g), m), v), panel)| {
                            step.update(p, Some(g), m, v);
                            fill_panel(panel, p, k);
                        });
                }
                None => p
                    .par_chunks_mut(CHUNK)
                    .zip(g.par_chunks(CHUNK))
                    .zip(m.par_chunks_mut(CHUNK))
                    .zip(v.par_chunks_mut(CHUNK))
                    .for_each(|(((p, g), m), v)| step.update(p, Some(g), m, v)),
            }
        }
        for (l, packed) in packed.iter_mut().enumerate() {
            packed.set_bias(&params.0[Dense::layer(l) + 1]);
        }
    }
}

/// State of the embedding optimizer: moments (Adam) or accumulators (Adagrad) for the table
/// and the first-order weights.
#[derive(Debug, Clone)]
pub(crate) struct EmbeddingState {
    kind: EmbeddingOptimizer,
    dim: usize,
    /// Adam m / Adagrad accumulator of the table.
    a: Table,
    /// Adam v of the table (empty for Adagrad).
    b: Table,
    a_linear: Table,
    b_linear: Table,
    /// Dense Adam only: the batch's gradients scattered to full size (zero elsewhere).
    dense_grad: Table,
    dense_grad_linear: Table,
}

impl EmbeddingState {
    /// The state a checkpoint keeps (the scattered gradients are zero between steps), by name.
    pub(super) fn tensors(&self) -> [(&'static str, &[f32]); 4] {
        [
            ("a", &self.a),
            ("b", &self.b),
            ("a_linear", &self.a_linear),
            ("b_linear", &self.b_linear),
        ]
    }

    /// As [`EmbeddingState::tensors`], to be overwritten.
    pub(super) fn tensors_mut(&mut self) -> [(&'static str, &mut [f32]); 4] {
        [
            ("a", &mut self.a),
            ("b", &mut self.b),
            ("a_linear", &mut self.a_linear),
            ("b_linear", &mut self.b_linear),
        ]
    }

    pub(crate) fn new(kind: EmbeddingOptimizer, rows: usize, dim: usize) -> Self {
        let adam = kind != EmbeddingOptimizer::Adagrad;
        let dense = kind == EmbeddingOptimizer::Adam;
        let sized = |on: bool, n: usize| {
            if on {
                Table::zeroed(n)
            } else {
                Table::default()
            }
        };
        EmbeddingState {
            kind,
            dim,
            a: Table::zeroed(rows * dim),
            b: sized(adam, rows * dim),
            a_linear: Table::zeroed(rows),
            b_linear: sized(adam, rows),
            dense_grad: sized(dense, rows * dim),
            dense_grad_linear: sized(dense, rows),
        }
    }

    /// Decoupled weight decay: multiplies by `keep` (`1 − lr · λ`) the embedding rows and
    /// first-order weights this optimizer updates at the step whose row gradients are `grads`:
    /// the whole table for dense Adam, the rows in the batch otherwise (each once).
    pub(crate) fn decay(
        &self,
        params: &mut Params,
        grads: &[RowGrads],
        offsets: &[u64],
        keep: f32,
    ) {
        let d = self.dim;
        let scale = |v: &mut [f32]| v.iter_mut().for_each(|v| *v *= keep);
        match self.kind {
            EmbeddingOptimizer::Adam => {
                params.embedding.par_chunks_mut(CHUNK).for_each(scale);
                params.linear.par_chunks_mut(CHUNK).for_each(scale);
            }
            EmbeddingOptimizer::LazyAdam | EmbeddingOptimizer::Adagrad => {
                for (g, &base) in grads.iter().zip(offsets) {
                    for &row in &g.rows {
                        let r = base as usize + row as usize;
                        scale(&mut params.embedding[r * d..(r + 1) * d]);
                        params.linear[r] *= keep;
                    }
                }
            }
        }
    }

    /// Applies the batch's row gradients (one [`RowGrads`] per field, rows of field `f`
    /// starting at `offsets[f]`). Fields own disjoint rows and are updated in parallel.
    pub(crate) fn step(
        &mut self,
        params: &mut Params,
        grads: &[RowGrads],
        offsets: &[u64],
        lr: f32,
        adam: AdamStep,
    ) {
        let d = self.dim;
        let rows = params.linear.len();
        match self.kind {
            EmbeddingOptimizer::LazyAdam | EmbeddingOptimizer::Adagrad => {
                let kind = self.kind;
                let tables = split_fields(&mut params.embedding, offsets, rows, d)
                    .into_iter()
                    .zip(split_fields(&mut self.a, offsets, rows, d))
                    .zip(split_fields(&mut self.b, offsets, rows, d))
                    .zip(split_fields(&mut params.linear, offsets, rows, 1))
                    .zip(split_fields(&mut self.a_linear, offsets, rows, 1))
                    .zip(split_fields(&mut self.b_linear, offsets, rows, 1));
                let jobs: Vec<_> = tables.zip(grads).collect();
                jobs.into_par_iter()
                    .for_each(|((((((p, a), b), pl), al), bl), g)| {
                        let tables = FieldTables {
                            p,
                            a,
                            b,
                            pl,
                            al,
                            bl,
                        };
                        match kind {
                            EmbeddingOptimizer::LazyAdam => lazy_adam(tables, g, d, adam),
                            _ => adagrad(tables, g, d, lr, adam.eps),
                        }
                    });
            }
            EmbeddingOptimizer::Adam => {
                for (g, &base) in grads.iter().zip(offsets) {
                    for (slot, &row) in g.rows.iter().enumerate() {
                        let r = base as usize + row as usize;
                        self.dense_grad[r * d..(r + 1) * d]
                            .copy_from_slice(&g.grad[slot * d..(slot + 1) * d]);
                        self.dense_grad_linear[r] = g.linear[slot];
                    }
                }
                let chunk = CHUNK.div_ceil(d) * d;
                params
                    .embedding
                    .par_chunks_mut(chunk)
                    .zip(self.dense_grad.par_chunks(chunk))
                    .zip(self.a.par_chunks_mut(chunk))
                    .zip(self.b.par_chunks_mut(chunk))
                    .for_each(|(((p, g), m), v)| adam.update(p, Some(g), m, v));
                params
                    .linear
                    .par_chunks_mut(CHUNK)
                    .zip(self.dense_grad_linear.par_chunks(CHUNK))
                    .zip(self.a_linear.par_chunks_mut(CHUNK))
                    .zip(self.b_linear.par_chunks_mut(CHUNK))
                    .for_each(|(((p, g), m), v)| adam.update(p, Some(g), m, v));
                for (g, &base) in grads.iter().zip(offsets) {
                    for &row in &g.rows {
                        let r = base as usize + row as usize;
                        self.dense_grad[r * d..(r + 1) * d].fill(0.0);
                        self.dense_grad_linear[r] = 0.0;
                    }
                }
            }
        }
    }
}

/// One field's slices of the table, the optimizer state and the first-order weights.
struct FieldTables<'a> {
    p: &'a mut [f32],
    a: &'a mut [f32],
    b: &'a mut [f32],
    pl: &'a mut [f32],
    al: &'a mut [f32],
    bl: &'a mut [f32],
}

impl FieldTables<'_> {
    /// Rows are scattered over tables far larger than cache: start loading a row, its state
    /// and its first-order weight a few slots before they are updated.
    fn prefetch(&self, row: usize, d: usize) {
        for table in [&*self.p, &*self.a, &*self.b] {
            prefetch(table, row * d);
        }
        for table in [&*self.pl, &*self.al, &*self.bl] {
            prefetch(table, row);
        }
    }
}

fn lazy_adam(t: FieldTables<'_>, g: &RowGrads, d: usize, adam: AdamStep) {
    for (slot, &row) in g.rows.iter().enumerate() {
        if let Some(&next) = g.rows.get(slot + PREFETCH_AHEAD) {
            t.prefetch(next as usize, d);
        }
        let r = row as usize;
        let span = r * d..(r + 1) * d;
        adam.update(
            &mut t.p[span.clone()],
            Some(&g.grad[slot * d..(slot + 1) * d]),
            &mut t.a[span.clone()],
            &mut t.b[span],
        );
        adam.update(
            &mut t.pl[r..r + 1],
            Some(&g.linear[slot..slot + 1]),
            &mut t.al[r..r + 1],
            &mut t.bl[r..r + 1],
        );
    }
}

fn adagrad(t: FieldTables<'_>, g: &RowGrads, d: usize, lr: f32, eps: f32) {
    let step = |p: &mut [f32], g: &[f32], acc: &mut [f32]| {
        for ((p, &g), acc) in p.iter_mut().zip(g).zip(acc.iter_mut()) {
            *acc += g * g;
            *p -= lr * g / (acc.sqrt() + eps);
        }
    };
    for (slot, &row) in g.rows.iter().enumerate() {
        if let Some(&next) = g.rows.get(slot + PREFETCH_AHEAD) {
            t.prefetch(next as usize, d);
        }
        let r = row as usize;
        step(
            &mut t.p[r * d..(r + 1) * d],
            &g.grad[slot * d..(slot + 1) * d],
            &mut t.a[r * d..(r + 1) * d],
        );
        step(
            &mut t.pl[r..r + 1],
            &g.linear[slot..slot + 1],
            &mut t.al[r..r + 1],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lazy Adam on a row that is in every batch is exactly dense Adam; a row that is in no
    /// batch is untouched by lazy Adam and drifts by its decaying moment under dense Adam.
    #[test]
    fn lazy_and_dense_adam_agree_on_touched_rows() {
        let spec = crate::fixtures::movielens_like();
        let config = TrainConfig::default();
        let rows = 4;
        let d = spec.embedding_dim;
        let params0 = Params::init(&spec, &config, rows);
        let (mut lazy_p, mut dense_p) = (params0.clone(), params0.clone());
        let mut lazy = EmbeddingState::new(EmbeddingOptimizer::LazyAdam, rows, d);
        let mut dense = EmbeddingState::new(EmbeddingOptimizer::Adam, rows, d);
        for t in 1..=5u64 {
            let mut g = RowGrads::new(d);
            let grad: Vec<f32> = (0..d).map(|i| (i as f32 - 3.0) * 0.1 * t as f32).collect();
            g.add(1, 1.0, &grad, 0.3);
            // Row 2 only in the first batch.
            if t == 1 {
                g.add(2, 1.0, &grad, -0.2);
            }
            let step = AdamStep::new(0.01, &config, t);
            lazy.step(&mut lazy_p, std::slice::from_ref(&g), &[0], 0.01, step);
            dense.step(&mut dense_p, std::slice::from_ref(&g), &[0], 0.01, step);
        }
        assert_eq!(lazy_p.embedding[d..2 * d], dense_p.embedding[d..2 * d]);
        assert_eq!(lazy_p.linear[1], dense_p.linear[1]);
        assert_eq!(lazy_p.embedding[0..d], params0.embedding[0..d]);
        assert_eq!(dense_p.embedding[0..d], params0.embedding[0..d]);
        assert_ne!(
            lazy_p.embedding[2 * d..3 * d],
            dense_p.embedding[2 * d..3 * d]
        );
    }
}

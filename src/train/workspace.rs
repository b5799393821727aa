//! Per-batch buffers of the forward and backward passes, sized for the largest batch seen and
//! reused, so that once the batch size is steady a training step allocates only a few short
//! lists (the optimizers' per-thread and per-field shares), never a buffer of the batch's size.

use crate::kernels::gemm::{PackBuffer, PackedMatrix};
use crate::spec::ModelSpec;

/// Activations and gradients of one batch, row-major, `rows × width` each.
#[derive(Debug)]
pub(crate) struct Workspace {
    /// Rows the buffers hold.
    pub cap: usize,
    /// Field embeddings, `rows × (fields · D)`: the MLP input.
    pub x0: Vec<f32>,
    /// `Σ_f e_f` per row, `rows × D` (the FM gradient needs it).
    pub sum: Vec<f32>,
    /// Global bias + first-order terms + FM pairwise term per row.
    pub fm: Vec<f32>,
    /// Output of each hidden layer after ReLU and dropout.
    pub acts: Vec<Vec<f32>>,
    /// Batch norm: the normalised pre-activation `x̂` of each hidden layer (without batch
    /// norm: the pre-activation, unused).
    pub xhat: Vec<Vec<f32>>,
    /// Batch norm: `1 / √(σ² + ε)` per unit of each hidden layer, from the last batch.
    pub inv_std: Vec<Vec<f32>>,
    /// Batch norm: the last training batch's mean per unit of each hidden layer.
    pub batch_mean: Vec<Vec<f32>>,
    /// Batch norm: the last training batch's (biased) variance per unit of each hidden layer.
    pub batch_var: Vec<Vec<f32>>,
    /// Dropout: `1 / (1 − p)` where a unit was kept, 0 where dropped (empty without dropout).
    pub masks: Vec<Vec<f32>>,
    /// The logit of each row.
    pub logit: Vec<f32>,
    /// `∂loss/∂logit` of each row.
    pub dlogit: Vec<f32>,
    /// Gradient flowing into a layer's output, `rows × widest`.
    pub da: Vec<f32>,
    /// Gradient of a layer's pre-activation, `rows × widest`.
    pub dz: Vec<f32>,
    /// `dz` transposed, `widest × rows`.
    pub dzt: Vec<f32>,
    /// Gradient of a layer's input, `rows × widest`.
    pub dx: Vec<f32>,
    /// Per-row-block partial column sums, `blocks × 2 · widest`.
    pub partials: Vec<f32>,
    /// Column statistics scratch, `2 · widest`.
    pub col_a: Vec<f32>,
    /// Column statistics scratch, `3 · widest`.
    pub col_b: Vec<f32>,
    /// Each hidden layer's input transposed, packed for `dW = dZᵀ · X`.
    pub packed_x: Vec<PackedMatrix>,
    /// One packing buffer per thread.
    pub pack: Vec<PackBuffer>,
    widths: Vec<usize>,
    input_width: usize,
    widest: usize,
    dim: usize,
    dropout: bool,
}

impl Workspace {
    pub(crate) fn new(spec: &ModelSpec, threads: usize, dropout: bool) -> Self {
        let input_width = spec.mlp_input_width();
        let widest = spec.hidden.iter().copied().fold(input_width, usize::max);
        let hidden = spec.hidden.len();
        let empty = || PackedMatrix::pack(&[], &[], 0, 0);
        Workspace {
            cap: 0,
            x0: Vec::new(),
            sum: Vec::new(),
            fm: Vec::new(),
            acts: vec![Vec::new(); hidden],
            xhat: vec![Vec::new(); hidden],
            inv_std: spec.hidden.iter().map(|&n| vec![0.0; n]).collect(),
            batch_mean: spec.hidden.iter().map(|&n| vec![0.0; n]).collect(),
            batch_var: spec.hidden.iter().map(|&n| vec![0.0; n]).collect(),
            masks: vec![Vec::new(); if dropout { hidden } else { 0 }],
            logit: Vec::new(),
            dlogit: Vec::new(),
            da: Vec::new(),
            dz: Vec::new(),
            dzt: Vec::new(),
            dx: Vec::new(),
            partials: Vec::new(),
            col_a: vec![0.0; 2 * widest],
            col_b: vec![0.0; 3 * widest],
            packed_x: (0..hidden).map(|_| empty()).collect(),
            pack: (0..threads).map(|_| PackBuffer::new()).collect(),
            widths: spec.hidden.clone(),
            input_width,
            widest,
            dim: spec.embedding_dim,
            dropout,
        }
    }

    /// Makes room for `rows` rows (allocates only when the batch is larger than any before).
    pub(crate) fn ensure(&mut self, rows: usize) {
        if rows <= self.cap {
            return;
        }
        let grow = |v: &mut Vec<f32>, width: usize| v.resize(rows * width, 0.0);
        grow(&mut self.x0, self.input_width);
        grow(&mut self.sum, self.dim);
        grow(&mut self.fm, 1);
        grow(&mut self.logit, 1);
        grow(&mut self.dlogit, 1);
        for (l, &n) in self.widths.iter().enumerate() {
            grow(&mut self.acts[l], n);
            grow(&mut self.xhat[l], n);
            if self.dropout {
                grow(&mut self.masks[l], n);
            }
        }
        for v in [&mut self.da, &mut self.dz, &mut self.dzt, &mut self.dx] {
            grow(v, self.widest);
        }
        let blocks = rows.div_ceil(super::forward::ROW_BLOCK);
        self.partials.resize(blocks * 2 * self.widest, 0.0);
        self.cap = rows;
    }
}

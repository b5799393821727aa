//! The trainable parameters, their initialisation, and their export to the model file with
//! batch norm folded into the layer weights.

use super::config::{EmbeddingInit, TrainConfig};
use super::table::Table;
use crate::format::{FormatError, ModelWriter, SectionId};
use crate::rng::Rng;
use crate::spec::ModelSpec;
use std::path::{Path, PathBuf};

/// Dense parameter tensors, in one list so that the optimizer, the gradient and the L2 code
/// walk them the same way. Order: global bias, then per hidden layer `weight [out, in]`,
/// `bias [out]`, `gamma [out]`, `beta [out]` (γ and β are empty without batch norm), then the
/// output unit's `weight [1, last]` and `bias [1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense(pub Vec<Vec<f32>>);

impl Dense {
    /// Index of the global bias.
    pub const BIAS: usize = 0;

    /// Index of hidden layer `l`'s weight (bias, γ, β follow).
    pub fn layer(l: usize) -> usize {
        1 + 4 * l
    }

    /// Index of the output unit's weight (its bias follows).
    pub fn out(hidden: usize) -> usize {
        1 + 4 * hidden
    }

    /// Tensors shaped for `spec`, all zero.
    pub fn zeros(spec: &ModelSpec, batch_norm: bool) -> Dense {
        let mut tensors = vec![vec![0.0; 1]];
        for &(input, output) in &spec.layer_shapes()[..spec.hidden.len()] {
            let bn = if batch_norm { output } else { 0 };
            tensors.push(vec![0.0; input * output]);
            tensors.push(vec![0.0; output]);
            tensors.push(vec![0.0; bn]);
            tensors.push(vec![0.0; bn]);
        }
        let last = spec
            .layer_shapes()
            .last()
            .expect("a spec has an output unit")
            .0;
        tensors.push(vec![0.0; last]);
        tensors.push(vec![0.0; 1]);
        Dense(tensors)
    }

    /// Whether tensor `i` is a weight matrix (gets the dense L2 penalty).
    pub fn is_weight(i: usize, hidden: usize) -> bool {
        i == Dense::out(hidden) || Dense::is_hidden_weight(i, hidden)
    }

    /// Whether tensor `i` is a hidden layer's weight matrix (the ones the weight-gradient GEMM
    /// updates in place when the update is fused, see `fused`).
    pub fn is_hidden_weight(i: usize, hidden: usize) -> bool {
        i >= 1 && i < Dense::out(hidden) && (i - 1).is_multiple_of(4)
    }
}

/// Everything training changes, plus the batch-norm running statistics (updated by training
/// steps, not by the optimizer).
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// The stacked embedding rows `[R, D]`.
    pub embedding: Table,
    /// First-order weights `[R]`.
    pub linear: Table,
    /// Layers, output unit, global bias.
    pub dense: Dense,
    /// Running mean per hidden layer (empty without batch norm).
    pub running_mean: Vec<Vec<f32>>,
    /// Running (unbiased) variance per hidden layer (empty without batch norm).
    pub running_var: Vec<Vec<f32>>,
}

impl Params {
    /// Fresh parameters for `spec`, drawn from `config.seed`.
    pub fn init(spec: &ModelSpec, config: &TrainConfig, rows: usize) -> Params {
        let mut rng = Rng::new(config.seed);
        let d = spec.embedding_dim;
        let mut embedding = Table::zeroed(rows * d);
        match config.embedding_init {
            EmbeddingInit::Normal { std } => {
                embedding.iter_mut().for_each(|e| *e = rng.normal() * std)
            }
            EmbeddingInit::Uniform { limit } => embedding
                .iter_mut()
                .for_each(|e| *e = (rng.uniform() * 2.0 - 1.0) * limit),
        }
        let bn = config.batch_norm.is_some();
        let mut dense = Dense::zeros(spec, bn);
        dense.0[Dense::BIAS][0] = config.initial_bias;
        let shapes = spec.layer_shapes();
        for (l, &(input, _)) in shapes[..spec.hidden.len()].iter().enumerate() {
            // He-normal: keeps the variance of ReLU activations constant from layer to layer.
            let std = (2.0 / input as f32).sqrt();
            for w in &mut dense.0[Dense::layer(l)] {
                *w = rng.normal() * std;
            }
            dense.0[Dense::layer(l) + 2].fill(1.0);
        }
        // Glorot-uniform for the single linear output unit.
        let last = shapes.last().expect("a spec has an output unit").0;
        let limit = (6.0 / (last + 1) as f32).sqrt();
        for w in &mut dense.0[Dense::out(spec.hidden.len())] {
            *w = (rng.uniform() * 2.0 - 1.0) * limit;
        }
        let stats = |fill: f32| {
            if bn {
                spec.hidden.iter().map(|&n| vec![fill; n]).collect()
            } else {
                Vec::new()
            }
        };
        Params {
            embedding,
            linear: Table::zeroed(rows),
            dense,
            running_mean: stats(0.0),
            running_var: stats(1.0),
        }
    }

    /// Weight and bias of hidden layer `l` as scored: batch norm (with its running
    /// statistics) folded in, `W'[o] = W[o] · s_o`, `b'_o = (b_o − μ_o) · s_o + β_o` with
    /// `s_o = γ_o / √(σ²_o + ε)`.
    pub fn folded_layer(&self, l: usize, bn_eps: Option<f32>) -> (Vec<f32>, Vec<f32>) {
        let t = &self.dense.0;
        let (w, b) = (&t[Dense::layer(l)], &t[Dense::layer(l) + 1]);
        let Some(eps) = bn_eps else {
            return (w.clone(), b.clone());
        };
        let (gamma, beta) = (&t[Dense::layer(l) + 2], &t[Dense::layer(l) + 3]);
        let (mean, var) = (&self.running_mean[l], &self.running_var[l]);
        let n = b.len();
        let k = w.len() / n.max(1);
        let mut fw = w.clone();
        let mut fb = b.clone();
        for o in 0..n {
            let s = gamma[o] / (var[o] + eps).sqrt();
            fw[o * k..(o + 1) * k].iter_mut().for_each(|x| *x *= s);
            fb[o] = (b[o] - mean[o]) * s + beta[o];
        }
        (fw, fb)
    }

    /// Writes the model file the inference core reads (streaming, crash-safe: see
    /// [`ModelWriter`]), with `metadata` (JSON) as its metadata section if given.
    pub fn write(
        &self,
        spec: &ModelSpec,
        bn_eps: Option<f32>,
        path: &Path,
        metadata: Option<String>,
    ) -> Result<PathBuf, FormatError> {
        let mut w = match metadata {
            Some(json) => ModelWriter::create_with_metadata(path, spec, json)?,
            None => ModelWriter::create(path, spec)?,
        };
        for chunk in self.embedding.chunks(1 << 20) {
            w.write(SectionId::Embedding, chunk)?;
        }
        w.write(SectionId::Linear, &self.linear)?;
        w.write(SectionId::Bias, &self.dense.0[Dense::BIAS])?;
        let hidden = spec.hidden.len();
        for l in 0..hidden {
            let (weight, bias) = self.folded_layer(l, bn_eps);
            let (wid, bid) = SectionId::layer(l, hidden);
            w.write(wid, &weight)?;
            w.write(bid, &bias)?;
        }
        w.write(SectionId::OutWeight, &self.dense.0[Dense::out(hidden)])?;
        w.write(SectionId::OutBias, &self.dense.0[Dense::out(hidden) + 1])?;
        w.finish()
    }
}

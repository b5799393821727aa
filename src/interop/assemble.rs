//! The part of every framework import that is not about the framework: a [`Plan`] says which
//! tensor holds which field's rows, which layers have batch norm to fold and which tensors
//! make the biases; [`assemble`] checks every tensor against it and writes the model file,
//! streaming the embedding tables (which may be larger than memory) straight from the map.

use super::InteropError;
use super::tensors::{Tensors, f32s_of};
use crate::format::{ModelWriter, SectionId};
use crate::spec::ModelSpec;
use std::path::{Path, PathBuf};

/// Where the rows a field owns come from: `count` rows of `width` values (D for embeddings, 1
/// for first-order weights).
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// Rows `first..first + count` of the 2-D tensor `tensor`, whose shape must be
    /// `[rows, width]` (`rows` given: the tensor's full height).
    Rows {
        /// Tensor name.
        tensor: String,
        /// Its full height.
        rows: usize,
        /// First row taken.
        first: usize,
        /// Rows taken.
        count: usize,
    },
    /// The `[width, 1]` tensor `tensor` as one row (a PyTorch `Linear(1, width)` weight: a
    /// numeric feature's embedding vector in FuxiCTR).
    Column(String),
    /// Element `index` of the `[len, 1]` tensor `tensor`, as one row of width 1 (the dense
    /// features' first-order weights of DeepCTR-Torch, `linear_model.weight`).
    Element {
        /// Tensor name.
        tensor: String,
        /// Its length.
        len: usize,
        /// The element.
        index: usize,
    },
    /// One row of zeros (the unused embedding row of a dense field).
    Zero,
}

impl Source {
    /// All the rows of a `[rows, width]` table.
    pub(crate) fn table(tensor: impl Into<String>, rows: usize) -> Source {
        Source::Rows {
            tensor: tensor.into(),
            rows,
            first: 0,
            count: rows,
        }
    }
}

/// Batch normalization after a linear layer, in eval mode: `(z − mean) / sqrt(var + eps) ·
/// weight + bias`, with the tensors `{prefix}.weight`, `.bias`, `.running_mean`,
/// `.running_var` (and `.num_batches_tracked`, which holds no weight).
#[derive(Debug, Clone)]
pub(crate) struct Norm {
    /// Module name, e.g. `dnn.bn.0`.
    pub prefix: String,
    /// The epsilon of the framework's layer (not in the state dict).
    pub eps: f64,
}

/// A hidden layer: `weight [out, in]`, `bias [out]`, and batch norm to fold into them.
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    pub weight: String,
    pub bias: String,
    pub norm: Option<Norm>,
}

/// Everything an import writes, in the terms of the framework's tensors.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// The model's spec.
    pub spec: ModelSpec,
    /// The embedding rows and first-order weights of the stacked table, in order: one pair per
    /// field that owns rows, or one for a framework that stacks its tables itself.
    pub tables: Vec<(Source, Source)>,
    /// One per entry of `spec.hidden`.
    pub hidden: Vec<Layer>,
    /// The output unit's `[1, last]` weights; `None`: zeros (a model without a deep part).
    pub out_weight: Option<String>,
    /// `[1]` tensors summed into the output unit's bias.
    pub out_bias: Vec<String>,
    /// `[1]` tensors summed into the global bias.
    pub bias: Vec<String>,
    /// Provenance written to the file's metadata.
    pub metadata: serde_json::Value,
}

/// Writes the model of `plan` to `out` from `tensors`, after checking that every tensor of
/// the file is accounted for. Nothing is left at `out` on error.
pub(crate) fn assemble(
    tensors: &Tensors<'_>,
    plan: &Plan,
    out: &Path,
) -> Result<PathBuf, InteropError> {
    let spec = &plan.spec;
    spec.validate()?;
    let d = spec.embedding_dim;
    let shapes = spec.layer_shapes();
    // Everything but the tables is read (and checked) before the file is created.
    let layers = plan
        .hidden
        .iter()
        .zip(&shapes)
        .map(|(layer, &(input, output))| folded(tensors, layer, input, output))
        .collect::<Result<Vec<_>, _>>()?;
    let last = shapes.last().expect("the output unit").0;
    let out_weight = match &plan.out_weight {
        Some(name) => tensors.f32s(name, &[1, last])?,
        None => vec![0.0; last],
    };
    let out_bias = sum_of(tensors, &plan.out_bias)?;
    let bias = sum_of(tensors, &plan.bias)?;
    for (embedding, linear) in &plan.tables {
        check_source(tensors, embedding, d)?;
        check_source(tensors, linear, 1)?;
    }
    tensors.check_all_used()?;

    let metadata = serde_json::to_string(&plan.metadata).expect("JSON values serialize");
    let mut writer = ModelWriter::create_with_metadata(out, spec, metadata)?;
    for (embedding, linear) in &plan.tables {
        copy_rows(tensors, embedding, d, &mut writer, SectionId::Embedding)?;
        copy_rows(tensors, linear, 1, &mut writer, SectionId::Linear)?;
    }
    writer.write(SectionId::Bias, &[bias])?;
    let hidden = spec.hidden.len();
    for (i, (w, b)) in layers.iter().enumerate() {
        let (wid, bid) = SectionId::layer(i, hidden);
        writer.write(wid, w)?;
        writer.write(bid, b)?;
    }
    writer.write(SectionId::OutWeight, &out_weight)?;
    writer.write(SectionId::OutBias, &[out_bias])?;
    Ok(writer.finish()?)
}

/// The sum of `[1]` tensors, in f64.
fn sum_of(tensors: &Tensors<'_>, names: &[String]) -> Result<f32, InteropError> {
    let mut sum = 0.0f64;
    for name in names {
        sum += tensors.f32s(name, &[1])?[0] as f64;
    }
    Ok(sum as f32)
}

/// Checks the tensor behind `source` (present, f32, of the shape the source implies).
fn check_source(tensors: &Tensors<'_>, source: &Source, width: usize) -> Result<(), InteropError> {
    read_source(tensors, source, width).map(drop)
}

/// The bytes of the rows of `source` (for `Zero`, none).
fn read_source<'a>(
    tensors: &Tensors<'a>,
    source: &Source,
    width: usize,
) -> Result<&'a [u8], InteropError> {
    Ok(match source {
        Source::Rows {
            tensor,
            rows,
            first,
            count,
        } => {
            let bytes = tensors.bytes(tensor, &[*rows, width])?;
            if first + count > *rows {
                return Err(InteropError::BadValue {
                    name: tensor.clone(),
                    reason: format!(
                        "has {rows} rows, rows {first}..{} are needed",
                        first + count
                    ),
                });
            }
            &bytes[first * width * 4..(first + count) * width * 4]
        }
        Source::Column(tensor) => tensors.bytes(tensor, &[width, 1])?,
        Source::Element { tensor, len, index } => {
            let bytes = tensors.bytes(tensor, &[*len, 1])?;
            &bytes[index * 4..(index + 1) * 4]
        }
        Source::Zero => &[],
    })
}

/// Appends the rows of `source` to section `id`, a chunk at a time.
fn copy_rows(
    tensors: &Tensors<'_>,
    source: &Source,
    width: usize,
    writer: &mut ModelWriter,
    id: SectionId,
) -> Result<(), InteropError> {
    if let Source::Zero = source {
        writer.write(id, &vec![0.0; width])?;
        return Ok(());
    }
    for chunk in read_source(tensors, source, width)?.chunks(4 << 16) {
        writer.write(id, &f32s_of(chunk))?;
    }
    Ok(())
}

/// The weights and bias of `layer` with its batch norm folded in (in f64, rounded once):
/// `W'[o] = W[o] · s[o]`, `b'[o] = (b[o] − mean[o]) · s[o] + beta[o]`, `s = gamma / sqrt(var +
/// eps)`.
fn folded(
    tensors: &Tensors<'_>,
    layer: &Layer,
    input: usize,
    output: usize,
) -> Result<(Vec<f32>, Vec<f32>), InteropError> {
    let mut w = tensors.f32s(&layer.weight, &[output, input])?;
    let mut b = tensors.f32s(&layer.bias, &[output])?;
    let Some(norm) = &layer.norm else {
        return Ok((w, b));
    };
    let part = |p: &str| tensors.f32s(&format!("{}.{p}", norm.prefix), &[output]);
    let (gamma, beta) = (part("weight")?, part("bias")?);
    let (mean, var) = (part("running_mean")?, part("running_var")?);
    tensors.ignore(&format!("{}.num_batches_tracked", norm.prefix));
    for o in 0..output {
        let denominator = (var[o] as f64 + norm.eps).sqrt();
        // A negative variance gives NaN.
        if denominator.is_nan() || denominator <= 0.0 || denominator.is_infinite() {
            return Err(InteropError::BadValue {
                name: format!("{}.running_var", norm.prefix),
                reason: format!("element {o} is {} (with eps {})", var[o], norm.eps),
            });
        }
        let s = gamma[o] as f64 / denominator;
        for v in &mut w[o * input..(o + 1) * input] {
            *v = (*v as f64 * s) as f32;
        }
        b[o] = ((b[o] as f64 - mean[o] as f64) * s + beta[o] as f64) as f32;
    }
    Ok((w, b))
}

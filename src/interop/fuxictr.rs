//! FuxiCTR's DeepFM (`model_zoo/DeepFM`, FuxiCTR 2.3), from its `state_dict`, the
//! `feature_map.json` FuxiCTR writes and the model's settings (`tools/export/fuxictr.py`
//! writes all three).
//!
//! What its forward pass does, and how it maps onto a spec:
//! - Fields in `feature_map` order, all embedded, the MLP input their vectors side by side.
//! - `categorical`: table `embedding_layer.embedding_layer.embedding_layers.{name}.weight`
//!   (row 0 padding, last row out-of-vocabulary: both ordinary rows here); first-order weights
//!   `fm.lr_layer.embedding_layer.embedding_layer.embedding_layers.{name}.weight`.
//! - `numeric`: value × vector (`Linear(1, D)` weight `[D, 1]`), first-order value × weight
//!   (`[1, 1]`): field kind `numeric`.
//! - `sequence`: `MaskedAveragePooling` (mean over the positions whose vector is not zero) or
//!   `MaskedSumPooling`; the first-order weights are always summed. Padding rows are zero (the
//!   import checks), so masking padding id `padding_idx` is the same mask.
//! - `share_embedding` shares the embedding table only (each field keeps first-order weights
//!   of its own), and the state dict holds the shared table under both names: the field gets
//!   a copy of the rows, so that its first-order weights stay its own.
//! - MLP: `mlp.mlp` is a Sequential of `Linear, [BatchNorm1d], ReLU, [Dropout]` per hidden
//!   layer, then `Linear(last, 1)` with a bias; `fm.lr_layer.bias` is the other bias.

use super::InteropError;
use super::assemble::{Layer, Norm, Plan, Source};
use super::describe::{self, unsupported};
use super::tensors::Tensors;
use crate::spec::{Field, FieldKind, ModelSpec, Output, Pooling};
use serde::Deserialize;
use serde_json::Value;

const FRAMEWORK: &str = "fuxictr";
const EMBEDDING: &str = "embedding_layer.embedding_layer.embedding_layers";
const LINEAR: &str = "fm.lr_layer.embedding_layer.embedding_layer.embedding_layers";

/// The parts of `feature_map.json` the import reads.
#[derive(Debug, Deserialize)]
struct FeatureMap {
    features: Vec<std::collections::BTreeMap<String, FeatureSpec>>,
}

/// One feature of the feature map: the keys that change how it is scored. The others
/// (`source`, `dtype`, `share_embedding`, ...) do not: a shared table is in the
/// state dict under each sharing field's name too.
#[derive(Debug, Deserialize)]
struct FeatureSpec {
    #[serde(rename = "type")]
    kind: String,
    vocab_size: Option<u64>,
    padding_idx: Option<u64>,
    feature_encoder: Option<Value>,
    embedding_dim: Option<usize>,
    pretrained_emb: Option<Value>,
    max_len: Option<usize>,
}

/// The model's settings.
#[derive(Debug, Deserialize)]
struct ModelSettings {
    model: String,
    embedding_dim: usize,
    hidden_units: Vec<usize>,
    hidden_activations: Value,
    net_dropout: f64,
    batch_norm: bool,
    bn_eps: Option<f64>,
    output_activation: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Description {
    feature_map: FeatureMap,
    model: ModelSettings,
    #[serde(default)]
    framework_version: Option<String>,
}

/// The plan for a FuxiCTR DeepFM described by `json`.
pub(crate) fn plan(
    tensors: &Tensors<'_>,
    described: &serde_json::Value,
) -> Result<Plan, InteropError> {
    let description = |message: String| describe::error(FRAMEWORK, message);
    let desc: Description = describe::read(FRAMEWORK, described)?;
    let m = &desc.model;
    if m.model != "DeepFM" {
        return Err(unsupported("model", format!("{:?} (DeepFM)", m.model)));
    }
    check_relu(&m.hidden_activations)?;
    let d = m.embedding_dim;
    let (mut fields, mut tables) = (Vec::new(), Vec::new());
    // The longest list each sequence field takes (FuxiCTR's preprocessing truncates to it).
    let mut max_len = serde_json::Map::new();
    for (name, f) in desc.feature_map.features.iter().flat_map(|m| m.iter()) {
        let what = || format!("feature {name}");
        if f.kind == "meta" {
            continue; // not a model input
        }
        if f.pretrained_emb.is_some() {
            return Err(unsupported(
                what(),
                "pretrained embeddings are not supported",
            ));
        }
        if let Some(dim) = f.embedding_dim
            && dim != d
        {
            return Err(unsupported(
                what(),
                format!("embedding_dim {dim} differs from the model's {d}"),
            ));
        }
        let embedding = format!("{EMBEDDING}.{name}.weight");
        let linear = format!("{LINEAR}.{name}.weight");
        let vocab = || {
            f.vocab_size
                .ok_or_else(|| description(format!("feature {name} has no vocab_size")))
        };
        let kind = match f.kind.as_str() {
            "numeric" => {
                tables.push((
                    Source::Column(embedding),
                    Source::Element {
                        tensor: linear,
                        len: 1,
                        index: 0,
                    },
                ));
                fields.push(Field::new(name.clone(), FieldKind::Numeric));
                continue;
            }
            "categorical" => FieldKind::Categorical { vocab: vocab()? },
            "sequence" => {
                let pooling = match f.feature_encoder.as_ref().and_then(Value::as_str) {
                    Some("layers.MaskedAveragePooling()") => Pooling::Mean,
                    Some("layers.MaskedSumPooling()") => Pooling::Sum,
                    other => {
                        return Err(unsupported(
                            what(),
                            format!(
                                "feature_encoder {other:?} (MaskedAveragePooling and \
                                 MaskedSumPooling are supported)"
                            ),
                        ));
                    }
                };
                let padding = f.padding_idx.unwrap_or(0);
                if let Some(n) = f.max_len {
                    max_len.insert(name.clone(), n.into());
                }
                let vocab = vocab()?;
                for (table, width) in [(&embedding, d), (&linear, 1)] {
                    check_zero_row(tensors, table, vocab as usize, width, padding as usize)?;
                }
                FieldKind::MultiHot {
                    vocab,
                    pooling,
                    linear_pooling: Pooling::Sum,
                    padding: Some(padding),
                    weighted: false,
                }
            }
            other => {
                return Err(unsupported(
                    what(),
                    format!("type {other:?} (categorical, numeric, sequence)"),
                ));
            }
        };
        let rows = kind.rows() as usize;
        tables.push((Source::table(embedding, rows), Source::table(linear, rows)));
        fields.push(Field::new(name.clone(), kind));
    }

    // The Sequential's indices: per hidden layer Linear, [BatchNorm1d], ReLU, [Dropout].
    let per_layer = 2 + usize::from(m.batch_norm) + usize::from(m.net_dropout > 0.0);
    let hidden = (0..m.hidden_units.len())
        .map(|i| {
            let at = i * per_layer;
            Layer {
                weight: format!("mlp.mlp.{at}.weight"),
                bias: format!("mlp.mlp.{at}.bias"),
                norm: m.batch_norm.then(|| Norm {
                    prefix: format!("mlp.mlp.{}", at + 1),
                    eps: m.bn_eps.unwrap_or(1e-5),
                }),
            }
        })
        .collect();
    let out = m.hidden_units.len() * per_layer;
    let output = match m.output_activation.as_deref() {
        Some("sigmoid") => Output::Sigmoid,
        None => Output::Linear,
        Some(other) => {
            return Err(unsupported(
                "output_activation",
                format!("{other:?} (sigmoid or none)"),
            ));
        }
    };
    let spec = ModelSpec {
        mlp: Default::default(),
        table: Default::default(),
        fields,
        embedding_dim: d,
        hidden: m.hidden_units.clone(),
        output,
        clamp: None,
    };
    Ok(Plan {
        spec,
        tables,
        hidden,
        out_weight: Some(format!("mlp.mlp.{out}.weight")),
        out_bias: vec![format!("mlp.mlp.{out}.bias")],
        bias: vec!["fm.lr_layer.bias".into()],
        metadata: serde_json::json!({"imported_from": {
            "framework": FRAMEWORK, "framework_version": desc.framework_version},
            "max_len": max_len}),
    })
}

/// `hidden_activations` is one name or one per layer; only ReLU is supported.
fn check_relu(activations: &Value) -> Result<(), InteropError> {
    let names: Vec<&Value> = match activations {
        Value::Array(list) => list.iter().collect(),
        one => vec![one],
    };
    match names
        .into_iter()
        .find(|a| a.as_str().map(str::to_lowercase).as_deref() != Some("relu"))
    {
        Some(other) => Err(unsupported(
            "hidden_activations",
            format!("{other} (only relu is supported)"),
        )),
        None => Ok(()),
    }
}

/// FuxiCTR masks a sequence by the positions whose vector is zero; the import masks the
/// padding id, which is the same only if the padding row is zero.
fn check_zero_row(
    tensors: &Tensors<'_>,
    table: &str,
    rows: usize,
    width: usize,
    padding: usize,
) -> Result<(), InteropError> {
    let values = tensors.f32s(table, &[rows, width])?;
    let row = (padding < rows).then(|| &values[padding * width..(padding + 1) * width]);
    match row {
        Some(row) if row.iter().all(|&v| v == 0.0) => Ok(()),
        Some(_) => Err(InteropError::BadValue {
            name: table.into(),
            reason: format!("padding row {padding} is not zero"),
        }),
        None => Err(InteropError::BadValue {
            name: table.into(),
            reason: format!("padding id {padding} is outside its {rows} rows"),
        }),
    }
}

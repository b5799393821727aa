//! CoreRec's DeepFM (`corerec.engines.deepfm`, 0.6), from the `state_dict` of its inner torch
//! module and its fields (`tools/export/corerec.py` writes both: CoreRec's own `save` keeps
//! the weights in a pickle).
//!
//! Its model is this crate's own layout: one stacked table `fm_layer.feature_embedding.weight`
//! with the first-order weights `fm_layer.embedding.weight` beside it, fields at the offsets
//! `fm_layer.offsets`, all categorical; `Linear → BatchNorm → ReLU → Dropout` per hidden
//! layer; `output_layer` with a bias; a sigmoid unless it was fitted on ratings.

use super::InteropError;
use super::assemble::{Layer, Norm, Plan, Source};
use super::describe;
use super::tensors::Tensors;
use crate::spec::{Field, FieldKind, ModelSpec, Output};
use serde::Deserialize;

const FRAMEWORK: &str = "corerec";

/// The description `tools/export/corerec.py` writes (the feature map, also there, is not read).
#[derive(Debug, Deserialize)]
struct Description {
    field_names: Vec<String>,
    field_dims: Vec<u64>,
    embedding_dim: usize,
    hidden_layers: Vec<usize>,
    use_sigmoid: bool,
    bn_eps: Option<f64>,
    #[serde(default)]
    framework_version: Option<String>,
}

/// The plan for a CoreRec DeepFM described by `json`.
pub(crate) fn plan(
    tensors: &Tensors<'_>,
    described: &serde_json::Value,
) -> Result<Plan, InteropError> {
    let description = |message: String| describe::error(FRAMEWORK, message);
    let desc: Description = describe::read(FRAMEWORK, described)?;
    if desc.field_names.len() != desc.field_dims.len() {
        return Err(description(format!(
            "{} field names for {} field dims",
            desc.field_names.len(),
            desc.field_dims.len()
        )));
    }
    if desc.hidden_layers.is_empty() {
        return Err(description(
            "CoreRec's DeepFM has at least one hidden layer".into(),
        ));
    }
    let total = desc
        .field_dims
        .iter()
        .try_fold(0u64, |acc, &d| acc.checked_add(d))
        .filter(|&t| t <= i64::MAX as u64)
        .ok_or_else(|| description("the field dims overflow".into()))?;
    // The offsets buffer must be the one these fields imply: else the fields are not where the
    // description says.
    let offsets_name = "fm_layer.offsets";
    let offsets = tensors.i64s(offsets_name)?;
    let implied: Vec<i64> = desc
        .field_dims
        .iter()
        .scan(0i64, |next, &dim| {
            // No overflow: the dims' sum fits an i64 (checked above).
            let start = *next;
            *next += dim as i64;
            Some(start)
        })
        .collect();
    if offsets != implied {
        return Err(InteropError::BadValue {
            name: offsets_name.into(),
            reason: format!("is {offsets:?}, the field dims imply {implied:?}"),
        });
    }
    let fields = desc
        .field_names
        .iter()
        .zip(&desc.field_dims)
        .map(|(name, &vocab)| Field::new(name.clone(), FieldKind::Categorical { vocab }))
        .collect();
    // One stacked table, already in this crate's layout.
    let tables = vec![(
        Source::table("fm_layer.feature_embedding.weight", total as usize),
        Source::table("fm_layer.embedding.weight", total as usize),
    )];
    let hidden = (0..desc.hidden_layers.len())
        .map(|i| Layer {
            weight: format!("deep_layers.{i}.0.weight"),
            bias: format!("deep_layers.{i}.0.bias"),
            norm: Some(Norm {
                prefix: format!("deep_layers.{i}.1"),
                eps: desc.bn_eps.unwrap_or(1e-5),
            }),
        })
        .collect();
    let spec = ModelSpec {
        mlp: Default::default(),
        table: Default::default(),
        fields,
        embedding_dim: desc.embedding_dim,
        hidden: desc.hidden_layers.clone(),
        output: if desc.use_sigmoid {
            Output::Sigmoid
        } else {
            Output::Linear
        },
        clamp: None,
    };
    Ok(Plan {
        spec,
        tables,
        hidden,
        out_weight: Some("output_layer.weight".into()),
        out_bias: vec!["output_layer.bias".into()],
        bias: Vec::new(),
        metadata: serde_json::json!({"imported_from": {
            "framework": FRAMEWORK, "framework_version": desc.framework_version}}),
    })
}

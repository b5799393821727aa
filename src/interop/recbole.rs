//! RecBole's DeepFM (`recbole.model.context_aware_recommender.DeepFM`, 1.2), from its
//! `state_dict` and its fields (`tools/export/recbole.py` writes both from the model and its
//! dataset).
//!
//! What its forward pass does, and how it maps onto a spec:
//! - Fields in the description's order, which is RecBole's: the `token_seq` fields, then the
//!   `token` fields, then the `float` fields; the FM term and the MLP input cover all of them.
//! - `token`: one table for all token fields, `token_embedding_table.embedding.weight`, each
//!   field's rows after the previous field's (`first_order_linear.token_embedding_table…` the
//!   same for the first-order weights): sliced into categorical fields here.
//! - `float`: value × row `index` of the field's rows in `float_embedding_table` (and of the
//!   first-order table): field kind `numeric`.
//! - `token_seq`: a table each (`token_seq_embedding_table.{k}`), the mean of the rows of the
//!   ids that are not 0 (`sum / (count + 1e-8)`), first-order weights summed: multi-hot, mean,
//!   `linear_pooling` sum, padding 0.
//! - MLP: `Dropout → Linear → ReLU` per hidden layer (`mlp_layers.mlp_layers.{3i + 1}`), no
//!   batch norm, then `deep_predict_layer` with a bias; `first_order_linear.bias` is the other.

use super::InteropError;
use super::assemble::{Layer, Plan, Source};
use super::describe::{self, unsupported};
use super::tensors::Tensors;
use crate::spec::{Field, FieldKind, ModelSpec, Output, Pooling};
use serde::Deserialize;

const FRAMEWORK: &str = "recbole";

/// One field, as the exporter writes it from RecBole's dataset.
#[derive(Debug, Deserialize)]
struct FieldDescription {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    vocab: u64,
    /// `float`: the row of the field's rows that a value scales.
    index: Option<u64>,
    /// `token_seq`: the longest list.
    max_len: Option<usize>,
    /// `token_seq`: the id that stands for no id.
    padding_id: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct Description {
    model: String,
    fields: Vec<FieldDescription>,
    embedding_size: usize,
    mlp_hidden_size: Vec<usize>,
    batch_norm: bool,
    activation: String,
    last_activation: bool,
    output_activation: Option<String>,
    #[serde(default)]
    framework_version: Option<String>,
}

/// The plan for a RecBole DeepFM described by `json`. The table sizes follow from the
/// fields' vocabularies; `assemble` checks every tensor against them.
pub(crate) fn plan(
    _tensors: &Tensors<'_>,
    described: &serde_json::Value,
) -> Result<Plan, InteropError> {
    let desc: Description = describe::read(FRAMEWORK, described)?;
    if desc.model != "DeepFM" {
        return Err(unsupported("model", format!("{:?} (DeepFM)", desc.model)));
    }
    if desc.batch_norm || desc.activation.to_lowercase() != "relu" || !desc.last_activation {
        return Err(unsupported(
            "mlp",
            "only Linear → ReLU after every hidden layer, without batch norm, is RecBole's DeepFM",
        ));
    }
    let total = |kind: &str| -> Result<usize, InteropError> {
        desc.fields
            .iter()
            .filter(|f| f.kind == kind)
            .try_fold(0usize, |acc, f| acc.checked_add(f.vocab as usize))
            .ok_or_else(|| describe::error(FRAMEWORK, format!("the {kind} vocabularies overflow")))
    };
    let (token_rows, float_rows) = (total("token")?, total("float")?);
    let (mut token_next, mut float_next, mut seq_next) = (0usize, 0usize, 0usize);
    let (mut fields, mut tables) = (Vec::new(), Vec::new());
    let mut max_len = serde_json::Map::new();
    for f in &desc.fields {
        let what = || format!("field {}", f.name);
        let rows = |tensor: String, all: usize, first: usize, count: usize| Source::Rows {
            tensor,
            rows: all,
            first,
            count,
        };
        let (kind, embedding, linear) = match f.kind.as_str() {
            "token" => {
                let first = token_next;
                token_next += f.vocab as usize;
                let count = f.vocab as usize;
                (
                    FieldKind::Categorical { vocab: f.vocab },
                    rows(
                        "token_embedding_table.embedding.weight".into(),
                        token_rows,
                        first,
                        count,
                    ),
                    rows(
                        "first_order_linear.token_embedding_table.embedding.weight".into(),
                        token_rows,
                        first,
                        count,
                    ),
                )
            }
            "float" => {
                let index = f.index.unwrap_or(0);
                if index >= f.vocab {
                    return Err(describe::error(
                        FRAMEWORK,
                        format!("{}: index {index} is outside its {} rows", what(), f.vocab),
                    ));
                }
                let first = float_next + index as usize;
                float_next += f.vocab as usize;
                (
                    FieldKind::Numeric,
                    rows(
                        "float_embedding_table.embedding.weight".into(),
                        float_rows,
                        first,
                        1,
                    ),
                    rows(
                        "first_order_linear.float_embedding_table.embedding.weight".into(),
                        float_rows,
                        first,
                        1,
                    ),
                )
            }
            "token_seq" => {
                let k = seq_next;
                seq_next += 1;
                if let Some(n) = f.max_len {
                    max_len.insert(f.name.clone(), n.into());
                }
                let vocab = f.vocab as usize;
                (
                    FieldKind::MultiHot {
                        vocab: f.vocab,
                        pooling: Pooling::Mean,
                        linear_pooling: Pooling::Sum,
                        padding: Some(f.padding_id.unwrap_or(0)),
                        weighted: false,
                    },
                    Source::table(format!("token_seq_embedding_table.{k}.weight"), vocab),
                    Source::table(
                        format!("first_order_linear.token_seq_embedding_table.{k}.weight"),
                        vocab,
                    ),
                )
            }
            other => {
                return Err(unsupported(
                    what(),
                    format!("type {other:?} (token, float, token_seq)"),
                ));
            }
        };
        fields.push(Field::new(f.name.clone(), kind));
        tables.push((embedding, linear));
    }
    let hidden = (0..desc.mlp_hidden_size.len())
        .map(|i| Layer {
            weight: format!("mlp_layers.mlp_layers.{}.weight", 3 * i + 1),
            bias: format!("mlp_layers.mlp_layers.{}.bias", 3 * i + 1),
            norm: None,
        })
        .collect();
    let output = match desc.output_activation.as_deref() {
        Some("sigmoid") => Output::Sigmoid,
        None => Output::Linear,
        Some(other) => {
            return Err(unsupported(
                "output_activation",
                format!("{other:?} (sigmoid or none)"),
            ));
        }
    };
    Ok(Plan {
        spec: ModelSpec {
            mlp: Default::default(),
            table: Default::default(),
            fields,
            embedding_dim: desc.embedding_size,
            hidden: desc.mlp_hidden_size.clone(),
            output,
            clamp: None,
        },
        tables,
        hidden,
        out_weight: Some("deep_predict_layer.weight".into()),
        out_bias: vec!["deep_predict_layer.bias".into()],
        bias: vec!["first_order_linear.bias".into()],
        metadata: serde_json::json!({"imported_from": {
            "framework": FRAMEWORK, "framework_version": desc.framework_version},
            "max_len": max_len}),
    })
}

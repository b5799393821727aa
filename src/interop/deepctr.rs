//! DeepCTR-Torch's DeepFM (`deepctr_torch.models.DeepFM`, 0.3.x), from its `state_dict` and
//! its feature columns (`tools/export/deepctr_torch.py` writes both).
//!
//! What its forward pass does, and how it maps onto a spec:
//! - The embedded fields are the `SparseFeat`s in column order, then the
//!   `VarLenSparseFeat`s; the `DenseFeat`s come after them in the DNN input as raw values and
//!   take no part in the FM term: field kind `dense`, fields ordered the same way.
//! - Tables are keyed by `embedding_name`: the first field with a name owns
//!   `embedding_dict.{name}.weight` and `linear_model.embedding_dict.{name}.weight`; later
//!   fields with the same name read them (`table`).
//! - A `VarLenSparseFeat` masks id 0 (`padding: 0`) and pools by its combiner (mean, sum or
//!   max), its first-order weights too.
//! - Dense values are multiplied by their row of `linear_model.weight [n_dense, 1]`.
//! - DNN: `Linear → BatchNorm → activation → Dropout`, then `dnn_linear` (no bias); the only
//!   bias outside the DNN is `out.bias`, added before the sigmoid of a binary task.

use super::InteropError;
use super::assemble::{Layer, Norm, Plan, Source};
use super::describe::{self, unsupported};
use super::tensors::Tensors;
use crate::spec::{Field, FieldKind, ModelSpec, Output, Pooling};
use serde::Deserialize;
use std::collections::HashMap;

const FRAMEWORK: &str = "deepctr-torch";

/// `SparseFeat` as `_asdict()` writes it (other keys, such as `dtype`, are ignored).
#[derive(Debug, Clone, Deserialize)]
struct Sparse {
    name: String,
    vocabulary_size: u64,
    embedding_dim: usize,
    embedding_name: Option<String>,
}

/// One feature column, tagged by its class name.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type")]
#[allow(clippy::enum_variant_names)] // DeepCTR's class names
enum Column {
    SparseFeat(Sparse),
    VarLenSparseFeat {
        sparsefeat: Sparse,
        maxlen: usize,
        combiner: String,
        length_name: Option<String>,
    },
    DenseFeat {
        name: String,
        dimension: usize,
    },
}

impl Column {
    fn name(&self) -> &str {
        match self {
            Column::SparseFeat(s) | Column::VarLenSparseFeat { sparsefeat: s, .. } => &s.name,
            Column::DenseFeat { name, .. } => name,
        }
    }

    /// The order of the DNN input: sparse, then variable-length, then dense.
    fn rank(&self) -> u8 {
        match self {
            Column::SparseFeat(_) => 0,
            Column::VarLenSparseFeat { .. } => 1,
            Column::DenseFeat { .. } => 2,
        }
    }
}

/// The description `tools/export/deepctr_torch.py` writes.
#[derive(Debug, Deserialize)]
struct Description {
    task: String,
    use_fm: bool,
    dnn_hidden_units: Vec<usize>,
    /// `None` when the model has no DNN.
    dnn_activation: Option<String>,
    dnn_use_bn: bool,
    bn_eps: Option<f64>,
    linear_feature_columns: Vec<Column>,
    dnn_feature_columns: Vec<Column>,
    #[serde(default)]
    framework_version: Option<String>,
}

/// The plan for a DeepCTR-Torch DeepFM described by `json`.
pub(crate) fn plan(
    tensors: &Tensors<'_>,
    described: &serde_json::Value,
) -> Result<Plan, InteropError> {
    let desc: Description = describe::read(FRAMEWORK, described)?;
    if !desc.use_fm {
        return Err(unsupported(
            "use_fm",
            "a DeepFM without its FM term is not a DeepFM",
        ));
    }
    check_same_columns(&desc)?;
    let mut columns = desc.dnn_feature_columns.clone();
    columns.sort_by_key(Column::rank); // stable: column order within each kind
    let dims: Vec<usize> = columns
        .iter()
        .filter_map(|c| match c {
            Column::SparseFeat(s) | Column::VarLenSparseFeat { sparsefeat: s, .. } => {
                Some(s.embedding_dim)
            }
            Column::DenseFeat { .. } => None,
        })
        .collect();
    let d = dims.first().copied().unwrap_or(1);
    if let Some(c) = columns.iter().find(|c| match c {
        Column::SparseFeat(s) | Column::VarLenSparseFeat { sparsefeat: s, .. } => {
            s.embedding_dim != d
        }
        Column::DenseFeat { .. } => false,
    }) {
        return Err(unsupported(
            format!("feature {}", c.name()),
            format!("embedding_dim differs from {d}: the FM term needs one dimension"),
        ));
    }

    // The dense features' rows of `linear_model.weight`, in linear_feature_columns order.
    let dense_linear: Vec<&str> = desc
        .linear_feature_columns
        .iter()
        .filter(|c| matches!(c, Column::DenseFeat { .. }))
        .map(Column::name)
        .collect();
    let mut owners: HashMap<String, String> = HashMap::new();
    // The longest list each multi-hot field takes (its padded length).
    let mut max_len = serde_json::Map::new();
    let (mut fields, mut tables) = (Vec::new(), Vec::new());
    for column in &columns {
        let (sparse, pooling) = match column {
            Column::SparseFeat(s) => (s, None),
            Column::VarLenSparseFeat {
                sparsefeat,
                maxlen,
                combiner,
                length_name,
            } => {
                max_len.insert(sparsefeat.name.clone(), (*maxlen).into());
                if let Some(length) = length_name {
                    return Err(unsupported(
                        format!("feature {}", sparsefeat.name),
                        format!(
                            "its length comes from column {length}; only sequences padded with \
                             id 0 (length_name None) are supported"
                        ),
                    ));
                }
                let pooling = match combiner.as_str() {
                    "mean" => Pooling::Mean,
                    "sum" => Pooling::Sum,
                    "max" => Pooling::Max,
                    other => {
                        return Err(unsupported(
                            format!("feature {}", sparsefeat.name),
                            format!("combiner {other:?} (mean, sum and max are supported)"),
                        ));
                    }
                };
                (sparsefeat, Some(pooling))
            }
            Column::DenseFeat { name, dimension } => {
                if *dimension != 1 {
                    return Err(unsupported(
                        format!("feature {name}"),
                        format!("dimension {dimension}: split it into one DenseFeat per value"),
                    ));
                }
                let index = dense_linear
                    .iter()
                    .position(|n| n == name)
                    .expect("linear and DNN columns were checked to agree");
                fields.push(Field::new(name.clone(), FieldKind::Dense));
                let linear = Source::Element {
                    tensor: "linear_model.weight".into(),
                    len: dense_linear.len(),
                    index,
                };
                tables.push((Source::Zero, linear));
                continue;
            }
        };
        let table = sparse.embedding_name.clone().unwrap_or(sparse.name.clone());
        let owner = owners.get(&table).cloned();
        let (vocab, table_field) = match owner {
            Some(owner) => (sparse.vocabulary_size, Some(owner)),
            None => {
                let embedding = format!("embedding_dict.{table}.weight");
                let shape = tensors.shape(&embedding)?;
                let rows = shape.first().copied().unwrap_or(0);
                if (rows as u64) < sparse.vocabulary_size {
                    return Err(InteropError::Shape {
                        name: embedding,
                        expected: vec![sparse.vocabulary_size as usize, d],
                        found: shape,
                    });
                }
                let linear = format!("linear_model.embedding_dict.{table}.weight");
                tables.push((Source::table(embedding, rows), Source::table(linear, rows)));
                owners.insert(table, sparse.name.clone());
                (rows as u64, None)
            }
        };
        let kind = match pooling {
            None => FieldKind::Categorical { vocab },
            Some(pooling) => FieldKind::MultiHot {
                vocab,
                pooling,
                linear_pooling: pooling,
                padding: Some(0),
                weighted: false,
            },
        };
        fields.push(Field {
            table: table_field,
            ..Field::new(sparse.name.clone(), kind)
        });
    }

    let hidden_units = desc.dnn_hidden_units.clone();
    let activation = desc.dnn_activation.as_deref().map(str::to_lowercase);
    if !hidden_units.is_empty() && activation.as_deref() != Some("relu") {
        return Err(unsupported(
            "dnn_activation",
            format!("{:?} (only relu is supported)", desc.dnn_activation),
        ));
    }
    let hidden = (0..hidden_units.len())
        .map(|i| Layer {
            weight: format!("dnn.linears.{i}.weight"),
            bias: format!("dnn.linears.{i}.bias"),
            norm: desc.dnn_use_bn.then(|| Norm {
                prefix: format!("dnn.bn.{i}"),
                eps: desc.bn_eps.unwrap_or(1e-5),
            }),
        })
        .collect();
    let output = match desc.task.as_str() {
        "binary" => Output::Sigmoid,
        "regression" => Output::Linear,
        other => {
            return Err(unsupported(
                "task",
                format!("{other:?} (binary, regression)"),
            ));
        }
    };
    let spec = ModelSpec {
        mlp: Default::default(),
        table: Default::default(),
        fields,
        embedding_dim: d,
        hidden: hidden_units.clone(),
        output,
        clamp: None,
    };
    Ok(Plan {
        spec,
        tables,
        hidden,
        out_weight: (!hidden_units.is_empty()).then(|| "dnn_linear.weight".to_string()),
        out_bias: Vec::new(),
        bias: vec!["out.bias".into()],
        metadata: serde_json::json!({"imported_from": {
            "framework": FRAMEWORK, "framework_version": desc.framework_version},
            "max_len": max_len}),
    })
}

/// The linear and DNN parts must see the same features: a feature only one of them reads has
/// no field kind here.
fn check_same_columns(desc: &Description) -> Result<(), InteropError> {
    let names = |cols: &[Column]| {
        let mut n: Vec<(String, u8)> = cols.iter().map(|c| (c.name().into(), c.rank())).collect();
        n.sort();
        n
    };
    let (linear, dnn) = (
        names(&desc.linear_feature_columns),
        names(&desc.dnn_feature_columns),
    );
    if let Some((name, _)) = linear
        .iter()
        .find(|n| !dnn.contains(n))
        .or_else(|| dnn.iter().find(|n| !linear.contains(n)))
    {
        return Err(unsupported(
            format!("feature {name}"),
            "the linear and DNN feature columns differ; only models built with the same \
             columns for both are supported",
        ));
    }
    Ok(())
}

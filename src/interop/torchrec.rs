//! DeepFM models built on torchrec's `EmbeddingBagCollection` (torchrec 1.9), trained sharded
//! with `DistributedModelParallel` and gathered to one `state_dict`: an embedding-bag
//! collection of D-wide tables for the embeddings, one of 1-wide tables for the first-order
//! weights, and a standard DeepFM head (`tools/export/make_fixtures_torchrec.py` builds one and
//! writes its description).
//!
//! What maps onto a spec:
//! - Fields in `feature_order`. A table (`sparse.embedding_bags.{table}.weight`) belongs to the
//!   first feature that reads it; later features read it as a shared table (`table`). The
//!   first-order tables must be shared the same way.
//! - A feature listed in `multi_valued` is a multi-hot field (a KeyedJaggedTensor bag, no
//!   padding) pooled by its tables' poolings; the others carry one id (a bag of one, which sum
//!   and mean pool to the row itself): categorical.
//! - A feature read through a weighted collection (`EmbeddingBagCollection(is_weighted=True)`:
//!   its tables say `is_weighted`, or the description does for every table) carries a weight
//!   per id: a weighted multi-hot field, `sum_i w_i × row_i` (mean: divided by the number of
//!   ids, as fbgemm's kernel does; `nn.EmbeddingBag`, which the unsharded collection runs,
//!   refuses weighted mean). Its first-order table must be weighted too.
//! - The head: per hidden layer `Linear → [BatchNorm1d] → ReLU`, then `Linear(last, 1)` with a
//!   bias, a global `bias`, the per-dimension FM term, a sigmoid.
//!
//! torchrec's own DeepFM (`torchrec.models.deepfm`) is refused: its `FactorizationMachine`
//! sums the products of all pairs of the F × D scalars flattened (across dimensions, the dense
//! vector included), and its over-arch weighs `[dense vector, deep output, FM term]` with a
//! learned linear layer; a DeepFM model file has neither.

use super::InteropError;
use super::assemble::{Layer, Norm, Plan, Source};
use super::describe::{self, unsupported};
use super::tensors::Tensors;
use crate::spec::{Field, FieldKind, ModelSpec, Output, Pooling};
use serde::Deserialize;
use std::collections::BTreeMap;

const FRAMEWORK: &str = "torchrec";

/// One table of an `EmbeddingBagCollection`.
#[derive(Debug, Deserialize)]
struct Table {
    name: String,
    num_embeddings: u64,
    embedding_dim: usize,
    pooling: String,
    feature_names: Vec<String>,
    tensor: String,
    /// Part of a weighted collection: every id the table reads comes with a weight.
    #[serde(default)]
    is_weighted: bool,
}

/// One hidden layer of the head: module names.
#[derive(Debug, Deserialize)]
struct MlpLayer {
    linear: String,
    batch_norm: Option<String>,
    activation: String,
}

#[derive(Debug, Deserialize)]
struct Description {
    tables: Vec<Table>,
    first_order_tables: Vec<Table>,
    feature_order: Vec<String>,
    #[serde(default)]
    multi_valued: BTreeMap<String, serde_json::Value>,
    /// Every table is in a weighted collection (`EmbeddingBagCollection(is_weighted=True)`):
    /// every id of a bag has a weight of its own.
    #[serde(default)]
    is_weighted: bool,
    mlp_layers: Vec<MlpLayer>,
    bn_eps: Option<f64>,
    output_layer: String,
    global_bias: String,
    output: Option<String>,
    #[serde(default)]
    framework_version: Option<String>,
}

/// The table of `tables` that `feature` reads, and the first feature (in `order`) reading it.
fn table_of<'a>(
    tables: &'a [Table],
    feature: &str,
    order: &[String],
) -> Result<(&'a Table, &'a str), InteropError> {
    let table = tables
        .iter()
        .find(|t| t.feature_names.iter().any(|f| f == feature))
        .ok_or_else(|| {
            describe::error(FRAMEWORK, format!("no table serves feature {feature:?}"))
        })?;
    let owner = order
        .iter()
        .find(|f| table.feature_names.contains(f))
        .expect("the feature itself is in the order");
    let owner = table
        .feature_names
        .iter()
        .find(|f| *f == owner)
        .expect("listed");
    Ok((table, owner))
}

fn pooling(table: &Table) -> Result<Pooling, InteropError> {
    match table.pooling.as_str() {
        "sum" => Ok(Pooling::Sum),
        "mean" => Ok(Pooling::Mean),
        other => Err(unsupported(
            format!("table {}", table.name),
            format!("pooling {other:?} (sum, mean)"),
        )),
    }
}

/// The plan for an `EmbeddingBagCollection` DeepFM described by `json`.
pub(crate) fn plan(
    tensors: &Tensors<'_>,
    described: &serde_json::Value,
) -> Result<Plan, InteropError> {
    if let Some(name) = tensors.names().into_iter().find(|n| {
        ["over_arch.", "inter_arch.", "dense_arch."]
            .iter()
            .any(|p| n.starts_with(p))
    }) {
        return Err(unsupported(
            "torchrec's DeepFM (torchrec.models.deepfm)",
            format!(
                "tensor {name}: its FactorizationMachine sums the products of all pairs of the \
                 F x D scalars flattened, and its over-arch weighs [dense vector, deep output, FM \
                 term] with a learned layer; a DeepFM model file has neither (build the head as \
                 tools/export/make_fixtures_torchrec.py does)"
            ),
        ));
    }
    let desc: Description = describe::read(FRAMEWORK, described)?;
    let d = desc.tables.first().map_or(1, |t| t.embedding_dim);
    let (mut fields, mut tables) = (Vec::new(), Vec::new());
    for feature in &desc.feature_order {
        let what = || format!("feature {feature}");
        let (table, owner) = table_of(&desc.tables, feature, &desc.feature_order)?;
        let (linear, linear_owner) =
            table_of(&desc.first_order_tables, feature, &desc.feature_order)?;
        if table.embedding_dim != d || linear.embedding_dim != 1 {
            return Err(unsupported(
                what(),
                format!(
                    "tables {} and {} are {} and {} wide: embeddings must all be {d} wide, \
                     first-order weights 1",
                    table.name, linear.name, table.embedding_dim, linear.embedding_dim
                ),
            ));
        }
        if owner != linear_owner || table.num_embeddings != linear.num_embeddings {
            return Err(unsupported(
                what(),
                format!(
                    "its embedding table {} and first-order table {} are not shared alike",
                    table.name, linear.name
                ),
            ));
        }
        let weighted = desc.is_weighted || table.is_weighted;
        if weighted != (desc.is_weighted || linear.is_weighted) {
            return Err(unsupported(
                what(),
                format!(
                    "one of its tables {} and {} is weighted and the other is not: a field's \
                     ids carry one set of weights",
                    table.name, linear.name
                ),
            ));
        }
        let vocab = table.num_embeddings;
        let kind = if weighted || desc.multi_valued.contains_key(feature) {
            FieldKind::MultiHot {
                vocab,
                pooling: pooling(table)?,
                linear_pooling: pooling(linear)?,
                padding: None,
                weighted,
            }
        } else {
            FieldKind::Categorical { vocab }
        };
        let shared = (owner != feature).then(|| owner.to_string());
        if shared.is_none() {
            let rows = vocab as usize;
            tables.push((
                Source::table(table.tensor.clone(), rows),
                Source::table(linear.tensor.clone(), rows),
            ));
        }
        fields.push(Field {
            table: shared,
            ..Field::new(feature.clone(), kind)
        });
    }
    let hidden = desc
        .mlp_layers
        .iter()
        .map(|l| {
            if l.activation.to_lowercase() != "relu" {
                return Err(unsupported(
                    format!("layer {}", l.linear),
                    format!("activation {:?} (relu)", l.activation),
                ));
            }
            Ok(Layer {
                weight: format!("{}.weight", l.linear),
                bias: format!("{}.bias", l.linear),
                norm: l.batch_norm.as_ref().map(|prefix| Norm {
                    prefix: prefix.clone(),
                    eps: desc.bn_eps.unwrap_or(1e-5),
                }),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let widths = hidden
        .iter()
        .map(|l| {
            let shape = tensors.shape(&l.weight)?;
            shape.first().copied().ok_or_else(|| InteropError::Shape {
                name: l.weight.clone(),
                expected: vec![0, 0],
                found: shape,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let output = match desc.output.as_deref() {
        Some("sigmoid") => Output::Sigmoid,
        None | Some("linear") => Output::Linear,
        Some(other) => {
            return Err(unsupported(
                "output",
                format!("{other:?} (sigmoid, linear)"),
            ));
        }
    };
    Ok(Plan {
        spec: ModelSpec {
            mlp: Default::default(),
            table: Default::default(),
            fields,
            embedding_dim: d,
            hidden: widths,
            output,
            clamp: None,
        },
        tables,
        hidden,
        out_weight: Some(format!("{}.weight", desc.output_layer)),
        out_bias: vec![format!("{}.bias", desc.output_layer)],
        bias: vec![desc.global_bias.clone()],
        metadata: serde_json::json!({"imported_from": {
            "framework": FRAMEWORK, "framework_version": desc.framework_version}}),
    })
}

//! The model's shape: fields, embedding dimension, hidden layers and output, as JSON.
//!
//! ```
//! let spec: deepfm::ModelSpec = serde_json::from_str(r#"{
//!   "fields": [{"name": "C1", "kind": "categorical", "vocab": 1000},
//!              {"name": "I1", "kind": "numeric"},
//!              {"name": "genres", "kind": "multi_hot", "vocab": 18, "pooling": "mean"}],
//!   "embedding_dim": 16, "hidden": [400, 400, 400], "output": "sigmoid"}"#).unwrap();
//! spec.validate().unwrap();
//! assert_eq!(spec.total_rows().unwrap(), 1000 + 1 + 18);
//! ```
//!
//! The field kinds beyond those three exist so that models trained by other frameworks can be
//! scored exactly (see `deepfm::interop`, with the `train` feature):
//! - `dense`: a raw value fed to the MLP as it is (DeepCTR-Torch's `DenseFeat`). It has a
//!   first-order weight (`w · v`) but no embedding and no part in the FM term. The MLP input is
//!   the embedded fields' vectors in field order, then the dense values in field order.
//! - `"table": "item"` on a categorical or multi-hot field: the field reads the rows of the
//!   field named `item` (embedding and first-order weight) and owns none itself
//!   (DeepCTR-Torch's `embedding_name`, FuxiCTR's `share_embedding`).
//! - multi-hot `"pooling": "max"` (element-wise maximum), `"linear_pooling"` (how the
//!   first-order weights of the list combine, when not as the embeddings do; FuxiCTR sums them
//!   under a mean-pooled embedding), and `"padding": 0` (an id that stands for no id: it
//!   contributes nothing and is not counted by `mean`).

use serde::{Deserialize, Serialize};

/// Largest supported embedding dimension.
pub const MAX_EMBEDDING_DIM: usize = 256;
/// Largest supported hidden layer width (keeps scratch sizes and packed weights bounded).
pub const MAX_LAYER_WIDTH: usize = 16_384;
/// Largest number of hidden layers.
pub const MAX_LAYERS: usize = 64;
/// Largest number of fields.
pub const MAX_FIELDS: usize = 4_096;
/// Widest input of a hidden layer scored in int8 ([`MlpPrecision::Int8`]): its integer sums
/// stay inside an i32 (`255·128·65537 < 2³¹`).
pub const MAX_INT8_DEPTH: usize = 65_536;
/// Largest number of MLP parameters (weights and biases, 1 GiB in f32): opening a model reads,
/// checksums and packs them all, so a hostile header must not be able to ask for more.
pub const MAX_DENSE_PARAMS: u64 = 1 << 28;

/// How a multi-hot field combines the rows of its ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// Average of the rows; an empty list gives the zero vector.
    Mean,
    /// Sum of the rows; an empty list gives the zero vector.
    Sum,
    /// Element-wise maximum of the rows. An empty list (after padding ids are dropped) has no
    /// maximum: a batch holding one is refused ([`crate::ScoreError::EmptyMaxPool`]).
    Max,
}

/// The kind of a field and the size of its slice of the embedding table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// One id in `0..vocab` per sample; the field owns `vocab` rows.
    Categorical {
        /// Number of distinct ids (rows).
        vocab: u64,
    },
    /// One finite value per sample; the field owns one row, scaled by the value, and its
    /// first-order weight is multiplied by the value too (DeepFM paper, DeepCTR).
    Numeric,
    /// A variable-length list of ids in `0..vocab` per sample, pooled.
    MultiHot {
        /// Number of distinct ids (rows).
        vocab: u64,
        /// How the embedding rows of the ids are combined.
        pooling: Pooling,
        /// How the first-order weights of the ids are combined (usually `pooling`).
        linear_pooling: Pooling,
        /// An id that stands for "no id" (padding of a fixed-length list): it adds nothing and
        /// is not counted by `mean`.
        padding: Option<u64>,
        /// Every id of a list comes with a weight of its own (torchrec's weighted
        /// `KeyedJaggedTensor`, `EmbeddingBagCollection(is_weighted=True)`): the field pools
        /// `weight × row` for the embeddings and the first-order weights alike (`mean` divides
        /// that sum by the number of ids, as fbgemm does). Not with `max` pooling.
        weighted: bool,
    },
    /// One finite value per sample, fed to the MLP as it is, after all embedded fields; the
    /// field owns one row whose first-order weight is multiplied by the value (its embedding
    /// row is unused) and it takes no part in the FM term.
    Dense,
}

impl Pooling {
    /// The factor each id's row gets in a list of `len` ids (an empty list pools to zero); for
    /// `max`, which weighs nothing, 1.
    pub fn weight(self, len: usize) -> f32 {
        match self {
            Pooling::Sum | Pooling::Max => 1.0,
            Pooling::Mean => 1.0 / len.max(1) as f32,
        }
    }
}

impl FieldKind {
    /// The ids this field takes (`0..vocab`): the rows it owns in the stacked table, or reads
    /// from a shared one (see [`Field::table`]). Numeric and dense fields have one row.
    pub fn rows(&self) -> u64 {
        match self {
            FieldKind::Categorical { vocab } | FieldKind::MultiHot { vocab, .. } => *vocab,
            FieldKind::Numeric | FieldKind::Dense => 1,
        }
    }

    /// The spec's name for this kind (`categorical`, `numeric`, `multi_hot`, `dense`).
    pub fn name(&self) -> &'static str {
        match self {
            FieldKind::Categorical { .. } => "categorical",
            FieldKind::Numeric => "numeric",
            FieldKind::MultiHot { .. } => "multi_hot",
            FieldKind::Dense => "dense",
        }
    }

    /// A multi-hot field pooled as DeepFM trainers usually do: the first-order weights like the
    /// embeddings, no padding id.
    pub fn multi_hot(vocab: u64, pooling: Pooling) -> FieldKind {
        FieldKind::MultiHot {
            vocab,
            pooling,
            linear_pooling: pooling,
            padding: None,
            weighted: false,
        }
    }

    /// Whether the field has an embedding (in the FM term and the MLP's embedded part); only
    /// a dense field has none.
    pub fn is_embedded(&self) -> bool {
        !matches!(self, FieldKind::Dense)
    }

    /// Whether the field is one this crate's trainer can train: every kind, multi-hot ones with
    /// `sum` or `mean` pooling, the first-order weights pooled as the embeddings, no padding id
    /// and no per-id weights (and no shared table: see [`Field::table`]). The other forms exist
    /// to serve imported models.
    pub fn is_trainable(&self) -> bool {
        match *self {
            FieldKind::Categorical { .. } | FieldKind::Numeric => true,
            FieldKind::MultiHot {
                pooling,
                linear_pooling,
                padding,
                weighted,
                ..
            } => {
                pooling != Pooling::Max
                    && linear_pooling == pooling
                    && padding.is_none()
                    && !weighted
            }
            FieldKind::Dense => true,
        }
    }
}

/// One input field. In JSON: `{"name": "C1", "kind": "categorical", "vocab": 1000}`,
/// `{"name": "I1", "kind": "numeric"}`, `{"name": "I1", "kind": "dense"}` or
/// `{"name": "genres", "kind": "multi_hot", "vocab": 18, "pooling": "mean"}` (optionally with
/// `"linear_pooling"`, `"padding"` and `"weighted": true`); a categorical or multi-hot field may add
/// `"table": "<field>"`. Any other key, or a key the kind does not take, is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawField", into = "RawField")]
pub struct Field {
    /// Unique, non-empty name (used in errors and in the CLI).
    pub name: String,
    /// Kind and vocabulary.
    pub kind: FieldKind,
    /// The field whose table rows this one reads (embeddings and first-order weights), owning
    /// none itself; `None`: the field owns its rows.
    pub table: Option<String>,
}

impl Field {
    /// A field that owns its rows.
    pub fn new(name: impl Into<String>, kind: FieldKind) -> Field {
        Field {
            name: name.into(),
            kind,
            table: None,
        }
    }
}

/// The JSON form of a field, flat so that unknown keys can be refused (serde cannot refuse
/// them through a flattened enum).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: String,
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vocab: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pooling: Option<Pooling>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    linear_pooling: Option<Pooling>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    padding: Option<u64>,
    /// Written only when true, so that unweighted specs serialize exactly as before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    weighted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    table: Option<String>,
}

impl TryFrom<RawField> for Field {
    type Error = String;
    fn try_from(raw: RawField) -> Result<Field, String> {
        let name = raw.name;
        let pooling_keys = raw.pooling.is_some() || raw.linear_pooling.is_some();
        let list_keys = pooling_keys || raw.padding.is_some() || raw.weighted;
        let kind = match (raw.kind.as_str(), raw.vocab, raw.pooling) {
            ("categorical", Some(vocab), None) if !list_keys => FieldKind::Categorical { vocab },
            ("numeric", None, None) if !list_keys && raw.table.is_none() => FieldKind::Numeric,
            ("dense", None, None) if !list_keys && raw.table.is_none() => FieldKind::Dense,
            ("multi_hot", Some(vocab), Some(pooling)) => FieldKind::MultiHot {
                vocab,
                pooling,
                linear_pooling: raw.linear_pooling.unwrap_or(pooling),
                padding: raw.padding,
                weighted: raw.weighted,
            },
            ("categorical", ..) => {
                return Err(format!(
                    "field {name:?}: categorical takes vocab (and table), no pooling, padding or \
                     weighted"
                ));
            }
            (kind @ ("numeric" | "dense"), ..) => {
                return Err(format!(
                    "field {name:?}: {kind} takes no vocab, pooling, padding, weighted or table"
                ));
            }
            ("multi_hot", ..) => {
                return Err(format!(
                    "field {name:?}: multi_hot takes vocab and pooling (and linear_pooling, \
                     padding, weighted, table)"
                ));
            }
            (other, ..) => {
                return Err(format!(
                    "field {name:?}: unknown kind {other:?} (categorical, numeric, multi_hot, dense)"
                ));
            }
        };
        Ok(Field {
            name,
            kind,
            table: raw.table,
        })
    }
}

impl From<Field> for RawField {
    fn from(f: Field) -> RawField {
        let (vocab, pooling, linear_pooling, padding, weighted) = match f.kind {
            FieldKind::Categorical { vocab } => (Some(vocab), None, None, None, false),
            FieldKind::Numeric | FieldKind::Dense => (None, None, None, None, false),
            // `linear_pooling` is written only when it differs, so that the specs of models
            // without the newer keys serialize exactly as before.
            FieldKind::MultiHot {
                vocab,
                pooling,
                linear_pooling,
                padding,
                weighted,
            } => (
                Some(vocab),
                Some(pooling),
                (linear_pooling != pooling).then_some(linear_pooling),
                padding,
                weighted,
            ),
        };
        RawField {
            name: f.name,
            kind: f.kind.name().to_string(),
            vocab,
            pooling,
            linear_pooling,
            padding,
            weighted,
            table: f.table,
        }
    }
}

/// The output transform applied to the logit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Output {
    /// `1 / (1 + e^-logit)`: click probability.
    Sigmoid,
    /// The logit itself, optionally clamped to [`ModelSpec::clamp`] (e.g. a rating scale).
    Linear,
}

impl Output {
    /// The score of `logit`: its sigmoid, or for a linear output the logit clamped to `clamp`
    /// when one is given (a sigmoid ignores `clamp`). Scoring and training both end with it.
    #[inline]
    pub(crate) fn activate(self, clamp: Option<[f32; 2]>, logit: f32) -> f32 {
        match (self, clamp) {
            (Output::Sigmoid, _) => 1.0 / (1.0 + (-logit).exp()),
            (Output::Linear, Some([lo, hi])) => logit.clamp(lo, hi),
            (Output::Linear, None) => logit,
        }
    }
}

/// The full shape of a DeepFM model. Unknown keys are refused (a misspelt `clamp` must not
/// be silently ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Input fields, in the order of the embedding table and the MLP input.
    pub fields: Vec<Field>,
    /// Embedding dimension D, 1..=256.
    pub embedding_dim: usize,
    /// Hidden layer widths (may be empty: the output unit then reads the embeddings directly).
    pub hidden: Vec<usize>,
    /// Output transform.
    pub output: Output,
    /// For `linear` output: clamp scores to `[lo, hi]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clamp: Option<[f32; 2]>,
    /// Arithmetic of the hidden layers when scoring ([`MlpPrecision`]); written only when not
    /// `f32`, so f32 specs serialize exactly as before the option existed.
    #[serde(default, skip_serializing_if = "MlpPrecision::is_f32")]
    pub mlp: MlpPrecision,
    /// How the embedding rows are stored ([`TablePrecision`]); written only when not `f32`.
    #[serde(default, skip_serializing_if = "TablePrecision::is_f32")]
    pub table: TablePrecision,
}

impl ModelSpec {
    /// Parses and validates a JSON spec.
    pub fn from_json(text: &str) -> Result<Self, SpecError> {
        let spec: ModelSpec =
            serde_json::from_str(text).map_err(|e| SpecError::Json(e.to_string()))?;
        spec.validate()?;
        Ok(spec)
    }

    /// Serializes to compact JSON (the form stored in model files).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a spec always serializes")
    }

    /// Checks every limit documented on the fields of this struct.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.fields.is_empty() {
            return Err(SpecError::NoFields);
        }
        if self.fields.len() > MAX_FIELDS {
            return Err(SpecError::TooManyFields(self.fields.len()));
        }
        let mut names = std::collections::HashSet::new();
        for f in &self.fields {
            if f.name.is_empty() || !names.insert(f.name.as_str()) {
                return Err(SpecError::BadFieldName(f.name.clone()));
            }
            if f.kind.rows() == 0 {
                return Err(SpecError::EmptyVocab(f.name.clone()));
            }
            if let FieldKind::MultiHot {
                pooling,
                linear_pooling,
                weighted: true,
                ..
            } = f.kind
                && (pooling == Pooling::Max || linear_pooling == Pooling::Max)
            {
                return Err(SpecError::WeightedMax(f.name.clone()));
            }
            if let FieldKind::MultiHot {
                vocab,
                padding: Some(padding),
                ..
            } = f.kind
                && padding >= vocab
            {
                return Err(SpecError::BadPadding {
                    field: f.name.clone(),
                    padding,
                    vocab,
                });
            }
        }
        for f in &self.fields {
            if let Some(table) = &f.table {
                self.check_table(f, table)?;
            }
        }
        if !(1..=MAX_EMBEDDING_DIM).contains(&self.embedding_dim) {
            return Err(SpecError::BadEmbeddingDim(self.embedding_dim));
        }
        if self.hidden.len() > MAX_LAYERS {
            return Err(SpecError::TooManyLayers(self.hidden.len()));
        }
        for (index, &width) in self.hidden.iter().enumerate() {
            if !(1..=MAX_LAYER_WIDTH).contains(&width) {
                return Err(SpecError::BadLayerWidth { index, width });
            }
        }
        if let Some([lo, hi]) = self.clamp
            && (self.output != Output::Linear || !lo.is_finite() || !hi.is_finite() || lo >= hi)
        {
            return Err(SpecError::BadClamp);
        }
        if self.mlp == MlpPrecision::Int8
            && let Some(&(input, _)) = self
                .layer_shapes()
                .iter()
                .take(self.hidden.len())
                .find(|(input, _)| *input > MAX_INT8_DEPTH)
        {
            return Err(SpecError::Int8TooDeep { input });
        }
        let params: u64 = self
            .layer_shapes()
            .iter()
            .map(|&(i, o)| (i as u64 + 1) * o as u64)
            .sum();
        if params > MAX_DENSE_PARAMS {
            return Err(SpecError::TooManyParams(params));
        }
        let rows = self.total_rows()?;
        rows.checked_mul(self.embedding_dim as u64)
            .and_then(|n| n.checked_mul(4))
            .ok_or(SpecError::Overflow)?;
        Ok(())
    }

    /// Checks that `field` may read the rows of the field named `table`: one that exists, is
    /// not `field`, owns its rows, and is categorical or multi-hot like `field`, with at least
    /// as many rows as `field` has ids.
    fn check_table(&self, field: &Field, table: &str) -> Result<(), SpecError> {
        let bad = |reason| {
            Err(SpecError::BadTable {
                field: field.name.clone(),
                table: table.to_string(),
                reason,
            })
        };
        let Some(owner) = self.fields.iter().find(|o| o.name == table) else {
            return bad("which is not a field of this spec");
        };
        let rows_of = |kind: &FieldKind| match kind {
            FieldKind::Categorical { vocab } | FieldKind::MultiHot { vocab, .. } => Some(*vocab),
            FieldKind::Numeric | FieldKind::Dense => None,
        };
        if owner.name == field.name {
            bad("its own")
        } else if owner.table.is_some() {
            bad("which reads another field's table itself")
        } else if rows_of(&field.kind).is_none() || rows_of(&owner.kind).is_none() {
            bad("but only categorical and multi-hot fields have tables to share")
        } else if rows_of(&field.kind) > rows_of(&owner.kind) {
            bad("which has fewer rows than this field has ids")
        } else {
            Ok(())
        }
    }

    /// Total rows of the stacked embedding table: the rows of the fields that own theirs
    /// (fields reading a shared table own none).
    pub fn total_rows(&self) -> Result<u64, SpecError> {
        self.fields
            .iter()
            .filter(|f| f.table.is_none())
            .try_fold(0u64, |acc, f| acc.checked_add(f.kind.rows()))
            .ok_or(SpecError::Overflow)
    }

    /// First row of each field in the stacked table (a field reading a shared table starts at
    /// the first row of its owner). The spec must be valid.
    pub fn row_offsets(&self) -> Vec<u64> {
        let mut next = 0u64;
        let mut offsets: Vec<u64> = self
            .fields
            .iter()
            .map(|f| {
                let start = next;
                if f.table.is_none() {
                    next += f.kind.rows();
                }
                start
            })
            .collect();
        for (f, field) in self.fields.iter().enumerate() {
            if let Some(table) = &field.table
                && let Some(owner) = self.fields.iter().position(|o| &o.name == table)
            {
                offsets[f] = offsets[owner];
            }
        }
        offsets
    }

    /// Fields with an embedding (every kind but `dense`): they make the FM term and the first
    /// `embedded_fields() × D` values of the MLP input.
    pub fn embedded_fields(&self) -> usize {
        self.fields.iter().filter(|f| f.kind.is_embedded()).count()
    }

    /// Where each field's values start in a row of the MLP input: the embedded fields' `D`
    /// values side by side in field order, then one value per dense field in field order.
    pub fn input_offsets(&self) -> Vec<usize> {
        let d = self.embedding_dim;
        let (mut embedded, mut dense) = (0, self.embedded_fields() * d);
        self.fields
            .iter()
            .map(|f| {
                let slot = if f.kind.is_embedded() {
                    &mut embedded
                } else {
                    &mut dense
                };
                let start = *slot;
                *slot += if f.kind.is_embedded() { d } else { 1 };
                start
            })
            .collect()
    }

    /// Width of the MLP input: embedded fields × D, plus one per dense field.
    pub fn mlp_input_width(&self) -> usize {
        self.embedded_fields() * self.embedding_dim + (self.fields.len() - self.embedded_fields())
    }

    /// `(in, out)` of every hidden layer, then of the output unit (`out` = 1).
    pub fn layer_shapes(&self) -> Vec<(usize, usize)> {
        let mut shapes = Vec::with_capacity(self.hidden.len() + 1);
        let mut input = self.mlp_input_width();
        for &w in &self.hidden {
            shapes.push((input, w));
            input = w;
        }
        shapes.push((input, 1));
        shapes
    }

    /// Multiply-adds of the MLP per sample (a cost model for benchmarks).
    pub fn mlp_macs_per_sample(&self) -> u64 {
        self.layer_shapes()
            .iter()
            .map(|&(i, o)| (i * o) as u64)
            .sum()
    }
}

mod error;
mod precision;
#[cfg(test)]
mod tests;

pub use error::SpecError;
pub use precision::{MlpPrecision, TablePrecision};

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

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Largest supported embedding dimension.
pub const MAX_EMBEDDING_DIM: usize = 256;
/// Largest supported hidden layer width (keeps scratch sizes and packed weights bounded).
pub const MAX_LAYER_WIDTH: usize = 16_384;
/// Largest number of hidden layers.
pub const MAX_LAYERS: usize = 64;
/// Largest number of fields.
pub const MAX_FIELDS: usize = 4_096;
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
        /// How the rows of the ids are combined.
        pooling: Pooling,
    },
}

impl Pooling {
    /// The factor each id's row gets in a list of `len` ids (an empty list pools to zero).
    pub fn weight(self, len: usize) -> f32 {
        match self {
            Pooling::Sum => 1.0,
            Pooling::Mean => 1.0 / len.max(1) as f32,
        }
    }
}

impl FieldKind {
    /// Rows this field owns in the stacked embedding table.
    pub fn rows(&self) -> u64 {
        match self {
            FieldKind::Categorical { vocab } | FieldKind::MultiHot { vocab, .. } => *vocab,
            FieldKind::Numeric => 1,
        }
    }

    /// The spec's name for this kind (`categorical`, `numeric`, `multi_hot`).
    pub fn name(&self) -> &'static str {
        match self {
            FieldKind::Categorical { .. } => "categorical",
            FieldKind::Numeric => "numeric",
            FieldKind::MultiHot { .. } => "multi_hot",
        }
    }
}

/// One input field. In JSON: `{"name": "C1", "kind": "categorical", "vocab": 1000}`,
/// `{"name": "I1", "kind": "numeric"}` or
/// `{"name": "genres", "kind": "multi_hot", "vocab": 18, "pooling": "mean"}`; any other key, or
/// a key the kind does not take, is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawField", into = "RawField")]
pub struct Field {
    /// Unique, non-empty name (used in errors and in the CLI).
    pub name: String,
    /// Kind and vocabulary.
    pub kind: FieldKind,
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
}

impl TryFrom<RawField> for Field {
    type Error = String;
    fn try_from(raw: RawField) -> Result<Field, String> {
        let name = raw.name;
        let kind = match (raw.kind.as_str(), raw.vocab, raw.pooling) {
            ("categorical", Some(vocab), None) => FieldKind::Categorical { vocab },
            ("numeric", None, None) => FieldKind::Numeric,
            ("multi_hot", Some(vocab), Some(pooling)) => FieldKind::MultiHot { vocab, pooling },
            ("categorical", ..) => {
                return Err(format!(
                    "field {name:?}: categorical takes vocab (and no pooling)"
                ));
            }
            ("numeric", ..) => {
                return Err(format!("field {name:?}: numeric takes no vocab or pooling"));
            }
            ("multi_hot", ..) => {
                return Err(format!("field {name:?}: multi_hot takes vocab and pooling"));
            }
            (other, ..) => {
                return Err(format!(
                    "field {name:?}: unknown kind {other:?} (categorical, numeric, multi_hot)"
                ));
            }
        };
        Ok(Field { name, kind })
    }
}

impl From<Field> for RawField {
    fn from(f: Field) -> RawField {
        let (vocab, pooling) = match f.kind {
            FieldKind::Categorical { vocab } => (Some(vocab), None),
            FieldKind::Numeric => (None, None),
            FieldKind::MultiHot { vocab, pooling } => (Some(vocab), Some(pooling)),
        };
        RawField {
            name: f.name,
            kind: f.kind.name().to_string(),
            vocab,
            pooling,
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
}

/// Ways a spec can be invalid.
#[derive(Debug, Error, PartialEq)]
#[non_exhaustive]
pub enum SpecError {
    /// The spec has no fields.
    #[error("spec has no fields")]
    NoFields,
    /// More fields than [`MAX_FIELDS`].
    #[error("spec has {0} fields, at most {MAX_FIELDS} are supported")]
    TooManyFields(usize),
    /// A field name is empty or repeated.
    #[error("field name {0:?} is empty or used twice")]
    BadFieldName(String),
    /// A categorical or multi-hot field has vocabulary 0.
    #[error("field {0:?} has an empty vocabulary")]
    EmptyVocab(String),
    /// The embedding dimension is outside 1..=256.
    #[error("embedding_dim {0} is outside 1..={MAX_EMBEDDING_DIM}")]
    BadEmbeddingDim(usize),
    /// A hidden layer width is 0 or above [`MAX_LAYER_WIDTH`].
    #[error("hidden layer {index} has width {width}, expected 1..={MAX_LAYER_WIDTH}")]
    BadLayerWidth {
        /// Layer index.
        index: usize,
        /// Its width.
        width: usize,
    },
    /// More hidden layers than [`MAX_LAYERS`].
    #[error("{0} hidden layers, at most {MAX_LAYERS} are supported")]
    TooManyLayers(usize),
    /// The clamp range is not finite and increasing, or is set on a sigmoid output.
    #[error("clamp must be finite [lo, hi] with lo < hi, on a linear output only")]
    BadClamp,
    /// The MLP has more than [`MAX_DENSE_PARAMS`] parameters.
    #[error("the MLP has {0} parameters, at most {MAX_DENSE_PARAMS} are supported")]
    TooManyParams(u64),
    /// The table size overflows 64-bit arithmetic.
    #[error("the embedding table size overflows")]
    Overflow,
    /// JSON could not be parsed.
    #[error("spec JSON: {0}")]
    Json(String),
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

    /// Total rows of the stacked embedding table (sum of the fields' rows).
    pub fn total_rows(&self) -> Result<u64, SpecError> {
        self.fields
            .iter()
            .try_fold(0u64, |acc, f| acc.checked_add(f.kind.rows()))
            .ok_or(SpecError::Overflow)
    }

    /// First row of each field in the stacked table.
    pub fn row_offsets(&self) -> Vec<u64> {
        let mut next = 0u64;
        self.fields
            .iter()
            .map(|f| {
                let start = next;
                next += f.kind.rows();
                start
            })
            .collect()
    }

    /// Width of the MLP input: fields × D.
    pub fn mlp_input_width(&self) -> usize {
        self.fields.len() * self.embedding_dim
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_json(extra: &str) -> String {
        format!(
            r#"{{"fields":[{{"name":"a","kind":"categorical","vocab":3}},{{"name":"b","kind":"numeric"}}],
               "embedding_dim":4,"hidden":[8],"output":"linear"{extra}}}"#
        )
    }

    #[test]
    fn parses_and_round_trips() {
        let spec = ModelSpec::from_json(&spec_json(r#","clamp":[1,5]"#)).unwrap();
        assert_eq!(spec.total_rows().unwrap(), 4);
        assert_eq!(spec.row_offsets(), vec![0, 3]);
        assert_eq!(spec.layer_shapes(), vec![(8, 8), (8, 1)]);
        assert_eq!(ModelSpec::from_json(&spec.to_json()).unwrap(), spec);
    }

    #[test]
    fn rejects_bad_specs() {
        let mut spec = ModelSpec::from_json(&spec_json("")).unwrap();
        spec.embedding_dim = 257;
        assert_eq!(spec.validate(), Err(SpecError::BadEmbeddingDim(257)));
        spec.embedding_dim = 4;
        spec.fields[1].name = "a".into();
        assert_eq!(spec.validate(), Err(SpecError::BadFieldName("a".into())));
        spec.fields[1].name = "b".into();
        spec.hidden = vec![0];
        assert_eq!(
            spec.validate(),
            Err(SpecError::BadLayerWidth { index: 0, width: 0 })
        );
        spec.hidden = vec![];
        spec.output = Output::Sigmoid;
        spec.clamp = Some([1.0, 5.0]);
        assert_eq!(spec.validate(), Err(SpecError::BadClamp));
        spec.clamp = None;
        spec.fields[0].kind = FieldKind::Categorical { vocab: u64::MAX };
        spec.fields[1].kind = FieldKind::Categorical { vocab: 2 };
        assert_eq!(spec.validate(), Err(SpecError::Overflow));
        assert!(matches!(
            ModelSpec::from_json(r#"{"fields":[]}"#),
            Err(SpecError::Json(_))
        ));
        for bad in [
            r#"{"name":"g","kind":"categorical","vocab":18,"pooling":"mean"}"#,
            r#"{"name":"g","kind":"numeric","vocab":3}"#,
            r#"{"name":"g","kind":"multi_hot","vocab":3}"#,
            r#"{"name":"g","kind":"categorical","vocab":3,"vocabulary":4}"#,
            r#"{"name":"g","kind":"dense"}"#,
        ] {
            let json =
                format!(r#"{{"fields":[{bad}],"embedding_dim":4,"hidden":[],"output":"sigmoid"}}"#);
            assert!(
                matches!(ModelSpec::from_json(&json), Err(SpecError::Json(_))),
                "{bad}"
            );
        }
        let json = r#"{"fields":[{"name":"a","kind":"numeric"}],"embedding_dim":4,"hidden":[],"output":"sigmoid","clmap":[1,5]}"#;
        assert!(matches!(
            ModelSpec::from_json(json),
            Err(SpecError::Json(_))
        ));
        spec.fields = vec![Field {
            name: "x".into(),
            kind: FieldKind::Numeric,
        }];
        spec.embedding_dim = 256;
        spec.hidden = vec![16_384, 16_384, 16_384];
        assert!(matches!(spec.validate(), Err(SpecError::TooManyParams(_))));
    }
}

//! Why a spec is invalid ([`SpecError`]).

use super::{
    MAX_DENSE_PARAMS, MAX_EMBEDDING_DIM, MAX_FIELDS, MAX_INT8_DEPTH, MAX_LAYER_WIDTH, MAX_LAYERS,
};
use thiserror::Error;

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
    /// An int8 MLP has a hidden layer with an input wider than
    /// [`MAX_INT8_DEPTH`], whose integer sums could overflow an i32.
    #[error(
        "an int8 MLP allows hidden layers with inputs of at most {} values, not {input}",
        MAX_INT8_DEPTH
    )]
    Int8TooDeep {
        /// The layer's input width.
        input: usize,
    },
    /// A multi-hot field's padding id is outside its vocabulary.
    #[error("field {field:?}: padding id {padding} is outside its vocabulary of {vocab}")]
    BadPadding {
        /// The field.
        field: String,
        /// Its padding id.
        padding: u64,
        /// Its vocabulary.
        vocab: u64,
    },
    /// A weighted multi-hot field is max-pooled: a maximum has no place for a weight.
    #[error("field {0:?}: per-id weights take sum or mean pooling, not max")]
    WeightedMax(String),
    /// A field's `table` does not name a field whose rows it can read.
    #[error("field {field:?} reads the table of {table:?}, {reason}")]
    BadTable {
        /// The field.
        field: String,
        /// The table it names.
        table: String,
        /// What is wrong.
        reason: &'static str,
    },
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

use thiserror::Error;

/// Why a batch could not be scored. Each variant names the field (and row) at fault; nothing
/// was written to the output when one is returned. The trainer refuses a batch for the same
/// reasons (`TrainError::Batch`).
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum ScoreError {
    /// The batch has no rows.
    #[error("the batch is empty")]
    EmptyBatch,
    /// The batch does not have one column per field.
    #[error("the batch has {found} columns, the model has {expected} fields")]
    ColumnCount {
        /// Fields in the model.
        expected: usize,
        /// Columns given.
        found: usize,
    },
    /// A column's kind differs from its field's.
    #[error("field {field}: expected a {expected} column, got {found}")]
    ColumnKind {
        /// Field name.
        field: String,
        /// Kind of the field.
        expected: &'static str,
        /// Kind of the column.
        found: &'static str,
    },
    /// A column has a different number of rows than the first one.
    #[error("field {field}: {found} rows, the batch has {expected}")]
    RowCount {
        /// Field name.
        field: String,
        /// Rows of the first column.
        expected: usize,
        /// Rows of this column.
        found: usize,
    },
    /// An id is not below the field's vocabulary.
    #[error("field {field}, row {row}: id {id} is outside 0..{vocab}")]
    IdOutOfRange {
        /// Field name.
        field: String,
        /// Row in the batch.
        row: usize,
        /// The id.
        id: u64,
        /// The field's vocabulary.
        vocab: u64,
    },
    /// A numeric value is NaN or infinite.
    #[error("field {field}, row {row}: value {value} is not finite")]
    NonFinite {
        /// Field name.
        field: String,
        /// Row in the batch.
        row: usize,
        /// The value.
        value: f32,
    },
    /// Multi-hot offsets do not start at 0, decrease, or do not end at the id count.
    #[error(
        "field {field}, row {row}: offsets must start at 0, never decrease and end at the id count"
    )]
    BadOffsets {
        /// Field name.
        field: String,
        /// First row whose offsets are wrong.
        row: usize,
    },
    /// A multi-hot column's weights do not fit its field: missing for a weighted field, given
    /// for an unweighted one (they would be ignored), or not one per id.
    #[error("field {field}: {problem}")]
    BadWeights {
        /// Field name.
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// A max-pooled multi-hot list has no id but padding: it has no maximum (the framework the
    /// model came from would score it as a vector of about −1e9, which no caller means).
    #[error("field {field}, row {row}: the list has no id to take the maximum of")]
    EmptyMaxPool {
        /// Field name.
        field: String,
        /// Row in the batch.
        row: usize,
    },
    /// The output slice is shorter than the batch.
    #[error("output holds {found} scores, the batch has {needed} rows")]
    OutputTooShort {
        /// Rows in the batch.
        needed: usize,
        /// Length of the output.
        found: usize,
    },
    /// A score came out NaN: an overflow inside the model (numeric values so large that the FM
    /// squares overflow, or non-finite embedding rows, which only `verify` detects). Unlike the
    /// other errors this one is found after scoring: `out` holds the scores, NaN included.
    #[error("row {row}: the score is not a number (an overflow inside the model)")]
    NonFiniteScore {
        /// First row whose score is NaN.
        row: usize,
    },
    /// The scratch was made for a model of another shape.
    #[error("scratch was created for a model of another shape")]
    ScratchMismatch,
}

//! How the API fails.

use crate::format::FormatError;
use crate::infer::ScoreError;
use crate::train::TrainError;
use std::path::PathBuf;
use thiserror::Error;

/// Ways the API can fail.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ApiError {
    /// `user_ids`, `item_ids` and `ratings` have different lengths, or are empty.
    #[error(
        "{users} user ids, {items} item ids and {ratings} ratings: they must be equally long and not empty"
    )]
    Lengths {
        /// User ids given.
        users: usize,
        /// Item ids given.
        items: usize,
        /// Ratings given.
        ratings: usize,
    },
    /// A setting is out of range, or a rating is not finite.
    #[error("{0}")]
    Invalid(String),
    /// A row of side-feature values does not fit the model's fields (the id maps or feature
    /// tables do not match the model).
    #[error("side features: {0}")]
    Row(#[from] crate::batch::RowShapeError),
    /// An evaluation metric could not be computed from the predictions.
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    /// `try_predict` on a user not seen in training.
    #[error("unknown user")]
    UnknownUser,
    /// `try_predict` on an item not seen in training.
    #[error("unknown item")]
    UnknownItem,
    /// A pair's score is not a number: a NaN or infinite number in the rows it reads (the
    /// embedding table and first-order weights are checksummed, but only read by `verify`:
    /// `deepfm inspect --verify` finds a damaged one), or an overflow inside the model. The ids
    /// are written as JSON.
    #[error(
        "user {user}, item {item}: the score is not a number (a NaN or infinite weight in their \
         rows, which `deepfm inspect --verify` reports, or an overflow inside the model)"
    )]
    NonFiniteScore {
        /// The user, as JSON.
        user: String,
        /// The item, as JSON.
        item: String,
    },
    /// Training failed.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// Scoring failed.
    #[error(transparent)]
    Score(#[from] ScoreError),
    /// The model file could not be written or read.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// A data file (side features) could not be read; the error names file, line and column.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// The model file has no recommender metadata (id maps and settings), or they do not fit
    /// its model.
    #[error("{path}: {problem}")]
    Meta {
        /// The model file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

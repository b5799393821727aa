//! The recommender API, in the words of the DeepFM tutorial people learn from:
//!
//! ```
//! use deepfm::api::DeepFM;
//! # let users: Vec<u32> = (0..400).map(|i| i % 20).collect();
//! # let items: Vec<u32> = (0..400).map(|i| (i * 7) % 30).collect();
//! # let ratings: Vec<f32> = (0..400).map(|i| 1.0 + (i % 5) as f32).collect();
//! let model = DeepFM::builder()
//!     .name("DeepFM_Model")
//!     .embedding_dim(8)        // the tutorial: 32
//!     .deep_layers(&[16, 8])   // the tutorial: 256, 128, 64
//!     .epochs(2)
//!     .fit(&users, &items, &ratings)?;          // any integer or string ids
//! let score = model.predict(&1, &100);           // unknown item: scored by the OOV row
//! let top = model.recommend(&1, 10)?;            // item ids, unseen ones first by score
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("deepfm_model.dfm");
//! model.save(&path)?;
//! let loaded = DeepFM::<u32, u32>::load(&path)?;
//! assert_eq!(loaded.predict(&1, &3), model.predict(&1, &3));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! What is better than the tutorial's library: the builder takes `deep_layers` and `use_bn`
//! and uses them; `task` defaults to `auto`, which trains a rating model with MSE when the
//! ratings take more than two values (so RMSE means what it says); predictions go through the
//! inference core (`batch_predict` and `recommend` score in large batches); unknown ids have a
//! deliberate rule (below); `save` writes the same model file services score from.
//!
//! **Unknown ids.** Row 0 of the user and of the item field is an out-of-vocabulary row.
//! During training, 1% of the samples (re-drawn every epoch) have their user, and
//! independently their item, replaced by it, so it learns the average user or item.
//! `predict` scores an unknown id with it; `try_predict` returns an error instead.

mod features;
mod fit;
mod ids;
mod input;
mod pairs;
mod side_files;

pub use features::{Feature, FeatureKind, Features};
pub use ids::{Id, IdMap, OOV_ROW};
pub use input::Interactions;
pub use pairs::NegativeSampling;
pub use side_files::read_features;

use crate::batch::{Batch, Column};
use crate::format::FormatError;
use crate::infer::{Model, ScoreError, ScratchPool, score, score_parallel};
use crate::spec::FieldKind;
use crate::train::{Checkpointing, EpochReport, TrainError};
use features::{FeatureTable, Sides};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// What the model learns from the third column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// `Rating` when the values take more than two distinct values, `Click` when they are 0
    /// and 1, `Implicit` when they are all the same (positives only).
    Auto,
    /// Explicit ratings: MSE, predictions on the rating scale (clamped to the range seen).
    Rating,
    /// Implicit feedback: every pair is a positive; negatives are sampled each epoch; BCE.
    Implicit,
    /// Clicks: BCE on 0/1 labels.
    Click,
}

/// Ways the API can fail.
#[derive(Debug, Error)]
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

/// The tutorial's settings, with its names and defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// A name, kept with the model.
    pub name: String,
    /// Embedding dimension (32).
    pub embedding_dim: usize,
    /// Hidden layer widths (256, 128, 64).
    pub deep_layers: Vec<usize>,
    /// Dropout after each hidden layer (0.3).
    pub dropout: f32,
    /// Batch norm after each hidden layer (true).
    pub use_bn: bool,
    /// Passes over the data (20).
    pub epochs: usize,
    /// Samples per step (256).
    pub batch_size: usize,
    /// Adam learning rate (0.001).
    pub learning_rate: f32,
    /// Per-epoch progress on stderr (false).
    pub verbose: bool,
    /// Seed of everything random (0).
    pub seed: u64,
    /// Training threads (all cores).
    pub threads: usize,
    /// What to learn (`auto`).
    pub task: Task,
    /// L2 penalty on the embeddings of each batch (0).
    pub l2: f32,
    /// L2 penalty on the layer weights and the output unit (0; see
    /// [`TrainConfig::l2_dense`](crate::train::TrainConfig::l2_dense)).
    #[serde(default, skip_serializing_if = "crate::train::is_zero")]
    pub l2_dense: f32,
    /// Decoupled (AdamW) weight decay of the embeddings and first-order weights (0: off; see
    /// [`TrainConfig::weight_decay_embedding`](crate::train::TrainConfig::weight_decay_embedding)).
    #[serde(default, skip_serializing_if = "crate::train::is_zero")]
    pub weight_decay_embedding: f32,
    /// Decoupled (AdamW) weight decay of the layer weights and output unit (0: off; see
    /// [`TrainConfig::weight_decay_dense`](crate::train::TrainConfig::weight_decay_dense)).
    #[serde(default, skip_serializing_if = "crate::train::is_zero")]
    pub weight_decay_dense: f32,
    /// Early stopping: epochs without a better validation loss (none).
    pub patience: Option<usize>,
    /// Share of the data held out for validation when `patience` is set (0.1).
    pub valid_fraction: f32,
    /// Implicit feedback: negatives per positive (4).
    pub negatives: usize,
    /// Implicit feedback: how negatives are drawn (uniform).
    pub negative_sampling: NegativeSampling,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            name: "DeepFM".into(),
            embedding_dim: 32,
            deep_layers: vec![256, 128, 64],
            dropout: 0.3,
            use_bn: true,
            epochs: 20,
            batch_size: 256,
            learning_rate: 1e-3,
            verbose: false,
            seed: 0,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            task: Task::Auto,
            l2: 0.0,
            l2_dense: 0.0,
            weight_decay_embedding: 0.0,
            weight_decay_dense: 0.0,
            patience: None,
            valid_fraction: 0.1,
            negatives: 4,
            negative_sampling: NegativeSampling::Uniform,
        }
    }
}

/// Builds a [`DeepFM`]: set what differs from the tutorial's defaults, then [`DeepFMBuilder::fit`].
#[derive(Debug, Clone, Default)]
pub struct DeepFMBuilder {
    settings: Settings,
    checkpoint: Option<PathBuf>,
    resume: bool,
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty),* $(,)?) => {
        $($(#[$doc])* pub fn $name(mut self, value: $ty) -> Self {
            self.settings.$name = value;
            self
        })*
    };
}

impl DeepFMBuilder {
    setters! {
        /// Embedding dimension.
        embedding_dim: usize,
        /// Dropout after each hidden layer.
        dropout: f32,
        /// Batch norm after each hidden layer.
        use_bn: bool,
        /// Passes over the data.
        epochs: usize,
        /// Samples per step.
        batch_size: usize,
        /// Adam learning rate.
        learning_rate: f32,
        /// Per-epoch progress on stderr.
        verbose: bool,
        /// Seed of everything random.
        seed: u64,
        /// Training threads.
        threads: usize,
        /// What to learn.
        task: Task,
        /// L2 penalty on the embeddings of each batch.
        l2: f32,
        /// L2 penalty `λ/2 · ‖W‖²` on the hidden layers' weights and the output unit (not
        /// biases or batch norm), added to their gradients like PyTorch's `weight_decay`.
        l2_dense: f32,
        /// Decoupled (AdamW) weight decay `λ` of the embeddings and first-order weights: before
        /// each update, the rows the update touches are multiplied by `1 − lr · λ`, whatever
        /// their gradients (unlike [`DeepFMBuilder::l2`], rare and frequent ids shrink at the
        /// same rate). 0 (the default) is off; `lr · λ` must stay below 1, or `fit` fails.
        weight_decay_embedding: f32,
        /// Decoupled (AdamW) weight decay `λ` of the hidden layers' weights and the output
        /// unit (not biases or batch norm): multiplied by `1 − lr · λ` before each update.
        /// 0 (the default) is off; `lr · λ` must stay below 1, or `fit` fails.
        weight_decay_dense: f32,
        /// Early stopping patience (holds out `valid_fraction` of the data).
        patience: Option<usize>,
        /// Share held out for validation when `patience` is set.
        valid_fraction: f32,
        /// Implicit feedback: negatives per positive.
        negatives: usize,
        /// Implicit feedback: how negatives are drawn.
        negative_sampling: NegativeSampling,
    }

    /// A name kept with the model.
    pub fn name(mut self, name: &str) -> Self {
        self.settings.name = name.to_string();
        self
    }

    /// Hidden layer widths.
    pub fn deep_layers(mut self, widths: &[usize]) -> Self {
        self.settings.deep_layers = widths.to_vec();
        self
    }

    /// The settings so far.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Writes a training checkpoint to `path` after every epoch, crash-safely (see
    /// [`crate::train::checkpoint`]).
    pub fn checkpoint(mut self, path: impl AsRef<Path>) -> Self {
        self.checkpoint = Some(path.as_ref().to_path_buf());
        self
    }

    /// With [`DeepFMBuilder::checkpoint`]: if the checkpoint exists, `fit` goes on from it
    /// (the same data and settings give the same model as an uninterrupted fit; a checkpoint
    /// of other settings or data shapes is an error). Without a checkpoint path, no effect.
    pub fn resume(mut self, resume: bool) -> Self {
        self.resume = resume;
        self
    }

    /// Trains on `(user_ids[k], item_ids[k], ratings[k])` triples and returns the fitted model.
    pub fn fit<U: Id, I: Id>(
        self,
        user_ids: &[U],
        item_ids: &[I],
        ratings: &[f32],
    ) -> Result<DeepFM<U, I>, ApiError> {
        self.fit_interactions(Interactions::new(user_ids, item_ids, ratings))
    }

    /// Trains on interactions with optional side features and validation set (see
    /// [`Interactions`]).
    pub fn fit_interactions<U: Id, I: Id>(
        self,
        data: Interactions<'_, U, I>,
    ) -> Result<DeepFM<U, I>, ApiError> {
        let checkpoint = self.checkpoint.map(|path| Checkpointing {
            path,
            resume: self.resume,
        });
        DeepFM::train(self.settings, checkpoint.as_ref(), data)
    }
}

/// What [`DeepFM`] keeps in the model file's metadata section (JSON; see [`crate::format`]).
#[derive(Serialize, Deserialize)]
#[serde(bound = "U: Id, I: Id")]
struct Meta<U: Id, I: Id> {
    settings: Settings,
    task: Task,
    users: IdMap<U>,
    items: IdMap<I>,
    /// Item rows each user row interacted with in training, sorted.
    seen: Vec<Vec<u64>>,
    history: Vec<(usize, f64, Option<f64>)>,
    #[serde(default)]
    user_features: Option<FeatureTable<U>>,
    #[serde(default)]
    item_features: Option<FeatureTable<I>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    columns: Option<Vec<String>>,
}

/// A fitted DeepFM recommender over users of type `U` and items of type `I`.
///
/// Share one between threads (behind an `Arc`, or by reference): calls from any number of
/// threads at once run in parallel, each scoring with a scratch of its own from the model's
/// [`ScratchPool`]. A thread that finds every scratch in use allocates a new one (the size
/// [`crate::Scratch::new`] states; about half a MiB at the tutorial's shape), which the pool
/// keeps for later calls.
pub struct DeepFM<U: Id, I: Id> {
    settings: Settings,
    task: Task,
    users: IdMap<U>,
    items: IdMap<I>,
    seen: Vec<Vec<u64>>,
    history: Vec<EpochReport>,
    model: Model,
    scratch: ScratchPool,
    user_features: Option<FeatureTable<U>>,
    item_features: Option<FeatureTable<I>>,
    columns: Option<Vec<String>>,
}

impl<U: Id, I: Id> std::fmt::Debug for DeepFM<U, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeepFM")
            .field("name", &self.settings.name)
            .field("task", &self.task)
            .field("users", &self.users.len())
            .field("items", &self.items.len())
            .finish_non_exhaustive()
    }
}

impl DeepFM<u64, u64> {
    /// A builder with the tutorial's defaults.
    pub fn builder() -> DeepFMBuilder {
        DeepFMBuilder::default()
    }
}

impl<U: Id, I: Id> DeepFM<U, I> {
    /// The task trained (what `auto` resolved to).
    pub fn task(&self) -> Task {
        self.task
    }

    /// The settings used.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Per-epoch losses of the fit (empty for a loaded model whose history was not saved).
    pub fn history(&self) -> &[EpochReport] {
        &self.history
    }

    /// The scoring model (the inference core's), e.g. to serve it elsewhere.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Users and items known from training.
    pub fn users(&self) -> &IdMap<U> {
        &self.users
    }

    /// Items known from training.
    pub fn items(&self) -> &IdMap<I> {
        &self.items
    }

    /// The column names of the training file's header (user, item, rating …), if it had one
    /// and they were set with [`DeepFM::set_column_names`]; saved with the model. Readers of
    /// pairs for this model take a first line that repeats them for a header
    /// ([`crate::data::ratings::ReadOptions::training_columns`]).
    pub fn column_names(&self) -> Option<&[String]> {
        self.columns.as_deref()
    }

    /// Sets what [`DeepFM::column_names`] returns (`deepfm train` sets the header it read).
    pub fn set_column_names(&mut self, names: Option<Vec<String>>) {
        self.columns = names;
    }

    /// [`ApiError::NonFiniteScore`] naming `user` and `item` (as JSON).
    fn non_finite(user: &U, item: &I) -> ApiError {
        let json = |v: Result<String, serde_json::Error>| v.unwrap_or_else(|e| format!("({e})"));
        ApiError::NonFiniteScore {
            user: json(serde_json::to_string(user)),
            item: json(serde_json::to_string(item)),
        }
    }

    fn sides(&self) -> Sides<'_, U, I> {
        Sides {
            users: &self.users,
            items: &self.items,
            user_features: self.user_features.as_ref(),
            item_features: self.item_features.as_ref(),
        }
    }

    /// Embedding rows of the pair, and feature rows (which differ from the embedding rows only
    /// for ids unknown to training that have features).
    fn rows(&self, user: &U, item: &I) -> ((u64, u64), (u64, u64)) {
        let sides = self.sides();
        (sides.user(user), sides.item(item))
    }

    /// Scores users[k] with items[k]; `features` gives the feature rows when they differ from
    /// the embedding rows. A score that is not a number is left in `out` (NaN) for the caller
    /// to name its pair ([`ApiError::NonFiniteScore`]); every other error is returned.
    fn score_rows(
        &self,
        users: &[u64],
        items: &[u64],
        features: Option<(&[u64], &[u64])>,
        out: &mut [f32],
    ) -> Result<(), ApiError> {
        let sides = self.sides();
        if !sides.has_features() {
            let columns = [Column::Categorical(users), Column::Categorical(items)];
            return self.score_batch(&Batch::new(&columns), out);
        }
        let (user_features, item_features) = features.unwrap_or((users, items));
        let mut batch = crate::batch::BatchBuf::new(self.model.spec());
        let mut row = Vec::new();
        for k in 0..users.len() {
            let user = (users[k], user_features[k]);
            sides.push_row(user, (items[k], item_features[k]), &mut row);
            batch
                .push_row(&row)
                .map_err(|e| ApiError::Invalid(e.to_string()))?;
        }
        self.score_batch(&batch, out)
    }

    fn score_batch<C: crate::batch::Columns + Sync>(
        &self,
        batch: &C,
        out: &mut [f32],
    ) -> Result<(), ApiError> {
        let scored = if out.len() >= 1024 {
            score_parallel(&self.model, batch, &self.scratch, out)
        } else {
            score(&self.model, batch, &mut self.scratch.get(), out)
        };
        match scored {
            // `out` holds every score, NaN included: the caller names the pair.
            Ok(()) | Err(ScoreError::NonFiniteScore { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The prediction for one pair: a rating on the training scale for rating models, a
    /// probability otherwise.
    ///
    /// What it returns in each case:
    /// - a known or unknown id: the prediction (unknown ids score through the
    ///   out-of-vocabulary rows, see the module documentation);
    /// - a score that is not a number, the only way scoring a model from `fit` or `load` can
    ///   fail (a NaN or infinite weight in the pair's rows, which only `verify` detects in the
    ///   embedding table, or an overflow inside the model): NaN. [`DeepFM::try_predict`]
    ///   returns [`ApiError::NonFiniteScore`] naming the pair instead.
    ///
    /// Every other scoring error is ruled out by construction: the rows come from the model's
    /// own id maps, inside its vocabularies.
    pub fn predict(&self, user: &U, item: &I) -> f32 {
        let (u, i) = self.rows(user, item);
        let mut out = [0.0];
        match self.score_rows(&[u.0], &[i.0], Some((&[u.1], &[i.1])), &mut out) {
            Ok(()) if out[0].is_finite() => out[0],
            Ok(()) => f32::NAN,
            Err(e) => {
                debug_assert!(false, "a pair of the model's own rows failed to score: {e}");
                f32::NAN
            }
        }
    }

    /// As [`DeepFM::predict`], with every failure an error: [`ApiError::UnknownUser`] or
    /// [`ApiError::UnknownItem`] for an id not seen in training, [`ApiError::NonFiniteScore`]
    /// where `predict` returns NaN.
    pub fn try_predict(&self, user: &U, item: &I) -> Result<f32, ApiError> {
        let u = self.users.get(user).ok_or(ApiError::UnknownUser)?;
        let i = self.items.get(item).ok_or(ApiError::UnknownItem)?;
        let mut out = [0.0];
        self.score_rows(&[u], &[i], None, &mut out)?;
        match out[0] {
            p if p.is_finite() => Ok(p),
            _ => Err(Self::non_finite(user, item)),
        }
    }

    /// Predictions for many pairs, scored as one batch (parallel for large ones), each as
    /// [`DeepFM::predict`] returns it; a score that is not a number is the error
    /// [`ApiError::NonFiniteScore`] naming the first such pair.
    pub fn batch_predict(&self, pairs: &[(U, I)]) -> Result<Vec<f32>, ApiError> {
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let n = pairs.len();
        let (mut user_emb, mut user_feat) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut item_emb, mut item_feat) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for (u, i) in pairs {
            let ((ue, uf), (ie, if_)) = self.rows(u, i);
            user_emb.push(ue);
            user_feat.push(uf);
            item_emb.push(ie);
            item_feat.push(if_);
        }
        let mut out = vec![0.0; pairs.len()];
        let features = Some((&user_feat[..], &item_feat[..]));
        self.score_rows(&user_emb, &item_emb, features, &mut out)?;
        match out.iter().position(|p| !p.is_finite()) {
            Some(k) => Err(Self::non_finite(&pairs[k].0, &pairs[k].1)),
            None => Ok(out),
        }
    }

    /// Root mean squared error (and mean absolute error) over triples, predictions clamped as
    /// [`DeepFM::predict`] returns them.
    pub fn evaluate(
        &self,
        user_ids: &[U],
        item_ids: &[I],
        ratings: &[f32],
    ) -> Result<(f64, f64), ApiError> {
        if user_ids.len() != ratings.len() || item_ids.len() != ratings.len() || ratings.is_empty()
        {
            return Err(ApiError::Lengths {
                users: user_ids.len(),
                items: item_ids.len(),
                ratings: ratings.len(),
            });
        }
        let pairs: Vec<(U, I)> = user_ids
            .iter()
            .cloned()
            .zip(item_ids.iter().cloned())
            .collect();
        let p = self.batch_predict(&pairs)?;
        let rmse =
            crate::metrics::rmse(&p, ratings).map_err(|e| ApiError::Invalid(e.to_string()))?;
        let mae = crate::metrics::mae(&p, ratings).map_err(|e| ApiError::Invalid(e.to_string()))?;
        Ok((rmse, mae))
    }

    /// The `top_k` items for `user` by score, excluding items the user interacted with in
    /// training; ties go to the item seen first in training. Fails, naming the item, when a
    /// candidate's score is not a number (see [`DeepFM::recommend_with`]).
    pub fn recommend(&self, user: &U, top_k: usize) -> Result<Vec<I>, ApiError> {
        Ok(self
            .recommend_with_scores(user, top_k)?
            .into_iter()
            .map(|(i, _)| i)
            .collect())
    }

    /// As [`DeepFM::recommend`], with each item's score.
    pub fn recommend_with_scores(&self, user: &U, top_k: usize) -> Result<Vec<(I, f32)>, ApiError> {
        self.recommend_with(user, top_k, true, &[])
    }

    /// Top `top_k` items for `user`: every known item is scored in batches; items the user
    /// interacted with in training are left out when `exclude_seen`, and so are the items in
    /// `exclude`. An unknown user is scored through the out-of-vocabulary row.
    ///
    /// A candidate whose score is not a number (a NaN or infinite weight in its rows, or an
    /// overflow) is the error [`ApiError::NonFiniteScore`] naming the user and the item: a
    /// damaged row never silently reorders or empties the list. `deepfm inspect --verify`
    /// finds such rows in a model file.
    pub fn recommend_with(
        &self,
        user: &U,
        top_k: usize,
        exclude_seen: bool,
        exclude: &[I],
    ) -> Result<Vec<(I, f32)>, ApiError> {
        const CHUNK: usize = 4096;
        let (u, u_feat) = self.sides().user(user);
        let n = self.items.len();
        let mut skip = vec![false; n + 1];
        skip[OOV_ROW as usize] = true;
        if exclude_seen {
            for &i in &self.seen[u as usize] {
                skip[i as usize] = true;
            }
        }
        for item in exclude {
            if let Some(i) = self.items.get(item) {
                skip[i as usize] = true;
            }
        }
        let mut scores = vec![0.0f32; n + 1];
        let users = vec![u; CHUNK.min(n + 1)];
        let user_features = vec![u_feat; users.len()];
        let mut rows = Vec::with_capacity(users.len());
        for (start, out) in (0..=n).step_by(CHUNK).zip(scores.chunks_mut(CHUNK)) {
            rows.clear();
            rows.extend(start as u64..(start + out.len()) as u64);
            let features = Some((&user_features[..out.len()], &rows[..]));
            self.score_rows(&users[..out.len()], &rows, features, out)?;
        }
        let mut ranked: Vec<u64> = (1..=n as u64).filter(|&i| !skip[i as usize]).collect();
        if let Some(&bad) = ranked.iter().find(|&&i| !scores[i as usize].is_finite()) {
            let item = self.items.id(bad).expect("ranked rows are known items");
            return Err(Self::non_finite(user, item));
        }
        let by_score = |a: &u64, b: &u64| {
            scores[*b as usize]
                .total_cmp(&scores[*a as usize])
                .then(a.cmp(b))
        };
        let k = top_k.min(ranked.len());
        if k == 0 {
            return Ok(Vec::new());
        }
        ranked.select_nth_unstable_by(k - 1, by_score);
        ranked.truncate(k);
        ranked.sort_unstable_by(by_score);
        Ok(ranked
            .into_iter()
            .map(|i| {
                let id = self
                    .items
                    .id(i)
                    .expect("ranked rows are known items")
                    .clone();
                (id, scores[i as usize])
            })
            .collect())
    }

    /// Leave-one-out ranking quality, the protocol of the NCF paper: each `(user, item)` of
    /// `held_out` (typically each user's latest interaction, see
    /// [`crate::data::split::leave_one_out_by_time`]) is ranked among `negatives` items drawn
    /// uniformly from those the user did not interact with in training (seeded); returns the
    /// mean HR@`k` and NDCG@`k`. A held-out item scored equal to a negative ranks below it.
    pub fn hit_ratio_ndcg(
        &self,
        held_out: &[(U, I)],
        negatives: usize,
        k: usize,
        seed: u64,
    ) -> Result<(f64, f64), ApiError> {
        if held_out.is_empty() {
            return Err(ApiError::Invalid("no held-out pairs".into()));
        }
        let n = self.items.len() as u64;
        let mut rng = crate::rng::Rng::new(seed);
        let (mut hr, mut ndcg) = (0.0, 0.0);
        let mut rows = Vec::with_capacity(negatives + 1);
        let mut users = Vec::with_capacity(negatives + 1);
        let mut user_features = Vec::with_capacity(negatives + 1);
        let mut item_features = Vec::with_capacity(negatives + 1);
        let mut scores = vec![0.0f32; negatives + 1];
        let sides = self.sides();
        for (user, item) in held_out {
            let (u, u_feat) = sides.user(user);
            let (target, target_feat) = sides.item(item);
            let seen = &self.seen[u as usize];
            rows.clear();
            rows.push(target);
            let mut tries = 0;
            while rows.len() <= negatives && tries < 100 * (negatives + 1) && n > 0 {
                tries += 1;
                let j = 1 + (rng.below(n));
                if j != target && seen.binary_search(&j).is_err() {
                    rows.push(j);
                }
            }
            users.clear();
            users.resize(rows.len(), u);
            user_features.clear();
            user_features.resize(rows.len(), u_feat);
            item_features.clear();
            item_features.extend_from_slice(&rows);
            item_features[0] = target_feat;
            let features = Some((&user_features[..], &item_features[..]));
            self.score_rows(&users, &rows, features, &mut scores[..rows.len()])?;
            if let Some(k) = scores[..rows.len()].iter().position(|s| !s.is_finite()) {
                return Err(match k {
                    0 => Self::non_finite(user, item),
                    _ => Self::non_finite(user, self.items.id(rows[k]).expect("a known item")),
                });
            }
            let rank = scores[1..rows.len()]
                .iter()
                .filter(|&&s| s >= scores[0])
                .count();
            if rank < k {
                hr += 1.0;
                ndcg += 1.0 / ((rank + 2) as f64).log2();
            }
        }
        let count = held_out.len() as f64;
        Ok((hr / count, ndcg / count))
    }

    /// [`DeepFM::recommend`] for many users, in parallel; the first error, if any.
    pub fn recommend_many(&self, users: &[U], top_k: usize) -> Result<Vec<Vec<I>>, ApiError> {
        users.par_iter().map(|u| self.recommend(u, top_k)).collect()
    }

    /// Writes the model file (what the inference core and `deepfm score` read) to `path`, with
    /// the id maps, settings and seen items in its metadata section: one file, replaced
    /// crash-safely in one rename (temp file, fsync, rename, directory fsync), so an
    /// interrupted save leaves the previous file whole.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), ApiError> {
        let path = path.as_ref();
        let meta = Meta {
            settings: self.settings.clone(),
            task: self.task,
            users: self.users.clone(),
            items: self.items.clone(),
            seen: self.seen.clone(),
            history: self
                .history
                .iter()
                .map(|e| (e.epoch, e.train_loss, e.valid_loss))
                .collect(),
            user_features: self.user_features.clone(),
            item_features: self.item_features.clone(),
            columns: self.columns.clone(),
        };
        let json = serde_json::to_string(&meta).map_err(|e| ApiError::Meta {
            path: path.to_path_buf(),
            problem: e.to_string(),
        })?;
        crate::format::writer::copy_with_metadata(self.model.file(), path, json)?;
        Ok(())
    }

    /// Opens a model saved by [`DeepFM::save`] (the model file is memory-mapped; its metadata
    /// section is read and checked).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ApiError> {
        let path = path.as_ref();
        let model = Model::open(path)?;
        let bad = |problem: String| ApiError::Meta {
            path: path.to_path_buf(),
            problem,
        };
        let meta: Meta<U, I> = model.file().metadata_json()?.ok_or_else(|| {
            bad("no recommender metadata: not a model saved by DeepFM::save or `deepfm train --ratings`".into())
        })?;
        let vocab = |f: usize| match model.spec().fields.get(f).map(|f| f.kind) {
            Some(FieldKind::Categorical { vocab }) => Some(vocab),
            _ => None,
        };
        let mut feature_fields = Vec::new();
        if let Some(t) = &meta.user_features {
            feature_fields.extend(t.spec_fields("user"));
        }
        if let Some(t) = &meta.item_features {
            feature_fields.extend(t.spec_fields("item"));
        }
        let consistent = model.spec().fields.len() == 2 + feature_fields.len()
            && model.spec().fields[2..] == feature_fields[..]
            && (meta.user_features.as_ref()).is_none_or(|t| t.is_consistent(&meta.users))
            && (meta.item_features.as_ref()).is_none_or(|t| t.is_consistent(&meta.items))
            && vocab(0) == Some(meta.users.rows())
            && vocab(1) == Some(meta.items.rows())
            && meta.users.is_consistent()
            && meta.items.is_consistent()
            && meta.seen.len() as u64 == meta.users.rows()
            && meta
                .seen
                .iter()
                .all(|s| s.iter().all(|&i| i < meta.items.rows()) && s.is_sorted());
        if !consistent {
            return Err(bad("id maps do not match the model's fields".into()));
        }
        let scratch = ScratchPool::new(&model);
        Ok(DeepFM {
            settings: meta.settings,
            task: meta.task,
            users: meta.users,
            items: meta.items,
            seen: meta.seen,
            history: meta
                .history
                .into_iter()
                .map(|(epoch, train_loss, valid_loss)| EpochReport {
                    epoch,
                    train_loss,
                    valid_loss,
                    samples: 0,
                    seconds: 0.0,
                    learning_rate: 0.0,
                })
                .collect(),
            model,
            scratch,
            user_features: meta.user_features,
            item_features: meta.item_features,
            columns: meta.columns,
        })
    }
}

impl<U: Id + 'static, I: Id + 'static> crate::reload::Load for DeepFM<U, I> {
    type Error = ApiError;

    fn load(path: &Path) -> Result<Self, ApiError> {
        DeepFM::load(path)
    }

    fn model_file(&self) -> &crate::format::ModelFile {
        self.model.file()
    }
}

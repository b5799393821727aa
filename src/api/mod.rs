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

mod builder;
mod error;
mod features;
mod fit;
mod ids;
mod input;
mod pairs;
mod persist;
mod predict;
mod progress;
mod recommend;
mod settings;
mod side_files;
mod tune;

pub use builder::DeepFMBuilder;
pub use error::ApiError;
pub use features::{Feature, FeatureKind, Features};
pub use ids::{Id, IdMap, OOV_ROW};
pub use input::Interactions;
pub use pairs::NegativeSampling;
pub use settings::{DENSE_ADAM_MAX_WEIGHTS, Settings, Task};
pub use side_files::read_features;
pub use tune::{MIN_EPOCHS, Trial, TuneOptions, Tuned};

use crate::infer::{Model, ScratchPool};
use crate::train::EpochReport;
use features::{FeatureTable, Sides};

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

impl<U: Id, I: Id> DeepFM<U, I> {
    /// The task trained (what `auto` resolved to).
    pub fn task(&self) -> Task {
        self.task
    }

    /// The settings used (`refit` says whether the model was trained again on all the data).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Per-epoch losses of the fit (empty for a loaded model whose history was not saved):
    /// the validated run's epochs, then, if the model was refitted on all the data
    /// ([`Settings::refit`]), the refit's (numbered from 1 again, without validation loss).
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
}

//! Saving and loading: the model file with the id maps, settings and seen items in its metadata
//! section.

use super::features::FeatureTable;
use super::{ApiError, DeepFM, Id, IdMap, Settings, Task};
use crate::infer::{Model, ScratchPool};
use crate::spec::FieldKind;
use crate::train::EpochReport;
use serde::{Deserialize, Serialize};
use std::path::Path;

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

impl<U: Id, I: Id> DeepFM<U, I> {
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
        // Other metadata (a click model's preprocessing, an imported model's provenance) is
        // not a recommender's: say so rather than name a missing key.
        let meta: serde_json::Value = model
            .file()
            .metadata_json()?
            .filter(|m: &serde_json::Value| m.get("settings").is_some())
            .ok_or_else(|| {
                bad("no recommender metadata: not a model saved by DeepFM::save or `deepfm train --ratings`".into())
            })?;
        let meta: Meta<U, I> = serde_json::from_value(meta)
            .map_err(|e| crate::format::FormatError::MetadataJson(e.to_string()))?;
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

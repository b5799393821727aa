//! What the service keeps behind its reload handle: a scoring [`Model`], plus the id maps of a
//! recommender when the file was saved by [`DeepFM::save`] (they are in its metadata section).

use deepfm::api::{ApiError, DeepFM};
use deepfm::format::ModelFile;
use deepfm::reload::Load;
use deepfm::{FormatError, Model};
use std::path::Path;

/// A recommender over the raw ids the model was trained on: numbers (the Rust API with integer
/// ids) or strings (`deepfm train` on rating files).
#[derive(Debug)]
pub enum Recommender {
    /// Integer user and item ids.
    Numeric(DeepFM<u64, u64>),
    /// String user and item ids.
    Text(DeepFM<String, String>),
}

impl Recommender {
    /// The scoring model inside.
    pub fn model(&self) -> &Model {
        match self {
            Recommender::Numeric(m) => m.model(),
            Recommender::Text(m) => m.model(),
        }
    }
}

/// One loaded model file.
// One value per model version, behind an `Arc`: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Served {
    /// A model file without a recommender's metadata: `/score` only.
    Plain {
        /// The scoring model.
        model: Model,
        /// Why `/recommend` is not available, for its 404.
        no_recommender: String,
    },
    /// A model saved by [`DeepFM::save`] (id maps in its metadata section): `/score` and
    /// `/recommend`.
    Recommender(Recommender),
}

impl Served {
    /// The scoring model.
    pub fn model(&self) -> &Model {
        match self {
            Served::Plain { model, .. } => model,
            Served::Recommender(r) => r.model(),
        }
    }

    /// The recommender, or why there is none.
    pub fn recommender(&self) -> Result<&Recommender, &str> {
        match self {
            Served::Plain { no_recommender, .. } => Err(no_recommender),
            Served::Recommender(r) => Ok(r),
        }
    }
}

impl Load for Served {
    type Error = FormatError;

    /// Opens and validates the model file. When its metadata section holds a recommender's id
    /// maps (integer or string ids), `/recommend` is served too; any other metadata (a click
    /// model's preprocessing, say) leaves a plain scoring model.
    fn load(path: &Path) -> Result<Served, FormatError> {
        let model = Model::open(path)?;
        if model.file().metadata_info().is_none() {
            return Ok(Served::Plain {
                model,
                no_recommender: "the model in service has no recommender metadata: /recommend \
                                 needs a model saved by deepfm::api::DeepFM::save or \
                                 `deepfm train --ratings`"
                    .into(),
            });
        }
        let numeric = match DeepFM::<u64, u64>::load(path) {
            Ok(m) => return Ok(Served::Recommender(Recommender::Numeric(m))),
            Err(ApiError::Format(e)) => return Err(e),
            Err(e) => e,
        };
        match DeepFM::<String, String>::load(path) {
            Ok(m) => Ok(Served::Recommender(Recommender::Text(m))),
            Err(ApiError::Format(e)) => Err(e),
            Err(text) => Ok(Served::Plain {
                model,
                no_recommender: format!(
                    "the metadata of the model in service is not a recommender's \
                     (integer ids: {numeric}; string ids: {text})"
                ),
            }),
        }
    }

    fn model_file(&self) -> &ModelFile {
        self.model().file()
    }
}

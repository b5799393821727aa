//! What the service keeps behind its reload handle: a scoring [`Model`], plus the id maps of a
//! recommender when the file was saved by [`DeepFM::save`] (it then has `<path>.meta.json`).

use deepfm::api::{ApiError, DeepFM};
use deepfm::format::ModelFile;
use deepfm::reload::Load;
use deepfm::{FormatError, Model};
use std::path::{Path, PathBuf};

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
    /// A model file without id maps: `/score` only.
    Plain(Model),
    /// A model saved by [`DeepFM::save`]: `/score` and `/recommend`.
    Recommender(Recommender),
}

impl Served {
    /// The scoring model.
    pub fn model(&self) -> &Model {
        match self {
            Served::Plain(m) => m,
            Served::Recommender(r) => r.model(),
        }
    }

    /// The recommender, if the file came with id maps.
    pub fn recommender(&self) -> Option<&Recommender> {
        match self {
            Served::Plain(_) => None,
            Served::Recommender(r) => Some(r),
        }
    }
}

/// Why a model file could not be put in service.
#[derive(Debug, thiserror::Error)]
pub enum ServedError {
    /// The model file itself is missing or invalid.
    #[error(transparent)]
    Model(#[from] FormatError),
    /// `<path>.meta.json` exists but does not load with integer ids (first error) nor with
    /// string ids (second).
    #[error("{meta}: not a recommender's id maps (integer ids: {numeric}; string ids: {text})")]
    Meta {
        /// The metadata file.
        meta: PathBuf,
        /// The error loading it with integer ids.
        numeric: ApiError,
        /// The error loading it with string ids.
        text: ApiError,
    },
}

/// The metadata file [`DeepFM::save`] writes beside `path`.
pub fn meta_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".meta.json");
    PathBuf::from(name)
}

impl Load for Served {
    type Error = ServedError;

    /// Opens and validates the model file; when `<path>.meta.json` exists, it must load too (a
    /// recommender whose id maps are broken is refused rather than served without them).
    fn load(path: &Path) -> Result<Served, ServedError> {
        let meta = meta_path(path);
        if !meta.exists() {
            return Ok(Served::Plain(Model::open(path)?));
        }
        let numeric = match DeepFM::<u64, u64>::load(path) {
            Ok(m) => return Ok(Served::Recommender(Recommender::Numeric(m))),
            Err(ApiError::Format(e)) => return Err(ServedError::Model(e)),
            Err(e) => e,
        };
        match DeepFM::<String, String>::load(path) {
            Ok(m) => Ok(Served::Recommender(Recommender::Text(m))),
            Err(text) => Err(ServedError::Meta {
                meta,
                numeric,
                text,
            }),
        }
    }

    fn model_file(&self) -> &ModelFile {
        self.model().file()
    }
}

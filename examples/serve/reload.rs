//! TEMPORARY placeholder for `deepfm::reload` (being written on main); deleted on merge.
use deepfm::format::ModelFile;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub trait Load: Sized + Send + Sync + 'static {
    type Error: std::error::Error + Send + Sync + 'static;
    fn load(path: &Path) -> Result<Self, Self::Error>;
    fn model_file(&self) -> &ModelFile;
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Load(E),
}

#[derive(Debug)]
pub struct Loaded<T> {
    value: T,
    version: u64,
    source: Option<PathBuf>,
}
impl<T> Loaded<T> {
    pub fn version(&self) -> u64 {
        self.version
    }
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }
}
impl<T> Deref for Loaded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

#[derive(Debug)]
pub struct Reloadable<T> {
    current: Mutex<Arc<Loaded<T>>>,
}
impl<T> Reloadable<T> {
    pub fn current(&self) -> Arc<Loaded<T>> {
        self.current.lock().unwrap().clone()
    }
    pub fn version(&self) -> u64 {
        self.current().version
    }
}
impl<T: Load> Reloadable<T> {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, T::Error> {
        let path = path.as_ref();
        Ok(Reloadable {
            current: Mutex::new(Arc::new(Loaded {
                value: T::load(path)?,
                version: 1,
                source: Some(path.into()),
            })),
        })
    }
    pub fn check_current(&self) -> Result<(), deepfm::FormatError> {
        Ok(())
    }
    pub fn reload(&self, path: impl AsRef<Path>) -> Result<u64, ReloadError<T::Error>> {
        let path = path.as_ref();
        let value = T::load(path).map_err(ReloadError::Load)?;
        let mut cur = self.current.lock().unwrap();
        let version = cur.version + 1;
        *cur = Arc::new(Loaded {
            value,
            version,
            source: Some(path.into()),
        });
        Ok(version)
    }
}

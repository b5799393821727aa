//! Hot reload: a handle that serves one model to many threads and swaps in a new one while they
//! keep scoring.
//!
//! [`Reloadable`] holds the current value (a [`Model`], a recommender
//! `api::DeepFM` with the `train` feature, or anything that implements [`Load`]) behind an atomic
//! pointer. A request takes [`Reloadable::current`] once and keeps the returned
//! [`Arc<Loaded<T>>`](Loaded) until it has answered: everything it computes comes from that one
//! version, which it can report ([`Loaded::version`]), and the old map is unmapped only when the
//! last request holding it ends. Taking the current value is lock-free (one atomic load and a
//! reference count increment); it never waits for a reload.
//!
//! [`Reloadable::reload`] opens and fully validates the new file *before* the swap, so a bad
//! file is an error for the caller of `reload` and the service keeps answering with the old
//! model. Reloads are serialised, so versions increase by one per successful reload.
//!
//! # Replacing model files
//! Write the new model to a new file (in the same directory) and either reload from that path or
//! put it at the old path with [`crate::format::install()`] (`deepfm install NEW LIVE`) and reload
//! that: install renames a validated copy over the path, which gives the path a new inode while
//! maps of the old one stay valid. Never truncate or rewrite a mapped file in place: reads of
//! truncated pages fault and rewritten pages change scores silently. [`Reloadable::reload`]
//! refuses a path that is the currently mapped inode rewritten in place
//! ([`ReloadError::ChangedInPlace`]), and [`Reloadable::check_current`] lets a service detect
//! such a rewrite at any time.
//!
#![cfg_attr(feature = "train", doc = "```")]
// The example writes its models with `fixtures`, which the inference-only build lacks.
#![cfg_attr(not(feature = "train"), doc = "```ignore")]
//! use deepfm::reload::ModelHandle;
//! # let dir = tempfile::tempdir()?;
//! # let (old, new) = (dir.path().join("a.dfm"), dir.path().join("b.dfm"));
//! # let spec = deepfm::fixtures::mixed_small();
//! # deepfm::fixtures::write_random_model(&old, &spec, 1)?;
//! # deepfm::fixtures::write_random_model(&new, &spec, 2)?;
//! let handle = ModelHandle::open(&old)?;
//! let model = handle.current();             // hold for the whole request
//! assert_eq!(model.version(), 1);
//! assert_eq!(handle.reload(&new)?, 2);      // validated, then swapped in
//! assert_eq!(handle.current().version(), 2);
//! assert_eq!(model.version(), 1);           // the old map lives while it is held
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::format::{FileStamp, FormatError, ModelFile};
use crate::infer::Model;
use arc_swap::ArcSwap;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// A value that can be opened from a model file.
pub trait Load: Sized + Send + Sync + 'static {
    /// Why opening failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Opens and validates `path`.
    fn load(path: &Path) -> Result<Self, Self::Error>;

    /// The mapped model file behind the value, so a reload can tell an in-place rewrite of it.
    fn model_file(&self) -> &ModelFile;
}

impl Load for Model {
    type Error = FormatError;

    fn load(path: &Path) -> Result<Self, FormatError> {
        Model::open(path)
    }

    fn model_file(&self) -> &ModelFile {
        self.file()
    }
}

/// Why a reload did not happen; the previous value stays in service.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ReloadError<E: std::error::Error + 'static> {
    /// Opening or validating the new file failed.
    #[error(transparent)]
    Load(E),
    /// The path names the inode that is mapped now, and that file was rewritten in place: the
    /// map serving requests is already damaged, and reloading it would hide that.
    #[error(transparent)]
    ChangedInPlace(FormatError),
    /// The path could not be inspected.
    #[error(transparent)]
    Stat(FormatError),
}

/// One loaded version: the value, its version number and where it came from.
#[derive(Debug)]
pub struct Loaded<T> {
    value: T,
    version: u64,
    source: Option<PathBuf>,
}

impl<T> Loaded<T> {
    /// 1 for the first value, one more for each successful reload or replace.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The path it was loaded from (`None` for values handed to [`Reloadable::new`] or
    /// [`Reloadable::replace`]).
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// The value.
    pub fn value(&self) -> &T {
        &self.value
    }
}

impl<T> Deref for Loaded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

/// A shared, hot-swappable value. `Send + Sync` when `T` is: share one (in an `Arc` or a
/// `static`) between all request threads.
#[derive(Debug)]
pub struct Reloadable<T> {
    current: ArcSwap<Loaded<T>>,
    /// Serialises swaps, so versions are assigned in order and never skipped.
    swap: Mutex<()>,
}

/// The handle for a plain scoring [`Model`].
pub type ModelHandle = Reloadable<Model>;

impl<T> Reloadable<T> {
    /// Serves `value` as version 1.
    pub fn new(value: T) -> Self {
        Reloadable::with_source(value, None)
    }

    fn with_source(value: T, source: Option<PathBuf>) -> Self {
        Reloadable {
            current: ArcSwap::from_pointee(Loaded {
                value,
                version: 1,
                source,
            }),
            swap: Mutex::new(()),
        }
    }

    /// The value in service now. Keep the `Arc` for the whole request: every result computed
    /// from it belongs to its [`Loaded::version`], whatever reloads happen meanwhile.
    pub fn current(&self) -> Arc<Loaded<T>> {
        self.current.load_full()
    }

    /// The version in service now.
    pub fn version(&self) -> u64 {
        self.current.load().version
    }

    /// Puts `value` in service and returns its version. Requests that already hold the previous
    /// value finish with it; it is dropped when the last of them ends.
    pub fn replace(&self, value: T) -> u64 {
        self.swap_in(value, None)
    }

    fn swap_in(&self, value: T, source: Option<PathBuf>) -> u64 {
        // A poisoned lock only means another swap panicked between its load and store; the
        // pointer itself is always consistent, so carry on.
        let _guard = self.swap.lock().unwrap_or_else(|p| p.into_inner());
        let version = self.current.load().version + 1;
        self.current.store(Arc::new(Loaded {
            value,
            version,
            source,
        }));
        version
    }
}

impl<T: Load> Reloadable<T> {
    /// Opens `path` and serves it as version 1.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, T::Error> {
        let path = path.as_ref();
        Ok(Reloadable::with_source(
            T::load(path)?,
            Some(path.to_path_buf()),
        ))
    }

    /// Opens and validates `path`, then swaps it in and returns its version. On any error the
    /// value in service is unchanged.
    pub fn reload(&self, path: impl AsRef<Path>) -> Result<u64, ReloadError<T::Error>> {
        let path = path.as_ref();
        let current = self.current();
        let mapped = current.model_file();
        let target = FileStamp::of_path(path).map_err(ReloadError::Stat)?;
        if target.inode == mapped.stamp().inode && target.inode != (0, 0) {
            mapped
                .check_unchanged()
                .map_err(ReloadError::ChangedInPlace)?;
        }
        drop(current);
        let value = T::load(path).map_err(ReloadError::Load)?;
        Ok(self.swap_in(value, Some(path.to_path_buf())))
    }

    /// Checks that the file behind the value in service was not rewritten in place since it was
    /// opened (see [`ModelFile::check_unchanged`]); a service can call this from its health
    /// check.
    pub fn check_current(&self) -> Result<(), FormatError> {
        self.current().model_file().check_unchanged()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_is_send_and_sync() {
        fn shared<T: Send + Sync>() {}
        shared::<ModelHandle>();
        shared::<Arc<Loaded<Model>>>();
    }

    #[test]
    fn a_bad_file_leaves_the_old_model_in_service() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.dfm");
        let bad = dir.path().join("bad.dfm");
        deepfm_random(&good, 1);
        std::fs::write(&bad, b"not a model").unwrap();
        let handle = ModelHandle::open(&good).unwrap();
        assert!(matches!(handle.reload(&bad), Err(ReloadError::Load(_))));
        assert!(matches!(
            handle.reload(dir.path().join("missing.dfm")),
            Err(ReloadError::Stat(_))
        ));
        assert_eq!(handle.version(), 1);
        assert_eq!(handle.current().source(), Some(good.as_path()));
    }

    #[test]
    fn rename_into_place_reloads_and_in_place_rewrite_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("live.dfm");
        let next = dir.path().join("next.dfm");
        deepfm_random(&live, 1);
        let handle = ModelHandle::open(&live).unwrap();
        // Reloading the unchanged file is harmless.
        assert_eq!(handle.reload(&live).unwrap(), 2);
        // The supported rollout: a new file renamed over the path.
        deepfm_random(&next, 2);
        std::fs::rename(&next, &live).unwrap();
        assert_eq!(handle.reload(&live).unwrap(), 3);
        handle.check_current().unwrap();
        // The unsupported one: growing the mapped file in place.
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&live)
            .unwrap();
        file.set_len(file.metadata().unwrap().len() + 4096).unwrap();
        assert!(matches!(
            handle.check_current(),
            Err(FormatError::ChangedUnderMap { .. })
        ));
        assert!(matches!(
            handle.reload(&live),
            Err(ReloadError::ChangedInPlace(_))
        ));
        assert_eq!(handle.version(), 3);
    }

    fn deepfm_random(path: &Path, seed: u64) {
        crate::fixtures::write_random_model(path, &crate::fixtures::mixed_small(), seed).unwrap();
    }
}

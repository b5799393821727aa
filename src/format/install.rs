//! Installing a model file over the one a service serves, without disturbing the service.
//!
//! Copying a new model over a mapped one (`cp new.dfm live.dfm`) first truncates the live file:
//! every process that has it mapped dies of SIGBUS when it next touches a page past the new
//! end, and until the copy ends the others read a mix of both models. [`install()`] does what the
//! README and `docs/ARCHITECTURE.md` ask for instead: it copies the new model to a temporary
//! file beside the live one (through [`super::atomic`], so a failure or a crash at any point
//! leaves the live file as it was), validates that copy completely, and renames it over the
//! live path. Processes that mapped the old file keep reading the old, intact inode until they
//! reopen or reload.

use super::atomic::AtomicFile;
use super::atomic::fault::{self, Step};
use super::{FileStamp, FormatError, ModelFile};
use crate::spec::ModelSpec;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

/// Bytes read from the new file at a time: the copy's memory does not grow with the model.
const READ_CHUNK: usize = 1 << 20;

/// All-zero runs of this size (a multiple of every common file system block) are left as
/// holes instead of being written, so a sparse table stays sparse.
const HOLE_BLOCK: usize = 1 << 16;

/// What [`install()`] did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Installed {
    /// The live path, which now names the new model.
    pub path: PathBuf,
    /// The model file's length in bytes.
    pub len: u64,
    /// Bytes actually written; the rest of `len` are all-zero runs left as file holes.
    pub written: u64,
    /// Whether a file at the live path was replaced (`false` for a first install).
    pub replaced: bool,
    /// The installed model's spec, as read back from the installed copy.
    pub spec: ModelSpec,
}

/// Installs the model file `new` at `live`, replacing what is there, so that processes serving
/// `live` are never disturbed: they keep scoring with the model they mapped until they reopen
/// `live` (or reload it, [`crate::reload::Reloadable::reload`]), and then get the new one.
///
/// Steps: `new` is opened (header, spec and dense sections checked) before anything is
/// written; it is copied to a temporary file beside `live`, in bounded memory (all-zero 64 KiB
/// runs left as holes); that copy — the bytes that will be served — is validated completely
/// ([`ModelFile::open`] and [`ModelFile::verify`]: every section's checksum, including the
/// embedding table and first-order weights, and finiteness); then it is synced, renamed over
/// `live`, and the directory synced. Cost: `new` is read once and the copy once more.
///
/// The installed file gets `live`'s permission bits when `live` exists (as `cp` over it would
/// keep them), else those of any new file (`0666` less the umask); it is owned by the caller.
/// A `live` that is a symbolic link is replaced by the file itself, as `rename` does.
///
/// # Errors
/// - Any [`FormatError`] of [`ModelFile::open`] or [`ModelFile::verify`] when `new` (or its
///   copy) is not a valid model: nothing is installed.
/// - [`FormatError::SameFile`] when `new` and `live` are the same file (the same path, a hard
///   link, or a symbolic link to it): there is nothing to install, and nothing is done.
/// - [`FormatError::Io`] naming `live`'s directory when it does not exist or is not a
///   directory, `live` when it is a directory, or the file an operation failed on.
///
/// On every error before the rename, `live` is untouched and the temporary file removed. An
/// error syncing the directory comes after the rename: the new model is in place but may not
/// survive a power loss. A crash leaves at most the temporary file (never at `live`'s name),
/// which the next install or save to `live` removes.
///
#[cfg_attr(feature = "train", doc = "```")]
// The example writes its models with `fixtures`, which the inference-only build lacks.
#[cfg_attr(not(feature = "train"), doc = "```ignore")]
/// use deepfm::format::install;
/// # let dir = tempfile::tempdir()?;
/// # let (new, live) = (dir.path().join("next.dfm"), dir.path().join("live.dfm"));
/// # let spec = deepfm::fixtures::mixed_small();
/// # deepfm::fixtures::write_random_model(&live, &spec, 1)?;
/// # deepfm::fixtures::write_random_model(&new, &spec, 2)?;
/// let serving = deepfm::Model::open(&live)?;
/// let installed = install(&new, &live)?;
/// assert!(installed.replaced);
/// // `serving` scores on with the old model: the file it maps was never written to.
/// serving.check_unchanged()?;
/// // Opening `live` again (or reloading it) gives the new one.
/// assert_eq!(deepfm::Model::open(&live)?.file().file_len(), installed.len);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn install(new: impl AsRef<Path>, live: impl AsRef<Path>) -> Result<Installed, FormatError> {
    let (new, live) = (new.as_ref(), live.as_ref());
    // Refuse what is not a model before anything is written (a mistyped argument should not
    // cost a copy of a large file).
    let source = ModelFile::open(new)?;
    let len = source.file_len();
    let destination = check_destination(new, &source, live)?;
    drop(source);

    let mut out = AtomicFile::create(live)?;
    if let Some(permissions) = destination.permissions {
        out.set_permissions(permissions)?;
    }
    out.set_len(len)?;
    let written = copy(new, len, &mut out)?;
    out.flush()?;
    // Validate the copy, not `new`: it is what will be served, and `new` may have changed since
    // it was opened.
    let copy = ModelFile::open(out.temp_path())?;
    copy.verify()?;
    let spec = copy.spec().clone();
    drop(copy);
    let path = out.commit()?;
    Ok(Installed {
        path,
        len,
        written,
        replaced: destination.exists,
        spec,
    })
}

/// What is at the live path now.
struct Destination {
    /// Something (a file or a symbolic link) is there, which the rename replaces.
    exists: bool,
    /// The permissions of the file served from there, if any.
    permissions: Option<std::fs::Permissions>,
}

/// Checks that `live` can be replaced by `new`.
fn check_destination(
    new: &Path,
    source: &ModelFile,
    live: &Path,
) -> Result<Destination, FormatError> {
    let dir = match live.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // Checked now so that the error names the directory, not a temporary file in it.
    let dir_meta = std::fs::metadata(dir).map_err(FormatError::io(dir))?;
    if !dir_meta.is_dir() {
        return Err(FormatError::io(dir)(std::io::Error::new(
            ErrorKind::NotADirectory,
            "not a directory: the live file's directory must exist",
        )));
    }
    // `rename` replaces a symbolic link itself, so the link decides whether `live` exists.
    let link = match std::fs::symlink_metadata(live) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Ok(Destination {
                exists: false,
                permissions: None,
            });
        }
        Err(e) => return Err(FormatError::io(live)(e)),
    };
    if link.is_dir() {
        return Err(FormatError::io(live)(std::io::Error::new(
            ErrorKind::IsADirectory,
            "is a directory, not a model file",
        )));
    }
    // What a service opening `live` maps: the link's target.
    let target = match std::fs::metadata(live) {
        Ok(m) => Some(m),
        // A dangling link: nothing is served from it, and the rename replaces it.
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => return Err(FormatError::io(live)(e)),
    };
    if let Some(target) = &target {
        let inode = FileStamp::of(target).inode;
        let same = if inode != (0, 0) {
            inode == source.stamp().inode
        } else {
            // No inode numbers on this platform: compare resolved paths.
            std::fs::canonicalize(new).ok() == std::fs::canonicalize(live).ok()
        };
        if same {
            return Err(FormatError::SameFile {
                new: new.to_path_buf(),
                live: live.to_path_buf(),
            });
        }
    }
    Ok(Destination {
        exists: true,
        permissions: target.map(|t| t.permissions()),
    })
}

/// Streams the first `len` bytes of `new` into `out`, leaving all-zero blocks as holes;
/// returns the bytes written.
fn copy(new: &Path, len: u64, out: &mut AtomicFile) -> Result<u64, FormatError> {
    // Read through a descriptor, not a map: if `new` is truncated meanwhile, a read comes back
    // short (an error here) where a map would fault.
    let mut file = File::open(new).map_err(FormatError::io(new))?;
    let mut buffer = vec![0u8; READ_CHUNK];
    let (mut at, mut written) = (0u64, 0u64);
    while at < len {
        let n = (len - at).min(READ_CHUNK as u64) as usize;
        fault::check(Step::Read).map_err(FormatError::io(new))?;
        file.read_exact(&mut buffer[..n]).map_err(|e| {
            let e = if e.kind() == ErrorKind::UnexpectedEof {
                std::io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "the file became shorter while it was being copied",
                )
            } else {
                e
            };
            FormatError::io(new)(e)
        })?;
        for (i, block) in buffer[..n].chunks(HOLE_BLOCK).enumerate() {
            if block.iter().any(|&b| b != 0) {
                out.write_at(at + (i * HOLE_BLOCK) as u64, block)?;
                written += block.len() as u64;
            }
        }
        at += n as u64;
    }
    Ok(written)
}

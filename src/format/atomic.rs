//! Crash-safe replacement of a file, shared by every writer of the crate (model files,
//! checkpoints, safetensors exports, [`super::install`]).
//!
//! The new contents go to a temporary file beside the target (`.<name>.tmp.<pid>.<n>`, never
//! the target's name), which is flushed, synced, renamed over the target, and the directory
//! synced. A failure at any point before the rename leaves the target untouched and removes the
//! temporary file; a crash (where no cleanup runs) leaves at most that temporary file, which the
//! next save to the same target removes. While a temporary file is being written its writer
//! holds an exclusive advisory lock on it, so a save only removes leftovers nobody holds (a
//! writer that died released its lock with its descriptors).
//!
//! Every operation that touches the disk passes through [`fault`], so that tests can make any
//! one of them fail, or simulate a crash there.

use super::FormatError;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Fault injection for the crash-safety tests: makes the `k`-th disk operation of the writers
/// on this thread fail (optionally after writing part of its bytes), or "crash" there (that
/// operation and every later one on this thread fail, and no cleanup runs).
///
/// Not part of the stable API: it exists so that integration tests can exercise every failure
/// point of every writer. With nothing armed it costs a thread-local read per operation.
#[doc(hidden)]
pub mod fault {
    use std::cell::RefCell;

    /// A disk operation of a writer.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Step {
        /// Removing a stale temporary file left by a crashed writer.
        Clean,
        /// Creating the temporary file.
        Create,
        /// Setting the temporary file's permissions (install, when the target exists).
        Permissions,
        /// Setting the temporary file's length.
        SetLen,
        /// One read of the file being copied (install).
        Read,
        /// Moving the write position.
        Seek,
        /// One write call (a failing write first writes half of its bytes).
        Write,
        /// Syncing the temporary file.
        Sync,
        /// Renaming it over the target.
        Rename,
        /// Syncing the directory (after the rename: the new file is already in place).
        SyncDir,
    }

    #[derive(Default)]
    struct State {
        armed: bool,
        fail_at: Option<u64>,
        crash: bool,
        crashed: bool,
        steps: Vec<Step>,
    }

    thread_local! {
        static STATE: RefCell<State> = RefCell::new(State::default());
    }

    /// Armed injection; disarms when dropped.
    #[derive(Debug)]
    pub struct Injection(());

    /// Records every operation from now on and fails operation `fail_at` (0-based; `None`
    /// only records). With `crash`, that operation and all later ones fail and writers skip
    /// their cleanup, as if the process had died there.
    pub fn inject(fail_at: Option<u64>, crash: bool) -> Injection {
        STATE.with(|s| {
            *s.borrow_mut() = State {
                armed: true,
                fail_at,
                crash,
                ..State::default()
            }
        });
        Injection(())
    }

    impl Injection {
        /// The operations performed (or attempted) so far.
        pub fn steps(&self) -> Vec<Step> {
            STATE.with(|s| s.borrow().steps.clone())
        }

        /// Whether the armed failure happened.
        pub fn fired(&self) -> bool {
            STATE.with(|s| {
                let s = s.borrow();
                s.fail_at.is_some_and(|k| (s.steps.len() as u64) > k)
            })
        }
    }

    impl Drop for Injection {
        fn drop(&mut self) {
            STATE.with(|s| *s.borrow_mut() = State::default());
        }
    }

    /// Called before every disk operation: `Err` if this one is to fail.
    pub(crate) fn check(step: Step) -> std::io::Result<()> {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            if !s.armed {
                return Ok(());
            }
            let index = s.steps.len() as u64;
            s.steps.push(step);
            if s.crashed || s.fail_at == Some(index) {
                s.crashed |= s.crash;
                return Err(std::io::Error::other(format!(
                    "injected failure at {step:?} (operation {index})"
                )));
            }
            Ok(())
        })
    }

    /// Whether a simulated crash happened: writers must not clean up after it.
    pub(crate) fn crashed() -> bool {
        STATE.with(|s| s.borrow().crashed)
    }
}

use fault::Step;

/// Bytes collected before they are written (model tables pass through in pieces).
const BUFFER: usize = 1 << 20;

/// A file being written to a temporary path, renamed over the target by
/// [`AtomicFile::commit`]. Dropping it uncommitted removes the temporary file.
pub(crate) struct AtomicFile {
    file: File,
    temp: PathBuf,
    target: PathBuf,
    /// Position of the file cursor.
    position: u64,
    /// Bytes waiting to be written at `buffered_at`.
    buffer: Vec<u8>,
    buffered_at: u64,
    committed: bool,
}

/// `.<name>.tmp.` — the prefix of every temporary file for `target`.
fn temp_prefix(target: &Path) -> String {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    format!(".{name}.tmp.")
}

/// A fresh temporary path beside `target` (unique per process and call).
pub(crate) fn temp_path(target: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    target.with_file_name(format!(
        "{}{}.{unique}",
        temp_prefix(target),
        std::process::id()
    ))
}

/// Removes temporary files of `target` left by writers that died (their lock is free). Best
/// effort: a leftover that cannot be removed is harmless, as nothing ever reads it.
fn clean_stale_temps(target: &Path) {
    let prefix = temp_prefix(target);
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(&prefix) {
            continue;
        }
        let path = entry.path();
        // Opened for reading: a lock needs no more, and a leftover that took a read-only
        // target's permissions (install) must still be removable.
        let Ok(file) = File::open(&path) else {
            continue;
        };
        // A live writer holds the lock; one that died released it.
        if file.try_lock().is_ok() && fault::check(Step::Clean).is_ok() {
            let _ = std::fs::remove_file(&path);
        }
    }
}

impl AtomicFile {
    /// Creates (and locks) a temporary file for `target`, after removing stale ones.
    pub(crate) fn create(target: &Path) -> Result<Self, FormatError> {
        clean_stale_temps(target);
        let temp = temp_path(target);
        fault::check(Step::Create).map_err(FormatError::io(&temp))?;
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(FormatError::io(&temp))?;
        let atomic = AtomicFile {
            file,
            temp,
            target: target.to_path_buf(),
            position: 0,
            buffer: Vec::new(),
            buffered_at: 0,
            committed: false,
        };
        // Advisory: without locking support a crashed writer's leftover just stays.
        let _ = atomic.file.try_lock();
        Ok(atomic)
    }

    /// The temporary file's path (to read back what was written before [`AtomicFile::commit`]).
    pub(crate) fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// Gives the temporary file `permissions` (called before any data is written, so the
    /// contents are never readable more widely than the permissions say).
    pub(crate) fn set_permissions(
        &mut self,
        permissions: std::fs::Permissions,
    ) -> Result<(), FormatError> {
        fault::check(Step::Permissions).map_err(FormatError::io(&self.temp))?;
        self.file
            .set_permissions(permissions)
            .map_err(FormatError::io(&self.temp))
    }

    /// Sets the file's length (what is never written reads as zeros: a hole).
    pub(crate) fn set_len(&mut self, len: u64) -> Result<(), FormatError> {
        fault::check(Step::SetLen).map_err(FormatError::io(&self.temp))?;
        self.file.set_len(len).map_err(FormatError::io(&self.temp))
    }

    /// Writes `bytes` at byte `at` (buffered: contiguous writes are collected).
    pub(crate) fn write_at(&mut self, at: u64, bytes: &[u8]) -> Result<(), FormatError> {
        let buffered_end = self.buffered_at + self.buffer.len() as u64;
        if self.buffer.is_empty() {
            self.buffered_at = at;
        } else if at != buffered_end || self.buffer.len() + bytes.len() > BUFFER {
            self.flush_buffer()?;
            self.buffered_at = at;
        }
        if bytes.len() >= BUFFER {
            self.write_through(at, bytes)
        } else {
            self.buffer.extend_from_slice(bytes);
            Ok(())
        }
    }

    /// Appends `bytes` after the last write.
    pub(crate) fn append(&mut self, bytes: &[u8]) -> Result<(), FormatError> {
        let end = if self.buffer.is_empty() {
            self.position
        } else {
            self.buffered_at + self.buffer.len() as u64
        };
        self.write_at(end, bytes)
    }

    /// Writes what is buffered, so that the temporary file can be read back whole.
    pub(crate) fn flush(&mut self) -> Result<(), FormatError> {
        self.flush_buffer()
    }

    fn flush_buffer(&mut self) -> Result<(), FormatError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let buffer = std::mem::take(&mut self.buffer);
        let result = self.write_through(self.buffered_at, &buffer);
        self.buffer = buffer;
        self.buffer.clear();
        result
    }

    fn write_through(&mut self, at: u64, bytes: &[u8]) -> Result<(), FormatError> {
        let io = FormatError::io(&self.temp);
        if at != self.position {
            fault::check(Step::Seek).map_err(FormatError::io(&self.temp))?;
            self.file.seek(SeekFrom::Start(at)).map_err(io)?;
            self.position = at;
        }
        if let Err(e) = fault::check(Step::Write) {
            // A disk that fills up mid-write leaves part of the bytes behind.
            let _ = self.file.write_all(&bytes[..bytes.len() / 2]);
            self.position = u64::MAX;
            return Err(FormatError::io(&self.temp)(e));
        }
        self.file
            .write_all(bytes)
            .map_err(FormatError::io(&self.temp))?;
        self.position = at + bytes.len() as u64;
        Ok(())
    }

    /// Writes what is buffered, syncs the file, renames it over the target and syncs the
    /// directory. Returns the target path. On an error before the rename the target is
    /// untouched (and the temporary file removed when `self` drops); an error syncing the
    /// directory comes after the rename: the new file is in place but may not survive a power
    /// loss.
    pub(crate) fn commit(mut self) -> Result<PathBuf, FormatError> {
        self.flush_buffer()?;
        fault::check(Step::Sync).map_err(FormatError::io(&self.temp))?;
        self.file.sync_all().map_err(FormatError::io(&self.temp))?;
        fault::check(Step::Rename).map_err(FormatError::io(&self.target))?;
        std::fs::rename(&self.temp, &self.target).map_err(FormatError::io(&self.target))?;
        self.committed = true;
        sync_parent_dir(&self.target)?;
        Ok(self.target.clone())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        // After a (simulated) crash nothing runs: the leftover is the next save's to remove.
        if !self.committed && !fault::crashed() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Makes a rename durable (on Unix a directory entry is only durable once its directory is
/// synced).
pub(crate) fn sync_parent_dir(path: &Path) -> Result<(), FormatError> {
    fault::check(Step::SyncDir).map_err(FormatError::io(path))?;
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(FormatError::io(dir))?;
    }
    Ok(())
}

/// Writes `bytes` to `target` crash-safely (see the module documentation).
pub(crate) fn write_atomically(target: &Path, bytes: &[u8]) -> Result<PathBuf, FormatError> {
    let mut file = AtomicFile::create(target)?;
    file.append(bytes)?;
    file.commit()
}

//! What several commands set up: a thread pool, a temporary directory.

use anyhow::Result;

/// A pool of `threads` threads (at least 1; `None`: rayon's default, one per core).
pub fn thread_pool(threads: Option<usize>) -> Result<rayon::ThreadPool> {
    let mut builder = rayon::ThreadPoolBuilder::new();
    if let Some(t) = threads {
        builder = builder.num_threads(t.max(1));
    }
    Ok(builder.build()?)
}

/// A directory removed when dropped, for models built on the fly.
pub fn temp_dir() -> Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new().prefix("deepfm-").tempdir()?)
}

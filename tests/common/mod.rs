//! Helpers shared by the integration tests that read the real data sets.

use std::path::PathBuf;

/// `$DEEPFM_DATA/<relative>` or `<crate>/../shared/data/<relative>` (a file or a folder);
/// `None`, after printing why, when it is absent. The data sets are not redistributable and
/// live outside the repository: without them a test says so and passes (CI has them).
pub fn shared_data(relative: &str) -> Option<PathBuf> {
    let root = std::env::var_os("DEEPFM_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    let path = root.join(relative);
    if path.exists() {
        Some(path)
    } else {
        println!("skipping: {} is absent", path.display());
        None
    }
}

//! Helpers shared by the integration tests that read the real data sets.

use std::path::{Path, PathBuf};

/// `$DEEPFM_DATA/<relative>` or `<crate>/../shared/data/<relative>` (a file or a folder).
///
/// The data sets are not redistributable and live outside the repository. Where one is absent,
/// a test on a developer's machine prints why and passes (`None`); under CI (the `CI`
/// environment variable set to anything but `false` or `0`), an absent data set fails the test,
/// so a CI run without the data cannot pass for one that checked it.
pub fn shared_data(relative: &str) -> Option<PathBuf> {
    let root = std::env::var_os("DEEPFM_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    locate(&root, relative, in_ci(std::env::var("CI").ok().as_deref()))
}

/// True when the value of `CI` says this is a CI run (`true`, `1`, `yes`, any non-empty value
/// other than `false` / `0`), as GitHub Actions, GitLab and most runners set it.
fn in_ci(value: Option<&str>) -> bool {
    value.is_some_and(|v| !matches!(v.trim(), "" | "0" | "false" | "False" | "FALSE"))
}

/// `root/relative` when it exists; otherwise `None` after printing why, or a panic when `ci`.
fn locate(root: &Path, relative: &str, ci: bool) -> Option<PathBuf> {
    let path = root.join(relative);
    if path.exists() {
        return Some(path);
    }
    assert!(
        !ci,
        "{} is absent, and CI is set: the data-set tests must run in CI \
         (put the data there, or point DEEPFM_DATA at it)",
        path.display()
    );
    println!("skipping: {} is absent", path.display());
    None
}

#[test]
fn absent_data_skips_locally_and_fails_in_ci() {
    let missing = Path::new("/nonexistent-deepfm-data");
    assert_eq!(locate(missing, "ml-1m", false), None);
    let in_ci_run = std::panic::catch_unwind(|| locate(missing, "ml-1m", true));
    assert!(in_ci_run.is_err(), "an absent data set must fail under CI");
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert_eq!(
        locate(here, "Cargo.toml", true),
        Some(here.join("Cargo.toml"))
    );
    assert!(in_ci(Some("true")) && in_ci(Some("1")));
    assert!(!in_ci(None) && !in_ci(Some("false")) && !in_ci(Some("0")) && !in_ci(Some("")));
}

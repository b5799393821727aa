//! `deepfm::format::install`: replacing the file a service has mapped. Scorers keep the old
//! model's exact scores while it is replaced (the mapped inode is never written), a reload then
//! gets the new model's exact scores; a corrupt or mistaken new file is refused with the live
//! file untouched; first installs, missing directories, permissions and holes.

use deepfm::fixtures::{SparseShape, mixed_small, random_batch, write_random_model};
use deepfm::format::{FormatError, Installed, ModelFile, install};
use deepfm::reload::ModelHandle;
use deepfm::{BatchBuf, Model, Scratch, score};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const ROWS: usize = 64;
const INSTALLS: u64 = 20;

fn scores(model: &Model, batch: &BatchBuf) -> Vec<f32> {
    let mut out = vec![0.0; batch.len()];
    score(model, batch, &mut Scratch::new(model), &mut out).unwrap();
    out
}

fn scores_of(path: &Path, batch: &BatchBuf) -> Vec<f32> {
    scores(&Model::open(path).unwrap(), batch)
}

/// Files in `dir` other than `keep` (temporary files left behind would show here).
fn others(dir: &Path, keep: &[&Path]) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !keep.contains(&p.as_path()))
        .map(|p| p.display().to_string())
        .collect()
}

/// Waits until `counter` has grown by `by` (each scorer thread adds one per batch); a scorer
/// that failed stops counting, which ends the wait with a panic instead of a hang.
fn wait_for(counter: &AtomicU64, by: u64) {
    let start = counter.load(Ordering::Relaxed);
    let since = Instant::now();
    while counter.load(Ordering::Relaxed) < start + by {
        assert!(
            since.elapsed() < Duration::from_secs(60),
            "the scorers stopped scoring (see the panic above)"
        );
        std::thread::yield_now();
    }
}

#[test]
fn scorers_keep_the_old_scores_while_install_replaces_the_file_and_reload_gets_the_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let spec = mixed_small();
    let (a, b) = (dir.path().join("a.dfm"), dir.path().join("b.dfm"));
    write_random_model(&a, &spec, 11).unwrap();
    write_random_model(&b, &spec, 12).unwrap();
    let batch = Arc::new(random_batch(&spec, ROWS, 5));
    // From the model files themselves, never from the live path.
    let expected = Arc::new([scores_of(&a, &batch), scores_of(&b, &batch)]);
    assert_ne!(expected[0], expected[1], "the two models must differ");

    // A first install: nothing at the live path yet.
    let live = dir.path().join("live.dfm");
    let first = install(&a, &live).unwrap();
    assert!(!first.replaced);
    assert_eq!(std::fs::read(&live).unwrap(), std::fs::read(&a).unwrap());

    // Two kinds of scorer: one holds the model it opened before any install and never
    // reloads; the others serve whatever the handle holds, as a service does.
    let handle = Arc::new(ModelHandle::open(&live).unwrap());
    let done = Arc::new(AtomicBool::new(false));
    let scored = Arc::new(AtomicU64::new(0));
    let holder = {
        let (batch, expected, done, scored) = (
            batch.clone(),
            expected.clone(),
            done.clone(),
            scored.clone(),
        );
        let model = Model::open(&live).unwrap();
        std::thread::spawn(move || {
            let mut scratch = Scratch::new(&model);
            let mut out = vec![0.0; ROWS];
            let mut calls = 0u64;
            while !done.load(Ordering::Relaxed) {
                score(&model, &*batch, &mut scratch, &mut out).unwrap();
                assert_eq!(out, expected[0], "the old mapping changed under its reader");
                calls += 1;
                scored.fetch_add(1, Ordering::Relaxed);
            }
            // Installing never wrote to the mapped inode: not even its length or time changed.
            model.check_unchanged().unwrap();
            calls
        })
    };
    let servers: Vec<_> = (0..2)
        .map(|_| {
            let (handle, batch, expected) = (handle.clone(), batch.clone(), expected.clone());
            let (done, scored) = (done.clone(), scored.clone());
            std::thread::spawn(move || {
                let mut scratch = Scratch::new(&handle.current());
                let mut out = vec![0.0; ROWS];
                let mut versions = std::collections::BTreeSet::new();
                while !done.load(Ordering::Relaxed) {
                    let model = handle.current();
                    score(&model, &*batch, &mut scratch, &mut out).unwrap();
                    // Version 1 is A, then B, A, B, ...: odd versions are A.
                    let which = usize::from(model.version() % 2 == 0);
                    assert_eq!(out, expected[which], "version {}", model.version());
                    versions.insert(model.version());
                    scored.fetch_add(1, Ordering::Relaxed);
                }
                versions.len()
            })
        })
        .collect();

    let threads = 1 + servers.len() as u64;
    wait_for(&scored, 4 * threads);
    for version in 2..=INSTALLS + 1 {
        let (source, which) = if version % 2 == 0 { (&b, 1) } else { (&a, 0) };
        let installed: Installed = install(source, &live).unwrap();
        assert!(installed.replaced);
        assert_eq!(installed.path, live);
        assert_eq!(installed.len, std::fs::metadata(source).unwrap().len());
        assert_eq!(installed.spec, spec);
        // Every thread scores on across the replaced file before the reload.
        wait_for(&scored, 2 * threads);
        // Opened afresh, the live path is the new model, exactly.
        assert_eq!(scores_of(&live, &batch), expected[which]);
        assert_eq!(handle.reload(&live).unwrap(), version);
        wait_for(&scored, 2 * threads);
    }
    done.store(true, Ordering::Relaxed);
    let held_calls = holder.join().unwrap();
    let versions: Vec<usize> = servers.into_iter().map(|s| s.join().unwrap()).collect();
    assert!(
        held_calls > 2 * INSTALLS,
        "the holder scored {held_calls} times"
    );
    assert!(
        versions.iter().all(|&v| v > 1),
        "versions seen per thread: {versions:?}"
    );
    assert_eq!(handle.current().version(), INSTALLS + 1);
    assert_eq!(scores(&handle.current(), &batch), expected[0]);
    handle.check_current().unwrap();
    assert_eq!(
        others(dir.path(), &[&a, &b, &live]),
        Vec::<String>::new(),
        "temporary files left"
    );
}

/// Flips the low bit of the first byte of element `element` of section `name` (the value stays
/// finite: only its checksum can tell).
fn corrupt(path: &Path, name: &str, element: u64) {
    let file = ModelFile::open(path).unwrap();
    let section = file
        .sections()
        .iter()
        .find(|s| s.shape.id.name() == name)
        .unwrap();
    let at = (section.offset + 4 * element) as usize;
    drop(file);
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 1;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_corrupt_or_mistaken_new_file_is_refused_and_live_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let spec = mixed_small();
    let live = dir.path().join("live.dfm");
    write_random_model(&live, &spec, 1).unwrap();
    let before = std::fs::read(&live).unwrap();
    let serving = Model::open(&live).unwrap();
    let mut keep: Vec<PathBuf> = vec![live.clone()];

    for (name, element) in [("embedding", 1000), ("linear", 7)] {
        let bad = dir.path().join(format!("bad-{name}.dfm"));
        write_random_model(&bad, &spec, 2).unwrap();
        corrupt(&bad, name, element);
        // Open does not read the row-indexed sections: only a full verify catches this.
        ModelFile::open(&bad).unwrap();
        match install(&bad, &live) {
            Err(FormatError::SectionChecksum { section, .. }) => assert_eq!(section, name),
            other => panic!("installing a corrupt {name}: {other:?}"),
        }
        keep.push(bad);
    }

    let garbage = dir.path().join("garbage.dfm");
    std::fs::write(&garbage, vec![7u8; 100_000]).unwrap();
    assert!(matches!(
        install(&garbage, &live),
        Err(FormatError::BadMagic)
    ));
    keep.push(garbage);
    assert!(matches!(
        install(dir.path().join("missing.dfm"), &live),
        Err(FormatError::Io { .. })
    ));

    // The live file as the new one: by its path, a hard link, a symbolic link.
    let same = |new: &Path| match install(new, &live) {
        Err(FormatError::SameFile { new: n, live: l }) => {
            assert_eq!((n, l), (new.into(), live.clone()))
        }
        other => panic!("installing {} over itself: {other:?}", new.display()),
    };
    same(&live);
    let hard = dir.path().join("hard.dfm");
    std::fs::hard_link(&live, &hard).unwrap();
    same(&hard);
    keep.push(hard);
    #[cfg(unix)]
    {
        let soft = dir.path().join("soft.dfm");
        std::os::unix::fs::symlink(&live, &soft).unwrap();
        same(&soft);
        keep.push(soft);
    }

    assert_eq!(std::fs::read(&live).unwrap(), before);
    serving.check_unchanged().unwrap();
    let keep: Vec<&Path> = keep.iter().map(PathBuf::as_path).collect();
    assert_eq!(
        others(dir.path(), &keep),
        Vec::<String>::new(),
        "temporary files left"
    );
}

#[test]
fn the_live_directory_must_exist_and_live_must_not_be_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let new = dir.path().join("new.dfm");
    write_random_model(&new, &mixed_small(), 3).unwrap();

    let missing = dir.path().join("no-such-dir");
    match install(&new, missing.join("live.dfm")) {
        Err(FormatError::Io { path, source }) => {
            assert_eq!(path, missing);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("{other:?}"),
    }
    match install(&new, new.join("live.dfm")) {
        Err(FormatError::Io { path, source }) => {
            assert_eq!(path, new);
            assert_eq!(source.kind(), std::io::ErrorKind::NotADirectory);
        }
        other => panic!("{other:?}"),
    }
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    match install(&new, &sub) {
        Err(FormatError::Io { path, source }) => {
            assert_eq!(path, sub);
            assert_eq!(source.kind(), std::io::ErrorKind::IsADirectory);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read_dir(&sub).unwrap().count(), 0);
    assert_eq!(others(dir.path(), &[&new, &sub]), Vec::<String>::new());
}

#[cfg(unix)]
#[test]
fn the_installed_file_keeps_the_live_files_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (new, live) = (dir.path().join("new.dfm"), dir.path().join("live.dfm"));
    write_random_model(&new, &mixed_small(), 1).unwrap();
    write_random_model(&live, &mixed_small(), 2).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for (new_mode, live_mode) in [(0o644, 0o640), (0o600, 0o644)] {
        std::fs::set_permissions(&new, std::fs::Permissions::from_mode(new_mode)).unwrap();
        std::fs::set_permissions(&live, std::fs::Permissions::from_mode(live_mode)).unwrap();
        install(&new, &live).unwrap();
        assert_eq!(mode(&live), live_mode);
        assert_eq!(std::fs::read(&live).unwrap(), std::fs::read(&new).unwrap());
    }
}

#[test]
fn a_sparse_table_is_copied_without_writing_its_holes() {
    let dir = tempfile::tempdir().unwrap();
    let (new, live) = (dir.path().join("new.dfm"), dir.path().join("live.dfm"));
    // 2^18 rows × D 16 × 4 bytes = 16 MiB of table, all but a few rows a hole.
    let shape = SparseShape {
        big_vocab: 1 << 18,
        small_vocab: 10,
        edge: 4,
        dim: 16,
    };
    deepfm::fixtures::write_sparse_model(&new, shape, 4).unwrap();
    let done = install(&new, &live).unwrap();
    let len = std::fs::metadata(&new).unwrap().len();
    assert_eq!(done.len, len);
    assert!(
        done.written < len / 8,
        "{} of {len} bytes written",
        done.written
    );
    assert_eq!(std::fs::read(&live).unwrap(), std::fs::read(&new).unwrap());
    ModelFile::open(&live).unwrap().verify().unwrap();
}

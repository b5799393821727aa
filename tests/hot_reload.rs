//! Hot reload under load: scoring threads on every core keep scoring through 200 reloads, and
//! every batch they score equals, bit for bit, the scores of exactly one of the two models: the
//! one whose version they were handed.

use deepfm::fixtures::{mixed_small, random_batch, write_random_model};
use deepfm::reload::ModelHandle;
use deepfm::{Model, Scratch, score};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const RELOADS: u64 = 200;
const ROWS: usize = 64;

fn scores_of(path: &Path, batch: &deepfm::BatchBuf) -> Vec<f32> {
    let model = Model::open(path).unwrap();
    let mut out = vec![0.0; batch.len()];
    score(&model, batch, &mut Scratch::new(&model), &mut out).unwrap();
    out
}

#[test]
fn scores_are_never_torn_across_200_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let spec = mixed_small();
    let (a, b) = (dir.path().join("a.dfm"), dir.path().join("b.dfm"));
    write_random_model(&a, &spec, 11).unwrap();
    write_random_model(&b, &spec, 12).unwrap();
    let batch = Arc::new(random_batch(&spec, ROWS, 5));
    let expected = Arc::new([scores_of(&a, &batch), scores_of(&b, &batch)]);
    assert_ne!(expected[0], expected[1], "the two models must differ");

    // Served from `live.dfm`; each rollout renames a fresh copy of A or B over it, the
    // documented way to replace a mapped model.
    let live = dir.path().join("live.dfm");
    std::fs::copy(&a, &live).unwrap();
    let handle = Arc::new(ModelHandle::open(&live).unwrap());
    let done = Arc::new(AtomicBool::new(false));
    let scored = Arc::new(AtomicU64::new(0));
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) + 1;
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (handle, batch, expected) = (handle.clone(), batch.clone(), expected.clone());
            let (done, scored) = (done.clone(), scored.clone());
            std::thread::spawn(move || {
                let mut scratch = Scratch::new(&handle.current());
                let mut out = vec![0.0; ROWS];
                let mut versions_seen = std::collections::BTreeSet::new();
                while !done.load(Ordering::Relaxed) {
                    let model = handle.current();
                    score(&model, &*batch, &mut scratch, &mut out).unwrap();
                    // Version 1 is A, then B, A, B, ...: odd versions are A.
                    let which = usize::from(model.version() % 2 == 0);
                    assert_eq!(out, expected[which], "version {}", model.version());
                    versions_seen.insert(model.version());
                    scored.fetch_add(1, Ordering::Relaxed);
                }
                versions_seen.len()
            })
        })
        .collect();

    for version in 2..=RELOADS + 1 {
        let source = if version % 2 == 0 { &b } else { &a };
        let next = dir.path().join("next.dfm");
        std::fs::copy(source, &next).unwrap();
        std::fs::rename(&next, &live).unwrap();
        assert_eq!(handle.reload(&live).unwrap(), version);
        // Let the scorers see this version before the next swap.
        let seen = scored.load(Ordering::Relaxed);
        while scored.load(Ordering::Relaxed) < seen + threads as u64 {
            std::thread::yield_now();
        }
    }
    done.store(true, Ordering::Relaxed);
    let versions: Vec<usize> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    assert_eq!(handle.version(), RELOADS + 1);
    // The scorers really ran across the reloads, not only before or after them.
    assert!(
        versions.iter().sum::<usize>() > RELOADS as usize,
        "versions seen per thread: {versions:?}"
    );
    handle.check_current().unwrap();
}

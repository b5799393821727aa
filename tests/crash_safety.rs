//! Crash-safe writes: every writer of the crate (model files through `Trainer::write`, the
//! recommender's `save`, the safetensors export, training checkpoints, `format::install`) is
//! made to fail at each of its disk operations in turn — and to "crash" there, where no cleanup
//! runs. After each,
//! the file at the target path is the previous file, byte for byte (or, once the rename has
//! happened, the complete new one), never a partial file; a failure leaves no temporary file,
//! and a crash's leftover never has the target's name and is removed by the next save.

use deepfm::Model;
use deepfm::api::DeepFM;
use deepfm::fixtures::{mixed_small, planted_ratings};
use deepfm::format::ModelFile;
use deepfm::format::atomic::fault::{self, Step};
use deepfm::train::{Checkpointing, FitConfig, InMemory, TrainConfig, Trainer, fit_checkpointed};
use std::path::{Path, PathBuf};

/// Temporary files in `dir` (names of the form `.<target>.tmp.<pid>.<n>`).
fn temps(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp."))
        .collect()
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// Runs `save` (which replaces `targets`) failing at every disk operation, as an error and
/// as a crash. `usable` checks that a target file can still be used (opened, loaded).
/// `reproducible`: every save writes the same bytes (a checkpoint does not: it records wall
/// times), so a replaced file must equal the clean run's; otherwise it must differ from the
/// old one. Returns the operations of a clean run (each of which was made to fail).
fn every_failure_point(
    dir: &Path,
    targets: &[PathBuf],
    save: &mut dyn FnMut() -> Result<(), String>,
    usable: &dyn Fn() -> bool,
    reproducible: bool,
) -> Vec<Step> {
    let old: Vec<Vec<u8>> = targets.iter().map(|t| read(t)).collect();
    let restore = || {
        for (t, bytes) in targets.iter().zip(&old) {
            std::fs::write(t, bytes).unwrap();
        }
    };
    // A clean run: the operations, and the new contents.
    let recording = fault::inject(None, false);
    save().unwrap();
    let steps = recording.steps();
    drop(recording);
    let new: Vec<Vec<u8>> = targets.iter().map(|t| read(t)).collect();
    let is_new = |i: usize, bytes: &[u8]| {
        if reproducible {
            bytes == new[i]
        } else {
            bytes != old[i]
        }
    };
    assert!(old != new, "the save must change the files");
    for kind in [
        Step::Create,
        Step::SetLen,
        Step::Write,
        Step::Sync,
        Step::Rename,
    ] {
        assert!(
            steps.contains(&kind) || kind == Step::SetLen,
            "{kind:?} missing from {steps:?}"
        );
    }
    // Durability order: the data are synced before the rename, the directory after it.
    for (r, _) in steps
        .iter()
        .enumerate()
        .filter(|(_, s)| **s == Step::Rename)
    {
        assert_eq!(steps[r - 1], Step::Sync, "{steps:?}");
        assert_eq!(steps.get(r + 1), Some(&Step::SyncDir), "{steps:?}");
    }
    assert_eq!(
        steps.iter().filter(|s| **s == Step::Rename).count(),
        targets.len()
    );
    assert!(temps(dir).is_empty());
    for crash in [false, true] {
        for k in 0..steps.len() {
            restore();
            let injection = fault::inject(Some(k as u64), crash);
            let result = save();
            assert!(injection.fired(), "operation {k} never ran");
            drop(injection);
            let what = format!(
                "{} at operation {k} ({:?})",
                if crash { "crash" } else { "failure" },
                steps[k]
            );
            assert!(result.is_err(), "{what}: the save reported success");
            for (i, t) in targets.iter().enumerate() {
                let now = read(t);
                // Only a rename already done for this file can have replaced it.
                let renamed_before = steps[..k].iter().filter(|s| **s == Step::Rename).count() > i;
                if renamed_before {
                    assert!(
                        is_new(i, &now),
                        "{what}: {} is not the new file",
                        t.display()
                    );
                } else {
                    assert!(now == old[i], "{what}: {} is not the old file", t.display());
                }
            }
            assert!(usable(), "{what}: the files cannot be used");
            let left = temps(dir);
            if crash {
                for name in &left {
                    assert!(
                        targets
                            .iter()
                            .all(|t| t.file_name().unwrap() != name.as_str()),
                        "{what}: leftover {name} has a target's name"
                    );
                }
                // The next save removes the leftover.
                save().unwrap();
                assert!(temps(dir).is_empty(), "{what}: leftovers {:?}", temps(dir));
                for (i, t) in targets.iter().enumerate() {
                    assert!(
                        is_new(i, &read(t)),
                        "{what}: the next save did not replace it"
                    );
                }
            } else {
                assert!(left.is_empty(), "{what}: temporary files left: {left:?}");
            }
        }
    }
    steps
}

fn trainer(seed: u64) -> Trainer {
    let config = TrainConfig {
        seed,
        threads: 1,
        ..TrainConfig::default()
    };
    Trainer::new(mixed_small(), config).unwrap()
}

#[test]
fn trainer_write_survives_every_failure() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("m.dfm");
    trainer(1).write(&target).unwrap();
    let new = trainer(2);
    every_failure_point(
        dir.path(),
        std::slice::from_ref(&target),
        &mut || new.write(&target).map(drop).map_err(|e| e.to_string()),
        &|| Model::open(&target).is_ok(),
        true,
    );
}

#[test]
fn install_survives_every_failure() {
    let dir = tempfile::tempdir().unwrap();
    let (new, live) = (dir.path().join("new.dfm"), dir.path().join("live.dfm"));
    deepfm::fixtures::write_random_model(&live, &mixed_small(), 1).unwrap();
    deepfm::fixtures::write_random_model(&new, &mixed_small(), 2).unwrap();
    // Not the default mode, so the permissions step runs and its leftovers are exercised.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&live, std::fs::Permissions::from_mode(0o640)).unwrap();
    }
    let steps = every_failure_point(
        dir.path(),
        std::slice::from_ref(&live),
        &mut || {
            deepfm::format::install(&new, &live)
                .map(drop)
                .map_err(|e| e.to_string())
        },
        &|| ModelFile::open(&live).is_ok_and(|f| f.verify().is_ok()),
        true,
    );
    for kind in [Step::Permissions, Step::Read] {
        assert!(steps.contains(&kind), "{kind:?} missing from {steps:?}");
    }
}

#[test]
fn recommender_save_survives_every_failure() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("r.dfm");
    let (users, items, ratings) = planted_ratings(30, 20, 600, 3);
    let fit = |seed| {
        DeepFM::builder()
            .embedding_dim(4)
            .deep_layers(&[8])
            .epochs(1)
            .threads(1)
            .seed(seed)
            .fit(&users, &items, &ratings)
            .unwrap()
    };
    fit(1).save(&target).unwrap();
    let new = fit(2);
    every_failure_point(
        dir.path(),
        std::slice::from_ref(&target),
        &mut || new.save(&target).map_err(|e| e.to_string()),
        &|| DeepFM::<u32, u32>::load(&target).is_ok(),
        true,
    );
}

#[test]
fn export_survives_every_failure() {
    let dir = tempfile::tempdir().unwrap();
    let (weights, spec) = (
        dir.path().join("w.safetensors"),
        dir.path().join("spec.json"),
    );
    let (a, b) = (dir.path().join("a.dfm"), dir.path().join("b.dfm"));
    trainer(1).write(&a).unwrap();
    // Another spec too, so that both exported files change.
    let mut spec_b = mixed_small();
    spec_b.hidden[0] += 1;
    let config = trainer(2).config().clone();
    Trainer::new(spec_b, config).unwrap().write(&b).unwrap();
    let (a, b) = (ModelFile::open(&a).unwrap(), ModelFile::open(&b).unwrap());
    deepfm::interop::export(&a, &weights, &spec).unwrap();
    let targets = [weights.clone(), spec.clone()];
    every_failure_point(
        dir.path(),
        &targets,
        &mut || deepfm::interop::export(&b, &weights, &spec).map_err(|e| e.to_string()),
        &|| {
            // Each file whole (the pair may be mixed: the weights are renamed first).
            let json = std::fs::read_to_string(&spec).unwrap();
            safetensors::SafeTensors::deserialize(&read(&weights)).is_ok()
                && deepfm::ModelSpec::from_json(&json).is_ok()
        },
        true,
    );
}

#[test]
fn checkpoint_survives_every_failure() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("c.ckpt");
    let spec = mixed_small();
    let mut teacher = trainer(99);
    let data = deepfm::fixtures::planted(&mut teacher, 300, 0.3, 7).unwrap();
    let source = || InMemory::new(&spec, data.batch.clone(), data.labels.clone(), 3, true).unwrap();
    let checkpointing = Checkpointing {
        path: target.clone(),
        resume: true,
    };
    let fit = |epochs| {
        let mut t = trainer(1);
        let config = FitConfig {
            epochs,
            batch_size: 64,
            ..FitConfig::default()
        };
        fit_checkpointed(
            &mut t,
            &mut source(),
            None,
            &config,
            Some(&checkpointing),
            &mut |_: &deepfm::train::EpochReport| {},
        )
        .map(drop)
        .map_err(|e| e.to_string())
    };
    // The previous checkpoint: after epoch 1. The save: resume it, train epoch 2, write.
    fit(1).unwrap();
    every_failure_point(
        dir.path(),
        std::slice::from_ref(&target),
        &mut || fit(2),
        &|| fit(1).is_ok(),
        false,
    );
}

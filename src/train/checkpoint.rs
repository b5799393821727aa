//! Training checkpoints: everything a run needs to go on as if it had never stopped.
//!
//! [`super::fit_checkpointed`] writes one after every epoch and, asked to resume, starts from
//! it. A checkpoint holds the parameters (with the batch-norm running statistics), the optimizer
//! state (dense Adam moments; the embedding optimizer's moments or accumulators), the step count
//! (which also seeds the dropout masks), the learning-rate scale, the epochs done, and the early
//! stopping and plateau state (best loss, best weights, patience counters, epoch reports). The
//! data order needs no state: every source draws an epoch's order from its seed and the epoch
//! number. So an interrupted run resumed from its last checkpoint ends with the same model,
//! bit for bit, as a run that was never interrupted (same data, seed, instruction set; any
//! thread count).
//!
//! # File layout (version 1)
//!
//! All integers little-endian.
//!
//! | bytes | type | meaning |
//! |---|---|---|
//! | 0..8 | [u8; 8] | magic `\x89DFMCKP\n` |
//! | 8..12 | u32 | version, `1` |
//! | 12..16 | u32 | flags, `0` |
//! | 16..24 | u64 | file length |
//! | 24..32 | u64 | state length `n`, at most 64 MiB |
//! | 32..40 | u64 | XXH3-64 (seed 0) of the state |
//! | 40..48 | u64 | XXH3-64 (seed 0) of bytes 0..40 |
//! | 48..64 | | reserved, `0` |
//! | 64..64+n | UTF-8 JSON | the state (below) |
//! | from `align64(64 + n)` | f32 | the tensors, each at its `offset` from there |
//!
//! The state: the model spec and training configuration (JSON text; the thread count is left
//! out as it changes no result), `batch_size`, `patience`, `plateau`, `epoch` (epochs done),
//! `stopped` (early stopping ended the run), `step`, `lr_scale`, `best_loss`, `since_best`,
//! `since_decay`, `best_params` (whether best weights follow), the epoch `reports`, and the
//! tensor directory: `name`, `len` (f32 elements), `offset`, `checksum` (the model file's
//! section checksum, see [`crate::format`]). Floats are stored as their bit patterns, so they
//! come back exactly.

use super::fit::{EpochReport, FitConfig, Plateau};
use super::params::Params;
use super::{TrainError, Trainer};
use crate::format::FormatError;
use crate::format::atomic::AtomicFile;
use crate::format::checksum::checksum;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use thiserror::Error;
use xxhash_rust::xxh3::xxh3_64;

/// Checkpoint magic.
pub const CHECKPOINT_MAGIC: [u8; 8] = *b"\x89DFMCKP\n";
/// The checkpoint version this build reads and writes.
pub const CHECKPOINT_VERSION: u32 = 1;
/// Largest state JSON accepted.
pub const MAX_STATE_LEN: u64 = 64 << 20;
const HEADER: u64 = 64;

/// Where [`super::fit_checkpointed`] keeps its checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpointing {
    /// The checkpoint file, replaced crash-safely after every epoch.
    pub path: PathBuf,
    /// Continue from `path` if it exists (a fresh start if it does not).
    pub resume: bool,
}

/// Every way a checkpoint can fail to load. Each check has its own variant.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The operating system refused to read the file.
    #[error("{path}: {source}")]
    Io {
        /// The checkpoint.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// Shorter than the 64-byte header.
    #[error("checkpoint is {0} bytes, shorter than its 64-byte header")]
    TooSmall(u64),
    /// Not a checkpoint (bad magic).
    #[error("not a deepfm checkpoint (bad magic)")]
    BadMagic,
    /// A version this build does not read.
    #[error("checkpoint version {0} is not supported (this build reads version 1)")]
    UnsupportedVersion(u32),
    /// The header does not match its checksum, or a reserved field is not zero.
    #[error("checkpoint header is damaged")]
    Header,
    /// The file length differs from the header's: truncated or grown.
    #[error("checkpoint is {actual} bytes but its header says {expected}: truncated or modified")]
    FileLength {
        /// Length in the header.
        expected: u64,
        /// Length on disk.
        actual: u64,
    },
    /// The state is longer than [`MAX_STATE_LEN`] or runs past the end of the file.
    #[error("checkpoint state of {0} bytes is too long or runs past the end of the file")]
    StateLength(u64),
    /// The state does not match its checksum.
    #[error("checkpoint state checksum mismatch")]
    StateChecksum,
    /// The state is inconsistent, or cannot be read on this machine.
    #[error("checkpoint state: {0}")]
    State(String),
    /// The state is not UTF-8 JSON of the expected form.
    #[error("checkpoint state: {0}")]
    StateJson(#[source] serde_json::Error),
    /// The checkpoint is of another model or training configuration than the trainer's.
    #[error("checkpoint was written by another run: {0} differs")]
    Mismatch(&'static str),
    /// The tensor directory differs from what the trainer holds.
    #[error("checkpoint tensor {position}: found {found}, expected {expected}")]
    Tensors {
        /// Position in the directory.
        position: usize,
        /// `name[len]` found.
        found: String,
        /// `name[len]` expected.
        expected: String,
    },
    /// A tensor lies outside the file.
    #[error("checkpoint tensor {0} lies outside the file")]
    TensorBounds(String),
    /// A tensor does not match its checksum.
    #[error("checkpoint tensor {0}: checksum mismatch")]
    TensorChecksum(String),
}

/// The epoch loop's state, as saved.
#[derive(Debug, Clone, Default)]
pub(crate) struct FitState {
    /// Epochs done.
    pub epoch: usize,
    /// Early stopping ended the run.
    pub stopped: bool,
    pub best_loss: Option<f64>,
    pub best_params: Option<Params>,
    pub since_best: usize,
    pub since_decay: usize,
    pub reports: Vec<EpochReport>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Report {
    epoch: usize,
    train_loss: u64,
    valid_loss: Option<u64>,
    samples: usize,
    seconds: u64,
    learning_rate: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    len: u64,
    offset: u64,
    checksum: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    spec: String,
    config: String,
    batch_size: usize,
    patience: Option<usize>,
    /// `(factor bits, patience, min_lr bits)`.
    plateau: Option<(u32, usize, u32)>,
    epoch: usize,
    stopped: bool,
    step: u64,
    lr_scale: u32,
    best_loss: Option<u64>,
    since_best: usize,
    since_decay: usize,
    best_params: bool,
    reports: Vec<Report>,
    tensors: Vec<Entry>,
}

/// What identifies a run: spec, configuration (without the thread count) and the epoch loop's
/// settings that change results (not `epochs`: a run may be resumed to train longer).
fn identity(trainer: &Trainer, fit: &FitConfig) -> (String, String, usize, Option<usize>) {
    let mut config = trainer.config.clone();
    config.threads = 0;
    let config = serde_json::to_string(&config).expect("a config always serializes");
    (trainer.spec.to_json(), config, fit.batch_size, fit.patience)
}

/// The epoch-loop settings recorded by [`Trainer::write_checkpoint`]: batch size 0, which no
/// run of `fit` has, so the two kinds of checkpoint are never mixed up.
pub(crate) fn trainer_only() -> FitConfig {
    FitConfig {
        epochs: 0,
        batch_size: 0,
        patience: None,
        plateau: None,
        learning_rates: Vec::new(),
    }
}

fn plateau_bits(p: Option<Plateau>) -> Option<(u32, usize, u32)> {
    p.map(|p| (p.factor.to_bits(), p.patience, p.min_lr.to_bits()))
}

fn params_tensors<'a>(prefix: &str, p: &'a Params, out: &mut Vec<(String, &'a [f32])>) {
    out.push((format!("{prefix}embedding"), &p.embedding));
    out.push((format!("{prefix}linear"), &p.linear));
    for (i, t) in p.dense.0.iter().enumerate() {
        out.push((format!("{prefix}dense.{i}"), t));
    }
    for (l, t) in p.running_mean.iter().enumerate() {
        out.push((format!("{prefix}running_mean.{l}"), t));
    }
    for (l, t) in p.running_var.iter().enumerate() {
        out.push((format!("{prefix}running_var.{l}"), t));
    }
}

fn params_tensors_mut<'a>(prefix: &str, p: &'a mut Params, out: &mut Vec<(String, &'a mut [f32])>) {
    out.push((format!("{prefix}embedding"), &mut p.embedding));
    out.push((format!("{prefix}linear"), &mut p.linear));
    for (i, t) in p.dense.0.iter_mut().enumerate() {
        out.push((format!("{prefix}dense.{i}"), t));
    }
    for (l, t) in p.running_mean.iter_mut().enumerate() {
        out.push((format!("{prefix}running_mean.{l}"), t));
    }
    for (l, t) in p.running_var.iter_mut().enumerate() {
        out.push((format!("{prefix}running_var.{l}"), t));
    }
}

/// Every tensor of a checkpoint, in file order.
fn tensors<'a>(trainer: &'a Trainer, best: Option<&'a Params>) -> Vec<(String, &'a [f32])> {
    let mut out = Vec::new();
    params_tensors("", &trainer.params, &mut out);
    for (name, moments) in [("m", &trainer.adam.m), ("v", &trainer.adam.v)] {
        for (i, t) in moments.0.iter().enumerate() {
            out.push((format!("adam.{name}.{i}"), t));
        }
    }
    for (name, t) in trainer.embedding_state.tensors() {
        out.push((format!("embedding_state.{name}"), t));
    }
    if let Some(best) = best {
        params_tensors("best.", best, &mut out);
    }
    out
}

fn tensors_mut<'a>(
    trainer: &'a mut Trainer,
    best: Option<&'a mut Params>,
) -> Vec<(String, &'a mut [f32])> {
    let mut out = Vec::new();
    params_tensors_mut("", &mut trainer.params, &mut out);
    for (name, moments) in [("m", &mut trainer.adam.m), ("v", &mut trainer.adam.v)] {
        for (i, t) in moments.0.iter_mut().enumerate() {
            out.push((format!("adam.{name}.{i}"), t.as_mut_slice()));
        }
    }
    for (name, t) in trainer.embedding_state.tensors_mut() {
        out.push((format!("embedding_state.{name}"), t));
    }
    if let Some(best) = best {
        params_tensors_mut("best.", best, &mut out);
    }
    out
}

fn align64(x: u64) -> u64 {
    x.div_ceil(64) * 64
}

/// Writes the checkpoint of `trainer` after `state.epoch` epochs to `path`, crash-safely
/// (temp file, fsync, rename, directory fsync).
pub(crate) fn write(
    path: &Path,
    trainer: &Trainer,
    fit: &FitConfig,
    state: &FitState,
) -> Result<(), TrainError> {
    if cfg!(target_endian = "big") {
        return Err(FormatError::BigEndianHost.into());
    }
    let list = tensors(trainer, state.best_params.as_ref());
    // Tensors 64-byte aligned; the file ends with the last one (no padding after it).
    let (mut offset, mut data_len) = (0u64, 0u64);
    let entries: Vec<Entry> = list
        .iter()
        .map(|(name, t)| {
            let entry = Entry {
                name: name.clone(),
                len: t.len() as u64,
                offset,
                checksum: checksum(bytemuck::cast_slice(t)),
            };
            data_len = offset + 4 * t.len() as u64;
            offset = align64(data_len);
            entry
        })
        .collect();
    let state_entries: Vec<u64> = entries.iter().map(|e| e.offset).collect();
    let (spec, config, batch_size, patience) = identity(trainer, fit);
    let json = serde_json::to_string(&State {
        spec,
        config,
        batch_size,
        patience,
        plateau: plateau_bits(fit.plateau),
        epoch: state.epoch,
        stopped: state.stopped,
        step: trainer.step,
        lr_scale: trainer.lr_scale.to_bits(),
        best_loss: state.best_loss.map(f64::to_bits),
        since_best: state.since_best,
        since_decay: state.since_decay,
        best_params: state.best_params.is_some(),
        reports: state
            .reports
            .iter()
            .map(|r| Report {
                epoch: r.epoch,
                train_loss: r.train_loss.to_bits(),
                valid_loss: r.valid_loss.map(f64::to_bits),
                samples: r.samples,
                seconds: r.seconds.to_bits(),
                learning_rate: r.learning_rate.to_bits(),
            })
            .collect(),
        tensors: entries,
    })
    .expect("a checkpoint state always serializes");
    let data_start = align64(HEADER + json.len() as u64);
    let file_len = data_start + data_len;
    let mut header = Vec::with_capacity(HEADER as usize);
    header.extend_from_slice(&CHECKPOINT_MAGIC);
    header.extend_from_slice(&CHECKPOINT_VERSION.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    header.extend_from_slice(&file_len.to_le_bytes());
    header.extend_from_slice(&(json.len() as u64).to_le_bytes());
    header.extend_from_slice(&xxh3_64(json.as_bytes()).to_le_bytes());
    header.extend_from_slice(&xxh3_64(&header).to_le_bytes());
    header.resize(HEADER as usize, 0);

    let mut out = AtomicFile::create(path)?;
    out.set_len(file_len)?;
    out.write_at(0, &header)?;
    out.write_at(HEADER, json.as_bytes())?;
    for ((_, t), e) in list.iter().zip(&state_entries) {
        out.write_at(data_start + e, bytemuck::cast_slice(t))?;
    }
    out.commit()?;
    Ok(())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Loads the checkpoint at `path` into `trainer` (which must have the spec and configuration
/// the checkpoint was written with, and `fit`'s batch size, patience and plateau) and returns
/// the epoch loop's state. Everything cheap is checked before the trainer is touched; if
/// reading a tensor then fails (an I/O error, a checksum mismatch), the trainer's parameters
/// are left partly overwritten: start again from a new trainer.
pub(crate) fn read(
    path: &Path,
    trainer: &mut Trainer,
    fit: &FitConfig,
) -> Result<FitState, CheckpointError> {
    if cfg!(target_endian = "big") {
        return Err(CheckpointError::State(
            "checkpoints are little-endian and this CPU is not".into(),
        ));
    }
    let io = |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let actual = file.metadata().map_err(io)?.len();
    if actual < HEADER {
        return Err(CheckpointError::TooSmall(actual));
    }
    let mut header = [0u8; HEADER as usize];
    file.read_exact(&mut header).map_err(io)?;
    if header[..8] != CHECKPOINT_MAGIC {
        return Err(CheckpointError::BadMagic);
    }
    let version = u32_at(&header, 8);
    if version != CHECKPOINT_VERSION {
        return Err(CheckpointError::UnsupportedVersion(version));
    }
    if xxh3_64(&header[..40]) != u64_at(&header, 40)
        || u32_at(&header, 12) != 0
        || header[48..].iter().any(|&b| b != 0)
    {
        return Err(CheckpointError::Header);
    }
    let expected = u64_at(&header, 16);
    if expected != actual {
        return Err(CheckpointError::FileLength { expected, actual });
    }
    let state_len = u64_at(&header, 24);
    if state_len > MAX_STATE_LEN || HEADER + state_len > actual {
        return Err(CheckpointError::StateLength(state_len));
    }
    let mut json = vec![0u8; state_len as usize];
    file.read_exact(&mut json).map_err(io)?;
    if xxh3_64(&json) != u64_at(&header, 32) {
        return Err(CheckpointError::StateChecksum);
    }
    let state: State = serde_json::from_slice(&json).map_err(CheckpointError::StateJson)?;

    let (spec, config, batch_size, patience) = identity(trainer, fit);
    if state.spec != spec {
        return Err(CheckpointError::Mismatch("the model spec"));
    }
    if state.config != config {
        return Err(CheckpointError::Mismatch("the training configuration"));
    }
    if state.batch_size != batch_size {
        return Err(CheckpointError::Mismatch("the batch size"));
    }
    if state.patience != patience || state.plateau != plateau_bits(fit.plateau) {
        return Err(CheckpointError::Mismatch("early stopping or plateau"));
    }
    let lr_scale = f32::from_bits(state.lr_scale);
    let consistent = state.reports.len() == state.epoch
        && state
            .reports
            .iter()
            .enumerate()
            .all(|(i, r)| r.epoch == i + 1)
        && lr_scale.is_finite()
        && lr_scale > 0.0
        && state.best_loss.is_some() == state.reports.iter().any(|r| r.valid_loss.is_some())
        && (!state.best_params || state.best_loss.is_some());
    if !consistent {
        return Err(CheckpointError::State(
            "epochs, reports, best loss or learning-rate scale disagree".into(),
        ));
    }

    let data_start = align64(HEADER + state_len);
    let mut best = state.best_params.then(|| trainer.params.clone());
    {
        let list = tensors_mut(trainer, best.as_mut());
        let describe = |name: &str, len: u64| format!("{name}[{len}]");
        if state.tensors.len() != list.len() {
            let position = state.tensors.len().min(list.len());
            return Err(CheckpointError::Tensors {
                position,
                found: state
                    .tensors
                    .get(position)
                    .map_or("the end".into(), |e| describe(&e.name, e.len)),
                expected: list
                    .get(position)
                    .map_or("the end".into(), |(n, t)| describe(n, t.len() as u64)),
            });
        }
        for (position, (e, (name, t))) in state.tensors.iter().zip(&list).enumerate() {
            if e.name != *name || e.len != t.len() as u64 {
                return Err(CheckpointError::Tensors {
                    position,
                    found: describe(&e.name, e.len),
                    expected: describe(name, t.len() as u64),
                });
            }
            let end = e
                .len
                .checked_mul(4)
                .and_then(|n| n.checked_add(e.offset))
                .and_then(|n| n.checked_add(data_start));
            if end.is_none_or(|end| end > actual) {
                return Err(CheckpointError::TensorBounds(e.name.clone()));
            }
        }
        for (e, (_, t)) in state.tensors.iter().zip(list) {
            let bytes: &mut [u8] = bytemuck::cast_slice_mut(t);
            file.seek(SeekFrom::Start(data_start + e.offset))
                .map_err(io)?;
            file.read_exact(bytes).map_err(io)?;
            if checksum(bytes) != e.checksum {
                return Err(CheckpointError::TensorChecksum(e.name.clone()));
            }
        }
    }
    trainer.step = state.step;
    trainer.lr_scale = lr_scale;
    trainer.repack();
    Ok(FitState {
        epoch: state.epoch,
        stopped: state.stopped,
        best_loss: state.best_loss.map(f64::from_bits),
        best_params: best,
        since_best: state.since_best,
        since_decay: state.since_decay,
        reports: state
            .reports
            .into_iter()
            .map(|r| EpochReport {
                epoch: r.epoch,
                train_loss: f64::from_bits(r.train_loss),
                valid_loss: r.valid_loss.map(f64::from_bits),
                samples: r.samples,
                seconds: f64::from_bits(r.seconds),
                learning_rate: f32::from_bits(r.learning_rate),
            })
            .collect(),
    })
}

//! Throughput measurement of the scorer and the trainer on random samples: what `deepfm bench`
//! and `deepfm bench-train` time.

use deepfm::fixtures::random_batch;
use deepfm::{
    BatchBuf, Model, PairedScorer, ScoreError, Scratch, ScratchPool, score, score_parallel,
};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one measurement found.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// Samples scored per second.
    pub samples_per_sec: f64,
    /// Rows per call.
    pub batch: usize,
    /// Threads used.
    pub threads: usize,
    /// Mean wall time of one call, in microseconds.
    pub micros_per_call: f64,
    /// Idle time between calls, in milliseconds (0: back to back).
    pub gap_ms: f64,
    /// Calls timed.
    pub calls: u64,
    /// Instruction set of the kernels.
    pub isa: &'static str,
    /// Precision of the hidden layers, with the int8 kernels in brackets (`f32`,
    /// `int8 (avx512-vnni)`).
    pub mlp: String,
    /// Format of the embedding rows (`f32`, `f16`, `bf16`, `int8`).
    pub table: &'static str,
    /// How the threads were used: `single` ([`score`]), `parallel` ([`score_parallel`] over
    /// rows) or `paired` (batch 1 on two threads: [`PairedScorer`], each layer split between
    /// two cores).
    pub mode: &'static str,
}

/// Rows of distinct random samples the benchmark cycles through, so that repeated calls do not
/// find their embedding rows in cache more often than a service would.
const DISTINCT_ROWS: usize = 1 << 17;

/// Scores random batches of `batch` rows with `threads` threads for about `seconds` (after a
/// short warm-up), sleeping `gap` between calls, and reports the throughput. Batch 1 on two
/// threads uses the paired (two-core latency) mode. A gap is what a service at a low request
/// rate sees: the weights and the table's rows leave the caches (and the core may slow down)
/// while it waits. Only the calls are timed.
pub fn run_paced(
    model: &Arc<Model>,
    batch: usize,
    threads: usize,
    seconds: f64,
    seed: u64,
    gap: Duration,
) -> Result<BenchResult, ScoreError> {
    let batch = batch.max(1);
    let threads = threads.max(1);
    let distinct = DISTINCT_ROWS.div_ceil(batch).clamp(2, 1024);
    let batches: Vec<BatchBuf> = (0..distinct)
        .map(|i| random_batch(model.spec(), batch, seed.wrapping_add(i as u64)))
        .collect();
    let mut out = vec![0.0f32; batch];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool can be built");
    let scratches = ScratchPool::with_threads(model, threads);
    let mut scratch = Scratch::new(model);
    let mode = match (batch, threads) {
        (_, 1) => "single",
        (1, 2) => "paired",
        _ => "parallel",
    };
    let mut paired = (mode == "paired")
        .then(|| PairedScorer::new(model.clone()).expect("a helper thread can be started"));
    let mut call = |b: &BatchBuf, out: &mut [f32]| -> Result<(), ScoreError> {
        match (&mut paired, threads) {
            (Some(p), _) => p.score(b, out),
            (None, 1) => score(model, b, &mut scratch, out),
            (None, _) => pool.install(|| score_parallel(model, b, &scratches, out)),
        }
    };
    let warmup = Instant::now();
    for b in batches.iter().cycle() {
        call(b, &mut out)?;
        if warmup.elapsed() > Duration::from_secs_f64((seconds * 0.1).min(0.5)) {
            break;
        }
    }
    let start = Instant::now();
    let mut calls = 0u64;
    let mut busy = Duration::ZERO;
    for b in batches.iter().cycle() {
        if !gap.is_zero() {
            std::thread::sleep(gap);
        }
        let t = Instant::now();
        call(b, &mut out)?;
        busy += t.elapsed();
        calls += 1;
        if start.elapsed().as_secs_f64() >= seconds {
            break;
        }
    }
    let elapsed = busy.as_secs_f64();
    Ok(BenchResult {
        samples_per_sec: (calls as f64 * batch as f64) / elapsed,
        batch,
        threads,
        micros_per_call: elapsed * 1e6 / calls as f64,
        gap_ms: gap.as_secs_f64() * 1e3,
        calls,
        isa: model.isa().name(),
        mlp: match model.int8_path() {
            Some(path) => format!("int8 ({})", path.name()),
            None => model.mlp_precision().name().to_string(),
        },
        table: model.spec().table.name(),
        mode,
    })
}

/// What one training-throughput measurement found.
#[derive(Debug, Clone, Serialize)]
pub struct TrainBenchResult {
    /// Samples trained on per second.
    pub samples_per_sec: f64,
    /// Rows per step.
    pub batch: usize,
    /// Threads of the trainer's pool.
    pub threads: usize,
    /// Mean wall time of one step, in milliseconds.
    pub millis_per_step: f64,
    /// Steps timed.
    pub steps: u64,
    /// Instruction set of the kernels.
    pub isa: &'static str,
}

/// Batches the training benchmark cycles through (the PyTorch peer script does the same).
const TRAIN_BATCHES: usize = 16;

/// Trains on random batches of `batch` rows (uniform ids, numeric values in `[0, 3)`, labels
/// 1 with probability 1/4 for BCE or uniform in 1–5 for MSE) for about `seconds` after a short
/// warm-up, and reports the throughput.
pub fn run_training(
    spec: &deepfm::ModelSpec,
    config: deepfm::train::TrainConfig,
    batch: usize,
    seconds: f64,
) -> Result<TrainBenchResult, deepfm::train::TrainError> {
    use deepfm::rng::Rng;
    use deepfm::train::{Loss, Trainer};
    let batch = batch.max(1);
    let loss = config.loss;
    let threads = config.threads;
    // Chosen here, once, so that the result names the kernels the trainer ran on.
    let isa = deepfm::Isa::detect()?;
    let mut trainer = Trainer::with_isa(spec.clone(), config, isa)?;
    let mut rng = Rng::new(7);
    let data: Vec<(BatchBuf, Vec<f32>)> = (0..TRAIN_BATCHES)
        .map(|i| {
            let labels = (0..batch)
                .map(|_| match loss {
                    Loss::Bce => (rng.uniform() < 0.25) as u8 as f32,
                    Loss::Mse => 1.0 + 4.0 * rng.uniform(),
                })
                .collect();
            (random_batch(spec, batch, 1000 + i as u64), labels)
        })
        .collect();
    let warmup = Instant::now();
    for (b, y) in data.iter().cycle() {
        trainer.step(b, y)?;
        if warmup.elapsed() > Duration::from_secs_f64((seconds * 0.1).min(1.0)) {
            break;
        }
    }
    let start = Instant::now();
    let mut steps = 0u64;
    for (b, y) in data.iter().cycle() {
        trainer.step(b, y)?;
        steps += 1;
        if start.elapsed().as_secs_f64() >= seconds {
            break;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(TrainBenchResult {
        samples_per_sec: steps as f64 * batch as f64 / elapsed,
        batch,
        threads,
        millis_per_step: elapsed * 1e3 / steps as f64,
        steps,
        isa: isa.name(),
    })
}

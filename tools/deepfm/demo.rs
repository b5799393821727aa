//! `deepfm demo`: the recommender tutorial, then a Criteo-like model built, scored at full
//! speed and checked against the f64 reference.

use crate::recommender;
use crate::resources::{temp_dir, thread_pool};
use anyhow::{Result, bail};
use deepfm::reference::{max_relative_error, score_reference};
use deepfm::{BatchBuf, Model, Scratch, ScratchPool, fixtures};
use std::time::Instant;

/// `deepfm demo`: `samples` random samples scored on `threads` threads (default: all cores).
pub fn demo(samples: usize, threads: Option<usize>) -> Result<()> {
    let dir = temp_dir()?;
    recommender::tutorial(dir.path(), threads)?;
    let spec = fixtures::criteo_like();
    let start = Instant::now();
    let path = fixtures::write_random_model(dir.path().join("demo.dfm"), &spec, 7)?;
    let written = start.elapsed();
    let start = Instant::now();
    let model = Model::open(&path)?;
    let opened = start.elapsed();
    println!(
        "demo model: Criteo-like, {} fields, {} embedding rows, D={}, hidden {:?}, {:.1} MB \
         (written in {:.2} s, opened in {:.2} ms, kernels: {})",
        spec.fields.len(),
        spec.total_rows()?,
        spec.embedding_dim,
        spec.hidden,
        model.file().file_len() as f64 / 1e6,
        written.as_secs_f64(),
        opened.as_secs_f64() * 1e3,
        model.isa().name()
    );
    let pool = thread_pool(threads)?;
    let scratches = ScratchPool::with_threads(&model, pool.current_num_threads());
    let chunk = 65_536;
    let batches: Vec<BatchBuf> = (0..4)
        .map(|i| fixtures::random_batch(&spec, chunk, i))
        .collect();
    let mut out = vec![0.0f32; chunk];
    let mut checksum = 0.0f64;
    let start = Instant::now();
    let mut done = 0;
    while done < samples {
        let n = chunk.min(samples - done);
        let batch = &batches[(done / chunk) % batches.len()];
        pool.install(|| deepfm::score_parallel(&model, batch, &scratches, &mut out))?;
        checksum += out[..n].iter().map(|&s| s as f64).sum::<f64>();
        done += n;
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "scored {samples} samples in {elapsed:.2} s with {} threads: {:.0} samples/s \
         (mean score {:.4})",
        pool.current_num_threads(),
        samples as f64 / elapsed,
        checksum / samples as f64
    );
    let check = fixtures::random_batch(&spec, 1000, 99);
    let mut got = vec![0.0f32; check.len()];
    deepfm::score(&model, &check, &mut Scratch::new(&model), &mut got)?;
    let want = score_reference(&model, &check);
    let err = max_relative_error(&got, &want);
    println!(
        "agreement with the f64 reference on {} samples: max relative error {err:.2e} ({})",
        check.len(),
        if err <= 1e-5 {
            "ok, ≤ 1e-5"
        } else {
            "FAILED, > 1e-5"
        }
    );
    if err > 1e-5 {
        bail!("scores disagree with the reference");
    }
    Ok(())
}

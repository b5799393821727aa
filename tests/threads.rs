//! One `Model` shared by more scoring threads than the machine has cores: every thread's
//! scores are bit for bit those of a single thread, whichever entry point it uses (`score` with
//! its own `Scratch`, `score_parallel` on the shared rayon pool, `PairedScorer` with its helper
//! thread), while all of them run at once.

use deepfm::fixtures::{mixed_small, movielens_like, random_batch, write_random_model};
use deepfm::infer::BLOCK_ROWS;
use deepfm::{BatchBuf, Model, PairedScorer, Scratch, ScratchPool, score, score_parallel};
use std::sync::{Arc, Barrier};

/// Batch sizes crossing the kernels' paths: one row (GEMV), a ragged GEMM tile, exactly one
/// block (144 rows), one block and one row, several blocks.
const SIZES: [usize; 5] = [1, 7, 144, 145, 1000];

/// Rounds over all batches per thread.
const ROUNDS: usize = 6;

#[test]
fn threads_above_the_core_count_share_one_model() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (2 * cores).max(8);
    let dir = tempfile::tempdir().unwrap();
    for (name, spec) in [("mixed", mixed_small()), ("movielens", movielens_like())] {
        let path = write_random_model(dir.path().join(name), &spec, 11).unwrap();
        let model = Arc::new(Model::open(&path).unwrap());
        let batches: Vec<BatchBuf> = (0..2 * SIZES.len())
            .map(|i| random_batch(&spec, SIZES[i % SIZES.len()], 100 + i as u64))
            .collect();
        // The single-thread answer.
        let mut scratch = Scratch::new(&model);
        let want: Vec<Vec<f32>> = batches
            .iter()
            .map(|b| {
                let mut out = vec![0.0f32; b.len()];
                score(&model, b, &mut scratch, &mut out).unwrap();
                out
            })
            .collect();

        let start = Barrier::new(threads);
        std::thread::scope(|s| {
            for t in 0..threads {
                let (model, batches, want, start) = (model.clone(), &batches, &want, &start);
                s.spawn(move || {
                    let mut scratch = Scratch::new(&model);
                    let pool = ScratchPool::with_threads(&model, 2);
                    let mut paired = (t % 3 == 2).then(|| PairedScorer::new(model.clone()).unwrap());
                    start.wait();
                    // A paired scorer waits for its helper after every layer of every row; with
                    // more threads than cores the helper is often descheduled, so these threads
                    // score fewer rows.
                    let rounds = if paired.is_some() { 2 } else { ROUNDS };
                    for round in 0..rounds {
                        // Each thread walks the batches in its own order.
                        for k in 0..batches.len() {
                            let i = (k * (t + 1) + round) % batches.len();
                            let batch = &batches[i];
                            if paired.is_some() && batch.len() > BLOCK_ROWS + 1 {
                                continue;
                            }
                            let mut out = vec![f32::NAN; batch.len()];
                            match (t % 3, paired.as_mut()) {
                                (0, _) => score(&model, batch, &mut scratch, &mut out).unwrap(),
                                (1, _) => score_parallel(&model, batch, &pool, &mut out).unwrap(),
                                (_, Some(p)) => p.score(batch, &mut out).unwrap(),
                                (_, None) => unreachable!("every third thread has a PairedScorer"),
                            }
                            for (r, (got, want)) in out.iter().zip(&want[i]).enumerate() {
                                assert_eq!(
                                    got.to_bits(),
                                    want.to_bits(),
                                    "{name}: thread {t} (kind {}), batch {i}, row {r}: {got} vs {want}",
                                    t % 3
                                );
                            }
                        }
                    }
                });
            }
        });
    }
}

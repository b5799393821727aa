//! End-to-end scoring: Criteo-like and MovieLens-like models, batch sizes 1 to 65,536, one
//! thread and all threads. Run with `cargo bench --bench scoring`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use deepfm::fixtures::{criteo_like, movielens_like, random_batch, write_random_model};
use deepfm::{Model, ModelSpec, PairedScorer, Scratch, ScratchPool, score, score_parallel};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

fn bench_shape(c: &mut Criterion, name: &str, spec: ModelSpec) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_random_model(dir.path().join("m.dfm"), &spec, 1).unwrap();
    let model = Arc::new(Model::open(&path).unwrap());
    let mut group = c.benchmark_group(format!("score/{name}"));
    group
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    let all = rayon::current_num_threads();
    let pool = ScratchPool::new(&model);
    for batch_rows in [1usize, 16, 256, 4096, 65536] {
        let batch = random_batch(&spec, batch_rows, 7);
        let mut out = vec![0.0f32; batch_rows];
        group.throughput(Throughput::Elements(batch_rows as u64));
        let mut scratch = Scratch::new(&model);
        group.bench_function(BenchmarkId::new("1-thread", batch_rows), |b| {
            b.iter(|| score(&model, black_box(&batch), &mut scratch, &mut out).unwrap())
        });
        if all > 1 && batch_rows == 1 {
            // The two-core latency mode.
            let mut paired =
                PairedScorer::new(model.clone()).expect("a helper thread can be started");
            group.bench_function(BenchmarkId::new("2-threads-paired", batch_rows), |b| {
                b.iter(|| paired.score(black_box(&batch), &mut out).unwrap())
            });
        }
        if all > 1 && batch_rows >= 256 {
            group.bench_function(
                BenchmarkId::new(format!("{all}-threads"), batch_rows),
                |b| b.iter(|| score_parallel(&model, black_box(&batch), &pool, &mut out).unwrap()),
            );
        }
    }
    group.finish();
}

fn scoring(c: &mut Criterion) {
    bench_shape(c, "criteo-like", criteo_like());
    bench_shape(c, "movielens-like", movielens_like());
}

criterion_group!(benches, scoring);
criterion_main!(benches);

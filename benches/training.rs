//! Training throughput (samples/s) on the Criteo-like and MovieLens-like shapes at batch 256
//! and 4096, with batch norm and lazy Adam for the embeddings, on every core. Run with
//! `cargo bench --bench training`; `deepfm bench-train` measures one configuration.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use deepfm::fixtures::{criteo_like, movielens_like, random_batch};
use deepfm::rng::Rng;
use deepfm::train::{BatchNorm, Loss, TrainConfig, Trainer};
use deepfm::{ModelSpec, Output};
use std::hint::black_box;
use std::time::Duration;

fn bench_shape(c: &mut Criterion, name: &str, spec: ModelSpec) {
    let threads = rayon::current_num_threads();
    let loss = match spec.output {
        Output::Sigmoid => Loss::Bce,
        Output::Linear => Loss::Mse,
    };
    let config = TrainConfig {
        loss,
        batch_norm: Some(BatchNorm::default()),
        threads,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(spec.clone(), config).unwrap();
    let mut group = c.benchmark_group(format!("train/{name}"));
    group
        .measurement_time(Duration::from_secs(5))
        .sample_size(10);
    let mut rng = Rng::new(3);
    for rows in [256usize, 4096] {
        // A few distinct batches, so embedding rows are not always in cache.
        let batches: Vec<_> = (0..8)
            .map(|i| {
                let labels: Vec<f32> = (0..rows)
                    .map(|_| match loss {
                        Loss::Bce => (rng.uniform() < 0.25) as u8 as f32,
                        Loss::Mse => 1.0 + 4.0 * rng.uniform(),
                    })
                    .collect();
                (random_batch(&spec, rows, 100 + i), labels)
            })
            .collect();
        group.throughput(Throughput::Elements(rows as u64));
        let mut next = 0;
        group.bench_function(BenchmarkId::new(format!("{threads}-threads"), rows), |b| {
            b.iter(|| {
                let (batch, labels) = &batches[next % batches.len()];
                next += 1;
                trainer.step(black_box(batch), labels).unwrap()
            })
        });
    }
    group.finish();
}

fn training(c: &mut Criterion) {
    bench_shape(c, "criteo-like", criteo_like());
    bench_shape(c, "movielens-like", movielens_like());
}

criterion_group!(benches, training);
criterion_main!(benches);

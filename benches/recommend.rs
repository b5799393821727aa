//! The recommender API: `recommend` over a 100,000-item catalogue (items scored per second),
//! and `batch_predict` against `predict` in a loop from one and from two threads (pairs per
//! second). Tutorial architecture (D = 32, 256-128-64, batch norm), trained one epoch on planted
//! ratings.
//! Run with `cargo bench --bench recommend`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use deepfm::api::DeepFM;
use deepfm::fixtures::planted_ratings;
use std::hint::black_box;
use std::time::Duration;

fn recommender(c: &mut Criterion) {
    let (users, items, ratings) = planted_ratings(5_000, 100_000, 400_000, 3);
    let model = DeepFM::builder()
        .epochs(1)
        .fit(&users, &items, &ratings)
        .unwrap();
    let catalogue = model.items().len() as u64;
    let mut group = c.benchmark_group("recommend");
    group
        .measurement_time(Duration::from_secs(5))
        .sample_size(10);
    group.throughput(Throughput::Elements(catalogue));
    group.bench_function("top-10 of all items", |b| {
        b.iter(|| model.recommend(black_box(&users[0]), 10).unwrap())
    });
    group.finish();

    let pairs: Vec<(u32, u32)> = users
        .iter()
        .copied()
        .zip(items.iter().copied())
        .take(4096)
        .collect();
    let mut group = c.benchmark_group("predict");
    group
        .measurement_time(Duration::from_secs(5))
        .sample_size(10);
    group.throughput(Throughput::Elements(pairs.len() as u64));
    group.bench_function("batch_predict 4096 pairs", |b| {
        b.iter(|| model.batch_predict(black_box(&pairs)).unwrap())
    });
    group.bench_function("predict loop 4096 pairs", |b| {
        b.iter(|| pairs.iter().map(|(u, i)| model.predict(u, i)).sum::<f32>())
    });
    // As a service's request threads call it: the same pairs split between two threads, each
    // scoring with a scratch of its own (against the loop above on one thread).
    let (first, second) = pairs.split_at(pairs.len() / 2);
    let predict_all = |pairs: &[(u32, u32)]| {
        pairs
            .iter()
            .map(|(u, i)| model.predict(black_box(u), black_box(i)))
            .sum::<f32>()
    };
    group.bench_function("predict loop 4096 pairs from 2 threads", |b| {
        b.iter(|| {
            std::thread::scope(|s| {
                let other = s.spawn(|| predict_all(second));
                predict_all(first) + other.join().expect("the other thread scores")
            })
        })
    });
    group.finish();
}

criterion_group!(benches, recommender);
criterion_main!(benches);

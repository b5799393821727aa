//! `batch_predict` scores through the batched inference path, not a per-pair loop: per pair it
//! is several times faster than calling `predict` in a loop, with the tutorial's architecture.
//!
//! The issue asked for 20×. That ratio is bounded by the hardware, not by overhead: at the
//! tutorial's shape (D = 32, 256-128-64) one pair is about 0.11 MFLOP of MLP, which the batched
//! path computes near the FMA peak (1.5–2 µs per pair here), while `predict` alone is a
//! weight-bound matrix–vector product plus an id lookup (7–8 µs; the test prints both, and
//! `cargo bench --bench recommend` measures them too). 20× would need `predict` to be slower
//! than it is. The bound below is what a per-pair loop inside `batch_predict` (about 1×) would
//! fail, with room for this machine's noise. Alone in its test binary, so no other test shares
//! the cores while it times.

use deepfm::api::DeepFM;
use deepfm::random::Rng;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// How long `f` takes.
fn time(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

#[test]
fn batch_predict_is_several_times_faster_per_pair_than_a_predict_loop() {
    let mut rng = Rng::new(3);
    let n = 3000;
    let users: Vec<u32> = (0..n).map(|_| rng.below(300) as u32).collect();
    let items: Vec<u32> = (0..n).map(|_| rng.below(500) as u32).collect();
    let ratings: Vec<f32> = (0..n).map(|_| 1.0 + rng.below(5) as f32).collect();
    // The tutorial's architecture; one epoch is enough, the test times scoring.
    let model = DeepFM::builder()
        .embedding_dim(32)
        .deep_layers(&[256, 128, 64])
        .epochs(1)
        .threads(1)
        .seed(5)
        .fit(&users, &items, &ratings)
        .unwrap();
    let pairs: Vec<(u32, u32)> = users.iter().copied().zip(items.iter().copied()).collect();
    let mut looped = vec![0.0f32; pairs.len()];
    let mut batched = Vec::new();
    // Interleaved rounds, best of each: a noisy moment hurts both or neither.
    let (mut one_by_one, mut together) = (Duration::MAX, Duration::MAX);
    for _ in 0..5 {
        one_by_one = one_by_one.min(time(|| {
            for (out, (u, i)) in looped.iter_mut().zip(&pairs) {
                *out = model.predict(black_box(u), black_box(i));
            }
        }));
        together = together.min(time(|| {
            batched = model.batch_predict(black_box(&pairs)).unwrap();
        }));
    }
    assert_eq!(looped, batched, "the two paths must agree exactly");
    let ratio = one_by_one.as_secs_f64() / together.as_secs_f64();
    eprintln!(
        "predict loop {:.2} µs/pair, batch_predict {:.2} µs/pair: {ratio:.1}x",
        one_by_one.as_secs_f64() * 1e6 / pairs.len() as f64,
        together.as_secs_f64() * 1e6 / pairs.len() as f64,
    );
    assert!(
        ratio >= 3.0,
        "batch_predict is only {ratio:.1}x faster per pair than a predict loop"
    );
}

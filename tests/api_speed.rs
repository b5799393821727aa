//! `batch_predict` scores through the batched inference path, not a per-pair loop: per pair it
//! is several times faster than calling `predict` in a loop, with the tutorial's architecture.
//! And `predict` called from several threads at once runs in parallel (each call has a scratch
//! of its own), as a service's request threads call it.
//!
//! The issue asked for 20×. That ratio is bounded by the hardware, not by overhead: at the
//! tutorial's shape (D = 32, 256-128-64) one pair is about 0.11 MFLOP of MLP, which the batched
//! path computes near the FMA peak (1.5–2 µs per pair here), while `predict` alone is a
//! weight-bound matrix–vector product plus an id lookup (7–8 µs; the test prints both, and
//! `cargo bench --bench recommend` measures them too). 20× would need `predict` to be slower
//! than it is. The bound below is what a per-pair loop inside `batch_predict` (about 1×) would
//! fail, with room for this machine's noise. The timing tests are alone in their test binary
//! and take turns (`CORES`), so no other test shares the cores while one times.

use deepfm::api::DeepFM;
use deepfm::rng::Rng;
use std::hint::black_box;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Held by each timing test for its whole run: they must not time each other.
static CORES: Mutex<()> = Mutex::new(());

fn cores_to_myself() -> MutexGuard<'static, ()> {
    CORES.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long `f` takes.
fn time(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

/// A model and the pairs it was fitted on.
type Fitted = (DeepFM<u32, u32>, Vec<(u32, u32)>);

/// The tutorial's architecture, fitted once (one epoch is enough: the tests time scoring), and
/// the training pairs.
fn tutorial_model() -> &'static Fitted {
    static MODEL: OnceLock<Fitted> = OnceLock::new();
    MODEL.get_or_init(|| {
        let mut rng = Rng::new(3);
        let n = 3000;
        let users: Vec<u32> = (0..n).map(|_| rng.below(300) as u32).collect();
        let items: Vec<u32> = (0..n).map(|_| rng.below(500) as u32).collect();
        let ratings: Vec<f32> = (0..n).map(|_| 1.0 + rng.below(5) as f32).collect();
        let model = DeepFM::builder()
            .embedding_dim(32)
            .deep_layers(&[256, 128, 64])
            .epochs(1)
            .threads(1)
            .seed(5)
            .fit(&users, &items, &ratings)
            .unwrap();
        let pairs = users.iter().copied().zip(items.iter().copied()).collect();
        (model, pairs)
    })
}

#[test]
fn batch_predict_is_several_times_faster_per_pair_than_a_predict_loop() {
    let (model, pairs) = tutorial_model();
    let _alone = cores_to_myself();
    let mut looped = vec![0.0f32; pairs.len()];
    let mut batched = Vec::new();
    // Interleaved rounds, best of each: a noisy moment hurts both or neither.
    let (mut one_by_one, mut together) = (Duration::MAX, Duration::MAX);
    for _ in 0..5 {
        one_by_one = one_by_one.min(time(|| {
            for (out, (u, i)) in looped.iter_mut().zip(pairs) {
                *out = model.predict(black_box(u), black_box(i));
            }
        }));
        together = together.min(time(|| {
            batched = model.batch_predict(black_box(pairs)).unwrap();
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

/// Plain arithmetic with no memory traffic and nothing shared between threads: what a second
/// thread can add on this machine right now.
fn spin(iterations: u64) -> u64 {
    let mut x = 1u64;
    for _ in 0..iterations {
        x = black_box(
            x.wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407),
        );
    }
    x
}

/// How long `work` takes on one thread of its own, and split in two halves on two threads.
fn one_and_two_threads<T: Sync + ?Sized>(
    work: &T,
    halves: (&T, &T),
    run: impl Fn(&T) + Sync,
) -> (Duration, Duration) {
    let one = time(|| std::thread::scope(|s| drop(s.spawn(|| run(work)))));
    let two = time(|| {
        std::thread::scope(|s| {
            s.spawn(|| run(halves.0));
            s.spawn(|| run(halves.1));
        })
    });
    (one, two)
}

// Issue 16: every thread outside rayon used to score with the same scratch, behind one lock, so
// `predict` from two request threads took as long as from one (about 1×). Now each call has a
// scratch of its own. Rounds are interleaved and the best of each kept, until two threads show
// the speed-up or the time is up: a noisy neighbour can delay the evidence but not fake it, as
// threads that queue on one lock cannot beat one thread however quiet the machine is. When the
// time is up, the verdict depends on the control (plain arithmetic on one and two threads, timed
// in the same rounds): if it never gained from the second thread either, another process held
// that core throughout and the run proves nothing; if it did, `predict` should have too.
#[test]
fn predict_from_two_threads_is_faster_than_from_one() {
    const SPEEDUP: f64 = 1.3;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 2 {
        eprintln!("skipped: one core, nothing to run in parallel on");
        return;
    }
    let (model, pairs) = tutorial_model();
    let _alone = cores_to_myself();
    let predict_all = |pairs: &[(u32, u32)]| {
        for (u, i) in pairs {
            black_box(model.predict(black_box(u), black_box(i)));
        }
    };
    let halves = pairs.split_at(pairs.len() / 2);
    // About as long as a round of `predict` (a few ms).
    let spin_work = [20_000_000u64];
    let spin_halves = ([10_000_000u64], [10_000_000u64]);
    let spin_all = |n: &[u64]| {
        black_box(spin(n[0]));
    };
    let best = |a: &mut (Duration, Duration), b: (Duration, Duration)| {
        *a = (a.0.min(b.0), a.1.min(b.1));
    };
    let speedup = |(one, two): (Duration, Duration)| one.as_secs_f64() / two.as_secs_f64();
    let (mut predict, mut control) = (
        (Duration::MAX, Duration::MAX),
        (Duration::MAX, Duration::MAX),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut rounds = 0;
    while speedup(predict) < SPEEDUP && Instant::now() < deadline {
        best(
            &mut predict,
            one_and_two_threads(&pairs[..], halves, predict_all),
        );
        best(
            &mut control,
            one_and_two_threads(
                &spin_work[..],
                (&spin_halves.0[..], &spin_halves.1[..]),
                spin_all,
            ),
        );
        rounds += 1;
    }
    let per_second = |d: Duration| pairs.len() as f64 / d.as_secs_f64();
    eprintln!(
        "predict from 1 thread {:.0} pairs/s, from 2 threads {:.0} pairs/s: {:.2}x; plain \
         arithmetic {:.2}x (best of {rounds} rounds)",
        per_second(predict.0),
        per_second(predict.1),
        speedup(predict),
        speedup(control),
    );
    if speedup(predict) >= SPEEDUP {
        return;
    }
    assert!(
        speedup(control) < 1.7,
        "two threads ran plain arithmetic {:.2}x as fast as one, but predict only {:.2}x: \
         calls from different threads wait for each other",
        speedup(control),
        speedup(predict),
    );
    eprintln!("inconclusive: another process held the second core throughout");
}

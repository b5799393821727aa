//! Two-thread latency mode: one sample scored by two cores at once.
//!
//! At batch 1 the MLP is bound by reading its weights (2.3 MB for the Criteo-like model, more
//! than one core's L2). [`PairedScorer`] keeps a helper thread that computes half of the output
//! panels of every layer while the calling thread computes the other half, so each core reads
//! half the weights (and, where they fit, keeps them in its own L2). The two meet after every
//! layer through atomics, not a lock: a lock's wake-up costs more than a layer takes.
//!
//! Each scorer needs two cores of its own: with more busy threads than cores the halves wait
//! on each other (the waiting side yields after a short spin, so this is slow, not stuck).
//!
//! The cost is a second core: after each call the helper spins for [`SPIN_AFTER_CALL`] waiting
//! for the next one (so a steady stream of requests never waits for it to wake), then sleeps;
//! a call that finds it asleep wakes it, which costs a few microseconds once.

use super::model::Model;
use super::score::{check_scores, gather_block, validate};
use super::scratch::Scratch;
use crate::batch::Columns;
use crate::batch::ScoreError;
use crate::kernels::dot::dot;
use crate::kernels::gemm::{NR, PackedMatrix};
use crate::kernels::gemv::{NonZeros, gemv_panels};
use std::cell::UnsafeCell;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the helper spins for new work after finishing some before it sleeps.
pub const SPIN_AFTER_CALL: Duration = Duration::from_micros(200);

/// The work of one layer, handed between the threads. Ownership alternates: the caller writes
/// `layer` and `input` before posting; both threads then read them and write disjoint halves of
/// the output buffer; after the helper reports the job finished, the caller owns everything
/// again.
struct Job {
    layer: usize,
    input: NonZeros,
}

struct Shared {
    model: Arc<Model>,
    /// Sequence number of the last job posted by the caller.
    posted: AtomicU64,
    /// Sequence number of the last job the helper finished.
    finished: AtomicU64,
    sleeping: AtomicBool,
    stop: AtomicBool,
    /// Set if the helper thread panicked (a bug): it will never finish a job again.
    dead: AtomicBool,
    job: UnsafeCell<Job>,
    /// The layer output, `widest` floats, owned by this struct (freed in `Drop`); reached only
    /// through this raw pointer so that the two threads never hold references to the same
    /// elements.
    output: *mut f32,
    widest: usize,
}

impl Shared {
    /// # Safety
    /// `range` must lie within the buffer, and no other live slice may overlap it while the
    /// returned one is used (guaranteed by the protocol on `Job`).
    #[allow(clippy::mut_from_ref)]
    unsafe fn output(&self, range: std::ops::Range<usize>) -> &mut [f32] {
        debug_assert!(range.start <= range.end && range.end <= self.widest);
        // SAFETY: forwarded from the contract above.
        unsafe { std::slice::from_raw_parts_mut(self.output.add(range.start), range.len()) }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: `output` came from `Box::into_raw` of a `widest`-long slice in `new`, and is
        // freed only here.
        drop(unsafe {
            Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.output, self.widest))
        });
    }
}

// SAFETY: `job` is only accessed under the protocol described on `Job`: the caller mutates it
// only between the helper's `finished` store (Release, observed with Acquire) and its next
// `posted` store (Release); the helper reads `layer`/`input` and writes its own half of
// `output` only between observing `posted` (Acquire) and storing `finished` (Release).
unsafe impl Sync for Shared {}
// SAFETY: the raw output pointer is owned by `Shared` (like a `Box<[f32]>`), so moving it
// between threads is as safe as moving a box.
unsafe impl Send for Shared {}

/// Scores samples one at a time on two cores. Create one per serving thread that wants
/// latency; it owns a helper thread until dropped.
pub struct PairedScorer {
    shared: Arc<Shared>,
    helper: std::thread::Thread,
    join: Option<JoinHandle<()>>,
    scratch: Scratch,
    sequence: u64,
}

/// Waits, when dropped, until the helper has finished job `sequence`, so that the job's memory
/// is never touched by the caller while the helper may still use it, even if the caller
/// unwinds in between.
struct WaitForHelper<'a> {
    shared: &'a Shared,
    sequence: u64,
}

impl Drop for WaitForHelper<'_> {
    fn drop(&mut self) {
        let mut spins = 0u32;
        while self.shared.finished.load(Ordering::Acquire) != self.sequence {
            if self.shared.dead.load(Ordering::Acquire) {
                return;
            }
            spins += 1;
            if spins < 4096 {
                std::hint::spin_loop();
            } else {
                // The helper was descheduled (more busy threads than cores): give it the core.
                std::thread::yield_now();
            }
        }
    }
}

/// Layers with fewer packed weight bytes than this are computed by the caller alone: handing
/// half of a small layer to another core costs more (two cross-core handoffs, about a
/// microsecond) than reading its weights from L2 (measured here: splitting the MovieLens-like
/// layers of 32–128 KiB made batch 1 slower, 8.0 µs against 6.4 µs alone).
pub const SPLIT_MIN_BYTES: usize = 256 << 10;

/// The panels the helper takes: the upper half of a large layer, none of a small one.
fn helper_panels(layer: &PackedMatrix) -> std::ops::Range<usize> {
    let panels = layer.n().div_ceil(NR);
    if panels < 2 || layer.bytes() < SPLIT_MIN_BYTES {
        panels..panels
    } else {
        panels.div_ceil(2)..panels
    }
}

impl PairedScorer {
    /// Starts the helper thread for `model`; fails only if the thread cannot be spawned.
    pub fn new(model: Arc<Model>) -> std::io::Result<PairedScorer> {
        let widest = model.layers.iter().map(|l| l.n()).max().unwrap_or(0).max(1);
        let input_width = model.input_width;
        let shared = Arc::new(Shared {
            posted: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            sleeping: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            dead: AtomicBool::new(false),
            job: UnsafeCell::new(Job {
                layer: 0,
                input: NonZeros::with_capacity(input_width.max(widest)),
            }),
            output: Box::into_raw(vec![0.0f32; widest].into_boxed_slice()).cast::<f32>(),
            widest,
            model: model.clone(),
        });
        let for_helper = shared.clone();
        let join = std::thread::Builder::new()
            .name("deepfm-paired".into())
            .spawn(move || {
                let run = std::panic::catch_unwind(AssertUnwindSafe(|| helper_loop(&for_helper)));
                if run.is_err() {
                    for_helper.dead.store(true, Ordering::Release);
                }
            })?;
        Ok(PairedScorer {
            scratch: Scratch::new(&model),
            shared,
            helper: join.thread().clone(),
            join: Some(join),
            sequence: 0,
        })
    }

    /// The model scored.
    pub fn model(&self) -> &Model {
        &self.shared.model
    }

    /// Scores every row of `batch` into `out`, row by row, each on both cores. Same validation
    /// and results as [`crate::score`] for one-row blocks.
    pub fn score<C: Columns + ?Sized>(
        &mut self,
        batch: &C,
        out: &mut [f32],
    ) -> Result<(), ScoreError> {
        let model = self.shared.model.clone();
        if model.int8.is_some() {
            // An int8 layer's weights are a quarter of the f32 ones and fit one core's L2:
            // splitting them would cost more in handoffs than it saves.
            return super::score::score(&model, batch, &mut self.scratch, out);
        }
        let rows = validate(&model, batch, out.len())?;
        let width = model.input_width;
        for (r, out) in out[..rows].iter_mut().enumerate() {
            gather_block(&model, batch, r..r + 1, &mut self.scratch);
            let x: &[f32] = &bytemuck::cast_slice(&self.scratch.x)[..width];
            let logit = mlp(&self.shared, &self.helper, &mut self.sequence, &model, x);
            let logit = logit + self.scratch.fm[0];
            *out = model.output.activate(model.clamp, logit);
        }
        check_scores(&out[..rows])
    }
}

/// The MLP of one gathered row, each layer split between the caller and the helper.
///
/// # Panics
/// If the helper thread has died (only a bug in this crate can kill it).
fn mlp(
    shared: &Shared,
    helper: &std::thread::Thread,
    sequence: &mut u64,
    model: &Model,
    x: &[f32],
) -> f32 {
    let job = shared.job.get();
    for (i, layer) in model.layers.iter().enumerate() {
        assert!(
            !shared.dead.load(Ordering::Acquire),
            "the deepfm-paired helper thread panicked"
        );
        {
            // SAFETY: the helper finished the previous job (or none was posted), so the
            // caller has exclusive access until it posts (see `Job`).
            let job = unsafe { &mut *job };
            job.layer = i;
            if i == 0 {
                job.input.gather(x);
            } else {
                // SAFETY: as above; the helper holds no part of the output now.
                job.input
                    .gather(unsafe { shared.output(0..model.layers[i - 1].n()) });
            }
        }
        let theirs = helper_panels(layer);
        let posted = !theirs.is_empty();
        let mut wait = None;
        if posted {
            *sequence += 1;
            // From here until `wait` is dropped the job belongs to both threads.
            wait = Some(WaitForHelper {
                shared,
                sequence: *sequence,
            });
            shared.posted.store(*sequence, Ordering::SeqCst);
            if shared.sleeping.load(Ordering::SeqCst) {
                helper.unpark();
            }
        }
        // SAFETY: while the job is posted both threads only read `input` and each writes
        // its own disjoint range of the output (ours: columns below `16 · theirs.start`).
        unsafe {
            let input = &(*job).input;
            let output = shared.output(0..(theirs.start * NR).min(layer.n()));
            gemv_panels(model.isa(), input, layer, 0..theirs.start, true, output);
        }
        drop(wait);
    }
    assert!(
        !shared.dead.load(Ordering::Acquire),
        "the deepfm-paired helper thread panicked"
    );
    // The output unit, on this thread: one dot product.
    let last = match model.layers.last() {
        // SAFETY: every posted job has finished; the caller owns the output again.
        Some(layer) => unsafe { shared.output(0..layer.n()) },
        None => x,
    };
    dot(model.isa(), last, &model.out_weight) + model.out_bias
}

fn helper_loop(shared: &Shared) {
    let mut seen = 0u64;
    let mut idle_since = Instant::now();
    loop {
        let posted = shared.posted.load(Ordering::Acquire);
        if posted == seen {
            if shared.stop.load(Ordering::Acquire) {
                return;
            }
            if idle_since.elapsed() < SPIN_AFTER_CALL {
                for _ in 0..64 {
                    std::hint::spin_loop();
                }
                continue;
            }
            // Announce the sleep, then look again: the caller either sees `sleeping` and
            // unparks, or posted before our second look (both SeqCst, so one of us sees the
            // other's write).
            shared.sleeping.store(true, Ordering::SeqCst);
            if shared.posted.load(Ordering::SeqCst) == seen && !shared.stop.load(Ordering::SeqCst) {
                std::thread::park();
            }
            shared.sleeping.store(false, Ordering::SeqCst);
            idle_since = Instant::now();
            continue;
        }
        seen = posted;
        let model = &shared.model;
        let job = shared.job.get();
        // SAFETY: the job is posted: the caller only reads `input` and writes the columns below
        // ours until we store `finished` (see `Job`).
        unsafe {
            let layer_index = (*job).layer;
            let layer = &model.layers[layer_index];
            let theirs = helper_panels(layer);
            let output = shared.output(theirs.start * NR..layer.n());
            gemv_panels(model.isa(), &(*job).input, layer, theirs, true, output);
        }
        shared.finished.store(seen, Ordering::Release);
        idle_since = Instant::now();
    }
}

impl Drop for PairedScorer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.helper.unpark();
        if let Some(join) = self.join.take() {
            let _ = join.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{criteo_like, mixed_small, random_batch, write_random_model};

    #[test]
    fn matches_single_thread_scoring() {
        let dir = tempfile::tempdir().unwrap();
        for (name, spec) in [("a", mixed_small()), ("b", criteo_like())] {
            let path = write_random_model(dir.path().join(name), &spec, 4).unwrap();
            let model = Arc::new(Model::open(&path).unwrap());
            let mut paired = PairedScorer::new(model.clone()).unwrap();
            let mut scratch = Scratch::new(&model);
            for seed in 0..20 {
                // One row: exactly what `score` computes for a one-row batch.
                let batch = random_batch(&spec, 1, seed);
                let (mut want, mut got) = ([0.0f32], [0.0f32]);
                crate::score(&model, &batch, &mut scratch, &mut want).unwrap();
                paired.score(&batch, &mut got).unwrap();
                assert_eq!(got, want, "{name} seed {seed}");
                if seed == 10 {
                    // Let the helper fall asleep, then make sure it wakes.
                    std::thread::sleep(SPIN_AFTER_CALL * 5);
                }
            }
            let batch = random_batch(&spec, 5, 99);
            let mut got = [0.0f32; 5];
            paired.score(&batch, &mut got).unwrap();
            let want = crate::reference::score_reference(&model, &batch);
            assert!(crate::reference::max_relative_error(&got, &want) <= 1e-5);
        }
    }
}

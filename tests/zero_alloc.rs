//! `score` performs no heap allocation after warm-up: counted by a global allocator, on the
//! scoring thread only (rayon's idle workers, left over from writing and opening the model, may
//! allocate on their own schedule under load, which says nothing about `score`).

use deepfm::fixtures::{criteo_like, mixed_small, random_batch, write_random_model};
use deepfm::{Model, Scratch, score};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Whether this thread's allocations are counted. A const-initialised `Cell` has no
    /// destructor and never allocates, so the allocator may read it.
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if COUNTED.with(Cell::get) {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
    }
}

// SAFETY: forwards to the system allocator unchanged, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn score_does_not_allocate_after_warm_up() {
    let dir = tempfile::tempdir().unwrap();
    for (name, spec, rows) in [("criteo", criteo_like(), 145), ("mixed", mixed_small(), 1)] {
        let path = write_random_model(dir.path().join(name), &spec, 1).unwrap();
        let model = Model::open(&path).unwrap();
        let batch = random_batch(&spec, rows, 2);
        let mut scratch = Scratch::new(&model);
        let mut out = vec![0.0f32; rows];
        score(&model, &batch, &mut scratch, &mut out).unwrap();
        let before = ALLOCATIONS.load(Ordering::SeqCst);
        COUNTED.with(|c| c.set(true));
        for _ in 0..1000 {
            score(&model, &batch, &mut scratch, &mut out).unwrap();
        }
        COUNTED.with(|c| c.set(false));
        let during = ALLOCATIONS.load(Ordering::SeqCst) - before;
        assert_eq!(during, 0, "{name}: {during} allocations in 1,000 calls");
    }
}

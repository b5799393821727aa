use super::BLOCK_ROWS;
use super::model::Model;
use crate::kernels::gemm::{Line, PackBuffer};
use crate::kernels::gemv::NonZeros;
use crate::kernels::quant::{QK, RowQuant};
use std::sync::{Mutex, MutexGuard};

fn lines_for(floats: usize) -> Vec<Line> {
    vec![Line::default(); floats.div_ceil(16)]
}

/// The shapes a [`Scratch`] is sized for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    /// Width of a row of the MLP input.
    input: usize,
    /// Widest hidden layer (at least one).
    width: usize,
}

impl Shape {
    fn of(model: &Model) -> Shape {
        Shape {
            input: model.input_width,
            width: model.max_hidden_width().max(1),
        }
    }

    fn fits(self, model: &Model) -> bool {
        self.input == model.input_width && self.width >= model.max_hidden_width()
    }
}

/// Per-thread buffers for one block of rows: the gathered embeddings, two activation buffers
/// and the FM terms. Allocated once by [`Scratch::new`]; scoring any batch size reuses them.
#[derive(Debug)]
pub struct Scratch {
    pub(crate) input: usize,
    pub(crate) width: usize,
    pub(crate) x: Vec<Line>,
    pub(crate) h: [Vec<Line>; 2],
    pub(crate) fm: Vec<f32>,
    pub(crate) nonzeros: NonZeros,
    pub(crate) pack: PackBuffer,
    /// A block's MLP input quantized for an int8 layer (rows of the widest input, rounded up
    /// to whole `k` groups), and how each row was quantized.
    pub(crate) quantized: Vec<u8>,
    pub(crate) row_quant: Vec<RowQuant>,
    /// One MLP input row's quantized columns, gathered (`infer::int8`).
    pub(crate) row: Vec<f32>,
}

impl Scratch {
    /// Buffers sized for `model` (about `BLOCK_ROWS` (144) `× (MLP input width + 2 × widest layer)` floats, a 192 KiB GEMM packing buffer, and one byte per input value for int8 layers).
    pub fn new(model: &Model) -> Scratch {
        Scratch::with_shape(Shape::of(model))
    }

    fn with_shape(shape: Shape) -> Scratch {
        let Shape { input, width } = shape;
        Scratch {
            input,
            width,
            x: lines_for(BLOCK_ROWS * input),
            h: [lines_for(BLOCK_ROWS * width), lines_for(BLOCK_ROWS * width)],
            fm: vec![0.0; BLOCK_ROWS],
            pack: PackBuffer::new(),
            nonzeros: NonZeros::with_capacity(width.max(input)),
            quantized: vec![0; BLOCK_ROWS * width.max(input).next_multiple_of(QK)],
            row_quant: vec![RowQuant::default(); BLOCK_ROWS],
            row: vec![0.0; input],
        }
    }

    /// True when this scratch fits `model`'s shapes.
    pub fn fits(&self, model: &Model) -> bool {
        Shape {
            input: self.input,
            width: self.width,
        }
        .fits(model)
    }
}

/// Scratches for callers that share one model: the workers of [`super::score_parallel`], or the
/// request threads of a service (what `api::DeepFM` does inside `predict`).
///
/// Every caller gets a scratch of its own, so callers never wait for each other's scoring: the
/// pool is a free list, locked only to take a scratch out and put it back. It starts with one
/// scratch per thread it was made for; when more callers score at once than it holds (more
/// request threads than rayon threads, or two parallel calls sharing the pool), it allocates
/// one more scratch per extra caller, once, and keeps it. Its size is therefore the most
/// callers that ever scored at the same time, and a caller that finds a free scratch allocates
/// nothing.
#[derive(Debug)]
pub struct ScratchPool {
    /// What every scratch of the pool is sized for, so that checking a model needs no lock.
    shape: Shape,
    free: Mutex<FreeList>,
}

#[derive(Debug)]
struct FreeList {
    scratches: Vec<Scratch>,
    /// Scratches in existence, free or taken: `scratches` always has room for all of them, so
    /// putting one back never allocates.
    total: usize,
}

impl ScratchPool {
    /// A scratch for each thread of the current rayon pool.
    pub fn new(model: &Model) -> ScratchPool {
        ScratchPool::with_threads(model, rayon::current_num_threads())
    }

    /// `threads` scratches (at least one) to start with; more are made when more callers score
    /// at once.
    pub fn with_threads(model: &Model, threads: usize) -> ScratchPool {
        let shape = Shape::of(model);
        let total = threads.max(1);
        // Room for as many again: a service's request threads usually outnumber the cores.
        let mut scratches = Vec::with_capacity(2 * total);
        scratches.extend((0..total).map(|_| Scratch::with_shape(shape)));
        ScratchPool {
            shape,
            free: Mutex::new(FreeList { scratches, total }),
        }
    }

    /// True when every scratch fits `model` (they all have the same shapes).
    pub fn fits(&self, model: &Model) -> bool {
        self.shape.fits(model)
    }

    /// A scratch for the caller alone until the guard is dropped: a free one, or a new one if
    /// every scratch is in use (see the type's documentation). Never waits for another
    /// caller's scoring.
    pub(crate) fn get(&self) -> PooledScratch<'_> {
        let taken = self.lock().scratches.pop();
        // Allocated outside the lock, so that others can take and return scratches meanwhile.
        let scratch = taken.unwrap_or_else(|| {
            let scratch = Scratch::with_shape(self.shape);
            let mut free = self.lock();
            free.total += 1;
            let room = free.total - free.scratches.len();
            free.scratches.reserve(room);
            scratch
        });
        PooledScratch {
            pool: self,
            scratch: Some(scratch),
        }
    }

    fn lock(&self) -> MutexGuard<'_, FreeList> {
        // The lock is held only to pop or push, which cannot leave the list half-changed, and
        // a scratch holds only numbers every use overwrites: poisoning carries no meaning here.
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A scratch taken from a [`ScratchPool`], put back when dropped.
#[derive(Debug)]
pub(crate) struct PooledScratch<'a> {
    pool: &'a ScratchPool,
    /// `Some` until dropped.
    scratch: Option<Scratch>,
}

impl std::ops::Deref for PooledScratch<'_> {
    type Target = Scratch;

    fn deref(&self) -> &Scratch {
        self.scratch.as_ref().expect("present until dropped")
    }
}

impl std::ops::DerefMut for PooledScratch<'_> {
    fn deref_mut(&mut self) -> &mut Scratch {
        self.scratch.as_mut().expect("present until dropped")
    }
}

impl Drop for PooledScratch<'_> {
    fn drop(&mut self) {
        if let Some(scratch) = self.scratch.take() {
            // Never allocates: the list has room for every scratch in existence.
            self.pool.lock().scratches.push(scratch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{criteo_like, mixed_small, write_random_model};
    use std::sync::mpsc;
    use std::time::Duration;

    fn model() -> (tempfile::TempDir, Model) {
        let dir = tempfile::tempdir().unwrap();
        let path = write_random_model(dir.path().join("m.dfm"), &mixed_small(), 1).unwrap();
        let model = Model::open(&path).unwrap();
        (dir, model)
    }

    // Issue 16: every thread outside rayon used to share the first scratch, so request threads
    // calling `DeepFM::predict` (an HTTP server's workers) queued on one lock.
    #[test]
    fn a_thread_outside_rayon_does_not_wait_for_another_ones_scratch() {
        let (_dir, model) = model();
        let pool = ScratchPool::with_threads(&model, 2);
        let held = pool.get();
        std::thread::scope(|s| {
            let (tx, rx) = mpsc::channel();
            let pool = &pool;
            s.spawn(move || {
                let _other = pool.get();
                tx.send(()).unwrap();
            });
            let got = rx.recv_timeout(Duration::from_secs(5));
            // Released before asserting, so that a blocked thread can finish and the scope end.
            drop(held);
            assert!(
                got.is_ok(),
                "a second thread waited for the scratch the first one holds"
            );
        });
    }

    #[test]
    fn more_callers_than_scratches_get_new_ones_which_the_pool_keeps() {
        let (_dir, model) = model();
        let pool = ScratchPool::with_threads(&model, 1);
        let taken: Vec<PooledScratch<'_>> = (0..5).map(|_| pool.get()).collect();
        let mut buffers: Vec<*const Line> = taken.iter().map(|s| s.x.as_ptr()).collect();
        buffers.sort();
        buffers.dedup();
        assert_eq!(buffers.len(), 5, "two callers were given the same scratch");
        assert!(taken.iter().all(|s| s.fits(&model)));
        drop(taken);
        let free = pool.lock();
        assert_eq!((free.total, free.scratches.len()), (5, 5));
        assert!(free.scratches.capacity() >= 5);
        drop(free);
        // Taken and put back again: reused, none made.
        drop((0..5).map(|_| pool.get()).collect::<Vec<_>>());
        assert_eq!(pool.lock().total, 5);
    }

    #[test]
    fn fits_compares_the_shapes() {
        let (dir, model) = model();
        let pool = ScratchPool::with_threads(&model, 2);
        assert!(pool.fits(&model));
        let path = write_random_model(dir.path().join("c.dfm"), &criteo_like(), 1).unwrap();
        let other = Model::open(&path).unwrap();
        assert!(!pool.fits(&other));
        assert!(!Scratch::new(&model).fits(&other));
    }
}

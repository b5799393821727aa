use super::BLOCK_ROWS;
use super::model::Model;
use crate::kernels::gemm::{Line, PackBuffer};
use crate::kernels::gemv::NonZeros;
use std::sync::{Mutex, MutexGuard};

fn lines_for(floats: usize) -> Vec<Line> {
    vec![Line::default(); floats.div_ceil(16)]
}

/// Per-thread buffers for one block of rows: the gathered embeddings, two activation buffers
/// and the FM terms. Allocated once by [`Scratch::new`]; scoring any batch size reuses them.
#[derive(Debug)]
pub struct Scratch {
    pub(crate) fields: usize,
    pub(crate) dim: usize,
    pub(crate) width: usize,
    pub(crate) x: Vec<Line>,
    pub(crate) h: [Vec<Line>; 2],
    pub(crate) fm: Vec<f32>,
    pub(crate) nonzeros: NonZeros,
    pub(crate) pack: PackBuffer,
}

impl Scratch {
    /// Buffers sized for `model` (about `BLOCK_ROWS` (144) `× (fields × D + 2 × widest layer)` floats, plus a 192 KiB GEMM packing buffer).
    pub fn new(model: &Model) -> Scratch {
        let width = model.max_hidden_width().max(1);
        Scratch {
            fields: model.fields.len(),
            dim: model.dim,
            width,
            x: lines_for(BLOCK_ROWS * model.fields.len() * model.dim),
            h: [lines_for(BLOCK_ROWS * width), lines_for(BLOCK_ROWS * width)],
            fm: vec![0.0; BLOCK_ROWS],
            pack: PackBuffer::new(),
            nonzeros: NonZeros::with_capacity(width.max(model.fields.len() * model.dim)),
        }
    }

    /// True when this scratch fits `model`'s shapes.
    pub fn fits(&self, model: &Model) -> bool {
        self.fields == model.fields.len()
            && self.dim == model.dim
            && self.width >= model.max_hidden_width()
    }
}

/// One [`Scratch`] per worker thread, for [`super::score_parallel`].
#[derive(Debug)]
pub struct ScratchPool {
    slots: Vec<Mutex<Scratch>>,
}

impl ScratchPool {
    /// A scratch for each thread of the current rayon pool.
    pub fn new(model: &Model) -> ScratchPool {
        ScratchPool::with_threads(model, rayon::current_num_threads())
    }

    /// `threads` scratches (at least one).
    pub fn with_threads(model: &Model, threads: usize) -> ScratchPool {
        ScratchPool {
            slots: (0..threads.max(1))
                .map(|_| Mutex::new(Scratch::new(model)))
                .collect(),
        }
    }

    /// True when every scratch fits `model`.
    pub fn fits(&self, model: &Model) -> bool {
        self.slots
            .iter()
            .all(|s| s.lock().unwrap_or_else(|e| e.into_inner()).fits(model))
    }

    /// The calling worker's scratch. Uncontended unless two parallel calls share the pool.
    pub(crate) fn get(&self) -> MutexGuard<'_, Scratch> {
        let i = rayon::current_thread_index().unwrap_or(0) % self.slots.len();
        // A panic while holding a scratch leaves only stale numbers in it, which every use
        // overwrites before reading: poisoning carries no meaning here.
        self.slots[i].lock().unwrap_or_else(|e| e.into_inner())
    }
}

//! Training data sources: samples held in memory, reshuffled every epoch.

use super::TrainError;
use super::fit::{BatchSink, TrainData};
use crate::batch::{BatchBuf, Columns};
use crate::rng::Rng;
use crate::spec::ModelSpec;

/// Labelled samples in memory, visited in a new random order every epoch (a permutation
/// drawn from `seed` and the epoch number, so runs are reproducible).
#[derive(Debug, Clone)]
pub struct InMemory {
    samples: BatchBuf,
    labels: Vec<f32>,
    seed: u64,
    shuffle: bool,
    order: Vec<usize>,
    batch: BatchBuf,
}

impl InMemory {
    /// Wraps `samples` (with one label per row). `shuffle: false` keeps the stored order.
    pub fn new(
        spec: &ModelSpec,
        samples: BatchBuf,
        labels: Vec<f32>,
        seed: u64,
        shuffle: bool,
    ) -> Result<Self, TrainError> {
        if samples.rows() != labels.len() {
            return Err(TrainError::LabelCount {
                expected: samples.rows(),
                found: labels.len(),
            });
        }
        Ok(InMemory {
            samples,
            labels,
            seed,
            shuffle,
            order: Vec::new(),
            batch: BatchBuf::new(spec),
        })
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether no row is held.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

impl TrainData for InMemory {
    fn for_each_batch(
        &mut self,
        epoch: usize,
        batch_size: usize,
        f: &mut BatchSink<'_>,
    ) -> Result<(), TrainError> {
        self.order.clear();
        self.order.extend(0..self.labels.len());
        if self.shuffle {
            Rng::for_epoch(self.seed, epoch).shuffle(&mut self.order);
        }
        let mut labels = Vec::with_capacity(batch_size);
        for chunk in self.order.chunks(batch_size) {
            self.batch.clear();
            labels.clear();
            for &r in chunk {
                self.batch
                    .push_from(&self.samples, r)
                    .map_err(|e| TrainError::Data(Box::new(e)))?;
                labels.push(self.labels[r]);
            }
            f(&self.batch, &labels)?;
        }
        Ok(())
    }
}

//! The training data of the recommender API: (user row, item row, label) triples, reshuffled
//! every epoch, with a small share of ids replaced by the out-of-vocabulary row (so that row
//! learns what an unknown user or item looks like) and, for implicit feedback, negatives drawn
//! afresh every epoch.

use super::ids::OOV_ROW;
use crate::batch::{BatchBuf, Value};
use crate::rng::Rng;
use crate::spec::ModelSpec;
use crate::train::{BatchSink, TrainData, TrainError};

/// How negatives are drawn for implicit feedback.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NegativeSampling {
    /// Every item equally likely.
    Uniform,
    /// Proportional to the item's count of positives to the power 0.75 (word2vec).
    Popularity,
}

/// Triples plus what negative sampling needs.
pub(crate) struct Pairs {
    pub users: Vec<u64>,
    pub items: Vec<u64>,
    pub labels: Vec<f32>,
    /// Implicit feedback: negatives per positive (0: train on the labels as given).
    pub negatives: usize,
    /// Sorted item rows each user row interacted with (for negative sampling).
    pub seen: Vec<Vec<u64>>,
    /// Cumulative sampling weights over item rows 1.. (popularity sampling), or empty.
    pub cumulative: Vec<f64>,
    /// Item rows, including the out-of-vocabulary row 0.
    pub item_rows: u64,
    /// Share of samples whose user (and, independently, item) becomes the OOV row.
    pub oov_rate: f32,
    pub seed: u64,
    pub batch: BatchBuf,
    /// Side-feature values of each user row and item row (empty without features). A sample
    /// whose id becomes the OOV row keeps its features: the OOV row learns "an unknown id
    /// with these features", which is how cold-start ids are scored.
    pub user_side: Vec<Vec<Value>>,
    pub item_side: Vec<Vec<Value>>,
}

impl Pairs {
    pub(crate) fn new(spec: &ModelSpec, seed: u64) -> Self {
        Pairs {
            users: Vec::new(),
            items: Vec::new(),
            labels: Vec::new(),
            negatives: 0,
            seen: Vec::new(),
            cumulative: Vec::new(),
            item_rows: 1,
            oov_rate: 0.0,
            seed,
            batch: BatchBuf::new(spec),
            user_side: Vec::new(),
            item_side: Vec::new(),
        }
    }

    /// Samples one epoch holds (positives plus their negatives).
    pub(crate) fn samples_per_epoch(&self) -> usize {
        self.labels.len() * (1 + self.negatives)
    }

    /// Sets popularity sampling from the positives' item counts.
    pub(crate) fn popularity(&mut self) {
        let mut counts = vec![0.0f64; self.item_rows as usize];
        for &i in &self.items {
            counts[i as usize] += 1.0;
        }
        let mut total = 0.0;
        self.cumulative = counts[1..]
            .iter()
            .map(|&c| {
                total += c.powf(0.75);
                total
            })
            .collect();
    }

    /// A random item row the user has not interacted with (after a few tries, any item).
    fn negative(&self, user: u64, rng: &mut Rng) -> u64 {
        let seen = &self.seen[user as usize];
        let mut item = 1;
        for _ in 0..32 {
            item = match self.cumulative.last() {
                Some(&total) if total > 0.0 => {
                    let x = rng.uniform() as f64 * total;
                    1 + self
                        .cumulative
                        .partition_point(|&c| c <= x)
                        .min(self.cumulative.len() - 1) as u64
                }
                _ => 1 + rng.below(self.item_rows - 1),
            };
            if seen.binary_search(&item).is_err() {
                break;
            }
        }
        item
    }
}

impl TrainData for Pairs {
    fn for_each_batch(
        &mut self,
        epoch: usize,
        batch_size: usize,
        f: &mut BatchSink<'_>,
    ) -> Result<(), TrainError> {
        let mut rng = Rng::for_epoch(self.seed, epoch);
        // (user, item, label) of the epoch: the positives plus fresh negatives.
        let mut epoch_rows: Vec<(u64, u64, f32)> =
            Vec::with_capacity(self.labels.len() * (1 + self.negatives));
        for ((&u, &i), &y) in self.users.iter().zip(&self.items).zip(&self.labels) {
            epoch_rows.push((u, i, y));
            for _ in 0..self.negatives {
                epoch_rows.push((u, self.negative(u, &mut rng), 0.0));
            }
        }
        rng.shuffle(&mut epoch_rows);
        let mut labels = Vec::with_capacity(batch_size);
        let mut row = Vec::new();
        for chunk in epoch_rows.chunks(batch_size) {
            self.batch.clear();
            labels.clear();
            for &(u, i, y) in chunk {
                let user = if rng.uniform() < self.oov_rate {
                    OOV_ROW
                } else {
                    u
                };
                let item = if rng.uniform() < self.oov_rate {
                    OOV_ROW
                } else {
                    i
                };
                row.clear();
                row.extend([Value::Id(user), Value::Id(item)]);
                if let Some(values) = self.user_side.get(u as usize) {
                    row.extend_from_slice(values);
                }
                if let Some(values) = self.item_side.get(i as usize) {
                    row.extend_from_slice(values);
                }
                self.batch
                    .push_row(&row)
                    .map_err(|e| TrainError::Data(Box::new(e)))?;
                labels.push(y);
            }
            f(&self.batch, &labels)?;
        }
        Ok(())
    }
}

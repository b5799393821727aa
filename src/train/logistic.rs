//! Logistic regression on the same inputs: the baseline a DeepFM must beat on click data.
//!
//! The model is DeepFM's first-order part alone: `logit = b + Σ_f w_f` where `w_f` is the
//! first-order weight of field `f`'s row (times the value for a numeric field, pooled for a
//! multi-hot field). Trained with the same lazy Adam as DeepFM's embeddings and BCE loss.

use super::TrainError;
use crate::batch::{Columns, validate};
use crate::spec::ModelSpec;

/// A logistic-regression model over a spec's fields (hidden layers and embedding dimension are
/// ignored).
#[derive(Debug, Clone)]
pub struct LogisticRegression {
    spec: ModelSpec,
    offsets: Vec<u64>,
    weights: Vec<f32>,
    bias: f32,
    m: Vec<f32>,
    v: Vec<f32>,
    bias_m: f32,
    bias_v: f32,
    step: i32,
    learning_rate: f32,
    l2: f32,
    /// Per-sample gradient of the mean loss, reused.
    dlogit: Vec<f32>,
    /// Rows touched by the batch, as (row, gradient) before accumulation.
    touched: Vec<(u64, f32)>,
}

impl LogisticRegression {
    /// A zero model over `spec`'s fields, trained with Adam at `learning_rate` and an L2
    /// penalty `l2` on the weights of the rows in each batch.
    pub fn new(spec: &ModelSpec, learning_rate: f32, l2: f32) -> Result<Self, TrainError> {
        spec.validate()?;
        if !(learning_rate.is_finite() && learning_rate > 0.0 && l2.is_finite() && l2 >= 0.0) {
            return Err(TrainError::Config(format!(
                "logistic regression: learning rate {learning_rate} or l2 {l2} out of range"
            )));
        }
        let rows = spec.total_rows()? as usize;
        Ok(LogisticRegression {
            spec: spec.clone(),
            offsets: spec.row_offsets(),
            weights: vec![0.0; rows],
            bias: 0.0,
            m: vec![0.0; rows],
            v: vec![0.0; rows],
            bias_m: 0.0,
            bias_v: 0.0,
            step: 0,
            learning_rate,
            l2,
            dlogit: Vec::new(),
            touched: Vec::new(),
        })
    }

    /// `(row, factor)` terms of sample `r`, passed to `f`.
    fn terms<C: Columns + ?Sized>(&self, batch: &C, r: usize, mut f: impl FnMut(u64, f32)) {
        for (i, field) in self.spec.fields.iter().enumerate() {
            let base = self.offsets[i];
            batch
                .column(i)
                .for_each_term(&field.kind, r, |id, w| f(base + id, w));
        }
    }

    fn logit<C: Columns + ?Sized>(&self, batch: &C, r: usize) -> f32 {
        let mut z = self.bias;
        self.terms(batch, r, |row, w| z += w * self.weights[row as usize]);
        z
    }

    /// One Adam step on a batch (mean BCE); returns the batch's loss before the update.
    pub fn step<C: Columns + ?Sized>(
        &mut self,
        batch: &C,
        labels: &[f32],
    ) -> Result<f64, TrainError> {
        let rows = validate(&self.spec, batch, usize::MAX)?;
        if labels.len() != rows {
            return Err(TrainError::LabelCount {
                expected: rows,
                found: labels.len(),
            });
        }
        if let Some(row) = labels.iter().position(|y| !(0.0..=1.0).contains(y)) {
            return Err(TrainError::BadLabel {
                row,
                value: labels[row],
            });
        }
        let logits: Vec<f32> = (0..rows).map(|r| self.logit(batch, r)).collect();
        self.dlogit.resize(rows, 0.0);
        let loss =
            super::backward::loss_and_gradient(super::Loss::Bce, &logits, labels, &mut self.dlogit);
        let mut touched = std::mem::take(&mut self.touched);
        touched.clear();
        for r in 0..rows {
            let g = self.dlogit[r];
            self.terms(batch, r, |row, w| touched.push((row, g * w)));
        }
        // Sum per row (sorted: deterministic), then one Adam update per distinct row.
        touched.sort_by_key(|&(row, _)| row);
        self.step += 1;
        let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
        let step_size = self.learning_rate / (1.0 - b1.powi(self.step));
        let inv_bc2 = 1.0 / (1.0 - b2.powi(self.step)).sqrt();
        let adam = |p: &mut f32, m: &mut f32, v: &mut f32, g: f32| {
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            *p -= step_size * *m / (v.sqrt() * inv_bc2 + eps);
        };
        let mut i = 0;
        while i < touched.len() {
            let row = touched[i].0;
            let mut g = 0.0;
            while i < touched.len() && touched[i].0 == row {
                g += touched[i].1;
                i += 1;
            }
            let r = row as usize;
            g += self.l2 * self.weights[r];
            adam(&mut self.weights[r], &mut self.m[r], &mut self.v[r], g);
        }
        let g: f32 = self.dlogit.iter().sum();
        adam(&mut self.bias, &mut self.bias_m, &mut self.bias_v, g);
        self.touched = touched;
        Ok(loss)
    }

    /// Click probabilities of a batch.
    pub fn predict<C: Columns + ?Sized>(
        &self,
        batch: &C,
        out: &mut [f32],
    ) -> Result<(), TrainError> {
        let rows = validate(&self.spec, batch, out.len())?;
        for (r, o) in out[..rows].iter_mut().enumerate() {
            *o = 1.0 / (1.0 + (-self.logit(batch, r)).exp());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Column;
    use crate::fixtures::{mixed_small, random_batch};
    use crate::rng::Rng;

    /// On labels that depend on one categorical id, the model learns to rank by it.
    #[test]
    fn learns_a_per_id_click_rate() {
        let spec = mixed_small();
        let mut lr = LogisticRegression::new(&spec, 0.05, 0.0).unwrap();
        let batch = random_batch(&spec, 4000, 1);
        let mut rng = Rng::new(2);
        let users = match batch.column(0) {
            Column::Categorical(ids) => ids.to_vec(),
            _ => unreachable!(),
        };
        let labels: Vec<f32> = users
            .iter()
            .map(|&u| (rng.uniform() < if u < 250 { 0.8 } else { 0.1 }) as u8 as f32)
            .collect();
        let first = lr.step(&batch, &labels).unwrap();
        let mut last = first;
        for _ in 0..30 {
            last = lr.step(&batch, &labels).unwrap();
        }
        assert!(last < first - 0.1, "loss {first} -> {last}");
        let mut p = vec![0.0; 4000];
        lr.predict(&batch, &mut p).unwrap();
        let auc = crate::metrics::auc(&p, &labels).unwrap().unwrap();
        assert!(auc > 0.8, "AUC {auc}");
    }
}

//! Scoring pairs: `predict`, `try_predict`, `batch_predict`, `evaluate`, and the batch scoring
//! every query goes through.

use super::{ApiError, DeepFM, Id};
use crate::batch::{Batch, Column};
use crate::infer::{ScoreError, score, score_parallel};

impl<U: Id, I: Id> DeepFM<U, I> {
    /// The prediction for one pair: a rating on the training scale for rating models, a
    /// probability otherwise.
    ///
    /// What it returns in each case:
    /// - a known or unknown id: the prediction (unknown ids score through the
    ///   out-of-vocabulary rows, see the module documentation);
    /// - a score that is not a number, the only way scoring a model from `fit` or `load` can
    ///   fail (a NaN or infinite weight in the pair's rows, which only `verify` detects in the
    ///   embedding table, or an overflow inside the model): NaN. [`DeepFM::try_predict`]
    ///   returns [`ApiError::NonFiniteScore`] naming the pair instead.
    ///
    /// Every other scoring error is ruled out by construction: the rows come from the model's
    /// own id maps, inside its vocabularies.
    pub fn predict(&self, user: &U, item: &I) -> f32 {
        let (u, i) = self.rows(user, item);
        let mut out = [0.0];
        match self.score_rows(&[u.0], &[i.0], Some((&[u.1], &[i.1])), &mut out) {
            Ok(()) if out[0].is_finite() => out[0],
            Ok(()) => f32::NAN,
            Err(e) => {
                debug_assert!(false, "a pair of the model's own rows failed to score: {e}");
                f32::NAN
            }
        }
    }

    /// As [`DeepFM::predict`], with every failure an error: [`ApiError::UnknownUser`] or
    /// [`ApiError::UnknownItem`] for an id not seen in training, [`ApiError::NonFiniteScore`]
    /// where `predict` returns NaN.
    pub fn try_predict(&self, user: &U, item: &I) -> Result<f32, ApiError> {
        let u = self.users.get(user).ok_or(ApiError::UnknownUser)?;
        let i = self.items.get(item).ok_or(ApiError::UnknownItem)?;
        let mut out = [0.0];
        self.score_rows(&[u], &[i], None, &mut out)?;
        match out[0] {
            p if p.is_finite() => Ok(p),
            _ => Err(Self::non_finite(user, item)),
        }
    }

    /// Predictions for many pairs, scored as one batch (parallel for large ones), each as
    /// [`DeepFM::predict`] returns it; a score that is not a number is the error
    /// [`ApiError::NonFiniteScore`] naming the first such pair.
    pub fn batch_predict(&self, pairs: &[(U, I)]) -> Result<Vec<f32>, ApiError> {
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let n = pairs.len();
        let (mut user_emb, mut user_feat) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut item_emb, mut item_feat) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for (u, i) in pairs {
            let ((ue, uf), (ie, if_)) = self.rows(u, i);
            user_emb.push(ue);
            user_feat.push(uf);
            item_emb.push(ie);
            item_feat.push(if_);
        }
        let mut out = vec![0.0; pairs.len()];
        let features = Some((&user_feat[..], &item_feat[..]));
        self.score_rows(&user_emb, &item_emb, features, &mut out)?;
        match out.iter().position(|p| !p.is_finite()) {
            Some(k) => Err(Self::non_finite(&pairs[k].0, &pairs[k].1)),
            None => Ok(out),
        }
    }

    /// Root mean squared error (and mean absolute error) over triples, predictions clamped as
    /// [`DeepFM::predict`] returns them.
    pub fn evaluate(
        &self,
        user_ids: &[U],
        item_ids: &[I],
        ratings: &[f32],
    ) -> Result<(f64, f64), ApiError> {
        if user_ids.len() != ratings.len() || item_ids.len() != ratings.len() || ratings.is_empty()
        {
            return Err(ApiError::Lengths {
                users: user_ids.len(),
                items: item_ids.len(),
                ratings: ratings.len(),
            });
        }
        let pairs: Vec<(U, I)> = user_ids
            .iter()
            .cloned()
            .zip(item_ids.iter().cloned())
            .collect();
        let p = self.batch_predict(&pairs)?;
        let rmse = crate::metrics::rmse(&p, ratings)?;
        let mae = crate::metrics::mae(&p, ratings)?;
        Ok((rmse, mae))
    }

    /// Embedding rows of the pair, and feature rows (which differ from the embedding rows only
    /// for ids unknown to training that have features).
    fn rows(&self, user: &U, item: &I) -> ((u64, u64), (u64, u64)) {
        let sides = self.sides();
        (sides.user(user), sides.item(item))
    }

    /// Scores users[k] with items[k]; `features` gives the feature rows when they differ from
    /// the embedding rows. A score that is not a number is left in `out` (NaN) for the caller
    /// to name its pair ([`ApiError::NonFiniteScore`]); every other error is returned.
    pub(super) fn score_rows(
        &self,
        users: &[u64],
        items: &[u64],
        features: Option<(&[u64], &[u64])>,
        out: &mut [f32],
    ) -> Result<(), ApiError> {
        let sides = self.sides();
        if !sides.has_features() {
            let columns = [Column::Categorical(users), Column::Categorical(items)];
            return self.score_batch(&Batch::new(&columns), out);
        }
        let (user_features, item_features) = features.unwrap_or((users, items));
        let mut batch = crate::batch::BatchBuf::new(self.model.spec());
        let mut row = Vec::new();
        for k in 0..users.len() {
            let user = (users[k], user_features[k]);
            sides.push_row(user, (items[k], item_features[k]), &mut row);
            batch.push_row(&row)?;
        }
        self.score_batch(&batch, out)
    }

    fn score_batch<C: crate::batch::Columns + Sync>(
        &self,
        batch: &C,
        out: &mut [f32],
    ) -> Result<(), ApiError> {
        let scored = if out.len() >= 1024 {
            score_parallel(&self.model, batch, &self.scratch, out)
        } else {
            score(&self.model, batch, &mut self.scratch.get(), out)
        };
        match scored {
            // `out` holds every score, NaN included: the caller names the pair.
            Ok(()) | Err(ScoreError::NonFiniteScore { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

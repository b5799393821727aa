//! Ranking items for a user: `recommend` and its variants, and leave-one-out HR/NDCG.

use super::{ApiError, DeepFM, Id, OOV_ROW};
use rayon::prelude::*;

impl<U: Id, I: Id> DeepFM<U, I> {
    /// The `top_k` items for `user` by score, excluding items the user interacted with in
    /// training; ties go to the item seen first in training. Fails, naming the item, when a
    /// candidate's score is not a number (see [`DeepFM::recommend_with`]).
    pub fn recommend(&self, user: &U, top_k: usize) -> Result<Vec<I>, ApiError> {
        Ok(self
            .recommend_with_scores(user, top_k)?
            .into_iter()
            .map(|(i, _)| i)
            .collect())
    }

    /// As [`DeepFM::recommend`], with each item's score.
    pub fn recommend_with_scores(&self, user: &U, top_k: usize) -> Result<Vec<(I, f32)>, ApiError> {
        self.recommend_with(user, top_k, true, &[])
    }

    /// Top `top_k` items for `user`: every known item is scored in batches; items the user
    /// interacted with in training are left out when `exclude_seen`, and so are the items in
    /// `exclude`. An unknown user is scored through the out-of-vocabulary row.
    ///
    /// A candidate whose score is not a number (a NaN or infinite weight in its rows, or an
    /// overflow) is the error [`ApiError::NonFiniteScore`] naming the user and the item: a
    /// damaged row never silently reorders or empties the list. `deepfm inspect --verify`
    /// finds such rows in a model file.
    pub fn recommend_with(
        &self,
        user: &U,
        top_k: usize,
        exclude_seen: bool,
        exclude: &[I],
    ) -> Result<Vec<(I, f32)>, ApiError> {
        const CHUNK: usize = 4096;
        let (u, u_feat) = self.sides().user(user);
        let n = self.items.len();
        let mut skip = vec![false; n + 1];
        skip[OOV_ROW as usize] = true;
        if exclude_seen {
            for &i in &self.seen[u as usize] {
                skip[i as usize] = true;
            }
        }
        for item in exclude {
            if let Some(i) = self.items.get(item) {
                skip[i as usize] = true;
            }
        }
        let mut scores = vec![0.0f32; n + 1];
        let users = vec![u; CHUNK.min(n + 1)];
        let user_features = vec![u_feat; users.len()];
        let mut rows = Vec::with_capacity(users.len());
        for (start, out) in (0..=n).step_by(CHUNK).zip(scores.chunks_mut(CHUNK)) {
            rows.clear();
            rows.extend(start as u64..(start + out.len()) as u64);
            let features = Some((&user_features[..out.len()], &rows[..]));
            self.score_rows(&users[..out.len()], &rows, features, out)?;
        }
        let mut ranked: Vec<u64> = (1..=n as u64).filter(|&i| !skip[i as usize]).collect();
        if let Some(&bad) = ranked.iter().find(|&&i| !scores[i as usize].is_finite()) {
            let item = self.items.id(bad).expect("ranked rows are known items");
            return Err(Self::non_finite(user, item));
        }
        let by_score = |a: &u64, b: &u64| {
            scores[*b as usize]
                .total_cmp(&scores[*a as usize])
                .then(a.cmp(b))
        };
        let k = top_k.min(ranked.len());
        if k == 0 {
            return Ok(Vec::new());
        }
        ranked.select_nth_unstable_by(k - 1, by_score);
        ranked.truncate(k);
        ranked.sort_unstable_by(by_score);
        Ok(ranked
            .into_iter()
            .map(|i| {
                let id = self
                    .items
                    .id(i)
                    .expect("ranked rows are known items")
                    .clone();
                (id, scores[i as usize])
            })
            .collect())
    }

    /// Leave-one-out ranking quality, the protocol of the NCF paper: each `(user, item)` of
    /// `held_out` (typically each user's latest interaction, see
    /// [`crate::data::split::leave_one_out_by_time`]) is ranked among `negatives` items drawn
    /// uniformly from those the user did not interact with in training (seeded); returns the
    /// mean HR@`k` and NDCG@`k`. A held-out item scored equal to a negative ranks below it.
    pub fn hit_ratio_ndcg(
        &self,
        held_out: &[(U, I)],
        negatives: usize,
        k: usize,
        seed: u64,
    ) -> Result<(f64, f64), ApiError> {
        if held_out.is_empty() {
            return Err(ApiError::Invalid("no held-out pairs".into()));
        }
        let n = self.items.len() as u64;
        let mut rng = crate::rng::Rng::new(seed);
        let (mut hr, mut ndcg) = (0.0, 0.0);
        let mut rows = Vec::with_capacity(negatives + 1);
        let mut users = Vec::with_capacity(negatives + 1);
        let mut user_features = Vec::with_capacity(negatives + 1);
        let mut item_features = Vec::with_capacity(negatives + 1);
        let mut scores = vec![0.0f32; negatives + 1];
        let sides = self.sides();
        for (user, item) in held_out {
            let (u, u_feat) = sides.user(user);
            let (target, target_feat) = sides.item(item);
            let seen = &self.seen[u as usize];
            rows.clear();
            rows.push(target);
            let mut tries = 0;
            while rows.len() <= negatives && tries < 100 * (negatives + 1) && n > 0 {
                tries += 1;
                let j = 1 + (rng.below(n));
                if j != target && seen.binary_search(&j).is_err() {
                    rows.push(j);
                }
            }
            users.clear();
            users.resize(rows.len(), u);
            user_features.clear();
            user_features.resize(rows.len(), u_feat);
            item_features.clear();
            item_features.extend_from_slice(&rows);
            item_features[0] = target_feat;
            let features = Some((&user_features[..], &item_features[..]));
            self.score_rows(&users, &rows, features, &mut scores[..rows.len()])?;
            if let Some(k) = scores[..rows.len()].iter().position(|s| !s.is_finite()) {
                return Err(match k {
                    0 => Self::non_finite(user, item),
                    _ => Self::non_finite(user, self.items.id(rows[k]).expect("a known item")),
                });
            }
            let rank = scores[1..rows.len()]
                .iter()
                .filter(|&&s| s >= scores[0])
                .count();
            if rank < k {
                hr += 1.0;
                ndcg += 1.0 / ((rank + 2) as f64).log2();
            }
        }
        let count = held_out.len() as f64;
        Ok((hr / count, ndcg / count))
    }

    /// [`DeepFM::recommend`] for many users, in parallel; the first error, if any.
    pub fn recommend_many(&self, users: &[U], top_k: usize) -> Result<Vec<Vec<I>>, ApiError> {
        users.par_iter().map(|u| self.recommend(u, top_k)).collect()
    }
}

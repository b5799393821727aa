//! Evaluation metrics for click-through (AUC, log loss) and rating (RMSE, MAE) predictions;
//! top-K ranking metrics (HR, NDCG, precision, recall, MAP) are in [`ranking`].
//!
//! Everything is accumulated in f64: a million f32 terms summed in f32 lose digits that papers
//! report (log loss is compared to the fourth decimal). Inputs come from users, so a length
//! mismatch, an empty input or a NaN is a [`MetricsError`], never a panic.

pub mod ranking;

use std::cmp::Ordering;
use thiserror::Error;

/// Inputs a metric cannot be computed from.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum MetricsError {
    /// The two slices have different lengths.
    #[error("{predictions} predictions but {labels} labels")]
    LengthMismatch {
        /// Length of the first argument (scores, probabilities or predictions).
        predictions: usize,
        /// Length of the second argument (labels or truth).
        labels: usize,
    },
    /// No samples: the mean is undefined.
    #[error("no samples")]
    Empty,
    /// A prediction or label is NaN (infinities are allowed where the metric defines them).
    #[error("sample {index} is NaN")]
    NaN {
        /// 0-based index of the first NaN.
        index: usize,
    },
}

/// Checks the preconditions shared by every metric: equal, non-zero lengths and no NaN.
fn check(predictions: &[f32], labels: &[f32]) -> Result<(), MetricsError> {
    if predictions.len() != labels.len() {
        return Err(MetricsError::LengthMismatch {
            predictions: predictions.len(),
            labels: labels.len(),
        });
    }
    if predictions.is_empty() {
        return Err(MetricsError::Empty);
    }
    match predictions
        .iter()
        .zip(labels)
        .position(|(p, l)| p.is_nan() || l.is_nan())
    {
        Some(index) => Err(MetricsError::NaN { index }),
        None => Ok(()),
    }
}

/// Area under the ROC curve: the probability that a random positive scores above a random
/// negative, a tie counting one half. Labels above 0.5 are positives, the rest negatives.
///
/// Computed by ranking (Mann–Whitney U): tied scores share their average rank, so the result
/// equals the pair count exactly. `Ok(None)` when all samples are of one class (AUC is
/// undefined). Scores may be infinite. Cost: one O(n log n) sort of a copy of the input.
pub fn auc(scores: &[f32], labels: &[f32]) -> Result<Option<f64>, MetricsError> {
    check(scores, labels)?;
    let mut ranked: Vec<(f32, bool)> = scores
        .iter()
        .zip(labels)
        .map(|(&s, &l)| (s, l > 0.5))
        .collect();
    ranked.sort_by(|a, b| a.0.total_cmp(&b.0));
    let positives = ranked.iter().filter(|(_, p)| *p).count();
    let negatives = ranked.len() - positives;
    if positives == 0 || negatives == 0 {
        return Ok(None);
    }
    // Sum of the (1-based, tie-averaged) ranks of the positives. total_cmp orders -0.0 before
    // 0.0, which are adjacent, so grouping by `==` still ties them.
    let mut rank_sum = 0.0f64;
    let mut start = 0;
    while start < ranked.len() {
        let score = ranked[start].0;
        let end = start
            + ranked[start..]
                .iter()
                .take_while(|(s, _)| s.partial_cmp(&score) == Some(Ordering::Equal))
                .count();
        let group_positives = ranked[start..end].iter().filter(|(_, p)| *p).count();
        let average_rank = (start + 1 + end) as f64 / 2.0;
        rank_sum += group_positives as f64 * average_rank;
        start = end;
    }
    let (p, n) = (positives as f64, negatives as f64);
    let u = rank_sum - p * (p + 1.0) / 2.0;
    Ok(Some(u / (p * n)))
}

/// Mean binary cross-entropy `-(y ln p + (1 - y) ln(1 - p))` in nats, with each probability
/// clipped to `[1e-7, 1 - 1e-7]` so a confident mistake costs about 16.1, not infinity.
/// Labels are usually 0 or 1; soft labels in between are accepted as they are.
pub fn logloss(probs: &[f32], labels: &[f32]) -> Result<f64, MetricsError> {
    check(probs, labels)?;
    const EPS: f64 = 1e-7;
    let total: f64 = probs
        .iter()
        .zip(labels)
        .map(|(&p, &y)| {
            let (p, y) = (f64::from(p).clamp(EPS, 1.0 - EPS), f64::from(y));
            -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
        })
        .sum();
    Ok(total / probs.len() as f64)
}

/// Root mean squared error. Predictions are used as given: clip them to the rating range first
/// if that is the protocol being reproduced.
pub fn rmse(predictions: &[f32], truth: &[f32]) -> Result<f64, MetricsError> {
    check(predictions, truth)?;
    let total: f64 = predictions
        .iter()
        .zip(truth)
        .map(|(&p, &t)| (f64::from(p) - f64::from(t)).powi(2))
        .sum();
    Ok((total / predictions.len() as f64).sqrt())
}

/// Mean absolute error. Predictions are used as given, like [`rmse`].
pub fn mae(predictions: &[f32], truth: &[f32]) -> Result<f64, MetricsError> {
    check(predictions, truth)?;
    let total: f64 = predictions
        .iter()
        .zip(truth)
        .map(|(&p, &t)| (f64::from(p) - f64::from(t)).abs())
        .sum();
    Ok(total / predictions.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The definition: over all (positive, negative) pairs, 1 if the positive scores higher,
    /// 1/2 on a tie.
    fn auc_by_pairs(scores: &[f32], labels: &[f32]) -> Option<f64> {
        let (mut wins, mut pairs) = (0.0, 0.0);
        for (sp, _) in scores.iter().zip(labels).filter(|(_, l)| **l > 0.5) {
            for (sn, _) in scores.iter().zip(labels).filter(|(_, l)| **l <= 0.5) {
                pairs += 1.0;
                wins += match sp.partial_cmp(sn).unwrap() {
                    Ordering::Greater => 1.0,
                    Ordering::Equal => 0.5,
                    Ordering::Less => 0.0,
                };
            }
        }
        (pairs > 0.0).then(|| wins / pairs)
    }

    proptest! {
        #[test]
        fn auc_equals_pair_count(
            samples in prop::collection::vec((0u8..5, any::<bool>()), 1..60),
        ) {
            // Five distinct scores (one of them -0.0 next to 0.0) so most samples tie.
            let values = [-0.0f32, 0.0, 0.25, 0.5, f32::INFINITY];
            let scores: Vec<f32> = samples.iter().map(|(s, _)| values[*s as usize]).collect();
            let labels: Vec<f32> = samples.iter().map(|(_, l)| f32::from(u8::from(*l))).collect();
            let fast = auc(&scores, &labels).unwrap();
            let slow = auc_by_pairs(&scores, &labels);
            match (fast, slow) {
                (Some(f), Some(s)) => prop_assert!((f - s).abs() < 1e-12, "{f} vs {s}"),
                (f, s) => prop_assert_eq!(f, s),
            }
        }
    }

    #[test]
    fn auc_extremes_and_undefined() {
        let labels = [0.0, 0.0, 1.0, 1.0];
        assert_eq!(auc(&[0.1, 0.2, 0.3, 0.4], &labels), Ok(Some(1.0)));
        assert_eq!(auc(&[0.4, 0.3, 0.2, 0.1], &labels), Ok(Some(0.0)));
        assert_eq!(auc(&[0.5; 4], &labels), Ok(Some(0.5)));
        // One positive above one negative, tied with the other: (1 + 0.5) / 2.
        assert_eq!(auc(&[0.1, 0.5, 0.5], &[0.0, 0.0, 1.0]), Ok(Some(0.75)));
        assert_eq!(auc(&[0.1, 0.2], &[1.0, 0.9]), Ok(None));
        assert_eq!(auc(&[0.1, 0.2], &[0.0, 0.5]), Ok(None));
    }

    #[test]
    fn logloss_by_hand() {
        // -(ln 0.8 + ln 0.6) / 2
        let expected = -(0.8f64.ln() + 0.6f64.ln()) / 2.0;
        let got = logloss(&[0.8, 0.4], &[1.0, 0.0]).unwrap();
        assert!((got - expected).abs() < 1e-7, "{got} vs {expected}");
        // Clipping: a certain, wrong prediction costs -ln(1e-7).
        let got = logloss(&[0.0], &[1.0]).unwrap();
        assert!((got - 16.118_095_65).abs() < 1e-6, "{got}");
        assert!(logloss(&[1.0], &[1.0]).unwrap() < 1e-6);
    }

    #[test]
    fn rmse_and_mae_by_hand() {
        let (p, t) = ([1.0, 2.0, 4.0, 4.0], [1.0, 4.0, 3.0, 5.0]);
        // Errors 0, -2, 1, -1: squares sum to 6, absolutes to 4.
        assert!((rmse(&p, &t).unwrap() - 1.5f64.sqrt()).abs() < 1e-12);
        assert!((mae(&p, &t).unwrap() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let mismatch = MetricsError::LengthMismatch {
            predictions: 2,
            labels: 1,
        };
        assert_eq!(auc(&[0.1, 0.2], &[1.0]), Err(mismatch.clone()));
        assert_eq!(logloss(&[0.1, 0.2], &[1.0]), Err(mismatch.clone()));
        assert_eq!(rmse(&[0.1, 0.2], &[1.0]), Err(mismatch.clone()));
        assert_eq!(mae(&[0.1, 0.2], &[1.0]), Err(mismatch));
        assert_eq!(auc(&[], &[]), Err(MetricsError::Empty));
        assert_eq!(rmse(&[], &[]), Err(MetricsError::Empty));
        let nan = MetricsError::NaN { index: 1 };
        assert_eq!(auc(&[0.1, f32::NAN], &[1.0, 0.0]), Err(nan.clone()));
        assert_eq!(logloss(&[0.1, 0.2], &[1.0, f32::NAN]), Err(nan));
    }
}

//! Top-K ranking metrics for one user's recommendation list against the items that user
//! actually interacted with (binary relevance). Average them over users for a report.
//!
//! `ranked` is the list in recommendation order; only its first `k` entries count (fewer if
//! it is shorter). An empty `relevant` set gives 0 for every metric: there was nothing to find.

/// Hits among the first `k` recommendations.
fn hits_at<T: PartialEq>(ranked: &[T], relevant: &[T], k: usize) -> usize {
    ranked
        .iter()
        .take(k)
        .filter(|item| relevant.contains(item))
        .count()
}

/// 1 if any relevant item is among the first `k`, else 0 (HR@K of the NCF paper when
/// `relevant` is the one held-out item).
pub fn hit_rate_at_k<T: PartialEq>(ranked: &[T], relevant: &[T], k: usize) -> f64 {
    (hits_at(ranked, relevant, k) > 0) as u8 as f64
}

/// Normalised discounted cumulative gain: `Σ_{i<k, relevant} 1/log2(i + 2)` over the same sum
/// for an ideal list (all relevant items first).
pub fn ndcg_at_k<T: PartialEq>(ranked: &[T], relevant: &[T], k: usize) -> f64 {
    let gain = |i: usize| 1.0 / ((i + 2) as f64).log2();
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .filter(|(_, item)| relevant.contains(item))
        .map(|(i, _)| gain(i))
        .sum();
    let ideal: f64 = (0..relevant.len().min(k)).map(gain).sum();
    if ideal == 0.0 { 0.0 } else { dcg / ideal }
}

/// Share of the first `k` recommendations that are relevant (divides by `k`).
pub fn precision_at_k<T: PartialEq>(ranked: &[T], relevant: &[T], k: usize) -> f64 {
    if k == 0 {
        return 0.0;
    }
    hits_at(ranked, relevant, k) as f64 / k as f64
}

/// Share of the relevant items found in the first `k`.
pub fn recall_at_k<T: PartialEq>(ranked: &[T], relevant: &[T], k: usize) -> f64 {
    if relevant.is_empty() {
        return 0.0;
    }
    hits_at(ranked, relevant, k) as f64 / relevant.len() as f64
}

/// Average precision at `k`: the mean of precision@i over the positions `i ≤ k` holding a
/// relevant item, divided by `min(k, |relevant|)` (so a perfect list scores 1).
pub fn average_precision_at_k<T: PartialEq>(ranked: &[T], relevant: &[T], k: usize) -> f64 {
    let denom = relevant.len().min(k);
    if denom == 0 {
        return 0.0;
    }
    let mut hits = 0;
    let mut sum = 0.0;
    for (i, item) in ranked.iter().take(k).enumerate() {
        if relevant.contains(item) {
            hits += 1;
            sum += hits as f64 / (i + 1) as f64;
        }
    }
    sum / denom as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_values() {
        let ranked = [5, 3, 9, 1, 7];
        let relevant = [3, 7, 42];
        assert_eq!(hit_rate_at_k(&ranked, &relevant, 1), 0.0);
        assert_eq!(hit_rate_at_k(&ranked, &relevant, 2), 1.0);
        assert_eq!(precision_at_k(&ranked, &relevant, 5), 0.4);
        assert!((recall_at_k(&ranked, &relevant, 5) - 2.0 / 3.0).abs() < 1e-12);
        // Hits at positions 2 and 5: (1/2 + 2/5) / min(5, 3).
        assert!((average_precision_at_k(&ranked, &relevant, 5) - 0.9 / 3.0).abs() < 1e-12);
        let dcg = 1.0 / 3f64.log2() + 1.0 / 6f64.log2();
        let ideal = 1.0 + 1.0 / 3f64.log2() + 1.0 / 4f64.log2();
        assert!((ndcg_at_k(&ranked, &relevant, 5) - dcg / ideal).abs() < 1e-12);
        // One held-out item (the NCF protocol): NDCG is 1/log2(rank + 1).
        assert!((ndcg_at_k(&ranked, &[9], 10) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn perfect_and_empty_lists() {
        let ranked = [1, 2, 3];
        assert_eq!(ndcg_at_k(&ranked, &[1, 2, 3], 3), 1.0);
        assert_eq!(average_precision_at_k(&ranked, &[1, 2], 3), 1.0);
        assert_eq!(ndcg_at_k(&ranked, &[], 3), 0.0);
        assert_eq!(recall_at_k::<u32>(&[], &[1], 3), 0.0);
        assert_eq!(precision_at_k(&ranked, &[1], 0), 0.0);
    }
}

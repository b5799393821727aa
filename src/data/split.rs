//! Train/test splits of interaction data, as index lists into the caller's arrays.

use crate::rng::Rng;
use std::collections::HashMap;
use std::hash::Hash;

/// Indices `0..n` shuffled with `seed`, the first `round(n · test_fraction)` as test: the
/// tutorial's random 80/20 split is `random(n, 0.2, seed)`. Returns `(train, test)`.
pub fn random(n: usize, test_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..n).collect();
    Rng::new(seed).shuffle(&mut order);
    let test = ((n as f64 * test_fraction.clamp(0.0, 1.0)).round() as usize).min(n);
    let train = order.split_off(test);
    (train, order)
}

/// Per-user leave-one-out by time (the NCF protocol): each user's latest interaction (the
/// last in input order on equal timestamps) is the test sample, the rest train. Users with a
/// single interaction keep it in training. Returns `(train, test)`, each in input order.
pub fn leave_one_out_by_time<U: Eq + Hash>(
    users: &[U],
    timestamps: &[u64],
) -> (Vec<usize>, Vec<usize>) {
    let mut latest: HashMap<&U, (usize, usize)> = HashMap::new();
    for (k, (u, &t)) in users.iter().zip(timestamps).enumerate() {
        let entry = latest.entry(u).or_insert((k, 0));
        if t >= timestamps[entry.0] {
            entry.0 = k;
        }
        entry.1 += 1;
    }
    let mut is_test = vec![false; users.len().min(timestamps.len())];
    for &(k, count) in latest.values() {
        if count > 1 {
            is_test[k] = true;
        }
    }
    let (test, train): (Vec<usize>, Vec<usize>) = (0..is_test.len()).partition(|&k| is_test[k]);
    (train, test)
}

/// A global split by time: interactions up to the `1 − test_fraction` quantile of the
/// timestamps train, later ones test (ties stay together on the train side). Returns
/// `(train, test)`, each in input order.
pub fn by_time(timestamps: &[u64], test_fraction: f64) -> (Vec<usize>, Vec<usize>) {
    let n = timestamps.len();
    if n == 0 {
        return (Vec::new(), Vec::new());
    }
    let mut sorted = timestamps.to_vec();
    sorted.sort_unstable();
    let cut_index =
        ((n as f64 * (1.0 - test_fraction.clamp(0.0, 1.0))).ceil() as usize).clamp(1, n);
    let cut = sorted[cut_index - 1];
    (0..n).partition(|&k| timestamps[k] <= cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_split_is_a_seeded_partition() {
        let (train, test) = random(1000, 0.2, 7);
        assert_eq!((train.len(), test.len()), (800, 200));
        let mut all: Vec<usize> = train.iter().chain(&test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        assert_eq!(random(1000, 0.2, 7), (train, test.clone()));
        assert_ne!(random(1000, 0.2, 8).1, test);
    }

    #[test]
    fn leave_one_out_takes_each_users_latest() {
        let users = ["a", "b", "a", "c", "a", "b"];
        let times = [5, 1, 9, 3, 2, 1];
        let (train, test) = leave_one_out_by_time(&users, &times);
        // a's latest is index 2; b's two equal timestamps: the later index 5; c has one.
        assert_eq!(test, vec![2, 5]);
        assert_eq!(train, vec![0, 1, 3, 4]);
    }

    #[test]
    fn time_split_keeps_ties_together() {
        let times = [10, 20, 30, 40, 40, 50];
        let (train, test) = by_time(&times, 0.4);
        assert_eq!(train, vec![0, 1, 2, 3, 4]);
        assert_eq!(test, vec![5]);
        assert_eq!(by_time(&[], 0.2), (vec![], vec![]));
    }
}

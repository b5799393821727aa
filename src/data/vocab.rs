//! Turning raw string tokens (Criteo's hashed categories, zip codes, tags) into the dense ids
//! `0..vocab` a categorical field needs, in one of two ways:
//!
//! - [`Vocab`]: counted in a first pass over the fitting data ([`VocabBuilder`]); tokens seen at
//!   least `min_count` times get ids `1..`, everything else (rare tokens, and tokens first seen
//!   after fitting) shares the out-of-vocabulary id [`OOV`] = 0. Dropping rare tokens is what
//!   the benchmark pipelines do (FuxiCTR's `min_categr_count`, default 10 on Criteo): a token
//!   seen a handful of times cannot train its own embedding and only costs memory. Ids are
//!   ordered by descending count, then by token, so fitting the same data twice gives the same
//!   ids, and the vocabulary serializes (serde) to be saved beside the model it was built for.
//! - [`hash_token`]: feature hashing into a fixed number of buckets (the Kaggle winners'
//!   approach): no first pass and no stored vocabulary, at the price of collisions. The hash is
//!   xxh3 of the token's bytes, seeded by the field index, so it is the same on every run and
//!   platform and the same token in two fields lands in unrelated buckets.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The id of every token the vocabulary does not know.
pub const OOV: u64 = 0;

/// Counts tokens for a [`Vocab`] (the first pass). Memory is one `String` and one count per
/// distinct token.
#[derive(Debug, Clone, Default)]
pub struct VocabBuilder {
    counts: HashMap<String, u64>,
}

impl VocabBuilder {
    /// An empty count.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one occurrence of `token` (allocates only the first time a token is seen).
    pub fn add(&mut self, token: &str) {
        self.add_count(token, 1);
    }

    /// Counts `n` occurrences of `token` at once (saturating).
    pub fn add_count(&mut self, token: &str, n: u64) {
        match self.counts.get_mut(token) {
            Some(c) => *c = c.saturating_add(n),
            None => {
                self.counts.insert(token.to_string(), n);
            }
        }
    }

    /// Distinct tokens counted so far.
    pub fn distinct(&self) -> usize {
        self.counts.len()
    }

    /// How often `token` was counted.
    pub fn count(&self, token: &str) -> u64 {
        self.counts.get(token).copied().unwrap_or(0)
    }

    /// The vocabulary of the tokens counted at least `min_count` times (`0` and `1` both keep
    /// every token), ids `1..` by descending count then ascending token (byte order).
    pub fn build(&self, min_count: u64) -> Vocab {
        let mut kept: Vec<(&str, u64)> = self
            .counts
            .iter()
            .filter(|&(_, &c)| c >= min_count)
            .map(|(t, &c)| (t.as_str(), c))
            .collect();
        kept.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let tokens: Vec<String> = kept.into_iter().map(|(t, _)| t.to_string()).collect();
        Vocab::from_tokens(tokens).expect("the counts' keys are distinct")
    }
}

/// Token → dense id: known tokens `1..len()`, anything else [`OOV`] (0).
///
/// Serializes as `{"tokens": [...]}`, the known tokens in id order (id 1 first); reading
/// refuses a list with a repeated token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "VocabFile", into = "VocabFile")]
pub struct Vocab {
    /// `tokens[i]` has id `i + 1`.
    tokens: Vec<String>,
    index: HashMap<String, u64>,
}

/// The stored form: only the tokens (the index is rebuilt on reading).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct VocabFile {
    tokens: Vec<String>,
}

impl TryFrom<VocabFile> for Vocab {
    type Error = String;
    fn try_from(file: VocabFile) -> Result<Self, String> {
        Vocab::from_tokens(file.tokens)
    }
}

impl From<Vocab> for VocabFile {
    fn from(v: Vocab) -> Self {
        VocabFile { tokens: v.tokens }
    }
}

// `len` counts the OOV row, so a vocabulary is never empty: an `is_empty` would always be false.
#[allow(clippy::len_without_is_empty)]
impl Vocab {
    /// A vocabulary giving `tokens[i]` the id `i + 1`; an error names the first repeated token.
    pub fn from_tokens(tokens: Vec<String>) -> Result<Self, String> {
        let mut index = HashMap::with_capacity(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            if index.insert(t.clone(), i as u64 + 1).is_some() {
                return Err(format!("token {t:?} appears twice in the vocabulary"));
            }
        }
        Ok(Vocab { tokens, index })
    }

    /// The id of `token`: `1..len()` if known, else [`OOV`].
    pub fn get(&self, token: &str) -> u64 {
        self.index.get(token).copied().unwrap_or(OOV)
    }

    /// Rows the field needs in the embedding table: the known tokens plus the OOV row (so at
    /// least 1).
    pub fn len(&self) -> u64 {
        self.tokens.len() as u64 + 1
    }

    /// The token with id `id`; `None` for [`OOV`] and ids past the end.
    pub fn token(&self, id: u64) -> Option<&str> {
        let i = usize::try_from(id.checked_sub(1)?).ok()?;
        self.tokens.get(i).map(String::as_str)
    }

    /// The known tokens in id order (id 1 first).
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }
}

/// The bucket of `token` in field `field_index` among `buckets` (0 is treated as 1): xxh3 of
/// the token's UTF-8 bytes, seeded with the field index, modulo `buckets`. The same on every
/// run, platform and version of this crate (the test pins values).
pub fn hash_token(field_index: usize, token: &str, buckets: u64) -> u64 {
    xxh3_64_with_seed(token.as_bytes(), field_index as u64) % buckets.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder(tokens: &str) -> VocabBuilder {
        let mut b = VocabBuilder::new();
        tokens.split(' ').for_each(|t| b.add(t));
        b
    }

    #[test]
    fn ids_by_count_then_token_with_min_count() {
        let b = builder("c b a b c c d d e");
        assert_eq!(b.distinct(), 5);
        assert_eq!(b.count("c"), 3);
        let v = b.build(2);
        // c (3), then b and d (2) in token order; a and e (1) are out of vocabulary.
        assert_eq!(v.tokens(), ["c", "b", "d"]);
        assert_eq!(
            ["c", "b", "d", "a", "e", "zzz"].map(|t| v.get(t)),
            [1, 2, 3, OOV, OOV, OOV]
        );
        assert_eq!(v.len(), 4);
        assert_eq!(v.token(2), Some("b"));
        assert_eq!(v.token(0), None);
        assert_eq!(v.token(4), None);
        assert_eq!(v.token(u64::MAX), None);
        assert_eq!(b.build(0), b.build(1));
        assert_eq!(b.build(1).len(), 6);
        assert_eq!(b.build(4).len(), 1);
        assert_eq!(b.build(4).get("c"), OOV);
    }

    #[test]
    fn rebuild_in_another_order_gives_the_same_ids() {
        let forward = builder("x y z y x w x");
        let backward = builder("x w x y z y x");
        assert_eq!(forward.build(1), backward.build(1));
        assert_eq!(forward.build(1).tokens(), ["x", "y", "w", "z"]);
    }

    #[test]
    fn serde_round_trip_and_refusals() {
        let v = builder("b a b").build(1);
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(json, r#"{"tokens":["b","a"]}"#);
        let back: Vocab = serde_json::from_str(&json).unwrap();
        assert_eq!(back, v);
        assert_eq!(back.get("a"), 2);
        for bad in [
            r#"{"tokens":["a","a"]}"#,
            r#"{"tokens":["a"],"min":1}"#,
            r#"{"tokens":[1]}"#,
            r#"{}"#,
        ] {
            assert!(serde_json::from_str::<Vocab>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn counts_saturate() {
        let mut b = VocabBuilder::new();
        b.add_count("t", u64::MAX);
        b.add("t");
        assert_eq!(b.count("t"), u64::MAX);
        assert_eq!(b.build(u64::MAX).get("t"), 1);
    }

    #[test]
    fn hashing_is_pinned_and_per_field() {
        // Pinned so that a change of hash (or of its seeding) cannot go unnoticed: it would
        // silently remap every trained model's hashed ids.
        // XXH3_64bits of the empty input with seed 0, from the xxHash reference's test vectors.
        assert_eq!(hash_token(0, "", u64::MAX), 0x2D06_8005_38D3_94C2);
        assert_eq!(hash_token(0, "68fd1e64", u64::MAX), 49613333376404301);
        assert_eq!(hash_token(5, "", u64::MAX), 4075412128446734485);
        assert_ne!(
            hash_token(0, "68fd1e64", 1 << 40),
            hash_token(1, "68fd1e64", 1 << 40)
        );
        for t in ["", "a", "68fd1e64"] {
            assert!(hash_token(3, t, 1000) < 1000);
            assert_eq!(hash_token(3, t, 0), 0);
            assert_eq!(hash_token(3, t, 1), 0);
        }
    }
}

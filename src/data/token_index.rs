//! Dense indices for raw tokens: what turns MovieLens user ids, zip prefixes or genre names
//! into the `0..vocab` ids a categorical or multi-hot field takes.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

/// A token ↔ index map: indices are handed out `0, 1, 2, …` in first-seen order, so a
/// vocabulary built from the same tokens in the same order is always the same.
///
/// Build it from what is known before any label is read (a catalogue such as `users.dat`, or
/// the training split only): an index a model never trained on still scores, but only from
/// its initial embedding row.
///
/// ```
/// use deepfm::data::TokenIndex;
/// let mut genres = TokenIndex::new();
/// assert_eq!(genres.insert("Comedy"), 0);
/// assert_eq!(genres.insert("Drama"), 1);
/// assert_eq!(genres.insert("Comedy"), 0);
/// assert_eq!(genres.get("Drama"), Some(1));
/// assert_eq!(genres.get("Western"), None);
/// assert_eq!((genres.len(), genres.token(1)), (2, Some(&"Drama")));
/// ```
#[derive(Debug, Clone)]
pub struct TokenIndex<T> {
    index: HashMap<T, u64>,
    tokens: Vec<T>,
}

impl<T> Default for TokenIndex<T> {
    fn default() -> Self {
        TokenIndex {
            index: HashMap::new(),
            tokens: Vec::new(),
        }
    }
}

impl<T: Hash + Eq + Clone> TokenIndex<T> {
    /// An empty vocabulary.
    pub fn new() -> Self {
        Self::default()
    }

    /// The index of `token`, adding it (as index `len()`) when it is new.
    pub fn insert(&mut self, token: T) -> u64 {
        if let Some(&i) = self.index.get(&token) {
            return i;
        }
        let i = self.tokens.len() as u64;
        self.index.insert(token.clone(), i);
        self.tokens.push(token);
        i
    }

    /// The index of `token`, if it was inserted.
    pub fn get<Q>(&self, token: &Q) -> Option<u64>
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.index.get(token).copied()
    }

    /// The token with index `i`.
    pub fn token(&self, i: u64) -> Option<&T> {
        usize::try_from(i).ok().and_then(|i| self.tokens.get(i))
    }

    /// Tokens in index order.
    pub fn tokens(&self) -> &[T] {
        &self.tokens
    }

    /// Number of distinct tokens: the `vocab` of the field this feeds.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether no token was inserted.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// Two vocabularies are equal when they give the same tokens the same indices.
impl<T: PartialEq> PartialEq for TokenIndex<T> {
    fn eq(&self, other: &Self) -> bool {
        self.tokens == other.tokens
    }
}

impl<T: Eq> Eq for TokenIndex<T> {}

impl<T: Hash + Eq + Clone> FromIterator<T> for TokenIndex<T> {
    /// Inserts every token in order (repeats keep their first index).
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut v = TokenIndex::new();
        for t in iter {
            v.insert(t);
        }
        v
    }
}

impl<T: Hash + Eq + Clone> Extend<T> for TokenIndex<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, iter: I) {
        for t in iter {
            self.insert(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn first_seen_order_and_lookups() {
        let v: TokenIndex<u32> = [196, 186, 196, 22, 186].into_iter().collect();
        assert_eq!(v.tokens(), [196, 186, 22]);
        assert_eq!(
            (v.get(&196), v.get(&186), v.get(&22)),
            (Some(0), Some(1), Some(2))
        );
        assert_eq!(v.get(&7), None);
        assert_eq!(v.token(3), None);
        assert_eq!(v.token(u64::MAX), None);
        assert!(!v.is_empty());
        assert!(TokenIndex::<u32>::new().is_empty());
    }

    #[test]
    fn borrowed_lookup_of_owned_strings() {
        let mut v = TokenIndex::new();
        v.extend(["M".to_string(), "F".to_string()]);
        assert_eq!(v.get("F"), Some(1));
        assert_eq!(v.insert("M".to_string()), 0);
        assert_eq!(v.len(), 2);
    }

    proptest! {
        #[test]
        fn indices_are_dense_and_round_trip(tokens in proptest::collection::vec(0u16..50, 0..200)) {
            let v: TokenIndex<u16> = tokens.iter().copied().collect();
            let distinct: std::collections::HashSet<_> = tokens.iter().collect();
            prop_assert_eq!(v.len(), distinct.len());
            for t in &tokens {
                let i = v.get(t).unwrap();
                prop_assert!(i < v.len() as u64);
                prop_assert_eq!(v.token(i), Some(t));
            }
        }
    }
}

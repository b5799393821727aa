//! Raw user and item ids (any hashable type: integers, strings) to embedding rows.
//!
//! Row 0 of each field is the out-of-vocabulary row: ids never seen in training score through
//! it. Known ids get rows 1.. in order of first appearance, so a fit is reproducible.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::Hash;

/// What a raw id must support to be used with [`super::DeepFM`]: hashing (to find its row)
/// and serde (to be saved with the model). Integers and `String` qualify.
pub trait Id: Clone + Eq + Hash + Serialize + DeserializeOwned + Send + Sync {}
impl<T: Clone + Eq + Hash + Serialize + DeserializeOwned + Send + Sync> Id for T {}

/// The row of the out-of-vocabulary id.
pub const OOV_ROW: u64 = 0;

/// Ids in order of first appearance and the reverse index.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound = "K: Id", from = "Vec<K>", into = "Vec<K>")]
pub struct IdMap<K: Id> {
    ids: Vec<K>,
    rows: HashMap<K, u64>,
}

impl<K: Id> From<Vec<K>> for IdMap<K> {
    fn from(ids: Vec<K>) -> Self {
        let rows = ids
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), i as u64 + 1))
            .collect();
        IdMap { ids, rows }
    }
}

impl<K: Id> From<IdMap<K>> for Vec<K> {
    fn from(map: IdMap<K>) -> Vec<K> {
        map.ids
    }
}

impl<K: Id> Default for IdMap<K> {
    fn default() -> Self {
        IdMap {
            ids: Vec::new(),
            rows: HashMap::new(),
        }
    }
}

impl<K: Id> IdMap<K> {
    /// The row of `id`, adding it if new.
    pub fn insert(&mut self, id: &K) -> u64 {
        if let Some(&row) = self.rows.get(id) {
            return row;
        }
        self.ids.push(id.clone());
        let row = self.ids.len() as u64;
        self.rows.insert(id.clone(), row);
        row
    }

    /// The row of a known id.
    pub fn get(&self, id: &K) -> Option<u64> {
        self.rows.get(id).copied()
    }

    /// The id of row `row` (`None` for the out-of-vocabulary row and past the end).
    pub fn id(&self, row: u64) -> Option<&K> {
        row.checked_sub(1).and_then(|i| self.ids.get(i as usize))
    }

    /// Rows the field needs: the known ids plus the out-of-vocabulary row.
    pub fn rows(&self) -> u64 {
        self.ids.len() as u64 + 1
    }

    /// Known ids.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no id is known.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether every id is distinct (a map read from a file may not be).
    pub fn is_consistent(&self) -> bool {
        self.rows.len() == self.ids.len()
    }

    /// Whether two maps hold the same ids in the same order (the rows match).
    pub fn same_as(&self, other: &IdMap<K>) -> bool {
        self.ids == other.ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_start_after_the_oov_row_and_survive_serde() {
        let mut m = IdMap::<String>::default();
        assert_eq!(m.insert(&"b".into()), 1);
        assert_eq!(m.insert(&"a".into()), 2);
        assert_eq!(m.insert(&"b".into()), 1);
        assert_eq!(m.rows(), 3);
        assert_eq!(m.get(&"zz".into()), None);
        assert_eq!(m.id(OOV_ROW), None);
        assert_eq!(m.id(2).map(String::as_str), Some("a"));
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"["b","a"]"#);
        let back: IdMap<String> = serde_json::from_str(&json).unwrap();
        assert!(back.same_as(&m));
        assert_eq!(back.get(&"a".into()), Some(2));
    }
}

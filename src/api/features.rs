//! Side features of users and items (age, gender, occupation, genres, ...), given as raw values
//! per id and turned into extra model fields.
//!
//! The model's fields are `user`, `item`, then each user feature (`user.<name>`), then each item
//! feature (`item.<name>`). Tokens get dense ids per field in order of first appearance, 0 being
//! the out-of-vocabulary id. A user or item without features (or an unknown one) takes id 0 for
//! its categorical features, 0 for numeric ones and an empty list for multi-hot ones.
//!
//! **Cold start.** Features may be given for ids that are not in the training interactions
//! (new items, new users): such an id scores through the out-of-vocabulary embedding row *and*
//! its own features, so two new items with different genres get different scores. During
//! training, the 1% of samples whose id is replaced by the out-of-vocabulary row keep their
//! features, so that row learns what "an unknown id with these features" looks like.

use super::ApiError;
use super::ids::{Id, IdMap, OOV_ROW};
use crate::batch::Value;
use crate::data::TokenIndex;
use crate::spec::{Field, FieldKind, Pooling};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The kind of a side feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureKind {
    /// One token (gender, occupation, zip prefix).
    Categorical,
    /// One number (age, price); scale it to about unit range first.
    Numeric,
    /// A list of tokens (genres, tags), pooled.
    MultiHot(Pooling),
}

/// One raw feature value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Feature {
    /// For a categorical feature.
    Token(String),
    /// For a numeric feature.
    Num(f32),
    /// For a multi-hot feature.
    Tokens(Vec<String>),
}

impl From<&str> for Feature {
    fn from(t: &str) -> Self {
        Feature::Token(t.to_string())
    }
}

impl From<f32> for Feature {
    fn from(v: f32) -> Self {
        Feature::Num(v)
    }
}

impl From<Vec<&str>> for Feature {
    fn from(list: Vec<&str>) -> Self {
        Feature::Tokens(list.into_iter().map(String::from).collect())
    }
}

/// Side features for the users or the items of a fit, keyed by the same ids as the
/// interactions:
///
/// ```
/// use deepfm::api::{Features, Feature};
/// let mut users = Features::new().categorical("gender").numeric("age");
/// users.insert(7u32, vec!["F".into(), 0.35f32.into()])?;
/// # Ok::<(), deepfm::api::ApiError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Features<K: Id> {
    fields: Vec<(String, FeatureKind)>,
    values: HashMap<K, Vec<Feature>>,
    order: Vec<K>,
}

impl<K: Id> Default for Features<K> {
    fn default() -> Self {
        Features {
            fields: Vec::new(),
            values: HashMap::new(),
            order: Vec::new(),
        }
    }
}

impl<K: Id> Features<K> {
    /// No fields yet.
    pub fn new() -> Self {
        Features::default()
    }

    /// Adds a field of `kind`.
    pub fn field(mut self, name: &str, kind: FeatureKind) -> Self {
        self.fields.push((name.to_string(), kind));
        self
    }

    /// Adds a categorical field.
    pub fn categorical(self, name: &str) -> Self {
        self.field(name, FeatureKind::Categorical)
    }

    /// Adds a numeric field.
    pub fn numeric(self, name: &str) -> Self {
        self.field(name, FeatureKind::Numeric)
    }

    /// Adds a multi-hot field pooled by `pooling`.
    pub fn multi_hot(self, name: &str, pooling: Pooling) -> Self {
        self.field(name, FeatureKind::MultiHot(pooling))
    }

    /// The fields, in order.
    pub fn fields(&self) -> &[(String, FeatureKind)] {
        &self.fields
    }

    /// Ids with features.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// The ids with features and their values, in order of first insertion.
    pub fn entries(&self) -> impl Iterator<Item = (&K, &Vec<Feature>)> {
        self.order.iter().map(|k| (k, &self.values[k]))
    }

    /// Whether no id has features.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Sets `key`'s values, one per field in order, each of its field's kind; numbers must be
    /// finite. A second insert for the same key replaces the first.
    pub fn insert(&mut self, key: K, values: Vec<Feature>) -> Result<(), ApiError> {
        if values.len() != self.fields.len() {
            return Err(ApiError::Invalid(format!(
                "{} feature values for {} fields",
                values.len(),
                self.fields.len()
            )));
        }
        for ((name, kind), v) in self.fields.iter().zip(&values) {
            let fits = matches!(
                (kind, v),
                (FeatureKind::Categorical, Feature::Token(_))
                    | (FeatureKind::MultiHot(_), Feature::Tokens(_))
                    | (FeatureKind::Numeric, Feature::Num(_))
            );
            if !fits {
                return Err(ApiError::Invalid(format!(
                    "feature {name}: {v:?} is not a {kind:?} value"
                )));
            }
            if let Feature::Num(x) = v
                && !x.is_finite()
            {
                return Err(ApiError::Invalid(format!(
                    "feature {name}: {x} is not finite"
                )));
            }
        }
        if self.values.insert(key.clone(), values).is_none() {
            self.order.push(key);
        }
        Ok(())
    }
}

/// One encoded value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Encoded {
    Id(u64),
    Num(f32),
    Ids(Vec<u64>),
}

/// A field of a fitted table: its name, kind and tokens (id `i + 1` for `tokens[i]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TableField {
    name: String,
    kind: FeatureKind,
    tokens: Vec<String>,
}

/// Fitted side features of one side: the encoded values of every id with features. Its rows
/// are those of the interactions' id map for ids seen in training, then rows for feature-only
/// ids (cold start), so a known id's feature row is its embedding row.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound = "K: Id")]
pub(crate) struct FeatureTable<K: Id> {
    fields: Vec<TableField>,
    keys: IdMap<K>,
    /// `rows[r]`: the values of row `r`; row 0 (no features) has the defaults.
    rows: Vec<Vec<Encoded>>,
}

impl<K: Id> FeatureTable<K> {
    /// Encodes `features` for the ids of `ids` (in its row order), then for feature-only ids.
    pub(crate) fn fit(features: &Features<K>, ids: &IdMap<K>) -> Self {
        let mut keys = IdMap::default();
        for row in 1..ids.rows() {
            keys.insert(ids.id(row).expect("rows 1.. are known ids"));
        }
        for key in &features.order {
            keys.insert(key);
        }
        let mut indexes: Vec<TokenIndex<String>> =
            features.fields.iter().map(|_| TokenIndex::new()).collect();
        let defaults: Vec<Encoded> = features.fields.iter().map(|(_, k)| default(*k)).collect();
        let mut rows = vec![defaults.clone()];
        for row in 1..keys.rows() {
            let key = keys.id(row).expect("rows 1.. are known keys");
            let Some(values) = features.values.get(key) else {
                rows.push(defaults.clone());
                continue;
            };
            // Token ids start at 1: the index's 0-based position plus one.
            let encoded = values
                .iter()
                .zip(&mut indexes)
                .map(|(v, index)| match v {
                    Feature::Token(t) => Encoded::Id(index.insert(t.clone()) + 1),
                    Feature::Num(x) => Encoded::Num(*x),
                    Feature::Tokens(list) => {
                        Encoded::Ids(list.iter().map(|t| index.insert(t.clone()) + 1).collect())
                    }
                })
                .collect();
            rows.push(encoded);
        }
        let fields = (features.fields.iter().zip(indexes))
            .map(|((name, kind), index)| TableField {
                name: name.clone(),
                kind: *kind,
                tokens: index.tokens().to_vec(),
            })
            .collect();
        FeatureTable { fields, keys, rows }
    }

    /// The model fields, named `<side>.<name>`.
    pub(crate) fn spec_fields(&self, side: &str) -> Vec<Field> {
        self.fields
            .iter()
            .map(|f| {
                let vocab = f.tokens.len() as u64 + 1;
                Field {
                    name: format!("{side}.{}", f.name),
                    kind: match f.kind {
                        FeatureKind::Categorical => FieldKind::Categorical { vocab },
                        FeatureKind::Numeric => FieldKind::Numeric,
                        FeatureKind::MultiHot(pooling) => FieldKind::multi_hot(vocab, pooling),
                    },
                    table: None,
                }
            })
            .collect()
    }

    /// Number of feature fields.
    pub(crate) fn len(&self) -> usize {
        self.fields.len()
    }

    /// The feature row of `key` (0: no features).
    pub(crate) fn row(&self, key: &K) -> u64 {
        self.keys.get(key).unwrap_or(OOV_ROW)
    }

    /// Appends the values of feature row `row` to `out` (row 0 past the end).
    pub(crate) fn push_values(&self, row: u64, out: &mut Vec<Value>) {
        let values = self.rows.get(row as usize).unwrap_or(&self.rows[0]);
        out.extend(values.iter().map(|v| match v {
            Encoded::Id(id) => Value::Id(*id),
            Encoded::Num(x) => Value::Num(*x),
            Encoded::Ids(ids) => Value::Ids(ids.clone()),
        }));
    }

    /// Whether a table read from a file is sound: one value per field of the right kind in
    /// every row, token ids in range, rows for every key.
    pub(crate) fn is_consistent(&self, ids: &IdMap<K>) -> bool {
        let vocab: Vec<u64> = self
            .fields
            .iter()
            .map(|f| f.tokens.len() as u64 + 1)
            .collect();
        self.keys.is_consistent()
            && self.rows.len() as u64 == self.keys.rows()
            && self.keys.len() >= ids.len()
            && (1..ids.rows()).all(|r| self.keys.id(r) == ids.id(r))
            && self.rows.iter().all(|row| {
                row.len() == self.fields.len()
                    && row
                        .iter()
                        .zip(&self.fields)
                        .zip(&vocab)
                        .all(|((v, f), &n)| match (v, f.kind) {
                            (Encoded::Id(id), FeatureKind::Categorical) => *id < n,
                            (Encoded::Num(x), FeatureKind::Numeric) => x.is_finite(),
                            (Encoded::Ids(ids), FeatureKind::MultiHot(_)) => {
                                ids.iter().all(|&id| id < n)
                            }
                            _ => false,
                        })
            })
    }
}

/// The value of a feature nobody gave.
fn default(kind: FeatureKind) -> Encoded {
    match kind {
        FeatureKind::Categorical => Encoded::Id(0),
        FeatureKind::Numeric => Encoded::Num(0.0),
        FeatureKind::MultiHot(_) => Encoded::Ids(Vec::new()),
    }
}

/// The id maps and feature tables of a model, for building its samples.
pub(crate) struct Sides<'a, U: Id, I: Id> {
    pub users: &'a IdMap<U>,
    pub items: &'a IdMap<I>,
    pub user_features: Option<&'a FeatureTable<U>>,
    pub item_features: Option<&'a FeatureTable<I>>,
}

impl<U: Id, I: Id> Sides<'_, U, I> {
    /// Whether the model has feature fields beyond `user` and `item`.
    pub(crate) fn has_features(&self) -> bool {
        self.user_features.is_some_and(|t| t.len() > 0)
            || self.item_features.is_some_and(|t| t.len() > 0)
    }

    /// The embedding row and feature row of a user.
    pub(crate) fn user(&self, key: &U) -> (u64, u64) {
        let emb = self.users.get(key).unwrap_or(OOV_ROW);
        (emb, self.user_features.map_or(emb, |t| t.row(key)))
    }

    /// The embedding row and feature row of an item.
    pub(crate) fn item(&self, key: &I) -> (u64, u64) {
        let emb = self.items.get(key).unwrap_or(OOV_ROW);
        (emb, self.item_features.map_or(emb, |t| t.row(key)))
    }

    /// The values of one sample: user and item embedding rows, then their features.
    pub(crate) fn push_row(&self, user: (u64, u64), item: (u64, u64), row: &mut Vec<Value>) {
        row.clear();
        row.push(Value::Id(user.0));
        row.push(Value::Id(item.0));
        if let Some(t) = self.user_features {
            t.push_values(user.1, row);
        }
        if let Some(t) = self.item_features {
            t.push_values(item.1, row);
        }
    }

    /// A batch of the samples of `pairs` for a model of `spec`.
    pub(crate) fn batch(
        &self,
        spec: &crate::spec::ModelSpec,
        pairs: &[(&U, &I)],
    ) -> Result<crate::batch::BatchBuf, ApiError> {
        let mut batch = crate::batch::BatchBuf::new(spec);
        let mut row = Vec::new();
        for (u, i) in pairs {
            self.push_row(self.user(u), self.item(i), &mut row);
            batch.push_row(&row)?;
        }
        Ok(batch)
    }
}

/// The feature values of embedding rows `0..rows` (empty without features): what training
/// appends to each sample.
pub(crate) fn side_values<K: Id>(table: Option<&FeatureTable<K>>, rows: u64) -> Vec<Vec<Value>> {
    let Some(table) = table.filter(|t| t.len() > 0) else {
        return Vec::new();
    };
    (0..rows)
        .map(|r| {
            let mut v = Vec::with_capacity(table.len());
            table.push_values(r, &mut v);
            v
        })
        .collect()
}

//! Columnar batch input: ids per categorical field, values per numeric field, ids plus offsets
//! (and a weight per id for a weighted field) per multi-hot field.
//!
//! Scoring reads any [`Columns`] implementation: [`Batch`] borrows caller-owned slices (nothing
//! copied), [`BatchBuf`] owns its columns and is filled row by row. Scoring and training check a
//! batch against the model's spec the same way, and refuse it with a [`ScoreError`] that names
//! the field and row at fault.

use crate::spec::{FieldKind, ModelSpec};

mod error;
mod validate;

pub use error::ScoreError;
pub(crate) use validate::validate;

/// One field's column, borrowed.
#[derive(Debug, Clone, Copy)]
pub enum Column<'a> {
    /// Local ids (`0..vocab`), one per row.
    Categorical(&'a [u64]),
    /// Values, one per row; must be finite.
    Numeric(&'a [f32]),
    /// Row `r` has the ids `ids[offsets[r]..offsets[r + 1]]`; `offsets` has `rows + 1` entries,
    /// starts at 0, never decreases and ends at `ids.len()`.
    MultiHot {
        /// Local ids of all rows, concatenated.
        ids: &'a [u64],
        /// Row boundaries into `ids`.
        offsets: &'a [usize],
        /// For a weighted field (and only for one: see [`FieldKind::MultiHot`]), the weight of
        /// each id, as long as `ids` and finite; `None` for an unweighted field.
        weights: Option<&'a [f32]>,
    },
}

impl Column<'_> {
    /// Rows in this column (for a multi-hot column, `offsets.len() - 1`; 0 if `offsets` is empty).
    pub fn rows(&self) -> usize {
        match self {
            Column::Categorical(ids) => ids.len(),
            Column::Numeric(values) => values.len(),
            Column::MultiHot { offsets, .. } => offsets.len().saturating_sub(1),
        }
    }

    /// Calls `f(id, weight)` for the terms of row `r`: the field's embedding is the weighted sum
    /// of the rows of those ids (and its first-order term the weighted sum of their first-order
    /// weights). A categorical id has weight 1, a numeric (or dense) field's single row (id 0)
    /// the value, each id of a multi-hot list but its padding id its pooling weight (of the
    /// embedding pooling; for `max` pooling, which is no weighted sum, each id gets 1 and the
    /// caller takes the maximum) times its own weight in a weighted field. The column must
    /// already be validated against `kind` (scoring and training do that); a mismatched kind
    /// yields no terms.
    pub fn for_each_term(&self, kind: &FieldKind, r: usize, mut f: impl FnMut(u64, f32)) {
        match (self, kind) {
            (Column::Categorical(ids), _) => f(ids[r], 1.0),
            (Column::Numeric(values), _) => f(0, values[r]),
            (
                Column::MultiHot {
                    ids,
                    offsets,
                    weights,
                },
                FieldKind::MultiHot {
                    pooling, padding, ..
                },
            ) => {
                let span = offsets[r]..offsets[r + 1];
                let own = |i: usize| weights.map_or(1.0, |w| w[i]);
                let real = || span.clone().filter(|&i| Some(ids[i]) != *padding);
                let w = pooling.weight(real().count());
                real().for_each(|i| f(ids[i], w * own(i)));
            }
            (Column::MultiHot { .. }, _) => {}
        }
    }

    /// The spec name of the kind this column carries.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Column::Categorical(_) => "categorical",
            Column::Numeric(_) => "numeric",
            Column::MultiHot { .. } => "multi_hot",
        }
    }
}

/// Anything that can hand out one [`Column`] per field.
///
/// Contract: during one scoring call, every call of [`Columns::column`] with the same index
/// returns the same data (scoring validates the columns once, then reads them again). An
/// implementation that breaks this can make scoring panic or read the wrong rows, never read
/// outside the model.
pub trait Columns {
    /// Number of columns.
    fn num_columns(&self) -> usize;
    /// Column `i` (`i < num_columns()`).
    fn column(&self, i: usize) -> Column<'_>;
    /// Rows in the batch (those of the first column; scoring checks that all columns agree).
    fn rows(&self) -> usize {
        if self.num_columns() == 0 {
            0
        } else {
            self.column(0).rows()
        }
    }
}

/// A batch over caller-owned columns, one per field in spec order.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    columns: &'a [Column<'a>],
}

impl<'a> Batch<'a> {
    /// Wraps columns; they are checked against the model when scored.
    pub fn new(columns: &'a [Column<'a>]) -> Self {
        Batch { columns }
    }
}

impl Columns for Batch<'_> {
    fn num_columns(&self) -> usize {
        self.columns.len()
    }
    fn column(&self, i: usize) -> Column<'_> {
        self.columns[i]
    }
}

/// One field's value in a row given to [`BatchBuf::push_row`].
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A categorical id.
    Id(u64),
    /// A numeric value.
    Num(f32),
    /// A multi-hot id list.
    Ids(Vec<u64>),
    /// A weighted multi-hot field's list: each id with its weight.
    WeightedIds(Vec<(u64, f32)>),
}

#[derive(Debug, Clone)]
enum OwnedColumn {
    Categorical(Vec<u64>),
    Numeric(Vec<f32>),
    MultiHot {
        ids: Vec<u64>,
        offsets: Vec<usize>,
        /// `Some` for a weighted field.
        weights: Option<Vec<f32>>,
    },
}

/// An owned batch, filled row by row or column by column, reusable with [`BatchBuf::clear`].
#[derive(Debug, Clone)]
pub struct BatchBuf {
    columns: Vec<OwnedColumn>,
    rows: usize,
}

/// A row given to [`BatchBuf::push_row`] did not match the spec.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("value {index} has the wrong kind or the row has {got} values for {expected} fields")]
pub struct RowShapeError {
    /// Index of the first offending value.
    pub index: usize,
    /// Values given.
    pub got: usize,
    /// Fields in the spec.
    pub expected: usize,
}

impl BatchBuf {
    /// An empty batch with one column per field of `spec`.
    pub fn new(spec: &ModelSpec) -> Self {
        let columns = spec
            .fields
            .iter()
            .map(|f| match f.kind {
                FieldKind::Categorical { .. } => OwnedColumn::Categorical(Vec::new()),
                FieldKind::Numeric | FieldKind::Dense => OwnedColumn::Numeric(Vec::new()),
                FieldKind::MultiHot { weighted, .. } => OwnedColumn::MultiHot {
                    ids: Vec::new(),
                    offsets: vec![0],
                    weights: weighted.then(Vec::new),
                },
            })
            .collect();
        BatchBuf { columns, rows: 0 }
    }

    /// Rows pushed so far.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// True when no row has been pushed.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Removes all rows, keeping the allocations.
    pub fn clear(&mut self) {
        for c in &mut self.columns {
            match c {
                OwnedColumn::Categorical(v) => v.clear(),
                OwnedColumn::Numeric(v) => v.clear(),
                OwnedColumn::MultiHot {
                    ids,
                    offsets,
                    weights,
                } => {
                    ids.clear();
                    offsets.truncate(1);
                    if let Some(w) = weights {
                        w.clear();
                    }
                }
            }
        }
        self.rows = 0;
    }

    /// Appends one row, one value per field in spec order ([`Value::WeightedIds`] for a
    /// weighted multi-hot field, [`Value::Ids`] for the others). Ids and values are checked
    /// when the batch is scored, not here; only the kinds and the count are checked here.
    pub fn push_row(&mut self, row: &[Value]) -> Result<(), RowShapeError> {
        let shape_error = |index| RowShapeError {
            index,
            got: row.len(),
            expected: self.columns.len(),
        };
        if row.len() != self.columns.len() {
            return Err(shape_error(row.len().min(self.columns.len())));
        }
        for (index, (c, v)) in self.columns.iter().zip(row).enumerate() {
            let ok = matches!(
                (c, v),
                (OwnedColumn::Categorical(_), Value::Id(_))
                    | (OwnedColumn::Numeric(_), Value::Num(_))
                    | (OwnedColumn::MultiHot { weights: None, .. }, Value::Ids(_))
                    | (
                        OwnedColumn::MultiHot {
                            weights: Some(_),
                            ..
                        },
                        Value::WeightedIds(_)
                    )
            );
            if !ok {
                return Err(shape_error(index));
            }
        }
        for (c, v) in self.columns.iter_mut().zip(row) {
            match (c, v) {
                (OwnedColumn::Categorical(col), Value::Id(id)) => col.push(*id),
                (OwnedColumn::Numeric(col), Value::Num(x)) => col.push(*x),
                (OwnedColumn::MultiHot { ids, offsets, .. }, Value::Ids(list)) => {
                    ids.extend_from_slice(list);
                    offsets.push(ids.len());
                }
                (
                    OwnedColumn::MultiHot {
                        ids,
                        offsets,
                        weights: Some(weights),
                    },
                    Value::WeightedIds(list),
                ) => {
                    ids.extend(list.iter().map(|&(id, _)| id));
                    weights.extend(list.iter().map(|&(_, w)| w));
                    offsets.push(ids.len());
                }
                _ => unreachable!("kinds checked above"),
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// Appends row `row` of `source` (any [`Columns`] whose column kinds match this batch's).
    /// Ids and values are copied as they are (checked when the batch is used).
    pub fn push_from<C: Columns + ?Sized>(
        &mut self,
        source: &C,
        row: usize,
    ) -> Result<(), RowShapeError> {
        let shape_error = |index| RowShapeError {
            index,
            got: source.num_columns(),
            expected: self.columns.len(),
        };
        if source.num_columns() != self.columns.len() {
            return Err(shape_error(source.num_columns().min(self.columns.len())));
        }
        for (index, c) in self.columns.iter().enumerate() {
            let fits = match (c, source.column(index)) {
                (OwnedColumn::Categorical(_), Column::Categorical(v)) => row < v.len(),
                (OwnedColumn::Numeric(_), Column::Numeric(v)) => row < v.len(),
                (
                    OwnedColumn::MultiHot { weights: own, .. },
                    Column::MultiHot {
                        ids,
                        offsets,
                        weights,
                    },
                ) => {
                    row + 1 < offsets.len()
                        && offsets[row] <= offsets[row + 1]
                        && offsets[row + 1] <= ids.len()
                        && own.is_some() == weights.is_some()
                        && weights.is_none_or(|w| w.len() == ids.len())
                }
                _ => false,
            };
            if !fits {
                return Err(shape_error(index));
            }
        }
        for (index, c) in self.columns.iter_mut().enumerate() {
            match (c, source.column(index)) {
                (OwnedColumn::Categorical(col), Column::Categorical(v)) => col.push(v[row]),
                (OwnedColumn::Numeric(col), Column::Numeric(v)) => col.push(v[row]),
                (
                    OwnedColumn::MultiHot {
                        ids,
                        offsets,
                        weights,
                    },
                    Column::MultiHot {
                        ids: src,
                        offsets: src_offsets,
                        weights: src_weights,
                    },
                ) => {
                    let span = src_offsets[row]..src_offsets[row + 1];
                    ids.extend_from_slice(&src[span.clone()]);
                    if let (Some(weights), Some(src)) = (weights, src_weights) {
                        weights.extend_from_slice(&src[span]);
                    }
                    offsets.push(ids.len());
                }
                _ => unreachable!("kinds checked above"),
            }
        }
        self.rows += 1;
        Ok(())
    }
}

impl Columns for BatchBuf {
    fn num_columns(&self) -> usize {
        self.columns.len()
    }
    fn column(&self, i: usize) -> Column<'_> {
        match &self.columns[i] {
            OwnedColumn::Categorical(v) => Column::Categorical(v),
            OwnedColumn::Numeric(v) => Column::Numeric(v),
            OwnedColumn::MultiHot {
                ids,
                offsets,
                weights,
            } => Column::MultiHot {
                ids,
                offsets,
                weights: weights.as_deref(),
            },
        }
    }
    fn rows(&self) -> usize {
        self.rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Field, Output, Pooling};

    #[test]
    fn push_row_checks_kinds_and_builds_offsets() {
        let spec = ModelSpec {
            mlp: Default::default(),
            table: Default::default(),
            fields: vec![
                Field {
                    name: "c".into(),
                    kind: FieldKind::Categorical { vocab: 5 },
                    table: None,
                },
                Field {
                    name: "m".into(),
                    kind: FieldKind::multi_hot(5, Pooling::Sum),
                    table: None,
                },
            ],
            embedding_dim: 2,
            hidden: vec![],
            output: Output::Sigmoid,
            clamp: None,
        };
        let mut b = BatchBuf::new(&spec);
        b.push_row(&[Value::Id(1), Value::Ids(vec![1, 2])]).unwrap();
        b.push_row(&[Value::Id(2), Value::Ids(vec![])]).unwrap();
        assert_eq!(
            b.push_row(&[Value::Num(1.0), Value::Ids(vec![])])
                .unwrap_err()
                .index,
            0
        );
        assert_eq!(b.push_row(&[Value::Id(1)]).unwrap_err().expected, 2);
        assert_eq!(b.len(), 2);
        match b.column(1) {
            Column::MultiHot {
                ids,
                offsets,
                weights: None,
            } => {
                assert_eq!(ids, &[1, 2]);
                assert_eq!(offsets, &[0, 2, 2]);
            }
            _ => panic!("wrong kind"),
        }
        b.clear();
        assert!(b.is_empty());
        assert_eq!(b.column(1).rows(), 0);
    }
}

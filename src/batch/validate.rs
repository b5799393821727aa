//! Checking a batch against the fields of a spec, before it is scored or trained on.

use super::{Column, Columns, ScoreError};
use crate::spec::{FieldKind, ModelSpec, Pooling};

/// Checks `batch` against the fields of `spec` (column count and kinds, row counts, ids inside
/// their vocabularies, finite values, well-formed offsets) and that `out_len` can hold a score
/// per row. Returns the row count. Scoring and training both check their batches with it.
pub(crate) fn validate<C: Columns + ?Sized>(
    spec: &ModelSpec,
    batch: &C,
    out_len: usize,
) -> Result<usize, ScoreError> {
    if batch.num_columns() != spec.fields.len() {
        return Err(ScoreError::ColumnCount {
            expected: spec.fields.len(),
            found: batch.num_columns(),
        });
    }
    let rows = batch.column(0).rows();
    if rows == 0 {
        return Err(ScoreError::EmptyBatch);
    }
    for (i, spec_field) in spec.fields.iter().enumerate() {
        let field = || spec_field.name.clone();
        let vocab = spec_field.kind.rows();
        let column = batch.column(i);
        let kind_ok = matches!(
            (&spec_field.kind, &column),
            (FieldKind::Categorical { .. }, Column::Categorical(_))
                | (FieldKind::Numeric | FieldKind::Dense, Column::Numeric(_))
                | (FieldKind::MultiHot { .. }, Column::MultiHot { .. })
        );
        if !kind_ok {
            return Err(ScoreError::ColumnKind {
                field: field(),
                expected: spec_field.kind.name(),
                found: column.kind_name(),
            });
        }
        if column.rows() != rows {
            return Err(ScoreError::RowCount {
                field: field(),
                expected: rows,
                found: column.rows(),
            });
        }
        let check_ids = |ids: &[u64], first_row: &dyn Fn(usize) -> usize| match ids
            .iter()
            .position(|&id| id >= vocab)
        {
            Some(p) => Err(ScoreError::IdOutOfRange {
                field: field(),
                row: first_row(p),
                id: ids[p],
                vocab,
            }),
            None => Ok(()),
        };
        match column {
            Column::Categorical(ids) => check_ids(ids, &|p| p)?,
            Column::Numeric(values) => {
                if let Some(row) = values.iter().position(|v| !v.is_finite()) {
                    return Err(ScoreError::NonFinite {
                        field: field(),
                        row,
                        value: values[row],
                    });
                }
            }
            Column::MultiHot {
                ids,
                offsets,
                weights,
            } => {
                let bad_start = offsets[0] != 0;
                let bad_step = offsets.windows(2).position(|w| w[0] > w[1]);
                if bad_start || bad_step.is_some() || offsets[rows] != ids.len() {
                    let row = if bad_start {
                        0
                    } else {
                        bad_step.unwrap_or(rows - 1)
                    };
                    return Err(ScoreError::BadOffsets {
                        field: field(),
                        row,
                    });
                }
                // The row of a bad id or weight is found only on the error path.
                let row_of = |p: usize| offsets.partition_point(|&o| o <= p) - 1;
                check_ids(ids, &row_of)?;
                let weighted =
                    matches!(spec_field.kind, FieldKind::MultiHot { weighted: true, .. });
                let problem = match weights {
                    None if weighted => {
                        Some("the field is weighted: the column needs a weight per id".to_string())
                    }
                    Some(_) if !weighted => {
                        Some("the field is not weighted, the column carries weights".to_string())
                    }
                    Some(w) if w.len() != ids.len() => {
                        Some(format!("{} weights for {} ids", w.len(), ids.len()))
                    }
                    _ => None,
                };
                if let Some(problem) = problem {
                    return Err(ScoreError::BadWeights {
                        field: field(),
                        problem,
                    });
                }
                if let Some(p) = weights.and_then(|w| w.iter().position(|v| !v.is_finite())) {
                    return Err(ScoreError::NonFinite {
                        field: field(),
                        row: row_of(p),
                        value: weights.expect("found in it")[p],
                    });
                }
                if let FieldKind::MultiHot {
                    pooling,
                    linear_pooling,
                    padding,
                    ..
                } = spec_field.kind
                    && (pooling == Pooling::Max || linear_pooling == Pooling::Max)
                    && let Some(row) = (0..rows).find(|&r| {
                        ids[offsets[r]..offsets[r + 1]]
                            .iter()
                            .all(|&id| Some(id) == padding)
                    })
                {
                    return Err(ScoreError::EmptyMaxPool {
                        field: field(),
                        row,
                    });
                }
            }
        }
    }
    if out_len < rows {
        return Err(ScoreError::OutputTooShort {
            needed: rows,
            found: out_len,
        });
    }
    Ok(rows)
}

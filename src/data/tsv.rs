//! The scoring TSV: one sample a line, one tab-separated column per field in spec order: a local
//! id for a categorical field, a float for a numeric field, comma-separated local ids for a
//! multi-hot field (an empty column is an empty list), each written `id:weight` for a weighted
//! one. A trailing `\r` is ignored.

use crate::batch::{BatchBuf, Value};
use crate::spec::{FieldKind, ModelSpec};
use thiserror::Error;

/// A line that is not a valid sample for the spec.
#[derive(Debug, Error, Clone, PartialEq)]
#[error("line {line}, field {field}: {problem}")]
pub struct TsvError {
    /// 1-based line number.
    pub line: usize,
    /// Field name (or `(line)` for a wrong column count).
    pub field: String,
    /// What is wrong.
    pub problem: String,
}

/// Parses one line (without its `\n`) and appends it to `batch`. Ids are checked against each
/// field's vocabulary and values must be finite, so a batch filled by this function passes
/// scoring's input validation (scoring can still report [`crate::ScoreError::NonFiniteScore`]
/// if a huge value overflows inside the model).
pub fn push_line(
    spec: &ModelSpec,
    line: &str,
    line_no: usize,
    batch: &mut BatchBuf,
    row: &mut Vec<Value>,
) -> Result<(), TsvError> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let err = |field: &str, problem: String| TsvError {
        line: line_no,
        field: field.to_string(),
        problem,
    };
    let columns = line.split('\t').count();
    if columns != spec.fields.len() {
        return Err(err(
            "(line)",
            format!(
                "{columns} columns, the model has {} fields",
                spec.fields.len()
            ),
        ));
    }
    row.clear();
    for (text, field) in line.split('\t').zip(&spec.fields) {
        let id = |t: &str, vocab: u64| -> Result<u64, TsvError> {
            let id: u64 = t
                .trim()
                .parse()
                .map_err(|_| err(&field.name, format!("{t:?} is not an id")))?;
            if id >= vocab {
                return Err(err(&field.name, format!("id {id} is outside 0..{vocab}")));
            }
            Ok(id)
        };
        row.push(match field.kind {
            FieldKind::Categorical { vocab } => Value::Id(id(text, vocab)?),
            FieldKind::Numeric | FieldKind::Dense => {
                let v: f32 = text
                    .trim()
                    .parse()
                    .map_err(|_| err(&field.name, format!("{text:?} is not a number")))?;
                if !v.is_finite() {
                    return Err(err(&field.name, format!("{text:?} is not finite")));
                }
                Value::Num(v)
            }
            FieldKind::MultiHot {
                vocab,
                weighted: false,
                ..
            } => Value::Ids(if text.trim().is_empty() {
                Vec::new()
            } else {
                text.split(',')
                    .map(|t| id(t, vocab))
                    .collect::<Result<_, _>>()?
            }),
            FieldKind::MultiHot {
                vocab,
                weighted: true,
                ..
            } => Value::WeightedIds(if text.trim().is_empty() {
                Vec::new()
            } else {
                text.split(',')
                    .map(|t| {
                        let (t, w) = weighted_token(t).map_err(|p| err(&field.name, p))?;
                        Ok((id(t, vocab)?, w))
                    })
                    .collect::<Result<_, _>>()?
            }),
        });
    }
    batch
        .push_row(row)
        .expect("values were built from the spec's kinds");
    Ok(())
}

/// Splits a weighted multi-hot token `token:weight` at its last `:` (so that raw tokens may
/// hold one), checking the weight is a finite f32.
pub(crate) fn weighted_token(text: &str) -> Result<(&str, f32), String> {
    let (token, weight) = text
        .trim()
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?} has no weight: a weighted field takes id:weight"))?;
    match weight.trim().parse::<f32>() {
        Ok(w) if w.is_finite() => Ok((token.trim(), w)),
        _ => Err(format!(
            "{text:?}: the weight {weight:?} is not a finite number"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::mixed_small;

    #[test]
    fn parses_and_reports_line_and_field() {
        let spec = mixed_small();
        let mut batch = BatchBuf::new(&spec);
        let mut row = Vec::new();
        push_line(&spec, "3\t0.5\t1,2\t\r", 1, &mut batch, &mut row).unwrap();
        assert_eq!(batch.len(), 1);
        let bad = [
            ("500\t0.5\t1\t", "user", "outside"),
            ("3\tnan\t1\t", "age", "finite"),
            ("3\tx\t1\t", "age", "number"),
            ("3\t1\t1,,2\t", "genres", "not an id"),
            ("3\t1\t1", "(line)", "3 columns"),
        ];
        for (line, field, problem) in bad {
            let e = push_line(&spec, line, 7, &mut batch, &mut row).unwrap_err();
            assert_eq!((e.line, e.field.as_str()), (7, field), "{line:?}");
            assert!(e.problem.contains(problem), "{line:?}: {}", e.problem);
        }
        assert_eq!(batch.len(), 1);
    }

    #[test]
    fn weighted_lists_take_id_weight_pairs() {
        let mut spec = mixed_small();
        spec.fields[3].kind = FieldKind::MultiHot {
            vocab: 40,
            pooling: crate::Pooling::Sum,
            linear_pooling: crate::Pooling::Sum,
            padding: None,
            weighted: true,
        };
        let mut batch = BatchBuf::new(&spec);
        let mut row = Vec::new();
        push_line(&spec, "3\t0.5\t1\t4:0.5, 7:-2e-1", 1, &mut batch, &mut row).unwrap();
        push_line(&spec, "3\t0.5\t1\t", 2, &mut batch, &mut row).unwrap();
        let crate::Column::MultiHot {
            ids,
            offsets,
            weights: Some(weights),
        } = crate::Columns::column(&batch, 3)
        else {
            panic!("a weighted column")
        };
        assert_eq!(
            (ids, offsets, weights),
            (&[4, 7][..], &[0, 2, 2][..], &[0.5, -0.2][..])
        );
        for (line, problem) in [
            ("3\t0.5\t1\t4", "has no weight"),
            ("3\t0.5\t1\t4:x", "not a finite number"),
            ("3\t0.5\t1\t4:inf", "not a finite number"),
            ("3\t0.5\t1\t4:1e39", "not a finite number"),
            ("3\t0.5\t1\t40:1", "outside"),
        ] {
            let e = push_line(&spec, line, 9, &mut batch, &mut row).unwrap_err();
            assert_eq!(e.field, "tags", "{line:?}");
            assert!(e.problem.contains(problem), "{line:?}: {}", e.problem);
        }
    }
}

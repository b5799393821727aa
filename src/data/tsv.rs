//! The scoring TSV: one sample a line, one tab-separated column per field in spec order: a local
//! id for a categorical field, a float for a numeric field, comma-separated local ids for a
//! multi-hot field (an empty column is an empty list). A trailing `\r` is ignored.

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
            FieldKind::MultiHot { vocab, .. } => Value::Ids(if text.trim().is_empty() {
                Vec::new()
            } else {
                text.split(',')
                    .map(|t| id(t, vocab))
                    .collect::<Result<_, _>>()?
            }),
        });
    }
    batch
        .push_row(row)
        .expect("values were built from the spec's kinds");
    Ok(())
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
}

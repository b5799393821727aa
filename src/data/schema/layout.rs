//! Where a file's columns are, and cutting a line into them (CSV quoting included).

use super::Schema;
use crate::data::error::{At, DataError};
use std::borrow::Cow;

/// Where a file's columns are: the delimiter, whether line 1 is a header, and the column index
/// of the label (if present) and of each field.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Layout {
    pub delimiter: u8,
    pub header: bool,
    pub columns: usize,
    pub label: Option<usize>,
    pub fields: Vec<usize>,
}

impl Layout {
    /// Places the columns using the schema's `columns` or the file's first line.
    pub(super) fn find(
        schema: &Schema,
        first: &str,
        name: &str,
        labelled: bool,
    ) -> Result<Layout, DataError> {
        let first = first.strip_suffix('\r').unwrap_or(first);
        let delimiter = match schema.delimiter {
            Some(d) => d as u8,
            None if first.contains('\t') => b'\t',
            None => b',',
        };
        let (names, header): (Vec<String>, bool) = match &schema.columns {
            Some(columns) => (columns.clone(), false),
            None => {
                let at = At {
                    file: name,
                    line: 1,
                };
                let mut cells = Vec::new();
                split_record(first, delimiter, at, &mut cells)?;
                (
                    cells.into_iter().map(|c| c.trim().to_string()).collect(),
                    true,
                )
            }
        };
        let find = |column: &str| names.iter().position(|n| n == column);
        let missing = |what: &str, column: &str| {
            let problem = format!("the header has no column {column:?} ({what})");
            At {
                file: name,
                line: 1,
            }
            .err(1, "(header)", problem, first.as_bytes())
        };
        let label = find(&schema.label);
        if labelled && label.is_none() {
            return Err(missing("the label", &schema.label));
        }
        let fields = (schema.fields.iter())
            .map(|f| {
                let column = f.column(schema).unwrap_or(&f.name);
                find(column).ok_or_else(|| missing(&format!("field {}", f.name), column))
            })
            .collect::<Result<_, _>>()?;
        Ok(Layout {
            delimiter,
            header,
            columns: names.len(),
            label,
            fields,
        })
    }

    /// Not blank, and not the header.
    pub(super) fn accepts(&self, line: &str, line_no: usize) -> bool {
        let header = self.header && line_no == 1;
        !header && !line.trim().is_empty()
    }

    /// Splits a line into exactly `self.columns` values.
    pub(super) fn split<'a>(
        &self,
        line: &'a str,
        at: At,
        out: &mut Vec<Cow<'a, str>>,
    ) -> Result<(), DataError> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        split_record(line, self.delimiter, at, out)?;
        if out.len() != self.columns {
            let problem = format!(
                "{} columns where the header has {}",
                out.len(),
                self.columns
            );
            return Err(at.err(
                out.len().min(self.columns) + 1,
                "(line)",
                problem,
                line.as_bytes(),
            ));
        }
        Ok(())
    }
}

/// Splits one CSV record (one line, without its newline) at `delimiter`, undoing CSV quoting.
/// Lines without quotes are split in place; quoted ones go through `csv-core`.
pub(super) fn split_record<'a>(
    line: &'a str,
    delimiter: u8,
    at: At,
    out: &mut Vec<Cow<'a, str>>,
) -> Result<(), DataError> {
    out.clear();
    if !line.contains('"') {
        out.extend(line.split(delimiter as char).map(Cow::Borrowed));
        return Ok(());
    }
    let mut reader = csv_core::ReaderBuilder::new().delimiter(delimiter).build();
    // Unquoting never lengthens a field, and a record has at most one field per delimiter + 1.
    let mut bytes = vec![0u8; line.len()];
    let mut ends = vec![0usize; line.bytes().filter(|&b| b == delimiter).count() + 1];
    use csv_core::ReadRecordResult::{InputEmpty, Record};
    let (first, read, mut written, mut fields) =
        reader.read_record(line.as_bytes(), &mut bytes, &mut ends);
    let complete = match first {
        // The whole line was read; an empty input ends the record.
        InputEmpty if read == line.len() => {
            let (last, _, wrote, ended) =
                reader.read_record(&[], &mut bytes[written..], &mut ends[fields..]);
            written += wrote;
            fields += ended;
            last == Record
        }
        // A bare `\r` inside the line would end a record early.
        Record => read == line.len(),
        _ => false,
    };
    if !complete {
        return Err(at.err(1, "(line)", "malformed quoting", line.as_bytes()));
    }
    let text = std::str::from_utf8(&bytes[..written])
        .map_err(|_| at.err(1, "(line)", "malformed quoting", line.as_bytes()))?;
    let mut start = 0;
    for &end in &ends[..fields] {
        out.push(Cow::Owned(text[start..end].to_string()));
        start = end;
    }
    Ok(())
}

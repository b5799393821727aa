//! Helpers of the data-parser targets: parsing twice with different buffering, line counts, error checks, batch checks, temporary files.

use super::*;

/// Runs a reader-based parser on `text` twice: as one slice, and through a 7-byte
/// `BufReader` (so lines, `\r\n` pairs and `::` separators straddle buffer refills). Both must
/// give the same result (values compared with `==`, errors by their `Debug` text); returns the
/// first.
pub(crate) fn twice<T: PartialEq>(
    text: &[u8],
    parse: impl Fn(&mut dyn BufRead) -> Result<T, DataError>,
) -> Result<T, DataError> {
    let whole = parse(&mut &text[..]);
    let pieces = parse(&mut BufReader::with_capacity(7, text));
    let same = match (&whole, &pieces) {
        (Ok(a), Ok(b)) => a == b,
        (Err(a), Err(b)) => format!("{a:?}") == format!("{b:?}"),
        _ => false,
    };
    assert!(
        same,
        "the result depends on how the input is buffered ({:?} vs {:?}); input: {:?}",
        whole.as_ref().err(),
        pieces.as_ref().err(),
        String::from_utf8_lossy(text)
    );
    whole
}

/// Lines of `text` as the crate's readers count them: split at `\n`, a final `\n` ends the last
/// line rather than starting an empty one.
pub(crate) fn line_count(text: &[u8]) -> usize {
    let n = text.split(|&b| b == b'\n').count();
    if text.is_empty() || text.ends_with(b"\n") {
        n - 1
    } else {
        n
    }
}

/// A data error names a line that exists and a column from 1, shows at most ~40 characters of
/// the offending text, and formats without panicking.
pub(crate) fn check_data_error(e: &DataError, lines: usize, context: &dyn std::fmt::Debug) {
    let _ = e.to_string();
    if let DataError::Parse {
        line, column, text, ..
    } = e
    {
        assert!(
            (1..=lines.max(1)).contains(line),
            "error on line {line} of {lines}: {e}; input: {context:?}"
        );
        assert!(*column >= 1, "column 0: {e}; input: {context:?}");
        assert!(
            text.chars().count() <= 41,
            "snippet of {} characters; input: {context:?}",
            text.chars().count()
        );
    }
}

/// Every id of `batch` below its field's vocabulary and every numeric value finite: what
/// scoring validates.
pub(crate) fn assert_batch_fits(spec: &ModelSpec, batch: &BatchBuf, context: &dyn std::fmt::Debug) {
    for (i, field) in spec.fields.iter().enumerate() {
        let vocab = field.kind.rows();
        match (batch.column(i), field.kind) {
            (Column::Categorical(ids), FieldKind::Categorical { .. }) => assert!(
                ids.iter().all(|&id| id < vocab),
                "field {}: id out of range; input: {context:?}",
                field.name
            ),
            (Column::Numeric(values), FieldKind::Numeric) => assert!(
                values.iter().all(|v| v.is_finite()),
                "field {}: non-finite value; input: {context:?}",
                field.name
            ),
            (Column::MultiHot { ids, .. }, FieldKind::MultiHot { .. }) => assert!(
                ids.iter().all(|&id| id < vocab),
                "field {}: id out of range; input: {context:?}",
                field.name
            ),
            (c, _) => panic!("field {}: a {} column", field.name, c.kind_name()),
        }
    }
}

/// Row `r` of every column, for comparing two batches.
pub(crate) fn row_debug(batch: &BatchBuf, r: usize) -> String {
    let mut s = String::new();
    for i in 0..batch.num_columns() {
        let cell = match batch.column(i) {
            Column::Categorical(ids) => format!("{}", ids[r]),
            Column::Numeric(v) => format!("{:?}", v[r].to_bits()),
            Column::MultiHot {
                ids,
                offsets,
                weights,
            } => {
                let span = offsets[r]..offsets[r + 1];
                let weights = weights.map(|w| {
                    w[span.clone()]
                        .iter()
                        .map(|v| v.to_bits())
                        .collect::<Vec<_>>()
                });
                format!("{:?}{:?}", &ids[span], weights)
            }
        };
        s.push_str(&cell);
        s.push('\t');
    }
    s
}

/// Writes `bytes` to a fresh temporary file (removed by the caller).
pub(crate) fn temp_file(tag: &str, bytes: &[u8]) -> PathBuf {
    let path = temp_path(tag);
    std::fs::write(&path, bytes).expect("write a temporary data file");
    path
}

/// Splits `bytes` into lines as `LineReader` does (at `\n`; a final `\n` ends the last line).
pub(crate) fn lines_of(bytes: &[u8]) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        lines.pop();
    }
    lines
}

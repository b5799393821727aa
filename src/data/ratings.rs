//! Interaction files with string ids: `user, item[, rating[, timestamp]]` per line, the
//! separator detected from the first data line (`::` as in MovieLens, tab, comma or `|`), an
//! optional header line (detected: its third column is not a number), CRLF line endings.
//! What `deepfm train --ratings`, `predict --pairs` and `eval` read.

use super::DataError;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// Interactions read from a file: parallel columns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Interactions {
    /// User id of each line.
    pub users: Vec<String>,
    /// Item id of each line.
    pub items: Vec<String>,
    /// Rating of each line (1 when the file has only two columns).
    pub ratings: Vec<f32>,
    /// Timestamp of each line (0 when absent).
    pub timestamps: Vec<u64>,
    /// Lines skipped because they did not parse (only when reading with `skip_bad_lines`).
    pub skipped: usize,
    /// The first skipped line's error.
    pub first_skipped: Option<String>,
}

/// The separators tried, most specific first.
const SEPARATORS: [&str; 4] = ["::", "\t", ",", "|"];

fn detect(line: &str) -> &'static str {
    SEPARATORS
        .iter()
        .find(|s| line.contains(**s))
        .copied()
        .unwrap_or(",")
}

/// Reads `path` (see the module documentation). With `pairs_only`, a third column is allowed
/// but not required and ratings default to 1.
pub fn read_interactions(path: &Path, pairs_only: bool) -> Result<Interactions, DataError> {
    read_interactions_with(path, pairs_only, false)
}

/// [`read_interactions`]; with `skip_bad_lines`, a line that does not parse is counted in
/// [`Interactions::skipped`] and skipped instead of ending the read with its error.
pub fn read_interactions_with(
    path: &Path,
    pairs_only: bool,
    skip_bad_lines: bool,
) -> Result<Interactions, DataError> {
    let file = std::fs::File::open(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let name = path.display().to_string();
    parse_interactions_with(BufReader::new(file), &name, pairs_only, skip_bad_lines)
}

/// As [`read_interactions`], from any reader; `name` appears in errors.
pub fn parse_interactions<R: BufRead>(
    reader: R,
    name: &str,
    pairs_only: bool,
) -> Result<Interactions, DataError> {
    parse_interactions_with(reader, name, pairs_only, false)
}

/// As [`read_interactions_with`], from any reader.
pub fn parse_interactions_with<R: BufRead>(
    reader: R,
    name: &str,
    pairs_only: bool,
    skip_bad_lines: bool,
) -> Result<Interactions, DataError> {
    let mut out = Interactions::default();
    let mut separator = None;
    for (index, line) in reader.split(b'\n').enumerate() {
        let line_no = index + 1;
        let bytes = line.map_err(|source| DataError::Io {
            path: name.into(),
            source,
        })?;
        let text = String::from_utf8_lossy(&bytes);
        let text = text.strip_suffix('\r').unwrap_or(&text);
        if text.trim().is_empty() {
            continue;
        }
        let sep = *separator.get_or_insert_with(|| detect(text));
        let header_allowed = out.users.is_empty() && line_no == 1;
        match parse_line(text, sep, line_no, name, pairs_only, header_allowed) {
            Ok(Some((user, item, rating, timestamp))) => {
                out.users.push(user.to_string());
                out.items.push(item.to_string());
                out.ratings.push(rating);
                out.timestamps.push(timestamp);
            }
            Ok(None) => {}
            Err(e) if skip_bad_lines => {
                out.skipped += 1;
                out.first_skipped.get_or_insert_with(|| e.to_string());
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// One line's user, item, rating and timestamp; `None` for the header.
fn parse_line<'a>(
    text: &'a str,
    sep: &str,
    line_no: usize,
    name: &str,
    pairs_only: bool,
    header_allowed: bool,
) -> Result<Option<(&'a str, &'a str, f32, u64)>, DataError> {
    let cols: Vec<&str> = text.split(sep).map(str::trim).collect();
    let parse_err = |column: usize, field: &str, problem: &str| DataError::Parse {
        file: name.to_string(),
        line: line_no,
        column,
        field: field.to_string(),
        problem: problem.to_string(),
        text: cols
            .get(column - 1)
            .unwrap_or(&"")
            .chars()
            .take(40)
            .collect(),
    };
    let needed = if pairs_only { 2 } else { 3 };
    if cols.len() < needed || cols[0].is_empty() || cols[1].is_empty() {
        return Err(parse_err(
            cols.len().min(needed),
            "line",
            &format!("expected at least {needed} non-empty columns separated by {sep:?}"),
        ));
    }
    let rating = match cols.get(2) {
        Some(r) => match r.parse::<f32>() {
            Ok(v) if v.is_finite() => v,
            // A header: the first line's rating column is a word.
            _ if header_allowed => return Ok(None),
            _ => return Err(parse_err(3, "rating", "not a finite number")),
        },
        None => 1.0,
    };
    // Whole seconds; RecBole's atomic files type timestamps as float (`881250949.0`).
    let timestamp = match cols.get(3) {
        Some(t) if !t.is_empty() => match t.parse::<u64>() {
            Ok(v) => v,
            Err(_) => match t.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 && v < u64::MAX as f64 => v as u64,
                _ => return Err(parse_err(4, "timestamp", "not a non-negative number")),
            },
        },
        _ => 0,
    };
    Ok(Some((cols[0], cols[1], rating, timestamp)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_lines_stop_the_read_or_are_skipped_and_counted() {
        let text = "u,i,rating,ts\n1,2,4,100\n1,3,x,101\n2\n2,3,5,102.0\n";
        let err = parse(text, false).unwrap_err().to_string();
        assert!(err.contains("line 3, column 3 (rating)"), "{err}");
        let read = parse_interactions_with(text.as_bytes(), "t", false, true).unwrap();
        assert_eq!((read.ratings.len(), read.skipped), (2, 2));
        assert!(read.first_skipped.unwrap().contains("line 3"));
        // RecBole types timestamps as float.
        assert_eq!(read.timestamps, [100, 102]);
    }

    fn parse(text: &str, pairs: bool) -> Result<Interactions, DataError> {
        parse_interactions(text.as_bytes(), "t", pairs)
    }

    #[test]
    fn detects_separators_headers_and_crlf() {
        let ml = parse("1::1193::5::978300760\n1::661::3::978302109\n", false).unwrap();
        assert_eq!(ml.users, ["1", "1"]);
        assert_eq!(ml.items, ["1193", "661"]);
        assert_eq!(ml.ratings, [5.0, 3.0]);
        assert_eq!(ml.timestamps, [978300760, 978302109]);
        let csv = parse(
            "user,item,rating\r\nalice,book-1,4.5\r\nbob,book-2,1\r\n",
            false,
        )
        .unwrap();
        assert_eq!(csv.users, ["alice", "bob"]);
        assert_eq!(csv.ratings, [4.5, 1.0]);
        let tsv = parse("196\t242\t3\t881250949\n", false).unwrap();
        assert_eq!(tsv.items, ["242"]);
        let pairs = parse("u1,i1\nu2,i2\n", true).unwrap();
        assert_eq!(pairs.ratings, [1.0, 1.0]);
    }

    #[test]
    fn errors_name_the_line_and_column() {
        let err = parse("a,b,3\na,b,x\n", false).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("rating"), "{err}");
        let err = parse("a,b,3\nonlyone\n", false).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        let err = parse("a,b,3,notatime\n", false).unwrap_err().to_string();
        assert!(err.contains("timestamp"), "{err}");
        assert!(parse("a,b\n", false).is_err());
    }
}

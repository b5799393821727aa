//! Interaction files with string ids: `user, item[, rating[, timestamp]]` per line, the
//! separator detected from the first line (`::` as in MovieLens, tab, comma or `|`), CRLF line
//! endings, blank lines ignored. What `deepfm train --ratings`, `predict --pairs` and `eval` read.
//!
//! **Headers.** Whether the first non-blank line is a header is decided once, the same way for
//! every reader ([`Header`]): `Yes` and `No` say so; `Auto` (the default) takes it as a header
//! when [`detect_header`] finds a reason, and [`Interactions::header`] returns its column names
//! (and [`Interactions::header_reason`] why), so a caller can say what it skipped. Every other
//! line is a sample: the records read are exactly the non-blank lines minus the header.

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
    /// The header's column names, when the first line was read as a header.
    pub header: Option<Vec<String>>,
    /// Why the first line was read as a header ([`Header::Yes`], or what [`detect_header`]
    /// found).
    pub header_reason: Option<HeaderReason>,
    /// Lines skipped because they did not parse (only when reading with `skip_bad_lines`).
    pub skipped: usize,
    /// The first skipped line's error.
    pub first_skipped: Option<String>,
}

/// Whether the first non-blank line of a file is a header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Header {
    /// A header when [`detect_header`] finds a reason to think so (the default).
    #[default]
    Auto,
    /// The first line is a header, whatever it holds.
    Yes,
    /// The first line is a sample like every other (a non-numeric rating there is an error).
    No,
}

impl std::str::FromStr for Header {
    type Err = String;

    /// `auto`, `yes` or `no`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Header::Auto),
            "yes" => Ok(Header::Yes),
            "no" => Ok(Header::No),
            _ => Err(format!("{s:?} is not a header mode (auto, yes, no)")),
        }
    }
}

/// Why a first line was taken for a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderReason {
    /// [`Header::Yes`] said so.
    Told,
    /// Its columns are RecBole typed names (`user_id:token`).
    TypedNames,
    /// Its rating (third) column is not a number.
    NotANumber,
    /// A column that holds a number on the next line holds text here.
    TextAboveNumbers,
    /// Its user and item columns are the column names the model was trained with.
    TrainingNames,
    /// Its user and item columns are common id column names (`user_id`, `itemId`, `movie` …).
    CommonNames,
}

impl std::fmt::Display for HeaderReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HeaderReason::Told => "as told",
            HeaderReason::TypedNames => "its columns are typed names",
            HeaderReason::NotANumber => "its rating column is not a number",
            HeaderReason::TextAboveNumbers => {
                "a column that holds numbers on line 2 holds text there"
            }
            HeaderReason::TrainingNames => "it names the model's training columns",
            HeaderReason::CommonNames => "its columns are common id column names",
        })
    }
}

/// How to read an interactions file.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions<'a> {
    /// Pairs (`predict --pairs`): a rating column is allowed but not required (ratings default
    /// to 1).
    pub pairs_only: bool,
    /// A line that does not parse is counted in [`Interactions::skipped`] and skipped, instead
    /// of ending the read with its error.
    pub skip_bad_lines: bool,
    /// Whether the first line is a header.
    pub header: Header,
    /// Column names the model was trained with (the header of its training file, kept in the
    /// model): a first line that repeats them is a header under [`Header::Auto`].
    pub training_columns: Option<&'a [String]>,
}

/// User and item column names that mark a first line as a header (compared in lower case,
/// without `_`, `-`, `.` and spaces).
const USER_NAMES: [&str; 8] = [
    "user",
    "userid",
    "users",
    "uid",
    "username",
    "customer",
    "customerid",
    "reviewerid",
];
const ITEM_NAMES: [&str; 22] = [
    "item",
    "itemid",
    "items",
    "iid",
    "movie",
    "movieid",
    "product",
    "productid",
    "asin",
    "book",
    "bookid",
    "isbn",
    "song",
    "songid",
    "track",
    "trackid",
    "artist",
    "artistid",
    "article",
    "articleid",
    "business",
    "businessid",
];

/// RecBole atomic-file column types (`name:type`).
const RECBOLE_TYPES: [&str; 4] = ["token", "float", "token_seq", "float_seq"];

/// Whether `first` (the first non-blank line, split into trimmed columns) is a header, and why;
/// `next` is the line after it, if any, and `training_columns` the names the model was trained
/// with, if known. The reasons, in the order tried:
///
/// 1. every column is a RecBole typed name (`user_id:token`);
/// 2. the rating (third) column is not a number;
/// 3. a column that holds a number on the next line holds something else here
///    (`user_id,item_id` above `196,242`);
/// 4. the user and item columns equal `training_columns`' (case-insensitive);
/// 5. the user and item columns are common names of id columns (`user_id`, `userId`, `uid`,
///    `item`, `movie_id`, `asin` …).
///
/// A file of string ids whose header is none of these needs [`Header::Yes`].
pub fn detect_header(
    first: &[&str],
    next: Option<&[&str]>,
    training_columns: Option<&[String]>,
) -> Option<HeaderReason> {
    let is_number = |s: &str| s.parse::<f64>().is_ok_and(f64::is_finite);
    let typed = |s: &str| {
        s.rsplit_once(':')
            .is_some_and(|(name, ty)| !name.is_empty() && RECBOLE_TYPES.contains(&ty))
    };
    if first.len() >= 2 && first.iter().all(|c| typed(c)) {
        return Some(HeaderReason::TypedNames);
    }
    if first.get(2).is_some_and(|rating| !is_number(rating)) {
        return Some(HeaderReason::NotANumber);
    }
    if let Some(next) = next
        && first
            .iter()
            .zip(next)
            .any(|(here, there)| !is_number(here) && is_number(there))
    {
        return Some(HeaderReason::TextAboveNumbers);
    }
    let squash = |s: &str| -> String {
        s.chars()
            .filter(|c| !matches!(c, '_' | '-' | '.' | ' '))
            .flat_map(char::to_lowercase)
            .collect()
    };
    if first.len() >= 2 {
        let (user, item) = (squash(first[0]), squash(first[1]));
        if let Some(names) = training_columns
            && names.len() >= 2
            && user == squash(&names[0])
            && item == squash(&names[1])
        {
            return Some(HeaderReason::TrainingNames);
        }
        if USER_NAMES.contains(&user.as_str()) && ITEM_NAMES.contains(&item.as_str()) {
            return Some(HeaderReason::CommonNames);
        }
    }
    None
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

/// Reads `path` (see the module documentation), the header detected. With `pairs_only`, a
/// third column is allowed but not required and ratings default to 1.
pub fn read_interactions(path: &Path, pairs_only: bool) -> Result<Interactions, DataError> {
    read_interactions_with(
        path,
        &ReadOptions {
            pairs_only,
            ..ReadOptions::default()
        },
    )
}

/// [`read_interactions`] with every option.
pub fn read_interactions_with(
    path: &Path,
    options: &ReadOptions<'_>,
) -> Result<Interactions, DataError> {
    let file = std::fs::File::open(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let name = path.display().to_string();
    parse_interactions_with(BufReader::new(file), &name, options)
}

/// As [`read_interactions`], from any reader; `name` appears in errors.
pub fn parse_interactions<R: BufRead>(
    reader: R,
    name: &str,
    pairs_only: bool,
) -> Result<Interactions, DataError> {
    let options = ReadOptions {
        pairs_only,
        ..ReadOptions::default()
    };
    parse_interactions_with(reader, name, &options)
}

/// As [`read_interactions_with`], from any reader.
pub fn parse_interactions_with<R: BufRead>(
    reader: R,
    name: &str,
    options: &ReadOptions<'_>,
) -> Result<Interactions, DataError> {
    let mut out = Interactions::default();
    let mut lines = reader.split(b'\n').enumerate();
    // The next non-blank line and its number, without its line ending.
    let mut next_line = || -> Result<Option<(usize, String)>, DataError> {
        for (index, line) in lines.by_ref() {
            let bytes = line.map_err(|source| DataError::Io {
                path: name.into(),
                source,
            })?;
            let text = String::from_utf8_lossy(&bytes);
            let text = text.strip_suffix('\r').unwrap_or(&text);
            if !text.trim().is_empty() {
                return Ok(Some((index + 1, text.to_string())));
            }
        }
        Ok(None)
    };
    let Some(first) = next_line()? else {
        return Ok(out);
    };
    let sep = detect(&first.1);
    let columns =
        |text: &str| -> Vec<String> { text.split(sep).map(|c| c.trim().into()).collect() };
    let second = next_line()?;
    let first_columns = columns(&first.1);
    let reason = match options.header {
        Header::Yes => Some(HeaderReason::Told),
        Header::No => None,
        Header::Auto => {
            let here: Vec<&str> = first_columns.iter().map(String::as_str).collect();
            let next = second.as_ref().map(|(_, t)| columns(t));
            let next: Option<Vec<&str>> = next
                .as_ref()
                .map(|c| c.iter().map(String::as_str).collect());
            detect_header(&here, next.as_deref(), options.training_columns)
        }
    };
    let mut record = |(line_no, text): (usize, String)| -> Result<(), DataError> {
        match parse_line(&text, sep, line_no, name, options.pairs_only) {
            Ok((user, item, rating, timestamp)) => {
                out.users.push(user.to_string());
                out.items.push(item.to_string());
                out.ratings.push(rating);
                out.timestamps.push(timestamp);
            }
            Err(e) if options.skip_bad_lines => {
                out.skipped += 1;
                out.first_skipped.get_or_insert_with(|| e.to_string());
            }
            Err(e) => return Err(e),
        }
        Ok(())
    };
    if reason.is_none() {
        record(first)?;
    }
    if let Some(second) = second {
        record(second)?;
    }
    while let Some(line) = next_line()? {
        record(line)?;
    }
    if reason.is_some() {
        out.header = Some(first_columns);
        out.header_reason = reason;
    }
    Ok(out)
}

/// One line's user, item, rating and timestamp.
fn parse_line<'a>(
    text: &'a str,
    sep: &str,
    line_no: usize,
    name: &str,
    pairs_only: bool,
) -> Result<(&'a str, &'a str, f32, u64), DataError> {
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
    Ok((cols[0], cols[1], rating, timestamp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_lines_stop_the_read_or_are_skipped_and_counted() {
        let text = "u,i,rating,ts\n1,2,4,100\n1,3,x,101\n2\n2,3,5,102.0\n";
        let err = parse(text, false).unwrap_err().to_string();
        assert!(err.contains("line 3, column 3 (rating)"), "{err}");
        let skip = ReadOptions {
            skip_bad_lines: true,
            ..ReadOptions::default()
        };
        let read = parse_interactions_with(text.as_bytes(), "t", &skip).unwrap();
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

    fn with_header(text: &str, pairs: bool, header: Header) -> Result<Interactions, DataError> {
        let options = ReadOptions {
            pairs_only: pairs,
            header,
            ..ReadOptions::default()
        };
        parse_interactions_with(text.as_bytes(), "t", &options)
    }

    /// Every header the readers meet is skipped, and only a header: the records are exactly
    /// the non-blank lines minus the header (a pairs file's header was once scored as a pair).
    #[test]
    fn a_header_is_detected_the_same_way_in_every_kind_of_file() {
        let cases: [(&str, bool, HeaderReason); 6] = [
            (
                "user_id\titem_id\n196\t242\n186\t302\n",
                true,
                HeaderReason::TextAboveNumbers,
            ),
            (
                "user_id,item_id\nalice,book-1\n",
                true,
                HeaderReason::CommonNames,
            ),
            (
                "userId,movieId,rating\n1,31,2.5\n",
                false,
                HeaderReason::NotANumber,
            ),
            (
                "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t2\t3\t4\n",
                false,
                HeaderReason::TypedNames,
            ),
            ("u\ti\tr\tt\n1\t2\t3\t4\n", false, HeaderReason::NotANumber),
            (
                "reviewerID,asin\nA1,B00\nA2,B01\n",
                true,
                HeaderReason::CommonNames,
            ),
        ];
        for (text, pairs, reason) in cases {
            let read = parse(text, pairs).unwrap();
            let lines = text.lines().filter(|l| !l.trim().is_empty()).count();
            assert_eq!(read.users.len(), lines - 1, "{text:?}");
            assert_eq!(read.header_reason, Some(reason), "{text:?}");
            let names = read.header.unwrap();
            assert_eq!(
                names[0],
                text.split(['\t', ',']).next().unwrap(),
                "{text:?}"
            );
            // --header no: the first line is a sample (or, for a word as rating, an error).
            match with_header(text, pairs, Header::No) {
                Ok(all) => assert_eq!(all.users.len(), lines, "{text:?}"),
                Err(e) => assert!(e.to_string().contains("line 1"), "{e}"),
            }
        }
        // No header: numbers on line 1, string ids that are not column names.
        for text in [
            "196\t242\n186\t302\n",
            "alice,book-1\nbob,book-2\n",
            "1::2::5\n",
        ] {
            let read = parse(text, true).unwrap();
            assert_eq!(
                (read.header, read.users.len()),
                (None, text.lines().count())
            );
        }
        // --header yes: the first line is a header, whatever it holds.
        let told = with_header("alice,book-1\nbob,book-2\n", true, Header::Yes).unwrap();
        assert_eq!(told.users, ["bob"]);
        assert_eq!(told.header_reason, Some(HeaderReason::Told));
        // A one-line file of column names, and a header after blank lines.
        assert_eq!(parse("user,item\n", true).unwrap().users.len(), 0);
        let late = parse("\n\r\nuser_id\titem_id\n1\t2\n", true).unwrap();
        assert_eq!(late.users, ["1"]);
    }

    #[test]
    fn a_header_of_the_models_training_columns_is_detected() {
        let trained = ["who".to_string(), "what".to_string(), "stars".to_string()];
        let text = "who,what\nalice,book-1\n";
        assert_eq!(parse(text, true).unwrap().users.len(), 2);
        let options = ReadOptions {
            pairs_only: true,
            training_columns: Some(&trained),
            ..ReadOptions::default()
        };
        let read = parse_interactions_with(text.as_bytes(), "t", &options).unwrap();
        assert_eq!(read.users, ["alice"]);
        assert_eq!(read.header_reason, Some(HeaderReason::TrainingNames));
        assert_eq!("yes".parse::<Header>(), Ok(Header::Yes));
        assert!("maybe".parse::<Header>().is_err());
    }
}

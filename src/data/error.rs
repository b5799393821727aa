//! The error of the data-set loaders: where in which file, and what was found there, so a user can
//! open the file at that line and see the problem.

use crate::train::TrainError;
use std::path::PathBuf;
use thiserror::Error;

/// How many characters of an offending field an error keeps.
const SNIPPET_CHARS: usize = 40;

/// Every way loading a data set can fail.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DataError {
    /// The operating system refused to open or read `path`.
    #[error("{path}: {source}")]
    Io {
        /// File concerned (for an in-memory reader, the name it was given).
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A line that does not have the file's format. `file` is empty when the parser was given
    /// a line without its file (e.g. [`crate::data::criteo::CriteoPreprocessor::parse_line`]);
    /// [`DataError::in_file`] fills it in.
    #[error("{}line {line}, column {column} ({field}): {problem}: {text:?}", file_prefix(.file))]
    Parse {
        /// File name (or the name given to an in-memory reader).
        file: String,
        /// 1-based line number.
        line: usize,
        /// 1-based column (field) number.
        column: usize,
        /// What the column holds, e.g. `rating`.
        field: String,
        /// What is wrong.
        problem: String,
        /// The offending text, Latin-1 decoded and cut to about 40 characters.
        text: String,
    },
    /// A folder holds none of the file sets a loader knows.
    #[error("{dir}: no data set found (looked for {looked_for})")]
    NotFound {
        /// Folder searched.
        dir: PathBuf,
        /// The file names tried, for the message.
        looked_for: String,
    },
    /// A setting is out of range, or the settings do not fit together.
    #[error("data settings: {0}")]
    Config(String),
    /// A line longer than the reader's limit: probably not a text file with one sample a line,
    /// and reading on would hold an unbounded line in memory.
    #[error("{file}, line {line}: longer than {limit} bytes (not one sample a line?)")]
    LineTooLong {
        /// File name.
        file: String,
        /// 1-based line number.
        line: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// A batch given to a parser does not have the columns the parser fills (it was made for
    /// another spec).
    #[error("the batch does not have the parser's columns: {0}")]
    Shape(#[from] crate::batch::RowShapeError),
    /// A [`crate::data::stream::LineParser`] broke its contract (one row and one label per
    /// line it accepts, nothing on an error): a bug in that parser, not in the data.
    #[error(
        "{file}, line {line}: the parser appended {rows} rows and {labels} labels (one of each expected)"
    )]
    Parser {
        /// File name.
        file: String,
        /// 1-based line number.
        line: usize,
        /// Rows appended.
        rows: usize,
        /// Labels appended.
        labels: usize,
    },
}

impl DataError {
    /// Names `file` in a [`DataError::Parse`] that was built without one (other errors, and
    /// errors that already name a file, are returned unchanged).
    pub fn in_file(mut self, name: &str) -> Self {
        if let DataError::Parse { file, .. } = &mut self
            && file.is_empty()
        {
            *file = name.to_string();
        }
        self
    }
}

/// A data error stopping training: [`TrainError::Data`] holds it whole.
impl From<DataError> for TrainError {
    fn from(e: DataError) -> Self {
        TrainError::Data(Box::new(e))
    }
}

/// `"<file>, "`, or nothing for an error built without a file name.
fn file_prefix(file: &str) -> String {
    if file.is_empty() {
        String::new()
    } else {
        format!("{file}, ")
    }
}

/// Where a line came from; builds [`DataError::Parse`] for it.
#[derive(Clone, Copy)]
pub(crate) struct At<'a> {
    pub file: &'a str,
    pub line: usize,
}

impl At<'_> {
    /// A parse error at 1-based `column` showing `text`.
    pub(crate) fn err(
        &self,
        column: usize,
        field: impl Into<String>,
        problem: impl Into<String>,
        text: &[u8],
    ) -> DataError {
        DataError::Parse {
            file: self.file.to_string(),
            line: self.line,
            column,
            field: field.into(),
            problem: problem.into(),
            text: snippet(text),
        }
    }
}

/// Latin-1 decodes `bytes` (never fails) and keeps the first [`SNIPPET_CHARS`] characters.
fn snippet(bytes: &[u8]) -> String {
    let mut s: String = bytes
        .iter()
        .take(SNIPPET_CHARS)
        .map(|&b| char::from(b))
        .collect();
    if bytes.len() > SNIPPET_CHARS {
        s.push('…');
    }
    s
}

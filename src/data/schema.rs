//! Generic CSV/TSV click data described by a JSON schema: which column is the label and what
//! kind each field is.
//!
//! ```json
//! {"label": "label",
//!  "fields": [{"name": "C1", "kind": "categorical", "min_count": 2},
//!             {"name": "site", "kind": "categorical", "hash_buckets": 100000},
//!             {"name": "I1", "kind": "numeric", "transform": "log1p"},
//!             {"name": "tags", "kind": "multi_hot", "sep": "|", "pooling": "mean"}]}
//! ```
//!
//! - Columns are found by name in the file's header (first line); a schema with `"columns":
//!   [...]` instead reads files without a header, their columns in that order. A field's column
//!   is its `name` unless it gives `"column"`. Columns the schema does not name are ignored.
//! - The delimiter is `"delimiter"` (one character) or detected from the first line: a tab if it
//!   has one, else a comma. Fields may be quoted the CSV way (`"a,b"`, `""` for a quote); one
//!   record is one line.
//! - Categorical and multi-hot values are raw tokens. With `hash_buckets` they are hashed into
//!   that many ids ([`hash_token`]); otherwise a vocabulary is counted on the training file
//!   ([`SchemaEncoder::fit`]) keeping tokens seen at least `min_count` times (default 1), and
//!   every other token, at training or at serving time, takes the out-of-vocabulary id 0. An
//!   empty value is the token `""` (a category of its own, as in Criteo).
//! - A multi-hot value is a list of tokens split by `sep` (default `|`; empty tokens dropped, so
//!   an empty value is an empty list), pooled by `pooling` (`mean`, default, or `sum`).
//! - A numeric value is a number (an empty value is 0), optionally through `"transform":
//!   "log1p"` (`ln(1 + max(v, 0))`, as for Criteo's counts).
//! - The label is a number (`0`/`1` for clicks); `"output": "linear"` makes a regression
//!   model instead of the default sigmoid click model.
//!
//! The fitted [`SchemaEncoder`] (schema plus vocabularies) serializes with serde and is saved
//! with the model, so serving maps raw tokens exactly as training did.

use super::error::{At, DataError};
use super::stream::{DEFAULT_MAX_LINE_BYTES, LineParser, LineReader};
use super::vocab::{OOV, Vocab, VocabBuilder, hash_token};
use crate::batch::{BatchBuf, Value};
use crate::spec::{Field, FieldKind, ModelSpec, Output, Pooling};
use layout::Layout;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// What a schema field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemaKind {
    /// One token.
    Categorical,
    /// One number.
    Numeric,
    /// A list of tokens.
    MultiHot,
}

/// How a numeric column becomes the field's value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NumericTransform {
    /// The number as it is.
    #[default]
    None,
    /// `ln(1 + max(v, 0))`.
    Log1p,
}

/// One field of a [`Schema`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaField {
    /// The field's name in the model spec.
    pub name: String,
    /// Its kind.
    pub kind: SchemaKind,
    /// The column it is read from (default: `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// Categorical / multi-hot: hash tokens into this many ids instead of counting a vocabulary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_buckets: Option<u64>,
    /// Categorical / multi-hot vocabularies: the fewest times a token must appear in the
    /// training file to get an id of its own (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_count: Option<u64>,
    /// Multi-hot: the separator between tokens (default `|`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sep: Option<String>,
    /// Multi-hot: how the tokens' embeddings are pooled (default mean).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooling: Option<Pooling>,
    /// Numeric: the transform applied to the value.
    #[serde(default, skip_serializing_if = "is_default")]
    pub transform: NumericTransform,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// A description of a CSV/TSV file (see the module documentation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schema {
    /// The label column. Required to train; when scoring it is ignored if present.
    pub label: String,
    /// The fields, in model order.
    pub fields: Vec<SchemaField>,
    /// The column names of files without a header; `None`: the first line is the header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    /// The delimiter; `None`: a tab if the first line has one, else a comma.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<char>,
    /// The model's output (default sigmoid, for clicks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Output>,
}

/// Longest accepted name or separator, in bytes.
const MAX_NAME: usize = 256;

impl Schema {
    /// Parses and checks a schema.
    pub fn from_json(json: &str) -> Result<Schema, DataError> {
        let schema: Schema =
            serde_json::from_str(json).map_err(|e| DataError::Config(format!("schema: {e}")))?;
        schema.validate()?;
        Ok(schema)
    }

    /// Checks the schema: at least one field, unique non-empty names, settings that fit each
    /// kind, a multi-hot separator that is not the delimiter.
    pub fn validate(&self) -> Result<(), DataError> {
        let bad = |m: String| Err(DataError::Config(format!("schema: {m}")));
        if self.fields.is_empty() {
            return bad("no fields".into());
        }
        let mut names = HashSet::new();
        for f in &self.fields {
            if f.name.is_empty() || f.name.len() > MAX_NAME {
                return bad(format!("field name {:?} is empty or too long", f.name));
            }
            if !names.insert(f.name.as_str()) {
                return bad(format!("field {:?} appears twice", f.name));
            }
            if f.column(self).is_none() {
                return bad(format!("field {:?}: column not in \"columns\"", f.name));
            }
            let tokens = f.kind != SchemaKind::Numeric;
            if !tokens && (f.hash_buckets.is_some() || f.min_count.is_some()) {
                return bad(format!(
                    "field {:?}: hash_buckets and min_count are for token fields",
                    f.name
                ));
            }
            if f.hash_buckets == Some(0) {
                return bad(format!(
                    "field {:?}: hash_buckets must be at least 1",
                    f.name
                ));
            }
            if f.hash_buckets.is_some() && f.min_count.is_some() {
                return bad(format!(
                    "field {:?}: min_count has no meaning with hash_buckets",
                    f.name
                ));
            }
            if f.kind != SchemaKind::MultiHot && (f.sep.is_some() || f.pooling.is_some()) {
                return bad(format!(
                    "field {:?}: sep and pooling are for multi_hot",
                    f.name
                ));
            }
            if f.kind != SchemaKind::Numeric && f.transform != NumericTransform::None {
                return bad(format!("field {:?}: transform is for numeric", f.name));
            }
            if let Some(sep) = &f.sep {
                let clashes = self.delimiter.is_some_and(|d| sep.contains(d));
                if sep.is_empty() || sep.len() > MAX_NAME || clashes {
                    return bad(format!("field {:?}: bad separator {sep:?}", f.name));
                }
            }
        }
        if let Some(columns) = &self.columns {
            if !columns.contains(&self.label) {
                return bad(format!("label {:?} not in \"columns\"", self.label));
            }
            let distinct: HashSet<&String> = columns.iter().collect();
            if distinct.len() != columns.len() {
                return bad("a column appears twice in \"columns\"".into());
            }
        }
        if self
            .delimiter
            .is_some_and(|d| d == '"' || d == '\n' || d == '\r' || !d.is_ascii())
        {
            return bad(
                "the delimiter must be one ASCII character other than a quote or newline".into(),
            );
        }
        Ok(())
    }
}

impl SchemaField {
    /// The column this field reads: `column` or `name` (and, for a headerless schema, only if
    /// `columns` has it).
    fn column<'a>(&'a self, schema: &Schema) -> Option<&'a str> {
        let name = self.column.as_deref().unwrap_or(&self.name);
        match &schema.columns {
            Some(columns) if !columns.iter().any(|c| c == name) => None,
            _ => Some(name),
        }
    }

    fn separator(&self) -> &str {
        self.sep.as_deref().unwrap_or("|")
    }
}

/// A schema with the vocabularies fitted on training data: turns lines into samples for a
/// model of [`SchemaEncoder::spec`]. Serializes as `{"schema": ..., "vocabs": [null | {"tokens":
/// [...]}, ...]}` (one entry per field; `null` for numeric and hashed fields); reading checks
/// that the two agree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawEncoder", into = "RawEncoder")]
pub struct SchemaEncoder {
    schema: Schema,
    vocabs: Vec<Option<Vocab>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEncoder {
    schema: Schema,
    vocabs: Vec<Option<Vocab>>,
}

impl TryFrom<RawEncoder> for SchemaEncoder {
    type Error = String;
    fn try_from(raw: RawEncoder) -> Result<Self, String> {
        raw.schema.validate().map_err(|e| e.to_string())?;
        let fits = raw.vocabs.len() == raw.schema.fields.len()
            && (raw.schema.fields.iter().zip(&raw.vocabs)).all(|(f, v)| v.is_some() == counted(f));
        if !fits {
            return Err(
                "schema encoder: one vocabulary per field is needed, null exactly for numeric and hashed fields"
                    .into(),
            );
        }
        Ok(SchemaEncoder {
            schema: raw.schema,
            vocabs: raw.vocabs,
        })
    }
}

impl From<SchemaEncoder> for RawEncoder {
    fn from(e: SchemaEncoder) -> Self {
        RawEncoder {
            schema: e.schema,
            vocabs: e.vocabs,
        }
    }
}

/// Whether field `f` needs a counted vocabulary.
fn counted(f: &SchemaField) -> bool {
    f.kind != SchemaKind::Numeric && f.hash_buckets.is_none()
}

impl SchemaEncoder {
    /// Reads the training file at `path` once (streamed) and counts the vocabularies. Every
    /// line must parse (an error names file, line and column) and have a label.
    pub fn fit(path: &Path, schema: Schema) -> Result<SchemaEncoder, DataError> {
        let file = File::open(path).map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        SchemaEncoder::fit_reader(BufReader::new(file), &path.display().to_string(), schema)
    }

    /// [`SchemaEncoder::fit`] that skips the lines that do not parse instead of stopping at the
    /// first, and returns how many it skipped (training with
    /// [`crate::data::stream::Streamed::skip_bad_lines`] skips the same lines).
    pub fn fit_skipping_bad_lines(
        path: &Path,
        schema: Schema,
    ) -> Result<(SchemaEncoder, usize), DataError> {
        let file = File::open(path).map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let name = path.display().to_string();
        SchemaEncoder::fit_impl(BufReader::new(file), &name, schema, true)
    }

    /// [`SchemaEncoder::fit`] on any reader; `name` stands for the file in errors.
    pub fn fit_reader<R: BufRead>(
        reader: R,
        name: &str,
        schema: Schema,
    ) -> Result<SchemaEncoder, DataError> {
        Ok(SchemaEncoder::fit_impl(reader, name, schema, false)?.0)
    }

    fn fit_impl<R: BufRead>(
        reader: R,
        name: &str,
        schema: Schema,
        skip_bad_lines: bool,
    ) -> Result<(SchemaEncoder, usize), DataError> {
        schema.validate()?;
        let mut skipped = 0;
        let mut builders: Vec<Option<VocabBuilder>> = (schema.fields.iter())
            .map(|f| counted(f).then(VocabBuilder::new))
            .collect();
        let mut lines = LineReader::new(reader, name, DEFAULT_MAX_LINE_BYTES);
        let mut layout = None;
        while let Some((line_no, line)) = lines.next_line()? {
            let line = match line {
                Ok(line) => line,
                Err(_) if skip_bad_lines && layout.is_some() => {
                    skipped += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let layout = match &layout {
                Some(l) => l,
                None => layout.insert(Layout::find(&schema, line, name, true)?),
            };
            if !layout.accepts(line, line_no) {
                continue;
            }
            let at = At {
                file: name,
                line: line_no,
            };
            let mut values = Vec::new();
            let checked = (layout.split(line, at, &mut values))
                .and_then(|()| label(layout, &values, &schema, at))
                .and_then(|_| numbers(layout, &values, &schema, at));
            match checked {
                Ok(_) => {}
                Err(_) if skip_bad_lines => {
                    skipped += 1;
                    continue;
                }
                Err(e) => return Err(e),
            }
            for ((f, &c), builder) in schema.fields.iter().zip(&layout.fields).zip(&mut builders) {
                let Some(b) = builder else { continue };
                match f.kind {
                    SchemaKind::MultiHot => {
                        tokens(&values[c], f.separator()).for_each(|t| b.add(t))
                    }
                    _ => b.add(&values[c]),
                }
            }
        }
        let vocabs = (schema.fields.iter().zip(&builders))
            .map(|(f, b)| b.as_ref().map(|b| b.build(f.min_count.unwrap_or(1))))
            .collect();
        Ok((SchemaEncoder { schema, vocabs }, skipped))
    }

    /// The schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The vocabulary of field `i`; `None` for numeric and hashed fields.
    pub fn vocab(&self, i: usize) -> Option<&Vocab> {
        self.vocabs.get(i)?.as_ref()
    }

    /// The model fields: names, kinds and vocabulary sizes (a counted vocabulary's size
    /// includes the out-of-vocabulary row).
    pub fn fields(&self) -> Vec<Field> {
        (self.schema.fields.iter().zip(&self.vocabs))
            .map(|(f, v)| {
                let vocab = v.as_ref().map_or(f.hash_buckets.unwrap_or(1), Vocab::len);
                let kind = match f.kind {
                    SchemaKind::Numeric => FieldKind::Numeric,
                    SchemaKind::Categorical => FieldKind::Categorical { vocab },
                    SchemaKind::MultiHot => {
                        FieldKind::multi_hot(vocab, f.pooling.unwrap_or(Pooling::Mean))
                    }
                };
                Field {
                    name: f.name.clone(),
                    kind,
                    table: None,
                }
            })
            .collect()
    }

    /// A model for these fields with `embedding_dim` and `hidden`, and the schema's output.
    pub fn spec(&self, embedding_dim: usize, hidden: &[usize]) -> ModelSpec {
        ModelSpec {
            mlp: Default::default(),
            table: Default::default(),
            fields: self.fields(),
            embedding_dim,
            hidden: hidden.to_vec(),
            output: self.schema.output.unwrap_or(Output::Sigmoid),
            clamp: None,
        }
    }

    /// A parser for the file at `path`: reads its first line to place the columns. With
    /// `labelled`, every line must have a label (training, evaluation); without, a label column
    /// is not needed and ignored if present (each sample's label is then 0).
    pub fn parser(&self, path: &Path, labelled: bool) -> Result<SchemaParser, DataError> {
        let file = File::open(path).map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let name = path.display().to_string();
        self.parser_for(BufReader::new(file), &name, labelled)
    }

    /// [`SchemaEncoder::parser`] from the start of any reader.
    pub fn parser_for<R: BufRead>(
        &self,
        reader: R,
        name: &str,
        labelled: bool,
    ) -> Result<SchemaParser, DataError> {
        let mut lines = LineReader::new(reader, name, DEFAULT_MAX_LINE_BYTES);
        let first = match lines.next_line()? {
            Some((_, line)) => line?.to_string(),
            None => String::new(),
        };
        Ok(SchemaParser {
            layout: Layout::find(&self.schema, &first, name, labelled)?,
            encoder: self.clone(),
            labelled,
        })
    }

    /// The id of `token` in field `i`.
    fn id(&self, i: usize, token: &str) -> u64 {
        match (&self.vocabs[i], self.schema.fields[i].hash_buckets) {
            (Some(v), _) => v.get(token),
            (None, Some(buckets)) => hash_token(i, token, buckets),
            (None, None) => OOV,
        }
    }
}

/// The tokens of a multi-hot value.
fn tokens<'a>(text: &'a str, sep: &'a str) -> impl Iterator<Item = &'a str> {
    text.split(sep).filter(|t| !t.is_empty())
}

/// The label of a split line.
fn label(layout: &Layout, values: &[Cow<str>], schema: &Schema, at: At) -> Result<f32, DataError> {
    let Some(c) = layout.label else {
        return Ok(0.0);
    };
    let text = values[c].trim();
    text.parse::<f32>()
        .ok()
        .filter(|y| y.is_finite())
        .ok_or_else(|| {
            at.err(
                c + 1,
                schema.label.as_str(),
                "label is not a finite number",
                text.as_bytes(),
            )
        })
}

/// The value of numeric field `f` from its column `c`'s text.
fn number(f: &SchemaField, text: &str, c: usize, at: At) -> Result<f32, DataError> {
    let trimmed = text.trim();
    let v = if trimmed.is_empty() {
        0.0
    } else {
        match trimmed.parse::<f64>() {
            Ok(v) if v.is_finite() => v,
            _ => {
                let problem = "not a finite number";
                return Err(at.err(c + 1, f.name.as_str(), problem, text.as_bytes()));
            }
        }
    };
    let v = match f.transform {
        NumericTransform::None => v as f32,
        NumericTransform::Log1p => super::criteo::log1p_value(v),
    };
    if !v.is_finite() {
        let problem = "out of the f32 range";
        return Err(at.err(c + 1, f.name.as_str(), problem, text.as_bytes()));
    }
    Ok(v)
}

/// Checks the numeric fields of a split line, as parsing will: the fit refuses (or skips) the
/// same lines as training does.
fn numbers(layout: &Layout, values: &[Cow<str>], schema: &Schema, at: At) -> Result<(), DataError> {
    for (f, &c) in schema.fields.iter().zip(&layout.fields) {
        if f.kind == SchemaKind::Numeric {
            number(f, &values[c], c, at)?;
        }
    }
    Ok(())
}

/// Turns the lines of one file into samples (see [`SchemaEncoder::parser`]).
#[derive(Debug, Clone)]
pub struct SchemaParser {
    encoder: SchemaEncoder,
    layout: Layout,
    labelled: bool,
}

impl SchemaParser {
    /// The encoder behind it.
    pub fn encoder(&self) -> &SchemaEncoder {
        &self.encoder
    }
}

impl LineParser for SchemaParser {
    fn new_batch(&self) -> BatchBuf {
        BatchBuf::new(&self.encoder.spec(1, &[]))
    }

    fn accepts(&self, line: &str, line_no: usize) -> bool {
        self.layout.accepts(line, line_no)
    }

    fn parse(
        &self,
        line: &str,
        line_no: usize,
        batch: &mut BatchBuf,
        labels: &mut Vec<f32>,
    ) -> Result<(), DataError> {
        let at = At {
            file: "",
            line: line_no,
        };
        let mut values = Vec::with_capacity(self.layout.columns);
        self.layout.split(line, at, &mut values)?;
        let schema = &self.encoder.schema;
        let y = if self.labelled {
            label(&self.layout, &values, schema, at)?
        } else {
            0.0
        };
        let mut row = Vec::with_capacity(schema.fields.len());
        for (i, (f, &c)) in schema.fields.iter().zip(&self.layout.fields).enumerate() {
            let text = values[c].as_ref();
            row.push(match f.kind {
                SchemaKind::Categorical => Value::Id(self.encoder.id(i, text)),
                SchemaKind::MultiHot => Value::Ids(
                    tokens(text, f.separator())
                        .map(|t| self.encoder.id(i, t))
                        .collect(),
                ),
                SchemaKind::Numeric => Value::Num(number(f, text, c, at)?),
            });
        }
        batch.push_row(&row)?;
        labels.push(y);
        Ok(())
    }
}

mod layout;
#[cfg(test)]
mod tests;

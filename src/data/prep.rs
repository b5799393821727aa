//! The preprocessing a click model was trained with, saved beside it so that serving turns raw
//! lines into samples exactly as training did.

use super::DataError;
use super::criteo::CriteoPreprocessor;
use super::schema::{SchemaEncoder, SchemaParser};
use super::stream::LineParser;
use crate::batch::BatchBuf;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A fitted preprocessing: `{"schema": {...}}` or `{"criteo": {...}}` as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Preprocessing {
    /// Generic CSV/TSV described by a schema ([`crate::data::schema`]).
    Schema(SchemaEncoder),
    /// Criteo display-advertising lines ([`crate::data::criteo`]).
    Criteo(CriteoPreprocessor),
}

impl Preprocessing {
    /// A parser for the file at `path`; with `labelled`, each line must carry a label (training,
    /// evaluation), without, a schema file's label column may be absent. A Criteo line always
    /// has its label column.
    pub fn parser(&self, path: &Path, labelled: bool) -> Result<AnyParser, DataError> {
        Ok(match self {
            Preprocessing::Schema(e) => AnyParser::Schema(e.parser(path, labelled)?),
            Preprocessing::Criteo(c) => AnyParser::Criteo(c.clone()),
        })
    }

    /// The model fields it produces.
    pub fn fields(&self) -> Vec<crate::spec::Field> {
        match self {
            Preprocessing::Schema(e) => e.fields(),
            Preprocessing::Criteo(c) => c.fields(),
        }
    }
}

/// The parser of either preprocessing.
#[derive(Debug, Clone)]
pub enum AnyParser {
    /// For a schema file.
    Schema(SchemaParser),
    /// For a Criteo file.
    Criteo(CriteoPreprocessor),
}

impl LineParser for AnyParser {
    fn new_batch(&self) -> BatchBuf {
        match self {
            AnyParser::Schema(p) => p.new_batch(),
            AnyParser::Criteo(p) => p.new_batch(),
        }
    }

    fn accepts(&self, line: &str, line_no: usize) -> bool {
        match self {
            AnyParser::Schema(p) => p.accepts(line, line_no),
            AnyParser::Criteo(p) => p.accepts(line, line_no),
        }
    }

    fn parse(
        &self,
        line: &str,
        line_no: usize,
        batch: &mut BatchBuf,
        labels: &mut Vec<f32>,
    ) -> Result<(), DataError> {
        match self {
            AnyParser::Schema(p) => p.parse(line, line_no, batch, labels),
            AnyParser::Criteo(p) => p.parse(line, line_no, batch, labels),
        }
    }
}

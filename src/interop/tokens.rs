//! Raw tokens for an imported model: the token-to-id vocabularies of the framework that
//! trained it, kept in the model file's metadata, and a parser of raw rows that maps tokens to
//! ids as the framework's preprocessing did.
//!
//! A framework's description may carry `"vocabularies": {"<field>": {"ids": {"<token>": id},
//! "oov": id or null, "sep": "|"}}` (see `tools/export/`). [`import_from`](super::import_from)
//! checks them against the model (fields that exist and take ids; ids and `oov` below the
//! field's vocabulary) and stores them. A token not in a vocabulary takes `oov`, or is an
//! error naming line, field and token when the framework has no out-of-vocabulary id.
//!
//! It may also carry `"numeric": {"<field>": {"fill_na": v, "log1p": true, "scale": a,
//! "shift": b}}`: how the framework's preprocessing turned a raw number into the field's value
//! ([`NumericTransform`]), so that raw numbers can be given too.
//!
//! A weighted multi-hot field's tokens are written `token:weight` (split at the last `:`).

use super::InteropError;
use crate::batch::{BatchBuf, Value};
use crate::data::DataError;
use crate::data::error::At;
use crate::data::stream::LineParser;
use crate::data::tsv::weighted_token;
use crate::format::ModelFile;
use crate::spec::{FieldKind, ModelSpec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One field's vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vocabulary {
    /// Token → id.
    pub ids: BTreeMap<String, u64>,
    /// The id of a token not in `ids`; `None`: such a token is an error.
    pub oov: Option<u64>,
    /// For a multi-hot field: what separates its tokens in a raw value (default `|`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sep: Option<String>,
}

impl Vocabulary {
    /// The id of `token`: its own, the out-of-vocabulary id, or `None`.
    pub fn id(&self, token: &str) -> Option<u64> {
        self.ids.get(token).copied().or(self.oov)
    }
}

/// How a raw number becomes a numeric or dense field's value, as the framework's preprocessing
/// did it: an empty value takes `fill_na` (without it, an empty value is an error), then
/// `ln(1 + max(v, 0))` if `log1p`, then `v · scale + shift`, in f64, rounded to f32 once.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumericTransform {
    /// The value of an empty cell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fill_na: Option<f64>,
    /// Take `ln(1 + max(v, 0))` first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub log1p: bool,
    /// Multiplier.
    #[serde(default = "one")]
    pub scale: f64,
    /// Offset.
    #[serde(default)]
    pub shift: f64,
}

fn one() -> f64 {
    1.0
}

impl NumericTransform {
    /// The field's value for the raw text `text` (`None`: not a number, or empty without
    /// `fill_na`).
    pub fn apply(&self, text: &str) -> Option<f32> {
        let v = match (text.is_empty(), self.fill_na) {
            (true, Some(fill)) => fill,
            _ => text.parse::<f64>().ok()?,
        };
        let v = if self.log1p { v.max(0.0).ln_1p() } else { v };
        Some((v * self.scale + self.shift) as f32)
    }
}

/// The vocabularies of an imported model's fields, by field name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Vocabularies(pub BTreeMap<String, Vocabulary>);

/// The metadata an import writes: where the model came from, its vocabularies, and the
/// longest list each multi-hot field takes.
#[derive(Debug, Default, Deserialize)]
struct ImportMetadata {
    #[serde(default)]
    vocabularies: Option<Vocabularies>,
    #[serde(default)]
    max_len: BTreeMap<String, usize>,
    #[serde(default)]
    numeric: BTreeMap<String, NumericTransform>,
}

impl ImportMetadata {
    fn of(file: &ModelFile) -> Result<ImportMetadata, InteropError> {
        let meta: Option<serde_json::Value> = file.metadata_json()?;
        let Some(meta) = meta.filter(|m| m.get("imported_from").is_some()) else {
            return Ok(ImportMetadata::default());
        };
        serde_json::from_value(meta).map_err(|e| InteropError::BadValue {
            name: "metadata".into(),
            reason: e.to_string(),
        })
    }
}

impl Vocabularies {
    /// The vocabularies stored in `file`'s metadata by an import, if any.
    pub fn of(file: &ModelFile) -> Result<Option<Vocabularies>, InteropError> {
        Ok(ImportMetadata::of(file)?.vocabularies)
    }

    /// Checks the vocabularies against `spec`: each names a categorical or multi-hot field,
    /// and every id (and `oov`) is below the field's vocabulary.
    pub fn check(&self, spec: &ModelSpec) -> Result<(), String> {
        for (name, vocab) in &self.0 {
            let field = spec
                .fields
                .iter()
                .find(|f| &f.name == name)
                .ok_or_else(|| format!("vocabularies: {name:?} is not a field of the model"))?;
            let rows = match field.kind {
                FieldKind::Categorical { vocab } | FieldKind::MultiHot { vocab, .. } => vocab,
                FieldKind::Numeric | FieldKind::Dense => {
                    return Err(format!(
                        "vocabularies: field {name:?} takes a number, not ids"
                    ));
                }
            };
            let ids = vocab.ids.iter().map(|(t, &id)| (t.as_str(), id));
            let oov = vocab.oov.map(|id| ("(oov)", id));
            if let Some((token, id)) = ids.chain(oov).find(|&(_, id)| id >= rows) {
                return Err(format!(
                    "vocabularies: field {name:?}: token {token:?} has id {id}, outside 0..{rows}"
                ));
            }
            if matches!(vocab.sep.as_deref(), Some("")) {
                return Err(format!("vocabularies: field {name:?}: empty sep"));
            }
        }
        Ok(())
    }
}

/// Checks numeric transforms against `spec`: each names a numeric or dense field, with
/// finite numbers.
pub(crate) fn check_numeric(
    numeric: &BTreeMap<String, NumericTransform>,
    spec: &ModelSpec,
) -> Result<(), String> {
    for (name, t) in numeric {
        match spec.fields.iter().find(|f| &f.name == name).map(|f| f.kind) {
            Some(FieldKind::Numeric | FieldKind::Dense) => {}
            Some(_) => return Err(format!("numeric: field {name:?} takes ids, not a number")),
            None => return Err(format!("numeric: {name:?} is not a field of the model")),
        }
        let numbers = [t.scale, t.shift, t.fill_na.unwrap_or(0.0)];
        if numbers.iter().any(|v| !v.is_finite()) {
            return Err(format!(
                "numeric: field {name:?} has a number that is not finite"
            ));
        }
    }
    Ok(())
}

/// Reads raw rows for an imported model: a header line naming the columns, then one sample a
/// line, tab-separated if the header has a tab, else comma-separated (no quoting). Every field
/// of the spec must have a column of its name; other columns are ignored. A field with a
/// vocabulary takes tokens (a multi-hot one several, split by its `sep`); one without takes
/// what `deepfm score` takes (an id, comma-separated ids, a number).
#[derive(Debug, Clone)]
pub struct TokenParser {
    spec: ModelSpec,
    /// For each field, its column, vocabulary and longest list.
    columns: Vec<(usize, Option<Vocabulary>, Option<usize>)>,
    /// For each field, how a raw number becomes its value.
    numeric: Vec<Option<NumericTransform>>,
    delimiter: char,
}

impl TokenParser {
    /// A parser for the model in `file` (imported: its vocabularies and list lengths from the
    /// metadata), reading the columns named by `header`.
    pub fn for_model(file: &ModelFile, header: &str) -> Result<TokenParser, InteropError> {
        let meta = ImportMetadata::of(file)?;
        let vocabularies = meta.vocabularies.unwrap_or_default();
        let parser = TokenParser::new(file.spec(), &vocabularies, header).map_err(|e| {
            InteropError::BadValue {
                name: "header".into(),
                reason: e.to_string(),
            }
        })?;
        Ok(parser
            .with_max_len(&meta.max_len)
            .with_numeric(&meta.numeric))
    }

    /// Turns the raw numbers of the fields in `numeric` into their values by its transforms.
    pub fn with_numeric(mut self, numeric: &BTreeMap<String, NumericTransform>) -> TokenParser {
        self.numeric = (self.spec.fields.iter())
            .map(|f| numeric.get(&f.name).copied())
            .collect();
        self
    }

    /// Refuses a multi-hot list longer than `max_len[field]` (the framework's preprocessing
    /// truncates such lists, and which end it keeps is its setting, not the model's): the
    /// caller truncates as the framework did.
    pub fn with_max_len(mut self, max_len: &BTreeMap<String, usize>) -> TokenParser {
        for (field, (_, _, limit)) in self.spec.fields.iter().zip(&mut self.columns) {
            *limit = max_len.get(&field.name).copied();
        }
        self
    }

    /// A parser for `spec` with `vocabularies`, reading the columns named by `header` (the
    /// file's first line, which [`LineParser::accepts`] then skips).
    pub fn new(
        spec: &ModelSpec,
        vocabularies: &Vocabularies,
        header: &str,
    ) -> Result<TokenParser, DataError> {
        let header = header.strip_suffix('\r').unwrap_or(header);
        let delimiter = if header.contains('\t') { '\t' } else { ',' };
        let names: Vec<&str> = header.split(delimiter).map(str::trim).collect();
        let columns = spec
            .fields
            .iter()
            .map(|f| {
                let column = names.iter().position(|n| *n == f.name).ok_or_else(|| {
                    DataError::Config(format!(
                        "the header has no column {:?} (it has: {})",
                        f.name,
                        names.join(", ")
                    ))
                })?;
                Ok((column, vocabularies.0.get(&f.name).cloned(), None))
            })
            .collect::<Result<_, DataError>>()?;
        Ok(TokenParser {
            spec: spec.clone(),
            columns,
            numeric: vec![None; spec.fields.len()],
            delimiter,
        })
    }
}

impl LineParser for TokenParser {
    fn new_batch(&self) -> BatchBuf {
        BatchBuf::new(&self.spec)
    }

    fn accepts(&self, line: &str, line_no: usize) -> bool {
        line_no > 1 && !line.trim().is_empty()
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
        let line = line.strip_suffix('\r').unwrap_or(line);
        let cells: Vec<&str> = line.split(self.delimiter).collect();
        let mut row = Vec::with_capacity(self.columns.len());
        let fields = self
            .spec
            .fields
            .iter()
            .zip(&self.columns)
            .zip(&self.numeric);
        for ((field, (column, vocab, limit)), numeric) in fields {
            let name = field.name.as_str();
            let text = cells.get(*column).copied().unwrap_or("").trim();
            let bad =
                |problem: String, text: &str| at.err(column + 1, name, problem, text.as_bytes());
            let id = |token: &str| -> Result<u64, DataError> {
                let id = match vocab {
                    Some(v) => v.id(token).ok_or_else(|| {
                        bad(
                            "not in the vocabulary, which has no out-of-vocabulary id".into(),
                            token,
                        )
                    })?,
                    None => token.parse().map_err(|_| bad("not an id".into(), token))?,
                };
                match field.kind.rows() {
                    rows if id < rows => Ok(id),
                    rows => Err(bad(format!("id {id} is outside 0..{rows}"), token)),
                }
            };
            row.push(match field.kind {
                FieldKind::Categorical { .. } => Value::Id(id(text)?),
                FieldKind::Numeric | FieldKind::Dense => {
                    let v = match numeric {
                        Some(t) => t.apply(text),
                        None => text.parse().ok(),
                    };
                    let v = v.ok_or_else(|| bad("not a number".into(), text))?;
                    if !v.is_finite() {
                        return Err(bad("not finite".into(), text));
                    }
                    Value::Num(v)
                }
                FieldKind::MultiHot { weighted, .. } => {
                    let sep = match vocab {
                        Some(v) => v.sep.as_deref().unwrap_or("|"),
                        None => ",",
                    };
                    let tokens = text.split(sep).map(str::trim).filter(|t| !t.is_empty());
                    let count = tokens.clone().count();
                    if let Some(limit) = *limit
                        && count > limit
                    {
                        let problem = format!(
                            "{count} values; the model was trained on at most {limit} (truncate \
                             as its preprocessing did)"
                        );
                        return Err(bad(problem, text));
                    }
                    if weighted {
                        let pair = |token: &str| {
                            let (token, w) =
                                weighted_token(token).map_err(|problem| bad(problem, token))?;
                            Ok((id(token)?, w))
                        };
                        Value::WeightedIds(tokens.map(pair).collect::<Result<_, DataError>>()?)
                    } else {
                        Value::Ids(tokens.map(id).collect::<Result<_, _>>()?)
                    }
                }
            });
        }
        batch.push_row(&row)?;
        labels.push(0.0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{Column, Columns};
    use crate::spec::{Field, Output, Pooling};

    fn spec() -> ModelSpec {
        ModelSpec {
            mlp: Default::default(),
            table: Default::default(),
            fields: vec![
                Field::new("user", FieldKind::Categorical { vocab: 10 }),
                Field::new("genres", FieldKind::multi_hot(5, Pooling::Mean)),
                Field::new("age", FieldKind::Dense),
                Field::new("item", FieldKind::Categorical { vocab: 4 }),
            ],
            embedding_dim: 2,
            hidden: vec![],
            output: Output::Sigmoid,
            clamp: None,
        }
    }

    fn vocabularies() -> Vocabularies {
        let ids = |pairs: &[(&str, u64)]| pairs.iter().map(|&(t, i)| (t.to_string(), i)).collect();
        Vocabularies(BTreeMap::from([
            (
                "genres".to_string(),
                Vocabulary {
                    ids: ids(&[("Comedy", 1), ("Drama", 2)]),
                    oov: Some(4),
                    sep: Some("|".into()),
                },
            ),
            (
                "item".to_string(),
                Vocabulary {
                    ids: ids(&[("A", 0), ("B", 3)]),
                    oov: None,
                    sep: None,
                },
            ),
        ]))
    }

    fn parse(parser: &TokenParser, line: &str) -> Result<BatchBuf, DataError> {
        let mut batch = parser.new_batch();
        parser.parse(line, 2, &mut batch, &mut Vec::new())?;
        Ok(batch)
    }

    #[test]
    fn tokens_map_to_ids_by_header_name_and_unknown_ones_take_oov_or_fail() {
        let spec = spec();
        let v = vocabularies();
        v.check(&spec).unwrap();
        // Columns in another order than the fields, and one the model does not read.
        let parser = TokenParser::new(&spec, &v, "item\tage\tnote\tgenres\tuser\r").unwrap();
        assert!(!parser.accepts("item\tage", 1) && parser.accepts("B\t1", 2));
        let batch = parse(&parser, "B\t0.5\tx\tDrama|Western||Comedy\t7").unwrap();
        assert!(matches!(batch.column(0), Column::Categorical(&[7])));
        let Column::MultiHot { ids, .. } = batch.column(1) else {
            panic!()
        };
        assert_eq!(ids, [2, 4, 1]);
        assert!(matches!(batch.column(2), Column::Numeric(&[0.5])));
        assert!(matches!(batch.column(3), Column::Categorical(&[3])));
        let err = parse(&parser, "Z\t0.5\tx\tDrama\t7")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("(item)") && err.contains("not in the vocabulary"),
            "{err}"
        );
        let err = parse(&parser, "A\t0.5\tx\tDrama\t10")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("(user)") && err.contains("outside 0..10"),
            "{err}"
        );
        // A list longer than the framework's padded length is refused, not truncated: which
        // end the framework's preprocessing keeps is not in the model.
        let limited = parser.with_max_len(&BTreeMap::from([("genres".to_string(), 2)]));
        assert!(parse(&limited, "B\t0.5\tx\tDrama|Comedy\t7").is_ok());
        let err = parse(&limited, "B\t0.5\tx\tDrama|Comedy|Drama\t7").unwrap_err();
        assert!(err.to_string().contains("at most 2"), "{err}");
        let err = TokenParser::new(&spec, &v, "item,age,genres").unwrap_err();
        assert!(err.to_string().contains("no column \"user\""), "{err}");
    }

    #[test]
    fn raw_numbers_go_through_the_frameworks_transform() {
        let t: NumericTransform =
            serde_json::from_str(r#"{"fill_na": 0, "log1p": true, "scale": 2, "shift": -1}"#)
                .unwrap();
        assert_eq!(t.apply("0"), Some(-1.0));
        assert_eq!(t.apply(""), Some(-1.0));
        assert_eq!(t.apply("-5"), Some(-1.0)); // log1p of max(v, 0)
        assert_eq!(t.apply("3"), Some((2.0 * 4f64.ln() - 1.0) as f32));
        assert_eq!(t.apply("x"), None);
        let standard: NumericTransform = serde_json::from_str(r#"{"scale": 0.5}"#).unwrap();
        assert_eq!((standard.apply("3"), standard.apply("")), (Some(1.5), None));
        assert!(serde_json::from_str::<NumericTransform>(r#"{"mean": 1}"#).is_err());
        let spec = spec();
        let numeric = BTreeMap::from([("age".to_string(), standard)]);
        check_numeric(&numeric, &spec).unwrap();
        let parser = TokenParser::new(&spec, &vocabularies(), "user,genres,age,item")
            .unwrap()
            .with_numeric(&numeric);
        let batch = parse(&parser, "1,Drama,4,A").unwrap();
        assert!(matches!(batch.column(2), Column::Numeric(&[2.0])));
        let err = parse(&parser, "1,Drama,,A").unwrap_err().to_string();
        assert!(
            err.contains("(age)") && err.contains("not a number"),
            "{err}"
        );
        let wrong = BTreeMap::from([("user".to_string(), standard)]);
        assert!(
            check_numeric(&wrong, &spec)
                .unwrap_err()
                .contains("takes ids")
        );
    }

    #[test]
    fn vocabularies_that_do_not_fit_the_model_are_refused() {
        let spec = spec();
        let mut v = vocabularies();
        v.0.get_mut("item").unwrap().ids.insert("C".into(), 4);
        assert!(v.check(&spec).unwrap_err().contains("outside 0..4"));
        let mut v = vocabularies();
        v.0.get_mut("genres").unwrap().oov = Some(5);
        assert!(v.check(&spec).unwrap_err().contains("(oov)"));
        let mut v = vocabularies();
        let item = v.0.remove("item").unwrap();
        v.0.insert("age".into(), item.clone());
        assert!(v.check(&spec).unwrap_err().contains("takes a number"));
        v.0.remove("age");
        v.0.insert("price".into(), item);
        assert!(v.check(&spec).unwrap_err().contains("not a field"));
    }
}

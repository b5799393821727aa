//! Request bodies to model inputs, checking every value on the way.
//!
//! `/score` bodies are parsed in one streaming pass straight into columns (no intermediate JSON
//! tree): `{"samples": [{"C1": 3, "I1": 0.5, "genres": [1, 4]}, ...]}`, fields by spec name, a
//! local id for a categorical field, a number for a numeric one, a list of local ids for a
//! multi-hot one. Any problem stops the parse with a [`BadRequest`] naming the field and the
//! sample.

use deepfm::{Column, Columns, FieldKind, ModelSpec};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use std::cell::RefCell;
use std::fmt;

/// A request the service refuses (HTTP 400): what is wrong, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRequest {
    /// What is wrong, for a person.
    pub error: String,
    /// The field (spec name or request key) at fault, if one is.
    pub field: Option<String>,
    /// The index of the sample at fault, if one is.
    pub sample: Option<usize>,
}

impl BadRequest {
    /// A problem with the request as a whole.
    pub fn new(error: impl Into<String>) -> Self {
        BadRequest {
            error: error.into(),
            field: None,
            sample: None,
        }
    }

    /// A problem with one field (of one sample, if `sample` is given).
    pub fn at(error: impl Into<String>, field: &str, sample: Option<usize>) -> Self {
        BadRequest {
            error: error.into(),
            field: Some(field.to_string()),
            sample,
        }
    }

    /// The JSON body of the 400 response: `{"error": ..., "field": ..., "sample": ...}` (the last
    /// two only when known).
    pub fn to_json(&self) -> Vec<u8> {
        let mut body = serde_json::Map::new();
        body.insert("error".into(), self.error.clone().into());
        if let Some(field) = &self.field {
            body.insert("field".into(), field.clone().into());
        }
        if let Some(sample) = self.sample {
            body.insert("sample".into(), sample.into());
        }
        serde_json::to_vec(&body).expect("a JSON map always serializes")
    }
}

#[derive(Debug)]
enum Col {
    Categorical(Vec<u64>),
    Numeric(Vec<f32>),
    MultiHot {
        ids: Vec<u64>,
        offsets: Vec<usize>,
        /// `Some` for a weighted field.
        weights: Option<Vec<f32>>,
    },
}

/// The samples of one `/score` request, one column per field in spec order.
#[derive(Debug)]
pub struct Samples {
    cols: Vec<Col>,
    /// Per field, 1 + the last sample that set it (0: none yet).
    filled: Vec<usize>,
    rows: usize,
}

impl Samples {
    fn new(spec: &ModelSpec, rows_hint: usize) -> Samples {
        let cols = spec
            .fields
            .iter()
            .map(|f| match f.kind {
                FieldKind::Categorical { .. } => Col::Categorical(Vec::with_capacity(rows_hint)),
                FieldKind::Numeric | FieldKind::Dense => {
                    Col::Numeric(Vec::with_capacity(rows_hint))
                }
                FieldKind::MultiHot { weighted, .. } => Col::MultiHot {
                    ids: Vec::new(),
                    offsets: vec![0],
                    weights: weighted.then(Vec::new),
                },
            })
            .collect();
        Samples {
            cols,
            filled: vec![0; spec.fields.len()],
            rows: 0,
        }
    }
}

impl Samples {
    /// An empty batch for `spec`, to [`append`](Samples::append) requests to.
    pub fn empty(spec: &ModelSpec) -> Samples {
        Samples::new(spec, 0)
    }

    /// True when both have the same field kinds in the same order (were parsed against the
    /// same spec layout).
    pub fn same_layout(&self, other: &Samples) -> bool {
        self.cols.len() == other.cols.len()
            && self.cols.iter().zip(&other.cols).all(|(a, b)| {
                matches!(
                    (a, b),
                    (Col::Categorical(_), Col::Categorical(_))
                        | (Col::Numeric(_), Col::Numeric(_))
                        | (
                            Col::MultiHot { weights: None, .. },
                            Col::MultiHot { weights: None, .. }
                        )
                        | (
                            Col::MultiHot {
                                weights: Some(_),
                                ..
                            },
                            Col::MultiHot {
                                weights: Some(_),
                                ..
                            }
                        )
                )
            })
    }

    /// Empties the batch, keeping its buffers.
    pub fn clear(&mut self) {
        for col in &mut self.cols {
            match col {
                Col::Categorical(v) => v.clear(),
                Col::Numeric(v) => v.clear(),
                Col::MultiHot {
                    ids,
                    offsets,
                    weights,
                } => {
                    ids.clear();
                    offsets.truncate(1);
                    if let Some(w) = weights {
                        w.clear();
                    }
                }
            }
        }
        self.filled.fill(0);
        self.rows = 0;
    }

    /// Appends the rows of `other`, parsed against the same spec: the micro-batcher scores
    /// several requests as one batch this way. Returns false (and changes nothing) when the
    /// two were parsed against different field layouts.
    pub fn append(&mut self, other: &Samples) -> bool {
        if !self.same_layout(other) {
            return false;
        }
        for (mine, theirs) in self.cols.iter_mut().zip(&other.cols) {
            match (mine, theirs) {
                (Col::Categorical(a), Col::Categorical(b)) => a.extend_from_slice(b),
                (Col::Numeric(a), Col::Numeric(b)) => a.extend_from_slice(b),
                (
                    Col::MultiHot {
                        ids,
                        offsets,
                        weights,
                    },
                    Col::MultiHot {
                        ids: more,
                        offsets: bounds,
                        weights: more_weights,
                    },
                ) => {
                    let base = ids.len();
                    ids.extend_from_slice(more);
                    offsets.extend(bounds.iter().skip(1).map(|&o| base + o));
                    if let (Some(w), Some(more)) = (weights, more_weights) {
                        w.extend_from_slice(more);
                    }
                }
                _ => unreachable!("layouts checked above"),
            }
        }
        self.rows += other.rows;
        true
    }
}

impl Columns for Samples {
    fn num_columns(&self) -> usize {
        self.cols.len()
    }

    fn column(&self, i: usize) -> Column<'_> {
        match &self.cols[i] {
            Col::Categorical(v) => Column::Categorical(v),
            Col::Numeric(v) => Column::Numeric(v),
            Col::MultiHot {
                ids,
                offsets,
                weights,
            } => Column::MultiHot {
                ids,
                offsets,
                weights: weights.as_deref(),
            },
        }
    }

    fn rows(&self) -> usize {
        self.rows
    }
}

/// Parses a `/score` body against `spec`, refusing more than `max_rows` samples.
pub fn parse_samples(
    body: &[u8],
    spec: &ModelSpec,
    max_rows: usize,
) -> Result<Samples, BadRequest> {
    let ctx = Ctx {
        spec,
        max_rows,
        problem: RefCell::new(None),
    };
    // Batch-1 requests are the common case; a larger body grows the columns as it goes.
    let mut samples = Samples::new(spec, 1);
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = Root {
        ctx: &ctx,
        out: &mut samples,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    match parsed {
        Ok(()) => Ok(samples),
        Err(e) => Err(ctx
            .problem
            .into_inner()
            .unwrap_or_else(|| BadRequest::new(format!("the body is not valid JSON: {e}")))),
    }
}

/// State shared by the seeds of one parse: the spec, and the first problem found (serde's own
/// error type cannot carry the field and sample, so the seeds leave them here).
struct Ctx<'a> {
    spec: &'a ModelSpec,
    max_rows: usize,
    problem: RefCell<Option<BadRequest>>,
}

impl Ctx<'_> {
    /// Records `problem` unless an inner seed already recorded a more precise one, and returns
    /// an error that stops the parse.
    fn fail<E: de::Error>(&self, problem: BadRequest) -> E {
        let mut slot = self.problem.borrow_mut();
        let message = problem.error.clone();
        slot.get_or_insert(problem);
        E::custom(message)
    }

    /// Attaches `field` and `sample` to an error raised by serde itself (a wrong JSON type).
    fn locate<E: de::Error>(&self, e: E, field: Option<&str>, sample: Option<usize>) -> E {
        if self.problem.borrow().is_none() {
            let error = e.to_string();
            return self.fail(BadRequest {
                error,
                field: field.map(str::to_string),
                sample,
            });
        }
        e
    }
}

/// The whole body: `{"samples": [...]}`.
struct Root<'c, 's> {
    ctx: &'c Ctx<'s>,
    out: &'c mut Samples,
}

impl<'de> DeserializeSeed<'de> for Root<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Root<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(r#"an object {"samples": [...]}"#)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let ctx = self.ctx;
        let mut seen = false;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key != "samples" {
                return Err(ctx.fail(BadRequest::at(
                    format!("unknown key {key:?} (the body is {{\"samples\": [...]}})"),
                    &key,
                    None,
                )));
            }
            if seen {
                return Err(ctx.fail(BadRequest::at("samples given twice", "samples", None)));
            }
            seen = true;
            map.next_value_seed(SampleList {
                ctx,
                out: &mut *self.out,
            })?;
        }
        if !seen {
            return Err(ctx.fail(BadRequest::at("missing key samples", "samples", None)));
        }
        Ok(())
    }
}

/// `[sample, ...]`.
struct SampleList<'c, 's> {
    ctx: &'c Ctx<'s>,
    out: &'c mut Samples,
}

impl<'de> DeserializeSeed<'de> for SampleList<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        let ctx = self.ctx;
        d.deserialize_seq(self)
            .map_err(|e| ctx.locate(e, Some("samples"), None))
    }
}

impl<'de> Visitor<'de> for SampleList<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of samples")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let ctx = self.ctx;
        loop {
            let sample = self.out.rows;
            let more = seq.next_element_seed(Sample {
                ctx,
                out: &mut *self.out,
                sample,
            })?;
            match more {
                None => break,
                Some(()) if self.out.rows > ctx.max_rows => {
                    return Err(ctx.fail(BadRequest::at(
                        format!("more than {} samples in one request", ctx.max_rows),
                        "samples",
                        None,
                    )));
                }
                Some(()) => {}
            }
        }
        if self.out.rows == 0 {
            return Err(ctx.fail(BadRequest::at("samples is empty", "samples", None)));
        }
        Ok(())
    }
}

/// One sample: `{"C1": 3, "I1": 0.5, "genres": [1, 4]}`, every field exactly once.
struct Sample<'c, 's> {
    ctx: &'c Ctx<'s>,
    out: &'c mut Samples,
    sample: usize,
}

impl<'de> DeserializeSeed<'de> for Sample<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        let (ctx, sample) = (self.ctx, self.sample);
        d.deserialize_map(self)
            .map_err(|e| ctx.locate(e, None, Some(sample)))
    }
}

impl<'de> Visitor<'de> for Sample<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a sample: an object of fields by name")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (ctx, sample, out) = (self.ctx, self.sample, self.out);
        let fields = &ctx.spec.fields;
        let mark = sample + 1;
        let mut position = 0;
        while let Some(i) = map.next_key_seed(Key {
            ctx,
            sample,
            guess: position,
        })? {
            let name = fields[i].name.as_str();
            if out.filled[i] == mark {
                return Err(ctx.fail(BadRequest::at("field given twice", name, Some(sample))));
            }
            out.filled[i] = mark;
            map.next_value_seed(FieldValue {
                ctx,
                col: &mut out.cols[i],
                kind: fields[i].kind,
                name,
                sample,
            })?;
            position += 1;
        }
        if let Some(i) = out.filled.iter().position(|&m| m != mark) {
            return Err(ctx.fail(BadRequest::at(
                "missing field",
                &fields[i].name,
                Some(sample),
            )));
        }
        out.rows += 1;
        Ok(())
    }
}

/// A field name, resolved to its index in the spec.
struct Key<'c, 's> {
    ctx: &'c Ctx<'s>,
    sample: usize,
    /// Where the name is when a client sends fields in spec order (checked first).
    guess: usize,
}

impl<'de> DeserializeSeed<'de> for Key<'_, '_> {
    type Value = usize;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_, '_> {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, name: &str) -> Result<usize, E> {
        let fields = &self.ctx.spec.fields;
        if fields.get(self.guess).is_some_and(|f| f.name == name) {
            return Ok(self.guess);
        }
        fields.iter().position(|f| f.name == name).ok_or_else(|| {
            self.ctx.fail(BadRequest::at(
                "unknown field (not in the model's spec)",
                name,
                Some(self.sample),
            ))
        })
    }
}

/// One field's value, appended to its column.
struct FieldValue<'c, 's> {
    ctx: &'c Ctx<'s>,
    col: &'c mut Col,
    kind: FieldKind,
    name: &'c str,
    sample: usize,
}

impl FieldValue<'_, '_> {
    fn fail<E: de::Error>(&self, error: String) -> E {
        self.ctx
            .fail(BadRequest::at(error, self.name, Some(self.sample)))
    }

    fn id<E: de::Error>(&self, id: u64, vocab: u64) -> Result<u64, E> {
        if id < vocab {
            Ok(id)
        } else {
            Err(self.fail(format!("id {id} is outside 0..{vocab}")))
        }
    }

    fn number<E: de::Error>(&mut self, value: f64) -> Result<(), E> {
        match (&mut *self.col, self.kind) {
            (Col::Numeric(values), _) => {
                let v = value as f32;
                if !v.is_finite() {
                    return Err(self.fail(format!("value {value:?} is not a finite 32-bit float")));
                }
                values.push(v);
                Ok(())
            }
            _ => Err(self.fail(format!("{value} is not an id (a non-negative integer)"))),
        }
    }
}

impl<'de> DeserializeSeed<'de> for FieldValue<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        let (ctx, name, sample) = (self.ctx, self.name, self.sample);
        d.deserialize_any(self)
            .map_err(|e| ctx.locate(e, Some(name), Some(sample)))
    }
}

impl<'de> Visitor<'de> for FieldValue<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.kind {
            FieldKind::Categorical { vocab } => write!(f, "a categorical id in 0..{vocab}"),
            FieldKind::Numeric | FieldKind::Dense => f.write_str("a finite number"),
            FieldKind::MultiHot {
                vocab,
                weighted: true,
                ..
            } => write!(f, "a list of [id, weight] pairs, ids in 0..{vocab}"),
            FieldKind::MultiHot { vocab, .. } => write!(f, "a list of ids in 0..{vocab}"),
        }
    }

    fn visit_u64<E: de::Error>(mut self, v: u64) -> Result<(), E> {
        match self.kind {
            FieldKind::Categorical { vocab } => {
                let id = self.id(v, vocab)?;
                if let Col::Categorical(ids) = self.col {
                    ids.push(id);
                }
                Ok(())
            }
            FieldKind::Numeric | FieldKind::Dense => self.number(v as f64),
            FieldKind::MultiHot { .. } => Err(self.fail(format!(
                "expected a list of ids, got the number {v} (write [{v}])"
            ))),
        }
    }

    fn visit_i64<E: de::Error>(mut self, v: i64) -> Result<(), E> {
        match self.kind {
            FieldKind::Numeric | FieldKind::Dense => self.number(v as f64),
            _ => Err(self.fail(format!("id {v} is negative"))),
        }
    }

    fn visit_f64<E: de::Error>(mut self, v: f64) -> Result<(), E> {
        self.number(v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let FieldKind::MultiHot {
            vocab, weighted, ..
        } = self.kind
        else {
            return Err(self.fail(format!(
                "a list is not {}",
                if matches!(self.kind, FieldKind::Numeric | FieldKind::Dense) {
                    "a number"
                } else {
                    "an id (this field takes one id)"
                }
            )));
        };
        let mut list = Vec::new();
        let mut own_weights = Vec::new();
        if weighted {
            while let Some((id, weight)) = seq.next_element::<(u64, f64)>()? {
                list.push(self.id(id, vocab)?);
                let w = weight as f32;
                if !w.is_finite() {
                    return Err(self.fail(format!("weight {weight} is not finite as an f32")));
                }
                own_weights.push(w);
            }
        } else {
            while let Some(id) = seq.next_element::<u64>()? {
                list.push(self.id(id, vocab)?);
            }
        }
        if let Col::MultiHot {
            ids,
            offsets,
            weights,
        } = self.col
        {
            ids.extend_from_slice(&list);
            offsets.push(ids.len());
            if let Some(w) = weights {
                w.extend_from_slice(&own_weights);
            }
        }
        Ok(())
    }
}

/// A parsed `/recommend` body: `{"user": 7, "k": 10, "exclude": [3, 4], "exclude_seen": true}`
/// (`exclude` and `exclude_seen` optional; ids are numbers or strings, as the model was trained).
#[derive(Debug, Clone, PartialEq)]
pub struct RecommendRequest {
    /// The raw user id.
    pub user: RawId,
    /// How many items to return.
    pub k: usize,
    /// Raw item ids never to return.
    pub exclude: Vec<RawId>,
    /// Leave out the items the user interacted with in training (default true).
    pub exclude_seen: bool,
}

/// A raw user or item id as sent.
#[derive(Debug, Clone, PartialEq)]
pub enum RawId {
    /// A JSON non-negative integer.
    Number(u64),
    /// A JSON string.
    Text(String),
}

impl RawId {
    fn from_json(value: &serde_json::Value, field: &str) -> Result<RawId, BadRequest> {
        match value {
            serde_json::Value::Number(n) => n.as_u64().map(RawId::Number).ok_or_else(|| {
                BadRequest::at(
                    format!("{n} is not an id (a non-negative integer or a string)"),
                    field,
                    None,
                )
            }),
            serde_json::Value::String(s) => Ok(RawId::Text(s.clone())),
            other => Err(BadRequest::at(
                format!("{other} is not an id (a non-negative integer or a string)"),
                field,
                None,
            )),
        }
    }
}

/// Largest `k` a `/recommend` request may ask for.
pub const MAX_K: usize = 10_000;

/// Parses a `/recommend` body.
pub fn parse_recommend(body: &[u8]) -> Result<RecommendRequest, BadRequest> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| BadRequest::new(format!("the body is not valid JSON: {e}")))?;
    let serde_json::Value::Object(map) = value else {
        return Err(BadRequest::new(
            r#"expected an object {"user": ..., "k": ...}"#,
        ));
    };
    if let Some(key) = map
        .keys()
        .find(|k| !["user", "k", "exclude", "exclude_seen"].contains(&k.as_str()))
    {
        return Err(BadRequest::at(format!("unknown key {key:?}"), key, None));
    }
    let user = map
        .get("user")
        .ok_or_else(|| BadRequest::at("missing key user", "user", None))
        .and_then(|v| RawId::from_json(v, "user"))?;
    let k = match map.get("k") {
        None => return Err(BadRequest::at("missing key k", "k", None)),
        Some(v) => v
            .as_u64()
            .filter(|&k| (1..=MAX_K as u64).contains(&k))
            .ok_or_else(|| {
                BadRequest::at(format!("k must be an integer in 1..={MAX_K}"), "k", None)
            })? as usize,
    };
    let exclude = match map.get("exclude") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::Array(ids)) => ids
            .iter()
            .map(|v| RawId::from_json(v, "exclude"))
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(BadRequest::at(
                "exclude must be a list of ids",
                "exclude",
                None,
            ));
        }
    };
    let exclude_seen = match map.get("exclude_seen") {
        None => true,
        Some(v) => v.as_bool().ok_or_else(|| {
            BadRequest::at("exclude_seen must be true or false", "exclude_seen", None)
        })?,
    };
    Ok(RecommendRequest {
        user,
        k,
        exclude,
        exclude_seen,
    })
}

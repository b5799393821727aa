use super::*;
use crate::batch::Columns;
use crate::data::stream::read_all;
use std::io::Cursor;

const SCHEMA: &str = r#"{"label": "click",
  "fields": [{"name": "site", "kind": "categorical", "min_count": 2},
             {"name": "ad", "kind": "categorical", "hash_buckets": 50},
             {"name": "price", "kind": "numeric", "transform": "log1p"},
             {"name": "tags", "kind": "multi_hot", "sep": "|", "pooling": "sum"}]}"#;

const DATA: &str = "click,site,price,ad,tags,unused\n\
                    1,a.com,3,x1,sport|news,zz\n\
                    0,a.com,,x2,,zz\r\n\
                    1,b.com,0,x1,news,zz\n\
                    \n\
                    0,\"c,com\",1e3,x3,sport,zz\n";

fn fitted() -> SchemaEncoder {
    SchemaEncoder::fit_reader(
        Cursor::new(DATA),
        "data.csv",
        Schema::from_json(SCHEMA).unwrap(),
    )
    .unwrap()
}

fn parse_all(
    encoder: &SchemaEncoder,
    text: &str,
    labelled: bool,
) -> Result<(BatchBuf, Vec<f32>), DataError> {
    let parser = encoder.parser_for(Cursor::new(text), "t.csv", labelled)?;
    let mut batch = parser.new_batch();
    let mut labels = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        if parser.accepts(line, i + 1) {
            parser.parse(line, i + 1, &mut batch, &mut labels)?;
        }
    }
    Ok((batch, labels))
}

#[test]
fn fits_vocabularies_and_builds_the_spec() {
    let e = fitted();
    // site: a.com twice (kept), b.com and "c,com" once (below min_count 2): one token + OOV.
    assert_eq!(e.vocab(0).unwrap().tokens(), ["a.com"]);
    assert!(e.vocab(1).is_none() && e.vocab(2).is_none());
    // tags: news and sport twice each.
    assert_eq!(e.vocab(3).unwrap().len(), 3);
    let spec = e.spec(8, &[16]);
    spec.validate().unwrap();
    assert_eq!(spec.fields[0].kind, FieldKind::Categorical { vocab: 2 });
    assert_eq!(spec.fields[1].kind, FieldKind::Categorical { vocab: 50 });
    assert_eq!(spec.fields[2].kind, FieldKind::Numeric);
    assert_eq!(spec.fields[3].kind, FieldKind::multi_hot(3, Pooling::Sum));
    assert_eq!(spec.output, Output::Sigmoid);
}

#[test]
fn parses_rows_by_header_name_with_quotes_crlf_and_empty_values() {
    let e = fitted();
    let (batch, labels) = parse_all(&e, DATA, true).unwrap();
    assert_eq!(labels, [1.0, 0.0, 1.0, 0.0]);
    assert_eq!(batch.len(), 4);
    let mut rows = vec![];
    for r in 0..4 {
        let mut terms = vec![];
        for (i, f) in e.spec(8, &[]).fields.iter().enumerate() {
            let mut t = vec![];
            batch
                .column(i)
                .for_each_term(&f.kind, r, |id, w| t.push((id, w)));
            terms.push(t);
        }
        rows.push(terms);
    }
    // Row 1: a.com -> 1; price ln(1 + 3); tags sport|news -> two ids of weight 1 (sum).
    assert_eq!(rows[0][0], [(1, 1.0)]);
    assert_eq!(rows[0][1], [(hash_token(1, "x1", 50), 1.0)]);
    assert_eq!(rows[0][2], [(0, 4f64.ln() as f32)]);
    assert_eq!(rows[0][3].len(), 2);
    // Row 2: empty price is 0, empty tags an empty list (CRLF line).
    assert_eq!(rows[1][2], [(0, 0.0)]);
    assert!(rows[1][3].is_empty());
    // Row 3: b.com is rare -> OOV.
    assert_eq!(rows[2][0], [(OOV, 1.0)]);
    // Row 4: the quoted "c,com" is one value (rare -> OOV) and the columns stay aligned.
    assert_eq!(rows[3][0], [(OOV, 1.0)]);
    assert_eq!(rows[3][2], [(0, 1001f64.ln() as f32)]);
}

#[test]
fn scoring_files_need_no_label_and_unseen_tokens_are_oov() {
    let e = fitted();
    let text = "tags,ad,site,price\nfresh|news,x9,new.com,2\n";
    let (batch, labels) = parse_all(&e, text, false).unwrap();
    assert_eq!((batch.len(), labels), (1, vec![0.0]));
    assert!(
        parse_all(&e, text, true).is_err(),
        "training needs the label"
    );
}

#[test]
fn headerless_files_use_the_schema_columns() {
    let mut schema = Schema::from_json(SCHEMA).unwrap();
    schema.columns = Some(
        ["click", "ad", "site", "price", "tags"]
            .map(String::from)
            .to_vec(),
    );
    schema.delimiter = Some('\t');
    let text = "1\tx1\ta.com\t2\tnews\n0\tx2\ta.com\t1\t\n";
    let e = SchemaEncoder::fit_reader(Cursor::new(text), "t.tsv", schema).unwrap();
    assert_eq!(e.vocab(0).unwrap().tokens(), ["a.com"]);
    let (batch, labels) = parse_all(&e, text, true).unwrap();
    assert_eq!((batch.len(), labels), (2, vec![1.0, 0.0]));
}

#[test]
fn bad_lines_name_line_column_and_field() {
    let e = fitted();
    for (text, needle) in [
        (
            "click,site,price,ad,tags,unused\n1,a.com,abc,x,t,z\n",
            "line 2, column 3 (price)",
        ),
        (
            "click,site,price,ad,tags,unused\nyes,a.com,1,x,t,z\n",
            "line 2, column 1 (click)",
        ),
        (
            "click,site,price,ad,tags,unused\n1,a.com,1,x\n",
            "4 columns where the header has 6",
        ),
        (
            "click,site,price,ad,tags,unused\n1,a.com,1e400,x,t,z\n",
            "(price)",
        ),
        ("site,price,ad,tags\n", "no column \"click\""),
    ] {
        let err = parse_all(&e, text, true).unwrap_err().to_string();
        assert!(err.contains(needle), "{err:?} lacks {needle:?}");
    }
}

#[test]
fn bad_schemas_are_config_errors() {
    for (json, needle) in [
        (r#"{"label":"y","fields":[]}"#, "no fields"),
        (
            r#"{"label":"y","fields":[{"name":"a","kind":"numeric","hash_buckets":3}]}"#,
            "token fields",
        ),
        (
            r#"{"label":"y","fields":[{"name":"a","kind":"categorical","hash_buckets":0}]}"#,
            "at least 1",
        ),
        (
            r#"{"label":"y","fields":[{"name":"a","kind":"categorical"},{"name":"a","kind":"numeric"}]}"#,
            "twice",
        ),
        (
            r#"{"label":"y","fields":[{"name":"a","kind":"categorical","sep":","}]}"#,
            "multi_hot",
        ),
        (
            r#"{"label":"y","delimiter":",","fields":[{"name":"a","kind":"multi_hot","sep":","}]}"#,
            "separator",
        ),
        (
            r#"{"label":"y","fields":[{"name":"a","kind":"wide"}]}"#,
            "unknown variant",
        ),
        (
            r#"{"label":"y","columns":["a"],"fields":[{"name":"a","kind":"numeric"}]}"#,
            "label",
        ),
        (
            r#"{"label":"y","fields":[{"name":"a","kind":"numeric"}],"extra":1}"#,
            "unknown field",
        ),
    ] {
        let err = Schema::from_json(json).unwrap_err().to_string();
        assert!(err.contains(needle), "{json}: {err:?} lacks {needle:?}");
    }
}

#[test]
fn the_encoder_round_trips_through_json_and_rejects_mismatched_vocabularies() {
    let e = fitted();
    let json = serde_json::to_string(&e).unwrap();
    assert_eq!(serde_json::from_str::<SchemaEncoder>(&json).unwrap(), e);
    let broken = json.replacen("null", "{\"tokens\":[]}", 1);
    assert!(serde_json::from_str::<SchemaEncoder>(&broken).is_err());
}

#[test]
fn streams_a_file_through_read_all() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.csv");
    std::fs::write(&path, DATA).unwrap();
    let e = SchemaEncoder::fit(&path, Schema::from_json(SCHEMA).unwrap()).unwrap();
    let (batch, labels) = read_all(&path, e.parser(&path, true).unwrap()).unwrap();
    assert_eq!((batch.len(), labels.len()), (4, 4));
}

/// Found by the `schema` fuzz target (`fuzz/seeds/schema/hand_bad_numeric_skip`): the fit did
/// not check numeric fields, so `fit_reader` accepted a line that training refuses, and
/// `fit_skipping_bad_lines` counted the tokens of a line that `Streamed::skip_bad_lines` skips.
#[test]
fn fitting_refuses_and_skips_the_lines_training_does() {
    use crate::data::stream::Streamed;
    use crate::train::TrainData;
    let text = "click,site,price,ad,tags,unused\n\
                1,a.com,3,x1,sport,zz\n\
                0,b.com,abc,x2,news,zz\n\
                1,c.com,1e400,x2,news,zz\n\
                1,a.com,1,x1,sport,zz\n";
    let schema = || Schema::from_json(SCHEMA).unwrap();
    let err = SchemaEncoder::fit_reader(Cursor::new(text), "d.csv", schema()).unwrap_err();
    assert!(
        err.to_string().contains("line 3, column 3 (price)"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.csv");
    std::fs::write(&path, text).unwrap();
    let (e, skipped) = SchemaEncoder::fit_skipping_bad_lines(&path, schema()).unwrap();
    assert_eq!(skipped, 2);
    // The tags of the skipped lines were not counted.
    assert_eq!(e.vocab(3).unwrap().tokens(), ["sport"]);
    let mut source = Streamed::new(&path, e.parser(&path, true).unwrap(), 0, 0)
        .unwrap()
        .skip_bad_lines(true);
    source.for_each_batch(0, 8, &mut |_, _| Ok(())).unwrap();
    assert_eq!((source.stats().bad_lines, source.stats().samples), (2, 2));
}

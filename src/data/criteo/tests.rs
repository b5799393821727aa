use super::*;
use crate::batch::{Column, Columns};

const TSV: &str = "\
0\t1\t1\t5\t0\t1382\t4\t15\t2\t181\t1\t2\t\t2\t68fd1e64\t80e26c9b\tfb936136\t7b4723c4\t25c83c98\t7e0ccccf\tde7995b8\t1f89b562\ta73ee510\ta8cd5504\tb2cb9c98\t37c9c164\t2824a5f6\t1adce6ef\t8ba8b39a\t891b62e7\te5ba7672\tf54016b9\t21ddcdc9\tb1252a9d\t07b5194c\t\t3a171ecb\tc5c50484\te8b83407\t9727dd16
1\t\t-1\t\t\t8\t\t\t\t\t\t\t\t\t68fd1e64\tf0cf0024\t\t\t25c83c98\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t3a171ecb\r
0\t3\t10\t260\t\t\t\t\t\t\t\t\t\t\t05db9164\tf0cf0024\t\t\t25c83c98\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t3a171ecb
";

fn config(min_count: u64) -> CriteoConfig {
    CriteoConfig {
        min_count,
        ..CriteoConfig::default()
    }
}

fn fit(text: &str, config: CriteoConfig) -> CriteoPreprocessor {
    CriteoPreprocessor::fit_reader(text.as_bytes(), "t.txt", config).unwrap()
}

/// Parses every accepted line; returns the batch and labels.
fn parse_all(p: &CriteoPreprocessor, text: &str) -> (BatchBuf, Vec<f32>) {
    let mut batch = p.new_batch();
    let mut labels = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if p.accepts(line, i + 1) {
            p.parse_line(line, i + 1, &mut batch, &mut labels).unwrap();
        }
    }
    (batch, labels)
}

fn ids(batch: &BatchBuf, field: usize) -> Vec<u64> {
    match batch.column(field) {
        Column::Categorical(ids) => ids.to_vec(),
        other => panic!("field {field} is {}", other.kind_name()),
    }
}

fn field(name: &str) -> usize {
    (0..FIELDS).position(|i| field_name(i) == name).unwrap()
}

#[test]
fn log_transforms_follow_the_reference() {
    let cases = [
        (0.0, 0),
        (1.0, 1),
        (2.0, 2),
        (-1.0, -1),
        (-0.5, 0),
        (1.9, 1),
        (2.5, 0), // ln(2.5)² = 0.84: shares bucket 0 with 0, as in FuxiCTR
        (3.0, 1),
        (10.0, 5),
        (1382.0, 52),
        (260.0, 30),
        (4_294_967_295.0, 491),
        (f64::MAX, 503_791),
        (f64::MIN, i64::MIN),
    ];
    for (v, bucket) in cases {
        assert_eq!(log_bucket(v), bucket, "{v}");
    }
    assert_eq!(log1p_value(-3.0), 0.0);
    assert_eq!(log1p_value(0.0), 0.0);
    assert!((log1p_value(std::f64::consts::E - 1.0) - 1.0).abs() < 1e-6);
    assert!(log1p_value(f64::MAX).is_finite());
    let mut buf = [0u8; 24];
    assert_eq!(
        bucket_token(Some(f64::MIN), &mut buf),
        "-9223372036854775808"
    );
    assert_eq!(bucket_token(Some(1382.0), &mut buf), "52");
    assert_eq!(bucket_token(None, &mut buf), MISSING);
}

#[test]
fn vocab_mode_counts_missing_and_stripped_columns() {
    let p = fit(TSV, config(2));
    let spec = p.spec(4, &[8]);
    spec.validate().unwrap();
    assert_eq!(spec.fields.len(), 39);
    assert_eq!(spec.fields[0].name, "I1");
    assert_eq!(spec.fields[38].name, "C26");
    let (batch, labels) = parse_all(&p, TSV);
    assert_eq!(labels, [0.0, 1.0, 0.0]);
    assert_eq!(batch.len(), 3);
    // C1: 68fd1e64 twice (id 1), 05db9164 once (OOV).
    assert_eq!(p.vocab(field("C1")).unwrap().len(), 2);
    assert_eq!(ids(&batch, field("C1")), [1, 1, 0]);
    // C3: missing twice (rows 2 and 3) is the frequent token; fb936136 once is OOV.
    assert_eq!(p.vocab(field("C3")).unwrap().tokens(), [MISSING]);
    assert_eq!(ids(&batch, field("C3")), [0, 1, 1]);
    // C24..C26 were stripped from rows 2 and 3: read as missing, like an explicit empty.
    for name in ["C24", "C25", "C26"] {
        let f = field(name);
        assert_eq!(p.vocab(f).unwrap().tokens(), [MISSING], "{name}");
        assert_eq!(ids(&batch, f), [0, 1, 1], "{name}");
    }
    // I1 log buckets: "1", missing, "3" -> bucket 1 twice (1 and ln(3)² = 1.2), missing once.
    assert_eq!(p.vocab(field("I1")).unwrap().tokens(), ["1"]);
    assert_eq!(ids(&batch, field("I1")), [1, 0, 1]);
    for (f, spec_field) in spec.fields.iter().enumerate() {
        let FieldKind::Categorical { vocab } = spec_field.kind else {
            panic!("{} is not categorical", spec_field.name);
        };
        assert!(
            ids(&batch, f).iter().all(|&id| id < vocab),
            "{}",
            spec_field.name
        );
    }
}

#[test]
fn csv_with_header_reads_like_tsv() {
    let header = std::iter::once("label".to_string())
        .chain((0..FIELDS).map(field_name))
        .collect::<Vec<_>>()
        .join(",");
    let csv = format!("{header}\n{}", TSV.replace('\t', ","));
    let (from_tsv, from_csv) = (fit(TSV, config(1)), fit(&csv, config(1)));
    assert_eq!(from_tsv, from_csv);
    let (a, la) = parse_all(&from_tsv, TSV);
    let (b, lb) = parse_all(&from_csv, &csv);
    assert_eq!((la, b.len()), (lb, 3));
    for f in 0..FIELDS {
        assert_eq!(ids(&a, f), ids(&b, f), "{}", field_name(f));
    }
    // The header is only a header on line 1; elsewhere it is a bad label.
    assert!(CriteoPreprocessor::is_header(&header, 1));
    assert!(!CriteoPreprocessor::is_header(&header, 2));
    let mut labels = Vec::new();
    let e = from_csv
        .parse_line(&header, 2, &mut from_csv.new_batch(), &mut labels)
        .unwrap_err();
    assert!(
        matches!(
            e,
            DataError::Parse {
                line: 2,
                column: 1,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn errors_name_line_column_and_field_and_append_nothing() {
    let p = fit(TSV, config(1));
    let good: Vec<&str> = TSV.lines().next().unwrap().split('\t').collect();
    let with = |col: usize, text: &str| {
        let mut c = good.clone();
        c[col] = text;
        c.join("\t")
    };
    let cases = [
        (with(0, "2"), 1, "label"),
        (with(0, ""), 1, "label"),
        (with(0, "nan"), 1, "label"),
        (with(3, "x"), 4, "I3"),
        (with(13, "inf"), 14, "I13"),
        (with(1, "1e999"), 2, "I1"),
        (format!("{}\textra", good.join("\t")), 41, "(extra)"),
    ];
    let mut batch = p.new_batch();
    let mut labels = Vec::new();
    for (line, column, field) in &cases {
        match p.parse_line(line, 9, &mut batch, &mut labels) {
            Err(DataError::Parse {
                file,
                line: 9,
                column: c,
                field: f,
                ..
            }) => {
                assert_eq!((c, f.as_str()), (*column, *field), "{line}");
                assert!(file.is_empty());
            }
            other => panic!("{line}: {other:?}"),
        }
    }
    assert_eq!((batch.len(), labels.len()), (0, 0));
    // The message without a file starts at the line; `in_file` names it.
    let e = p
        .parse_line(&with(3, "x"), 9, &mut batch, &mut labels)
        .unwrap_err();
    assert!(e.to_string().starts_with("line 9, column 4 (I3)"), "{e}");
    assert!(
        e.in_file("day_0")
            .to_string()
            .starts_with("day_0, line 9, column 4 (I3)")
    );
    // Fitting reports the same errors with the file.
    let bad = format!("{TSV}{}\n", with(3, "x"));
    match CriteoPreprocessor::fit_reader(bad.as_bytes(), "t.txt", config(1)) {
        Err(DataError::Parse {
            file,
            line: 4,
            column: 4,
            ..
        }) => assert_eq!(file, "t.txt"),
        other => panic!("{other:?}"),
    }
    // A batch for another spec is refused, not panicked on.
    let mut other = BatchBuf::new(&crate::fixtures::mixed_small());
    assert!(matches!(
        p.parse_line(good.join("\t").as_str(), 1, &mut other, &mut labels),
        Err(DataError::Shape(_))
    ));
    assert!(labels.is_empty());
}

#[test]
fn hashing_with_numeric_integers() {
    let config = CriteoConfig {
        integers: IntegerMode::Log1p,
        categoricals: CategoricalMode::Hash,
        buckets: 1000,
        ..CriteoConfig::default()
    };
    let p = CriteoPreprocessor::fit(Path::new("/nonexistent"), config).unwrap();
    let spec = p.spec(8, &[]);
    spec.validate().unwrap();
    assert!(
        spec.fields[..13]
            .iter()
            .all(|f| f.kind == FieldKind::Numeric)
    );
    assert!((spec.fields[13..].iter()).all(|f| f.kind == FieldKind::Categorical { vocab: 1000 }));
    let (batch, _) = parse_all(&p, TSV);
    match batch.column(field("I5")) {
        Column::Numeric(v) => assert_eq!(v, [1383f64.ln() as f32, 9f64.ln() as f32, 0.0]),
        other => panic!("{}", other.kind_name()),
    }
    match batch.column(field("I2")) {
        Column::Numeric(v) => assert_eq!(v, [2f64.ln() as f32, 0.0, 11f64.ln() as f32]),
        other => panic!("{}", other.kind_name()),
    }
    let c1 = ids(&batch, field("C1"));
    assert_eq!(c1[0], c1[1]);
    assert_eq!(c1[0], hash_token(field("C1"), "68fd1e64", 1000));
    assert_eq!(
        ids(&batch, field("C3"))[1],
        hash_token(field("C3"), MISSING, 1000)
    );
    assert!((13..FIELDS).all(|f| ids(&batch, f).iter().all(|&id| id < 1000)));
}

#[test]
fn bad_settings_are_errors() {
    let zero = CriteoConfig {
        categoricals: CategoricalMode::Hash,
        buckets: 0,
        ..CriteoConfig::default()
    };
    assert!(matches!(
        CriteoPreprocessor::hashing(zero),
        Err(DataError::Config(_))
    ));
    assert!(matches!(
        CriteoPreprocessor::hashing(CriteoConfig::default()),
        Err(DataError::Config(_))
    ));
    assert!(matches!(
        CriteoPreprocessor::fit(Path::new("/nonexistent/train.txt"), CriteoConfig::default()),
        Err(DataError::Io { .. })
    ));
}

#[test]
fn serde_round_trip_and_mismatch_refused() {
    let p = fit(TSV, config(2));
    let json = serde_json::to_string(&p).unwrap();
    let back: CriteoPreprocessor = serde_json::from_str(&json).unwrap();
    assert_eq!(back, p);
    assert_eq!(back.spec(4, &[]), p.spec(4, &[]));
    // Vocabularies for a configuration that hashes, or one too few, are refused.
    let hashing = json.replace(r#""categoricals":"vocab""#, r#""categoricals":"hash""#);
    assert!(serde_json::from_str::<CriteoPreprocessor>(&hashing).is_err());
    let numeric = json.replace(r#""integers":"log_bucket""#, r#""integers":"log1p""#);
    assert!(serde_json::from_str::<CriteoPreprocessor>(&numeric).is_err());
    let mut short: serde_json::Value = serde_json::from_str(&json).unwrap();
    short["vocabs"].as_array_mut().unwrap().pop();
    assert!(serde_json::from_value::<CriteoPreprocessor>(short).is_err());
}

/// Lines made of Criteo's own characters (and a few others), so most reach the field parsing.
fn near_miss_line() -> impl proptest::strategy::Strategy<Value = String> {
    proptest::string::string_regex(
        "[01]?[\t,]?([0-9a-f.e+\\-\t,\r]{0,6}[\t,]){0,45}[0-9a-fA-Z\"é\r]{0,4}",
    )
    .unwrap()
}

proptest::proptest! {
    #[test]
    fn any_line_parses_or_fails_cleanly(line in near_miss_line(), hash in proptest::bool::ANY) {
        let p = if hash {
            CriteoPreprocessor::hashing(CriteoConfig {
                categoricals: CategoricalMode::Hash,
                integers: IntegerMode::Log1p,
                buckets: 7,
                ..CriteoConfig::default()
            })
            .unwrap()
        } else {
            fit(TSV, config(1))
        };
        let spec = p.spec(2, &[]);
        let mut batch = p.new_batch();
        let mut labels = Vec::new();
        let ok = p.parse_line(&line, 1, &mut batch, &mut labels).is_ok();
        proptest::prop_assert_eq!((batch.len(), labels.len()), (ok as usize, ok as usize));
        for (f, field) in spec.fields.iter().enumerate() {
            match (field.kind, batch.column(f)) {
                (FieldKind::Categorical { vocab }, Column::Categorical(ids)) => {
                    proptest::prop_assert!(ids.iter().all(|&id| id < vocab))
                }
                (FieldKind::Numeric, Column::Numeric(v)) => {
                    proptest::prop_assert!(v.iter().all(|x| x.is_finite()))
                }
                _ => proptest::prop_assert!(false, "kind mismatch in {}", field.name),
            }
        }
        let _ = CriteoPreprocessor::fit_reader(line.as_bytes(), "fuzz", config(1));
    }
}

//! The spec's parsing, validation and layout, the imported-model forms included.

use super::*;

fn spec_json(extra: &str) -> String {
    format!(
        r#"{{"fields":[{{"name":"a","kind":"categorical","vocab":3}},{{"name":"b","kind":"numeric"}}],
           "embedding_dim":4,"hidden":[8],"output":"linear"{extra}}}"#
    )
}

#[test]
fn parses_and_round_trips() {
    let spec = ModelSpec::from_json(&spec_json(r#","clamp":[1,5]"#)).unwrap();
    assert_eq!(spec.total_rows().unwrap(), 4);
    assert_eq!(spec.row_offsets(), vec![0, 3]);
    assert_eq!(spec.layer_shapes(), vec![(8, 8), (8, 1)]);
    assert_eq!(ModelSpec::from_json(&spec.to_json()).unwrap(), spec);
}

/// The kinds that serve imported models: a dense field (MLP input after the embedded
/// fields, no rows of the table but its one first-order weight), shared tables (no rows of
/// their own), max pooling, a separate first-order pooling and a padding id.
#[test]
fn imported_kinds_parse_lay_out_and_round_trip() {
    let json = r#"{"fields":[
        {"name":"age","kind":"dense"},
        {"name":"item","kind":"categorical","vocab":10},
        {"name":"prev_item","kind":"categorical","vocab":10,"table":"item"},
        {"name":"genres","kind":"multi_hot","vocab":5,"pooling":"mean","linear_pooling":"sum","padding":0},
        {"name":"tags","kind":"multi_hot","vocab":7,"pooling":"max"},
        {"name":"hist","kind":"multi_hot","vocab":9,"pooling":"sum","table":"item","weighted":true},
        {"name":"price","kind":"dense"}],
        "embedding_dim":4,"hidden":[8],"output":"sigmoid"}"#;
    let spec = ModelSpec::from_json(json).unwrap();
    assert_eq!(spec.total_rows().unwrap(), 1 + 10 + 5 + 7 + 1);
    assert_eq!(spec.row_offsets(), vec![0, 1, 1, 11, 16, 1, 23]);
    assert_eq!(spec.embedded_fields(), 5);
    assert_eq!(spec.input_offsets(), vec![20, 0, 4, 8, 12, 16, 21]);
    assert_eq!(spec.mlp_input_width(), 22);
    assert_eq!(spec.layer_shapes(), vec![(22, 8), (8, 1)]);
    let FieldKind::MultiHot {
        linear_pooling,
        padding,
        ..
    } = spec.fields[4].kind
    else {
        panic!("tags is multi-hot")
    };
    assert_eq!((linear_pooling, padding), (Pooling::Max, None));
    assert!(matches!(
        spec.fields[5].kind,
        FieldKind::MultiHot { weighted: true, .. }
    ));
    assert_eq!(ModelSpec::from_json(&spec.to_json()).unwrap(), spec);
    assert!(!spec.to_json().contains(r#""linear_pooling":"max""#));
    // Only the weighted field says so: unweighted specs serialize as they did.
    assert_eq!(spec.to_json().matches("weighted").count(), 1);
    assert_eq!(
        spec.fields.iter().filter(|f| f.kind.is_trainable()).count(),
        4
    );
}

#[test]
fn shared_tables_and_padding_ids_are_checked() {
    let mut spec = ModelSpec::from_json(&spec_json("")).unwrap();
    spec.fields
        .push(Field::new("c", FieldKind::Categorical { vocab: 3 }));
    let table = |spec: &mut ModelSpec, t: &str| spec.fields[2].table = Some(t.into());
    let reason = |spec: &ModelSpec| match spec.validate() {
        Err(SpecError::BadTable { reason, .. }) => reason,
        other => panic!("{other:?}"),
    };
    table(&mut spec, "a");
    assert_eq!(spec.validate(), Ok(()));
    table(&mut spec, "nope");
    assert!(reason(&spec).contains("not a field"));
    table(&mut spec, "c");
    assert!(reason(&spec).contains("own"));
    table(&mut spec, "b");
    assert!(reason(&spec).contains("only categorical"));
    table(&mut spec, "a");
    spec.fields[2].kind = FieldKind::Categorical { vocab: 4 };
    assert!(reason(&spec).contains("fewer rows"));
    spec.fields[2].kind = FieldKind::Categorical { vocab: 2 };
    spec.fields.push(Field {
        table: Some("c".into()),
        ..Field::new("d", FieldKind::multi_hot(2, Pooling::Sum))
    });
    assert!(reason(&spec).contains("another field's table"));
    spec.fields.pop();
    spec.fields[2].kind = FieldKind::MultiHot {
        vocab: 3,
        pooling: Pooling::Max,
        linear_pooling: Pooling::Sum,
        padding: Some(3),
        weighted: false,
    };
    assert_eq!(
        spec.validate(),
        Err(SpecError::BadPadding {
            field: "c".into(),
            padding: 3,
            vocab: 3
        })
    );
    spec.fields[2].kind = FieldKind::MultiHot {
        vocab: 3,
        pooling: Pooling::Sum,
        linear_pooling: Pooling::Max,
        padding: None,
        weighted: true,
    };
    assert_eq!(spec.validate(), Err(SpecError::WeightedMax("c".into())));
}

#[test]
fn rejects_bad_specs() {
    let mut spec = ModelSpec::from_json(&spec_json("")).unwrap();
    spec.embedding_dim = 257;
    assert_eq!(spec.validate(), Err(SpecError::BadEmbeddingDim(257)));
    spec.embedding_dim = 4;
    spec.fields[1].name = "a".into();
    assert_eq!(spec.validate(), Err(SpecError::BadFieldName("a".into())));
    spec.fields[1].name = "b".into();
    spec.hidden = vec![0];
    assert_eq!(
        spec.validate(),
        Err(SpecError::BadLayerWidth { index: 0, width: 0 })
    );
    spec.hidden = vec![];
    spec.output = Output::Sigmoid;
    spec.clamp = Some([1.0, 5.0]);
    assert_eq!(spec.validate(), Err(SpecError::BadClamp));
    spec.clamp = None;
    spec.fields[0].kind = FieldKind::Categorical { vocab: u64::MAX };
    spec.fields[1].kind = FieldKind::Categorical { vocab: 2 };
    assert_eq!(spec.validate(), Err(SpecError::Overflow));
    assert!(matches!(
        ModelSpec::from_json(r#"{"fields":[]}"#),
        Err(SpecError::Json(_))
    ));
    for bad in [
        r#"{"name":"g","kind":"categorical","vocab":18,"pooling":"mean"}"#,
        r#"{"name":"g","kind":"numeric","vocab":3}"#,
        r#"{"name":"g","kind":"multi_hot","vocab":3}"#,
        r#"{"name":"g","kind":"categorical","vocab":3,"vocabulary":4}"#,
        r#"{"name":"g","kind":"dense","vocab":3}"#,
        r#"{"name":"g","kind":"dense","table":"x"}"#,
        r#"{"name":"g","kind":"numeric","padding":0}"#,
        r#"{"name":"g","kind":"categorical","vocab":3,"linear_pooling":"sum"}"#,
        r#"{"name":"g","kind":"multi_hot","vocab":3,"pooling":"median"}"#,
        r#"{"name":"g","kind":"categorical","vocab":3,"weighted":true}"#,
        r#"{"name":"g","kind":"multi_hot","vocab":3,"pooling":"sum","weighted":1}"#,
        r#"{"name":"g","kind":"wide"}"#,
    ] {
        let json =
            format!(r#"{{"fields":[{bad}],"embedding_dim":4,"hidden":[],"output":"sigmoid"}}"#);
        assert!(
            matches!(ModelSpec::from_json(&json), Err(SpecError::Json(_))),
            "{bad}"
        );
    }
    let json = r#"{"fields":[{"name":"a","kind":"numeric"}],"embedding_dim":4,"hidden":[],"output":"sigmoid","clmap":[1,5]}"#;
    assert!(matches!(
        ModelSpec::from_json(json),
        Err(SpecError::Json(_))
    ));
    spec.fields = vec![Field::new("x", FieldKind::Numeric)];
    spec.embedding_dim = 256;
    spec.hidden = vec![16_384, 16_384, 16_384];
    assert!(matches!(spec.validate(), Err(SpecError::TooManyParams(_))));
}

//! The `schema` target: schemas, fitting, parsing and streaming of CSV/TSV files.

use super::*;

/// The fixed schemas of the `schema` target (picked by the first byte's bits 0–2, when below
/// 6): every kind, header and headerless files, each delimiter mode, hashing and counted
/// vocabularies with `min_count`, renamed columns, both poolings and outputs.
pub const SCHEMAS: [&str; 6] = [
    // Header, delimiter from line 1, counted vocabularies.
    r#"{"label": "y", "fields": [{"name": "c", "kind": "categorical"},
        {"name": "n", "kind": "numeric"}, {"name": "m", "kind": "multi_hot"}]}"#,
    // Header; hashing, log1p, a renamed column, `;` lists with sum pooling, min_count.
    r#"{"label": "click", "fields": [
        {"name": "site", "kind": "categorical", "hash_buckets": 61},
        {"name": "cnt", "kind": "numeric", "transform": "log1p"},
        {"name": "tags", "column": "t", "kind": "multi_hot", "sep": ";", "pooling": "sum",
         "hash_buckets": 17},
        {"name": "u", "kind": "categorical", "min_count": 2}]}"#,
    // Headerless CSV with an ignored column.
    r#"{"label": "y", "columns": ["y", "a", "b", "skip", "c"], "delimiter": ",", "fields": [
        {"name": "a", "kind": "categorical"}, {"name": "b", "kind": "numeric"},
        {"name": "c", "kind": "multi_hot", "sep": "|", "min_count": 2}]}"#,
    // Headerless TSV, linear output (ratings).
    r#"{"label": "r", "columns": ["u", "i", "r"], "delimiter": "\t", "output": "linear",
        "fields": [{"name": "u", "kind": "categorical"},
                   {"name": "i", "kind": "categorical", "hash_buckets": 5}]}"#,
    // Header with `;` delimiter, the label also read as a field, a two-character list separator.
    r#"{"label": "y", "delimiter": ";", "fields": [
        {"name": "y2", "column": "y", "kind": "numeric"},
        {"name": "g", "kind": "multi_hot", "sep": "::", "min_count": 1},
        {"name": "x", "kind": "categorical", "min_count": 3}]}"#,
    // Header, space delimiter, hashed lists.
    r#"{"label": "label", "delimiter": " ", "fields": [
        {"name": "a", "kind": "multi_hot", "sep": ",", "hash_buckets": 7, "pooling": "mean"},
        {"name": "b", "kind": "numeric"}, {"name": "c", "kind": "categorical"}]}"#,
];

/// Models with more embedding rows than this are not written (a schema from the input may ask
/// for billions of hash buckets).
pub(crate) const SCHEMA_MAX_ROWS: u64 = 1 << 16;

/// One `schema` input. Byte 0 is the setup: bits 0–2 below 6 pick one of [`SCHEMAS`] and the
/// rest of the input is the file; 6 or 7 take the schema JSON from the input up to its first NUL
/// byte, the file after it. Bit 3: parse without labels (scoring files). Bit 4: the labelled
/// parser and `Streamed` skip bad lines, compared with `fit_skipping_bad_lines`.
///
/// Checks: no panic; `Schema::from_json` errors are `Config` errors, accepted schemas round-trip
/// through JSON; fitting (`fit_reader`) and `parser_for` give the same result with any read
/// buffering, and their errors name an existing line; the fitted encoder round-trips through
/// JSON as a `Preprocessing`; every line the parser accepts either adds exactly one row and one
/// label (finite; 0 without labels) or nothing and an error naming that line; when the fit
/// succeeded and labels are read, every counted token with `min_count` ≤ 1 has its own id (the
/// fit saw it); the rows fit `encoder.spec` (ids below the vocabulary, values finite) and score
/// Ok on a random model of that spec (or `NonFiniteScore` when a value is above [`HUGE`]), each
/// score a probability for sigmoid output; `stream::read_all` with `Preprocessing::parser` gives
/// the same rows and labels exactly when every line parsed (valid UTF-8); with skipping,
/// `Streamed` skips exactly as many lines as `fit_skipping_bad_lines` did. Returns the rows
/// parsed.
pub fn check_schema(data: &[u8]) -> usize {
    use deepfm::Output;
    use deepfm::data::prep::Preprocessing;
    use deepfm::data::schema::{Schema, SchemaEncoder, SchemaKind};

    let Some((&flags, rest)) = data.split_first() else {
        return 0;
    };
    let unlabelled = flags & 8 != 0;
    let skipping = flags & 16 != 0;
    let (json, bytes): (Cow<str>, &[u8]) = match (flags & 7) as usize {
        i @ 0..=5 => (Cow::Borrowed(SCHEMAS[i]), rest),
        _ => {
            let cut = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            let Ok(json) = std::str::from_utf8(&rest[..cut]) else {
                return 0;
            };
            (Cow::Borrowed(json), rest.get(cut + 1..).unwrap_or_default())
        }
    };
    let schema = match Schema::from_json(&json) {
        Ok(s) => s,
        Err(e) => {
            let _ = e.to_string();
            assert!(matches!(e, DataError::Config(_)), "{e:?}; schema: {json:?}");
            assert!(flags & 7 >= 6, "a fixed schema is refused: {e}");
            return 0;
        }
    };
    let again = serde_json::to_string(&schema).expect("serialize a schema");
    assert_eq!(
        Schema::from_json(&again).as_ref().ok(),
        Some(&schema),
        "the schema does not round-trip: {again}"
    );

    let lines = line_count(bytes);
    let text = String::from_utf8_lossy(bytes);
    let context = (&json, &text);
    if skipping && !unlabelled {
        check_schema_skipping(bytes, &schema, lines, &context);
    }
    let encoder = match twice(bytes, |r| {
        SchemaEncoder::fit_reader(r, "fit", schema.clone())
    }) {
        Ok(e) => e,
        Err(e) => {
            check_data_error(&e, lines, &context);
            return 0;
        }
    };
    let prep = Preprocessing::Schema(encoder.clone());
    let prep_json = serde_json::to_string(&prep).expect("serialize the preprocessing");
    let prep_again: Preprocessing = serde_json::from_str(&prep_json)
        .unwrap_or_else(|e| panic!("the preprocessing does not read back: {e}: {prep_json}"));
    assert_eq!(prep_again, prep, "{context:?}");
    assert_eq!(prep.fields(), encoder.fields(), "{context:?}");

    let labelled = !unlabelled;
    let made = twice(bytes, |r| {
        (encoder.parser_for(r, "parse", labelled)).map(|p| format!("{p:?}"))
    });
    if let Err(e) = made {
        check_data_error(&e, lines, &context);
        return 0;
    }
    let parser = encoder
        .parser_for(bytes, "parse", labelled)
        .expect("the parser was made above");

    let spec = encoder.spec(4, &[8]);
    let mut batch = parser.new_batch();
    let mut labels = Vec::new();
    let mut all_parsed = true;
    for (i, line) in text.split('\n').enumerate() {
        let line_no = i + 1;
        if !parser.accepts(line, line_no) {
            continue;
        }
        let before = batch.len();
        match parser.parse(line, line_no, &mut batch, &mut labels) {
            Ok(()) => {
                assert_eq!(batch.len(), before + 1, "{context:?}");
                assert_eq!(labels.len(), batch.len(), "{context:?}");
                let y = labels[before];
                assert!(y.is_finite(), "label {y}; {context:?}");
                assert!(
                    labelled || y == 0.0,
                    "label {y} without labels; {context:?}"
                );
            }
            Err(e) => {
                all_parsed = false;
                assert_eq!(
                    batch.len(),
                    before,
                    "a refused line added a row: {context:?}"
                );
                assert_eq!(
                    labels.len(),
                    before,
                    "a refused line added a label: {context:?}"
                );
                let _ = e.to_string();
                if let DataError::Parse { line, column, .. } = e {
                    assert_eq!(line, line_no, "{context:?}");
                    assert!(column >= 1, "{context:?}");
                }
            }
        }
    }
    assert_batch_fits(&spec, &batch, &context);
    // The fit counted every token of every line (it refuses a file with a bad line), so a
    // vocabulary keeping tokens seen once knows them all.
    if labelled {
        for (i, f) in schema.fields.iter().enumerate() {
            let counted = f.kind != SchemaKind::Numeric && f.hash_buckets.is_none();
            if !counted || f.min_count.unwrap_or(1) > 1 {
                continue;
            }
            let ids = match batch.column(i) {
                Column::Categorical(ids) => ids,
                Column::MultiHot { ids, .. } => ids,
                Column::Numeric(_) => unreachable!(),
            };
            assert!(
                ids.iter().all(|&id| id != 0),
                "field {}: a token of the training file is out of vocabulary: {context:?}",
                f.name
            );
        }
    }

    // Scoring with a random model of the encoder's spec.
    let small =
        spec.validate().is_ok() && spec.total_rows().is_ok_and(|rows| rows <= SCHEMA_MAX_ROWS);
    if small && !batch.is_empty() {
        let path = temp_path("schema");
        write_random_model(&path, &spec, BASE_SEED).expect("write a schema model");
        let model = Model::open(&path).expect("open the schema model");
        let _ = std::fs::remove_file(&path);
        let mut out = vec![0.0f32; batch.len()];
        let huge = (0..batch.num_columns()).any(|c| match batch.column(c) {
            Column::Numeric(v) => v.iter().any(|x| x.abs() > HUGE),
            _ => false,
        });
        match score(&model, &batch, &mut Scratch::new(&model), &mut out) {
            Ok(()) => {
                if spec.output == Output::Sigmoid {
                    assert_probabilities(&out, &context);
                } else {
                    assert!(out.iter().all(|s| s.is_finite()), "{context:?}");
                }
            }
            Err(ScoreError::NonFiniteScore { .. }) if huge => {}
            Err(e) => panic!("the parsed rows did not score: {e}; {context:?}"),
        }
    } else if flags & 7 < 6 {
        assert!(spec.validate().is_ok(), "a fixed schema's spec is invalid");
    }

    // read_all through `Preprocessing::parser` (the saved preprocessing's path).
    let path = temp_file("schema", bytes);
    let utf8 = std::str::from_utf8(bytes).is_ok();
    let streamed = prep
        .parser(&path, labelled)
        .map_err(deepfm::train::TrainError::from)
        .and_then(|p| deepfm::data::stream::read_all(&path, p));
    match streamed {
        Ok((all, all_labels)) => {
            assert!(
                all_parsed && utf8,
                "read_all accepted a bad file: {context:?}"
            );
            assert_eq!(all_labels, labels, "read_all labels differ: {context:?}");
            assert_eq!(all.len(), batch.len(), "read_all rows differ: {context:?}");
            for r in 0..all.len() {
                assert_eq!(
                    row_debug(&all, r),
                    row_debug(&batch, r),
                    "row {r}: {context:?}"
                );
            }
        }
        Err(e) => {
            let _ = e.to_string();
            assert!(
                !(all_parsed && utf8),
                "read_all refused a file whose every line parses ({e}): {context:?}"
            );
        }
    }

    let _ = std::fs::remove_file(&path);
    batch.len()
}

/// `fit_skipping_bad_lines` and `Streamed::skip_bad_lines` (with the parser of the encoder it
/// fitted) skip the same number of lines; with none skipped, the fit equals `fit_reader`'s, and
/// `fit_reader` works exactly when nothing is skipped.
pub(crate) fn check_schema_skipping(
    bytes: &[u8],
    schema: &deepfm::data::schema::Schema,
    lines: usize,
    context: &dyn std::fmt::Debug,
) {
    use deepfm::data::schema::SchemaEncoder;
    let fitted = SchemaEncoder::fit_reader(bytes, "fit", schema.clone());
    let path = temp_file("schema-skip", bytes);
    let skip_fit = SchemaEncoder::fit_skipping_bad_lines(&path, schema.clone());
    let (encoder, skipped) = match skip_fit {
        Ok(fit) => fit,
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            check_data_error(&e, lines, &context);
            assert!(
                fitted.is_err(),
                "only the skipping fit failed ({e}): {context:?}"
            );
            return;
        }
    };
    assert!(
        skipped <= lines,
        "{skipped} of {lines} lines skipped: {context:?}"
    );
    match &fitted {
        Ok(f) => {
            assert_eq!(
                skipped, 0,
                "fit_reader took a line the skipping fit skipped: {context:?}"
            );
            assert_eq!(f, &encoder, "{context:?}");
        }
        Err(e) => assert!(
            skipped > 0,
            "fit_reader failed ({e}) but nothing was skipped: {context:?}"
        ),
    }
    // The fit placed the columns with line 1, so the parser can too; an empty file has no
    // line 1 (the fit is empty, the parser finds no label column).
    let parser = match encoder.parser(&path, true) {
        Ok(p) => p,
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            assert_eq!(lines, 0, "the fit read line 1, the parser refused it: {e}");
            check_data_error(&e, lines, &context);
            return;
        }
    };
    let mut source = Streamed::new(&path, parser, 0, 0)
        .expect("open the temporary file")
        .skip_bad_lines(true);
    let epoch = source.for_each_batch(0, 64, &mut |_, _| Ok(()));
    let _ = std::fs::remove_file(&path);
    epoch.unwrap_or_else(|e| panic!("a skipping epoch failed: {e}; {context:?}"));
    assert_eq!(
        source.stats().bad_lines,
        skipped,
        "training skips other lines than fitting: {context:?}"
    );
}

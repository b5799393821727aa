//! The `criteo` target.

use super::*;

/// Hash buckets per field of the `criteo` target's hashing mode (and its two scoring models).
pub const CRITEO_BUCKETS: u64 = 61;

/// A random model for the Criteo fields of `integers` (hashing into [`CRITEO_BUCKETS`], D = 4,
/// one hidden layer of 8), written once per mode.
pub(crate) fn criteo_model(integers: IntegerMode) -> &'static Model {
    static MODELS: [OnceLock<Model>; 2] = [OnceLock::new(), OnceLock::new()];
    let cell = &MODELS[(integers == IntegerMode::Log1p) as usize];
    cell.get_or_init(|| {
        let pre = CriteoPreprocessor::hashing(criteo_config(integers, Delimiter::Auto))
            .expect("hashing config");
        let path = temp_path("criteo");
        write_random_model(&path, &pre.spec(4, &[8]), BASE_SEED).expect("write a criteo model");
        let model = Model::open(&path).expect("open the criteo model");
        let _ = std::fs::remove_file(&path);
        model
    })
}

pub(crate) fn criteo_config(integers: IntegerMode, delimiter: Delimiter) -> CriteoConfig {
    CriteoConfig {
        integers,
        categoricals: CategoricalMode::Hash,
        min_count: 1,
        buckets: CRITEO_BUCKETS,
        delimiter,
    }
}

/// One `criteo` input: the first byte is the setup (bit 0: `Log1p` integers, else log buckets;
/// bits 1–2: delimiter auto/tab/comma/auto; bit 3: vocabulary mode fitted on the input itself
/// with `min_count = flags >> 4`, else hashing into [`CRITEO_BUCKETS`]), the rest is the file.
///
/// Checks: no panic; fitting gives the same result with any read buffering; every line the
/// preprocessor accepts either adds exactly one row and one label in `[0, 1]` or nothing and an
/// error naming that line; the rows fit the preprocessor's spec (ids in range, values finite);
/// in hashing mode they score **Ok** on a random model of that spec, every score a probability;
/// and `stream::read_all` over the same file agrees: Ok with the same rows and labels exactly
/// when every line parsed (valid UTF-8 text), an error otherwise. Returns the rows parsed.
pub fn check_criteo(data: &[u8]) -> usize {
    let Some((&flags, bytes)) = data.split_first() else {
        return 0;
    };
    let integers = if flags & 1 != 0 {
        IntegerMode::Log1p
    } else {
        IntegerMode::LogBucket
    };
    let delimiter = [
        Delimiter::Auto,
        Delimiter::Tab,
        Delimiter::Comma,
        Delimiter::Auto,
    ][(flags >> 1 & 3) as usize];
    let hashing = flags & 8 == 0;
    let text = String::from_utf8_lossy(bytes);
    let pre = if hashing {
        CriteoPreprocessor::hashing(criteo_config(integers, delimiter)).expect("hashing config")
    } else {
        let config = CriteoConfig {
            categoricals: CategoricalMode::Vocab,
            min_count: (flags >> 4) as u64,
            ..criteo_config(integers, delimiter)
        };
        match twice(bytes, |r| CriteoPreprocessor::fit_reader(r, "fit", config)) {
            Ok(pre) => pre,
            Err(e) => {
                check_data_error(&e, line_count(bytes), &text);
                return 0;
            }
        }
    };
    let spec = pre.spec(4, &[8]);
    spec.validate()
        .unwrap_or_else(|e| panic!("the preprocessor's spec is invalid: {e}; input: {text:?}"));
    let mut batch = pre.new_batch();
    let mut labels = Vec::new();
    let mut all_parsed = true;
    for (i, line) in text.split('\n').enumerate() {
        let line_no = i + 1;
        if !pre.accepts(line, line_no) {
            continue;
        }
        let before = batch.len();
        match pre.parse_line(line, line_no, &mut batch, &mut labels) {
            Ok(()) => {
                assert_eq!(batch.len(), before + 1, "input: {text:?}");
                assert_eq!(labels.len(), batch.len(), "input: {text:?}");
                let y = labels[before];
                assert!((0.0..=1.0).contains(&y), "label {y}; input: {text:?}");
            }
            Err(e) => {
                all_parsed = false;
                assert_eq!(batch.len(), before, "a refused line added a row: {text:?}");
                assert_eq!(
                    labels.len(),
                    before,
                    "a refused line added a label: {text:?}"
                );
                let _ = e.to_string();
                if let DataError::Parse { line, .. } = e {
                    assert_eq!(line, line_no, "input: {text:?}");
                }
            }
        }
    }
    assert_batch_fits(&spec, &batch, &text);
    if hashing && !batch.is_empty() {
        let model = criteo_model(integers);
        let mut out = vec![0.0f32; batch.len()];
        score(model, &batch, &mut Scratch::new(model), &mut out).unwrap_or_else(|e| {
            panic!("parse_line accepted every row but score refused the batch: {e}; {text:?}")
        });
        assert_probabilities(&out, &text);
    }

    let path = temp_file("criteo", bytes);
    let streamed = deepfm::data::stream::read_all(&path, pre);
    let _ = std::fs::remove_file(&path);
    let utf8 = std::str::from_utf8(bytes).is_ok();
    match streamed {
        Ok((all, all_labels)) => {
            assert!(all_parsed && utf8, "read_all accepted a bad file: {text:?}");
            assert_eq!(all_labels, labels, "read_all labels differ: {text:?}");
            assert_eq!(all.len(), batch.len(), "read_all rows differ: {text:?}");
            for r in 0..all.len() {
                assert_eq!(
                    row_debug(&all, r),
                    row_debug(&batch, r),
                    "row {r}: {text:?}"
                );
            }
        }
        Err(e) => {
            let _ = e.to_string();
            assert!(
                !(all_parsed && utf8),
                "read_all refused a file whose every line parses ({e}): {text:?}"
            );
        }
    }
    batch.len()
}

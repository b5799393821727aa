//! The `labelled_tsv` target: `Streamed` with `LabelledTsv` against an independent model of the stream.

use super::*;

/// One `labelled_tsv` input: bytes 0 and 1 are the setup, the rest is a file of labelled
/// `mixed_small()` samples (`label\tuser\tage\tgenres\ttags`) streamed by `Streamed` with
/// `LabelledTsv`: byte 0 bit 0 skips bad lines, bits 1–3 give the batch size (1–8), bits 4–7
/// the shuffle buffer (0–15 rows); byte 1 the longest line (`4 × b + 1` bytes, or the 1 MiB
/// default for 255).
///
/// Checks against an independent model of the stream (each line too long or not UTF-8 is bad;
/// blank lines are skipped; the rest go through `LabelledTsv::parse`): with `skip`, the epoch is
/// Ok and emits exactly the parsed samples (as a multiset, and in file order without a buffer),
/// counting the bad lines; without it, Ok exactly when no line is bad. Batches hold at most the
/// batch size and score Ok on the `mixed_small` model, or `NonFiniteScore` on rows with |age|
/// above [`HUGE`]. Returns the samples emitted.
pub fn check_labelled_tsv(data: &[u8]) -> usize {
    let [flags, limit, bytes @ ..] = data else {
        return 0;
    };
    let skip = flags & 1 != 0;
    let batch_size = 1 + (flags >> 1 & 7) as usize;
    let buffer_rows = (flags >> 4) as usize;
    let max_line = if *limit == 255 {
        deepfm::data::stream::DEFAULT_MAX_LINE_BYTES
    } else {
        4 * *limit as usize + 1
    };
    let context = String::from_utf8_lossy(bytes);
    let parser = LabelledTsv::new(mixed_small());

    // The independent model of the stream.
    let mut want = parser.new_batch();
    let mut want_labels = Vec::new();
    let mut bad = 0;
    for (i, line) in lines_of(bytes).into_iter().enumerate() {
        let Some(text) = (line.len() <= max_line)
            .then(|| std::str::from_utf8(line).ok())
            .flatten()
        else {
            bad += 1;
            continue;
        };
        if !parser.accepts(text, i + 1) {
            continue;
        }
        if parser
            .parse(text, i + 1, &mut want, &mut want_labels)
            .is_err()
        {
            bad += 1;
        }
        assert_eq!(want.len(), want_labels.len(), "{context:?}");
    }

    let path = temp_file("labelled", bytes);
    let mut source = Streamed::new(&path, parser, buffer_rows, 7)
        .expect("open the temporary file")
        .skip_bad_lines(skip)
        .max_line_bytes(max_line);
    let model = base_model(false);
    let mut scratch = Scratch::new(model);
    let mut got: Vec<(String, u32)> = Vec::new();
    let result = source.for_each_batch(0, batch_size, &mut |batch, labels| {
        assert!(
            !labels.is_empty() && labels.len() <= batch_size && batch.len() == labels.len(),
            "a batch of {} rows and {} labels (size {batch_size}): {context:?}",
            batch.len(),
            labels.len()
        );
        for (r, y) in labels.iter().enumerate() {
            got.push((row_debug(batch, r), y.to_bits()));
        }
        let mut out = vec![0.0f32; batch.len()];
        match score(model, batch, &mut scratch, &mut out) {
            Ok(()) => assert_probabilities(&out, &context),
            Err(ScoreError::NonFiniteScore { row }) => match batch.column(1) {
                Column::Numeric(ages) => assert!(ages[row].abs() > HUGE, "{context:?}"),
                other => panic!("column 1 is {}", other.kind_name()),
            },
            Err(e) => panic!("a streamed batch did not score: {e}; input: {context:?}"),
        }
        Ok(())
    });
    let _ = std::fs::remove_file(&path);
    let stats = source.stats().clone();
    match result {
        Ok(()) => {
            assert!(
                skip || bad == 0,
                "{bad} bad lines but the epoch is Ok: {context:?}"
            );
            assert_eq!(stats.bad_lines, bad, "bad lines counted: {context:?}");
            let mut expected: Vec<(String, u32)> = (0..want.len())
                .map(|r| (row_debug(&want, r), want_labels[r].to_bits()))
                .collect();
            assert_eq!(stats.samples, expected.len(), "{context:?}");
            if buffer_rows > 0 {
                expected.sort();
                got.sort();
            }
            assert_eq!(got, expected, "streamed samples differ: {context:?}");
        }
        Err(e) => {
            let _ = e.to_string();
            assert!(
                !skip && bad > 0,
                "the epoch failed ({e}) with {bad} bad lines: {context:?}"
            );
        }
    }
    got.len()
}

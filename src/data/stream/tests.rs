use super::*;
use crate::batch::{Column, Columns};
use crate::spec::{Field, FieldKind, Output};
use std::io::Write;

/// One categorical field `id` with `n` ids.
fn id_spec(n: u64) -> ModelSpec {
    ModelSpec {
        mlp: Default::default(),
        table: Default::default(),
        fields: vec![Field {
            name: "id".into(),
            kind: FieldKind::Categorical { vocab: n },
            table: None,
        }],
        embedding_dim: 4,
        hidden: vec![],
        output: Output::Sigmoid,
        clamp: None,
    }
}

/// A file of `n` lines `<id % 2>\t<id>`, ids 0..n in order.
fn id_file(n: usize) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    let mut w = std::io::BufWriter::new(file.as_file_mut());
    for id in 0..n {
        writeln!(w, "{}\t{id}", id % 2).unwrap();
    }
    w.flush().unwrap();
    drop(w);
    file
}

/// The data error inside a training error.
fn data_error(e: TrainError) -> DataError {
    match e {
        TrainError::Data(e) => *e.downcast::<DataError>().expect("a DataError"),
        other => panic!("{other:?}"),
    }
}

fn text_file(text: &[u8]) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text).unwrap();
    file
}

/// The ids of one epoch in emission order, checking labels and batch sizes on the way.
fn epoch_ids<P: LineParser>(source: &mut Streamed<P>, epoch: usize, batch_size: usize) -> Vec<u64> {
    let mut ids = Vec::new();
    let mut short_batches = 0;
    source
        .for_each_batch(epoch, batch_size, &mut |batch, labels| {
            let Column::Categorical(col) = batch.column(0) else {
                panic!("id column")
            };
            assert_eq!(col.len(), labels.len());
            for (&id, &y) in col.iter().zip(labels) {
                assert_eq!(y, (id % 2) as f32, "label travelled with its row");
            }
            short_batches += (labels.len() < batch_size) as usize;
            ids.extend_from_slice(col);
            Ok(())
        })
        .unwrap();
    assert!(short_batches <= 1);
    ids
}

#[test]
fn shuffles_a_large_file_in_bounded_memory() {
    const N: usize = 200_000;
    const BUFFER: usize = 1_000;
    let file = id_file(N);
    let mut source =
        Streamed::new(file.path(), LabelledTsv::new(id_spec(N as u64)), BUFFER, 7).unwrap();
    let first = epoch_ids(&mut source, 1, 256);
    let stats = source.stats().clone();
    assert_eq!((stats.lines, stats.samples, stats.bad_lines), (N, N, 0));
    // (c) bounded: the store never held more than twice the buffer, whatever N is.
    assert!(
        (BUFFER..=2 * BUFFER).contains(&stats.peak_rows),
        "{}",
        stats.peak_rows
    );
    // (a) a permutation: every line exactly once.
    let mut seen = vec![false; N];
    for &id in &first {
        assert!(
            !std::mem::replace(&mut seen[id as usize], true),
            "{id} twice"
        );
    }
    assert_eq!(first.len(), N);
    // Buffered-shuffle semantics: the row emitted at position p was read among the first
    // p + BUFFER lines (nothing is read ahead of the buffer)...
    for (p, &id) in first.iter().enumerate() {
        assert!((id as usize) < p + BUFFER, "id {id} emitted at {p}");
    }
    // ...and the order is shuffled: few rows stay in place, and rows do move by about the
    // buffer (the mean delay of a buffered shuffle is about BUFFER).
    let in_place = first
        .iter()
        .enumerate()
        .filter(|&(p, &id)| p == id as usize)
        .count();
    assert!(in_place < N / 100, "{in_place} rows in place");
    let mean_shift = first
        .iter()
        .enumerate()
        .map(|(p, &id)| (p as f64 - id as f64).abs())
        .sum::<f64>()
        / N as f64;
    assert!(
        (BUFFER as f64 / 2.0..BUFFER as f64 * 3.0).contains(&mean_shift),
        "{mean_shift}"
    );
    // (b) another epoch, another order; the same seed and epoch, the same order.
    let second = epoch_ids(&mut source, 2, 256);
    assert_ne!(first, second);
    let mut again =
        Streamed::new(file.path(), LabelledTsv::new(id_spec(N as u64)), BUFFER, 7).unwrap();
    assert_eq!(
        epoch_ids(&mut again, 1, 1000),
        first,
        "batch size does not change the order"
    );
    let mut other_seed =
        Streamed::new(file.path(), LabelledTsv::new(id_spec(N as u64)), BUFFER, 8).unwrap();
    assert_ne!(epoch_ids(&mut other_seed, 1, 256), first);
}

#[test]
fn buffer_zero_keeps_file_order_and_a_large_buffer_shuffles_all() {
    let file = id_file(100);
    let mut in_order = Streamed::new(file.path(), LabelledTsv::new(id_spec(100)), 0, 1).unwrap();
    assert_eq!(epoch_ids(&mut in_order, 1, 7), (0..100).collect::<Vec<_>>());
    assert_eq!(in_order.stats().peak_rows, 0);
    let mut all = Streamed::new(file.path(), LabelledTsv::new(id_spec(100)), 1000, 1).unwrap();
    let ids = epoch_ids(&mut all, 1, 7);
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..100).collect::<Vec<_>>());
    assert_ne!(ids, sorted);
    assert_eq!(all.stats().peak_rows, 100);
}

#[test]
fn multi_hot_rows_survive_compaction() {
    // Every field derived from the line's number, so a row mixed up by the shuffle store
    // (variable-length multi-hot rows moved between buffers) is caught.
    let spec = crate::fixtures::mixed_small();
    let mut text = String::new();
    for n in 0..500u64 {
        let tags = match n % 3 {
            0 => String::new(),
            1 => format!("{}", n % 40),
            _ => format!("{},{}", n % 40, (n + 1) % 40),
        };
        text += &format!("{}\t{}\t{n}\t{}\t{tags}\n", n % 2, n % 500, n % 18);
    }
    let file = text_file(text.as_bytes());
    let mut source = Streamed::new(file.path(), LabelledTsv::new(spec), 10, 3).unwrap();
    let mut seen = vec![false; 500];
    source
        .for_each_batch(1, 32, &mut |batch, labels| {
            let (Column::Numeric(age), Column::MultiHot { ids, offsets, .. }) =
                (batch.column(1), batch.column(3))
            else {
                panic!("kinds")
            };
            for r in 0..batch.len() {
                let n = age[r] as u64;
                seen[n as usize] = true;
                assert_eq!(labels[r], (n % 2) as f32);
                let Column::Categorical(user) = batch.column(0) else {
                    panic!()
                };
                assert_eq!(user[r], n % 500);
                let want: Vec<u64> = match n % 3 {
                    0 => vec![],
                    1 => vec![n % 40],
                    _ => vec![n % 40, (n + 1) % 40],
                };
                assert_eq!(&ids[offsets[r]..offsets[r + 1]], want, "line {n}");
            }
            Ok(())
        })
        .unwrap();
    assert!(seen.iter().all(|&s| s));
    assert!(source.stats().peak_rows <= 20);
}

#[test]
fn bad_lines_are_errors_naming_the_line_or_are_skipped() {
    let mut text = b"0\t0\n\n1\t1\n1\t99\n0\t2\r\n".to_vec();
    text.extend_from_slice(b"1\t\xff\n");
    text.extend_from_slice(&[b'7'; 300]);
    text.extend_from_slice(b"\n1\t3");
    let file = text_file(&text);
    let name = file.path().display().to_string();
    let parser = || LabelledTsv::new(id_spec(10));
    let mut strict = Streamed::new(file.path(), parser(), 2, 1).unwrap();
    let e = strict.for_each_batch(1, 4, &mut |_, _| Ok(())).unwrap_err();
    match data_error(e) {
        DataError::Parse {
            file,
            line,
            column,
            field,
            ..
        } => {
            assert_eq!(
                (file, line, column, field.as_str()),
                (name.clone(), 4, 2, "id")
            );
        }
        other => panic!("{other:?}"),
    }
    let mut lenient = Streamed::new(file.path(), parser(), 2, 1)
        .unwrap()
        .skip_bad_lines(true)
        .max_line_bytes(100);
    let mut ids = epoch_ids(&mut lenient, 1, 4);
    ids.sort_unstable();
    assert_eq!(
        ids,
        [0, 1, 2, 3],
        "the last line has no newline and is read"
    );
    let stats = lenient.stats();
    // Line 4 (id out of range), 6 (not UTF-8), 7 (too long); line 2 is blank, not bad.
    assert_eq!((stats.lines, stats.samples, stats.bad_lines), (8, 4, 3));
    let first = stats.first_bad.as_deref().unwrap();
    assert!(
        first.starts_with(&format!("{name}, line 4, column 2 (id)")),
        "{first}"
    );
    // Each kind of bad line on its own, strictly.
    for (text, want_line) in [(&b"1\t1\n1\t\xff\n"[..], 2), (&[b'1'; 200][..], 1)] {
        let file = text_file(text);
        let mut s = Streamed::new(file.path(), parser(), 2, 1)
            .unwrap()
            .max_line_bytes(100);
        match data_error(s.for_each_batch(1, 4, &mut |_, _| Ok(())).unwrap_err()) {
            DataError::Parse { line, .. } | DataError::LineTooLong { line, .. } => {
                assert_eq!(line, want_line)
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn labelled_tsv_names_columns() {
    let p = LabelledTsv::new(crate::fixtures::mixed_small());
    let mut batch = p.new_batch();
    let mut labels = Vec::new();
    p.parse("0.5\t3\t1.5\t1,2\t", 1, &mut batch, &mut labels)
        .unwrap();
    assert_eq!((batch.len(), labels.as_slice()), (1, &[0.5][..]));
    let cases = [
        ("x\t3\t1.5\t1\t", 1, "label"),
        ("inf\t3\t1.5\t1\t", 1, "label"),
        ("1", 1, "label"),
        ("1\t3\tnan\t1\t", 3, "age"),
        ("1\t3\t1\t1\t99", 5, "tags"),
        ("1\t3\t1", 2, "(line)"),
    ];
    for (line, column, field) in cases {
        match p.parse(line, 5, &mut batch, &mut labels) {
            Err(DataError::Parse {
                line: 5,
                column: c,
                field: f,
                ..
            }) => {
                assert_eq!((c, f.as_str()), (column, field), "{line:?}")
            }
            other => panic!("{line:?}: {other:?}"),
        }
    }
    assert_eq!((batch.len(), labels.len()), (1, 1));
}

#[test]
fn sink_errors_stop_the_epoch_and_broken_parsers_are_caught() {
    let file = id_file(50);
    let mut source = Streamed::new(file.path(), LabelledTsv::new(id_spec(50)), 5, 1).unwrap();
    let mut calls = 0;
    let e = source
        .for_each_batch(1, 10, &mut |_, _| {
            calls += 1;
            Err(TrainError::Data("stop".into()))
        })
        .unwrap_err();
    assert!(matches!(e, TrainError::Data(ref m) if m.to_string() == "stop"));
    assert_eq!(calls, 1);
    assert!(matches!(
        source.for_each_batch(1, 0, &mut |_, _| Ok(())),
        Err(TrainError::Config(_))
    ));

    /// Appends two rows a line.
    struct Twice(LabelledTsv);
    impl LineParser for Twice {
        fn new_batch(&self) -> BatchBuf {
            self.0.new_batch()
        }
        fn parse(
            &self,
            l: &str,
            n: usize,
            b: &mut BatchBuf,
            y: &mut Vec<f32>,
        ) -> Result<(), DataError> {
            self.0.parse(l, n, b, y)?;
            self.0.parse(l, n, b, y)
        }
    }
    let mut broken = Streamed::new(file.path(), Twice(LabelledTsv::new(id_spec(50))), 5, 1)
        .unwrap()
        .skip_bad_lines(true);
    match data_error(
        broken
            .for_each_batch(1, 10, &mut |_, _| Ok(()))
            .unwrap_err(),
    ) {
        DataError::Parser {
            line: 1,
            rows: 2,
            labels: 2,
            ..
        } => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        Streamed::new("/nonexistent/train.txt", LabelledTsv::new(id_spec(5)), 5, 1),
        Err(DataError::Io { .. })
    ));
}

proptest::proptest! {
    #[test]
    fn labelled_tsv_never_panics(line in "[0-9.\t,a-z\r-]{0,40}") {
        let p = LabelledTsv::new(crate::fixtures::mixed_small());
        let mut batch = p.new_batch();
        let mut labels = Vec::new();
        let ok = p.parse(&line, 1, &mut batch, &mut labels).is_ok();
        proptest::prop_assert_eq!((batch.len(), labels.len()), (ok as usize, ok as usize));
    }
}

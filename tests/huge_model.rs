//! A model whose embedding table is 64 GiB (a sparse file: only the rows used are written)
//! opens in under 100 ms, grows resident memory by under 64 MiB, and scores rows at both ends
//! of the table correctly.

use deepfm::format::SectionId;
use deepfm::random::Rng;
use deepfm::reference::{max_relative_error, score_reference};
use deepfm::{
    Batch, Column, Field, FieldKind, Model, ModelSpec, ModelWriter, Output, Scratch, score,
};
use std::time::Instant;

const D: usize = 64;
/// 2^28 rows × 64 dims × 4 bytes = 64 GiB.
const BIG_VOCAB: u64 = 1 << 28;
const SMALL_VOCAB: u64 = 10;
/// Rows written at each end of the big field.
const EDGE: u64 = 4;

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn write_edges(w: &mut ModelWriter, id: SectionId, width: usize, rng: &mut Rng) {
    let mut rows = |w: &mut ModelWriter, n: u64| {
        let data: Vec<f32> = (0..n as usize * width)
            .map(|_| rng.normal() * 0.1)
            .collect();
        w.write(id, &data).unwrap();
    };
    rows(w, EDGE);
    w.skip(id, (BIG_VOCAB - 2 * EDGE) * width as u64).unwrap();
    rows(w, EDGE + SMALL_VOCAB);
}

#[test]
fn sixty_four_gib_table_opens_fast_and_scores_both_ends() {
    if !cfg!(target_os = "linux") {
        eprintln!("skipped: resident memory is read from /proc (Linux only)");
        return;
    }
    let spec = ModelSpec {
        fields: vec![
            Field {
                name: "big".into(),
                kind: FieldKind::Categorical { vocab: BIG_VOCAB },
            },
            Field {
                name: "small".into(),
                kind: FieldKind::Categorical { vocab: SMALL_VOCAB },
            },
        ],
        embedding_dim: D,
        hidden: vec![32, 16],
        output: Output::Sigmoid,
        clamp: None,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.dfm");
    let mut rng = Rng::new(3);
    let mut w = ModelWriter::create(&path, &spec).unwrap();
    write_edges(&mut w, SectionId::Embedding, D, &mut rng);
    write_edges(&mut w, SectionId::Linear, 1, &mut rng);
    for id in [
        SectionId::Bias,
        SectionId::LayerWeight(0),
        SectionId::LayerBias(0),
        SectionId::LayerWeight(1),
        SectionId::LayerBias(1),
        SectionId::OutWeight,
        SectionId::OutBias,
    ] {
        let data: Vec<f32> = (0..w.section_elements(id))
            .map(|_| rng.normal() * 0.2)
            .collect();
        w.write(id, &data).unwrap();
    }
    w.finish().unwrap();
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(len >= 64 << 30, "file is only {len} bytes");

    let rss_before = resident_bytes();
    let start = Instant::now();
    let model = Model::open(&path).unwrap();
    let opened = start.elapsed();
    let grown = resident_bytes().saturating_sub(rss_before);
    eprintln!(
        "opened a {:.1} GiB model in {:.2} ms; resident memory grew {:.1} MiB",
        len as f64 / (1u64 << 30) as f64,
        opened.as_secs_f64() * 1e3,
        grown as f64 / (1 << 20) as f64
    );
    assert!(opened.as_millis() < 100, "open took {opened:?}");
    assert!(grown < 64 << 20, "resident memory grew {grown} bytes");

    let big = [
        0u64,
        1,
        EDGE - 1,
        BIG_VOCAB - EDGE,
        BIG_VOCAB - 2,
        BIG_VOCAB - 1,
        BIG_VOCAB / 2,
    ];
    let small = [0u64, 9, 3, 5, 1, 9, 2];
    let columns = [Column::Categorical(&big), Column::Categorical(&small)];
    let batch = Batch::new(&columns);
    let mut out = vec![0.0f32; big.len()];
    score(&model, &batch, &mut Scratch::new(&model), &mut out).unwrap();
    let want = score_reference(&model, &batch);
    assert!(
        max_relative_error(&out, &want) <= 1e-5,
        "{out:?} vs {want:?}"
    );
    // The rows at both ends were written with data, the middle row is a hole (zeros): the
    // scores must differ accordingly, proving the right rows were read.
    assert_ne!(out[0], out[5]);
    let grown = resident_bytes().saturating_sub(rss_before);
    assert!(
        grown < 64 << 20,
        "resident memory grew {grown} bytes after scoring"
    );
}

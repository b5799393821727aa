//! Writes a model whose embedding table is larger than this machine's memory: a categorical
//! field of 2^28 ids at D = 64 (64 GiB) beside a small one, as a sparse file. Only a few rows at
//! each end of the big field hold data; the rest is a hole that reads as zeros and takes no
//! disk. For the serving load test (`tools/load/run.py --huge`); `tests/huge_model.rs` builds
//! the same shape.
//!
//! ```sh
//! cargo run --release --example sparse_model -- /tmp/huge.dfm
//! ```

use deepfm::format::SectionId;
use deepfm::random::Rng;
use deepfm::{Field, FieldKind, ModelSpec, ModelWriter, Output};

const D: usize = 64;
/// 2^28 rows × 64 dims × 4 bytes = 64 GiB.
const BIG_VOCAB: u64 = 1 << 28;
const SMALL_VOCAB: u64 = 10;
/// Rows written at each end of the big field.
const EDGE: u64 = 4;

fn write_edges(
    w: &mut ModelWriter,
    id: SectionId,
    width: usize,
    rng: &mut Rng,
) -> Result<(), deepfm::FormatError> {
    let mut rows = |w: &mut ModelWriter, n: u64| {
        let data: Vec<f32> = (0..n as usize * width)
            .map(|_| rng.normal() * 0.1)
            .collect();
        w.write(id, &data)
    };
    rows(w, EDGE)?;
    w.skip(id, (BIG_VOCAB - 2 * EDGE) * width as u64)?;
    rows(w, EDGE + SMALL_VOCAB)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: sparse_model OUT.dfm")?;
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
    let mut rng = Rng::new(3);
    let mut w = ModelWriter::create(&path, &spec)?;
    write_edges(&mut w, SectionId::Embedding, D, &mut rng)?;
    write_edges(&mut w, SectionId::Linear, 1, &mut rng)?;
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
        w.write(id, &data)?;
    }
    w.finish()?;
    let len = std::fs::metadata(&path)?.len();
    println!(
        "wrote {path}: {:.1} GiB (sparse)",
        len as f64 / (1u64 << 30) as f64
    );
    Ok(())
}

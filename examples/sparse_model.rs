//! Writes a model whose embedding table is larger than this machine's memory: a categorical
//! field of 2^28 ids at D = 64 (64 GiB) beside a small one, as a sparse file. Only a few rows at
//! each end of the big field hold data; the rest is a hole that reads as zeros and takes no
//! disk. For the serving load test (`tools/load/run.py --huge`); `tests/huge_model.rs` builds
//! the same shape.
//!
//! ```sh
//! cargo run --release --example sparse_model -- /tmp/huge.dfm
//! ```

use deepfm::fixtures::{SparseShape, write_sparse_model};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: sparse_model OUT.dfm")?;
    let path = write_sparse_model(path.as_ref(), SparseShape::HUGE, 3)?;
    let len = std::fs::metadata(&path)?.len();
    println!(
        "wrote {}: {:.1} GiB (sparse)",
        path.display(),
        len as f64 / (1u64 << 30) as f64
    );
    Ok(())
}

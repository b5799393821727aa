//! `deepfm inspect`: a model file's spec, sections and checksum state.

use anyhow::Result;
use deepfm::Isa;
use deepfm::format::ModelFile;
use std::path::Path;
use std::time::Instant;

/// Prints the file at `path`; with `verify`, checksums every section (reads the whole file).
pub fn inspect(path: &Path, verify: bool) -> Result<()> {
    let file = ModelFile::open(path)?;
    let spec = file.spec();
    println!("file: {} ({} bytes)", path.display(), file.file_len());
    println!("spec: {}", spec.to_json());
    println!(
        "embedding rows: {}, D: {}, MLP: {} MACs per sample",
        spec.total_rows()?,
        spec.embedding_dim,
        spec.mlp_macs_per_sample()
    );
    println!(
        "{:<16} {:>20} {:>14} {:>14} {:>8}  checksum",
        "section", "shape", "offset", "bytes", "align"
    );
    for s in file.sections() {
        let shape = format!("{:?}", &s.shape.dims[..s.shape.rank as usize]);
        let align = 1u64 << s.offset.trailing_zeros().min(20);
        let state = if !s.shape.id.is_row_indexed() {
            "checked at open"
        } else if verify {
            "see below"
        } else {
            "not checked (use --verify)"
        };
        println!(
            "{:<16} {:>20} {:>14} {:>14} {:>8}  {:#018x} {state}",
            s.shape.id.name(),
            shape,
            s.offset,
            s.length,
            align,
            s.checksum
        );
    }
    if let Some(m) = file.metadata_info() {
        println!(
            "{:<16} {:>20} {:>14} {:>14} {:>8}  {:#018x} {}",
            "metadata",
            format!("[{}] u8", m.length),
            m.offset,
            m.length,
            1u64 << m.offset.trailing_zeros().min(20),
            m.checksum,
            if verify {
                "see below"
            } else {
                "not checked (use --verify)"
            }
        );
    }
    if verify {
        let start = Instant::now();
        file.verify()?;
        println!(
            "verify: every section matches its checksum ({:.2} s)",
            start.elapsed().as_secs_f64()
        );
    }
    println!("kernels on this CPU: {}", Isa::detect()?.name());
    Ok(())
}

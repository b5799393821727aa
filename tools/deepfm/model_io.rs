//! The commands that write model files from elsewhere, copy them out or put them in place:
//! `random`, `import`, `export`, `install`.

use crate::args::Shape;
use anyhow::{Context, Result};
use deepfm::fixtures;
use deepfm::format::ModelFile;
use std::path::Path;

/// `deepfm random`: a model of `shape` with random weights drawn from `seed`, written to `out`.
pub fn random(shape: Shape, out: &Path, seed: u64) -> Result<()> {
    let path = fixtures::write_random_model(out, &shape.spec(), seed)?;
    println!("wrote {}", path.display());
    Ok(())
}

/// `deepfm import`: safetensors `weights` and the JSON spec at `spec` into the model file `out`.
pub fn import(weights: &Path, spec: &Path, out: &Path) -> Result<()> {
    let json =
        std::fs::read_to_string(spec).with_context(|| format!("reading {}", spec.display()))?;
    let path = deepfm::interop::import(weights, &json, out)?;
    println!("wrote {}", path.display());
    Ok(())
}

/// `deepfm export`: the model file `model` as safetensors `weights` and a JSON `spec`.
pub fn export(model: &Path, weights: &Path, spec: &Path) -> Result<()> {
    let file = ModelFile::open(model)?;
    deepfm::interop::export(&file, weights, spec)?;
    println!("wrote {} and {}", weights.display(), spec.display());
    Ok(())
}

/// `deepfm install NEW LIVE`: validates NEW, puts it at LIVE crash-safely (see
/// [`deepfm::format::install`]) and says what it did.
pub fn install(new: &Path, live: &Path) -> Result<()> {
    let done = deepfm::format::install(new, live)
        .with_context(|| format!("installing {} as {}", new.display(), live.display()))?;
    let spec = &done.spec;
    let holes = if done.written < done.len {
        format!(", {} written, the rest left as holes", done.written)
    } else {
        String::new()
    };
    println!(
        "installed {} as {} ({} bytes{holes}; {} fields, {} rows, D={}, hidden {:?}){}",
        new.display(),
        done.path.display(),
        done.len,
        spec.fields.len(),
        spec.total_rows()?,
        spec.embedding_dim,
        spec.hidden,
        if done.replaced {
            "; processes serving it keep the old model until they reload"
        } else {
            ""
        }
    );
    Ok(())
}

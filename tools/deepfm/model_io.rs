//! The commands that write model files from elsewhere or copy them out: `random`, `import`,
//! `export`.

use crate::args::Shape;
use anyhow::{Context, Result};
use deepfm::format::ModelFile;
use deepfm::random;
use std::path::Path;

/// `deepfm random`: a model of `shape` with random weights drawn from `seed`, written to `out`.
pub fn random(shape: Shape, out: &Path, seed: u64) -> Result<()> {
    let path = random::write_random_model(out, &shape.spec(), seed)?;
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

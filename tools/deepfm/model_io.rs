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

/// `deepfm import --from`: a model trained by another framework, from its state dict
/// `weights` and its `description`; says what it wrote.
pub fn import_from(
    framework: deepfm::interop::Framework,
    weights: &Path,
    description: &Path,
    out: &Path,
) -> Result<()> {
    let json = std::fs::read_to_string(description)
        .with_context(|| format!("reading {}", description.display()))?;
    let path = deepfm::interop::import_from(framework, weights, &json, out).with_context(|| {
        format!(
            "importing the {} model {}",
            framework.name(),
            weights.display()
        )
    })?;
    let spec = ModelFile::open(&path)?.spec().clone();
    let mut kinds: Vec<(&str, usize)> = Vec::new();
    for f in &spec.fields {
        match kinds.iter_mut().find(|(k, _)| *k == f.kind.name()) {
            Some((_, n)) => *n += 1,
            None => kinds.push((f.kind.name(), 1)),
        }
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let shared: Vec<String> = (spec.fields.iter())
        .filter_map(|f| Some(format!("{} reads {}", f.name, f.table.as_ref()?)))
        .collect();
    println!(
        "wrote {}: {} fields ({}{}), D = {}, hidden {:?}, {:?} output",
        path.display(),
        spec.fields.len(),
        kinds.join(", "),
        if shared.is_empty() {
            String::new()
        } else {
            format!("; shared tables: {}", shared.join(", "))
        },
        spec.embedding_dim,
        spec.hidden,
        spec.output
    );
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

//! `deepfm quantize`: a copy of a model file whose hidden layers score in another precision,
//! written only when the score difference it makes, measured first on random samples, is
//! within a tolerance.

use anyhow::{Context, Result, bail};
use deepfm::format::ModelFile;
use deepfm::{MlpPrecision, Model, OpenOptions, Output, ScratchPool, fixtures, score_parallel};
use std::path::Path;

/// What `deepfm quantize` was asked for.
pub struct Quantize<'a> {
    pub input: &'a Path,
    pub out: &'a Path,
    pub mlp: MlpPrecision,
    pub samples: usize,
    pub tolerance: f64,
    pub force: bool,
}

/// Opens `input` as it is and as `mlp` would score it, compares the two on `samples` random
/// samples (ids drawn uniformly from each field's vocabulary), and writes `out` unless the mean
/// difference exceeds `tolerance` of the score's scale (1 for probabilities, the clamp's width
/// for clamped ratings) and `force` is off.
pub fn quantize(q: Quantize<'_>) -> Result<()> {
    let file =
        ModelFile::open(q.input).with_context(|| format!("opening {}", q.input.display()))?;
    let before = file.spec().mlp;
    let open = |mlp| {
        let options = OpenOptions {
            mlp: Some(mlp),
            ..OpenOptions::default()
        };
        Model::open_with(q.input, &options).with_context(|| format!("opening as {}", mlp.name()))
    };
    let (original, converted) = (open(before)?, open(q.mlp)?);
    let kernels = match converted.int8_path() {
        Some(path) => format!(" ({} kernels on this CPU)", path.name()),
        None => String::new(),
    };
    if q.samples > 0 {
        let (max, mean) = difference(&original, &converted, q.samples)?;
        let scale = match (original.spec().output, original.spec().clamp) {
            (Output::Linear, Some([lo, hi])) => f64::from(hi - lo),
            _ => 1.0,
        };
        println!(
            "MLP {} → {}{kernels}: score difference on {} random samples: max {max:.3e}, mean \
             {mean:.3e} (measure on your own data with `deepfm predict` or `deepfm eval` on \
             both files)",
            before.name(),
            q.mlp.name(),
            q.samples
        );
        if mean > q.tolerance * scale && !q.force {
            bail!(
                "not written: the mean score difference {mean:.3e} exceeds --tolerance {} × the \
                 score scale {scale}. Models whose MLP input mixes very different magnitudes \
                 (raw, unnormalized dense features beside embeddings) lose the small values to \
                 per-row 8-bit activations; keep this model in f32, or pass --force",
                q.tolerance
            );
        }
    }
    let start = std::time::Instant::now();
    deepfm::format::writer::copy_with_mlp(&file, q.out, q.mlp)
        .with_context(|| format!("writing {}", q.out.display()))?;
    println!(
        "wrote {}: MLP {}, {} bytes (was {}), in {:.2} s",
        q.out.display(),
        q.mlp.name(),
        ModelFile::open(q.out)?.file_len(),
        file.file_len(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Max and mean |score difference| between two models on `samples` random samples.
fn difference(a: &Model, b: &Model, samples: usize) -> Result<(f64, f64)> {
    let batch = fixtures::random_batch(a.spec(), samples, 0x5eed);
    let score = |model: &Model| -> Result<Vec<f32>> {
        let mut scores = vec![0.0; samples];
        score_parallel(model, &batch, &ScratchPool::new(model), &mut scores)
            .context("scoring the random samples")?;
        Ok(scores)
    };
    let diffs: Vec<f64> = score(a)?
        .iter()
        .zip(&score(b)?)
        .map(|(x, y)| f64::from((x - y).abs()))
        .collect();
    let max = diffs.iter().copied().fold(0.0, f64::max);
    Ok((max, diffs.iter().sum::<f64>() / samples as f64))
}

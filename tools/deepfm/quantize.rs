//! `deepfm quantize`: a copy of a model file whose hidden layers score, or whose embedding
//! rows are stored, in another precision, kept only when the score difference it makes,
//! measured on random samples, is within a tolerance.

use anyhow::{Context, Result, bail};
use deepfm::format::ModelFile;
use deepfm::{
    MlpPrecision, Model, OpenOptions, Output, ScratchPool, TablePrecision, fixtures, score_parallel,
};
use std::path::Path;

/// What `deepfm quantize` was asked for (`None`: as the input has it).
pub struct Quantize<'a> {
    pub input: &'a Path,
    pub out: &'a Path,
    pub mlp: Option<MlpPrecision>,
    pub table: Option<TablePrecision>,
    pub samples: usize,
    pub tolerance: f64,
    pub force: bool,
}

/// Writes the converted model beside `out` (streamed: a table larger than RAM converts),
/// compares it with `input` on `samples` random samples (ids drawn uniformly from each field's
/// vocabulary), and renames it over `out` unless the mean difference exceeds `tolerance` of
/// the score's scale (1 for probabilities, the clamp's width for clamped ratings) and `force`
/// is off; otherwise removes it.
pub fn quantize(q: Quantize<'_>) -> Result<()> {
    let file =
        ModelFile::open(q.input).with_context(|| format!("opening {}", q.input.display()))?;
    let (before_mlp, before_table) = (file.spec().mlp, file.spec().table);
    let (mlp, table) = (q.mlp.unwrap_or(before_mlp), q.table.unwrap_or(before_table));
    if q.mlp.is_none() && q.table.is_none() {
        bail!("nothing to change: pass --mlp, --table or both");
    }
    let mut staged = q.out.as_os_str().to_owned();
    staged.push(".quantizing");
    let staged = std::path::PathBuf::from(staged);
    let start = std::time::Instant::now();
    deepfm::format::writer::copy_with_precision(&file, &staged, mlp, table)
        .with_context(|| format!("writing {}", staged.display()))?;
    let written = start.elapsed().as_secs_f64();
    let keep = measure(&q, &staged).inspect_err(|_| {
        let _ = std::fs::remove_file(&staged);
    })?;
    let summary = |verb: &str| {
        let dim = file.spec().embedding_dim;
        format!(
            "{verb} {}: MLP {} → {}, table {} → {} ({} → {} bytes a row), {} → {} bytes, in \
             {written:.2} s",
            q.out.display(),
            before_mlp.name(),
            mlp.name(),
            before_table.name(),
            table.name(),
            before_table.row_bytes(dim),
            table.row_bytes(dim),
            file.file_len(),
            std::fs::metadata(&staged).map(|m| m.len()).unwrap_or(0),
        )
    };
    if let Err(refused) = keep {
        let message = summary("not written");
        std::fs::remove_file(&staged).ok();
        bail!("{message}: {refused}");
    }
    println!("{}", summary("wrote"));
    std::fs::rename(&staged, q.out)
        .with_context(|| format!("renaming {} to {}", staged.display(), q.out.display()))?;
    // The rename is durable once the directory is synced, as the writer's own renames are.
    let dir = match q.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    Ok(())
}

/// Compares `staged` with the input: `Ok(Err(reason))` when it must not be kept.
fn measure(q: &Quantize<'_>, staged: &Path) -> Result<std::result::Result<(), String>> {
    if q.samples == 0 {
        return Ok(Ok(()));
    }
    let original =
        Model::open(q.input).with_context(|| format!("opening {}", q.input.display()))?;
    let converted =
        Model::open_with(staged, &OpenOptions::default()).context("opening the converted copy")?;
    let kernels = match converted.int8_path() {
        Some(path) => format!(" ({} kernels on this CPU)", path.name()),
        None => String::new(),
    };
    let (max, mean) = difference(&original, &converted, q.samples)?;
    let scale = match (original.spec().output, original.spec().clamp) {
        (Output::Linear, Some([lo, hi])) => f64::from(hi - lo),
        _ => 1.0,
    };
    println!(
        "score difference on {} random samples{kernels}: max {max:.3e}, mean {mean:.3e} \
         (measure on your own data with `deepfm predict` or `deepfm eval` on both files)",
        q.samples
    );
    // A NaN difference (a score that is not a number) is refused too.
    if (mean.is_nan() || mean > q.tolerance * scale) && !q.force {
        return Ok(Err(format!(
            "the mean score difference {mean:.3e} exceeds --tolerance {} × the score scale \
             {scale}. Models whose MLP input mixes very different magnitudes lose the small \
             values to per-row 8-bit activations, and tables of very large and very small \
             values in one row lose the small ones to int8 and int4 rows; keep this model in f32, or \
             pass --force",
            q.tolerance
        )));
    }
    Ok(Ok(()))
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

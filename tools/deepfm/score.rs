//! `deepfm score`: score a TSV file (or stdin), one score a line.

use crate::resources::thread_pool;
use anyhow::{Context, Result};
use deepfm::data::tsv::push_line;
use deepfm::{BatchBuf, Model, ScratchPool};
use std::io::{BufRead, BufWriter, Write};
use std::path::Path;

/// Scores every line of `input` (`-`: stdin) with the model at `model_path` and prints the
/// scores, in order, only once every line has parsed and scored.
pub fn score_tsv(model_path: &Path, input: &Path, threads: Option<usize>) -> Result<()> {
    let model = Model::open(model_path)?;
    let spec = model.spec().clone();
    let reader: Box<dyn BufRead> = if input == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        let f =
            std::fs::File::open(input).with_context(|| format!("opening {}", input.display()))?;
        Box::new(std::io::BufReader::new(f))
    };
    let pool = thread_pool(threads)?;
    let scratches = ScratchPool::with_threads(&model, pool.current_num_threads());
    let mut batch = BatchBuf::new(&spec);
    let mut row = Vec::with_capacity(spec.fields.len());
    let mut scores: Vec<f32> = Vec::new();
    let flush = |batch: &mut BatchBuf, scores: &mut Vec<f32>| -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let start = scores.len();
        scores.resize(start + batch.len(), 0.0);
        pool.install(|| deepfm::score_parallel(&model, &*batch, &scratches, &mut scores[start..]))?;
        batch.clear();
        Ok(())
    };
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading line {}", i + 1))?;
        push_line(&spec, &line, i + 1, &mut batch, &mut row)?;
        if batch.len() == 65_536 {
            flush(&mut batch, &mut scores)?;
        }
    }
    flush(&mut batch, &mut scores)?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    for s in scores {
        writeln!(out, "{s}")?;
    }
    out.flush()?;
    Ok(())
}

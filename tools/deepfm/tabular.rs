//! Click data from CSV/TSV with a schema (and Criteo): training, and prediction on raw lines
//! with the preprocessing saved beside the model.

use crate::args::TrainArgs;
use crate::resources::thread_pool;
use crate::train::train_with;
use anyhow::{Context, Result};
use deepfm::data::prep::Preprocessing;
use deepfm::data::schema::{Schema, SchemaEncoder};
use deepfm::data::stream::{LineParser, Streamed};
use deepfm::interop::TokenParser;
use deepfm::train::{TrainData, TrainError};
use deepfm::{Model, ScratchPool, score_parallel};
use std::io::{BufWriter, Write};
use std::path::Path;

/// Rows scored per call when predicting a file.
const PREDICT_BATCH: usize = 4096;

/// The metadata section of a click model trained from raw data: `{"preprocessing": ...}`.
#[derive(serde::Serialize, serde::Deserialize)]
struct ClickMetadata {
    preprocessing: Preprocessing,
}

/// `prep` as the model file's metadata.
pub fn metadata_json(prep: &Preprocessing) -> Result<String> {
    let meta = ClickMetadata {
        preprocessing: prep.clone(),
    };
    Ok(serde_json::to_string(&meta)?)
}

/// The preprocessing saved in the model file's metadata section.
fn load_preprocessing(model: &Model, path: &Path) -> Result<Preprocessing> {
    // Other metadata (a recommender's, an imported model's provenance) holds no preprocessing.
    let meta: Option<serde_json::Value> = model.file().metadata_json()?;
    let meta = meta.filter(|m| m.get("preprocessing").is_some());
    let meta = meta.with_context(|| {
        format!(
            "{} holds no preprocessing (train it with `deepfm train --data --schema` or `--format criteo`; \
             a model from `deepfm import` takes the framework's ids: `deepfm score`)",
            path.display()
        )
    })?;
    let meta: ClickMetadata = serde_json::from_value(meta)
        .with_context(|| format!("the preprocessing in {}", path.display()))?;
    Ok(meta.preprocessing)
}

/// `deepfm train --data FILE --schema S.json`.
pub fn train_schema(args: &TrainArgs, data: &Path, schema_path: &Path) -> Result<()> {
    let json = std::fs::read_to_string(schema_path)
        .with_context(|| format!("reading {}", schema_path.display()))?;
    let schema = Schema::from_json(&json)?;
    eprintln!("building vocabularies from {}", data.display());
    let encoder = if args.skip_bad_lines {
        SchemaEncoder::fit_skipping_bad_lines(data, schema)?.0
    } else {
        SchemaEncoder::fit(data, schema)?
    };
    let hidden = args.hidden.clone().unwrap_or_else(|| vec![400, 400, 400]);
    let spec = encoder.spec(args.dim.unwrap_or(16), &hidden);
    for f in &spec.fields {
        eprintln!("  {:<16} {:?}", f.name, f.kind);
    }
    let prep = Preprocessing::Schema(encoder.clone());
    train_with(
        args,
        spec,
        &|path| Ok(encoder.parser(path, true)?),
        Some(&prep),
    )
}

/// `deepfm predict --model M --data FILE`: one probability a line, in file order, streamed in
/// batches (memory does not grow with the file).
pub fn predict_data(model_path: &Path, data: &Path, threads: Option<usize>) -> Result<()> {
    let model = Model::open(model_path)?;
    let meta: Option<serde_json::Value> = model.file().metadata_json()?;
    if meta.is_some_and(|m| m.get("imported_from").is_some()) {
        return predict_imported(&model, data, threads);
    }
    let prep = load_preprocessing(&model, model_path)?;
    let fields = prep.fields();
    let spec_fields: Vec<_> = model
        .spec()
        .fields
        .iter()
        .map(|f| (&f.name, f.kind))
        .collect();
    let prep_fields: Vec<_> = fields.iter().map(|f| (&f.name, f.kind)).collect();
    anyhow::ensure!(
        spec_fields == prep_fields,
        "the preprocessing in {} does not fit its fields",
        model_path.display()
    );
    score_lines(&model, data, prep.parser(data, false)?, threads)
}

/// Scores every sample `parser` reads from `data`, in file order (buffer 0: no shuffle),
/// printing one score a line; streamed in batches, so memory does not grow with the file.
fn score_lines<P: LineParser + Sync>(
    model: &Model,
    data: &Path,
    parser: P,
    threads: Option<usize>,
) -> Result<()> {
    let pool = thread_pool(threads)?;
    let scratch = pool.install(|| ScratchPool::new(model));
    let mut source = Streamed::new(data, parser, 0, 0)?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut scores = vec![0.0f32; PREDICT_BATCH];
    let mut written = 0usize;
    source.for_each_batch(0, PREDICT_BATCH, &mut |batch, _labels| {
        let scores = &mut scores[..batch.len()];
        pool.install(|| score_parallel(model, batch, &scratch, scores))?;
        for s in scores.iter() {
            writeln!(out, "{s}").map_err(|e| TrainError::Data(format!("stdout: {e}").into()))?;
        }
        written += batch.len();
        Ok(())
    })?;
    out.flush()?;
    eprintln!("{written} predictions");
    Ok(())
}

/// `predict --data` for a model from `deepfm import`: a header naming the fields, raw tokens
/// mapped by the framework's vocabularies stored at import (ids and values as they are for the
/// fields without one).
fn predict_imported(model: &Model, data: &Path, threads: Option<usize>) -> Result<()> {
    let header = {
        let file =
            std::fs::File::open(data).with_context(|| format!("reading {}", data.display()))?;
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(file), &mut line)
            .with_context(|| format!("reading {}", data.display()))?;
        line
    };
    let parser = TokenParser::for_model(model.file(), header.trim_end_matches('\n'))
        .with_context(|| format!("{}: the header line", data.display()))?;
    score_lines(model, data, parser, threads)
}

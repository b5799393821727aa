//! `deepfm`: the command-line tool. Parses arguments, calls the library, prints results; errors
//! become messages and a non-zero exit.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use deepfm::data::tsv::push_line;
use deepfm::format::ModelFile;
use deepfm::reference::{max_relative_error, score_reference};
use deepfm::{BatchBuf, Isa, Model, ModelSpec, OpenOptions, Scratch, ScratchPool, random};
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

mod recommender;
mod tabular;
mod throughput;

#[derive(Parser)]
#[command(
    name = "deepfm",
    version,
    about = "Fast CPU DeepFM scoring from memory-mapped model files"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Shape {
    /// 13 numeric + 26 categorical fields, 1M rows, D=16, hidden 400-400-400.
    CriteoLike,
    /// user + item, D=32, hidden 256-128-64, ratings clamped to 1–5.
    MovielensLike,
    /// One field of each kind (categorical, numeric, two multi-hot), small.
    MixedSmall,
}

impl Shape {
    fn spec(self) -> ModelSpec {
        match self {
            Shape::CriteoLike => random::criteo_like(),
            Shape::MovielensLike => random::movielens_like(),
            Shape::MixedSmall => random::mixed_small(),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Build a demo model, score a million random samples, print throughput and the agreement
    /// with the f64 reference implementation.
    Demo {
        /// Samples to score.
        #[arg(long, default_value_t = 1_000_000)]
        samples: usize,
        /// Threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Write a model with random weights of a built-in shape.
    Random {
        #[arg(long, value_enum)]
        shape: Shape,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Convert safetensors weights + a JSON spec into a model file.
    Import {
        #[arg(long)]
        weights: PathBuf,
        #[arg(long)]
        spec: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Write a model file's tensors as safetensors and its spec as JSON.
    Export {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        weights: PathBuf,
        #[arg(long)]
        spec: PathBuf,
    },
    /// Print a model file's spec, sections and checksum state.
    Inspect {
        model: PathBuf,
        /// Also checksum the embedding table and first-order weights (reads the whole file).
        #[arg(long)]
        verify: bool,
    },
    /// Score samples from a TSV file (`-` for stdin): one line per sample, one column per field.
    /// Prints one score a line, only after every line has parsed and scored.
    Score {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        input: PathBuf,
        /// Threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Measure scoring throughput on random samples.
    Bench(BenchArgs),
    /// Train a model from a labelled file (streamed, shuffled through a buffer) and write the
    /// model file.
    Train(Box<TrainArgs>),
    /// Predict `user,item` pairs (one a line, format detected) with a model from
    /// `train --ratings`: one prediction a line, in order.
    ///
    /// With `--data`: raw samples for a click model from `train --data --schema` or `--format
    /// criteo` (a label column, if present, is ignored): one probability a line.
    Predict {
        #[arg(long)]
        model: PathBuf,
        #[arg(long, required_unless_present = "data", conflicts_with = "data")]
        pairs: Option<PathBuf>,
        #[arg(long)]
        data: Option<PathBuf>,
        /// Threads for `--data` (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Whether the first line of --pairs is a header (auto: detected; see `train --header`).
        #[arg(long, value_enum, default_value = "auto", conflicts_with = "data")]
        header: HeaderArg,
    },
    /// The top-k items for a user of a model from `train --ratings` (items the user rated in
    /// training are left out).
    Recommend {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        user: String,
        #[arg(long, default_value_t = 10)]
        top_k: usize,
        /// Print JSON (`[{"item": ..., "score": ...}, ...]`).
        #[arg(long)]
        json: bool,
    },
    /// Evaluate a model from `train --ratings` on held-out interactions: RMSE and MAE for a
    /// rating model, AUC and logloss for a click model.
    ///
    /// For an implicit model: each held-out (user, item) pair is ranked among `--negatives`
    /// items the user did not interact with in training (the NCF protocol): HR@k and NDCG@k.
    Eval {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        ratings: PathBuf,
        /// Whether the first line of --ratings is a header (auto: detected; see `train --header`).
        #[arg(long, value_enum, default_value = "auto")]
        header: HeaderArg,
        /// Implicit models: sampled negatives per held-out pair.
        #[arg(long, default_value_t = 100)]
        negatives: usize,
        /// Implicit models: the cut-off of HR@k and NDCG@k.
        #[arg(long, default_value_t = 10)]
        k: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Measure training throughput (samples/s) on random samples of a benchmark shape.
    BenchTrain {
        #[arg(long, value_enum, default_value = "criteo-like")]
        shape: Shape,
        #[arg(long, default_value_t = 256)]
        batch: usize,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Embedding optimizer.
        #[arg(long, value_enum, default_value = "lazy-adam")]
        optim: Optim,
        /// Batch norm after each hidden layer.
        #[arg(long)]
        bn: bool,
        #[arg(long, default_value_t = 0.0)]
        dropout: f32,
        /// End with a JSON line of the results.
        #[arg(long)]
        json: bool,
    },
}

/// Arguments of `deepfm train`.
#[derive(clap::Args)]
struct TrainArgs {
    /// Ratings or interactions, `user,item,rating[,timestamp]` (MovieLens `::`, tab, comma;
    /// header and string ids allowed): trains the recommender (`deepfm::api`) with the
    /// tutorial's defaults, writes MODEL with the id maps in its metadata section.
    #[arg(long, conflicts_with_all = ["data", "spec", "format"])]
    ratings: Option<PathBuf>,
    /// Ratings: user side features, keyed by user id (RecBole `.user`, MovieLens `users.dat`
    /// or `u.user`).
    #[arg(long, requires = "ratings")]
    users: Option<PathBuf>,
    /// Ratings: item side features, keyed by item id (RecBole `.item`, MovieLens `movies.dat`
    /// or `u.item`).
    #[arg(long, requires = "ratings")]
    items: Option<PathBuf>,
    /// Only these columns of --users (comma-separated names).
    #[arg(long, value_delimiter = ',', requires = "users")]
    user_columns: Option<Vec<String>>,
    /// Only these columns of --items (comma-separated names).
    #[arg(long, value_delimiter = ',', requires = "items")]
    item_columns: Option<Vec<String>>,
    /// Training samples: `tsv` = label then one column per field (the `score` format), or
    /// Criteo (`label, I1..I13, C1..C26`, tab- or comma-separated).
    #[arg(long, required_unless_present = "ratings")]
    data: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "tsv")]
    format: DataFormat,
    /// A JSON schema for `--data` as CSV/TSV with a header: the label column and each field's
    /// kind (`categorical`, `numeric`, `multi_hot`), with optional `hash_buckets`, `min_count`,
    /// `sep`, `pooling`, `transform` (see `deepfm::data::schema`).
    #[arg(long, conflicts_with_all = ["spec", "format"])]
    schema: Option<PathBuf>,
    /// Skip lines that do not parse, count them and print the count, instead of stopping at
    /// the first (which is named with file, line and column either way).
    #[arg(long)]
    skip_bad_lines: bool,
    /// Ratings: whether the first line of --ratings (and --valid) is a header. auto: a header
    /// when it has typed RecBole names, a rating that is not a number, text above a number in
    /// line 2, or common id column names (user_id, itemId, movie …); the names are kept in the
    /// model, so `predict` and `eval` recognise them. A skipped header is printed.
    #[arg(long, value_enum, default_value = "auto")]
    header: HeaderArg,
    /// Model spec JSON (required for `tsv`; for `criteo` the spec is built from the data).
    #[arg(long)]
    spec: Option<PathBuf>,
    /// Validation data (same format): early stopping and the reported loss.
    #[arg(long)]
    valid: Option<PathBuf>,
    /// Where to write the model file.
    #[arg(long)]
    out: PathBuf,
    /// Passes over the data [ratings: 20; data: 5].
    #[arg(long)]
    epochs: Option<usize>,
    /// Samples per step [256].
    #[arg(long, alias = "batch-size")]
    batch: Option<usize>,
    /// Adam learning rate [0.001].
    #[arg(long, alias = "learning-rate")]
    lr: Option<f32>,
    /// Embedding optimizer [lazy-adam; with --ratings only lazy-adam].
    #[arg(long, value_enum)]
    optim: Option<Optim>,
    /// Batch norm after each hidden layer [ratings: true; data: false].
    #[arg(long, alias = "use-bn", num_args = 0..=1, default_missing_value = "true")]
    bn: Option<bool>,
    /// Dropout after each hidden layer [ratings: 0.3; data: 0].
    #[arg(long)]
    dropout: Option<f32>,
    #[arg(long, default_value_t = 0.0)]
    l2_embedding: f32,
    #[arg(long, default_value_t = 0.0)]
    l2_dense: f32,
    /// Decoupled (AdamW) weight decay of the embeddings and first-order weights: the rows
    /// each step updates are multiplied by 1 − lr·λ (0: off; lr·λ must stay below 1).
    #[arg(long, default_value_t = 0.0)]
    weight_decay_embedding: f32,
    /// Decoupled (AdamW) weight decay of the layer weights and output unit (not biases or
    /// batch norm): multiplied by 1 − lr·λ each step (0: off; lr·λ must stay below 1).
    #[arg(long, default_value_t = 0.0)]
    weight_decay_dense: f32,
    /// Stop after this many epochs without a better validation loss (restores the best).
    #[arg(long)]
    patience: Option<usize>,
    /// Ratings: share held out for validation when --patience is set.
    #[arg(long, default_value_t = 0.1)]
    valid_fraction: f32,
    /// Ratings: what to learn (auto: rating when the ratings take more than two values).
    #[arg(long, value_enum, default_value = "auto")]
    task: TaskArg,
    /// Samples held by the shuffle buffer (memory is bounded by it, not by the file; --data
    /// only: --ratings files are read into memory).
    #[arg(long, default_value_t = 100_000)]
    buffer: usize,
    /// Embedding dimension [ratings: 32; criteo: 16].
    #[arg(long, alias = "embedding-dim")]
    dim: Option<usize>,
    /// Hidden layers [ratings: 256,128,64; criteo: 400,400,400].
    #[arg(long, alias = "deep-layers", value_delimiter = ',')]
    hidden: Option<Vec<usize>>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Threads (results do not depend on it).
    #[arg(long)]
    threads: Option<usize>,
    /// Write a training checkpoint to this file after every epoch (crash-safely).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Go on from the --checkpoint file if it exists (same data and settings: the same model
    /// as an uninterrupted run; --epochs may be raised to train longer).
    #[arg(long, requires = "checkpoint")]
    resume: bool,
    /// Print a JSON summary as the last line.
    #[arg(long)]
    json: bool,
}

/// `--header`: whether a ratings or pairs file starts with a header line.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum HeaderArg {
    /// Detected (see `deepfm::data::ratings::detect_header`).
    Auto,
    /// The first line is a header.
    Yes,
    /// The first line is data.
    No,
}

impl HeaderArg {
    fn get(self) -> deepfm::data::ratings::Header {
        use deepfm::data::ratings::Header;
        match self {
            HeaderArg::Auto => Header::Auto,
            HeaderArg::Yes => Header::Yes,
            HeaderArg::No => Header::No,
        }
    }
}

/// The recommender's task, as the CLI names it.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum TaskArg {
    Auto,
    Rating,
    Implicit,
    Click,
}

/// Training file formats.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum DataFormat {
    Tsv,
    Criteo,
}

/// Embedding optimizers, as the CLI names them.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Optim {
    Adam,
    LazyAdam,
    Adagrad,
}

impl Optim {
    fn get(self) -> deepfm::train::EmbeddingOptimizer {
        use deepfm::train::EmbeddingOptimizer as E;
        match self {
            Optim::Adam => E::Adam,
            Optim::LazyAdam => E::LazyAdam,
            Optim::Adagrad => E::Adagrad,
        }
    }
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Demo { samples, threads } => demo(samples, threads),
        Command::Random { shape, out, seed } => {
            let path = random::write_random_model(&out, &shape.spec(), seed)?;
            println!("wrote {}", path.display());
            Ok(())
        }
        Command::Import { weights, spec, out } => {
            let json = std::fs::read_to_string(&spec)
                .with_context(|| format!("reading {}", spec.display()))?;
            let path = deepfm::interop::import(&weights, &json, &out)?;
            println!("wrote {}", path.display());
            Ok(())
        }
        Command::Export {
            model,
            weights,
            spec,
        } => {
            let file = ModelFile::open(&model)?;
            deepfm::interop::export(&file, &weights, &spec)?;
            println!("wrote {} and {}", weights.display(), spec.display());
            Ok(())
        }
        Command::Inspect { model, verify } => inspect(&model, verify),
        Command::Score {
            model,
            input,
            threads,
        } => score_tsv(&model, &input, threads),
        Command::Bench(args) => bench(args),
        Command::Train(args) => train(*args),
        Command::Predict {
            model,
            pairs,
            data,
            threads,
            header,
        } => match data {
            Some(data) => tabular::predict_data(&model, &data, threads),
            None => {
                let pairs = pairs.context("--pairs or --data is required")?;
                recommender::predict_pairs(&model, &pairs, header.get())
            }
        },
        Command::Recommend {
            model,
            user,
            top_k,
            json,
        } => recommender::recommend(&model, &user, top_k, json),
        Command::Eval {
            model,
            ratings,
            header,
            negatives,
            k,
            seed,
        } => recommender::eval(&model, &ratings, header.get(), negatives, k, seed),
        Command::BenchTrain {
            shape,
            batch,
            threads,
            seconds,
            optim,
            bn,
            dropout,
            json,
        } => {
            use deepfm::train::{BatchNorm, Loss, TrainConfig};
            let spec = shape.spec();
            let loss = match spec.output {
                deepfm::Output::Sigmoid => Loss::Bce,
                deepfm::Output::Linear => Loss::Mse,
            };
            let config = TrainConfig {
                loss,
                embedding_optimizer: optim.get(),
                batch_norm: bn.then(BatchNorm::default),
                dropout,
                threads,
                ..TrainConfig::default()
            };
            let r = throughput::run_training(&spec, config, batch, seconds)?;
            println!(
                "{:?} batch {batch}, {threads} thread(s), {optim:?}, bn {bn}, dropout {dropout}: \
                 {:.0} samples/s ({:.3} ms/step, {} steps, {})",
                shape, r.samples_per_sec, r.millis_per_step, r.steps, r.isa
            );
            if json {
                println!("{}", serde_json::to_string(&r)?);
            }
            Ok(())
        }
    }
}

fn thread_pool(threads: Option<usize>) -> Result<rayon::ThreadPool> {
    let mut builder = rayon::ThreadPoolBuilder::new();
    if let Some(t) = threads {
        builder = builder.num_threads(t.max(1));
    }
    Ok(builder.build()?)
}

fn demo(samples: usize, threads: Option<usize>) -> Result<()> {
    let dir = temp_dir()?;
    recommender::tutorial(dir.path(), threads)?;
    let spec = random::criteo_like();
    let start = Instant::now();
    let path = random::write_random_model(dir.path().join("demo.dfm"), &spec, 7)?;
    let written = start.elapsed();
    let start = Instant::now();
    let model = Model::open(&path)?;
    let opened = start.elapsed();
    println!(
        "demo model: Criteo-like, {} fields, {} embedding rows, D={}, hidden {:?}, {:.1} MB \
         (written in {:.2} s, opened in {:.2} ms, kernels: {})",
        spec.fields.len(),
        spec.total_rows()?,
        spec.embedding_dim,
        spec.hidden,
        model.file().file_len() as f64 / 1e6,
        written.as_secs_f64(),
        opened.as_secs_f64() * 1e3,
        model.isa().name()
    );
    let pool = thread_pool(threads)?;
    let scratches = ScratchPool::with_threads(&model, pool.current_num_threads());
    let chunk = 65_536;
    let batches: Vec<BatchBuf> = (0..4)
        .map(|i| random::random_batch(&spec, chunk, i))
        .collect();
    let mut out = vec![0.0f32; chunk];
    let mut checksum = 0.0f64;
    let start = Instant::now();
    let mut done = 0;
    while done < samples {
        let n = chunk.min(samples - done);
        let batch = &batches[(done / chunk) % batches.len()];
        pool.install(|| deepfm::score_parallel(&model, batch, &scratches, &mut out))?;
        checksum += out[..n].iter().map(|&s| s as f64).sum::<f64>();
        done += n;
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "scored {samples} samples in {elapsed:.2} s with {} threads: {:.0} samples/s \
         (mean score {:.4})",
        pool.current_num_threads(),
        samples as f64 / elapsed,
        checksum / samples as f64
    );
    let check = random::random_batch(&spec, 1000, 99);
    let mut got = vec![0.0f32; check.len()];
    deepfm::score(&model, &check, &mut Scratch::new(&model), &mut got)?;
    let want = score_reference(&model, &check);
    let err = max_relative_error(&got, &want);
    println!(
        "agreement with the f64 reference on {} samples: max relative error {err:.2e} ({})",
        check.len(),
        if err <= 1e-5 {
            "ok, ≤ 1e-5"
        } else {
            "FAILED, > 1e-5"
        }
    );
    if err > 1e-5 {
        bail!("scores disagree with the reference");
    }
    Ok(())
}

/// A directory removed when dropped, for models built on the fly.
fn temp_dir() -> Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new().prefix("deepfm-").tempdir()?)
}

fn inspect(path: &Path, verify: bool) -> Result<()> {
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

fn score_tsv(model_path: &Path, input: &Path, threads: Option<usize>) -> Result<()> {
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

/// `deepfm bench`: what to score, how, for how long.
#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// A model file; without it, a random model of `--shape` is built in a temp directory.
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "criteo-like")]
    shape: Shape,
    #[arg(long, default_value_t = 4096)]
    batch: usize,
    #[arg(long, default_value_t = 1)]
    threads: usize,
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Idle milliseconds between calls, as a service at a low request rate sees them
    /// (the caches and the core cool down); only the calls are timed.
    #[arg(long, default_value_t = 0.0)]
    gap_ms: f64,
    /// Kernels to use: avx2 or portable (default: the best this CPU has, or DEEPFM_ISA).
    #[arg(long)]
    isa: Option<String>,
    /// End with a JSON line of the results.
    #[arg(long)]
    json: bool,
}

fn bench(args: BenchArgs) -> Result<()> {
    let BenchArgs {
        model,
        shape,
        batch,
        threads,
        seconds,
        gap_ms,
        isa,
        json,
    } = args;
    if !(seconds.is_finite() && seconds > 0.0) {
        bail!("--seconds must be a positive number, got {seconds}");
    }
    if !(gap_ms.is_finite() && (0.0..=60_000.0).contains(&gap_ms)) {
        bail!("--gap-ms must be between 0 and 60000, got {gap_ms}");
    }
    let dir = temp_dir()?;
    let path = match model {
        Some(p) => p,
        None => random::write_random_model(dir.path().join("bench.dfm"), &shape.spec(), 1)?,
    };
    let isa = match isa.as_deref() {
        None => None,
        Some(name) => {
            let isa = Isa::from_name(name).with_context(|| {
                format!(
                    "--isa {name:?}: the valid names are {}",
                    Isa::NAMES.join(", ")
                )
            })?;
            if !isa.is_supported() {
                bail!("--isa {name}: this CPU does not support these kernels");
            }
            Some(isa)
        }
    };
    let model = std::sync::Arc::new(Model::open_with(
        &path,
        &OpenOptions { isa, verify: false },
    )?);
    let gap = std::time::Duration::from_secs_f64(gap_ms / 1e3);
    let r = throughput::run_paced(&model, batch, threads, seconds, 12345, gap)?;
    println!(
        "{}: batch {} threads {} ({}) isa {}{}: {:.0} samples/s, {:.2} µs per call ({} calls)",
        path.display(),
        r.batch,
        r.threads,
        r.mode,
        r.isa,
        if gap_ms > 0.0 {
            format!(", {gap_ms} ms idle between calls")
        } else {
            String::new()
        },
        r.samples_per_sec,
        r.micros_per_call,
        r.calls
    );
    if json {
        println!("{}", serde_json::to_string(&r)?);
    }
    Ok(())
}

fn train(args: TrainArgs) -> Result<()> {
    use deepfm::data::criteo::{CriteoConfig, CriteoPreprocessor};
    use deepfm::data::stream::LabelledTsv;
    if let Some(ratings) = &args.ratings {
        return recommender::train_ratings(&args, ratings);
    }
    let data = args
        .data
        .clone()
        .context("--data or --ratings is required")?;
    if let Some(schema) = &args.schema {
        return tabular::train_schema(&args, &data, schema);
    }
    match args.format {
        DataFormat::Tsv => {
            let Some(spec_path) = &args.spec else {
                bail!("--format tsv needs --spec");
            };
            let json = std::fs::read_to_string(spec_path)
                .with_context(|| format!("reading {}", spec_path.display()))?;
            let spec = ModelSpec::from_json(&json)?;
            let parser = LabelledTsv::new(spec.clone());
            train_with(&args, spec, &|_| Ok(parser.clone()), None)
        }
        DataFormat::Criteo => {
            eprintln!("building vocabularies from {}", data.display());
            let pre = CriteoPreprocessor::fit(&data, CriteoConfig::default())?;
            let hidden = args.hidden.clone().unwrap_or_else(|| vec![400, 400, 400]);
            let spec = pre.spec(args.dim.unwrap_or(16), &hidden);
            let prep = deepfm::data::prep::Preprocessing::Criteo(pre.clone());
            train_with(&args, spec, &|_| Ok(pre.clone()), Some(&prep))
        }
    }
}

/// Trains on `--data` read by the parsers `parser_for` makes for each file (training and
/// validation files may lay out their columns differently).
/// `prep`, when given, is saved in the model file's metadata section.
fn train_with<P: deepfm::data::stream::LineParser>(
    args: &TrainArgs,
    spec: ModelSpec,
    parser_for: &dyn Fn(&Path) -> Result<P>,
    prep: Option<&deepfm::data::prep::Preprocessing>,
) -> Result<()> {
    use deepfm::data::stream::{Streamed, read_all};
    use deepfm::train::{
        BatchNorm, Checkpointing, EpochReport, FitConfig, Loss, TrainConfig, Trainer,
        fit_checkpointed,
    };
    let loss = match spec.output {
        deepfm::Output::Sigmoid => Loss::Bce,
        deepfm::Output::Linear => Loss::Mse,
    };
    let config = TrainConfig {
        loss,
        learning_rate: args.lr.unwrap_or(1e-3),
        embedding_optimizer: args.optim.unwrap_or(Optim::LazyAdam).get(),
        batch_norm: args.bn.unwrap_or(false).then(BatchNorm::default),
        dropout: args.dropout.unwrap_or(0.0),
        l2_embedding: args.l2_embedding,
        l2_dense: args.l2_dense,
        weight_decay_embedding: args.weight_decay_embedding,
        weight_decay_dense: args.weight_decay_dense,
        seed: args.seed,
        threads: args
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(spec, config)?;
    let valid = match &args.valid {
        Some(path) => Some(read_all(path, parser_for(path)?)?),
        None => None,
    };
    let data = args.data.as_ref().context("--data is required")?;
    let mut source = Streamed::new(data, parser_for(data)?, args.buffer, args.seed)?
        .skip_bad_lines(args.skip_bad_lines);
    let fit_config = FitConfig {
        epochs: args.epochs.unwrap_or(5),
        batch_size: args.batch.unwrap_or(256),
        patience: args.patience,
        plateau: None,
    };
    let checkpoint = args.checkpoint.clone().map(|path| Checkpointing {
        path,
        resume: args.resume,
    });
    if let Some(c) = &checkpoint
        && c.resume
        && c.path.exists()
    {
        eprintln!("resuming from {}", c.path.display());
    }
    let report = fit_checkpointed(
        &mut trainer,
        &mut source,
        valid.as_ref().map(|(b, y)| (b, y.as_slice())),
        &fit_config,
        checkpoint.as_ref(),
        &mut |e: &EpochReport| {
            eprintln!(
                "epoch {}: train loss {:.5}{}, {} samples in {:.1} s ({:.0}/s)",
                e.epoch,
                e.train_loss,
                e.valid_loss
                    .map(|v| format!(", valid loss {v:.5}"))
                    .unwrap_or_default(),
                e.samples,
                e.seconds,
                e.samples as f64 / e.seconds.max(1e-9)
            )
        },
    )?;
    let stats = source.stats();
    if stats.bad_lines > 0 {
        eprintln!(
            "skipped {} of {} lines that did not parse (each epoch); the first: {}",
            stats.bad_lines,
            stats.lines,
            stats.first_bad.as_deref().unwrap_or("?")
        );
    }
    let path = match prep {
        Some(prep) => trainer.write_with_metadata(&args.out, tabular::metadata_json(prep)?)?,
        None => trainer.write(&args.out)?,
    };
    println!(
        "wrote {} (weights of epoch {} of {}{})",
        path.display(),
        report.best_epoch,
        report.epochs.len(),
        if report.stopped_early {
            ", stopped early"
        } else {
            ""
        }
    );
    Ok(())
}

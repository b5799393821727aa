//! The command line: every command and its arguments (clap derive), and the value enums that
//! name library settings.

use clap::{Parser, Subcommand, ValueEnum};
use deepfm::{ModelSpec, fixtures};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "deepfm",
    version,
    about = "Fast CPU DeepFM scoring from memory-mapped model files"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
    /// Convert safetensors weights into a model file: a DeepFM trained by DeepCTR-Torch,
    /// FuxiCTR or CoreRec (`--from`, its state dict and the description `tools/export/`
    /// writes), or tensors with this crate's own names and a JSON spec (`--spec`).
    Import {
        /// The weights: the framework's `state_dict` saved with `safetensors.torch.save_file`,
        /// or this crate's tensors (what `deepfm export` writes).
        #[arg(long)]
        weights: PathBuf,
        /// The framework that trained the model; needs --description.
        #[arg(long, value_enum, requires = "description", conflicts_with = "spec")]
        from: Option<FrameworkArg>,
        /// The framework's description of the model (JSON, as `tools/export/<framework>.py`
        /// writes it: feature columns or feature map, layers, task).
        #[arg(long, requires = "from")]
        description: Option<PathBuf>,
        /// This crate's spec (JSON), for weights with this crate's tensor names.
        #[arg(long, required_unless_present = "from")]
        spec: Option<PathBuf>,
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
    /// Install a model file at the path a service serves, safely while it is mapped: NEW is
    /// validated completely, copied beside LIVE and renamed over it (never `cp` over a served
    /// file: that kills the processes that have it mapped). Reload the services afterwards.
    Install {
        /// The new model file.
        new: PathBuf,
        /// The served path to replace (created if absent; its directory must exist).
        live: PathBuf,
    },
    /// Write a copy of a model in other precisions: hidden layers (`--mlp int8`: weights
    /// quantized per column, activations per row, i32 sums; the f32 weights stay in the file,
    /// so `--mlp f32` undoes it exactly) and embedding rows (`--table f16|bf16|int8|int4`, converted
    /// a chunk at a time). Measures the score difference on random samples and keeps the file
    /// only if it is within --tolerance.
    Quantize {
        /// The model file to read.
        #[arg(long = "in")]
        input: PathBuf,
        /// Where to write the new model file (may be the input: it is replaced crash-safely).
        #[arg(long)]
        out: PathBuf,
        /// Precision of the hidden layers (default: as the input file has it).
        #[arg(long, value_enum)]
        mlp: Option<MlpArg>,
        /// Format of the embedding rows (default: as the input file has it): f16 and bf16 halve
        /// a row, int8 (row-wise, with an f32 scale and bias per row) takes D + 8 bytes, int4
        /// (row-wise 4-bit, with an f16 scale and bias) ⌈D/2⌉ + 4.
        #[arg(long, value_enum)]
        table: Option<TableArg>,
        /// Random samples to measure the score difference on (0: skip the measurement).
        #[arg(long, default_value_t = 20_000)]
        samples: usize,
        /// Largest mean |score difference| allowed, as a fraction of the score's scale (1 for
        /// probabilities, the clamp's width for ratings).
        #[arg(long, default_value_t = 0.01)]
        tolerance: f64,
        /// Write the file whatever the difference.
        #[arg(long)]
        force: bool,
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
    /// Search the training settings that matter (embedding size, layers, dropout, weight
    /// decay, learning rate and its decay, batch size) for the best validation loss within a
    /// time budget, on a validation part cut from --ratings only; print the trials and write
    /// the best model, and its settings beside it (OUT.tune.json).
    Tune(Box<TuneArgs>),
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
    BenchTrain(BenchTrainArgs),
}

/// Arguments of `deepfm train`.
#[derive(clap::Args)]
pub struct TrainArgs {
    /// Ratings or interactions, `user,item,rating[,timestamp]` (MovieLens `::`, tab, comma;
    /// header and string ids allowed): trains the recommender (`deepfm::api`) with the
    /// tutorial's defaults, writes MODEL with the id maps in its metadata section.
    #[arg(long, conflicts_with_all = ["data", "spec", "format"])]
    pub ratings: Option<PathBuf>,
    /// Ratings: user side features, keyed by user id (RecBole `.user`, MovieLens `users.dat`
    /// or `u.user`).
    #[arg(long, requires = "ratings")]
    pub users: Option<PathBuf>,
    /// Ratings: item side features, keyed by item id (RecBole `.item`, MovieLens `movies.dat`
    /// or `u.item`).
    #[arg(long, requires = "ratings")]
    pub items: Option<PathBuf>,
    /// Only these columns of --users (comma-separated names).
    #[arg(long, value_delimiter = ',', requires = "users")]
    pub user_columns: Option<Vec<String>>,
    /// Only these columns of --items (comma-separated names).
    #[arg(long, value_delimiter = ',', requires = "items")]
    pub item_columns: Option<Vec<String>>,
    /// Training samples: `tsv` = label then one column per field (the `score` format), or
    /// Criteo (`label, I1..I13, C1..C26`, tab- or comma-separated).
    #[arg(long, required_unless_present = "ratings")]
    pub data: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "tsv")]
    pub format: DataFormat,
    /// A JSON schema for `--data` as CSV/TSV with a header: the label column and each field's
    /// kind (`categorical`, `numeric`, `multi_hot`), with optional `hash_buckets`, `min_count`,
    /// `sep`, `pooling`, `transform` (see `deepfm::data::schema`).
    #[arg(long, conflicts_with_all = ["spec", "format"])]
    pub schema: Option<PathBuf>,
    /// Skip lines that do not parse, count them and print the count, instead of stopping at
    /// the first (which is named with file, line and column either way).
    #[arg(long)]
    pub skip_bad_lines: bool,
    /// Ratings: whether the first line of --ratings (and --valid) is a header. auto: a header
    /// when it has typed RecBole names, a rating that is not a number, text above a number in
    /// line 2, or common id column names (user_id, itemId, movie …); the names are kept in the
    /// model, so `predict` and `eval` recognise them. A skipped header is printed.
    #[arg(long, value_enum, default_value = "auto")]
    pub header: HeaderArg,
    /// Model spec JSON (required for `tsv`; for `criteo` the spec is built from the data).
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// Validation data (same format): early stopping and the reported loss.
    #[arg(long)]
    pub valid: Option<PathBuf>,
    /// Where to write the model file.
    #[arg(long)]
    pub out: PathBuf,
    /// Most passes over the data (early stopping may end sooner) [ratings: 20; data: 5].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Samples per step [256].
    #[arg(long, alias = "batch-size")]
    pub batch: Option<usize>,
    /// Adam learning rate [0.001].
    #[arg(long, alias = "learning-rate")]
    pub lr: Option<f32>,
    /// Embedding optimizer [data: lazy-adam; ratings: adam over the whole table up to 4M
    /// weights, lazy-adam above].
    #[arg(long, value_enum)]
    pub optim: Option<Optim>,
    /// Batch norm after each hidden layer [ratings: true; data: false].
    #[arg(long, alias = "use-bn", num_args = 0..=1, default_missing_value = "true")]
    pub bn: Option<bool>,
    /// Dropout after each hidden layer [ratings: 0.5; data: 0].
    #[arg(long)]
    pub dropout: Option<f32>,
    /// L2 penalty λ/2·‖e‖² on the embedding rows of each batch [0].
    #[arg(long)]
    pub l2_embedding: Option<f32>,
    /// L2 penalty λ/2·‖W‖² on the layer weights and output unit [0].
    #[arg(long)]
    pub l2_dense: Option<f32>,
    /// Decoupled (AdamW) weight decay of the embeddings and first-order weights: the rows
    /// each step updates are multiplied by 1 − lr·λ (0: off; lr·λ must stay below 1)
    /// [0].
    #[arg(long)]
    pub weight_decay_embedding: Option<f32>,
    /// Decoupled (AdamW) weight decay of the layer weights and output unit (not biases or
    /// batch norm): multiplied by 1 − lr·λ each step (0: off; lr·λ must stay below 1) [0].
    #[arg(long)]
    pub weight_decay_dense: Option<f32>,
    /// Early stopping: stop after this many epochs without a better validation loss and
    /// keep the best epoch's weights (--epochs is then the most it trains). Validates on
    /// --valid, or else on --valid-fraction of the training data held out of it. 0: no
    /// early stopping and no hold-out (every epoch, on all the data).
    #[arg(long, default_value_t = 3)]
    pub patience: usize,
    /// Share of the training data held out for early stopping when there is no --valid
    /// (--data: at most 500,000 lines).
    #[arg(long, default_value_t = 0.1)]
    pub valid_fraction: f32,
    /// Multiply the learning rates by this after each epoch without a better validation
    /// loss (ReduceLROnPlateau; needs early stopping; 0: none) [none].
    #[arg(long)]
    pub lr_decay: Option<f32>,
    /// After early stopping on the held-out share, train again from the start on all the
    /// training data for the best epoch's number of epochs, with the same learning rates, so
    /// the held-out share is not lost to the model (about twice the training time; no effect
    /// with --valid or --patience 0) [ratings: true; data: false, as a second pass over a
    /// large file costs as much again].
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub refit: Option<bool>,
    /// Ratings: what to learn (auto: rating when the ratings take more than two values).
    #[arg(long, value_enum, default_value = "auto")]
    pub task: TaskArg,
    /// Samples held by the shuffle buffer (memory is bounded by it, not by the file; --data
    /// only: --ratings files are read into memory).
    #[arg(long, default_value_t = 100_000)]
    pub buffer: usize,
    /// Embedding dimension [ratings: 32; criteo: 16].
    #[arg(long, alias = "embedding-dim")]
    pub dim: Option<usize>,
    /// Hidden layers [ratings: 256,128,64; criteo: 400,400,400].
    #[arg(long, alias = "deep-layers", value_delimiter = ',')]
    pub hidden: Option<Vec<usize>>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Threads (results do not depend on it).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Write a training checkpoint to this file after every epoch (crash-safely).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Go on from the --checkpoint file if it exists (same data and settings: the same model
    /// as an uninterrupted run; --epochs may be raised to train longer).
    #[arg(long, requires = "checkpoint")]
    pub resume: bool,
    /// Print a JSON summary as the last line.
    #[arg(long)]
    pub json: bool,
}

impl TrainArgs {
    /// The early-stopping patience `--patience` asks for (`None` for 0: no early stopping).
    pub fn early_stopping(&self) -> Option<usize> {
        (self.patience > 0).then_some(self.patience)
    }
}

/// Arguments of `deepfm tune`: those of `train --ratings` (the starting point of the search,
/// and the data), the budget and the number of trials.
#[derive(clap::Args)]
pub struct TuneArgs {
    #[command(flatten)]
    pub train: TrainArgs,
    /// Wall time of the whole search: seconds, or a number with s, m or h (90s, 10m, 1h).
    #[arg(long, default_value = "10m", value_parser = parse_budget)]
    pub budget: std::time::Duration,
    /// Stop after this many trials even if time is left.
    #[arg(long)]
    pub max_trials: Option<usize>,
}

/// `90`, `90s`, `10m`, `1.5h` as a duration.
pub fn parse_budget(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let (number, unit) = match t.char_indices().last() {
        Some((i, c @ ('s' | 'm' | 'h'))) => (&t[..i], c),
        _ => (t, 's'),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (90s, 10m, 1h)"))?;
    let seconds = value
        * match unit {
            'm' => 60.0,
            'h' => 3600.0,
            _ => 1.0,
        };
    if !(seconds.is_finite() && seconds > 0.0 && seconds < 1e9) {
        return Err(format!("{text:?}: the budget must be a positive duration"));
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

/// `deepfm bench`: what to score, how, for how long.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// A model file; without it, a random model of `--shape` is built in a temp directory.
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "criteo-like")]
    pub shape: Shape,
    #[arg(long, default_value_t = 4096)]
    pub batch: usize,
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Idle milliseconds between calls, as a service at a low request rate sees them
    /// (the caches and the core cool down); only the calls are timed.
    #[arg(long, default_value_t = 0.0)]
    pub gap_ms: f64,
    /// Kernels to use: avx512, avx2 or portable (default: the best this CPU has, or
    /// DEEPFM_ISA).
    #[arg(long)]
    pub isa: Option<String>,
    /// Precision of the hidden layers (default: what the model file says).
    #[arg(long, value_enum)]
    pub mlp: Option<MlpArg>,
    /// End with a JSON line of the results.
    #[arg(long)]
    pub json: bool,
}

/// `deepfm bench-train`: the shape, the trainer's settings, for how long.
#[derive(Debug, clap::Args)]
pub struct BenchTrainArgs {
    #[arg(long, value_enum, default_value = "criteo-like")]
    pub shape: Shape,
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Embedding optimizer.
    #[arg(long, value_enum, default_value = "lazy-adam")]
    pub optim: Optim,
    /// Batch norm after each hidden layer.
    #[arg(long)]
    pub bn: bool,
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f32,
    /// End with a JSON line of the results.
    #[arg(long)]
    pub json: bool,
}

/// `--mlp`: the precision of the hidden layers ([`deepfm::MlpPrecision`]).
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum MlpArg {
    /// f32 weights and activations (exact).
    F32,
    /// int8 weights (per column) and activations (per row), i32 sums.
    Int8,
}

impl MlpArg {
    pub fn get(self) -> deepfm::MlpPrecision {
        match self {
            MlpArg::F32 => deepfm::MlpPrecision::F32,
            MlpArg::Int8 => deepfm::MlpPrecision::Int8,
        }
    }
}

/// `--table`: the format of the embedding rows ([`deepfm::TablePrecision`]).
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TableArg {
    /// f32 rows (exact).
    F32,
    /// IEEE half-precision rows.
    F16,
    /// bfloat16 rows.
    Bf16,
    /// Row-wise int8: D codes, then the row's scale and bias.
    Int8,
    /// Row-wise 4-bit: D codes two to a byte, then the row's f16 scale and bias.
    Int4,
}

impl TableArg {
    pub fn get(self) -> deepfm::TablePrecision {
        match self {
            TableArg::F32 => deepfm::TablePrecision::F32,
            TableArg::F16 => deepfm::TablePrecision::F16,
            TableArg::Bf16 => deepfm::TablePrecision::Bf16,
            TableArg::Int8 => deepfm::TablePrecision::Int8,
            TableArg::Int4 => deepfm::TablePrecision::Int4,
        }
    }
}

/// The built-in model shapes of `random`, `bench` and `bench-train`.
/// `--from`: the frameworks `deepfm::interop::import_from` reads.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FrameworkArg {
    /// DeepCTR-Torch 0.3 (`deepctr_torch.models.DeepFM`).
    #[value(name = "deepctr-torch")]
    DeepCtrTorch,
    /// FuxiCTR 2.3 (`model_zoo/DeepFM`).
    Fuxictr,
    /// CoreRec 0.6 (`corerec.engines.deepfm.DeepFM`).
    Corerec,
    /// RecBole 1.2 (`recbole.model.context_aware_recommender.DeepFM`).
    Recbole,
    /// A DeepFM head over torchrec 1.9 `EmbeddingBagCollection`s.
    Torchrec,
}

impl FrameworkArg {
    /// The library's name for it.
    pub fn framework(self) -> deepfm::interop::Framework {
        use deepfm::interop::Framework;
        match self {
            FrameworkArg::DeepCtrTorch => Framework::DeepCtrTorch,
            FrameworkArg::Fuxictr => Framework::FuxiCtr,
            FrameworkArg::Corerec => Framework::CoreRec,
            FrameworkArg::Recbole => Framework::RecBole,
            FrameworkArg::Torchrec => Framework::Torchrec,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Shape {
    /// 13 numeric + 26 categorical fields, 1M rows, D=16, hidden 400-400-400.
    CriteoLike,
    /// user + item, D=32, hidden 256-128-64, ratings clamped to 1–5.
    MovielensLike,
    /// One field of each kind (categorical, numeric, two multi-hot), small.
    MixedSmall,
}

impl Shape {
    pub fn spec(self) -> ModelSpec {
        match self {
            Shape::CriteoLike => fixtures::criteo_like(),
            Shape::MovielensLike => fixtures::movielens_like(),
            Shape::MixedSmall => fixtures::mixed_small(),
        }
    }
}

/// `--header`: whether a ratings or pairs file starts with a header line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum HeaderArg {
    /// Detected (see `deepfm::data::ratings::detect_header`).
    Auto,
    /// The first line is a header.
    Yes,
    /// The first line is data.
    No,
}

impl HeaderArg {
    pub fn get(self) -> deepfm::data::ratings::Header {
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
pub enum TaskArg {
    Auto,
    Rating,
    Implicit,
    Click,
}

/// Training file formats.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DataFormat {
    Tsv,
    Criteo,
}

/// Embedding optimizers, as the CLI names them.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Optim {
    Adam,
    LazyAdam,
    Adagrad,
}

impl Optim {
    pub fn get(self) -> deepfm::train::EmbeddingOptimizer {
        use deepfm::train::EmbeddingOptimizer as E;
        match self {
            Optim::Adam => E::Adam,
            Optim::LazyAdam => E::LazyAdam,
            Optim::Adagrad => E::Adagrad,
        }
    }
}

//! The recommender commands: `train --ratings`, `predict --pairs`, `recommend`, `eval`, and
//! the tutorial that `demo` runs.

use crate::args::{TaskArg, TrainArgs};
use anyhow::{Result, bail};
use deepfm::api::{DeepFM, Task};
use deepfm::data::ratings::{Header, Interactions, ReadOptions, read_interactions_with};
use deepfm::fixtures;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Reads a ratings or pairs file, the header detected as `header` says (a first line that
/// repeats `training_columns`, the model's, is a header too), and says on stderr which first
/// line it took for a header and why, so a skipped line is never silent.
pub fn read_pairs(
    path: &Path,
    pairs_only: bool,
    header: Header,
    skip_bad_lines: bool,
    training_columns: Option<&[String]>,
) -> Result<Interactions> {
    let options = ReadOptions {
        pairs_only,
        skip_bad_lines,
        header,
        training_columns,
    };
    let data = read_interactions_with(path, &options)?;
    if let (Some(names), Some(reason)) = (&data.header, data.header_reason) {
        eprintln!(
            "{}: line 1 read as a header {names:?} ({reason}; --header no reads it as data)",
            path.display()
        );
    }
    if data.skipped > 0 {
        eprintln!(
            "skipped {} lines that did not parse; the first: {}",
            data.skipped,
            data.first_skipped.as_deref().unwrap_or("?")
        );
    }
    Ok(data)
}

/// `deepfm predict --model M --pairs FILE`: one prediction a line, in order, one for each
/// line of FILE but blank lines and the header.
pub fn predict_pairs(model: &Path, pairs: &Path, header: Header) -> Result<()> {
    let model = DeepFM::<String, String>::load(model)?;
    let data = read_pairs(pairs, true, header, false, model.column_names())?;
    let pairs: Vec<(String, String)> = data.users.into_iter().zip(data.items).collect();
    let out = model.batch_predict(&pairs)?;
    let mut w = BufWriter::new(std::io::stdout().lock());
    for p in out {
        writeln!(w, "{p}")?;
    }
    Ok(())
}

/// `deepfm recommend --model M --user U --top-k K [--json]`.
pub fn recommend(model: &Path, user: &str, top_k: usize, json: bool) -> Result<()> {
    let model = DeepFM::<String, String>::load(model)?;
    let user = user.to_string();
    if model.users().get(&user).is_none() {
        eprintln!("note: user {user:?} was not in the training data (scored as an unknown user)");
    }
    let recs = model.recommend_with_scores(&user, top_k)?;
    if json {
        let list: Vec<_> = recs
            .iter()
            .map(|(i, s)| serde_json::json!({"item": i, "score": s}))
            .collect();
        println!("{}", serde_json::Value::Array(list));
    } else {
        for (i, s) in recs {
            println!("{i}\t{s}");
        }
    }
    Ok(())
}

/// `deepfm eval --model M --ratings FILE`: RMSE/MAE, HR/NDCG or AUC/logloss by the model's
/// task.
pub fn eval(
    model: &Path,
    ratings: &Path,
    header: Header,
    negatives: usize,
    k: usize,
    seed: u64,
) -> Result<()> {
    let model = DeepFM::<String, String>::load(model)?;
    let data = read_pairs(ratings, false, header, false, model.column_names())?;
    match model.task() {
        Task::Rating => {
            let (rmse, mae) = model.evaluate(&data.users, &data.items, &data.ratings)?;
            println!(
                "RMSE {rmse:.4}  MAE {mae:.4}  ({} ratings)",
                data.ratings.len()
            );
        }
        Task::Implicit => {
            let pairs: Vec<(String, String)> = data.users.into_iter().zip(data.items).collect();
            let (hr, ndcg) = model.hit_ratio_ndcg(&pairs, negatives, k, seed)?;
            println!(
                "HR@{k} {hr:.4}  NDCG@{k} {ndcg:.4}  ({} held-out pairs, {negatives} negatives each)",
                pairs.len()
            );
        }
        _ => {
            let labels: Vec<f32> = data
                .ratings
                .iter()
                .map(|&r| (r > 0.5) as u8 as f32)
                .collect();
            let pairs: Vec<(String, String)> = data.users.into_iter().zip(data.items).collect();
            let p = model.batch_predict(&pairs)?;
            let auc = deepfm::metrics::auc(&p, &labels)?;
            let logloss = deepfm::metrics::logloss(&p, &labels)?;
            println!(
                "AUC {}  logloss {logloss:.4}  ({} samples)",
                auc.map_or("n/a (one class)".into(), |a| format!("{a:.4}")),
                labels.len()
            );
        }
    }
    Ok(())
}

/// What `train --ratings` and `tune` read: the interactions, an optional validation file
/// and the side features.
pub struct RatingsInput {
    pub data: Interactions,
    pub valid: Option<Interactions>,
    pub user_features: Option<deepfm::api::Features<String>>,
    pub item_features: Option<deepfm::api::Features<String>>,
}

impl RatingsInput {
    /// Reads `--ratings`, `--valid`, `--users` and `--items` as `args` say.
    pub fn read(args: &TrainArgs, path: &Path) -> Result<Self> {
        let header = args.header.get();
        let data = read_pairs(path, false, header, args.skip_bad_lines, None)?;
        eprintln!("{}: {} interactions", path.display(), data.ratings.len());
        let read = |path: &Option<PathBuf>, columns: &Option<Vec<String>>| -> Result<_> {
            let Some(path) = path else { return Ok(None) };
            let features = deepfm::api::read_features(path, columns.as_deref())?;
            let names: Vec<&str> = features.fields().iter().map(|(n, _)| n.as_str()).collect();
            eprintln!(
                "{}: {} ids, features {names:?}",
                path.display(),
                features.len()
            );
            Ok(Some(features))
        };
        let user_features = read(&args.users, &args.user_columns)?;
        let item_features = read(&args.items, &args.item_columns)?;
        let valid = match &args.valid {
            Some(valid) => {
                let names = data.header.as_deref();
                let v = read_pairs(valid, false, header, args.skip_bad_lines, names)?;
                eprintln!(
                    "{}: {} validation interactions",
                    valid.display(),
                    v.ratings.len()
                );
                Some(v)
            }
            None => None,
        };
        Ok(RatingsInput {
            data,
            valid,
            user_features,
            item_features,
        })
    }

    /// The API's view of what was read.
    pub fn interactions(&self) -> deepfm::api::Interactions<'_, String, String> {
        let d = &self.data;
        let mut input = deepfm::api::Interactions::new(&d.users, &d.items, &d.ratings);
        if let Some(v) = &self.valid {
            input = input.validation(&v.users, &v.items, &v.ratings);
        }
        if let Some(f) = &self.user_features {
            input = input.user_features(f);
        }
        if let Some(f) = &self.item_features {
            input = input.item_features(f);
        }
        input
    }
}

/// The recommender's builder with the settings `args` change from the defaults (a flag of the
/// `--data` paths that the recommender cannot honour is refused, never ignored; clap already
/// refuses --data and --spec beside --ratings).
pub fn ratings_builder(args: &TrainArgs) -> Result<deepfm::api::DeepFMBuilder> {
    if args.schema.is_some() {
        bail!("--schema does not apply to --ratings (it describes a --data file)");
    }
    let task = match args.task {
        TaskArg::Auto => Task::Auto,
        TaskArg::Rating => Task::Rating,
        TaskArg::Implicit => Task::Implicit,
        TaskArg::Click => Task::Click,
    };
    let mut builder = DeepFM::builder()
        .verbose(true)
        .task(task)
        .seed(args.seed)
        .patience(args.early_stopping())
        .valid_fraction(args.valid_fraction);
    // Each flag given replaces the builder's default; an absent one leaves it.
    macro_rules! given {
        ($($flag:expr => $setter:ident),* $(,)?) => {
            $(if let Some(v) = $flag {
                builder = builder.$setter(v);
            })*
        };
    }
    given! {
        args.l2_embedding => l2,
        args.l2_dense => l2_dense,
        args.weight_decay_embedding => weight_decay_embedding,
        args.weight_decay_dense => weight_decay_dense,
        args.dim => embedding_dim,
        args.hidden.as_deref() => deep_layers,
        args.dropout => dropout,
        args.bn => use_bn,
        args.epochs => epochs,
        args.batch => batch_size,
        args.lr => learning_rate,
        args.lr_decay.map(|v| (v > 0.0).then_some(v)) => lr_decay,
        args.threads => threads,
        args.refit => refit,
        args.optim.map(|o| Some(o.get())) => embedding_optimizer,
    }
    Ok(builder)
}

/// `deepfm train --ratings`: the recommender API with the tutorial's defaults.
pub fn train_ratings(args: &TrainArgs, path: &Path) -> Result<()> {
    let mut builder = ratings_builder(args)?;
    if let Some(path) = &args.checkpoint {
        if args.resume && path.exists() {
            eprintln!("resuming from {}", path.display());
        }
        builder = builder.checkpoint(path).resume(args.resume);
    }
    let input = RatingsInput::read(args, path)?;
    let started = Instant::now();
    let mut model = builder.fit_interactions(input.interactions())?;
    let seconds = started.elapsed().as_secs_f64();
    model.set_column_names(input.data.header.clone());
    model.save(&args.out)?;
    println!(
        "wrote {} ({:?}, {} users, {} items, {seconds:.1} s)",
        args.out.display(),
        model.task(),
        model.users().len(),
        model.items().len()
    );
    if args.json {
        let refitted = model.settings().refit;
        // A refit's epochs follow the validated run's in the history, without validation.
        let refit_epochs = if refitted {
            model
                .history()
                .iter()
                .rev()
                .take_while(|e| e.valid_loss.is_none())
                .count()
        } else {
            0
        };
        let validated = &model.history()[..model.history().len() - refit_epochs];
        let last = validated.last();
        let best = deepfm::train::best_validation(validated);
        println!(
            "{}",
            serde_json::json!({
                "model": args.out,
                "task": format!("{:?}", model.task()).to_lowercase(),
                "users": model.users().len(),
                "items": model.items().len(),
                "epochs": validated.len(),
                "refit_epochs": refitted.then_some(refit_epochs),
                "train_loss": last.map(|e| e.train_loss),
                "valid_loss": last.and_then(|e| e.valid_loss),
                "best_epoch": best.map(|b| b.0),
                "best_valid_loss": best.map(|b| b.1),
                "seconds": seconds,
            })
        );
    }
    Ok(())
}

/// The tutorial on planted ratings: fit, evaluate, predict, recommend, save, load.
pub fn tutorial(dir: &Path, threads: Option<usize>) -> Result<()> {
    use deepfm::api::DeepFM;
    use deepfm::data::split;
    let (users, items, ratings) = fixtures::planted_ratings(2_000, 1_500, 200_000, 42);
    println!(
        "tutorial data: {} ratings of {} users and {} items, planted (no download)",
        ratings.len(),
        2_000,
        1_500
    );
    let (train, test) = split::random(ratings.len(), 0.2, 42);
    let pick = |idx: &[usize]| -> (Vec<u32>, Vec<u32>, Vec<f32>) {
        (
            idx.iter().map(|&k| users[k]).collect(),
            idx.iter().map(|&k| items[k]).collect(),
            idx.iter().map(|&k| ratings[k]).collect(),
        )
    };
    let (train_u, train_i, train_r) = pick(&train);
    let (test_u, test_i, test_r) = pick(&test);
    let started = Instant::now();
    let mut builder = DeepFM::builder()
        .name("DeepFM_Model")
        .embedding_dim(32)
        .deep_layers(&[256, 128, 64])
        .dropout(0.3)
        .use_bn(true)
        .epochs(5)
        .batch_size(256)
        .learning_rate(0.001)
        .verbose(true);
    if let Some(t) = threads {
        builder = builder.threads(t);
    }
    let model = builder.fit(&train_u, &train_i, &train_r)?;
    println!(
        "fit: {} ratings, 5 epochs in {:.1} s",
        train_r.len(),
        started.elapsed().as_secs_f64()
    );
    let (rmse, mae) = model.evaluate(&test_u, &test_i, &test_r)?;
    let mean = train_r.iter().sum::<f32>() / train_r.len() as f32;
    let baseline = (test_r
        .iter()
        .map(|&r| ((r - mean) as f64).powi(2))
        .sum::<f64>()
        / test_r.len() as f64)
        .sqrt();
    println!("test RMSE {rmse:.4}, MAE {mae:.4} (predicting the mean rating: RMSE {baseline:.4})");
    println!("predict(user 1, item 100) = {:.3}", model.predict(&1, &100));
    let pairs: Vec<(u32, u32)> = test_u
        .iter()
        .copied()
        .zip(test_i.iter().copied())
        .take(5)
        .collect();
    println!(
        "batch_predict of 5 test pairs: {:?}",
        model.batch_predict(&pairs)?
    );
    println!("recommend(user 1, top 10) = {:?}", model.recommend(&1, 10)?);
    let path = dir.join("deepfm_model.dfm");
    model.save(&path)?;
    let loaded = DeepFM::<u32, u32>::load(&path)?;
    let same = loaded.predict(&1, &100) == model.predict(&1, &100);
    println!(
        "saved to and loaded from {}: loaded model's predict(1, 100) = {:.3} ({})",
        path.display(),
        loaded.predict(&1, &100),
        if same { "identical" } else { "DIFFERENT" }
    );
    if !same {
        bail!("the loaded model predicts differently");
    }
    Ok(())
}

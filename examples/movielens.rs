//! The DeepFM tutorial, step by step, in Rust: load MovieLens ratings, split 80/20 at random,
//! fit, predict one pair, predict a batch, recommend, compute the test RMSE, save, load, and
//! check the loaded model predicts the same.
//!
//! ```text
//! cargo run --release --example movielens -- ../shared/data/ml-1m/ratings.dat
//! cargo run --release --example movielens -- ../shared/data/ml-100k/u.data --epochs 5
//! cargo run --release --example movielens -- ../shared/data/ml-100k-atomic/ml-100k.inter \
//!     --users ../shared/data/ml-100k-atomic/ml-100k.user
//! ```
//!
//! Any `user, item, rating[, timestamp]` file works (MovieLens `::`, tab, comma; a header is
//! skipped). The settings are the tutorial's: embedding_dim 32, deep_layers [256, 128, 64],
//! dropout 0.3, use_bn, 20 epochs, batch 256, learning rate 0.001.

use anyhow::{Context, Result};
use clap::Parser;
use deepfm::api::{DeepFM, Interactions, read_features};
use deepfm::data::ratings::read_interactions;
use deepfm::data::split;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser)]
#[command(about = "The DeepFM tutorial on a MovieLens ratings file")]
struct Args {
    /// Ratings file: ratings.dat, u.data, a RecBole .inter file, or user,item,rating CSV.
    ratings: PathBuf,
    /// Optional user side features (users.dat, u.user, a RecBole .user file).
    #[arg(long)]
    users: Option<PathBuf>,
    /// Optional item side features (movies.dat, u.item, a RecBole .item file).
    #[arg(long)]
    items: Option<PathBuf>,
    /// Passes over the data (the tutorial's 20).
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Where to save the model (default: a temporary folder).
    #[arg(long)]
    save: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();

    // 1. Load the ratings and split them 80/20 at random.
    let data = read_interactions(&args.ratings, false)
        .with_context(|| format!("reading {}", args.ratings.display()))?;
    let distinct = |v: &[String]| v.iter().collect::<std::collections::HashSet<_>>().len();
    println!(
        "{} ratings, {} users, {} movies",
        data.ratings.len(),
        distinct(&data.users),
        distinct(&data.items)
    );
    let (train, test) = split::random(data.ratings.len(), 0.2, args.seed);
    let pick = |idx: &[usize]| {
        let users: Vec<String> = idx.iter().map(|&k| data.users[k].clone()).collect();
        let items: Vec<String> = idx.iter().map(|&k| data.items[k].clone()).collect();
        let ratings: Vec<f32> = idx.iter().map(|&k| data.ratings[k]).collect();
        (users, items, ratings)
    };
    let (train_users, train_items, train_ratings) = pick(&train);
    let (test_users, test_items, test_ratings) = pick(&test);
    println!(
        "train {} / test {}",
        train_ratings.len(),
        test_ratings.len()
    );

    // 2. model = DeepFM(name="DeepFM_Model", embedding_dim=32, deep_layers=[256, 128, 64],
    //                   dropout=0.3, use_bn=True, epochs=20, batch_size=256,
    //                   learning_rate=0.001, verbose=True)
    //    model.fit(user_ids=train_users, item_ids=train_items, ratings=train_ratings)
    let builder = DeepFM::builder()
        .name("DeepFM_Model")
        .embedding_dim(32)
        .deep_layers(&[256, 128, 64])
        .dropout(0.3)
        .use_bn(true)
        .epochs(args.epochs)
        .batch_size(256)
        .learning_rate(0.001)
        .verbose(true)
        .seed(args.seed);
    let user_features = args
        .users
        .as_deref()
        .map(|p| read_features(p, None))
        .transpose()?;
    let item_features = args
        .items
        .as_deref()
        .map(|p| read_features(p, None))
        .transpose()?;
    let mut input = Interactions::new(&train_users, &train_items, &train_ratings);
    if let Some(f) = &user_features {
        input = input.user_features(f);
    }
    if let Some(f) = &item_features {
        input = input.item_features(f);
    }
    let started = Instant::now();
    let model = builder.fit_interactions(input)?;
    println!(
        "trained in {:.1} s ({:?})",
        started.elapsed().as_secs_f64(),
        model.task()
    );

    // 3. score = model.predict(user_id=1, item_id=100)
    let (u, i) = (train_users[0].clone(), train_items[0].clone());
    println!("predict(user {u}, item {i}) = {:.3}", model.predict(&u, &i));

    // 4. preds = model.batch_predict(list(zip(test_users[:100], test_items[:100])))
    let pairs: Vec<(String, String)> = (test_users.iter().cloned())
        .zip(test_items.iter().cloned())
        .take(100)
        .collect();
    let preds = model.batch_predict(&pairs)?;
    let shown: Vec<String> = preds.iter().take(5).map(|p| format!("{p:.3}")).collect();
    println!(
        "batch_predict of {} test pairs: [{}, ...]",
        preds.len(),
        shown.join(", ")
    );

    // 5. recs = model.recommend(user_id=1, top_k=10)
    let recs = model.recommend(&u, 10)?;
    println!("top 10 for user {u} (unrated in training): {recs:?}");

    // 6. rmse = sqrt(mean((test_ratings - predictions) ** 2))
    let (rmse, mae) = model.evaluate(&test_users, &test_items, &test_ratings)?;
    println!("test RMSE {rmse:.4}, MAE {mae:.4}");

    // 7. model.save("deepfm_model.pkl"); loaded = DeepFM.load("deepfm_model.pkl")
    let dir = tempfile::tempdir()?;
    let path = args
        .save
        .unwrap_or_else(|| dir.path().join("deepfm_model.dfm"));
    model.save(&path)?;
    let loaded = DeepFM::<String, String>::load(&path)?;
    let again = loaded.predict(&u, &i);
    println!(
        "loaded from {}: predict(user {u}, item {i}) = {again:.3}",
        path.display()
    );
    anyhow::ensure!(
        again == model.predict(&u, &i),
        "the loaded model predicts differently"
    );
    Ok(())
}

//! Implicit feedback with the NCF paper's protocol: every rating is a positive, each user's
//! latest interaction is held out, the model trains with 4 negatives per positive re-drawn
//! every epoch, and each held-out item is ranked among 100 items the user never interacted
//! with: HR@10 and NDCG@10 (NeuMF reports 0.730 and 0.447 on MovieLens-1M).
//!
//! ```text
//! cargo run --release --example implicit -- ../shared/data/ml-1m/ratings.dat
//! ```

use anyhow::{Context, Result};
use clap::Parser;
use deepfm::api::{DeepFM, NegativeSampling, Task};
use deepfm::data::ratings::read_interactions;
use deepfm::data::split::leave_one_out_by_time;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser)]
#[command(about = "Leave-one-out HR@10 / NDCG@10 of an implicit DeepFM")]
struct Args {
    /// Interactions with timestamps: ratings.dat, u.data, a RecBole .inter file.
    ratings: PathBuf,
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    #[arg(long, default_value_t = 32)]
    embedding_dim: usize,
    #[arg(long, default_value_t = 0.3)]
    dropout: f32,
    #[arg(long, default_value_t = 0.001)]
    learning_rate: f32,
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// Negatives per positive in training.
    #[arg(long, default_value_t = 4)]
    negatives: usize,
    /// Draw negatives by popularity^0.75 instead of uniformly.
    #[arg(long)]
    popularity: bool,
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let data = read_interactions(&args.ratings, false)
        .with_context(|| format!("reading {}", args.ratings.display()))?;
    let (train, test) = leave_one_out_by_time(&data.users, &data.timestamps);
    let pick = |idx: &[usize]| -> (Vec<String>, Vec<String>) {
        let users = idx.iter().map(|&k| data.users[k].clone()).collect();
        let items = idx.iter().map(|&k| data.items[k].clone()).collect();
        (users, items)
    };
    let (train_users, train_items) = pick(&train);
    let (test_users, test_items) = pick(&test);
    println!(
        "{} training positives, {} held out",
        train.len(),
        test.len()
    );
    let ones = vec![1.0f32; train.len()];
    let started = Instant::now();
    let model = DeepFM::builder()
        .task(Task::Implicit)
        .embedding_dim(args.embedding_dim)
        .dropout(args.dropout)
        .learning_rate(args.learning_rate)
        .batch_size(args.batch_size)
        .epochs(args.epochs)
        .negatives(args.negatives)
        .negative_sampling(if args.popularity {
            NegativeSampling::Popularity
        } else {
            NegativeSampling::Uniform
        })
        .verbose(true)
        .seed(args.seed)
        .fit(&train_users, &train_items, &ones)?;
    let seconds = started.elapsed().as_secs_f64();
    let held_out: Vec<(String, String)> = test_users.into_iter().zip(test_items).collect();
    let (hr, ndcg) = model.hit_ratio_ndcg(&held_out, 100, 10, args.seed)?;
    println!(
        "HR@10 {hr:.4}  NDCG@10 {ndcg:.4}  ({} users, trained in {seconds:.0} s)",
        held_out.len()
    );
    Ok(())
}

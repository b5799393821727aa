//! Implicit feedback with the NCF paper's protocol: every rating is a positive, each user's
//! latest interaction is held out, the model trains with 4 negatives per positive re-drawn
//! every epoch, and each held-out item is ranked among 100 items the user never interacted
//! with: HR@10 and NDCG@10 (NeuMF reports 0.730 and 0.447 on MovieLens-1M).
//!
//! The epoch is chosen on each user's second-latest interaction, never on the test one: a
//! first fit trains without it and early-stops on it (its loss over it and as many sampled
//! negatives per positive as training uses); the model evaluated is then trained again on
//! everything but the test interactions, for the best epoch's number of epochs.
//!
//! ```text
//! cargo run --release --example implicit -- ../shared/data/ml-1m/ratings.dat
//! ```

use anyhow::{Context, Result};
use clap::Parser;
use deepfm::api::{DeepFM, Interactions, NegativeSampling, Task};
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
    // The latest interaction of what is left: the validation hold-out.
    let train_users_only: Vec<&String> = train.iter().map(|&k| &data.users[k]).collect();
    let train_times: Vec<u64> = train.iter().map(|&k| data.timestamps[k]).collect();
    let (fit_part, valid_part) = leave_one_out_by_time(&train_users_only, &train_times);
    let fit_idx: Vec<usize> = fit_part.iter().map(|&p| train[p]).collect();
    let valid_idx: Vec<usize> = valid_part.iter().map(|&p| train[p]).collect();
    let pick = |idx: &[usize]| -> (Vec<String>, Vec<String>) {
        let users = idx.iter().map(|&k| data.users[k].clone()).collect();
        let items = idx.iter().map(|&k| data.items[k].clone()).collect();
        (users, items)
    };
    let (train_users, train_items) = pick(&train);
    let (fit_users, fit_items) = pick(&fit_idx);
    let (valid_users, valid_items) = pick(&valid_idx);
    let (test_users, test_items) = pick(&test);
    println!(
        "{} training positives ({} validation, each user's second-latest), {} held out for test",
        train.len(),
        valid_idx.len(),
        test.len()
    );
    let builder = DeepFM::builder()
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
        .seed(args.seed);
    let started = Instant::now();
    let (ones, valid_ones) = (vec![1.0f32; fit_idx.len()], vec![1.0f32; valid_idx.len()]);
    let validated = builder.clone().fit_interactions(
        Interactions::new(&fit_users, &fit_items, &ones).validation(
            &valid_users,
            &valid_items,
            &valid_ones,
        ),
    )?;
    let best = deepfm::train::best_validation(validated.history())
        .context("the validation fit reported no validation loss")?;
    println!(
        "best epoch {} of {} on the validation hold-out (loss {:.4}); training again on all {} \
         training positives for {} epochs",
        best.0,
        validated.history().len(),
        best.1,
        train.len(),
        best.0
    );
    let ones = vec![1.0f32; train.len()];
    let model = builder
        .epochs(best.0)
        .patience(None)
        .fit(&train_users, &train_items, &ones)?;
    let seconds = started.elapsed().as_secs_f64();
    let held_out: Vec<(String, String)> = test_users.into_iter().zip(test_items).collect();
    let (hr, ndcg) = model.hit_ratio_ndcg(&held_out, 100, 10, args.seed)?;
    // For comparison only (nothing is chosen on it): the validated fit's own test figures.
    let (hr_v, ndcg_v) = validated.hit_ratio_ndcg(&held_out, 100, 10, args.seed)?;
    println!(
        "HR@10 {hr:.4}  NDCG@10 {ndcg:.4}  ({} users, both fits in {seconds:.0} s; the validated \
         fit alone: HR@10 {hr_v:.4} NDCG@10 {ndcg_v:.4})",
        held_out.len()
    );
    Ok(())
}

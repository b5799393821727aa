//! `deepfm`: the command-line tool. Parses arguments, calls the library, prints results; errors
//! become messages and a non-zero exit.
//!
//! [`args`] defines the command line; `run` hands each command to the module named after it.
//! `model_io` holds `random`, `import`, `export` and `install`; `bench` holds `bench` and `bench-train`
//! (measured by `throughput`); `recommender` (ratings) and `tabular` (CSV/TSV with a schema)
//! hold the data commands `train` hands on to, and `predict`, `recommend` and `eval`;
//! `resources` the thread pool and temporary directory several commands set up.

use anyhow::{Context, Result};
use args::{Cli, Command};
use clap::Parser;

mod args;
mod bench;
mod demo;
mod inspect;
mod model_io;
mod quantize;
mod recommender;
mod resources;
mod score;
mod tabular;
mod throughput;
mod train;
mod tune;

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Demo { samples, threads } => demo::demo(samples, threads),
        Command::Random { shape, out, seed } => model_io::random(shape, &out, seed),
        Command::Import {
            weights,
            from,
            description,
            spec,
            out,
        } => match (from, description, spec) {
            (Some(from), Some(description), _) => {
                model_io::import_from(from.framework(), &weights, &description, &out)
            }
            (None, _, Some(spec)) => model_io::import(&weights, &spec, &out),
            _ => unreachable!("clap requires --spec or --from with --description"),
        },
        Command::Export {
            model,
            weights,
            spec,
        } => model_io::export(&model, &weights, &spec),
        Command::Install { new, live } => model_io::install(&new, &live),
        Command::Quantize {
            input,
            out,
            mlp,
            table,
            samples,
            tolerance,
            force,
        } => quantize::quantize(quantize::Quantize {
            input: &input,
            out: &out,
            mlp: mlp.map(|m| m.get()),
            table: table.map(|t| t.get()),
            samples,
            tolerance,
            force,
        }),
        Command::Inspect { model, verify } => inspect::inspect(&model, verify),
        Command::Score {
            model,
            input,
            threads,
        } => score::score_tsv(&model, &input, threads),
        Command::Bench(args) => bench::bench(args),
        Command::BenchTrain(args) => bench::bench_train(args),
        Command::Train(args) => train::train(*args),
        Command::Tune(args) => tune::tune(*args),
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
    }
}

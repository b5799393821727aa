//! `deepfm bench` and `deepfm bench-train`: check the arguments, build or open the model, run
//! the measurement ([`crate::throughput`]) and print it.

use crate::args::{BenchArgs, BenchTrainArgs};
use crate::resources::temp_dir;
use crate::throughput::{run_paced, run_training};
use anyhow::{Context, Result, bail};
use deepfm::{Isa, IsaKind, IsaSource, Model, OpenOptions, fixtures};

/// `deepfm bench`: scoring throughput of `--model` (or of a random model of `--shape`).
pub fn bench(args: BenchArgs) -> Result<()> {
    let BenchArgs {
        model,
        shape,
        batch,
        threads,
        seconds,
        gap_ms,
        isa,
        mlp,
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
        None => fixtures::write_random_model(dir.path().join("bench.dfm"), &shape.spec(), 1)?,
    };
    let isa = match isa.as_deref() {
        None => None,
        Some(name) => {
            let kind = IsaKind::from_name(name).with_context(|| {
                format!(
                    "--isa {name:?}: the valid names are {}",
                    IsaKind::NAMES.join(", ")
                )
            })?;
            Some(Isa::new(kind, IsaSource::Flag)?)
        }
    };
    let model = std::sync::Arc::new(Model::open_with(
        &path,
        &OpenOptions {
            isa,
            verify: false,
            mlp: mlp.map(|m| m.get()),
        },
    )?);
    let gap = std::time::Duration::from_secs_f64(gap_ms / 1e3);
    let r = run_paced(&model, batch, threads, seconds, 12345, gap)?;
    println!(
        "{}: batch {} threads {} ({}) isa {} mlp {} table {}{}: {:.0} samples/s, {:.2} µs per call ({} calls)",
        path.display(),
        r.batch,
        r.threads,
        r.mode,
        r.isa,
        r.mlp,
        r.table,
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

/// `deepfm bench-train`: training throughput on random samples of `--shape`.
pub fn bench_train(args: BenchTrainArgs) -> Result<()> {
    use deepfm::train::{BatchNorm, Loss, TrainConfig};
    let BenchTrainArgs {
        shape,
        batch,
        threads,
        seconds,
        optim,
        bn,
        dropout,
        json,
    } = args;
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
    let r = run_training(&spec, config, batch, seconds)?;
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

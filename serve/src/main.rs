//! A scoring service: HTTP on tokio + axum, the model behind a hot-reload handle.
//!
//! ```sh
//! cargo run --release -p deepfm-serve -- --model M.dfm --addr 127.0.0.1:8080
//! curl -s localhost:8080/score -d '{"samples": [{"C1": 3, "I1": 0.5, "genres": [1, 4]}]}'
//! curl -s localhost:8080/reload -d '{"path": "/models/next.dfm"}'
//! ```
//!
//! Endpoints: `POST /score` (`{"samples": [...]}` → `{"scores": [...], "model_version": N}`),
//! `POST /recommend` (`{"user": 7, "k": 10, "exclude": [3]}`, for models saved by
//! `deepfm::api::DeepFM::save` or `deepfm train --ratings`), `POST /reload` (`{"path": "..."}`, validated before the swap),
//! `GET /health`, `GET /metrics` (Prometheus text). Bad input gets 400 with
//! `{"error": ..., "field": ..., "sample": ...}`. `docs/GUIDE.md` ("Serving") has the
//! deployment pattern; `docs/PERFORMANCE.md` the load test (`tools/load/run.py`).

use anyhow::Context;
use clap::{Parser, ValueEnum};
use deepfm_serve::{app, served};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DispatchArg {
    /// Parse on the async worker, score on `--scorers` threads that merge requests queued
    /// together into one batch: the most requests/s under saturation measured here (at a
    /// fixed 5,000 req/s, `inline` had the lower p99 in the run of `docs/PERFORMANCE.md`,
    /// "Load test of the HTTP service").
    Batched,
    /// Parse and score on tokio's blocking pool (`spawn_blocking`), one request at a time.
    Blocking,
    /// Small bodies (`--inline-max-bytes`) on the async worker, larger ones on the blocking pool.
    Auto,
    /// Always on the async worker.
    Inline,
}

/// Serve a DeepFM model over HTTP.
#[derive(Debug, Parser)]
struct Args {
    /// The model file (if it was saved by `deepfm::api::DeepFM::save`, `/recommend` works too).
    #[arg(long)]
    model: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Async worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Most threads of the blocking pool, which parses large bodies, scores requests larger than
    /// `--batch-rows` and, with `--dispatch blocking`, every request (default: two per core).
    /// Each keeps its own scratch space, so this also bounds the service's memory.
    #[arg(long)]
    blocking_threads: Option<usize>,
    /// Where scoring runs.
    #[arg(long, value_enum, default_value = "batched")]
    dispatch: DispatchArg,
    /// Scoring threads of `--dispatch batched` (default: one per core).
    #[arg(long)]
    scorers: Option<usize>,
    /// Most samples `--dispatch batched` merges into one batch.
    #[arg(long, default_value_t = 256)]
    batch_rows: usize,
    /// Largest body (bytes) parsed on the async worker (and scored there, with `auto`).
    #[arg(long, default_value_t = 16 << 10)]
    inline_max_bytes: usize,
    /// Most samples in one `/score` request.
    #[arg(long, default_value_t = 65_536)]
    max_samples: usize,
    /// Largest request body in MiB.
    #[arg(long, default_value_t = 64)]
    max_body_mib: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let handle = deepfm::reload::Reloadable::<served::Served>::open(&args.model)
        .with_context(|| format!("opening {}", args.model.display()))?;
    let defaults = app::Options::default();
    let options = app::Options {
        dispatch: match args.dispatch {
            DispatchArg::Batched => app::Dispatch::Batched,
            DispatchArg::Auto => app::Dispatch::Auto,
            DispatchArg::Inline => app::Dispatch::Inline,
            DispatchArg::Blocking => app::Dispatch::Blocking,
        },
        inline_max_bytes: args.inline_max_bytes,
        scorers: args.scorers.unwrap_or(defaults.scorers),
        batch_rows: args.batch_rows,
        max_samples: args.max_samples,
        max_body_bytes: args.max_body_mib << 20,
    };
    let state = app::AppState::new(handle, options).context("starting the scoring threads")?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads.max(1));
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    runtime.max_blocking_threads(args.blocking_threads.unwrap_or(2 * cores).max(1));
    let runtime = runtime
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("binding {}", args.addr))?;
        let served = state.handle.current();
        eprintln!(
            "serving {} (version {}, {} fields{}) on http://{}",
            args.model.display(),
            served.version(),
            served.model().spec().fields.len(),
            if served.recommender().is_ok() {
                ", /recommend on"
            } else {
                ""
            },
            listener.local_addr()?,
        );
        drop(served);
        app::serve(listener, state, shutdown_signal())
            .await
            .context("serving")
    })
}

/// Completes on Ctrl-C or SIGTERM (what an orchestrator sends before it kills a replica).
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    eprintln!("shutting down: finishing requests in flight");
}

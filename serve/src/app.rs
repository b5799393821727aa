//! The HTTP service: routes, handlers and the state they share.
//!
//! Every request that reads the model takes [`Reloadable::current`] once and keeps that
//! `Arc<Loaded<Served>>` until its response is built, so the `model_version` it reports is the
//! version that computed it, and a reload never tears a response. Scoring is CPU work: by
//! default the async workers parse each body and queue it for a few scoring threads that
//! score requests arriving together as one batch ([`Dispatch::Batched`], `batcher.rs`).
//! The other dispatches are kept for comparison (`docs/PERFORMANCE.md`, "Load test of the HTTP
//! service"): one `spawn_blocking` per request, or scoring inline on the async worker (the least
//! CPU per request, but a worker descheduled by the OS in the middle of a score stalls every
//! connection queued behind it).
//! Every thread that scores keeps its own [`Scratch`].

use super::batcher::{Batcher, score_problem};
use super::metrics::Metrics;
use super::parse::{BadRequest, RawId, RecommendRequest, Samples, parse_recommend, parse_samples};
use super::served::{Recommender, Served};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use deepfm::reload::{Loaded, Reloadable};
use deepfm::{Columns, Model, Scratch, score};
use std::cell::RefCell;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

/// Where scoring runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatch {
    /// Parsed on the async worker (on the blocking pool above `inline_max_bytes`), then queued
    /// for the scoring threads, which score the requests queued together as one batch. A
    /// request of more than `batch_rows` samples is scored alone on the blocking pool.
    Batched,
    /// Parsed and scored on the async worker that received the request.
    Inline,
    /// Parsed and scored on tokio's blocking thread pool (`spawn_blocking`).
    Blocking,
    /// Inline for bodies up to `inline_max_bytes`, on the blocking pool above.
    Auto,
}

/// Limits and choices of the service.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where scoring runs.
    pub dispatch: Dispatch,
    /// Largest body parsed (and with `Auto`, scored) on the async worker; larger ones go to
    /// the blocking pool, so a huge body never holds up the connections of its worker.
    pub inline_max_bytes: usize,
    /// Scoring threads of `Dispatch::Batched`.
    pub scorers: usize,
    /// Most samples `Dispatch::Batched` merges into one batch.
    pub batch_rows: usize,
    /// Most samples in one `/score` request.
    pub max_samples: usize,
    /// Largest request body, in bytes (larger ones get 413).
    pub max_body_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            dispatch: Dispatch::Batched,
            inline_max_bytes: 16 << 10,
            scorers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            batch_rows: 256,
            max_samples: 65_536,
            max_body_bytes: 64 << 20,
        }
    }
}

/// What the handlers share.
#[derive(Debug)]
pub struct AppState {
    /// The model in service, swapped by `/reload`.
    pub handle: Reloadable<Served>,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// Limits and choices.
    pub options: Options,
    /// The scoring threads of `Dispatch::Batched`.
    batcher: Option<Batcher>,
}

impl AppState {
    /// A service around an opened handle; starts the scoring threads `options` ask for.
    pub fn new(handle: Reloadable<Served>, options: Options) -> std::io::Result<Arc<AppState>> {
        let batcher = match options.dispatch {
            Dispatch::Batched => Some(Batcher::start(options.scorers, options.batch_rows)?),
            _ => None,
        };
        Ok(Arc::new(AppState {
            handle,
            metrics: Metrics::default(),
            options,
            batcher,
        }))
    }
}

/// The routes: `POST /score`, `POST /recommend`, `POST /reload`, `GET /health`, `GET /metrics`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/score", post(score_handler))
        .route("/recommend", post(recommend_handler))
        .route("/reload", post(reload_handler))
        .route("/health", get(health_handler))
        .route("/metrics", get(metrics_handler))
        .fallback(|| async {
            json(
                StatusCode::NOT_FOUND,
                BadRequest::new(
                    "no such endpoint (POST /score, /recommend, /reload; GET /health, /metrics)",
                )
                .to_json(),
            )
        })
        .layer(DefaultBodyLimit::max(state.options.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// Serves `listener` until `shutdown` completes, then lets requests in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // Responses are small and written whole: do not let Nagle hold them back.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Counts every response by endpoint and status, with its latency.
async fn track(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let endpoint = match request.uri().path() {
        "/score" => "score",
        "/recommend" => "recommend",
        "/reload" => "reload",
        "/health" => "health",
        "/metrics" => "metrics",
        _ => "other",
    };
    let start = Instant::now();
    let in_flight = state.metrics.start();
    let response = next.run(request).await;
    drop(in_flight);
    state
        .metrics
        .record(endpoint, response.status().as_u16(), start.elapsed());
    response
}

fn json(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn bad_request(problem: &BadRequest) -> Response {
    json(StatusCode::BAD_REQUEST, problem.to_json())
}

/// A body the extractor refused (too large, unreadable) as a JSON error.
fn rejected(rejection: BytesRejection) -> Response {
    json(
        rejection.status(),
        BadRequest::new(rejection.body_text()).to_json(),
    )
}

thread_local! {
    /// The scratch of this thread, sized for the last model it scored with.
    static SCRATCH: RefCell<Option<Scratch>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's scratch, (re)made if it does not fit `model`.
fn with_scratch<R>(model: &Model, f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_some_and(|s| !s.fits(model)) {
            *slot = None;
        }
        f(slot.get_or_insert_with(|| Scratch::new(model)))
    })
}

/// Parses and scores a `/score` body with `served` on this thread; the scores on success.
fn score_body(
    served: &Loaded<Served>,
    body: &[u8],
    max_samples: usize,
) -> Result<Vec<f32>, BadRequest> {
    let samples = parse_samples(body, served.model().spec(), max_samples)?;
    score_here(served, &samples)
}

/// Scores parsed samples with `served` on this thread, with its scratch.
fn score_here(served: &Loaded<Served>, samples: &Samples) -> Result<Vec<f32>, BadRequest> {
    let model = served.model();
    let mut scores = vec![0.0f32; samples.rows()];
    with_scratch(model, |scratch| score(model, samples, scratch, &mut scores))
        .map_err(|e| score_problem(&e))?;
    Ok(scores)
}

/// The `/score` response body.
fn score_reply(scores: &[f32], model_version: u64) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Reply<'a> {
        scores: &'a [f32],
        model_version: u64,
    }
    let reply = Reply {
        scores,
        model_version,
    };
    serde_json::to_vec(&reply).expect("finite scores always serialize")
}

/// Runs `f(body)` on the async worker for small bodies, on the blocking pool for large ones.
async fn off_reactor_if_large<R: Send + 'static>(
    state: &AppState,
    body: Bytes,
    f: impl FnOnce(&[u8]) -> R + Send + 'static,
) -> Result<R, tokio::task::JoinError> {
    if body.len() <= state.options.inline_max_bytes {
        Ok(f(&body))
    } else {
        tokio::task::spawn_blocking(move || f(&body)).await
    }
}

/// Parses `body` and has the scoring threads score it (with whatever else is queued).
async fn score_batched(
    state: &AppState,
    batcher: &Batcher,
    served: Arc<Loaded<Served>>,
    body: Bytes,
) -> Result<Result<Vec<f32>, BadRequest>, String> {
    let max_samples = state.options.max_samples;
    let parsing = served.clone();
    let parse = move |body: &[u8]| parse_samples(body, parsing.model().spec(), max_samples);
    match off_reactor_if_large(state, body, parse).await {
        // A request larger than a merged batch is scored alone on the blocking pool: a huge
        // batch never holds up the scoring threads that the small requests wait for.
        Ok(Ok(samples)) if samples.rows() > state.options.batch_rows => {
            tokio::task::spawn_blocking(move || score_here(&served, &samples))
                .await
                .map_err(|e| e.to_string())
        }
        Ok(Ok(samples)) => batcher
            .submit(served, samples)
            .await
            .map_err(|_| "a scoring thread stopped".to_string()),
        Ok(Err(problem)) => Ok(Err(problem)),
        Err(e) => Err(e.to_string()),
    }
}

async fn score_handler(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return rejected(rejection),
    };
    // Taken once: this version computes and is reported, whatever reloads happen meanwhile.
    let served = state.handle.current();
    let version = served.version();
    let max_samples = state.options.max_samples;
    let result = match (state.options.dispatch, &state.batcher) {
        (Dispatch::Batched, Some(batcher)) => score_batched(&state, batcher, served, body).await,
        (dispatch, _) => {
            let on_this_thread = move |body: &[u8]| score_body(&served, body, max_samples);
            match dispatch {
                Dispatch::Inline => Ok(on_this_thread(&body)),
                Dispatch::Auto => off_reactor_if_large(&state, body, on_this_thread)
                    .await
                    .map_err(|e| e.to_string()),
                Dispatch::Blocking | Dispatch::Batched => {
                    tokio::task::spawn_blocking(move || on_this_thread(&body))
                        .await
                        .map_err(|e| e.to_string())
                }
            }
        }
    };
    match result {
        Ok(Ok(scores)) => {
            state.metrics.add_samples(scores.len());
            json(StatusCode::OK, score_reply(&scores, version))
        }
        Ok(Err(problem)) => bad_request(&problem),
        Err(e) => internal(&e),
    }
}

fn internal(e: &dyn std::fmt::Display) -> Response {
    json(
        StatusCode::INTERNAL_SERVER_ERROR,
        BadRequest::new(format!("internal error: {e}")).to_json(),
    )
}

/// The id a request names, in the id type of `model`.
fn numeric_id(id: &RawId, field: &str) -> Result<u64, BadRequest> {
    match id {
        RawId::Number(n) => Ok(*n),
        RawId::Text(s) => s.parse().map_err(|_| {
            BadRequest::at(format!("{s:?}: this model's ids are integers"), field, None)
        }),
    }
}

fn text_id(id: &RawId) -> String {
    match id {
        RawId::Number(n) => n.to_string(),
        RawId::Text(s) => s.clone(),
    }
}

/// Why a `/recommend` request was not answered.
enum Refusal {
    /// The model in service has no id maps (404), and why.
    NoIdMaps(String),
    /// The request is wrong (400).
    Bad(BadRequest),
    /// Scoring failed inside the model (500).
    Internal(String),
}

impl From<BadRequest> for Refusal {
    fn from(problem: BadRequest) -> Self {
        Refusal::Bad(problem)
    }
}

/// Ranks items for a `/recommend` request; the response body on success.
fn recommend(served: &Loaded<Served>, request: &RecommendRequest) -> Result<Vec<u8>, Refusal> {
    let recommender = served
        .recommender()
        .map_err(|why| Refusal::NoIdMaps(why.to_string()))?;
    let k = request.k;
    let internal = |e: deepfm::api::ApiError| Refusal::Internal(e.to_string());
    let (items, known_user): (Vec<(serde_json::Value, f32)>, bool) = match recommender {
        Recommender::Numeric(m) => {
            let user = numeric_id(&request.user, "user")?;
            let exclude = request
                .exclude
                .iter()
                .map(|id| numeric_id(id, "exclude"))
                .collect::<Result<Vec<_>, _>>()?;
            let ranked = m
                .recommend_with(&user, k, request.exclude_seen, &exclude)
                .map_err(internal)?;
            let items = ranked.into_iter().map(|(i, s)| (i.into(), s)).collect();
            (items, m.users().get(&user).is_some())
        }
        Recommender::Text(m) => {
            let user = text_id(&request.user);
            let exclude: Vec<String> = request.exclude.iter().map(text_id).collect();
            let ranked = m
                .recommend_with(&user, k, request.exclude_seen, &exclude)
                .map_err(internal)?;
            let items = ranked.into_iter().map(|(i, s)| (i.into(), s)).collect();
            (items, m.users().get(&user).is_some())
        }
    };
    let items: Vec<serde_json::Value> = items
        .into_iter()
        .map(|(item, score)| serde_json::json!({"item": item, "score": score}))
        .collect();
    let reply = serde_json::json!({
        "items": items,
        "known_user": known_user,
        "model_version": served.version(),
    });
    Ok(serde_json::to_vec(&reply).expect("a JSON value always serializes"))
}

async fn recommend_handler(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return rejected(rejection),
    };
    let request = match parse_recommend(&body) {
        Ok(request) => request,
        Err(problem) => return bad_request(&problem),
    };
    let served = state.handle.current();
    // Ranking scores every item: always off the reactor.
    match tokio::task::spawn_blocking(move || recommend(&served, &request)).await {
        Ok(Ok(reply)) => json(StatusCode::OK, reply),
        Ok(Err(Refusal::NoIdMaps(why))) => {
            json(StatusCode::NOT_FOUND, BadRequest::new(why).to_json())
        }
        Ok(Err(Refusal::Bad(problem))) => bad_request(&problem),
        Ok(Err(Refusal::Internal(e))) => internal(&e),
        Err(e) => internal(&e),
    }
}

async fn reload_handler(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return rejected(rejection),
    };
    let path = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Object(map)) => match map.get("path") {
            Some(serde_json::Value::String(p)) if map.len() == 1 => std::path::PathBuf::from(p),
            _ => {
                return bad_request(&BadRequest::at(
                    r#"expected {"path": "/path/to/model.dfm"}"#,
                    "path",
                    None,
                ));
            }
        },
        _ => {
            return bad_request(&BadRequest::new(
                r#"expected {"path": "/path/to/model.dfm"}"#,
            ));
        }
    };
    // Opening reads and checks the header, spec and MLP weights: blocking file I/O.
    let worker = state.clone();
    let shown = path.display().to_string();
    let result =
        tokio::task::spawn_blocking(move || worker.handle.reload(&path).map_err(|e| e.to_string()))
            .await;
    match result {
        Ok(Ok(version)) => {
            state.metrics.reloaded(true);
            let reply = serde_json::json!({"model_version": version, "path": shown});
            json(StatusCode::OK, reply.to_string().into_bytes())
        }
        Ok(Err(e)) => {
            state.metrics.reloaded(false);
            let problem = BadRequest::at(
                format!("{shown}: {e}; the previous model stays in service"),
                "path",
                None,
            );
            bad_request(&problem)
        }
        Err(e) => internal(&e),
    }
}

async fn health_handler(State(state): State<Arc<AppState>>) -> Response {
    let served = state.handle.current();
    let spec = served.model().spec();
    let mut reply = serde_json::json!({
        "status": "ok",
        "model_version": served.version(),
        "path": served.source().map(|p| p.display().to_string()),
        "fields": spec.fields.len(),
        "recommend": served.recommender().is_ok(),
    });
    // A model file rewritten in place under the map is the one failure a reload cannot undo.
    if let Err(e) = state.handle.check_current() {
        reply["status"] = "damaged".into();
        reply["error"] = e.to_string().into();
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            reply.to_string().into_bytes(),
        );
    }
    json(StatusCode::OK, reply.to_string().into_bytes())
}

async fn metrics_handler(State(state): State<Arc<AppState>>) -> Response {
    let served = state.handle.current();
    let rows = served.model().spec().total_rows().unwrap_or(0);
    let mut text = state.metrics.render(served.version(), rows);
    if let Some(batcher) = &state.batcher {
        let (groups, requests) = batcher.counts();
        text.push_str(&super::metrics::render_batches(groups, requests));
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        Body::from(text),
    )
        .into_response()
}

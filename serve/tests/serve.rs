//! The scoring service (`deepfm-serve`), started in-process on an ephemeral loopback port:
//! `/score` answers exactly what `deepfm::score` computes, bad input gets 400 naming the field,
//! `/health`, `/metrics` and `/recommend` work, and a hot reload under concurrent requests
//! fails no request and tears no response (each one's scores are exactly those of the model
//! version it reports).

use deepfm::fixtures::{mixed_small, random_batch, write_random_model};
use deepfm::{BatchBuf, Column, Columns, Model, ModelSpec, Scratch, score};
use deepfm_serve::{app, served};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A service running on its own runtime thread; stopped when dropped.
struct Service {
    addr: SocketAddr,
    state: Arc<app::AppState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Service {
    fn start(model: &Path, options: app::Options) -> Service {
        let handle = deepfm::reload::Reloadable::<served::Served>::open(model).unwrap();
        let state = app::AppState::new(handle, options).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = state.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                app::serve(listener, served, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            });
        });
        Service {
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn client(&self) -> Client {
        Client::connect(self.addr)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A minimal HTTP/1.1 keep-alive client (the service always answers with a Content-Length).
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    fn request(&mut self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        self.writer.write_all(head.as_bytes()).unwrap();
        self.writer.write_all(body).unwrap();
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let status: u16 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut length = 0;
        loop {
            line.clear();
            self.reader.read_line(&mut line).unwrap();
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).unwrap();
        (status, body)
    }

    fn post(&mut self, path: &str, body: &Value) -> (u16, Value) {
        let (status, body) = self.request("POST", path, body.to_string().as_bytes());
        (status, serde_json::from_slice(&body).unwrap())
    }

    fn get(&mut self, path: &str) -> (u16, String) {
        let (status, body) = self.request("GET", path, b"");
        (status, String::from_utf8(body).unwrap())
    }
}

/// The `/score` body of a batch: one object per sample, fields by spec name.
fn body_of(spec: &ModelSpec, batch: &BatchBuf) -> Value {
    let samples: Vec<Value> = (0..batch.len())
        .map(|r| {
            let mut sample = serde_json::Map::new();
            for (i, field) in spec.fields.iter().enumerate() {
                let value = match batch.column(i) {
                    Column::Categorical(ids) => json!(ids[r]),
                    Column::Numeric(values) => json!(values[r]),
                    Column::MultiHot {
                        ids,
                        offsets,
                        weights: None,
                    } => json!(ids[offsets[r]..offsets[r + 1]]),
                    Column::MultiHot {
                        ids,
                        offsets,
                        weights: Some(weights),
                    } => {
                        let span = offsets[r]..offsets[r + 1];
                        json!(
                            ids[span.clone()]
                                .iter()
                                .zip(&weights[span])
                                .collect::<Vec<_>>()
                        )
                    }
                };
                sample.insert(field.name.clone(), value);
            }
            Value::Object(sample)
        })
        .collect();
    json!({ "samples": samples })
}

fn local_scores(model: &Model, batch: &BatchBuf) -> Vec<f32> {
    let mut out = vec![0.0; batch.len()];
    score(model, batch, &mut Scratch::new(model), &mut out).unwrap();
    out
}

fn scores_of(reply: &Value) -> Vec<f32> {
    serde_json::from_value(reply["scores"].clone()).unwrap()
}

#[test]
fn scores_match_the_library_and_bad_input_gets_400_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.dfm");
    let spec = mixed_small();
    write_random_model(&path, &spec, 1).unwrap();
    let model = Model::open(&path).unwrap();
    let service = Service::start(&path, app::Options::default());
    let mut client = service.client();

    let (status, health) = client.get("/health");
    assert_eq!(status, 200, "{health}");
    let health: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["model_version"], 1);
    assert_eq!(health["status"], "ok");

    // Batch 1 and a batch of 300: bit-identical to the library.
    for (rows, seed) in [(1, 7), (300, 8)] {
        let batch = random_batch(&spec, rows, seed);
        let (status, reply) = client.post("/score", &body_of(&spec, &batch));
        assert_eq!(status, 200, "{reply}");
        assert_eq!(reply["model_version"], 1);
        assert_eq!(scores_of(&reply), local_scores(&model, &batch));
    }

    let good = body_of(&spec, &random_batch(&spec, 3, 9));
    let with = |sample: usize, field: &str, value: Value| {
        let mut body = good.clone();
        body["samples"][sample][field] = value;
        body
    };
    let mut missing = good.clone();
    missing["samples"][2]
        .as_object_mut()
        .unwrap()
        .remove("genres");
    let cases: Vec<(Value, Option<&str>, Option<usize>)> = vec![
        (with(1, "nope", json!(1)), Some("nope"), Some(1)),
        (missing, Some("genres"), Some(2)),
        (with(0, "user", json!(500)), Some("user"), Some(0)),
        (with(2, "user", json!(-1)), Some("user"), Some(2)),
        (with(1, "user", json!("3")), Some("user"), Some(1)),
        (with(1, "user", json!(2.5)), Some("user"), Some(1)),
        (with(0, "age", json!(1e39)), Some("age"), Some(0)),
        (with(0, "age", json!("1")), Some("age"), Some(0)),
        (with(2, "genres", json!([1, 18])), Some("genres"), Some(2)),
        (with(2, "genres", json!(3)), Some("genres"), Some(2)),
        (with(1, "tags", json!(["a"])), Some("tags"), Some(1)),
        (json!({"samples": []}), Some("samples"), None),
        (json!({"samples": {}}), Some("samples"), None),
        (json!({"rows": []}), Some("rows"), None),
        (json!({}), Some("samples"), None),
        (json!({"samples": [1]}), None, Some(0)),
        (json!([1, 2]), None, None),
    ];
    for (body, field, sample) in cases {
        let (status, reply) = client.post("/score", &body);
        assert_eq!(status, 400, "{body} -> {reply}");
        assert!(reply["error"].is_string(), "{reply}");
        assert_eq!(reply["field"].as_str(), field, "{body} -> {reply}");
        assert_eq!(
            reply["sample"].as_u64(),
            sample.map(|s| s as u64),
            "{reply}"
        );
    }
    for raw in [&b"not json"[..], b"{\"samples\": [", b"", b"\xff\xfe"] {
        let (status, reply) = client.request("POST", "/score", raw);
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(&reply));
    }
    // Still serving after all that.
    let (status, _) = client.post("/score", &good);
    assert_eq!(status, 200);

    let (status, reply) = client.post("/recommend", &json!({"user": 1, "k": 3}));
    assert_eq!(status, 404, "a plain model file has no id maps: {reply}");
    let (status, reply) = client.post("/reload", &json!({"path": dir.path().join("missing.dfm")}));
    assert_eq!(
        (status, reply["field"].as_str()),
        (400, Some("path")),
        "{reply}"
    );
    let (status, _) = client.request("GET", "/nowhere", b"");
    assert_eq!(status, 404);

    let (status, text) = client.get("/metrics");
    assert_eq!(status, 200);
    for line in [
        "deepfm_requests_total{endpoint=\"score\",status=\"200\"} 3",
        "deepfm_requests_total{endpoint=\"score\",status=\"400\"} 21",
        "deepfm_requests_total{endpoint=\"reload\",status=\"400\"} 1",
        "deepfm_request_duration_seconds_count{endpoint=\"score\"} 24",
        "deepfm_samples_scored_total 304",
        "deepfm_model_version 1",
        "deepfm_reload_failures_total 1",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
}

/// A weighted multi-hot field takes `[[id, weight], ...]`, scores as the library does, and
/// a list that is not one gets 400 naming it.
#[test]
fn weighted_lists_are_id_weight_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.dfm");
    let mut spec = mixed_small();
    spec.fields[3].kind = deepfm::FieldKind::MultiHot {
        vocab: 40,
        pooling: deepfm::Pooling::Sum,
        linear_pooling: deepfm::Pooling::Sum,
        padding: None,
        weighted: true,
    };
    write_random_model(&path, &spec, 1).unwrap();
    let model = Model::open(&path).unwrap();
    let service = Service::start(&path, app::Options::default());
    let mut client = service.client();
    let batch = random_batch(&spec, 50, 3);
    let body = body_of(&spec, &batch);
    assert!(body["samples"][0]["tags"].is_array());
    let (status, reply) = client.post("/score", &body);
    assert_eq!(status, 200, "{reply}");
    assert_eq!(scores_of(&reply), local_scores(&model, &batch));
    for bad in [
        json!([3]),
        json!([[3]]),
        json!([[3, "1"]]),
        json!([[3, 1e39]]),
        json!([[40, 1.0]]),
        json!([[3, 1.0, 2.0]]),
    ] {
        let mut body = body.clone();
        body["samples"][1]["tags"] = bad.clone();
        let (status, reply) = client.post("/score", &body);
        assert_eq!(
            (status, reply["field"].as_str(), reply["sample"].as_u64()),
            (400, Some("tags"), Some(1)),
            "{bad} -> {reply}"
        );
    }
}

#[test]
fn a_body_over_the_limit_gets_413() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.dfm");
    let spec = mixed_small();
    write_random_model(&path, &spec, 1).unwrap();
    let options = app::Options {
        max_body_bytes: 4096,
        max_samples: 2,
        ..app::Options::default()
    };
    let service = Service::start(&path, options);
    let mut client = service.client();
    let (status, reply) = client.post("/score", &body_of(&spec, &random_batch(&spec, 100, 1)));
    assert_eq!(status, 413, "{reply}");
    let (status, reply) = client.post("/score", &body_of(&spec, &random_batch(&spec, 3, 1)));
    assert_eq!(
        (status, reply["field"].as_str()),
        (400, Some("samples")),
        "{reply}"
    );
}

#[test]
fn hot_reload_under_load_fails_nothing_and_tears_nothing() {
    // Batched (the default: requests of concurrent clients merged into one batch) and Auto
    // (each request scored alone, inline or on the blocking pool).
    for dispatch in [app::Dispatch::Batched, app::Dispatch::Auto] {
        hot_reload_under_load(dispatch);
    }
}

fn hot_reload_under_load(dispatch: app::Dispatch) {
    let dir = tempfile::tempdir().unwrap();
    let spec = mixed_small();
    let paths = [dir.path().join("a.dfm"), dir.path().join("b.dfm")];
    write_random_model(&paths[0], &spec, 1).unwrap();
    write_random_model(&paths[1], &spec, 2).unwrap();
    let models = [
        Model::open(&paths[0]).unwrap(),
        Model::open(&paths[1]).unwrap(),
    ];
    // Batch 1 and 5 parsed on the async workers, 64 on the blocking pool: both paths. With
    // the batched dispatch, 64 rows is also over `batch_rows`: scored alone on the blocking
    // pool while the small requests are merged on the scoring threads.
    let options = app::Options {
        dispatch,
        inline_max_bytes: 4096,
        batch_rows: 32,
        ..app::Options::default()
    };
    let service = Service::start(&paths[0], options);
    const CLIENTS: usize = 4;
    const RELOADS: usize = 8;
    // Each client sends its own batch (sizes 1 to 64: both ways of parsing) and
    // knows what each model answers for it.
    let work: Vec<(Value, [Vec<f32>; 2])> = (0..CLIENTS)
        .map(|c| {
            let batch = random_batch(&spec, [1, 5, 64, 2][c], 100 + c as u64);
            let expected = [
                local_scores(&models[0], &batch),
                local_scores(&models[1], &batch),
            ];
            assert_ne!(expected[0], expected[1]);
            (body_of(&spec, &batch), expected)
        })
        .collect();
    let done = AtomicBool::new(false);
    let before = service.state.handle.current();
    let first = Arc::downgrade(&before);
    drop(before);
    let versions_seen = std::thread::scope(|scope| {
        let clients: Vec<_> = work
            .iter()
            .map(|(body, expected)| {
                let (done, addr) = (&done, service.addr);
                scope.spawn(move || {
                    let mut client = Client::connect(addr);
                    let mut versions = std::collections::BTreeSet::new();
                    let mut requests = 0;
                    // Bounded: stops after the reloads, or at 20,000 requests whatever happens.
                    while (!done.load(Ordering::Acquire) || requests < 20) && requests < 20_000 {
                        let (status, reply) = client.post("/score", body);
                        assert_eq!(status, 200, "{reply}");
                        let version = reply["model_version"].as_u64().unwrap();
                        // Version 1 is a.dfm, then reloads alternate b, a, b, ...
                        let model = (version as usize + 1) % 2;
                        assert_eq!(
                            scores_of(&reply),
                            expected[model],
                            "torn or mislabelled response at version {version}"
                        );
                        versions.insert(version);
                        requests += 1;
                    }
                    versions
                })
            })
            .collect();
        let mut admin = Client::connect(service.addr);
        for i in 0..RELOADS {
            std::thread::sleep(std::time::Duration::from_millis(15));
            let path = &paths[(i + 1) % 2];
            let (status, reply) = admin.post("/reload", &json!({ "path": path }));
            assert_eq!(status, 200, "{reply}");
            assert_eq!(reply["model_version"], i as u64 + 2);
        }
        done.store(true, Ordering::Release);
        clients
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect::<std::collections::BTreeSet<u64>>()
    });
    assert!(
        versions_seen.len() >= 3,
        "requests saw only versions {versions_seen:?}"
    );
    // Nothing holds version 1 any more: its map is gone.
    assert!(first.upgrade().is_none(), "version 1 is still alive");
    // A value held by a request in flight outlives a reload, and is released with the request.
    let in_flight = service.state.handle.current();
    let held = Arc::downgrade(&in_flight);
    let (status, _) = service
        .client()
        .post("/reload", &json!({ "path": paths[0] }));
    assert_eq!(status, 200);
    assert!(held.upgrade().is_some());
    drop(in_flight);
    assert!(held.upgrade().is_none());
    let (_, text) = service.client().get("/metrics");
    assert!(
        text.lines().any(|l| l == "deepfm_reloads_total 9"),
        "{text}"
    );
    assert!(
        !text.contains("status=\"5") && !text.contains("endpoint=\"score\",status=\"4"),
        "{text}"
    );
}

#[test]
fn recommend_answers_like_the_api_for_a_saved_recommender() {
    use deepfm::api::DeepFM;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec.dfm");
    let (users, items, ratings) = deepfm::fixtures::planted_ratings(30, 25, 600, 1);
    let model = DeepFM::builder()
        .embedding_dim(4)
        .deep_layers(&[8])
        .epochs(1)
        .fit(&users, &items, &ratings)
        .unwrap();
    model.save(&path).unwrap();
    let service = Service::start(&path, app::Options::default());
    let mut client = service.client();
    let user = users[0];
    let exclude = [items[1], items[2]];
    let (status, reply) = client.post(
        "/recommend",
        &json!({"user": user, "k": 5, "exclude": exclude}),
    );
    assert_eq!(status, 200, "{reply}");
    let want = model.recommend_with(&user, 5, true, &exclude).unwrap();
    let got: Vec<(u32, f32)> = reply["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["item"].as_u64().unwrap() as u32,
                e["score"].as_f64().unwrap() as f32,
            )
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(reply["known_user"], true);
    assert_eq!(reply["model_version"], 1);
    // Two fields: user and item, scored by name like any model.
    let field = |i: usize| model.model().spec().fields[i].name.clone();
    let body = json!({"samples": [{ field(0): 1, field(1): 2 }]});
    let (status, reply) = client.post("/score", &body);
    assert_eq!(status, 200, "{reply}");
    for (body, field) in [
        (json!({"user": 1}), "k"),
        (json!({"user": 1, "k": 0}), "k"),
        (json!({"user": [1], "k": 2}), "user"),
        (json!({"user": "x", "k": 2}), "user"),
        (json!({"user": 1, "k": 2, "exclude": 3}), "exclude"),
        (json!({"user": 1, "k": 2, "why": 3}), "why"),
    ] {
        let (status, reply) = client.post("/recommend", &body);
        assert_eq!(status, 400, "{body} -> {reply}");
        assert_eq!(reply["field"], field, "{body} -> {reply}");
    }
}

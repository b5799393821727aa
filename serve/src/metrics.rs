//! The service's counters, rendered as Prometheus text (exposition format 0.0.4) by hand: a few
//! atomics need no metrics crate.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the latency histogram's buckets, in seconds (then `+Inf`).
pub const BUCKETS: [f64; 16] = [
    50e-6, 100e-6, 200e-6, 300e-6, 500e-6, 750e-6, 1e-3, 2e-3, 3e-3, 5e-3, 10e-3, 25e-3, 50e-3,
    100e-3, 500e-3, 1.0,
];

/// The endpoints, as they appear in the `endpoint` label.
pub const ENDPOINTS: [&str; 6] = ["score", "recommend", "reload", "health", "metrics", "other"];

/// A cumulative latency histogram.
#[derive(Debug, Default)]
struct Histogram {
    /// Count per bucket (not cumulative; the last one is `+Inf`).
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    fn observe(&self, elapsed: Duration) {
        let s = elapsed.as_secs_f64();
        let i = BUCKETS.partition_point(|&b| b < s);
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_ns
            .fetch_add(elapsed.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
    }
}

/// Everything `/metrics` reports.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests by (endpoint, status code). A mutex is fine: one short critical section per
    /// request, next to a scoring call of tens of microseconds or more.
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    latency: [Histogram; ENDPOINTS.len()],
    samples_scored: AtomicU64,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    in_flight: AtomicU64,
}

/// The index of `endpoint` in [`ENDPOINTS`] (unknown names count as `other`).
fn endpoint_index(endpoint: &str) -> usize {
    ENDPOINTS
        .iter()
        .position(|&e| e == endpoint)
        .unwrap_or(ENDPOINTS.len() - 1)
}

impl Metrics {
    /// Counts one finished request.
    pub fn record(&self, endpoint: &'static str, status: u16, elapsed: Duration) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((endpoint, status))
            .or_default() += 1;
        self.latency[endpoint_index(endpoint)].observe(elapsed);
    }

    /// Counts samples scored by `/score`.
    pub fn add_samples(&self, n: usize) {
        self.samples_scored.fetch_add(n as u64, Relaxed);
    }

    /// Counts a reload attempt.
    pub fn reloaded(&self, ok: bool) {
        if ok {
            &self.reloads_ok
        } else {
            &self.reloads_failed
        }
        .fetch_add(1, Relaxed);
    }

    /// A request started; the returned guard marks its end when dropped.
    pub fn start(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Relaxed);
        InFlight(self)
    }

    /// The Prometheus text exposition, with the model version in service.
    pub fn render(&self, model_version: u64, model_rows: u64) -> String {
        let mut out = String::with_capacity(4096);
        let w = &mut out;
        // Writing to a String cannot fail.
        let _ = writeln!(
            w,
            "# HELP deepfm_requests_total Requests answered, by endpoint and HTTP status."
        );
        let _ = writeln!(w, "# TYPE deepfm_requests_total counter");
        for ((endpoint, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                w,
                "deepfm_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
            );
        }
        let _ = writeln!(
            w,
            "# HELP deepfm_request_duration_seconds Time from the request reaching the handler to the response being ready."
        );
        let _ = writeln!(w, "# TYPE deepfm_request_duration_seconds histogram");
        for (endpoint, h) in ENDPOINTS.iter().zip(&self.latency) {
            let mut cumulative = 0;
            for (i, count) in h.counts.iter().enumerate() {
                cumulative += count.load(Relaxed);
                let le = BUCKETS.get(i).map_or("+Inf".to_string(), |b| b.to_string());
                let _ = writeln!(
                    w,
                    "deepfm_request_duration_seconds_bucket{{endpoint=\"{endpoint}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let sum = h.sum_ns.load(Relaxed) as f64 * 1e-9;
            let _ = writeln!(
                w,
                "deepfm_request_duration_seconds_sum{{endpoint=\"{endpoint}\"}} {sum}"
            );
            let _ = writeln!(
                w,
                "deepfm_request_duration_seconds_count{{endpoint=\"{endpoint}\"}} {cumulative}"
            );
        }
        let gauges: [(&str, &str, &str, u64); 6] = [
            (
                "deepfm_samples_scored_total",
                "counter",
                "Samples scored by /score.",
                self.samples_scored.load(Relaxed),
            ),
            (
                "deepfm_reloads_total",
                "counter",
                "Successful reloads.",
                self.reloads_ok.load(Relaxed),
            ),
            (
                "deepfm_reload_failures_total",
                "counter",
                "Reloads refused (the old model stayed in service).",
                self.reloads_failed.load(Relaxed),
            ),
            (
                "deepfm_in_flight_requests",
                "gauge",
                "Requests being handled now.",
                self.in_flight.load(Relaxed),
            ),
            (
                "deepfm_model_version",
                "gauge",
                "Version of the model in service (1 at start, +1 per reload).",
                model_version,
            ),
            (
                "deepfm_model_embedding_rows",
                "gauge",
                "Rows of the embedding table of the model in service.",
                model_rows,
            ),
        ];
        for (name, kind, help, value) in gauges {
            let _ = writeln!(w, "# HELP {name} {help}");
            let _ = writeln!(w, "# TYPE {name} {kind}");
            let _ = writeln!(w, "{name} {value}");
        }
        out
    }
}

/// Marks a request in flight until dropped.
#[derive(Debug)]
pub struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// The micro-batcher's counters as Prometheus text: scoring passes and the requests they
/// answered (requests / passes is the mean batch, in requests).
pub fn render_batches(passes: u64, requests: u64) -> String {
    format!(
        "# HELP deepfm_scoring_passes_total Batches the scoring threads scored (requests queued together are merged).\n\
         # TYPE deepfm_scoring_passes_total counter\n\
         deepfm_scoring_passes_total {passes}\n\
         # HELP deepfm_scoring_pass_requests_total Requests answered by those batches.\n\
         # TYPE deepfm_scoring_pass_requests_total counter\n\
         deepfm_scoring_pass_requests_total {requests}\n"
    )
}

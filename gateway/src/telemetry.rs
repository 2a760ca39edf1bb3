//! Request metrics and the Prometheus recorder, installed once per process.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The projection lags' bucket bounds, in seconds.
const LAG_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.0175, 0.02, 0.025, 0.03, 0.035,
    0.04, 0.05, 0.06, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process-wide Prometheus handle; the first call installs the recorder. `None` when another
/// recorder was installed first (then `/metrics` answers empty rather than failing).
pub fn prometheus() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                // The projection lag has targets (50 ms embedded, 100 ms through NATS) and is
                // compared across runs: finer bounds below 100 ms than other durations, so a
                // p99 is not read off a bucket as wide as 10–25 ms. (A full name wins over the
                // suffix below.)
                .set_buckets_for_metric(
                    Matcher::Full("lianxi_projection_lag_seconds".to_owned()),
                    LAG_BUCKETS,
                )
                .ok()?
                .set_buckets_for_metric(
                    Matcher::Full("lianxi_projection_commit_lag_seconds".to_owned()),
                    LAG_BUCKETS,
                )
                .ok()?
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".to_owned()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0,
                    ],
                )
                .ok()?
                // Sizes (requests or events per group commit) rather than durations.
                .set_buckets_for_metric(
                    Matcher::Prefix("lianxi_store_batch".to_owned()),
                    &[
                        1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
                    ],
                )
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            Some(handle)
        })
        .clone()
}

/// Counts requests and their latency by route template and status.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("route", route), ("method", method), ("status", status)];
    metrics::counter!("lianxi_http_requests_total", &labels).increment(1);
    metrics::histogram!("lianxi_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

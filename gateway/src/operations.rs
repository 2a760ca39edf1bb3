//! The operations endpoints alone (`/healthz`, `/readyz`, `/metrics`), for processes of the
//! distributed mode that serve no API (a relay, a projector process), so every process is
//! watched the same way.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use store::EventStore;

use crate::error::ApiError;
use crate::routes::health::{healthz, Health};
use crate::telemetry;

/// Whether the process reaches the message bus (NATS) now; `/readyz` answers 503
/// `bus_unavailable` while it does not.
pub type BusCheck = Arc<dyn Fn() -> bool + Send + Sync>;

/// What the operations endpoints look at.
#[derive(Clone)]
struct Operations {
    store: Arc<dyn EventStore>,
    bus: Option<BusCheck>,
    metrics: Option<PrometheusHandle>,
}

/// `/healthz` (the process is up), `/readyz` (its store answers, and its bus when it has one)
/// and `/metrics`, with the same bodies and problem+json errors as the API's; anything else is
/// a 404.
pub fn operations_router(store: Arc<dyn EventStore>, bus: Option<BusCheck>) -> Router {
    let state = Operations {
        store,
        bus,
        metrics: telemetry::prometheus(),
    };
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(crate::not_found)
        .with_state(state)
}

async fn readyz(State(state): State<Operations>) -> Response {
    if let Err(error) = state.store.ping().await {
        return ApiError::from(error).into_response();
    }
    if state.bus.as_ref().is_some_and(|connected| !connected()) {
        return ApiError::BusUnavailable.into_response();
    }
    Json(Health { status: "ready" }).into_response()
}

async fn metrics(State(state): State<Operations>) -> Response {
    let body = state.metrics.map(|h| h.render()).unwrap_or_default();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        body,
    )
        .into_response()
}

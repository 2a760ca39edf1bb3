//! The operations endpoints alone (`/healthz`, `/readyz`, `/metrics`), for processes of the
//! distributed mode that serve no API (a relay), so every process is watched the same way.

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

/// What the operations endpoints look at.
#[derive(Clone)]
struct Operations {
    store: Arc<dyn EventStore>,
    metrics: Option<PrometheusHandle>,
}

/// `/healthz` (the process is up), `/readyz` (its store answers) and `/metrics`, with the same
/// bodies and problem+json errors as the API's; anything else is a 404.
pub fn operations_router(store: Arc<dyn EventStore>) -> Router {
    let state = Operations {
        store,
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
    match state.store.ping().await {
        Ok(()) => Json(Health { status: "ready" }).into_response(),
        Err(error) => ApiError::from(error).into_response(),
    }
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

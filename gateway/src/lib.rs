//! The HTTP gateway: thin handlers that parse, authenticate and hand over to `commands`.
//!
//! No business rule lives here. [`router`] builds the whole API from an [`AppState`], so tests
//! can drive it in-process; [`serve`] runs it on a listener until a shutdown future resolves,
//! letting in-flight requests finish.

pub mod error;
mod extract;
pub mod openapi;
pub mod routes;
pub mod telemetry;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use commands::{CommandHandler, TokenService};
use metrics_exporter_prometheus::PrometheusHandle;
use store::EventStore;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

pub use extract::BODY_LIMIT;

/// Everything a request handler may reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn EventStore>,
    pub handler: CommandHandler,
    pub tokens: TokenService,
    pub metrics: Option<PrometheusHandle>,
}

impl AppState {
    pub fn new(store: Arc<dyn EventStore>, tokens: TokenService) -> Self {
        Self {
            handler: CommandHandler::new(store.clone()),
            store,
            tokens,
            metrics: telemetry::prometheus(),
        }
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole HTTP API.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/v1/commands/{name}", post(routes::commands::send_command))
        .route("/v1/tokens", post(routes::tokens::issue_token))
        .route("/v1/streams/{stream}/events", get(routes::events::stream_events))
        .route("/v1/events", get(routes::events::all_events))
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .route("/metrics", get(routes::health::metrics))
        .route("/openapi.json", get(openapi_json))
        .fallback(not_found)
        .with_state(state);

    api.layer(axum::middleware::from_fn(telemetry::track))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(30),
        ))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                let route = request
                    .extensions()
                    .get::<MatchedPath>()
                    .map(|p| p.as_str().to_owned());
                let request_id = request
                    .headers()
                    .get(&REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                tracing::info_span!(
                    "request",
                    method = %request.method(),
                    uri = %request.uri(),
                    route,
                    request_id,
                    actor = tracing::field::Empty,
                    command = tracing::field::Empty,
                )
            }),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

async fn openapi_json() -> impl IntoResponse {
    Json(openapi::ApiDoc::openapi())
}

async fn not_found(request: Request) -> error::ApiError {
    error::ApiError::NotFound(format!("no route for {} {}", request.method(), request.uri().path()))
}

/// Serves `router` on `listener` until `shutdown` resolves; requests already in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

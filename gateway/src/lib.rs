//! The HTTP gateway: thin handlers that parse, authenticate and hand over to `commands`.
//!
//! No business rule lives here. [`router`] builds the whole API from an [`AppState`], so tests
//! can drive it in-process; [`serve`] runs it on a listener until a shutdown future resolves,
//! letting in-flight requests finish.

pub mod error;
mod extract;
pub mod openapi;
mod operations;
pub mod routes;
mod scope;
mod server;
pub mod telemetry;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderName;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use commands::{CommandHandler, TokenService};
use metrics_exporter_prometheus::PrometheusHandle;
use store::EventStore;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

pub use extract::BODY_LIMIT;
pub use operations::{operations_router, BusCheck};
pub use server::serve;

/// Everything a request handler may reach: shared behind one `Arc`, since axum hands every
/// request its own copy (a copy field by field was ~2 % of a board read's CPU).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] shares.
pub struct Shared {
    pub store: Arc<dyn EventStore>,
    pub handler: CommandHandler,
    pub tokens: TokenService,
    pub metrics: Option<PrometheusHandle>,
    /// The projectors of this process and their read models.
    pub runner: projections::runner::Runner,
    /// Boards' project rows between the events that change them.
    pub boards: Arc<projections::projectors::board::BoardCache>,
    districts: scope::DistrictResolver,
    /// Flips to `true` when the server begins to stop: long-lived responses (the live feed)
    /// end then, so they do not hold up a graceful shutdown.
    stopping: Arc<tokio::sync::watch::Sender<bool>>,
}

impl AppState {
    pub fn new(
        store: Arc<dyn EventStore>,
        tokens: TokenService,
        runner: projections::runner::Runner,
    ) -> Self {
        // Boards are served from memory only where the board projector runs in this process
        // (it records each change); a gateway observing projectors elsewhere confirms each read.
        let boards = if runner.is_observer() {
            projections::projectors::board::BoardCache::confirming_each_read()
        } else {
            projections::projectors::board::BoardCache::default()
        };
        Self(Arc::new(Shared {
            runner,
            boards: Arc::new(boards),
            handler: CommandHandler::new(store.clone()),
            districts: scope::DistrictResolver::new(store.clone()),
            stopping: Arc::new(tokio::sync::watch::channel(false).0),
            store,
            tokens,
            metrics: telemetry::prometheus(),
        }))
    }

    /// Tells long-lived responses that the server is stopping.
    pub fn begin_shutdown(&self) {
        self.stopping.send_replace(true);
    }

    /// Resolves once [`AppState::begin_shutdown`] has been called.
    pub fn stopping(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.stopping.subscribe();
        async move {
            let _ = rx.wait_for(|stopping| *stopping).await;
        }
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The log position a read answers as of (API.md, "Queries").
pub const PROJECTION_POSITION: HeaderName = HeaderName::from_static("x-projection-position");

/// The whole HTTP API.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/v1/commands/{name}", post(routes::commands::send_command))
        .route("/v1/tokens", post(routes::tokens::issue_token))
        .route(
            "/v1/streams/{stream}/events",
            get(routes::events::stream_events),
        )
        .route("/v1/events", get(routes::events::all_events))
        .route("/v1/events/live", get(routes::live::live_events))
        .route("/v1/trace", get(routes::trace::trace))
        .route(
            "/v1/communities/{id}/board",
            get(routes::reads::community_board),
        )
        .route("/v1/units/{id}", get(routes::items::unit))
        .route("/v1/projects/{id}", get(routes::items::project))
        .route("/v1/meetings/{id}", get(routes::items::meeting))
        .route("/v1/requests/{id}", get(routes::items::request))
        .route(
            "/v1/districts/{id}/stats",
            get(routes::stats::district_stats),
        )
        .route("/v1/projections", get(routes::reads::projections))
        .route(
            "/v1/projections/{name}/rebuild",
            post(routes::rebuild::rebuild_projection),
        )
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .route("/metrics", get(routes::health::metrics))
        .route("/openapi.json", get(openapi_json))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);

    api.layer(axum::middleware::from_fn(telemetry::track))
        .layer(axum::middleware::from_fn(deadline))
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

/// Every request gets [`REQUEST_TIMEOUT`]; past it the client gets a problem+json 503.
async fn deadline(request: Request, next: axum::middleware::Next) -> axum::response::Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => error::ApiError::Timeout(REQUEST_TIMEOUT).into_response(),
    }
}

/// How long one request may take; a read waiting for `X-Min-Position` waits at most 5 s of it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

async fn method_not_allowed(request: Request) -> error::ApiError {
    error::ApiError::MethodNotAllowed(request.method().to_string())
}

async fn not_found(request: Request) -> error::ApiError {
    error::ApiError::NotFound(format!(
        "no route for {} {}",
        request.method(),
        request.uri().path()
    ))
}

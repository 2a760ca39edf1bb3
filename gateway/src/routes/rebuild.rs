//! `POST /v1/projections/{name}/rebuild`: the same rebuild as `lianxi projections rebuild NAME`
//! ([`projections::rebuild`]), started in the background of the server.
//!
//! Admins only (403 otherwise); an unknown name is 404. The answer is 202 as soon as the new
//! generation exists, naming it; `GET /v1/projections` then shows it `building` beside the
//! generation that keeps answering, until it has caught up and takes over. A rebuild cut short
//! by a stop (of the server or of the CLI) goes on from its checkpoint when the server starts.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use commands::Role;
use projections::rebuild;
use projections::runner::RunState;
use serde::Serialize;
use tracing::Instrument;
use utoipa::ToSchema;

use crate::error::{ApiError, Result};
use crate::extract::Authenticated;
use crate::AppState;

/// A rebuild that has started.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RebuildAccepted {
    /// The projection being rebuilt.
    pub name: String,
    /// The new generation, built from position 0 beside the one that answers now.
    pub generation: i64,
    /// The projector code's version building it.
    pub version: u32,
    /// Always `building` here; follow it in `GET /v1/projections`.
    pub state: String,
}

/// Rebuilds a projection from the whole log into a new generation; the current one keeps
/// answering until the new one has caught up.
#[utoipa::path(
    post,
    path = "/v1/projections/{name}/rebuild",
    tag = "read models",
    params(("name" = String, Path, description = "The projection, e.g. `board`")),
    responses(
        (status = 202, description = "The rebuild has started", body = RebuildAccepted),
        (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No projection of that name", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn rebuild_projection(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Authenticated(principal): Authenticated,
) -> Result<(StatusCode, Json<RebuildAccepted>)> {
    if principal.role != Role::Admin {
        return Err(ApiError::Forbidden(
            "only an admin may rebuild projections".to_owned(),
        ));
    }
    let Some(mut projector) = rebuild::projector(&name) else {
        return Err(ApiError::NotFound(format!(
            "no projection {name:?}; the projections are: {}",
            rebuild::names().join(", ")
        )));
    };
    let db = state.runner.db().clone();
    let fresh = rebuild::start(&db, projector.as_mut())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let accepted = RebuildAccepted {
        name: name.clone(),
        generation: fresh.generation,
        version: projector.version(),
        state: "building".to_owned(),
    };
    spawn_build(state, projector, fresh);
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// Builds `fresh` (a new generation of `projector`'s projection) in the background until it has
/// caught up and taken over: for the endpoint, and at start-up for the rebuilds a stopped
/// process left half-way ([`rebuild::interrupted`]).
pub fn spawn_build(
    state: AppState,
    mut projector: Box<dyn projections::Projector>,
    fresh: projections::readdb::GenerationRow,
) {
    let name = projector.name();
    let span = tracing::info_span!("rebuild", projection = %name, generation = fresh.generation);
    tokio::spawn(
        async move {
            let store = state.store.clone();
            let db = state.runner.db().clone();
            match rebuild::build(store.as_ref(), &db, projector.as_mut(), &fresh, |_| {}).await {
                Ok(done) => {
                    tracing::info!(position = done.position, elapsed = ?done.elapsed, "rebuild done");
                    // A projector that had stopped on an event no longer follows the log; the
                    // new generation got past that event, so follow it again (here, unless
                    // this is a gateway whose projectors run in projector processes: those
                    // take the new generation up themselves).
                    let stopped = !state.runner.is_observer()
                        && state.runner.progress(name).is_some_and(|rx| {
                        matches!(rx.borrow().state, RunState::Failed { .. })
                    });
                    if stopped {
                        if let Some(projector) = rebuild::projector(name) {
                            state.runner.spawn(projector);
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "rebuild failed"),
            }
        }
        .instrument(span),
    );
}

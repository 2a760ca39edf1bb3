//! Read models: every answer says how far into the log it is (`X-Projection-Position`), and a
//! client that just wrote can ask to wait until its write is visible (`X-Min-Position`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use commands::{Principal, Role};
use projections::projectors::board;
use projections::runner::RunState;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::{ApiError, Result};
use crate::extract::Authenticated;
use crate::AppState;

/// The longest a read waits for `X-Min-Position`.
pub const MAX_WAIT: Duration = Duration::from_secs(5);

/// Waits (up to [`MAX_WAIT`]) for `projection` to reach the client's `X-Min-Position`, and
/// returns the position the answer will be as of.
pub(crate) async fn reached(
    state: &AppState,
    projection: &str,
    headers: &HeaderMap,
) -> Result<i64> {
    let wanted = match headers.get("x-min-position") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .filter(|v| *v >= 0)
                .ok_or_else(|| {
                    ApiError::InvalidHeader("X-Min-Position must be a log position".to_owned())
                })?,
        ),
    };
    let now = state
        .runner
        .wait_for(projection, wanted.unwrap_or(0), MAX_WAIT)
        .await
        .ok_or_else(|| ApiError::Internal(format!("projection {projection} is not running")))?;
    match wanted {
        Some(wanted) if now < wanted => Err(ApiError::ProjectionBehind {
            projection: projection.to_owned(),
            reached: now,
            wanted,
        }),
        _ => Ok(now),
    }
}

pub(crate) fn with_position(body: impl IntoResponse, position: i64) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(crate::PROJECTION_POSITION, HeaderValue::from(position));
    response
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AsOf {
    /// The business time that decides "last held", "next scheduled" and "this quarter"
    /// (RFC 3339; default: now).
    pub as_of: Option<DateTime<Utc>>,
}

/// Whether `principal` may read things of `community` (in `district`).
pub(crate) fn may_read_community(
    principal: &Principal,
    community: Uuid,
    district: Uuid,
    members: &[Uuid],
) -> bool {
    match principal.role {
        Role::Admin => true,
        Role::DistrictAdmin | Role::Analyst | Role::Auditor => principal.scope == Some(district),
        Role::CommunitySecretary => principal.scope == Some(community),
        Role::UnitRep => principal.scope.is_some_and(|unit| members.contains(&unit)),
    }
}

/// A community's board.
#[utoipa::path(
    get,
    path = "/v1/communities/{id}/board",
    tag = "read models",
    params(("id" = Uuid, Path, description = "The community"), AsOf,
        ("X-Min-Position" = Option<i64>, Header, description = "Wait (up to 5 s) until the board has reached this log position"),
        ("If-None-Match" = Option<String>, Header, description = "The board's `ETag` from an earlier answer: 304 while the board is still that one")),
    responses(
        (status = 200, body = board::Board, headers(("X-Projection-Position" = i64), ("ETag" = String))),
        (status = 304, description = "The board is still the one `If-None-Match` names", headers(("X-Projection-Position" = i64), ("ETag" = String))),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn community_board(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Authenticated(principal): Authenticated,
    query: std::result::Result<Query<AsOf>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response> {
    let Query(query) = query.map_err(|e| ApiError::InvalidQuery(e.body_text()))?;
    let id =
        Uuid::parse_str(&id).map_err(|_| ApiError::NotFound(format!("no community {id:?}")))?;
    let position = reached(&state, board::NAME, &headers).await?;
    let as_of = query.as_of.unwrap_or_else(Utc::now);
    let db = state.runner.db();
    let found = match state.runner.progress(board::NAME) {
        Some(progress) => {
            let (generation, written) = {
                let progress = progress.borrow();
                (progress.generation, progress.position)
            };
            board::board_rendered(db, id, as_of, &state.boards, generation, written).await
        }
        None => board::board(db, id, as_of)
            .await
            .and_then(|found| found.as_ref().map(board::RenderedBoard::render).transpose())
            .map(|found| found.map(Arc::new)),
    }
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let Some(found) = found else {
        return Err(ApiError::NotFound(format!("no community {id}")));
    };
    if !may_read_community(&principal, id, found.district_id, &found.members) {
        return Err(ApiError::Forbidden(
            "this community is outside the token's scope".to_owned(),
        ));
    }
    let etag = HeaderValue::from_str(&found.etag)
        .map_err(|e| ApiError::Internal(format!("board entity tag: {e}")))?;
    // Checked after the scope: a 304 says as much about a board as its body.
    if none_match_fails(&headers, &found.etag) {
        let not_modified = (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag), (header::CACHE_CONTROL, NO_CACHE)],
        );
        return Ok(with_position(not_modified, position));
    }
    // Rendered once per change of the board: the bytes are shared, not serialised per read.
    let body = (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, NO_CACHE),
        ],
        found.json.clone(),
    );
    Ok(with_position(body, position))
}

/// Boards change under a client's feet: a cache may keep one but must ask again (with
/// `If-None-Match`) before each use.
const NO_CACHE: HeaderValue = HeaderValue::from_static("no-cache");

/// Whether the request's `If-None-Match` names `etag` (or is `*`), so the answer is 304: the
/// weak comparison of RFC 9110 §13.1.2, over every value of every such header.
fn none_match_fails(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// One projection's progress.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectionStatus {
    pub name: String,
    /// The projector code's version of the generation that answers.
    pub version: i64,
    pub generation: i64,
    pub position: i64,
    /// How many events it is behind the log head.
    pub lag: i64,
    /// `building`, `live`, `failed` or `retired`.
    pub state: String,
    pub active: bool,
    pub error: Option<String>,
    pub error_position: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectionsView {
    pub head: i64,
    pub projections: Vec<ProjectionStatus>,
}

/// Every projection (every generation being built or answering): version, position, lag, state.
#[utoipa::path(
    get,
    path = "/v1/projections",
    tag = "read models",
    responses((status = 200, body = ProjectionsView)),
    security(("bearer" = []))
)]
pub async fn projections(
    State(state): State<AppState>,
    Authenticated(_principal): Authenticated,
) -> Result<Response> {
    let head = state.store.head().await?;
    let rows = state
        .runner
        .db()
        .generations()
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut out = Vec::new();
    for row in rows.into_iter().filter(|r| r.state != "retired") {
        // This process's runner knows the freshest position and whether it has stopped.
        let live = state
            .runner
            .progress(&row.name)
            .map(|rx| rx.borrow().clone())
            .filter(|p| p.generation == row.generation);
        let (position, run_state, error, error_position) = match live {
            Some(p) => match p.state {
                RunState::Failed { position, error } => {
                    (p.position, "failed".to_owned(), Some(error), Some(position))
                }
                RunState::Building => (p.position, "building".to_owned(), None, None),
                RunState::Live => (p.position, "live".to_owned(), None, None),
            },
            None => (
                row.position,
                row.state.clone(),
                row.error.clone(),
                row.error_position,
            ),
        };
        out.push(ProjectionStatus {
            name: row.name,
            version: row.version,
            generation: row.generation,
            position,
            lag: (head - position).max(0),
            state: run_state,
            active: row.active,
            error,
            error_position,
        });
    }
    Ok(with_position(
        Json(ProjectionsView {
            head,
            projections: out,
        }),
        head,
    ))
}

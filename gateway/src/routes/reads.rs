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
    let wanted = min_position(headers)?;
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

/// The request's `X-Min-Position`, if it sent one.
fn min_position(headers: &HeaderMap) -> Result<Option<i64>> {
    headers
        .get("x-min-position")
        .map(|value| {
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .filter(|v| *v >= 0)
                .ok_or_else(|| {
                    ApiError::InvalidHeader("X-Min-Position must be a log position".to_owned())
                })
        })
        .transpose()
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
        ("If-None-Match" = Option<String>, Header, description = "The board's `ETag` from an earlier answer: 304 while the board is still that one"),
        ("Accept-Encoding" = Option<String>, Header, description = "With `gzip` (or `*`) accepted, the board comes gzip-compressed (`Content-Encoding: gzip`, about a quarter of the size) under an `ETag` of its own")),
    responses(
        (status = 200, body = board::Board, headers(("X-Projection-Position" = i64), ("ETag" = String), ("Content-Encoding" = Option<String>, description = "`gzip` when the client accepts it"), ("Vary" = String))),
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
    let db = state.runner.db();
    let found = match (state.runner.progress(board::NAME), query.as_of) {
        // As of now: the rendering before a change may answer while the new one is made.
        (Some(progress), None) => {
            let (generation, written) = {
                let progress = progress.borrow();
                (progress.generation, progress.position)
            };
            let wanted = min_position(&headers)?.unwrap_or(0);
            board::board_served(db, id, &state.boards, generation, written, wanted).await
        }
        (Some(progress), Some(as_of)) => {
            let (generation, written) = {
                let progress = progress.borrow();
                (progress.generation, progress.position)
            };
            board::board_rendered(db, id, as_of, &state.boards, generation, written)
                .await
                .map(|found| found.map(|found| (found, position)))
        }
        (None, as_of) => board::board(db, id, as_of.unwrap_or_else(Utc::now))
            .await
            .and_then(|found| found.as_ref().map(board::RenderedBoard::render).transpose())
            .map(|found| found.map(|found| (Arc::new(found), position))),
    }
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let Some((found, position)) = found else {
        return Err(ApiError::NotFound(format!("no community {id}")));
    };
    if !may_read_community(&principal, id, found.district_id, &found.members) {
        return Err(ApiError::Forbidden(
            "this community is outside the token's scope".to_owned(),
        ));
    }
    // The representation: gzip for a client that accepts it, the JSON as it is otherwise.
    // Each has its own strong entity tag, so a cache never takes one for the other.
    let gzip = accepts_gzip(&headers).then(|| found.gzip()).flatten();
    let etag = match gzip {
        Some(_) => gzip_etag(&found.etag),
        None => found.etag.clone(),
    };
    let etag_header = HeaderValue::from_str(&etag)
        .map_err(|e| ApiError::Internal(format!("board entity tag: {e}")))?;
    let vary = (header::VARY, HeaderValue::from_static("accept-encoding"));
    // Checked after the scope: a 304 says as much about a board as its body.
    if none_match_fails(&headers, &etag) {
        let not_modified = (
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, etag_header),
                (header::CACHE_CONTROL, NO_CACHE),
                vary,
            ],
        );
        return Ok(with_position(not_modified, position));
    }
    // Rendered (and compressed) once per change of the board: the bytes are shared, not
    // serialised per read.
    let json = HeaderValue::from_static("application/json");
    let response = match gzip {
        Some(body) => (
            [
                (header::CONTENT_TYPE, json),
                (header::CONTENT_ENCODING, HeaderValue::from_static("gzip")),
                (header::ETAG, etag_header),
                (header::CACHE_CONTROL, NO_CACHE),
                vary,
            ],
            body.clone(),
        )
            .into_response(),
        None => (
            [
                (header::CONTENT_TYPE, json),
                (header::ETAG, etag_header),
                (header::CACHE_CONTROL, NO_CACHE),
                vary,
            ],
            found.json.clone(),
        )
            .into_response(),
    };
    Ok(with_position(response, position))
}

/// The entity tag of a board's gzip representation: the JSON's tag with `-gzip` inside the
/// quotes, as HTTP servers commonly mark an encoding.
fn gzip_etag(etag: &str) -> String {
    match etag.strip_suffix('"') {
        Some(open) => format!("{open}-gzip\""),
        None => format!("{etag}-gzip"),
    }
}

/// Whether `Accept-Encoding` admits gzip: named (or `x-gzip`) with a non-zero quality, or
/// covered by `*` without being refused by name (RFC 9110 §12.5.3). Absent, it does not.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut named = None;
    let mut any = None;
    for coding in headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
    {
        let mut parts = coding.split(';');
        let name = parts.next().unwrap_or_default().trim();
        let weight = parts
            .filter_map(|param| {
                let param = param.trim();
                param
                    .strip_prefix("q=")
                    .or_else(|| param.strip_prefix("Q="))
            })
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let accepted = weight > 0.0;
        if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
            named = Some(named.unwrap_or(false) || accepted);
        } else if name == "*" {
            any = Some(any.unwrap_or(false) || accepted);
        }
    }
    named.or(any).unwrap_or(false)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(values: &[&str]) -> bool {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                header::ACCEPT_ENCODING,
                HeaderValue::from_str(value).expect("a header value"),
            );
        }
        accepts_gzip(&headers)
    }

    #[test]
    fn gzip_is_accepted_when_named_or_covered_by_a_star_and_not_refused() {
        assert!(accept(&["gzip"]));
        assert!(accept(&["GZIP;Q=0.5"]));
        assert!(accept(&["deflate, x-gzip"]));
        assert!(accept(&["br", "gzip;q=0.1"]), "over several headers");
        assert!(accept(&["*"]));
        assert!(accept(&["identity;q=1, *;q=0.5"]));
        assert!(!accept(&[]), "no header: the JSON as it is");
        assert!(!accept(&["identity"]));
        assert!(!accept(&["gzip;q=0"]));
        assert!(
            !accept(&["gzip;q=0.0, *"]),
            "refused by name, whatever the star says"
        );
        assert!(!accept(&["*;q=0"]));
        assert!(!accept(&["br, deflate"]));
    }

    #[test]
    fn the_gzip_tag_is_the_json_tag_marked_inside_its_quotes() {
        assert_eq!(gzip_etag("\"abc\""), "\"abc-gzip\"");
    }
}

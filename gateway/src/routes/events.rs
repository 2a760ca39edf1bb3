//! Reading the raw log: one stream's events, or everything after a position (JSON or NDJSON).

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use commands::{Principal, Role};
use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use store::RecordedEvent;
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, Result};
use crate::extract::Authenticated;
use crate::AppState;

/// The most events one JSON page holds.
const MAX_PAGE: usize = 1_000;
/// The events one NDJSON read fetches from the store at a time.
const NDJSON_CHUNK: usize = 1_000;

/// An event as the API shows it (API.md, "Shapes").
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventView {
    pub position: i64,
    pub id: uuid::Uuid,
    pub stream: String,
    pub version: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema_version: i32,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// RFC 3339 with microseconds, UTC.
    pub recorded_at: String,
    pub hash: String,
}

impl From<RecordedEvent> for EventView {
    fn from(e: RecordedEvent) -> Self {
        Self {
            position: e.position,
            id: e.id,
            stream: e.stream,
            version: e.version,
            event_type: e.event_type,
            schema_version: e.schema_version,
            data: e.data,
            metadata: e.metadata,
            recorded_at: store::hash::format_recorded_at(e.recorded_at),
            hash: e.hash,
        }
    }
}

/// `GET /v1/streams/{stream}/events`
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamEvents {
    pub stream: String,
    pub version: i64,
    pub events: Vec<EventView>,
}

/// `GET /v1/events`
#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    pub events: Vec<EventView>,
    /// Pass as `after` to read on.
    pub next_after: i64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Read events after this position (default 0, the beginning).
    pub after: Option<i64>,
    /// At most this many events (JSON: default 100, at most 1,000; NDJSON: default all).
    pub limit: Option<usize>,
}

/// One stream's events, in version order.
#[utoipa::path(
    get,
    path = "/v1/streams/{stream}/events",
    tag = "log",
    params(("stream" = String, Path, description = "`<kind>-<uuid>`, e.g. `project-…`")),
    responses(
        (status = 200, body = StreamEvents),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn stream_events(
    State(state): State<AppState>,
    Path(stream): Path<String>,
    Authenticated(principal): Authenticated,
) -> Result<Response> {
    if stream.len() > 200 {
        return Err(ApiError::NotFound(format!("no stream {stream:?}")));
    }
    let log_head = state.store.head().await?;
    let events = state.store.read_stream(&stream, 0).await?;
    if events.is_empty() {
        return Err(ApiError::NotFound(format!("no stream {stream:?}")));
    }
    if !may_read_stream(&state, &principal, &stream, &events).await? {
        return Err(ApiError::Forbidden(
            "this stream is outside the token's scope".to_owned(),
        ));
    }
    let version = events.last().map_or(0, |e| e.version);
    let head = events.iter().map(|e| e.position).max().unwrap_or(0);
    let body = StreamEvents {
        stream,
        version,
        events: events.into_iter().map(EventView::from).collect(),
    };
    let mut response = Json(body).into_response();
    response.headers_mut().insert(header::ETAG, quoted(version));
    response
        .headers_mut()
        .insert("x-stream-position", HeaderValue::from(head));
    response.headers_mut().insert(
        crate::PROJECTION_POSITION,
        HeaderValue::from(log_head.max(head)),
    );
    Ok(response)
}

fn quoted(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// An admin reads every stream; district-wide roles the streams of their district; a secretary
/// or unit representative the streams of its own community or unit, and those whose events
/// name it.
async fn may_read_stream(
    state: &AppState,
    principal: &Principal,
    stream: &str,
    events: &[RecordedEvent],
) -> Result<bool> {
    Ok(match principal.role {
        Role::Admin => true,
        Role::DistrictAdmin | Role::Analyst | Role::Auditor => {
            principal.scope.is_some()
                && state.districts.district_of(stream).await? == principal.scope
        }
        Role::CommunitySecretary | Role::UnitRep => {
            let Some(scope) = principal.scope else {
                return Ok(false);
            };
            let scope = scope.to_string();
            if stream.ends_with(&scope) {
                return Ok(true);
            }
            let field = if principal.role == Role::UnitRep {
                "unit_id"
            } else {
                "community_id"
            };
            events
                .iter()
                .any(|e| e.data.get(field).and_then(|v| v.as_str()) == Some(scope.as_str()))
        }
    })
}

/// The log from a position, for analysts and auditors; NDJSON with `Accept: application/x-ndjson`.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "log",
    params(EventsQuery),
    responses(
        (status = 200, body = EventPage, description = "JSON page, or one event per line as application/x-ndjson"),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn all_events(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    query: std::result::Result<Query<EventsQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response> {
    let Query(query) = query.map_err(|e| ApiError::InvalidQuery(e.body_text()))?;
    if !matches!(
        principal.role,
        Role::Admin | Role::Analyst | Role::Auditor | Role::DistrictAdmin
    ) {
        return Err(ApiError::Forbidden(format!(
            "the {} role may not read the whole log",
            principal.role
        )));
    }
    let after = query.after.unwrap_or(0).max(0);
    // District-wide roles see their district's events only.
    let district = match principal.role {
        Role::Admin => None,
        _ => Some(principal.scope.ok_or_else(|| {
            ApiError::Forbidden("a district role needs a district scope".to_owned())
        })?),
    };
    let log_head = state.store.head().await?;
    let wants_ndjson = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/x-ndjson"));
    let mut response = if wants_ndjson {
        ndjson(state.clone(), district, after, query.limit)
    } else {
        let limit = query.limit.unwrap_or(100).min(MAX_PAGE);
        let events = if limit == 0 {
            Vec::new()
        } else {
            state.store.read_all(after, limit).await?
        };
        // Paging continues after the last event read, shown or not.
        let next_after = events.last().map_or(after, |e| e.position);
        let events = visible(&state, district, events).await?;
        Json(EventPage {
            events: events.into_iter().map(EventView::from).collect(),
            next_after,
        })
        .into_response()
    };
    response
        .headers_mut()
        .insert(crate::PROJECTION_POSITION, HeaderValue::from(log_head));
    Ok(response)
}

/// The events of `district` among `events` (all of them for `None`).
pub(crate) async fn visible(
    state: &AppState,
    district: Option<uuid::Uuid>,
    events: Vec<RecordedEvent>,
) -> std::result::Result<Vec<RecordedEvent>, store::StoreError> {
    let Some(district) = district else {
        return Ok(events);
    };
    let mut shown = Vec::with_capacity(events.len());
    for event in events {
        if state.districts.district_of(&event.stream).await? == Some(district) {
            shown.push(event);
        }
    }
    Ok(shown)
}

/// Streams events as NDJSON in chunks, so a large export never sits in memory whole.
fn ndjson(
    state: AppState,
    district: Option<uuid::Uuid>,
    after: i64,
    limit: Option<usize>,
) -> Response {
    let remaining = limit.unwrap_or(usize::MAX);
    let chunks = stream::unfold(
        (state, after, remaining, false),
        move |(state, after, remaining, done)| async move {
            if done || remaining == 0 {
                return None;
            }
            let read = match state
                .store
                .read_all(after, remaining.min(NDJSON_CHUNK))
                .await
            {
                Ok(events) => {
                    let next = events.last().map_or(after, |e| e.position);
                    let count = events.len();
                    visible(&state, district, events)
                        .await
                        .map(|events| (events, next, count))
                }
                Err(error) => Err(error),
            };
            match read {
                Ok((_, _, 0)) => None,
                Ok((events, next, count)) => {
                    let mut lines = Vec::with_capacity(count * 512);
                    for event in events {
                        if serde_json::to_writer(&mut lines, &EventView::from(event)).is_ok() {
                            lines.push(b'\n');
                        }
                    }
                    Some((
                        Ok::<_, std::io::Error>(lines),
                        (state, next, remaining - count, count < NDJSON_CHUNK),
                    ))
                }
                Err(error) => Some((
                    Err(std::io::Error::other(error.to_string())),
                    (state, after, 0, true),
                )),
            }
        },
    );
    let mut response = Response::new(Body::from_stream(chunks.boxed()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    response
}

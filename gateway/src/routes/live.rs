//! `GET /v1/events/live`: the log as server-sent events, for analysts following it live.
//!
//! Each message is one event: `id:` its position, `event:` its type, `data:` the event exactly as
//! `/v1/events` shows it. The feed starts after `Last-Event-ID` (a position, sent by a
//! reconnecting client), else after `?after=N`, else at the current head. It reads the log with
//! `read_all` from the last position it has passed, in order, so across a reconnect nothing is
//! repeated and nothing is missed, even for events committed at a lower position after a higher
//! one was seen (the store's `read_all` guarantee). It is woken by this process's appends and
//! looks at the log every [`POLL`] for appends by other processes; comments keep idle
//! connections open. District-scoped roles see only their district's events (positions of
//! events they may not see are passed over, not sent).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use commands::Role;
use futures::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use tokio::sync::watch;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::error::{ApiError, Result};
use crate::extract::Authenticated;
use crate::routes::events::{visible, EventView};
use crate::AppState;

/// The most events read from the store at a time.
const CHUNK: usize = 500;
/// How often an idle feed looks for appends made by other processes.
const POLL: Duration = Duration::from_secs(1);
/// How often an idle connection gets a keep-alive comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The longest wait before reading again after the store failed.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LiveQuery {
    /// Start after this position (ignored when `Last-Event-ID` is sent). Default: the head.
    pub after: Option<i64>,
}

/// Where one connection's feed has got to.
struct Feed {
    state: AppState,
    district: Option<Uuid>,
    /// The last position read (sent or passed over).
    position: i64,
    appends: watch::Receiver<i64>,
    backoff: Duration,
}

impl Feed {
    /// The next events to send, waiting for appends when there are none.
    async fn next_batch(&mut self) -> Vec<SseEvent> {
        loop {
            // Marked seen before reading, so an append after the read wakes the wait below.
            self.appends.borrow_and_update();
            let read = match self.state.store.read_all(self.position, CHUNK).await {
                Ok(events) => {
                    let last = events.last().map(|e| e.position);
                    visible(&self.state, self.district, events)
                        .await
                        .map(|shown| (shown, last))
                }
                Err(error) => Err(error),
            };
            match read {
                Ok((shown, Some(last))) => {
                    self.backoff = Duration::from_millis(100);
                    self.position = last;
                    if shown.is_empty() {
                        continue;
                    }
                    return shown.into_iter().filter_map(message).collect();
                }
                Ok((_, None)) => {
                    // Woken by this process's appends; polls for other processes' appends.
                    let _ = tokio::time::timeout(POLL, self.appends.changed()).await;
                }
                Err(error) => {
                    tracing::warn!(%error, position = self.position, "live feed cannot read the log; retrying");
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// One event as an SSE message.
fn message(event: store::RecordedEvent) -> Option<SseEvent> {
    let position = event.position;
    let event_type = event.event_type.clone();
    let view = EventView::from(event);
    match SseEvent::default()
        .id(position.to_string())
        .event(event_type)
        .json_data(&view)
    {
        Ok(message) => Some(message),
        Err(error) => {
            tracing::error!(position, %error, "an event could not be written to the live feed");
            None
        }
    }
}

/// Where to start: `Last-Event-ID`, else `after`, else the head.
async fn start(state: &AppState, headers: &HeaderMap, after: Option<i64>) -> Result<i64> {
    if let Some(value) = headers.get("last-event-id") {
        return value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .filter(|v| *v >= 0)
            .ok_or_else(|| {
                ApiError::InvalidHeader("Last-Event-ID must be a log position".to_owned())
            });
    }
    match after {
        Some(after) if after < 0 => Err(ApiError::InvalidQuery(
            "after must be a log position (0 or more)".to_owned(),
        )),
        Some(after) => Ok(after),
        None => Ok(state.store.head().await?),
    }
}

/// The live log as server-sent events, resumable with `Last-Event-ID`.
#[utoipa::path(
    get,
    path = "/v1/events/live",
    tag = "log",
    params(LiveQuery,
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this position (the `id:` of the last message received)")),
    responses(
        (status = 200, content_type = "text/event-stream",
            description = "One message per event: `id:` its position, `event:` its type, `data:` the event as `/v1/events` shows it"),
        (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn live_events(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    query: std::result::Result<Query<LiveQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response> {
    let Query(query) = query.map_err(|e| ApiError::InvalidQuery(e.body_text()))?;
    let district = match principal.role {
        Role::Admin => None,
        Role::Analyst | Role::Auditor | Role::DistrictAdmin => {
            Some(principal.scope.ok_or_else(|| {
                ApiError::Forbidden("a district role needs a district scope".to_owned())
            })?)
        }
        Role::CommunitySecretary | Role::UnitRep => {
            return Err(ApiError::Forbidden(format!(
                "the {} role may not follow the live log",
                principal.role
            )))
        }
    };
    // Subscribe before reading the head, so no append falls between the two.
    let appends = state.store.subscribe();
    let position = start(&state, &headers, query.after).await?;
    let feed = Feed {
        state,
        district,
        position,
        appends,
        backoff: Duration::from_millis(100),
    };
    Ok(Sse::new(events(feed))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

fn events(feed: Feed) -> impl Stream<Item = std::result::Result<SseEvent, Infallible>> + Send {
    // The feed ends when the server begins to stop; the client reconnects with Last-Event-ID.
    let stopping = feed.state.stopping();
    stream::unfold(feed, |mut feed| async move {
        let batch = feed.next_batch().await;
        Some((stream::iter(batch.into_iter().map(Ok)), feed))
    })
    .flatten()
    .take_until(stopping)
}

//! The values that cross the store boundary: what callers append and what they read back.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Position, StoreError};

/// What the caller believes about the target stream's version before appending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version is.
    Any,
    /// The stream must not exist yet (same as `Exact(0)`).
    NoStream,
    /// The stream must have exactly this many events.
    Exact(i64),
}

impl ExpectedVersion {
    /// Whether a stream currently holding `actual` events satisfies this expectation.
    pub fn admits(self, actual: i64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == 0,
            ExpectedVersion::Exact(expected) => actual == expected,
        }
    }
}

/// One event to append; the store assigns position, version, recorded_at and hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    pub id: Uuid,
    pub event_type: String,
    pub schema_version: i32,
    pub data: serde_json::Value,
    pub metadata: serde_json::Value,
}

/// An idempotency key, scoped to whoever sent it, with a digest of the request it guards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyKey {
    /// Whose key this is (the token holder); keys of different holders never collide.
    pub scope: String,
    /// The client's key, at most 200 characters.
    pub key: String,
    /// Hex SHA-256 of the request (command name and canonical body): a reused key with another
    /// request is refused.
    pub request_hash: String,
}

/// Another stream a decision read, at the version it read it.
///
/// An append carrying it is refused with [`StoreError::VersionConflict`] (naming this stream)
/// when the stream has moved since: a decision is only written if every fact it was made on
/// still holds at commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamVersion {
    pub stream: String,
    /// The number of events the decision saw (0: it saw no stream).
    pub version: i64,
}

impl StreamVersion {
    pub fn new(stream: impl Into<String>, version: i64) -> Self {
        Self {
            stream: stream.into(),
            version,
        }
    }
}

/// A request to append events to one stream on behalf of one command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppendRequest {
    pub stream: String,
    pub expected: ExpectedVersion,
    /// Unique per command: stored with the events in the same transaction.
    pub command_id: Uuid,
    pub idempotency: Option<IdempotencyKey>,
    /// At least one event.
    pub events: Vec<NewEvent>,
    /// Other streams that must still be at these versions when the events are committed.
    #[serde(default)]
    pub unchanged: Vec<StreamVersion>,
}

impl AppendRequest {
    /// The longest stream id, in characters.
    pub const MAX_STREAM_CHARS: usize = 200;
    /// The longest idempotency key or scope, in characters.
    pub const MAX_KEY_CHARS: usize = 200;

    /// The most streams one append may require unchanged.
    pub const MAX_UNCHANGED: usize = 16;

    /// Refuses a request no backend should try: no events, an empty or over-long stream id, an
    /// empty or over-long idempotency key, one event id used twice, or an unchanged-stream
    /// condition that is malformed or names the target (whose guard is `expected`).
    pub fn validate(&self) -> Result<(), StoreError> {
        if self.events.is_empty() {
            return Err(StoreError::Invalid(
                "an append needs at least one event".into(),
            ));
        }
        check_stream_id(&self.stream)?;
        if self.unchanged.len() > Self::MAX_UNCHANGED {
            return Err(StoreError::Invalid(format!(
                "an append may require at most {} other streams unchanged, not {}",
                Self::MAX_UNCHANGED,
                self.unchanged.len()
            )));
        }
        for condition in &self.unchanged {
            check_stream_id(&condition.stream)?;
            if condition.stream == self.stream {
                return Err(StoreError::Invalid(format!(
                    "stream {} is the append's target; its guard is the expected version",
                    condition.stream
                )));
            }
            if condition.version < 0 {
                return Err(StoreError::Invalid(format!(
                    "stream {} cannot be required at version {}",
                    condition.stream, condition.version
                )));
            }
        }
        if let Some(idempotency) = &self.idempotency {
            for (what, text) in [("key", &idempotency.key), ("scope", &idempotency.scope)] {
                let chars = text.chars().count();
                if chars == 0 || chars > Self::MAX_KEY_CHARS {
                    return Err(StoreError::Invalid(format!(
                        "an idempotency {what} has 1 to {} characters, not {chars}",
                        Self::MAX_KEY_CHARS
                    )));
                }
            }
        }
        let mut ids = HashSet::with_capacity(self.events.len());
        if let Some(event) = self.events.iter().find(|event| !ids.insert(event.id)) {
            return Err(StoreError::Invalid(format!(
                "event id {} appears twice in one append",
                event.id
            )));
        }
        Ok(())
    }
}

/// Refuses an empty or over-long stream id.
fn check_stream_id(stream: &str) -> Result<(), StoreError> {
    let chars = stream.chars().count();
    if chars == 0 || chars > AppendRequest::MAX_STREAM_CHARS {
        return Err(StoreError::Invalid(format!(
            "a stream id has 1 to {} characters, not {chars}",
            AppendRequest::MAX_STREAM_CHARS
        )));
    }
    Ok(())
}

/// What an append did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AppendOutcome {
    /// The events were appended now.
    Appended(Vec<RecordedEvent>),
    /// The idempotency key (or command id) was seen before with the same request: these are
    /// the events that first request appended, and nothing new was written.
    Duplicate(Vec<RecordedEvent>),
}

impl AppendOutcome {
    /// The recorded events, whether appended now or earlier.
    pub fn events(&self) -> &[RecordedEvent] {
        match self {
            AppendOutcome::Appended(events) | AppendOutcome::Duplicate(events) => events,
        }
    }
}

/// An event as it stands in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    pub position: Position,
    pub id: Uuid,
    pub stream: String,
    /// 1 for a stream's first event.
    pub version: i64,
    pub event_type: String,
    pub schema_version: i32,
    pub data: serde_json::Value,
    pub metadata: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
    /// Lowercase hex SHA-256 chaining this event to the previous one in its stream.
    pub hash: String,
}

/// An event as it stands in the log, with its JSON left as the stored text.
///
/// For readers that decode events into their own types (the projections): parsing straight
/// from text skips building a generic JSON tree per event, which dominates a scan of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    pub position: Position,
    pub id: Uuid,
    pub stream: String,
    pub version: i64,
    pub event_type: String,
    pub schema_version: i32,
    /// The event's JSON object, as stored.
    pub data: String,
    /// The metadata's JSON object, as stored.
    pub metadata: String,
    pub recorded_at: DateTime<Utc>,
    pub hash: String,
}

impl From<RecordedEvent> for RawEvent {
    fn from(event: RecordedEvent) -> Self {
        Self {
            position: event.position,
            id: event.id,
            stream: event.stream,
            version: event.version,
            event_type: event.event_type,
            schema_version: event.schema_version,
            data: event.data.to_string(),
            metadata: event.metadata.to_string(),
            recorded_at: event.recorded_at,
            hash: event.hash,
        }
    }
}

/// A stream's folded state as of `version`, saved beside the log so that loading a long stream
/// reads its newest snapshot and only the events after it.
///
/// A cache of the log, never a source: the store keeps `state` as opaque text, only for a
/// version the stream has reached, and anything may delete it. `schema` names the state's shape
/// (the caller's); a reader asks for the shape it understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub stream: String,
    /// The stream's version the state is folded up to (its events 1..=version).
    pub version: i64,
    pub schema: i32,
    pub state: String,
}

/// The result of recomputing every hash chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyReport {
    pub events: u64,
    pub streams: u64,
    pub head: Position,
    /// The first event (in log order) whose stored hash or version does not match; `None` when
    /// the whole log checks out.
    pub first_failure: Option<VerifyFailure>,
}

/// The first event that failed verification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyFailure {
    pub position: Position,
    pub event_id: Uuid,
    pub stream: String,
    pub version: i64,
    pub expected_hash: String,
    pub stored_hash: String,
    pub reason: String,
}

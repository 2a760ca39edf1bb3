//! How an event is laid out in SQLite's `events` table, and how a row becomes a
//! [`RecordedEvent`] again.
//!
//! Ids are stored as hyphenated UUID text, `data` and `metadata` as JSON text, `recorded_at` as
//! RFC 3339 with microseconds (see [`crate::hash::format_recorded_at`]), so the file stays
//! readable with the `sqlite3` shell. A row that does not decode is reported as
//! [`StoreError::Corrupt`] naming its position, never skipped.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{RawEvent, RecordedEvent, StoreError, VerifyFailure};

/// `SELECT <the event columns> FROM events <tail>`, as one string literal.
macro_rules! select_events {
    ($tail:literal) => {
        concat!(
            "SELECT position, id, stream_id, version, event_type, schema_version, data, metadata, ",
            "recorded_at, hash FROM events ",
            $tail
        )
    };
}
pub(super) use select_events;

/// The columns of one event, as stored.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct EventRow {
    pub position: i64,
    pub id: String,
    pub stream_id: String,
    pub version: i64,
    pub event_type: String,
    pub schema_version: i32,
    pub data: String,
    pub metadata: String,
    pub recorded_at: String,
    pub hash: String,
}

/// The parts of a row that must parse.
pub(super) struct Parsed {
    id: Uuid,
    data: serde_json::Value,
    metadata: serde_json::Value,
    recorded_at: DateTime<Utc>,
}

impl EventRow {
    pub fn decode(self) -> Result<RecordedEvent, StoreError> {
        let parsed = self.parse()?;
        Ok(self.into_event(parsed))
    }

    /// Parses the id, the JSON and the timestamp, leaving the row intact for error reports.
    pub fn parse(&self) -> Result<Parsed, StoreError> {
        let corrupt = |detail: String| StoreError::Corrupt {
            position: self.position,
            detail,
        };
        Ok(Parsed {
            id: Uuid::parse_str(&self.id)
                .map_err(|error| corrupt(format!("id {:?}: {error}", self.id)))?,
            data: serde_json::from_str(&self.data)
                .map_err(|error| corrupt(format!("data is not JSON: {error}")))?,
            metadata: serde_json::from_str(&self.metadata)
                .map_err(|error| corrupt(format!("metadata is not JSON: {error}")))?,
            recorded_at: parse_timestamp(&self.recorded_at)
                .map_err(|error| corrupt(format!("recorded_at {:?}: {error}", self.recorded_at)))?,
        })
    }

    pub fn into_event(self, parsed: Parsed) -> RecordedEvent {
        RecordedEvent {
            position: self.position,
            id: parsed.id,
            stream: self.stream_id,
            version: self.version,
            event_type: self.event_type,
            schema_version: self.schema_version,
            data: parsed.data,
            metadata: parsed.metadata,
            recorded_at: parsed.recorded_at,
            hash: self.hash,
        }
    }

    /// The row with its JSON left as text; the id and timestamp must still parse.
    pub fn into_raw(self) -> Result<RawEvent, StoreError> {
        let corrupt = |detail: String| StoreError::Corrupt {
            position: self.position,
            detail,
        };
        let id = Uuid::parse_str(&self.id)
            .map_err(|error| corrupt(format!("id {:?}: {error}", self.id)))?;
        let recorded_at = parse_timestamp(&self.recorded_at)
            .map_err(|error| corrupt(format!("recorded_at {:?}: {error}", self.recorded_at)))?;
        Ok(RawEvent {
            position: self.position,
            id,
            stream: self.stream_id,
            version: self.version,
            event_type: self.event_type,
            schema_version: self.schema_version,
            data: self.data,
            metadata: self.metadata,
            recorded_at,
            hash: self.hash,
        })
    }

    /// The verification failure for a row that cannot even be decoded: as far as verification
    /// is concerned, that is a changed row too.
    pub fn undecodable(&self, reason: String) -> VerifyFailure {
        VerifyFailure {
            position: self.position,
            event_id: Uuid::parse_str(&self.id).unwrap_or_default(),
            stream: self.stream_id.clone(),
            version: self.version,
            expected_hash: String::new(),
            stored_hash: self.hash.clone(),
            reason,
        }
    }
}

/// Parses a stored RFC 3339 timestamp.
pub(super) fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    DateTime::parse_from_rfc3339(text).map(|at| at.with_timezone(&Utc))
}

/// Decodes rows in order, stopping at the first corrupt one.
pub(super) fn decode_all(rows: Vec<EventRow>) -> Result<Vec<RecordedEvent>, StoreError> {
    rows.into_iter().map(EventRow::decode).collect()
}

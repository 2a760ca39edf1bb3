//! How an event is laid out in PostgreSQL's `events` table, and how a row becomes a
//! [`RecordedEvent`] again.
//!
//! Ids are `uuid` and timestamps `timestamptz` (microseconds, the precision the log hashes), so
//! only the JSON is parsed here. `data` and `metadata` are `json`, which keeps the text exactly as
//! written; they are selected `::text` so a reader that wants the text gets it unparsed. A row
//! whose JSON does not parse is reported as [`StoreError::Corrupt`] naming its position.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{RawEvent, RecordedEvent, StoreError, VerifyFailure};

/// `SELECT <the event columns> FROM events <tail>`, as one string literal.
macro_rules! select_events {
    ($tail:literal) => {
        concat!(
            "SELECT position, id, stream_id, version, event_type, schema_version, ",
            "data::text AS data, metadata::text AS metadata, recorded_at, hash FROM events ",
            $tail
        )
    };
}
pub(super) use select_events;

/// The columns of one event, as stored.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct PgEventRow {
    pub position: i64,
    pub id: Uuid,
    pub stream_id: String,
    pub version: i64,
    pub event_type: String,
    pub schema_version: i32,
    pub data: String,
    pub metadata: String,
    pub recorded_at: DateTime<Utc>,
    pub hash: String,
}

/// An event row with the request hash of the command that wrote it.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct KeyedEventRow {
    request_hash: Option<String>,
    #[sqlx(flatten)]
    event: PgEventRow,
}

impl KeyedEventRow {
    pub fn split(self) -> (Option<String>, PgEventRow) {
        (self.request_hash, self.event)
    }
}

/// The parts of a row that must parse.
pub(super) struct Parsed {
    data: serde_json::Value,
    metadata: serde_json::Value,
}

impl PgEventRow {
    pub fn decode(self) -> Result<RecordedEvent, StoreError> {
        let parsed = self.parse()?;
        Ok(self.into_event(parsed))
    }

    /// Parses the JSON, leaving the row intact for error reports.
    pub fn parse(&self) -> Result<Parsed, StoreError> {
        let corrupt = |detail: String| StoreError::Corrupt {
            position: self.position,
            detail,
        };
        Ok(Parsed {
            data: serde_json::from_str(&self.data)
                .map_err(|error| corrupt(format!("data is not JSON: {error}")))?,
            metadata: serde_json::from_str(&self.metadata)
                .map_err(|error| corrupt(format!("metadata is not JSON: {error}")))?,
        })
    }

    pub fn into_event(self, parsed: Parsed) -> RecordedEvent {
        RecordedEvent {
            position: self.position,
            id: self.id,
            stream: self.stream_id,
            version: self.version,
            event_type: self.event_type,
            schema_version: self.schema_version,
            data: parsed.data,
            metadata: parsed.metadata,
            recorded_at: self.recorded_at,
            hash: self.hash,
        }
    }

    /// The row with its JSON left as text (the database already checked it is JSON).
    pub fn into_raw(self) -> RawEvent {
        RawEvent {
            position: self.position,
            id: self.id,
            stream: self.stream_id,
            version: self.version,
            event_type: self.event_type,
            schema_version: self.schema_version,
            data: self.data,
            metadata: self.metadata,
            recorded_at: self.recorded_at,
            hash: self.hash,
        }
    }

    /// The verification failure for a row that cannot even be decoded: as far as verification
    /// is concerned, that is a changed row too.
    pub fn undecodable(&self, reason: String) -> VerifyFailure {
        VerifyFailure {
            position: self.position,
            event_id: self.id,
            stream: self.stream_id.clone(),
            version: self.version,
            expected_hash: String::new(),
            stored_hash: self.hash.clone(),
            reason,
        }
    }
}

/// Decodes rows in order, stopping at the first corrupt one.
pub(super) fn decode_all(rows: Vec<PgEventRow>) -> Result<Vec<RecordedEvent>, StoreError> {
    rows.into_iter().map(PgEventRow::decode).collect()
}

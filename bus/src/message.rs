//! The wire format between the relay and projector processes: one JetStream message per
//! committed event, so that a projector process can rebuild the very [`RawEvent`] the log holds.
//!
//! - **Stream**: [`STREAM_NAME`] (`LIANXI_EVENTS`), subjects [`SUBJECTS`] (`lianxi.events.>`),
//!   file storage, one replica, limits retention ([`StreamSettings`]).
//! - **Subject**: `lianxi.events.<stream kind>.<EventType>`, where the stream kind is the part of
//!   the stream id before its first `-` (`project` for `project-<uuid>`). Subjects are for
//!   filtering only; the payload is the truth. A character NATS does not allow in a subject token
//!   (`.`, `*`, `>`, whitespace, anything outside `A–Z a–z 0–9 _ -`) becomes `_`, and an empty
//!   token is `_`.
//! - **Headers**: `Nats-Msg-Id` = the event id (JetStream drops a republished id within the
//!   duplicate window), `Lianxi-Position` = the event's global log position (decimal). The relay
//!   also sends `Nats-Expected-Last-Sequence`, which JetStream keeps with the message; readers
//!   ignore it.
//! - **Payload**: the event as JSON, the same field names as the HTTP API's event shape:
//!   `{"position", "id", "stream", "version", "type", "schema_version", "data", "metadata",
//!   "recorded_at", "hash"}`. `data` and `metadata` are nested JSON objects, written byte for
//!   byte as the log stores them, so [`decode`] gives back exactly the [`RawEvent`] that
//!   [`encode`] was given.

use std::time::Duration;

use async_nats::header::{HeaderMap, NATS_MESSAGE_ID};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use store::{Position, RawEvent};
use uuid::Uuid;

use crate::BusError;

/// The JetStream stream every event goes to.
pub const STREAM_NAME: &str = "LIANXI_EVENTS";
/// The subjects of [`STREAM_NAME`].
pub const SUBJECTS: &str = "lianxi.events.>";
/// What every event's subject starts with.
pub const SUBJECT_PREFIX: &str = "lianxi.events";
/// The header holding the event's global log position.
pub const POSITION_HEADER: &str = "Lianxi-Position";

/// The stream's limits. [`crate::Relay`] creates the stream or updates it to these; a
/// [`crate::Feed`] creates it with these only when it does not exist yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSettings {
    /// How long JetStream remembers a message id to drop a republished event (2 minutes by
    /// default). A relay that took over republishes at most what was published but not yet
    /// acknowledged, so this only has to outlast a takeover.
    pub duplicate_window: Duration,
    /// Messages older than this are dropped; `None` keeps them for ever.
    pub max_age: Option<Duration>,
    /// At most this many messages are kept, the oldest dropped first; `None`: no limit.
    pub max_messages: Option<i64>,
    /// At most this many bytes are kept, the oldest messages dropped first; `None`: no limit.
    pub max_bytes: Option<i64>,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            duplicate_window: Duration::from_secs(120),
            max_age: None,
            max_messages: None,
            max_bytes: None,
        }
    }
}

impl StreamSettings {
    /// The JetStream configuration of [`STREAM_NAME`] with these limits.
    pub fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: STREAM_NAME.to_owned(),
            description: Some("lianxi's committed events, in log order".to_owned()),
            subjects: vec![SUBJECTS.to_owned()],
            storage: stream::StorageType::File,
            num_replicas: 1,
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::Old,
            duplicate_window: self.duplicate_window,
            // JetStream reads 0 as "no limit" for all three.
            max_age: self.max_age.unwrap_or(Duration::ZERO),
            max_messages: self.max_messages.unwrap_or(-1),
            max_bytes: self.max_bytes.unwrap_or(-1),
            ..stream::Config::default()
        }
    }
}

/// The subject of an event of stream `stream` with type `event_type`.
pub fn subject(stream: &str, event_type: &str) -> String {
    let kind = stream.split_once('-').map_or(stream, |(kind, _)| kind);
    format!("{SUBJECT_PREFIX}.{}.{}", token(kind), token(event_type))
}

/// `text` as one subject token: characters NATS reserves (or that are awkward in filters)
/// become `_`.
fn token(text: &str) -> String {
    if text.is_empty() {
        return "_".to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// An event as it travels: the payload of one message.
#[derive(Debug, Serialize, Deserialize)]
pub struct WireEvent {
    pub position: Position,
    pub id: Uuid,
    pub stream: String,
    pub version: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema_version: i32,
    /// The event's JSON object, exactly as stored.
    pub data: Box<RawValue>,
    /// The metadata's JSON object, exactly as stored.
    pub metadata: Box<RawValue>,
    pub recorded_at: DateTime<Utc>,
    pub hash: String,
}

impl TryFrom<&RawEvent> for WireEvent {
    type Error = BusError;

    /// Fails only when the stored data or metadata is not JSON (the log was damaged).
    fn try_from(event: &RawEvent) -> Result<Self, BusError> {
        let json = |text: &str| {
            RawValue::from_string(text.to_owned()).map_err(|error| BusError::Unencodable {
                position: event.position,
                detail: error.to_string(),
            })
        };
        Ok(WireEvent {
            position: event.position,
            id: event.id,
            stream: event.stream.clone(),
            version: event.version,
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            data: json(&event.data)?,
            metadata: json(&event.metadata)?,
            recorded_at: event.recorded_at,
            hash: event.hash.clone(),
        })
    }
}

impl From<WireEvent> for RawEvent {
    fn from(wire: WireEvent) -> Self {
        RawEvent {
            position: wire.position,
            id: wire.id,
            stream: wire.stream,
            version: wire.version,
            event_type: wire.event_type,
            schema_version: wire.schema_version,
            data: wire.data.get().to_owned(),
            metadata: wire.metadata.get().to_owned(),
            recorded_at: wire.recorded_at,
            hash: wire.hash,
        }
    }
}

/// The payload of `event`'s message.
pub fn encode(event: &RawEvent) -> Result<Bytes, BusError> {
    let wire = WireEvent::try_from(event)?;
    serde_json::to_vec(&wire)
        .map(Bytes::from)
        .map_err(|error| BusError::Unencodable {
            position: event.position,
            detail: error.to_string(),
        })
}

/// The event a message's payload carries.
pub fn decode(payload: &[u8]) -> Result<RawEvent, BusError> {
    serde_json::from_slice::<WireEvent>(payload)
        .map(RawEvent::from)
        .map_err(|error| BusError::InvalidMessage {
            sequence: None,
            detail: format!("payload: {error}"),
        })
}

/// The subject and the message (payload and headers) that publish `event`.
pub fn outbound(event: &RawEvent) -> Result<(String, PublishMessage), BusError> {
    let message = PublishMessage::build()
        .payload(encode(event)?)
        .message_id(event.id.to_string())
        .header(POSITION_HEADER, event.position.to_string());
    Ok((subject(&event.stream, &event.event_type), message))
}

/// The log position a message's headers name.
pub fn position_of(headers: &HeaderMap) -> Result<Position, BusError> {
    let value = headers
        .get_last(POSITION_HEADER)
        .ok_or_else(|| BusError::InvalidMessage {
            sequence: None,
            detail: format!("no {POSITION_HEADER} header"),
        })?;
    value
        .as_str()
        .parse()
        .map_err(|error| BusError::InvalidMessage {
            sequence: None,
            detail: format!("{POSITION_HEADER} {:?}: {error}", value.as_str()),
        })
}

/// The event id a message's headers name (its `Nats-Msg-Id`), when it is a UUID.
pub fn message_id_of(headers: &HeaderMap) -> Option<Uuid> {
    headers
        .get_last(NATS_MESSAGE_ID)
        .and_then(|value| value.as_str().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(data: &str, metadata: &str) -> RawEvent {
        RawEvent {
            position: 42,
            id: Uuid::now_v7(),
            stream: "project-0193a000-0000-7000-8000-000000000005".to_owned(),
            version: 3,
            event_type: "ProjectClaimed".to_owned(),
            schema_version: 2,
            data: data.to_owned(),
            metadata: metadata.to_owned(),
            recorded_at: DateTime::from_timestamp_micros(1_524_555_000_123_456).unwrap_or_default(),
            hash: "ab".repeat(32),
        }
    }

    #[test]
    fn an_event_survives_the_wire_byte_for_byte() {
        // Key order, spacing, escapes, big and fractional numbers, CJK text: all as stored.
        let original = event(
            r#"{"z":1, "a":[1.5e300,-0.0,12345678901234567890],"title":"4·25 预防接种\n\"宣传\"","u":"\u00e9"}"#,
            r#"{"actor":{"id":"x","name":"罗俊","role":"unit_rep"},"occurred_at":"2018-04-25T14:00:00+08:00"}"#,
        );
        let payload = encode(&original).expect("encodes");
        assert_eq!(decode(&payload).expect("decodes"), original);
    }

    #[test]
    fn data_and_metadata_travel_as_nested_json_not_strings() {
        let payload = encode(&event(r#"{"a":1}"#, r#"{"b":2}"#)).expect("encodes");
        let value: serde_json::Value = serde_json::from_slice(&payload).expect("json");
        assert_eq!(value["data"]["a"], 1);
        assert_eq!(value["metadata"]["b"], 2);
        assert_eq!(value["type"], "ProjectClaimed");
        assert_eq!(value["position"], 42);
    }

    #[test]
    fn stored_text_that_is_not_json_is_refused_not_sent() {
        let error = encode(&event("{not json", "{}")).expect_err("refused");
        assert_eq!(error.code(), "bus_unencodable_event");
    }

    #[test]
    fn a_payload_that_is_not_an_event_is_an_invalid_message() {
        let error = decode(br#"{"position": 1}"#).expect_err("refused");
        assert_eq!(error.code(), "bus_invalid_message");
    }

    #[test]
    fn the_subject_names_the_stream_kind_and_the_event_type() {
        assert_eq!(
            subject(
                "project-0193a000-0000-7000-8000-000000000005",
                "ProjectClaimed"
            ),
            "lianxi.events.project.ProjectClaimed"
        );
        assert_eq!(subject("district", "X"), "lianxi.events.district.X");
        assert_eq!(subject("a.b c-d", "T*>"), "lianxi.events.a_b_c.T__");
        assert_eq!(subject("-x", ""), "lianxi.events._._");
    }

    #[test]
    fn the_headers_carry_the_id_and_the_position() {
        let original = event("{}", "{}");
        let (_, message) = outbound(&original).expect("encodes");
        let outbound = message.outbound_message("s");
        let headers = outbound.headers.expect("headers");
        assert_eq!(position_of(&headers).expect("position"), 42);
        assert_eq!(message_id_of(&headers), Some(original.id));
    }

    #[test]
    fn no_limits_are_unlimited_for_jetstream() {
        let config = StreamSettings::default().stream_config();
        assert_eq!(config.max_messages, -1);
        assert_eq!(config.max_bytes, -1);
        assert_eq!(config.max_age, Duration::ZERO);
        assert_eq!(config.duplicate_window, Duration::from_secs(120));
        assert_eq!(config.storage, stream::StorageType::File);
    }
}

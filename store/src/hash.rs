//! The hash chain: every event's hash covers the previous hash in its stream and the event's
//! canonical bytes, so changing, removing or reordering any stored event is detectable.
//!
//! `hash(n) = SHA-256(prev ‖ canonical({data, id, metadata, recorded_at, schema_version, stream,
//! type, version}))`, where `prev` is the raw 32 bytes of event n-1's hash in the same stream,
//! or 32 zero bytes for a stream's first event, and `recorded_at` is RFC 3339 in UTC with exactly
//! six fractional digits and a `Z`. The global position is deliberately not hashed: it is the
//! log's order, which [`ChainVerifier`] checks separately, not part of the event.
//!
//! This module is backend-independent: every backend computes hashes with [`event_hash`] and
//! checks its log with [`ChainVerifier`], so a log copied between backends still verifies.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::canonical::{write_canonical, write_string};
use crate::{Position, RecordedEvent, VerifyFailure, VerifyReport};

/// The hashed fields of one event, borrowed from wherever they live.
#[derive(Debug, Clone, Copy)]
pub struct HashInput<'a> {
    pub id: Uuid,
    pub stream: &'a str,
    pub version: i64,
    pub event_type: &'a str,
    pub schema_version: i32,
    pub data: &'a Value,
    pub metadata: &'a Value,
    pub recorded_at: DateTime<Utc>,
}

impl<'a> From<&'a RecordedEvent> for HashInput<'a> {
    fn from(event: &'a RecordedEvent) -> Self {
        HashInput {
            id: event.id,
            stream: &event.stream,
            version: event.version,
            event_type: &event.event_type,
            schema_version: event.schema_version,
            data: &event.data,
            metadata: &event.metadata,
            recorded_at: event.recorded_at,
        }
    }
}

impl HashInput<'_> {
    /// Appends the canonical bytes of the hashed object, `{"data":…,"id":…,"metadata":…,
    /// "recorded_at":…,"schema_version":…,"stream":…,"type":…,"version":…}`.
    ///
    /// Written field by field rather than through a `serde_json::Value`, which would clone the
    /// payload for every event appended or verified. The keys are fixed, so they are spelled out
    /// in canonical (byte) order; `the_hash_is_pinned` and
    /// `the_hashed_bytes_are_the_canonical_form_of_the_object` hold this to the definition.
    fn write_canonical(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"data":"#);
        write_canonical(self.data, out);
        out.extend_from_slice(br#","id":""#);
        out.extend_from_slice(
            self.id
                .hyphenated()
                .encode_lower(&mut Uuid::encode_buffer())
                .as_bytes(),
        );
        out.extend_from_slice(br#"","metadata":"#);
        write_canonical(self.metadata, out);
        out.extend_from_slice(br#","recorded_at":""#);
        out.extend_from_slice(format_recorded_at(self.recorded_at).as_bytes());
        out.extend_from_slice(br#"","schema_version":"#);
        out.extend_from_slice(self.schema_version.to_string().as_bytes());
        out.extend_from_slice(br#","stream":"#);
        write_string(self.stream, out);
        out.extend_from_slice(br#","type":"#);
        write_string(self.event_type, out);
        out.extend_from_slice(br#","version":"#);
        out.extend_from_slice(self.version.to_string().as_bytes());
        out.push(b'}');
    }
}

/// Lowercase hex SHA-256 of `prev_hash` (or 32 zero bytes for a stream's first event) followed
/// by the event's canonical bytes.
///
/// `prev_hash` is expected to be a hash this function produced (64 hex digits). Anything else —
/// only possible in a tampered log — is hashed as its raw text rather than panicking; the chain
/// has already failed verification at that earlier event anyway.
pub fn event_hash(prev_hash: Option<&str>, ev: &HashInput<'_>) -> String {
    let mut hasher = Sha256::new();
    match prev_hash {
        None => hasher.update([0u8; 32]),
        Some(prev) => match hex::decode(prev) {
            Ok(bytes) if bytes.len() == 32 => hasher.update(&bytes),
            _ => hasher.update(prev.as_bytes()),
        },
    }
    let mut canonical = Vec::with_capacity(512);
    ev.write_canonical(&mut canonical);
    hasher.update(&canonical);
    hex::encode(hasher.finalize())
}

/// `at` cut to whole microseconds: the precision the log stores, hashes and reads back.
pub fn to_stored_precision(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(6)
}

/// The text form of `recorded_at`, both hashed and stored: `2024-05-01T08:30:00.123456Z`.
pub fn format_recorded_at(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Walks a log in position order and finds the first event that does not chain.
///
/// Memory is one (version, hash) per stream, not per event, so a log of millions of events can be
/// streamed through it page by page.
#[derive(Debug, Default)]
pub struct ChainVerifier {
    last: HashMap<String, (i64, String)>,
    events: u64,
    last_position: Position,
}

impl ChainVerifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the next event in log order and returns why it fails, if it does: its position
    /// must follow the previous one, its version must be one more than its stream's previous
    /// version (1 for the first), and its stored hash must equal the recomputed one. The stored
    /// hash, not the recomputed one, becomes the previous hash of the stream's next event.
    pub fn check(&mut self, event: &RecordedEvent) -> Option<VerifyFailure> {
        let (prev_version, prev_hash) = match self.last.get(&event.stream) {
            Some((version, hash)) => (*version, Some(hash.as_str())),
            None => (0, None),
        };
        let expected_hash = event_hash(prev_hash, &HashInput::from(event));
        let reason = if event.position <= self.last_position {
            Some(format!(
                "position {} does not follow position {}",
                event.position, self.last_position
            ))
        } else if event.version != prev_version + 1 {
            Some(format!(
                "version {} follows version {prev_version} in its stream",
                event.version
            ))
        } else if expected_hash != event.hash {
            Some("the stored hash does not match the event's contents".to_owned())
        } else {
            None
        };
        if let Some(reason) = reason {
            return Some(VerifyFailure {
                position: event.position,
                event_id: event.id,
                stream: event.stream.clone(),
                version: event.version,
                expected_hash,
                stored_hash: event.hash.clone(),
                reason,
            });
        }
        self.events += 1;
        self.last_position = event.position;
        match self.last.get_mut(&event.stream) {
            Some(last) => *last = (event.version, event.hash.clone()),
            None => {
                self.last
                    .insert(event.stream.clone(), (event.version, event.hash.clone()));
            }
        }
        None
    }

    /// The report for everything checked so far; `head` is the log's last position.
    pub fn report(&self, head: Position, first_failure: Option<VerifyFailure>) -> VerifyReport {
        VerifyReport {
            events: self.events,
            streams: self.last.len() as u64,
            head,
            first_failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn sample() -> RecordedEvent {
        RecordedEvent {
            position: 1,
            id: Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
            stream: "project-1".into(),
            version: 1,
            event_type: "ProjectClaimed".into(),
            schema_version: 1,
            data: json!({"title": "Clean the river", "fen": 12_000}),
            metadata: json!({"actor": "a-1"}),
            recorded_at: Utc
                .with_ymd_and_hms(2024, 5, 1, 8, 30, 0)
                .single()
                .expect("a valid date")
                + chrono::Duration::microseconds(123_456),
            hash: String::new(),
        }
    }

    fn hash_of(event: &RecordedEvent, prev: Option<&str>) -> String {
        event_hash(prev, &HashInput::from(event))
    }

    #[test]
    fn the_hash_is_lowercase_hex_sha256() {
        let hash = hash_of(&sample(), None);
        assert_eq!(hash.len(), 64);
        assert!(hash
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
    }

    #[test]
    fn the_hash_is_pinned() {
        // Pins the byte layout: changing the canonical form or the field names breaks every
        // stored chain, so it must be a deliberate, migrated change.
        let mut expected = Sha256::new();
        expected.update([0u8; 32]);
        expected.update(
            concat!(
                r#"{"data":{"fen":12000,"title":"Clean the river"},"#,
                r#""id":"01234567-89ab-cdef-0123-456789abcdef","metadata":{"actor":"a-1"},"#,
                r#""recorded_at":"2024-05-01T08:30:00.123456Z","schema_version":1,"#,
                r#""stream":"project-1","type":"ProjectClaimed","version":1}"#
            )
            .as_bytes(),
        );
        assert_eq!(hash_of(&sample(), None), hex::encode(expected.finalize()));
    }

    #[test]
    fn the_hashed_bytes_are_the_canonical_form_of_the_object() {
        let mut event = sample();
        event.stream = "stream \"quoted\" 中".into();
        event.event_type = "Type\n".into();
        event.version = -3;
        event.schema_version = i32::MAX;
        let input = HashInput::from(&event);
        let object = serde_json::json!({
            "id": event.id.to_string(),
            "stream": event.stream,
            "version": event.version,
            "type": event.event_type,
            "schema_version": event.schema_version,
            "data": event.data,
            "metadata": event.metadata,
            "recorded_at": format_recorded_at(event.recorded_at),
        });
        let mut written = Vec::new();
        input.write_canonical(&mut written);
        assert_eq!(
            String::from_utf8(written).expect("UTF-8"),
            String::from_utf8(crate::canonical::canonical_bytes(&object)).expect("UTF-8")
        );
    }

    #[test]
    fn changing_any_hashed_field_changes_the_hash() {
        let base = sample();
        let original = hash_of(&base, None);
        type Change = Box<dyn Fn(&mut RecordedEvent)>;
        let changes: Vec<(&str, Change)> = vec![
            ("id", Box::new(|e| e.id = Uuid::from_u128(7))),
            ("stream", Box::new(|e| e.stream.push('x'))),
            ("version", Box::new(|e| e.version = 2)),
            ("type", Box::new(|e| e.event_type.push('x'))),
            ("schema_version", Box::new(|e| e.schema_version = 2)),
            (
                "data",
                Box::new(|e| e.data = json!({"title": "Clean the lake"})),
            ),
            ("metadata", Box::new(|e| e.metadata = json!({}))),
            (
                "recorded_at",
                Box::new(|e| e.recorded_at += chrono::Duration::microseconds(1)),
            ),
        ];
        for (field, change) in changes {
            let mut changed = base.clone();
            change(&mut changed);
            assert_ne!(hash_of(&changed, None), original, "changing {field}");
        }
    }

    #[test]
    fn the_hash_depends_on_the_previous_hash() {
        let event = sample();
        let first = hash_of(&event, None);
        let chained = hash_of(&event, Some(&first));
        assert_ne!(first, chained);
        let other_prev = hash_of(&event, Some(&chained));
        assert_ne!(chained, other_prev);
    }

    #[test]
    fn position_and_stored_hash_are_not_hashed() {
        let event = sample();
        let mut moved = event.clone();
        moved.position = 99;
        moved.hash = "anything".into();
        assert_eq!(hash_of(&event, None), hash_of(&moved, None));
    }

    #[test]
    fn recorded_at_is_stored_and_hashed_to_the_microsecond() {
        let at = sample().recorded_at + chrono::Duration::nanoseconds(789);
        let stored = to_stored_precision(at);
        assert_eq!(format_recorded_at(stored), "2024-05-01T08:30:00.123456Z");
        let parsed = DateTime::parse_from_rfc3339(&format_recorded_at(stored))
            .expect("RFC 3339")
            .with_timezone(&Utc);
        assert_eq!(parsed, stored);
    }

    fn chain(events: &mut [RecordedEvent]) {
        let mut prev: HashMap<String, String> = HashMap::new();
        for event in events.iter_mut() {
            event.hash = hash_of(event, prev.get(&event.stream).map(String::as_str));
            prev.insert(event.stream.clone(), event.hash.clone());
        }
    }

    fn two_streams() -> Vec<RecordedEvent> {
        let mut events = Vec::new();
        for (position, (stream, version)) in [("a", 1), ("b", 1), ("a", 2), ("b", 2), ("a", 3)]
            .into_iter()
            .enumerate()
        {
            let mut event = sample();
            event.position = position as i64 + 1;
            event.stream = stream.into();
            event.version = version;
            event.id = Uuid::from_u128(position as u128);
            events.push(event);
        }
        chain(&mut events);
        events
    }

    #[test]
    fn a_good_log_verifies() {
        let events = two_streams();
        let mut verifier = ChainVerifier::new();
        for event in &events {
            assert_eq!(verifier.check(event), None);
        }
        let report = verifier.report(5, None);
        assert_eq!((report.events, report.streams, report.head), (5, 2, 5));
    }

    #[test]
    fn a_changed_event_is_found_and_named() {
        let mut events = two_streams();
        events[2].data = json!({"title": "forged"});
        let mut verifier = ChainVerifier::new();
        let failure = events
            .iter()
            .find_map(|event| verifier.check(event))
            .expect("a failure");
        assert_eq!(failure.position, 3);
        assert_eq!(failure.event_id, events[2].id);
        assert_eq!(failure.stored_hash, events[2].hash);
        assert_ne!(failure.expected_hash, failure.stored_hash);
    }

    #[test]
    fn a_missing_version_is_found() {
        let mut events = two_streams();
        events.remove(2); // a's version 2
        let mut verifier = ChainVerifier::new();
        let failure = events
            .iter()
            .find_map(|event| verifier.check(event))
            .expect("a failure");
        assert_eq!((failure.stream.as_str(), failure.version), ("a", 3));
        assert!(failure.reason.contains("version"), "{}", failure.reason);
    }
}

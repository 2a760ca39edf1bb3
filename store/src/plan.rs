//! Deciding a batch of appends in memory, before anything is written.
//!
//! The writer loads, in a couple of queries, everything a batch's requests can depend on (the last
//! position, the head of every stream they touch, every earlier command with one of their command
//! ids or idempotency keys) into a [`BatchState`]. Each request is then decided here, in order,
//! by a pure function: appended, a duplicate of an earlier command, or refused. Accepting a
//! request updates the state, so later requests of the same batch see it — a second request to
//! the same stream sees the first one's version and hash, a second request with the same key is
//! a duplicate of the first.
//!
//! Keeping this pure is what lets the writer write a whole batch in a handful of statements, and
//! lets it redo the batch request by request (with savepoints) from a clone of the loaded state
//! when the database refuses the bulk write.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::hash::{event_hash, format_recorded_at, HashInput};
use crate::{AppendRequest, ExpectedVersion, Position, RecordedEvent, StoreError};

/// A stream's last version and hash (version 0 and no hash for a stream with no events).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StreamHead {
    pub version: i64,
    pub hash: Option<String>,
}

/// Where the events an earlier command appended lie in the log, to be read back (within the
/// batch's transaction, which also sees an earlier request of the same batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EarlierEvents {
    InLog { first: Position, last: Position },
}

/// A command that already appended, as far as idempotency is concerned.
#[derive(Debug)]
pub(crate) struct EarlierCommand {
    /// The command id as stored (hyphenated lowercase UUID text).
    pub command_id: String,
    pub key: Option<(String, String)>,
    pub request_hash: Option<String>,
    pub events: EarlierEvents,
}

/// An event ready to insert, with its JSON and timestamp already in their stored text forms.
#[derive(Debug)]
pub(crate) struct Staged {
    pub event: RecordedEvent,
    pub data: String,
    pub metadata: String,
    pub recorded_at: String,
}

/// What one request comes to.
#[derive(Debug)]
pub(crate) enum Decision {
    Append(Vec<Staged>),
    /// A repeat of an earlier command: its events are read back, not written again.
    Duplicate(Arc<EarlierCommand>),
    Refuse(StoreError),
}

/// Everything a batch's decisions depend on, as of the current point in the batch.
#[derive(Debug, Clone)]
pub(crate) struct BatchState {
    /// The last position written, before this batch or in it.
    last_position: Position,
    /// The heads of the streams the batch touches; a stream missing here has no events.
    heads: HashMap<String, StreamHead>,
    by_command: HashMap<String, Arc<EarlierCommand>>,
    by_key: HashMap<(String, String), Arc<EarlierCommand>>,
    /// One timestamp for the whole batch, already at stored precision.
    recorded_at: DateTime<Utc>,
}

impl BatchState {
    pub fn new(
        last_position: Position,
        heads: HashMap<String, StreamHead>,
        earlier: Vec<EarlierCommand>,
        recorded_at: DateTime<Utc>,
    ) -> Self {
        let mut state = BatchState {
            last_position,
            heads,
            by_command: HashMap::new(),
            by_key: HashMap::new(),
            recorded_at,
        };
        for command in earlier {
            state.remember(command);
        }
        state
    }

    pub fn last_position(&self) -> Position {
        self.last_position
    }

    fn remember(&mut self, command: EarlierCommand) {
        let command = Arc::new(command);
        if let Some(key) = &command.key {
            self.by_key.insert(key.clone(), Arc::clone(&command));
        }
        self.by_command.insert(command.command_id.clone(), command);
    }

    /// Decides `request` against the state; nothing changes until [`BatchState::accept`].
    pub fn decide(&self, request: &AppendRequest) -> Decision {
        let key = request.idempotency.as_ref();
        let earlier = self
            .by_command
            .get(&request.command_id.to_string())
            .or_else(|| key.and_then(|key| self.by_key.get(&(key.scope.clone(), key.key.clone()))));
        if let Some(earlier) = earlier {
            if let Some(key) = key {
                if earlier.request_hash.as_deref() != Some(key.request_hash.as_str()) {
                    return Decision::Refuse(StoreError::IdempotencyKeyReused {
                        key: key.key.clone(),
                    });
                }
            }
            return Decision::Duplicate(Arc::clone(earlier));
        }

        for condition in &request.unchanged {
            let actual = self.head(&condition.stream).version;
            if actual != condition.version {
                return Decision::Refuse(StoreError::VersionConflict {
                    stream: condition.stream.clone(),
                    expected: ExpectedVersion::Exact(condition.version),
                    actual,
                });
            }
        }
        let head = self.head(&request.stream);
        if !request.expected.admits(head.version) {
            return Decision::Refuse(StoreError::VersionConflict {
                stream: request.stream.clone(),
                expected: request.expected,
                actual: head.version,
            });
        }
        match self.stage(head, request) {
            Ok(staged) => Decision::Append(staged),
            Err(refused) => Decision::Refuse(refused),
        }
    }

    /// Records that `request` was appended as `staged`.
    pub fn accept(&mut self, request: &AppendRequest, staged: &[Staged]) {
        let (Some(first), Some(last)) = (staged.first(), staged.last()) else {
            return;
        };
        self.last_position = last.event.position;
        self.heads.insert(
            request.stream.clone(),
            StreamHead {
                version: last.event.version,
                hash: Some(last.event.hash.clone()),
            },
        );
        self.remember(EarlierCommand {
            command_id: request.command_id.to_string(),
            key: request
                .idempotency
                .as_ref()
                .map(|key| (key.scope.clone(), key.key.clone())),
            request_hash: request
                .idempotency
                .as_ref()
                .map(|key| key.request_hash.clone()),
            // Positions, not copies: a duplicate within one batch is rare, every copy is not.
            events: EarlierEvents::InLog {
                first: first.event.position,
                last: last.event.position,
            },
        });
    }

    /// The head of `stream` as of this point in the batch.
    pub fn head(&self, stream: &str) -> StreamHead {
        self.heads.get(stream).cloned().unwrap_or_default()
    }

    /// Assigns positions, versions, the batch's timestamp and chained hashes.
    fn stage(&self, head: StreamHead, request: &AppendRequest) -> Result<Vec<Staged>, StoreError> {
        let mut staged = Vec::with_capacity(request.events.len());
        let mut prev_hash = head.hash;
        let recorded_at = format_recorded_at(self.recorded_at);
        for (offset, new) in (1i64..).zip(&request.events) {
            let serialise = |value: &serde_json::Value| {
                serde_json::to_string(value).map_err(|error| {
                    StoreError::Invalid(format!("event {} cannot be serialised: {error}", new.id))
                })
            };
            let mut event = RecordedEvent {
                position: self.last_position + offset,
                id: new.id,
                stream: request.stream.clone(),
                version: head.version + offset,
                event_type: new.event_type.clone(),
                schema_version: new.schema_version,
                data: new.data.clone(),
                metadata: new.metadata.clone(),
                recorded_at: self.recorded_at,
                hash: String::new(),
            };
            event.hash = event_hash(prev_hash.as_deref(), &HashInput::from(&event));
            prev_hash = Some(event.hash.clone());
            staged.push(Staged {
                data: serialise(&event.data)?,
                metadata: serialise(&event.metadata)?,
                recorded_at: recorded_at.clone(),
                event,
            });
        }
        Ok(staged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IdempotencyKey, NewEvent, StreamVersion};
    use serde_json::json;
    use uuid::Uuid;

    fn request(stream: &str, expected: ExpectedVersion, events: usize) -> AppendRequest {
        AppendRequest {
            stream: stream.into(),
            expected,
            command_id: Uuid::new_v4(),
            idempotency: None,
            events: (0..events)
                .map(|n| NewEvent {
                    id: Uuid::new_v4(),
                    event_type: "A".into(),
                    schema_version: 1,
                    data: json!({"n": n}),
                    metadata: json!({}),
                })
                .collect(),
            unchanged: Vec::new(),
        }
    }

    fn with_key(mut request: AppendRequest, digest: &str) -> AppendRequest {
        request.idempotency = Some(IdempotencyKey {
            scope: "alice".into(),
            key: "k".into(),
            request_hash: digest.into(),
        });
        request
    }

    fn empty_state() -> BatchState {
        BatchState::new(10, HashMap::new(), Vec::new(), Utc::now())
    }

    /// Decides and, when appended, accepts.
    fn run(state: &mut BatchState, request: &AppendRequest) -> Decision {
        let decision = state.decide(request);
        if let Decision::Append(staged) = &decision {
            state.accept(request, staged);
        }
        decision
    }

    fn appended(decision: Decision) -> Vec<RecordedEvent> {
        match decision {
            Decision::Append(staged) => staged.into_iter().map(|s| s.event).collect(),
            other => panic!("expected Append, got {other:?}"),
        }
    }

    #[test]
    fn requests_of_one_batch_see_each_other_on_a_stream() {
        let mut state = empty_state();
        let first = appended(run(&mut state, &request("s", ExpectedVersion::NoStream, 2)));
        let second = appended(run(&mut state, &request("s", ExpectedVersion::Exact(2), 1)));
        assert_eq!(
            first
                .iter()
                .chain(&second)
                .map(|e| (e.position, e.version))
                .collect::<Vec<_>>(),
            [(11, 1), (12, 2), (13, 3)]
        );
        let expected = event_hash(Some(&first[1].hash), &HashInput::from(&second[0]));
        assert_eq!(second[0].hash, expected);
        match run(&mut state, &request("s", ExpectedVersion::Exact(2), 1)) {
            Decision::Refuse(StoreError::VersionConflict { actual: 3, .. }) => {}
            other => panic!("expected a conflict, got {other:?}"),
        }
    }

    #[test]
    fn a_fact_stream_that_moved_in_the_batch_refuses_the_append() {
        let mut state = empty_state();
        run(&mut state, &request("fact", ExpectedVersion::NoStream, 1));
        let mut guarded = request("s", ExpectedVersion::NoStream, 1);
        guarded.unchanged = vec![StreamVersion::new("fact", 0)];
        match state.decide(&guarded) {
            Decision::Refuse(StoreError::VersionConflict {
                stream,
                expected: ExpectedVersion::Exact(0),
                actual: 1,
            }) => assert_eq!(stream, "fact"),
            other => panic!("expected a conflict on the fact, got {other:?}"),
        }
        guarded.unchanged = vec![StreamVersion::new("fact", 1)];
        assert_eq!(appended(state.decide(&guarded))[0].version, 1);
    }

    #[test]
    fn a_refused_request_takes_no_positions() {
        let mut state = empty_state();
        run(&mut state, &request("s", ExpectedVersion::NoStream, 1));
        run(&mut state, &request("s", ExpectedVersion::NoStream, 1));
        let next = appended(run(&mut state, &request("t", ExpectedVersion::Any, 1)));
        assert_eq!(next[0].position, 12);
    }

    #[test]
    fn a_loaded_stream_head_continues_its_chain() {
        let head = StreamHead {
            version: 4,
            hash: Some("ab".repeat(32)),
        };
        let state = BatchState::new(
            10,
            HashMap::from([("s".to_owned(), head.clone())]),
            Vec::new(),
            Utc::now(),
        );
        let events = appended(state.decide(&request("s", ExpectedVersion::Exact(4), 1)));
        assert_eq!(events[0].version, 5);
        assert_eq!(
            events[0].hash,
            event_hash(head.hash.as_deref(), &HashInput::from(&events[0]))
        );
    }

    #[test]
    fn a_key_used_earlier_in_the_batch_is_a_duplicate_or_refused() {
        let mut state = empty_state();
        let first = appended(run(
            &mut state,
            &with_key(request("s", ExpectedVersion::Any, 1), "d"),
        ));
        match run(
            &mut state,
            &with_key(request("s", ExpectedVersion::Any, 1), "d"),
        ) {
            Decision::Duplicate(earlier) => {
                let EarlierEvents::InLog { first: from, last } = earlier.events;
                assert_eq!((from, last), (first[0].position, first[0].position));
            }
            other => panic!("expected a duplicate, got {other:?}"),
        }
        match run(
            &mut state,
            &with_key(request("s", ExpectedVersion::Any, 1), "other"),
        ) {
            Decision::Refuse(StoreError::IdempotencyKeyReused { key }) => assert_eq!(key, "k"),
            other => panic!("expected a reused key, got {other:?}"),
        }
    }

    #[test]
    fn a_command_in_the_log_is_a_duplicate_of_its_range() {
        let replay = request("s", ExpectedVersion::NoStream, 1);
        let state = BatchState::new(
            10,
            HashMap::new(),
            vec![EarlierCommand {
                command_id: replay.command_id.to_string(),
                key: None,
                request_hash: None,
                events: EarlierEvents::InLog { first: 3, last: 4 },
            }],
            Utc::now(),
        );
        match state.decide(&replay) {
            Decision::Duplicate(earlier)
                if earlier.events == (EarlierEvents::InLog { first: 3, last: 4 }) => {}
            other => panic!("expected a duplicate, got {other:?}"),
        }
    }
}

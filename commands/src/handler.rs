//! The command pipeline: authorise → load the target → load the facts → decide → append.
//!
//! A decision is first made from the stream states this process holds in memory ([`StreamCache`]),
//! and appended with the target's version and every other stream's version it read as guards:
//! the store refuses it if any of them moved. On such a conflict the whole decision is made again
//! from the log, unless the client pinned the target's version with `If-Match`, in which case the
//! conflict is the answer. A refusal decided from memory is decided again from the log before it
//! is answered, so memory only ever makes a command cheaper, never changes its answer.

use std::sync::Arc;

use chrono::Utc;
use domain::{Command, Event, Facts, StreamState};
use serde::Serialize;
use store::{
    AppendOutcome, AppendRequest, EventStore, ExpectedVersion, IdempotencyKey, NewEvent,
    RecordedEvent, StoreError, StreamVersion,
};

use crate::snapshots;
use tracing::Instrument;
use uuid::Uuid;

use crate::auth::{self, Principal};
pub use crate::error::CommandError;
use crate::metadata::{self, Actor, EventMetadata};
use crate::stream_cache::{Cached, StreamCache};
use crate::stream_locks::StreamLocks;

/// How often a decision is retried after losing a race for its stream to another process
/// (within this process, [`StreamLocks`] queues deciders instead).
const MAX_ATTEMPTS: u32 = 32;

/// One command as the gateway hands it over, already parsed and authenticated.
#[derive(Debug, Clone)]
pub struct CommandRequest {
    pub command: Command,
    pub principal: Principal,
    /// Hex SHA-256 of the command name and its canonical JSON body, for idempotency: only read
    /// when `idempotency_key` is set (callers may leave it empty otherwise).
    pub request_hash: String,
    /// `Idempotency-Key`, at most 200 characters.
    pub idempotency_key: Option<String>,
    /// `If-Match`: the target stream's expected version.
    pub if_match: Option<i64>,
    pub correlation_id: Option<Uuid>,
    pub causation_id: Option<Uuid>,
}

/// One appended event, as the command response lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordedRef {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub position: i64,
}

/// The success body of API.md.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandOutcome {
    pub command_id: Uuid,
    pub stream: String,
    /// The stream's version after the command.
    pub version: i64,
    /// The global position of the last event written.
    pub position: i64,
    pub events: Vec<RecordedRef>,
    /// True when this answers a retry with the first response; nothing new was written.
    #[serde(skip)]
    pub duplicate: bool,
}

impl CommandOutcome {
    fn from_events(events: &[RecordedEvent], duplicate: bool) -> Option<Self> {
        let last = events.last()?;
        let command_id = last
            .metadata
            .get("command_id")
            .and_then(|v| v.as_str())
            .and_then(|v| Uuid::parse_str(v).ok())
            .unwrap_or_default();
        Some(Self {
            command_id,
            stream: last.stream.clone(),
            version: last.version,
            position: last.position,
            events: events
                .iter()
                .map(|e| RecordedRef {
                    id: e.id,
                    event_type: e.event_type.clone(),
                    position: e.position,
                })
                .collect(),
            duplicate,
        })
    }
}

/// Where an attempt reads the streams it decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Memory first ([`StreamCache`]); the first attempt of every command.
    Cache,
    /// The log, for every stream: after a conflict, or to confirm a refusal.
    Log,
}

/// A stream as one attempt loaded it.
struct Loaded {
    state: Arc<StreamState>,
    version: i64,
    /// The version of the stream's newest snapshot known (0: none).
    snapshot_version: i64,
    from_cache: bool,
}

/// What one attempt decided.
struct Decision {
    /// Whether any stream it read came from memory rather than the log.
    from_cache: bool,
    /// The accepted decision, or the refusal to answer (forbidden, rejected, `If-Match`).
    outcome: Result<Accepted, CommandError>,
}

/// An accepted decision, with what it was decided on.
struct Accepted {
    state: Arc<StreamState>,
    /// The target's version it was decided on: the append's expected version.
    version: i64,
    snapshot_version: i64,
    decided: Vec<Event>,
    scope: domain::Scope,
    /// The other streams it read, at the versions it read.
    unchanged: Vec<StreamVersion>,
}

/// Decides and appends commands against one event store.
#[derive(Clone)]
pub struct CommandHandler {
    store: Arc<dyn EventStore>,
    locks: Arc<StreamLocks>,
    cache: Arc<StreamCache>,
}

impl CommandHandler {
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self {
            store,
            locks: Arc::default(),
            cache: Arc::default(),
        }
    }

    /// The store this handler appends to.
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// Runs one command to its end: appended, answered from a previous identical request, or
    /// refused with nothing written.
    pub async fn handle(&self, request: CommandRequest) -> Result<CommandOutcome, CommandError> {
        let name = request.command.name();
        // Debug: the request's own span already names the command at info.
        let span = tracing::debug_span!(
            "command",
            command = name,
            actor = %request.principal.actor_id,
            role = %request.principal.role,
        );
        let result = self.handle_inner(request).instrument(span).await;
        let outcome = match &result {
            Ok(o) if o.duplicate => "duplicate",
            Ok(_) => "accepted",
            Err(e) => e.outcome(),
        };
        metrics::counter!("lianxi_commands_total", "command" => name, "outcome" => outcome)
            .increment(1);
        result
    }

    async fn handle_inner(&self, request: CommandRequest) -> Result<CommandOutcome, CommandError> {
        let CommandRequest {
            mut command,
            principal,
            request_hash,
            idempotency_key,
            if_match,
            correlation_id,
            causation_id,
        } = request;
        if !auth::may_send(principal.role, command.name()) {
            return Err(CommandError::Forbidden(format!(
                "the {} role may not send {}",
                principal.role,
                command.name()
            )));
        }
        let idempotency = idempotency_key.map(|key| IdempotencyKey {
            scope: principal.idempotency_scope(),
            key,
            request_hash,
        });
        if let Some(key) = &idempotency {
            if let Some(outcome) = self.previous_answer(key).await? {
                return Ok(outcome);
            }
        }

        command.assign_ids(Uuid::now_v7);
        let stream = command
            .target_stream()
            .ok_or_else(|| CommandError::Internal("command without a target stream".into()))?;
        let command_id = Uuid::now_v7();
        let _turn = self.locks.lock(&stream).await;

        let mut source = Source::Cache;
        for attempt in 1..=MAX_ATTEMPTS {
            let decision = self
                .decide_on(&command, &principal, &stream, if_match, source)
                .await?;
            let accepted = match decision.outcome {
                Ok(accepted) => accepted,
                // Memory may be behind the log (another process appended): confirm first.
                Err(_) if decision.from_cache => {
                    source = Source::Log;
                    continue;
                }
                Err(refusal) => return Err(refusal),
            };

            let recorded_at = Utc::now();
            let occurred_at = command
                .occurred_at()
                .map(|t| t.get().with_timezone(&Utc))
                .unwrap_or(recorded_at);
            let meta = EventMetadata {
                actor: Actor {
                    id: principal.actor_id,
                    name: principal.name.clone(),
                    role: principal.role,
                },
                acting_for: metadata::acting_for(&principal, &accepted.scope),
                command: command.name(),
                command_id,
                correlation_id: correlation_id.unwrap_or(command_id),
                causation_id: causation_id.unwrap_or(command_id),
                occurred_at: metadata::rfc3339(occurred_at),
            };
            let meta = serde_json::to_value(&meta)
                .map_err(|e| CommandError::Internal(format!("metadata: {e}")))?;
            let events = accepted
                .decided
                .iter()
                .map(|event| NewEvent {
                    id: Uuid::now_v7(),
                    event_type: event.event_type().to_owned(),
                    schema_version: event.schema_version(),
                    data: event.data(),
                    metadata: meta.clone(),
                })
                .collect();
            let append = AppendRequest {
                stream: stream.clone(),
                expected: ExpectedVersion::Exact(accepted.version),
                command_id,
                idempotency: idempotency.clone(),
                events,
                unchanged: accepted.unchanged,
            };
            match self.store.append(append).await {
                Ok(AppendOutcome::Appended(events)) => {
                    let outcome = CommandOutcome::from_events(&events, false)
                        .ok_or_else(|| CommandError::Internal("append wrote no events".into()))?;
                    // The guard held, so the state it was decided on with what was just
                    // written applied is the stream as the log now has it.
                    let mut now = StreamState::clone(&accepted.state);
                    now.evolve_all(&accepted.decided);
                    let mut snapshot_version = accepted.snapshot_version;
                    if snapshots::due(snapshot_version, outcome.version) {
                        snapshots::save_in_background(&self.store, &stream, outcome.version, &now);
                        snapshot_version = outcome.version;
                    }
                    self.cache.put(
                        &stream,
                        Cached {
                            state: Arc::new(now),
                            version: outcome.version,
                            snapshot_version,
                        },
                    );
                    return Ok(outcome);
                }
                Ok(AppendOutcome::Duplicate(events)) => {
                    return CommandOutcome::from_events(&events, true)
                        .ok_or_else(|| CommandError::Internal("duplicate of no events".into()));
                }
                Err(StoreError::VersionConflict {
                    stream: moved,
                    actual,
                    ..
                }) => {
                    self.cache.forget(&moved);
                    if let (true, Some(expected)) = (moved == stream, if_match) {
                        return Err(CommandError::VersionConflict {
                            stream,
                            expected,
                            actual,
                        });
                    }
                    metrics::counter!("lianxi_command_retries_total").increment(1);
                    tracing::debug!(attempt, %moved, "a stream moved under the decision; deciding again");
                    if source == Source::Log {
                        // Another process writes these streams too: step aside a little, with
                        // jitter, so that the two do not keep colliding.
                        let jitter = u64::from(command_id.as_bytes()[15] % 8);
                        let pause = (1u64 << attempt.min(6)) + jitter;
                        tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                    }
                    source = Source::Log;
                }
                Err(StoreError::IdempotencyKeyReused { key }) => {
                    return Err(CommandError::IdempotencyKeyReused(key));
                }
                Err(other) => return Err(CommandError::Store(other)),
            }
        }
        Err(CommandError::Internal(format!(
            "gave up on {stream} after {MAX_ATTEMPTS} conflicting attempts"
        )))
    }

    /// Loads what `command` depends on from `source` and decides it. `Err` is a failure to load;
    /// a refusal is [`Decision::outcome`].
    async fn decide_on(
        &self,
        command: &Command,
        principal: &Principal,
        stream: &str,
        if_match: Option<i64>,
        source: Source,
    ) -> Result<Decision, CommandError> {
        // A target this process has not seen is taken as new: the append's expected version
        // checks that, and a refusal it causes is confirmed from the log.
        let target = self.load(stream, source, true).await?;
        let mut from_cache = target.from_cache;
        let refused = |from_cache, error| Decision {
            from_cache,
            outcome: Err(error),
        };
        if let Some(expected) = if_match {
            if expected != target.version {
                let conflict = CommandError::VersionConflict {
                    stream: stream.to_owned(),
                    expected,
                    actual: target.version,
                };
                return Ok(refused(from_cache, conflict));
            }
        }
        let scope = domain::scope_of_state(command, &target.state);
        if let Err(forbidden) = auth::authorize(principal, command, &scope) {
            return Ok(refused(from_cache, CommandError::Forbidden(forbidden.0)));
        }

        let mut facts = Facts::new();
        let mut unchanged = Vec::new();
        for fact_stream in domain::required_facts_from(command, &target.state) {
            if fact_stream == stream {
                continue;
            }
            let fact = self.load(&fact_stream, source, false).await?;
            from_cache |= fact.from_cache;
            unchanged.push(StreamVersion::new(fact_stream.as_str(), fact.version));
            facts.insert_state(fact_stream, fact.state);
        }
        let decided = match domain::decide_from(command, &target.state, &facts) {
            Ok(decided) => decided,
            Err(rejected) => return Ok(refused(from_cache, rejected.into())),
        };
        Ok(Decision {
            from_cache,
            outcome: Ok(Accepted {
                state: target.state,
                version: target.version,
                snapshot_version: target.snapshot_version,
                decided,
                scope,
                unchanged,
            }),
        })
    }

    /// The first answer to an idempotency key, when the key was used before.
    async fn previous_answer(
        &self,
        key: &IdempotencyKey,
    ) -> Result<Option<CommandOutcome>, CommandError> {
        let found = self
            .store
            .find_idempotent(&key.scope, &key.key)
            .await
            .map_err(CommandError::Store)?;
        match found {
            None => Ok(None),
            Some((hash, _)) if hash != key.request_hash => {
                Err(CommandError::IdempotencyKeyReused(key.key.clone()))
            }
            Some((_, events)) => Ok(CommandOutcome::from_events(&events, true)),
        }
    }

    /// A stream's state from `source`. From the cache, a stream it does not hold is read from
    /// the log, or, when `missing_is_empty`, taken as new.
    async fn load(
        &self,
        stream: &str,
        source: Source,
        missing_is_empty: bool,
    ) -> Result<Loaded, CommandError> {
        if source == Source::Cache {
            if let Some(cached) = self.cache.get(stream) {
                return Ok(Loaded {
                    state: cached.state,
                    version: cached.version,
                    snapshot_version: cached.snapshot_version,
                    from_cache: true,
                });
            }
            if missing_is_empty {
                let initial = StreamState::initial(stream).ok_or_else(|| {
                    CommandError::Internal(format!("{stream} is of no known kind"))
                })?;
                return Ok(Loaded {
                    state: Arc::new(initial),
                    version: 0,
                    snapshot_version: 0,
                    from_cache: true,
                });
            }
        }
        let loaded = snapshots::load(self.store.as_ref(), stream).await?;
        let mut snapshot_version = loaded.snapshot_version;
        if snapshots::due(snapshot_version, loaded.version) {
            snapshots::save_in_background(&self.store, stream, loaded.version, &loaded.state);
            snapshot_version = loaded.version;
        }
        let state = Arc::new(loaded.state);
        self.cache.put(
            stream,
            Cached {
                state: Arc::clone(&state),
                version: loaded.version,
                snapshot_version,
            },
        );
        Ok(Loaded {
            state,
            version: loaded.version,
            snapshot_version,
            from_cache: false,
        })
    }
}

//! The trace query: one entity's entries in log order, read from the index and then from the log.
//!
//! Everything an entry states about its event — position, times, actor, acting for, command,
//! type, stream, hash — is read from the stored event itself; the read model only supplies
//! which positions to read, display names for the summary and `acting_for.name`, and what an
//! entity belongs to for scope checks. The read-model reads share one snapshot (a SQLite read
//! transaction, a PostgreSQL `REPEATABLE READ` one), so the index and the names agree.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::QueryBuilder;
use store::{EventStore, RecordedEvent};
use uuid::Uuid;

use super::{acting_for_stream, index, key, streams_named, EntityDoc, ENTITY, NAME};
use crate::readdb::{on_conn, Conn, ReadDb};
use crate::summary::{summarize, Names};
use crate::ProjectionError;

/// Positions closer than this are read from the log in one range (reading a few events that
/// are not wanted is cheaper than another round trip).
const GAP: i64 = 32;
/// The most events one range read asks for.
const MAX_RANGE: i64 = 1_000;
/// Documents per `IN (…)` load.
const CHUNK: usize = 400;

/// Whose trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Project(Uuid),
    Unit(Uuid),
    /// A token holder: every event it recorded.
    Actor(Uuid),
    Community(Uuid),
}

impl Subject {
    fn kind(&self) -> &'static str {
        match self {
            Subject::Project(_) => "project",
            Subject::Unit(_) => "unit",
            Subject::Actor(_) => "actor",
            Subject::Community(_) => "community",
        }
    }

    fn id(&self) -> Uuid {
        match self {
            Subject::Project(id)
            | Subject::Unit(id)
            | Subject::Actor(id)
            | Subject::Community(id) => *id,
        }
    }

    /// The aggregate's stream; actors have none.
    fn stream(&self) -> Option<String> {
        match self {
            Subject::Actor(_) => None,
            other => Some(format!("{}-{}", other.kind(), other.id())),
        }
    }
}

/// What the reader may see: everything, or one district's, community's or unit's share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Within {
    Everything,
    District(Uuid),
    Community(Uuid),
    Unit(Uuid),
}

impl Within {
    /// The index key every shown entry must also concern.
    fn key(&self) -> Option<String> {
        match self {
            Within::Everything => None,
            Within::District(id) => Some(key("district", *id)),
            Within::Community(id) => Some(key("community", *id)),
            Within::Unit(id) => Some(key("unit", *id)),
        }
    }
}

/// A trace request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceQuery {
    pub subject: Subject,
    pub within: Within,
    /// Only events recorded at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Only events recorded before this time.
    pub to: Option<DateTime<Utc>>,
}

/// Why a trace cannot be given.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The project, unit or community is not known (to the trace read model, yet).
    #[error("no {0} is known")]
    Unknown(String),
    /// The entity lies outside what the reader may see.
    #[error("{0} is outside the reader's scope")]
    OutsideScope(String),
    #[error(transparent)]
    Projection(#[from] ProjectionError),
}

impl From<sqlx::Error> for TraceError {
    fn from(error: sqlx::Error) -> Self {
        TraceError::Projection(error.into())
    }
}

impl From<store::StoreError> for TraceError {
    fn from(error: store::StoreError) -> Self {
        TraceError::Projection(error.into())
    }
}

/// `GET /v1/trace` (API.md, "Shapes").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Trace {
    pub entries: Vec<TraceEntry>,
}

/// One event of a trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TraceEntry {
    pub position: i64,
    /// When the store recorded it: RFC 3339 with microseconds, UTC.
    pub recorded_at: String,
    /// The business time, as recorded in the event's metadata.
    pub occurred_at: String,
    pub actor: TraceActor,
    pub acting_for: TraceActingFor,
    /// The command that appended it (`ClaimProject`).
    pub command: String,
    /// The event type (`ProjectClaimed`).
    pub event_type: String,
    pub stream: String,
    /// One line for people, with display names.
    pub summary: String,
    /// The event's hash in its stream's chain, as stored.
    pub hash: String,
}

/// Who recorded an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TraceActor {
    pub id: Uuid,
    pub name: String,
    pub role: String,
}

/// Whom the actor acted for, with its display name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TraceActingFor {
    /// `district`, `community`, `unit` or `system`.
    pub kind: String,
    pub id: Option<Uuid>,
    pub name: Option<String>,
}

#[derive(Deserialize)]
struct RawActingFor {
    kind: String,
    id: Option<Uuid>,
}

/// The metadata fields a trace shows.
#[derive(Deserialize)]
struct RawMetadata {
    actor: TraceActor,
    acting_for: Option<RawActingFor>,
    command: String,
    occurred_at: String,
}

/// Display names by stream id.
struct DocNames(BTreeMap<String, String>);

impl Names for DocNames {
    fn name_of(&self, stream: &str) -> Option<String> {
        self.0.get(stream).cloned()
    }
}

/// The trace of `query.subject` as far as the active `trace` generation has got.
pub async fn trace(
    db: &ReadDb,
    store: &dyn EventStore,
    query: &TraceQuery,
) -> Result<Trace, TraceError> {
    let subject = query.subject;
    let unknown = || TraceError::Unknown(format!("{} {}", subject.kind(), subject.id()));
    // One snapshot for every read-model read below.
    let mut tx = db.begin_snapshot().await?;
    let mut conn = tx.conn();
    let generation: Option<(i64, i64)> = on_conn!(&mut conn, |conn, Db| {
        sqlx::query_as("SELECT generation, version FROM projections WHERE name = $1 AND active = 1")
            .bind(NAME)
            .fetch_optional(&mut *conn)
            .await?
    });
    let Some((generation, version)) = generation else {
        return match subject {
            Subject::Actor(_) => Ok(Trace {
                entries: Vec::new(),
            }),
            _ => Err(unknown()),
        };
    };
    let doc = match subject.stream() {
        Some(stream) => {
            let mut docs =
                load_docs(&mut conn, generation, std::iter::once(stream.clone())).await?;
            Some(docs.remove(&stream).ok_or_else(unknown)?)
        }
        None => None,
    };
    if !may_see(subject, doc.as_ref(), query.within) {
        return Err(TraceError::OutsideScope(format!(
            "{} {}",
            subject.kind(),
            subject.id()
        )));
    }
    let positions = positions(
        &mut conn,
        generation,
        version,
        &key(subject.kind(), subject.id()),
        query.within.key().as_deref(),
    )
    .await?;
    let events: Vec<RecordedEvent> = read_positions(store, &positions)
        .await?
        .into_iter()
        .filter(|e| query.from.is_none_or(|from| e.recorded_at >= from))
        .filter(|e| query.to.is_none_or(|to| e.recorded_at < to))
        .collect();
    let mut decoded = Vec::with_capacity(events.len());
    let mut streams = BTreeSet::new();
    for event in events {
        let metadata: RawMetadata =
            serde_json::from_value(event.metadata.clone()).map_err(|e| {
                ProjectionError::Storage(format!(
                    "the event at position {} has unreadable metadata: {e}",
                    event.position
                ))
            })?;
        let domain_event =
            domain::upcast::upcast(&event.event_type, event.schema_version, event.data.clone());
        if let Ok(domain_event) = &domain_event {
            streams.extend(streams_named(domain_event));
        }
        if let Some(acting) = &metadata.acting_for {
            streams.extend(acting_for_stream(&acting.kind, acting.id));
        }
        decoded.push((event, metadata, domain_event));
    }
    let names = DocNames(
        load_docs(&mut conn, generation, streams.into_iter())
            .await?
            .into_iter()
            .map(|(stream, doc)| (stream, doc.name))
            .collect(),
    );
    tx.rollback().await?;
    let entries = decoded
        .into_iter()
        .map(|(event, metadata, domain_event)| {
            let summary = match domain_event {
                Ok(domain_event) => summarize(&domain_event, &names),
                Err(error) => format!("{} (not summarised: {error})", event.event_type),
            };
            let acting_for = match metadata.acting_for {
                Some(acting) => TraceActingFor {
                    name: acting_for_stream(&acting.kind, acting.id)
                        .and_then(|s| names.name_of(&s)),
                    kind: acting.kind,
                    id: acting.id,
                },
                None => TraceActingFor {
                    kind: "system".to_owned(),
                    id: None,
                    name: None,
                },
            };
            TraceEntry {
                position: event.position,
                recorded_at: store::hash::format_recorded_at(event.recorded_at),
                occurred_at: metadata.occurred_at,
                actor: metadata.actor,
                acting_for,
                command: metadata.command,
                event_type: event.event_type,
                stream: event.stream,
                summary,
                hash: event.hash,
            }
        })
        .collect();
    Ok(Trace { entries })
}

/// Whether a reader limited to `within` may see `subject` (whose document is `doc`). A district
/// role sees the entities of its district; a community secretary its community, its projects
/// and the units admitted to it; a unit representative its own unit. Anyone may ask for an
/// actor: the entries are then limited to the reader's scope.
fn may_see(subject: Subject, doc: Option<&EntityDoc>, within: Within) -> bool {
    match (within, subject) {
        (Within::Everything, _)
        | (Within::District(_) | Within::Community(_), Subject::Actor(_)) => true,
        (Within::District(district), _) => doc.and_then(|d| d.district) == Some(district),
        (Within::Community(community), Subject::Community(id)) => id == community,
        (Within::Community(community), Subject::Project(_)) => {
            doc.and_then(|d| d.community) == Some(community)
        }
        (Within::Community(community), Subject::Unit(_)) => {
            doc.is_some_and(|d| d.communities.contains(&community))
        }
        (Within::Unit(unit), Subject::Unit(id)) => id == unit,
        (Within::Unit(_), _) => false,
    }
}

/// The positions of the events that concern `entity` (and `also`, when given), in order.
async fn positions(
    conn: &mut Conn<'_>,
    generation: i64,
    version: i64,
    entity: &str,
    also: Option<&str>,
) -> Result<Vec<i64>, ProjectionError> {
    let positions = index::entity_positions(conn, generation, version, entity).await?;
    let Some(also) = also else {
        return Ok(positions);
    };
    let allowed: std::collections::HashSet<i64> =
        index::entity_positions(conn, generation, version, also)
            .await?
            .into_iter()
            .collect();
    Ok(positions
        .into_iter()
        .filter(|p| allowed.contains(p))
        .collect())
}

/// The events at `positions` (ascending), read from the log in ranges of nearby positions.
async fn read_positions(
    store: &dyn EventStore,
    positions: &[i64],
) -> Result<Vec<RecordedEvent>, TraceError> {
    let mut found = Vec::with_capacity(positions.len());
    let mut first = 0;
    while first < positions.len() {
        let start = positions[first];
        let mut last = first;
        while last + 1 < positions.len()
            && positions[last + 1] - positions[last] <= GAP
            && positions[last + 1] - start < MAX_RANGE
        {
            last += 1;
        }
        let wanted = &positions[first..=last];
        let span = usize::try_from(positions[last] - start + 1).unwrap_or(1);
        for event in store.read_all(start - 1, span).await? {
            if wanted.binary_search(&event.position).is_ok() {
                found.push(event);
            }
        }
        first = last + 1;
    }
    if found.len() != positions.len() {
        let missing = positions
            .iter()
            .find(|p| found.binary_search_by_key(p, |e| &e.position).is_err())
            .copied()
            .unwrap_or_default();
        return Err(TraceError::Projection(ProjectionError::Storage(format!(
            "position {missing} is in the trace index but not in the log \
             (is the read-model file from another data directory?)"
        ))));
    }
    Ok(found)
}

/// The entity documents of `streams` in `generation` (those that exist), by stream.
async fn load_docs(
    conn: &mut Conn<'_>,
    generation: i64,
    streams: impl Iterator<Item = String>,
) -> Result<BTreeMap<String, EntityDoc>, TraceError> {
    let streams: Vec<String> = streams.collect();
    let mut docs = BTreeMap::new();
    for chunk in streams.chunks(CHUNK) {
        let rows: Vec<(String, String)> = on_conn!(&mut *conn, |conn, Db| {
            let mut query =
                QueryBuilder::<Db>::new("SELECT key, doc FROM documents WHERE projection = ");
            query
                .push_bind(NAME)
                .push(" AND generation = ")
                .push_bind(generation)
                .push(" AND kind = ")
                .push_bind(ENTITY)
                .push(" AND key IN (");
            let mut separated = query.separated(", ");
            for stream in chunk {
                separated.push_bind(stream.as_str());
            }
            separated.push_unseparated(")");
            query.build_query_as().fetch_all(&mut *conn).await?
        });
        for (stream, raw) in rows {
            let doc: EntityDoc = serde_json::from_str(&raw)
                .map_err(|e| ProjectionError::Storage(format!("trace document {stream}: {e}")))?;
            docs.insert(stream, doc);
        }
    }
    Ok(docs)
}

//! Loading one long stream: a project's stream of N events (1,000 by default), one load after
//! the other from one task, for the measurement window.
//!
//! The stream is a real project's: proposed, claimed, launched, then N − 3 activities recorded,
//! the events the domain writes (`domain::testing::fixtures`), appended through the store in
//! appends of 100 events. Four loaders over the same stream, in the same run:
//! - baseline: the very `SELECT` `PostgresStore::read_stream` sends, its rows fetched as plain
//!   columns (text, no JSON parsing), on a connection of its own: the floor of reading every row;
//! - `read_stream`: `EventStore::read_stream(stream, 0)` through the store's read pool, into
//!   `RecordedEvent`s (each row's data and metadata parsed);
//! - whole fold: every event read as text, decoded into a `domain::Event` and folded into the
//!   stream's state: what the command handler paid on a miss before snapshots;
//! - the handler's load (`commands::snapshots::load`, the very function the handler calls when a
//!   stream is not in its memory): the newest snapshot, then the events after it, folded. The
//!   snapshot is taken as the handler takes them, in its worst case: it trails the head by
//!   `SNAPSHOT_EVERY − 1` events (the stream is built to N − 63 events, loaded once so that the
//!   handler saves a snapshot, then built on to N).
//!
//! A handler keeps recent streams in memory, so it pays a load only on a miss.

use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use chrono::{DateTime, Utc};
use commands::snapshots::SNAPSHOT_EVERY;
use domain::ids::{ActivityId, CommunityId, ProjectId, UnitId};
use domain::testing::fixtures;
use domain::StreamState;
use sqlx::{Connection, PgConnection};
use store::postgres::PostgresStore;
use store::{AppendOutcome, AppendRequest, EventStore, ExpectedVersion, NewEvent};
use uuid::Uuid;

use crate::load::{self, Op};
use crate::payload::{Ids, Payload};
use crate::procstat::CpuUse;
use crate::report::{Measurement, Point};
use crate::Settings;

/// The baseline loader's name in the tables.
pub const BASELINE: &str = "baseline: the same SELECT, rows as text";
/// `read_stream` into `RecordedEvent`s.
pub const READ_STREAM: &str = "read_stream";
/// `read_stream_raw`, every event decoded from its text and folded (the handler's load on a miss
/// before snapshots).
pub const WHOLE_FOLD: &str = "read_stream_raw + upcast + fold (whole stream)";
/// `commands::snapshots::load`: the handler's load on a miss.
pub const HANDLER_LOAD: &str = "snapshot + tail (handler's load)";
/// Events per append while building the stream.
const EVENTS_PER_APPEND: usize = 100;

/// `PostgresStore::read_stream`'s statement (store/src/postgres/rows.rs, `select_events!`).
const SELECT: &str = "SELECT position, id, stream_id, version, event_type, schema_version, \
    data::text AS data, metadata::text AS metadata, recorded_at, hash FROM events \
    WHERE stream_id = $1 AND version > $2 ORDER BY version";

type Row = (
    i64,
    Uuid,
    String,
    i64,
    String,
    i32,
    String,
    String,
    DateTime<Utc>,
    String,
);

/// How a loader loads.
#[derive(Clone, Copy)]
enum Kind {
    Plain,
    Store,
    WholeFold,
    Handler,
}

struct Loader {
    kind: Kind,
    conn: Option<PgConnection>,
    store: Arc<PostgresStore>,
    stream: String,
    events: usize,
}

impl Op for Loader {
    async fn run(&mut self) -> std::result::Result<(), String> {
        let loaded = match (self.kind, self.conn.as_mut()) {
            (Kind::Plain, Some(conn)) => sqlx::query_as::<_, Row>(SELECT)
                .bind(&self.stream)
                .bind(0_i64)
                .fetch_all(conn)
                .await
                .map_err(|error| format!("postgres: {error}"))?
                .len(),
            (Kind::Plain, None) => return Err("no connection".to_owned()),
            (Kind::Store, _) => self
                .store
                .read_stream(&self.stream, 0)
                .await
                .map_err(|error| format!("store: {error}"))?
                .len(),
            (Kind::WholeFold, _) => {
                let recorded = self
                    .store
                    .read_stream_raw(&self.stream, 0)
                    .await
                    .map_err(|error| format!("store: {error}"))?;
                let events = recorded
                    .iter()
                    .map(|e| domain::upcast::upcast_str(&e.event_type, e.schema_version, &e.data))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|error| format!("upcast: {error}"))?;
                let state = StreamState::fold(&self.stream, &events).ok_or("an unknown kind")?;
                std::hint::black_box(state);
                events.len()
            }
            (Kind::Handler, _) => {
                let loaded = commands::snapshots::load(self.store.as_ref(), &self.stream)
                    .await
                    .map_err(|error| format!("load: {error}"))?;
                if loaded.snapshot_version == 0 {
                    return Err("the load found no snapshot".to_owned());
                }
                usize::try_from(loaded.version).map_err(|e| e.to_string())?
            }
        };
        if loaded == self.events {
            Ok(())
        } else {
            Err(format!("loaded {loaded} events, not {}", self.events))
        }
    }
}

/// Appends events `from..to` of project `project`'s stream (numbered from 0: proposed, claimed,
/// launched, then activities) through `store`.
async fn extend_stream(
    store: &PostgresStore,
    project: Uuid,
    (from, to): (usize, usize),
    ids: &mut Ids,
) -> Result<()> {
    let project_id = ProjectId(project);
    let stream = project_id.stream();
    let (community, unit) = (CommunityId(ids.next_id()), UnitId(ids.next_id()));
    let mut written = from;
    while written < to {
        let count = EVENTS_PER_APPEND.min(to - written);
        let command_id = ids.next_id();
        let events = (written..written + count)
            .map(|n| {
                let event = match n {
                    0 => fixtures::project_proposed(project_id, community),
                    1 => fixtures::project_claimed(project_id, unit, None),
                    2 => fixtures::project_launched(project_id, unit),
                    _ => fixtures::activity_recorded(project_id, ActivityId(ids.next_id()), unit),
                };
                let metadata = Payload::new(project, command_id).metadata;
                NewEvent {
                    id: ids.next_id(),
                    event_type: event.event_type().to_owned(),
                    schema_version: event.schema_version(),
                    data: event.data(),
                    metadata,
                }
            })
            .collect();
        let request = AppendRequest {
            stream: stream.clone(),
            expected: ExpectedVersion::Exact(i64::try_from(written)?),
            command_id,
            idempotency: None,
            events,
            unchanged: Vec::new(),
        };
        match store
            .append(request)
            .await
            .context("writing the long stream")?
        {
            AppendOutcome::Appended(_) => written += count,
            AppendOutcome::Duplicate(_) => anyhow::bail!("a duplicate while writing the stream"),
        }
    }
    Ok(())
}

/// Writes a project's stream of `events` events through `store`, with the snapshot the command
/// handler would have saved on the way (`SNAPSHOT_EVERY − 1` events behind the head), and
/// returns its id.
async fn build_stream(store: &PostgresStore, events: usize, ids: &mut Ids) -> Result<String> {
    ensure!(
        events >= 3,
        "--stream-events must be at least 3 (a project proposed, claimed, launched)"
    );
    let project = ids.next_id();
    let stream = ProjectId(project).stream();
    let behind = usize::try_from(SNAPSHOT_EVERY - 1)?.min(events - 1);
    extend_stream(store, project, (0, events - behind), ids).await?;
    // What the handler does after a load from the log when a snapshot is due (it saves in the
    // background; here the benchmark waits for it).
    let loaded = commands::snapshots::load(store, &stream)
        .await
        .map_err(|error| anyhow::anyhow!("loading the stream: {error}"))?;
    let saved = commands::snapshots::save(store, &stream, loaded.version, &loaded.state)
        .await
        .map_err(|error| anyhow::anyhow!("saving the snapshot: {error}"))?;
    ensure!(saved, "the long stream's snapshot was not saved");
    extend_stream(store, project, (events - behind, events), ids).await?;
    Ok(stream)
}

/// Measures the four loaders, one after the other, on a stream of `events` events in the
/// empty database at `url`.
pub async fn measure(
    settings: &Settings,
    url: &str,
    postmaster: u32,
    events: usize,
) -> Result<Vec<Point>> {
    let store = Arc::new(
        PostgresStore::connect(url)
            .await
            .context("opening the store for the stream loads")?,
    );
    let mut ids = Ids::new(settings.ids);
    let stream = build_stream(&store, events, &mut ids).await?;
    let mut points = Vec::with_capacity(4);
    for (kind, name) in [
        (Kind::Plain, BASELINE),
        (Kind::Store, READ_STREAM),
        (Kind::WholeFold, WHOLE_FOLD),
        (Kind::Handler, HANDLER_LOAD),
    ] {
        settings.wait_for_quiet().await;
        let conn = match kind {
            Kind::Plain => Some(
                PgConnection::connect(url)
                    .await
                    .context("a connection for the plain loads")?,
            ),
            Kind::Store | Kind::WholeFold | Kind::Handler => None,
        };
        let loader = Loader {
            kind,
            conn,
            store: Arc::clone(&store),
            stream: stream.clone(),
            events,
        };
        let (load, before, after) = load::measure(vec![loader], settings.window, || async move {
            Ok(CpuUse::with_database(None, Some(postmaster)))
        })
        .await?;
        eprintln!(
            "  load of {events} events, {name}: {:.0} loads/s, p50 {:.2} ms, p99 {:.2} ms, {} failed",
            load.rate(),
            load.latency_ms(0.5),
            load.latency_ms(0.99),
            load.failed()
        );
        points.push(Point {
            workload: name.to_owned(),
            concurrency: 1,
            measurement: Measurement {
                load,
                cpu: after.since(&before),
                commits: None,
                projection_lag: None,
            },
        });
    }
    Ok(points)
}

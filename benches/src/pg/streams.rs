//! Loading one long stream: `read_stream` of a stream of N events (1,000 by default), one load
//! after the other from one task, for the measurement window.
//!
//! Three loaders over the same stream, in the same run:
//! - baseline: the very `SELECT` `PostgresStore::read_stream` sends, its rows fetched as plain
//!   columns (text, no JSON parsing), on a connection of its own: the floor of any load;
//! - `read_stream`: `EventStore::read_stream(stream, 0)` through the store's read pool, into
//!   `RecordedEvent`s (each row's data and metadata parsed);
//! - `read_stream_raw + upcast`: what `CommandHandler` does when a stream is not in its memory
//!   (`handler.rs`, `read`): the rows with their JSON as text, every event's data decoded straight
//!   into a `domain::Event` (metadata not parsed). The handler's
//!   method is private, so this repeats its few lines; a handler keeps recent streams in memory, so
//!   it pays this only on a miss.
//!
//! The stream's events are the benchmark's `ProjectProposed` (same data and metadata as every
//! other figure here), written in appends of 100 events.

use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use chrono::{DateTime, Utc};
use sqlx::{Connection, PgConnection};
use store::postgres::PostgresStore;
use store::{AppendOutcome, AppendRequest, EventStore, ExpectedVersion, NewEvent};
use uuid::Uuid;

use crate::load::{self, Op};
use crate::payload::{Ids, Payload, EVENT_TYPE};
use crate::procstat::CpuUse;
use crate::report::{Measurement, Point};
use crate::Settings;

/// The baseline loader's name in the tables.
pub const BASELINE: &str = "baseline: the same SELECT, rows as text";
/// `read_stream` into `RecordedEvent`s.
pub const READ_STREAM: &str = "read_stream";
/// `read_stream_raw`, then every event decoded from its text (the command handler's load on a
/// miss).
pub const HANDLER_LOAD: &str = "read_stream_raw + upcast (handler's load)";
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
            (Kind::Handler, _) => {
                let recorded = self
                    .store
                    .read_stream_raw(&self.stream, 0)
                    .await
                    .map_err(|error| format!("store: {error}"))?;
                let events = recorded
                    .into_iter()
                    .map(|e| domain::upcast::upcast_str(&e.event_type, e.schema_version, &e.data))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|error| format!("upcast: {error}"))?;
                events.len()
            }
        };
        if loaded == self.events {
            Ok(())
        } else {
            Err(format!("loaded {loaded} events, not {}", self.events))
        }
    }
}

/// Writes a stream of `events` events through `store` and returns its id.
async fn build_stream(store: &PostgresStore, events: usize, ids: &mut Ids) -> Result<String> {
    let project = ids.next_id();
    let stream = format!("project-{project}");
    let mut written = 0;
    while written < events {
        let count = EVENTS_PER_APPEND.min(events - written);
        let command_id = ids.next_id();
        let request = AppendRequest {
            stream: stream.clone(),
            expected: ExpectedVersion::Exact(i64::try_from(written)?),
            command_id,
            idempotency: None,
            events: (0..count)
                .map(|_| {
                    let payload = Payload::new(project, command_id);
                    NewEvent {
                        id: ids.next_id(),
                        event_type: EVENT_TYPE.to_owned(),
                        schema_version: 1,
                        data: payload.data,
                        metadata: payload.metadata,
                    }
                })
                .collect(),
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
    Ok(stream)
}

/// Measures the three loaders, one after the other, on a stream of `events` events in the
/// empty database at `url`.
pub async fn measure(
    settings: &Settings,
    url: &str,
    postmaster: u32,
    events: usize,
) -> Result<Vec<Point>> {
    ensure!(events > 0, "--stream-events must be at least 1");
    let store = Arc::new(
        PostgresStore::connect(url)
            .await
            .context("opening the store for the stream loads")?,
    );
    let mut ids = Ids::new(settings.ids);
    let stream = build_stream(&store, events, &mut ids).await?;
    let mut points = Vec::with_capacity(3);
    for (kind, name) in [
        (Kind::Plain, BASELINE),
        (Kind::Store, READ_STREAM),
        (Kind::Handler, HANDLER_LOAD),
    ] {
        settings.wait_for_quiet().await;
        let conn = match kind {
            Kind::Plain => Some(
                PgConnection::connect(url)
                    .await
                    .context("a connection for the plain loads")?,
            ),
            Kind::Store | Kind::Handler => None,
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

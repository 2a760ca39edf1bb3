//! The PostgreSQL baseline: a plain loop of one-row `INSERT` transactions, each client its own
//! connection, into a table with the columns and indexes of lianxi's `events` table and rows of
//! the same shape (the store benchmark's event: same data and metadata, same id layout).
//!
//! Each `INSERT` is auto-committed, so every row pays its own commit; with several connections
//! PostgreSQL may flush several backends' commits with one WAL flush (its own group commit, no
//! `commit_delay`), which is why this baseline is measured at every concurrency. lianxi is
//! reported as a ratio of it at the same concurrency.

use anyhow::{Context, Result};
use chrono::Utc;
use sqlx::{Connection, PgConnection};

use crate::load::{self, Op};
use crate::payload::{IdOrder, Ids, Payload, EVENT_TYPE};
use crate::procstat::CpuUse;
use crate::report::Measurement;
use crate::Settings;

/// lianxi's `events` table (store/migrations/postgres), without its triggers, sequence function
/// and `commands` table: same columns, types, keys and indexes.
const SCHEMA: &str = "CREATE TABLE events (
    position       bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id             uuid        NOT NULL,
    stream_id      text        NOT NULL,
    version        bigint      NOT NULL CHECK (version >= 1),
    event_type     text        NOT NULL,
    schema_version integer     NOT NULL,
    data           json        NOT NULL,
    metadata       json        NOT NULL,
    recorded_at    timestamptz NOT NULL,
    hash           text        NOT NULL,
    command_id     uuid        NOT NULL,
    CONSTRAINT events_id_unique UNIQUE (id),
    CONSTRAINT events_stream_version_unique UNIQUE (stream_id, version)
);
CREATE INDEX events_command_id ON events (command_id);";

const INSERT: &str = "INSERT INTO events \
    (id, stream_id, version, event_type, schema_version, data, metadata, recorded_at, hash, command_id) \
    VALUES ($1, $2, 1, $3, 1, $4::json, $5::json, $6, $7, $8)";

/// One client: its own connection, one auto-committed `INSERT` per event.
struct Inserter {
    conn: PgConnection,
    ids: Ids,
}

impl Op for Inserter {
    async fn run(&mut self) -> std::result::Result<(), String> {
        let event_id = self.ids.next_id();
        let project_id = self.ids.next_id();
        let command_id = self.ids.next_id();
        let payload = Payload::new(project_id, command_id);
        sqlx::query(INSERT)
            .bind(event_id)
            .bind(format!("project-{project_id}"))
            .bind(EVENT_TYPE)
            .bind(payload.data.to_string())
            .bind(payload.metadata.to_string())
            .bind(Utc::now())
            .bind(crate::baseline::HASH)
            .bind(command_id)
            .execute(&mut self.conn)
            .await
            .map(|_| ())
            .map_err(|error| format!("postgres: {error}"))
    }
}

/// Measures one-row `INSERT` transactions/s with `concurrency` connections to the empty database
/// at `url`; `postmaster` is the database server's pid (its CPU is measured).
pub async fn measure(
    settings: &Settings,
    url: &str,
    postmaster: u32,
    concurrency: usize,
    ids: IdOrder,
) -> Result<Measurement> {
    let mut setup = PgConnection::connect(url)
        .await
        .context("connecting for the baseline")?;
    sqlx::raw_sql(SCHEMA)
        .execute(&mut setup)
        .await
        .context("creating the baseline table")?;
    let mut ops = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        ops.push(Inserter {
            conn: PgConnection::connect(url)
                .await
                .context("a baseline connection")?,
            ids: Ids::new(ids),
        });
    }
    let (load, before, after) = load::measure(ops, settings.window, || async move {
        Ok(CpuUse::with_database(None, Some(postmaster)))
    })
    .await?;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&mut setup)
        .await
        .context("counting the baseline's rows")?;
    anyhow::ensure!(
        u64::try_from(rows).ok() == Some(load.total_ok),
        "the baseline table holds {rows} rows but {} inserts were acknowledged",
        load.total_ok
    );
    let _ = setup.close().await;
    Ok(Measurement {
        load,
        cpu: after.since(&before),
        commits: None,
        projection_lag: None,
    })
}

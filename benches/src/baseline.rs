//! The baseline: one durable commit per event, the floor any append path on this disk is
//! measured against.
//!
//! A plain table in a fresh SQLite file, with the store's durability settings (WAL,
//! `synchronous = FULL`), written from one connection (SQLite has one writer) by one task, one
//! auto-committed `INSERT` per event of the store benchmark's shape. Each commit waits for its own
//! fsync of the WAL, so the rate is about 1 / fsync latency: what lianxi would reach if it
//! committed every append on its own. Group commit is how lianxi is meant to beat it.

use std::path::Path;

use anyhow::{Context, Result};
use chrono::Utc;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};

use crate::load::{self, Op, Window};
use crate::payload::{IdOrder, Ids, Payload, EVENT_TYPE};
use crate::procstat::CpuUse;
use crate::report::Measurement;

const SCHEMA: &str = "CREATE TABLE events (
    position       INTEGER PRIMARY KEY,
    id             TEXT    NOT NULL,
    stream_id      TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    event_type     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    data           TEXT    NOT NULL,
    metadata       TEXT    NOT NULL,
    recorded_at    TEXT    NOT NULL,
    hash           TEXT    NOT NULL
)";

const INSERT: &str = "INSERT INTO events \
    (id, stream_id, version, event_type, schema_version, data, metadata, recorded_at, hash) \
    VALUES (?1, ?2, 1, ?3, 1, ?4, ?5, ?6, ?7)";

/// A stand-in for the store's hash column: same width, not computed (the baseline measures
/// commits, not hashing).
pub(crate) const HASH: &str = "5d41402abc4b2a76b9719d911017c5925d41402abc4b2a76b9719d911017c592";

/// The single writer: one connection, one event per transaction.
struct Committer {
    conn: SqliteConnection,
    ids: Ids,
}

impl Op for Committer {
    async fn run(&mut self) -> std::result::Result<(), String> {
        let event_id = self.ids.next_id();
        let project_id = self.ids.next_id();
        let payload = Payload::new(project_id, self.ids.next_id());
        sqlx::query(INSERT)
            .bind(event_id.to_string())
            .bind(format!("project-{project_id}"))
            .bind(EVENT_TYPE)
            .bind(payload.data.to_string())
            .bind(payload.metadata.to_string())
            .bind(Utc::now().to_rfc3339())
            .bind(HASH)
            .execute(&mut self.conn)
            .await
            .map(|_| ())
            .map_err(|error| format!("sqlite: {error}"))
    }
}

/// The store's durability settings on a fresh file at `path`.
fn options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
}

/// Measures durable single-event commits/s in a fresh file under `dir`.
pub async fn measure(dir: &Path, window: Window, ids: IdOrder) -> Result<Measurement> {
    let scratch = tempfile::Builder::new()
        .prefix("lianxi-bench-baseline-")
        .tempdir_in(dir)
        .context("creating the baseline's directory")?;
    let mut conn = options(&scratch.path().join("baseline.db"))
        .connect()
        .await
        .context("opening the baseline database")?;
    sqlx::query(SCHEMA)
        .execute(&mut conn)
        .await
        .context("creating the baseline table")?;
    check_durability(&mut conn).await?;
    let (load, before, after) = load::measure(
        vec![Committer {
            conn,
            ids: Ids::new(ids),
        }],
        window,
        || async { Ok(CpuUse::now(None)) },
    )
    .await?;
    Ok(Measurement {
        load,
        cpu: after.since(&before),
        commits: None,
        projection_lag: None,
    })
}

/// Refuses to report a baseline that is not WAL + `synchronous = FULL`.
async fn check_durability(conn: &mut SqliteConnection) -> Result<()> {
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut *conn)
        .await?;
    let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(&mut *conn)
        .await?;
    anyhow::ensure!(
        journal == "wal" && synchronous == 2,
        "the baseline connection is journal_mode={journal}, synchronous={synchronous}, not WAL/FULL"
    );
    Ok(())
}

/// The bundled SQLite's version.
pub async fn sqlite_version() -> Result<String> {
    let mut conn = SqliteConnection::connect("sqlite::memory:").await?;
    let version: String = sqlx::query_scalar("SELECT sqlite_version()")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    Ok(version)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn commits_durably_and_counts() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let window = Window {
            warmup: Duration::from_millis(20),
            measure: Duration::from_millis(200),
        };
        let result = measure(dir.path(), window, IdOrder::V7)
            .await
            .expect("the baseline runs");
        assert!(result.load.ok > 0);
        assert_eq!(result.load.failed(), 0, "{:?}", result.load.failures);
    }
}

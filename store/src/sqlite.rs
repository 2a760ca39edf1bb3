//! The embedded backend: the whole log in one SQLite file (`<data_dir>/lianxi.db`).
//!
//! Appends go to one writer task (`writer`, on a thread of its own) that group-commits them on
//! its own connection; reads, `verify` and tokens use a small pool of other connections, which
//! WAL lets run while the writer writes, and one more connection checkpoints the WAL in the
//! background (`checkpoint`). An acknowledged append has been fsynced (`synchronous = FULL`).
//!
//! Several processes may open the same file (`lianxi serve` and `lianxi demo`, say): SQLite's
//! file lock serialises their writers and each writer re-reads versions inside its transaction,
//! so streams stay consistent. [`EventStore::subscribe`] only announces this process's appends.

mod checkpoint;
mod rows;
mod schema;
mod snapshots;
mod tokens;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};
use sqlx::ConnectOptions;
use tokio::sync::{mpsc, watch};

use self::rows::{decode_all, select_events, EventRow};
use self::writer::Writer;
use crate::commit_clock::CommitClock;
use crate::hash::ChainVerifier;
use crate::queue::{self, AppendJob, QUEUE_DEPTH};
use crate::{
    AppendOutcome, AppendRequest, EventStore, Position, RawEvent, RecordedEvent, Snapshot,
    StoreError, VerifyFailure, VerifyReport,
};

/// The database file's name inside the data directory.
pub const DATABASE_FILE: &str = "lianxi.db";

/// Connections for reads, `verify` and tokens (the writer has its own).
const READ_CONNECTIONS: u32 = 8;
/// Rows per page when `verify` walks the log.
const VERIFY_PAGE: i64 = 1_000;

/// The SQLite event store. Cloning is cheap and every clone shares the one writer.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    pool: SqlitePool,
    writer: mpsc::Sender<AppendJob>,
    head: Arc<watch::Sender<Position>>,
    clock: Arc<CommitClock>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) `<data_dir>/lianxi.db`, creating `data_dir` too.
    pub async fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        tokio::fs::create_dir_all(data_dir).await.map_err(|error| {
            StoreError::Unavailable(format!("cannot create {}: {error}", data_dir.display()))
        })?;
        Self::open_file(&data_dir.join(DATABASE_FILE)).await
    }

    /// Opens (creating if needed) the database file at `path`, applies migrations and starts the
    /// writer. Must be called inside a Tokio runtime; the writer stops when the last clone of the
    /// returned store is dropped.
    #[tracing::instrument(skip_all, fields(path = %path.display()), err)]
    pub async fn open_file(path: &Path) -> Result<SqliteStore, StoreError> {
        let options = schema::connect_options(path);
        let writer_options = checkpoint::writer_options(&options);
        let mut write_conn = writer_options.connect().await?;
        schema::migrate(&mut write_conn).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .connect_with(options.clone())
            .await?;
        let head: Position = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
            .fetch_one(&pool)
            .await?;
        let head = Arc::new(watch::Sender::new(head));
        checkpoint::spawn(&options, head.subscribe()).await?;
        let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
        let clock = Arc::new(CommitClock::default());
        Writer::new(
            write_conn,
            writer_options,
            queue,
            Arc::clone(&head),
            Arc::clone(&clock),
        )
        .spawn()?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                pool,
                writer: jobs,
                head,
                clock,
            }),
        })
    }

    /// Up to `limit` stored rows after position `after`, in position order: what `read_all`
    /// and `read_all_raw` decode in their two ways.
    /// The rows of `stream` after `after_version`, in version order.
    async fn stream_rows(
        &self,
        stream: &str,
        after_version: i64,
    ) -> Result<Vec<EventRow>, StoreError> {
        Ok(sqlx::query_as(select_events!(
            "WHERE stream_id = ?1 AND version > ?2 ORDER BY version"
        ))
        .bind(stream)
        .bind(after_version)
        .fetch_all(&self.inner.pool)
        .await?)
    }

    async fn rows_after(&self, after: Position, limit: usize) -> Result<Vec<EventRow>, StoreError> {
        // One writer assigns positions in commit order under the file lock, so a position is
        // never committed after a higher one: reading by position cannot skip an event.
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Ok(sqlx::query_as(select_events!(
            "WHERE position > ?1 ORDER BY position LIMIT ?2"
        ))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.inner.pool)
        .await?)
    }

    /// The database file this store writes.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }
}

#[async_trait]
impl EventStore for SqliteStore {
    #[tracing::instrument(
        level = "debug",
        skip_all,
        fields(
            stream = %request.stream,
            command_id = %request.command_id,
            events = request.events.len(),
        ),
    )]
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, StoreError> {
        queue::append(&self.inner.writer, request).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(stream = %stream, after_version), err)]
    async fn read_stream(
        &self,
        stream: &str,
        after_version: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = self.stream_rows(stream, after_version).await?;
        decode_all(rows)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(stream = %stream, after_version), err)]
    async fn read_stream_raw(
        &self,
        stream: &str,
        after_version: i64,
    ) -> Result<Vec<RawEvent>, StoreError> {
        let rows = self.stream_rows(stream, after_version).await?;
        rows.into_iter().map(EventRow::into_raw).collect()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(after, limit), err)]
    async fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        decode_all(self.rows_after(after, limit).await?)
    }

    async fn read_all_raw(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RawEvent>, StoreError> {
        let rows = self.rows_after(after, limit).await?;
        rows.into_iter().map(EventRow::into_raw).collect()
    }

    #[tracing::instrument(level = "debug", skip_all, err)]
    async fn head(&self) -> Result<Position, StoreError> {
        let head = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
            .fetch_one(&self.inner.pool)
            .await?;
        Ok(head)
    }

    fn subscribe(&self) -> watch::Receiver<Position> {
        self.inner.head.subscribe()
    }

    fn committed_at(&self, position: Position) -> Option<chrono::DateTime<chrono::Utc>> {
        self.inner.clock.committed_at(position)
    }

    #[tracing::instrument(level = "debug", skip_all, err)]
    async fn find_idempotent(
        &self,
        scope: &str,
        key: &str,
    ) -> Result<Option<(String, Vec<RecordedEvent>)>, StoreError> {
        // One read transaction, so the command row and its events come from the same snapshot.
        let mut tx = self.inner.pool.begin().await?;
        let command: Option<(Option<String>, Position, Position)> = sqlx::query_as(
            "SELECT request_hash, first_position, last_position FROM commands \
             WHERE idem_scope = ?1 AND idem_key = ?2",
        )
        .bind(scope)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((request_hash, first, last)) = command else {
            return Ok(None);
        };
        let rows: Vec<EventRow> = sqlx::query_as(select_events!(
            "WHERE position BETWEEN ?1 AND ?2 ORDER BY position"
        ))
        .bind(first)
        .bind(last)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some((request_hash.unwrap_or_default(), decode_all(rows)?)))
    }

    #[tracing::instrument(skip_all, err)]
    async fn verify(&self) -> Result<VerifyReport, StoreError> {
        // Fix the end first: events appended while verifying are left for the next run.
        let head = self.head().await?;
        let mut verifier = ChainVerifier::new();
        let mut after = 0;
        while after < head {
            let rows: Vec<EventRow> = sqlx::query_as(select_events!(
                "WHERE position > ?1 AND position <= ?2 ORDER BY position LIMIT ?3"
            ))
            .bind(after)
            .bind(head)
            .bind(VERIFY_PAGE)
            .fetch_all(&self.inner.pool)
            .await?;
            let Some(last) = rows.last() else {
                break;
            };
            let page_end = last.position;
            for row in rows {
                // One writer assigns positions without gaps here: a gap is a deleted event.
                let failure = if row.position != after + 1 {
                    Some(missing(after + 1, "no event at this position: deleted"))
                } else {
                    match row.parse() {
                        Ok(parsed) => verifier.check(&row.into_event(parsed)),
                        Err(error) => Some(row.undecodable(error.to_string())),
                    }
                };
                if let Some(failure) = failure {
                    return Ok(report_failure(&verifier, head, failure));
                }
                after += 1;
            }
            after = page_end;
        }
        // The last events of the log leave no gap when deleted; the commands that wrote them
        // still name their positions.
        let dangling: Option<(String, i64)> = sqlx::query_as(
            "SELECT c.command_id, c.last_position FROM commands c \
             LEFT JOIN events e ON e.position = c.last_position \
             WHERE e.position IS NULL OR e.command_id != c.command_id \
             ORDER BY c.last_position LIMIT 1",
        )
        .fetch_optional(&self.inner.pool)
        .await?;
        if let Some((command_id, position)) = dangling {
            let failure = missing(
                position,
                &format!("command {command_id} wrote an event here that is gone"),
            );
            return Ok(report_failure(&verifier, head, failure));
        }
        Ok(verifier.report(head, None))
    }

    async fn read_snapshot(
        &self,
        stream: &str,
        schema: i32,
    ) -> Result<Option<Snapshot>, StoreError> {
        snapshots::read(&self.inner.pool, stream, schema).await
    }

    async fn snapshots(
        &self,
        schema: i32,
        after: &str,
        limit: usize,
    ) -> Result<Vec<Snapshot>, StoreError> {
        snapshots::page(&self.inner.pool, schema, after, limit).await
    }

    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<bool, StoreError> {
        snapshots::save(&self.inner.pool, snapshot).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.inner.pool).await?;
        Ok(())
    }
}

/// A failure for an event that is not there at all.
fn missing(position: Position, reason: &str) -> VerifyFailure {
    VerifyFailure {
        position,
        event_id: uuid::Uuid::nil(),
        stream: String::new(),
        version: 0,
        expected_hash: String::new(),
        stored_hash: String::new(),
        reason: reason.to_owned(),
    }
}

fn report_failure(
    verifier: &ChainVerifier,
    head: Position,
    failure: VerifyFailure,
) -> VerifyReport {
    tracing::warn!(
        position = failure.position,
        reason = %failure.reason,
        "the log does not verify"
    );
    verifier.report(head, Some(failure))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ExpectedVersion, NewEvent};

    async fn open_temp() -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = SqliteStore::open(dir.path()).await.expect("open");
        (store, dir)
    }

    #[tokio::test]
    async fn connections_are_durable_wal_with_foreign_keys() {
        let (store, _dir) = open_temp().await;
        let mut conn = store.inner.pool.acquire().await.expect("a connection");
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await
            .expect("journal_mode");
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *conn)
            .await
            .expect("synchronous");
        let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&mut *conn)
            .await
            .expect("foreign_keys");
        assert_eq!(journal, "wal");
        assert_eq!(synchronous, 2, "FULL");
        assert_eq!(foreign_keys, 1);
    }

    #[tokio::test]
    async fn an_append_without_a_writer_is_unavailable_not_a_panic() {
        let (store, _dir) = open_temp().await;
        let (writer, queue) = mpsc::channel(1);
        drop(queue);
        let orphan = SqliteStore {
            inner: Arc::new(Inner {
                path: store.inner.path.clone(),
                pool: store.inner.pool.clone(),
                writer,
                head: Arc::clone(&store.inner.head),
                clock: Arc::default(),
            }),
        };
        let request = AppendRequest {
            stream: "s".into(),
            expected: ExpectedVersion::Any,
            command_id: uuid::Uuid::new_v4(),
            idempotency: None,
            events: vec![NewEvent {
                id: uuid::Uuid::new_v4(),
                event_type: "A".into(),
                schema_version: 1,
                data: serde_json::json!({}),
                metadata: serde_json::json!({}),
            }],
            unchanged: Vec::new(),
        };
        match orphan.append(request).await {
            Err(StoreError::Unavailable(_)) => {}
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
}

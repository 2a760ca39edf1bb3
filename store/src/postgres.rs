//! The PostgreSQL backend: the same log as the embedded one, for a district that outgrows one
//! SQLite file or runs more than one server.
//!
//! What differs from SQLite, and why:
//! - **Writers run in parallel.** Each server process group-commits its own appends (one task,
//!   one transaction per batch, see [`writer`]), and processes do not serialise on a global
//!   lock: a batch locks only the streams it touches (advisory locks, in one global order so two
//!   processes never deadlock).
//! - **Positions come from a sequence**, so they increase but may skip a number where a
//!   transaction rolled back, and they follow the order positions were taken, not commit order.
//! - **Readers never skip an event** that commits late at a lower position. Before it takes
//!   positions, a writer announces a number below all of them as a shared advisory lock; a
//!   reader that finds a hole in the positions reads only up to the lowest announced number
//!   (`lianxi_safe_position()` in the migration), and one that finds none needs no such bound.
//!   A transaction that never writes the log (a report, a migration of another table) announces
//!   nothing and holds no reader back — the usual `pg_snapshot_xmin` horizon waits for it.
//! - **Wake-ups cross processes**: a commit sends `NOTIFY lianxi_events`, and every store
//!   listening (see [`listener`]) moves its head, so subscribers in other servers wake too.
//!
//! Only lianxi should take bigint-keyed advisory locks in its database: any such lock held by
//! another program looks like a writer in flight and holds a reader that reaches a hole in the
//! positions back until it is released (nothing is ever skipped; reads just wait). Give lianxi a
//! database of its own.

mod heads;
mod listener;
mod rows;
mod snapshots;
mod tokens;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tokio::sync::{mpsc, oneshot, watch};

use self::rows::{decode_all, select_events, PgEventRow};
use self::writer::Writer;
use crate::commit_clock::CommitClock;
use crate::hash::ChainVerifier;
use crate::queue::{self, AppendJob, QUEUE_DEPTH};
use crate::{
    AppendOutcome, AppendRequest, EventStore, Position, RawEvent, RecordedEvent, Snapshot,
    StoreError, VerifyFailure, VerifyReport,
};

/// The channel a commit notifies, with the batch's last position as payload.
const CHANNEL: &str = "lianxi_events";
/// Events per page when verifying the whole log.
const VERIFY_PAGE: i64 = 1_000;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How to reach the database and how many connections to use.
#[derive(Debug, Clone)]
pub struct PostgresSettings {
    pub connect: PgConnectOptions,
    /// Connections for reads (stream loads, catch-up, tokens), one of which the listener keeps;
    /// the writer has one more of its own.
    pub read_connections: u32,
    /// How long a request waits for a connection before it fails as unavailable.
    pub acquire_timeout: Duration,
}

impl PostgresSettings {
    /// Settings for `url` (`postgres://user:password@host:port/database?…`) with the defaults.
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        let connect: PgConnectOptions = url
            .parse()
            .map_err(|error| StoreError::Invalid(format!("database url: {error}")))?;
        Ok(PostgresSettings {
            connect,
            read_connections: 16,
            acquire_timeout: Duration::from_secs(5),
        })
    }
}

/// The event log in a PostgreSQL database. Cheap to clone; clones share the connections and the
/// writer.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    writer: mpsc::Sender<AppendJob>,
    head: Arc<watch::Sender<Position>>,
    clock: Arc<CommitClock>,
    /// Dropped with the store, which stops the listener.
    _listening: oneshot::Sender<()>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let options = self.inner.pool.connect_options();
        f.debug_struct("PostgresStore")
            .field("host", &options.get_host())
            .field("port", &options.get_port())
            .field("database", &options.get_database())
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` with the default settings.
    pub async fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        Self::open(PostgresSettings::from_url(url)?).await
    }

    /// Connects, applies pending migrations and starts the writer and the listener.
    #[tracing::instrument(skip_all, err)]
    pub async fn open(settings: PostgresSettings) -> Result<PostgresStore, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(settings.read_connections.max(1))
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(settings.connect.clone())
            .await?;
        MIGRATOR.run(&pool).await.map_err(|error| {
            StoreError::Unavailable(format!("migrating the event log: {error}"))
        })?;
        // The writer tasks' own pool, a connection each: it reconnects by itself after the
        // server restarts.
        let write_pool = PgPoolOptions::new()
            .max_connections(writer::WRITERS)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(settings.connect)
            .await?;
        let head = Arc::new(watch::Sender::new(safe_head(&pool).await?));
        // This store's name in commit notifications: its listener skips its own commits, which
        // its writer has announced already.
        let name = uuid::Uuid::new_v4().simple().to_string();
        let (stop, stopped) = oneshot::channel();
        listener::spawn(pool.clone(), Arc::clone(&head), name.clone(), stopped);
        let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
        let clock = Arc::new(CommitClock::default());
        Writer::new(
            write_pool,
            name,
            queue,
            Arc::clone(&head),
            Arc::clone(&clock),
        )
        .spawn();
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                pool,
                writer: jobs,
                head,
                clock,
                _listening: stop,
            }),
        })
    }

    /// The read pool, for callers that keep their own tables in the same database.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The rows of `stream` after `after_version`, in version order.
    async fn stream_rows(
        &self,
        stream: &str,
        after_version: i64,
    ) -> Result<Vec<PgEventRow>, StoreError> {
        Ok(sqlx::query_as(select_events!(
            "WHERE stream_id = $1 AND version > $2 ORDER BY version"
        ))
        .bind(stream)
        .bind(after_version)
        .fetch_all(&self.inner.pool)
        .await?)
    }

    /// Up to `limit` events after `after`, never skipping one that commits later at a lower
    /// position (see the module docs).
    ///
    /// Most reads find positions running on from `after + 1` without a hole: every position up
    /// to the last one read is then committed and was read, so nothing can be skipped, and the
    /// safe position (a scan of `pg_locks`, ~0.1 ms of PostgreSQL's CPU, once per commit for a
    /// relay or a projector following the log) is not needed. Only a hole, a writer in flight
    /// or a rolled-back one, sends the read through `lianxi_read_all`, which stops below it
    /// while it may still fill.
    async fn rows_after(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<PgEventRow>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<PgEventRow> = sqlx::query_as(select_events!(
            "WHERE position > $1 ORDER BY position LIMIT $2"
        ))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.inner.pool)
        .await?;
        if runs_on_from(after, &rows) {
            return Ok(rows);
        }
        Ok(sqlx::query_as(
            "SELECT position, id, stream_id, version, event_type, schema_version, data, metadata, \
             recorded_at, hash FROM lianxi_read_all($1, $2)",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.inner.pool)
        .await?)
    }
}

/// Whether `rows` hold positions `after + 1`, `after + 2`, … without a hole.
fn runs_on_from(after: Position, rows: &[PgEventRow]) -> bool {
    rows.iter()
        .zip(after.saturating_add(1)..)
        .all(|(row, expected)| row.position == expected)
}

/// The last position a reader can read without skipping anything (see the module docs).
async fn safe_head(pool: &PgPool) -> Result<Position, StoreError> {
    Ok(sqlx::query_scalar("SELECT lianxi_head()")
        .fetch_one(pool)
        .await?)
}

#[async_trait]
impl EventStore for PostgresStore {
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
        Ok(rows.into_iter().map(PgEventRow::into_raw).collect())
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
        Ok(rows.into_iter().map(PgEventRow::into_raw).collect())
    }

    #[tracing::instrument(level = "debug", skip_all, err)]
    async fn head(&self) -> Result<Position, StoreError> {
        safe_head(&self.inner.pool).await
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
        // One statement, so the command row and its events come from one snapshot.
        let rows: Vec<(Option<String>, PgEventRow)> = sqlx::query_as::<_, rows::KeyedEventRow>(
            "SELECT c.request_hash, e.position, e.id, e.stream_id, e.version, e.event_type, \
                    e.schema_version, e.data::text AS data, e.metadata::text AS metadata, \
                    e.recorded_at, e.hash \
             FROM commands AS c JOIN events AS e ON e.command_id = c.command_id \
             WHERE c.idem_scope = $1 AND c.idem_key = $2 ORDER BY e.position",
        )
        .bind(scope)
        .bind(key)
        .fetch_all(&self.inner.pool)
        .await?
        .into_iter()
        .map(rows::KeyedEventRow::split)
        .collect();
        let Some(request_hash) = rows.first().map(|(hash, _)| hash.clone()) else {
            return Ok(None);
        };
        let events = decode_all(rows.into_iter().map(|(_, row)| row).collect())?;
        Ok(Some((request_hash.unwrap_or_default(), events)))
    }

    #[tracing::instrument(skip_all, err)]
    async fn verify(&self) -> Result<VerifyReport, StoreError> {
        let head = self.head().await?;
        let mut verifier = ChainVerifier::new();
        let mut after = 0;
        loop {
            let rows: Vec<PgEventRow> = sqlx::query_as(select_events!(
                "WHERE position > $1 AND position <= $2 ORDER BY position LIMIT $3"
            ))
            .bind(after)
            .bind(head)
            .bind(VERIFY_PAGE)
            .fetch_all(&self.inner.pool)
            .await?;
            let Some(last) = rows.last() else {
                break;
            };
            after = last.position;
            for row in rows {
                let failure = match row.parse() {
                    Ok(parsed) => verifier.check(&row.into_event(parsed)),
                    Err(error) => Some(row.undecodable(error.to_string())),
                };
                if let Some(failure) = failure {
                    return Ok(report_failure(&verifier, head, failure));
                }
            }
        }
        // Positions may have gaps here, so a deleted event is found through its command: every
        // command row records how many events it wrote. (Within a stream the chain finds it.)
        // Up to the safe position, not the head: the head is wherever the last surviving event is.
        let safe: Position = sqlx::query_scalar("SELECT lianxi_safe_position()")
            .fetch_one(&self.inner.pool)
            .await?;
        let short: Option<(String, i64, i64)> = sqlx::query_as(
            "SELECT c.command_id::text, c.last_position, coalesce(e.n, 0) \
             FROM commands AS c \
             LEFT JOIN (SELECT command_id, count(*) AS n FROM events GROUP BY command_id) AS e \
                    ON e.command_id = c.command_id \
             WHERE c.last_position <= $1 AND coalesce(e.n, 0) <> c.event_count \
             ORDER BY c.last_position LIMIT 1",
        )
        .bind(safe)
        .fetch_optional(&self.inner.pool)
        .await?;
        if let Some((command_id, position, found)) = short {
            let failure = VerifyFailure {
                position,
                event_id: uuid::Uuid::nil(),
                stream: String::new(),
                version: 0,
                expected_hash: String::new(),
                stored_hash: String::new(),
                reason: format!(
                    "command {command_id} wrote events that are gone ({found} of them remain)"
                ),
            };
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

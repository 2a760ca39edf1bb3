//! The single SQLite writer: one task, one connection, group commit.
//!
//! SQLite admits one writer at a time, and each commit costs an fsync. So every `append` is sent
//! to this task, which takes the first waiting request plus whatever else is already queued (up
//! to [`MAX_BATCH_REQUESTS`] requests / [`queue::MAX_BATCH_EVENTS`] events) and writes them all in one
//! `BEGIN IMMEDIATE … COMMIT`: one fsync for the whole batch. While a batch is being written, the
//! next one queues up, so the busier the store, the larger the batches. The task runs on a thread
//! of its own (see [`Writer::spawn`]).
//!
//! Inside that transaction a batch costs a handful of statements, however many requests it holds:
//! one query loads the stream heads, one the earlier commands ([`super::plan`] then decides every
//! request in memory), and multi-row `INSERT`s write all accepted events and command rows. Should
//! the database refuse that bulk write (say an event id already in the log), the writer rolls the
//! transaction back and redoes the batch in a new one, request by request, each under its own
//! savepoint, so only the offending request is refused.
//!
//! Guarantees:
//! - **Each request stands alone**: a refused request (version conflict, reused idempotency key,
//!   a write the database rejects) changes nothing; the others in the batch still commit.
//! - **Nothing is acknowledged before it is durable**: replies go out only after `COMMIT`
//!   returned; if the batch fails, every request in it gets [`StoreError::Unavailable`] (and the
//!   transaction is rolled back).
//! - **Other processes are respected**: the last position, stream heads and earlier commands are
//!   read inside the `BEGIN IMMEDIATE` transaction, which holds the file's write lock, and are
//!   kept only for that transaction. A second process writing the same file therefore never
//!   causes a duplicate version, a broken chain or a doubled idempotent command.
//! - **Positions are gap-free** and follow commit order: the batch continues from max(position)
//!   under the write lock, and a refused request takes no position.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use chrono::Utc;
use sqlx::sqlite::{Sqlite, SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection, Transaction};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use super::rows::{decode_all, select_events, EventRow};
use crate::commit_clock::CommitClock;
use crate::hash::to_stored_precision;
use crate::plan::{BatchState, Decision, EarlierCommand, EarlierEvents, Staged, StreamHead};
use crate::queue::{self, AppendJob, MAX_BATCH_REQUESTS};
use crate::{AppendOutcome, AppendRequest, Position, StoreError};

/// Rows per multi-row `INSERT` (at most 11 parameters a row: far below SQLite's limit).
const ROWS_PER_INSERT: usize = 64;

/// The writer task's state: it owns the write connection outright.
pub(super) struct Writer {
    conn: SqliteConnection,
    options: SqliteConnectOptions,
    jobs: mpsc::Receiver<AppendJob>,
    head: Arc<watch::Sender<Position>>,
    clock: Arc<CommitClock>,
}

impl Writer {
    pub fn new(
        conn: SqliteConnection,
        options: SqliteConnectOptions,
        jobs: mpsc::Receiver<AppendJob>,
        head: Arc<watch::Sender<Position>>,
        clock: Arc<CommitClock>,
    ) -> Self {
        Writer {
            conn,
            options,
            jobs,
            head,
            clock,
        }
    }

    /// Starts the writer on a thread of its own, with its own single-threaded runtime.
    ///
    /// The writer is the bottleneck of every append: each of its statements is a round trip to
    /// SQLite's worker thread, and on a shared runtime each wake-up would wait behind whatever
    /// request tasks are queued (with many concurrent writers, dozens of them). On its own thread
    /// it resumes as soon as SQLite answers. The thread ends when every `SqliteStore` clone is
    /// gone; if it cannot start, or dies, appends get [`StoreError::Unavailable`].
    pub fn spawn(self) -> Result<(), StoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| StoreError::Unavailable(format!("writer runtime: {error}")))?;
        // Not a child of whatever span opened the store: the writer outlives it.
        let span = tracing::info_span!(parent: None, "sqlite_writer");
        std::thread::Builder::new()
            .name("lianxi-store-writer".into())
            .spawn(move || runtime.block_on(self.run().instrument(span)))
            .map_err(|error| StoreError::Unavailable(format!("writer thread: {error}")))?;
        Ok(())
    }

    /// Serves appends until every sender (every `SqliteStore` clone) is gone.
    async fn run(mut self) {
        let mut batch = Vec::with_capacity(MAX_BATCH_REQUESTS);
        while let Some(events) = queue::next_batch(&mut self.jobs, &mut batch).await {
            self.commit(&mut batch, events).await;
        }
        tracing::debug!("every store handle is gone; the writer stops");
    }

    /// Writes one batch and answers every request in it. Leaves `jobs` empty.
    #[tracing::instrument(name = "group_commit", level = "debug", skip_all, fields(requests = jobs.len(), events = events))]
    async fn commit(&mut self, jobs: &mut Vec<AppendJob>, events: usize) {
        let started = Instant::now();
        let requests: Vec<&AppendRequest> = jobs.iter().map(|job| &job.request).collect();
        let outcome = group_commit(&mut self.conn, &requests)
            .await
            .map(|committed| (committed.results, committed.head));
        if !queue::answer(jobs, outcome, &self.head, &self.clock, started) {
            self.recover().await;
        }
    }

    /// After a failed batch, replaces the write connection if it no longer answers, so one
    /// broken connection does not fail every later append.
    async fn recover(&mut self) {
        if self.conn.ping().await.is_ok() {
            return;
        }
        match self.options.connect().await {
            Ok(conn) => self.conn = conn,
            Err(error) => tracing::error!(%error, "cannot reopen the write connection"),
        }
    }
}

/// The outcome of one committed batch.
struct Committed {
    /// One result per request, in request order.
    results: Vec<Result<AppendOutcome, StoreError>>,
    /// The new last position, when anything was appended.
    head: Option<Position>,
}

/// Runs all `requests` in one `BEGIN IMMEDIATE` transaction. An `Err` means the whole batch
/// failed and was rolled back.
async fn group_commit(
    conn: &mut SqliteConnection,
    requests: &[&AppendRequest],
) -> Result<Committed, sqlx::Error> {
    match write_together(conn, requests).await? {
        Some(committed) => Ok(committed),
        None => write_one_by_one(conn, requests).await,
    }
}

/// The fast path: decides the whole batch in memory, then writes every accepted request in a
/// few multi-row statements and commits. `None` when the database refused the bulk write: the
/// transaction was rolled back and nothing was written.
async fn write_together(
    conn: &mut SqliteConnection,
    requests: &[&AppendRequest],
) -> Result<Option<Committed>, sqlx::Error> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let mut state = load_state(&mut tx, requests).await?;
    let decisions: Vec<Decision> = requests
        .iter()
        .map(|request| {
            let decision = state.decide(request);
            if let Decision::Append(staged) = &decision {
                state.accept(request, staged);
            }
            decision
        })
        .collect();
    let appends: Vec<(&AppendRequest, &[Staged])> = requests
        .iter()
        .zip(&decisions)
        .filter_map(|(request, decision)| match decision {
            Decision::Append(staged) => Some((*request, staged.as_slice())),
            _ => None,
        })
        .collect();
    match insert(&mut tx, &appends).await {
        Ok(()) => finish(tx, decisions, &state).await.map(Some),
        Err(sqlx::Error::Database(error)) => {
            tracing::debug!(%error, "the bulk write was refused; writing request by request");
            tx.rollback().await?;
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

/// The slow path, after a refused bulk write: a fresh transaction (another process may have
/// written in between, so everything is loaded again) in which each request is written under
/// its own savepoint, so the database refusing one request's write refuses that request alone.
async fn write_one_by_one(
    conn: &mut SqliteConnection,
    requests: &[&AppendRequest],
) -> Result<Committed, sqlx::Error> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let mut state = load_state(&mut tx, requests).await?;
    let mut decisions = Vec::with_capacity(requests.len());
    for request in requests {
        let decision = match state.decide(request) {
            Decision::Append(staged) => {
                let mut savepoint = tx.begin().await?;
                match insert(&mut savepoint, &[(*request, staged.as_slice())]).await {
                    Ok(()) => {
                        savepoint.commit().await?;
                        state.accept(request, &staged);
                        Decision::Append(staged)
                    }
                    Err(sqlx::Error::Database(error)) => {
                        savepoint.rollback().await?;
                        let actual = staged.first().map_or(0, |s| s.event.version - 1);
                        Decision::Refuse(refusal(error.as_ref(), request, actual))
                    }
                    Err(error) => return Err(error),
                }
            }
            other => other,
        };
        decisions.push(decision);
    }
    finish(tx, decisions, &state).await
}

/// Reads back what duplicates refer to, commits, and pairs every request with its reply.
async fn finish(
    mut tx: Transaction<'_, Sqlite>,
    decisions: Vec<Decision>,
    state: &BatchState,
) -> Result<Committed, sqlx::Error> {
    let appended_any = decisions
        .iter()
        .any(|decision| matches!(decision, Decision::Append(_)));
    let results = resolve(&mut tx, decisions).await?;
    tx.commit().await?;
    Ok(Committed {
        results,
        head: appended_any.then(|| state.last_position()),
    })
}

/// Loads what the batch's decisions depend on: the last position, the heads of the streams it
/// touches and the earlier commands sharing a command id or idempotency key with it.
async fn load_state(
    conn: &mut SqliteConnection,
    requests: &[&AppendRequest],
) -> Result<BatchState, sqlx::Error> {
    let last_position: Position =
        sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
            .fetch_one(&mut *conn)
            .await?;

    let streams: HashSet<&str> = requests
        .iter()
        .flat_map(|r| {
            let facts = r.unchanged.iter().map(|c| c.stream.as_str());
            std::iter::once(r.stream.as_str()).chain(facts)
        })
        .collect();
    let heads: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT e.stream_id, e.version, e.hash \
         FROM json_each(?1) AS s \
         JOIN events AS e ON e.position = ( \
             SELECT latest.position FROM events AS latest \
             WHERE latest.stream_id = s.value ORDER BY latest.version DESC LIMIT 1)",
    )
    .bind(json_array(&streams)?)
    .fetch_all(&mut *conn)
    .await?;
    let heads: HashMap<String, StreamHead> = heads
        .into_iter()
        .map(|(stream, version, hash)| {
            let hash = Some(hash);
            (stream, StreamHead { version, hash })
        })
        .collect();

    let command_ids: Vec<String> = requests.iter().map(|r| r.command_id.to_string()).collect();
    let keys: Vec<[&str; 2]> = requests
        .iter()
        .filter_map(|r| r.idempotency.as_ref())
        .map(|key| [key.scope.as_str(), key.key.as_str()])
        .collect();
    let earlier: Vec<CommandRow> = sqlx::query_as(
        "SELECT command_id, idem_scope, idem_key, request_hash, first_position, last_position \
         FROM commands WHERE command_id IN (SELECT value FROM json_each(?1)) \
         UNION \
         SELECT c.command_id, c.idem_scope, c.idem_key, c.request_hash, c.first_position, \
                c.last_position \
         FROM json_each(?2) AS k \
         JOIN commands AS c ON c.idem_scope = json_extract(k.value, '$[0]') \
                           AND c.idem_key = json_extract(k.value, '$[1]')",
    )
    .bind(json_array(&command_ids)?)
    .bind(json_array(&keys)?)
    .fetch_all(&mut *conn)
    .await?;

    Ok(BatchState::new(
        last_position,
        heads,
        earlier.into_iter().map(CommandRow::into_earlier).collect(),
        to_stored_precision(Utc::now()),
    ))
}

/// A row of `commands`.
#[derive(Debug, sqlx::FromRow)]
struct CommandRow {
    command_id: String,
    idem_scope: Option<String>,
    idem_key: Option<String>,
    request_hash: Option<String>,
    first_position: i64,
    last_position: i64,
}

impl CommandRow {
    fn into_earlier(self) -> EarlierCommand {
        EarlierCommand {
            command_id: self.command_id,
            key: self.idem_scope.zip(self.idem_key),
            request_hash: self.request_hash,
            events: EarlierEvents::InLog {
                first: self.first_position,
                last: self.last_position,
            },
        }
    }
}

/// A list as a JSON array text, for `json_each(?)`: one parameter whatever the batch size, so
/// the statement text (and SQLite's prepared statement) is the same for every batch.
fn json_array<T: serde::Serialize>(items: T) -> Result<String, sqlx::Error> {
    serde_json::to_string(&items).map_err(|error| sqlx::Error::Encode(Box::new(error)))
}

/// Inserts the events and command rows of `appends`, in multi-row statements.
async fn insert(
    conn: &mut SqliteConnection,
    appends: &[(&AppendRequest, &[Staged])],
) -> Result<(), sqlx::Error> {
    let command_ids: Vec<String> = appends
        .iter()
        .map(|(request, _)| request.command_id.to_string())
        .collect();
    let events: Vec<(&str, &Staged)> = command_ids
        .iter()
        .zip(appends)
        .flat_map(|(command_id, (_, staged))| staged.iter().map(|s| (command_id.as_str(), s)))
        .collect();
    for chunk in events.chunks(ROWS_PER_INSERT) {
        let mut query = sqlx::query(insert_sql(Table::Events, chunk.len()));
        for (command_id, staged) in chunk {
            let event = &staged.event;
            query = query
                .bind(event.position)
                .bind(event.id.to_string())
                .bind(&event.stream)
                .bind(event.version)
                .bind(&event.event_type)
                .bind(event.schema_version)
                .bind(&staged.data)
                .bind(&staged.metadata)
                .bind(&staged.recorded_at)
                .bind(&event.hash)
                .bind(*command_id);
        }
        query.execute(&mut *conn).await?;
    }

    let commands: Vec<(&str, &AppendRequest, Position, Position)> = command_ids
        .iter()
        .zip(appends)
        .filter_map(|(command_id, (request, staged))| {
            let first = staged.first()?.event.position;
            let last = staged.last()?.event.position;
            Some((command_id.as_str(), *request, first, last))
        })
        .collect();
    for chunk in commands.chunks(ROWS_PER_INSERT) {
        let mut query = sqlx::query(insert_sql(Table::Commands, chunk.len()));
        for (command_id, request, first, last) in chunk {
            let key = request.idempotency.as_ref();
            query = query
                .bind(*command_id)
                .bind(key.map(|key| key.scope.as_str()))
                .bind(key.map(|key| key.key.as_str()))
                .bind(key.map(|key| key.request_hash.as_str()))
                .bind(&request.stream)
                .bind(*first)
                .bind(*last);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// The tables the writer inserts into.
#[derive(Debug, Clone, Copy)]
enum Table {
    Events,
    Commands,
}

/// `INSERT INTO <table> (…) VALUES (…), (…)` for `rows` rows (1..=ROWS_PER_INSERT), built once
/// per row count so SQLite's statement cache sees the same text every time.
fn insert_sql(table: Table, rows: usize) -> &'static str {
    static EVENTS: OnceLock<Vec<String>> = OnceLock::new();
    static COMMANDS: OnceLock<Vec<String>> = OnceLock::new();
    let (cache, head, columns) = match table {
        Table::Events => (
            &EVENTS,
            "INSERT INTO events (position, id, stream_id, version, event_type, schema_version, \
             data, metadata, recorded_at, hash, command_id) VALUES ",
            11,
        ),
        Table::Commands => (
            &COMMANDS,
            "INSERT INTO commands (command_id, idem_scope, idem_key, request_hash, stream_id, \
             first_position, last_position) VALUES ",
            7,
        ),
    };
    let statements = cache.get_or_init(|| {
        let row = format!("({})", vec!["?"; columns].join(", "));
        (1..=ROWS_PER_INSERT)
            .map(|count| format!("{head}{}", vec![row.as_str(); count].join(", ")))
            .collect()
    });
    statements
        .get(rows.clamp(1, ROWS_PER_INSERT) - 1)
        .map(String::as_str)
        .unwrap_or_default()
}

/// Turns decisions into replies, reading back the events of duplicates of earlier batches.
async fn resolve(
    conn: &mut SqliteConnection,
    decisions: Vec<Decision>,
) -> Result<Vec<Result<AppendOutcome, StoreError>>, sqlx::Error> {
    let mut results = Vec::with_capacity(decisions.len());
    for decision in decisions {
        results.push(match decision {
            Decision::Append(staged) => Ok(AppendOutcome::Appended(
                staged.into_iter().map(|staged| staged.event).collect(),
            )),
            Decision::Duplicate(earlier) => {
                let EarlierEvents::InLog { first, last } = earlier.events;
                let rows: Vec<EventRow> = sqlx::query_as(select_events!(
                    "WHERE position BETWEEN ?1 AND ?2 ORDER BY position"
                ))
                .bind(first)
                .bind(last)
                .fetch_all(&mut *conn)
                .await?;
                decode_all(rows).map(AppendOutcome::Duplicate)
            }
            Decision::Refuse(refused) => Err(refused),
        });
    }
    Ok(results)
}

/// What a refused write means for the caller. Versions and keys were checked before writing, so
/// these are the database's own guards firing: a unique (stream, version) still maps to a
/// version conflict, as it does on every backend.
fn refusal(
    error: &(dyn sqlx::error::DatabaseError + 'static),
    request: &AppendRequest,
    actual: i64,
) -> StoreError {
    let message = error.message();
    if message.contains("events.stream_id, events.version") {
        StoreError::VersionConflict {
            stream: request.stream.clone(),
            expected: request.expected,
            actual,
        }
    } else if message.contains("events.id") {
        StoreError::Invalid(format!(
            "an event id of command {} is already in the log",
            request.command_id
        ))
    } else {
        StoreError::Unavailable(format!("the append was refused: {message}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_statements_have_one_placeholder_group_per_row() {
        for (table, columns) in [(Table::Events, 11), (Table::Commands, 7)] {
            for rows in [1, 2, ROWS_PER_INSERT] {
                let sql = insert_sql(table, rows);
                assert_eq!(sql.matches('(').count(), rows + 1, "{sql}");
                assert_eq!(sql.matches('?').count(), rows * columns);
            }
        }
    }

    /// The writer never lets it come to this, but the database's own guard must still read as
    /// a version conflict: another writer of the same version, say.
    #[tokio::test]
    async fn a_duplicate_stream_version_refused_by_the_database_is_a_version_conflict() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let options = super::super::schema::connect_options(&dir.path().join("t.db"));
        let mut conn = options.connect().await.expect("connect");
        super::super::schema::migrate(&mut conn)
            .await
            .expect("migrate");

        let request = |expected| AppendRequest {
            stream: "s".into(),
            expected,
            command_id: uuid::Uuid::new_v4(),
            idempotency: None,
            events: vec![crate::NewEvent {
                id: uuid::Uuid::new_v4(),
                event_type: "A".into(),
                schema_version: 1,
                data: serde_json::json!({}),
                metadata: serde_json::json!({}),
            }],
            unchanged: Vec::new(),
        };
        // Two writers that both believe the stream is empty, at different positions.
        let first = request(crate::ExpectedVersion::NoStream);
        let second = request(crate::ExpectedVersion::NoStream);
        let staged = |last_position, request: &AppendRequest| {
            let state = BatchState::new(last_position, HashMap::new(), Vec::new(), Utc::now());
            match state.decide(request) {
                Decision::Append(staged) => staged,
                other => panic!("expected Append, got {other:?}"),
            }
        };
        let first_staged = staged(0, &first);
        insert(&mut conn, &[(&first, first_staged.as_slice())])
            .await
            .expect("the first insert");
        let second_staged = staged(1, &second);
        let error = match insert(&mut conn, &[(&second, second_staged.as_slice())]).await {
            Err(sqlx::Error::Database(error)) => error,
            other => panic!("expected a database error, got {other:?}"),
        };
        match refusal(error.as_ref(), &second, 1) {
            StoreError::VersionConflict { stream, actual, .. } => {
                assert_eq!((stream.as_str(), actual), ("s", 1));
            }
            other => panic!("expected a version conflict, got {other:?}"),
        }
    }
}

//! The single SQLite writer: one task, one connection, group commit.
//!
//! SQLite admits one writer at a time, and each commit costs an fsync. So every `append` is sent
//! to this task, which takes the first waiting request plus whatever else is already queued (up
//! to [`MAX_BATCH_REQUESTS`] requests / [`MAX_BATCH_EVENTS`] events) and writes them all in one
//! `BEGIN IMMEDIATE … COMMIT`: one fsync for the whole batch.
//!
//! Guarantees:
//! - **Each request stands alone.** A request that is refused (version conflict, reused
//!   idempotency key) or whose write fails is rolled back to its own savepoint; the others in the
//!   batch still commit.
//! - **Nothing is acknowledged before it is durable.** Replies go out only after `COMMIT`
//!   returned; if the batch fails, every request in it gets [`StoreError::Unavailable`] and
//!   nothing of it was written.
//! - **Other processes are respected.** Stream versions, last hashes and the last position are
//!   read inside the `BEGIN IMMEDIATE` transaction, which holds the file's write lock, and are
//!   cached only for the rest of that transaction. A second process appending to the same file
//!   therefore never causes a duplicate version or a broken chain.
//! - **Positions are gap-free** and assigned in commit order: max(position) + 1, … within the
//!   write lock, and a rolled-back request gives its positions back to the next one.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::Instant;

use chrono::Utc;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::{mpsc, oneshot, watch};

use super::rows::{decode_all, select_events, EventRow};
use crate::hash::{event_hash, format_recorded_at, to_stored_precision, HashInput};
use crate::{telemetry, AppendOutcome, AppendRequest, Position, RecordedEvent, StoreError};

/// The most requests one group commit takes.
pub(super) const MAX_BATCH_REQUESTS: usize = 512;
/// A batch stops taking further requests once it holds this many events.
pub(super) const MAX_BATCH_EVENTS: usize = 4096;
/// Rows per multi-row `INSERT INTO events` (11 parameters each, well under SQLite's limit).
const ROWS_PER_INSERT: usize = 64;

/// One append waiting for the writer, with the channel its outcome goes back on.
pub(super) struct AppendJob {
    pub request: AppendRequest,
    pub reply: oneshot::Sender<Result<AppendOutcome, StoreError>>,
}

/// The writer task's state: it owns the write connection outright.
pub(super) struct Writer {
    conn: SqliteConnection,
    options: SqliteConnectOptions,
    jobs: mpsc::Receiver<AppendJob>,
    head: Arc<watch::Sender<Position>>,
}

impl Writer {
    pub fn new(
        conn: SqliteConnection,
        options: SqliteConnectOptions,
        jobs: mpsc::Receiver<AppendJob>,
        head: Arc<watch::Sender<Position>>,
    ) -> Self {
        Writer {
            conn,
            options,
            jobs,
            head,
        }
    }

    /// Serves appends until every sender (every `SqliteStore` clone) is gone.
    pub async fn run(mut self) {
        let mut batch = Vec::with_capacity(MAX_BATCH_REQUESTS);
        while let Some(first) = self.jobs.recv().await {
            let mut events = first.request.events.len();
            batch.push(first);
            while batch.len() < MAX_BATCH_REQUESTS && events < MAX_BATCH_EVENTS {
                match self.jobs.try_recv() {
                    Ok(job) => {
                        events += job.request.events.len();
                        batch.push(job);
                    }
                    Err(_) => break,
                }
            }
            self.commit(&mut batch, events).await;
        }
        tracing::debug!("every store handle is gone; the writer stops");
    }

    /// Writes one batch and answers every request in it. Leaves `jobs` empty.
    #[tracing::instrument(name = "group_commit", skip_all, fields(requests = jobs.len(), events))]
    async fn commit(&mut self, jobs: &mut Vec<AppendJob>, events: usize) {
        tracing::Span::current().record("events", events);
        let started = Instant::now();
        let requests: Vec<&AppendRequest> = jobs.iter().map(|job| &job.request).collect();
        match group_commit(&mut self.conn, &requests).await {
            Ok(committed) => {
                telemetry::record_group_commit(jobs.len(), started.elapsed());
                if let Some(head) = committed.head {
                    // Announce before replying, so a caller that saw its append succeed and then
                    // subscribes finds the head at or past its events.
                    self.head.send_if_modified(|current| {
                        let moved = *current < head;
                        if moved {
                            *current = head;
                        }
                        moved
                    });
                }
                for (job, result) in jobs.drain(..).zip(committed.results) {
                    // A caller that gave up waiting is no reason to fail the others.
                    let _ = job.reply.send(result);
                }
            }
            Err(error) => {
                tracing::error!(%error, "group commit failed; nothing of the batch was written");
                let reason = format!("the group commit failed: {error}");
                for job in jobs.drain(..) {
                    let _ = job.reply.send(Err(StoreError::Unavailable(reason.clone())));
                }
                self.recover().await;
            }
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

/// A stream's last version and hash, as of the current point in the batch.
#[derive(Debug, Clone)]
struct StreamHead {
    version: i64,
    hash: Option<String>,
}

/// What the batch knows for the duration of its one transaction.
struct BatchState {
    /// The last position written, in this transaction or before it.
    last_position: Position,
    /// Streams touched or read in this batch, so later requests see earlier ones.
    heads: HashMap<String, StreamHead>,
    recorded_at: chrono::DateTime<Utc>,
    appended_any: bool,
}

/// Runs all `requests` in one `BEGIN IMMEDIATE` transaction. An `Err` means the whole batch
/// failed and was rolled back.
async fn group_commit(
    conn: &mut SqliteConnection,
    requests: &[&AppendRequest],
) -> Result<Committed, sqlx::Error> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let last_position: Position =
        sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
            .fetch_one(&mut *tx)
            .await?;
    let mut state = BatchState {
        last_position,
        heads: HashMap::new(),
        recorded_at: to_stored_precision(Utc::now()),
        appended_any: false,
    };
    let mut results = Vec::with_capacity(requests.len());
    for request in requests {
        results.push(apply(&mut tx, &mut state, request).await?);
    }
    tx.commit().await?;
    Ok(Committed {
        results,
        head: state.appended_any.then_some(state.last_position),
    })
}

/// Applies one request inside the batch's transaction. The outer `Err` is a failure of the
/// whole batch; the inner one is this request's own refusal.
async fn apply(
    conn: &mut SqliteConnection,
    state: &mut BatchState,
    request: &AppendRequest,
) -> Result<Result<AppendOutcome, StoreError>, sqlx::Error> {
    // 1. A command or idempotency key seen before answers with what it did then.
    if let Some(earlier) = earlier_outcome(conn, request).await? {
        return Ok(earlier);
    }

    // 2. The expected version, against the stream as of this point of the batch.
    let head = stream_head(conn, state, &request.stream).await?;
    if !request.expected.admits(head.version) {
        return Ok(Err(StoreError::VersionConflict {
            stream: request.stream.clone(),
            expected: request.expected,
            actual: head.version,
        }));
    }

    // 3. Number, time-stamp and chain the events.
    let events = match record(state, &head, request) {
        Ok(events) => events,
        Err(refused) => return Ok(Err(refused)),
    };

    // 4. Write them and the command row under a savepoint of their own.
    let mut savepoint = conn.begin().await?;
    match write(&mut savepoint, request, &events).await {
        Ok(()) => savepoint.commit().await?,
        Err(sqlx::Error::Database(error)) => {
            savepoint.rollback().await?;
            return Ok(Err(refusal(error.as_ref(), request, head.version)));
        }
        Err(error) => return Err(error),
    }
    if let Some(last) = events.last() {
        state.last_position = last.event.position;
        state.heads.insert(
            request.stream.clone(),
            StreamHead {
                version: last.event.version,
                hash: Some(last.event.hash.clone()),
            },
        );
        state.appended_any = true;
    }
    Ok(Ok(AppendOutcome::Appended(
        events.into_iter().map(|staged| staged.event).collect(),
    )))
}

/// The earlier outcome of this request's command id or idempotency key, if either was used.
async fn earlier_outcome(
    conn: &mut SqliteConnection,
    request: &AppendRequest,
) -> Result<Option<Result<AppendOutcome, StoreError>>, sqlx::Error> {
    let command_id = request.command_id.to_string();
    let key = request.idempotency.as_ref();
    let rows: Vec<CommandRow> = sqlx::query_as(
        "SELECT command_id, idem_scope, idem_key, request_hash, first_position, last_position \
         FROM commands WHERE command_id = ?1 OR (idem_scope = ?2 AND idem_key = ?3)",
    )
    .bind(&command_id)
    .bind(key.map(|key| key.scope.as_str()))
    .bind(key.map(|key| key.key.as_str()))
    .fetch_all(&mut *conn)
    .await?;

    let same_command = rows.iter().find(|row| row.command_id == command_id);
    let same_key = key.and_then(|key| {
        rows.iter().find(|row| {
            row.idem_scope.as_deref() == Some(key.scope.as_str())
                && row.idem_key.as_deref() == Some(key.key.as_str())
        })
    });
    let Some(earlier) = same_command.or(same_key) else {
        return Ok(None);
    };
    if let Some(key) = key {
        if earlier.request_hash.as_deref() != Some(key.request_hash.as_str()) {
            return Ok(Some(Err(StoreError::IdempotencyKeyReused {
                key: key.key.clone(),
            })));
        }
    }
    let rows: Vec<EventRow> = sqlx::query_as(select_events!(
        "WHERE position BETWEEN ?1 AND ?2 ORDER BY position"
    ))
    .bind(earlier.first_position)
    .bind(earlier.last_position)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Some(decode_all(rows).map(AppendOutcome::Duplicate)))
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

/// The stream's version and last hash: from this batch if it touched the stream already, else
/// from the table (inside the write lock, so current).
async fn stream_head(
    conn: &mut SqliteConnection,
    state: &mut BatchState,
    stream: &str,
) -> Result<StreamHead, sqlx::Error> {
    if let Some(head) = state.heads.get(stream) {
        return Ok(head.clone());
    }
    let last: Option<(i64, String)> = sqlx::query_as(
        "SELECT version, hash FROM events WHERE stream_id = ?1 ORDER BY version DESC LIMIT 1",
    )
    .bind(stream)
    .fetch_optional(&mut *conn)
    .await?;
    let head = match last {
        Some((version, hash)) => StreamHead {
            version,
            hash: Some(hash),
        },
        None => StreamHead {
            version: 0,
            hash: None,
        },
    };
    state.heads.insert(stream.to_owned(), head.clone());
    Ok(head)
}

/// An event ready to insert, with its JSON already serialised.
struct Staged {
    event: RecordedEvent,
    data: String,
    metadata: String,
}

/// Assigns positions, versions, the batch's timestamp and chained hashes to the request's
/// events. Nothing is written yet.
fn record(
    state: &BatchState,
    head: &StreamHead,
    request: &AppendRequest,
) -> Result<Vec<Staged>, StoreError> {
    let mut staged = Vec::with_capacity(request.events.len());
    let mut prev_hash = head.hash.clone();
    for (offset, new) in (1i64..).zip(&request.events) {
        let serialise = |value: &serde_json::Value| {
            serde_json::to_string(value).map_err(|error| {
                StoreError::Invalid(format!("event {} cannot be serialised: {error}", new.id))
            })
        };
        let mut event = RecordedEvent {
            position: state.last_position + offset,
            id: new.id,
            stream: request.stream.clone(),
            version: head.version + offset,
            event_type: new.event_type.clone(),
            schema_version: new.schema_version,
            data: new.data.clone(),
            metadata: new.metadata.clone(),
            recorded_at: state.recorded_at,
            hash: String::new(),
        };
        event.hash = event_hash(prev_hash.as_deref(), &HashInput::from(&event));
        prev_hash = Some(event.hash.clone());
        staged.push(Staged {
            data: serialise(&event.data)?,
            metadata: serialise(&event.metadata)?,
            event,
        });
    }
    Ok(staged)
}

/// Inserts the events (a few multi-row statements) and the command row.
async fn write(
    conn: &mut SqliteConnection,
    request: &AppendRequest,
    events: &[Staged],
) -> Result<(), sqlx::Error> {
    let command_id = request.command_id.to_string();
    let recorded_at = events
        .first()
        .map(|staged| format_recorded_at(staged.event.recorded_at))
        .unwrap_or_default();
    for chunk in events.chunks(ROWS_PER_INSERT) {
        let mut insert = sqlx::query(insert_events_sql(chunk.len()));
        for staged in chunk {
            let event = &staged.event;
            insert = insert
                .bind(event.position)
                .bind(event.id.to_string())
                .bind(&event.stream)
                .bind(event.version)
                .bind(&event.event_type)
                .bind(event.schema_version)
                .bind(&staged.data)
                .bind(&staged.metadata)
                .bind(&recorded_at)
                .bind(&event.hash)
                .bind(&command_id);
        }
        insert.execute(&mut *conn).await?;
    }
    let (Some(first), Some(last)) = (events.first(), events.last()) else {
        return Ok(());
    };
    let key = request.idempotency.as_ref();
    sqlx::query(
        "INSERT INTO commands \
         (command_id, idem_scope, idem_key, request_hash, stream_id, first_position, last_position) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .bind(&command_id)
    .bind(key.map(|key| key.scope.as_str()))
    .bind(key.map(|key| key.key.as_str()))
    .bind(key.map(|key| key.request_hash.as_str()))
    .bind(&request.stream)
    .bind(first.event.position)
    .bind(last.event.position)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// `INSERT INTO events … VALUES (…), (…)` for `rows` rows (1..=ROWS_PER_INSERT), built once per
/// row count so SQLite's statement cache sees the same text every time.
fn insert_events_sql(rows: usize) -> &'static str {
    static SQL: OnceLock<Vec<String>> = OnceLock::new();
    let all = SQL.get_or_init(|| {
        let row = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
        (1..=ROWS_PER_INSERT)
            .map(|count| {
                format!(
                    "INSERT INTO events (position, id, stream_id, version, event_type, \
                     schema_version, data, metadata, recorded_at, hash, command_id) VALUES {}",
                    vec![row; count].join(", ")
                )
            })
            .collect()
    });
    all.get(rows.clamp(1, ROWS_PER_INSERT) - 1)
        .map(String::as_str)
        .unwrap_or_default()
}

/// What a refused write means for the caller. The writer checks versions and keys before
/// writing, so these are the database's own guards firing: a unique (stream, version) still maps
/// to a version conflict, as it will on any backend.
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
    } else if message.contains("commands.") {
        StoreError::Invalid(format!(
            "command {} or its idempotency key was recorded concurrently: {message}",
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
        for rows in [1, 2, ROWS_PER_INSERT] {
            let sql = insert_events_sql(rows);
            assert_eq!(sql.matches('(').count(), rows + 1, "{sql}");
            assert_eq!(sql.matches('?').count(), rows * 11);
        }
    }
}

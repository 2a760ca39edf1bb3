//! This process's PostgreSQL writer: one task, group commit, streams locked one by one.
//!
//! Like the SQLite writer, it takes the first waiting append plus whatever else is queued and
//! writes them in one transaction: one commit (one WAL flush) per batch. Unlike SQLite, other
//! processes write the same log at the same time, so a batch:
//! 1. locks the streams it touches (`lianxi_lock_streams`: exclusive for the streams it appends
//!    to, shared for streams it only requires unchanged, in one global order);
//! 2. reads those streams' heads and the earlier commands sharing its command ids or keys, and
//!    decides every request in memory ([`crate::plan`]);
//! 3. takes positions for the accepted events (`lianxi_reserve_positions`, which first announces
//!    a floor under them for readers) and inserts events and command rows, a statement each;
//! 4. notifies `lianxi_events` and commits.
//!
//! If the database refuses the bulk insert (an event id already in the log, or another process
//! that just used the same idempotency key), the batch is redone in a new transaction request by
//! request, each under a savepoint, so only the offending request is refused; a key taken by
//! another process meanwhile is then found and answered as a duplicate.
//!
//! Replies go out only after `COMMIT` returned. If the database cannot be reached, every request
//! of the batch gets [`StoreError::Unavailable`] and nothing of it was written; the pool makes a
//! new connection for the next batch, so the writer recovers by itself when the server is back.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{Connection, Postgres, Transaction};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;
use uuid::Uuid;

use super::rows::{decode_all, select_events, PgEventRow};
use super::CHANNEL;
use crate::hash::to_stored_precision;
use crate::plan::{BatchState, Decision, EarlierCommand, EarlierEvents, Staged, StreamHead};
use crate::{telemetry, AppendOutcome, AppendRequest, Position, StoreError};

/// The most requests one group commit takes.
pub(super) const MAX_BATCH_REQUESTS: usize = 512;
/// A batch stops taking further requests once it holds this many events.
const MAX_BATCH_EVENTS: usize = 4096;
/// How many times a batch is redone after another process got in its way.
const ATTEMPTS: usize = 3;

/// One append waiting for the writer, with the channel its outcome goes back on.
pub(super) struct AppendJob {
    pub request: AppendRequest,
    pub reply: oneshot::Sender<Result<AppendOutcome, StoreError>>,
}

/// The writer task's state.
pub(super) struct Writer {
    pool: PgPool,
    jobs: mpsc::Receiver<AppendJob>,
    head: Arc<watch::Sender<Position>>,
}

impl Writer {
    pub fn new(
        pool: PgPool,
        jobs: mpsc::Receiver<AppendJob>,
        head: Arc<watch::Sender<Position>>,
    ) -> Self {
        Writer { pool, jobs, head }
    }

    /// Starts the writer; it ends when every `PostgresStore` clone is gone.
    pub fn spawn(self) {
        let span = tracing::info_span!(parent: None, "postgres_writer");
        tokio::spawn(self.run().instrument(span));
    }

    async fn run(mut self) {
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
    #[tracing::instrument(name = "group_commit", level = "debug", skip_all, fields(requests = jobs.len(), events = events))]
    async fn commit(&mut self, jobs: &mut Vec<AppendJob>, events: usize) {
        let started = Instant::now();
        let requests: Vec<&AppendRequest> = jobs.iter().map(|job| &job.request).collect();
        let results = match self.group_commit(&requests).await {
            Ok(committed) => {
                telemetry::record_group_commit(jobs.len(), started.elapsed());
                if let Some(last) = committed.last_position {
                    // Announce before replying, so a caller that saw its append succeed and then
                    // subscribes finds the head at or past its events.
                    self.head.send_if_modified(|current| {
                        let moved = *current < last;
                        if moved {
                            *current = last;
                        }
                        moved
                    });
                }
                committed.results
            }
            Err(error) => {
                tracing::error!(%error, "the group commit failed; none of its requests is acknowledged");
                let reason = format!("the group commit failed: {error}");
                requests
                    .iter()
                    .map(|_| Err(StoreError::Unavailable(reason.clone())))
                    .collect()
            }
        };
        for (job, result) in jobs.drain(..).zip(results) {
            // A caller that gave up waiting is no reason to fail the others.
            let _ = job.reply.send(result);
        }
    }

    /// Writes the batch together, or request by request after a refused bulk write, redoing it
    /// when another process got in the way.
    async fn group_commit(&self, requests: &[&AppendRequest]) -> Result<Committed, sqlx::Error> {
        let mut together = true;
        for _ in 0..ATTEMPTS {
            let mut conn = self.pool.acquire().await?;
            let attempt = if together {
                write_together(&mut conn, requests).await?
            } else {
                write_one_by_one(&mut conn, requests).await?
            };
            match attempt {
                Attempt::Committed(committed) => return Ok(committed),
                Attempt::Redo => together = false,
            }
        }
        Err(sqlx::Error::Protocol(format!(
            "other writers kept getting in the way of this batch ({ATTEMPTS} attempts)"
        )))
    }
}

/// The outcome of one committed batch.
struct Committed {
    /// One result per request, in request order.
    results: Vec<Result<AppendOutcome, StoreError>>,
    /// The highest position written, when anything was.
    last_position: Option<Position>,
}

/// How one attempt at a batch ended.
enum Attempt {
    Committed(Committed),
    /// The database refused a write; the transaction was rolled back and nothing was written.
    Redo,
}

/// The fast path: every accepted request written in one statement per table.
async fn write_together(
    conn: &mut PgConnection,
    requests: &[&AppendRequest],
) -> Result<Attempt, sqlx::Error> {
    let mut tx = conn.begin().await?;
    let mut state = load_state(&mut tx, requests).await?;
    let mut decisions: Vec<Decision> = requests
        .iter()
        .map(|request| {
            let decision = state.decide(request);
            if let Decision::Append(staged) = &decision {
                state.accept(request, staged);
            }
            decision
        })
        .collect();
    let accepted: usize = decisions.iter().map(staged_count).sum();
    let positions = reserve_positions(&mut tx, accepted).await?;
    let mut next = positions.iter().copied();
    for decision in &mut decisions {
        if let Decision::Append(staged) = decision {
            place(staged, &mut next);
        }
    }
    let appends: Vec<(&AppendRequest, &[Staged])> = requests
        .iter()
        .zip(&decisions)
        .filter_map(|(request, decision)| match decision {
            Decision::Append(staged) => Some((*request, staged.as_slice())),
            _ => None,
        })
        .collect();
    match insert(&mut tx, &appends).await {
        Ok(()) => finish(tx, decisions).await.map(Attempt::Committed),
        Err(sqlx::Error::Database(error)) => {
            tracing::debug!(%error, "the bulk write was refused; writing request by request");
            tx.rollback().await?;
            Ok(Attempt::Redo)
        }
        Err(error) => Err(error),
    }
}

/// The slow path: each request under its own savepoint, so the database refusing one request's
/// write refuses that request alone. An idempotency key or command id that another process
/// wrote meanwhile means the whole batch is redone (and then finds it).
async fn write_one_by_one(
    conn: &mut PgConnection,
    requests: &[&AppendRequest],
) -> Result<Attempt, sqlx::Error> {
    let mut tx = conn.begin().await?;
    let mut state = load_state(&mut tx, requests).await?;
    let mut decisions = Vec::with_capacity(requests.len());
    for request in requests {
        let decision = match state.decide(request) {
            Decision::Append(mut staged) => {
                let mut savepoint = tx.begin().await?;
                let positions = reserve_positions(&mut savepoint, staged.len()).await?;
                place(&mut staged, &mut positions.iter().copied());
                match insert(&mut savepoint, &[(*request, staged.as_slice())]).await {
                    Ok(()) => {
                        savepoint.commit().await?;
                        state.accept(request, &staged);
                        Decision::Append(staged)
                    }
                    Err(sqlx::Error::Database(error)) => {
                        savepoint.rollback().await?;
                        match refusal(error.as_ref(), request, &staged) {
                            Some(refused) => Decision::Refuse(refused),
                            None => {
                                tx.rollback().await?;
                                return Ok(Attempt::Redo);
                            }
                        }
                    }
                    Err(error) => return Err(error),
                }
            }
            other => other,
        };
        decisions.push(decision);
    }
    finish(tx, decisions).await.map(Attempt::Committed)
}

fn staged_count(decision: &Decision) -> usize {
    match decision {
        Decision::Append(staged) => staged.len(),
        _ => 0,
    }
}

/// Gives each staged event the next reserved position. The plan numbered them from 1 within
/// the batch; the real positions come from the sequence and increase in the same order.
fn place(staged: &mut [Staged], positions: &mut impl Iterator<Item = Position>) {
    for event in staged {
        if let Some(position) = positions.next() {
            event.event.position = position;
        }
    }
}

/// Takes `count` positions (after announcing a floor under them, see the migration).
async fn reserve_positions(
    conn: &mut PgConnection,
    count: usize,
) -> Result<Vec<Position>, sqlx::Error> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let count = i32::try_from(count).map_err(|error| sqlx::Error::Encode(Box::new(error)))?;
    let mut positions: Vec<Position> = sqlx::query_scalar("SELECT lianxi_reserve_positions($1)")
        .bind(count)
        .fetch_all(&mut *conn)
        .await?;
    positions.sort_unstable();
    Ok(positions)
}

/// Reads back what duplicates refer to, notifies listeners, commits, and pairs every request
/// with its reply.
async fn finish(
    mut tx: Transaction<'_, Postgres>,
    decisions: Vec<Decision>,
) -> Result<Committed, sqlx::Error> {
    let last_position = decisions
        .iter()
        .filter_map(|decision| match decision {
            Decision::Append(staged) => staged.last().map(|s| s.event.position),
            _ => None,
        })
        .max();
    let mut results = Vec::with_capacity(decisions.len());
    for decision in decisions {
        results.push(match decision {
            Decision::Append(staged) => Ok(AppendOutcome::Appended(
                staged.into_iter().map(|staged| staged.event).collect(),
            )),
            Decision::Duplicate(earlier) => earlier_events(&mut tx, &earlier).await?,
            Decision::Refuse(refused) => Err(refused),
        });
    }
    if let Some(last) = last_position {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(last.to_string())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(Committed {
        results,
        last_position,
    })
}

/// The events an earlier command appended (in this transaction or before), by its command id.
async fn earlier_events(
    conn: &mut PgConnection,
    earlier: &EarlierCommand,
) -> Result<Result<AppendOutcome, StoreError>, sqlx::Error> {
    let rows: Vec<PgEventRow> = sqlx::query_as(select_events!(
        "WHERE command_id = $1::uuid ORDER BY position"
    ))
    .bind(&earlier.command_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(decode_all(rows).map(AppendOutcome::Duplicate))
}

/// Locks the batch's streams, then loads their heads and the earlier commands sharing a
/// command id or idempotency key with it.
async fn load_state(
    conn: &mut PgConnection,
    requests: &[&AppendRequest],
) -> Result<BatchState, sqlx::Error> {
    let appended: BTreeSet<&str> = requests.iter().map(|r| r.stream.as_str()).collect();
    let read: BTreeSet<&str> = requests
        .iter()
        .flat_map(|r| r.unchanged.iter().map(|c| c.stream.as_str()))
        .filter(|stream| !appended.contains(stream))
        .collect();
    let appended: Vec<&str> = appended.into_iter().collect();
    let read: Vec<&str> = read.into_iter().collect();
    sqlx::query("SELECT lianxi_lock_streams($1, $2)")
        .bind(&appended)
        .bind(&read)
        .execute(&mut *conn)
        .await?;

    let streams: Vec<&str> = appended.iter().chain(&read).copied().collect();
    let heads: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT DISTINCT ON (stream_id) stream_id, version, hash FROM events \
         WHERE stream_id = ANY($1) ORDER BY stream_id, version DESC",
    )
    .bind(&streams)
    .fetch_all(&mut *conn)
    .await?;
    let heads: HashMap<String, StreamHead> = heads
        .into_iter()
        .map(|(stream, version, hash)| {
            let hash = Some(hash);
            (stream, StreamHead { version, hash })
        })
        .collect();

    let command_ids: Vec<Uuid> = requests.iter().map(|r| r.command_id).collect();
    let (scopes, keys): (Vec<&str>, Vec<&str>) = requests
        .iter()
        .filter_map(|r| r.idempotency.as_ref())
        .map(|key| (key.scope.as_str(), key.key.as_str()))
        .unzip();
    let earlier: Vec<CommandRow> = sqlx::query_as(
        "SELECT command_id::text AS command_id, idem_scope, idem_key, request_hash \
         FROM commands WHERE command_id = ANY($1) \
         UNION \
         SELECT c.command_id::text, c.idem_scope, c.idem_key, c.request_hash \
         FROM unnest($2::text[], $3::text[]) AS k (scope, key) \
         JOIN commands AS c ON c.idem_scope = k.scope AND c.idem_key = k.key",
    )
    .bind(&command_ids)
    .bind(&scopes)
    .bind(&keys)
    .fetch_all(&mut *conn)
    .await?;

    Ok(BatchState::new(
        0,
        heads,
        earlier.into_iter().map(CommandRow::into_earlier).collect(),
        to_stored_precision(Utc::now()),
    ))
}

/// A row of `commands`, as far as deciding duplicates goes.
#[derive(Debug, sqlx::FromRow)]
struct CommandRow {
    command_id: String,
    idem_scope: Option<String>,
    idem_key: Option<String>,
    request_hash: Option<String>,
}

impl CommandRow {
    fn into_earlier(self) -> EarlierCommand {
        EarlierCommand {
            command_id: self.command_id,
            key: self.idem_scope.zip(self.idem_key),
            request_hash: self.request_hash,
            // Read back by command id, not by position range: positions of one command are
            // increasing but, with other processes writing, not necessarily consecutive.
            events: EarlierEvents::InLog { first: 0, last: 0 },
        }
    }
}

/// Inserts the events and command rows of `appends`: one statement per table, the rows passed
/// as arrays.
async fn insert(
    conn: &mut PgConnection,
    appends: &[(&AppendRequest, &[Staged])],
) -> Result<(), sqlx::Error> {
    if appends.is_empty() {
        return Ok(());
    }
    let mut events = EventColumns::default();
    for (request, staged) in appends {
        for staged in *staged {
            events.push(request.command_id, staged);
        }
    }
    sqlx::query(
        "INSERT INTO events (position, id, stream_id, version, event_type, schema_version, \
                             data, metadata, recorded_at, hash, command_id) \
         SELECT p, i, s, v, t, sv, d::json, m::json, r, h, c \
         FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::bigint[], $5::text[], \
                     $6::int4[], $7::text[], $8::text[], $9::timestamptz[], $10::text[], \
                     $11::uuid[]) AS x (p, i, s, v, t, sv, d, m, r, h, c)",
    )
    .bind(&events.position)
    .bind(&events.id)
    .bind(&events.stream)
    .bind(&events.version)
    .bind(&events.event_type)
    .bind(&events.schema_version)
    .bind(&events.data)
    .bind(&events.metadata)
    .bind(&events.recorded_at)
    .bind(&events.hash)
    .bind(&events.command_id)
    .execute(&mut *conn)
    .await?;

    let mut commands = CommandColumns::default();
    for (request, staged) in appends {
        commands.push(request, staged);
    }
    sqlx::query(
        "INSERT INTO commands (command_id, idem_scope, idem_key, request_hash, stream_id, \
                               event_count, last_position) \
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], \
                              $6::bigint[], $7::bigint[])",
    )
    .bind(&commands.command_id)
    .bind(&commands.scope)
    .bind(&commands.key)
    .bind(&commands.request_hash)
    .bind(&commands.stream)
    .bind(&commands.event_count)
    .bind(&commands.last_position)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The events to insert, column by column, as `unnest` wants them.
#[derive(Default)]
struct EventColumns<'a> {
    position: Vec<i64>,
    id: Vec<Uuid>,
    stream: Vec<&'a str>,
    version: Vec<i64>,
    event_type: Vec<&'a str>,
    schema_version: Vec<i32>,
    data: Vec<&'a str>,
    metadata: Vec<&'a str>,
    recorded_at: Vec<DateTime<Utc>>,
    hash: Vec<&'a str>,
    command_id: Vec<Uuid>,
}

impl<'a> EventColumns<'a> {
    fn push(&mut self, command_id: Uuid, staged: &'a Staged) {
        let event = &staged.event;
        self.position.push(event.position);
        self.id.push(event.id);
        self.stream.push(&event.stream);
        self.version.push(event.version);
        self.event_type.push(&event.event_type);
        self.schema_version.push(event.schema_version);
        self.data.push(&staged.data);
        self.metadata.push(&staged.metadata);
        self.recorded_at.push(event.recorded_at);
        self.hash.push(&event.hash);
        self.command_id.push(command_id);
    }
}

/// The command rows to insert, column by column.
#[derive(Default)]
struct CommandColumns<'a> {
    command_id: Vec<Uuid>,
    scope: Vec<Option<&'a str>>,
    key: Vec<Option<&'a str>>,
    request_hash: Vec<Option<&'a str>>,
    stream: Vec<&'a str>,
    event_count: Vec<i64>,
    last_position: Vec<i64>,
}

impl<'a> CommandColumns<'a> {
    fn push(&mut self, request: &'a AppendRequest, staged: &[Staged]) {
        let Some(last) = staged.last() else {
            return;
        };
        let key = request.idempotency.as_ref();
        self.command_id.push(request.command_id);
        self.scope.push(key.map(|key| key.scope.as_str()));
        self.key.push(key.map(|key| key.key.as_str()));
        self.request_hash
            .push(key.map(|key| key.request_hash.as_str()));
        self.stream.push(&request.stream);
        self.event_count
            .push(i64::try_from(staged.len()).unwrap_or(i64::MAX));
        self.last_position.push(last.event.position);
    }
}

/// What a refused write means for the caller, or `None` when the batch must be redone: another
/// process wrote the same command id or idempotency key since the batch loaded its state.
fn refusal(
    error: &(dyn sqlx::error::DatabaseError + 'static),
    request: &AppendRequest,
    staged: &[Staged],
) -> Option<StoreError> {
    match error.constraint() {
        Some("commands_pkey" | "commands_idempotency_unique") => None,
        Some("events_stream_version_unique") => Some(StoreError::VersionConflict {
            stream: request.stream.clone(),
            expected: request.expected,
            actual: staged.first().map_or(0, |s| s.event.version - 1),
        }),
        Some("events_id_unique") => Some(StoreError::Invalid(format!(
            "an event id of command {} is already in the log",
            request.command_id
        ))),
        _ => Some(StoreError::Unavailable(format!(
            "the append was refused: {}",
            error.message()
        ))),
    }
}

//! This process's PostgreSQL writer: group commit, in one statement when it can.
//!
//! Like the SQLite writer, a task takes the first waiting append plus whatever else is queued and
//! writes them in one transaction: one commit (one WAL flush) per batch. Unlike SQLite, other
//! processes write the same log at the same time, and so do this process's other writer tasks
//! ([`WRITERS`]), so each batch is checked under locks on its streams, in one global order.
//!
//! A batch whose streams' heads this process knows ([`KnownHeads`]: it read them under lock or
//! wrote them) is decided in memory on those heads and written in **one statement**
//! (`lianxi_append_batch`), its own transaction: it locks the streams, checks that every head is
//! still the one the batch was decided on, writes and commits, in one round trip. The queue is
//! let go as soon as the batch is decided, so the next batch is decided on this one's heads and
//! sent while this one is written and flushed; the database makes it wait for this one's locks.
//! A new stream needs no head (the request says it is new, and the database checks).
//!
//! Any other batch, or one whose heads moved (another process, or a failed batch of this one,
//! got there first), is **prepared under locks**, in four round trips:
//! 1. locks the streams it touches (exclusive for the streams it appends to, shared for streams
//!    it only requires unchanged) and reads their heads and the earlier commands sharing its
//!    command ids or keys: one call of `lianxi_prepare_batch`;
//! 2. decides every request in memory ([`crate::plan`]);
//! 3. takes positions for the accepted events (first announcing a floor under them for readers),
//!    inserts events and command rows and notifies `lianxi_events`: one call of
//!    `lianxi_write_batch`;
//! 4. commits (`BEGIN` is the fourth). The queue is let go when `COMMIT` is sent.
//!
//! If the database refuses the bulk insert (an event id already in the log, or another process
//! that just used the same idempotency key), the batch is redone in a new transaction request by
//! request, each under a savepoint, so only the offending request is refused; a key taken by
//! another process meanwhile is then found and answered as a duplicate.
//!
//! Replies go out only after the commit returned. If the database cannot be reached, every
//! request of the batch gets [`StoreError::Unavailable`] and none is acknowledged; nothing was
//! written unless the connection broke during the commit itself, which may have gone through (a
//! retry with the same command id or idempotency key then finds it). The pool makes a new
//! connection for the next batch, so the writer recovers by itself when the server is back.

mod columns;
mod one_statement;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{Connection, Postgres, Transaction};
use tokio::sync::{mpsc, watch, Mutex, OwnedMutexGuard};
use tracing::Instrument;
use uuid::Uuid;

use self::columns::{bind_batch, columns};
use self::one_statement::{plan_one_statement, write_one_statement};
use super::heads::KnownHeads;
use super::rows::{decode_all, select_events, PgEventRow};
use crate::commit_clock::CommitClock;
use crate::hash::to_stored_precision;
use crate::plan::{BatchState, Decision, EarlierCommand, EarlierEvents, Staged, StreamHead};
use crate::queue::{self, AppendJob, MAX_BATCH_REQUESTS};
use crate::{telemetry, AppendOutcome, AppendRequest, Position, StoreError};

/// How many times a batch is redone after another process got in its way.
const ATTEMPTS: usize = 3;
/// Writer tasks (each with a connection of its own) taking batches from the one queue. With
/// one, a batch's commit (a WAL flush, 0.3–3.5 ms on the benchmark's disk) left the writer
/// idle while the next requests queued; two overlap one batch's flush with the next one's
/// statements. Three were no better (BENCHMARKS.md, "PostgreSQL: two writer tasks"): the
/// third mostly waits for the same flush.
pub(super) const WRITERS: u32 = 2;

/// The queue while a writer task holds it: gathering its batch and writing it, until the
/// batch's `COMMIT` is sent (then `None`).
type Queue = Option<OwnedMutexGuard<mpsc::Receiver<AppendJob>>>;

/// A writer task's state.
pub(super) struct Writer {
    pool: PgPool,
    /// This store's name in commit notifications.
    name: String,
    /// The queue every writer task takes its batches from, one task at a time.
    jobs: Arc<Mutex<mpsc::Receiver<AppendJob>>>,
    head: Arc<watch::Sender<Position>>,
    clock: Arc<CommitClock>,
    known: Arc<KnownHeads>,
}

impl Writer {
    /// `pool` must allow [`WRITERS`] connections.
    pub fn new(
        pool: PgPool,
        name: String,
        jobs: mpsc::Receiver<AppendJob>,
        head: Arc<watch::Sender<Position>>,
        clock: Arc<CommitClock>,
    ) -> Self {
        Writer {
            pool,
            name,
            jobs: Arc::new(Mutex::new(jobs)),
            head,
            clock,
            known: Arc::default(),
        }
    }

    /// Starts the writer tasks; they end when every `PostgresStore` clone is gone.
    pub fn spawn(self) {
        for task in 0..WRITERS {
            let writer = Writer {
                pool: self.pool.clone(),
                name: self.name.clone(),
                jobs: Arc::clone(&self.jobs),
                head: Arc::clone(&self.head),
                clock: Arc::clone(&self.clock),
                known: Arc::clone(&self.known),
            };
            let span = tracing::info_span!(parent: None, "postgres_writer", task);
            tokio::spawn(writer.run().instrument(span));
        }
    }

    async fn run(mut self) {
        let mut batch = Vec::with_capacity(MAX_BATCH_REQUESTS);
        loop {
            // The queue stays with this task until its batch is written and commits: the other
            // task gathers the next batch while this one's commit is flushed, from everything
            // that queued in the meantime, not from the first request or two.
            let mut jobs = Arc::clone(&self.jobs).lock_owned().await;
            let Some(events) = queue::next_batch(&mut jobs, &mut batch).await else {
                break;
            };
            self.commit(&mut batch, events, &mut Some(jobs)).await;
        }
        tracing::debug!("every store handle is gone; the writer stops");
    }

    /// Writes one batch and answers every request in it, letting the queue go (`held`) when
    /// it commits. Leaves `jobs` empty.
    #[tracing::instrument(name = "group_commit", level = "debug", skip_all, fields(requests = jobs.len(), events = events))]
    async fn commit(&mut self, jobs: &mut Vec<AppendJob>, events: usize, held: &mut Queue) {
        let started = Instant::now();
        let requests: Vec<&AppendRequest> = jobs.iter().map(|job| &job.request).collect();
        let outcome = self
            .group_commit(&requests, held)
            .await
            .map(|committed| (committed.results, committed.last_position));
        held.take();
        // The pool makes a new connection for the next batch if this one broke.
        queue::answer(jobs, outcome, &self.head, &self.clock, started);
    }

    /// Writes the batch in one statement when its heads are known, else prepared under locks
    /// together, or request by request after a refused bulk write, redoing it when another
    /// process got in the way.
    async fn group_commit(
        &self,
        requests: &[&AppendRequest],
        held: &mut Queue,
    ) -> Result<Committed, sqlx::Error> {
        let committed = self.write_batch(requests, held).await;
        if !matches!(committed, Ok((_, Path::OneStatement | Path::Together))) {
            // The heads it was decided on, or left for the next batch, are in doubt.
            self.forget(requests);
        }
        committed.map(|(committed, path)| {
            telemetry::record_postgres_batch(path.label());
            committed
        })
    }

    /// Forgets the heads of every stream of a batch that did not commit as decided.
    fn forget(&self, requests: &[&AppendRequest]) {
        let mut known = self.known.lock();
        for stream in streams_of(requests) {
            known.remove(stream);
        }
    }

    async fn write_batch(
        &self,
        requests: &[&AppendRequest],
        held: &mut Queue,
    ) -> Result<(Committed, Path), sqlx::Error> {
        if let Some(planned) = plan_one_statement(&self.known, requests) {
            // Decided: the next batch may be decided on this one's heads and sent meanwhile.
            held.take();
            if let Some(committed) = write_one_statement(&self.pool, &self.name, planned).await? {
                return Ok((committed, Path::OneStatement));
            }
            telemetry::record_postgres_batch(Path::Moved.label());
            self.forget(requests);
        }
        let mut together = true;
        for _ in 0..ATTEMPTS {
            let mut conn = self.pool.acquire().await?;
            let attempt = if together {
                write_together(&mut conn, &self.name, requests, held, &self.known).await?
            } else {
                write_one_by_one(&mut conn, &self.name, requests, held).await?
            };
            match attempt {
                Attempt::Committed(committed) if together => {
                    return Ok((committed, Path::Together))
                }
                Attempt::Committed(committed) => return Ok((committed, Path::OneByOne)),
                Attempt::Redo => together = false,
            }
        }
        Err(sqlx::Error::Protocol(format!(
            "other writers kept getting in the way of this batch ({ATTEMPTS} attempts)"
        )))
    }
}

/// How a batch was written, as `lianxi_store_postgres_batches_total` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// In one statement, on heads this process knew.
    OneStatement,
    /// Tried in one statement, but a head had moved: then prepared under locks.
    Moved,
    /// Prepared under locks and written together.
    Together,
    /// Redone request by request after the database refused the bulk write.
    OneByOne,
}

impl Path {
    fn label(self) -> &'static str {
        match self {
            Path::OneStatement => "one_statement",
            Path::Moved => "moved",
            Path::Together => "together",
            Path::OneByOne => "one_by_one",
        }
    }
}

/// Every stream a batch appends to or requires unchanged.
fn streams_of<'a>(requests: &'a [&AppendRequest]) -> impl Iterator<Item = &'a str> {
    requests.iter().flat_map(|request| {
        std::iter::once(request.stream.as_str())
            .chain(request.unchanged.iter().map(|c| c.stream.as_str()))
    })
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

/// Prepared under locks: the whole batch in two statements, one to read what it depends on (as
/// it is in the database) and one to write every accepted request.
async fn write_together(
    conn: &mut PgConnection,
    writer: &str,
    requests: &[&AppendRequest],
    held: &mut Queue,
    known: &KnownHeads,
) -> Result<Attempt, sqlx::Error> {
    let mut tx = conn.begin().await?;
    let mut state = prepare(&mut tx, requests).await?;
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
    let appends: Vec<(&AppendRequest, &[Staged])> = requests
        .iter()
        .zip(&decisions)
        .filter_map(|(request, decision)| match decision {
            Decision::Append(staged) => Some((*request, staged.as_slice())),
            _ => None,
        })
        .collect();
    let positions = match write(&mut tx, writer, &appends).await {
        Ok(positions) => positions,
        Err(sqlx::Error::Database(error)) => {
            tracing::debug!(%error, "the bulk write was refused; writing request by request");
            tx.rollback().await?;
            return Ok(Attempt::Redo);
        }
        Err(error) => return Err(error),
    };
    let mut next = positions.into_iter();
    for decision in &mut decisions {
        if let Decision::Append(staged) = decision {
            place(staged, &mut next);
        }
    }
    // Read under lock or written here: the heads the next batch is decided on (forgotten again
    // if this one does not commit).
    {
        let mut known = known.lock();
        for stream in streams_of(requests) {
            known.insert(stream.to_owned(), state.head(stream));
        }
    }
    finish(tx, decisions, held).await.map(Attempt::Committed)
}

/// The slow path: each request under its own savepoint, so the database refusing one request's
/// write refuses that request alone. An idempotency key or command id that another process
/// wrote meanwhile means the whole batch is redone (and then finds it).
async fn write_one_by_one(
    conn: &mut PgConnection,
    writer: &str,
    requests: &[&AppendRequest],
    held: &mut Queue,
) -> Result<Attempt, sqlx::Error> {
    let mut tx = conn.begin().await?;
    let mut state = prepare(&mut tx, requests).await?;
    let mut decisions = Vec::with_capacity(requests.len());
    for request in requests {
        let decision = match state.decide(request) {
            Decision::Append(mut staged) => {
                let mut savepoint = tx.begin().await?;
                match write(&mut savepoint, writer, &[(*request, staged.as_slice())]).await {
                    Ok(positions) => {
                        savepoint.commit().await?;
                        place(&mut staged, &mut positions.into_iter());
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
    finish(tx, decisions, held).await.map(Attempt::Committed)
}

/// Gives each staged event the next position. The plan numbered them from 1 within the batch;
/// the real positions come from the sequence and increase in the same order.
fn place(staged: &mut [Staged], positions: &mut impl Iterator<Item = Position>) {
    for event in staged {
        if let Some(position) = positions.next() {
            event.event.position = position;
        }
    }
}

/// Reads back what duplicates refer to, commits, and pairs every request with its reply.
async fn finish(
    mut tx: Transaction<'_, Postgres>,
    decisions: Vec<Decision>,
    held: &mut Queue,
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
    // Everything is written: the other writer task may gather and write the next batch while
    // this commit's WAL is flushed.
    held.take();
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

/// Locks the batch's streams and loads their heads and the earlier commands sharing a command
/// id or idempotency key with it (`lianxi_prepare_batch`, one round trip).
async fn prepare(
    conn: &mut PgConnection,
    requests: &[&AppendRequest],
) -> Result<BatchState, sqlx::Error> {
    let appended: BTreeSet<&str> = requests.iter().map(|r| r.stream.as_str()).collect();
    let read: Vec<&str> = requests
        .iter()
        .flat_map(|r| r.unchanged.iter().map(|c| c.stream.as_str()))
        .filter(|stream| !appended.contains(stream))
        .collect::<BTreeSet<&str>>()
        .into_iter()
        .collect();
    let appended: Vec<&str> = appended.into_iter().collect();
    let command_ids: Vec<Uuid> = requests.iter().map(|r| r.command_id).collect();
    let (scopes, keys): (Vec<&str>, Vec<&str>) = requests
        .iter()
        .filter_map(|r| r.idempotency.as_ref())
        .map(|key| (key.scope.as_str(), key.key.as_str()))
        .unzip();
    let rows: Vec<PrepareRow> = sqlx::query_as(
        "SELECT kind, stream_id, version, hash, command_id, idem_scope, idem_key, request_hash \
         FROM lianxi_prepare_batch($1, $2, $3, $4, $5)",
    )
    .bind(&appended)
    .bind(&read)
    .bind(&command_ids)
    .bind(&scopes)
    .bind(&keys)
    .fetch_all(&mut *conn)
    .await?;

    let mut heads = HashMap::new();
    let mut earlier = Vec::new();
    for row in rows {
        match (
            row.kind.as_str(),
            row.stream_id,
            row.version,
            row.command_id,
        ) {
            ("head", Some(stream), Some(version), _) => {
                heads.insert(
                    stream,
                    StreamHead {
                        version,
                        hash: row.hash,
                    },
                );
            }
            ("command", _, _, Some(command_id)) => earlier.push(EarlierCommand {
                command_id,
                key: row.idem_scope.zip(row.idem_key),
                request_hash: row.request_hash,
                // Read back by command id, not by position range: positions of one command
                // increase but, with other processes writing, need not be consecutive.
                events: EarlierEvents::InLog { first: 0, last: 0 },
            }),
            (kind, ..) => {
                return Err(sqlx::Error::Protocol(format!(
                    "lianxi_prepare_batch returned a malformed {kind:?} row"
                )))
            }
        }
    }
    Ok(BatchState::new(
        0,
        heads,
        earlier,
        to_stored_precision(Utc::now()),
    ))
}

/// A row of `lianxi_prepare_batch`: a stream head or an earlier command.
#[derive(Debug, sqlx::FromRow)]
struct PrepareRow {
    kind: String,
    stream_id: Option<String>,
    version: Option<i64>,
    hash: Option<String>,
    command_id: Option<String>,
    idem_scope: Option<String>,
    idem_key: Option<String>,
    request_hash: Option<String>,
}

/// Writes the events and command rows of `appends` (`lianxi_write_batch`, one round trip) and
/// returns the positions the events took, in order. Writes nothing for an empty batch. The commit
/// notification names `writer`, so this store's listener can tell its own commits.
async fn write(
    conn: &mut PgConnection,
    writer: &str,
    appends: &[(&AppendRequest, &[Staged])],
) -> Result<Vec<Position>, sqlx::Error> {
    let (events, commands) = columns(appends);
    if events.is_empty() {
        return Ok(Vec::new());
    }
    bind_batch(
        sqlx::query_scalar(
            "SELECT lianxi_write_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
                                       $11, $12, $13, $14, $15, $16, $17, $18)",
        ),
        &events,
        &commands,
        writer,
    )
    .fetch_all(&mut *conn)
    .await
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

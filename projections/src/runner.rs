//! Runs projectors over the log: in order, in batches, each batch committed with its checkpoints.
//!
//! Delivery is exactly once per generation: a batch's document changes and the new checkpoint
//! are one transaction, so a crash at any point either keeps the whole batch or none of it, and
//! the next run starts after the checkpoint.
//!
//! Projectors that follow the log together share the work: each page of the log is read and
//! decoded once, every projector (a [`Lane`]) applies the events past its own checkpoint, and
//! one transaction writes every lane's documents and checkpoint. A lane that meets an event it
//! cannot apply, or whose generation was retired by a rebuild, leaves the batch alone; the
//! others go on. The next page is read and decoded while the current one is applied.
//!
//! The runner is woken by appends in this process and also looks at the log head now and then,
//! for appends made by another process on the same store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use store::EventStore;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::collection::{Documents, Namespace};
use crate::event::ProjectedEvent;
use crate::readdb::{Checkpoint, Conn, GenerationRow, ReadDb};
use crate::source::{EventSource, LogSource};
use crate::{ProjectionError, Projector};

/// Events read and applied per transaction.
pub const BATCH: usize = 2_000;
/// While catching up, changes are written at least every this many events, so that a crash
/// need not start a rebuild again from the beginning (`LIANXI_CATCH_UP_WRITE_EVERY` overrides
/// it: tests use small values to see checkpoints in the middle of a rebuild)… Writing is what
/// a catch-up costs most: read models keyed by random ids rewrite most of their pages each
/// time, and every write rewrites each document changed since the last one.
pub const WRITE_EVERY: usize = 1_000_000;
/// …or, while the documents held are only a part of the generation (over the memory budget),
/// once this many documents (summed over the lanes) are changed and unwritten: changed
/// documents cannot be let go, so this bounds what they add to the budget
/// (`LIANXI_CATCH_UP_WRITE_DIRTY` overrides it)…
pub const WRITE_DIRTY: usize = 20_000;
// …or once the documents held weigh more than the memory budget ([`MEMORY`]): then the write
// lets the clean ones go.

/// Bytes of stored JSON the documents held in memory by a process's projectors may add up to
/// (`LIANXI_PROJECTION_MEMORY_MB` overrides it). In memory a document takes about one and a half
/// to two times its JSON, so the default holds every read model of a log of about 55,000
/// events of the benchmark's world whole; past it, clean documents are let go after a write and
/// a batch loads the ones it names. The default keeps a server under 150 MB of RSS while it
/// rebuilds a million-event log (136–144 MB in four runs; 197 MB with 64 MiB, 5–10 % faster):
/// BENCHMARKS.md, "Rebuild memory".
pub const MEMORY: usize = 24 << 20;

/// How a catch-up writes and how much it holds in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Write at least every this many events while catching up.
    pub write_every: usize,
    /// Write once this many documents are changed and unwritten.
    pub write_dirty: usize,
    /// Bytes of stored JSON the documents held in memory may add up to (see [`MEMORY`]).
    pub memory: usize,
}

impl Limits {
    /// The defaults, or what `LIANXI_CATCH_UP_WRITE_EVERY`, `LIANXI_CATCH_UP_WRITE_DIRTY` and
    /// `LIANXI_PROJECTION_MEMORY_MB` say (read once per process).
    pub fn from_env() -> Self {
        static LIMITS: std::sync::OnceLock<Limits> = std::sync::OnceLock::new();
        *LIMITS.get_or_init(|| {
            let read = |name: &str, default: usize| {
                std::env::var(name)
                    .ok()
                    .and_then(|v| v.parse::<usize>().ok())
                    .filter(|v| *v > 0)
                    .unwrap_or(default)
            };
            Limits {
                write_every: read("LIANXI_CATCH_UP_WRITE_EVERY", WRITE_EVERY),
                write_dirty: read("LIANXI_CATCH_UP_WRITE_DIRTY", WRITE_DIRTY),
                memory: read("LIANXI_PROJECTION_MEMORY_MB", MEMORY >> 20).saturating_mul(1 << 20),
            }
        })
    }
}

/// How often an idle runner looks at the head for appends by other processes, and how often a
/// following runner asks which generations answer (a rebuild elsewhere may have taken over).
const IDLE_POLL: Duration = Duration::from_millis(250);

/// What a runner reports about one projector, for `/v1/projections` and `X-Min-Position`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub generation: i64,
    pub position: i64,
    pub state: RunState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    /// Catching up from an earlier position (a new generation, or after downtime).
    Building,
    /// At (or near) the head, following appends.
    Live,
    /// Stopped on an event it cannot apply; the error names it.
    Failed { position: i64, error: String },
}

/// One projector's part in a shared batch: where its documents go and how far it has got.
pub struct Lane<'a> {
    pub projector: &'a mut dyn Projector,
    pub ns: Namespace,
    /// How far the projector has applied the log (in memory, perhaps not written yet).
    pub position: i64,
    /// The checkpoint written with the documents: what readers and a restart see.
    pub durable: i64,
    /// Why the lane stopped, if it did; a stopped lane takes no further events.
    pub stopped: Option<LaneStop>,
}

impl<'a> Lane<'a> {
    /// A lane at its written checkpoint `position`.
    pub fn new(projector: &'a mut dyn Projector, ns: Namespace, position: i64) -> Self {
        Self {
            projector,
            ns,
            position,
            durable: position,
            stopped: None,
        }
    }

    /// Forgets what was applied and not written; the database is the truth again.
    fn rewind(&mut self) {
        for collection in self.projector.collections() {
            collection.discard();
        }
        self.position = self.durable;
    }

    fn is_loaded(&mut self) -> bool {
        self.projector.collections().iter().all(|c| c.is_loaded())
    }

    fn is_partial(&mut self) -> bool {
        self.projector.collections().iter().any(|c| c.is_partial())
    }

    fn weight(&mut self) -> usize {
        self.projector
            .collections()
            .iter()
            .map(|c| c.weight())
            .sum()
    }

    fn unwritten(&mut self) -> usize {
        self.projector.collections().iter().map(|c| c.dirty()).sum()
    }
}

/// Why a lane left the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaneStop {
    /// An event it cannot decode or apply; it stays at its checkpoint before the batch.
    Poison { position: i64, detail: String },
    /// Its generation no longer takes checkpoints: a rebuild took over.
    Retired,
}

impl From<LaneStop> for ProjectionError {
    fn from(stop: LaneStop) -> Self {
        match stop {
            LaneStop::Poison { position, detail } => ProjectionError::Poison { position, detail },
            LaneStop::Retired => ProjectionError::Retired,
        }
    }
}

/// A decoded page of the log: the events up to the first undecodable one, and that one.
struct Page {
    events: Vec<ProjectedEvent>,
    poison: Option<(i64, String)>,
    /// Whether the read returned as many events as it asked for (more are probably waiting).
    full: bool,
}

impl Page {
    /// The position the lanes reach once the page is applied.
    fn end(&self) -> Option<i64> {
        self.events.last().map(|e| e.position)
    }
}

/// Reads up to `limit` events after `after` and decodes them (off the async threads).
async fn read_page(
    source: &dyn EventSource,
    after: i64,
    limit: usize,
) -> Result<Page, ProjectionError> {
    let raw = source.read(after, limit).await?;
    let full = raw.len() == limit;
    let trickle = raw.len() <= 256;
    let decode = move || {
        let mut events = Vec::with_capacity(raw.len());
        for event in raw {
            let position = event.position;
            match ProjectedEvent::try_from(event) {
                Ok(event) => events.push(event),
                Err(ProjectionError::Poison { detail, .. }) => {
                    return Page {
                        events,
                        poison: Some((position, detail)),
                        full,
                    }
                }
                Err(other) => {
                    return Page {
                        events,
                        poison: Some((position, other.to_string())),
                        full,
                    }
                }
            }
        }
        Page {
            events,
            poison: None,
            full,
        }
    };
    if trickle {
        // A live batch (tens of events, ~100 µs to decode): not worth two thread hand-offs.
        return Ok(decode());
    }
    tokio::task::spawn_blocking(decode)
        .await
        .map_err(|e| ProjectionError::Storage(format!("decoding a page of the log: {e}")))
}

/// Applies `events` to every lane that has not stopped. With `write`, one transaction then
/// writes every lane's changed documents (including those of earlier unwritten batches) and
/// checkpoint; without, the changes stay in the lanes' caches. A storage error rewinds every
/// lane to its written checkpoint.
async fn apply_shared(
    db: &ReadDb,
    lanes: &mut [Lane<'_>],
    events: &[ProjectedEvent],
    full: bool,
    write: bool,
    memory: usize,
) -> Result<(), ProjectionError> {
    let mut written = vec![false; lanes.len()];
    let result = if write {
        write_lanes(db, lanes, events, full, &mut written).await
    } else {
        apply_lanes(db, lanes, events).await
    };
    for (lane, written) in lanes.iter_mut().zip(written.iter().copied()) {
        match &result {
            Ok(()) if written => {
                for collection in lane.projector.collections() {
                    collection.committed();
                }
                lane.durable = lane.position;
            }
            Ok(()) => {}
            Err(_) if lane.position != lane.durable => lane.rewind(),
            Err(_) => {}
        }
    }
    if result.is_ok() && written.iter().any(|w| *w) {
        keep_to_budget(lanes, memory);
    }
    result
}

/// After a write: when the documents held by `lanes` weigh more than the memory budget, every
/// clean one is let go, and from then on batches load what they name.
fn keep_to_budget(lanes: &mut [Lane<'_>], budget: usize) {
    let held: usize = lanes
        .iter_mut()
        .flat_map(|lane| lane.projector.collections())
        .map(|c| c.weight())
        .sum();
    if held <= budget {
        return;
    }
    tracing::debug!(
        held,
        budget,
        "read models over the memory budget; letting clean ones go"
    );
    for lane in lanes.iter_mut() {
        for collection in lane.projector.collections() {
            collection.evict();
        }
    }
}

/// Makes sure `projector`'s documents are in memory: none to load when its checkpoint
/// (`durable`) is 0, since documents are only ever written with a checkpoint past 0; else as
/// many as `budget` (bytes of JSON) allows, the others loaded when batches name them.
async fn ensure_loaded(
    conn: &mut Conn<'_>,
    projector: &mut dyn Projector,
    ns: &Namespace,
    durable: i64,
    budget: usize,
) -> Result<usize, ProjectionError> {
    let mut left = budget;
    for collection in projector.collections() {
        if !collection.is_loaded() {
            if durable == 0 {
                collection.start_empty();
            } else {
                collection.load(&mut *conn, ns, left).await?;
            }
        }
        left = left.saturating_sub(collection.weight());
    }
    Ok(budget - left)
}

/// Loads what the events past `lane`'s position read, for a projector holding only a part of
/// its documents: two rounds, the second following references found in documents the first
/// loaded (a meeting's community, a project's claimant).
async fn load_named(
    conn: &mut Conn<'_>,
    projector: &mut dyn Projector,
    ns: &Namespace,
    events: &[ProjectedEvent],
) -> Result<(), ProjectionError> {
    if !projector.collections().iter().any(|c| c.is_partial()) {
        return Ok(());
    }
    for _ in 0..2 {
        for event in events {
            projector.want(event);
        }
        for collection in projector.collections() {
            collection.load_wanted(&mut *conn, ns).await?;
        }
    }
    Ok(())
}

/// Applies the events past `lane`'s position to its caches; the reason it stopped, if it did.
async fn apply_lane(
    conn: &mut Conn<'_>,
    lane: &mut Lane<'_>,
    events: &[ProjectedEvent],
) -> Result<Option<LaneStop>, ProjectionError> {
    let slice = &events[events.partition_point(|e| e.position <= lane.position)..];
    let Some(last) = slice.last().map(|e| e.position) else {
        return Ok(None);
    };
    let projector = &mut *lane.projector;
    ensure_loaded(conn, projector, &lane.ns, lane.durable, usize::MAX).await?;
    load_named(conn, projector, &lane.ns, slice).await?;
    for event in slice {
        if let Err(detail) = projector.apply(event) {
            return Ok(Some(LaneStop::Poison {
                position: event.position,
                detail,
            }));
        }
    }
    metrics::counter!("lianxi_projection_events_total", "projection" => lane.ns.projection)
        .increment(slice.len() as u64);
    lane.position = last;
    Ok(None)
}

/// Applies without writing: the documents it needs are read outside any write transaction.
async fn apply_lanes(
    db: &ReadDb,
    lanes: &mut [Lane<'_>],
    events: &[ProjectedEvent],
) -> Result<(), ProjectionError> {
    let mut pooled = db.acquire().await?;
    let mut conn = pooled.conn();
    for lane in lanes.iter_mut().filter(|lane| lane.stopped.is_none()) {
        if let Some(stop) = apply_lane(&mut conn, lane, events).await? {
            lane.rewind();
            lane.stopped = Some(stop);
        }
    }
    Ok(())
}

/// Applies and writes, in one transaction; marks in `written` the lanes it wrote. Every lane's
/// checkpoint moves in one statement and every lane's documents are written in another (on
/// PostgreSQL), whatever the number of projectors.
async fn write_lanes(
    db: &ReadDb,
    lanes: &mut [Lane<'_>],
    events: &[ProjectedEvent],
    full: bool,
    written: &mut [bool],
) -> Result<(), ProjectionError> {
    // On SQLite: take the write lock before reading (see `ReadDb::begin_write`).
    let started = Instant::now();
    let mut tx = db.begin_write().await?;
    let locked = Instant::now();
    let mut conn = tx.conn();
    let state = if full { "building" } else { "live" };
    for lane in lanes.iter_mut().filter(|lane| lane.stopped.is_none()) {
        if let Some(stop) = apply_lane(&mut conn, lane, events).await? {
            // Nothing of this lane is written: it stays at its checkpoint.
            lane.rewind();
            lane.stopped = Some(stop);
        }
    }
    let moving: Vec<usize> = (0..lanes.len())
        .filter(|&i| lanes[i].stopped.is_none() && lanes[i].position != lanes[i].durable)
        .collect();
    let moves: Vec<Checkpoint<'_>> = moving
        .iter()
        .map(|&i| Checkpoint {
            ns: &lanes[i].ns,
            from: lanes[i].durable,
            to: lanes[i].position,
        })
        .collect();
    let moved = ReadDb::checkpoints(&mut conn, &moves, state).await?;
    drop(moves);
    let mut documents = Documents::default();
    for (&i, moved) in moving.iter().zip(moved) {
        let lane = &mut lanes[i];
        if !moved {
            lane.rewind();
            lane.stopped = Some(LaneStop::Retired);
            continue;
        }
        for collection in lane.projector.collections() {
            collection
                .flush(&mut conn, &lane.ns, &mut documents)
                .await?;
        }
        written[i] = true;
    }
    documents.write(&mut conn).await?;
    let committing = Instant::now();
    tx.commit().await?;
    // Where a batch's time goes, for the lag's owners: waiting for the write lock, loading and
    // applying and writing inside the transaction, and the commit.
    let done = Instant::now();
    for (phase, seconds) in [
        ("lock", locked - started),
        ("apply_write", committing - locked),
        ("commit", done - committing),
    ] {
        record_phase(phase, seconds);
    }
    Ok(())
}

/// Records one phase of the projectors' work in `lianxi_projection_batch_seconds`.
fn record_phase(phase: &'static str, took: Duration) {
    metrics::histogram!("lianxi_projection_batch_seconds", "phase" => phase)
        .record(took.as_secs_f64());
}

/// What [`catch_up_lanes`] tells its caller after each batch.
pub struct Step<'p> {
    /// The events just applied.
    pub events: &'p [ProjectedEvent],
    /// Whether the page was full (more events were waiting: catching up, not live).
    pub full: bool,
}

/// Feeds every lane from the lowest position among them until each has reached `until`
/// (inclusive; `None`: the end of the log), or stopped. `on_batch` sees the lanes after each
/// batch. It returns early when a lane stops (saying why in [`Lane::stopped`]); every other
/// lane returns with everything written (`position == durable`).
///
/// While catching up (full pages), changes are written only every [`WRITE_EVERY`] events or
/// [`WRITE_DIRTY`] changed documents: read models keyed by random ids would otherwise rewrite
/// most of their pages in every batch.
pub async fn catch_up_lanes(
    store: &dyn EventStore,
    db: &ReadDb,
    lanes: &mut [Lane<'_>],
    until: Option<i64>,
    batch: usize,
    on_batch: impl FnMut(&[Lane<'_>], Step<'_>) + Send,
) -> Result<(), ProjectionError> {
    catch_up_lanes_with(store, db, lanes, until, batch, Limits::from_env(), on_batch).await
}

/// [`catch_up_lanes`] within `limits`.
pub async fn catch_up_lanes_with(
    store: &dyn EventStore,
    db: &ReadDb,
    lanes: &mut [Lane<'_>],
    until: Option<i64>,
    batch: usize,
    limits: Limits,
    on_batch: impl FnMut(&[Lane<'_>], Step<'_>) + Send,
) -> Result<(), ProjectionError> {
    let source = LogSource(store);
    let pace = Pace {
        batch,
        deadline: None,
        limits,
    };
    catch_up_lanes_from(&source, db, lanes, until, pace, on_batch).await
}

/// How a catch-up goes: its page size, when it hands back, and its limits.
#[derive(Debug, Clone, Copy)]
struct Pace {
    batch: usize,
    /// Hand back (everything written) at the first batch boundary after this.
    deadline: Option<Instant>,
    limits: Limits,
}

/// [`catch_up_lanes`] reading from `source`, which is told of every commit, at `pace`.
async fn catch_up_lanes_from(
    source: &dyn EventSource,
    db: &ReadDb,
    lanes: &mut [Lane<'_>],
    until: Option<i64>,
    pace: Pace,
    mut on_batch: impl FnMut(&[Lane<'_>], Step<'_>) + Send,
) -> Result<(), ProjectionError> {
    let Pace {
        batch,
        deadline,
        limits,
    } = pace;
    let batch = batch.max(1);
    let limit_from = |from: i64| match until {
        Some(until) => batch.min(usize::try_from(until - from).unwrap_or(0)),
        None => batch,
    };
    let Limits {
        write_every,
        write_dirty,
        memory,
    } = limits;
    // Documents are loaded outside the batches' write transactions: a generation loaded whole
    // would otherwise hold the read models' write lock for as long as that takes.
    if lanes
        .iter_mut()
        .any(|lane| lane.stopped.is_none() && !lane.is_loaded())
    {
        let mut pooled = db.acquire().await?;
        let mut conn = pooled.conn();
        let mut left = memory;
        for lane in lanes.iter_mut().filter(|lane| lane.stopped.is_none()) {
            let held =
                ensure_loaded(&mut conn, lane.projector, &lane.ns, lane.durable, left).await?;
            left = left.saturating_sub(held);
        }
    }
    let mut prefetched: Option<(i64, Page)> = None;
    let mut unwritten_events = 0;
    loop {
        let Some(from) = lanes
            .iter()
            .filter(|lane| lane.stopped.is_none())
            .map(|lane| lane.position)
            .min()
        else {
            return Ok(());
        };
        if deadline.is_some_and(|at| at <= Instant::now()) {
            write_held(db, lanes).await?;
            committed(source, lanes).await;
            return Ok(());
        }
        let limit = limit_from(from);
        let page = match prefetched.take() {
            Some((after, page)) if after == from => page,
            _ if limit == 0 => Page {
                events: Vec::new(),
                poison: None,
                full: false,
            },
            _ => {
                let reading = Instant::now();
                let page = read_page(source, from, limit).await?;
                record_phase("read", reading.elapsed());
                page
            }
        };
        // For the lag's owners: how old a live page's oldest event is when it has been read,
        // the part of the lag before its batch begins.
        if let (false, Some(first)) = (page.full, page.events.first()) {
            let waited = (chrono::Utc::now() - first.recorded_at).to_std();
            record_phase("waited", waited.unwrap_or_default());
        }
        let Some(end) = page.end() else {
            // The end (or an undecodable event): write what is still held, then stop there.
            write_held(db, lanes).await?;
            committed(source, lanes).await;
            stop_poisoned(lanes, &page);
            return Ok(());
        };
        let stopped_before = lanes.iter().filter(|lane| lane.stopped.is_some()).count();
        unwritten_events += page.events.len();
        // A page short of full is the end of the log as it was: nothing to read ahead.
        let next_limit = if page.full { limit_from(end) } else { 0 };
        let unwritten: usize = lanes.iter_mut().map(|lane| lane.unwritten()).sum();
        let partial = lanes.iter_mut().any(|lane| lane.is_partial());
        let held: usize = lanes.iter_mut().map(|lane| lane.weight()).sum();
        let write = !page.full
            || page.poison.is_some()
            || next_limit == 0
            || unwritten_events >= write_every
            || (partial && unwritten >= write_dirty)
            || held > memory;
        // Read the next page while this one is applied.
        let (applied, next) = tokio::join!(
            apply_shared(db, lanes, &page.events, page.full, write, memory),
            async {
                if page.poison.is_some() || next_limit == 0 {
                    None
                } else {
                    Some(read_page(source, end, next_limit).await)
                }
            }
        );
        applied?;
        if write {
            unwritten_events = 0;
            committed(source, lanes).await;
        }
        stop_poisoned(lanes, &page);
        let stopped = lanes.iter().filter(|lane| lane.stopped.is_some()).count();
        if stopped > stopped_before {
            // A lane stopped: hand back at once (written), so the caller can report it.
            write_held(db, lanes).await?;
            committed(source, lanes).await;
            on_batch(
                lanes,
                Step {
                    events: &page.events,
                    full: false,
                },
            );
            return Ok(());
        }
        if let Some(next) = next {
            prefetched = Some((end, next?));
        }
        on_batch(
            lanes,
            Step {
                events: &page.events,
                full: page.full,
            },
        );
        if !page.full {
            // Live: everything is written (a page short of full always writes); the caller
            // decides when to look again.
            return Ok(());
        }
    }
}

/// A generation's progress as its row in the read models' database records it.
fn observed(row: &GenerationRow) -> Progress {
    let state = match (row.state.as_str(), row.error_position, &row.error) {
        ("failed", Some(position), Some(error)) => RunState::Failed {
            position,
            error: error.clone(),
        },
        ("live", _, _) => RunState::Live,
        _ => RunState::Building,
    };
    Progress {
        generation: row.generation,
        position: row.position,
        state,
    }
}

/// Tells `source` how far every lane still going has committed.
async fn committed(source: &dyn EventSource, lanes: &mut [Lane<'_>]) {
    // Taken before the await: a lane (its projector) is not `Sync`, so no borrow of one may be
    // held across it.
    let position = committed_position(lanes);
    if let Some(position) = position {
        source.committed(position).await;
    }
}

/// The lowest committed checkpoint of the lanes still going.
fn committed_position(lanes: &[Lane<'_>]) -> Option<i64> {
    lanes
        .iter()
        .filter(|lane| lane.stopped.is_none())
        .map(|lane| lane.durable)
        .min()
}

/// Writes what lanes applied and have not written yet, if any.
async fn write_held(db: &ReadDb, lanes: &mut [Lane<'_>]) -> Result<(), ProjectionError> {
    let held = lanes
        .iter()
        .any(|lane| lane.stopped.is_none() && lane.position != lane.durable);
    if held {
        apply_shared(db, lanes, &[], false, true, usize::MAX).await?;
    }
    Ok(())
}

/// Stops every running lane at the page's undecodable event (all of them are before it).
fn stop_poisoned(lanes: &mut [Lane<'_>], page: &Page) {
    let Some((position, detail)) = &page.poison else {
        return;
    };
    for lane in lanes.iter_mut().filter(|lane| lane.stopped.is_none()) {
        if lane.position < *position {
            lane.stopped = Some(LaneStop::Poison {
                position: *position,
                detail: detail.clone(),
            });
        }
    }
}

/// Projects `projector` into a generation until it has reached `until` (or the head), once.
/// Used by rebuilds and replays; returns the position reached.
pub async fn catch_up(
    store: &dyn EventStore,
    db: &ReadDb,
    projector: &mut dyn Projector,
    ns: &Namespace,
    from: i64,
    until: Option<i64>,
    on_batch: impl FnMut(i64) + Send,
) -> Result<i64, ProjectionError> {
    let mut on_batch = on_batch;
    let mut lanes = [Lane::new(projector, ns.clone(), from)];
    catch_up_lanes(store, db, &mut lanes, until, BATCH, |lanes, _| {
        if let Some(lane) = lanes.first() {
            on_batch(lane.position);
        }
    })
    .await?;
    let [lane] = lanes;
    match lane.stopped {
        Some(stop) => Err(stop.into()),
        None => Ok(lane.position),
    }
}

/// The projectors running in this process, and where each has got to.
#[derive(Clone)]
pub struct Runner {
    db: ReadDb,
    store: Arc<dyn EventStore>,
    /// Where following projectors read the log; the store itself when `None`. (Building a new
    /// generation from 0 always reads the store: a feed need not hold the whole history.)
    source: Option<Arc<dyn EventSource>>,
    /// Whether this runner only observes projectors that run elsewhere ([`Runner::observe`]).
    observer: bool,
    progress: Arc<Mutex<HashMap<&'static str, watch::Sender<Progress>>>>,
}

/// A projector the runner keeps following the log.
struct Member {
    projector: Box<dyn Projector>,
    ns: Namespace,
    position: i64,
    progress: watch::Sender<Progress>,
}

impl Runner {
    pub fn new(store: Arc<dyn EventStore>, db: ReadDb) -> Self {
        Self {
            db,
            store,
            source: None,
            observer: false,
            progress: Arc::default(),
        }
    }

    /// This runner with its following projectors reading `source` instead of the store (a
    /// projector process's feed). The store still wakes them and builds new generations.
    pub fn with_source(mut self, source: Arc<dyn EventSource>) -> Self {
        self.source = Some(source);
        self
    }

    pub fn db(&self) -> &ReadDb {
        &self.db
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// Starts a task that keeps `projector` up to date with the log.
    pub fn spawn(&self, projector: Box<dyn Projector>) -> JoinHandle<()> {
        self.spawn_group(vec![projector])
    }

    /// Starts one task that keeps all of `projectors` up to date with the log, reading and
    /// decoding each page once for all of them and committing them together.
    pub fn spawn_group(&self, projectors: Vec<Box<dyn Projector>>) -> JoinHandle<()> {
        let members = self.members(projectors);
        let runner = self.clone();
        tokio::spawn(async move { runner.run(members).await })
    }

    /// [`Runner::spawn_group`] on a thread of its own, with a single-threaded runtime: what a
    /// server uses. Applying a batch is milliseconds of CPU in one poll; on the shared runtime
    /// it held up the request tasks queued on that worker (the commands' p99 went from 23 to
    /// 27 ms at 64 clients), and the runner waited behind them (its lag was ten times longer).
    /// The thread ends with the process.
    pub fn spawn_group_on_thread(
        &self,
        projectors: Vec<Box<dyn Projector>>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let members = self.members(projectors);
        let runner = self.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("lianxi-projections".into())
            .spawn(move || runtime.block_on(runner.run(members)))
    }

    /// Follows, without running them, the projectors `names` that run in other processes
    /// (projector processes of the distributed mode): every `every`, each one's answering
    /// generation and checkpoint are read from the read models' database and published as its
    /// progress, so that `X-Min-Position` and `/v1/projections` work in a gateway as they do
    /// beside the projectors. The task ends with the process.
    pub fn observe(&mut self, names: &[&'static str], every: Duration) -> JoinHandle<()> {
        self.observer = true;
        let watched: Vec<(&'static str, watch::Sender<Progress>)> = names
            .iter()
            .map(|name| (*name, self.register(name)))
            .collect();
        let db = self.db.clone();
        tokio::spawn(async move {
            loop {
                match db.generations().await {
                    Ok(rows) => {
                        for (name, progress) in &watched {
                            let active = rows.iter().find(|r| r.active && r.name == *name);
                            if let Some(row) = active {
                                progress.send_if_modified(|p| {
                                    let now = observed(row);
                                    let changed = *p != now;
                                    *p = now;
                                    changed
                                });
                            }
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "reading the projections' checkpoints failed");
                    }
                }
                tokio::time::sleep(every).await;
            }
        })
    }

    /// Whether this runner only observes projectors running elsewhere: it must then start none.
    pub fn is_observer(&self) -> bool {
        self.observer
    }

    /// Registers each projector's progress, so that readers see it from now on.
    fn members(
        &self,
        projectors: Vec<Box<dyn Projector>>,
    ) -> Vec<(Box<dyn Projector>, watch::Sender<Progress>)> {
        projectors
            .into_iter()
            .map(|projector| {
                let progress = self.register(projector.name());
                (projector, progress)
            })
            .collect()
    }

    /// A fresh progress channel for `name`, replacing any earlier one.
    fn register(&self, name: &'static str) -> watch::Sender<Progress> {
        let (tx, _) = watch::channel(Progress {
            generation: 0,
            position: 0,
            state: RunState::Building,
        });
        if let Ok(mut progress) = self.progress.lock() {
            progress.insert(name, tx.clone());
        }
        tx
    }

    /// Progress of `name` in this process; `None` when it does not run here.
    pub fn progress(&self, name: &str) -> Option<watch::Receiver<Progress>> {
        let progress = self.progress.lock().ok()?;
        progress.get(name).map(|tx| tx.subscribe())
    }

    /// Waits until `name` has reached `position`, for at most `timeout`. Returns the position
    /// reached (which may be short of `position` when the time ran out or it failed).
    pub async fn wait_for(&self, name: &str, position: i64, timeout: Duration) -> Option<i64> {
        let mut rx = self.progress(name)?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let current = rx.borrow_and_update().clone();
            if current.position >= position || matches!(current.state, RunState::Failed { .. }) {
                return Some(current.position);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                _ => return Some(rx.borrow().position),
            }
        }
    }

    /// Resolves every member's generation, then follows the log until every member has
    /// stopped on a poison event. Storage errors are retried with a growing pause.
    async fn run(self, pending: Vec<(Box<dyn Projector>, watch::Sender<Progress>)>) {
        let mut backoff = Duration::from_millis(100);
        let mut pending = pending;
        let mut members: Vec<Member> = Vec::new();
        loop {
            // Members whose generation is not known yet (start, or after a retirement).
            let mut unresolved = Vec::new();
            let alone = pending.len() + members.len() == 1;
            for (mut projector, progress) in pending.drain(..) {
                match self.resolve(projector.as_mut(), &progress, alone).await {
                    Ok(Some((ns, position))) => members.push(Member {
                        projector,
                        ns,
                        position,
                        progress,
                    }),
                    // A new version to build beside the old one: in a task of its own, so
                    // the others do not wait for it.
                    Ok(None) => {
                        self.spawn(projector);
                    }
                    Err(error) => {
                        if let Some(stopped) = self.stopped(projector.name(), &progress, &error) {
                            tracing::debug!(projection = stopped, "not following");
                            continue;
                        }
                        tracing::warn!(projection = projector.name(), %error, ?backoff, "projection interrupted; retrying");
                        unresolved.push((projector, progress));
                    }
                }
            }
            pending = unresolved;
            if members.is_empty() && pending.is_empty() {
                return;
            }
            if !pending.is_empty() && members.is_empty() {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
            // Members that could not resume (the database was away for a moment) are tried
            // again after the pause while the others go on following: `follow` hands back at
            // its next idle point once it is over.
            let retry_at = (!pending.is_empty()).then(|| Instant::now() + backoff);
            if retry_at.is_some() {
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            match self.follow(&mut members, retry_at).await {
                Ok(retired) => {
                    if pending.is_empty() {
                        backoff = Duration::from_millis(100);
                    }
                    for member in retired {
                        tracing::info!(
                            projection = member.ns.projection,
                            "a newer generation took over; following it"
                        );
                        pending.push((member.projector, member.progress));
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, ?backoff, "projection interrupted; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    // Start again from the committed checkpoints.
                    for member in members.drain(..) {
                        pending.push((member.projector, member.progress));
                    }
                }
            }
        }
    }

    /// For an error while resolving: the projection's name when it stopped for good.
    fn stopped(
        &self,
        name: &'static str,
        progress: &watch::Sender<Progress>,
        error: &ProjectionError,
    ) -> Option<&'static str> {
        let ProjectionError::Poison { position, detail } = error else {
            return None;
        };
        report_poison(name, progress, *position, detail);
        Some(name)
    }

    /// The generation `projector` follows and its checkpoint; `None` when its version changed
    /// and it is not `alone` (it must build a new generation in a task of its own). Alone, it
    /// builds the new generation from 0 here, while the old one keeps answering, and takes over.
    async fn resolve(
        &self,
        projector: &mut dyn Projector,
        progress: &watch::Sender<Progress>,
        alone: bool,
    ) -> Result<Option<(Namespace, i64)>, ProjectionError> {
        let name = projector.name();
        let version = projector.version();
        for collection in projector.collections() {
            collection.discard();
        }
        let generation = match self.db.active(name).await? {
            Some(active) if active.version == i64::from(version) => active,
            Some(_) if !alone => return Ok(None),
            Some(old) => {
                tracing::info!(
                    projection = name,
                    old = old.version,
                    new = version,
                    "projector version changed; rebuilding"
                );
                let fresh = self.db.create_generation(name, version).await?;
                self.build(projector, &fresh).await?;
                self.db.promote(name, fresh.generation).await?;
                fresh
            }
            None => self.db.create_generation(name, version).await?,
        };
        let ns = Namespace {
            projection: name,
            generation: generation.generation,
        };
        let position = self
            .db
            .generation(name, ns.generation)
            .await?
            .map_or(0, |g| g.position);
        projector.resumed(position);
        progress.send_replace(Progress {
            generation: ns.generation,
            position,
            state: RunState::Building,
        });
        Ok(Some((ns, position)))
    }

    /// Follows the log for `members` until one or more of them were retired (returns them,
    /// taken out of `members`), `retry_at` has passed (returns none, everything written), or
    /// a storage error. Members stopped by poison are reported and dropped here.
    async fn follow(
        &self,
        members: &mut Vec<Member>,
        retry_at: Option<Instant>,
    ) -> Result<Vec<Member>, ProjectionError> {
        let mut head_rx = self.store.subscribe();
        let mut checked = Instant::now();
        loop {
            let (mut lanes, progress): (Vec<Lane<'_>>, Vec<&watch::Sender<Progress>>) = members
                .iter_mut()
                .map(|m| {
                    let lane = Lane::new(m.projector.as_mut(), m.ns.clone(), m.position);
                    (lane, &m.progress)
                })
                .unzip();
            let log = LogSource(self.store.as_ref());
            let source: &dyn EventSource = match &self.source {
                Some(source) => source.as_ref(),
                None => &log,
            };
            let result = catch_up_lanes_from(
                source,
                &self.db,
                &mut lanes,
                None,
                Pace {
                    batch: BATCH,
                    deadline: retry_at,
                    limits: Limits::from_env(),
                },
                |lanes, step| {
                    // Live: when the log's commit of each event ended, for the lag from commit.
                    let committed: Vec<Option<DateTime<Utc>>> = if step.full {
                        Vec::new()
                    } else {
                        step.events
                            .iter()
                            .map(|event| self.store.committed_at(event.position))
                            .collect()
                    };
                    for (lane, progress) in lanes.iter().zip(&progress) {
                        if lane.stopped.is_none() {
                            publish(lane, progress, &step, &committed);
                        }
                    }
                },
            )
            .await;
            let outcome: Vec<(i64, Option<LaneStop>)> = lanes
                .into_iter()
                .map(|lane| (lane.durable, lane.stopped))
                .collect();
            let mut retired = Vec::new();
            let mut following = Vec::with_capacity(members.len());
            for (mut member, (position, stopped)) in members.drain(..).zip(outcome) {
                member.position = position;
                match stopped {
                    None => following.push(member),
                    Some(LaneStop::Retired) => retired.push(member),
                    Some(LaneStop::Poison { position, detail }) => {
                        if let Err(write) = self.db.fail(&member.ns, position, &detail).await {
                            tracing::warn!(projection = member.ns.projection, error = %write, "could not record the failure");
                        }
                        report_poison(member.ns.projection, &member.progress, position, &detail);
                    }
                }
            }
            *members = following;
            result?;
            let retry_due = retry_at.is_some_and(|at| at <= Instant::now());
            if !retired.is_empty() || members.is_empty() || retry_due {
                return Ok(retired);
            }
            // At the end of the log, everything written.
            for member in members.iter() {
                member.progress.send_if_modified(|p| {
                    let changed = p.position != member.position || p.state != RunState::Live;
                    p.position = member.position;
                    p.state = RunState::Live;
                    changed
                });
            }
            // Woken by this process's appends; polls for other processes' appends.
            let _ = tokio::time::timeout(IDLE_POLL, head_rx.changed()).await;
            if checked.elapsed() < IDLE_POLL {
                continue;
            }
            checked = Instant::now();
            let active = self.active_generations().await?;
            let (stale, current): (Vec<Member>, Vec<Member>) = members
                .drain(..)
                .partition(|m| active.get(m.ns.projection) != Some(&m.ns.generation));
            *members = current;
            if !stale.is_empty()
                || members.is_empty()
                || retry_at.is_some_and(|at| at <= Instant::now())
            {
                return Ok(stale);
            }
        }
    }

    /// Which generation of each projection answers now (a rebuild elsewhere may have changed it).
    async fn active_generations(&self) -> Result<HashMap<String, i64>, ProjectionError> {
        Ok(self
            .db
            .generations()
            .await?
            .into_iter()
            .filter(|g| g.active)
            .map(|g| (g.name, g.generation))
            .collect())
    }

    /// Builds a fresh generation up to the head.
    async fn build(
        &self,
        projector: &mut dyn Projector,
        fresh: &GenerationRow,
    ) -> Result<(), ProjectionError> {
        let ns = Namespace {
            projection: projector.name(),
            generation: fresh.generation,
        };
        let started = Instant::now();
        match catch_up(
            self.store.as_ref(),
            &self.db,
            projector,
            &ns,
            fresh.position,
            None,
            |_| {},
        )
        .await
        {
            Ok(reached) => {
                tracing::info!(projection = ns.projection, reached, elapsed = ?started.elapsed(), "generation built");
                Ok(())
            }
            Err(error) => {
                if let ProjectionError::Poison { position, detail } = &error {
                    if let Err(write) = self.db.fail(&ns, *position, detail).await {
                        tracing::warn!(projection = ns.projection, error = %write, "could not record the failure");
                    }
                }
                Err(error)
            }
        }
    }
}

/// Tells readers, the metrics and the log that `name` stopped on the event at `position`.
fn report_poison(
    name: &'static str,
    progress: &watch::Sender<Progress>,
    position: i64,
    detail: &str,
) {
    tracing::error!(projection = name, position, %detail, "projection stopped on an event it cannot apply");
    metrics::counter!("lianxi_projection_failures_total", "projection" => name).increment(1);
    progress.send_modify(|p| {
        p.state = RunState::Failed {
            position,
            error: detail.to_owned(),
        }
    });
}

/// Tells readers how far `lane` has written; for a live batch, records for each event now
/// written how long after its recording it reached the read model
/// (`lianxi_projection_lag_seconds`: `recorded_at` is taken before the log's group commit, so
/// this includes the commit), and, where this process committed it (`committed`, by event of
/// the step), how long after the log's commit ended (`lianxi_projection_commit_lag_seconds`:
/// "from commit to read model"). Catch-up batches are left out of the lag: it would say how
/// long the process was down, not how fast it follows.
fn publish(
    lane: &Lane<'_>,
    progress: &watch::Sender<Progress>,
    step: &Step<'_>,
    committed: &[Option<DateTime<Utc>>],
) {
    let name = lane.ns.projection;
    let written = lane.durable;
    if !step.full {
        let now = chrono::Utc::now();
        let histogram = metrics::histogram!("lianxi_projection_lag_seconds", "projection" => name);
        let from_commit =
            metrics::histogram!("lianxi_projection_commit_lag_seconds", "projection" => name);
        for (i, event) in step.events.iter().enumerate() {
            if event.position > written {
                continue;
            }
            let lag = (now - event.recorded_at).to_std().unwrap_or_default();
            histogram.record(lag.as_secs_f64());
            if let Some(at) = committed.get(i).copied().flatten() {
                from_commit.record((now - at).to_std().unwrap_or_default().as_secs_f64());
            }
        }
    }
    let state = if step.full {
        RunState::Building
    } else {
        RunState::Live
    };
    progress.send_if_modified(|p| {
        let changed = p.position != written || p.state != state;
        p.position = written;
        p.state = state.clone();
        changed
    });
    metrics::gauge!("lianxi_projection_position", "projection" => name).set(written as f64);
}

/// Builds every registered projector from position 0 into a private in-memory database, up to
/// `until` (inclusive; `None`: the head), in steps of `step` events (at most [`BATCH`]) as a
/// live projector would meet them. The live tables are not touched: this is what replays and "rebuild equals live"
/// checks compare against.
pub async fn build_in_memory(
    store: &dyn EventStore,
    until: Option<i64>,
    step: usize,
) -> Result<ReadDb, ProjectionError> {
    let db = ReadDb::in_memory().await?;
    build_into(store, &db, until, step).await?;
    Ok(db)
}

/// [`build_in_memory`] into `db`, a fresh read-model database of either backend (its
/// generations are created here, and promoted at the end).
pub async fn build_into(
    store: &dyn EventStore,
    db: &ReadDb,
    until: Option<i64>,
    step: usize,
) -> Result<(), ProjectionError> {
    let target = match until {
        Some(until) => until,
        None => store.head().await?,
    };
    let mut projectors = crate::projectors::all();
    let mut generations = Vec::with_capacity(projectors.len());
    for projector in &projectors {
        let row = db
            .create_generation(projector.name(), projector.version())
            .await?;
        generations.push(row.generation);
    }
    let mut lanes: Vec<Lane<'_>> = projectors
        .iter_mut()
        .zip(&generations)
        .map(|(projector, generation)| {
            let ns = Namespace {
                projection: projector.name(),
                generation: *generation,
            };
            Lane::new(projector.as_mut(), ns, 0)
        })
        .collect();
    let batch = step.clamp(1, BATCH);
    catch_up_lanes(store, db, &mut lanes, Some(target), batch, |_, _| {}).await?;
    for lane in &mut lanes {
        if let Some(stop) = lane.stopped.take() {
            return Err(stop.into());
        }
    }
    for lane in &lanes {
        db.promote(lane.ns.projection, lane.ns.generation).await?;
    }
    Ok(())
}

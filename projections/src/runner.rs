//! Runs projectors over the log: in order, in batches, each batch committed with its checkpoint.
//!
//! Delivery is exactly once per generation: a batch's document changes and the new checkpoint
//! are one transaction, so a crash at any point either keeps the whole batch or none of it, and
//! the next run starts after the checkpoint. The runner is woken by appends in this process and
//! also looks at the log head now and then, for appends made by another process on the same store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use store::EventStore;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::collection::Namespace;
use crate::event::ProjectedEvent;
use crate::readdb::ReadDb;
use crate::{ProjectionError, Projector};

/// Events read and applied per transaction.
pub const BATCH: usize = 2_000;
/// Clean documents a collection keeps cached between batches.
const CACHE_KEEP: usize = 50_000;
/// How often an idle runner looks at the head for appends by other processes.
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

/// Projects `projector` into a generation until it has reached the head, once.
/// Used by rebuilds and replays; returns the position reached.
pub async fn catch_up(
    store: &dyn EventStore,
    db: &ReadDb,
    projector: &mut dyn Projector,
    ns: &Namespace,
    from: i64,
    until: Option<i64>,
    mut on_batch: impl FnMut(i64) + Send,
) -> Result<i64, ProjectionError> {
    let mut position = from;
    loop {
        let limit = match until {
            Some(until) if until <= position => return Ok(position),
            Some(until) => BATCH.min(usize::try_from(until - position).unwrap_or(BATCH)),
            None => BATCH,
        };
        let events = store.read_all(position, limit).await?;
        if events.is_empty() {
            return Ok(position);
        }
        position = apply_batch(db, projector, ns, &events, "building").await?;
        on_batch(position);
    }
}

/// Decodes, applies and commits one batch; returns the new checkpoint.
pub(crate) async fn apply_batch(
    db: &ReadDb,
    projector: &mut dyn Projector,
    ns: &Namespace,
    recorded: &[store::RecordedEvent],
    state: &str,
) -> Result<i64, ProjectionError> {
    let Some(last) = recorded.last() else {
        return Err(ProjectionError::Storage("empty batch".into()));
    };
    let last_position = last.position;
    let mut events = Vec::with_capacity(recorded.len());
    for r in recorded {
        events.push(ProjectedEvent::try_from(r)?);
    }
    let result = async {
        // IMMEDIATE: take the write lock before reading, so that several projectors sharing the
        // file queue for it instead of failing with "database is locked" on upgrade.
        let mut tx = db.pool().begin_with("BEGIN IMMEDIATE").await?;
        // Two rounds: the second may follow references found in documents the first loaded
        // (a meeting's community, a project's claimant).
        for _ in 0..2 {
            for event in &events {
                projector.want(event);
            }
            for collection in projector.collections() {
                collection.load(&mut tx, ns).await?;
            }
        }
        for event in &events {
            projector
                .apply(event)
                .map_err(|detail| ProjectionError::Poison {
                    position: event.position,
                    detail,
                })?;
        }
        for collection in projector.collections() {
            collection.flush(&mut tx, ns).await?;
        }
        ReadDb::checkpoint(&mut tx, ns, last_position, state).await?;
        tx.commit().await?;
        Ok::<_, ProjectionError>(())
    }
    .await;
    match result {
        Ok(()) => {
            for collection in projector.collections() {
                collection.committed(CACHE_KEEP);
            }
            metrics::counter!("lianxi_projection_events_total", "projection" => ns.projection)
                .increment(recorded.len() as u64);
            Ok(last_position)
        }
        Err(error) => {
            for collection in projector.collections() {
                collection.discard();
            }
            Err(error)
        }
    }
}

/// The projectors running in this process, and where each has got to.
#[derive(Clone)]
pub struct Runner {
    db: ReadDb,
    store: Arc<dyn EventStore>,
    progress: Arc<Mutex<HashMap<&'static str, watch::Sender<Progress>>>>,
}

impl Runner {
    pub fn new(store: Arc<dyn EventStore>, db: ReadDb) -> Self {
        Self {
            db,
            store,
            progress: Arc::default(),
        }
    }

    pub fn db(&self) -> &ReadDb {
        &self.db
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// Starts a task that keeps `projector` up to date with the log.
    pub fn spawn(&self, projector: Box<dyn Projector>) -> JoinHandle<()> {
        let name = projector.name();
        let (tx, _) = watch::channel(Progress {
            generation: 0,
            position: 0,
            state: RunState::Building,
        });
        if let Ok(mut progress) = self.progress.lock() {
            progress.insert(name, tx.clone());
        }
        let runner = self.clone();
        tokio::spawn(async move { runner.run(projector, tx).await })
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

    async fn run(self, mut projector: Box<dyn Projector>, progress: watch::Sender<Progress>) {
        let name = projector.name();
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.follow(projector.as_mut(), &progress).await {
                Ok(()) => return,
                Err(ProjectionError::Poison { position, detail }) => {
                    tracing::error!(projection = name, position, %detail, "projection stopped on an event it cannot apply");
                    metrics::counter!("lianxi_projection_failures_total", "projection" => name)
                        .increment(1);
                    progress.send_modify(|p| {
                        p.state = RunState::Failed {
                            position,
                            error: detail.clone(),
                        }
                    });
                    return;
                }
                Err(ProjectionError::Retired) => {
                    tracing::info!(
                        projection = name,
                        "a newer generation took over; following it"
                    );
                    backoff = Duration::from_millis(100);
                }
                Err(error) => {
                    tracing::warn!(projection = name, %error, ?backoff, "projection interrupted; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Follows the log for the active generation (creating or rebuilding it as needed).
    async fn follow(
        &self,
        projector: &mut dyn Projector,
        progress: &watch::Sender<Progress>,
    ) -> Result<(), ProjectionError> {
        let name = projector.name();
        let version = projector.version();
        for collection in projector.collections() {
            collection.discard();
        }
        let generation = match self.db.active(name).await? {
            Some(active) if active.version == i64::from(version) => active,
            Some(old) => {
                // New code: build a new generation from 0 while the old one keeps answering.
                tracing::info!(
                    projection = name,
                    old = old.version,
                    new = version,
                    "projector version changed; rebuilding"
                );
                let fresh = self.db.create_generation(name, version).await?;
                self.build(projector, &fresh, progress).await?;
                self.db.promote(name, fresh.generation).await?;
                fresh
            }
            None => self.db.create_generation(name, version).await?,
        };
        let ns = Namespace {
            projection: name,
            generation: generation.generation,
        };
        let mut position = self
            .db
            .generation(name, ns.generation)
            .await?
            .map_or(0, |g| g.position);
        let mut head_rx = self.store.subscribe();
        progress.send_replace(Progress {
            generation: ns.generation,
            position,
            state: RunState::Building,
        });
        loop {
            let events = self.store.read_all(position, BATCH).await?;
            if events.is_empty() {
                progress.send_modify(|p| p.state = RunState::Live);
                // Woken by this process's appends; polls for other processes' appends.
                let _ = tokio::time::timeout(IDLE_POLL, head_rx.changed()).await;
                if self.db.active(name).await?.map(|a| a.generation) != Some(ns.generation) {
                    return Err(ProjectionError::Retired);
                }
                continue;
            }
            let full = events.len() == BATCH;
            let state = if full { "building" } else { "live" };
            position = match apply_batch(&self.db, projector, &ns, &events, state).await {
                Ok(position) => position,
                Err(error) => return Err(self.record_failure(&ns, error).await),
            };
            if !full {
                record_lag(name, &events);
            }
            progress.send_modify(|p| {
                p.position = position;
                p.state = if full {
                    RunState::Building
                } else {
                    RunState::Live
                };
            });
            metrics::gauge!("lianxi_projection_position", "projection" => name)
                .set(position as f64);
        }
    }

    /// Writes a poison failure on the generation's row, so that `/v1/projections` and
    /// `projections status` show it from any process; other errors pass through.
    async fn record_failure(&self, ns: &Namespace, error: ProjectionError) -> ProjectionError {
        if let ProjectionError::Poison { position, detail } = &error {
            if let Err(write) = self.db.fail(ns, *position, detail).await {
                tracing::warn!(projection = ns.projection, error = %write, "could not record the failure");
            }
        }
        error
    }

    /// Builds a fresh generation up to the head, reporting progress as it goes.
    async fn build(
        &self,
        projector: &mut dyn Projector,
        fresh: &crate::readdb::GenerationRow,
        progress: &watch::Sender<Progress>,
    ) -> Result<(), ProjectionError> {
        let ns = Namespace {
            projection: projector.name(),
            generation: fresh.generation,
        };
        let started = Instant::now();
        let reached = match catch_up(
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
            Ok(reached) => reached,
            Err(error) => return Err(self.record_failure(&ns, error).await),
        };
        tracing::info!(projection = ns.projection, reached, elapsed = ?started.elapsed(), "generation built");
        let _ = progress;
        Ok(())
    }
}

/// Records, for each event of a live batch just committed, how long after its recording it
/// reached the read model (`lianxi_projection_lag_seconds`). Catch-up batches are left out:
/// their lag says how long the process was down, not how fast it follows.
fn record_lag(name: &'static str, events: &[store::RecordedEvent]) {
    let now = chrono::Utc::now();
    let histogram = metrics::histogram!("lianxi_projection_lag_seconds", "projection" => name);
    for event in events {
        let lag = (now - event.recorded_at).to_std().unwrap_or_default();
        histogram.record(lag.as_secs_f64());
    }
}

/// Builds every registered projector from position 0 into a private in-memory database, up to
/// `until` (inclusive; `None`: the head), in steps of `step` events as a live projector would
/// meet them. The live tables are not touched: this is what replays and "rebuild equals live"
/// checks compare against.
pub async fn build_in_memory(
    store: &dyn EventStore,
    until: Option<i64>,
    step: usize,
) -> Result<ReadDb, ProjectionError> {
    let db = ReadDb::in_memory().await?;
    let target = match until {
        Some(until) => until,
        None => store.head().await?,
    };
    for mut projector in crate::projectors::all() {
        let row = db
            .create_generation(projector.name(), projector.version())
            .await?;
        let ns = Namespace {
            projection: projector.name(),
            generation: row.generation,
        };
        let mut position = 0;
        while position < target {
            let next = (position + step.max(1) as i64).min(target);
            let reached = catch_up(
                store,
                &db,
                projector.as_mut(),
                &ns,
                position,
                Some(next),
                |_| {},
            )
            .await?;
            if reached < next {
                break;
            }
            position = reached;
        }
        db.promote(projector.name(), row.generation).await?;
    }
    Ok(db)
}

//! Rebuilding a projection: a new generation built from position 0 while the old one answers.
//!
//! One function serves `lianxi projections rebuild NAME` and `POST /v1/projections/{name}/
//! rebuild`. [`start`] creates the generation (so a caller can name it at once), [`build`] fills
//! it from the log and promotes it. Guarantees:
//!
//! - Readers are never without an answer: until the promotion, the old generation's documents
//!   answer; the promotion swaps `active` and drops the old documents in one transaction.
//! - The new generation takes over only once it has reached the old one's checkpoint
//!   ([`ReadDb::promote_if_caught_up`]), so a position already announced to readers
//!   (`X-Projection-Position`) is never taken back. Until then it catches up again.
//! - It works beside a running server on the same data directory: the server's runner finds its
//!   generation retired (at its next checkpoint, or when idle), and follows the new one from
//!   the new one's checkpoint (see [`crate::runner`]).
//! - A build that dies half-way leaves a `building` generation that does not answer; when the
//!   server starts again it goes on from that generation's checkpoint ([`interrupted`]).
//!   Its checkpoint only moves from where the builder last wrote it, so two builders of one
//!   generation cannot both apply an event: the second is refused.

use std::time::{Duration, Instant};

use serde::Serialize;
use store::EventStore;

use crate::collection::Namespace;
use crate::readdb::{GenerationRow, ReadDb};
use crate::runner::catch_up;
use crate::{projectors, ProjectionError, Projector};

/// How many rounds of "catch up, then try to take over" before giving up on a log that moves
/// faster than the build can follow.
const MAX_ROUNDS: u32 = 1_000;
/// How many failed batches (storage errors, each rolled back whole) a rebuild retries.
const MAX_STORAGE_RETRIES: u32 = 50;

/// A fresh projector of the registered projection called `name` (`projectors::all()`).
pub fn projector(name: &str) -> Option<Box<dyn Projector>> {
    projectors::all().into_iter().find(|p| p.name() == name)
}

/// The names of every registered projection, for error messages.
pub fn names() -> Vec<&'static str> {
    projectors::all().iter().map(|p| p.name()).collect()
}

/// The rebuilds a process died in the middle of: for each projection, its newest generation
/// still `building`, newer than the one answering and of this build's version, with a fresh
/// projector to go on from its checkpoint ([`build`] resumes it). Generations of another
/// version are left alone; the next promotion retires them.
pub async fn interrupted(
    db: &ReadDb,
) -> Result<Vec<(Box<dyn Projector>, GenerationRow)>, ProjectionError> {
    let generations = db.generations().await?;
    let mut resumable = Vec::new();
    for projector in projectors::all() {
        let name = projector.name();
        let active = generations
            .iter()
            .find(|g| g.name == name && g.active)
            .map_or(0, |g| g.generation);
        let newest = generations
            .iter()
            .filter(|g| g.name == name && !g.active && g.generation > active)
            .filter(|g| g.state == "building" && g.version == i64::from(projector.version()))
            .max_by_key(|g| g.generation)
            .cloned();
        if let Some(generation) = newest {
            resumable.push((projector, generation));
        }
    }
    Ok(resumable)
}

/// What a finished rebuild reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rebuilt {
    pub name: String,
    pub generation: i64,
    pub version: u32,
    /// The log position the new generation had reached when it took over.
    pub position: i64,
    #[serde(skip)]
    pub elapsed: Duration,
}

/// Creates the new generation of `projector`'s projection, empty and not answering yet (unless
/// there was no generation at all, in which case it answers at once). (`&mut` only so that
/// the future is `Send`: projectors are `Send`, not `Sync`.)
pub async fn start(
    db: &ReadDb,
    projector: &mut dyn Projector,
) -> Result<GenerationRow, ProjectionError> {
    let (name, version) = (projector.name(), projector.version());
    db.create_generation(name, version).await
}

/// Builds `fresh` (made by [`start`]) from the log and promotes it once it has caught up.
/// `on_batch` is called with the position reached after every committed batch.
pub async fn build(
    store: &dyn EventStore,
    db: &ReadDb,
    projector: &mut dyn Projector,
    fresh: &GenerationRow,
    mut on_batch: impl FnMut(i64) + Send,
) -> Result<Rebuilt, ProjectionError> {
    let started = Instant::now();
    let name = projector.name();
    let ns = Namespace {
        projection: name,
        generation: fresh.generation,
    };
    let mut position = fresh.position;
    let mut storage_failures = 0;
    for _ in 0..MAX_ROUNDS {
        match catch_up(store, db, projector, &ns, position, None, &mut on_batch).await {
            Ok(reached) => position = reached,
            // A batch that lost a race for the read-model database's write lock to a runner
            // (SQLite's "database is locked" on a transaction that read first) was rolled
            // back whole: go on from the committed checkpoint.
            Err(ProjectionError::Storage(detail)) if storage_failures < MAX_STORAGE_RETRIES => {
                storage_failures += 1;
                tracing::debug!(projection = name, %detail, "rebuild batch failed; retrying");
                tokio::time::sleep(Duration::from_millis(20 * u64::from(storage_failures))).await;
                position = db
                    .generation(name, fresh.generation)
                    .await?
                    .map_or(position, |g| g.position);
                continue;
            }
            Err(error) => return Err(error),
        }
        if db.promote_if_caught_up(name, fresh.generation).await? {
            tracing::info!(
                projection = name,
                generation = fresh.generation,
                position,
                elapsed = ?started.elapsed(),
                "rebuilt generation took over"
            );
            return Ok(Rebuilt {
                name: name.to_owned(),
                generation: fresh.generation,
                version: projector.version(),
                position,
                elapsed: started.elapsed(),
            });
        }
        // The old generation moved past us while we were catching up: go round again.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(ProjectionError::Storage(format!(
        "{name} generation {} could not catch up with the live one after {MAX_ROUNDS} rounds",
        fresh.generation
    )))
}

/// [`start`] then [`build`]: the whole rebuild of `projector`'s projection.
pub async fn rebuild(
    store: &dyn EventStore,
    db: &ReadDb,
    projector: &mut dyn Projector,
    on_batch: impl FnMut(i64) + Send,
) -> Result<Rebuilt, ProjectionError> {
    let fresh = start(db, &mut *projector).await?;
    build(store, db, projector, &fresh, on_batch).await
}

//! The read side: projectors turn the log into read models, and queries answer from them.
//!
//! A projector is a name, a version and a synchronous `apply` over decoded events; its
//! documents live in typed [`collection::Collection`]s, whole in memory, which the [`runner`]
//! loads once and writes back after each batch, the changed ones only, together with the
//! checkpoint. Any read model can be dropped and
//! rebuilt from the log; a new version is built beside the old one, which answers meanwhile.
//! Delivery guarantee: each event is applied exactly once per generation, in log order.

pub mod collection;
pub mod event;
pub mod projectors;
pub mod readdb;
pub mod rebuild;
pub mod reports;
pub mod runner;
pub mod source;
pub mod summary;

use collection::Store;
use event::ProjectedEvent;

/// Why a projection could not go on.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// An event the projector cannot decode or apply: the projection stops there, visibly.
    #[error("event at position {position} cannot be projected: {detail}")]
    Poison { position: i64, detail: String },
    /// Another process promoted a newer generation, or another builder of this generation
    /// moved its checkpoint; this one must stop and follow what answers.
    #[error("this generation was retired by a newer one or taken over by another builder")]
    Retired,
    /// The read-model database failed; the batch is retried.
    #[error("read-model storage: {0}")]
    Storage(String),
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

impl From<sqlx::Error> for ProjectionError {
    fn from(error: sqlx::Error) -> Self {
        ProjectionError::Storage(error.to_string())
    }
}

/// A read model's builder. `apply` must be deterministic: the same log gives the same documents.
pub trait Projector: Send + 'static {
    /// Stable name, used in URLs and tables (`board`, `district-stats`, …).
    fn name(&self) -> &'static str;
    /// Bump to rebuild the read model from the whole log with new code.
    fn version(&self) -> u32;
    /// Names the documents `event` reads, for when a collection holds only a part of its
    /// generation (the read models outgrew the memory budget): they are loaded before the
    /// batch. Called twice per batch: the second time, documents named the first time are
    /// loaded, so the projector can follow references in them (a meeting's community). A
    /// collection holding everything ignores it.
    fn want(&mut self, event: &ProjectedEvent);
    /// Every collection the projector keeps, for the runner to load and flush. `apply` reads
    /// only memory.
    fn collections(&mut self) -> Vec<&mut dyn Store>;
    /// Applies one event to the loaded documents. An `Err` stops the projection on this event.
    fn apply(&mut self, event: &ProjectedEvent) -> Result<(), String>;
    /// Told that the projector follows on from the written checkpoint `position`, which it may
    /// not have reached by its own applies (it starts, or another process moved the checkpoint
    /// past it): a projector that tells readers of its changes must assume everything changed.
    fn resumed(&mut self, _position: i64) {}
}

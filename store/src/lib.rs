//! The append-only event log: the only source of truth in lianxi.
//!
//! The store knows nothing of the domain: it keeps opaque JSON events in streams, guards each
//! stream with an expected version, chains every stream with SHA-256 hashes over canonical bytes,
//! and records command ids and idempotency keys in the same transaction as the events they
//! produced. Two backends sit behind [`EventStore`]: SQLite (embedded, the default) and
//! PostgreSQL (several servers, one database); both run the one [`conformance`] suite.

pub mod canonical;
pub mod commit_clock;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
pub mod hash;
mod plan;
pub mod postgres;
mod queue;
pub mod sqlite;
mod telemetry;
#[cfg(feature = "conformance")]
pub mod throwaway_postgres;
pub mod tokens;
mod types;

pub use error::StoreError;
pub use types::{
    AppendOutcome, AppendRequest, ExpectedVersion, IdempotencyKey, NewEvent, RawEvent,
    RecordedEvent, Snapshot, StreamVersion, VerifyFailure, VerifyReport,
};

use async_trait::async_trait;
use tokio::sync::watch;

/// A global log position: 1 for the first event ever appended, 0 for "before everything".
pub type Position = i64;

/// The event log. Every method is safe to call from many tasks at once.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends the request's events atomically, after checking the idempotency key, the expected
    /// version and that every stream in `unchanged` is still at its version (a failed check is a
    /// [`StoreError::VersionConflict`] naming the stream). Concurrent appends are group-committed: they share one transaction and
    /// one fsync, but each request succeeds or fails on its own.
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, StoreError>;

    /// The events of one stream with a version greater than `after_version`, in version order
    /// (`after_version = 0` reads the whole stream). An unknown stream reads as empty.
    async fn read_stream(
        &self,
        stream: &str,
        after_version: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// [`read_stream`](Self::read_stream) with each event's JSON left as text, for readers that
    /// decode it into their own types (the command handler loading a stream it does not hold).
    /// Backends override it to skip parsing; this default serialises what `read_stream` parsed.
    async fn read_stream_raw(
        &self,
        stream: &str,
        after_version: i64,
    ) -> Result<Vec<RawEvent>, StoreError> {
        let events = self.read_stream(stream, after_version).await?;
        Ok(events.into_iter().map(RawEvent::from).collect())
    }

    /// Up to `limit` events with a position greater than `after`, in position order. Never skips
    /// an event that becomes visible later at a lower position.
    async fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// [`read_all`](Self::read_all) with each event's JSON left as text, for readers that
    /// decode it into their own types. Backends override it to skip parsing; this default
    /// serialises what `read_all` parsed.
    async fn read_all_raw(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RawEvent>, StoreError> {
        let events = self.read_all(after, limit).await?;
        Ok(events.into_iter().map(RawEvent::from).collect())
    }

    /// The position of the last committed event, 0 for an empty log.
    async fn head(&self) -> Result<Position, StoreError>;

    /// A receiver that changes to the new head after every committed append made through this
    /// store value. Appends by another process are seen on the next read, not announced here.
    fn subscribe(&self) -> watch::Receiver<Position>;

    /// When the group commit that made `position` durable ended, if this store value made it
    /// in the last few thousand commits; `None` otherwise. The projectors measure their lag
    /// "from commit to read model" from it.
    fn committed_at(&self, _position: Position) -> Option<chrono::DateTime<chrono::Utc>> {
        None
    }

    /// The events appended by the command that first used idempotency key `key` of holder
    /// `scope`, with that command's request hash; `None` when the key is new. Lets the command
    /// handler answer a retry with the first response before deciding again (the append itself
    /// still re-checks the key in its transaction, for races).
    async fn find_idempotent(
        &self,
        scope: &str,
        key: &str,
    ) -> Result<Option<(String, Vec<RecordedEvent>)>, StoreError>;

    /// The snapshot of `stream` in shape `schema`, if one was saved.
    async fn read_snapshot(
        &self,
        stream: &str,
        schema: i32,
    ) -> Result<Option<Snapshot>, StoreError>;

    /// Up to `limit` snapshots of shape `schema`, of the streams after `after` in stream id
    /// order (`""` for the first page): for `lianxi verify`, which checks each one against the
    /// log.
    async fn snapshots(
        &self,
        schema: i32,
        after: &str,
        limit: usize,
    ) -> Result<Vec<Snapshot>, StoreError>;

    /// Saves `snapshot` unless the stream has not reached its version, or a snapshot of the same
    /// stream and schema at the same or a later version is there already; `true` when saved.
    /// Safe to call from many tasks and servers at once: the newest wins whatever the order.
    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<bool, StoreError>;

    /// Recomputes every stream's hash chain in log order and reports the first mismatch.
    async fn verify(&self) -> Result<VerifyReport, StoreError>;

    /// Cheap round trip to the database, for readiness checks.
    async fn ping(&self) -> Result<(), StoreError>;
}

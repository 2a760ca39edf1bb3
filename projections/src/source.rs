//! Where a runner reads the log from: the store itself, or a copy of it brought in order by
//! something else (a projector process's NATS JetStream feed, in `lianxi-bus`).
//!
//! Whatever the source, it must hand out the log's events in position order and never skip one:
//! the runner's checkpoints are positions, and exactly-once rests on that.

use async_trait::async_trait;
use store::{EventStore, RawEvent};

use crate::ProjectionError;

/// A reader of the log in position order.
#[async_trait]
pub trait EventSource: Send + Sync {
    /// Up to `limit` events with a position above `after`, in position order, starting with
    /// the log's first event after `after` (none may be left out). Empty when there is nothing
    /// more yet.
    async fn read(&self, after: i64, limit: usize) -> Result<Vec<RawEvent>, ProjectionError>;

    /// Tells the source that every reader's checkpoint is at or past `position` (committed):
    /// what it holds for redelivery up to there may be let go. The log itself needs nothing.
    async fn committed(&self, _position: i64) {}
}

/// The log read straight from the store: the embedded mode, rebuilds and replays.
pub struct LogSource<'a>(pub &'a dyn EventStore);

#[async_trait]
impl EventSource for LogSource<'_> {
    async fn read(&self, after: i64, limit: usize) -> Result<Vec<RawEvent>, ProjectionError> {
        Ok(self.0.read_all_raw(after, limit).await?)
    }
}

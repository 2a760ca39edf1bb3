//! A projector process's source of the log: its JetStream feed, checked against the log.
//!
//! The relay publishes every event in log order with consecutive stream sequences, so a
//! delivery whose sequence follows the last one handed out is the log's next event: the feed
//! alone brings a projector up to date, and PostgreSQL is asked nothing. Where that chain is
//! broken (the first delivery after a start, the stream's limits dropped messages, the runner
//! went back to an earlier checkpoint) the log says what comes next, and events the feed lacks
//! are read from the log itself. So is everything while the feed stays behind the log for
//! longer than [`FEED_GRACE`] (a relay or NATS outage): projections go on, from PostgreSQL.
//!
//! Deliveries are acknowledged only once every projector reading through the source has
//! committed past them ([`EventSource::committed`]); one at or below the checkpoint (a
//! redelivery, a duplicate) is skipped and acknowledged with them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use projections::source::EventSource;
use projections::ProjectionError;
use store::{EventStore, Position, RawEvent};
use tokio::sync::{watch, Mutex};

use crate::feed::{Delivery, Feed};
use crate::telemetry;

/// How long a source waits for the feed to bring events the log already has before it reads
/// them from the log.
pub const FEED_GRACE: Duration = Duration::from_millis(200);

/// The log through a [`Feed`], for a projection runner (`Runner::with_source`).
pub struct FeedSource {
    store: Arc<dyn EventStore>,
    state: Mutex<State>,
}

struct State {
    feed: Feed,
    /// The store's latest known head: whether the log has events the feed has not brought.
    head: watch::Receiver<Position>,
    /// Received, not handed out yet, in stream order.
    pending: VecDeque<Delivery>,
    /// Handed out or skipped, waiting for a commit that covers them.
    unacked: VecDeque<Delivery>,
    /// The log position and stream sequence of the last delivery handed out or skipped.
    last: Option<(Position, u64)>,
}

impl FeedSource {
    /// A source reading `feed`, checked against and completed from `store`.
    pub fn new(feed: Feed, store: Arc<dyn EventStore>) -> FeedSource {
        let head = store.subscribe();
        telemetry::register_feed();
        FeedSource {
            store,
            state: Mutex::new(State {
                feed,
                head,
                pending: VecDeque::new(),
                unacked: VecDeque::new(),
                last: None,
            }),
        }
    }

    /// Events after `after` from the log itself, up to `limit`, stopping before `before`.
    async fn read_log(
        &self,
        after: Position,
        limit: usize,
        before: Option<Position>,
    ) -> Result<Vec<RawEvent>, ProjectionError> {
        let mut events = self.store.read_all_raw(after, limit).await?;
        if let Some(before) = before {
            events.retain(|event| event.position < before);
        }
        telemetry::from_log(events.len());
        Ok(events)
    }
}

#[async_trait]
impl EventSource for FeedSource {
    async fn read(&self, after: i64, limit: usize) -> Result<Vec<RawEvent>, ProjectionError> {
        let mut state = self.state.lock().await;
        state.skip_through(after);
        if state.pending.is_empty() {
            let log_ahead = *state.head.borrow_and_update() > after;
            let wait = if log_ahead {
                FEED_GRACE
            } else {
                Duration::ZERO
            };
            let batch = state
                .feed
                .next_batch(limit, wait)
                .await
                .map_err(|e| ProjectionError::Storage(format!("reading the feed: {e}")))?;
            state.pending.extend(batch);
            state.skip_through(after);
            if state.pending.is_empty() {
                // The feed is behind the log (or both are at the end): the log has the truth.
                return if log_ahead {
                    self.read_log(after, limit, None).await
                } else {
                    Ok(Vec::new())
                };
            }
        }

        let Some(first) = state.pending.front() else {
            return Ok(Vec::new());
        };
        let (position, sequence) = (first.position(), first.stream_sequence);
        let chained = matches!(state.last, Some((p, s)) if p == after && s + 1 == sequence);
        if !chained {
            // Is the first delivery the log's next event? If not, the log brings what is
            // missing first (dropped by the stream's limits, or read past by the runner).
            let missing = self.read_log(after, limit, Some(position)).await?;
            if !missing.is_empty() {
                return Ok(missing);
            }
        }
        let events = state.hand_out(limit);
        telemetry::from_feed(events.len());
        Ok(events)
    }

    async fn committed(&self, position: i64) {
        let mut state = self.state.lock().await;
        let mut done = Vec::new();
        while state
            .unacked
            .front()
            .is_some_and(|d| d.position() <= position)
        {
            if let Some(delivery) = state.unacked.pop_front() {
                done.push(delivery);
            }
        }
        if done.is_empty() {
            return;
        }
        if let Err(error) = state.feed.ack(&done).await {
            // Not acknowledged: JetStream delivers them again, and they are skipped then.
            tracing::warn!(%error, count = done.len(), "acknowledging the feed failed");
        }
    }
}

impl State {
    /// Moves the deliveries at or below `after` (already applied) out of the way.
    fn skip_through(&mut self, after: Position) {
        while self.pending.front().is_some_and(|d| d.position() <= after) {
            if let Some(delivery) = self.pending.pop_front() {
                self.last = Some((delivery.position(), delivery.stream_sequence));
                self.unacked.push_back(delivery);
            }
        }
    }

    /// Up to `limit` deliveries from the front, as long as their sequences run on unbroken.
    fn hand_out(&mut self, limit: usize) -> Vec<RawEvent> {
        let mut events = Vec::new();
        while events.len() < limit {
            let Some(next) = self.pending.front() else {
                break;
            };
            let follows = match (events.is_empty(), self.last) {
                (true, _) => true,
                (false, Some((_, sequence))) => sequence + 1 == next.stream_sequence,
                (false, None) => false,
            };
            if !follows {
                break;
            }
            let Some(delivery) = self.pending.pop_front() else {
                break;
            };
            self.last = Some((delivery.position(), delivery.stream_sequence));
            events.push(delivery.event.clone());
            self.unacked.push_back(delivery);
        }
        events
    }
}

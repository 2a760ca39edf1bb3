//! What a projector process consumes: the events the relay published, through a durable pull
//! consumer, **at least once and in log order**.
//!
//! A projector process reads a batch ([`Feed::next_batch`]), applies it, commits its read
//! models and checkpoint in one transaction, and only then acknowledges the batch
//! ([`Feed::ack`]). A crash before the acknowledgement redelivers the batch (after the consumer's
//! ack wait, or at once to a new process), so the caller **skips every delivery whose position is
//! at or below its checkpoint**: a redelivery, or a duplicate from a relay takeover, is then a
//! no-op. Acknowledge the skipped ones too, or they come back.
//!
//! **When the feed does not start where the checkpoint ends.** The stream may not hold the
//! whole log: its limits drop the oldest messages, and a consumer created after the fact starts
//! at the oldest message left. So when the first position delivered is past `checkpoint + 1`,
//! the events in between are either not in the log at all (positions skip numbers on PostgreSQL,
//! where a rolled-back transaction leaves a hole) or no longer in the stream. Before applying
//! such a delivery the caller catches up from the PostgreSQL log itself (`read_all_raw` from its
//! checkpoint up to the delivery), which costs nothing when the gap was only a hole.
//! [`Feed::first_available_position`] says in advance whether history was dropped: `None` (an
//! empty stream) or a position past `checkpoint + 1` means the stream cannot bring this
//! projector up to date on its own (a new projector, or one restored from an old backup); a
//! projector process checks it at start and catches up from the log first.

use std::time::Duration;

use async_nats::jetstream::consumer::pull::{self, Stream as Messages};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{self, stream::Stream};
use futures::{FutureExt, StreamExt};
use store::{Position, RawEvent};

use crate::message::{self, StreamSettings};
use crate::{telemetry, BusError};

/// How long a delivered message may go unacknowledged before JetStream delivers it again.
/// Longer than a projector's slowest batch (a catch-up batch writes many documents at once).
const ACK_WAIT: Duration = Duration::from_secs(60);
/// Delivered but unacknowledged messages per consumer; JetStream pauses delivery at this many.
/// Room for several batches of a projector process in flight.
const MAX_ACK_PENDING: i64 = 50_000;
/// Messages asked for by one pull request; the client keeps up to this many buffered.
const PULL_BATCH: usize = 1_000;
/// How often an idle server says it is still there; two missed mean the pull is renewed.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// How long one pull request stays open on the server.
const PULL_EXPIRES: Duration = Duration::from_secs(30);
/// How long a batch that had to wait for its first message goes on collecting after it: a
/// burst's messages arrive microseconds apart, and what comes later goes in the next batch.
/// (5 ms for every batch until 2026-12-06: under a steady flow each batch then waited 5 ms
/// with events in hand, and the lag through NATS had p50 ~15 ms, p99 45–79 ms; see
/// BENCHMARKS.md, "Lag through NATS: no linger behind a busy projector".)
const LINGER: Duration = Duration::from_millis(2);
/// How long a JetStream request (stream, consumer, message) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// One event delivered to this consumer, with what it takes to acknowledge it.
#[derive(Debug)]
pub struct Delivery {
    /// The event, exactly as the log holds it (its `position` included).
    pub event: RawEvent,
    /// The message's JetStream stream sequence.
    pub stream_sequence: u64,
    /// How many times JetStream has delivered this message (1 for the first time).
    pub delivered: i64,
    message: jetstream::Message,
}

impl Delivery {
    /// The event's global log position.
    pub fn position(&self) -> Position {
        self.event.position
    }
}

/// A durable consumer of the event stream, for one projector process (or a group sharing the
/// name; then each delivery goes to one of them).
pub struct Feed {
    js: jetstream::Context,
    stream: Stream,
    consumer: PullConsumer,
    /// The open pull, kept between batches so messages are already buffered when asked for;
    /// `None` until the first batch or after the pull failed.
    messages: Option<Messages>,
    durable: String,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("durable", &self.durable)
            .finish_non_exhaustive()
    }
}

impl Feed {
    /// Connects to `nats_url`, creates the stream with `stream`'s limits unless it exists (the
    /// relay owns them), and creates or binds the durable pull consumer `durable` (explicit
    /// acks, delivering everything the stream holds, in order).
    pub async fn open(
        nats_url: &str,
        stream: &StreamSettings,
        durable: &str,
    ) -> Result<Feed, BusError> {
        if durable.is_empty() || durable.contains(['.', '*', '>', ' ', '\t']) {
            return Err(BusError::Config(format!(
                "consumer name {durable:?}: non-empty, without '.', '*', '>' or whitespace"
            )));
        }
        let client = crate::connect(nats_url).await?;
        let js = jetstream::ContextBuilder::new()
            .timeout(REQUEST_TIMEOUT)
            .build(client);
        let handle = js
            .get_or_create_stream(stream.stream_config())
            .await
            .map_err(|e| BusError::nats("opening the stream", e))?;
        let consumer = handle
            .get_or_create_consumer(
                durable,
                pull::Config {
                    durable_name: Some(durable.to_owned()),
                    description: Some("a lianxi projector process".to_owned()),
                    deliver_policy: DeliverPolicy::All,
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    max_ack_pending: MAX_ACK_PENDING,
                    ..pull::Config::default()
                },
            )
            .await
            .map_err(|e| BusError::nats(&format!("opening consumer {durable}"), e))?;
        Ok(Feed {
            js,
            stream: handle,
            consumer,
            messages: None,
            durable: durable.to_owned(),
        })
    }

    /// The consumer's name.
    pub fn durable(&self) -> &str {
        &self.durable
    }

    /// Up to `max` deliveries in stream (= log) order. Waits up to `wait` for the first; then
    /// takes what is buffered and, if the first had to be waited for, what arrives within
    /// [`LINGER`] of it. Empty when nothing came within `wait`.
    ///
    /// An `Err` of code `bus_unavailable` is passing (the server went away, the pull is renewed
    /// on the next call): call again. `bus_invalid_message` means a message on the stream is not
    /// an event; the caller should stop there, visibly, as a projector that cannot apply an
    /// event does.
    ///
    /// Not cancel-safe: a call dropped half-way (a `select!` that took another branch) loses
    /// the messages the client had buffered, which JetStream delivers again after the ack wait
    /// (60 s). Nothing is lost, but a projector stalls that long.
    pub async fn next_batch(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, BusError> {
        let mut batch = Vec::new();
        if max == 0 {
            return Ok(batch);
        }
        let mut messages = match self.messages.take() {
            Some(messages) => messages,
            None => self
                .consumer
                .stream()
                .max_messages_per_batch(PULL_BATCH)
                .expires(PULL_EXPIRES)
                .heartbeat(HEARTBEAT)
                .messages()
                .await
                .map_err(|e| BusError::nats("pulling messages", e))?,
        };
        // A batch that begins with a message already buffered (the projector was busy while
        // it came) takes what is buffered and goes: lingering then would only hold back events
        // that are late already. One that had to wait for its first message collects the rest
        // of that message's burst for LINGER at most: under a steady flow messages never pause
        // for LINGER, and waiting for `max` would hold each event back for as long as `max` of
        // them take to arrive (hundreds of ms at 1,000 commands/s).
        let (mut next, linger) = match messages.next().now_or_never() {
            Some(first) => (first, Duration::ZERO),
            None => match tokio::time::timeout(wait, messages.next()).await {
                Ok(first) => (first, LINGER),
                Err(_) => {
                    self.messages = Some(messages);
                    return Ok(batch);
                }
            },
        };
        // Whether the pull is still good for the next call; a failed or finished one is
        // dropped and renewed then.
        let mut healthy = true;
        let close = tokio::time::Instant::now() + linger;
        loop {
            match next {
                Some(Ok(message)) => {
                    batch.push(delivery(message)?);
                    if batch.len() >= max {
                        break;
                    }
                }
                Some(Err(error)) => {
                    healthy = false;
                    if batch.is_empty() {
                        return Err(BusError::nats("pulling messages", error));
                    }
                    // What arrived so far is good.
                    tracing::warn!(%error, "pulling messages failed after a partial batch");
                    break;
                }
                None => {
                    healthy = false;
                    break;
                }
            }
            // Take what is here already, and what follows within a moment: a pull's messages
            // arrive as a burst, and a projector applies a batch in one transaction.
            next = match messages.next().now_or_never() {
                Some(more) => more,
                None => match tokio::time::timeout_at(close, messages.next()).await {
                    Ok(more) => more,
                    Err(_) => break,
                },
            };
        }
        if healthy {
            self.messages = Some(messages);
        }
        telemetry::redelivered(batch.iter().filter(|d| d.delivered > 1).count() as u64);
        Ok(batch)
    }

    /// Acknowledges `deliveries` (after the caller committed what it made of them, skipped ones
    /// included), so they are not delivered again.
    pub async fn ack(&self, deliveries: &[Delivery]) -> Result<(), BusError> {
        for delivery in deliveries {
            delivery
                .message
                .ack()
                .await
                .map_err(|e| BusError::nats("acknowledging", e))?;
        }
        // The acks are queued in the client; make sure they left.
        self.js
            .client()
            .flush()
            .await
            .map_err(|e| BusError::nats("flushing acks", e))
    }

    /// The position of the oldest event the stream still holds, `None` when it holds none.
    /// Compare it with a checkpoint before following the feed (see the module docs).
    pub async fn first_available_position(&self) -> Result<Option<Position>, BusError> {
        // A few tries: the oldest message may age out between the two requests.
        for _ in 0..3 {
            let info = self
                .stream
                .get_info()
                .await
                .map_err(|e| BusError::nats("reading the stream's state", e))?;
            if info.state.messages == 0 {
                return Ok(None);
            }
            match self.stream.get_raw_message(info.state.first_sequence).await {
                Ok(first) => {
                    return message::position_of(&first.headers)
                        .map(Some)
                        .map_err(|error| with_sequence(error, first.sequence));
                }
                Err(error) => {
                    tracing::debug!(%error, "the first message went away; asking again");
                }
            }
        }
        Err(BusError::Nats(
            "the stream's first message kept going away".to_owned(),
        ))
    }
}

/// Decodes one delivered message.
fn delivery(message: jetstream::Message) -> Result<Delivery, BusError> {
    let (stream_sequence, delivered) = message
        .info()
        .map(|info| (info.stream_sequence, info.delivered))
        .map_err(|error| BusError::InvalidMessage {
            sequence: None,
            detail: format!("not a JetStream delivery: {error}"),
        })?;
    let event =
        message::decode(&message.payload).map_err(|error| with_sequence(error, stream_sequence))?;
    Ok(Delivery {
        event,
        stream_sequence,
        delivered,
        message,
    })
}

/// `error`, naming the stream sequence of the message it is about.
fn with_sequence(error: BusError, sequence: u64) -> BusError {
    match error {
        BusError::InvalidMessage { detail, .. } => BusError::InvalidMessage {
            sequence: Some(sequence),
            detail,
        },
        other => other,
    }
}

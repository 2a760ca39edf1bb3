//! The relay: tails the PostgreSQL log and publishes every committed event to JetStream, once
//! and in position order, so projector processes never have to poll the database.
//!
//! **One relay is active.** A relay first takes a session-level PostgreSQL advisory lock
//! ([`LockKey`]) on a connection of its own that it keeps open; a relay that does not get it is
//! a standby and tries again every [`RelayConfig::retry_interval`]. When the active relay dies
//! its connection closes, PostgreSQL releases the lock, and a standby takes over within a retry
//! interval or so. The active relay checks its lock connection between batches, at most every
//! [`RelayConfig::lock_check`], and stops publishing once it is gone; until then JetStream's
//! expected-sequence check (below) keeps it from interleaving with a successor.
//!
//! **Where it resumes.** On becoming active, and after any failed publish, the relay reads the
//! stream's last message: its `Lianxi-Position` header is the last event JetStream has (0 for an
//! empty stream). So after a crash it republishes only what had not reached the stream, and the
//! `Nats-Msg-Id` dedupe makes any overlap harmless.
//!
//! **Never a gap, never out of order.** Publishes are pipelined (up to
//! [`RelayConfig::max_in_flight`] acks outstanding) and the relay's position advances only in
//! order, as acks arrive. Each message also carries `Nats-Expected-Last-Sequence`: the stream
//! sequence it must follow. JetStream refuses a message whose predecessor is missing, so a
//! message lost in a reconnect cannot be overtaken by the next one, a stale message the client
//! flushes after a reconnect cannot land twice or out of place, and a relay that lost its lock a
//! moment ago cannot interleave with its successor: each refusal sends the relay back to the
//! stream's last message. On a NATS outage it keeps retrying with backoff; when the server is
//! back the stream goes on from the last acknowledged position.
//!
//! Delivery to projector processes is therefore at least once and in log order; duplicates
//! only ever repeat an event already in the stream (see [`crate::feed`]).
//!
//! One limitation: if a `max_age` limit drops *every* message while the log is idle, the stream
//! no longer says where the relay stopped, and a relay that becomes active then republishes the
//! log from the start (never skipping is the guarantee kept). Size `max_age` well beyond quiet
//! periods, or limit the stream by count or bytes.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::{self, stream::Stream};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use store::{EventStore, Position, RawEvent};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::message::{self, StreamSettings};
use crate::{telemetry, BusError};

/// The key of the relay's session-level advisory lock, in PostgreSQL's two-`int4` form.
///
/// Two keys, not one `bigint`, on purpose: the log's readers treat every `bigint` advisory lock
/// in the database as a writer in flight and read no further than its key
/// (`lianxi_safe_position()`, store/migrations/postgres), so a relay holding a `bigint` lock
/// would hold every reader back for as long as it is active. The two-key form is not counted
/// there. Its first key is not the stream locks' (1819833204, "lian"), so the relay's lock never
/// collides with a writer's lock on a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockKey {
    pub class: i32,
    pub object: i32,
}

/// The lock every lianxi relay of a database competes for: class `0x6c78726c` ("lxrl"),
/// object 1.
pub const RELAY_LOCK_KEY: LockKey = LockKey {
    class: 0x6c78_726c,
    object: 1,
};

/// How a relay connects, competes and publishes.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The NATS server, `nats://host:port`.
    pub nats_url: String,
    /// The log's PostgreSQL database (`postgres://…`), where the leader lock is taken.
    pub database_url: String,
    /// The stream's limits; the active relay creates the stream or updates it to these.
    pub stream: StreamSettings,
    /// The leader lock; relays compete only with relays using the same key.
    pub lock_key: LockKey,
    /// How often a standby tries the lock (500 ms by default).
    pub retry_interval: Duration,
    /// Events read from the log at once (1,000 by default).
    pub batch_size: usize,
    /// Publishes awaiting their ack at once (256 by default: 50–90k messages/s on this kind of
    /// machine, against 5–8k awaiting each ack).
    pub max_in_flight: usize,
    /// How long a publish ack, a JetStream request or the lock connection's liveness check may
    /// take (5 s by default).
    pub nats_timeout: Duration,
    /// The longest pause between retries after a failure; pauses start at 100 ms and double.
    pub max_backoff: Duration,
    /// How long an idle relay waits without a wake-up before it looks at the log again and
    /// checks its lock (1 s by default).
    pub idle_check: Duration,
    /// How often a busy relay checks that its lock connection still answers (100 ms by
    /// default): a round trip before every read cost the database ~600 a second at 1,000
    /// commands/s.
    pub lock_check: Duration,
}

impl RelayConfig {
    /// The defaults for a NATS server and a database.
    pub fn new(nats_url: impl Into<String>, database_url: impl Into<String>) -> Self {
        RelayConfig {
            nats_url: nats_url.into(),
            database_url: database_url.into(),
            stream: StreamSettings::default(),
            lock_key: RELAY_LOCK_KEY,
            retry_interval: Duration::from_millis(500),
            batch_size: 1_000,
            max_in_flight: 256,
            nats_timeout: Duration::from_secs(5),
            max_backoff: Duration::from_secs(2),
            idle_check: Duration::from_secs(1),
            lock_check: Duration::from_millis(100),
        }
    }
}

/// What a relay is doing, as its [`Relay::status`] receiver shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStatus {
    /// Whether it holds the leader lock (and so is the one publishing).
    pub active: bool,
    /// The last log position JetStream acknowledged while this relay was active.
    pub position: Position,
}

/// A relay, ready to [`run`](Relay::run) or [`spawn`](Relay::spawn).
pub struct Relay {
    store: Arc<dyn EventStore>,
    config: RelayConfig,
    status: watch::Sender<RelayStatus>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("nats_url", &self.config.nats_url)
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// A relay of `store` (the PostgreSQL log: its `read_all_raw` never skips an event that
    /// commits late, and its `subscribe` wakes on appends from any server).
    pub fn new(store: Arc<dyn EventStore>, config: RelayConfig) -> Relay {
        Relay {
            store,
            config,
            status: watch::Sender::new(RelayStatus::default()),
        }
    }

    /// Follows the relay's state: active or standby, and its published position.
    pub fn status(&self) -> watch::Receiver<RelayStatus> {
        self.status.subscribe()
    }

    /// Competes for the lock and, while it holds it, publishes, until `shutdown` completes.
    /// Failures of NATS, PostgreSQL or the log are logged and retried, never returned; `Err` is
    /// an unusable configuration.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), BusError> {
        let lock_options = self.check_config()?;
        telemetry::register_relay();
        let client = crate::connect(&self.config.nats_url).await?;
        let js = jetstream::ContextBuilder::new()
            .timeout(self.config.nats_timeout)
            .build(client);
        let result = tokio::select! {
            () = shutdown => Ok(()),
            () = self.compete(&lock_options, &js) => Ok(()),
        };
        // Whatever connection held the lock was dropped with `compete`, releasing it.
        self.set_active(false);
        result
    }

    /// Runs the relay on a task of its own.
    pub fn spawn(self) -> RelayHandle {
        let status = self.status();
        let (stop, stopped) = oneshot::channel::<()>();
        let span = tracing::info_span!(parent: None, "relay");
        let task = tokio::spawn(
            self.run(async {
                // A dropped sender stops the relay as well as a sent one.
                let _ = stopped.await;
            })
            .instrument(span),
        );
        RelayHandle {
            task: Some(task),
            status,
            stop: Some(stop),
        }
    }

    fn check_config(&self) -> Result<PgConnectOptions, BusError> {
        if self.config.batch_size == 0 || self.config.max_in_flight == 0 {
            return Err(BusError::Config(
                "batch_size and max_in_flight must be at least 1".to_owned(),
            ));
        }
        let options: PgConnectOptions = self
            .config
            .database_url
            .parse()
            .map_err(|error| BusError::Config(format!("database url: {error}")))?;
        // So an operator looking at pg_stat_activity or pg_locks sees whose lock it is.
        Ok(options.application_name("lianxi-relay"))
    }

    /// Stands by until the lock is free, publishes while holding it, and starts over when it
    /// is lost. Never returns.
    async fn compete(&self, lock_options: &PgConnectOptions, js: &jetstream::Context) {
        loop {
            let lock = self.acquire(lock_options).await;
            tracing::info!("relay active: holds the leader lock");
            self.set_active(true);
            self.lead(lock, js).await;
            self.set_active(false);
            tracing::warn!("relay lost its leader lock; standing by");
        }
    }

    /// A connection holding the leader lock, once this relay gets it.
    async fn acquire(&self, options: &PgConnectOptions) -> PgConnection {
        let key = self.config.lock_key;
        let mut connection: Option<PgConnection> = None;
        loop {
            if connection.is_none() {
                match PgConnection::connect_with(options).await {
                    Ok(made) => connection = Some(made),
                    Err(error) => tracing::warn!(%error, "cannot reach the lock database"),
                }
            }
            if let Some(conn) = connection.as_mut() {
                let taken = sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1, $2)")
                    .bind(key.class)
                    .bind(key.object)
                    .fetch_one(&mut *conn)
                    .await;
                match taken {
                    Ok(true) => {
                        if let Some(held) = connection.take() {
                            return held;
                        }
                    }
                    Ok(false) => {}
                    Err(error) => {
                        tracing::warn!(%error, "cannot try the leader lock; reconnecting");
                        connection = None;
                    }
                }
            }
            tokio::time::sleep(self.config.retry_interval).await;
        }
    }

    /// Publishes while `lock` is alive; returns once it is not.
    async fn lead(&self, mut lock: PgConnection, js: &jetstream::Context) {
        let mut heads = self.store.subscribe();
        let mut backoff = Backoff::new(self.config.max_backoff);
        let mut stream: Option<Stream> = None;
        // Where the stream ends, once known: (last event's position, last stream sequence).
        let mut place: Option<Place> = None;
        let mut lock_checked: Option<Instant> = None;
        loop {
            if lock_checked.is_none_or(|at| at.elapsed() >= self.config.lock_check) {
                if !self.lock_alive(&mut lock).await {
                    return;
                }
                lock_checked = Some(Instant::now());
            }
            let at = match self.find_place(js, &mut stream, &mut place).await {
                Ok(at) => at,
                Err(error) => {
                    telemetry::relay_publish_error();
                    tracing::warn!(%error, code = error.code(), "cannot find the stream's end; retrying");
                    // Next time, create the stream again (it may have been deleted) or update it.
                    stream = None;
                    backoff.wait().await;
                    continue;
                }
            };
            heads.mark_unchanged();
            let events = match self
                .store
                .read_all_raw(at.position, self.config.batch_size)
                .await
            {
                Ok(events) => events,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the log; retrying");
                    backoff.wait().await;
                    continue;
                }
            };
            let Some(last_read) = events.last().map(|event| event.position) else {
                self.report(at.position, *heads.borrow());
                self.idle(&mut heads).await;
                continue;
            };
            let full = events.len() == self.config.batch_size;
            let head = last_read.max(*heads.borrow());
            let (reached, outcome) = self.publish(js, at, &events).await;
            // What was acknowledged stands, whatever happened after it.
            self.report(reached.place.position, head);
            match outcome {
                Ok(()) => {
                    backoff.reset();
                    place = reached.end_known.then_some(reached.place);
                    // The read took everything committed before it (less than a page), and no
                    // commit was announced since: reading again would find nothing. (It did,
                    // once per commit: a third of the log reads in the distributed benchmark.)
                    if !full && !heads.has_changed().unwrap_or(true) {
                        self.idle(&mut heads).await;
                    }
                }
                Err(error) => {
                    telemetry::relay_publish_error();
                    tracing::warn!(%error, code = error.code(), position = reached.place.position,
                        "publishing failed; finding the stream's end again");
                    place = None;
                    backoff.wait().await;
                }
            }
        }
    }

    /// Waits for the next announced commit, or [`RelayConfig::idle_check`] at most.
    async fn idle(&self, heads: &mut watch::Receiver<Position>) {
        tokio::select! {
            woken = heads.changed() => {
                // A store that stopped announcing appends is still read, just less often.
                if woken.is_err() {
                    tokio::time::sleep(self.config.idle_check).await;
                }
            }
            () = tokio::time::sleep(self.config.idle_check) => {}
        }
    }

    /// Whether the lock connection still answers (and so still holds the lock).
    async fn lock_alive(&self, lock: &mut PgConnection) -> bool {
        match tokio::time::timeout(self.config.nats_timeout, lock.ping()).await {
            Ok(Ok(())) => true,
            Ok(Err(error)) => {
                tracing::warn!(%error, "the lock connection failed");
                false
            }
            Err(_) => {
                tracing::warn!("the lock connection did not answer in time");
                false
            }
        }
    }

    /// The end of the stream: known already, or asked from JetStream (creating or updating the
    /// stream first when this relay has no handle on it yet).
    async fn find_place(
        &self,
        js: &jetstream::Context,
        stream: &mut Option<Stream>,
        place: &mut Option<Place>,
    ) -> Result<Place, BusError> {
        if let Some(known) = place {
            return Ok(*known);
        }
        let handle = match stream {
            Some(handle) => handle,
            None => {
                let config = self.config.stream.stream_config();
                js.create_or_update_stream(config)
                    .await
                    .map_err(|e| BusError::nats("creating the stream", e))?;
                let handle = js
                    .get_stream(message::STREAM_NAME)
                    .await
                    .map_err(|e| BusError::nats("opening the stream", e))?;
                stream.insert(handle)
            }
        };
        let found = stream_end(handle).await?;
        tracing::info!(
            position = found.position,
            sequence = found.sequence,
            "resuming after the stream's last event"
        );
        *place = Some(found);
        Ok(found)
    }

    /// Publishes `events` (in position order, all after `from`) with up to `max_in_flight` acks
    /// outstanding, and says how far it got: all the way, or up to the first failure.
    async fn publish(
        &self,
        js: &jetstream::Context,
        from: Place,
        events: &[RawEvent],
    ) -> (Reached, Result<(), BusError>) {
        let mut reached = Reached {
            place: from,
            end_known: true,
            acknowledged: 0,
        };
        let mut pending = VecDeque::with_capacity(self.config.max_in_flight);
        // The sequence the next message must follow. 0 (an empty stream) asks for nothing:
        // JetStream treats an expected last sequence of 0 as absent.
        let mut follows = from.sequence;
        let outcome = async {
            for event in events {
                if pending.len() >= self.config.max_in_flight {
                    settle(&mut pending, &mut reached).await?;
                }
                let (subject, mut message) = message::outbound(event)?;
                if follows > 0 {
                    message = message.expected_last_sequence(follows);
                }
                let ack = js
                    .send_publish(subject, message)
                    .await
                    .map_err(|e| BusError::nats("publishing", e))?;
                pending.push_back((event.position, ack));
                follows += 1;
            }
            while !pending.is_empty() {
                settle(&mut pending, &mut reached).await?;
            }
            Ok(())
        }
        .await;
        telemetry::relay_published(reached.acknowledged);
        (reached, outcome)
    }

    fn set_active(&self, active: bool) {
        telemetry::relay_active(active);
        self.status.send_modify(|status| status.active = active);
    }

    /// Publishes the relay's position to its status and metrics.
    fn report(&self, position: Position, head: Position) {
        telemetry::relay_position(position, head);
        self.status.send_if_modified(|status| {
            let changed = status.position != position;
            status.position = position;
            changed
        });
    }
}

/// Where the stream ends: the position of its last event and that message's stream sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Place {
    position: Position,
    sequence: u64,
}

/// Awaits the oldest outstanding ack and moves `reached` past it. A duplicate (the event is in
/// the stream already, at an earlier sequence) moves the position but leaves the stream's end
/// unknown: the messages sent to follow it are refused unless the stream agrees, and the relay
/// asks the stream where it ends before the next batch.
async fn settle(
    pending: &mut VecDeque<(Position, PublishAckFuture)>,
    reached: &mut Reached,
) -> Result<(), BusError> {
    let Some((position, ack)) = pending.pop_front() else {
        return Ok(());
    };
    let ack = ack
        .await
        .map_err(|e| BusError::nats(&format!("the ack of position {position}"), e))?;
    reached.place.position = position;
    if ack.duplicate {
        reached.end_known = false;
    } else {
        reached.place.sequence = ack.sequence;
    }
    reached.acknowledged += 1;
    Ok(())
}

/// How far a [`Relay::publish`] got.
#[derive(Debug, Clone, Copy)]
struct Reached {
    /// The last acknowledged event and its stream sequence.
    place: Place,
    /// False once a duplicate was acknowledged: `place.sequence` may not be the stream's end.
    end_known: bool,
    /// Events acknowledged by this call.
    acknowledged: u64,
}

/// Reads where `stream` ends: its last sequence and the position its last message names.
async fn stream_end(stream: &Stream) -> Result<Place, BusError> {
    let info = stream
        .get_info()
        .await
        .map_err(|e| BusError::nats("reading the stream's state", e))?;
    let state = info.state;
    if state.last_sequence == 0 {
        return Ok(Place {
            position: 0,
            sequence: 0,
        });
    }
    if state.messages == 0 {
        tracing::warn!(
            last_sequence = state.last_sequence,
            "the stream holds no message (all aged out or purged): it no longer says where the \
             relay stopped, so the log is republished from its start"
        );
        return Ok(Place {
            position: 0,
            sequence: state.last_sequence,
        });
    }
    let last = stream
        .get_raw_message(state.last_sequence)
        .await
        .map_err(|e| BusError::nats("reading the stream's last message", e))?;
    let position = message::position_of(&last.headers).map_err(|error| match error {
        BusError::InvalidMessage { detail, .. } => BusError::InvalidMessage {
            sequence: Some(last.sequence),
            detail,
        },
        other => other,
    })?;
    Ok(Place {
        position,
        sequence: state.last_sequence,
    })
}

/// A pause that doubles after each failure, from 100 ms up to a limit.
struct Backoff {
    next: Duration,
    limit: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);

    fn new(limit: Duration) -> Self {
        Backoff {
            next: Self::FIRST,
            limit,
        }
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.next.min(self.limit)).await;
        self.next = (self.next * 2).min(self.limit);
    }

    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// A relay running on a task of its own ([`Relay::spawn`]). Dropping the handle kills the
/// relay.
#[derive(Debug)]
pub struct RelayHandle {
    task: Option<JoinHandle<Result<(), BusError>>>,
    status: watch::Receiver<RelayStatus>,
    stop: Option<oneshot::Sender<()>>,
}

impl RelayHandle {
    /// Follows the relay's state.
    pub fn status(&self) -> watch::Receiver<RelayStatus> {
        self.status.clone()
    }

    /// Whether the relay holds the leader lock right now.
    pub fn is_active(&self) -> bool {
        self.status.borrow().active
    }

    /// Stops the relay and waits for it; its lock is released.
    pub async fn shutdown(mut self) -> Result<(), BusError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        match task.await {
            Ok(result) => result,
            // A relay that panicked: the panic is the caller's to see, not an error to log.
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(_) => Ok(()),
        }
    }

    /// Kills the relay the way a crash would, mid-batch and without a word to anyone, and waits
    /// until its task is gone: its lock connection is closed (PostgreSQL then releases the
    /// lock) and its acks in flight are abandoned.
    pub async fn kill(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

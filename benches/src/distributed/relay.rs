//! Relay throughput: how fast `lianxi serve --role relay` publishes a whole PostgreSQL log to an empty JetStream stream, against what JetStream alone and a bare PostgreSQL scan allow in the same run.
//!
//! The log is built once, with `PostgresStore` appends of many events each from several tasks
//! (fast, not measured): N store-benchmark events (`payload::Payload`, one `ProjectProposed`-like
//! event of ~330 bytes of JSON data and ~150 of metadata), `events_per_append` to a fresh stream
//! per append. Then each run, on a fresh nats-server:
//!
//! 1. **scan** (baseline): `read_all_raw` over the whole log in the relay's batches, through a
//!    fresh `PostgresStore`, in this process: what PostgreSQL and the store's decoding allow;
//! 2. **JetStream from memory** (baseline): the very messages the relay sends (subject, payload,
//!    `Nats-Msg-Id`, `Lianxi-Position`, `Nats-Expected-Last-Sequence`), built before the clock
//!    starts, published to the same stream configuration with the relay's number of acks in
//!    flight, as one continuous pipeline and again drained every relay batch (the relay waits for
//!    every ack of a batch before it reads the next one); the stream is deleted afterwards;
//! 3. **relay**: `lianxi serve --role relay` spawned on the log, the clock started at the spawn;
//!    the harness polls the stream's info every 10 ms until its last sequence is N, and checks
//!    that the last message names the log's head. events/s = N ÷ that time. The steady rate
//!    (from the first poll that saw the stream, after the process listened, to the end) is given
//!    too: the first figure includes the process's start, connections and the stream's creation.
//!
//! The relay runs as a process, not as `bus::Relay` in this one, because that is what a
//! deployment runs (the store opened as `lianxi serve` opens it, its metrics recorder, its own
//! runtime), and so that its CPU is its own in `/proc`, apart from the harness's polls.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage};
use bus::message::{self, StreamSettings, STREAM_NAME};
use store::postgres::PostgresStore;
use store::{AppendOutcome, AppendRequest, EventStore, ExpectedVersion, NewEvent, RawEvent};
use tokio::task::JoinSet;

use super::cluster::{self, Postgres, Probe, Process, Split};
use super::Env;
use crate::payload::{IdOrder, Ids, Payload, EVENT_TYPE};
use crate::report::thousands;

/// How often the stream's info is polled during the relay's run.
const POLL: Duration = Duration::from_millis(10);
/// The longest a relay may take to publish the log.
const RELAY_TIMEOUT: Duration = Duration::from_secs(600);

/// Options of the relay part.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub events: usize,
    pub appenders: usize,
    pub events_per_append: usize,
}

/// One timed pass over the whole log.
#[derive(Debug, Clone, Default)]
pub struct Timed {
    pub events: u64,
    pub seconds: f64,
    pub cpu: Split,
}

impl Timed {
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.seconds.max(1e-9)
    }
}

/// One run of the relay part.
#[derive(Debug, Clone)]
pub struct RelayRun {
    pub scan: Timed,
    pub nats: Timed,
    pub nats_batched: Timed,
    /// From the spawn to the last event in the stream.
    pub relay: Timed,
    /// From the first poll that saw the stream to the end: (events, seconds).
    pub relay_steady: Option<(u64, f64)>,
    /// Seconds from the spawn to the process's "listening" line.
    pub relay_startup: f64,
}

/// What the log is, for the report.
#[derive(Debug, Clone)]
pub struct BuiltLog {
    pub head: i64,
    pub build_seconds: f64,
    /// The mean size of one message's payload (the event as JSON), bytes; each message also
    /// carries its subject and three headers (~110 bytes).
    pub message_bytes: f64,
    /// The relay's batch and acks in flight (`RelayConfig`'s defaults, which `--role relay` uses).
    pub batch_size: usize,
    pub in_flight: usize,
}

/// The relay part: builds the log in a fresh database, then `env.runs` runs.
pub async fn run(env: &Env, pg: &Postgres, options: Options) -> Result<(BuiltLog, Vec<RelayRun>)> {
    let url = pg.fresh().await?;
    let result = with_log(env, pg, &url, options).await;
    let dropped = pg.drop_database(&url).await;
    let value = result?;
    dropped?;
    Ok(value)
}

async fn with_log(
    env: &Env,
    pg: &Postgres,
    url: &str,
    options: Options,
) -> Result<(BuiltLog, Vec<RelayRun>)> {
    let defaults = bus::RelayConfig::new("", "");
    let started = Instant::now();
    let head = build_log(url, options).await?;
    let build_seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "relay: built a log of {} events in {build_seconds:.1} s ({} appenders, {} events per append)",
        thousands(head as f64),
        options.appenders,
        options.events_per_append
    );
    // The messages the relay will send, once: the JetStream baseline publishes clones of them.
    let events = read_log(url, defaults.batch_size).await?;
    ensure!(
        events.len() as i64 == head,
        "the log reads {} events but its head is {head}",
        events.len()
    );
    let messages = events
        .iter()
        .map(|event| message::outbound(event).map_err(anyhow::Error::from))
        .collect::<Result<Vec<_>>>()?;
    let message_bytes = events
        .iter()
        .map(|event| message::encode(event).map(|payload| payload.len() as f64))
        .sum::<Result<f64, _>>()?
        / events.len().max(1) as f64;
    drop(events);
    let log = BuiltLog {
        head,
        build_seconds,
        message_bytes,
        batch_size: defaults.batch_size,
        in_flight: defaults.max_in_flight,
    };
    let mut runs = Vec::with_capacity(env.runs);
    for index in 1..=env.runs {
        eprintln!("relay run {index}/{}", env.runs);
        runs.push(one(env, pg, url, &log, &messages).await?);
    }
    Ok((log, runs))
}

/// `appenders` tasks appending `events_per_append` events to a fresh stream per append until
/// the log holds `events`; the log's head.
async fn build_log(url: &str, options: Options) -> Result<i64> {
    ensure!(
        options.appenders > 0 && options.events_per_append > 0,
        "--appenders and --events-per-append must be positive"
    );
    let store = Arc::new(
        PostgresStore::connect(url)
            .await
            .context("opening the store")?,
    );
    let remaining = Arc::new(AtomicUsize::new(options.events));
    let mut tasks = JoinSet::new();
    for _ in 0..options.appenders {
        let store = store.clone();
        let remaining = remaining.clone();
        let per_append = options.events_per_append;
        tasks.spawn(async move {
            let mut ids = Ids::new(IdOrder::V7);
            loop {
                let taken = remaining
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                        (left > 0).then(|| left - left.min(per_append))
                    })
                    .map_or(0, |left| left.min(per_append));
                if taken == 0 {
                    return anyhow::Ok(());
                }
                let project_id = ids.next_id();
                let command_id = ids.next_id();
                let events = (0..taken)
                    .map(|_| {
                        let payload = Payload::new(project_id, command_id);
                        NewEvent {
                            id: ids.next_id(),
                            event_type: EVENT_TYPE.to_owned(),
                            schema_version: 1,
                            data: payload.data,
                            metadata: payload.metadata,
                        }
                    })
                    .collect();
                let request = AppendRequest {
                    stream: format!("project-{project_id}"),
                    expected: ExpectedVersion::NoStream,
                    command_id,
                    idempotency: None,
                    events,
                    unchanged: Vec::new(),
                };
                match store.append(request).await {
                    Ok(AppendOutcome::Appended(_)) => {}
                    Ok(AppendOutcome::Duplicate(_)) => bail!("an append was a duplicate"),
                    Err(error) => bail!("building the log: {error}"),
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.context("an appender panicked")??;
    }
    let head = store.head().await.context("the log's head")?;
    ensure!(
        head == options.events as i64,
        "the log's head is {head}, not {}",
        options.events
    );
    Ok(head)
}

/// The whole log, read in batches of `batch` (not timed).
async fn read_log(url: &str, batch: usize) -> Result<Vec<RawEvent>> {
    let store = PostgresStore::connect(url)
        .await
        .context("opening the store")?;
    let mut all = Vec::new();
    loop {
        let after = all.last().map_or(0, |e: &RawEvent| e.position);
        let events = store.read_all_raw(after, batch).await?;
        if events.is_empty() {
            return Ok(all);
        }
        all.extend(events);
    }
}

/// One run: the scan, JetStream from memory (twice), then the relay; each on a quiet machine.
async fn one(
    env: &Env,
    pg: &Postgres,
    url: &str,
    log: &BuiltLog,
    messages: &[(String, PublishMessage)],
) -> Result<RelayRun> {
    env.wait_for_quiet().await;
    let scan = scan(pg, url, log.batch_size).await?;
    eprintln!(
        "  scan: {} events/s ({:.2} s)",
        thousands(scan.rate()),
        scan.seconds
    );

    let nats = cluster::start_nats().await?;
    let measured = async {
        env.wait_for_quiet().await;
        let pipeline = publish_from_memory(&nats, messages, log.in_flight, None).await?;
        eprintln!(
            "  JetStream from memory, {} acks in flight: {} messages/s ({:.2} s)",
            log.in_flight,
            thousands(pipeline.rate()),
            pipeline.seconds
        );
        env.wait_for_quiet().await;
        let batched =
            publish_from_memory(&nats, messages, log.in_flight, Some(log.batch_size)).await?;
        eprintln!(
            "  JetStream from memory, drained every {}: {} messages/s ({:.2} s)",
            log.batch_size,
            thousands(batched.rate()),
            batched.seconds
        );
        env.wait_for_quiet().await;
        let (relay, steady, startup) = relay(env, pg, url, &nats, log).await?;
        eprintln!(
            "  relay: {} events/s from the spawn ({:.2} s; start-up {:.2} s){}",
            thousands(relay.rate()),
            relay.seconds,
            startup,
            steady.map_or(String::new(), |(events, seconds)| format!(
                ", {} events/s steady",
                thousands(events as f64 / seconds.max(1e-9))
            ))
        );
        anyhow::Ok(RelayRun {
            scan,
            nats: pipeline,
            nats_batched: batched,
            relay,
            relay_steady: steady,
            relay_startup: startup,
        })
    }
    .await;
    let stopped = cluster::stop_nats(env, nats).await;
    let run = measured?;
    stopped?;
    Ok(run)
}

/// `read_all_raw` over the whole log through a fresh store, in batches of `batch`.
async fn scan(pg: &Postgres, url: &str, batch: usize) -> Result<Timed> {
    let store = PostgresStore::connect(url)
        .await
        .context("opening the store")?;
    // One small read first, so the pool's connection is open before the clock starts.
    store.read_all_raw(0, 1).await?;
    let probe = Probe::harness("harness").tree("PostgreSQL", pg.postmaster);
    let before = probe.snapshot();
    let started = Instant::now();
    let mut after = 0;
    let mut events = 0_u64;
    loop {
        let batch = store.read_all_raw(after, batch).await?;
        let Some(last) = batch.last() else {
            break;
        };
        after = last.position;
        events += batch.len() as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = probe.split(&before, &probe.snapshot());
    Ok(Timed {
        events,
        seconds,
        cpu,
    })
}

/// A JetStream context as the relay builds one (5 s request timeout).
async fn jetstream(url: &str) -> Result<jetstream::Context> {
    let client = async_nats::connect(url)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    Ok(jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .build(client))
}

/// Publishes clones of `messages` (built before the clock starts) to a fresh `LIANXI_EVENTS`
/// stream with up to `in_flight` acks outstanding, each following the previous sequence as the
/// relay's do; with `drain_every`, waits for every ack after each such batch, as the relay does.
/// Deletes the stream afterwards.
async fn publish_from_memory(
    nats: &bus::throwaway_nats::ThrowawayNats,
    messages: &[(String, PublishMessage)],
    in_flight: usize,
    drain_every: Option<usize>,
) -> Result<Timed> {
    let js = jetstream(&nats.url()).await?;
    js.create_stream(StreamSettings::default().stream_config())
        .await
        .context("creating the stream")?;
    let prepared: Vec<(String, PublishMessage)> = messages.to_vec();
    let probe = Probe::harness("harness").process("nats-server", nats.pid().unwrap_or(0));
    let before = probe.snapshot();
    let started = Instant::now();
    let mut pending: std::collections::VecDeque<PublishAckFuture> =
        std::collections::VecDeque::with_capacity(in_flight);
    let mut acknowledged = 0_u64;
    let await_one = |ack: PublishAckFuture| async move {
        let ack = ack.await.context("a publish ack")?;
        ensure!(!ack.duplicate, "a message was a duplicate");
        anyhow::Ok(())
    };
    for (index, (subject, message)) in prepared.into_iter().enumerate() {
        if pending.len() >= in_flight {
            if let Some(ack) = pending.pop_front() {
                await_one(ack).await?;
                acknowledged += 1;
            }
        }
        let message = if index > 0 {
            message.expected_last_sequence(index as u64)
        } else {
            message
        };
        pending.push_back(
            js.send_publish(subject, message)
                .await
                .context("publishing")?,
        );
        let batch_done = drain_every.is_some_and(|every| (index + 1) % every == 0);
        if batch_done {
            while let Some(ack) = pending.pop_front() {
                await_one(ack).await?;
                acknowledged += 1;
            }
        }
    }
    while let Some(ack) = pending.pop_front() {
        await_one(ack).await?;
        acknowledged += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = probe.split(&before, &probe.snapshot());
    let mut stream = js.get_stream(STREAM_NAME).await.context("the stream")?;
    let held = stream
        .info()
        .await
        .context("the stream's info")?
        .state
        .messages;
    ensure!(
        held == messages.len() as u64,
        "the stream holds {held} messages, not {}",
        messages.len()
    );
    js.delete_stream(STREAM_NAME)
        .await
        .context("deleting the stream")?;
    Ok(Timed {
        events: acknowledged,
        seconds,
        cpu,
    })
}

/// Spawns `lianxi serve --role relay` on the log and times it until the stream holds the whole
/// log: (from the spawn, steady (events, seconds) after the first poll that saw the stream,
/// seconds to "listening").
async fn relay(
    env: &Env,
    pg: &Postgres,
    url: &str,
    nats: &bus::throwaway_nats::ThrowawayNats,
    log: &BuiltLog,
) -> Result<(Timed, Option<(u64, f64)>, f64)> {
    let js = jetstream(&nats.url()).await?;
    let base = Probe::harness("harness (polls)")
        .tree("PostgreSQL", pg.postmaster)
        .process("nats-server", nats.pid().unwrap_or(0));
    let before = base.snapshot();
    let process =
        Process::start(env, "relay", "relay", url, Some(nats.url().as_str()), &[]).await?;
    let spawned_at = process.server.spawned_at;
    let startup = process
        .server
        .listening_at
        .duration_since(spawned_at)
        .as_secs_f64();
    let probe = base.process("relay process", process.server.pid);
    let mut processes = vec![process];
    let measured = async {
        let target = u64::try_from(log.head).context("a negative head")?;
        let mut first: Option<(u64, Instant)> = None;
        let deadline = Instant::now() + RELAY_TIMEOUT;
        let mut stream = None;
        let (done_at, last_sequence) = loop {
            if stream.is_none() {
                stream = js.get_stream(STREAM_NAME).await.ok();
            }
            if let Some(handle) = stream.as_ref() {
                let info = handle
                    .get_info()
                    .await
                    .context("the stream's info")?;
                let now = Instant::now();
                let sequence = info.state.last_sequence;
                first.get_or_insert((sequence, now));
                if sequence >= target {
                    break (now, sequence);
                }
            }
            cluster::ensure_running(&mut processes)?;
            ensure!(
                Instant::now() < deadline,
                "the relay did not publish {target} events within {} s",
                RELAY_TIMEOUT.as_secs()
            );
            tokio::time::sleep(POLL).await;
        };
        let cpu = probe.split(&before, &probe.snapshot());
        let seconds = done_at.duration_since(spawned_at).as_secs_f64();
        let handle = stream.as_ref().context("the stream")?;
        let last = handle
            .get_raw_message(last_sequence)
            .await
            .context("the stream's last message")?;
        let position = message::position_of(&last.headers)?;
        ensure!(
            last_sequence == target && position == log.head,
            "the stream's last message is sequence {last_sequence} at position {position}; the log's head is {}",
            log.head
        );
        let steady = first
            .filter(|(sequence, at)| *sequence < target && *at < done_at)
            .map(|(sequence, at)| (target - sequence, done_at.duration_since(at).as_secs_f64()));
        anyhow::Ok((
            Timed {
                events: target,
                seconds,
                cpu,
            },
            steady,
            startup,
        ))
    }
    .await;
    cluster::stop_all(env, processes, measured).await
}

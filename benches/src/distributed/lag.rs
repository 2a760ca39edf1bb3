//! Lag through NATS at a sustained command rate: a cluster of `lianxi serve --role gateway | relay | projector` processes on one database, driven by the lag benchmark's open-loop schedule, the lag read from the projector processes' own histograms.
//!
//! Each measurement gets a fresh database on the benchmark's PostgreSQL and a fresh
//! nats-server, then starts, one after the other, the relay, the projector processes and the
//! gateways. The generated worlds of `readside/lag.rs` register through the gateways (world k
//! through gateway k mod G), the harness waits until every projection kept by a projector
//! process is live at the head (as the first gateway reports them, from their checkpoints), and
//! the schedule runs: warm-up, then the window. Each projector process's `/metrics` is scraped
//! when the window opens and again once its projections have caught up after it closes; the
//! lag is the difference of `lianxi_projection_lag_seconds{projection}`. The gateways' group
//! commit time (`lianxi_store_commit_seconds`) comes from the same scrapes of the gateways.
//!
//! What the lag includes: `recorded_at` is set by the gateway's command handler before the
//! group commit, so each observation is commit + the relay noticing the commit (the
//! PostgreSQL store's `LISTEN`) and reading it + publishing it and JetStream's ack + the
//! projector process's pull + its apply and read-model commit. It starts before the client's
//! acknowledgement (which follows the commit), so it overstates the lag from acknowledgement by
//! the commit's tail and the reply.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::cluster::{self, Postgres, Probe, Process, Split};
use super::Env;
use crate::http_bench::Api;
use crate::prom::{self, Buckets};
use crate::readside::lag::{self as schedule, Options, Schedule, Sent};

/// Every projection a projector process keeps when none is named.
pub const ALL: [&str; 5] = ["board", "district-stats", "items", "trace", "unit-profile"];
/// How long to wait for the projections to catch up before and after a window.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The processes of one measurement.
#[derive(Debug, Clone)]
pub struct Layout {
    pub gateways: usize,
    /// Each projector process: its label and the projections it keeps (all when empty).
    pub projectors: Vec<(String, Vec<&'static str>)>,
    /// The projector process (its label) stopped with SIGSTOP from the schedule's start until
    /// the window has closed: there, connected and subscribed, doing no work. Its lag is not
    /// read.
    pub frozen: Option<String>,
}

impl Layout {
    /// Every projection some projector process keeps.
    fn projections(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self
            .projectors
            .iter()
            .flat_map(|(_, names)| {
                if names.is_empty() {
                    ALL.to_vec()
                } else {
                    names.clone()
                }
            })
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}

/// One measured window.
#[derive(Debug, Clone)]
pub struct LagWindow {
    pub window: Duration,
    pub sent: Sent,
    /// Per projector process (label): the lag histogram's difference per projection.
    pub lag: Vec<(String, BTreeMap<String, Buckets>)>,
    /// Per projector process (label): its batches' time per phase
    /// (`lianxi_projection_batch_seconds`), differences: where a slow batch spent it.
    pub phases: Vec<(String, BTreeMap<String, Buckets>)>,
    /// The gateways' group-commit time, all gateways together.
    pub commit: Buckets,
    /// Per projector process: events its source took from the feed and from the log, between
    /// the scrapes.
    pub sources: Vec<(String, f64, f64)>,
    /// Events the relay had JetStream acknowledge between the scrapes.
    pub relay_published: f64,
    pub cpu: Split,
    pub settle_seconds: f64,
    /// For a sample of the events recorded in the window: µs from `recorded_at` to the moment
    /// JetStream stored the event's message (commit + relay + publish), sorted.
    pub to_stream_us: Vec<u32>,
    /// For the same sample: µs between consecutive messages being stored, sorted.
    pub gaps_us: Vec<u32>,
    /// Per projector process: its consumer's state, sampled every 50 ms in the window (from
    /// nats-server, so the processes are not disturbed): (events the stream holds that were not
    /// delivered to it yet, events delivered and not acknowledged yet).
    pub consumers: Vec<(String, Vec<(u64, u64)>)>,
}

impl LagWindow {
    pub fn achieved(&self) -> f64 {
        self.sent.ok as f64 / self.window.as_secs_f64().max(1e-9)
    }

    /// The lag of projector process `label`, every projection together.
    pub fn lag_of(&self, label: &str) -> Buckets {
        self.lag
            .iter()
            .find(|(name, _)| name == label)
            .map(|(_, lag)| prom::total(lag))
            .unwrap_or_default()
    }

    /// Projector process `label`'s batch phases, by phase (empty when it exports none).
    pub fn phases_of(&self, label: &str) -> BTreeMap<String, Buckets> {
        self.phases
            .iter()
            .find(|(name, _)| name == label)
            .map(|(_, phases)| phases.clone())
            .unwrap_or_default()
    }

    /// The lag per projection, every projector process together.
    pub fn per_projection(&self) -> BTreeMap<String, Buckets> {
        let mut out = BTreeMap::new();
        for (_, lag) in &self.lag {
            for (name, buckets) in lag {
                out.insert(name.clone(), buckets.clone());
            }
        }
        out
    }
}

/// Starts a cluster as `layout` says on a fresh database and nats-server, measures one window,
/// and stops everything (by pid), whatever happened.
pub async fn measure(
    env: &Env,
    pg: &Postgres,
    layout: &Layout,
    options: Options,
) -> Result<LagWindow> {
    let url = pg.fresh().await?;
    let measured = async {
        let nats = cluster::start_nats().await?;
        let mut processes = Vec::new();
        let started = start(env, &url, &nats.url(), layout, &mut processes).await;
        let measured = match started {
            Ok(()) => window(env, pg, &url, &nats, &mut processes, layout, options).await,
            Err(error) => Err(error),
        };
        let measured = cluster::stop_all(env, processes, measured).await;
        let stopped = cluster::stop_nats(env, nats).await;
        let value = measured?;
        stopped?;
        anyhow::Ok(value)
    }
    .await;
    let dropped = pg.drop_database(&url).await;
    let value = measured?;
    dropped?;
    Ok(value)
}

/// The relay, the projector processes, then the gateways, each once the previous one listens
/// (the first one creates the database's tables). Pushes each into `processes` as it starts, so
/// a failure still stops the ones running.
async fn start(
    env: &Env,
    url: &str,
    nats_url: &str,
    layout: &Layout,
    processes: &mut Vec<Process>,
) -> Result<()> {
    processes.push(Process::start(env, "relay", "relay", url, Some(nats_url), &[]).await?);
    for (label, names) in &layout.projectors {
        let mut more = Vec::new();
        for name in names {
            more.extend(["--projection", *name]);
        }
        processes.push(Process::start(env, label, "projector", url, Some(nats_url), &more).await?);
    }
    for g in 1..=layout.gateways {
        let label = format!("gateway {g}");
        processes.push(Process::start(env, &label, "gateway", url, None, &[]).await?);
    }
    Ok(())
}

/// Registers the worlds, settles, runs the schedule and reads the figures.
async fn window(
    env: &Env,
    pg: &Postgres,
    url: &str,
    nats: &bus::throwaway_nats::ThrowawayNats,
    processes: &mut [Process],
    layout: &Layout,
    options: Options,
) -> Result<LagWindow> {
    let is_gateway = |p: &Process| p.label.starts_with("gateway");
    let gateways: Vec<Api> = processes
        .iter()
        .filter(|p| is_gateway(p))
        .map(|p| p.api(&env.token))
        .collect::<Result<_>>()?;
    // The projector processes whose figures are read (a frozen one answers no scrape).
    let projectors: Vec<(String, Api)> = processes
        .iter()
        .filter(|p| layout.projectors.iter().any(|(label, _)| *label == p.label))
        .filter(|p| layout.frozen.as_ref() != Some(&p.label))
        .map(|p| Ok((p.label.clone(), p.api(&env.token)?)))
        .collect::<Result<_>>()?;
    let frozen_pid = match &layout.frozen {
        Some(label) => Some(
            processes
                .iter()
                .find(|p| p.label == *label)
                .with_context(|| format!("no {label} to freeze"))?
                .server
                .pid,
        ),
        None => None,
    };
    let relay = processes
        .iter()
        .find(|p| p.label == "relay")
        .context("no relay")?
        .api(&env.token)?;
    let first = gateways.first().context("no gateway")?.clone();
    let names = layout.projections();

    let worlds = schedule::set_up_worlds(&gateways, options.worlds).await?;
    settle(&first, &names).await?;
    cluster::ensure_running(processes)?;

    let mut probe = Probe::harness("harness")
        .tree("PostgreSQL", pg.postmaster)
        .process("nats-server", nats.pid().unwrap_or(0));
    for process in processes.iter() {
        let label = if is_gateway(process) {
            "gateways"
        } else {
            process.label.as_str()
        };
        probe = probe.process(label, process.server.pid);
    }

    let frozen = frozen_pid.map(Frozen::stop).transpose()?;
    let running = Schedule::start(worlds, options);
    let durables: Vec<(String, String)> = layout
        .projectors
        .iter()
        .map(|(label, names)| (label.clone(), durable(names)))
        .collect();
    let sampler = tokio::spawn(sample_consumers(
        nats.url(),
        durables,
        running.open,
        running.close,
    ));
    tokio::time::sleep_until(running.open).await;
    let before = Scrapes::of(&projectors, &gateways, &relay).await?;
    pg.reset_statements(url).await?;
    let cpu_before = probe.snapshot();
    let opened = chrono::Utc::now();
    tokio::time::sleep_until(running.close).await;
    let cpu = probe.split(&cpu_before, &probe.snapshot());
    let closed = chrono::Utc::now();
    pg.report_statements(url).await?;
    let sent = running.finish().await?;
    let consumers = sampler.await.context("the consumer sampler")??;
    if let Some(frozen) = frozen {
        frozen.thaw()?;
    }
    let settling = Instant::now();
    settle(&first, &names).await?;
    let settle_seconds = settling.elapsed().as_secs_f64();
    let after = Scrapes::of(&projectors, &gateways, &relay).await?;
    cluster::ensure_running(processes)?;
    let StreamTimes {
        to_stream_us,
        gaps_us,
    } = to_stream(&nats.url(), opened, closed).await?;

    let lag: Vec<(String, BTreeMap<String, Buckets>)> = projectors
        .iter()
        .zip(before.projectors.iter().zip(&after.projectors))
        .map(|((label, _), (b, a))| (label.clone(), schedule::lag_since(b, a)))
        .collect();
    let phases = projectors
        .iter()
        .zip(before.projectors.iter().zip(&after.projectors))
        .map(|((label, _), (b, a))| (label.clone(), schedule::phases_since(b, a)))
        .collect();
    if lag.iter().all(|(_, lag)| lag.is_empty()) {
        bail!(
            "no projector process exports lianxi_projection_lag_seconds: this benchmark needs it"
        );
    }
    let mut commits = BTreeMap::new();
    for (g, (b, a)) in before.gateways.iter().zip(&after.gateways).enumerate() {
        commits.insert(g.to_string(), schedule::commit_since(b, a));
    }
    let counter = |b: &str, a: &str, name: &str| prom::sample(a, name) - prom::sample(b, name);
    let sources = projectors
        .iter()
        .zip(before.projectors.iter().zip(&after.projectors))
        .map(|((label, _), (b, a))| {
            (
                label.clone(),
                counter(b, a, "lianxi_bus_source_feed_events_total"),
                counter(b, a, "lianxi_bus_source_log_events_total"),
            )
        })
        .collect();
    Ok(LagWindow {
        window: options.window,
        sent,
        lag,
        phases,
        commit: prom::total(&commits),
        sources,
        relay_published: counter(&before.relay, &after.relay, "lianxi_relay_published_total"),
        cpu,
        settle_seconds,
        to_stream_us,
        gaps_us,
        consumers,
    })
}

/// The durable consumer a projector process keeping `names` reads (`lianxi serve --role
/// projector`: `lianxi-projector-` and its projections, sorted, joined by `-`).
fn durable(names: &[&'static str]) -> String {
    let mut names = if names.is_empty() {
        ALL.to_vec()
    } else {
        names.to_vec()
    };
    names.sort_unstable();
    format!("lianxi-projector-{}", names.join("-"))
}

/// Every 50 ms from `open` to `close`, each consumer's (not yet delivered, delivered and not
/// acknowledged) counts, as nats-server reports them.
async fn sample_consumers(
    nats_url: String,
    durables: Vec<(String, String)>,
    open: tokio::time::Instant,
    close: tokio::time::Instant,
) -> Result<Vec<(String, Vec<(u64, u64)>)>> {
    use async_nats::jetstream::consumer::{pull, Consumer};
    let client = async_nats::connect(&nats_url)
        .await
        .with_context(|| format!("connecting to {nats_url}"))?;
    let js = async_nats::jetstream::new(client);
    tokio::time::sleep_until(open).await;
    let stream = js
        .get_stream(bus::message::STREAM_NAME)
        .await
        .context("the event stream")?;
    let mut consumers: Vec<Consumer<pull::Config>> = Vec::new();
    for (label, name) in &durables {
        consumers.push(
            stream
                .get_consumer(name)
                .await
                .map_err(|error| anyhow::anyhow!("the {label}'s consumer {name}: {error}"))?,
        );
    }
    let mut samples: Vec<Vec<(u64, u64)>> = vec![Vec::new(); durables.len()];
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    while tokio::time::Instant::now() < close {
        tick.tick().await;
        for (consumer, out) in consumers.iter().zip(samples.iter_mut()) {
            let info = consumer.get_info().await.context("a consumer's info")?;
            out.push((info.num_pending, info.num_ack_pending as u64));
        }
    }
    Ok(durables
        .into_iter()
        .map(|(label, _)| label)
        .zip(samples)
        .collect())
}

/// The most stream messages [`to_stream`] reads, in blocks of [`STREAM_BLOCK`] consecutive ones.
const STREAM_SAMPLES: u64 = 5_000;
const STREAM_BLOCK: u64 = 50;

/// What the stream's own timestamps say about a window.
#[derive(Debug, Clone, Default)]
pub struct StreamTimes {
    /// µs from an event's `recorded_at` (the gateway's clock) to the time JetStream stored its
    /// message (nats-server's clock; the same machine), sorted.
    pub to_stream_us: Vec<u32>,
    /// µs between consecutive messages being stored, sorted: how the relay's publishes are
    /// spaced, which is what a projector's feed sees arrive.
    pub gaps_us: Vec<u32>,
}

/// For up to [`STREAM_SAMPLES`] messages, in blocks of consecutive ones spread evenly over the
/// stream, those whose event was recorded between `opened` and `closed`.
async fn to_stream(
    nats_url: &str,
    opened: chrono::DateTime<chrono::Utc>,
    closed: chrono::DateTime<chrono::Utc>,
) -> Result<StreamTimes> {
    let client = async_nats::connect(nats_url)
        .await
        .with_context(|| format!("connecting to {nats_url}"))?;
    let js = async_nats::jetstream::new(client);
    let stream = js
        .get_stream(bus::message::STREAM_NAME)
        .await
        .context("the event stream")?;
    let state = stream.get_info().await.context("the stream's info")?.state;
    let blocks = (STREAM_SAMPLES / STREAM_BLOCK).max(1);
    let step = (state.messages / blocks).max(STREAM_BLOCK);
    let mut times = StreamTimes::default();
    let mut start = state.first_sequence.max(1);
    while start <= state.last_sequence {
        let mut previous: Option<i128> = None;
        for sequence in start..(start + STREAM_BLOCK).min(state.last_sequence + 1) {
            let message = stream
                .get_raw_message(sequence)
                .await
                .with_context(|| format!("stream message {sequence}"))?;
            let event = bus::message::decode(&message.payload)?;
            let stored_ns = message.time.unix_timestamp_nanos();
            if event.recorded_at >= opened && event.recorded_at < closed {
                let recorded_ns = i128::from(event.recorded_at.timestamp_nanos_opt().unwrap_or(0));
                times
                    .to_stream_us
                    .push(micros((stored_ns - recorded_ns) / 1_000));
                if let Some(previous) = previous {
                    times.gaps_us.push(micros((stored_ns - previous) / 1_000));
                }
                previous = Some(stored_ns);
            } else {
                previous = None;
            }
        }
        start += step;
    }
    times.to_stream_us.sort_unstable();
    times.gaps_us.sort_unstable();
    Ok(times)
}

fn micros(value: i128) -> u32 {
    u32::try_from(value.max(0)).unwrap_or(u32::MAX)
}

/// A process stopped with SIGSTOP; continued when thawed or dropped, so an error on the way
/// does not leave it stopped for the harness's SIGTERM to wait on.
struct Frozen {
    pid: u32,
    thawed: bool,
}

impl Frozen {
    fn stop(pid: u32) -> Result<Frozen> {
        signal(rustix::process::Signal::STOP, pid)?;
        Ok(Frozen { pid, thawed: false })
    }

    fn thaw(mut self) -> Result<()> {
        self.thawed = true;
        signal(rustix::process::Signal::CONT, self.pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if !self.thawed {
            let _ = signal(rustix::process::Signal::CONT, self.pid);
        }
    }
}

/// Sends `signal` to process `pid`.
fn signal(signal: rustix::process::Signal, pid: u32) -> Result<()> {
    let target = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .with_context(|| format!("pid {pid}"))?;
    rustix::process::kill_process(target, signal)
        .with_context(|| format!("sending {signal:?} to pid {pid}"))
}

/// `/metrics` of every process that matters, at one moment.
struct Scrapes {
    projectors: Vec<String>,
    gateways: Vec<String>,
    relay: String,
}

impl Scrapes {
    async fn of(projectors: &[(String, Api)], gateways: &[Api], relay: &Api) -> Result<Scrapes> {
        let mut scrapes = Scrapes {
            projectors: Vec::new(),
            gateways: Vec::new(),
            relay: relay.metrics().await.context("the relay's /metrics")?,
        };
        for (label, api) in projectors {
            scrapes.projectors.push(
                api.metrics()
                    .await
                    .with_context(|| format!("the {label}'s /metrics"))?,
            );
        }
        for api in gateways {
            scrapes
                .gateways
                .push(api.metrics().await.context("a gateway's /metrics")?);
        }
        Ok(scrapes)
    }
}

/// Waits until every projection in `names` is listed by `gateway` and live at the head
/// (bounded; after the bound it says so and goes on, as the lag benchmark does).
async fn settle(gateway: &Api, names: &[&str]) -> Result<()> {
    let started = Instant::now();
    let mut backlog: Option<i64> = None;
    loop {
        let view = gateway.projections().await?;
        let rows: Vec<&Value> = view
            .get("projections")
            .and_then(Value::as_array)
            .map(|rows| rows.iter().filter(|r| r["active"] == true).collect())
            .unwrap_or_default();
        let lag_of = |name: &str| {
            rows.iter()
                .find(|r| r["name"].as_str() == Some(name))
                .and_then(|r| r["lag"].as_i64())
        };
        let lags: Vec<Option<i64>> = names.iter().map(|name| lag_of(name)).collect();
        let worst = lags
            .iter()
            .map(|lag| lag.unwrap_or(i64::MAX))
            .max()
            .unwrap_or(0);
        if lags.iter().all(Option::is_some) {
            backlog.get_or_insert(worst);
        }
        if worst <= 0 {
            if let Some(backlog) = backlog.filter(|b| *b > 0) {
                let seconds = started.elapsed().as_secs_f64();
                eprintln!(
                    "  projections caught up with {backlog} events in {seconds:.1} s ({:.0} events/s)",
                    backlog as f64 / seconds.max(1e-3)
                );
            }
            return Ok(());
        }
        if started.elapsed() >= SETTLE_TIMEOUT {
            let missing: Vec<&&str> = names
                .iter()
                .zip(&lags)
                .filter(|(_, lag)| lag.is_none())
                .map(|(name, _)| name)
                .collect();
            if !missing.is_empty() {
                bail!(
                    "after {} s the gateway lists no live generation of {missing:?}",
                    SETTLE_TIMEOUT.as_secs()
                );
            }
            eprintln!(
                "  projections still {worst} events behind after {:.0} s; measuring anyway",
                SETTLE_TIMEOUT.as_secs_f64()
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

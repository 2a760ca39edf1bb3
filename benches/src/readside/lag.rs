//! Projection lag under a sustained command rate: how long after an event is recorded it shows in each read model, read from the server's own histogram, against the command round trip and the log's commit time at the same rate.
//!
//! Each run starts `lianxi serve` on a fresh data directory, or (`--history N`) on a copy of
//! the cached N-event log once its projections have built it. K independent generated worlds
//! (seeds 1000, 1001, …; each `Generator::new(seed, 1, 10, 60)`) first register themselves as
//! fast as they can; then each sends its commands strictly in order over HTTP, one at a time,
//! each at its slot of an open-loop schedule (world k's j-th command at `(j·K + k) / rate`), so
//! the offered rate is `--rate`. A world whose answer comes late sends its next command at once
//! and falls behind its schedule, and every world stops when the window closes: the achieved
//! rate (commands sent in the window that succeeded before it closed) is reported beside the
//! offered one. A world waits for each answer, so K must exceed rate × round trip.
//!
//! The lag is `lianxi_projection_lag_seconds{projection}`: for each event of a live batch, the
//! read model's commit time minus the event's `recorded_at` (which the command handler sets
//! before the group commit, so the lag includes the log's commit). It is scraped from `/metrics`
//! when the window opens and again once the projections have caught up after it closes; the
//! quantiles are interpolated inside the buckets of the difference.
//!
//! The worlds and their schedule ([`set_up_worlds`], [`Schedule`]) are shared with the
//! `distributed` benchmark, whose commands go to gateway processes while the lag is read from
//! projector processes.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use domain::testing::generator::{Generated, Generator};
use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

use super::cache::{goes_alone, CachedLog};
use super::{built, Env};
use crate::http_bench::{self, Api, Server};
use crate::procstat::CpuUse;
use crate::prom::{self, Buckets};
use crate::report::thousands;

const LAG: &str = "lianxi_projection_lag_seconds";
const COMMIT_LAG: &str = "lianxi_projection_commit_lag_seconds";
const COMMIT: &str = "lianxi_store_commit_seconds";
const PHASES: &str = "lianxi_projection_batch_seconds";
/// Each world: one district of 10 communities and 60 units.
const WORLD: [usize; 3] = [1, 10, 60];
/// A send this much after its slot counts as late.
const LATE: Duration = Duration::from_millis(5);

/// Options of the lag benchmark.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub rate: f64,
    pub window: Duration,
    pub warmup: Duration,
    pub worlds: usize,
}

/// One run.
#[derive(Debug, Clone)]
pub struct LagRun {
    pub window: Duration,
    /// Commands sent in the window; those that succeeded before it closed; failures (by
    /// label); those sent more than 5 ms after their slot.
    pub sent: u64,
    pub ok: u64,
    pub failures: BTreeMap<String, u64>,
    pub late: u64,
    /// Round trips of the successful commands sent in the window (from sending), µs, sorted.
    pub round_trip_us: Vec<u32>,
    /// The same from each command's slot (includes waiting for a late world), µs, sorted.
    pub from_slot_us: Vec<u32>,
    /// The lag histogram's difference per projection.
    pub lag: BTreeMap<String, Buckets>,
    /// The same from the end of each event's log commit (servers since 2026-12-07; empty
    /// before).
    pub commit_lag: BTreeMap<String, Buckets>,
    /// The store's commit time histogram's difference.
    pub commit: Buckets,
    /// The projectors' batches: time per phase (`lock`, `apply_write`, `commit`), differences.
    pub phases: BTreeMap<String, Buckets>,
    pub cpu: CpuUse,
    /// Seconds the projections needed to catch up after the window.
    pub settle_seconds: f64,
}

impl LagRun {
    pub fn achieved(&self) -> f64 {
        self.ok as f64 / self.window.as_secs_f64().max(1e-9)
    }
}

/// The `q`-quantile (nearest rank) of sorted µs samples, in ms.
pub fn quantile_ms(sorted_us: &[u32], q: f64) -> Option<f64> {
    if sorted_us.is_empty() {
        return None;
    }
    let rank = (q * sorted_us.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted_us.len()) - 1;
    Some(f64::from(sorted_us[index]) / 1_000.0)
}

/// `history`: each server starts on a copy of that log and builds its projections first.
pub async fn run(env: &Env, options: Options, history: Option<&CachedLog>) -> Result<Vec<LagRun>> {
    anyhow::ensure!(
        options.rate > 0.0 && options.worlds > 0,
        "--rate and --worlds must be positive"
    );
    let mut runs = Vec::with_capacity(env.runs);
    for index in 1..=env.runs {
        env.wait_for_quiet().await;
        eprintln!(
            "lag run {index}/{}: {} commands/s offered by {} worlds for {:.0} s",
            env.runs,
            thousands(options.rate),
            options.worlds,
            options.window.as_secs_f64()
        );
        let run = one(env, options, history).await?;
        let all = prom::total(&run.lag);
        eprintln!(
            "  achieved {} commands/s ({} sent in the window, {} late, {} failed); lag p50 {} ms, p99 {} ms over {} events; round trip p99 {} ms",
            thousands(run.achieved()),
            thousands(run.sent as f64),
            thousands(run.late as f64),
            thousands(run.failures.values().sum::<u64>() as f64),
            all.quantile(0.5).map_or("–".into(), |q| q.ms_label()),
            all.quantile(0.99).map_or("–".into(), |q| q.ms_label()),
            thousands(all.count()),
            quantile_ms(&run.round_trip_us, 0.99).map_or("–".into(), |v| format!("{v:.1}")),
        );
        runs.push(run);
    }
    Ok(runs)
}

async fn one(env: &Env, options: Options, history: Option<&CachedLog>) -> Result<LagRun> {
    let scratch = Server::scratch(&env.dir)?;
    if let Some(log) = history {
        log.copy_into(&Server::data_dir(&scratch)).await?;
    }
    let token = format!("bench-{}", Uuid::new_v4().simple());
    let mut server = Server::start(&env.lianxi, scratch, &token).await?;
    let measured = async {
        if let Some(log) = history {
            let api = Api::new(server.addr, &token)?;
            let built =
                built::wait(&mut server, &api, log.head, built::POLL, built::TIMEOUT).await?;
            eprintln!(
                "  the history's projections built in {:.1} s",
                built.seconds
            );
        }
        measure(&server, &token, options).await
    }
    .await;
    super::finish(env, server, measured).await
}

/// What one world did in the window.
#[derive(Default)]
struct WorldRecord {
    sent: u64,
    ok: u64,
    late: u64,
    failures: BTreeMap<String, u64>,
    round_trip_us: Vec<u32>,
    from_slot_us: Vec<u32>,
}

/// A generated world, registered and ready for the schedule: its generator, its next command,
/// and the API its commands go to.
pub(crate) struct World {
    generator: Generator,
    next: Generated,
    api: Api,
}

/// Registers `count` worlds, as fast as each goes, so the window sees the steady mix. World k
/// sends every command (registration and schedule) through `apis[k % apis.len()]`.
pub(crate) async fn set_up_worlds(apis: &[Api], count: usize) -> Result<Vec<World>> {
    anyhow::ensure!(!apis.is_empty(), "no API to send the worlds' commands to");
    let mut setups = JoinSet::new();
    for k in 0..count {
        let api = apis[k % apis.len()].clone();
        setups.spawn(async move {
            let [d, c, u] = WORLD;
            let mut generator = Generator::new(1_000 + k as u64, d, c, u);
            loop {
                let command = generator.next_command();
                if !goes_alone(command.name) {
                    return Ok::<_, anyhow::Error>((k, generator, command, api));
                }
                api.command(command.name, &command.body)
                    .await
                    .map_err(|label| anyhow::anyhow!("world {k} set-up failed: {label}"))?;
            }
        });
    }
    let mut worlds: Vec<Option<World>> = (0..count).map(|_| None).collect();
    while let Some(done) = setups.join_next().await {
        let (k, generator, next, api) = done.context("a set-up task panicked")??;
        worlds[k] = Some(World {
            generator,
            next,
            api,
        });
    }
    worlds
        .into_iter()
        .map(|world| world.context("a world was not set up"))
        .collect()
}

/// What the worlds did in the window.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sent {
    pub sent: u64,
    pub ok: u64,
    pub failures: BTreeMap<String, u64>,
    pub late: u64,
    /// Round trips of the successful commands sent in the window (from sending), µs, sorted.
    pub round_trip_us: Vec<u32>,
    /// The same from each command's slot, µs, sorted.
    pub from_slot_us: Vec<u32>,
}

/// The open-loop schedule, running: the worlds send from 100 ms after [`Schedule::start`];
/// the window is `[open, close)`, after the warm-up.
pub(crate) struct Schedule {
    pub open: Instant,
    pub close: Instant,
    tasks: JoinSet<WorldRecord>,
}

impl Schedule {
    /// Starts every world on its slots: world k's j-th command at `(j·K + k) / rate`.
    pub(crate) fn start(worlds: Vec<World>, options: Options) -> Schedule {
        let start = Instant::now() + Duration::from_millis(100);
        let open = start + options.warmup;
        let close = open + options.window;
        let k_total = worlds.len() as f64;
        let mut tasks = JoinSet::new();
        for (k, world) in worlds.into_iter().enumerate() {
            let World {
                mut generator,
                next: first,
                api,
            } = world;
            let rate = options.rate;
            tasks.spawn(async move {
                let mut record = WorldRecord::default();
                let mut next = Some(first);
                for j in 0_u64.. {
                    let slot =
                        start + Duration::from_secs_f64((j as f64 * k_total + k as f64) / rate);
                    if slot >= close {
                        break;
                    }
                    tokio::time::sleep_until(slot).await;
                    let sent = Instant::now();
                    if sent >= close {
                        // A world behind its schedule stops with the window too.
                        break;
                    }
                    let command = next.take().unwrap_or_else(|| generator.next_command());
                    let outcome = api.command(command.name, &command.body).await;
                    let done = Instant::now();
                    if sent < open {
                        continue;
                    }
                    record.sent += 1;
                    if sent - slot > LATE {
                        record.late += 1;
                    }
                    match outcome {
                        Ok(()) => {
                            if done <= close {
                                record.ok += 1;
                            }
                            record.round_trip_us.push(micros(done - sent));
                            record.from_slot_us.push(micros(done - slot));
                        }
                        Err(label) => *record.failures.entry(label).or_default() += 1,
                    }
                }
                record
            });
        }
        Schedule { open, close, tasks }
    }

    /// Waits (at most 60 s after the window) for every world's last command and adds up what
    /// they did; prints the failures, if any.
    pub(crate) async fn finish(mut self) -> Result<Sent> {
        let mut total = Sent::default();
        let drained = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(record) = self.tasks.join_next().await {
                let record = record.context("a world panicked")?;
                total.sent += record.sent;
                total.ok += record.ok;
                total.late += record.late;
                for (label, count) in record.failures {
                    *total.failures.entry(label).or_default() += count;
                }
                total.round_trip_us.extend(record.round_trip_us);
                total.from_slot_us.extend(record.from_slot_us);
            }
            anyhow::Ok(())
        })
        .await;
        match drained {
            Ok(result) => result?,
            Err(_) => bail!("the worlds' last commands did not finish within 60 s of the window"),
        }
        total.round_trip_us.sort_unstable();
        total.from_slot_us.sort_unstable();
        if !total.failures.is_empty() {
            eprintln!("  failed commands: {:?}", total.failures);
        }
        Ok(total)
    }
}

async fn measure(server: &Server, token: &str, options: Options) -> Result<LagRun> {
    let api = Api::new(server.addr, token)?;
    let worlds = set_up_worlds(std::slice::from_ref(&api), options.worlds).await?;
    http_bench::settle(&api).await?;

    let schedule = Schedule::start(worlds, options);
    tokio::time::sleep_until(schedule.open).await;
    let metrics_before = api.metrics().await?;
    let cpu_before = CpuUse::now(Some(server.pid));
    tokio::time::sleep_until(schedule.close).await;
    let cpu = CpuUse::now(Some(server.pid)).since(&cpu_before);
    let sent = schedule.finish().await?;
    let mut run = LagRun {
        window: options.window,
        sent: sent.sent,
        ok: sent.ok,
        failures: sent.failures,
        late: sent.late,
        round_trip_us: sent.round_trip_us,
        from_slot_us: sent.from_slot_us,
        lag: BTreeMap::new(),
        commit_lag: BTreeMap::new(),
        commit: Buckets::default(),
        phases: BTreeMap::new(),
        cpu,
        settle_seconds: 0.0,
    };
    let settling = Instant::now();
    http_bench::settle(&api).await?;
    run.settle_seconds = settling.elapsed().as_secs_f64();
    let metrics_after = api.metrics().await?;
    run.lag = lag_since(&metrics_before, &metrics_after);
    if run.lag.is_empty() {
        bail!("the server exports no {LAG} histogram: this benchmark needs it");
    }
    run.commit_lag = histograms_since(&metrics_before, &metrics_after, COMMIT_LAG, "projection");
    run.commit = commit_since(&metrics_before, &metrics_after);
    run.phases = phases_since(&metrics_before, &metrics_after);
    Ok(run)
}

/// The lag histograms' difference per projection between two scrapes of one process.
pub(crate) fn lag_since(before: &str, after: &str) -> BTreeMap<String, Buckets> {
    histograms_since(before, after, LAG, "projection")
}

/// The projectors' batch phase histograms' difference between two scrapes of one process: where
/// a batch behind a late event spent its time.
pub(crate) fn phases_since(before: &str, after: &str) -> BTreeMap<String, Buckets> {
    histograms_since(before, after, PHASES, "phase")
}

/// The difference of histogram `name`, per value of label `key`, between two scrapes.
fn histograms_since(before: &str, after: &str, name: &str, key: &str) -> BTreeMap<String, Buckets> {
    let earlier = prom::histograms(before, name, key);
    prom::histograms(after, name, key)
        .into_iter()
        .map(|(label, after)| {
            let before = earlier.get(&label).cloned().unwrap_or_default();
            (label, after.since(&before))
        })
        .collect()
}

/// The group-commit time histogram's difference between two scrapes of one process.
pub(crate) fn commit_since(before: &str, after: &str) -> Buckets {
    prom::total(&prom::histograms(after, COMMIT, ""))
        .since(&prom::total(&prom::histograms(before, COMMIT, "")))
}

fn micros(elapsed: Duration) -> u32 {
    u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX)
}

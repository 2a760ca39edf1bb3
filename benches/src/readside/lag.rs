//! Projection lag under a sustained command rate: how long after an event is recorded it shows in each read model, read from the server's own histogram, against the command round trip and the log's commit time at the same rate.
//!
//! Each run starts `lianxi serve` on a fresh data directory. K independent generated worlds
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

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use domain::testing::generator::{Generated, Generator};
use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

use super::cache::goes_alone;
use super::Env;
use crate::http_bench::{self, Api, Server};
use crate::procstat::CpuUse;
use crate::prom::{self, Buckets};
use crate::report::thousands;

const LAG: &str = "lianxi_projection_lag_seconds";
const COMMIT: &str = "lianxi_store_commit_seconds";
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
    /// The store's commit time histogram's difference.
    pub commit: Buckets,
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

pub async fn run(env: &Env, options: Options) -> Result<Vec<LagRun>> {
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
        let run = one(env, options).await?;
        let all = prom::total(&run.lag);
        eprintln!(
            "  achieved {} commands/s ({} late, {} failed); lag p50 {} ms, p99 {} ms over {} events; round trip p99 {} ms",
            thousands(run.achieved()),
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

async fn one(env: &Env, options: Options) -> Result<LagRun> {
    let scratch = Server::scratch(&env.dir)?;
    let token = format!("bench-{}", Uuid::new_v4().simple());
    let server = Server::start(&env.lianxi, scratch, &token).await?;
    let measured = measure(&server, &token, options).await;
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

async fn measure(server: &Server, token: &str, options: Options) -> Result<LagRun> {
    let api = Api::new(server.addr, token)?;
    // Registration first, as fast as each world goes, so the window sees the steady mix.
    let mut setups = JoinSet::new();
    for k in 0..options.worlds {
        let api = api.clone();
        setups.spawn(async move {
            let [d, c, u] = WORLD;
            let mut generator = Generator::new(1_000 + k as u64, d, c, u);
            loop {
                let command = generator.next_command();
                if !goes_alone(command.name) {
                    return Ok::<_, anyhow::Error>((k, generator, command));
                }
                api.command(command.name, &command.body)
                    .await
                    .map_err(|label| anyhow::anyhow!("world {k} set-up failed: {label}"))?;
            }
        });
    }
    let mut worlds: Vec<Option<(Generator, Generated)>> =
        (0..options.worlds).map(|_| None).collect();
    while let Some(done) = setups.join_next().await {
        let (k, generator, first) = done.context("a set-up task panicked")??;
        worlds[k] = Some((generator, first));
    }
    http_bench::settle(&api).await?;

    let start = Instant::now() + Duration::from_millis(100);
    let open = start + options.warmup;
    let close = open + options.window;
    let k_total = options.worlds as f64;
    let mut tasks = JoinSet::new();
    for (k, world) in worlds.into_iter().enumerate() {
        let (mut generator, first) = world.context("a world was not set up")?;
        let api = api.clone();
        let rate = options.rate;
        tasks.spawn(async move {
            let mut record = WorldRecord::default();
            let mut next = Some(first);
            for j in 0_u64.. {
                let slot = start + Duration::from_secs_f64((j as f64 * k_total + k as f64) / rate);
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
    tokio::time::sleep_until(open).await;
    let metrics_before = api.metrics().await?;
    let cpu_before = CpuUse::now(Some(server.pid));
    tokio::time::sleep_until(close).await;
    let cpu = CpuUse::now(Some(server.pid)).since(&cpu_before);
    let mut run = LagRun {
        window: options.window,
        sent: 0,
        ok: 0,
        failures: BTreeMap::new(),
        late: 0,
        round_trip_us: Vec::new(),
        from_slot_us: Vec::new(),
        lag: BTreeMap::new(),
        commit: Buckets::default(),
        cpu,
        settle_seconds: 0.0,
    };
    let drained = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(record) = tasks.join_next().await {
            let record = record.context("a world panicked")?;
            run.sent += record.sent;
            run.ok += record.ok;
            run.late += record.late;
            for (label, count) in record.failures {
                *run.failures.entry(label).or_default() += count;
            }
            run.round_trip_us.extend(record.round_trip_us);
            run.from_slot_us.extend(record.from_slot_us);
        }
        anyhow::Ok(())
    })
    .await;
    match drained {
        Ok(result) => result?,
        Err(_) => bail!("the worlds' last commands did not finish within 60 s of the window"),
    }
    run.round_trip_us.sort_unstable();
    run.from_slot_us.sort_unstable();
    if !run.failures.is_empty() {
        eprintln!("  failed commands: {:?}", run.failures);
    }
    let settling = Instant::now();
    http_bench::settle(&api).await?;
    run.settle_seconds = settling.elapsed().as_secs_f64();
    let metrics_after = api.metrics().await?;
    let lag_before = prom::histograms(&metrics_before, LAG, "projection");
    run.lag = prom::histograms(&metrics_after, LAG, "projection")
        .into_iter()
        .map(|(name, after)| {
            let before = lag_before.get(&name).cloned().unwrap_or_default();
            (name, after.since(&before))
        })
        .collect();
    if run.lag.is_empty() {
        bail!("the server exports no {LAG} histogram: this benchmark needs it");
    }
    run.commit = prom::total(&prom::histograms(&metrics_after, COMMIT, ""))
        .since(&prom::total(&prom::histograms(&metrics_before, COMMIT, "")));
    Ok(run)
}

fn micros(elapsed: Duration) -> u32 {
    u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX)
}

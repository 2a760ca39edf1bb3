//! Rebuild from scratch: how fast `lianxi serve` builds every projection from position 0 over a cached log, and how much memory it holds meanwhile, against a bare scan of the same log.
//!
//! Each run copies the cached log into a fresh data directory (no read models), scans it once
//! through [`SqliteStore::read_all`] in batches (the baseline: reading and decoding every event
//! is the floor any rebuild pays), then starts the server on it, which builds every projection
//! at startup, and polls `GET /v1/projections` until all are live at the head, sampling the
//! server's resident memory at every poll. The kernel's high-water mark (`VmHWM`) is read at
//! the end too, so no peak between polls is missed.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use store::sqlite::SqliteStore;
use store::EventStore;
use uuid::Uuid;

use super::built::{self, Built};
use super::cache::CachedLog;
use super::Env;
use crate::http_bench::{Api, Server};
use crate::procstat::{CpuSnapshot, CpuUse};
use crate::report::thousands;

/// Events per `read_all` of the scan: the projection runner's batch.
const SCAN_BATCH: usize = 2_000;

/// One run.
#[derive(Debug, Clone)]
pub struct RebuildRun {
    pub head: i64,
    /// The baseline: seconds to scan the whole log.
    pub scan_seconds: f64,
    pub built: Built,
    /// The server's CPU from its start until every projection was at the head.
    pub server_cpu: CpuSnapshot,
    /// CPU during the build, from "listening" to done: harness, server, machine.
    pub window_cpu: CpuUse,
}

impl RebuildRun {
    pub fn scan_rate(&self) -> f64 {
        self.head as f64 / self.scan_seconds.max(1e-9)
    }

    pub fn rebuild_rate(&self) -> f64 {
        self.head as f64 / self.built.seconds.max(1e-9)
    }

    /// The peak resident size: the kernel's high-water mark, else the largest sample.
    pub fn peak_rss(&self) -> u64 {
        self.built
            .peak_rss
            .unwrap_or(0)
            .max(self.built.sampled_peak_rss)
    }
}

/// Options of the rebuild benchmark.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub poll: Duration,
    pub timeout: Duration,
}

/// Runs `env.runs` rebuilds of `log`.
pub async fn run(env: &Env, log: &CachedLog, options: Options) -> Result<Vec<RebuildRun>> {
    let mut runs = Vec::with_capacity(env.runs);
    for index in 1..=env.runs {
        env.wait_for_quiet().await;
        eprintln!(
            "rebuild run {index}/{}: {} events",
            env.runs,
            thousands(log.head as f64)
        );
        let run = one(env, log, options).await?;
        eprintln!(
            "  scan {} events/s; rebuild {} events/s ({:.2} × scan) in {:.2} s; peak RSS {:.1} MB",
            thousands(run.scan_rate()),
            thousands(run.rebuild_rate()),
            run.rebuild_rate() / run.scan_rate(),
            run.built.seconds,
            run.peak_rss() as f64 / 1e6
        );
        runs.push(run);
    }
    Ok(runs)
}

async fn one(env: &Env, log: &CachedLog, options: Options) -> Result<RebuildRun> {
    let scratch = Server::scratch(&env.dir)?;
    let data = Server::data_dir(&scratch);
    log.copy_into(&data).await?;
    let (scanned, scan_seconds) = scan(&data).await?;
    anyhow::ensure!(
        scanned == log.head,
        "the scan read {scanned} events, the log holds {}",
        log.head
    );
    let token = format!("bench-{}", Uuid::new_v4().simple());
    let mut server = Server::start(&env.lianxi, scratch, &token).await?;
    let before = CpuUse::now(Some(server.pid));
    let measured = async {
        let api = Api::new(server.addr, &token)?;
        let built = built::wait(&mut server, &api, log.head, options.poll, options.timeout).await?;
        let after = CpuUse::now(Some(server.pid));
        Ok((built, after))
    }
    .await;
    let (built, after) = super::finish(env, server, measured).await?;
    Ok(RebuildRun {
        head: log.head,
        scan_seconds,
        built,
        server_cpu: after.server.clone().unwrap_or_default(),
        window_cpu: after.since(&before),
    })
}

/// Reads the whole log in the runner's batches; returns the events read and the seconds.
pub async fn scan(data_dir: &Path) -> Result<(i64, f64)> {
    let store = SqliteStore::open(data_dir)
        .await
        .with_context(|| format!("opening the log in {}", data_dir.display()))?;
    let started = Instant::now();
    let (mut position, mut events) = (0_i64, 0_i64);
    loop {
        let batch = store
            .read_all(position, SCAN_BATCH)
            .await
            .context("scanning the log")?;
        let Some(last) = batch.last() else { break };
        position = last.position;
        events += i64::try_from(batch.len()).unwrap_or(i64::MAX);
    }
    let seconds = started.elapsed().as_secs_f64();
    drop(store);
    // Let the store's connections close before a server opens the same file.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok((events, seconds))
}

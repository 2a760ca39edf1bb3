//! The read-side benchmarks of issue 3 (rebuild speed and memory, projection lag, board reads under load), each with a baseline measured in the same run.
//!
//! - `log`: builds (or reuses) a cached, seeded log through the real command path ([`cache`]);
//! - `rebuild`: `lianxi serve` building every projection over a cached log ([`rebuild`]);
//! - `lag`: projection lag under a fixed command rate over HTTP ([`lag`]);
//! - `reads`: board reads from many readers while commands flow ([`reads`]);
//! - `read-side`: all of them, with one markdown report ([`report`]).

mod built;
pub mod cache;
pub(crate) mod lag;
mod lean;
mod reads;
mod rebuild;
mod report;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::http_bench::{self, Server};
use crate::load::Window;
use crate::procstat::QuietGate;
use crate::{MAX_CONCURRENCY, MAX_RUNS, MAX_SECONDS};

/// The largest log accepted.
const MAX_EVENTS: i64 = 10_000_000;

/// Options of `log`.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Events the log holds at least (it stops after the chunk that reaches them).
    #[arg(long, default_value_t = 1_000_000)]
    events: i64,
    /// The generator's seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The cache root: the log goes to `<dir>/log-s<seed>-n<events>/lianxi.db` (default
    /// `$LIANXI_BENCH_DIR/lianxi-bench-logs`, else under the system temp dir).
    #[arg(long, alias = "log-dir")]
    dir: Option<PathBuf>,
}

/// Options every read-side benchmark shares.
#[derive(Debug, Clone, Args)]
pub struct ReadCommon {
    /// Where the temporary data directories go (must be on the disk under test, not tmpfs).
    #[arg(long, env = "LIANXI_BENCH_DIR")]
    dir: Option<PathBuf>,
    /// The cache root of the logs (default `<dir>/lianxi-bench-logs`).
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// The generator's seed of the cached logs.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The `lianxi` binary to spawn (default: `lianxi` next to this executable).
    #[arg(long)]
    lianxi: Option<PathBuf>,
    /// Runs; the tables report medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Before each run, wait until other processes use fewer cores than this (0: do not wait).
    #[arg(long, default_value_t = 0.5)]
    quiet_below: f64,
    /// The longest wait for a quiet machine, in seconds.
    #[arg(long, default_value_t = 20.0)]
    quiet_wait: f64,
    /// Keep each run's server log in `--dir`.
    #[arg(long)]
    keep_server_logs: bool,
}

/// Options of `rebuild`.
#[derive(Debug, Clone, Args)]
pub struct RebuildArgs {
    #[command(flatten)]
    common: ReadCommon,
    /// Events in the log to rebuild (a cached log; built first when missing).
    #[arg(long, default_value_t = 1_000_000)]
    events: i64,
    /// Milliseconds between polls of `/v1/projections` (and RSS samples).
    #[arg(long, default_value_t = 50)]
    poll_ms: u64,
    /// The longest a rebuild may take, in seconds.
    #[arg(long, default_value_t = 1_800.0)]
    timeout: f64,
}

/// Options of `lag`.
#[derive(Debug, Clone, Args)]
pub struct LagArgs {
    #[command(flatten)]
    common: ReadCommon,
    #[command(flatten)]
    lag: LagOptions,
}

#[derive(Debug, Clone, Args)]
pub struct LagOptions {
    /// Commands per second offered, all worlds together.
    #[arg(long, default_value_t = 1_000.0)]
    rate: f64,
    /// Measured seconds.
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    /// Seconds at the rate before the window opens.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Independent generated worlds sending in parallel (each strictly in order, waiting for
    /// each answer, so at most this many commands are in flight).
    #[arg(long, default_value_t = 64)]
    worlds: usize,
    /// Start each server on a copy of the cached log of this many events (seed `--seed`) and
    /// wait for its projections to build before the worlds register: the lag of a server with
    /// a history larger than its projectors' memory budget. 0: a fresh server.
    #[arg(long, default_value_t = 0)]
    history: i64,
}

/// Options of `reads`.
#[derive(Debug, Clone, Args)]
pub struct ReadsArgs {
    #[command(flatten)]
    common: ReadCommon,
    #[command(flatten)]
    reads: ReadsOptions,
}

#[derive(Debug, Clone, Args)]
pub struct ReadsOptions {
    /// Concurrent closed-loop readers.
    #[arg(long, default_value_t = 64)]
    readers: usize,
    /// The readers' HTTP client.
    #[arg(long, value_enum, default_value_t = reads::Client::Lean)]
    client: reads::Client,
    /// Measured seconds, for the baseline and for the boards each.
    #[arg(long = "seconds", default_value_t = 10.0)]
    read_seconds: f64,
    /// Unmeasured seconds before each window.
    #[arg(long = "warmup", default_value_t = 1.0)]
    read_warmup: f64,
    /// Commands per second sent in the background, continuing the log's world.
    #[arg(long, default_value_t = 200.0)]
    command_rate: f64,
    /// Events in the log the server starts from.
    #[arg(long = "events", default_value_t = 100_000)]
    read_events: i64,
    /// Total board reads per second of the paced windows (gzip, the same readers, each at the
    /// slots of a fixed schedule); one window per rate, none when the flag is given no value.
    #[arg(long, value_delimiter = ',', num_args = 0.., default_values_t = [10_000.0, 20_000.0])]
    paced_rates: Vec<f64>,
}

/// Options of `read-side`: all of the above.
#[derive(Debug, Clone, Args)]
pub struct ReadSideArgs {
    #[command(flatten)]
    common: ReadCommon,
    /// Events in the log to rebuild.
    #[arg(long, default_value_t = 1_000_000)]
    events: i64,
    #[arg(long, default_value_t = 50)]
    poll_ms: u64,
    #[arg(long, default_value_t = 1_800.0)]
    timeout: f64,
    /// Commands per second offered in the lag benchmark.
    #[arg(long, default_value_t = 1_000.0)]
    rate: f64,
    /// Measured seconds of the lag benchmark.
    #[arg(long, default_value_t = 30.0)]
    lag_seconds: f64,
    /// Independent worlds of the lag benchmark.
    #[arg(long, default_value_t = 64)]
    worlds: usize,
    /// Concurrent board readers.
    #[arg(long, default_value_t = 64)]
    readers: usize,
    /// Measured seconds of each read window.
    #[arg(long, default_value_t = 10.0)]
    read_seconds: f64,
    /// Background commands per second during the reads.
    #[arg(long, default_value_t = 200.0)]
    command_rate: f64,
    /// Events in the log the reads start from.
    #[arg(long, default_value_t = 100_000)]
    read_events: i64,
}

/// The validated settings the read-side benchmarks share.
#[derive(Debug, Clone)]
pub struct Env {
    pub dir: PathBuf,
    pub log_root: PathBuf,
    pub seed: u64,
    pub lianxi: PathBuf,
    pub runs: usize,
    pub quiet: Option<QuietGate>,
    pub keep_server_logs: bool,
}

impl Env {
    pub async fn wait_for_quiet(&self) {
        if let Some(gate) = &self.quiet {
            gate.wait().await;
        }
    }
}

impl ReadCommon {
    fn env(&self) -> Result<Env> {
        if self.runs == 0 || self.runs > MAX_RUNS {
            bail!("--runs must be 1 to {MAX_RUNS}");
        }
        if !(self.quiet_below >= 0.0 && self.quiet_wait >= 0.0 && self.quiet_wait <= 600.0) {
            bail!("--quiet-below must be ≥ 0 and --quiet-wait in [0, 600]");
        }
        let dir = self.dir.clone().unwrap_or_else(std::env::temp_dir);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the benchmark directory {}", dir.display()))?;
        let log_root = self
            .log_dir
            .clone()
            .unwrap_or_else(|| cache::default_root(&dir));
        let lianxi = match &self.lianxi {
            Some(path) => path.clone(),
            None => http_bench::default_binary()?,
        };
        Ok(Env {
            dir,
            log_root,
            seed: self.seed,
            lianxi,
            runs: self.runs,
            quiet: (self.quiet_below > 0.0).then(|| QuietGate {
                below_cores: self.quiet_below,
                max_wait: Duration::from_secs_f64(self.quiet_wait),
            }),
            keep_server_logs: self.keep_server_logs,
        })
    }
}

fn check_events(events: i64, flag: &str) -> Result<()> {
    if !(1..=MAX_EVENTS).contains(&events) {
        bail!("{flag} must be 1 to {MAX_EVENTS}");
    }
    Ok(())
}

fn check_seconds(seconds: f64, flag: &str) -> Result<Duration> {
    if !(seconds > 0.0 && seconds <= MAX_SECONDS) {
        bail!("{flag} must be in (0, {MAX_SECONDS}]");
    }
    Ok(Duration::from_secs_f64(seconds))
}

impl LagOptions {
    fn options(&self) -> Result<lag::Options> {
        if !(self.rate > 0.0 && self.rate <= 100_000.0) {
            bail!("--rate must be in (0, 100000]");
        }
        if self.worlds == 0 || self.worlds > MAX_CONCURRENCY {
            bail!("--worlds must be 1 to {MAX_CONCURRENCY}");
        }
        Ok(lag::Options {
            rate: self.rate,
            window: check_seconds(self.seconds, "--seconds")?,
            warmup: check_seconds(self.warmup.max(0.001), "--warmup")?,
            worlds: self.worlds,
        })
    }
}

impl ReadsOptions {
    fn options(&self) -> Result<reads::Options> {
        if self.readers == 0 || self.readers > MAX_CONCURRENCY {
            bail!("--readers must be 1 to {MAX_CONCURRENCY}");
        }
        if !(self.command_rate >= 0.0 && self.command_rate <= 100_000.0) {
            bail!("--command-rate must be in [0, 100000]");
        }
        if self.paced_rates.len() > 8
            || !self
                .paced_rates
                .iter()
                .all(|rate| *rate > 0.0 && *rate <= 1_000_000.0)
        {
            bail!("--paced-rates must be at most 8 rates in (0, 1000000]");
        }
        check_events(self.read_events, "--events")?;
        Ok(reads::Options {
            readers: self.readers,
            client: self.client,
            window: Window {
                warmup: Duration::from_secs_f64(self.read_warmup.clamp(0.0, MAX_SECONDS)),
                measure: check_seconds(self.read_seconds, "--seconds")?,
            },
            command_rate: self.command_rate,
            paced_rates: self.paced_rates.clone(),
            build_timeout: built::TIMEOUT,
        })
    }
}

fn rebuild_options(poll_ms: u64, timeout: f64) -> Result<rebuild::Options> {
    if !(10..=5_000).contains(&poll_ms) {
        bail!("--poll-ms must be 10 to 5000");
    }
    if !(timeout > 0.0 && timeout <= 7_200.0) {
        bail!("--timeout must be in (0, 7200]");
    }
    Ok(rebuild::Options {
        poll: Duration::from_millis(poll_ms),
        timeout: Duration::from_secs_f64(timeout),
    })
}

/// `log`: builds or reuses the cached log.
pub async fn log(args: &LogArgs) -> Result<()> {
    check_events(args.events, "--events")?;
    let root = match &args.dir {
        Some(dir) => dir.clone(),
        None => cache::default_root(
            &std::env::var_os("LIANXI_BENCH_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir),
        ),
    };
    let log = cache::ensure(&root, args.seed, args.events).await?;
    println!("{}", log.dir.join(store::sqlite::DATABASE_FILE).display());
    Ok(())
}

/// `rebuild`.
pub async fn rebuild(args: &RebuildArgs) -> Result<()> {
    check_events(args.events, "--events")?;
    let options = rebuild_options(args.poll_ms, args.timeout)?;
    let env = args.common.env()?;
    let log = cache::ensure(&env.log_root, env.seed, args.events).await?;
    print_machine(&env).await;
    let runs = rebuild::run(&env, &log, options).await?;
    println!("{}", report::rebuild(&env, &log, &runs));
    Ok(())
}

/// `lag`.
pub async fn lag(args: &LagArgs) -> Result<()> {
    let options = args.lag.options()?;
    let env = args.common.env()?;
    let history = match args.lag.history {
        0 => None,
        events => {
            check_events(events, "--history")?;
            Some(cache::ensure(&env.log_root, env.seed, events).await?)
        }
    };
    print_machine(&env).await;
    let runs = lag::run(&env, options, history.as_ref()).await?;
    println!("{}", report::lag(&env, options, history.as_ref(), &runs));
    Ok(())
}

/// `reads`.
pub async fn reads(args: &ReadsArgs) -> Result<()> {
    let options = args.reads.options()?;
    let env = args.common.env()?;
    let log = cache::ensure(&env.log_root, env.seed, args.reads.read_events).await?;
    print_machine(&env).await;
    let runs = reads::run(&env, &log, options.clone()).await?;
    println!("{}", report::reads(&env, &log, &options, &runs));
    Ok(())
}

/// `read-side`: every read-side benchmark, one after the other.
pub async fn read_side(args: &ReadSideArgs) -> Result<()> {
    check_events(args.events, "--events")?;
    let rebuild_options = rebuild_options(args.poll_ms, args.timeout)?;
    let lag_options = LagOptions {
        rate: args.rate,
        seconds: args.lag_seconds,
        warmup: 3.0,
        worlds: args.worlds,
        history: 0,
    }
    .options()?;
    let reads_options = ReadsOptions {
        readers: args.readers,
        client: reads::Client::Lean,
        read_seconds: args.read_seconds,
        read_warmup: 1.0,
        command_rate: args.command_rate,
        read_events: args.read_events,
        paced_rates: vec![10_000.0, 20_000.0],
    }
    .options()?;
    let env = args.common.env()?;
    // Both logs first: a missing one takes minutes and should not interrupt the measurements.
    let big = cache::ensure(&env.log_root, env.seed, args.events).await?;
    let small = cache::ensure(&env.log_root, env.seed, args.read_events).await?;
    print_machine(&env).await;
    let rebuilt = rebuild::run(&env, &big, rebuild_options).await?;
    println!("{}", report::rebuild(&env, &big, &rebuilt));
    let lagged = lag::run(&env, lag_options, None).await?;
    println!("{}", report::lag(&env, lag_options, None, &lagged));
    let read = reads::run(&env, &small, reads_options.clone()).await?;
    println!("{}", report::reads(&env, &small, &reads_options, &read));
    Ok(())
}

async fn print_machine(env: &Env) {
    let machine = crate::report::Machine::describe(&env.dir, Some(&env.lianxi)).await;
    println!("{}", machine.markdown());
}

/// Stops `server` after a measurement: on success, reports its warnings (and keeps its log if
/// asked); on failure, adds its state and the end of its log to the error.
async fn finish<T>(env: &Env, server: Server, measured: Result<T>) -> Result<T> {
    server
        .finish(measured, &env.dir, env.keep_server_logs)
        .await
}

/// `12.3 MB` (10^6 bytes).
fn megabytes(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1e6)
}

//! `lianxi-bench`: measures lianxi against a same-run baseline and prints markdown tables.
//!
//! - `store`: appends/s through [`store::sqlite::SqliteStore`] alone, at several concurrencies;
//! - `http`: commands/s and latency over loopback HTTP against a spawned `lianxi serve`;
//! - `all`: both;
//! - `log`, `rebuild`, `lag`, `reads`, `read-side`: the read side of issue 3 ([`readside`]);
//! - `postgres`: appends, commands and stream loads on a durable PostgreSQL 15, against one-row
//!   `INSERT` transactions on the same server ([`pg`]);
//! - `distributed`: issue 5's relay throughput, lag through NATS and second projector process,
//!   on PostgreSQL and nats-server ([`distributed`]).
//!
//! Every run also measures the baseline ([`baseline`]): one durable SQLite commit per event from
//! one connection, on the same disk, minutes apart at most, so each figure is also reported as a
//! ratio of what the disk allowed at that moment. Progress goes to stderr, tables to stdout.

mod baseline;
mod distributed;
mod http_bench;
mod load;
mod payload;
mod pg;
mod procstat;
mod prom;
mod readside;
mod report;
mod store_bench;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "lianxi-bench",
    about = "Benchmarks lianxi's store, HTTP commands and read side against same-run baselines"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Appends/s through the SQLite store alone.
    Store(CommonArgs),
    /// Commands/s over HTTP against a spawned `lianxi serve`.
    Http(HttpArgs),
    /// Both, one after the other.
    All(HttpArgs),
    /// Builds (or reuses) a cached, seeded log through the command handler.
    Log(readside::LogArgs),
    /// Rebuild of every projection by `lianxi serve` over a cached log, against a bare scan.
    Rebuild(readside::RebuildArgs),
    /// Projection lag under a fixed command rate, against the command round trip.
    Lag(readside::LagArgs),
    /// Board reads from concurrent readers while commands flow, against `/healthz`.
    Reads(readside::ReadsArgs),
    /// `rebuild`, `lag` and `reads` with their defaults, one after the other.
    ReadSide(readside::ReadSideArgs),
    /// Appends, commands and stream loads on its own durable PostgreSQL 15, against one-row
    /// INSERT transactions on the same server.
    Postgres(pg::PostgresArgs),
    /// Issue 5: relay throughput, lag through NATS at a sustained rate, and a second projector
    /// process, on PostgreSQL and nats-server, against same-run baselines.
    Distributed(distributed::DistributedArgs),
}

/// Options every benchmark shares.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Measured seconds per run and concurrency.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Unmeasured warm-up seconds before each measurement.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// Runs per concurrency; the tables report the median.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Concurrent writers or HTTP clients, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    concurrency: Vec<usize>,
    /// Where the temporary databases go (must be on the disk under test, not tmpfs).
    #[arg(long, env = "LIANXI_BENCH_DIR")]
    dir: Option<PathBuf>,
    /// Before each measurement, wait until the whole machine is busy for less than this many
    /// cores (other processes: builds, tests). 0 disables the wait.
    #[arg(long, default_value_t = 0.5)]
    quiet_below: f64,
    /// The longest wait for a quiet machine before each measurement, in seconds.
    #[arg(long, default_value_t = 20.0)]
    quiet_wait: f64,
    /// Ids of the store benchmark's streams, events and commands: time-ordered like the
    /// server's (`v7`) or random like client-chosen ones (`v4`).
    #[arg(long, value_enum, default_value_t = payload::IdOrder::V7)]
    ids: payload::IdOrder,
}

/// Options of the HTTP benchmark.
#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The `lianxi` binary to spawn (default: `lianxi` next to this executable, i.e. the
    /// release build of `cargo build --release --bin lianxi`).
    #[arg(long)]
    lianxi: Option<PathBuf>,
    /// Workloads to run, comma-separated: `propose`, `propose-claim`.
    #[arg(long, value_delimiter = ',', default_value = "propose,propose-claim")]
    workload: Vec<http_bench::Workload>,
    /// Keep each run's server log (stderr, filtered by `LIANXI_LOG`) in the benchmark directory.
    #[arg(long)]
    keep_server_logs: bool,
}

/// The validated settings of one benchmark.
#[derive(Debug, Clone)]
pub struct Settings {
    pub window: load::Window,
    pub runs: usize,
    pub concurrency: Vec<usize>,
    pub dir: PathBuf,
    /// `None` when disabled.
    pub quiet: Option<procstat::QuietGate>,
    pub ids: payload::IdOrder,
    /// Keep the HTTP benchmark's server logs.
    pub keep_server_logs: bool,
}

impl Settings {
    /// Waits for a quiet machine, if asked to.
    pub async fn wait_for_quiet(&self) {
        if let Some(gate) = &self.quiet {
            gate.wait().await;
        }
    }
}

/// The longest measurement window accepted, so a typo cannot run for hours.
const MAX_SECONDS: f64 = 120.0;
/// The most runs accepted.
const MAX_RUNS: usize = 50;
/// The most concurrent workers accepted.
const MAX_CONCURRENCY: usize = 1024;

impl CommonArgs {
    fn settings(&self) -> Result<Settings> {
        if !(self.seconds > 0.0 && self.seconds <= MAX_SECONDS) {
            bail!("--seconds must be in (0, {MAX_SECONDS}]");
        }
        if !(self.warmup >= 0.0 && self.warmup <= MAX_SECONDS) {
            bail!("--warmup must be in [0, {MAX_SECONDS}]");
        }
        if self.runs == 0 || self.runs > MAX_RUNS {
            bail!("--runs must be 1 to {MAX_RUNS}");
        }
        if self.concurrency.is_empty()
            || self
                .concurrency
                .iter()
                .any(|&c| c == 0 || c > MAX_CONCURRENCY)
        {
            bail!("--concurrency takes values from 1 to {MAX_CONCURRENCY}");
        }
        if !(self.quiet_below >= 0.0 && self.quiet_wait >= 0.0 && self.quiet_wait <= 600.0) {
            bail!("--quiet-below must be ≥ 0 and --quiet-wait in [0, 600]");
        }
        let dir = self.dir.clone().unwrap_or_else(std::env::temp_dir);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the benchmark directory {}", dir.display()))?;
        Ok(Settings {
            window: load::Window {
                warmup: Duration::from_secs_f64(self.warmup),
                measure: Duration::from_secs_f64(self.seconds),
            },
            runs: self.runs,
            concurrency: self.concurrency.clone(),
            dir,
            quiet: (self.quiet_below > 0.0).then(|| procstat::QuietGate {
                below_cores: self.quiet_below,
                max_wait: Duration::from_secs_f64(self.quiet_wait),
            }),
            ids: self.ids,
            keep_server_logs: false,
        })
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the Tokio runtime")?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> Result<()> {
    let (common, http) = match &cli.command {
        Command::Store(common) => (common, None),
        Command::Http(http) => (&http.common, Some(http)),
        Command::All(http) => (&http.common, Some(http)),
        Command::Log(args) => return readside::log(args).await,
        Command::Rebuild(args) => return readside::rebuild(args).await,
        Command::Lag(args) => return readside::lag(args).await,
        Command::Reads(args) => return readside::reads(args).await,
        Command::ReadSide(args) => return readside::read_side(args).await,
        Command::Postgres(args) => return pg::run(args).await,
        Command::Distributed(args) => return distributed::run(args).await,
    };
    let mut settings = common.settings()?;
    settings.keep_server_logs = http.is_some_and(|http| http.keep_server_logs);
    let lianxi = match http {
        Some(HttpArgs {
            lianxi: Some(path), ..
        }) => Some(path.clone()),
        Some(_) => Some(http_bench::default_binary()?),
        None => None,
    };
    let machine = report::Machine::describe(&settings.dir, lianxi.as_deref()).await;
    println!("{}", machine.markdown());

    if matches!(cli.command, Command::Store(_) | Command::All(_)) {
        let results = store_bench::run(&settings).await?;
        println!("{}", report::store_table(&settings, &results));
    }
    if let (Some(http), Some(lianxi)) = (http, lianxi) {
        let results = http_bench::run(&settings, &lianxi, &http.workload).await?;
        println!("{}", report::http_table(&settings, &results));
    }
    Ok(())
}

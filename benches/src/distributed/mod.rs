//! `distributed`: issue 5's speed targets for the distributed mode (relay throughput, lag through NATS at a sustained rate, a second projector process), each against a baseline measured in the same run.
//!
//! Everything runs against one durable PostgreSQL 15 of the benchmark's own (default
//! durability, in `--dir`, on the disk under test; [`cluster::Postgres`]) with a fresh database
//! per measurement, and a throwaway nats-server with JetStream file storage per measurement
//! (`bus::throwaway_nats`). Every process is started by the harness and stopped by its pid at
//! the end, on error too. Parts (`--part`, comma-separated, all by default):
//!
//! - `relay`: the relay publishing a whole log to an empty stream ([`relay`]);
//! - `lag`: gateways, relay and one projector process (all projections) at a sustained rate
//!   ([`lag`]);
//! - `second-projector`: projector A (`board`) alone, beside projector B (the other four) on its
//!   own consumer, and beside B stopped (SIGSTOP) for the window, the control that has B's
//!   presence without its work; each run rotates which comes first ([`lag`]).
//!
//! Tables go to stdout ([`report`]), progress to stderr.

mod cluster;
mod lag;
mod relay;
mod report;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use clap::Args;
use uuid::Uuid;

use self::cluster::Postgres;
use self::lag::Layout;
use crate::http_bench;
use crate::procstat::QuietGate;
use crate::readside::lag::Options as LagOptions;
use crate::report::Machine;
use crate::{MAX_CONCURRENCY, MAX_RUNS, MAX_SECONDS};

/// The largest log the relay part builds (its messages are held in memory for the baseline).
const MAX_EVENTS: usize = 1_000_000;

/// A part of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// Relay throughput over a whole log.
    Relay,
    /// Lag through NATS at a sustained command rate.
    Lag,
    /// Projector A's lag alone, beside a second projector process, and beside it stopped.
    SecondProjector,
}

/// Options of `distributed`.
#[derive(Debug, Clone, Args)]
pub struct DistributedArgs {
    /// Which parts to run, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "relay,lag,second-projector"
    )]
    part: Vec<Part>,
    /// Where PostgreSQL's cluster and the processes' data directories go (must be on the disk
    /// under test, not tmpfs). nats-server's JetStream store goes in the system temp dir.
    #[arg(long, env = "LIANXI_BENCH_DIR")]
    dir: Option<PathBuf>,
    /// The `lianxi` binary to spawn (default: `lianxi` next to this executable).
    #[arg(long)]
    lianxi: Option<PathBuf>,
    /// Runs of each part; the tables report medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Before each measurement, wait until other processes use fewer cores than this (0: do
    /// not wait).
    #[arg(long, default_value_t = 0.5)]
    quiet_below: f64,
    /// The longest wait for a quiet machine, in seconds.
    #[arg(long, default_value_t = 20.0)]
    quiet_wait: f64,
    /// Keep every process's log (lianxi roles, nats-server, PostgreSQL) in `--dir`.
    #[arg(long)]
    keep_server_logs: bool,
    /// Relay: events in the log it publishes.
    #[arg(long, default_value_t = 100_000)]
    events: usize,
    /// Relay: tasks appending while the log is built (not measured).
    #[arg(long, default_value_t = 8)]
    appenders: usize,
    /// Relay: events per append while the log is built.
    #[arg(long, default_value_t = 100)]
    events_per_append: usize,
    /// Lag: commands per second offered, all worlds together.
    #[arg(long, default_value_t = 1_000.0)]
    rate: f64,
    /// Lag: measured seconds.
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    /// Lag and second projector: seconds at the rate before the window opens.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Lag and second projector: independent generated worlds sending in parallel.
    #[arg(long, default_value_t = 64)]
    worlds: usize,
    /// Lag and second projector: gateway processes the worlds' commands go to (world k to
    /// gateway k mod G).
    #[arg(long, default_value_t = 1)]
    gateways: usize,
    /// Second projector: measured seconds of each window.
    #[arg(long, default_value_t = 15.0)]
    second_seconds: f64,
    /// Load `pg_stat_statements` and, after each lag window, print this many of the statements
    /// that took PostgreSQL's time during it (for profiling; it costs a little throughput).
    #[arg(long, default_value_t = 0)]
    statements: usize,
}

/// The second-projector part's three measurements of A.
#[derive(Debug, Clone, Copy)]
enum Arm {
    Alone,
    Beside,
    Frozen,
}

/// The validated settings every part shares.
#[derive(Debug, Clone)]
pub struct Env {
    pub dir: PathBuf,
    pub lianxi: PathBuf,
    pub runs: usize,
    pub quiet: Option<QuietGate>,
    pub keep_server_logs: bool,
    /// The bootstrap admin token every process is started with.
    pub token: String,
}

impl Env {
    pub async fn wait_for_quiet(&self) {
        if let Some(gate) = &self.quiet {
            gate.wait().await;
        }
    }
}

impl DistributedArgs {
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
        let lianxi = match &self.lianxi {
            Some(path) => path.clone(),
            None => http_bench::default_binary()?,
        };
        Ok(Env {
            dir,
            lianxi,
            runs: self.runs,
            quiet: (self.quiet_below > 0.0).then(|| QuietGate {
                below_cores: self.quiet_below,
                max_wait: Duration::from_secs_f64(self.quiet_wait),
            }),
            keep_server_logs: self.keep_server_logs,
            token: format!("bench-{}", Uuid::new_v4().simple()),
        })
    }

    fn relay_options(&self) -> Result<relay::Options> {
        ensure!(
            (1..=MAX_EVENTS).contains(&self.events),
            "--events must be 1 to {MAX_EVENTS}"
        );
        ensure!(
            (1..=MAX_CONCURRENCY).contains(&self.appenders),
            "--appenders must be 1 to {MAX_CONCURRENCY}"
        );
        ensure!(
            (1..=10_000).contains(&self.events_per_append),
            "--events-per-append must be 1 to 10000"
        );
        Ok(relay::Options {
            events: self.events,
            appenders: self.appenders,
            events_per_append: self.events_per_append,
        })
    }

    fn lag_options(&self, seconds: f64, flag: &str) -> Result<LagOptions> {
        ensure!(
            self.rate > 0.0 && self.rate <= 100_000.0,
            "--rate must be in (0, 100000]"
        );
        ensure!(
            (1..=MAX_CONCURRENCY).contains(&self.worlds),
            "--worlds must be 1 to {MAX_CONCURRENCY}"
        );
        ensure!(
            (1..=8).contains(&self.gateways),
            "--gateways must be 1 to 8"
        );
        ensure!(
            seconds > 0.0 && seconds <= MAX_SECONDS,
            "{flag} must be in (0, {MAX_SECONDS}]"
        );
        ensure!(
            self.warmup >= 0.0 && self.warmup <= MAX_SECONDS,
            "--warmup must be in [0, {MAX_SECONDS}]"
        );
        Ok(LagOptions {
            rate: self.rate,
            window: Duration::from_secs_f64(seconds),
            warmup: Duration::from_secs_f64(self.warmup.max(0.001)),
            worlds: self.worlds,
        })
    }
}

/// Runs the parts asked for and prints their tables.
pub async fn run(args: &DistributedArgs) -> Result<()> {
    ensure!(!args.part.is_empty(), "--part names no part");
    let env = args.env()?;
    let relay_options = args.relay_options()?;
    let lag_options = args.lag_options(args.seconds, "--seconds")?;
    let second_options = args.lag_options(args.second_seconds, "--second-seconds")?;
    let (pg, facts) = Postgres::start(&env.dir, args.statements).await?;
    eprintln!(
        "distributed: PostgreSQL pid {} ({})",
        pg.postmaster,
        facts.first().map_or("", |(_, v)| v.as_str())
    );
    let result = parts(
        args,
        &env,
        &pg,
        facts,
        relay_options,
        lag_options,
        second_options,
    )
    .await;
    if env.keep_server_logs {
        if let Err(error) = pg.keep_log(&env.dir) {
            eprintln!("  {error:#}");
        }
    }
    // Stops PostgreSQL by its pid and deletes its files.
    tokio::task::spawn_blocking(move || drop(pg))
        .await
        .context("stopping PostgreSQL")?;
    result
}

async fn parts(
    args: &DistributedArgs,
    env: &Env,
    pg: &Postgres,
    facts: Vec<(&'static str, String)>,
    relay_options: relay::Options,
    lag_options: LagOptions,
    second_options: LagOptions,
) -> Result<()> {
    let mut machine = Machine::describe(&env.dir, Some(&env.lianxi)).await;
    for (name, value) in facts {
        machine.push(name, value);
    }
    machine.push("nats-server", cluster::nats_version());
    machine.push(
        "JetStream store",
        format!(
            "file storage in {} (a fresh server per measurement)",
            std::env::temp_dir().display()
        ),
    );
    println!("{}", machine.markdown());

    if args.part.contains(&Part::Relay) {
        let (log, runs) = relay::run(env, pg, relay_options).await?;
        println!("{}", report::relay(env, &log, &runs));
    }
    if args.part.contains(&Part::Lag) {
        let layout = Layout {
            gateways: args.gateways,
            projectors: vec![("projector".to_owned(), Vec::new())],
            frozen: None,
        };
        let mut runs = Vec::with_capacity(env.runs);
        for index in 1..=env.runs {
            env.wait_for_quiet().await;
            eprintln!(
                "lag run {index}/{}: {} commands/s for {:.0} s through {} gateway(s)",
                env.runs,
                lag_options.rate,
                lag_options.window.as_secs_f64(),
                args.gateways
            );
            let run = lag::measure(env, pg, &layout, lag_options).await?;
            report::progress(&run);
            runs.push(run);
        }
        println!("{}", report::lag(env, &layout, lag_options, &runs));
    }
    if args.part.contains(&Part::SecondProjector) {
        let alone = Layout {
            gateways: args.gateways,
            projectors: vec![(report::PROJECTOR_A.to_owned(), vec!["board"])],
            frozen: None,
        };
        let beside = Layout {
            gateways: args.gateways,
            projectors: vec![
                (report::PROJECTOR_A.to_owned(), vec!["board"]),
                (
                    report::PROJECTOR_B.to_owned(),
                    vec!["district-stats", "unit-profile", "items", "trace"],
                ),
            ],
            frozen: None,
        };
        // The control: B started, caught up and then stopped for the window, so A has B's
        // processes, connections and consumer beside it but none of B's work.
        let frozen = Layout {
            frozen: Some(report::PROJECTOR_B.to_owned()),
            ..beside.clone()
        };
        let mut pairs = Vec::with_capacity(env.runs);
        for index in 1..=env.runs {
            // Each arm comes first, second and third in turn, so a drift of the machine weighs
            // on all alike.
            let mut order = [Arm::Alone, Arm::Beside, Arm::Frozen];
            order.rotate_left((index - 1) % 3);
            let mut pair = report::Pair::default();
            for arm in order {
                env.wait_for_quiet().await;
                eprintln!(
                    "second-projector run {index}/{}: projector A {}",
                    env.runs,
                    match arm {
                        Arm::Alone => "alone",
                        Arm::Beside => "beside projector B",
                        Arm::Frozen => "beside projector B stopped (SIGSTOP) for the window",
                    }
                );
                let layout = match arm {
                    Arm::Alone => &alone,
                    Arm::Beside => &beside,
                    Arm::Frozen => &frozen,
                };
                let run = lag::measure(env, pg, layout, second_options).await?;
                report::progress(&run);
                let slot = match arm {
                    Arm::Alone => &mut pair.alone,
                    Arm::Beside => &mut pair.beside,
                    Arm::Frozen => &mut pair.frozen,
                };
                *slot = Some(run);
            }
            pairs.push(pair);
        }
        println!("{}", report::second(env, second_options, &pairs));
    }
    Ok(())
}

//! `postgres`: lianxi on PostgreSQL (issue 4), against one-row `INSERT` transactions on the same
//! server in the same run.
//!
//! The benchmark starts its own PostgreSQL 15 with default durability (fsync, synchronous_commit
//! and full_page_writes on; refused otherwise) in `--dir`, and stops it by pid at the end. Each
//! run measures, for each concurrency N, one after the other and each in a fresh database:
//! 1. the baseline ([`baseline`]): N connections of one-row `INSERT` transactions;
//! 2. `append`: N tasks appending one event each through `PostgresStore` (group commit);
//! 3. the `propose-claim` commands ([`commands`]), over HTTP or in process;
//!
//! and then the loads of one 1,000-event stream ([`streams`]). Tables go to stdout.

mod baseline;
mod commands;
mod cores;
mod report;
pub(crate) mod server;
mod streams;

use std::path::PathBuf;

use anyhow::{bail, ensure, Context, Result};
use clap::Args;
use store::postgres::PostgresStore;

use self::commands::Via;
use self::report::PgRun;
use self::server::DurablePostgres;
use crate::load;
use crate::payload::Ids;
use crate::procstat::CpuUse;
use crate::prom::{self, CommitStats};
use crate::report::{Machine, Measurement, Point};
use crate::store_bench::Appender;
use crate::{http_bench, CommonArgs, Settings};

/// The baseline's name in the tables.
pub const BASELINE: &str = "baseline: one-row INSERT transactions, N connections";
/// Appends through the store.
pub const STORE: &str = "append (PostgresStore)";
/// Failed runs tolerated before the benchmark gives up.
const MAX_FAILED_RUNS: usize = 2;
/// The longest stream the load benchmark builds.
const MAX_STREAM_EVENTS: usize = 100_000;

/// Options of the PostgreSQL benchmark.
#[derive(Debug, Clone, Args)]
pub struct PostgresArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// How commands are sent: `auto` (over HTTP if `lianxi serve --database-url` starts, else in
    /// process), `http`, `in-process`.
    #[arg(long, value_enum, default_value_t = Via::Auto)]
    commands: Via,
    /// The `lianxi` binary to spawn for HTTP (default: `lianxi` next to this executable).
    #[arg(long)]
    lianxi: Option<PathBuf>,
    /// Events in the stream the load benchmark reads.
    #[arg(long, default_value_t = 1_000)]
    stream_events: usize,
    /// Keep each HTTP server's log in the benchmark directory.
    #[arg(long)]
    keep_server_logs: bool,
    /// Load `pg_stat_statements` and, after each command measurement, print this many of the
    /// statements that took the server's time (for profiling; it costs a little throughput).
    #[arg(long, default_value_t = 0)]
    statements: usize,
    /// Pin PostgreSQL to CPU 1 and the harness with the servers it spawns to CPU 0, as when the
    /// database has a host of its own (`taskset`; needs two cores).
    #[arg(long)]
    split_cores: bool,
}

/// Runs the benchmark and prints its tables.
pub async fn run(args: &PostgresArgs) -> Result<()> {
    let mut settings = args.common.settings()?;
    settings.keep_server_logs = args.keep_server_logs;
    ensure!(
        (1..=MAX_STREAM_EVENTS).contains(&args.stream_events),
        "--stream-events must be 1 to {MAX_STREAM_EVENTS}"
    );
    let lianxi = match (args.commands, &args.lianxi) {
        (Via::InProcess, _) => None,
        (_, Some(path)) => Some(path.clone()),
        (Via::Http, None) => Some(http_bench::default_binary()?),
        (Via::Auto, None) => http_bench::default_binary().ok(),
    };
    let (database, facts) = DurablePostgres::start(&settings.dir, args.statements).await?;
    eprintln!(
        "postgres: PostgreSQL {} on port {}, pid {}",
        facts.first().map_or("", |(_, v)| v.as_str()),
        database.port(),
        database.postmaster
    );
    let via = choose_via(&settings, &database, args.commands, lianxi.as_deref()).await?;
    let mut machine = Machine::describe(
        &settings.dir,
        lianxi.as_deref().filter(|_| via == Via::Http),
    )
    .await;
    for (name, value) in facts {
        machine.push(name, value);
    }
    machine.push("commands sent", via.workload().to_owned());
    // After the machine is described, which counts the cores this process may use.
    let placement = if args.split_cores {
        let line = cores::split(database.postmaster)?;
        eprintln!("postgres: {line}");
        line
    } else {
        "shared: PostgreSQL, the harness and lianxi on every core".to_owned()
    };
    machine.push("placement", placement);
    println!("{}", machine.markdown());

    let mut runs = Vec::with_capacity(settings.runs);
    let mut failed_runs = 0;
    for index in 1..=settings.runs {
        eprintln!("postgres run {index}/{}", settings.runs);
        match one_run(
            &settings,
            &database,
            via,
            lianxi.as_deref(),
            args.stream_events,
        )
        .await
        {
            Ok(run) => runs.push(run),
            Err(error) => {
                eprintln!("postgres run {index} FAILED: {error:#}");
                failed_runs += 1;
                ensure!(
                    failed_runs <= MAX_FAILED_RUNS,
                    "{failed_runs} runs failed; giving up"
                );
            }
        }
    }
    ensure!(!runs.is_empty(), "every run failed");
    println!(
        "{}",
        report::tables(
            &settings,
            &runs,
            failed_runs,
            via.workload(),
            args.stream_events
        )
    );
    // Stops the server by its pid and deletes its files.
    drop(database);
    Ok(())
}

/// HTTP when asked and possible; in process otherwise (said on stderr and in the tables).
async fn choose_via(
    settings: &Settings,
    database: &DurablePostgres,
    asked: Via,
    lianxi: Option<&std::path::Path>,
) -> Result<Via> {
    let Some(binary) = lianxi.filter(|_| asked != Via::InProcess) else {
        if asked == Via::Auto {
            eprintln!("  no lianxi binary next to the harness: commands go in process");
        }
        return Ok(Via::InProcess);
    };
    let probe = database
        .with_fresh(
            |url| async move { commands::serve_runs_on_postgres(settings, binary, &url).await },
        )
        .await;
    match (probe, asked) {
        (Ok(()), _) => Ok(Via::Http),
        (Err(error), Via::Http) => bail!("lianxi serve --database-url does not start: {error:#}"),
        (Err(error), _) => {
            eprintln!(
                "  `{} serve --database-url` does not start ({}); commands go in process",
                binary.display(),
                format!("{error:#}").lines().next().unwrap_or("")
            );
            Ok(Via::InProcess)
        }
    }
}

/// One run: every concurrency's baseline, appends and commands, then the stream loads.
async fn one_run(
    settings: &Settings,
    database: &DurablePostgres,
    via: Via,
    lianxi: Option<&std::path::Path>,
    stream_events: usize,
) -> Result<PgRun> {
    let postmaster = database.postmaster;
    let mut points = Vec::new();
    for &concurrency in &settings.concurrency {
        settings.wait_for_quiet().await;
        let measurement = database
            .with_fresh(|url| async move {
                baseline::measure(settings, &url, postmaster, concurrency, settings.ids).await
            })
            .await
            .context("the INSERT baseline")?;
        report_line("baseline INSERT", concurrency, &measurement);
        points.push(point(BASELINE, concurrency, measurement));

        settings.wait_for_quiet().await;
        let measurement = database
            .with_fresh(|url| async move {
                measure_appends(settings, &url, postmaster, concurrency).await
            })
            .await
            .context("the appends")?;
        report_line("append", concurrency, &measurement);
        points.push(point(STORE, concurrency, measurement));

        settings.wait_for_quiet().await;
        let measurement = database
            .with_fresh(|url| async move {
                match (via, lianxi) {
                    (Via::Http, Some(binary)) => {
                        commands::measure_http(settings, binary, &url, postmaster, concurrency)
                            .await
                    }
                    _ => {
                        commands::measure_in_process(settings, &url, postmaster, concurrency).await
                    }
                }
            })
            .await
            .context("the commands")?;
        report_line("propose-claim", concurrency, &measurement);
        points.push(point(via.workload(), concurrency, measurement));
    }
    let loads = database
        .with_fresh(|url| async move {
            streams::measure(settings, &url, postmaster, stream_events).await
        })
        .await
        .context("the stream loads")?;
    Ok(PgRun { points, loads })
}

/// Prints how the log's tables were read during a measurement (sequential scans and the rows
/// they read, index scans): a plan that scans a growing table shows here first. PostgreSQL
/// flushes these counters about once a second, so the last second may be missing.
pub(crate) async fn report_scans(pool: &sqlx::PgPool) {
    let scans: Result<Vec<(String, i64, i64, i64)>, sqlx::Error> = sqlx::query_as(
        "SELECT relname::text, coalesce(seq_scan, 0), coalesce(seq_tup_read, 0), \
                coalesce(idx_scan, 0) \
         FROM pg_stat_user_tables WHERE relname IN ('events', 'commands') ORDER BY relname",
    )
    .fetch_all(pool)
    .await;
    match scans {
        Ok(scans) => {
            let listed: Vec<String> = scans
                .iter()
                .map(|(table, seq, rows, idx)| {
                    format!("{table}: {seq} seq scans reading {rows} rows, {idx} index scans")
                })
                .collect();
            eprintln!("    table reads: {}", listed.join("; "));
        }
        Err(error) => eprintln!("    table reads unknown: {error}"),
    }
}

fn point(workload: &str, concurrency: usize, measurement: Measurement) -> Point {
    Point {
        workload: workload.to_owned(),
        concurrency,
        measurement,
    }
}

fn report_line(what: &str, concurrency: usize, m: &Measurement) {
    eprintln!(
        "  {what:<16} {concurrency:>3}: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, {} failed",
        m.load.rate(),
        m.load.latency_ms(0.5),
        m.load.latency_ms(0.99),
        m.load.failed()
    );
}

/// `concurrency` writers appending through a fresh `PostgresStore` on the empty database at
/// `url`; checks afterwards that the log holds exactly the acknowledged appends.
async fn measure_appends(
    settings: &Settings,
    url: &str,
    postmaster: u32,
    concurrency: usize,
) -> Result<Measurement> {
    let metrics = prom::local_recorder()?;
    let store = PostgresStore::connect(url)
        .await
        .context("opening the store")?;
    let ops = (0..concurrency)
        .map(|_| Appender {
            store: store.clone(),
            ids: Ids::new(settings.ids),
        })
        .collect();
    let (load, before, after) = load::measure(ops, settings.window, || {
        let snapshot = (
            CpuUse::with_database(None, Some(postmaster)),
            CommitStats::parse(&metrics.render()),
        );
        async move { Ok(snapshot) }
    })
    .await?;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(store.pool())
        .await
        .context("counting the log's events")?;
    ensure!(
        u64::try_from(events).ok() == Some(load.total_ok),
        "the log holds {events} events but {} appends were acknowledged",
        load.total_ok
    );
    report_scans(store.pool()).await;
    Ok(Measurement {
        load,
        cpu: after.0.since(&before.0),
        commits: Some(after.1.since(&before.1)),
        projection_lag: None,
    })
}

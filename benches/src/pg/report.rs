//! The PostgreSQL benchmark's tables: every figure beside the baseline measured at the same
//! concurrency in the same run, medians over runs (the statistics of [`crate::report`]).

use std::fmt::Write as _;

use crate::payload::Payload;
use crate::report::{header_for, median, ms, opt, thousands, Measurement, Point, Summary};
use crate::Settings;

use super::{streams, BASELINE, STORE};

/// One run of the PostgreSQL benchmark.
#[derive(Debug, Clone)]
pub struct PgRun {
    /// Baseline, appends and commands at every concurrency.
    pub points: Vec<Point>,
    /// The stream loads (concurrency 1).
    pub loads: Vec<Point>,
}

/// Every run's `workload` at `concurrency` in `points_of(run)`, each with the same run's
/// `baseline` at that concurrency.
fn series<'a>(
    runs: &'a [PgRun],
    points_of: fn(&PgRun) -> &Vec<Point>,
    baseline: &str,
    workload: &str,
    concurrency: usize,
) -> Vec<(&'a Measurement, &'a Measurement)> {
    runs.iter()
        .filter_map(|run| {
            let points = points_of(run);
            let find = |name: &str| {
                points
                    .iter()
                    .find(|p| p.workload == name && p.concurrency == concurrency)
                    .map(|p| &p.measurement)
            };
            Some((find(workload)?, find(baseline)?))
        })
        .collect()
}

/// The workloads in the order they were measured.
fn workloads(runs: &[PgRun], points_of: fn(&PgRun) -> &Vec<Point>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for point in runs.iter().flat_map(|run| points_of(run).iter()) {
        if !names.contains(&point.workload) {
            names.push(point.workload.clone());
        }
    }
    names
}

fn us(value: Option<f64>) -> String {
    opt(value, |v| format!("{v:.0}"))
}

/// The markdown of the whole benchmark.
pub fn tables(
    settings: &Settings,
    runs: &[PgRun],
    failed_runs: usize,
    commands: &str,
    stream_events: usize,
) -> String {
    let mut out = header_for(
        settings,
        runs.len(),
        failed_runs,
        "PostgreSQL: appends and commands against one-row INSERT transactions",
    );
    let payload = Payload::new(uuid::Uuid::nil(), uuid::Uuid::nil());
    let _ = writeln!(
        out,
        "One PostgreSQL 15 server for the whole run, default durability (fsync, synchronous_commit, \
         full_page_writes on), a fresh database per measurement. Baseline: N connections, each a \
         loop of one auto-committed one-row `INSERT` into a table with the columns and indexes of \
         lianxi's `events` ({} bytes of JSON data + {} of metadata). `append`: N tasks, each \
         `EventStore::append` of one such event to a new stream through `PostgresStore` (group \
         commit). Commands: `{commands}` (ProposeProject of a fresh project, then ClaimProject of \
         it; each command one operation). × baseline compares with the baseline at the same N in \
         the same run. CPU µs per operation: \"harness\" is this process (the load generator, and \
         the store and command handler when they run in process), \"PostgreSQL\" all of the \
         server's processes.\n",
        payload.data_bytes(),
        payload.metadata_bytes(),
    );
    out.push_str(
        "| N | what | ops/s | min – max | × baseline | p50 ms | p99 ms | requests / commit | ms / commit | lianxi serve CPU µs / op | PostgreSQL CPU µs / op | harness CPU µs / op | cores busy | other procs / steal, cores | failed |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    let points: fn(&PgRun) -> &Vec<Point> = |run| &run.points;
    let names = workloads(runs, points);
    for &concurrency in &settings.concurrency {
        for name in &names {
            let series = series(runs, points, BASELINE, name, concurrency);
            if series.is_empty() {
                continue;
            }
            let s = Summary::of(&series);
            let _ = writeln!(
                out,
                "| {concurrency} | {name} | {} | {} – {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                opt(s.rate, thousands),
                opt(s.min, thousands),
                opt(s.max, thousands),
                opt(s.ratio, |v| format!("{v:.2}")),
                opt(s.p50, ms),
                opt(s.p99, ms),
                opt(s.batch, |v| format!("{v:.1}")),
                opt(s.commit_ms, ms),
                us(s.server_us),
                us(s.database_us),
                us(s.harness_us),
                opt(s.cores, |v| format!("{v:.2}")),
                s.noise_cell(),
                s.failures_cell(),
            );
        }
    }

    let loads: fn(&PgRun) -> &Vec<Point> = |run| &run.loads;
    let _ = writeln!(
        out,
        "\nLoading one stream of {stream_events} events, one load after the other from one task \
         (× baseline: loads/s ÷ the plain SELECT's loads/s, same run):\n"
    );
    out.push_str(
        "| load | loads/s | × baseline | p50 ms | p99 ms | harness CPU µs / load | PostgreSQL CPU µs / load | other procs / steal, cores | failed |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for name in workloads(runs, loads) {
        let series = series(runs, loads, streams::BASELINE, &name, 1);
        let s = Summary::of(&series);
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} |",
            opt(s.rate, thousands),
            opt(s.ratio, |v| format!("{v:.2}")),
            opt(s.p50, ms),
            opt(s.p99, ms),
            us(s.harness_us),
            us(s.database_us),
            s.noise_cell(),
            s.failures_cell(),
        );
    }

    out.push('\n');
    let at_64 = |name: &str| {
        let series = series(runs, points, BASELINE, name, 64);
        (!series.is_empty()).then(|| Summary::of(&series))
    };
    if let Some(s) = at_64(commands) {
        let met = s.rate.is_some_and(|rate| rate >= 5_000.0) && s.p99.is_some_and(|p| p <= 30.0);
        let _ = writeln!(
            out,
            "Target ≥ 5,000 commands/s with p99 ≤ 30 ms at 64 clients: {} commands/s, p99 {} ms, {}.",
            opt(s.rate, thousands),
            opt(s.p99, ms),
            if met { "met" } else { "NOT met" },
        );
        let above = s.ratio.is_some_and(|ratio| ratio > 1.0);
        let _ = writeln!(
            out,
            "Target above the one-row INSERT baseline at 64 clients: commands {} × baseline, {}.",
            opt(s.ratio, |v| format!("{v:.2}")),
            if above { "met" } else { "NOT met" },
        );
    }
    if let Some(s) = at_64(STORE) {
        let _ = writeln!(
            out,
            "Appends at 64 writers: {} appends/s, {} × the one-row INSERT baseline.",
            opt(s.rate, thousands),
            opt(s.ratio, |v| format!("{v:.2}")),
        );
    }
    for name in [
        streams::READ_STREAM,
        streams::WHOLE_FOLD,
        streams::HANDLER_LOAD,
    ] {
        let series = series(runs, loads, streams::BASELINE, name, 1);
        if series.is_empty() {
            continue;
        }
        let s = Summary::of(&series);
        let met = s.p50.is_some_and(|p| p <= 2.0);
        let _ = writeln!(
            out,
            "Target: loading a {stream_events}-event stream ≤ 2 ms, `{name}`: p50 {} ms, p99 {} ms, {} (on the median).",
            opt(s.p50, ms),
            opt(s.p99, ms),
            if met { "met" } else { "NOT met" },
        );
    }
    let slowest_baseline = median(
        runs.iter()
            .flat_map(|run| run.points.iter())
            .filter(|p| p.workload == BASELINE && p.concurrency == 1)
            .map(|p| Some(p.measurement.load.latency_ms(0.5))),
    );
    let _ = writeln!(
        out,
        "One-row INSERT at 1 connection, median latency {} ms: about one WAL flush (fsync) per commit on this disk.",
        opt(slowest_baseline, ms),
    );
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::load::LoadResult;
    use crate::procstat::CpuUse;

    fn point(workload: &str, concurrency: usize, ok: u64) -> Point {
        Point {
            workload: workload.to_owned(),
            concurrency,
            measurement: Measurement {
                load: LoadResult {
                    ok,
                    elapsed: Duration::from_secs(1),
                    latencies_us: vec![1_000; usize::try_from(ok).unwrap_or(0)],
                    ..LoadResult::default()
                },
                cpu: CpuUse::default(),
                commits: None,
                projection_lag: None,
            },
        }
    }

    #[test]
    fn each_figure_is_paired_with_the_baseline_at_its_own_concurrency() {
        let run = |base_1: u64, base_64: u64| PgRun {
            points: vec![
                point(BASELINE, 1, base_1),
                point(STORE, 1, 100),
                point(BASELINE, 64, base_64),
                point(STORE, 64, 1_000),
            ],
            loads: Vec::new(),
        };
        let runs = vec![run(100, 500), run(50, 250), run(200, 1_000)];
        let points: fn(&PgRun) -> &Vec<Point> = |run| &run.points;
        let s1 = Summary::of(&series(&runs, points, BASELINE, STORE, 1));
        let s64 = Summary::of(&series(&runs, points, BASELINE, STORE, 64));
        assert_eq!(s1.ratio, Some(1.0));
        assert_eq!(s64.ratio, Some(2.0));
        assert_eq!(workloads(&runs, points), vec![BASELINE, STORE]);
    }
}

//! Results and their markdown: medians over runs, ratios to the same run's baseline, and where
//! the CPU went, ready to paste into BENCHMARKS.md.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::baseline;
use crate::load::LoadResult;
use crate::payload::{IdOrder, Payload};
use crate::procstat::{CpuSnapshot, CpuUse};
use crate::prom::CommitStats;
use crate::Settings;

/// What one measurement saw.
#[derive(Debug, Clone)]
pub struct Measurement {
    pub load: LoadResult,
    /// The CPU used during the window by the harness, the server (HTTP only) and the machine.
    pub cpu: CpuUse,
    /// The store's group commits during the window (not for the baseline).
    pub commits: Option<CommitStats>,
    /// How far the server's slowest projection was behind the log when the window closed, in
    /// events (HTTP only).
    pub projection_lag: Option<i64>,
}

impl Measurement {
    /// CPU microseconds per successful operation of a snapshot.
    pub(crate) fn micros_per_op(&self, seconds: f64) -> Option<f64> {
        (self.load.ok > 0).then(|| seconds * 1e6 / self.load.ok as f64)
    }

    /// CPU seconds per second of the window.
    pub(crate) fn cores(&self, seconds: f64) -> Option<f64> {
        let elapsed = self.load.elapsed.as_secs_f64();
        (elapsed > 0.0).then(|| seconds / elapsed)
    }

    /// Cores kept busy by the harness, the server and the database server together.
    pub(crate) fn cores_busy(&self) -> Option<f64> {
        let server = self.cpu.server.as_ref().map_or(0.0, |cpu| cpu.process);
        let database = self.cpu.database.as_ref().map_or(0.0, |cpu| cpu.process);
        self.cores(self.cpu.harness.process + server + database)
    }
}

/// One workload at one concurrency in one run.
#[derive(Debug, Clone)]
pub struct Point {
    pub workload: String,
    pub concurrency: usize,
    pub measurement: Measurement,
}

/// One run: its baseline and its measurements.
#[derive(Debug, Clone)]
pub struct Run {
    pub baseline: Measurement,
    pub points: Vec<Point>,
}

/// All runs of one benchmark.
#[derive(Debug, Clone)]
pub struct RunSet {
    pub runs: Vec<Run>,
    /// Runs that failed and are left out (reported on stderr).
    pub failed_runs: usize,
}

impl RunSet {
    /// The (workload, concurrency) keys in the order they were measured.
    fn keys(&self) -> Vec<(String, usize)> {
        let mut keys: Vec<(String, usize)> = Vec::new();
        for point in self.runs.iter().flat_map(|run| &run.points) {
            let key = (point.workload.clone(), point.concurrency);
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        keys
    }

    /// Every run's measurement of `key`, with that run's baseline.
    fn series(&self, key: &(String, usize)) -> Vec<(&Measurement, &Measurement)> {
        self.runs
            .iter()
            .flat_map(|run| {
                run.points
                    .iter()
                    .filter(|p| p.workload == key.0 && p.concurrency == key.1)
                    .map(move |p| (&p.measurement, &run.baseline))
            })
            .collect()
    }

    fn baselines(&self) -> Vec<&Measurement> {
        self.runs.iter().map(|run| &run.baseline).collect()
    }
}

/// The median of the values present; `None` when there are none.
pub fn median(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let mut values: Vec<f64> = values
        .into_iter()
        .flatten()
        .filter(|v| v.is_finite())
        .collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 0 {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

/// `12,345` for counts and rates.
pub fn thousands(value: f64) -> String {
    let rounded = value.round();
    let digits = format!("{:.0}", rounded.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if rounded < 0.0 {
        out.insert(0, '-');
    }
    out
}

pub(crate) fn opt(value: Option<f64>, format: impl Fn(f64) -> String) -> String {
    value.map_or_else(|| "–".to_owned(), format)
}

pub(crate) fn ms(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.1}")
    }
}

/// The command line that produced a table, as one would type it.
pub(crate) fn invocation() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("cargo run --release -p lianxi-bench -- {}", args.join(" "))
}

/// The machine and software a table was measured on.
pub struct Machine {
    facts: Vec<(&'static str, String)>,
}

impl Machine {
    /// Collects what can be learned cheaply; unknown facts read "unknown". `lianxi` is the
    /// server binary, when the HTTP benchmark runs.
    pub async fn describe(dir: &Path, lianxi: Option<&Path>) -> Machine {
        let unknown = || "unknown".to_owned();
        let cores =
            std::thread::available_parallelism().map_or_else(|_| unknown(), |n| n.to_string());
        let cpu = read("/proc/cpuinfo")
            .and_then(|text| {
                text.lines()
                    .find(|line| line.starts_with("model name"))
                    .and_then(|line| line.split_once(':'))
                    .map(|(_, model)| model.trim().to_owned())
            })
            .unwrap_or_else(unknown);
        let kernel = read("/proc/sys/kernel/osrelease")
            .map(|text| text.trim().to_owned())
            .unwrap_or_else(unknown);
        let memory = read("/proc/meminfo")
            .and_then(|text| {
                let kib: f64 = text
                    .lines()
                    .find(|line| line.starts_with("MemTotal:"))?
                    .split_whitespace()
                    .nth(1)?
                    .parse()
                    .ok()?;
                Some(format!("{:.1} GiB", kib / 1024.0 / 1024.0))
            })
            .unwrap_or_else(unknown);
        let sqlite = baseline::sqlite_version()
            .await
            .unwrap_or_else(|_| unknown());
        let harness = std::env::current_exe()
            .map(|exe| built(&exe))
            .unwrap_or_else(|_| unknown());
        let mut facts = vec![
            (
                "date (UTC)",
                chrono::Utc::now().format("%Y-%m-%d %H:%M").to_string(),
            ),
            ("cores", cores),
            ("CPU", cpu),
            ("memory", memory),
            ("kernel", kernel),
            (
                "data directory",
                format!("{} ({})", dir.display(), filesystem(dir)),
            ),
            ("SQLite (bundled with sqlx)", sqlite),
            ("workspace", source_state()),
            ("lianxi-bench binary", harness),
        ];
        if let Some(lianxi) = lianxi {
            facts.push(("lianxi binary", built(lianxi)));
        }
        Machine { facts }
    }

    /// Adds a fact (the database server's version and settings, say).
    pub fn push(&mut self, name: &'static str, value: String) {
        self.facts.push((name, value));
    }

    pub fn markdown(&self) -> String {
        let mut out = String::from("### Machine\n\n| | |\n|---|---|\n");
        for (name, value) in &self.facts {
            let _ = writeln!(out, "| {name} | {value} |");
        }
        out
    }
}

/// `path, built 2026-01-02 03:04 UTC` (the file's modification time).
fn built(path: &Path) -> String {
    let modified = std::fs::metadata(path)
        .and_then(|meta| meta.modified())
        .map(|time| {
            chrono::DateTime::<chrono::Utc>::from(time)
                .format("%Y-%m-%d %H:%M UTC")
                .to_string()
        })
        .unwrap_or_else(|_| "unknown".to_owned());
    format!("{}, built {modified}", path.display())
}

/// The workspace's commit and how many paths differ from it, so a table can be tied to a state
/// of the code (the workspace is edited concurrently).
fn source_state() -> String {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or_else(|| Path::new("."));
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(workspace)
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .and_then(|out| String::from_utf8(out.stdout).ok())
    };
    match (
        git(&["rev-parse", "--short", "HEAD"]),
        git(&["status", "--porcelain"]),
    ) {
        (Some(head), Some(status)) => format!(
            "commit {} + {} changed or new paths (at run time)",
            head.trim(),
            status.lines().count()
        ),
        _ => "unknown (no git)".to_owned(),
    }
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// `ext4 on /dev/vda` for the mount holding `dir`, from `/proc/mounts`.
fn filesystem(dir: &Path) -> String {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    let Some(mounts) = read("/proc/mounts") else {
        return "filesystem unknown".to_owned();
    };
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let device = fields.next()?;
            let point = fields.next()?;
            let kind = fields.next()?;
            dir.starts_with(point).then(|| {
                (
                    point.len(),
                    format!("{kind} on {device}, mounted at {point}"),
                )
            })
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "filesystem unknown".to_owned(), |(_, text)| text)
}

/// Medians of one (workload, concurrency) over the runs.
pub(crate) struct Summary {
    pub(crate) runs: usize,
    pub(crate) rate: Option<f64>,
    pub(crate) min: Option<f64>,
    pub(crate) max: Option<f64>,
    pub(crate) ratio: Option<f64>,
    pub(crate) p50: Option<f64>,
    pub(crate) p99: Option<f64>,
    pub(crate) batch: Option<f64>,
    pub(crate) commit_ms: Option<f64>,
    pub(crate) harness_us: Option<f64>,
    pub(crate) server_us: Option<f64>,
    /// CPU µs per operation of the database server (all its processes).
    pub(crate) database_us: Option<f64>,
    pub(crate) cores: Option<f64>,
    /// The slowest projection's lag at the window's end, in events.
    lag: Option<f64>,
    /// Cores used by other processes on the machine (noise).
    others: Option<f64>,
    /// Cores stolen by the hypervisor (noise).
    steal: Option<f64>,
    failed: u64,
    top_failure: Option<String>,
}

impl Summary {
    /// The medians of `series`: each run's measurement paired with the baseline it is compared
    /// with (the same run's).
    pub(crate) fn of(series: &[(&Measurement, &Measurement)]) -> Summary {
        let rates: Vec<f64> = series.iter().map(|(m, _)| m.load.rate()).collect();
        let mut failures: BTreeMap<&str, u64> = BTreeMap::new();
        for (m, _) in series {
            for (label, count) in &m.load.failures {
                *failures.entry(label.as_str()).or_default() += count;
            }
        }
        Summary {
            runs: series.len(),
            rate: median(rates.iter().copied().map(Some)),
            min: rates.iter().copied().reduce(f64::min),
            max: rates.iter().copied().reduce(f64::max),
            ratio: median(series.iter().map(|(m, base)| {
                let base = base.load.rate();
                (base > 0.0).then(|| m.load.rate() / base)
            })),
            p50: median(series.iter().map(|(m, _)| Some(m.load.latency_ms(0.5)))),
            p99: median(series.iter().map(|(m, _)| Some(m.load.latency_ms(0.99)))),
            batch: median(
                series
                    .iter()
                    .map(|(m, _)| m.commits.as_ref().and_then(CommitStats::mean_batch)),
            ),
            commit_ms: median(
                series
                    .iter()
                    .map(|(m, _)| m.commits.as_ref().and_then(CommitStats::mean_commit_ms)),
            ),
            harness_us: median(
                series
                    .iter()
                    .map(|(m, _)| m.micros_per_op(m.cpu.harness.process)),
            ),
            server_us: median(series.iter().map(|(m, _)| {
                m.cpu
                    .server
                    .as_ref()
                    .and_then(|cpu| m.micros_per_op(cpu.process))
            })),
            database_us: median(series.iter().map(|(m, _)| {
                m.cpu
                    .database
                    .as_ref()
                    .and_then(|cpu| m.micros_per_op(cpu.process))
            })),
            cores: median(series.iter().map(|(m, _)| m.cores_busy())),
            lag: median(
                series
                    .iter()
                    .map(|(m, _)| m.projection_lag.map(|lag| lag as f64)),
            ),
            others: median(series.iter().map(|(m, _)| m.cores(m.cpu.others()))),
            steal: median(series.iter().map(|(m, _)| m.cores(m.cpu.system.steal))),
            failed: failures.values().sum(),
            top_failure: failures
                .iter()
                .max_by_key(|(_, count)| **count)
                .map(|(label, count)| format!("{count}× {label}")),
        }
    }

    pub(crate) fn noise_cell(&self) -> String {
        format!(
            "{} / {}",
            opt(self.others, |v| format!("{v:.2}")),
            opt(self.steal, |v| format!("{v:.2}"))
        )
    }

    pub(crate) fn failures_cell(&self) -> String {
        match &self.top_failure {
            Some(top) if self.failed > 0 => format!("{} ({top})", thousands(self.failed as f64)),
            _ => "0".to_owned(),
        }
    }
}

/// The baseline's summary (its own ratio is 1 by definition).
fn baseline_summary(set: &RunSet) -> Summary {
    let baselines = set.baselines();
    let pairs: Vec<(&Measurement, &Measurement)> = baselines.iter().map(|b| (*b, *b)).collect();
    Summary::of(&pairs)
}

/// CPU seconds of a snapshot split into the async runtime's workers, the store's writer
/// thread, the SQLite worker threads and the rest of the process.
///
/// Tokio names its workers `tokio-rt-worker` (older releases: `tokio-runtime-worker`), the
/// store its writer `lianxi-store-writer`, sqlx its SQLite threads `sqlx-sqlite-worker-N`;
/// `comm` keeps 15 bytes of each. A store whose writer runs as a task on the shared runtime
/// shows 0 for the writer thread: its time is in the tokio column.
pub(crate) fn split(cpu: &CpuSnapshot) -> [f64; 4] {
    let group = |prefix: &str| -> f64 {
        cpu.threads
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(_, seconds)| seconds)
            .sum()
    };
    let tokio = group("tokio-r");
    let writer = group("lianxi-store");
    let sqlite = group("sqlx-sqlite");
    [
        tokio,
        writer,
        sqlite,
        (cpu.process - tokio - writer - sqlite).max(0.0),
    ]
}

/// The table of CPU µs per operation by thread group, medians over runs.
fn cpu_table(set: &RunSet, with_server: bool) -> String {
    let mut out = String::new();
    if with_server {
        out.push_str(
            "| workload | N | server: tokio workers | server: store writer thread | server: SQLite threads | server: other | harness (all threads) |\n\
             |---|---:|---:|---:|---:|---:|---:|\n",
        );
    } else {
        out.push_str(
            "| workload | N | tokio workers (harness + store entry) | store writer thread | SQLite threads (sqlx workers) | other |\n\
             |---|---:|---:|---:|---:|---:|\n",
        );
    }
    for key in set.keys() {
        let series = set.series(&key);
        let per_op = |pick: &dyn Fn(&Measurement) -> Option<f64>| {
            opt(median(series.iter().map(|(m, _)| pick(m))), |v| {
                format!("{v:.0}")
            })
        };
        let columns: Vec<String> = if with_server {
            let server = |i: usize| {
                per_op(&|m: &Measurement| {
                    m.cpu
                        .server
                        .as_ref()
                        .and_then(|cpu| m.micros_per_op(split(cpu)[i]))
                })
            };
            let mut columns: Vec<String> = (0..4).map(server).collect();
            columns.push(per_op(&|m: &Measurement| {
                m.micros_per_op(m.cpu.harness.process)
            }));
            columns
        } else {
            (0..4)
                .map(|i| per_op(&|m: &Measurement| m.micros_per_op(split(&m.cpu.harness)[i])))
                .collect()
        };
        let _ = writeln!(out, "| {} | {} | {} |", key.0, key.1, columns.join(" | "));
    }
    out
}

fn header(settings: &Settings, set: &RunSet, title: &str) -> String {
    header_for(settings, set.runs.len(), set.failed_runs, title)
}

/// A table's title and how it was measured, for `runs` runs (`failed_runs` more left out).
pub(crate) fn header_for(
    settings: &Settings,
    runs: usize,
    failed_runs: usize,
    title: &str,
) -> String {
    let quiet = settings.quiet.map_or_else(
        || "no wait for a quiet machine".to_owned(),
        |gate| {
            format!(
                "each measurement waited (at most {:.0} s) for other processes to use < {:.2} cores",
                gate.max_wait.as_secs_f64(),
                gate.below_cores
            )
        },
    );
    let failed = if failed_runs > 0 {
        format!(" ({failed_runs} more run(s) failed and are left out, see stderr)")
    } else {
        String::new()
    };
    format!(
        "### {title}\n\n`{}`: {} run(s){failed} of {:.1} s (after {:.1} s warm-up) per concurrency; {quiet}; \
         medians over runs; × baseline is the median over runs of (figure ÷ the same run's baseline); \
         \"other procs / steal\" is the CPU other processes used and the hypervisor stole during the \
         measurement (noise).\n\n",
        invocation(),
        runs,
        settings.window.measure.as_secs_f64(),
        settings.window.warmup.as_secs_f64(),
    )
}

/// The store benchmark's markdown.
pub fn store_table(settings: &Settings, set: &RunSet) -> String {
    let mut out = header(
        settings,
        set,
        "Store: durable appends/s through SqliteStore",
    );
    let payload = Payload::new(uuid::Uuid::nil(), uuid::Uuid::nil());
    let _ = writeln!(
        out,
        "Each append: one event of {} bytes of JSON data + {} bytes of metadata to a new stream \
         (`ExpectedVersion::NoStream`), ids {}; the baseline inserts the same row shape.\n",
        payload.data_bytes(),
        payload.metadata_bytes(),
        match settings.ids {
            IdOrder::V7 => "time-ordered (v7, as the server makes them)",
            IdOrder::V4 => "random (v4, as a client may choose them)",
        }
    );
    out.push_str(
        "| writers | appends/s | min – max | × baseline | p50 ms | p99 ms | requests / commit | ms / commit | CPU µs / append | cores busy | other procs / steal, cores | failed |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    let base = baseline_summary(set);
    let _ = writeln!(
        out,
        "| baseline: 1 connection, 1 commit per event | {} | {} – {} | 1.00 | {} | {} | 1 | {} | {} | {} | {} | {} |",
        opt(base.rate, thousands),
        opt(base.min, thousands),
        opt(base.max, thousands),
        opt(base.p50, ms),
        opt(base.p99, ms),
        opt(base.p50, ms),
        opt(base.harness_us, |v| format!("{v:.0}")),
        opt(base.cores, |v| format!("{v:.2}")),
        base.noise_cell(),
        base.failures_cell(),
    );
    for key in set.keys() {
        let s = Summary::of(&set.series(&key));
        let _ = writeln!(
            out,
            "| {} | {} | {} – {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            key.1,
            opt(s.rate, thousands),
            opt(s.min, thousands),
            opt(s.max, thousands),
            opt(s.ratio, |v| format!("{v:.2}")),
            opt(s.p50, ms),
            opt(s.p99, ms),
            opt(s.batch, |v| format!("{v:.1}")),
            opt(s.commit_ms, ms),
            opt(s.harness_us, |v| format!("{v:.0}")),
            opt(s.cores, |v| format!("{v:.2}")),
            s.noise_cell(),
            s.failures_cell(),
        );
    }
    let _ = write!(
        out,
        "\nThe baseline's \"ms / commit\" is its median latency. CPU per append by thread (µs, median over runs):\n\n{}",
        cpu_table(set, false)
    );
    out.push('\n');
    for key in set.keys().into_iter().filter(|key| key.1 == 64) {
        let s = Summary::of(&set.series(&key));
        let met = s.rate.is_some_and(|rate| rate >= 10_000.0);
        let _ = writeln!(
            out,
            "Target ≥ 10,000 appends/s with 64 writers: {} appends/s, {} (median of {} runs).",
            opt(s.rate, thousands),
            if met { "met" } else { "NOT met" },
            s.runs
        );
    }
    out
}

/// The HTTP benchmark's markdown.
pub fn http_table(settings: &Settings, set: &RunSet) -> String {
    let mut out = header(
        settings,
        set,
        "HTTP: commands/s against `lianxi serve` on loopback",
    );
    out.push_str(
        "| workload | clients | commands/s | min – max | × baseline | p50 ms | p99 ms | requests / commit | ms / commit | server CPU µs / cmd | harness CPU µs / cmd | cores busy | other procs / steal, cores | projection lag at end, events | failed |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    let base = baseline_summary(set);
    let _ = writeln!(
        out,
        "| baseline: 1 connection, 1 commit per event | 1 | {} | {} – {} | 1.00 | {} | {} | 1 | {} | – | {} | {} | {} | – | {} |",
        opt(base.rate, thousands),
        opt(base.min, thousands),
        opt(base.max, thousands),
        opt(base.p50, ms),
        opt(base.p99, ms),
        opt(base.p50, ms),
        opt(base.harness_us, |v| format!("{v:.0}")),
        opt(base.cores, |v| format!("{v:.2}")),
        base.noise_cell(),
        base.failures_cell(),
    );
    for key in set.keys() {
        let s = Summary::of(&set.series(&key));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} – {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            key.0,
            key.1,
            opt(s.rate, thousands),
            opt(s.min, thousands),
            opt(s.max, thousands),
            opt(s.ratio, |v| format!("{v:.2}")),
            opt(s.p50, ms),
            opt(s.p99, ms),
            opt(s.batch, |v| format!("{v:.1}")),
            opt(s.commit_ms, ms),
            opt(s.server_us, |v| format!("{v:.0}")),
            opt(s.harness_us, |v| format!("{v:.0}")),
            opt(s.cores, |v| format!("{v:.2}")),
            s.noise_cell(),
            opt(s.lag, thousands),
            s.failures_cell(),
        );
    }
    let _ = write!(
        out,
        "\nThe server and the harness share the machine's cores. CPU per command by thread (µs, median over runs):\n\n{}",
        cpu_table(set, true)
    );
    out.push('\n');
    for key in set.keys().into_iter().filter(|key| key.1 == 64) {
        let s = Summary::of(&set.series(&key));
        let met = s.rate.is_some_and(|rate| rate >= 5_000.0) && s.p99.is_some_and(|p99| p99 < 25.0);
        let _ = writeln!(
            out,
            "Target ≥ 5,000 commands/s with p99 < 25 ms at 64 clients, `{}`: {} commands/s, p99 {} ms, {}.",
            key.0,
            opt(s.rate, thousands),
            opt(s.p99, ms),
            if met { "met" } else { "NOT met" },
        );
    }
    let cores = std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
    let busiest = set.keys().iter().map(|key| key.1).max().unwrap_or(0);
    for key in set.keys().into_iter().filter(|key| key.1 == busiest) {
        let s = Summary::of(&set.series(&key));
        if let (Some(server), Some(harness)) = (s.server_us, s.harness_us) {
            let _ = writeln!(
                out,
                "CPU ceiling, `{}` at {} clients: {server:.0} µs (server) + {harness:.0} µs (harness) of CPU per \
                 command → at most {} commands/s on {cores:.0} idle cores, however fast the disk.",
                key.0,
                key.1,
                thousands(cores * 1e6 / (server + harness)),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn medians_of_odd_even_and_missing() {
        assert_eq!(median([Some(3.0), Some(1.0), Some(2.0)]), Some(2.0));
        assert_eq!(
            median([Some(4.0), None, Some(1.0), Some(2.0), Some(3.0)]),
            Some(2.5)
        );
        assert_eq!(median([None]), None);
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(12_345.6), "12,346");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
        assert_eq!(thousands(-1_000.0), "-1,000");
    }

    fn measurement(ok: u64) -> Measurement {
        Measurement {
            load: LoadResult {
                ok,
                elapsed: Duration::from_secs(1),
                latencies_us: vec![1_000; usize::try_from(ok).unwrap_or(0)],
                ..LoadResult::default()
            },
            cpu: CpuUse::default(),
            commits: None,
            projection_lag: None,
        }
    }

    #[test]
    fn ratios_pair_each_run_with_its_own_baseline() {
        let run = |base: u64, value: u64| Run {
            baseline: measurement(base),
            points: vec![Point {
                workload: "append".into(),
                concurrency: 64,
                measurement: measurement(value),
            }],
        };
        let set = RunSet {
            runs: vec![run(100, 1_000), run(200, 1_000), run(1_000, 1_000)],
            failed_runs: 0,
        };
        let key = ("append".to_owned(), 64);
        let summary = Summary::of(&set.series(&key));
        assert_eq!(summary.rate, Some(1_000.0));
        assert_eq!(summary.ratio, Some(5.0));
        assert_eq!(set.keys(), vec![key]);
    }
}

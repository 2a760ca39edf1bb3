//! Markdown for the read-side benchmarks, in the style of the store and HTTP tables, so results paste into BENCHMARKS.md with the command that produced them.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::cache::CachedLog;
use super::lag::{quantile_ms, LagRun};
use super::reads::{ReadPoint, ReadsRun};
use super::rebuild::RebuildRun;
use super::{lag as lag_bench, megabytes, reads as reads_bench, Env};
use crate::procstat::CpuUse;
use crate::prom::{self, Buckets, Quantile};
use crate::report::{invocation, median, split, thousands};

/// The figures.
const REBUILD_TARGET: f64 = 200_000.0;
const REBUILD_EVENTS: i64 = 1_000_000;
const RSS_TARGET_BYTES: u64 = 150_000_000;
const LAG_TARGET_SECONDS: f64 = 0.05;
const LAG_RATE: f64 = 1_000.0;
const READ_TARGET_MS: f64 = 5.0;
const READERS: usize = 64;

fn opt(value: Option<f64>, format: impl Fn(f64) -> String) -> String {
    value.map_or_else(|| "–".to_owned(), format)
}

fn ms(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.1}")
    }
}

fn quiet(env: &Env) -> String {
    env.quiet.map_or_else(
        || "no wait for a quiet machine".to_owned(),
        |gate| {
            format!(
                "each run waited (at most {:.0} s) for other processes to use < {:.2} cores",
                gate.max_wait.as_secs_f64(),
                gate.below_cores
            )
        },
    )
}

fn describe_log(log: &CachedLog) -> String {
    let [d, c, u] = log.world;
    format!(
        "cached log `{}` ({} events from {} commands of `Generator::new({}, {d}, {c}, {u})`)",
        log.dir.display(),
        thousands(log.head as f64),
        thousands(log.commands as f64),
        log.seed
    )
}

/// "other procs / steal" in cores over a window of `seconds`.
fn noise(cpu: &CpuUse, seconds: f64) -> (f64, f64) {
    let seconds = seconds.max(1e-9);
    (cpu.others() / seconds, cpu.system.steal / seconds)
}

/// The median run's quantile: for an even number of runs the upper middle one (conservative).
fn median_quantile(values: impl IntoIterator<Item = Option<Quantile>>) -> Option<Quantile> {
    let mut values: Vec<Quantile> = values.into_iter().flatten().collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| {
        let key = |q: &Quantile| (q.seconds(), matches!(q, Quantile::Above(_)));
        key(a)
            .partial_cmp(&key(b))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    Some(values[values.len() / 2])
}

/// The rebuild benchmark's markdown.
pub fn rebuild(env: &Env, log: &CachedLog, runs: &[RebuildRun]) -> String {
    let mut out = String::from("### Read side: rebuild from scratch\n\n");
    let poll = runs.first().map_or(0, |r| r.built.polls);
    let _ = writeln!(
        out,
        "`{}`: {} run(s) over the {}; each run copies it into a fresh data directory under `{}`, \
         scans it once (the baseline), then starts `lianxi serve` on it, which builds every \
         projection from position 0, and polls `GET /v1/projections` ({poll} polls in the first \
         run) until all are live at the head; {}; medians over runs; × scan is the median over \
         runs of (rebuild ÷ that run's scan).\n",
        invocation(),
        runs.len(),
        describe_log(log),
        env.dir.display(),
        quiet(env),
    );
    out.push_str(
        "| | events/s | min – max | × scan | seconds | peak RSS, MB | server CPU µs / event | server cores busy | other procs / steal, cores |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let scan: Vec<f64> = runs.iter().map(RebuildRun::scan_rate).collect();
    let rebuilt: Vec<f64> = runs.iter().map(RebuildRun::rebuild_rate).collect();
    let min_max = |values: &[f64]| {
        format!(
            "{} – {}",
            opt(values.iter().copied().reduce(f64::min), thousands),
            opt(values.iter().copied().reduce(f64::max), thousands)
        )
    };
    let _ = writeln!(
        out,
        "| baseline: scan through `SqliteStore::read_all`, batches of 2,000, in the harness | {} | {} | 1.00 | {} | – | – | – | – |",
        opt(median(scan.iter().copied().map(Some)), thousands),
        min_max(&scan),
        opt(median(runs.iter().map(|r| Some(r.scan_seconds))), |v| format!("{v:.2}")),
    );
    let peak = runs.iter().map(RebuildRun::peak_rss).max().unwrap_or(0);
    let cores = |r: &RebuildRun| {
        let server = r.window_cpu.server.as_ref().map_or(0.0, |c| c.process);
        server / r.built.seconds.max(1e-9)
    };
    let (others, steal): (Vec<f64>, Vec<f64>) = runs
        .iter()
        .map(|r| noise(&r.window_cpu, r.built.seconds))
        .unzip();
    let _ = writeln!(
        out,
        "| rebuild: `lianxi serve` from \"listening\" to every projection live at the head | {} | {} | {} | {} | {} (median {}) | {} | {} | {} / {} |",
        opt(median(rebuilt.iter().copied().map(Some)), thousands),
        min_max(&rebuilt),
        opt(
            median(runs.iter().map(|r| Some(r.rebuild_rate() / r.scan_rate()))),
            |v| format!("{v:.2}")
        ),
        opt(median(runs.iter().map(|r| Some(r.built.seconds))), |v| format!("{v:.2}")),
        megabytes(peak),
        opt(median(runs.iter().map(|r| Some(r.peak_rss() as f64))), |v| {
            format!("{:.1}", v / 1e6)
        }),
        opt(
            median(runs.iter().map(|r| Some(r.server_cpu.process * 1e6 / r.head.max(1) as f64))),
            |v| format!("{v:.1}")
        ),
        opt(median(runs.iter().map(|r| Some(cores(r)))), |v| format!("{v:.2}")),
        opt(median(others.iter().copied().map(Some)), |v| format!("{v:.2}")),
        opt(median(steal.iter().copied().map(Some)), |v| format!("{v:.2}")),
    );
    let startup = median(runs.iter().map(|r| Some(r.built.startup_seconds)));
    let shares = |i: usize| {
        median(runs.iter().map(|r| {
            (r.server_cpu.process > 0.0).then(|| split(&r.server_cpu)[i] / r.server_cpu.process)
        }))
    };
    let _ = writeln!(
        out,
        "\nPeak RSS is the server's largest resident size: the kernel's high-water mark (`VmHWM`, \
         read when the rebuild ended, start-up included) and the largest `VmRSS` sample, whichever \
         is larger; the largest over runs, the median in parentheses. Server CPU counts the whole \
         process from its start (start-up to \"listening\" took {} s, median) and splits into tokio \
         workers {} %, the store writer thread {} %, SQLite threads {} %, other {} % (medians). \
         Times have the polling interval's resolution.\n",
        opt(startup, |v| format!("{v:.2}")),
        opt(shares(0), |v| format!("{:.0}", v * 100.0)),
        opt(shares(1), |v| format!("{:.0}", v * 100.0)),
        opt(shares(2), |v| format!("{:.0}", v * 100.0)),
        opt(shares(3), |v| format!("{:.0}", v * 100.0)),
    );
    let names: BTreeSet<&String> = runs
        .iter()
        .flat_map(|r| r.built.per_projection.keys())
        .collect();
    if !names.is_empty() {
        out.push_str(
            "| projection | first seen at the head after, s | events/s |\n|---|---:|---:|\n",
        );
        for name in names {
            let seconds = median(
                runs.iter()
                    .map(|r| r.built.per_projection.get(name).copied()),
            );
            let _ = writeln!(
                out,
                "| {name} | {} | {} |",
                opt(seconds, |v| format!("{v:.2}")),
                opt(seconds, |v| thousands(log.head as f64 / v.max(1e-9))),
            );
        }
        out.push('\n');
    }
    let rate = median(rebuilt.iter().copied().map(Some));
    let full = log.head >= REBUILD_EVENTS;
    let smaller = format!(
        "this log holds {} events, the target is for 1,000,000",
        thousands(log.head as f64)
    );
    let _ = writeln!(
        out,
        "Target ≥ 200,000 events/s for all projectors together over 1,000,000 events: {} events/s, {}.",
        opt(rate, thousands),
        match (full, rate.is_some_and(|r| r >= REBUILD_TARGET)) {
            (true, true) => "met".to_owned(),
            (true, false) => "NOT met".to_owned(),
            (false, _) => format!("not comparable ({smaller})"),
        },
    );
    let _ = writeln!(
        out,
        "Target resident size < 150 MB (150,000,000 bytes) during the rebuild: peak {} MB, {}.",
        megabytes(peak),
        match (full, peak > 0 && peak < RSS_TARGET_BYTES) {
            (true, true) => "met".to_owned(),
            (true, false) => "NOT met".to_owned(),
            (false, true) => format!("not comparable ({smaller})"),
            (false, false) => format!("NOT met, already on a smaller log ({smaller})"),
        },
    );
    out
}

/// The lag benchmark's markdown.
pub fn lag(
    env: &Env,
    options: lag_bench::Options,
    history: Option<&CachedLog>,
    runs: &[LagRun],
) -> String {
    let mut out = String::from("### Read side: projection lag under a sustained command rate\n\n");
    let server = match history {
        None => "a fresh server".to_owned(),
        Some(log) => format!(
            "a server started on a copy of the cached log `{}` ({} events) once its projections \
             had built",
            log.dir.display(),
            thousands(log.head as f64)
        ),
    };
    let _ = writeln!(
        out,
        "`{}`: {} run(s), each on {server}: {} independent worlds (`Generator::new(1000 + k, \
         1, 10, 60)`) register themselves, then send their commands over HTTP, each world in \
         order and one at a time, on an open-loop schedule offering {} commands/s; {:.1} s at \
         the rate before a {:.1} s window; {}; medians over runs.\n",
        invocation(),
        runs.len(),
        options.worlds,
        thousands(options.rate),
        options.warmup.as_secs_f64(),
        options.window.as_secs_f64(),
        quiet(env),
    );
    out.push_str(
        "| offered commands/s | achieved (sent in the window, ok before it closed) | min – max | sent > 5 ms after their slot | failed | server cores busy | harness cores busy | other procs / steal, cores | projections caught up after the window, s |\n\
         |---:|---:|---:|---:|---|---:|---:|---:|---:|\n",
    );
    let achieved: Vec<f64> = runs.iter().map(LagRun::achieved).collect();
    let window = options.window.as_secs_f64();
    let failed: u64 = runs.iter().flat_map(|r| r.failures.values()).sum();
    let (others, steal): (Vec<f64>, Vec<f64>) = runs.iter().map(|r| noise(&r.cpu, window)).unzip();
    let _ = writeln!(
        out,
        "| {} | {} | {} – {} | {} | {} | {} | {} | {} / {} | {} |",
        thousands(options.rate),
        opt(median(achieved.iter().copied().map(Some)), thousands),
        opt(achieved.iter().copied().reduce(f64::min), thousands),
        opt(achieved.iter().copied().reduce(f64::max), thousands),
        opt(median(runs.iter().map(|r| Some(r.late as f64))), thousands),
        if failed == 0 {
            "0".to_owned()
        } else {
            format!("{failed} (all runs; see stderr)")
        },
        opt(
            median(
                runs.iter()
                    .map(|r| r.cpu.server.as_ref().map(|c| c.process / window))
            ),
            |v| format!("{v:.2}")
        ),
        opt(
            median(runs.iter().map(|r| Some(r.cpu.harness.process / window))),
            |v| format!("{v:.2}")
        ),
        opt(median(others.iter().copied().map(Some)), |v| format!(
            "{v:.2}"
        )),
        opt(median(steal.iter().copied().map(Some)), |v| format!(
            "{v:.2}"
        )),
        opt(
            median(runs.iter().map(|r| Some(r.settle_seconds))),
            |v| format!("{v:.2}")
        ),
    );
    out.push_str(
        "\n| | observations (median per run) | p50 ms | p99 ms | share ≤ 50 ms |\n|---|---:|---:|---:|---:|\n",
    );
    let histogram_row = |out: &mut String, label: &str, pick: &dyn Fn(&LagRun) -> Buckets| {
        let buckets: Vec<Buckets> = runs.iter().map(pick).collect();
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} | {} |",
            opt(median(buckets.iter().map(|b| Some(b.count()))), thousands),
            median_quantile(buckets.iter().map(|b| b.quantile(0.5)))
                .map_or("–".to_owned(), Quantile::ms_label),
            median_quantile(buckets.iter().map(|b| b.quantile(0.99)))
                .map_or("–".to_owned(), Quantile::ms_label),
            opt(
                median(buckets.iter().map(|b| b.share_at_most(LAG_TARGET_SECONDS))),
                |v| format!("{:.2} %", v * 100.0)
            ),
        );
    };
    histogram_row(
        &mut out,
        "baseline: the log's group commit (`lianxi_store_commit_seconds`)",
        &|r| r.commit.clone(),
    );
    let exact_row = |out: &mut String, label: &str, pick: &dyn Fn(&LagRun) -> &[u32]| {
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} | {} |",
            opt(
                median(runs.iter().map(|r| Some(pick(r).len() as f64))),
                thousands
            ),
            opt(median(runs.iter().map(|r| quantile_ms(pick(r), 0.5))), ms),
            opt(median(runs.iter().map(|r| quantile_ms(pick(r), 0.99))), ms),
            opt(
                median(runs.iter().map(|r| {
                    let all = pick(r);
                    (!all.is_empty()).then(|| {
                        all.iter().filter(|&&us| us <= 50_000).count() as f64 / all.len() as f64
                    })
                })),
                |v| format!("{:.2} %", v * 100.0)
            ),
        );
    };
    exact_row(
        &mut out,
        "baseline: command round trip, client side, from sending",
        &|r| &r.round_trip_us,
    );
    exact_row(
        &mut out,
        "command round trip from its slot (includes a late world's wait)",
        &|r| &r.from_slot_us,
    );
    let names: BTreeSet<&String> = runs.iter().flat_map(|r| r.lag.keys()).collect();
    for name in &names {
        histogram_row(&mut out, &format!("lag: {name}"), &|r| {
            r.lag.get(*name).cloned().unwrap_or_default()
        });
    }
    histogram_row(&mut out, "lag: all projections", &|r| prom::total(&r.lag));
    if runs.iter().any(|r| !r.commit_lag.is_empty()) {
        histogram_row(
            &mut out,
            "lag from the log's commit (`lianxi_projection_commit_lag_seconds`): all projections",
            &|r| prom::total(&r.commit_lag),
        );
    }
    // Where a projector batch's time goes: the lag's tail is a batch that waited or took long.
    let phases: BTreeSet<&String> = runs.iter().flat_map(|r| r.phases.keys()).collect();
    for phase in &phases {
        histogram_row(
            &mut out,
            &format!("a projector batch's `{phase}` (`lianxi_projection_batch_seconds`)"),
            &|r| r.phases.get(*phase).cloned().unwrap_or_default(),
        );
    }
    let _ = writeln!(
        out,
        "\nLag is `lianxi_projection_lag_seconds` (per event of a live batch: the read model's commit \
         minus the event's `recorded_at`, which the command handler takes before the group commit, so \
         it includes the commit; \"from the log's commit\" starts where the group commit that made \
         the event durable ended, as the target reads, since 2026-12-07), the difference of two \
         `/metrics` scrapes: when the window opened, \
         and once every projection had caught up after it closed. Its quantiles and the commit's are \
         interpolated linearly inside Prometheus buckets (the lag's bounds: 0.5, 1, 2.5, 5, 7.5, 10, \
         12.5, 15, 17.5, 20, 25, 30, 35, 40, 50, 60, 75, 100 ms, … since 2026-12-06, before it \
         0.5, 1, 2.5, 5, 10, 25, 50, 100 ms, …, which are still the commit's and the phases'): \
         read them as \"within that bucket\"; \"share ≤ 50 ms\" is exact, 50 ms being a bound. Round \
         trips are exact (nearest rank). A projector batch's phases (every batch in the window, \
         live or not): `lock` waits for the read models' write lock, `apply_write` loads, applies and \
         writes inside the transaction, `commit` commits it.\n"
    );
    let worst = names
        .iter()
        .filter_map(|name| {
            median(runs.iter().map(|r| {
                r.lag
                    .get(*name)
                    .and_then(|b| b.share_at_most(LAG_TARGET_SECONDS))
            }))
            .map(|share| (share, (*name).clone()))
        })
        .min_by(|a, b| a.0.total_cmp(&b.0));
    let rate = median(achieved.iter().copied().map(Some));
    let offered = (options.rate - LAG_RATE).abs() < 1e-9;
    let sustained = rate.is_some_and(|r| r >= 0.98 * LAG_RATE);
    let _ = writeln!(
        out,
        "Target p99 ≤ 50 ms from commit to read model under a sustained 1,000 commands/s: {} commands/s \
         achieved; the slowest projection{} has {} of its events within 50 ms, {}.",
        opt(rate, thousands),
        worst
            .as_ref()
            .map_or(String::new(), |(_, name)| format!(" ({name})")),
        opt(worst.as_ref().map(|(share, _)| *share), |v| format!("{:.2} %", v * 100.0)),
        match (&worst, offered, sustained) {
            (_, false, _) => "not comparable (another rate was offered)",
            (Some((share, _)), true, true) if *share >= 0.99 => "met",
            (Some(_), true, true) => "NOT met",
            (_, true, false) => "NOT met (the server did not sustain 98 % of 1,000 commands/s)",
            (None, true, true) => "not measured (no lag observations)",
        },
    );
    out
}

fn read_row(out: &mut String, label: &str, readers: usize, points: &[&ReadPoint], base: &[f64]) {
    let rates: Vec<f64> = points.iter().map(|p| p.load.rate()).collect();
    let window = |p: &ReadPoint| p.load.elapsed.as_secs_f64().max(1e-9);
    let per_read =
        |p: &ReadPoint, seconds: f64| (p.load.ok > 0).then(|| seconds * 1e6 / p.load.ok as f64);
    let (others, steal): (Vec<f64>, Vec<f64>) =
        points.iter().map(|p| noise(&p.cpu, window(p))).unzip();
    let failed: u64 = points.iter().map(|p| p.load.failed()).sum();
    let _ = writeln!(
        out,
        "| {label} | {readers} | {} | {} – {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} |",
        opt(median(rates.iter().copied().map(Some)), thousands),
        opt(rates.iter().copied().reduce(f64::min), thousands),
        opt(rates.iter().copied().reduce(f64::max), thousands),
        opt(
            median(
                rates
                    .iter()
                    .zip(base)
                    .map(|(rate, base)| (*base > 0.0).then(|| rate / base))
            ),
            |v| format!("{v:.2}")
        ),
        opt(
            median(points.iter().map(|p| Some(p.load.latency_ms(0.5)))),
            ms
        ),
        opt(
            median(points.iter().map(|p| Some(p.load.latency_ms(0.99)))),
            ms
        ),
        opt(
            median(points.iter().map(|p| Some(p.load.latency_ms(1.0)))),
            ms
        ),
        opt(
            median(
                points
                    .iter()
                    .map(|p| p.cpu.server.as_ref().and_then(|c| per_read(p, c.process)))
            ),
            |v| format!("{v:.0}")
        ),
        opt(
            median(points.iter().map(|p| per_read(p, p.cpu.harness.process))),
            |v| format!("{v:.0}")
        ),
        opt(
            median(points.iter().map(|p| {
                let server = p.cpu.server.as_ref().map_or(0.0, |c| c.process);
                Some((server + p.cpu.harness.process) / window(p))
            })),
            |v| format!("{v:.2}")
        ),
        opt(median(others.iter().copied().map(Some)), |v| format!(
            "{v:.2}"
        )),
        opt(median(steal.iter().copied().map(Some)), |v| format!(
            "{v:.2}"
        )),
        failed,
    );
}

/// The reads benchmark's markdown.
pub fn reads(
    env: &Env,
    log: &CachedLog,
    options: &reads_bench::Options,
    runs: &[ReadsRun],
) -> String {
    let mut out = String::from("### Read side: board reads while commands flow\n\n");
    let _ = writeln!(
        out,
        "`{}`: {} run(s), each on a fresh server over a copy of the {}, after every projection \
         has built it; {} closed-loop readers ({}) read the board of a \
         random community of the log's {} (admin token), while a background sender continues \
         the log's world at {} commands/s; the baseline is the same readers on `/healthz` (no \
         auth, no database) just before, under the same background load; {:.1} s windows after \
         {:.1} s warm-up; {}; medians over runs.\n",
        invocation(),
        runs.len(),
        describe_log(log),
        options.readers,
        match options.client {
            reads_bench::Client::Lean =>
                "each with a connection of its own, hyper's client without a pool",
            reads_bench::Client::Reqwest => "sharing one reqwest client, one connection pool",
        },
        runs.first().map_or(0, |r| r.communities),
        thousands(options.command_rate),
        options.window.measure.as_secs_f64(),
        options.window.warmup.as_secs_f64(),
        quiet(env),
    );
    out.push_str(
        "| request | readers | reads/s | min – max | × baseline | p50 ms | p99 ms | max ms | server CPU µs / read | harness CPU µs / read | cores busy | other procs / steal, cores | failed |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    let base: Vec<f64> = runs.iter().map(|r| r.healthz.load.rate()).collect();
    let healthz: Vec<&ReadPoint> = runs.iter().map(|r| &r.healthz).collect();
    let board: Vec<&ReadPoint> = runs.iter().map(|r| &r.board).collect();
    read_row(
        &mut out,
        "baseline: `GET /healthz`",
        options.readers,
        &healthz,
        &base,
    );
    read_row(
        &mut out,
        "`GET /v1/communities/{id}/board`",
        options.readers,
        &board,
        &base,
    );
    let gzip: Vec<&ReadPoint> = runs.iter().map(|r| &r.gzip).collect();
    read_row(
        &mut out,
        "the same, `Accept-Encoding: gzip`",
        options.readers,
        &gzip,
        &base,
    );
    for (index, rate) in options.paced_rates.iter().enumerate() {
        let points: Vec<&ReadPoint> = runs
            .iter()
            .filter_map(|r| Some(&r.paced.get(index)?.1))
            .collect();
        read_row(
            &mut out,
            &format!("the same, gzip, paced at {} reads/s", thousands(*rate)),
            options.readers,
            &points,
            &base,
        );
    }
    let conditional: Vec<&ReadPoint> = runs.iter().map(|r| &r.conditional).collect();
    read_row(
        &mut out,
        "the same, with `If-None-Match`",
        options.readers,
        &conditional,
        &base,
    );
    let failed: u64 = runs
        .iter()
        .flat_map(|r| r.background.failures.values())
        .sum();
    let _ = writeln!(
        out,
        "\nBackground commands: {} commands/s achieved of {} offered (median), {} failed. \
         Projections lag at the end of the board windows: {} events (median). Boards: mean {} bytes, \
         largest {} bytes; gzip-compressed, mean {} bytes, largest {} (read once per community \
         before measuring, both ways, and found the same JSON). Projections built the log in {} s \
         (median) before the readers started. With `If-None-Match` (each reader keeps the `ETag` \
         of every board it read, as a client's HTTP cache does), {} of the reads were answered \
         304 (median).\n",
        opt(median(runs.iter().map(|r| Some(r.background.rate()))), thousands),
        thousands(options.command_rate),
        failed,
        opt(median(runs.iter().map(|r| r.lag_at_end.map(|l| l as f64))), thousands),
        opt(median(runs.iter().map(|r| Some(r.board_bytes.0))), thousands),
        thousands(runs.iter().map(|r| r.board_bytes.1).max().unwrap_or(0) as f64),
        opt(median(runs.iter().map(|r| Some(r.gzip_bytes.0))), thousands),
        thousands(runs.iter().map(|r| r.gzip_bytes.1).max().unwrap_or(0) as f64),
        opt(median(runs.iter().map(|r| Some(r.built.seconds))), |v| format!("{v:.1}")),
        opt(
            median(runs.iter().map(|r| {
                (r.conditional.load.ok > 0)
                    .then(|| 100.0 * r.not_modified as f64 / r.conditional.load.ok as f64)
            })),
            |v| format!("{v:.1} %")
        ),
    );
    let comparable = options.readers == READERS && options.command_rate > 0.0;
    let verdict = |points: &[&ReadPoint]| {
        let p99 = median(points.iter().map(|p| Some(p.load.latency_ms(0.99))));
        let verdict = match (p99, comparable) {
            (Some(p99), true) if p99 <= READ_TARGET_MS => "met",
            (Some(_), true) => "NOT met",
            _ => "not comparable (not 64 readers with commands flowing)",
        };
        format!("p99 {} ms, {verdict}", opt(p99, ms))
    };
    let paced: Vec<String> = options
        .paced_rates
        .iter()
        .enumerate()
        .map(|(index, rate)| {
            let points: Vec<&ReadPoint> = runs
                .iter()
                .filter_map(|r| Some(&r.paced.get(index)?.1))
                .collect();
            format!("at {} reads/s, {}", thousands(*rate), verdict(&points))
        })
        .collect();
    let _ = writeln!(
        out,
        "Target board read p99 ≤ 5 ms at 64 concurrent readers while commands flow. Readers \
         reading as fast as they are answered: as it is, {}; gzip-compressed (as browsers and \
         HTTP libraries ask for it), {}. Paced (gzip): {}.",
        verdict(&board),
        verdict(&gzip),
        if paced.is_empty() {
            "not measured".to_owned()
        } else {
            paced.join("; ")
        },
    );
    out
}

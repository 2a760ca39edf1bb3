//! The distributed benchmark's markdown: each figure beside its same-run baselines, medians over runs, with the command line, what is measured and what limits it, so the tables paste into BENCHMARKS.md.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::lag::{LagWindow, Layout, ALL};
use super::relay::{BuiltLog, RelayRun, Timed};
use super::Env;
use crate::payload::Payload;
use crate::prom::{Buckets, Quantile};
use crate::readside::lag::{quantile_ms, Options};
use crate::report::{invocation, median, ms, opt, thousands};

/// Issue 5's figures.
const RELAY_TARGET: f64 = 20_000.0;
const LAG_TARGET_SECONDS: f64 = 0.1;
const LAG_RATE: f64 = 1_000.0;
/// "Does not slow the first": A's p99 beside B at most this many times its p99 alone.
const SECOND_TOLERANCE: f64 = 1.10;

/// The second-projector part's two processes.
pub const PROJECTOR_A: &str = "projector A";
pub const PROJECTOR_B: &str = "projector B";

/// Which of a run's measurements of A to read.
type Pick = fn(&Pair) -> Option<&LagWindow>;

/// One run of the second-projector part: A alone, A beside B, and A beside B stopped.
#[derive(Debug, Clone, Default)]
pub struct Pair {
    pub alone: Option<LagWindow>,
    pub beside: Option<LagWindow>,
    /// Beside B stopped (SIGSTOP) for the window: the control.
    pub frozen: Option<LagWindow>,
}

fn quiet(env: &Env) -> String {
    env.quiet.map_or_else(
        || "no wait for a quiet machine".to_owned(),
        |gate| {
            format!(
                "each measurement waited (at most {:.0} s) for other processes to use < {:.2} cores",
                gate.max_wait.as_secs_f64(),
                gate.below_cores
            )
        },
    )
}

fn cores(value: Option<f64>) -> String {
    opt(value, |v| format!("{v:.2}"))
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

fn quantile_cell(value: Option<Quantile>) -> String {
    value.map_or("–".to_owned(), Quantile::ms_label)
}

fn share_cell(value: Option<f64>) -> String {
    opt(value, |v| format!("{:.2} %", v * 100.0))
}

/// CPU µs per event of the part labelled one of `labels`.
fn us_per_event(timed: &Timed, labels: &[&str]) -> Option<f64> {
    let seconds: f64 = timed
        .cpu
        .parts
        .iter()
        .filter(|(label, _)| labels.contains(&label.as_str()))
        .map(|(_, s)| *s)
        .sum();
    let present = timed
        .cpu
        .parts
        .iter()
        .any(|(label, _)| labels.contains(&label.as_str()));
    (present && timed.events > 0).then(|| seconds * 1e6 / timed.events as f64)
}

/// The relay part's markdown.
pub fn relay(env: &Env, log: &BuiltLog, runs: &[RelayRun]) -> String {
    let mut out = String::from("### Distributed: relay throughput\n\n");
    let payload = Payload::new(uuid::Uuid::nil(), uuid::Uuid::nil());
    let _ = writeln!(
        out,
        "`{}`: {} run(s) over one log of {} events (the store benchmark's event: {} bytes of JSON \
         data + {} of metadata; {:.0} bytes per message payload on the wire, plus its subject and \
         three headers), built once by `PostgresStore` appends (not measured, {:.1} s) in a fresh \
         database of the durable PostgreSQL; a fresh nats-server (JetStream file storage) per run; \
         {}; medians over runs. The relay is `lianxi serve --role relay` (batches of {} events, {} \
         acks in flight, `RelayConfig`'s defaults), spawned on the log with an empty stream; its \
         time runs from the spawn until the harness's poll of the stream's info (every 10 ms) sees \
         the last event, whose `Lianxi-Position` is checked to be the log's head. \"relay ÷ this\" \
         is the median over runs of (relay events/s ÷ that run's figure). CPU is µs per event, from \
         `/proc`: the relay process, the harness (the scan and the publisher; only polls during \
         the relay's run), every PostgreSQL process, nats-server.\n",
        invocation(),
        runs.len(),
        thousands(log.head as f64),
        payload.data_bytes(),
        payload.metadata_bytes(),
        log.message_bytes,
        log.build_seconds,
        quiet(env),
        thousands(log.batch_size as f64),
        log.in_flight,
    );
    out.push_str(
        "| what | events/s | min – max | relay ÷ this | seconds | CPU µs / event: relay process | harness | PostgreSQL | nats-server | cores busy (ours) | other procs / steal, cores |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let row = |out: &mut String, label: &str, pick: &dyn Fn(&RelayRun) -> &Timed| {
        let rates: Vec<f64> = runs.iter().map(|r| pick(r).rate()).collect();
        let ratio = median(runs.iter().map(|r| {
            let base = pick(r).rate();
            (base > 0.0).then(|| r.relay.rate() / base)
        }));
        let per = |labels: &[&str]| median(runs.iter().map(|r| us_per_event(pick(r), labels)));
        let _ = writeln!(
            out,
            "| {label} | {} | {} – {} | {} | {} | {} | {} | {} | {} | {} | {} / {} |",
            opt(median(rates.iter().copied().map(Some)), thousands),
            opt(rates.iter().copied().reduce(f64::min), thousands),
            opt(rates.iter().copied().reduce(f64::max), thousands),
            opt(ratio, |v| format!("{v:.2}")),
            opt(
                median(runs.iter().map(|r| Some(pick(r).seconds))),
                |v| format!("{v:.2}")
            ),
            opt(per(&["relay process"]), |v| format!("{v:.1}")),
            opt(per(&["harness", "harness (polls)"]), |v| format!("{v:.1}")),
            opt(per(&["PostgreSQL"]), |v| format!("{v:.1}")),
            opt(per(&["nats-server"]), |v| format!("{v:.1}")),
            cores(median(runs.iter().map(|r| Some(pick(r).cpu.ours())))),
            cores(median(runs.iter().map(|r| Some(pick(r).cpu.others())))),
            cores(median(runs.iter().map(|r| Some(pick(r).cpu.steal())))),
        );
    };
    row(
        &mut out,
        &format!(
            "baseline: `read_all_raw` scan of the log in batches of {} (PostgreSQL alone)",
            thousands(log.batch_size as f64)
        ),
        &|r| &r.scan,
    );
    row(
        &mut out,
        &format!(
            "baseline: the relay's messages published from memory, {} acks in flight (JetStream alone)",
            log.in_flight
        ),
        &|r| &r.nats,
    );
    row(
        &mut out,
        &format!(
            "baseline: the same, every ack awaited after each {} (the relay's batching)",
            thousands(log.batch_size as f64)
        ),
        &|r| &r.nats_batched,
    );
    row(
        &mut out,
        "**relay** (`--role relay` process), from its spawn",
        &|r| &r.relay,
    );
    let steady: Vec<f64> = runs
        .iter()
        .filter_map(|r| r.relay_steady)
        .map(|(events, seconds)| events as f64 / seconds.max(1e-9))
        .collect();
    let _ = writeln!(
        out,
        "| relay, steady: from the first poll that saw the stream (after start-up, median {:.2} s to \"listening\") | {} | {} – {} | | | | | | | | |",
        median(runs.iter().map(|r| Some(r.relay_startup))).unwrap_or(0.0),
        opt(median(steady.iter().copied().map(Some)), thousands),
        opt(steady.iter().copied().reduce(f64::min), thousands),
        opt(steady.iter().copied().reduce(f64::max), thousands),
    );
    let rate = median(runs.iter().map(|r| Some(r.relay.rate())));
    let _ = writeln!(
        out,
        "\nTarget relay throughput ≥ 20,000 events/s: {} events/s from the spawn (median of {}), {}.",
        opt(rate, thousands),
        runs.len(),
        match rate {
            Some(rate) if rate >= RELAY_TARGET => "met",
            Some(_) => "NOT met",
            None => "not measured",
        }
    );
    out
}

/// The `q`-quantile (nearest rank on the sorted samples) of a consumer's counts.
fn sample_at(samples: &[(u64, u64)], pick: fn(&(u64, u64)) -> u64, q: f64) -> Option<f64> {
    let mut values: Vec<u64> = samples.iter().map(pick).collect();
    values.sort_unstable();
    let last = values.len().checked_sub(1)?;
    let index = ((last as f64) * q).round() as usize;
    values.get(index.min(last)).map(|v| *v as f64)
}

/// A sentence on the consumer of projector process `label`: how many events nats-server held
/// for it undelivered, and how many it had delivered and not acknowledged (medians over runs of
/// each run's p50, p99 and max over its 50 ms samples).
fn consumer_sentence(runs: &[&LagWindow], label: &str) -> String {
    let of = |pick: fn(&(u64, u64)) -> u64, q: f64| {
        median(runs.iter().map(|r| {
            r.consumers
                .iter()
                .find(|(name, _)| name == label)
                .and_then(|(_, samples)| sample_at(samples, pick, q))
        }))
    };
    let three = |pick: fn(&(u64, u64)) -> u64| {
        format!(
            "p50 {} / p99 {} / max {}",
            opt(of(pick, 0.5), thousands),
            opt(of(pick, 0.99), thousands),
            opt(of(pick, 1.0), thousands)
        )
    };
    format!(
        "{label}'s consumer, sampled from nats-server every 50 ms in the window: events not yet \
         delivered to it {}; delivered and not yet acknowledged (in the client's buffer, being \
         batched, applied or committed) {}",
        three(|s| s.0),
        three(|s| s.1)
    )
}

/// The share of gaps between consecutive stored messages of at least 2 ms: a pause that closes
/// an idle projector's batch (the feed's linger).
fn long_gaps(gaps_us: &[u32]) -> Option<f64> {
    (!gaps_us.is_empty())
        .then(|| gaps_us.iter().filter(|&&us| us >= 2_000).count() as f64 / gaps_us.len() as f64)
}

/// A sentence on how the relay's publishes were spaced in `runs`.
fn gaps_sentence(runs: &[&LagWindow]) -> String {
    format!(
        "gaps between consecutive messages stored in JetStream: p50 {} ms, p90 {} ms; {} of \
         them ≥ 2 ms",
        opt(
            median(runs.iter().map(|r| quantile_ms(&r.gaps_us, 0.5))),
            ms
        ),
        opt(
            median(runs.iter().map(|r| quantile_ms(&r.gaps_us, 0.9))),
            ms
        ),
        share_cell(median(runs.iter().map(|r| long_gaps(&r.gaps_us)))),
    )
}

/// One stderr line per lag window.
pub fn progress(run: &LagWindow) {
    let mut lags = Vec::new();
    for (label, lag) in &run.lag {
        let all = crate::prom::total(lag);
        lags.push(format!(
            "{label}: lag p50 {} ms, p99 {} ms, {} ≤ 100 ms over {} events",
            quantile_cell(all.quantile(0.5)),
            quantile_cell(all.quantile(0.99)),
            share_cell(all.share_at_most(LAG_TARGET_SECONDS)),
            thousands(all.count())
        ));
    }
    for (label, samples) in &run.consumers {
        let mut pending: Vec<u64> = samples.iter().map(|s| s.0).collect();
        let mut unacked: Vec<u64> = samples.iter().map(|s| s.1).collect();
        pending.sort_unstable();
        unacked.sort_unstable();
        let at = |v: &[u64], q: f64| {
            v.get(((v.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or(0)
        };
        eprintln!(
            "  {label}'s consumer ({} samples): not yet delivered p50 {} / p99 {} / max {} events; delivered, not acknowledged p50 {} / p99 {} / max {}",
            samples.len(),
            at(&pending, 0.5),
            at(&pending, 0.99),
            at(&pending, 1.0),
            at(&unacked, 0.5),
            at(&unacked, 0.99),
            at(&unacked, 1.0),
        );
    }
    eprintln!(
        "  achieved {} commands/s ({} late, {} failed); round trip p99 {} ms; recorded → JetStream p50 {} ms, p99 {} ms; {} of the gaps between stored messages ≥ 5 ms; {}; cores busy {:.2} (ours) + {:.2} (others)",
        thousands(run.achieved()),
        thousands(run.sent.late as f64),
        thousands(run.sent.failures.values().sum::<u64>() as f64),
        opt(quantile_ms(&run.sent.round_trip_us, 0.99), ms),
        opt(quantile_ms(&run.to_stream_us, 0.5), ms),
        opt(quantile_ms(&run.to_stream_us, 0.99), ms),
        share_cell(long_gaps(&run.gaps_us)),
        lags.join("; "),
        run.cpu.ours(),
        run.cpu.others(),
    );
}

/// The labels of the processes in `runs`' CPU splits, in their order.
fn cpu_labels(runs: &[&LagWindow]) -> Vec<String> {
    let mut labels: Vec<String> = Vec::new();
    for run in runs {
        for (label, _) in &run.cpu.parts {
            if !labels.contains(label) {
                labels.push(label.clone());
            }
        }
    }
    labels
}

fn window_failures(runs: &[&LagWindow]) -> String {
    let failed: u64 = runs.iter().flat_map(|r| r.sent.failures.values()).sum();
    if failed == 0 {
        "0".to_owned()
    } else {
        format!("{failed} (all runs; see stderr)")
    }
}

/// The layout in words.
fn describe(layout: &Layout) -> String {
    let projectors: Vec<String> = layout
        .projectors
        .iter()
        .map(|(label, names)| {
            let names = if names.is_empty() {
                format!("all: {}", ALL.join(", "))
            } else {
                names.join(", ")
            };
            format!("{label} (`--role projector`, {names})")
        })
        .collect();
    format!(
        "{} gateway process(es) (`--role gateway`; commands go here), one relay (`--role relay`), {}",
        layout.gateways,
        projectors.join(" and ")
    )
}

/// The lag part's markdown.
pub fn lag(env: &Env, layout: &Layout, options: Options, runs: &[LagWindow]) -> String {
    let mut out = String::from("### Distributed: lag through NATS at a sustained rate\n\n");
    let window = options.window.as_secs_f64();
    let _ = writeln!(
        out,
        "`{}`: {} run(s); each on a fresh database of the durable PostgreSQL and a fresh \
         nats-server, with {}; {} generated worlds (the `lag` benchmark's, world k through gateway \
         k mod G) offer {} commands/s on an open-loop schedule, {:.0} s of warm-up, then a \
         {window:.0} s window; {}; medians over runs.\n",
        invocation(),
        runs.len(),
        describe(layout),
        options.worlds,
        thousands(options.rate),
        options.warmup.as_secs_f64(),
        quiet(env),
    );
    let all: Vec<&LagWindow> = runs.iter().collect();
    load_table(&mut out, options, &all);
    out.push_str(
        "\n| | observations (median per run) | p50 ms | p99 ms | share ≤ 100 ms |\n|---|---:|---:|---:|---:|\n",
    );
    let histogram_row = |out: &mut String, label: &str, pick: &dyn Fn(&LagWindow) -> Buckets| {
        let buckets: Vec<Buckets> = runs.iter().map(pick).collect();
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} | {} |",
            opt(median(buckets.iter().map(|b| Some(b.count()))), thousands),
            quantile_cell(median_quantile(buckets.iter().map(|b| b.quantile(0.5)))),
            quantile_cell(median_quantile(buckets.iter().map(|b| b.quantile(0.99)))),
            share_cell(median(
                buckets.iter().map(|b| b.share_at_most(LAG_TARGET_SECONDS))
            )),
        );
    };
    histogram_row(
        &mut out,
        "baseline: the gateways' group commit (`lianxi_store_commit_seconds`)",
        &|r| r.commit.clone(),
    );
    let exact_row = |out: &mut String, label: &str, pick: &dyn Fn(&LagWindow) -> &[u32]| {
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} | {} |",
            opt(
                median(runs.iter().map(|r| Some(pick(r).len() as f64))),
                thousands
            ),
            opt(median(runs.iter().map(|r| quantile_ms(pick(r), 0.5))), ms),
            opt(median(runs.iter().map(|r| quantile_ms(pick(r), 0.99))), ms),
            share_cell(median(runs.iter().map(|r| {
                let all = pick(r);
                (!all.is_empty()).then(|| {
                    all.iter().filter(|&&us| us <= 100_000).count() as f64 / all.len() as f64
                })
            }))),
        );
    };
    exact_row(
        &mut out,
        "baseline: command round trip, client side, from sending",
        &|r| &r.sent.round_trip_us,
    );
    exact_row(
        &mut out,
        "command round trip from its slot (includes a late world's wait)",
        &|r| &r.sent.from_slot_us,
    );
    exact_row(
        &mut out,
        "part of the lag: `recorded_at` → stored in JetStream (commit + relay + publish; a sample of the window's messages, nats-server's timestamps)",
        &|r| &r.to_stream_us,
    );
    let names: Vec<String> = {
        let mut names: Vec<String> = runs
            .iter()
            .flat_map(|r| r.per_projection().into_keys())
            .collect();
        names.sort();
        names.dedup();
        names
    };
    for name in &names {
        histogram_row(&mut out, &format!("lag: {name}"), &|r| {
            r.per_projection().get(name).cloned().unwrap_or_default()
        });
    }
    histogram_row(&mut out, "**lag: all projections**", &|r| {
        crate::prom::total(&r.per_projection())
    });
    // Where a projector process's batches spend their time: the lag's tail is a batch that
    // waited or took long.
    for (label, _) in &layout.projectors {
        let phases: BTreeSet<String> = runs
            .iter()
            .flat_map(|r| r.phases_of(label).into_keys())
            .collect();
        for phase in &phases {
            histogram_row(
                &mut out,
                &format!("{label}: a batch's `{phase}` (`lianxi_projection_batch_seconds`)"),
                &|r| r.phases_of(label).remove(phase).unwrap_or_default(),
            );
        }
    }
    let _ = writeln!(
        out,
        "\nLag is each projector process's `lianxi_projection_lag_seconds` (per event of a live \
         batch: the read model's commit minus the event's `recorded_at`), the difference of two \
         scrapes of its `/metrics`: when the window opened, and once every projection had caught \
         up after it closed. `recorded_at` is set by the gateway's command handler before the group \
         commit, so the lag is commit + relay (woken by the commit's notification, reading the log, \
         publishing, JetStream's ack) + NATS delivery to the projector's pull consumer + the \
         projector's apply and read-model commit; it starts before the client's acknowledgement, \
         so it overstates the lag from acknowledgement by the end of the commit and the reply. \
         Quantiles are interpolated inside Prometheus buckets (the lag's bounds: 0.5, 1, 2.5, 5, \
         7.5, 10, 12.5, 15, 17.5, 20, 25, 30, 35, 40, 50, 60, 75, 100, 150, 250 ms, … since \
         2026-12-06, before it 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250 ms, …, which are still the \
         commit's and the phases'): read them as \"within that bucket\"; \"share ≤ 100 ms\" is exact, 100 ms \
         being a bound. Round trips are exact (nearest rank).\n"
    );
    for (label, _) in &layout.projectors {
        let _ = writeln!(out, "{}.\n", consumer_sentence(&all, label));
    }
    let _ = writeln!(out, "The relay's publishes: {}.\n", gaps_sentence(&all));
    let worst = names
        .iter()
        .filter_map(|name| {
            median(runs.iter().map(|r| {
                r.per_projection()
                    .get(name)
                    .and_then(|b| b.share_at_most(LAG_TARGET_SECONDS))
            }))
            .map(|share| (share, name.clone()))
        })
        .min_by(|a, b| a.0.total_cmp(&b.0));
    let rate = median(runs.iter().map(|r| Some(r.achieved())));
    let offered = (options.rate - LAG_RATE).abs() < 1e-9;
    let sustained = rate.is_some_and(|r| r >= 0.98 * LAG_RATE);
    let p99 = median_quantile(
        runs.iter()
            .map(|r| crate::prom::total(&r.per_projection()).quantile(0.99)),
    );
    let _ = writeln!(
        out,
        "Target p99 ≤ 100 ms from command to read model through NATS at 1,000 commands/s: {} \
         commands/s achieved; p99 over all projections {} ms; the slowest projection{} has {} of \
         its events within 100 ms, {}.",
        opt(rate, thousands),
        quantile_cell(p99),
        worst
            .as_ref()
            .map_or(String::new(), |(_, name)| format!(" ({name})")),
        share_cell(worst.as_ref().map(|(share, _)| *share)),
        match (&worst, offered, sustained) {
            (_, false, _) => "not comparable (another rate was offered)",
            (Some((share, _)), true, true) if *share >= 0.99 => "met",
            (Some(_), true, true) => "NOT met",
            (_, true, false) => "NOT met (the cluster did not sustain 98 % of 1,000 commands/s)",
            (None, true, true) => "not measured (no lag observations)",
        },
    );
    out
}

/// The load, sources and CPU of some windows: one row of medians.
fn load_table(out: &mut String, options: Options, runs: &[&LagWindow]) {
    let labels = cpu_labels(runs);
    let _ = writeln!(
        out,
        "| offered commands/s | achieved (sent in the window, ok before it closed) | min – max | sent > 5 ms after their slot | failed | relay published, events/s | projector events via NATS / via the log | cores busy: {} | all ours | other procs / steal, cores | caught up after the window, s |",
        labels.join(" | ")
    );
    let _ = writeln!(
        out,
        "|---:|---:|---:|---:|---|---:|---:|{}---:|---:|---:|",
        "---:|".repeat(labels.len() + 1)
    );
    let achieved: Vec<f64> = runs.iter().map(|r| r.achieved()).collect();
    let feed: f64 = runs
        .iter()
        .flat_map(|r| r.sources.iter().map(|(_, feed, _)| *feed))
        .sum();
    let from_log: f64 = runs
        .iter()
        .flat_map(|r| r.sources.iter().map(|(_, _, log)| *log))
        .sum();
    let per_label: Vec<String> = labels
        .iter()
        .map(|label| cores(median(runs.iter().map(|r| r.cpu.cores(label)))))
        .collect();
    let _ = writeln!(
        out,
        "| {} | {} | {} – {} | {} | {} | {} | {} / {} (all runs) | {} | {} | {} / {} | {} |",
        thousands(options.rate),
        opt(median(achieved.iter().copied().map(Some)), thousands),
        opt(achieved.iter().copied().reduce(f64::min), thousands),
        opt(achieved.iter().copied().reduce(f64::max), thousands),
        opt(
            median(runs.iter().map(|r| Some(r.sent.late as f64))),
            thousands
        ),
        window_failures(runs),
        opt(
            median(runs.iter().map(|r| Some(
                r.relay_published / (r.window.as_secs_f64() + r.settle_seconds).max(1e-9)
            ))),
            thousands
        ),
        thousands(feed),
        thousands(from_log),
        per_label.join(" | "),
        cores(median(runs.iter().map(|r| Some(r.cpu.ours())))),
        cores(median(runs.iter().map(|r| Some(r.cpu.others())))),
        cores(median(runs.iter().map(|r| Some(r.cpu.steal())))),
        opt(
            median(runs.iter().map(|r| Some(r.settle_seconds))),
            |v| format!("{v:.2}")
        ),
    );
}

/// The second-projector part's markdown.
pub fn second(env: &Env, options: Options, pairs: &[Pair]) -> String {
    let mut out = String::from("### Distributed: a second projector process\n\n");
    let _ = writeln!(
        out,
        "`{}`: {} run(s), each three measurements in rotating order (A alone, A beside B, A beside \
         B stopped; run k starts with the k-th), each on a fresh database and nats-server with the \
         same gateway(s) and relay: {} commands/s offered by {} worlds, {:.0} s of warm-up, a \
         {:.0} s window; {}. {PROJECTOR_A} is `--role projector --projection board`; {PROJECTOR_B} is `--role \
         projector --projection district-stats --projection unit-profile --projection items \
         --projection trace`, on its own durable consumer. \"B stopped\": B started and caught up \
         like the other, then stopped with SIGSTOP from the schedule's start until the window \
         closed (its processes, connections and consumer there, none of its work), the control. \
         A's lag is its own `lianxi_projection_lag_seconds{{projection=\"board\"}}`.\n",
        invocation(),
        pairs.len(),
        thousands(options.rate),
        options.worlds,
        options.warmup.as_secs_f64(),
        options.window.as_secs_f64(),
        quiet(env),
    );
    let windows: Vec<&LagWindow> = pairs
        .iter()
        .flat_map(|p| p.alone.iter().chain(&p.beside).chain(&p.frozen))
        .collect();
    let labels = cpu_labels(&windows);
    let _ = writeln!(
        out,
        "| run | A's lag p50 ms | p99 ms | share ≤ 100 ms | B's lag p99 ms | recorded → JetStream p50 / p99 ms | achieved commands/s | cores busy: {} | all ours | other procs / steal |",
        labels.join(" | ")
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|{}---:|---:|",
        "---:|".repeat(labels.len())
    );
    let row = |out: &mut String, name: &str, runs: &[&LagWindow]| {
        let a: Vec<Buckets> = runs.iter().map(|r| r.lag_of(PROJECTOR_A)).collect();
        let b: Vec<Buckets> = runs.iter().map(|r| r.lag_of(PROJECTOR_B)).collect();
        let per_label: Vec<String> = labels
            .iter()
            .map(|label| cores(median(runs.iter().map(|r| r.cpu.cores(label)))))
            .collect();
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {} / {} | {} | {} | {} | {} / {} |",
            quantile_cell(median_quantile(a.iter().map(|b| b.quantile(0.5)))),
            quantile_cell(median_quantile(a.iter().map(|b| b.quantile(0.99)))),
            share_cell(median(
                a.iter().map(|b| b.share_at_most(LAG_TARGET_SECONDS))
            )),
            quantile_cell(median_quantile(b.iter().map(|b| b.quantile(0.99)))),
            opt(
                median(runs.iter().map(|r| quantile_ms(&r.to_stream_us, 0.5))),
                ms
            ),
            opt(
                median(runs.iter().map(|r| quantile_ms(&r.to_stream_us, 0.99))),
                ms
            ),
            opt(median(runs.iter().map(|r| Some(r.achieved()))), thousands),
            per_label.join(" | "),
            cores(median(runs.iter().map(|r| Some(r.cpu.ours())))),
            cores(median(runs.iter().map(|r| Some(r.cpu.others())))),
            cores(median(runs.iter().map(|r| Some(r.cpu.steal())))),
        );
    };
    for (i, pair) in pairs.iter().enumerate() {
        if let Some(alone) = &pair.alone {
            row(&mut out, &format!("{}: A alone", i + 1), &[alone]);
        }
        if let Some(beside) = &pair.beside {
            row(&mut out, &format!("{}: A beside B", i + 1), &[beside]);
        }
        if let Some(frozen) = &pair.frozen {
            row(
                &mut out,
                &format!("{}: A beside B stopped", i + 1),
                &[frozen],
            );
        }
    }
    let alone: Vec<&LagWindow> = pairs.iter().filter_map(|p| p.alone.as_ref()).collect();
    let beside: Vec<&LagWindow> = pairs.iter().filter_map(|p| p.beside.as_ref()).collect();
    row(&mut out, "**median: A alone**", &alone);
    row(&mut out, "**median: A beside B**", &beside);
    let stopped: Vec<&LagWindow> = pairs.iter().filter_map(|p| p.frozen.as_ref()).collect();
    if !stopped.is_empty() {
        row(&mut out, "**median: A beside B stopped**", &stopped);
    }
    // The median over runs of (`arm` ÷ alone) at quantile `q` of A's lag.
    let ratio = |arm: Pick, q: f64| {
        median(pairs.iter().map(|p| {
            let a = p.alone.as_ref()?.lag_of(PROJECTOR_A).quantile(q)?.seconds();
            let b = arm(p)?.lag_of(PROJECTOR_A).quantile(q)?.seconds();
            (a > 0.0).then(|| b / a)
        }))
    };
    let cores_ratio = |arm: Pick| {
        median(pairs.iter().map(|p| {
            let a = p.alone.as_ref()?.cpu.ours();
            let b = arm(p)?.cpu.ours();
            (a > 0.0).then(|| b / a)
        }))
    };
    let beside_arm: Pick = |p| p.beside.as_ref();
    let stopped_arm: Pick = |p| p.frozen.as_ref();
    let p99 = ratio(beside_arm, 0.99);
    let stopped_p99 = ratio(stopped_arm, 0.99);
    let arms: [(&str, Pick); 2] = [
        ("**beside ÷ alone**", beside_arm),
        ("**beside B stopped ÷ alone**", stopped_arm),
    ];
    for (name, arm) in arms {
        if pairs.iter().all(|p| arm(p).is_none()) {
            continue;
        }
        let _ = writeln!(
            out,
            "| {name} (median of each run's ratio) | {} | {} | | | | | {} | {} | |",
            opt(ratio(arm, 0.5), |v| format!("{v:.2} ×")),
            opt(ratio(arm, 0.99), |v| format!("{v:.2} ×")),
            vec![""; labels.len()].join(" | "),
            opt(cores_ratio(arm), |v| format!("{v:.2} ×")),
        );
    }
    let mut sources: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for run in &windows {
        for (label, feed, log) in &run.sources {
            let entry = sources.entry(label.as_str()).or_default();
            entry.0 += feed;
            entry.1 += log;
        }
    }
    let listed: Vec<String> = sources
        .iter()
        .map(|(label, (feed, log))| {
            format!(
                "{label} {} via NATS / {} via the log",
                thousands(*feed),
                thousands(*log)
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "\nEvents the projector processes' sources took, all windows: {}.\n",
        listed.join("; ")
    );
    let _ = writeln!(
        out,
        "A alone: {}; {}. A beside B: {}; {}. B: {}.\n",
        consumer_sentence(&alone, PROJECTOR_A),
        gaps_sentence(&alone),
        consumer_sentence(&beside, PROJECTOR_A),
        gaps_sentence(&beside),
        consumer_sentence(&beside, PROJECTOR_B),
    );
    let _ = writeln!(
        out,
        "{PROJECTOR_A}'s batches (`lianxi_projection_batch_seconds`), p50 / p99 ms alone → beside \
         B: {}.\n",
        phases_sentence(&alone, &beside, PROJECTOR_A)
    );
    let _ = writeln!(
        out,
        "Target \"a second projector process for a different projection does not slow the first\" \
         (read here as: A's p99 beside B at most {SECOND_TOLERANCE:.2} × its p99 alone, the median \
         of each run's ratio): {}, {}.",
        opt(p99, |v| format!("{v:.2} ×")),
        match p99 {
            Some(v) if v <= SECOND_TOLERANCE => "met",
            Some(_) => "NOT met",
            None => "not measured",
        }
    );
    if let Some(stopped) = stopped_p99 {
        let _ = writeln!(
            out,
            "The control, A beside B stopped: {stopped:.2} × A's p99 alone ({}). What B's presence \
             costs A without its work; the rest of \"beside ÷ alone\" is B's work.",
            if stopped <= SECOND_TOLERANCE {
                "within the tolerance"
            } else {
                "beyond the tolerance"
            }
        );
    }
    out
}

/// Each phase of `label`'s batches, median p50 / p99 over the windows alone and beside: where a
/// second process's load shows up in the first one's batches.
fn phases_sentence(alone: &[&LagWindow], beside: &[&LagWindow], label: &str) -> String {
    let of = |runs: &[&LagWindow], phase: &str| -> Vec<Buckets> {
        runs.iter()
            .map(|r| r.phases_of(label).remove(phase).unwrap_or_default())
            .collect()
    };
    let pair = |buckets: &[Buckets]| {
        format!(
            "{} / {}",
            quantile_cell(median_quantile(buckets.iter().map(|b| b.quantile(0.5)))),
            quantile_cell(median_quantile(buckets.iter().map(|b| b.quantile(0.99)))),
        )
    };
    let phases: BTreeSet<String> = alone
        .iter()
        .chain(beside)
        .flat_map(|r| r.phases_of(label).into_keys())
        .collect();
    let described: Vec<String> = phases
        .iter()
        .map(|phase| {
            format!(
                "`{phase}` {} → {}",
                pair(&of(alone, phase)),
                pair(&of(beside, phase))
            )
        })
        .collect();
    if described.is_empty() {
        "not exported".to_owned()
    } else {
        described.join(", ")
    }
}

//! Watching a server build its projections from the HTTP API alone (`GET /v1/projections`), so the measurement does not depend on how the projection engine works inside.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

use crate::http_bench::{Api, Server};
use crate::procstat::Memory;
use crate::report::thousands;

/// One projection as `/v1/projections` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub name: String,
    pub position: i64,
    pub state: String,
    pub error: Option<String>,
}

/// Parses `GET /v1/projections`: the log head and every projection listed.
pub fn parse(view: &Value) -> Result<(i64, Vec<Status>)> {
    let head = view
        .get("head")
        .and_then(Value::as_i64)
        .context("/v1/projections has no head")?;
    let list = view
        .get("projections")
        .and_then(Value::as_array)
        .context("/v1/projections has no projections")?;
    let mut out = Vec::with_capacity(list.len());
    for p in list {
        let text = |field: &str| p.get(field).and_then(Value::as_str).map(str::to_owned);
        out.push(Status {
            name: text("name").context("a projection without a name")?,
            position: p
                .get("position")
                .and_then(Value::as_i64)
                .context("a projection without a position")?,
            state: text("state").unwrap_or_default(),
            error: text("error"),
        });
    }
    Ok((head, out))
}

/// What the server did until every projection was live at the head.
#[derive(Debug, Clone, Default)]
pub struct Built {
    /// Seconds from "listening" until the poll that saw every projection live at the head.
    pub seconds: f64,
    /// Seconds from spawning the process to "listening" (opening the databases).
    pub startup_seconds: f64,
    /// Seconds from "listening" until each projection was first seen at the head.
    pub per_projection: BTreeMap<String, f64>,
    /// The largest resident size seen by polling, and the kernel's high-water mark at the end.
    pub sampled_peak_rss: u64,
    pub peak_rss: Option<u64>,
    /// Polls made.
    pub polls: usize,
}

/// How often a build is watched where the command line does not say (`rebuild` takes
/// `--poll-ms`): often enough to catch the moment each projection reaches the head.
pub const POLL: Duration = Duration::from_millis(100);

/// How long a build may take where the command line does not say (`rebuild` takes
/// `--timeout`): a million-event log builds in a few minutes.
pub const TIMEOUT: Duration = Duration::from_secs(1_800);

/// Polls until every projection listed is `live` at `head` (which nothing else moves), sampling
/// the server's resident memory at each poll. Fails when a projection fails, the server exits,
/// the head differs, or `timeout` passes.
pub async fn wait(
    server: &mut Server,
    api: &Api,
    head: i64,
    poll: Duration,
    timeout: Duration,
) -> Result<Built> {
    let mut built = Built {
        startup_seconds: (server.listening_at - server.spawned_at).as_secs_f64(),
        ..Built::default()
    };
    let mut last_progress = Instant::now();
    loop {
        server.ensure_running()?;
        if let Some(memory) = Memory::of(server.pid) {
            built.sampled_peak_rss = built.sampled_peak_rss.max(memory.rss_bytes);
        }
        let (seen_head, list) = parse(&api.projections().await?)?;
        let now = Instant::now();
        let since = (now - server.listening_at).as_secs_f64();
        built.polls += 1;
        ensure!(
            seen_head == head,
            "the server's log head is {seen_head}, expected {head}: something else wrote to it"
        );
        if let Some(failed) = list.iter().find(|p| p.state == "failed") {
            bail!(
                "projection {} failed at {}: {}",
                failed.name,
                failed.position,
                failed.error.as_deref().unwrap_or("no error given")
            );
        }
        for p in list.iter().filter(|p| p.position >= head) {
            built.per_projection.entry(p.name.clone()).or_insert(since);
        }
        if !list.is_empty() && list.iter().all(|p| p.state == "live" && p.position >= head) {
            built.seconds = since;
            built.peak_rss = Memory::of(server.pid).map(|m| m.peak_rss_bytes);
            return Ok(built);
        }
        if since > timeout.as_secs_f64() {
            bail!(
                "the projections did not reach the head ({head}) within {:.0} s: {}",
                timeout.as_secs_f64(),
                describe(&list)
            );
        }
        if last_progress.elapsed() >= Duration::from_secs(5) {
            let slowest = list.iter().map(|p| p.position).min().unwrap_or(0);
            eprintln!(
                "  {:.0} s: slowest projection at {} / {} ({} events/s), RSS {:.0} MB; {}",
                since,
                thousands(slowest as f64),
                thousands(head as f64),
                thousands(slowest as f64 / since.max(1e-3)),
                built.sampled_peak_rss as f64 / 1e6,
                describe(&list)
            );
            last_progress = Instant::now();
        }
        tokio::time::sleep(poll).await;
    }
}

fn describe(list: &[Status]) -> String {
    let parts: Vec<String> = list
        .iter()
        .map(|p| format!("{} {} {}", p.name, p.state, p.position))
        .collect();
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn parses_the_projections_view() {
        let view = json!({"head": 12, "projections": [
            {"name": "board", "version": 3, "generation": 1, "position": 12, "lag": 0,
             "state": "live", "active": true, "error": null, "error_position": null},
            {"name": "trace", "version": 1, "generation": 2, "position": 7, "lag": 5,
             "state": "building", "active": false, "error": null, "error_position": null},
        ]});
        let (head, list) = parse(&view).expect("parsed");
        assert_eq!(head, 12);
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].name, "trace");
        assert_eq!(list[1].position, 7);
        assert_eq!(list[1].state, "building");
        assert!(parse(&json!({"projections": []})).is_err());
    }
}

//! Commands/s over loopback HTTP against the real `lianxi serve` binary.
//!
//! Each run spawns the release binary on a free loopback port with a fresh data directory and a
//! bootstrap admin token, registers a district, four communities and sixteen units (four member
//! units per community), then drives each workload at each concurrency with one `reqwest` client
//! (one connection pool) and N tasks in a closed loop:
//!
//! - `propose`: `ProposeProject` with a fresh project id (reads the community stream, appends one
//!   event to a new project stream);
//! - `propose-claim`: `ProposeProject`, then `ClaimProject` of that project by a member unit
//!   (reads the project, community and unit streams; appends to the project stream). Each
//!   command is one operation: the figures are commands/s and per-command latency.
//!
//! Every run measures the baseline first, while no server runs. Before each measurement the
//! harness waits (at most 60 s) for the server's projections to catch up with the log, so a
//! measurement does not pay for the previous one's backlog; the lag they reach by the end of
//! the window is reported.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use uuid::Uuid;

use crate::load::{self, Op};
use crate::procstat::CpuUse;
use crate::prom::CommitStats;
use crate::report::{Measurement, Point, Run, RunSet};
use crate::{baseline, Settings, MAX_CONCURRENCY};

/// How long the server may take to print its address.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the server may take to stop after SIGTERM.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// A single request's limit; a stuck request fails rather than stalling the run.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const COMMUNITIES: usize = 4;
const UNITS_PER_COMMUNITY: usize = 4;
/// The six joint themes of DOMAIN.md, used in turn.
const THEMES: [&str; 6] = [
    "party_work",
    "shared_resources",
    "civility",
    "service_problems",
    "public_welfare",
    "living_environment",
];

/// A command mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// `ProposeProject` on fresh projects.
    Propose,
    /// `ProposeProject` then `ClaimProject` on fresh projects.
    ProposeClaim,
}

impl Workload {
    /// The name in the tables.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Propose => "propose",
            Workload::ProposeClaim => "propose-claim",
        }
    }
}

/// `lianxi` next to this executable: both live in `target/release` after the two builds.
pub fn default_binary() -> Result<PathBuf> {
    let me = std::env::current_exe().context("locating this executable")?;
    let dir = me
        .parent()
        .context("this executable has no parent directory")?;
    let binary = dir.join(format!("lianxi{}", std::env::consts::EXE_SUFFIX));
    ensure!(
        binary.is_file(),
        "{} not found: run `cargo build --release --bin lianxi` or pass --lianxi",
        binary.display()
    );
    Ok(binary)
}

/// A spawned `lianxi serve`.
pub(crate) struct Server {
    child: Child,
    pub(crate) pid: u32,
    pub(crate) addr: SocketAddr,
    pub(crate) log: PathBuf,
    /// When the process was spawned, and when it printed that it listens.
    pub(crate) spawned_at: Instant,
    pub(crate) listening_at: Instant,
    /// The data directory and the log; removed when dropped.
    scratch: tempfile::TempDir,
}

impl Server {
    /// Starts `binary serve` on a free loopback port with a fresh data directory under `dir`.
    async fn spawn(binary: &Path, dir: &Path, admin_token: &str) -> Result<Server> {
        let scratch = Self::scratch(dir)?;
        Self::start(binary, scratch, admin_token).await
    }

    /// A fresh directory for a server under `dir`; its data directory is [`Server::data_dir`],
    /// which a caller may fill (with a copy of a log) before [`Server::start`].
    pub(crate) fn scratch(dir: &Path) -> Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix("lianxi-bench-http-")
            .tempdir_in(dir)
            .context("creating the server's directory")
    }

    /// The data directory of a server started in `scratch`.
    pub(crate) fn data_dir(scratch: &tempfile::TempDir) -> PathBuf {
        scratch.path().join("data")
    }

    /// Starts `binary serve` on a free loopback port with its data directory in `scratch`.
    pub(crate) async fn start(
        binary: &Path,
        scratch: tempfile::TempDir,
        admin_token: &str,
    ) -> Result<Server> {
        Self::start_on(binary, scratch, admin_token, None).await
    }

    /// Like [`Server::start`], with the log in the PostgreSQL database at `database_url`
    /// (`--database-url`) when given; the data directory is passed either way.
    pub(crate) async fn start_on(
        binary: &Path,
        scratch: tempfile::TempDir,
        admin_token: &str,
        database_url: Option<&str>,
    ) -> Result<Server> {
        Self::start_with_args(binary, scratch, admin_token, database_url, &[]).await
    }

    /// Like [`Server::start_on`], with more `serve` options (`--role relay --nats-url …`).
    pub(crate) async fn start_with_args(
        binary: &Path,
        scratch: tempfile::TempDir,
        admin_token: &str,
        database_url: Option<&str>,
        more: &[String],
    ) -> Result<Server> {
        let log = scratch.path().join("server.log");
        let stderr = std::fs::File::create(&log).context("creating the server log")?;
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(Self::data_dir(&scratch));
        if let Some(url) = database_url {
            command.arg("--database-url").arg(url);
        }
        command.args(more);
        let mut child = command
            .env("LIANXI_ADMIN_TOKEN", admin_token)
            .env_remove("LIANXI_DATABASE_URL")
            .env_remove("LIANXI_NATS_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {}", binary.display()))?;
        let spawned_at = Instant::now();
        let pid = child.id().context("the server exited at once")?;
        let stdout = child.stdout.take().context("the server's stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(STARTUP_TIMEOUT, lines.next_line())
            .await
            .context("the server did not print its address within 30 s")?
            .context("reading the server's stdout")?;
        let listening_at = Instant::now();
        let Some(line) = first else {
            bail!("the server exited before listening:\n{}", log_tail(&log));
        };
        let addr: SocketAddr = line
            .trim()
            .strip_prefix("listening on http://")
            .with_context(|| format!("unexpected first line from the server: {line:?}"))?
            .parse()
            .with_context(|| format!("no address in {line:?}"))?;
        ensure!(
            addr.ip().is_loopback(),
            "the server listens on {addr}, not loopback"
        );
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Server {
            child,
            pid,
            addr,
            log,
            spawned_at,
            listening_at,
            scratch,
        })
    }

    /// Fails when the server has exited.
    pub(crate) fn ensure_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "the server exited ({status}) during the benchmark:\n{}",
                log_tail(&self.log)
            );
        }
        Ok(())
    }

    /// Ends a measurement: on success stops the server, reports what its log says (and keeps a
    /// copy in `dir` when `keep_log`); on failure adds what went wrong with the server to the
    /// error and stops it (best effort: the error that matters is the measurement's).
    pub(crate) async fn finish<T>(
        mut self,
        measured: Result<T>,
        dir: &Path,
        keep_log: bool,
    ) -> Result<T> {
        match measured {
            Ok(value) => {
                let log = self.log.clone();
                let kept =
                    keep_log.then(|| dir.join(format!("lianxi-bench-server-{}.log", self.pid)));
                // Holds the log until it has been read.
                let _scratch = self.stop().await?;
                report_log(&log);
                if let Some(kept) = kept {
                    std::fs::copy(&log, &kept)
                        .with_context(|| format!("keeping the server log as {}", kept.display()))?;
                    eprintln!("  server log kept in {}", kept.display());
                }
                Ok(value)
            }
            Err(error) => {
                let diagnosis = self.diagnose(dir);
                let _ = self.stop().await;
                Err(error.context(diagnosis))
            }
        }
    }

    /// What went wrong with the server, for an error message: whether it is still running,
    /// the end of its log, and where a copy of the whole log was kept (the data directory
    /// goes with the server).
    pub(crate) fn diagnose(&mut self, keep_in: &Path) -> String {
        let state = match self.child.try_wait() {
            Ok(Some(status)) => format!("the server exited ({status})"),
            Ok(None) => "the server is still running".to_owned(),
            Err(error) => format!("the server's state is unknown ({error})"),
        };
        let kept = keep_in.join(format!("lianxi-bench-server-{}.log", self.pid));
        let kept = match std::fs::copy(&self.log, &kept) {
            Ok(_) => format!("full log kept in {}", kept.display()),
            Err(error) => format!("could not keep the log: {error}"),
        };
        format!(
            "{state}; {kept}; its log ends with:\n{}",
            log_tail(&self.log)
        )
    }

    /// SIGTERM, then SIGKILL if it does not stop in time. Returns the server's directory (data
    /// and log), which goes when the caller drops it.
    pub(crate) async fn stop(mut self) -> Result<tempfile::TempDir> {
        let terminated = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()
            .is_ok_and(|status| status.success());
        let stopped = terminated
            && tokio::time::timeout(SHUTDOWN_TIMEOUT, self.child.wait())
                .await
                .is_ok();
        if !stopped {
            self.child.kill().await.context("killing the server")?;
        }
        Ok(self.scratch)
    }
}

/// Prints how many warnings and errors the server logged during a run, with a few of them:
/// a benchmark that provokes failures inside the server should say so.
pub(crate) fn report_log(log: &Path) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let notable: Vec<&str> = text
        .lines()
        .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
        .collect();
    if notable.is_empty() {
        return;
    }
    let errors = notable
        .iter()
        .filter(|line| line.contains(" ERROR "))
        .count();
    eprintln!(
        "  the server logged {} warnings and {errors} errors; the first ones:",
        notable.len() - errors
    );
    for line in notable.iter().take(3) {
        eprintln!("    {line}");
    }
}

/// The last lines of the server's log, for error messages.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Something that takes commands by name and JSON body: the HTTP API, or a command handler in
/// this process (the PostgreSQL benchmark's fallback). `Err` is a failure label.
pub(crate) trait Commands: Clone + Send + Sync + 'static {
    fn send(
        &self,
        name: &str,
        body: &Value,
    ) -> impl std::future::Future<Output = std::result::Result<(), String>> + Send;
}

impl Commands for Api {
    async fn send(&self, name: &str, body: &Value) -> std::result::Result<(), String> {
        self.command(name, body).await
    }
}

/// Sends a set-up command: any failure stops the benchmark.
async fn must<C: Commands>(commands: &C, name: &str, body: Value) -> Result<()> {
    commands
        .send(name, &body)
        .await
        .map_err(|label| anyhow::anyhow!("set-up command failed: {label}"))
}

/// The HTTP API as the workers use it.
#[derive(Clone)]
pub(crate) struct Api {
    client: reqwest::Client,
    base: String,
    bearer: String,
}

impl Api {
    pub(crate) fn new(addr: SocketAddr, admin_token: &str) -> Result<Api> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(MAX_CONCURRENCY)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("building the HTTP client")?;
        Ok(Api {
            client,
            base: format!("http://{addr}"),
            bearer: format!("Bearer {admin_token}"),
        })
    }

    /// Sends one command; `Err` is a failure label such as `409 project_already_claimed`.
    pub(crate) async fn command(
        &self,
        name: &str,
        body: &Value,
    ) -> std::result::Result<(), String> {
        let response = self
            .client
            .post(format!("{}/v1/commands/{name}", self.base))
            .header(reqwest::header::AUTHORIZATION, &self.bearer)
            .json(body)
            .send()
            .await
            .map_err(|error| format!("transport: {}", transport_kind(&error)))?;
        let status = response.status();
        // Reading the whole body lets the connection go back to the pool.
        let bytes = response
            .bytes()
            .await
            .map_err(|error| format!("transport: {}", transport_kind(&error)))?;
        if status.is_success() {
            return Ok(());
        }
        let code = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|problem| problem.get("code")?.as_str().map(str::to_owned))
            .unwrap_or_default();
        Err(format!("{} {name} {code}", status.as_u16()))
    }

    /// The server's Prometheus text.
    pub(crate) async fn metrics(&self) -> Result<String> {
        let response = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .context("GET /metrics")?;
        ensure!(
            response.status().is_success(),
            "GET /metrics answered {}",
            response.status()
        );
        response.text().await.context("reading /metrics")
    }

    /// `GET path` (with the token); `Err` is a failure label such as `404 not_found`. Returns
    /// the body's length.
    pub(crate) async fn get(&self, path: &str) -> std::result::Result<usize, String> {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header(reqwest::header::AUTHORIZATION, &self.bearer)
            .send()
            .await
            .map_err(|error| format!("transport: {}", transport_kind(&error)))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|error| format!("transport: {}", transport_kind(&error)))?;
        if status.is_success() {
            return Ok(bytes.len());
        }
        let code = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|problem| problem.get("code")?.as_str().map(str::to_owned))
            .unwrap_or_default();
        Err(format!("{} GET {code}", status.as_u16()))
    }

    /// `GET path` as a client accepting gzip: the body's length as sent, or an error when it
    /// did not come compressed.
    pub(crate) async fn get_gzip(&self, path: &str) -> std::result::Result<usize, String> {
        let (compressed, bytes) = self.get_encoded(path, true).await?;
        if compressed {
            Ok(bytes.len())
        } else {
            Err("200 GET not gzip-compressed".to_owned())
        }
    }

    /// `GET path`, accepting gzip or not: whether the answer came gzip-compressed, and its
    /// body as sent.
    pub(crate) async fn get_encoded(
        &self,
        path: &str,
        gzip: bool,
    ) -> std::result::Result<(bool, bytes::Bytes), String> {
        let mut request = self
            .client
            .get(format!("{}{path}", self.base))
            .header(reqwest::header::AUTHORIZATION, &self.bearer);
        if gzip {
            request = request.header(reqwest::header::ACCEPT_ENCODING, "gzip");
        }
        let response = request
            .send()
            .await
            .map_err(|error| format!("transport: {}", transport_kind(&error)))?;
        let status = response.status();
        let compressed = response
            .headers()
            .get(reqwest::header::CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
        let bytes = response
            .bytes()
            .await
            .map_err(|error| format!("transport: {}", transport_kind(&error)))?;
        if status.is_success() {
            return Ok((compressed, bytes));
        }
        let code = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|problem| problem.get("code")?.as_str().map(str::to_owned))
            .unwrap_or_default();
        Err(format!("{} GET {code}", status.as_u16()))
    }

    /// `GET path` with `If-None-Match: etag` when given, as a client with an HTTP cache polls.
    /// Returns the answer's `ETag` and whether it was 304 (no body).
    pub(crate) async fn get_unless(
        &self,
        path: &str,
        etag: Option<&str>,
    ) -> std::result::Result<(Option<String>, bool), String> {
        let mut request = self
            .client
            .get(format!("{}{path}", self.base))
            .header(reqwest::header::AUTHORIZATION, &self.bearer);
        if let Some(etag) = etag {
            request = request.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        let response = request
            .send()
            .await
            .map_err(|error| format!("transport: {}", transport_kind(&error)))?;
        let status = response.status();
        let tag = response
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response
            .bytes()
            .await
            .map_err(|error| format!("transport: {}", transport_kind(&error)))?;
        match status.as_u16() {
            304 => Ok((tag, true)),
            200..=299 => Ok((tag, false)),
            other => {
                let code = serde_json::from_slice::<Value>(&bytes)
                    .ok()
                    .and_then(|problem| problem.get("code")?.as_str().map(str::to_owned))
                    .unwrap_or_default();
                Err(format!("{other} GET {code}"))
            }
        }
    }

    /// `GET /v1/projections` as JSON.
    pub(crate) async fn projections(&self) -> Result<Value> {
        let response = self
            .client
            .get(format!("{}/v1/projections", self.base))
            .header(reqwest::header::AUTHORIZATION, &self.bearer)
            .send()
            .await
            .context("GET /v1/projections")?;
        ensure!(
            response.status().is_success(),
            "GET /v1/projections answered {}",
            response.status()
        );
        response.json().await.context("reading /v1/projections")
    }

    /// Each projection's lag (events behind the log's head) as the server reports it; empty
    /// when it has no `/v1/projections` (yet).
    pub(crate) async fn projection_lags(&self) -> Result<Vec<(String, i64)>> {
        let response = self
            .client
            .get(format!("{}/v1/projections", self.base))
            .header(reqwest::header::AUTHORIZATION, &self.bearer)
            .send()
            .await
            .context("GET /v1/projections")?;
        if !response.status().is_success() {
            return Ok(Vec::new());
        }
        let body: Value = response.json().await.context("reading /v1/projections")?;
        let lags = body
            .get("projections")
            .and_then(Value::as_array)
            .map(|all| {
                all.iter()
                    .filter_map(|p| {
                        let name = p.get("name")?.as_str()?.to_owned();
                        Some((name, p.get("lag")?.as_i64()?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(lags)
    }
}

fn transport_kind(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connect"
    } else if error.is_body() || error.is_decode() {
        "body"
    } else {
        "request"
    }
}

/// What the set-up registered.
#[derive(Debug, Clone)]
pub(crate) struct Community {
    id: Uuid,
    units: Vec<Uuid>,
}

/// Registers a district, its communities and units, and admits the units as members.
pub(crate) async fn set_up<C: Commands>(api: &C) -> Result<Vec<Community>> {
    let district = Uuid::now_v7();
    must(
        api,
        "RegisterDistrict",
        json!({"district_id": district, "name": "Zhaozhen benchmark district"}),
    )
    .await?;
    let mut communities = Vec::with_capacity(COMMUNITIES);
    for c in 0..COMMUNITIES {
        let community = Uuid::now_v7();
        must(
            api,
            "RegisterCommunity",
            json!({
                "community_id": community,
                "district_id": district,
                "name": format!("Benchmark community {c}"),
                "committee": format!("Benchmark community {c} party committee"),
            }),
        )
        .await?;
        let mut units = Vec::with_capacity(UNITS_PER_COMMUNITY);
        for u in 0..UNITS_PER_COMMUNITY {
            let unit = Uuid::now_v7();
            must(
                api,
                "RegisterUnit",
                json!({"unit_id": unit, "district_id": district, "name": format!("Unit {c}-{u}")}),
            )
            .await?;
            must(
                api,
                "AdmitMemberUnit",
                json!({"community_id": community, "unit_id": unit, "kind": "jurisdiction"}),
            )
            .await?;
            units.push(unit);
        }
        communities.push(Community {
            id: community,
            units,
        });
    }
    Ok(communities)
}

/// The body of a `ProposeProject` for a fresh project.
fn proposal(project: Uuid, community: Uuid, n: usize) -> Value {
    json!({
        "project_id": project,
        "community_id": community,
        "title": format!("Courtyard clean-up no. {n}"),
        "theme": THEMES[n % THEMES.len()],
        "need": "Twenty volunteers for two Saturdays, gloves, bags and a van for the rubbish.",
    })
}

/// One client of the `propose` workload.
struct Proposer {
    api: Api,
    community: Community,
    sent: usize,
}

impl Op for Proposer {
    async fn run(&mut self) -> std::result::Result<(), String> {
        self.sent += 1;
        let body = proposal(Uuid::now_v7(), self.community.id, self.sent);
        self.api.command("ProposeProject", &body).await
    }
}

/// One client of the `propose-claim` workload: proposes, then claims what it proposed.
pub(crate) struct ProposerClaimer<C> {
    api: C,
    community: Community,
    sent: usize,
    proposed: Option<Uuid>,
}

impl<C: Commands> ProposerClaimer<C> {
    /// Client `worker` of `communities` (clients are spread over them in turn).
    pub(crate) fn new(api: C, communities: &[Community], worker: usize) -> Self {
        ProposerClaimer {
            api,
            community: communities[worker % communities.len()].clone(),
            sent: 0,
            proposed: None,
        }
    }
}

impl<C: Commands> Op for ProposerClaimer<C> {
    async fn run(&mut self) -> std::result::Result<(), String> {
        self.sent += 1;
        if let Some(project) = self.proposed.take() {
            let unit = self.community.units[self.sent % self.community.units.len()];
            let body = json!({
                "project_id": project,
                "unit_id": unit,
                "commitment": "Two staff every Saturday and the van.",
            });
            return self.api.send("ClaimProject", &body).await;
        }
        let project = Uuid::now_v7();
        let body = proposal(project, self.community.id, self.sent);
        self.api.send("ProposeProject", &body).await?;
        self.proposed = Some(project);
        Ok(())
    }
}

/// How long to wait for the projections to catch up before a measurement.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Waits until every projection has caught up with the log (bounded), so each measurement
/// starts from the same state and its server CPU is not spent on the previous one's backlog.
pub(crate) async fn settle(api: &Api) -> Result<()> {
    let started = std::time::Instant::now();
    let mut backlog = None;
    loop {
        let lag = api
            .projection_lags()
            .await?
            .iter()
            .map(|(_, lag)| *lag)
            .max()
            .unwrap_or(0);
        backlog.get_or_insert(lag);
        if lag <= 0 {
            if let Some(backlog) = backlog.filter(|backlog| *backlog > 0) {
                let seconds = started.elapsed().as_secs_f64();
                eprintln!(
                    "  projections caught up with {backlog} events in {seconds:.1} s ({:.0} events/s)",
                    backlog as f64 / seconds.max(1e-3)
                );
            }
            return Ok(());
        }
        if started.elapsed() >= SETTLE_TIMEOUT {
            eprintln!(
                "  projections still {lag} events behind after {:.0} s; measuring anyway",
                SETTLE_TIMEOUT.as_secs_f64()
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Failed runs tolerated (a server that dies, say) before the benchmark gives up.
const MAX_FAILED_RUNS: usize = 2;

/// Runs every run: the baseline, then one fresh server for all workloads and concurrencies. A
/// failed run is reported on stderr (with the server's exit status and log, kept on disk) and
/// left out of the tables.
pub async fn run(settings: &Settings, binary: &Path, workloads: &[Workload]) -> Result<RunSet> {
    ensure!(!workloads.is_empty(), "no workload to run");
    let mut set = RunSet {
        runs: Vec::with_capacity(settings.runs),
        failed_runs: 0,
    };
    for index in 1..=settings.runs {
        eprintln!("http run {index}/{}: baseline", settings.runs);
        match one_run(settings, binary, workloads).await {
            Ok(run) => set.runs.push(run),
            Err(error) => {
                eprintln!("http run {index} FAILED: {error:#}");
                set.failed_runs += 1;
                ensure!(
                    set.failed_runs <= MAX_FAILED_RUNS,
                    "{} runs failed; giving up",
                    set.failed_runs
                );
            }
        }
    }
    ensure!(!set.runs.is_empty(), "every run failed");
    Ok(set)
}

/// One run: the baseline, a fresh server, its set-up, every workload and concurrency.
async fn one_run(settings: &Settings, binary: &Path, workloads: &[Workload]) -> Result<Run> {
    settings.wait_for_quiet().await;
    let baseline = baseline::measure(&settings.dir, settings.window, settings.ids).await?;
    eprintln!("  baseline: {:.0} commits/s", baseline.load.rate());
    let admin_token = format!("bench-{}", Uuid::new_v4().simple());
    let mut server = Server::spawn(binary, &settings.dir, &admin_token).await?;
    let measured = measure_all(settings, &mut server, &admin_token, workloads).await;
    let points = server
        .finish(measured, &settings.dir, settings.keep_server_logs)
        .await?;
    Ok(Run { baseline, points })
}

/// Sets the server up and measures every workload at every concurrency.
async fn measure_all(
    settings: &Settings,
    server: &mut Server,
    admin_token: &str,
    workloads: &[Workload],
) -> Result<Vec<Point>> {
    let api = Api::new(server.addr, admin_token)?;
    let communities = set_up(&api).await?;
    let mut points = Vec::new();
    for &workload in workloads {
        for &concurrency in &settings.concurrency {
            settle(&api).await?;
            settings.wait_for_quiet().await;
            server.ensure_running()?;
            let measurement = measure_http(
                settings,
                &api,
                (server.pid, None),
                &communities,
                workload,
                concurrency,
            )
            .await?;
            server.ensure_running()?;
            eprintln!(
                "  {:<13} {concurrency:>3} clients: {:.0} commands/s, p50 {:.1} ms, p99 {:.1} ms, {} failed",
                workload.name(),
                measurement.load.rate(),
                measurement.load.latency_ms(0.5),
                measurement.load.latency_ms(0.99),
                measurement.load.failed(),
            );
            points.push(Point {
                workload: workload.name().to_owned(),
                concurrency,
                measurement,
            });
        }
    }
    Ok(points)
}

/// One measurement of `workload` with `concurrency` clients; `pids` are the server's and, when
/// it runs on PostgreSQL, the database server's postmaster (their CPU is measured).
pub(crate) async fn measure_http(
    settings: &Settings,
    api: &Api,
    pids: (u32, Option<u32>),
    communities: &[Community],
    workload: Workload,
    concurrency: usize,
) -> Result<Measurement> {
    let community = |worker: usize| communities[worker % communities.len()].clone();
    let probe = || {
        let api = api.clone();
        async move {
            let text = api.metrics().await?;
            Ok((
                CpuUse::with_database(Some(pids.0), pids.1),
                CommitStats::parse(&text),
            ))
        }
    };
    let (load, before, after) = match workload {
        Workload::Propose => {
            let ops = (0..concurrency)
                .map(|worker| Proposer {
                    api: api.clone(),
                    community: community(worker),
                    sent: 0,
                })
                .collect();
            load::measure(ops, settings.window, probe).await?
        }
        Workload::ProposeClaim => {
            let ops = (0..concurrency)
                .map(|worker| ProposerClaimer::new(api.clone(), communities, worker))
                .collect();
            load::measure(ops, settings.window, probe).await?
        }
    };
    let lags = api.projection_lags().await?;
    if !lags.is_empty() {
        let listed: Vec<String> = lags
            .iter()
            .map(|(name, lag)| format!("{name} {lag}"))
            .collect();
        eprintln!(
            "  projection lag at the window's end: {}",
            listed.join(", ")
        );
    }
    let projection_lag = lags.iter().map(|(_, lag)| *lag).max();
    Ok(Measurement {
        load,
        cpu: after.0.since(&before.0),
        commits: Some(after.1.since(&before.1)),
        projection_lag,
    })
}

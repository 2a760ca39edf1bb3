//! Commands/s on PostgreSQL with the `propose-claim` workload of the HTTP benchmark
//! (`ProposeProject` of a fresh project, then `ClaimProject` of it by a member unit; each command
//! one operation), after the same set-up (a district, 4 communities, 16 member units).
//!
//! Two ways to send them:
//! - over HTTP to `lianxi serve --database-url <the benchmark's database>`, spawned fresh for
//!   each measurement, exactly as the HTTP benchmark drives it on SQLite;
//! - in process, through a `CommandHandler` over a `PostgresStore` (as `lianxi serve` builds it,
//!   minus HTTP, authentication and projections), for a build whose `serve` cannot run on
//!   PostgreSQL yet. The tables say which one was used.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use commands::{CommandHandler, CommandRequest, Principal, Role};
use domain::Command;
use serde_json::Value;
use store::postgres::PostgresStore;
use store::EventStore;
use uuid::Uuid;

use crate::http_bench::{self, Api, Commands, ProposerClaimer, Server, Workload};
use crate::load;
use crate::procstat::CpuUse;
use crate::prom::{self, CommitStats};
use crate::report::Measurement;
use crate::Settings;

/// How the commands are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    /// HTTP when `lianxi serve --database-url` starts, else in process.
    Auto,
    /// Over HTTP to a spawned `lianxi serve --database-url`.
    Http,
    /// Through a `CommandHandler` in this process.
    InProcess,
}

impl Via {
    /// The workload's name in the tables.
    pub fn workload(self) -> &'static str {
        match self {
            Via::Http => "propose-claim over HTTP",
            Via::InProcess | Via::Auto => "propose-claim in process (CommandHandler)",
        }
    }
}

/// A command handler in this process, as the load's clients use it.
#[derive(Clone)]
struct InProcess {
    handler: CommandHandler,
}

impl Commands for InProcess {
    async fn send(&self, name: &str, body: &Value) -> std::result::Result<(), String> {
        let command = Command::parse(name, body.to_string().as_bytes())
            .map_err(|error| format!("parse {name}: {error}"))?;
        self.handler
            .handle(CommandRequest {
                command,
                principal: Principal {
                    actor_id: Uuid::from_u128(1),
                    name: "benchmark admin".into(),
                    role: Role::Admin,
                    scope: None,
                },
                request_hash: String::new(),
                idempotency_key: None,
                if_match: None,
                correlation_id: None,
                causation_id: None,
            })
            .await
            .map(|_| ())
            .map_err(|error| format!("{name} {}", error.outcome()))
    }
}

/// One measurement in process: a fresh store and handler on the empty database at `url`.
pub async fn measure_in_process(
    settings: &Settings,
    url: &str,
    postmaster: u32,
    concurrency: usize,
) -> Result<Measurement> {
    let metrics = prom::local_recorder()?;
    let postgres = PostgresStore::connect(url)
        .await
        .context("opening the store for the commands")?;
    let pool = postgres.pool().clone();
    let store: Arc<dyn EventStore> = Arc::new(postgres);
    let commands = InProcess {
        handler: CommandHandler::new(store),
    };
    let communities = http_bench::set_up(&commands).await?;
    let ops = (0..concurrency)
        .map(|worker| ProposerClaimer::new(commands.clone(), &communities, worker))
        .collect();
    let (load, before, after) = load::measure(ops, settings.window, || {
        let snapshot = (
            CpuUse::with_database(None, Some(postmaster)),
            CommitStats::parse(&metrics.render()),
        );
        async move { Ok(snapshot) }
    })
    .await?;
    super::report_scans(&pool).await;
    Ok(Measurement {
        load,
        cpu: after.0.since(&before.0),
        commits: Some(after.1.since(&before.1)),
        projection_lag: None,
    })
}

/// One measurement over HTTP: a fresh `lianxi serve` on the empty database at `url`.
pub async fn measure_http(
    settings: &Settings,
    binary: &Path,
    url: &str,
    postmaster: u32,
    concurrency: usize,
) -> Result<Measurement> {
    let admin_token = format!("bench-{}", Uuid::new_v4().simple());
    let scratch = Server::scratch(&settings.dir)?;
    let mut server = Server::start_on(binary, scratch, &admin_token, Some(url)).await?;
    let measured = async {
        let api = Api::new(server.addr, &admin_token)?;
        let communities = http_bench::set_up(&api).await?;
        http_bench::settle(&api).await?;
        settings.wait_for_quiet().await;
        server.ensure_running()?;
        let measurement = http_bench::measure_http(
            settings,
            &api,
            (server.pid, Some(postmaster)),
            &communities,
            Workload::ProposeClaim,
            concurrency,
        )
        .await?;
        server.ensure_running()?;
        anyhow::Ok(measurement)
    }
    .await;
    server
        .finish(measured, &settings.dir, settings.keep_server_logs)
        .await
}

/// Whether `binary serve --database-url` starts on the database at `url`; `Err` says why not.
pub async fn serve_runs_on_postgres(settings: &Settings, binary: &Path, url: &str) -> Result<()> {
    let admin_token = format!("bench-{}", Uuid::new_v4().simple());
    let scratch = Server::scratch(&settings.dir)?;
    let mut server = Server::start_on(binary, scratch, &admin_token, Some(url)).await?;
    let running = server.ensure_running();
    let _ = server.stop().await?;
    running
}

//! `lianxi trace --project ID | --unit ID | --actor ID | --community ID`: who did what, when, in
//! log order, read from the store and the read-model files directly (API.md, CLI table).
//!
//! It answers from the `trace` read model a server keeps up to date (a running server beside it
//! is fine: both files are SQLite in WAL mode, and this command only reads them). When that read
//! model is missing or behind the log and not moving — no server is running — it builds a
//! private trace in memory from the whole log instead, so the answer always covers the log up
//! to its head when the command started. The shared read-model file is never written.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::{Args, ValueEnum};
use projections::collection::Namespace;
use projections::projectors::trace::{self, Subject, TraceEntry, TraceQuery, Within};
use projections::readdb::ReadDb;
use projections::Projector;
use store::EventStore;
use uuid::Uuid;

use crate::cli::StoreArgs;
use crate::progress::Progress;

/// How long the read model may stand still, behind the head, before it is presumed unattended.
const STILL_FOR: Duration = Duration::from_millis(500);
/// How long to wait in all for a running server's read model to reach the head.
const WAIT_AT_MOST: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
#[group(id = "subject", required = true, multiple = false)]
pub struct TraceArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// A project's trace.
    #[arg(long, group = "subject")]
    pub project: Option<Uuid>,
    /// A unit's trace.
    #[arg(long, group = "subject")]
    pub unit: Option<Uuid>,
    /// Everything one actor (token holder) recorded.
    #[arg(long, group = "subject")]
    pub actor: Option<Uuid>,
    /// A community's trace.
    #[arg(long, group = "subject")]
    pub community: Option<Uuid>,
    /// Only events recorded at or after this time (RFC 3339).
    #[arg(long)]
    pub from: Option<DateTime<Utc>>,
    /// Only events recorded before this time (RFC 3339).
    #[arg(long)]
    pub to: Option<DateTime<Utc>>,
    #[arg(long, value_enum, default_value_t = TraceFormat::Text)]
    pub format: TraceFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TraceFormat {
    /// One line per entry: position, recorded_at, actor (role), command, event type, summary,
    /// short hash.
    Text,
    /// `{"entries": [...]}`, as `GET /v1/trace` answers.
    Json,
}

impl TraceArgs {
    fn subject(&self) -> Result<Subject> {
        match (self.project, self.unit, self.actor, self.community) {
            (Some(id), None, None, None) => Ok(Subject::Project(id)),
            (None, Some(id), None, None) => Ok(Subject::Unit(id)),
            (None, None, Some(id), None) => Ok(Subject::Actor(id)),
            (None, None, None, Some(id)) => Ok(Subject::Community(id)),
            _ => anyhow::bail!("give exactly one of --project, --unit, --actor, --community"),
        }
    }
}

pub async fn command(args: TraceArgs) -> Result<ExitCode> {
    let query = TraceQuery {
        subject: args.subject()?,
        within: Within::Everything,
        from: args.from,
        to: args.to,
    };
    let store: Arc<dyn EventStore> = crate::backend::open(&args.store).await?.log;
    let head = store.head().await?;
    let shared = crate::backend::read_models(&args.store).await?;
    let db = if caught_up(&shared, head).await? {
        shared
    } else {
        eprintln!(
            "lianxi: the trace read model has not reached the log head ({head}) and is not \
             moving (no server running?); tracing from the log directly"
        );
        build_in_memory(store.as_ref(), head).await?
    };
    let found = match trace::trace(&db, store.as_ref(), &query).await {
        Ok(found) => found,
        Err(trace::TraceError::Unknown(what)) => {
            eprintln!("lianxi: no {what} is known");
            return Ok(ExitCode::from(1));
        }
        Err(error) => return Err(error.into()),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match args.format {
        TraceFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &found)?;
            writeln!(out)?;
        }
        TraceFormat::Text => {
            for entry in &found.entries {
                writeln!(out, "{}", line(entry))?;
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// One entry on one line: position, recorded_at, actor name (role), command, event type,
/// summary, short hash.
pub fn line(entry: &TraceEntry) -> String {
    let short: String = entry.hash.chars().take(12).collect();
    format!(
        "{:>8}  {}  {} ({})  {}  {}  {}  {}",
        entry.position,
        entry.recorded_at,
        entry.actor.name,
        entry.actor.role,
        entry.command,
        entry.event_type,
        entry.summary,
        short
    )
}

/// Whether the shared trace read model reaches `head`, waiting while it moves towards it.
async fn caught_up(db: &ReadDb, head: i64) -> Result<bool> {
    let started = Instant::now();
    let mut last = None;
    let mut still_since = Instant::now();
    loop {
        let row = db.active(trace::NAME).await?;
        let Some(row) = row else { return Ok(false) };
        if row.position >= head {
            return Ok(true);
        }
        if row.state == "failed" || started.elapsed() >= WAIT_AT_MOST {
            return Ok(false);
        }
        if last != Some(row.position) {
            last = Some(row.position);
            still_since = Instant::now();
        } else if still_since.elapsed() >= STILL_FOR {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A private trace read model built from the log up to `head`.
async fn build_in_memory(store: &dyn EventStore, head: i64) -> Result<ReadDb> {
    let db = ReadDb::in_memory().await?;
    let mut projector = trace::TraceProjector::default();
    let row = db
        .create_generation(projector.name(), projector.version())
        .await?;
    let ns = Namespace {
        projection: trace::NAME,
        generation: row.generation,
    };
    let mut progress = Progress::new("trace", "events", head.max(0) as u64);
    projections::runner::catch_up(store, &db, &mut projector, &ns, 0, Some(head), |p| {
        progress.set(p.max(0) as u64)
    })
    .await?;
    progress.finish();
    Ok(db)
}

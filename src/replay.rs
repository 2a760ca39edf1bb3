//! `lianxi replay --report NAME [--until-position N | --as-of T] [--format json|csv]`: a
//! registered report ([`projections::reports`]) built from history in memory, printed on
//! standard output. The live read models are never read or written.
//!
//! `--until-position N` includes the event at N; `--as-of T` means what the log held at
//! recording time T (up to the last event before the first one recorded after T). Progress goes
//! to standard error.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::{Args, ValueEnum};
use projections::reports::{self, Format, Params};
use store::EventStore;
use uuid::Uuid;

use crate::cli::StoreArgs;
use crate::progress::Progress;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The report: `board`, `volunteer-hours`, … (an unknown name lists them).
    #[arg(long)]
    pub report: String,
    /// Include the log up to this position (inclusive).
    #[arg(long, conflicts_with = "as_of")]
    pub until_position: Option<i64>,
    /// What the log held at this recording time (RFC 3339, e.g. 2018-06-04T00:00:00+08:00).
    #[arg(long)]
    pub as_of: Option<DateTime<Utc>>,
    #[arg(long, value_enum, default_value_t = ReplayFormat::Json)]
    pub format: ReplayFormat,
    /// Only this district (picks one when the report is of one district).
    #[arg(long)]
    pub district: Option<Uuid>,
    /// Only this community (`board`: that community's board alone).
    #[arg(long)]
    pub community: Option<Uuid>,
    /// Only this quarter, like 2018Q2 (for reports by quarter).
    #[arg(long, value_parser = parse_quarter)]
    pub quarter: Option<domain::values::Quarter>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReplayFormat {
    Json,
    Csv,
}

fn parse_quarter(value: &str) -> Result<domain::values::Quarter, String> {
    domain::values::Quarter::parse(value)
}

pub async fn command(args: ReplayArgs) -> Result<ExitCode> {
    let report = reports::find(&args.report)?;
    if args.until_position.is_some_and(|p| p < 0) {
        anyhow::bail!("--until-position must be a log position (0 or more)");
    }
    let store: Arc<dyn EventStore> = crate::backend::open(&args.store).await?.log;
    let head = store.head().await?;
    let until = match (args.until_position, args.as_of) {
        (Some(position), _) => position.min(head),
        (None, Some(at)) => reports::position_at(store.as_ref(), at)
            .await
            .context("finding the log position of --as-of")?,
        (None, None) => head,
    };
    let params = Params {
        district: args.district,
        community: args.community,
        quarter: args.quarter,
        as_of: args.as_of.unwrap_or_else(Utc::now),
    };
    let projectors = report.projectors().len().max(1) as u64;
    let total = until.max(0) as u64;
    let mut progress = Progress::new(
        format!("replay {}", report.name()),
        "events",
        total * projectors,
    );
    let replayed = reports::replay(
        store.as_ref(),
        report.as_ref(),
        Some(until),
        &params,
        |index, position| progress.set(index as u64 * total + position.max(0) as u64),
    )
    .await?;
    progress.finish();
    tracing::debug!(position = replayed.position, "replayed");
    let format = match args.format {
        ReplayFormat::Json => Format::Json,
        ReplayFormat::Csv => Format::Csv,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    replayed.output.write(format, &mut out)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

//! Appends/s through the SQLite store alone, in this process.
//!
//! Each writer appends one ~300-byte event per request to a stream of its own that does not
//! exist yet (`ExpectedVersion::NoStream`), in a closed loop. Every run and concurrency gets a
//! fresh store in a fresh directory, opened with [`SqliteStore::open`] exactly as `lianxi serve`
//! opens it (WAL, `synchronous = FULL`, group commit). Each run starts with the baseline.

use anyhow::{ensure, Context, Result};
use store::sqlite::SqliteStore;
use store::{AppendOutcome, AppendRequest, EventStore, ExpectedVersion, NewEvent, StoreError};

use crate::load::{self, Op};
use crate::payload::{Ids, Payload, EVENT_TYPE};
use crate::procstat::CpuUse;
use crate::prom::{self, CommitStats};
use crate::report::{Measurement, Point, Run, RunSet};
use crate::{baseline, Settings};

/// The workload's name in the tables.
pub const WORKLOAD: &str = "append";

/// One writer: appends to a fresh stream per request (any backend).
pub(crate) struct Appender<S> {
    pub(crate) store: S,
    pub(crate) ids: Ids,
}

impl<S: EventStore + 'static> Op for Appender<S> {
    async fn run(&mut self) -> std::result::Result<(), String> {
        let project_id = self.ids.next_id();
        let command_id = self.ids.next_id();
        let payload = Payload::new(project_id, command_id);
        let request = AppendRequest {
            stream: format!("project-{project_id}"),
            expected: ExpectedVersion::NoStream,
            command_id,
            idempotency: None,
            events: vec![NewEvent {
                id: self.ids.next_id(),
                event_type: EVENT_TYPE.to_owned(),
                schema_version: 1,
                data: payload.data,
                metadata: payload.metadata,
            }],
            unchanged: Vec::new(),
        };
        match self.store.append(request).await {
            Ok(AppendOutcome::Appended(_)) => Ok(()),
            Ok(AppendOutcome::Duplicate(_)) => Err("duplicate".to_owned()),
            Err(error) => Err(failure_label(&error)),
        }
    }
}

pub(crate) fn failure_label(error: &StoreError) -> String {
    match error {
        StoreError::VersionConflict { .. } => "version_conflict".to_owned(),
        StoreError::IdempotencyKeyReused { .. } => "idempotency_key_reused".to_owned(),
        StoreError::Invalid(_) => format!("invalid: {error}"),
        StoreError::Unavailable(_) => format!("unavailable: {error}"),
        StoreError::Corrupt { .. } => format!("corrupt: {error}"),
    }
}

/// Runs every run: the baseline, then each concurrency on a fresh store.
pub async fn run(settings: &Settings) -> Result<RunSet> {
    let metrics = prom::local_recorder()?;
    let mut runs = Vec::with_capacity(settings.runs);
    for index in 1..=settings.runs {
        eprintln!("store run {index}/{}: baseline", settings.runs);
        settings.wait_for_quiet().await;
        let baseline = baseline::measure(&settings.dir, settings.window, settings.ids).await?;
        eprintln!("  baseline: {:.0} commits/s", baseline.load.rate());
        let mut points = Vec::with_capacity(settings.concurrency.len());
        for &concurrency in &settings.concurrency {
            settings.wait_for_quiet().await;
            let measurement = measure_store(settings, concurrency, || {
                CommitStats::parse(&metrics.render())
            })
            .await?;
            eprintln!(
                "  {concurrency:>3} writers: {:.0} appends/s, p99 {:.1} ms",
                measurement.load.rate(),
                measurement.load.latency_ms(0.99)
            );
            points.push(Point {
                workload: WORKLOAD.to_owned(),
                concurrency,
                measurement,
            });
        }
        runs.push(Run { baseline, points });
    }
    Ok(RunSet {
        runs,
        failed_runs: 0,
    })
}

/// One measurement: `concurrency` writers on a fresh store.
async fn measure_store(
    settings: &Settings,
    concurrency: usize,
    commit_stats: impl Fn() -> CommitStats,
) -> Result<Measurement> {
    let scratch = tempfile::Builder::new()
        .prefix("lianxi-bench-store-")
        .tempdir_in(&settings.dir)
        .context("creating the store's directory")?;
    let store = SqliteStore::open(scratch.path())
        .await
        .context("opening the store")?;
    let ops = (0..concurrency)
        .map(|_| Appender {
            store: store.clone(),
            ids: Ids::new(settings.ids),
        })
        .collect();
    let (load, before, after) = load::measure(ops, settings.window, || {
        let snapshot = (CpuUse::now(None), commit_stats());
        async move { Ok(snapshot) }
    })
    .await?;
    // Every acknowledged append is in the log, and nothing else is.
    let head = store.head().await.context("reading the store's head")?;
    ensure!(
        u64::try_from(head).ok() == Some(load.total_ok),
        "the log holds {head} events but {} appends were acknowledged",
        load.total_ok
    );
    Ok(Measurement {
        load,
        cpu: after.0.since(&before.0),
        commits: Some(after.1.since(&before.1)),
        projection_lag: None,
    })
}

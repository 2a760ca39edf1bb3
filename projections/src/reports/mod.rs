//! Reports: registered projectors replayed over history in memory, printed as JSON or CSV.
//!
//! `lianxi replay --report NAME` builds a report's projectors from position 0 into a private
//! in-memory [`ReadDb`] (never the live read models), up to a position or to what the log held
//! at a recording time, then asks the report for its output. A report is:
//!
//! - a **name** (`board`, `volunteer-hours`, …), as `--report` takes it;
//! - the **projectors** it needs, freshly constructed (a report may bring its own projector,
//!   which then runs only in replays, or reuse one the server runs);
//! - a function producing its **output** from the built read models: a JSON document and flat
//!   rows, the CSV of `--format csv` being made from the rows ([`Output`]).
//!
//! ## Adding a report: one new file plus one line
//!
//! 1. Write `reports/<name>.rs` with a `pub fn report() -> Box<dyn Report>` (and, if the report
//!    needs one, its own projector in the same file). [`volunteer_hours`] is a worked example.
//! 2. Add `<name>,` to the `reports!` list at the end of this file.
//!
//! The macro declares the module and registers it; `lianxi replay --report` finds it by name.
//!
//! Replays guarantee what the runner does: every event up to the bound is applied exactly
//! once, in log order, so a replay up to position N equals the live read model at N.

use std::io::Write;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::values::Quarter;
use serde::Serialize;
use store::EventStore;
use uuid::Uuid;

use crate::collection::Namespace;
use crate::readdb::ReadDb;
use crate::runner::{catch_up, BATCH};
use crate::{ProjectionError, Projector};

/// What a report may be asked to narrow down to, from `lianxi replay`'s options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// `--district`: only this district (or, for a report of one district, this one).
    pub district: Option<Uuid>,
    /// `--community`: only this community.
    pub community: Option<Uuid>,
    /// `--quarter`: only this quarter.
    pub quarter: Option<Quarter>,
    /// The time the report speaks as of, for what depends on "now" (a board's "last held"):
    /// the `--as-of` time, or the present.
    pub as_of: DateTime<Utc>,
}

impl Params {
    /// No narrowing, as of now.
    pub fn now() -> Self {
        Self {
            district: None,
            community: None,
            quarter: None,
            as_of: Utc::now(),
        }
    }
}

/// Why a report could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// No registered report has this name.
    #[error("there is no report called {name:?}; the reports are: {known}")]
    UnknownReport { name: String, known: String },
    /// A `--community`, `--district`, … that names nothing in the replayed history.
    #[error("{0}")]
    NotFound(String),
    /// Options the report cannot use together, or needs and lacks.
    #[error("{0}")]
    InvalidParams(String),
    /// Turning the read models into JSON or CSV failed.
    #[error("writing the report: {0}")]
    Output(String),
    #[error(transparent)]
    Projection(#[from] ProjectionError),
}

impl From<store::StoreError> for ReportError {
    fn from(error: store::StoreError) -> Self {
        ReportError::Projection(ProjectionError::Store(error))
    }
}

/// One registered report.
#[async_trait]
pub trait Report: Send + Sync {
    /// The name `--report` takes.
    fn name(&self) -> &'static str;
    /// One line for `lianxi replay --help` and error messages.
    fn about(&self) -> &'static str;
    /// Fresh instances of every projector the report reads.
    fn projectors(&self) -> Vec<Box<dyn Projector>>;
    /// The report, from read models the projectors have built (their active generations).
    async fn produce(&self, db: &ReadDb, params: &Params) -> Result<Output, ReportError>;
}

/// The two output formats of `lianxi replay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
}

/// A report's output: a JSON document, and the same facts as flat rows for CSV. The JSON is
/// kept as serialised text, so its members stay in the order of the types (as an endpoint
/// answering with the same type has them).
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    json: String,
    csv: String,
}

impl Output {
    /// Rows alone: the JSON is the array of rows, the CSV one line per row under a header of
    /// the row type's field names, in declaration order. Rows must be flat (no lists or maps).
    pub fn rows<T: Serialize>(rows: &[T]) -> Result<Self, ReportError> {
        Self::document(rows, rows)
    }

    /// A JSON document of its own shape (the same as an endpoint's, say), with `rows` for CSV.
    pub fn document<D, T>(json: &D, rows: &[T]) -> Result<Self, ReportError>
    where
        D: Serialize + ?Sized,
        T: Serialize,
    {
        let json = serde_json::to_string_pretty(json)
            .map_err(|e| ReportError::Output(format!("JSON: {e}")))?;
        let mut writer = csv::Writer::from_writer(Vec::new());
        for row in rows {
            writer
                .serialize(row)
                .map_err(|e| ReportError::Output(format!("CSV: {e}")))?;
        }
        let bytes = writer
            .into_inner()
            .map_err(|e| ReportError::Output(format!("CSV: {e}")))?;
        let csv = String::from_utf8(bytes).map_err(|e| ReportError::Output(e.to_string()))?;
        Ok(Self { json, csv })
    }

    /// The JSON document, parsed.
    pub fn json(&self) -> Result<serde_json::Value, ReportError> {
        serde_json::from_str(&self.json).map_err(|e| ReportError::Output(format!("JSON: {e}")))
    }

    /// The JSON document as text.
    pub fn json_text(&self) -> &str {
        &self.json
    }

    pub fn csv(&self) -> &str {
        &self.csv
    }

    /// Writes the output in `format`: pretty JSON, or CSV, each ending in a newline.
    pub fn write(&self, format: Format, out: &mut dyn Write) -> std::io::Result<()> {
        match format {
            Format::Json => writeln!(out, "{}", self.json),
            Format::Csv => out.write_all(self.csv.as_bytes()),
        }
    }
}

/// The report called `name`.
pub fn find(name: &str) -> Result<Box<dyn Report>, ReportError> {
    all()
        .into_iter()
        .find(|r| r.name() == name)
        .ok_or_else(|| ReportError::UnknownReport {
            name: name.to_owned(),
            known: all()
                .iter()
                .map(|r| r.name())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// A finished replay.
#[derive(Debug, Clone, PartialEq)]
pub struct Replayed {
    pub output: Output,
    /// The last log position the report includes.
    pub position: i64,
}

/// Builds `report`'s projectors over the log up to `until` (inclusive; `None`: the head) in a
/// fresh in-memory read-model database, and produces the report. `on_batch` hears, after every
/// batch, which projector it was (its index in [`Report::projectors`]) and its position.
pub async fn replay(
    store: &dyn EventStore,
    report: &dyn Report,
    until: Option<i64>,
    params: &Params,
    mut on_batch: impl FnMut(usize, i64) + Send,
) -> Result<Replayed, ReportError> {
    let db = ReadDb::in_memory().await?;
    // Pin the bound first, so that every projector stops at the same position even while the
    // log grows.
    let until = match until {
        Some(until) => until,
        None => store.head().await?,
    };
    let mut position = until;
    for (index, mut projector) in report.projectors().into_iter().enumerate() {
        let name = projector.name();
        let generation = db.create_generation(name, projector.version()).await?;
        let ns = Namespace {
            projection: name,
            generation: generation.generation,
        };
        let reached = catch_up(store, &db, projector.as_mut(), &ns, 0, Some(until), |p| {
            on_batch(index, p)
        })
        .await?;
        position = position.min(reached);
    }
    let output = report.produce(&db, params).await?;
    Ok(Replayed { output, position })
}

/// The last position the log held at recording time `at`: the position of the last event
/// before the first one recorded after `at` (0 when the log starts after `at`).
pub async fn position_at(store: &dyn EventStore, at: DateTime<Utc>) -> Result<i64, ReportError> {
    let mut before = 0;
    loop {
        let events = store.read_all(before, BATCH).await?;
        if events.is_empty() {
            return Ok(before);
        }
        for event in &events {
            if event.recorded_at > at {
                return Ok(before);
            }
            before = event.position;
        }
    }
}

/// Declares every report module and registers it in [`all`]. Add a report with one line here.
macro_rules! reports {
    ($($module:ident),* $(,)?) => {
        $(pub mod $module;)*

        /// Every registered report, in registration order.
        pub fn all() -> Vec<Box<dyn Report>> {
            vec![$($module::report()),*]
        }
    };
}

reports! {
    board,
    district_stats,
    volunteer_hours,
}

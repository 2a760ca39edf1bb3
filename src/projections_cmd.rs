//! `lianxi projections status` and `lianxi projections rebuild NAME`, on the data directory's
//! read-model database; both work beside a running server.
//!
//! `status` prints one line per generation that answers or is being built (name, version,
//! generation, position, lag behind the log head, state, error), plus a line for each
//! registered projection that has never been built. `rebuild` runs
//! [`projections::rebuild::rebuild`]: a new generation from position 0 while the old one keeps
//! answering; a server on the same directory follows the new one once it has taken over.

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Subcommand;
use projections::readdb::GenerationRow;

use crate::cli::StoreArgs;
use crate::progress::Progress;

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Each projection: name, version, generation, position, lag, state, error.
    Status {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Builds a new generation of NAME from position 0 while the old one keeps answering, then
    /// lets it take over.
    Rebuild {
        #[command(flatten)]
        store: StoreArgs,
        /// The projection (`board`, …; an unknown name lists them).
        name: String,
    },
}

pub async fn command(command: ProjectionsCommand) -> Result<ExitCode> {
    match command {
        ProjectionsCommand::Status { store } => status(&store).await,
        ProjectionsCommand::Rebuild { store, name } => rebuild(&store, &name).await,
    }
}

async fn status(args: &StoreArgs) -> Result<ExitCode> {
    let store = crate::backend::open(args).await?.log;
    let db = crate::backend::read_models(args).await?;
    let head = store.head().await?;
    let rows = db.generations().await?;
    print!(
        "{}",
        status_table(head, &rows, &projections::rebuild::names())
    );
    Ok(ExitCode::SUCCESS)
}

/// The status table: generations that answer or are being built, then registered projections
/// never built, each line ending in a newline.
pub fn status_table(head: i64, rows: &[GenerationRow], registered: &[&str]) -> String {
    let mut lines: Vec<[String; 7]> = vec![[
        "NAME".into(),
        "VERSION".into(),
        "GENERATION".into(),
        "POSITION".into(),
        "LAG".into(),
        "STATE".into(),
        "ERROR".into(),
    ]];
    for row in rows.iter().filter(|r| r.state != "retired") {
        let state = if row.active {
            row.state.clone()
        } else {
            format!("{} (not answering yet)", row.state)
        };
        let error = match (&row.error, row.error_position) {
            (Some(error), Some(position)) => format!("at position {position}: {error}"),
            (Some(error), None) => error.clone(),
            _ => String::new(),
        };
        lines.push([
            row.name.clone(),
            row.version.to_string(),
            row.generation.to_string(),
            row.position.to_string(),
            (head - row.position).max(0).to_string(),
            state,
            error,
        ]);
    }
    for name in registered {
        if !rows.iter().any(|r| r.name == *name) {
            lines.push([
                (*name).to_owned(),
                "-".into(),
                "-".into(),
                "0".into(),
                head.to_string(),
                "never built".into(),
                String::new(),
            ]);
        }
    }
    let mut widths = [0usize; 7];
    for line in &lines {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = format!("log head: {head}\n");
    for line in &lines {
        let mut text = String::new();
        for (i, (cell, width)) in line.iter().zip(widths).enumerate() {
            if i + 1 == line.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

async fn rebuild(args: &StoreArgs, name: &str) -> Result<ExitCode> {
    let Some(mut projector) = projections::rebuild::projector(name) else {
        bail!(
            "there is no projection called {name:?}; the projections are: {}",
            projections::rebuild::names().join(", ")
        );
    };
    let store = crate::backend::open(args).await?.log;
    let db = crate::backend::read_models(args).await?;
    let head = store.head().await?;
    let fresh = projections::rebuild::start(&db, projector.as_mut()).await?;
    eprintln!(
        "rebuilding {name}: generation {} (version {}) from position 0 to {head}; {}",
        fresh.generation,
        projector.version(),
        if fresh.active {
            "no generation answered before"
        } else {
            "the current generation answers meanwhile"
        }
    );
    let mut progress = Progress::new(format!("rebuild {name}"), "events", head.max(0) as u64);
    let rebuilt =
        projections::rebuild::build(store.as_ref(), &db, projector.as_mut(), &fresh, |p| {
            progress.set(p.max(0) as u64)
        })
        .await?;
    progress.finish();
    println!(
        "rebuilt {}: generation {} (version {}) took over at position {} after {:.1}s",
        rebuilt.name,
        rebuilt.generation,
        rebuilt.version,
        rebuilt.position,
        rebuilt.elapsed.as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, generation: i64, position: i64, state: &str, active: bool) -> GenerationRow {
        GenerationRow {
            name: name.into(),
            generation,
            version: 1,
            position,
            state: state.into(),
            active,
            error: None,
            error_position: None,
            updated_at: "2018-06-04T00:00:00+00:00".into(),
        }
    }

    #[test]
    fn the_status_table_shows_answering_and_building_generations_and_never_built_ones() {
        let mut failed = row("items", 1, 40, "failed", true);
        failed.error = Some("bad event".into());
        failed.error_position = Some(41);
        let rows = vec![
            row("board", 1, 100, "retired", false),
            row("board", 2, 120, "live", true),
            row("board", 3, 60, "building", false),
            failed,
        ];
        let table = status_table(120, &rows, &["board", "items", "trace"]);
        assert_eq!(
            table,
            "log head: 120\n\
             NAME   VERSION  GENERATION  POSITION  LAG  STATE                         ERROR\n\
             board  1        2           120       0    live\n\
             board  1        3           60        60   building (not answering yet)\n\
             items  1        1           40        80   failed                        at position 41: bad event\n\
             trace  -        -           0         120  never built\n"
        );
    }
}

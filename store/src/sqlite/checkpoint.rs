//! Copies the write-ahead log back into the database file off the commit path.
//!
//! SQLite's automatic checkpoint runs inside whichever `COMMIT` pushes the WAL past 1,000 pages:
//! that commit re-reads the WAL, writes and fsyncs the database file, and every append waiting
//! in that batch and the next waits 10–15 ms longer (the tail of the store's latency). So the
//! writer's connection turns automatic checkpoints off, and this task checkpoints from a
//! connection of its own, `PASSIVE` (never blocking the writer or readers), at most every
//! [`PAUSE`] while the log grows.

use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::ConnectOptions;
use tokio::sync::watch;

use crate::Position;

/// The shortest time between two checkpoints.
const PAUSE: Duration = Duration::from_millis(200);

/// The checkpointer's page cache, in pages: a checkpoint copies frames through a buffer of its
/// own, and a connection's cache size is also what every other connection in the process may
/// borrow (SQLite's caches share one pool, the sum of their sizes).
const CACHE_PAGES: &str = "16";

/// The writer's connection settings: as every connection's, without automatic checkpoints.
pub(super) fn writer_options(options: &SqliteConnectOptions) -> SqliteConnectOptions {
    options.clone().pragma("wal_autocheckpoint", "0")
}

/// Starts the checkpointer on the current runtime. It stops once the store's head can no longer
/// move (every handle and the writer are gone).
pub(super) async fn spawn(
    options: &SqliteConnectOptions,
    head: watch::Receiver<Position>,
) -> Result<(), sqlx::Error> {
    let conn = options
        .clone()
        .pragma("cache_size", CACHE_PAGES)
        .connect()
        .await?;
    tokio::spawn(run(conn, head));
    Ok(())
}

async fn run(mut conn: SqliteConnection, mut head: watch::Receiver<Position>) {
    while head.changed().await.is_ok() {
        // (busy, frames in the WAL, frames copied): busy only means a reader still needs an
        // older page; the next round copies it.
        let result: Result<(i64, i64, i64), sqlx::Error> =
            sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                .fetch_one(&mut conn)
                .await;
        match result {
            Ok((_, frames, copied)) => tracing::trace!(frames, copied, "checkpointed the log"),
            Err(error) => tracing::warn!(%error, "cannot checkpoint the log; will try again"),
        }
        tokio::time::sleep(PAUSE).await;
    }
    tracing::debug!("the store is closed; the checkpointer stops");
}

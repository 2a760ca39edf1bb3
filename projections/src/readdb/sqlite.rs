//! The embedded read-model database: a SQLite file beside the log (or a private in-memory one),
//! with the pragmas it runs with.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, SqliteConnection};

use super::READ_MODEL_FILE;
use crate::ProjectionError;

/// The pragmas every read-model connection runs with.
fn tuned(options: SqliteConnectOptions) -> SqliteConnectOptions {
    options
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        // 8 MiB of pages per connection: the pool's connections each grow their own cache,
        // and together they are most of the server's memory during a rebuild.
        .pragma("cache_size", "-8000")
}

async fn pool(
    options: SqliteConnectOptions,
    connections: u32,
) -> Result<SqlitePool, ProjectionError> {
    Ok(SqlitePoolOptions::new()
        .max_connections(connections)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(options)
        .await?)
}

async fn migrate(conn: &mut SqliteConnection) -> Result<(), ProjectionError> {
    sqlx::migrate!("./migrations/sqlite")
        .run(conn)
        .await
        .map_err(|e| ProjectionError::Storage(format!("migrating read models: {e}")))
}

/// Opens (creating) `<data_dir>/readmodels.db` and migrates it.
pub(super) async fn open(data_dir: &Path) -> Result<SqlitePool, ProjectionError> {
    let options = tuned(
        SqliteConnectOptions::new()
            .filename(data_dir.join(READ_MODEL_FILE))
            .create_if_missing(true),
    );
    // Turning a new file to WAL takes an exclusive lock, and SQLite answers a second
    // connection doing the same at that moment with "database is locked" rather than
    // waiting. So one connection switches the mode and migrates before the pool opens more.
    let mut first = options.connect().await?;
    migrate(&mut first).await?;
    first.close().await?;
    pool(options, 8).await
}

/// A private in-memory database.
pub(super) async fn in_memory() -> Result<SqlitePool, ProjectionError> {
    let options = SqliteConnectOptions::from_str("sqlite::memory:")
        .map_err(|e| ProjectionError::Storage(e.to_string()))?;
    // One connection: every connection to `:memory:` would be a different database.
    let pool = pool(tuned(options), 1).await?;
    let mut conn = pool.acquire().await?;
    migrate(&mut conn).await?;
    drop(conn);
    Ok(pool)
}

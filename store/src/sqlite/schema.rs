//! Opening the SQLite file: connection settings and schema migrations.
//!
//! Every connection uses WAL (readers never block the writer), `synchronous = FULL` (a commit is
//! fsynced before it is acknowledged, so an acknowledged append survives kill -9 and power loss),
//! a 5 s busy timeout (another process, such as `lianxi demo`, may hold the write lock briefly)
//! and foreign keys. The schema lives in `store/migrations/sqlite/`, applied on open.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sqlx::Connection;

use crate::StoreError;

/// How long a connection waits for another writer's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Connection settings for the database file at `path`, created if missing.
pub(super) fn connect_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true)
        // Savepoint and statement journals in memory, not in temporary files.
        .pragma("temp_store", "memory")
        // Room for every multi-row INSERT variant the writer uses (2 × 64) plus the reads.
        .statement_cache_capacity(256)
}

/// Applies pending migrations on `conn`.
///
/// The migrations run inside one `BEGIN IMMEDIATE` transaction (each migration becomes a
/// savepoint), so two processes opening a fresh file at the same moment take turns instead of
/// both trying to create the tables.
#[tracing::instrument(skip_all, err)]
pub(super) async fn migrate(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    MIGRATOR
        .run(&mut *tx)
        .await
        .map_err(|error| StoreError::Unavailable(format!("migrating the event log: {error}")))?;
    tx.commit().await?;
    Ok(())
}

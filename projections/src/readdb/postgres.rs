//! The read models on PostgreSQL: a schema of their own, `read_models`, with its own versioned
//! migrations, so they can share a database with the event log or have one to themselves.
//!
//! sqlx 0.8's migrator keeps its history in an unqualified `_sqlx_migrations` table whose name
//! cannot be changed, and the event log's migrator already keeps its own there (in `public`).
//! So every connection of the read models' pool runs with `search_path = read_models`: the
//! read-model tables and their own `_sqlx_migrations` resolve in that schema, the SQL is the
//! same text as on SQLite, and nothing of the log is visible through this pool. Text columns
//! that are compared or sorted use the `"C"` collation: byte order, as SQLite's `BINARY`, so
//! both backends list documents in the same order whatever the database's locale.

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};

use crate::ProjectionError;

/// The schema that holds the read models.
pub const SCHEMA: &str = "read_models";
/// Connections a read-model pool keeps by default (as the SQLite pool).
pub const DEFAULT_CONNECTIONS: u32 = 8;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// Creates the schema if needed, opens a pool whose connections live in it, and migrates.
pub(super) async fn connect(
    options: PgConnectOptions,
    connections: u32,
) -> Result<PgPool, ProjectionError> {
    create_schema(&options).await?;
    // Statements are planned for their parameters: a generic plan cached while the tables were
    // empty scans them whole for good (the benchmark saw document loads of 7 ms).
    let options = options.options([
        ("search_path", SCHEMA),
        ("plan_cache_mode", "force_custom_plan"),
    ]);
    let pool = PgPoolOptions::new()
        .max_connections(connections.max(1))
        .connect_with(options)
        .await?;
    MIGRATOR
        .run(&pool)
        .await
        .map_err(|e| ProjectionError::Storage(format!("migrating read models: {e}")))?;
    Ok(pool)
}

/// The migrator's home must exist before it runs, so it is made here rather than in a migration.
async fn create_schema(options: &PgConnectOptions) -> Result<(), ProjectionError> {
    let mut conn = options.connect().await?;
    let created = sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
        .execute(&mut conn)
        .await;
    if let Err(error) = created {
        // Two processes starting together may both try; the loser's error is harmless once the
        // schema is there.
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
                .bind(SCHEMA)
                .fetch_one(&mut conn)
                .await?;
        if !exists {
            return Err(error.into());
        }
    }
    conn.close().await?;
    Ok(())
}

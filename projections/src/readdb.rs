//! The read-model database: documents and checkpoints, apart from the log.
//!
//! Embedded, it is its own SQLite file (`<data_dir>/readmodels.db`) so that projector writes
//! never wait for the log's single writer, and the reverse. It holds nothing that cannot be
//! rebuilt from the log, so it runs with `synchronous = NORMAL`: a power cut may lose the last
//! batches, but documents and checkpoint always roll back together and are projected again.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::Utc;
use serde::Serialize;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, SqliteConnection};

use crate::collection::Namespace;
use crate::ProjectionError;

/// The read-model file's name inside the data directory.
pub const READ_MODEL_FILE: &str = "readmodels.db";

/// One generation's row in `projections`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct GenerationRow {
    pub name: String,
    pub generation: i64,
    pub version: i64,
    pub position: i64,
    pub state: String,
    pub active: bool,
    pub error: Option<String>,
    pub error_position: Option<i64>,
    pub updated_at: String,
}

/// One stored document, with where it belongs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct DocumentRow {
    pub projection: String,
    pub kind: String,
    pub key: String,
    pub parent: Option<String>,
    pub doc: String,
}

/// A pool on the read-model database.
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

#[derive(Debug, Clone)]
pub struct ReadDb {
    pool: SqlitePool,
}

impl ReadDb {
    /// Opens (creating) `<data_dir>/readmodels.db` and migrates it.
    pub async fn open(data_dir: &Path) -> Result<Self, ProjectionError> {
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
        Ok(Self {
            pool: pool(options, 8).await?,
        })
    }

    /// A private in-memory database: replays and reports that must not touch the live tables.
    pub async fn in_memory() -> Result<Self, ProjectionError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(|e| ProjectionError::Storage(e.to_string()))?;
        // One connection: every connection to `:memory:` would be a different database.
        let pool = pool(tuned(options), 1).await?;
        let mut conn = pool.acquire().await?;
        migrate(&mut conn).await?;
        drop(conn);
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Every generation of every projector.
    pub async fn generations(&self) -> Result<Vec<GenerationRow>, ProjectionError> {
        Ok(sqlx::query_as::<_, GenerationRow>(
            "SELECT name, generation, version, position, state, active != 0 AS active, error, \
             error_position, updated_at FROM projections ORDER BY name, generation",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// The generation that answers reads for `name`, if any.
    pub async fn active(&self, name: &str) -> Result<Option<GenerationRow>, ProjectionError> {
        Ok(sqlx::query_as::<_, GenerationRow>(
            "SELECT name, generation, version, position, state, active != 0 AS active, error, \
             error_position, updated_at FROM projections WHERE name = ? AND active = 1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Starts a new generation of `name` at position 0. It becomes active at once when no other
    /// generation is; otherwise it takes over once caught up ([`ReadDb::promote`]).
    pub async fn create_generation(
        &self,
        name: &str,
        version: u32,
    ) -> Result<GenerationRow, ProjectionError> {
        // IMMEDIATE: it reads, then writes; a deferred transaction would fail at once ("database
        // is locked") when a runner commits between the two, instead of waiting its turn.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let next: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(generation), 0) + 1 FROM projections WHERE name = ?",
        )
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
        let has_active: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM projections WHERE name = ? AND active = 1)",
        )
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO projections (name, generation, version, position, state, active, updated_at) \
             VALUES (?, ?, ?, 0, 'building', ?, ?)",
        )
        .bind(name)
        .bind(next)
        .bind(i64::from(version))
        .bind(!has_active)
        .bind(Utc::now().to_rfc3339())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.generation(name, next).await?.ok_or_else(|| {
            ProjectionError::Storage(format!("generation {next} of {name} vanished"))
        })
    }

    pub async fn generation(
        &self,
        name: &str,
        generation: i64,
    ) -> Result<Option<GenerationRow>, ProjectionError> {
        Ok(sqlx::query_as::<_, GenerationRow>(
            "SELECT name, generation, version, position, state, active != 0 AS active, error, \
             error_position, updated_at FROM projections WHERE name = ? AND generation = ?",
        )
        .bind(name)
        .bind(generation)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Makes `generation` the one that answers, retires the others and drops their documents.
    pub async fn promote(&self, name: &str, generation: i64) -> Result<(), ProjectionError> {
        let mut tx = self.pool.begin().await?;
        Self::swap_active(&mut tx, name, generation).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Promotes `generation` only if it has reached the checkpoint of the generation that
    /// answers now; returns whether it did. Check and swap are one write transaction, so a
    /// runner following the old generation (here or in another process) cannot move past the
    /// new one in between: once promoted, the old runner's next checkpoint fails with
    /// [`ProjectionError::Retired`] and it follows the new generation. Readers therefore never
    /// see a generation behind a position already announced in `X-Projection-Position`.
    pub async fn promote_if_caught_up(
        &self,
        name: &str,
        generation: i64,
    ) -> Result<bool, ProjectionError> {
        let mut tx = self.pool.begin().await?;
        // A write first: it takes the database's write lock, so what is read next stays true
        // until the commit.
        let touched = sqlx::query(
            "UPDATE projections SET updated_at = ? WHERE name = ? AND generation = ? \
             AND state != 'retired'",
        )
        .bind(Utc::now().to_rfc3339())
        .bind(name)
        .bind(generation)
        .execute(&mut *tx)
        .await?;
        if touched.rows_affected() == 0 {
            return Err(ProjectionError::Retired);
        }
        let behind: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM projections a, projections f \
             WHERE a.name = ? AND a.active = 1 AND f.name = a.name AND f.generation = ? \
             AND a.generation != f.generation AND a.position > f.position)",
        )
        .bind(name)
        .bind(generation)
        .fetch_one(&mut *tx)
        .await?;
        if behind {
            return Ok(false);
        }
        Self::swap_active(&mut tx, name, generation).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Makes `generation` the active one and drops the others, inside the caller's transaction.
    async fn swap_active(
        conn: &mut SqliteConnection,
        name: &str,
        generation: i64,
    ) -> Result<(), ProjectionError> {
        let now = Utc::now().to_rfc3339();
        sqlx::query(
            "UPDATE projections SET active = 0, state = 'retired', updated_at = ? \
             WHERE name = ? AND generation != ?",
        )
        .bind(&now)
        .bind(name)
        .bind(generation)
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "UPDATE projections SET active = 1, state = 'live', updated_at = ? \
             WHERE name = ? AND generation = ?",
        )
        .bind(&now)
        .bind(name)
        .bind(generation)
        .execute(&mut *conn)
        .await?;
        sqlx::query("DELETE FROM documents WHERE projection = ? AND generation != ?")
            .bind(name)
            .bind(generation)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Moves the checkpoint of a batch from `from` to `position`, inside the batch's
    /// transaction. Fails with `Retired` when another process promoted a newer generation
    /// meanwhile, or when the checkpoint is no longer at `from`: another builder of the same
    /// generation (a rebuild resumed twice) wrote it, and applying this batch again would count
    /// its events twice.
    pub(crate) async fn checkpoint(
        conn: &mut SqliteConnection,
        ns: &Namespace,
        from: i64,
        position: i64,
        state: &str,
    ) -> Result<(), ProjectionError> {
        let updated = sqlx::query(
            "UPDATE projections SET position = ?, state = ?, error = NULL, error_position = NULL, \
             updated_at = ? WHERE name = ? AND generation = ? AND position = ? \
             AND state != 'retired'",
        )
        .bind(position)
        .bind(state)
        .bind(Utc::now().to_rfc3339())
        .bind(ns.projection)
        .bind(ns.generation)
        .bind(from)
        .execute(&mut *conn)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(ProjectionError::Retired);
        }
        Ok(())
    }

    /// Marks a generation failed on the event at `position`; it stays at its checkpoint.
    pub async fn fail(
        &self,
        ns: &Namespace,
        position: i64,
        error: &str,
    ) -> Result<(), ProjectionError> {
        sqlx::query(
            "UPDATE projections SET state = 'failed', error = ?, error_position = ?, updated_at = ? \
             WHERE name = ? AND generation = ?",
        )
        .bind(error)
        .bind(position)
        .bind(Utc::now().to_rfc3339())
        .bind(ns.projection)
        .bind(ns.generation)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every document of every active generation, in a stable order: what "rebuild equals live"
    /// compares byte for byte.
    pub async fn dump_active(&self) -> Result<Vec<DocumentRow>, ProjectionError> {
        Ok(sqlx::query_as::<_, DocumentRow>(
            "SELECT d.projection, d.kind, d.key, d.parent, d.doc FROM documents d \
             JOIN projections p ON p.name = d.projection AND p.generation = d.generation \
             AND p.active = 1 ORDER BY d.projection, d.kind, d.key",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Documents of one kind in the active generation of `projection`, by key.
    pub async fn document(
        &self,
        projection: &str,
        kind: &str,
        key: &str,
    ) -> Result<Option<String>, ProjectionError> {
        Ok(sqlx::query_scalar(
            "SELECT d.doc FROM documents d JOIN projections p \
               ON p.name = d.projection AND p.generation = d.generation AND p.active = 1 \
             WHERE d.projection = ? AND d.kind = ? AND d.key = ?",
        )
        .bind(projection)
        .bind(kind)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Documents of one kind under `parent` in the active generation, in key order.
    pub async fn children(
        &self,
        projection: &str,
        kind: &str,
        parent: &str,
    ) -> Result<Vec<String>, ProjectionError> {
        Ok(sqlx::query_scalar(
            "SELECT d.doc FROM documents d JOIN projections p \
               ON p.name = d.projection AND p.generation = d.generation AND p.active = 1 \
             WHERE d.projection = ? AND d.kind = ? AND d.parent = ? ORDER BY d.key",
        )
        .bind(projection)
        .bind(kind)
        .bind(parent)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Every document of one kind in the active generation, in key order.
    pub async fn all(&self, projection: &str, kind: &str) -> Result<Vec<String>, ProjectionError> {
        Ok(sqlx::query_scalar(
            "SELECT d.doc FROM documents d JOIN projections p \
               ON p.name = d.projection AND p.generation = d.generation AND p.active = 1 \
             WHERE d.projection = ? AND d.kind = ? ORDER BY d.key",
        )
        .bind(projection)
        .bind(kind)
        .fetch_all(&self.pool)
        .await?)
    }
}

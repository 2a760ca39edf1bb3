//! The read-model database: documents and checkpoints, apart from the log.
//!
//! Embedded, it is its own SQLite file (`<data_dir>/readmodels.db`) so that projector writes
//! never wait for the log's single writer, and the reverse. It holds nothing that cannot be
//! rebuilt from the log. Documents and checkpoint always commit and roll back together, so a
//! crash of the process loses nothing that is not projected again. The server writes the file
//! without syncs ([`ReadDb::open_unsynced`], [`boot`]): a stop of the machine then costs a
//! rebuild from the log; tools write it synced (`synchronous = NORMAL`), where a stop of the
//! machine may lose the last batches, which are projected again.
//!
//! On PostgreSQL ([`ReadDb::connect`]) the same tables live in a schema of their own
//! (see [`postgres`]), in the log's database or another. Every method behaves the same on both
//! backends; the SQL is written once where the dialects agree (`$1` placeholders, which SQLite
//! takes too) and per backend where they do not (locks, isolation).

pub mod boot;
mod conn;
pub mod postgres;
mod sqlite;

use std::path::Path;

use chrono::Utc;
use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::sqlite::SqlitePool;

pub use self::conn::Conn;
pub(crate) use self::conn::{on_conn, Pooled, Tx};
pub use self::sqlite::Durability;
use crate::collection::Namespace;
use crate::ProjectionError;

/// The read-model file's name inside the data directory.
pub const READ_MODEL_FILE: &str = "readmodels.db";

// The read routes' queries name the active generation through a subquery, so that the
// documents table is searched by its whole key (projection, generation, kind, key). Joined to
// `projections` instead, SQLite planned the documents first with only the projection known:
// every board read scanned all of the projection's documents (25 ms a read at 100,000 events).
// The projection is bound twice: placeholders number in order of appearance on SQLite.

/// One document of the active generation: projection, projection, kind, key.
const DOCUMENT: &str = "SELECT doc FROM documents WHERE projection = $1 \
     AND generation = (SELECT generation FROM projections WHERE name = $2 AND active = 1) \
     AND kind = $3 AND key = $4";

/// The documents under a parent, in key order: projection, projection, kind, parent.
const CHILDREN: &str = "SELECT doc FROM documents WHERE projection = $1 \
     AND generation = (SELECT generation FROM projections WHERE name = $2 AND active = 1) \
     AND kind = $3 AND parent = $4 ORDER BY key";

/// [`CHILDREN`] on SQLite, held to the parent index.
const CHILDREN_SQLITE: &str = "SELECT doc FROM documents INDEXED BY documents_by_parent \
     WHERE projection = $1 \
     AND generation = (SELECT generation FROM projections WHERE name = $2 AND active = 1) \
     AND kind = $3 AND parent = $4 ORDER BY key";

/// Every document of a kind, in key order: projection, projection, kind.
const ALL: &str = "SELECT doc FROM documents WHERE projection = $1 \
     AND generation = (SELECT generation FROM projections WHERE name = $2 AND active = 1) \
     AND kind = $3 ORDER BY key";

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

/// Which database holds the read models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$p` bound to the backend's own pool: one body, compiled once per backend.
macro_rules! on_pool {
    ($pool:expr, |$p:ident| $body:expr) => {
        match $pool {
            Pool::Sqlite($p) => $body,
            Pool::Postgres($p) => $body,
        }
    };
}

/// `SELECT` of a [`GenerationRow`] from `projections`, followed by `$rest`.
macro_rules! select_generations {
    ($rest:literal) => {
        concat!(
            "SELECT name, generation, version, position, state, active != 0 AS active, error, \
             error_position, updated_at FROM projections ",
            $rest
        )
    };
}

/// A generation's checkpoint moving with a batch: from `from` (what the batch started from) to
/// `to`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Checkpoint<'a> {
    pub ns: &'a Namespace,
    pub from: i64,
    pub to: i64,
}

/// The read-model database, on SQLite or PostgreSQL. Cheap to clone: clones share the pool.
#[derive(Debug, Clone)]
pub struct ReadDb {
    pool: Pool,
    /// The embedded file: the projectors' own connection (`None`: they use `pool`, as on
    /// PostgreSQL and in a private in-memory database, which has only one connection).
    projectors: Option<SqlitePool>,
    /// The embedded file's checkpointer and boot mark, shared by the clones: the checkpointer
    /// stops with the last one.
    file: Option<std::sync::Arc<sqlite::EmbeddedFile>>,
}

impl ReadDb {
    /// Opens (creating) `<data_dir>/readmodels.db`, synced, and migrates it: for tools.
    pub async fn open(data_dir: &Path) -> Result<Self, ProjectionError> {
        Self::open_with(data_dir, Durability::Synced).await
    }

    /// Opens (creating) `<data_dir>/readmodels.db` to be written without syncs, under this
    /// boot's mark, and migrates it: for the server, which calls [`ReadDb::close`] when it
    /// stops. A file left marked by an earlier boot is removed first and built again.
    pub async fn open_unsynced(data_dir: &Path) -> Result<Self, ProjectionError> {
        Self::open_with(data_dir, Durability::Unsynced).await
    }

    async fn open_with(data_dir: &Path, durability: Durability) -> Result<Self, ProjectionError> {
        let opened = sqlite::open(data_dir, durability).await?;
        Ok(Self {
            pool: Pool::Sqlite(opened.reads),
            projectors: Some(opened.projectors),
            file: Some(std::sync::Arc::new(opened.file)),
        })
    }

    /// At a clean stop, after the last command: a file written unsynced is synced and its mark
    /// removed, and the write lock is held from then on (for as long as any clone lives), so a
    /// later boot trusts the file. Nothing to do on PostgreSQL or for a synced file.
    pub async fn close(&self) -> Result<(), ProjectionError> {
        match &self.file {
            Some(file) => file.close().await,
            None => Ok(()),
        }
    }

    /// A private in-memory database: replays and reports that must not touch the live tables.
    pub async fn in_memory() -> Result<Self, ProjectionError> {
        Ok(Self {
            pool: Pool::Sqlite(sqlite::in_memory().await?),
            projectors: None,
            file: None,
        })
    }

    /// Connects to the PostgreSQL database at `url` (`postgres://user:password@host/database`),
    /// creates the `read_models` schema if needed and applies its pending migrations, with
    /// [`postgres::DEFAULT_CONNECTIONS`] connections. The database may be the event log's.
    pub async fn connect(url: &str) -> Result<Self, ProjectionError> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e| ProjectionError::Storage(format!("read-model database url: {e}")))?;
        Self::connect_with(options, postgres::DEFAULT_CONNECTIONS).await
    }

    /// [`ReadDb::connect`] with connect options and a pool size of the caller's.
    pub async fn connect_with(
        options: PgConnectOptions,
        connections: u32,
    ) -> Result<Self, ProjectionError> {
        Ok(Self {
            pool: Pool::Postgres(postgres::connect(options, connections).await?),
            projectors: None,
            file: None,
        })
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// The SQLite pool, for callers that read the embedded file directly.
    pub fn sqlite(&self) -> Option<&SqlitePool> {
        match &self.pool {
            Pool::Sqlite(pool) => Some(pool),
            Pool::Postgres(_) => None,
        }
    }

    /// The PostgreSQL pool (its connections' search path is the `read_models` schema).
    pub fn postgres(&self) -> Option<&PgPool> {
        match &self.pool {
            Pool::Postgres(pool) => Some(pool),
            Pool::Sqlite(_) => None,
        }
    }

    /// A connection for a projector's reads outside a write transaction.
    pub(crate) async fn acquire(&self) -> Result<Pooled, ProjectionError> {
        if let Some(projectors) = &self.projectors {
            return Ok(Pooled::Sqlite(projectors.acquire().await?));
        }
        Ok(match &self.pool {
            Pool::Sqlite(pool) => Pooled::Sqlite(pool.acquire().await?),
            Pool::Postgres(pool) => Pooled::Postgres(pool.acquire().await?),
        })
    }

    /// A connection of the read routes' pool (never the projectors' own).
    pub(crate) async fn acquire_read(&self) -> Result<Pooled, ProjectionError> {
        Ok(match &self.pool {
            Pool::Sqlite(pool) => Pooled::Sqlite(pool.acquire().await?),
            Pool::Postgres(pool) => Pooled::Postgres(pool.acquire().await?),
        })
    }

    /// A transaction that will write. On SQLite it takes the write lock before reading
    /// (`BEGIN IMMEDIATE`), so a rebuild or another process sharing the file queues for it
    /// instead of failing with "database is locked" on upgrade; PostgreSQL locks rows as it
    /// writes them.
    pub(crate) async fn begin_write(&self) -> Result<Tx, ProjectionError> {
        if let Some(projectors) = &self.projectors {
            return Ok(Tx::Sqlite(projectors.begin_with("BEGIN IMMEDIATE").await?));
        }
        Ok(match &self.pool {
            Pool::Sqlite(pool) => Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
            Pool::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    /// A transaction whose reads all see one snapshot (SQLite's read transactions always do;
    /// PostgreSQL needs `REPEATABLE READ`).
    pub(crate) async fn begin_snapshot(&self) -> Result<Tx, ProjectionError> {
        Ok(match &self.pool {
            Pool::Sqlite(pool) => Tx::Sqlite(pool.begin().await?),
            Pool::Postgres(pool) => Tx::Postgres(
                pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?,
            ),
        })
    }

    /// A transaction that changes which generations exist or answer. On SQLite its first write
    /// takes the database's write lock (or `immediate` takes it at once); on PostgreSQL the
    /// `projections` table is locked against every other writer of it (checkpoints included)
    /// until the commit, so what it reads stays true until then, as on SQLite.
    async fn begin_generations(&self, immediate: bool) -> Result<Tx, ProjectionError> {
        Ok(match &self.pool {
            Pool::Sqlite(pool) if immediate => {
                Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?)
            }
            Pool::Sqlite(pool) => Tx::Sqlite(pool.begin().await?),
            Pool::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("LOCK TABLE projections IN SHARE ROW EXCLUSIVE MODE")
                    .execute(&mut *tx)
                    .await?;
                Tx::Postgres(tx)
            }
        })
    }

    /// Every generation of every projector.
    pub async fn generations(&self) -> Result<Vec<GenerationRow>, ProjectionError> {
        Ok(on_pool!(&self.pool, |pool| {
            sqlx::query_as::<_, GenerationRow>(select_generations!("ORDER BY name, generation"))
                .fetch_all(pool)
                .await?
        }))
    }

    /// The generation that answers reads for `name`, if any.
    pub async fn active(&self, name: &str) -> Result<Option<GenerationRow>, ProjectionError> {
        Ok(on_pool!(&self.pool, |pool| {
            sqlx::query_as::<_, GenerationRow>(select_generations!(
                "WHERE name = $1 AND active = 1"
            ))
            .bind(name)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Starts a new generation of `name` at position 0. It becomes active at once when no other
    /// generation is; otherwise it takes over once caught up ([`ReadDb::promote`]).
    pub async fn create_generation(
        &self,
        name: &str,
        version: u32,
    ) -> Result<GenerationRow, ProjectionError> {
        // Immediate: it reads, then writes; a deferred SQLite transaction would fail at once
        // ("database is locked") when a runner commits between the two, instead of waiting.
        let mut tx = self.begin_generations(true).await?;
        let next = on_conn!(&mut tx.conn(), |conn, Db| {
            let next: i64 = sqlx::query_scalar(
                "SELECT COALESCE(MAX(generation), 0) + 1 FROM projections WHERE name = $1",
            )
            .bind(name)
            .fetch_one(&mut *conn)
            .await?;
            let has_active: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM projections WHERE name = $1 AND active = 1)",
            )
            .bind(name)
            .fetch_one(&mut *conn)
            .await?;
            sqlx::query(
                "INSERT INTO projections \
                 (name, generation, version, position, state, active, updated_at) \
                 VALUES ($1, $2, $3, 0, 'building', $4, $5)",
            )
            .bind(name)
            .bind(next)
            .bind(i64::from(version))
            .bind(i32::from(!has_active))
            .bind(Utc::now().to_rfc3339())
            .execute(&mut *conn)
            .await?;
            next
        });
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
        Ok(on_pool!(&self.pool, |pool| {
            sqlx::query_as::<_, GenerationRow>(select_generations!(
                "WHERE name = $1 AND generation = $2"
            ))
            .bind(name)
            .bind(generation)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Makes `generation` the one that answers, retires the others and drops their documents.
    pub async fn promote(&self, name: &str, generation: i64) -> Result<(), ProjectionError> {
        let mut tx = self.begin_generations(false).await?;
        Self::swap_active(&mut tx.conn(), name, generation).await?;
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
        let mut tx = self.begin_generations(false).await?;
        let mut conn = tx.conn();
        let behind = on_conn!(&mut conn, |conn, Db| {
            // A write first: on SQLite it takes the database's write lock, so what is read next
            // stays true until the commit (PostgreSQL's table lock is already held).
            let touched = sqlx::query(
                "UPDATE projections SET updated_at = $1 WHERE name = $2 AND generation = $3 \
                 AND state != 'retired'",
            )
            .bind(Utc::now().to_rfc3339())
            .bind(name)
            .bind(generation)
            .execute(&mut *conn)
            .await?;
            if touched.rows_affected() == 0 {
                return Err(ProjectionError::Retired);
            }
            let behind: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM projections a, projections f \
                 WHERE a.name = $1 AND a.active = 1 AND f.name = a.name AND f.generation = $2 \
                 AND a.generation != f.generation AND a.position > f.position)",
            )
            .bind(name)
            .bind(generation)
            .fetch_one(&mut *conn)
            .await?;
            behind
        });
        if behind {
            return Ok(false);
        }
        Self::swap_active(&mut conn, name, generation).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Makes `generation` the active one and drops the others, inside the caller's transaction.
    async fn swap_active(
        conn: &mut Conn<'_>,
        name: &str,
        generation: i64,
    ) -> Result<(), ProjectionError> {
        let now = Utc::now().to_rfc3339();
        on_conn!(conn, |conn, Db| {
            sqlx::query(
                "UPDATE projections SET active = 0, state = 'retired', updated_at = $1 \
                 WHERE name = $2 AND generation != $3",
            )
            .bind(&now)
            .bind(name)
            .bind(generation)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "UPDATE projections SET active = 1, state = 'live', updated_at = $1 \
                 WHERE name = $2 AND generation = $3",
            )
            .bind(&now)
            .bind(name)
            .bind(generation)
            .execute(&mut *conn)
            .await?;
            sqlx::query("DELETE FROM documents WHERE projection = $1 AND generation != $2")
                .bind(name)
                .bind(generation)
                .execute(&mut *conn)
                .await?;
        });
        Ok(())
    }

    /// Moves the checkpoints of a batch, each from its `from` to its `to`, inside the batch's
    /// transaction; says for each whether it moved. One that did not is retired: another
    /// process promoted a newer generation meanwhile, or the checkpoint is no longer at `from`
    /// (another builder of the same generation, a rebuild resumed twice, wrote it, and applying
    /// this batch again would count its events twice). On PostgreSQL all move in one statement,
    /// which waits for a concurrent writer of a row and then checks the condition again on
    /// what it committed.
    pub(crate) async fn checkpoints(
        conn: &mut Conn<'_>,
        moves: &[Checkpoint<'_>],
        state: &str,
    ) -> Result<Vec<bool>, ProjectionError> {
        let now = Utc::now().to_rfc3339();
        if let Conn::Postgres(conn) = conn {
            if moves.is_empty() {
                return Ok(Vec::new());
            }
            let names: Vec<&str> = moves.iter().map(|m| m.ns.projection).collect();
            let generations: Vec<i64> = moves.iter().map(|m| m.ns.generation).collect();
            let froms: Vec<i64> = moves.iter().map(|m| m.from).collect();
            let tos: Vec<i64> = moves.iter().map(|m| m.to).collect();
            let moved: Vec<(String, i64)> = sqlx::query_as(
                "UPDATE projections AS p SET position = u.position, state = $1, error = NULL, \
                 error_position = NULL, updated_at = $2 \
                 FROM unnest($3::text[], $4::bigint[], $5::bigint[], $6::bigint[]) \
                     AS u (name, generation, from_position, position) \
                 WHERE p.name = u.name AND p.generation = u.generation \
                   AND p.position = u.from_position AND p.state != 'retired' \
                 RETURNING p.name, p.generation",
            )
            .bind(state)
            .bind(&now)
            .bind(&names)
            .bind(&generations)
            .bind(&froms)
            .bind(&tos)
            .fetch_all(&mut **conn)
            .await?;
            return Ok(moves
                .iter()
                .map(|m| {
                    moved.iter().any(|(name, generation)| {
                        name == m.ns.projection && *generation == m.ns.generation
                    })
                })
                .collect());
        }
        let mut moved = Vec::with_capacity(moves.len());
        for m in moves {
            let updated = on_conn!(&mut *conn, |conn, Db| {
                sqlx::query(
                    "UPDATE projections SET position = $1, state = $2, error = NULL, \
                     error_position = NULL, updated_at = $3 WHERE name = $4 AND generation = $5 \
                     AND position = $6 AND state != 'retired'",
                )
                .bind(m.to)
                .bind(state)
                .bind(&now)
                .bind(m.ns.projection)
                .bind(m.ns.generation)
                .bind(m.from)
                .execute(&mut *conn)
                .await?
                .rows_affected()
            });
            moved.push(updated > 0);
        }
        Ok(moved)
    }

    /// Marks a generation failed on the event at `position`; it stays at its checkpoint.
    pub async fn fail(
        &self,
        ns: &Namespace,
        position: i64,
        error: &str,
    ) -> Result<(), ProjectionError> {
        on_pool!(&self.pool, |pool| {
            sqlx::query(
                "UPDATE projections SET state = 'failed', error = $1, error_position = $2, \
                 updated_at = $3 WHERE name = $4 AND generation = $5",
            )
            .bind(error)
            .bind(position)
            .bind(Utc::now().to_rfc3339())
            .bind(ns.projection)
            .bind(ns.generation)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Every document of every active generation, in a stable order: what "rebuild equals live"
    /// compares byte for byte.
    pub async fn dump_active(&self) -> Result<Vec<DocumentRow>, ProjectionError> {
        Ok(on_pool!(&self.pool, |pool| {
            sqlx::query_as::<_, DocumentRow>(
                "SELECT d.projection, d.kind, d.key, d.parent, d.doc FROM documents d \
                 JOIN projections p ON p.name = d.projection AND p.generation = d.generation \
                 AND p.active = 1 ORDER BY d.projection, d.kind, d.key",
            )
            .fetch_all(pool)
            .await?
        }))
    }

    /// The trace index of the active `trace` generation, as (entity, position) in order: the
    /// trace's part of "rebuild equals live".
    pub async fn dump_active_trace_index(&self) -> Result<Vec<(String, i64)>, ProjectionError> {
        match self.active(crate::projectors::trace::NAME).await? {
            Some(active) => self.trace_index_of(active.generation).await,
            None => Ok(Vec::new()),
        }
    }

    /// The trace index of one generation of `trace`, as (entity, position) in order.
    pub async fn trace_index_of(
        &self,
        generation: i64,
    ) -> Result<Vec<(String, i64)>, ProjectionError> {
        let version = self
            .generation(crate::projectors::trace::NAME, generation)
            .await?
            .map_or(0, |row| row.version);
        let mut pooled = self.acquire_read().await?;
        crate::projectors::trace::index::all_positions(&mut pooled.conn(), generation, version)
            .await
    }

    /// What the generations that do not answer leave behind: their documents, and the trace
    /// index rows of `trace` generations that do not answer. Both are (0, 0) once a promotion
    /// and the next trace batch have cleaned up.
    pub async fn leftovers(&self) -> Result<(i64, i64), ProjectionError> {
        Ok(on_pool!(&self.pool, |pool| {
            let documents: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM documents d WHERE NOT EXISTS (SELECT 1 FROM projections p \
                 WHERE p.name = d.projection AND p.generation = d.generation AND p.active = 1)",
            )
            .fetch_one(pool)
            .await?;
            let mut trace_rows = 0;
            for table in ["trace_index", "trace_postings"] {
                let rows: i64 = sqlx::query_scalar(&format!(
                    "SELECT COUNT(*) FROM {table} t WHERE NOT EXISTS (SELECT 1 FROM projections p \
                     WHERE p.name = 'trace' AND p.generation = t.generation AND p.active = 1)"
                ))
                .fetch_one(pool)
                .await?;
                trace_rows += rows;
            }
            (documents, trace_rows)
        }))
    }

    /// How many documents one generation of `projection` holds, answering or not.
    pub async fn count_documents(
        &self,
        projection: &str,
        generation: i64,
    ) -> Result<i64, ProjectionError> {
        Ok(on_pool!(&self.pool, |pool| {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM documents WHERE projection = $1 AND generation = $2",
            )
            .bind(projection)
            .bind(generation)
            .fetch_one(pool)
            .await?
        }))
    }

    /// Documents of one kind in the active generation of `projection`, by key.
    pub async fn document(
        &self,
        projection: &str,
        kind: &str,
        key: &str,
    ) -> Result<Option<String>, ProjectionError> {
        Ok(on_pool!(&self.pool, |pool| {
            sqlx::query_scalar(DOCUMENT)
                .bind(projection)
                .bind(projection)
                .bind(kind)
                .bind(key)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Documents of one kind under `parent` in the active generation, in key order.
    pub async fn children(
        &self,
        projection: &str,
        kind: &str,
        parent: &str,
    ) -> Result<Vec<String>, ProjectionError> {
        // SQLite without statistics prefers the primary key's (projection, generation, kind)
        // prefix to the parent index, which read every project of a board's generation for
        // each board; `INDEXED BY` (SQLite's own) keeps the plan that reads one parent's.
        let sql = match self.pool {
            Pool::Sqlite(_) => CHILDREN_SQLITE,
            Pool::Postgres(_) => CHILDREN,
        };
        Ok(on_pool!(&self.pool, |pool| {
            sqlx::query_scalar(sql)
                .bind(projection)
                .bind(projection)
                .bind(kind)
                .bind(parent)
                .fetch_all(pool)
                .await?
        }))
    }

    /// Every document of one kind in the active generation, in key order.
    pub async fn all(&self, projection: &str, kind: &str) -> Result<Vec<String>, ProjectionError> {
        Ok(on_pool!(&self.pool, |pool| {
            sqlx::query_scalar(ALL)
                .bind(projection)
                .bind(projection)
                .bind(kind)
                .fetch_all(pool)
                .await?
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan SQLite makes of `sql`, one line per step.
    async fn plan(db: &ReadDb, sql: &str, binds: &[&str]) -> String {
        let mut query = sqlx::query_as::<_, (i64, i64, i64, String)>(sql);
        for bind in binds {
            query = query.bind(*bind);
        }
        let pool = db.sqlite().expect("SQLite");
        let rows = query.fetch_all(pool).await.expect("a plan");
        rows.into_iter()
            .map(|(_, _, _, detail)| detail)
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[tokio::test]
    async fn the_read_routes_find_documents_by_their_whole_key_or_their_parent() {
        let db = ReadDb::in_memory().await.expect("a database");
        let binds = ["board", "board", "project", "x"];
        let document = plan(&db, &format!("EXPLAIN QUERY PLAN {DOCUMENT}"), &binds).await;
        assert!(
            document.contains(
                "SEARCH documents USING PRIMARY KEY (projection=? AND generation=? AND kind=? AND key=?)"
            ),
            "{document}"
        );
        let children = plan(
            &db,
            &format!("EXPLAIN QUERY PLAN {CHILDREN_SQLITE}"),
            &binds,
        )
        .await;
        assert!(
            children.contains(
                "SEARCH documents USING INDEX documents_by_parent \
                 (projection=? AND generation=? AND kind=? AND parent=?)"
            ),
            "{children}"
        );
    }
}

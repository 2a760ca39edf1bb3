//! The trace index table (`trace_index`, migration 0002): an append-only list of
//! (entity, position) rows per generation, written with the batch's checkpoint.
//!
//! It plays the part of a [`Collection`](crate::collection::Collection) for the runner: nothing
//! is loaded, the rows of a batch are buffered during `apply` and inserted in `flush`, inside
//! the batch's transaction; a failed batch drops its buffer and is applied again. Inserts
//! ignore rows already present, so applying an event twice changes nothing. It also deletes
//! the rows of older generations that no longer answer (a finished rebuild, an abandoned one),
//! once per generation and process, in a batch's transaction. It looks for them in its first
//! batch after a (re)start and then every [`RETIRED_CHECK`], not in every batch: a live batch is
//! a handful of statements, and this was one of them.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::QueryBuilder;

use crate::collection::{Documents, Namespace, Store};
use crate::readdb::{on_conn, Conn};
use crate::ProjectionError;

/// Rows per multi-row insert (three bound values each).
const CHUNK: usize = 1_000;

/// How often a following trace index looks for retired generations to delete.
const RETIRED_CHECK: Duration = Duration::from_secs(10);

/// The rows of the batch being applied.
#[derive(Debug, Default)]
pub(super) struct TraceIndex {
    rows: Vec<(String, i64)>,
    /// Generations whose rows this process has deleted (committed).
    cleaned: BTreeSet<i64>,
    /// Generations deleted in the current batch, not yet committed.
    cleaning: BTreeSet<i64>,
    /// When it last looked for retired generations (`None`: not since the last start).
    checked: Option<Instant>,
}

impl TraceIndex {
    /// Records that the event at `position` concerns each of `entities`.
    pub(super) fn record(&mut self, entities: impl IntoIterator<Item = String>, position: i64) {
        self.rows
            .extend(entities.into_iter().map(|entity| (entity, position)));
    }

    /// Deletes the rows of the generations older than `ns`'s that do not answer reads.
    async fn delete_retired(
        &mut self,
        conn: &mut Conn<'_>,
        ns: &Namespace,
    ) -> Result<(), ProjectionError> {
        let retired: Vec<i64> = on_conn!(&mut *conn, |conn, Db| {
            sqlx::query_scalar(
                "SELECT generation FROM projections \
                 WHERE name = $1 AND generation < $2 AND active = 0",
            )
            .bind(ns.projection)
            .bind(ns.generation)
            .fetch_all(&mut *conn)
            .await?
        });
        for generation in retired {
            if self.cleaned.contains(&generation) || self.cleaning.contains(&generation) {
                continue;
            }
            on_conn!(&mut *conn, |conn, Db| {
                sqlx::query("DELETE FROM trace_index WHERE generation = $1")
                    .bind(generation)
                    .execute(&mut *conn)
                    .await?;
            });
            self.cleaning.insert(generation);
        }
        Ok(())
    }
}

#[async_trait]
impl Store for TraceIndex {
    async fn load(&mut self, _conn: &mut Conn<'_>, _ns: &Namespace) -> Result<(), ProjectionError> {
        Ok(())
    }

    async fn flush(
        &mut self,
        conn: &mut Conn<'_>,
        ns: &Namespace,
        _documents: &mut Documents,
    ) -> Result<(), ProjectionError> {
        if self.checked.is_none_or(|at| at.elapsed() >= RETIRED_CHECK) {
            self.delete_retired(conn, ns).await?;
            self.checked = Some(Instant::now());
        }
        // In key order, so the inserts walk the primary key's B-tree forwards.
        self.rows.sort_unstable();
        match conn {
            // PostgreSQL: every row in one statement, passed as two arrays. A multi-row VALUES
            // of 3 × 400 parameters costs PostgreSQL more to parse and plan than to insert.
            Conn::Postgres(_) if self.rows.is_empty() => {}
            Conn::Postgres(conn) => {
                let (entities, positions): (Vec<&str>, Vec<i64>) = self
                    .rows
                    .iter()
                    .map(|(entity, position)| (entity.as_str(), *position))
                    .unzip();
                sqlx::query(
                    "INSERT INTO trace_index (generation, entity, position) \
                     SELECT $1, entity, position FROM unnest($2::text[], $3::bigint[]) \
                         AS row (entity, position) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(ns.generation)
                .bind(&entities)
                .bind(&positions)
                .execute(&mut **conn)
                .await?;
            }
            Conn::Sqlite(conn) => {
                for chunk in self.rows.chunks(CHUNK) {
                    let mut query =
                        QueryBuilder::<sqlx::Sqlite>::new("INSERT OR IGNORE INTO trace_index ");
                    query.push("(generation, entity, position) ");
                    query.push_values(chunk, |mut row, (entity, position)| {
                        row.push_bind(ns.generation)
                            .push_bind(entity.as_str())
                            .push_bind(*position);
                    });
                    query.build().execute(&mut **conn).await?;
                }
            }
        }
        Ok(())
    }

    fn committed(&mut self, _keep: usize) {
        self.rows.clear();
        self.cleaned.append(&mut self.cleaning);
    }

    fn dirty(&self) -> usize {
        // A row (an entity and a position) weighs about an eighth of a typical document.
        self.rows.len() / 8
    }

    fn discard(&mut self) {
        self.rows.clear();
        self.cleaning.clear();
        self.checked = None;
    }
}

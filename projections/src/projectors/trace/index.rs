//! The trace index (`trace_postings`, migration 0004): for each entity, the positions of the
//! events that concern it, as posting lists written with the batch's checkpoint.
//!
//! It plays the part of a [`Collection`](crate::collection::Collection) for the runner, but
//! nothing of it is ever read back while projecting: a batch's positions are gathered per
//! entity during `apply` and written in `flush`, a row per entity (a few hundred positions at
//! most to a row), inside the batch's transaction; a failed batch drops what it gathered and is
//! applied again. A row is keyed by its last position, so writing it twice changes nothing.
//! A rebuild that writes once in a while writes each entity's positions in a few rows instead
//! of one row per (entity, event): about five million rows for a million-event log before.
//!
//! It also deletes the rows of older generations that no longer answer (a finished rebuild, an
//! abandoned one), once per generation and process, in a batch's transaction. It looks for them
//! in its first batch after a (re)start and then every [`RETIRED_CHECK`], not in every batch.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::QueryBuilder;
use uuid::Uuid;

use crate::collection::{Documents, Key, Namespace, Store};
use crate::readdb::{on_conn, Conn};
use crate::ProjectionError;

/// Positions one row holds at most: a row stays well inside a page.
const PER_ROW: usize = 400;

/// Rows per multi-row insert on SQLite (four bound values each).
const CHUNK: usize = 500;

/// How often a following trace index looks for retired generations to delete.
const RETIRED_CHECK: Duration = Duration::from_secs(10);

/// What an index key names. The order is that of the written names, so keys sort as text does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum EntityKind {
    Actor,
    Community,
    District,
    Project,
    Unit,
}

impl EntityKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EntityKind::Actor => "actor",
            EntityKind::Community => "community",
            EntityKind::District => "district",
            EntityKind::Project => "project",
            EntityKind::Unit => "unit",
        }
    }
}

/// An index key, written `<kind>:<uuid>` (`project:…`, `unit:…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Entity {
    pub kind: EntityKind,
    pub id: Uuid,
}

impl Entity {
    pub(crate) fn new(kind: EntityKind, id: Uuid) -> Self {
        Self { kind, id }
    }

    pub(crate) fn text(&self) -> String {
        let mut text = String::with_capacity(48);
        text.push_str(self.kind.as_str());
        text.push(':');
        self.id.write(&mut text);
        text
    }
}

/// Appends `value` to `out` as an LEB128 varint.
fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The positions of a stored row (see [`put_varint`] and migration 0004); `None` when the bytes
/// are not a well-formed, ascending list.
fn decode_positions(bytes: &[u8]) -> Option<Vec<i64>> {
    let mut positions = Vec::new();
    let mut value: u64 = 0;
    let mut shift = 0;
    let mut previous: i64 = 0;
    for &byte in bytes {
        if shift > 56 {
            return None;
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            let delta = i64::try_from(value).ok()?;
            let position = if positions.is_empty() {
                delta
            } else {
                previous.checked_add(delta).filter(|_| delta > 0)?
            };
            positions.push(position);
            previous = position;
            value = 0;
            shift = 0;
        } else {
            shift += 7;
        }
    }
    (shift == 0).then_some(positions)
}

/// The rows one entity has gathered since the last write.
#[derive(Debug, Default)]
struct Postings {
    /// Finished rows: (last position, encoded positions).
    full: Vec<(i64, Vec<u8>)>,
    /// The row being filled.
    bytes: Vec<u8>,
    count: usize,
    last: i64,
}

impl Postings {
    fn push(&mut self, position: i64) {
        if self.count > 0 && position <= self.last {
            // Already recorded (an entity named twice by one event).
            return;
        }
        if self.count == PER_ROW {
            self.full.push((self.last, std::mem::take(&mut self.bytes)));
            self.count = 0;
        }
        let value = if self.count == 0 {
            position
        } else {
            position - self.last
        };
        put_varint(&mut self.bytes, u64::try_from(value).unwrap_or(0));
        self.count += 1;
        self.last = position;
    }

    fn rows(self) -> impl Iterator<Item = (i64, Vec<u8>)> {
        let last = (self.count > 0).then_some((self.last, self.bytes));
        self.full.into_iter().chain(last)
    }
}

/// The positions gathered since the last write, by entity.
#[derive(Debug, Default)]
pub(super) struct TraceIndex {
    pending: HashMap<Entity, Postings, foldhash::fast::RandomState>,
    /// How many positions `pending` holds.
    positions: usize,
    /// Generations whose rows this process has deleted (committed).
    cleaned: BTreeSet<i64>,
    /// Generations deleted in the current batch, not yet committed.
    cleaning: BTreeSet<i64>,
    /// When it last looked for retired generations (`None`: not since the last start).
    checked: Option<Instant>,
}

impl TraceIndex {
    /// Records that the event at `position` concerns each of `entities`.
    pub(super) fn record(&mut self, entities: impl IntoIterator<Item = Entity>, position: i64) {
        for entity in entities {
            self.pending.entry(entity).or_default().push(position);
            self.positions += 1;
        }
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
                for table in ["trace_postings", "trace_index"] {
                    sqlx::query(&format!("DELETE FROM {table} WHERE generation = $1"))
                        .bind(generation)
                        .execute(&mut *conn)
                        .await?;
                }
            });
            self.cleaning.insert(generation);
        }
        Ok(())
    }

    /// Takes the gathered rows out, in key order: (entity, last position, positions).
    fn take_rows(&mut self) -> Vec<(String, i64, Vec<u8>)> {
        let mut pending: Vec<(Entity, Postings)> =
            std::mem::take(&mut self.pending).into_iter().collect();
        self.positions = 0;
        pending.sort_unstable_by_key(|(entity, _)| *entity);
        let mut rows = Vec::with_capacity(pending.len());
        for (entity, postings) in pending {
            let text = entity.text();
            for (last, bytes) in postings.rows() {
                rows.push((text.clone(), last, bytes));
            }
        }
        rows
    }
}

#[async_trait]
impl Store for TraceIndex {
    /// Nothing of the index is ever read back while projecting: rows are only added.
    fn is_loaded(&self) -> bool {
        true
    }

    fn start_empty(&mut self) {}

    async fn load(
        &mut self,
        _conn: &mut Conn<'_>,
        _ns: &Namespace,
        _budget: usize,
    ) -> Result<(), ProjectionError> {
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
        // Should the transaction fail, the runner discards every lane's memory and applies the
        // events again, which gathers the same rows again.
        let rows = self.take_rows();
        write_rows(conn, ns.generation, &rows).await
    }

    fn committed(&mut self) {
        self.cleaned.append(&mut self.cleaning);
    }

    fn weight(&self) -> usize {
        // Each entity's posting list, and about two bytes a position.
        self.pending.len() * 96 + self.positions * 2
    }

    fn dirty(&self) -> usize {
        // A position weighs about a fiftieth of a typical document.
        self.positions / 50
    }

    fn discard(&mut self) {
        self.pending = HashMap::default();
        self.positions = 0;
        self.cleaning.clear();
        self.checked = None;
    }
}

/// Inserts `rows` of `generation` (existing rows are left as they are: they are the same).
async fn write_rows(
    conn: &mut Conn<'_>,
    generation: i64,
    rows: &[(String, i64, Vec<u8>)],
) -> Result<(), ProjectionError> {
    if rows.is_empty() {
        return Ok(());
    }
    match conn {
        // PostgreSQL: every row in one statement, passed as arrays. A multi-row VALUES costs
        // PostgreSQL more to parse and plan than to insert.
        Conn::Postgres(conn) => {
            let entities: Vec<&str> = rows.iter().map(|(e, _, _)| e.as_str()).collect();
            let lasts: Vec<i64> = rows.iter().map(|(_, l, _)| *l).collect();
            let blobs: Vec<&[u8]> = rows.iter().map(|(_, _, b)| b.as_slice()).collect();
            sqlx::query(
                "INSERT INTO trace_postings (generation, entity, last_position, positions) \
                 SELECT $1, entity, last_position, positions \
                 FROM unnest($2::text[], $3::bigint[], $4::bytea[]) \
                     AS row (entity, last_position, positions) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(generation)
            .bind(&entities)
            .bind(&lasts)
            .bind(&blobs)
            .execute(&mut **conn)
            .await?;
        }
        Conn::Sqlite(conn) => {
            for chunk in rows.chunks(CHUNK) {
                let mut query = QueryBuilder::<sqlx::Sqlite>::new(
                    "INSERT OR IGNORE INTO trace_postings \
                     (generation, entity, last_position, positions) ",
                );
                query.push_values(chunk, |mut row, (entity, last, bytes)| {
                    row.push_bind(generation)
                        .push_bind(entity.as_str())
                        .push_bind(*last)
                        .push_bind(bytes.as_slice());
                });
                query.build().execute(&mut **conn).await?;
            }
        }
    }
    Ok(())
}

/// The first version of `trace` whose generations write `trace_postings`; older ones wrote a
/// row per (entity, event) to `trace_index`.
pub(crate) const POSTINGS_FROM_VERSION: i64 = 2;

/// The positions of the events that concern `entity` in `generation` (built by `version`), in
/// order.
pub(crate) async fn entity_positions(
    conn: &mut Conn<'_>,
    generation: i64,
    version: i64,
    entity: &str,
) -> Result<Vec<i64>, ProjectionError> {
    if version < POSTINGS_FROM_VERSION {
        return Ok(on_conn!(conn, |conn, Db| {
            sqlx::query_scalar(
                "SELECT position FROM trace_index WHERE generation = $1 AND entity = $2 \
                 ORDER BY position",
            )
            .bind(generation)
            .bind(entity)
            .fetch_all(&mut *conn)
            .await?
        }));
    }
    let rows: Vec<Vec<u8>> = on_conn!(conn, |conn, Db| {
        sqlx::query_scalar(
            "SELECT positions FROM trace_postings WHERE generation = $1 AND entity = $2 \
             ORDER BY last_position",
        )
        .bind(generation)
        .bind(entity)
        .fetch_all(&mut *conn)
        .await?
    });
    let mut positions = Vec::new();
    for row in rows {
        positions.extend(decode_positions(&row).ok_or_else(|| unreadable(entity))?);
    }
    Ok(positions)
}

/// Every (entity, position) of `generation` (built by `version`), in order.
pub(crate) async fn all_positions(
    conn: &mut Conn<'_>,
    generation: i64,
    version: i64,
) -> Result<Vec<(String, i64)>, ProjectionError> {
    if version < POSTINGS_FROM_VERSION {
        return Ok(on_conn!(conn, |conn, Db| {
            sqlx::query_as(
                "SELECT entity, position FROM trace_index WHERE generation = $1 \
                 ORDER BY entity, position",
            )
            .bind(generation)
            .fetch_all(&mut *conn)
            .await?
        }));
    }
    let rows: Vec<(String, Vec<u8>)> = on_conn!(conn, |conn, Db| {
        sqlx::query_as(
            "SELECT entity, positions FROM trace_postings WHERE generation = $1 \
             ORDER BY entity, last_position",
        )
        .bind(generation)
        .fetch_all(&mut *conn)
        .await?
    });
    let mut all = Vec::new();
    for (entity, row) in rows {
        let positions = decode_positions(&row).ok_or_else(|| unreadable(&entity))?;
        all.extend(positions.into_iter().map(|p| (entity.clone(), p)));
    }
    Ok(all)
}

fn unreadable(entity: &str) -> ProjectionError {
    ProjectionError::Storage(format!("the trace index of {entity} is unreadable"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_read_back_as_written_across_rows() {
        let mut postings = Postings::default();
        let written: Vec<i64> = (0..1_000).map(|i| 1 + i * i).collect();
        for &position in &written {
            postings.push(position);
        }
        postings.push(written[999]);
        let rows: Vec<(i64, Vec<u8>)> = postings.rows().collect();
        assert_eq!(rows.len(), 3, "400 + 400 + 200 positions");
        let mut read = Vec::new();
        for (last, bytes) in rows {
            let positions = decode_positions(&bytes).expect("well formed");
            assert_eq!(positions.last(), Some(&last));
            read.extend(positions);
        }
        assert_eq!(read, written);
    }

    #[test]
    fn malformed_rows_are_refused_rather_than_misread() {
        assert_eq!(decode_positions(&[0x80]), None, "a varint cut short");
        assert_eq!(decode_positions(&[5, 0]), None, "a position repeated");
        assert_eq!(decode_positions(&[0xff; 12]), None, "a varint too long");
        assert_eq!(decode_positions(&[]), Some(vec![]));
        assert_eq!(decode_positions(&[0x96, 0x01]), Some(vec![150]));
    }

    #[tokio::test]
    async fn a_version_one_generation_is_read_from_its_rows_and_a_later_one_from_postings() {
        let db = crate::readdb::ReadDb::in_memory()
            .await
            .expect("a database");
        let pool = db.sqlite().expect("SQLite").clone();
        let unit = Entity::new(EntityKind::Unit, Uuid::from_u128(7)).text();
        // Generation 1, built by version 1: a row per (entity, event).
        for position in [3_i64, 9, 4] {
            sqlx::query(
                "INSERT INTO trace_index (generation, entity, position) VALUES (1, $1, $2)",
            )
            .bind(&unit)
            .bind(position)
            .execute(&pool)
            .await
            .expect("a row");
        }
        // Generation 2, built by version 2: posting lists.
        let mut index = TraceIndex::default();
        for position in [5, 8, 13] {
            index.record(
                [Entity::new(EntityKind::Unit, Uuid::from_u128(7))],
                position,
            );
        }
        let rows = index.take_rows();
        let mut conn = pool.acquire().await.expect("a connection");
        write_rows(&mut Conn::Sqlite(&mut conn), 2, &rows)
            .await
            .expect("written");
        // Written twice (a batch applied again): nothing changes.
        write_rows(&mut Conn::Sqlite(&mut conn), 2, &rows)
            .await
            .expect("written again");

        let mut conn = Conn::Sqlite(&mut conn);
        let old = entity_positions(&mut conn, 1, 1, &unit)
            .await
            .expect("read");
        assert_eq!(old, [3, 4, 9]);
        let new = entity_positions(&mut conn, 2, 2, &unit)
            .await
            .expect("read");
        assert_eq!(new, [5, 8, 13]);
        assert_eq!(
            all_positions(&mut conn, 2, 2).await.expect("read"),
            [(unit.clone(), 5), (unit.clone(), 8), (unit.clone(), 13)]
        );
        // Each version reads only its own table.
        assert!(entity_positions(&mut conn, 1, 2, &unit)
            .await
            .expect("read")
            .is_empty());
    }

    #[test]
    fn keys_sort_as_their_text_does() {
        let a = Uuid::from_u128(1);
        let b = Uuid::from_u128(u128::MAX);
        let mut entities = [
            Entity::new(EntityKind::Unit, a),
            Entity::new(EntityKind::Actor, b),
            Entity::new(EntityKind::Project, a),
            Entity::new(EntityKind::District, b),
            Entity::new(EntityKind::Community, a),
            Entity::new(EntityKind::Actor, a),
        ];
        let mut texts: Vec<String> = entities.iter().map(Entity::text).collect();
        entities.sort();
        texts.sort();
        assert_eq!(entities.iter().map(Entity::text).collect::<Vec<_>>(), texts);
    }
}

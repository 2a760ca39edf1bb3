//! A typed, write-behind cache of one kind of read-model document.
//!
//! Projectors are synchronous: before a batch, they name the documents its events touch
//! ([`Collection::want`]); the runner loads the missing ones in a few queries, the projector
//! changes them in memory, and the runner writes back only the changed ones, in the same
//! transaction as the checkpoint. A failed batch throws the cache away, so memory never runs
//! ahead of the database. Loads and writes are the same SQL on SQLite and PostgreSQL.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::QueryBuilder;

use crate::readdb::{on_conn, Conn};
use crate::ProjectionError;

/// How many documents one `IN (…)` load or one multi-row upsert carries.
const CHUNK: usize = 400;

/// Where a generation's documents live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    pub projection: &'static str,
    pub generation: i64,
}

struct Entry<T> {
    doc: T,
    parent: Option<String>,
    dirty: bool,
}

/// The documents of one kind (`project`, `community`, …) of one projector.
pub struct Collection<T> {
    kind: &'static str,
    cache: HashMap<String, Entry<T>>,
    /// Keys known to have no document (so they are not asked for again).
    absent: HashSet<String>,
    wanted: HashSet<String>,
    /// How many cached documents are changed and not yet written.
    dirty: usize,
}

impl<T> Collection<T> {
    pub fn new(kind: &'static str) -> Self {
        Self {
            kind,
            cache: HashMap::new(),
            absent: HashSet::new(),
            wanted: HashSet::new(),
            dirty: 0,
        }
    }

    /// Asks for `key` to be loaded before the next batch is applied.
    pub fn want(&mut self, key: impl Into<String>) {
        let key = key.into();
        if !self.cache.contains_key(&key) && !self.absent.contains(&key) {
            self.wanted.insert(key);
        }
    }

    pub fn get(&self, key: &str) -> Option<&T> {
        self.cache.get(key).map(|e| &e.doc)
    }

    /// The document for `key`, marked changed.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut T> {
        let entry = self.cache.get_mut(key)?;
        if !entry.dirty {
            entry.dirty = true;
            self.dirty += 1;
        }
        Some(&mut entry.doc)
    }

    /// Creates or replaces the document for `key`.
    pub fn put(&mut self, key: impl Into<String>, parent: Option<String>, doc: T) {
        let key = key.into();
        self.absent.remove(&key);
        let replaced = self.cache.insert(
            key,
            Entry {
                doc,
                parent,
                dirty: true,
            },
        );
        if !replaced.is_some_and(|old| old.dirty) {
            self.dirty += 1;
        }
    }

    /// All cached documents (for in-memory reports after a replay).
    pub fn iter(&self) -> impl Iterator<Item = (&String, &T)> {
        self.cache.iter().map(|(k, e)| (k, &e.doc))
    }
}

/// What the runner needs of every collection, whatever its document type.
#[async_trait]
pub trait Store: Send {
    /// Loads the wanted documents that are not cached yet.
    async fn load(&mut self, conn: &mut Conn<'_>, ns: &Namespace) -> Result<(), ProjectionError>;
    /// Writes the changed documents: adds them to `documents`, which the runner writes for
    /// every projector of the batch at once, or (a table of its own) writes them itself.
    async fn flush(
        &mut self,
        conn: &mut Conn<'_>,
        ns: &Namespace,
        documents: &mut Documents,
    ) -> Result<(), ProjectionError>;
    /// After a commit: everything is clean; drop clean documents beyond `keep`.
    fn committed(&mut self, keep: usize);
    /// How many changes are held in memory, not yet written: the runner writes them out
    /// before this grows too large, even in the middle of a catch-up.
    fn dirty(&self) -> usize;
    /// After a failed batch: forget everything, the database is the truth.
    fn discard(&mut self);
}

#[async_trait]
impl<T> Store for Collection<T>
where
    T: Serialize + DeserializeOwned + Send,
{
    async fn load(&mut self, conn: &mut Conn<'_>, ns: &Namespace) -> Result<(), ProjectionError> {
        if self.wanted.is_empty() {
            return Ok(());
        }
        let wanted: Vec<String> = self.wanted.drain().collect();
        for chunk in wanted.chunks(CHUNK) {
            let rows = on_conn!(&mut *conn, |conn, Db| {
                let mut query = QueryBuilder::<Db>::new(
                    "SELECT key, parent, doc FROM documents WHERE projection = ",
                );
                query
                    .push_bind(ns.projection)
                    .push(" AND generation = ")
                    .push_bind(ns.generation)
                    .push(" AND kind = ")
                    .push_bind(self.kind)
                    .push(" AND key IN (");
                let mut separated = query.separated(", ");
                for key in chunk {
                    separated.push_bind(key.as_str());
                }
                separated.push_unseparated(")");
                let rows: Vec<(String, Option<String>, String)> =
                    query.build_query_as().fetch_all(&mut *conn).await?;
                rows
            });
            let mut found = HashSet::with_capacity(rows.len());
            for (key, parent, doc) in rows {
                let doc: T = serde_json::from_str(&doc).map_err(|e| {
                    ProjectionError::Storage(format!(
                        "{} {key}: unreadable document: {e}",
                        self.kind
                    ))
                })?;
                found.insert(key.clone());
                self.cache.insert(
                    key,
                    Entry {
                        doc,
                        parent,
                        dirty: false,
                    },
                );
            }
            for key in chunk {
                if !found.contains(key) {
                    self.absent.insert(key.clone());
                }
            }
        }
        Ok(())
    }

    async fn flush(
        &mut self,
        _conn: &mut Conn<'_>,
        ns: &Namespace,
        documents: &mut Documents,
    ) -> Result<(), ProjectionError> {
        for (key, entry) in &self.cache {
            if entry.dirty {
                let doc = serde_json::to_string(&entry.doc)
                    .map_err(|e| ProjectionError::Storage(format!("serialising {key}: {e}")))?;
                documents.rows.push(DocumentRow {
                    projection: ns.projection,
                    generation: ns.generation,
                    kind: self.kind,
                    key: key.clone(),
                    parent: entry.parent.clone(),
                    doc,
                });
            }
        }
        Ok(())
    }

    fn committed(&mut self, keep: usize) {
        for entry in self.cache.values_mut() {
            entry.dirty = false;
        }
        self.dirty = 0;
        if self.cache.len() > keep {
            // A simple bound: start afresh; documents are loaded again when next touched.
            self.cache.clear();
        }
        if self.absent.len() > keep {
            self.absent.clear();
        }
    }

    fn dirty(&self) -> usize {
        self.dirty
    }

    fn discard(&mut self) {
        self.cache.clear();
        self.absent.clear();
        self.wanted.clear();
        self.dirty = 0;
    }
}

/// One changed document, ready to be written.
#[derive(Debug)]
struct DocumentRow {
    projection: &'static str,
    generation: i64,
    kind: &'static str,
    key: String,
    parent: Option<String>,
    doc: String,
}

/// The changed documents of every projector in a batch, written together: one statement on
/// PostgreSQL (each statement there is planned afresh, and a batch of five projectors used to
/// send one per kind of document), chunks of a multi-row upsert on SQLite.
#[derive(Debug, Default)]
pub struct Documents {
    rows: Vec<DocumentRow>,
}

impl Documents {
    /// Writes every document added, in primary-key order, so the upserts walk the table's
    /// B-tree forwards, each page once, instead of in the caches' hash order all over it.
    pub async fn write(mut self, conn: &mut Conn<'_>) -> Result<(), ProjectionError> {
        if self.rows.is_empty() {
            return Ok(());
        }
        self.rows.sort_unstable_by(|a, b| {
            (a.projection, a.generation, a.kind, &a.key).cmp(&(
                b.projection,
                b.generation,
                b.kind,
                &b.key,
            ))
        });
        if let Conn::Postgres(conn) = conn {
            // Passed as arrays: a multi-row VALUES of 6 × 400 parameters costs PostgreSQL more
            // to parse and plan than to write.
            let rows = &self.rows;
            let projections: Vec<&str> = rows.iter().map(|r| r.projection).collect();
            let generations: Vec<i64> = rows.iter().map(|r| r.generation).collect();
            let kinds: Vec<&str> = rows.iter().map(|r| r.kind).collect();
            let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
            let parents: Vec<Option<&str>> = rows.iter().map(|r| r.parent.as_deref()).collect();
            let docs: Vec<&str> = rows.iter().map(|r| r.doc.as_str()).collect();
            sqlx::query(
                "INSERT INTO documents (projection, generation, kind, key, parent, doc) \
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], \
                                      $5::text[], $6::text[]) \
                 ON CONFLICT (projection, generation, kind, key) \
                 DO UPDATE SET parent = excluded.parent, doc = excluded.doc",
            )
            .bind(&projections)
            .bind(&generations)
            .bind(&kinds)
            .bind(&keys)
            .bind(&parents)
            .bind(&docs)
            .execute(&mut **conn)
            .await?;
            return Ok(());
        }
        for chunk in self.rows.chunks(CHUNK) {
            on_conn!(&mut *conn, |conn, Db| {
                let mut query = QueryBuilder::<Db>::new(
                    "INSERT INTO documents (projection, generation, kind, key, parent, doc) ",
                );
                query.push_values(chunk, |mut row, document| {
                    row.push_bind(document.projection)
                        .push_bind(document.generation)
                        .push_bind(document.kind)
                        .push_bind(document.key.as_str())
                        .push_bind(document.parent.as_deref())
                        .push_bind(document.doc.as_str());
                });
                query.push(
                    " ON CONFLICT (projection, generation, kind, key) \
                     DO UPDATE SET parent = excluded.parent, doc = excluded.doc",
                );
                query.build().execute(&mut *conn).await?;
            });
        }
        Ok(())
    }
}

//! A typed, write-behind map of one kind of read-model document, held whole in memory.
//!
//! A projector keeps every document of its generation here (the "memory image" of its read
//! model) and changes them in memory; the runner writes back only the changed ones, in the same
//! transaction as the checkpoint. Nothing is read from the database while events are applied:
//! a generation whose checkpoint is 0 has no documents, and any other is loaded whole, once,
//! before its first batch ([`Store::load`]). A failed batch throws everything away and the
//! next one loads the generation again: memory never runs ahead of the database.
//!
//! Keys are typed ([`Key`]): a UUID is kept as 16 bytes and formatted only when written, so
//! that applying an event does not build strings to look documents up.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

use async_trait::async_trait;
use futures::TryStreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::QueryBuilder;
use uuid::Uuid;

use crate::readdb::{on_conn, Conn};
use crate::ProjectionError;

/// How many documents one multi-row upsert carries.
const CHUNK: usize = 400;

/// How many serialised documents a flush holds before it writes them: a catch-up may flush
/// hundreds of thousands, and holding them all as text would double the memory it needs.
const FLUSH_ROWS: usize = 4_000;

/// The hasher of every collection: keys are ids, not attacker-chosen strings that could
/// degrade a map (and a collection is never keyed by request input).
type Hasher = foldhash::fast::RandomState;

/// Where a generation's documents live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    pub projection: &'static str,
    pub generation: i64,
}

/// A document key: how it is written to `documents.key` and read back. Its order must be the
/// byte order of the written form, so that changed documents are written in primary-key order.
pub trait Key: Clone + Eq + Ord + Hash + Send + Sync + 'static {
    /// Appends the stored form of the key to `out`.
    fn write(&self, out: &mut String);
    /// The key from its stored form; `None` when the text is not one of these keys.
    fn read(text: &str) -> Option<Self>;
}

impl Key for String {
    fn write(&self, out: &mut String) {
        out.push_str(self);
    }
    fn read(text: &str) -> Option<Self> {
        Some(text.to_owned())
    }
}

impl Key for Uuid {
    fn write(&self, out: &mut String) {
        let mut buffer = Uuid::encode_buffer();
        out.push_str(self.hyphenated().encode_lower(&mut buffer));
    }
    fn read(text: &str) -> Option<Self> {
        Uuid::parse_str(text).ok()
    }
}

/// The kind of an aggregate's stream, the part of a stream id before the dash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StreamKind {
    Community,
    District,
    Meeting,
    Project,
    Request,
    Unit,
}

impl StreamKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamKind::Community => "community",
            StreamKind::District => "district",
            StreamKind::Meeting => "meeting",
            StreamKind::Project => "project",
            StreamKind::Request => "request",
            StreamKind::Unit => "unit",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "community" => StreamKind::Community,
            "district" => StreamKind::District,
            "meeting" => StreamKind::Meeting,
            "project" => StreamKind::Project,
            "request" => StreamKind::Request,
            "unit" => StreamKind::Unit,
            _ => return None,
        })
    }
}

/// A stream id (`unit-<uuid>`) as a key: 17 bytes instead of a 40-character string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    pub kind: StreamKind,
    pub id: Uuid,
}

impl StreamKey {
    pub fn new(kind: StreamKind, id: Uuid) -> Self {
        Self { kind, id }
    }

    /// The key of a stream id; `None` for text that is not `<kind>-<uuid>`.
    pub fn parse(stream: &str) -> Option<Self> {
        let (kind, id) = stream.split_once('-')?;
        Some(Self {
            kind: StreamKind::parse(kind)?,
            id: Uuid::parse_str(id).ok()?,
        })
    }
}

macro_rules! stream_key_from {
    ($($id:ident => $kind:ident),* $(,)?) => {
        $(impl From<domain::ids::$id> for StreamKey {
            fn from(id: domain::ids::$id) -> Self {
                Self::new(StreamKind::$kind, id.0)
            }
        })*
    };
}

stream_key_from!(
    CommunityId => Community,
    DistrictId => District,
    MeetingId => Meeting,
    ProjectId => Project,
    RequestId => Request,
    UnitId => Unit,
);

impl Key for StreamKey {
    fn write(&self, out: &mut String) {
        out.push_str(self.kind.as_str());
        out.push('-');
        self.id.write(out);
    }
    fn read(text: &str) -> Option<Self> {
        Self::parse(text)
    }
}

struct Entry<T> {
    doc: T,
    /// The document this one belongs to (a project's community), for listing by parent.
    parent: Option<Uuid>,
    dirty: bool,
}

/// The documents of one kind (`project`, `community`, …) of one projector, keyed by `K`.
pub struct Collection<T, K: Key = String> {
    kind: &'static str,
    map: HashMap<K, Entry<T>, Hasher>,
    /// Keys changed since the last write, each once.
    dirty: Vec<K>,
    /// Whether the map holds the generation's documents (loaded, or known to be none).
    loaded: bool,
}

impl<T, K: Key> Collection<T, K> {
    pub fn new(kind: &'static str) -> Self {
        Self {
            kind,
            map: HashMap::default(),
            dirty: Vec::new(),
            loaded: false,
        }
    }

    pub fn get<Q>(&self, key: &Q) -> Option<&T>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get(key).map(|e| &e.doc)
    }

    /// The document for `key`, marked changed.
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut T>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let newly = match self.map.get_key_value(key) {
            None => return None,
            Some((stored, entry)) => (!entry.dirty).then(|| stored.clone()),
        };
        if let Some(stored) = newly {
            self.dirty.push(stored);
        }
        let entry = self.map.get_mut(key)?;
        entry.dirty = true;
        Some(&mut entry.doc)
    }

    /// Creates or replaces the document for `key`.
    pub fn put(&mut self, key: impl Into<K>, parent: Option<Uuid>, doc: T) {
        let key = key.into();
        let entry = Entry {
            doc,
            parent,
            dirty: true,
        };
        match self.map.get_mut(&key) {
            Some(old) => {
                if !old.dirty {
                    self.dirty.push(key);
                }
                *old = entry;
            }
            None => {
                self.dirty.push(key.clone());
                self.map.insert(key, entry);
            }
        }
    }

    /// How many documents it holds.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every document, in no particular order (for in-memory reports after a replay).
    pub fn iter(&self) -> impl Iterator<Item = (&K, &T)> {
        self.map.iter().map(|(k, e)| (k, &e.doc))
    }
}

/// What the runner needs of every collection, whatever its document type.
#[async_trait]
pub trait Store: Send {
    /// Whether the generation's documents are in memory.
    fn is_loaded(&self) -> bool;
    /// The generation has no documents yet (its checkpoint is 0): nothing to load.
    fn start_empty(&mut self);
    /// Loads every document of the generation (which replaces what memory held).
    async fn load(&mut self, conn: &mut Conn<'_>, ns: &Namespace) -> Result<(), ProjectionError>;
    /// Writes the changed documents: adds them to `documents`, which the runner writes for
    /// every projector of the batch at once, or (a table of its own) writes them itself.
    async fn flush(
        &mut self,
        conn: &mut Conn<'_>,
        ns: &Namespace,
        documents: &mut Documents,
    ) -> Result<(), ProjectionError>;
    /// After a commit: everything is clean.
    fn committed(&mut self);
    /// How many changes are held in memory, not yet written: the runner writes them out
    /// before this grows too large, even in the middle of a catch-up.
    fn dirty(&self) -> usize;
    /// After a failed batch: forget everything, the database is the truth (loaded again
    /// before the next batch).
    fn discard(&mut self);
}

#[async_trait]
impl<T, K> Store for Collection<T, K>
where
    T: Serialize + DeserializeOwned + Send + Sync,
    K: Key,
{
    fn is_loaded(&self) -> bool {
        self.loaded
    }

    fn start_empty(&mut self) {
        self.discard();
        self.loaded = true;
    }

    async fn load(&mut self, conn: &mut Conn<'_>, ns: &Namespace) -> Result<(), ProjectionError> {
        self.discard();
        let kind = self.kind;
        let map = &mut self.map;
        on_conn!(&mut *conn, |conn, Db| {
            let mut rows = sqlx::query_as::<Db, (String, Option<String>, String)>(
                "SELECT key, parent, doc FROM documents \
                 WHERE projection = $1 AND generation = $2 AND kind = $3",
            )
            .bind(ns.projection)
            .bind(ns.generation)
            .bind(kind)
            .fetch(&mut *conn);
            while let Some((key, parent, doc)) = rows.try_next().await? {
                let unreadable = |what: &str| {
                    ProjectionError::Storage(format!("{kind} {key}: unreadable {what}"))
                };
                let doc: T = serde_json::from_str(&doc).map_err(|_| unreadable("document"))?;
                let parent = match parent {
                    Some(parent) => {
                        Some(Uuid::parse_str(&parent).map_err(|_| unreadable("parent"))?)
                    }
                    None => None,
                };
                let key = K::read(&key).ok_or_else(|| unreadable("key"))?;
                map.insert(
                    key,
                    Entry {
                        doc,
                        parent,
                        dirty: false,
                    },
                );
            }
        });
        self.loaded = true;
        Ok(())
    }

    async fn flush(
        &mut self,
        conn: &mut Conn<'_>,
        ns: &Namespace,
        documents: &mut Documents,
    ) -> Result<(), ProjectionError> {
        // In key order, so the upserts walk the table's B-tree forwards, chunk after chunk.
        self.dirty.sort_unstable();
        for key in &self.dirty {
            if documents.rows.len() >= FLUSH_ROWS {
                documents.write_held(conn).await?;
            }
            let Some(entry) = self.map.get(key) else {
                continue;
            };
            let mut text = String::with_capacity(40);
            key.write(&mut text);
            let doc = serde_json::to_string(&entry.doc)
                .map_err(|e| ProjectionError::Storage(format!("serialising {text}: {e}")))?;
            documents.rows.push(DocumentRow {
                projection: ns.projection,
                generation: ns.generation,
                kind: self.kind,
                key: text,
                parent: entry.parent,
                doc,
            });
        }
        Ok(())
    }

    fn committed(&mut self) {
        for key in self.dirty.drain(..) {
            if let Some(entry) = self.map.get_mut(&key) {
                entry.dirty = false;
            }
        }
    }

    fn dirty(&self) -> usize {
        self.dirty.len()
    }

    fn discard(&mut self) {
        self.map = HashMap::default();
        self.dirty = Vec::new();
        self.loaded = false;
    }
}

/// One changed document, ready to be written.
#[derive(Debug)]
struct DocumentRow {
    projection: &'static str,
    generation: i64,
    kind: &'static str,
    key: String,
    parent: Option<Uuid>,
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
        self.write_held(conn).await
    }

    /// Writes the documents added so far and lets them go.
    async fn write_held(&mut self, conn: &mut Conn<'_>) -> Result<(), ProjectionError> {
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
        let parents: Vec<Option<String>> = self
            .rows
            .iter()
            .map(|r| r.parent.map(|p| p.to_string()))
            .collect();
        if let Conn::Postgres(conn) = conn {
            // Passed as arrays: a multi-row VALUES of 6 × 400 parameters costs PostgreSQL more
            // to parse and plan than to write.
            let rows = &self.rows;
            let projections: Vec<&str> = rows.iter().map(|r| r.projection).collect();
            let generations: Vec<i64> = rows.iter().map(|r| r.generation).collect();
            let kinds: Vec<&str> = rows.iter().map(|r| r.kind).collect();
            let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
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
            self.rows.clear();
            return Ok(());
        }
        for (chunk, parents) in self.rows.chunks(CHUNK).zip(parents.chunks(CHUNK)) {
            on_conn!(&mut *conn, |conn, Db| {
                let mut query = QueryBuilder::<Db>::new(
                    "INSERT INTO documents (projection, generation, kind, key, parent, doc) ",
                );
                query.push_values(chunk.iter().zip(parents), |mut row, (document, parent)| {
                    row.push_bind(document.projection)
                        .push_bind(document.generation)
                        .push_bind(document.kind)
                        .push_bind(document.key.as_str())
                        .push_bind(parent.as_deref())
                        .push_bind(document.doc.as_str());
                });
                query.push(
                    " ON CONFLICT (projection, generation, kind, key) \
                     DO UPDATE SET parent = excluded.parent, doc = excluded.doc",
                );
                query.build().execute(&mut *conn).await?;
            });
        }
        self.rows.clear();
        Ok(())
    }
}

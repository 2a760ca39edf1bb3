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
use std::collections::{HashMap, HashSet};
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
    /// Boxed, so that a map slot is the key and a few words whatever the document: a hash map
    /// allocates its slots in powers of two and keeps them through an eviction, and a project
    /// view inline (~560 bytes) made the maps' empty slots most of a rebuild's heap
    /// (BENCHMARKS.md).
    doc: Box<T>,
    /// The document this one belongs to (a project's community), for listing by parent.
    parent: Option<Uuid>,
    dirty: bool,
    /// The length of its stored JSON when last read or written (0: not yet written).
    weight: u32,
}

/// How much of its generation a collection holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holding {
    /// Nothing yet (a start, or after a failed batch): it must be loaded before a batch.
    Nothing,
    /// Every document of the generation: a key it does not hold has no document.
    All,
    /// Some documents (the generation outgrew the memory budget): the others are loaded when a
    /// batch names them ([`Collection::want`]).
    Part,
}

/// The documents of one kind (`project`, `community`, …) of one projector, keyed by `K`.
pub struct Collection<T, K: Key = String> {
    kind: &'static str,
    map: HashMap<K, Entry<T>, Hasher>,
    /// Keys changed since the last write, each once.
    dirty: Vec<K>,
    holding: Holding,
    /// Keys known to have no document, while only a part is held (not asked for again).
    absent: HashSet<K, Hasher>,
    /// Keys named for the next batch that are neither held nor known to be absent.
    wanted: Vec<K>,
    /// The summed [`Entry::weight`] of the held documents.
    weight: usize,
    /// How many held documents have a weight (were read or written).
    weighed: usize,
}

/// What a document never written yet is taken to weigh, before any other has been weighed.
const UNWEIGHED: usize = 300;

impl<T, K: Key> Collection<T, K> {
    pub fn new(kind: &'static str) -> Self {
        Self {
            kind,
            map: HashMap::default(),
            dirty: Vec::new(),
            holding: Holding::Nothing,
            absent: HashSet::default(),
            wanted: Vec::new(),
            weight: 0,
            weighed: 0,
        }
    }

    /// Names a document the next batch reads: when only a part of the generation is held, it
    /// is loaded before the batch is applied. (When everything is held, this does nothing.)
    pub fn want(&mut self, key: impl Into<K>) {
        if self.holding != Holding::Part {
            return;
        }
        let key = key.into();
        if !self.map.contains_key(&key) && !self.absent.contains(&key) {
            self.wanted.push(key);
        }
    }

    pub fn get<Q>(&self, key: &Q) -> Option<&T>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get(key).map(|e| &*e.doc)
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
        Some(&mut *entry.doc)
    }

    /// Creates or replaces the document for `key`.
    pub fn put(&mut self, key: impl Into<K>, parent: Option<Uuid>, doc: T) {
        let key = key.into();
        if self.holding == Holding::Part {
            self.absent.remove(&key);
        }
        match self.map.get_mut(&key) {
            Some(old) => {
                // The writes never change a stored document's parent ([`Documents::write`]).
                debug_assert_eq!(old.parent, parent, "a document's parent changed");
                if !old.dirty {
                    self.dirty.push(key);
                }
                *old.doc = doc;
                old.parent = parent;
                old.dirty = true;
            }
            None => {
                self.dirty.push(key.clone());
                self.map.insert(
                    key,
                    Entry {
                        doc: Box::new(doc),
                        parent,
                        dirty: true,
                        weight: 0,
                    },
                );
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

    /// Every document held, in no particular order (for in-memory reports after a replay,
    /// which hold everything).
    pub fn iter(&self) -> impl Iterator<Item = (&K, &T)> {
        self.map.iter().map(|(k, e)| (k, &*e.doc))
    }

    /// Holds `doc`, read from the database with `weight` bytes of JSON.
    fn hold(&mut self, key: K, parent: Option<Uuid>, doc: T, weight: usize) {
        let weight = u32::try_from(weight).unwrap_or(u32::MAX).max(1);
        self.weight += weight as usize;
        self.weighed += 1;
        if let Some(old) = self.map.insert(
            key,
            Entry {
                doc: Box::new(doc),
                parent,
                dirty: false,
                weight,
            },
        ) {
            self.weight -= old.weight as usize;
            if old.weight > 0 {
                self.weighed -= 1;
            }
        }
    }
}

/// Reads one stored row into a document of `kind`.
fn read_row<T: DeserializeOwned, K: Key>(
    kind: &str,
    key: &str,
    parent: Option<&str>,
    doc: &str,
) -> Result<(K, Option<Uuid>, T), ProjectionError> {
    let unreadable =
        |what: &str| ProjectionError::Storage(format!("{kind} {key}: unreadable {what}"));
    let value: T = serde_json::from_str(doc).map_err(|_| unreadable("document"))?;
    let parent = match parent {
        Some(parent) => Some(Uuid::parse_str(parent).map_err(|_| unreadable("parent"))?),
        None => None,
    };
    let key = K::read(key).ok_or_else(|| unreadable("key"))?;
    Ok((key, parent, value))
}

/// What the runner needs of every collection, whatever its document type.
#[async_trait]
pub trait Store: Send {
    /// Whether it holds what it needs to apply a batch: everything, or a part and the rest
    /// loaded on demand (otherwise [`Store::start_empty`] or [`Store::load`] first).
    fn is_loaded(&self) -> bool;
    /// Whether it holds only a part of the generation, so batches must name what they read.
    fn is_partial(&self) -> bool {
        false
    }
    /// The generation has no documents yet (its checkpoint is 0): nothing to load.
    fn start_empty(&mut self);
    /// Loads the generation's documents (replacing what memory held): all of them, or, past
    /// `budget` bytes of JSON, those read so far, the others to be loaded on demand.
    async fn load(
        &mut self,
        conn: &mut Conn<'_>,
        ns: &Namespace,
        budget: usize,
    ) -> Result<(), ProjectionError>;
    /// Loads the documents named since the last call ([`Collection::want`]) that are not held.
    async fn load_wanted(
        &mut self,
        _conn: &mut Conn<'_>,
        _ns: &Namespace,
    ) -> Result<(), ProjectionError> {
        Ok(())
    }
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
    /// The bytes of JSON of the documents held, as last read or written: what the runner
    /// weighs against the memory budget.
    fn weight(&self) -> usize {
        0
    }
    /// Lets every clean document go (after a commit, when memory is over budget); from then
    /// on only a part is held.
    fn evict(&mut self) {}
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
        self.holding != Holding::Nothing
    }

    fn is_partial(&self) -> bool {
        self.holding == Holding::Part
    }

    fn start_empty(&mut self) {
        self.discard();
        self.holding = Holding::All;
    }

    async fn load(
        &mut self,
        conn: &mut Conn<'_>,
        ns: &Namespace,
        budget: usize,
    ) -> Result<(), ProjectionError> {
        self.discard();
        let kind = self.kind;
        let mut rows_read = Vec::new();
        let mut complete = true;
        on_conn!(&mut *conn, |conn, Db| {
            let mut rows = sqlx::query_as::<Db, (String, Option<String>, String)>(
                "SELECT key, parent, doc FROM documents \
                 WHERE projection = $1 AND generation = $2 AND kind = $3",
            )
            .bind(ns.projection)
            .bind(ns.generation)
            .bind(kind)
            .fetch(&mut *conn);
            let mut weight = 0;
            while let Some((key, parent, doc)) = rows.try_next().await? {
                if weight + doc.len() > budget {
                    complete = false;
                    break;
                }
                weight += doc.len();
                rows_read.push(
                    read_row::<T, K>(kind, &key, parent.as_deref(), &doc)
                        .map(|(key, parent, value)| (key, parent, value, doc.len()))?,
                );
            }
        });
        for (key, parent, doc, weight) in rows_read {
            self.hold(key, parent, doc, weight);
        }
        self.holding = if complete {
            Holding::All
        } else {
            Holding::Part
        };
        Ok(())
    }

    async fn load_wanted(
        &mut self,
        conn: &mut Conn<'_>,
        ns: &Namespace,
    ) -> Result<(), ProjectionError> {
        if self.wanted.is_empty() {
            return Ok(());
        }
        let mut wanted = std::mem::take(&mut self.wanted);
        wanted.sort_unstable();
        wanted.dedup();
        let kind = self.kind;
        for chunk in wanted.chunks(CHUNK) {
            let keys: Vec<String> = chunk
                .iter()
                .map(|key| {
                    let mut text = String::with_capacity(40);
                    key.write(&mut text);
                    text
                })
                .collect();
            let rows = on_conn!(&mut *conn, |conn, Db| {
                let mut query = QueryBuilder::<Db>::new(
                    "SELECT key, parent, doc FROM documents WHERE projection = ",
                );
                query
                    .push_bind(ns.projection)
                    .push(" AND generation = ")
                    .push_bind(ns.generation)
                    .push(" AND kind = ")
                    .push_bind(kind)
                    .push(" AND key IN (");
                let mut separated = query.separated(", ");
                for key in &keys {
                    separated.push_bind(key.as_str());
                }
                separated.push_unseparated(")");
                let rows: Vec<(String, Option<String>, String)> =
                    query.build_query_as().fetch_all(&mut *conn).await?;
                rows
            });
            for (key, parent, doc) in rows {
                let (key, parent, value) = read_row::<T, K>(kind, &key, parent.as_deref(), &doc)?;
                self.hold(key, parent, value, doc.len());
            }
            for key in chunk {
                if !self.map.contains_key(key) {
                    self.absent.insert(key.clone());
                }
            }
        }
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
        let mut bytes = 0u64;
        let mut written = 0u64;
        for key in &self.dirty {
            if documents.rows.len() >= FLUSH_ROWS {
                documents.write_held(conn).await?;
            }
            let Some(entry) = self.map.get_mut(key) else {
                continue;
            };
            let mut text = String::with_capacity(40);
            key.write(&mut text);
            let doc = serde_json::to_string(&entry.doc)
                .map_err(|e| ProjectionError::Storage(format!("serialising {text}: {e}")))?;
            let weight = u32::try_from(doc.len()).unwrap_or(u32::MAX).max(1);
            self.weight = self.weight + weight as usize - entry.weight as usize;
            if entry.weight == 0 {
                self.weighed += 1;
            }
            entry.weight = weight;
            bytes += doc.len() as u64;
            written += 1;
            documents.rows.push(DocumentRow {
                projection: ns.projection,
                generation: ns.generation,
                kind: self.kind,
                key: text,
                parent: entry.parent,
                doc,
            });
        }
        // What each kind of document costs the read models' storage: a hot document rewritten
        // whole by every batch shows here first. (Most kinds write nothing in a live batch, and
        // a labelled counter is a registry lookup: those are skipped.)
        if written > 0 {
            let labels = [("projection", ns.projection), ("kind", self.kind)];
            metrics::counter!("lianxi_projection_documents_written_total", &labels)
                .increment(written);
            metrics::counter!("lianxi_projection_document_bytes_written_total", &labels)
                .increment(bytes);
        }
        Ok(())
    }

    fn committed(&mut self) {
        for key in self.dirty.drain(..) {
            if let Some(entry) = self.map.get_mut(&key) {
                entry.dirty = false;
            }
        }
        if self.dirty.capacity() > 1_024 {
            self.dirty = Vec::new();
        }
    }

    fn dirty(&self) -> usize {
        self.dirty.len()
    }

    fn weight(&self) -> usize {
        // Documents not written yet weigh what the others weigh on average.
        let average = self.weight.checked_div(self.weighed).unwrap_or(UNWEIGHED);
        self.weight + (self.map.len() - self.weighed) * average
    }

    fn evict(&mut self) {
        if self.holding == Holding::Nothing {
            return;
        }
        self.map.retain(|_, entry| entry.dirty);
        self.map.shrink_to_fit();
        self.weight = self.map.values().map(|e| e.weight as usize).sum();
        self.weighed = self.map.values().filter(|e| e.weight > 0).count();
        self.absent = HashSet::default();
        self.holding = Holding::Part;
    }

    fn discard(&mut self) {
        self.map = HashMap::default();
        self.dirty = Vec::new();
        self.absent = HashSet::default();
        self.wanted = Vec::new();
        self.weight = 0;
        self.weighed = 0;
        self.holding = Holding::Nothing;
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
    /// B-tree forwards, each page once, instead of in the caches' hash order all over it. An
    /// existing document gets its new text; its parent stays the one it was created with.
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
                 DO UPDATE SET doc = excluded.doc",
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
                // A document's parent is fixed when it is created (a project's community, a
                // quarter's district), so an update leaves it alone: naming it here made SQLite
                // rewrite the document's entry in the parent index with every update, twice the
                // pages a batch writes to the WAL.
                query.push(
                    " ON CONFLICT (projection, generation, kind, key) \
                     DO UPDATE SET doc = excluded.doc",
                );
                query.build().execute(&mut *conn).await?;
            });
        }
        self.rows.clear();
        Ok(())
    }
}

//! Boards kept between reads: each community's project documents, patched with the few rows its
//! new events changed instead of read again, and its last rendering.
//!
//! A board lists every project of its community (hundreds in a busy one), so reading and
//! rendering them all after each change of the community was most of a board read's cost. The
//! community document's feed says which row each of its last events changed; a reader holding
//! the rows of an earlier position re-reads just those, or all of them when the feed no longer
//! reaches back that far.
//!
//! A rendering is served again without asking the read database at all while no board
//! projector of this process has applied an event of its community since the position it was
//! last confirmed at ([`BoardChanges`]): with commands flowing, most reads of a board find it
//! unchanged, and a read of the community document was most of what such a read cost.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, PoisonError, RwLock};

use bytes::Bytes;
use serde::{Deserialize, Deserializer};
use uuid::Uuid;

use super::render::{self, Parts, Segment};
use super::{
    assemble, community_doc, legacy_members, meetings_view, member_docs, member_key, parse_member,
    parse_project, project_docs, project_rows, Board, CommunityDoc, Members, ProjectDoc, NAME,
};
use crate::readdb::ReadDb;
use crate::ProjectionError;

/// The board from its community document, with project rows kept in `cache` between the
/// community's events (`generation`: the generation answering).
pub async fn board_cached(
    db: &ReadDb,
    community: Uuid,
    as_of: chrono::DateTime<chrono::Utc>,
    cache: &BoardCache,
    generation: i64,
) -> Result<Option<Board>, ProjectionError> {
    let Some(doc) = community_doc(db, community).await? else {
        return Ok(None);
    };
    Ok(Some(
        with_cached_rows(db, community, doc, as_of, cache, generation).await?,
    ))
}

/// A board as served: its JSON and entity tag, and what the reader's scope check needs.
#[derive(Debug, Clone)]
pub struct RenderedBoard {
    pub json: Bytes,
    /// A strong entity tag of `json` (quoted, as in an `ETag` header): the same bytes have the
    /// same tag in every process, so a client polling through any gateway is answered 304.
    pub etag: String,
    pub district_id: Uuid,
    pub members: Vec<Uuid>,
    /// `json` in the parts it was made of, each compressed once when first asked for.
    segments: Vec<Arc<Segment>>,
    /// `json` gzip-compressed, made by the first reader that accepts it: a board is ~4 × smaller
    /// so, and sending it was most of what a board read cost.
    gzip: OnceLock<Option<Bytes>>,
}

impl PartialEq for RenderedBoard {
    fn eq(&self, other: &Self) -> bool {
        (&self.json, &self.etag, self.district_id, &self.members)
            == (&other.json, &other.etag, other.district_id, &other.members)
    }
}

impl Eq for RenderedBoard {}

impl RenderedBoard {
    /// Renders `board` from nothing kept (a board as of a past time, read once).
    pub fn render(board: &Board) -> Result<Self, ProjectionError> {
        Self::render_from(board, &mut Parts::default())
    }

    /// Renders `board`, taking from `parts` the rows it had last time unchanged.
    fn render_from(board: &Board, parts: &mut Parts) -> Result<Self, ProjectionError> {
        let rendered = parts.render(board)?;
        Ok(Self {
            json: rendered.json,
            etag: rendered.etag,
            district_id: board.community.district_id,
            members: board.members.iter().map(|m| m.unit_id).collect(),
            segments: rendered.segments,
            gzip: OnceLock::new(),
        })
    }

    /// The board's JSON gzip-compressed, at the fastest level: each part of a board is
    /// compressed once, when first asked for after it changed. `None` if the encoder failed (it
    /// writes into memory, so it does not), and the JSON is then sent as it is.
    pub fn gzip(&self) -> Option<&Bytes> {
        self.gzip
            .get_or_init(|| render::gzip(&self.segments))
            .as_ref()
    }
}

/// A board to answer with, and the log position it is as of.
pub type Served = (Arc<RenderedBoard>, i64);

/// [`board_rendered`] for a reader that asks for the board as of now and a log position of at
/// least `min_position`, where this process's board projectors record changes: when the
/// community changed since its last rendering, that rendering is the answer (as of the position
/// it was confirmed at, which the reader says in `X-Projection-Position`) while the new one is
/// made in the background, started by the first reader to find it changed. So no reader waits
/// for a rendering (a few milliseconds, most of a board read's tail before) unless it asked for
/// a position the cache does not have yet, or its second has moved on by more than one.
pub async fn board_served(
    db: &ReadDb,
    community: Uuid,
    cache: &Arc<BoardCache>,
    generation: i64,
    position: i64,
    min_position: i64,
) -> Result<Option<Served>, ProjectionError> {
    let as_of = chrono::Utc::now();
    let second = as_of.timestamp();
    if let Some(rendered) = cache.unchanged(community, generation, second, position) {
        return Ok(Some((rendered, position)));
    }
    if let Some((rendered, confirmed)) = cache.recent(community, generation, second) {
        if confirmed >= min_position {
            cache.refresh(db, community, generation, position);
            counted("previous");
            return Ok(Some((rendered, confirmed)));
        }
    }
    let rendered = board_rendered(db, community, as_of, cache, generation, position).await?;
    Ok(rendered.map(|rendered| (rendered, position)))
}

/// [`board_cached`], rendered: a board is serialised once per change of its community (and per
/// second of `as_of`, which decides "last held" and "this quarter"), however often it is read.
///
/// `generation` is the generation answering and `position` the position it had written, both
/// observed before this call: a rendering confirmed at or after the community's last change
/// ([`BoardChanges`]) is served from memory.
pub async fn board_rendered(
    db: &ReadDb,
    community: Uuid,
    as_of: chrono::DateTime<chrono::Utc>,
    cache: &BoardCache,
    generation: i64,
    position: i64,
) -> Result<Option<Arc<RenderedBoard>>, ProjectionError> {
    let second = as_of.timestamp();
    if let Some(rendered) = cache.unchanged(community, generation, second, position) {
        return Ok(Some(rendered));
    }
    // Where changes are recorded, one reader of a community at a time asks the database; the
    // others wait for its answer rather than read and render the same board beside it. (A
    // cache confirming each read would only queue its readers.)
    let flight = cache.changes.is_some().then(|| cache.flight(community));
    let _turn = match &flight {
        Some(flight) => Some(flight.lock().await),
        None => None,
    };
    if let Some(rendered) = cache.unchanged(community, generation, second, position) {
        return Ok(Some(rendered));
    }
    let Some(text) = db
        .document(NAME, "community", &community.to_string())
        .await?
    else {
        return Ok(None);
    };
    let at = Rendering {
        generation,
        second,
        doc: text,
    };
    if let Some(rendered) = cache.confirmed(community, &at, position) {
        counted("confirmed");
        return Ok(Some(rendered));
    }
    let doc: CommunityDoc = serde_json::from_str(&at.doc)
        .map_err(|e| ProjectionError::Storage(format!("board document: {e}")))?;
    let board = with_cached_rows(db, community, doc, as_of, cache, generation).await?;
    let board = cache.render(community, &board)?;
    let rendered = cache.keep_rendered(community, at, position, Arc::new(board));
    counted("rendered");
    Ok(Some(rendered))
}

/// Counts a board read by how it was answered (`lianxi_board_reads_total`): from memory, after
/// reading the community document and finding it the same, or rendered again.
fn counted(answer: &'static str) {
    metrics::counter!("lianxi_board_reads_total", "answer" => answer).increment(1);
}

/// The position of the newest event a board projector applied to each community's document
/// (a change of the board), whatever its generation: what a cache asks before serving a board
/// from memory.
///
/// Servers share one per process ([`BoardChanges::process`]) because boards are built by
/// several projector instances (the live one, a rebuild's) and a change missed here would serve
/// a stale board, whereas an extra one only costs a read of the document: positions only ever
/// go up. Changes applied by another process are not seen: a projector that resumes from a
/// checkpoint marks every community changed up to it ([`crate::Projector::resumed`]), a server
/// serves from memory only the generation its own runner follows (a takeover from elsewhere
/// changes that within a poll of the runner's), and where no board projector runs (a gateway)
/// the cache confirms every read ([`BoardCache::confirming_each_read`]).
#[derive(Debug, Default)]
pub struct BoardChanges(RwLock<Recorded>);

#[derive(Debug, Default)]
struct Recorded {
    communities: HashMap<Uuid, Changed>,
    /// Positions at which every community must be taken as changed: a projector resumed from a
    /// checkpoint it may not have applied itself (another process's writes).
    all: Option<Changed>,
}

/// Two newest change positions, so that a reader that has not yet seen the newest (applied,
/// not yet written) can still tell whether anything changed before it.
#[derive(Debug, Clone, Copy)]
struct Changed {
    newest: i64,
    /// The newest of the positions recorded below `newest` (0: none).
    before: i64,
}

impl Changed {
    fn at(position: i64) -> Self {
        Self {
            newest: position,
            before: 0,
        }
    }

    fn note(&mut self, position: i64) {
        if position > self.newest {
            self.before = self.newest;
            self.newest = position;
        } else if position < self.newest {
            self.before = self.before.max(position);
        }
    }

    /// Whether a position in `(after, upto]` was noted; `true` when this cannot tell (both
    /// positions are past `upto`).
    fn between(&self, after: i64, upto: i64) -> bool {
        // The newest change a reader at `upto` can see: every position noted below `newest`
        // is at most `before`.
        let visible = if self.newest <= upto {
            self.newest
        } else if self.before <= upto {
            self.before
        } else {
            return true;
        };
        visible > after
    }
}

impl BoardChanges {
    /// The record the board projectors and board caches of this process share by default.
    pub fn process() -> Arc<Self> {
        static PROCESS: LazyLock<Arc<BoardChanges>> = LazyLock::new(Arc::default);
        Arc::clone(&PROCESS)
    }

    /// Records that the event at `position` was applied to `community`'s document. Called when
    /// it is applied, so before it is written and long before a reader can have observed a
    /// written position past it.
    pub(super) fn record(&self, community: Uuid, position: i64) {
        let mut recorded = self.0.write().unwrap_or_else(PoisonError::into_inner);
        recorded
            .communities
            .entry(community)
            .and_modify(|held| held.note(position))
            .or_insert(Changed::at(position));
    }

    /// Records that every community may have changed up to `position` (a projector resumed
    /// there).
    pub(super) fn record_all(&self, position: i64) {
        let mut recorded = self.0.write().unwrap_or_else(PoisonError::into_inner);
        match &mut recorded.all {
            Some(all) => all.note(position),
            None => recorded.all = Some(Changed::at(position)),
        }
    }

    /// Whether a change of `community` was recorded at a position in `(after, upto]`; `true`
    /// when the record cannot tell.
    fn changed_between(&self, community: Uuid, after: i64, upto: i64) -> bool {
        let recorded = self.0.read().unwrap_or_else(PoisonError::into_inner);
        let changed = |held: Option<&Changed>| held.is_some_and(|h| h.between(after, upto));
        changed(recorded.all.as_ref()) || changed(recorded.communities.get(&community))
    }
}

async fn with_cached_rows(
    db: &ReadDb,
    community: Uuid,
    mut doc: CommunityDoc,
    as_of: chrono::DateTime<chrono::Utc>,
    cache: &BoardCache,
    generation: i64,
) -> Result<Board, ProjectionError> {
    let meetings = meetings_view(db, &doc, as_of).await?;
    let rows = cached_rows(db, community, &doc, cache, generation).await?;
    let legacy = legacy_members(&mut doc);
    let members = legacy.as_ref().unwrap_or(&rows.members);
    let projects = project_rows(rows.projects.values().map(Arc::as_ref), members);
    Ok(assemble(doc, members, projects, meetings))
}

/// The community's project and member documents as of `doc`: the cached ones, patched with the
/// rows the events since changed, or all read again.
async fn cached_rows(
    db: &ReadDb,
    community: Uuid,
    doc: &CommunityDoc,
    cache: &BoardCache,
    generation: i64,
) -> Result<Arc<CachedRows>, ProjectionError> {
    let position = doc.recent.front().map_or(0, |r| r.position);
    let held = cache.rows(community).filter(|c| c.generation == generation);
    if let Some(held) = &held {
        if held.position == position {
            return Ok(Arc::clone(held));
        }
    }
    let patch = held.and_then(|held| Some((changed_since(doc, held.position)?, held)));
    let (projects, members) = match patch {
        Some((changed, held)) => {
            let mut projects = held.projects.clone();
            for project in changed.rows {
                match db.document(NAME, "project", &project.to_string()).await? {
                    Some(raw) => projects.insert(project, Arc::new(parse_project(&raw)?)),
                    None => projects.remove(&project),
                };
            }
            let mut members = held.members.clone();
            for unit in changed.members {
                match db
                    .document(NAME, "member", &member_key(community, unit))
                    .await?
                {
                    Some(raw) => members.insert(unit, Arc::new(parse_member(&raw)?)),
                    None => members.remove(&unit),
                };
            }
            cache.patched.fetch_add(1, Ordering::Relaxed);
            (projects, members)
        }
        None => {
            cache.whole.fetch_add(1, Ordering::Relaxed);
            let projects = project_docs(db, community)
                .await?
                .into_iter()
                .map(|(id, doc)| (id, Arc::new(doc)))
                .collect();
            (projects, member_docs(db, community).await?)
        }
    };
    let rows = Arc::new(CachedRows {
        generation,
        position,
        projects,
        members,
    });
    keep(&cache.rows, community, Arc::clone(&rows));
    Ok(rows)
}

/// The project rows and members a community's events changed.
#[derive(Debug, Default, PartialEq, Eq)]
struct Touched {
    rows: BTreeSet<Uuid>,
    members: BTreeSet<Uuid>,
}

/// The project rows and members changed by the community's events after `position`, if its
/// feed still reaches back to that event and says of each newer one which row it changed.
fn changed_since(doc: &CommunityDoc, position: i64) -> Option<Touched> {
    let mut changed = Touched::default();
    for line in &doc.recent {
        if line.position == position {
            return Some(changed);
        }
        if line.position < position {
            // The rows held are newer than this document (another reader kept them).
            return None;
        }
        changed.rows.extend(line.row?);
        changed.members.extend(line.member);
    }
    None
}

/// Deserialises a field that may be absent (`None`) or `null` (`Some(None)`).
pub(super) fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Recently read boards, by community: their project documents with the position they are
/// current to, and their last rendering with what it was rendered from.
#[derive(Debug)]
pub struct BoardCache {
    rows: Mutex<HashMap<Uuid, Arc<CachedRows>>>,
    rendered: Mutex<HashMap<Uuid, Rendered>>,
    /// Per community, the parts of its last rendering, to make the next from.
    parts: Mutex<HashMap<Uuid, Arc<Mutex<Parts>>>>,
    /// Per community, the turn to read and render it.
    flights: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
    /// Communities whose board is being rendered in the background ([`board_served`]).
    refreshing: Mutex<HashSet<Uuid>>,
    /// The changes the board projectors of this process record; `None` where none run (a
    /// gateway of the distributed mode), so every read confirms its rendering by the document.
    changes: Option<Arc<BoardChanges>>,
    whole: AtomicU64,
    patched: AtomicU64,
    unchanged: AtomicU64,
}

impl Default for BoardCache {
    fn default() -> Self {
        Self::following(BoardChanges::process())
    }
}

/// A community's last rendering, what it was rendered from, and the newest position it is
/// known to be current at: one observed before its document was read (or read again and
/// found the same).
#[derive(Debug)]
struct Rendered {
    at: Rendering,
    confirmed: i64,
    board: Arc<RenderedBoard>,
}

/// One community's project documents: current to at least `position`, the community's newest
/// event the `generation` had applied when they were read.
#[derive(Debug)]
struct CachedRows {
    generation: i64,
    position: i64,
    /// Shared with the holder before a patch, which copies the map and not the documents.
    projects: BTreeMap<Uuid, Arc<ProjectDoc>>,
    /// Its member documents by unit, shared the same way (none in a generation before 4).
    members: Members,
}

/// What a rendering depends on besides the project rows (which follow the document's newest
/// event): the answering generation, the second of `as_of`, the community document's text.
#[derive(Debug, PartialEq, Eq)]
struct Rendering {
    generation: i64,
    second: i64,
    doc: String,
}

/// Communities the cache keeps; past that it starts afresh.
const CACHED_BOARDS: usize = 1_024;

/// Inserts into a per-community map, starting afresh when it holds too many communities.
fn keep<V>(map: &Mutex<HashMap<Uuid, V>>, community: Uuid, value: V) {
    if let Ok(mut map) = map.lock() {
        if map.len() >= CACHED_BOARDS && !map.contains_key(&community) {
            map.clear();
        }
        map.insert(community, value);
    }
}

impl BoardCache {
    /// A cache trusting the changes recorded in `changes` (tests give it and the projector a
    /// record of their own).
    pub fn following(changes: Arc<BoardChanges>) -> Self {
        Self::with(Some(changes))
    }

    /// A cache for a process where no board projector runs: documents change behind its back,
    /// so it serves a rendering only after reading the community document and finding it the
    /// same.
    pub fn confirming_each_read() -> Self {
        Self::with(None)
    }

    fn with(changes: Option<Arc<BoardChanges>>) -> Self {
        Self {
            rows: Mutex::default(),
            rendered: Mutex::default(),
            parts: Mutex::default(),
            flights: Mutex::default(),
            refreshing: Mutex::default(),
            changes,
            whole: AtomicU64::default(),
            patched: AtomicU64::default(),
            unchanged: AtomicU64::default(),
        }
    }

    /// How often boards' project rows were read whole and how often patched, since start.
    pub fn row_reads(&self) -> (u64, u64) {
        (
            self.whole.load(Ordering::Relaxed),
            self.patched.load(Ordering::Relaxed),
        )
    }

    fn rows(&self, community: Uuid) -> Option<Arc<CachedRows>> {
        self.rows.lock().ok()?.get(&community).cloned()
    }

    /// How many board reads were served from memory without reading the community document.
    pub fn unchanged_reads(&self) -> u64 {
        self.unchanged.load(Ordering::Relaxed)
    }

    /// The rendering for `generation` and `second`, if the community has not changed between
    /// its confirmation and `position` (written, observed by the reader before this call).
    fn unchanged(
        &self,
        community: Uuid,
        generation: i64,
        second: i64,
        position: i64,
    ) -> Option<Arc<RenderedBoard>> {
        let changes = self.changes.as_ref()?;
        let mut rendered = self.rendered.lock().ok()?;
        let held = rendered.get_mut(&community)?;
        if held.at.generation != generation
            || held.at.second != second
            || changes.changed_between(community, held.confirmed, position)
        {
            return None;
        }
        // Current at `position` too: a reader answered with it later, while a change is being
        // rendered ([`board_served`]), is not told an earlier position than this one was.
        held.confirmed = held.confirmed.max(position);
        let board = Arc::clone(&held.board);
        drop(rendered);
        self.unchanged.fetch_add(1, Ordering::Relaxed);
        counted("memory");
        Some(board)
    }

    /// The rendering held for `community` in `generation`, of `second` or the one before, and
    /// the position it is confirmed at, when changes are recorded (where they are not, a
    /// rendering is confirmed by each read).
    fn recent(
        &self,
        community: Uuid,
        generation: i64,
        second: i64,
    ) -> Option<(Arc<RenderedBoard>, i64)> {
        self.changes.as_ref()?;
        let rendered = self.rendered.lock().ok()?;
        let held = rendered.get(&community)?;
        (held.at.generation == generation && (second - 1..=second).contains(&held.at.second))
            .then(|| (Arc::clone(&held.board), held.confirmed))
    }

    /// Renders `community`'s board as of now in the background, unless that is under way.
    fn refresh(self: &Arc<Self>, db: &ReadDb, community: Uuid, generation: i64, position: i64) {
        let Ok(mut refreshing) = self.refreshing.lock() else {
            return;
        };
        if !refreshing.insert(community) {
            return;
        }
        drop(refreshing);
        let (db, cache) = (db.clone(), Arc::clone(self));
        tokio::spawn(async move {
            let rendered = board_rendered(
                &db,
                community,
                chrono::Utc::now(),
                &cache,
                generation,
                position,
            )
            .await;
            if let Err(error) = rendered {
                tracing::warn!(%community, %error, "rendering a board in the background failed");
            }
            if let Ok(mut refreshing) = cache.refreshing.lock() {
                refreshing.remove(&community);
            }
        });
    }

    /// Renders `community`'s `board` from the parts of its last rendering.
    fn render(&self, community: Uuid, board: &Board) -> Result<RenderedBoard, ProjectionError> {
        let parts = self.parts.lock().ok().map(|mut parts| {
            if parts.len() >= CACHED_BOARDS && !parts.contains_key(&community) {
                parts.clear();
            }
            Arc::clone(parts.entry(community).or_default())
        });
        let Some(parts) = parts else {
            return RenderedBoard::render(board);
        };
        // Renderers of one community take turns (rendering awaits nothing); a poisoned turn only
        // means a renderer panicked, and the parts it left are whole or replaced.
        let mut parts = parts.lock().unwrap_or_else(PoisonError::into_inner);
        RenderedBoard::render_from(board, &mut parts)
    }

    /// The lock a reader holds while it reads and renders `community`'s board.
    fn flight(&self, community: Uuid) -> Arc<tokio::sync::Mutex<()>> {
        let Ok(mut flights) = self.flights.lock() else {
            return Arc::default();
        };
        if flights.len() >= CACHED_BOARDS && !flights.contains_key(&community) {
            flights.clear();
        }
        Arc::clone(flights.entry(community).or_default())
    }

    /// The rendering from exactly `at`, now confirmed current at `position`.
    fn confirmed(
        &self,
        community: Uuid,
        at: &Rendering,
        position: i64,
    ) -> Option<Arc<RenderedBoard>> {
        let mut rendered = self.rendered.lock().ok()?;
        let held = rendered.get_mut(&community).filter(|held| held.at == *at)?;
        held.confirmed = held.confirmed.max(position);
        Some(Arc::clone(&held.board))
    }

    /// Keeps `board` as `community`'s rendering and returns the one to serve: the rendering
    /// held before when it has the same bytes (a new second of `as_of` often changes nothing),
    /// so that what was made from it (its gzip) is made once.
    fn keep_rendered(
        &self,
        community: Uuid,
        at: Rendering,
        confirmed: i64,
        board: Arc<RenderedBoard>,
    ) -> Arc<RenderedBoard> {
        let board = self
            .rendered
            .lock()
            .ok()
            .and_then(|rendered| {
                let held = rendered.get(&community)?;
                (held.board.etag == board.etag).then(|| Arc::clone(&held.board))
            })
            .unwrap_or(board);
        let rendered = Rendered {
            at,
            confirmed,
            board: Arc::clone(&board),
        };
        keep(&self.rendered, community, rendered);
        board
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projectors::board::RecentDoc;

    #[test]
    fn a_feed_line_names_a_member_only_when_it_has_one_and_reads_the_same_either_way() {
        let line = |member| RecentDoc {
            position: 7,
            occurred_at: "2018-04-25T09:00:00Z".into(),
            summary: "活动".into(),
            row: Some(None),
            member,
        };
        let without = serde_json::to_string(&line(None)).expect("serialise");
        assert!(!without.contains("member"), "{without}");
        let unit = Uuid::from_u128(9);
        let with = serde_json::to_string(&line(Some(unit))).expect("serialise");
        assert!(with.contains(&format!("\"member\":\"{unit}\"")), "{with}");
        // Documents written before the field was left out say `"member":null`.
        let older = format!("{},\"member\":null}}", without.trim_end_matches('}'));
        let read: RecentDoc = serde_json::from_str(&older).expect("an older line reads");
        assert_eq!((read.member, read.row), (None, Some(None)));
        let read: RecentDoc = serde_json::from_str(&with).expect("reads back");
        assert_eq!(read.member, Some(unit));
    }

    #[test]
    fn a_change_counts_for_a_reader_only_once_it_can_see_it_and_an_unknown_one_always_does() {
        let changes = BoardChanges::default();
        let community = Uuid::from_u128(1);
        assert!(
            !changes.changed_between(community, 0, 100),
            "nothing recorded"
        );

        changes.record(community, 10);
        assert!(changes.changed_between(community, 5, 10));
        assert!(
            !changes.changed_between(community, 10, 50),
            "confirmed at or after it"
        );
        assert!(
            !changes.changed_between(community, 5, 9),
            "not visible to the reader yet"
        );

        // Applied at 20, not yet written: a reader at 15 still sees the change at 10.
        changes.record(community, 20);
        assert!(!changes.changed_between(community, 12, 15));
        assert!(changes.changed_between(community, 8, 15));
        assert!(changes.changed_between(community, 12, 20));

        // A third past both: the record no longer says what a reader at 15 can see.
        changes.record(community, 30);
        assert!(
            changes.changed_between(community, 12, 15),
            "unknown counts as changed"
        );
        assert!(
            changes.changed_between(community, 12, 25),
            "20 is in (12, 25]"
        );
        assert!(
            !changes.changed_between(community, 20, 25),
            "nothing in (20, 25]"
        );
    }

    #[test]
    fn positions_recorded_out_of_order_never_hide_a_change() {
        let changes = BoardChanges::default();
        let community = Uuid::from_u128(2);
        // A rebuild's projector records old positions beside the live one's.
        changes.record(community, 50);
        changes.record(community, 7);
        changes.record(community, 40);
        changes.record(community, 3);
        assert!(
            changes.changed_between(community, 39, 45),
            "40 is in (39, 45]"
        );
        assert!(!changes.changed_between(community, 40, 45));
        assert!(
            changes.changed_between(community, 6, 8),
            "7 hides under 40: unknown"
        );
    }

    #[test]
    fn a_projector_resumed_from_a_checkpoint_changes_every_community_up_to_it() {
        let changes = BoardChanges::default();
        let (one, other) = (Uuid::from_u128(3), Uuid::from_u128(4));
        changes.record(one, 10);
        changes.record_all(40);
        for community in [one, other] {
            assert!(changes.changed_between(community, 20, 40), "{community}");
            assert!(!changes.changed_between(community, 40, 60), "{community}");
        }
        assert!(changes.changed_between(one, 5, 39), "its own change at 10");
        assert!(
            !changes.changed_between(other, 5, 39),
            "nothing visible before 40"
        );
        assert!(!changes.changed_between(one, 20, 39));
    }
}

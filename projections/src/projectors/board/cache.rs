//! Boards kept between reads: each community's project documents, patched with the few rows its
//! new events changed instead of read again, and its last rendering.
//!
//! A board lists every project of its community (hundreds in a busy one), so reading and
//! rendering them all after each change of the community was most of a board read's cost. The
//! community document's feed says which row each of its last events changed; a reader holding
//! the rows of an earlier position re-reads just those, or all of them when the feed no longer
//! reaches back that far.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::{Deserialize, Deserializer};
use uuid::Uuid;

use super::{
    assemble, community_doc, meetings_view, parse_project, project_docs, project_rows, Board,
    CommunityDoc, ProjectDoc, NAME,
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

/// A board as served: its JSON, and what the reader's scope check needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedBoard {
    pub json: Bytes,
    pub district_id: Uuid,
    pub members: Vec<Uuid>,
}

impl RenderedBoard {
    pub fn render(board: &Board) -> Result<Self, ProjectionError> {
        let json = serde_json::to_vec(board)
            .map_err(|e| ProjectionError::Storage(format!("board JSON: {e}")))?;
        Ok(Self {
            json: Bytes::from(json),
            district_id: board.community.district_id,
            members: board.members.iter().map(|m| m.unit_id).collect(),
        })
    }
}

/// [`board_cached`], rendered: a board is serialised once per change of its community (and per
/// second of `as_of`, which decides "last held" and "this quarter"), however often it is read.
pub async fn board_rendered(
    db: &ReadDb,
    community: Uuid,
    as_of: chrono::DateTime<chrono::Utc>,
    cache: &BoardCache,
    generation: i64,
) -> Result<Option<Arc<RenderedBoard>>, ProjectionError> {
    let Some(text) = db
        .document(NAME, "community", &community.to_string())
        .await?
    else {
        return Ok(None);
    };
    let at = Rendering {
        generation,
        second: as_of.timestamp(),
        doc: text,
    };
    if let Some(rendered) = cache.rendered(community, &at) {
        return Ok(Some(rendered));
    }
    let doc: CommunityDoc = serde_json::from_str(&at.doc)
        .map_err(|e| ProjectionError::Storage(format!("board document: {e}")))?;
    let board = with_cached_rows(db, community, doc, as_of, cache, generation).await?;
    let rendered = Arc::new(RenderedBoard::render(&board)?);
    cache.keep_rendered(community, at, Arc::clone(&rendered));
    Ok(Some(rendered))
}

async fn with_cached_rows(
    db: &ReadDb,
    community: Uuid,
    doc: CommunityDoc,
    as_of: chrono::DateTime<chrono::Utc>,
    cache: &BoardCache,
    generation: i64,
) -> Result<Board, ProjectionError> {
    let meetings = meetings_view(db, &doc, as_of).await?;
    let rows = cached_rows(db, community, &doc, cache, generation).await?;
    let projects = project_rows(rows.projects.values(), &doc);
    Ok(assemble(doc, projects, meetings))
}

/// The community's project documents as of `doc`: the cached ones, patched with the rows the
/// events since changed, or all read again.
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
    let projects = match patch {
        Some((changed, held)) => {
            let mut projects = held.projects.clone();
            for project in changed {
                match db.document(NAME, "project", &project.to_string()).await? {
                    Some(raw) => projects.insert(project, parse_project(&raw)?),
                    None => projects.remove(&project),
                };
            }
            cache.patched.fetch_add(1, Ordering::Relaxed);
            projects
        }
        None => {
            cache.whole.fetch_add(1, Ordering::Relaxed);
            project_docs(db, community).await?
        }
    };
    let rows = Arc::new(CachedRows {
        generation,
        position,
        projects,
    });
    keep(&cache.rows, community, Arc::clone(&rows));
    Ok(rows)
}

/// The project rows changed by the community's events after `position`, if its feed still
/// reaches back to that event and says of each newer one which row it changed.
fn changed_since(doc: &CommunityDoc, position: i64) -> Option<BTreeSet<Uuid>> {
    let mut changed = BTreeSet::new();
    for line in &doc.recent {
        if line.position == position {
            return Some(changed);
        }
        if line.position < position {
            // The rows held are newer than this document (another reader kept them).
            return None;
        }
        changed.extend(line.row?);
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
#[derive(Debug, Default)]
pub struct BoardCache {
    rows: Mutex<HashMap<Uuid, Arc<CachedRows>>>,
    rendered: Mutex<HashMap<Uuid, (Rendering, Arc<RenderedBoard>)>>,
    whole: AtomicU64,
    patched: AtomicU64,
}

/// One community's project documents: current to at least `position`, the community's newest
/// event the `generation` had applied when they were read.
#[derive(Debug)]
struct CachedRows {
    generation: i64,
    position: i64,
    projects: BTreeMap<Uuid, ProjectDoc>,
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

    fn rendered(&self, community: Uuid, at: &Rendering) -> Option<Arc<RenderedBoard>> {
        let rendered = self.rendered.lock().ok()?;
        rendered
            .get(&community)
            .filter(|(was, _)| was == at)
            .map(|(_, board)| Arc::clone(board))
    }

    fn keep_rendered(&self, community: Uuid, at: Rendering, board: Arc<RenderedBoard>) {
        keep(&self.rendered, community, (at, board));
    }
}

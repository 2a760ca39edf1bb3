//! The community board: per community, its committee, member units, meetings, projects by
//! status, open requests both ways, totals and a recent-activity feed (DOMAIN.md).
//!
//! Documents: `community` (the board's summary), `member` (a member unit and what it has done,
//! parent = its community), `project` (one row of the board's project list,
//! parent = its community), `sittings` (when the community's meetings sit, one document per
//! quarter, parent = its community), `ref` (names and owners of units, meetings and requests,
//! to resolve references).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use domain::values::{MeetingKind, MemberKind, Quarter, Theme};
use domain::Event;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::collection::{Collection, Key, Store, StreamKey, StreamKind};
use crate::event::{community_ref, CommunityRef, ProjectedEvent};
use crate::readdb::ReadDb;
use crate::summary::{summarize, Names};
use crate::{ProjectionError, Projector};

mod cache;
mod render;
pub use cache::{
    board_cached, board_rendered, board_served, BoardCache, BoardChanges, RenderedBoard, Served,
};

pub const NAME: &str = "board";
/// How many entries the recent-activity feed keeps.
const RECENT: usize = 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CommunityDoc {
    id: Uuid,
    name: String,
    committee: Option<String>,
    district_id: Uuid,
    /// Version 3's members, by unit: read only from a generation before 4, which keeps
    /// answering while version 4 is built. Since 4 each member is a `member` document, so that
    /// a claim or an activity rewrites a small row and not this document's 8 KB of members.
    #[serde(default, skip_serializing)]
    members: BTreeMap<Uuid, MemberDoc>,
    /// The quarters (`2018Q2`) with a `sittings` document. A community holds a meeting or
    /// more every quarter, so keeping every meeting here made the document, rewritten with
    /// every event of the community, grow with the log (200 KB at a million events).
    #[serde(default)]
    quarters: BTreeSet<String>,
    /// Version 1's list of every meeting: read only from a version-1 generation, which keeps
    /// answering while version 2 is built. Remove once no deployment has one.
    #[serde(default, skip_serializing)]
    meetings: BTreeMap<Uuid, MeetingRef>,
    open_requests: BTreeMap<Uuid, OpenRequest>,
    resolved_requests: u64,
    totals: Totals,
    recent: VecDeque<RecentDoc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct MemberDoc {
    /// The unit (nil in version 3's documents, which were keyed by it).
    #[serde(default)]
    unit_id: Uuid,
    name: String,
    kind: MemberKind,
    current: bool,
    projects_claimed: u64,
    activities: u64,
}

/// A meeting as version 1 of the board kept it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MeetingRef {
    kind: MeetingKind,
    sits_at: String,
}

/// The meetings of one community that sit in one quarter, in order.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SittingsDoc {
    sittings: Vec<Sitting>,
}

/// One meeting: when it sits (its business time, UTC) and of which kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Sitting {
    sits_at: String,
    kind: MeetingKind,
}

/// The key of a community's `sittings` document for a quarter: `<community>:<quarter>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct SittingsKey {
    community: Uuid,
    quarter: Quarter,
}

impl Key for SittingsKey {
    fn write(&self, out: &mut String) {
        use std::fmt::Write;
        self.community.write(out);
        let _ = write!(out, ":{}", self.quarter);
    }
    fn read(text: &str) -> Option<Self> {
        // Any year reads back (a business time late on 2100-12-31 UTC is in 2101 in China).
        let (community, quarter) = text.split_once(':')?;
        let (year, quarter) = quarter.split_once('Q')?;
        let quarter = Quarter {
            year: year.parse().ok()?,
            quarter: quarter.parse().ok().filter(|q| (1..=4).contains(q))?,
        };
        Some(Self {
            community: Uuid::read(community)?,
            quarter,
        })
    }
}

/// The key of a member document: `<community>:<unit>` (a unit may be a member of several
/// communities).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct MemberKey {
    community: Uuid,
    unit: Uuid,
}

impl Key for MemberKey {
    fn write(&self, out: &mut String) {
        self.community.write(out);
        out.push(':');
        self.unit.write(out);
    }
    fn read(text: &str) -> Option<Self> {
        let (community, unit) = text.split_once(':')?;
        Some(Self {
            community: Uuid::read(community)?,
            unit: Uuid::read(unit)?,
        })
    }
}

/// The key of a community's `member` document for `unit`, as stored.
fn member_key(community: Uuid, unit: Uuid) -> String {
    format!("{community}:{unit}")
}

/// The key of a community's `sittings` document for `quarter` (`2018Q2`), as stored.
fn sittings_key(community: Uuid, quarter: &str) -> String {
    format!("{community}:{quarter}")
}

/// A request waiting for the community, as the board lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OpenRequest {
    pub request_id: Uuid,
    pub unit_id: Uuid,
    pub unit_name: Option<String>,
    pub title: String,
    pub raised_at: String,
}

/// What the community's units have done, summed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Totals {
    pub activities: u64,
    pub participants: u64,
    pub volunteers: u64,
    pub volunteer_hours: u64,
    pub beneficiaries: u64,
    pub funds_yuan: u64,
}

/// One line of the recent-activity feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Recent {
    pub position: i64,
    pub occurred_at: String,
    pub summary: String,
}

/// A line of the feed as stored: what the board shows, and which project row its event changed,
/// so that a reader holding the rows re-reads only those ([`cache`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RecentDoc {
    position: i64,
    occurred_at: String,
    summary: String,
    /// `Some(None)` when the event changed no project row; `None` in documents written before
    /// version 3, which did not say (a reader then reads every row again).
    #[serde(default, deserialize_with = "cache::present")]
    row: Option<Option<Uuid>>,
    /// The unit whose member document the event changed (since version 4; before it members
    /// were in the community document). Left out when none: most lines name no member, and the
    /// community document is rewritten with every event of its community.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    member: Option<Uuid>,
}

impl From<RecentDoc> for Recent {
    fn from(doc: RecentDoc) -> Self {
        Self {
            position: doc.position,
            occurred_at: doc.occurred_at,
            summary: doc.summary,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ProjectDoc {
    project_id: Uuid,
    community_id: Uuid,
    title: String,
    theme: Theme,
    status: String,
    claimant: Option<Uuid>,
    claimed_at: Option<String>,
    meeting_id: Option<Uuid>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct NameDoc {
    name: String,
    /// For meetings and requests: the community they belong to.
    community_id: Option<Uuid>,
}

/// Builds the community boards.
pub struct BoardProjector {
    communities: Collection<CommunityDoc, Uuid>,
    members: Collection<MemberDoc, MemberKey>,
    projects: Collection<ProjectDoc, Uuid>,
    sittings: Collection<SittingsDoc, SittingsKey>,
    /// Units, meetings and requests: names and owning community.
    refs: Collection<NameDoc, StreamKey>,
    /// Where each change of a community document is recorded, for boards served from memory.
    changes: Arc<BoardChanges>,
    /// The community of each project proposed in the batch being loaded: a claim of it in the
    /// same batch names its member document by it, as the project's is not stored yet.
    /// Emptied by the batch's first `apply`.
    proposed: BTreeMap<Uuid, Uuid>,
}

impl Default for BoardProjector {
    fn default() -> Self {
        Self::recording_to(BoardChanges::process())
    }
}

impl BoardProjector {
    /// A projector recording its changes in `changes` (tests give it and a cache a record of
    /// their own).
    pub fn recording_to(changes: Arc<BoardChanges>) -> Self {
        Self {
            communities: Collection::new("community"),
            members: Collection::new("member"),
            projects: Collection::new("project"),
            sittings: Collection::new("sittings"),
            refs: Collection::new("ref"),
            changes,
            proposed: BTreeMap::new(),
        }
    }

    /// The community an event concerns, from its data or from documents already loaded.
    fn community_of(&self, event: &Event) -> Option<Uuid> {
        let via_ref = |key: StreamKey| self.refs.get(&key).and_then(|r| r.community_id);
        match community_ref(event) {
            CommunityRef::Named(community) => Some(community),
            CommunityRef::Meeting(meeting) => via_ref(meeting.into()),
            CommunityRef::Request(request) => via_ref(request.into()),
            CommunityRef::Project(project) => self.projects.get(&project.0).map(|p| p.community_id),
            CommunityRef::None => None,
        }
    }

    /// The member document of `unit` in the community `event` concerns, to change in place.
    fn member_mut(&mut self, community: Option<Uuid>, unit: Uuid) -> Option<&mut MemberDoc> {
        self.members.get_mut(&MemberKey {
            community: community?,
            unit,
        })
    }

    fn set_status(&mut self, project: Uuid, status: &str) {
        if let Some(p) = self.projects.get_mut(&project) {
            p.status = status.to_owned();
        }
    }
}

struct BoardNames<'a>(&'a BoardProjector);

impl Names for BoardNames<'_> {
    fn name_of(&self, stream: &str) -> Option<String> {
        let key = StreamKey::parse(stream)?;
        match key.kind {
            StreamKind::Project => self.0.projects.get(&key.id).map(|p| p.title.clone()),
            StreamKind::Community => self.0.communities.get(&key.id).map(|c| c.name.clone()),
            _ => self.0.refs.get(&key).map(|r| r.name.clone()),
        }
    }
}

impl Projector for BoardProjector {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        // 2: meetings by quarter in `sittings` documents.
        // 3: each line of the feed names the project row its event changed.
        // 4: members in `member` documents, and the feed names the member an event changed.
        4
    }

    fn want(&mut self, event: &ProjectedEvent) {
        use Event::*;
        // Everything `apply` reads, including every name the summary shows: a summary must not
        // depend on what happened to be cached, or a rebuild would differ from the live board.
        let community = self
            .community_of(&event.event)
            .or_else(|| match &event.event {
                ProjectClaimed(e) => self.proposed.get(&e.project_id.0).copied(),
                ClaimWithdrawn(e) => self.proposed.get(&e.project_id.0).copied(),
                ActivityRecorded(e) => self.proposed.get(&e.project_id.0).copied(),
                _ => None,
            });
        if let (Some(community), Some(unit)) = (community, changed_member(&event.event)) {
            self.members.want(MemberKey { community, unit });
        }
        match &event.event {
            MemberUnitAdmitted(e) => self.refs.want(StreamKey::from(e.unit_id)),
            MemberUnitWithdrawn(e) => self.refs.want(StreamKey::from(e.unit_id)),
            AttendanceRecorded(e) => self.refs.want(StreamKey::from(e.meeting_id)),
            MeetingClosed(e) => self.refs.want(StreamKey::from(e.meeting_id)),
            ProjectApproved(e) => {
                self.projects.want(e.project_id.0);
                self.refs.want(StreamKey::from(e.meeting_id));
            }
            ProjectClaimed(e) => {
                self.projects.want(e.project_id.0);
                self.refs.want(StreamKey::from(e.unit_id));
            }
            ClaimWithdrawn(e) => {
                self.projects.want(e.project_id.0);
                self.refs.want(StreamKey::from(e.unit_id));
            }
            ProjectLaunched(e) => {
                self.projects.want(e.project_id.0);
                self.refs.want(StreamKey::from(e.unit_id));
            }
            ActivityRecorded(e) => self.projects.want(e.project_id.0),
            ProjectCompleted(e) => self.projects.want(e.project_id.0),
            FeedbackRecorded(e) => self.projects.want(e.project_id.0),
            ProjectCancelled(e) => self.projects.want(e.project_id.0),
            RequestRaised(e) => self.refs.want(StreamKey::from(e.unit_id)),
            RequestResolved(e) => self.refs.want(StreamKey::from(e.request_id)),
            MeetingConvened(e) => self.sittings.want(SittingsKey {
                community: e.community_id.0,
                quarter: Quarter::of(event.occurred_at),
            }),
            ProjectProposed(e) => {
                self.proposed.insert(e.project_id.0, e.community_id.0);
            }
            DistrictRegistered(_) | CommunityRegistered(_) | UnitRegistered(_) => {}
        }
        if let Some(community) = community {
            self.communities.want(community);
        }
    }

    fn collections(&mut self) -> Vec<&mut dyn Store> {
        vec![
            &mut self.communities,
            &mut self.members,
            &mut self.projects,
            &mut self.sittings,
            &mut self.refs,
        ]
    }

    fn resumed(&mut self, position: i64) {
        self.changes.record_all(position);
    }

    fn apply(&mut self, event: &ProjectedEvent) -> Result<(), String> {
        use Event::*;
        self.proposed.clear();
        let at = event.business_time();
        let community = self.community_of(&event.event);
        let summary = summarize(&event.event, &BoardNames(self));
        match &event.event {
            CommunityRegistered(e) => self.communities.put(
                e.community_id.0,
                None,
                CommunityDoc {
                    id: e.community_id.0,
                    name: e.name.to_string(),
                    committee: e.committee.as_ref().map(|c| c.to_string()),
                    district_id: e.district_id.0,
                    members: BTreeMap::new(),
                    quarters: BTreeSet::new(),
                    meetings: BTreeMap::new(),
                    open_requests: BTreeMap::new(),
                    resolved_requests: 0,
                    totals: Totals::default(),
                    recent: VecDeque::new(),
                },
            ),
            UnitRegistered(e) => self.refs.put(
                StreamKey::from(e.unit_id),
                None,
                NameDoc {
                    name: e.name.to_string(),
                    community_id: None,
                },
            ),
            MemberUnitAdmitted(e) => {
                let name = self
                    .refs
                    .get(&StreamKey::from(e.unit_id))
                    .map(|r| r.name.clone())
                    .unwrap_or_default();
                let key = MemberKey {
                    community: e.community_id.0,
                    unit: e.unit_id.0,
                };
                if self.communities.get(&key.community).is_some() {
                    match self.members.get_mut(&key) {
                        Some(member) => {
                            member.kind = e.kind;
                            member.current = true;
                        }
                        None => self.members.put(
                            key,
                            Some(e.community_id.0),
                            MemberDoc {
                                unit_id: e.unit_id.0,
                                name,
                                kind: e.kind,
                                current: true,
                                projects_claimed: 0,
                                activities: 0,
                            },
                        ),
                    }
                }
            }
            MemberUnitWithdrawn(e) => {
                if let Some(m) = self.member_mut(Some(e.community_id.0), e.unit_id.0) {
                    m.current = false;
                }
            }
            MeetingConvened(e) => {
                self.refs.put(
                    StreamKey::from(e.meeting_id),
                    None,
                    NameDoc {
                        name: e.title.to_string(),
                        community_id: Some(e.community_id.0),
                    },
                );
                let community = e.community_id.0;
                if let Some(c) = self.communities.get_mut(&community) {
                    let quarter = Quarter::of(event.occurred_at);
                    let key = SittingsKey { community, quarter };
                    c.quarters.insert(quarter.to_string());
                    let sitting = Sitting {
                        sits_at: at.clone(),
                        kind: e.kind,
                    };
                    match self.sittings.get_mut(&key) {
                        Some(doc) => {
                            let at = doc
                                .sittings
                                .partition_point(|s| s.sits_at <= sitting.sits_at);
                            doc.sittings.insert(at, sitting);
                        }
                        None => self.sittings.put(
                            key,
                            Some(community),
                            SittingsDoc {
                                sittings: vec![sitting],
                            },
                        ),
                    }
                }
            }
            ProjectProposed(e) => self.projects.put(
                e.project_id.0,
                Some(e.community_id.0),
                ProjectDoc {
                    project_id: e.project_id.0,
                    community_id: e.community_id.0,
                    title: e.title.to_string(),
                    theme: e.theme,
                    status: "proposed".to_owned(),
                    claimant: None,
                    claimed_at: None,
                    meeting_id: None,
                },
            ),
            ProjectApproved(e) => {
                if let Some(p) = self.projects.get_mut(&e.project_id.0) {
                    p.status = "approved".to_owned();
                    p.meeting_id = Some(e.meeting_id.0);
                }
            }
            ProjectClaimed(e) => {
                if let Some(p) = self.projects.get_mut(&e.project_id.0) {
                    p.status = "claimed".to_owned();
                    p.claimant = Some(e.unit_id.0);
                    p.claimed_at = Some(at.clone());
                    if e.meeting_id.is_some() {
                        p.meeting_id = e.meeting_id.map(|m| m.0);
                    }
                }
                if let Some(m) = self.member_mut(community, e.unit_id.0) {
                    m.projects_claimed += 1;
                }
            }
            ClaimWithdrawn(e) => {
                if let Some(p) = self.projects.get_mut(&e.project_id.0) {
                    p.status = if p.meeting_id.is_some() {
                        "approved"
                    } else {
                        "proposed"
                    }
                    .to_owned();
                    p.claimant = None;
                    p.claimed_at = None;
                }
                if let Some(m) = self.member_mut(community, e.unit_id.0) {
                    m.projects_claimed = m.projects_claimed.saturating_sub(1);
                }
            }
            ProjectLaunched(e) => self.set_status(e.project_id.0, "launched"),
            ProjectCompleted(e) => self.set_status(e.project_id.0, "completed"),
            ProjectCancelled(e) => self.set_status(e.project_id.0, "cancelled"),
            ActivityRecorded(e) => {
                if let Some(c) = community.and_then(|c| self.communities.get_mut(&c)) {
                    let t = &mut c.totals;
                    t.activities += 1;
                    t.participants += u64::from(e.participants.get());
                    t.volunteers += u64::from(e.volunteers.get());
                    t.volunteer_hours += u64::from(e.volunteer_hours.get());
                    t.beneficiaries += u64::from(e.beneficiaries.get());
                    t.funds_yuan += e.funds_yuan.get();
                }
                if let Some(m) = self.member_mut(community, e.unit_id.0) {
                    m.activities += 1;
                }
            }
            RequestRaised(e) => {
                let unit_name = self
                    .refs
                    .get(&StreamKey::from(e.unit_id))
                    .map(|r| r.name.clone());
                self.refs.put(
                    StreamKey::from(e.request_id),
                    None,
                    NameDoc {
                        name: e.title.to_string(),
                        community_id: Some(e.community_id.0),
                    },
                );
                if let Some(c) = self.communities.get_mut(&e.community_id.0) {
                    c.open_requests.insert(
                        e.request_id.0,
                        OpenRequest {
                            request_id: e.request_id.0,
                            unit_id: e.unit_id.0,
                            unit_name,
                            title: e.title.to_string(),
                            raised_at: at.clone(),
                        },
                    );
                }
            }
            RequestResolved(e) => {
                if let Some(c) = community.and_then(|c| self.communities.get_mut(&c)) {
                    if c.open_requests.remove(&e.request_id.0).is_some() {
                        c.resolved_requests += 1;
                    }
                }
            }
            DistrictRegistered(_)
            | AttendanceRecorded(_)
            | MeetingClosed(_)
            | FeedbackRecorded(_) => {}
        }
        if let Some(c) = community.and_then(|c| self.communities.get_mut(&c)) {
            c.recent.push_front(RecentDoc {
                position: event.position,
                occurred_at: at,
                summary,
                row: Some(changed_row(&event.event)),
                member: changed_member(&event.event),
            });
            c.recent.truncate(RECENT);
            // Every change of a community's document comes with a line of its feed.
            self.changes.record(c.id, event.position);
        }
        Ok(())
    }
}

/// The project whose board row `event` changes. Every event is named so that a new one must
/// be placed: a row changed without being named here would stay stale in readers' caches.
fn changed_row(event: &Event) -> Option<Uuid> {
    use Event::*;
    match event {
        ProjectProposed(e) => Some(e.project_id.0),
        ProjectApproved(e) => Some(e.project_id.0),
        ProjectClaimed(e) => Some(e.project_id.0),
        ClaimWithdrawn(e) => Some(e.project_id.0),
        ProjectLaunched(e) => Some(e.project_id.0),
        ProjectCompleted(e) => Some(e.project_id.0),
        ProjectCancelled(e) => Some(e.project_id.0),
        DistrictRegistered(_)
        | CommunityRegistered(_)
        | UnitRegistered(_)
        | MemberUnitAdmitted(_)
        | MemberUnitWithdrawn(_)
        | MeetingConvened(_)
        | AttendanceRecorded(_)
        | MeetingClosed(_)
        | ActivityRecorded(_)
        | FeedbackRecorded(_)
        | RequestRaised(_)
        | RequestResolved(_) => None,
    }
}

/// The unit whose member document `event` changes (all of them named, as in [`changed_row`]).
fn changed_member(event: &Event) -> Option<Uuid> {
    use Event::*;
    match event {
        MemberUnitAdmitted(e) => Some(e.unit_id.0),
        MemberUnitWithdrawn(e) => Some(e.unit_id.0),
        ProjectClaimed(e) => Some(e.unit_id.0),
        ClaimWithdrawn(e) => Some(e.unit_id.0),
        ActivityRecorded(e) => Some(e.unit_id.0),
        DistrictRegistered(_)
        | CommunityRegistered(_)
        | UnitRegistered(_)
        | MeetingConvened(_)
        | AttendanceRecorded(_)
        | MeetingClosed(_)
        | ProjectProposed(_)
        | ProjectApproved(_)
        | ProjectLaunched(_)
        | ProjectCompleted(_)
        | FeedbackRecorded(_)
        | ProjectCancelled(_)
        | RequestRaised(_)
        | RequestResolved(_) => None,
    }
}

// ---- The query ---------------------------------------------------------------------------

/// The board as `GET /v1/communities/{id}/board` answers it (API.md, "Shapes").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Board {
    pub community: CommunityView,
    pub members: Vec<MemberView>,
    pub meetings: MeetingsView,
    pub projects: Vec<ProjectRow>,
    pub requests: RequestsView,
    pub totals: Totals,
    pub recent: Vec<Recent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CommunityView {
    pub id: Uuid,
    pub name: String,
    pub committee: Option<String>,
    pub district_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct MemberView {
    pub unit_id: Uuid,
    pub name: String,
    pub kind: MemberKind,
    pub projects_claimed: u64,
    pub activities: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct MeetingsView {
    /// When the last meeting that has sat (by `as_of`) sat.
    pub last_held: Option<String>,
    /// The next meeting convened to sit after `as_of`.
    pub next_scheduled: Option<String>,
    /// Whether a regular meeting sits in `as_of`'s quarter (China Standard Time).
    pub regular_this_quarter: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ProjectRow {
    pub project_id: Uuid,
    pub title: String,
    pub theme: Theme,
    pub status: String,
    pub claimant: Option<Claimant>,
    pub claimed_at: Option<String>,
    pub meeting_id: Option<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Claimant {
    pub unit_id: Uuid,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RequestsView {
    pub open: Vec<OpenRequest>,
    pub resolved: u64,
}

/// The board of `community` as of the business time `as_of` (which decides "last held", "next
/// scheduled" and "this quarter"); `None` when the community is unknown.
pub async fn board(
    db: &ReadDb,
    community: Uuid,
    as_of: chrono::DateTime<chrono::Utc>,
) -> Result<Option<Board>, ProjectionError> {
    let Some(mut doc) = community_doc(db, community).await? else {
        return Ok(None);
    };
    let members = match legacy_members(&mut doc) {
        Some(members) => members,
        None => member_docs(db, community).await?,
    };
    let projects = project_rows(project_docs(db, community).await?.values(), &members);
    let meetings = meetings_view(db, &doc, as_of).await?;
    Ok(Some(assemble(doc, &members, projects, meetings)))
}

/// A community's members by unit, shared between renderings.
type Members = BTreeMap<Uuid, Arc<MemberDoc>>;

/// The members a document of version 3 or before holds, taken out of it; `None` for a later
/// one (whose members are `member` documents).
fn legacy_members(doc: &mut CommunityDoc) -> Option<Members> {
    if doc.members.is_empty() {
        return None;
    }
    let members = std::mem::take(&mut doc.members);
    Some(
        members
            .into_iter()
            .map(|(unit, mut member)| {
                member.unit_id = unit;
                (unit, Arc::new(member))
            })
            .collect(),
    )
}

/// The community's `member` documents by unit.
async fn member_docs(db: &ReadDb, community: Uuid) -> Result<Members, ProjectionError> {
    let mut members = BTreeMap::new();
    for raw in db.children(NAME, "member", &community.to_string()).await? {
        let member = parse_member(&raw)?;
        members.insert(member.unit_id, Arc::new(member));
    }
    Ok(members)
}

fn parse_member(raw: &str) -> Result<MemberDoc, ProjectionError> {
    serde_json::from_str(raw).map_err(|e| ProjectionError::Storage(format!("board member: {e}")))
}

async fn community_doc(
    db: &ReadDb,
    community: Uuid,
) -> Result<Option<CommunityDoc>, ProjectionError> {
    let Some(doc) = db
        .document(NAME, "community", &community.to_string())
        .await?
    else {
        return Ok(None);
    };
    serde_json::from_str(&doc)
        .map(Some)
        .map_err(|e| ProjectionError::Storage(format!("board document: {e}")))
}

/// The community's project documents by id, in the order the board lists them.
async fn project_docs(
    db: &ReadDb,
    community: Uuid,
) -> Result<BTreeMap<Uuid, ProjectDoc>, ProjectionError> {
    let mut projects = BTreeMap::new();
    for raw in db.children(NAME, "project", &community.to_string()).await? {
        let p = parse_project(&raw)?;
        projects.insert(p.project_id, p);
    }
    Ok(projects)
}

fn parse_project(raw: &str) -> Result<ProjectDoc, ProjectionError> {
    serde_json::from_str(raw).map_err(|e| ProjectionError::Storage(format!("board project: {e}")))
}

/// The board's project rows, claimants named from the community's members.
fn project_rows<'a>(
    projects: impl Iterator<Item = &'a ProjectDoc>,
    members: &Members,
) -> Vec<ProjectRow> {
    projects
        .map(|p| ProjectRow {
            project_id: p.project_id,
            title: p.title.clone(),
            theme: p.theme,
            status: p.status.clone(),
            claimant: p.claimant.map(|unit_id| Claimant {
                unit_id,
                name: members
                    .get(&unit_id)
                    .map(|m| m.name.clone())
                    .unwrap_or_default(),
            }),
            claimed_at: p.claimed_at.clone(),
            meeting_id: p.meeting_id,
        })
        .collect()
}

/// "Last held", "next scheduled" and "regular this quarter" as of `as_of`, from at most
/// three `sittings` documents: `as_of`'s quarter and the nearest quarters with meetings before
/// and after it (every meeting of an earlier quarter sat before `as_of`, every one of a later
/// quarter sits after it).
async fn meetings_view(
    db: &ReadDb,
    doc: &CommunityDoc,
    as_of: chrono::DateTime<chrono::Utc>,
) -> Result<MeetingsView, ProjectionError> {
    let now = as_of.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let quarter = Quarter::of(as_of).to_string();
    if !doc.meetings.is_empty() {
        return Ok(legacy_meetings_view(doc, &now, &quarter));
    }
    let sittings = |quarter: &String| {
        let key = sittings_key(doc.id, quarter);
        async move {
            let Some(text) = db.document(NAME, "sittings", &key).await? else {
                return Ok(Vec::new());
            };
            serde_json::from_str::<SittingsDoc>(&text)
                .map(|d| d.sittings)
                .map_err(|e| ProjectionError::Storage(format!("board sittings {key}: {e}")))
        }
    };
    let this_quarter = if doc.quarters.contains(&quarter) {
        sittings(&quarter).await?
    } else {
        Vec::new()
    };
    let regular_this_quarter = this_quarter.iter().any(|s| s.kind == MeetingKind::Regular);
    let mut last_held = this_quarter
        .iter()
        .rev()
        .find(|s| s.sits_at <= now)
        .map(|s| s.sits_at.clone());
    if last_held.is_none() {
        if let Some(before) = doc.quarters.range(..quarter.clone()).next_back() {
            last_held = sittings(before).await?.pop().map(|s| s.sits_at);
        }
    }
    let mut next_scheduled = this_quarter
        .iter()
        .find(|s| s.sits_at > now)
        .map(|s| s.sits_at.clone());
    if next_scheduled.is_none() {
        let after = doc
            .quarters
            .range((
                std::ops::Bound::Excluded(quarter),
                std::ops::Bound::Unbounded,
            ))
            .next();
        if let Some(after) = after {
            next_scheduled = sittings(after).await?.into_iter().next().map(|s| s.sits_at);
        }
    }
    Ok(MeetingsView {
        last_held,
        next_scheduled,
        regular_this_quarter,
    })
}

/// [`meetings_view`] from a version-1 document's list of every meeting.
fn legacy_meetings_view(doc: &CommunityDoc, now: &str, quarter: &str) -> MeetingsView {
    let meetings = doc.meetings.values();
    let quarter_of = |m: &MeetingRef| {
        chrono::DateTime::parse_from_rfc3339(&m.sits_at)
            .ok()
            .map(|t| Quarter::of(t).to_string())
    };
    MeetingsView {
        last_held: meetings
            .clone()
            .filter(|m| m.sits_at.as_str() <= now)
            .map(|m| m.sits_at.clone())
            .max(),
        next_scheduled: meetings
            .clone()
            .filter(|m| m.sits_at.as_str() > now)
            .map(|m| m.sits_at.clone())
            .min(),
        regular_this_quarter: meetings
            .clone()
            .any(|m| m.kind == MeetingKind::Regular && quarter_of(m).as_deref() == Some(quarter)),
    }
}

/// The board from its community document, members, project rows and meetings.
fn assemble(
    doc: CommunityDoc,
    members: &Members,
    projects: Vec<ProjectRow>,
    meetings: MeetingsView,
) -> Board {
    Board {
        community: CommunityView {
            id: doc.id,
            name: doc.name,
            committee: doc.committee,
            district_id: doc.district_id,
        },
        members: members
            .iter()
            .filter(|(_, m)| m.current)
            .map(|(id, m)| MemberView {
                unit_id: *id,
                name: m.name.clone(),
                kind: m.kind,
                projects_claimed: m.projects_claimed,
                activities: m.activities,
            })
            .collect(),
        meetings,
        projects,
        requests: RequestsView {
            open: doc.open_requests.into_values().collect(),
            resolved: doc.resolved_requests,
        },
        totals: doc.totals,
        recent: doc.recent.into_iter().map(Recent::from).collect(),
    }
}

//! The item views: one document per project, meeting and request holding its current state,
//! for `GET /v1/projects/{id}`, `GET /v1/meetings/{id}` and `GET /v1/requests/{id}`.
//!
//! Each item document is stored in the shape the API answers (so a read is one lookup and one
//! parse), with `parent` = its community. Helper documents resolve references: `unit` (a name)
//! and `community` (its district and current member units, which decide who may read the
//! community's items). Documents stay small whatever the history: a project keeps totals and the
//! last [`RECENT_ACTIVITIES`] activities, the last [`RECENT_COMMENTS`] comments; a meeting lists
//! at most [`APPROVED_LISTED`] approved projects (and counts them all). Delivery is the
//! runner's: exactly once per generation, in log order; `apply` is deterministic.

use std::collections::BTreeSet;

use domain::values::{MeetingKind, Theme};
use domain::Event;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::collection::{Collection, Store};
use crate::event::ProjectedEvent;
use crate::readdb::ReadDb;
use crate::{ProjectionError, Projector};

pub const NAME: &str = "items";
/// How many activities a project view lists (newest first).
pub const RECENT_ACTIVITIES: usize = 20;
/// How many feedback comments a project view lists (newest first).
pub const RECENT_COMMENTS: usize = 10;
/// How many approved projects a meeting view lists.
pub const APPROVED_LISTED: usize = 100;

/// Where a project stands in its lifecycle (DOMAIN.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProjectStatus {
    Proposed,
    Approved,
    Claimed,
    Launched,
    Completed,
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    Open,
    Resolved,
}

/// A unit named by an item, with its display name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UnitName {
    pub unit_id: Uuid,
    pub name: String,
}

/// One recorded activity, as a project view lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ActivityEntry {
    pub activity_id: Uuid,
    pub title: String,
    pub occurred_at: String,
    pub participants: u64,
    pub volunteers: u64,
    pub volunteer_hours: u64,
    pub beneficiaries: u64,
    pub funds_yuan: u64,
}

/// A project's activities: how many, their sums, and the most recent ones (newest first).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Activities {
    pub count: u64,
    pub participants: u64,
    pub volunteers: u64,
    pub volunteer_hours: u64,
    pub beneficiaries: u64,
    pub funds_yuan: u64,
    pub recent: Vec<ActivityEntry>,
}

/// One residents' comment on a project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Comment {
    pub rating: u8,
    pub comment: String,
    pub occurred_at: String,
}

/// Residents' feedback on a project.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Feedback {
    pub count: u64,
    /// The sum of all ratings (1–5 each), so means can be combined.
    pub rating_sum: u64,
    /// The mean rating, rounded to two decimals; `null` before any feedback.
    pub mean_rating: Option<f64>,
    /// The latest comments, newest first (feedback without a comment only counts).
    pub comments: Vec<Comment>,
}

/// A project's current state, as `GET /v1/projects/{id}` answers it. Times are business
/// times (RFC 3339).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProjectView {
    pub id: Uuid,
    pub community_id: Uuid,
    pub title: String,
    pub theme: Theme,
    pub need: Option<String>,
    pub status: ProjectStatus,
    pub proposed_at: String,
    pub approved_at: Option<String>,
    /// The meeting that approved the project.
    pub meeting_id: Option<Uuid>,
    /// The unit holding the project now; `null` when unclaimed or after a withdrawal.
    pub claimant: Option<UnitName>,
    pub claimed_at: Option<String>,
    /// The meeting at which the current claim was made, if any.
    pub claim_meeting_id: Option<Uuid>,
    pub commitment: Option<String>,
    pub launched_at: Option<String>,
    pub completed_at: Option<String>,
    pub summary: Option<String>,
    pub cancelled_at: Option<String>,
    pub cancellation_reason: Option<String>,
    pub activities: Activities,
    pub feedback: Feedback,
    /// The project stream's version: the number of its events (for `If-Match`).
    pub version: u64,
}

/// A project approved at a meeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApprovedProject {
    pub project_id: Uuid,
    pub title: String,
}

/// A meeting's current state, as `GET /v1/meetings/{id}` answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MeetingView {
    pub id: Uuid,
    pub community_id: Uuid,
    pub kind: MeetingKind,
    pub title: String,
    pub agenda: Vec<String>,
    pub venue: Option<String>,
    /// When the meeting sits (business time).
    pub sits_at: String,
    /// Units recorded as attending, by unit id.
    pub attended_units: Vec<UnitName>,
    pub closed: bool,
    pub closed_at: Option<String>,
    pub resolutions: Vec<String>,
    pub minutes: Option<String>,
    /// Projects approved at this meeting, in order (the first [`APPROVED_LISTED`]).
    pub projects_approved: Vec<ApprovedProject>,
    /// How many projects were approved at this meeting.
    pub projects_approved_total: u64,
    /// The meeting stream's version: the number of its events.
    pub version: u64,
}

/// A request's current state, as `GET /v1/requests/{id}` answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RequestView {
    pub id: Uuid,
    pub community_id: Uuid,
    pub unit_id: Uuid,
    pub unit_name: String,
    pub title: String,
    pub need: Option<String>,
    pub raised_at: String,
    pub status: RequestStatus,
    pub resolution: Option<String>,
    pub resolved_at: Option<String>,
    /// The request stream's version: the number of its events.
    pub version: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct UnitDoc {
    name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CommunityDoc {
    district_id: Uuid,
    /// Current member units.
    members: BTreeSet<Uuid>,
}

/// Builds the item views.
pub struct ItemsProjector {
    projects: Collection<ProjectView, Uuid>,
    meetings: Collection<MeetingView, Uuid>,
    requests: Collection<RequestView, Uuid>,
    units: Collection<UnitDoc, Uuid>,
    communities: Collection<CommunityDoc, Uuid>,
}

impl Default for ItemsProjector {
    fn default() -> Self {
        Self {
            projects: Collection::new("project"),
            meetings: Collection::new("meeting"),
            requests: Collection::new("request"),
            units: Collection::new("unit"),
            communities: Collection::new("community"),
        }
    }
}

fn text(value: &Option<domain::values::Text>) -> Option<String> {
    value.as_ref().map(|t| t.to_string())
}

impl ItemsProjector {
    fn unit_name(&self, unit: Uuid) -> String {
        self.units
            .get(&unit)
            .map(|u| u.name.clone())
            .unwrap_or_default()
    }

    /// The project an event of its own stream changes, with that event counted in its version.
    fn on_project(&mut self, project: Uuid) -> Option<&mut ProjectView> {
        let p = self.projects.get_mut(&project)?;
        p.version += 1;
        Some(p)
    }

    /// The meeting an event of its own stream changes, with that event counted in its version.
    fn on_meeting(&mut self, meeting: Uuid) -> Option<&mut MeetingView> {
        let m = self.meetings.get_mut(&meeting)?;
        m.version += 1;
        Some(m)
    }
}

impl Projector for ItemsProjector {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        1
    }

    fn want(&mut self, event: &ProjectedEvent) {
        use Event::*;
        match &event.event {
            MemberUnitAdmitted(e) => self.communities.want(e.community_id.0),
            MemberUnitWithdrawn(e) => self.communities.want(e.community_id.0),
            AttendanceRecorded(e) => {
                self.meetings.want(e.meeting_id.0);
                for unit in e.unit_ids.items() {
                    self.units.want(unit.0);
                }
            }
            MeetingClosed(e) => self.meetings.want(e.meeting_id.0),
            ProjectApproved(e) => {
                self.projects.want(e.project_id.0);
                self.meetings.want(e.meeting_id.0);
            }
            ProjectClaimed(e) => {
                self.projects.want(e.project_id.0);
                self.units.want(e.unit_id.0);
            }
            ClaimWithdrawn(e) => self.projects.want(e.project_id.0),
            ProjectLaunched(e) => self.projects.want(e.project_id.0),
            ActivityRecorded(e) => self.projects.want(e.project_id.0),
            ProjectCompleted(e) => self.projects.want(e.project_id.0),
            FeedbackRecorded(e) => self.projects.want(e.project_id.0),
            ProjectCancelled(e) => self.projects.want(e.project_id.0),
            RequestRaised(e) => self.units.want(e.unit_id.0),
            RequestResolved(e) => self.requests.want(e.request_id.0),
            DistrictRegistered(_)
            | CommunityRegistered(_)
            | UnitRegistered(_)
            | MeetingConvened(_)
            | ProjectProposed(_) => {}
        }
    }

    fn collections(&mut self) -> Vec<&mut dyn Store> {
        vec![
            &mut self.projects,
            &mut self.meetings,
            &mut self.requests,
            &mut self.units,
            &mut self.communities,
        ]
    }

    fn apply(&mut self, event: &ProjectedEvent) -> Result<(), String> {
        use Event::*;
        let at = event.business_time();
        match &event.event {
            DistrictRegistered(_) => {}
            CommunityRegistered(e) => self.communities.put(
                e.community_id.0,
                None,
                CommunityDoc {
                    district_id: e.district_id.0,
                    members: BTreeSet::new(),
                },
            ),
            UnitRegistered(e) => self.units.put(
                e.unit_id.0,
                None,
                UnitDoc {
                    name: e.name.to_string(),
                },
            ),
            MemberUnitAdmitted(e) => {
                if let Some(c) = self.communities.get_mut(&e.community_id.0) {
                    c.members.insert(e.unit_id.0);
                }
            }
            MemberUnitWithdrawn(e) => {
                if let Some(c) = self.communities.get_mut(&e.community_id.0) {
                    c.members.remove(&e.unit_id.0);
                }
            }
            MeetingConvened(e) => self.meetings.put(
                e.meeting_id.0,
                Some(e.community_id.0),
                MeetingView {
                    id: e.meeting_id.0,
                    community_id: e.community_id.0,
                    kind: e.kind,
                    title: e.title.to_string(),
                    agenda: e.agenda.items().iter().map(|t| t.to_string()).collect(),
                    venue: e.venue.as_ref().map(|v| v.to_string()),
                    sits_at: at,
                    attended_units: Vec::new(),
                    closed: false,
                    closed_at: None,
                    resolutions: Vec::new(),
                    minutes: None,
                    projects_approved: Vec::new(),
                    projects_approved_total: 0,
                    version: 1,
                },
            ),
            AttendanceRecorded(e) => {
                let named: Vec<UnitName> = e
                    .unit_ids
                    .items()
                    .iter()
                    .map(|u| UnitName {
                        unit_id: u.0,
                        name: self.unit_name(u.0),
                    })
                    .collect();
                if let Some(m) = self.on_meeting(e.meeting_id.0) {
                    for unit in named {
                        if let Err(at) = m
                            .attended_units
                            .binary_search_by_key(&unit.unit_id, |u| u.unit_id)
                        {
                            m.attended_units.insert(at, unit);
                        }
                    }
                }
            }
            MeetingClosed(e) => {
                if let Some(m) = self.on_meeting(e.meeting_id.0) {
                    m.closed = true;
                    m.closed_at = Some(at);
                    m.resolutions = e
                        .resolutions
                        .items()
                        .iter()
                        .map(|t| t.to_string())
                        .collect();
                    m.minutes = text(&e.minutes);
                }
            }
            ProjectProposed(e) => self.projects.put(
                e.project_id.0,
                Some(e.community_id.0),
                ProjectView {
                    id: e.project_id.0,
                    community_id: e.community_id.0,
                    title: e.title.to_string(),
                    theme: e.theme,
                    need: text(&e.need),
                    status: ProjectStatus::Proposed,
                    proposed_at: at,
                    approved_at: None,
                    meeting_id: None,
                    claimant: None,
                    claimed_at: None,
                    claim_meeting_id: None,
                    commitment: None,
                    launched_at: None,
                    completed_at: None,
                    summary: None,
                    cancelled_at: None,
                    cancellation_reason: None,
                    activities: Activities::default(),
                    feedback: Feedback::default(),
                    version: 1,
                },
            ),
            ProjectApproved(e) => {
                let mut title = None;
                if let Some(p) = self.on_project(e.project_id.0) {
                    p.status = ProjectStatus::Approved;
                    p.approved_at = Some(at);
                    p.meeting_id = Some(e.meeting_id.0);
                    title = Some(p.title.clone());
                }
                if let Some(m) = self.meetings.get_mut(&e.meeting_id.0) {
                    m.projects_approved_total += 1;
                    if m.projects_approved.len() < APPROVED_LISTED {
                        m.projects_approved.push(ApprovedProject {
                            project_id: e.project_id.0,
                            title: title.unwrap_or_default(),
                        });
                    }
                }
            }
            ProjectClaimed(e) => {
                let name = self.unit_name(e.unit_id.0);
                if let Some(p) = self.on_project(e.project_id.0) {
                    p.status = ProjectStatus::Claimed;
                    p.claimant = Some(UnitName {
                        unit_id: e.unit_id.0,
                        name,
                    });
                    p.claimed_at = Some(at);
                    p.claim_meeting_id = e.meeting_id.map(|m| m.0);
                    p.commitment = text(&e.commitment);
                }
            }
            ClaimWithdrawn(e) => {
                if let Some(p) = self.on_project(e.project_id.0) {
                    p.status = if p.approved_at.is_some() {
                        ProjectStatus::Approved
                    } else {
                        ProjectStatus::Proposed
                    };
                    p.claimant = None;
                    p.claimed_at = None;
                    p.claim_meeting_id = None;
                    p.commitment = None;
                }
            }
            ProjectLaunched(e) => {
                if let Some(p) = self.on_project(e.project_id.0) {
                    p.status = ProjectStatus::Launched;
                    p.launched_at = Some(at);
                }
            }
            ActivityRecorded(e) => {
                if let Some(p) = self.on_project(e.project_id.0) {
                    let entry = ActivityEntry {
                        activity_id: e.activity_id.0,
                        title: e.title.to_string(),
                        occurred_at: at,
                        participants: u64::from(e.participants.get()),
                        volunteers: u64::from(e.volunteers.get()),
                        volunteer_hours: u64::from(e.volunteer_hours.get()),
                        beneficiaries: u64::from(e.beneficiaries.get()),
                        funds_yuan: e.funds_yuan.get(),
                    };
                    let a = &mut p.activities;
                    a.count += 1;
                    a.participants += entry.participants;
                    a.volunteers += entry.volunteers;
                    a.volunteer_hours += entry.volunteer_hours;
                    a.beneficiaries += entry.beneficiaries;
                    a.funds_yuan += entry.funds_yuan;
                    a.recent.insert(0, entry);
                    a.recent.truncate(RECENT_ACTIVITIES);
                }
            }
            ProjectCompleted(e) => {
                if let Some(p) = self.on_project(e.project_id.0) {
                    p.status = ProjectStatus::Completed;
                    p.completed_at = Some(at);
                    p.summary = text(&e.summary);
                }
            }
            FeedbackRecorded(e) => {
                if let Some(p) = self.on_project(e.project_id.0) {
                    let f = &mut p.feedback;
                    let rating = e.rating.get();
                    f.count += 1;
                    f.rating_sum += u64::from(rating);
                    // Integer rounding to hundredths: the same bytes on every rebuild.
                    let hundredths = (f.rating_sum * 200 + f.count) / (2 * f.count);
                    f.mean_rating = Some(hundredths as f64 / 100.0);
                    if let Some(comment) = &e.comment {
                        f.comments.insert(
                            0,
                            Comment {
                                rating,
                                comment: comment.to_string(),
                                occurred_at: at,
                            },
                        );
                        f.comments.truncate(RECENT_COMMENTS);
                    }
                }
            }
            ProjectCancelled(e) => {
                if let Some(p) = self.on_project(e.project_id.0) {
                    p.status = ProjectStatus::Cancelled;
                    p.cancelled_at = Some(at);
                    p.cancellation_reason = text(&e.reason);
                }
            }
            RequestRaised(e) => {
                let unit_name = self.unit_name(e.unit_id.0);
                self.requests.put(
                    e.request_id.0,
                    Some(e.community_id.0),
                    RequestView {
                        id: e.request_id.0,
                        community_id: e.community_id.0,
                        unit_id: e.unit_id.0,
                        unit_name,
                        title: e.title.to_string(),
                        need: text(&e.need),
                        raised_at: at,
                        status: RequestStatus::Open,
                        resolution: None,
                        resolved_at: None,
                        version: 1,
                    },
                );
            }
            RequestResolved(e) => {
                if let Some(r) = self.requests.get_mut(&e.request_id.0) {
                    r.version += 1;
                    r.status = RequestStatus::Resolved;
                    r.resolution = text(&e.resolution);
                    r.resolved_at = Some(at);
                }
            }
        }
        Ok(())
    }
}

// ---- The queries -------------------------------------------------------------------------

/// Who an item concerns, for the gateway's scope decision (the item views hold no policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub community_id: Uuid,
    /// The community's district; `None` only if the community is unknown to the read model.
    pub district_id: Option<Uuid>,
    /// The community's current member units.
    pub members: Vec<Uuid>,
    /// Units the item itself names: a request's raiser, a project's claimant.
    pub units: Vec<Uuid>,
}

/// An item view with its [`Owner`].
#[derive(Debug, Clone, PartialEq)]
pub struct Found<T> {
    pub item: T,
    pub owner: Owner,
}

async fn load<T: serde::de::DeserializeOwned>(
    db: &ReadDb,
    kind: &str,
    id: Uuid,
) -> Result<Option<T>, ProjectionError> {
    let Some(raw) = db.document(NAME, kind, &id.to_string()).await? else {
        return Ok(None);
    };
    serde_json::from_str(&raw)
        .map(Some)
        .map_err(|e| ProjectionError::Storage(format!("{kind} {id}: unreadable document: {e}")))
}

async fn owner(db: &ReadDb, community: Uuid, units: Vec<Uuid>) -> Result<Owner, ProjectionError> {
    let doc: Option<CommunityDoc> = load(db, "community", community).await?;
    Ok(Owner {
        community_id: community,
        district_id: doc.as_ref().map(|c| c.district_id),
        members: doc
            .map(|c| c.members.into_iter().collect())
            .unwrap_or_default(),
        units,
    })
}

/// The project `id`; `None` when unknown.
pub async fn project(db: &ReadDb, id: Uuid) -> Result<Option<Found<ProjectView>>, ProjectionError> {
    let Some(item) = load::<ProjectView>(db, "project", id).await? else {
        return Ok(None);
    };
    let units = item.claimant.iter().map(|c| c.unit_id).collect();
    let owner = owner(db, item.community_id, units).await?;
    Ok(Some(Found { item, owner }))
}

/// The meeting `id`; `None` when unknown.
pub async fn meeting(db: &ReadDb, id: Uuid) -> Result<Option<Found<MeetingView>>, ProjectionError> {
    let Some(item) = load::<MeetingView>(db, "meeting", id).await? else {
        return Ok(None);
    };
    let owner = owner(db, item.community_id, Vec::new()).await?;
    Ok(Some(Found { item, owner }))
}

/// The request `id`; `None` when unknown.
pub async fn request(db: &ReadDb, id: Uuid) -> Result<Option<Found<RequestView>>, ProjectionError> {
    let Some(item) = load::<RequestView>(db, "request", id).await? else {
        return Ok(None);
    };
    let owner = owner(db, item.community_id, vec![item.unit_id]).await?;
    Ok(Some(Found { item, owner }))
}

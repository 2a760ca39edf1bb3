//! District statistics: per district, overall and per quarter, per community and in total —
//! meetings, member units, projects by stage and theme, claim and completion rates, days to
//! claim and to launch, activities and their numbers, requests, feedback (DOMAIN.md).
//!
//! Every event is counted in the quarter (China Standard Time) of its business time
//! (`occurred_at`): a meeting in the quarter it sits in, a claim, activity or request in the
//! quarter it happened (API.md). The rules that need a decision are stated where they are kept:
//! see [`query`] for how figures are derived, and below for what is stored.
//!
//! A withdrawn claim is taken back out of the quarter it was counted in (its count, its theme's
//! `claimed`, its days-to-claim): a project counts as claimed only while a claim stands, and is
//! counted again, in the new claim's quarter, when it is claimed anew. A cancelled project keeps
//! what it reached before (proposed, claimed, launched) and also counts as cancelled. A meeting
//! counts once convened, closed or not; one convened for a future date counts in that quarter
//! (and, like any business time, moves the district's latest quarter forward).
//!
//! Documents, all small, so that a rebuild does its work in memory:
//! - `district` (key: district id): name, and the latest quarter of its own events;
//! - `community` (key: community id, parent: district id): name, registration quarter, latest
//!   quarter of its events;
//! - `quarter` (key: `<community id>/<quarter>`, parent: district id): the community's
//!   [`Counters`] for one quarter — so a batch rewrites only the quarters it touched, however
//!   long the history;
//! - `project` (key: project id, parent: community id): theme, proposal day, the standing claim;
//! - `ref` (key: `meeting-…` or `request-…`, parent: community id): the owning community.
//!
//! Delivery: the runner applies each event exactly once per generation, in log order; `apply`
//! is deterministic (ordered maps only), so a rebuild gives the same bytes as live projection.

pub mod counters;
pub mod query;

use domain::values::{MeetingKind, Theme};
use domain::Event;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::collection::{Collection, Key, Store, StreamKey};
use crate::event::{community_ref, CommunityRef, ProjectedEvent};
use crate::Projector;
pub use counters::{Counters, Histogram, QuarterKey, ThemeCounts};
pub use query::{districts, stats, DistrictStats};

pub const NAME: &str = "district-stats";

/// A district: its name, and the latest quarter its own events (its registration, units'
/// registrations) reached; communities keep their own.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DistrictDoc {
    pub id: Uuid,
    pub name: String,
    pub latest: QuarterKey,
}

/// A community of a district.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommunityDoc {
    pub id: Uuid,
    pub name: String,
    pub district_id: Uuid,
    /// The quarter of its registration's business time.
    pub registered: QuarterKey,
    /// The latest quarter any of its events reached, by business time.
    pub latest: QuarterKey,
}

/// What happened in one community in one quarter.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuarterDoc {
    pub community_id: Uuid,
    pub quarter: QuarterKey,
    pub counters: Counters,
}

/// The key of a community's quarter document: `<community>/<quarter>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct QuarterDocKey {
    community: Uuid,
    quarter: QuarterKey,
}

fn quarter_key(community: Uuid, quarter: QuarterKey) -> QuarterDocKey {
    QuarterDocKey { community, quarter }
}

impl Key for QuarterDocKey {
    fn write(&self, out: &mut String) {
        use std::fmt::Write;
        self.community.write(out);
        let _ = write!(out, "/{}", self.quarter);
    }
    fn read(text: &str) -> Option<Self> {
        let (community, quarter) = text.split_once('/')?;
        Some(Self {
            community: Uuid::read(community)?,
            quarter: QuarterKey::parse(quarter)?,
        })
    }
}

/// What the statistics need to remember of a project between its events.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ProjectDoc {
    pub community_id: Uuid,
    pub theme: Theme,
    /// The proposal's calendar day ([`counters::day_number`]).
    pub proposed_day: i32,
    /// The standing claim, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<ClaimDoc>,
}

/// A standing claim: where it was counted, so a withdrawal can take it back out.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ClaimDoc {
    pub quarter: QuarterKey,
    pub day: i32,
    /// Days from proposal to this claim.
    pub days: i64,
}

/// The community of a meeting or request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefDoc {
    pub community_id: Uuid,
}

/// Builds the district statistics.
pub struct DistrictStatsProjector {
    districts: Collection<DistrictDoc, Uuid>,
    communities: Collection<CommunityDoc, Uuid>,
    quarters: Collection<QuarterDoc, QuarterDocKey>,
    projects: Collection<ProjectDoc, Uuid>,
    refs: Collection<RefDoc, StreamKey>,
}

impl Default for DistrictStatsProjector {
    fn default() -> Self {
        Self {
            districts: Collection::new("district"),
            communities: Collection::new("community"),
            quarters: Collection::new("quarter"),
            projects: Collection::new("project"),
            refs: Collection::new("ref"),
        }
    }
}

/// Days between two calendar days; a business time earlier than the step before it (a data
/// entry slip) counts as 0 days rather than a negative number.
fn days_between(from: i32, to: i32) -> i64 {
    (i64::from(to) - i64::from(from)).max(0)
}

impl DistrictStatsProjector {
    /// The community an event concerns, from its data or from documents already loaded.
    fn community_of(&self, event: &Event) -> Option<Uuid> {
        let via_ref = |key: StreamKey| self.refs.get(&key).map(|r| r.community_id);
        match community_ref(event) {
            CommunityRef::Named(community) => Some(community),
            CommunityRef::Meeting(meeting) => via_ref(meeting.into()),
            CommunityRef::Request(request) => via_ref(request.into()),
            CommunityRef::Project(project) => self.projects.get(&project.0).map(|p| p.community_id),
            CommunityRef::None => None,
        }
    }

    /// The project an event concerns.
    fn project_of(event: &Event) -> Option<Uuid> {
        match event {
            Event::ProjectApproved(e) => Some(e.project_id.0),
            Event::ProjectClaimed(e) => Some(e.project_id.0),
            Event::ClaimWithdrawn(e) => Some(e.project_id.0),
            Event::ProjectLaunched(e) => Some(e.project_id.0),
            Event::ActivityRecorded(e) => Some(e.project_id.0),
            Event::ProjectCompleted(e) => Some(e.project_id.0),
            Event::FeedbackRecorded(e) => Some(e.project_id.0),
            Event::ProjectCancelled(e) => Some(e.project_id.0),
            _ => None,
        }
    }

    /// Changes the counters of `community` (of `district`) in `quarter`, creating them.
    fn bump(
        &mut self,
        community: Uuid,
        district: Uuid,
        quarter: QuarterKey,
        change: impl FnOnce(&mut Counters),
    ) {
        let key = quarter_key(community, quarter);
        match self.quarters.get_mut(&key) {
            Some(doc) => change(&mut doc.counters),
            None => {
                let mut counters = Counters::default();
                change(&mut counters);
                self.quarters.put(
                    key,
                    Some(district),
                    QuarterDoc {
                        community_id: community,
                        quarter,
                        counters,
                    },
                );
            }
        }
    }

    fn set_claim(&mut self, project: Uuid, claim: Option<ClaimDoc>) {
        if let Some(p) = self.projects.get_mut(&project) {
            p.claim = claim;
        }
    }

    /// Applies an event that concerns `community` (whose document is loaded).
    fn apply_to_community(&mut self, event: &ProjectedEvent, community: Uuid) {
        use Event::*;
        let quarter = QuarterKey::of(event.occurred_at);
        let day = counters::day_number(event.occurred_at);
        let key = community;
        let Some(doc) = self.communities.get(&key) else {
            return;
        };
        let (district, latest) = (doc.district_id, doc.latest);
        if quarter > latest {
            if let Some(doc) = self.communities.get_mut(&key) {
                doc.latest = quarter;
            }
        }
        let project_id = Self::project_of(&event.event);
        let project = project_id.and_then(|id| self.projects.get(&id).copied());
        let mut bump = |change: &dyn Fn(&mut Counters)| {
            self.bump(community, district, quarter, |c| change(c));
        };
        match &event.event {
            MemberUnitAdmitted(_) => bump(&|c| c.member_delta += 1),
            MemberUnitWithdrawn(_) => bump(&|c| c.member_delta -= 1),
            MeetingConvened(e) => match e.kind {
                MeetingKind::Regular => bump(&|c| c.meetings_regular += 1),
                MeetingKind::Extraordinary => bump(&|c| c.meetings_extraordinary += 1),
            },
            ProjectProposed(e) => bump(&|c| {
                c.projects_proposed += 1;
                c.theme(e.theme).proposed += 1;
            }),
            ProjectClaimed(_) => {
                if let (Some(id), Some(p)) = (project_id, project) {
                    let days = days_between(p.proposed_day, day);
                    bump(&|c| {
                        c.projects_claimed += 1;
                        c.days_to_claim.add(days);
                        c.theme(p.theme).claimed += 1;
                    });
                    self.set_claim(id, Some(ClaimDoc { quarter, day, days }));
                }
            }
            ClaimWithdrawn(_) => {
                if let (Some(id), Some(p)) = (project_id, project) {
                    if let Some(claim) = p.claim {
                        self.bump(community, district, claim.quarter, |c| {
                            c.withdraw_claim(p.theme, claim.days)
                        });
                        self.set_claim(id, None);
                    }
                }
            }
            ProjectLaunched(_) => {
                let days = project
                    .and_then(|p| p.claim)
                    .map(|c| days_between(c.day, day));
                bump(&|c| {
                    c.projects_launched += 1;
                    if let Some(days) = days {
                        c.days_to_launch.add(days);
                    }
                });
            }
            ActivityRecorded(e) => bump(&|c| {
                c.activities += 1;
                c.participants += u64::from(e.participants.get());
                c.volunteers += u64::from(e.volunteers.get());
                c.volunteer_hours += u64::from(e.volunteer_hours.get());
                c.beneficiaries += u64::from(e.beneficiaries.get());
                c.funds_yuan += e.funds_yuan.get();
            }),
            ProjectCompleted(_) => bump(&|c| {
                c.projects_completed += 1;
                if let Some(p) = project {
                    c.theme(p.theme).completed += 1;
                }
            }),
            FeedbackRecorded(e) => bump(&|c| {
                c.rating_sum += u64::from(e.rating.get());
                c.ratings += 1;
            }),
            ProjectCancelled(_) => bump(&|c| c.projects_cancelled += 1),
            RequestRaised(_) => bump(&|c| c.requests_raised += 1),
            RequestResolved(_) => bump(&|c| c.requests_resolved += 1),
            CommunityRegistered(_)
            | AttendanceRecorded(_)
            | MeetingClosed(_)
            | ProjectApproved(_)
            | DistrictRegistered(_)
            | UnitRegistered(_) => {}
        }
    }
}

impl Projector for DistrictStatsProjector {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        1
    }

    fn want(&mut self, event: &ProjectedEvent) {
        use Event::*;
        match &event.event {
            UnitRegistered(e) => self.districts.want(e.district_id.0),
            AttendanceRecorded(e) => self.refs.want(StreamKey::from(e.meeting_id)),
            MeetingClosed(e) => self.refs.want(StreamKey::from(e.meeting_id)),
            RequestResolved(e) => self.refs.want(StreamKey::from(e.request_id)),
            other => {
                if let Some(project) = Self::project_of(other) {
                    self.projects.want(project);
                }
            }
        }
        // On the second round, this follows the references loaded by the first.
        let Some(community) = self.community_of(&event.event) else {
            return;
        };
        self.communities.want(community);
        let quarter = QuarterKey::of(event.occurred_at);
        self.quarters.want(quarter_key(community, quarter));
        if let ClaimWithdrawn(e) = &event.event {
            // The withdrawn claim is taken out of the quarter it was counted in.
            let claimed = self.projects.get(&e.project_id.0).and_then(|p| p.claim);
            if let Some(claim) = claimed {
                self.quarters.want(quarter_key(community, claim.quarter));
            }
        }
    }

    fn collections(&mut self) -> Vec<&mut dyn Store> {
        vec![
            &mut self.districts,
            &mut self.communities,
            &mut self.quarters,
            &mut self.projects,
            &mut self.refs,
        ]
    }

    fn apply(&mut self, event: &ProjectedEvent) -> Result<(), String> {
        use Event::*;
        let quarter = QuarterKey::of(event.occurred_at);
        match &event.event {
            DistrictRegistered(e) => {
                self.districts.put(
                    e.district_id.0,
                    None,
                    DistrictDoc {
                        id: e.district_id.0,
                        name: e.name.to_string(),
                        latest: quarter,
                    },
                );
                return Ok(());
            }
            UnitRegistered(e) => {
                let key = e.district_id.0;
                if self.districts.get(&key).is_some_and(|d| quarter > d.latest) {
                    if let Some(d) = self.districts.get_mut(&key) {
                        d.latest = quarter;
                    }
                }
                return Ok(());
            }
            CommunityRegistered(e) => self.communities.put(
                e.community_id.0,
                Some(e.district_id.0),
                CommunityDoc {
                    id: e.community_id.0,
                    name: e.name.to_string(),
                    district_id: e.district_id.0,
                    registered: quarter,
                    latest: quarter,
                },
            ),
            MeetingConvened(e) => self.refs.put(
                StreamKey::from(e.meeting_id),
                Some(e.community_id.0),
                RefDoc {
                    community_id: e.community_id.0,
                },
            ),
            RequestRaised(e) => self.refs.put(
                StreamKey::from(e.request_id),
                Some(e.community_id.0),
                RefDoc {
                    community_id: e.community_id.0,
                },
            ),
            ProjectProposed(e) => self.projects.put(
                e.project_id.0,
                Some(e.community_id.0),
                ProjectDoc {
                    community_id: e.community_id.0,
                    theme: e.theme,
                    proposed_day: counters::day_number(event.occurred_at),
                    claim: None,
                },
            ),
            _ => {}
        }
        if let Some(community) = self.community_of(&event.event) {
            self.apply_to_community(event, community);
        }
        Ok(())
    }
}

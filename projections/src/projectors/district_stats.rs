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
//! what it reached before (proposed, claimed, launched) and also counts as cancelled.
//!
//! Documents, all small, so that a rebuild does its work in memory:
//! - `district` (key: district id): name, and the latest quarter of its own events;
//! - `community` (key: community id, parent: district id): name, registration quarter, latest
//!   quarter of its events, and one [`Counters`] per quarter;
//! - `project` (key: project id, parent: community id): theme, proposal day, the standing claim;
//! - `ref` (key: `meeting-…` or `request-…`, parent: community id): the owning community.
//!
//! Delivery: the runner applies each event exactly once per generation, in log order; `apply`
//! is deterministic (ordered maps only), so a rebuild gives the same bytes as live projection.

pub mod counters;
pub mod query;

use std::collections::BTreeMap;

use domain::values::{MeetingKind, Theme};
use domain::Event;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::collection::{Collection, Store};
use crate::event::ProjectedEvent;
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

/// A community's statistics, quarter by quarter.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommunityDoc {
    pub id: Uuid,
    pub name: String,
    pub district_id: Uuid,
    /// The quarter of its registration's business time.
    pub registered: QuarterKey,
    /// The latest quarter any of its events reached, by business time.
    pub latest: QuarterKey,
    pub quarters: BTreeMap<QuarterKey, Counters>,
}

impl CommunityDoc {
    fn at(&mut self, quarter: QuarterKey) -> &mut Counters {
        self.quarters.entry(quarter).or_default()
    }
}

/// What the statistics need to remember of a project between its events.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    districts: Collection<DistrictDoc>,
    communities: Collection<CommunityDoc>,
    projects: Collection<ProjectDoc>,
    refs: Collection<RefDoc>,
}

impl Default for DistrictStatsProjector {
    fn default() -> Self {
        Self {
            districts: Collection::new("district"),
            communities: Collection::new("community"),
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
        let via_ref = |stream: String| self.refs.get(&stream).map(|r| r.community_id);
        let via_project = |id: domain::ids::ProjectId| {
            self.projects.get(&id.0.to_string()).map(|p| p.community_id)
        };
        match event {
            Event::CommunityRegistered(e) => Some(e.community_id.0),
            Event::MemberUnitAdmitted(e) => Some(e.community_id.0),
            Event::MemberUnitWithdrawn(e) => Some(e.community_id.0),
            Event::MeetingConvened(e) => Some(e.community_id.0),
            Event::AttendanceRecorded(e) => via_ref(e.meeting_id.stream()),
            Event::MeetingClosed(e) => via_ref(e.meeting_id.stream()),
            Event::ProjectProposed(e) => Some(e.community_id.0),
            Event::ProjectApproved(e) => via_project(e.project_id),
            Event::ProjectClaimed(e) => via_project(e.project_id),
            Event::ClaimWithdrawn(e) => via_project(e.project_id),
            Event::ProjectLaunched(e) => via_project(e.project_id),
            Event::ActivityRecorded(e) => via_project(e.project_id),
            Event::ProjectCompleted(e) => via_project(e.project_id),
            Event::FeedbackRecorded(e) => via_project(e.project_id),
            Event::ProjectCancelled(e) => via_project(e.project_id),
            Event::RequestRaised(e) => Some(e.community_id.0),
            Event::RequestResolved(e) => via_ref(e.request_id.stream()),
            Event::DistrictRegistered(_) | Event::UnitRegistered(_) => None,
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

    /// Applies an event that concerns `community` (whose document is loaded).
    fn apply_to_community(&mut self, event: &ProjectedEvent, community: &str) {
        use Event::*;
        let quarter = QuarterKey::of(event.occurred_at);
        let day = counters::day_number(event.occurred_at);
        // What the event changes in its project's document, and what that tells the counters.
        let mut theme = None;
        let mut claim_days = None;
        let mut withdrawn: Option<ClaimDoc> = None;
        let mut launch_days = None;
        if let Some(project) = Self::project_of(&event.event) {
            if let Some(p) = self.projects.get_mut(&project.to_string()) {
                theme = Some(p.theme);
                match &event.event {
                    ProjectClaimed(_) => {
                        let days = days_between(p.proposed_day, day);
                        p.claim = Some(ClaimDoc {
                            quarter,
                            day,
                            days,
                        });
                        claim_days = Some(days);
                    }
                    ClaimWithdrawn(_) => withdrawn = p.claim.take(),
                    ProjectLaunched(_) => {
                        launch_days = p.claim.map(|c| days_between(c.day, day));
                    }
                    _ => {}
                }
            }
        }
        let Some(c) = self.communities.get_mut(community) else {
            return;
        };
        c.latest = c.latest.max(quarter);
        match &event.event {
            MemberUnitAdmitted(_) => c.at(quarter).member_delta += 1,
            MemberUnitWithdrawn(_) => c.at(quarter).member_delta -= 1,
            MeetingConvened(e) => match e.kind {
                MeetingKind::Regular => c.at(quarter).meetings_regular += 1,
                MeetingKind::Extraordinary => c.at(quarter).meetings_extraordinary += 1,
            },
            ProjectProposed(e) => {
                let q = c.at(quarter);
                q.projects_proposed += 1;
                q.theme(e.theme).proposed += 1;
            }
            ProjectClaimed(_) => {
                if let (Some(theme), Some(days)) = (theme, claim_days) {
                    let q = c.at(quarter);
                    q.projects_claimed += 1;
                    q.days_to_claim.add(days);
                    q.theme(theme).claimed += 1;
                }
            }
            ClaimWithdrawn(_) => {
                if let (Some(theme), Some(claim)) = (theme, withdrawn) {
                    c.at(claim.quarter).withdraw_claim(theme, claim.days);
                }
            }
            ProjectLaunched(_) => {
                let q = c.at(quarter);
                q.projects_launched += 1;
                if let Some(days) = launch_days {
                    q.days_to_launch.add(days);
                }
            }
            ActivityRecorded(e) => {
                let q = c.at(quarter);
                q.activities += 1;
                q.participants += u64::from(e.participants.get());
                q.volunteers += u64::from(e.volunteers.get());
                q.volunteer_hours += u64::from(e.volunteer_hours.get());
                q.beneficiaries += u64::from(e.beneficiaries.get());
                q.funds_yuan += e.funds_yuan.get();
            }
            ProjectCompleted(_) => {
                let q = c.at(quarter);
                q.projects_completed += 1;
                if let Some(theme) = theme {
                    q.theme(theme).completed += 1;
                }
            }
            FeedbackRecorded(e) => {
                let q = c.at(quarter);
                q.rating_sum += u64::from(e.rating.get());
                q.ratings += 1;
            }
            ProjectCancelled(_) => c.at(quarter).projects_cancelled += 1,
            RequestRaised(_) => c.at(quarter).requests_raised += 1,
            RequestResolved(_) => c.at(quarter).requests_resolved += 1,
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
            UnitRegistered(e) => self.districts.want(e.district_id.0.to_string()),
            AttendanceRecorded(e) => self.refs.want(e.meeting_id.stream()),
            MeetingClosed(e) => self.refs.want(e.meeting_id.stream()),
            RequestResolved(e) => self.refs.want(e.request_id.stream()),
            other => {
                if let Some(project) = Self::project_of(other) {
                    self.projects.want(project.to_string());
                }
            }
        }
        // On the second round, this follows the references loaded by the first.
        if let Some(community) = self.community_of(&event.event) {
            self.communities.want(community.to_string());
        }
    }

    fn collections(&mut self) -> Vec<&mut dyn Store> {
        vec![
            &mut self.districts,
            &mut self.communities,
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
                    e.district_id.0.to_string(),
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
                if let Some(d) = self.districts.get_mut(&e.district_id.0.to_string()) {
                    d.latest = d.latest.max(quarter);
                }
                return Ok(());
            }
            CommunityRegistered(e) => self.communities.put(
                e.community_id.0.to_string(),
                Some(e.district_id.0.to_string()),
                CommunityDoc {
                    id: e.community_id.0,
                    name: e.name.to_string(),
                    district_id: e.district_id.0,
                    registered: quarter,
                    latest: quarter,
                    quarters: BTreeMap::new(),
                },
            ),
            MeetingConvened(e) => self.refs.put(
                e.meeting_id.stream(),
                Some(e.community_id.0.to_string()),
                RefDoc {
                    community_id: e.community_id.0,
                },
            ),
            RequestRaised(e) => self.refs.put(
                e.request_id.stream(),
                Some(e.community_id.0.to_string()),
                RefDoc {
                    community_id: e.community_id.0,
                },
            ),
            ProjectProposed(e) => self.projects.put(
                e.project_id.0.to_string(),
                Some(e.community_id.0.to_string()),
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
            self.apply_to_community(event, &community.to_string());
        }
        Ok(())
    }
}

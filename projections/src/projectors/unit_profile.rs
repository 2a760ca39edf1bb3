//! The unit profile: per unit, the communities it joined (and left), every project it claimed —
//! when, at which meeting, recorded by whom, and how that claim ended — its activities, their
//! totals, and the requests it raised (DOMAIN.md, "Unit profile").
//!
//! Documents: `unit` (memberships, totals, request counts: small whatever the history), `claim`
//! (one per claim, parent = the unit, keyed by the claim event's zero-padded position so a
//! unit's claims list in log order), and small helpers to resolve references: `community` (a
//! name), `project` (title, community, the key of its current claim) and `request` (who raised
//! it). Every claim is kept on purpose — a withdrawn claim stays listed with status `withdrawn`,
//! so supervisors can see who held what and when — but as its own document, so a unit with
//! thousands of claims does not rewrite them all whenever it records an activity. Delivery is
//! the runner's: exactly once per generation, in log order; `apply` is deterministic.

use std::collections::BTreeMap;

use domain::values::MemberKind;
use domain::Event;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::collection::{Collection, Key, Store};
use crate::event::ProjectedEvent;
use crate::projectors::board::Totals;
use crate::readdb::ReadDb;
use crate::{ProjectionError, Projector};

pub const NAME: &str = "unit-profile";

/// How one claim stands: the project's progress while the unit holds it, or `withdrawn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClaimStatus {
    Claimed,
    Launched,
    Completed,
    Cancelled,
    Withdrawn,
}

/// Who recorded a claim: the event's actor (a secretary may record it for the unit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecordedBy {
    pub id: Uuid,
    pub name: String,
    /// The actor's role (`unit_rep`, `community_secretary`, `admin`, …).
    pub role: String,
}

/// One claim of a project by the unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Claim {
    pub project_id: Uuid,
    pub title: String,
    pub community_id: Uuid,
    /// Business time of the claim (RFC 3339).
    pub claimed_at: String,
    /// The meeting at which it was claimed, if any.
    pub meeting_id: Option<Uuid>,
    pub recorded_by: RecordedBy,
    pub status: ClaimStatus,
    /// Business time of the withdrawal, for a withdrawn claim.
    pub withdrawn_at: Option<String>,
}

/// The unit's membership of one community's joint conference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Membership {
    pub community_id: Uuid,
    pub name: String,
    pub kind: MemberKind,
    /// Business time of the (latest) admission.
    pub joined_at: String,
    /// Business time of the withdrawal, when the unit is no longer a member.
    pub withdrawn_at: Option<String>,
    pub current: bool,
}

/// Requests the unit raised, and how many of them the community resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RequestCounts {
    pub raised: u64,
    pub resolved: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UnitRef {
    pub id: Uuid,
    pub name: String,
    pub district_id: Uuid,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct UnitDoc {
    unit: UnitRef,
    communities: BTreeMap<Uuid, Membership>,
    totals: Totals,
    requests: RequestCounts,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CommunityName {
    name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ProjectRef {
    title: String,
    community_id: Uuid,
    /// The `claim` document of the current (or, once cancelled, the last) claim.
    claim: Option<ClaimKey>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RequestRef {
    unit_id: Uuid,
}

/// Builds the unit profiles.
pub struct UnitProfileProjector {
    units: Collection<UnitDoc, Uuid>,
    claims: Collection<Claim, ClaimKey>,
    communities: Collection<CommunityName, Uuid>,
    projects: Collection<ProjectRef, Uuid>,
    requests: Collection<RequestRef, Uuid>,
}

impl Default for UnitProfileProjector {
    fn default() -> Self {
        Self {
            units: Collection::new("unit"),
            claims: Collection::new("claim"),
            communities: Collection::new("community"),
            projects: Collection::new("project"),
            requests: Collection::new("request"),
        }
    }
}

fn key(id: Uuid) -> String {
    id.to_string()
}

/// A claim document's key: its event's position, stored zero-padded (`00000000000000012345`)
/// so keys sort in log order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct ClaimKey(i64);

impl Key for ClaimKey {
    fn write(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = write!(out, "{:020}", self.0);
    }
    fn read(text: &str) -> Option<Self> {
        text.parse().ok().map(Self)
    }
}

impl Serialize for ClaimKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut text = String::with_capacity(20);
        self.write(&mut text);
        serializer.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for ClaimKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::read(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("not a claim key: {text:?}")))
    }
}

impl UnitProfileProjector {
    fn unit_mut(&mut self, unit: Uuid) -> Option<&mut UnitDoc> {
        self.units.get_mut(&unit)
    }

    /// The current claim on `project`.
    fn claim_of(&mut self, project: Uuid) -> Option<&mut Claim> {
        let claim = self.projects.get(&project)?.claim?;
        self.claims.get_mut(&claim)
    }

    /// Asks for `project`, and (second round) for its current claim.
    fn want_claim(&mut self, project: Uuid) {
        if let Some(claim) = self.projects.get(&project).and_then(|p| p.claim) {
            self.claims.want(claim);
        }
        self.projects.want(project);
    }

    fn set_claim_status(&mut self, project: Uuid, status: ClaimStatus) {
        if let Some(claim) = self.claim_of(project) {
            claim.status = status;
        }
    }
}

impl Projector for UnitProfileProjector {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        // 2: claims moved out of the unit document into their own documents.
        2
    }

    fn want(&mut self, event: &ProjectedEvent) {
        use Event::*;
        match &event.event {
            MemberUnitAdmitted(e) => {
                self.units.want(e.unit_id.0);
                self.communities.want(e.community_id.0);
            }
            MemberUnitWithdrawn(e) => self.units.want(e.unit_id.0),
            ProjectClaimed(e) => self.projects.want(e.project_id.0),
            // Second round: the claim named by the project loaded in the first. A claim made in
            // this same batch is in memory already.
            ClaimWithdrawn(e) => self.want_claim(e.project_id.0),
            ProjectLaunched(e) => self.want_claim(e.project_id.0),
            ProjectCompleted(e) => self.want_claim(e.project_id.0),
            ProjectCancelled(e) => self.want_claim(e.project_id.0),
            ActivityRecorded(e) => self.units.want(e.unit_id.0),
            RequestRaised(e) => self.units.want(e.unit_id.0),
            RequestResolved(e) => {
                let request = e.request_id.0;
                if let Some(r) = self.requests.get(&request) {
                    self.units.want(r.unit_id);
                }
                self.requests.want(request);
            }
            DistrictRegistered(_)
            | CommunityRegistered(_)
            | UnitRegistered(_)
            | MeetingConvened(_)
            | AttendanceRecorded(_)
            | MeetingClosed(_)
            | ProjectProposed(_)
            | ProjectApproved(_)
            | FeedbackRecorded(_) => {}
        }
    }

    fn collections(&mut self) -> Vec<&mut dyn Store> {
        vec![
            &mut self.units,
            &mut self.claims,
            &mut self.communities,
            &mut self.projects,
            &mut self.requests,
        ]
    }

    fn apply(&mut self, event: &ProjectedEvent) -> Result<(), String> {
        use Event::*;
        match &event.event {
            CommunityRegistered(e) => self.communities.put(
                e.community_id.0,
                None,
                CommunityName {
                    name: e.name.to_string(),
                },
            ),
            UnitRegistered(e) => self.units.put(
                e.unit_id.0,
                None,
                UnitDoc {
                    unit: UnitRef {
                        id: e.unit_id.0,
                        name: e.name.to_string(),
                        district_id: e.district_id.0,
                    },
                    communities: BTreeMap::new(),
                    totals: Totals::default(),
                    requests: RequestCounts::default(),
                },
            ),
            MemberUnitAdmitted(e) => {
                let name = self
                    .communities
                    .get(&e.community_id.0)
                    .map(|c| c.name.clone())
                    .unwrap_or_default();
                let at = event.business_time();
                if let Some(unit) = self.unit_mut(e.unit_id.0) {
                    unit.communities.insert(
                        e.community_id.0,
                        Membership {
                            community_id: e.community_id.0,
                            name,
                            kind: e.kind,
                            joined_at: at,
                            withdrawn_at: None,
                            current: true,
                        },
                    );
                }
            }
            MemberUnitWithdrawn(e) => {
                let at = event.business_time();
                if let Some(m) = self
                    .unit_mut(e.unit_id.0)
                    .and_then(|u| u.communities.get_mut(&e.community_id.0))
                {
                    m.current = false;
                    m.withdrawn_at = Some(at);
                }
            }
            ProjectProposed(e) => self.projects.put(
                e.project_id.0,
                None,
                ProjectRef {
                    title: e.title.to_string(),
                    community_id: e.community_id.0,
                    claim: None,
                },
            ),
            ProjectClaimed(e) => {
                let Some(project) = self.projects.get_mut(&e.project_id.0) else {
                    return Ok(());
                };
                let claim_key = ClaimKey(event.position);
                project.claim = Some(claim_key);
                let claim = Claim {
                    project_id: e.project_id.0,
                    title: project.title.clone(),
                    community_id: project.community_id,
                    claimed_at: event.business_time(),
                    meeting_id: e.meeting_id.map(|m| m.0),
                    recorded_by: RecordedBy {
                        id: event.actor.id,
                        name: event.actor.name.clone(),
                        role: event.actor.role.clone(),
                    },
                    status: ClaimStatus::Claimed,
                    withdrawn_at: None,
                };
                self.claims.put(claim_key, Some(e.unit_id.0), claim);
            }
            ClaimWithdrawn(e) => {
                let at = event.business_time();
                if let Some(claim) = self.claim_of(e.project_id.0) {
                    claim.status = ClaimStatus::Withdrawn;
                    claim.withdrawn_at = Some(at);
                }
                if let Some(project) = self.projects.get_mut(&e.project_id.0) {
                    project.claim = None;
                }
            }
            ProjectLaunched(e) => self.set_claim_status(e.project_id.0, ClaimStatus::Launched),
            ProjectCompleted(e) => self.set_claim_status(e.project_id.0, ClaimStatus::Completed),
            ProjectCancelled(e) => self.set_claim_status(e.project_id.0, ClaimStatus::Cancelled),
            ActivityRecorded(e) => {
                if let Some(unit) = self.unit_mut(e.unit_id.0) {
                    let t = &mut unit.totals;
                    t.activities += 1;
                    t.participants += u64::from(e.participants.get());
                    t.volunteers += u64::from(e.volunteers.get());
                    t.volunteer_hours += u64::from(e.volunteer_hours.get());
                    t.beneficiaries += u64::from(e.beneficiaries.get());
                    t.funds_yuan += e.funds_yuan.get();
                }
            }
            RequestRaised(e) => {
                self.requests.put(
                    e.request_id.0,
                    None,
                    RequestRef {
                        unit_id: e.unit_id.0,
                    },
                );
                if let Some(unit) = self.unit_mut(e.unit_id.0) {
                    unit.requests.raised += 1;
                }
            }
            RequestResolved(e) => {
                let raiser = self.requests.get(&e.request_id.0).map(|r| r.unit_id);
                if let Some(unit) = raiser.and_then(|u| self.unit_mut(u)) {
                    unit.requests.resolved += 1;
                }
            }
            DistrictRegistered(_)
            | MeetingConvened(_)
            | AttendanceRecorded(_)
            | MeetingClosed(_)
            | ProjectApproved(_)
            | FeedbackRecorded(_) => {}
        }
        Ok(())
    }
}

// ---- The query ---------------------------------------------------------------------------

/// The profile as `GET /v1/units/{id}` answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UnitProfile {
    pub unit: UnitRef,
    /// Every community the unit joined, in order of (latest) admission.
    pub communities: Vec<Membership>,
    /// Every claim the unit made, in log order, withdrawn ones included.
    pub claims: Vec<Claim>,
    /// Activities the unit recorded (the same as `totals.activities`).
    pub activities: u64,
    pub totals: Totals,
    pub requests: RequestCounts,
}

/// The profile of `unit`; `None` when the unit is unknown.
pub async fn unit_profile(db: &ReadDb, unit: Uuid) -> Result<Option<UnitProfile>, ProjectionError> {
    let Some(raw) = db.document(NAME, "unit", &key(unit)).await? else {
        return Ok(None);
    };
    let doc: UnitDoc = serde_json::from_str(&raw)
        .map_err(|e| ProjectionError::Storage(format!("unit profile document: {e}")))?;
    let mut claims = Vec::new();
    for raw in db.children(NAME, "claim", &key(unit)).await? {
        claims.push(
            serde_json::from_str(&raw)
                .map_err(|e| ProjectionError::Storage(format!("unit profile claim: {e}")))?,
        );
    }
    let mut communities: Vec<Membership> = doc.communities.into_values().collect();
    communities.sort_by(|a, b| {
        (a.joined_at.as_str(), a.community_id).cmp(&(b.joined_at.as_str(), b.community_id))
    });
    Ok(Some(UnitProfile {
        unit: doc.unit,
        communities,
        claims,
        activities: doc.totals.activities,
        totals: doc.totals,
        requests: doc.requests,
    }))
}

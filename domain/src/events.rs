//! The events of DOMAIN.md: a versioned contract, past tense, never edited once written.
//!
//! The stored form of an event is its type name, its schema version and its data object. The
//! type names here are forever: renaming one is a migration, never an edit. An older shape is
//! upcast on read by [`crate::upcast`], never rewritten in the log.

use serde::{Deserialize, Serialize};

use crate::ids::*;
use crate::values::*;

/// A district was registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DistrictRegistered {
    pub district_id: DistrictId,
    pub name: Name,
}

/// A community was registered in a district.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommunityRegistered {
    pub community_id: CommunityId,
    pub district_id: DistrictId,
    pub name: Name,
    #[serde(default)]
    pub committee: Option<Name>,
}

/// A unit joined a community's joint conference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberUnitAdmitted {
    pub community_id: CommunityId,
    pub unit_id: UnitId,
    pub kind: MemberKind,
}

/// A unit left a community's joint conference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberUnitWithdrawn {
    pub community_id: CommunityId,
    pub unit_id: UnitId,
    #[serde(default)]
    pub reason: Option<Text>,
}

/// A unit's party organisation was registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnitRegistered {
    pub unit_id: UnitId,
    pub district_id: DistrictId,
    pub name: Name,
}

/// A meeting was convened; the event's `occurred_at` is when it sits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MeetingConvened {
    pub meeting_id: MeetingId,
    pub community_id: CommunityId,
    pub kind: MeetingKind,
    pub title: Name,
    pub agenda: List<Text>,
    #[serde(default)]
    pub venue: Option<Name>,
}

/// Member units were recorded as attending a meeting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttendanceRecorded {
    pub meeting_id: MeetingId,
    pub unit_ids: List<UnitId>,
}

/// A meeting closed with its resolutions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MeetingClosed {
    pub meeting_id: MeetingId,
    pub resolutions: List<Text>,
    #[serde(default)]
    pub minutes: Option<Text>,
}

/// A project was proposed from residents' needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectProposed {
    pub project_id: ProjectId,
    pub community_id: CommunityId,
    pub title: Name,
    pub theme: Theme,
    #[serde(default)]
    pub need: Option<Text>,
}

/// A meeting approved a project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectApproved {
    pub project_id: ProjectId,
    pub meeting_id: MeetingId,
}

/// A member unit claimed a project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectClaimed {
    pub project_id: ProjectId,
    pub unit_id: UnitId,
    #[serde(default)]
    pub meeting_id: Option<MeetingId>,
    #[serde(default)]
    pub commitment: Option<Text>,
}

/// The claimant gave the project back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimWithdrawn {
    pub project_id: ProjectId,
    pub unit_id: UnitId,
    #[serde(default)]
    pub reason: Option<Text>,
}

/// The claimant started delivering the project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectLaunched {
    pub project_id: ProjectId,
    pub unit_id: UnitId,
}

/// An activity of a launched project was recorded (schema version 2; see `upcast`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivityRecorded {
    pub project_id: ProjectId,
    pub activity_id: ActivityId,
    pub unit_id: UnitId,
    pub title: Name,
    pub participants: Count,
    pub volunteers: Count,
    pub volunteer_hours: Count,
    pub beneficiaries: Count,
    pub funds_yuan: Yuan,
    #[serde(default)]
    pub notes: Option<Text>,
}

/// The project was delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectCompleted {
    pub project_id: ProjectId,
    pub unit_id: UnitId,
    #[serde(default)]
    pub summary: Option<Text>,
}

/// Residents' feedback on a completed project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRecorded {
    pub project_id: ProjectId,
    pub rating: Rating,
    #[serde(default)]
    pub comment: Option<Text>,
}

/// The project was cancelled before completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectCancelled {
    pub project_id: ProjectId,
    #[serde(default)]
    pub reason: Option<Text>,
}

/// A member unit asked the community for help.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestRaised {
    pub request_id: RequestId,
    pub community_id: CommunityId,
    pub unit_id: UnitId,
    pub title: Name,
    #[serde(default)]
    pub need: Option<Text>,
}

/// The community resolved a unit's request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestResolved {
    pub request_id: RequestId,
    #[serde(default)]
    pub resolution: Option<Text>,
}

/// Any event of DOMAIN.md. Serialised adjacently tagged: `{"type": …, "data": {…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    DistrictRegistered(DistrictRegistered),
    CommunityRegistered(CommunityRegistered),
    MemberUnitAdmitted(MemberUnitAdmitted),
    MemberUnitWithdrawn(MemberUnitWithdrawn),
    UnitRegistered(UnitRegistered),
    MeetingConvened(MeetingConvened),
    AttendanceRecorded(AttendanceRecorded),
    MeetingClosed(MeetingClosed),
    ProjectProposed(ProjectProposed),
    ProjectApproved(ProjectApproved),
    ProjectClaimed(ProjectClaimed),
    ClaimWithdrawn(ClaimWithdrawn),
    ProjectLaunched(ProjectLaunched),
    ActivityRecorded(ActivityRecorded),
    ProjectCompleted(ProjectCompleted),
    FeedbackRecorded(FeedbackRecorded),
    ProjectCancelled(ProjectCancelled),
    RequestRaised(RequestRaised),
    RequestResolved(RequestResolved),
}

/// Every event type name.
pub const EVENT_TYPES: [&str; 19] = [
    "DistrictRegistered",
    "CommunityRegistered",
    "MemberUnitAdmitted",
    "MemberUnitWithdrawn",
    "UnitRegistered",
    "MeetingConvened",
    "AttendanceRecorded",
    "MeetingClosed",
    "ProjectProposed",
    "ProjectApproved",
    "ProjectClaimed",
    "ClaimWithdrawn",
    "ProjectLaunched",
    "ActivityRecorded",
    "ProjectCompleted",
    "FeedbackRecorded",
    "ProjectCancelled",
    "RequestRaised",
    "RequestResolved",
];

impl Event {
    /// The stable type name stored with the event.
    pub fn event_type(&self) -> &'static str {
        match self {
            Event::DistrictRegistered(_) => "DistrictRegistered",
            Event::CommunityRegistered(_) => "CommunityRegistered",
            Event::MemberUnitAdmitted(_) => "MemberUnitAdmitted",
            Event::MemberUnitWithdrawn(_) => "MemberUnitWithdrawn",
            Event::UnitRegistered(_) => "UnitRegistered",
            Event::MeetingConvened(_) => "MeetingConvened",
            Event::AttendanceRecorded(_) => "AttendanceRecorded",
            Event::MeetingClosed(_) => "MeetingClosed",
            Event::ProjectProposed(_) => "ProjectProposed",
            Event::ProjectApproved(_) => "ProjectApproved",
            Event::ProjectClaimed(_) => "ProjectClaimed",
            Event::ClaimWithdrawn(_) => "ClaimWithdrawn",
            Event::ProjectLaunched(_) => "ProjectLaunched",
            Event::ActivityRecorded(_) => "ActivityRecorded",
            Event::ProjectCompleted(_) => "ProjectCompleted",
            Event::FeedbackRecorded(_) => "FeedbackRecorded",
            Event::ProjectCancelled(_) => "ProjectCancelled",
            Event::RequestRaised(_) => "RequestRaised",
            Event::RequestResolved(_) => "RequestResolved",
        }
    }

    /// The schema version this build writes for the event's type.
    pub fn schema_version(&self) -> i32 {
        crate::upcast::current_schema_version(self.event_type())
    }

    /// The event's data object, as stored.
    pub fn data(&self) -> serde_json::Value {
        // Serialising plain data structs to a Value cannot fail: no maps with non-string keys.
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(mut tagged)) => {
                tagged.remove("data").unwrap_or(serde_json::Value::Null)
            }
            _ => serde_json::Value::Null,
        }
    }
}

macro_rules! into_event {
    ($($name:ident),* $(,)?) => {
        $(
            impl From<$name> for Event {
                fn from(event: $name) -> Self {
                    Event::$name(event)
                }
            }
        )*
    };
}

into_event!(
    DistrictRegistered,
    CommunityRegistered,
    MemberUnitAdmitted,
    MemberUnitWithdrawn,
    UnitRegistered,
    MeetingConvened,
    AttendanceRecorded,
    MeetingClosed,
    ProjectProposed,
    ProjectApproved,
    ProjectClaimed,
    ClaimWithdrawn,
    ProjectLaunched,
    ActivityRecorded,
    ProjectCompleted,
    FeedbackRecorded,
    ProjectCancelled,
    RequestRaised,
    RequestResolved,
);

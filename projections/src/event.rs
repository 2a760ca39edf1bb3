//! An event as projectors see it: the domain event (upcast to this build's shape) plus the
//! envelope facts reports need — position, business time, recording time, actor.

use chrono::{DateTime, FixedOffset, Utc};
use domain::Event;
use serde::Deserialize;
use store::RawEvent;
use uuid::Uuid;

use crate::ProjectionError;

/// Who recorded an event.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Actor {
    pub id: Uuid,
    pub name: String,
    pub role: String,
}

/// Whom the actor acted for.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct ActingFor {
    pub kind: String,
    pub id: Option<Uuid>,
}

#[derive(Deserialize)]
struct Metadata {
    actor: Actor,
    acting_for: Option<ActingFor>,
    command: String,
    occurred_at: String,
}

/// One decoded event of the log.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectedEvent {
    pub position: i64,
    pub stream: String,
    pub event: Event,
    /// The business time: when the meeting sat, when the activity happened.
    pub occurred_at: DateTime<FixedOffset>,
    pub recorded_at: DateTime<Utc>,
    pub actor: Actor,
    pub acting_for: Option<ActingFor>,
    pub command: String,
}

impl ProjectedEvent {
    /// The business time as read models show it: RFC 3339 in UTC, to the second.
    pub fn business_time(&self) -> String {
        self.occurred_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }
}

impl TryFrom<RawEvent> for ProjectedEvent {
    type Error = ProjectionError;

    /// Decodes straight from the stored text into the event's type (see
    /// [`domain::upcast::upcast_str`]); any event this build cannot read is poison.
    fn try_from(raw: RawEvent) -> Result<Self, ProjectionError> {
        let poison = |detail: String| ProjectionError::Poison {
            position: raw.position,
            detail,
        };
        let event = domain::upcast::upcast_str(&raw.event_type, raw.schema_version, &raw.data)
            .map_err(|e| poison(e.to_string()))?;
        let metadata: Metadata =
            serde_json::from_str(&raw.metadata).map_err(|e| poison(format!("metadata: {e}")))?;
        let occurred_at = DateTime::parse_from_rfc3339(&metadata.occurred_at)
            .map_err(|e| poison(format!("occurred_at: {e}")))?;
        Ok(Self {
            position: raw.position,
            stream: raw.stream,
            event,
            occurred_at,
            recorded_at: raw.recorded_at,
            actor: metadata.actor,
            acting_for: metadata.acting_for,
            command: metadata.command,
        })
    }
}

/// Where an event places itself in a community: by naming it, or through the meeting, project
/// or request it concerns, whose community a projector keeps in its own documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommunityRef {
    Named(Uuid),
    Meeting(domain::ids::MeetingId),
    Project(domain::ids::ProjectId),
    Request(domain::ids::RequestId),
    /// District and unit registrations belong to no community.
    None,
}

/// The community reference of `event`.
pub fn community_ref(event: &Event) -> CommunityRef {
    match event {
        Event::CommunityRegistered(e) => CommunityRef::Named(e.community_id.0),
        Event::MemberUnitAdmitted(e) => CommunityRef::Named(e.community_id.0),
        Event::MemberUnitWithdrawn(e) => CommunityRef::Named(e.community_id.0),
        Event::MeetingConvened(e) => CommunityRef::Named(e.community_id.0),
        Event::ProjectProposed(e) => CommunityRef::Named(e.community_id.0),
        Event::RequestRaised(e) => CommunityRef::Named(e.community_id.0),
        Event::AttendanceRecorded(e) => CommunityRef::Meeting(e.meeting_id),
        Event::MeetingClosed(e) => CommunityRef::Meeting(e.meeting_id),
        Event::ProjectApproved(e) => CommunityRef::Project(e.project_id),
        Event::ProjectClaimed(e) => CommunityRef::Project(e.project_id),
        Event::ClaimWithdrawn(e) => CommunityRef::Project(e.project_id),
        Event::ProjectLaunched(e) => CommunityRef::Project(e.project_id),
        Event::ActivityRecorded(e) => CommunityRef::Project(e.project_id),
        Event::ProjectCompleted(e) => CommunityRef::Project(e.project_id),
        Event::FeedbackRecorded(e) => CommunityRef::Project(e.project_id),
        Event::ProjectCancelled(e) => CommunityRef::Project(e.project_id),
        Event::RequestResolved(e) => CommunityRef::Request(e.request_id),
        Event::DistrictRegistered(_) | Event::UnitRegistered(_) => CommunityRef::None,
    }
}

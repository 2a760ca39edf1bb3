//! Business rejections: a rule of DOMAIN.md said no. Each has a stable `code` clients branch on.
//!
//! These are never infrastructure failures; the store being down is not a `DomainError`.

use crate::ids::{CommunityId, DistrictId, MeetingId, UnitId};

/// How the gateway should present a rejection (it maps these to HTTP statuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionKind {
    /// The command's own target does not exist (404).
    NotFound,
    /// The command names something else that does not exist (422).
    UnknownReference,
    /// The rules refuse the command in the current state (409).
    Conflict,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// `not_found`: the command's target stream has no events.
    #[error("{stream} does not exist")]
    NotFound { stream: String },
    /// `already_exists`: a creating command names an id that is taken.
    #[error("{what} already exists")]
    AlreadyExists { what: String },
    /// `unknown_district`
    #[error("district {0} is not registered")]
    UnknownDistrict(DistrictId),
    /// `unknown_community`
    #[error("community {0} is not registered")]
    UnknownCommunity(CommunityId),
    /// `unknown_unit`
    #[error("unit {0} is not registered")]
    UnknownUnit(UnitId),
    /// `unknown_meeting`
    #[error("meeting {0} does not exist")]
    UnknownMeeting(MeetingId),
    /// `not_a_member_unit`: only current member units may claim, attend or raise requests.
    #[error("unit {unit} is not a current member unit of community {community}")]
    NotAMemberUnit {
        community: CommunityId,
        unit: UnitId,
    },
    /// `already_member`
    #[error("unit {unit} is already a member unit of community {community}")]
    AlreadyMember {
        community: CommunityId,
        unit: UnitId,
    },
    /// `project_already_claimed`: a project has at most one claimant at a time.
    #[error("the project is already claimed by unit {claimant}")]
    ProjectAlreadyClaimed { claimant: UnitId },
    /// `invalid_transition`: the lifecycle does not allow this command now.
    #[error("{command} is not allowed while the {aggregate} is {state}")]
    InvalidTransition {
        command: &'static str,
        aggregate: &'static str,
        state: &'static str,
    },
    /// `meeting_already_closed`
    #[error("meeting {0} is already closed")]
    MeetingAlreadyClosed(MeetingId),
    /// `meeting_of_another_community`
    #[error("meeting {meeting} belongs to community {meeting_community}, not {expected}")]
    MeetingOfAnotherCommunity {
        meeting: MeetingId,
        meeting_community: CommunityId,
        expected: CommunityId,
    },
    /// `id_not_assigned`: a creating command (or RecordActivity) reached the decider without its
    /// own id. A caller bug, never a client's: the command handler must call
    /// [`crate::Command::assign_ids`] first. Deciders have no randomness to make one up.
    #[error("the command's {field} was not assigned before deciding")]
    IdNotAssigned { field: &'static str },
}

impl DomainError {
    /// The stable snake_case code of API.md.
    pub fn code(&self) -> &'static str {
        match self {
            DomainError::NotFound { .. } => "not_found",
            DomainError::AlreadyExists { .. } => "already_exists",
            DomainError::UnknownDistrict(_) => "unknown_district",
            DomainError::UnknownCommunity(_) => "unknown_community",
            DomainError::UnknownUnit(_) => "unknown_unit",
            DomainError::UnknownMeeting(_) => "unknown_meeting",
            DomainError::NotAMemberUnit { .. } => "not_a_member_unit",
            DomainError::AlreadyMember { .. } => "already_member",
            DomainError::ProjectAlreadyClaimed { .. } => "project_already_claimed",
            DomainError::InvalidTransition { .. } => "invalid_transition",
            DomainError::MeetingAlreadyClosed(_) => "meeting_already_closed",
            DomainError::MeetingOfAnotherCommunity { .. } => "meeting_of_another_community",
            DomainError::IdNotAssigned { .. } => "id_not_assigned",
        }
    }

    /// Which family of refusal this is.
    pub fn kind(&self) -> RejectionKind {
        match self {
            DomainError::NotFound { .. } => RejectionKind::NotFound,
            DomainError::UnknownDistrict(_)
            | DomainError::UnknownCommunity(_)
            | DomainError::UnknownUnit(_)
            | DomainError::UnknownMeeting(_)
            | DomainError::IdNotAssigned { .. } => RejectionKind::UnknownReference,
            _ => RejectionKind::Conflict,
        }
    }
}

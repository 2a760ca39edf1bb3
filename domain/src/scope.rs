//! Whom a command concerns, for authorisation: the district, community and unit it touches.
//!
//! The gateway and command handler compare a token's scope with this. It is read from the
//! command's body and its target's history only (no other streams), so it is known before any
//! fact is loaded. A field is `None` when neither the body nor the history tells it.

use crate::commands::Command;
use crate::events::Event;
use crate::ids::{CommunityId, DistrictId, UnitId};
use crate::state::StreamState;

/// The district, community and unit a command concerns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Scope {
    pub district: Option<DistrictId>,
    pub community: Option<CommunityId>,
    /// The unit the command acts for: the claimant, or the unit raising a request.
    pub unit: Option<UnitId>,
}

/// Whom `command` concerns, given its target stream's `history`.
pub fn scope_of(command: &Command, history: &[Event]) -> Scope {
    let mut state = crate::aggregates::initial_state(command);
    state.evolve_all(history);
    scope_of_state(command, &state)
}

/// [`scope_of`] from the target stream's folded `state`.
pub fn scope_of_state(command: &Command, state: &StreamState) -> Scope {
    match command {
        Command::RegisterDistrict(c) => Scope {
            district: c.district_id,
            ..Scope::default()
        },
        Command::RegisterCommunity(c) => Scope {
            district: Some(c.district_id),
            community: c.community_id,
            unit: None,
        },
        Command::RegisterUnit(c) => Scope {
            district: Some(c.district_id),
            ..Scope::default()
        },
        Command::AdmitMemberUnit(c) => community_scope(c.community_id, state),
        Command::WithdrawMemberUnit(c) => community_scope(c.community_id, state),
        Command::ConveneMeeting(c) => of_community(c.community_id),
        Command::RecordAttendance(_) | Command::CloseMeeting(_) => Scope {
            community: state.meeting().map(|m| m.community_id),
            ..Scope::default()
        },
        Command::ProposeProject(c) => of_community(c.community_id),
        Command::ClaimProject(c) => Scope {
            unit: Some(c.unit_id),
            ..project_scope(state, false)
        },
        Command::WithdrawClaim(_)
        | Command::LaunchProject(_)
        | Command::RecordActivity(_)
        | Command::CompleteProject(_) => project_scope(state, true),
        Command::ApproveProject(_) | Command::RecordFeedback(_) | Command::CancelProject(_) => {
            project_scope(state, false)
        }
        Command::RaiseRequest(c) => Scope {
            unit: Some(c.unit_id),
            ..of_community(c.community_id)
        },
        Command::ResolveRequest(_) => Scope {
            community: state.request().map(|r| r.community_id),
            ..Scope::default()
        },
    }
}

fn of_community(community: CommunityId) -> Scope {
    Scope {
        community: Some(community),
        ..Scope::default()
    }
}

/// A command on the community's own stream: its district is in the history.
fn community_scope(community: CommunityId, state: &StreamState) -> Scope {
    Scope {
        district: state.community().map(|c| c.district_id),
        ..of_community(community)
    }
}

/// A command on a project's stream; `for_claimant`: it acts for the current claimant.
fn project_scope(state: &StreamState, for_claimant: bool) -> Scope {
    let project = state.project();
    Scope {
        district: None,
        community: project.map(|p| p.community_id),
        unit: project.filter(|_| for_claimant).and_then(|p| p.claimant()),
    }
}

#[cfg(test)]
mod tests;

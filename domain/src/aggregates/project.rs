//! The Project aggregate: a party-building project (党建项目) from proposal to feedback.
//!
//! The lifecycle is proposed → (approved) → claimed → launched → completed, cancelled from any
//! state before completed. A project has at most one claimant at a time; a withdrawn claim
//! returns the project to where it was before (approved or proposed). Only a current member unit
//! of the project's community may claim it, which is why a claim reads the community, the unit
//! and (optionally) the meeting as facts.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::commands::{
    ApproveProject, CancelProject, ClaimProject, CompleteProject, LaunchProject, ProposeProject,
    RecordActivity, RecordFeedback, WithdrawClaim,
};
use crate::error::DomainError;
use crate::events::*;
use crate::facts::Facts;
use crate::ids::{ActivityId, CommunityId, MeetingId, ProjectId, UnitId};
use crate::values::{Name, Theme};

use super::{assigned, not_found};

/// Where a project is in its lifecycle, with what each stage knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum ProjectStatus {
    /// Proposed, waiting for a meeting's approval or a claim.
    Proposed,
    /// Approved by `meeting_id`, waiting for a claim.
    Approved { meeting_id: MeetingId },
    /// Claimed by `claimant` (at `meeting_id`, if at a meeting). `approved_by` remembers the
    /// approving meeting, so a withdrawn claim returns the project to approved, else proposed.
    Claimed {
        claimant: UnitId,
        meeting_id: Option<MeetingId>,
        approved_by: Option<MeetingId>,
    },
    /// Being delivered by `claimant`.
    Launched { claimant: UnitId },
    /// Delivered by `claimant`; residents may give feedback.
    Completed { claimant: UnitId },
    /// Cancelled before completion; nothing more happens to it.
    Cancelled,
}

impl ProjectStatus {
    /// The status as one lowercase word, as errors and read models name it.
    pub fn name(&self) -> &'static str {
        match self {
            ProjectStatus::Proposed => "proposed",
            ProjectStatus::Approved { .. } => "approved",
            ProjectStatus::Claimed { .. } => "claimed",
            ProjectStatus::Launched { .. } => "launched",
            ProjectStatus::Completed { .. } => "completed",
            ProjectStatus::Cancelled => "cancelled",
        }
    }

    /// The unit that claimed the project and still holds it (also once completed).
    pub fn claimant(&self) -> Option<UnitId> {
        match self {
            ProjectStatus::Claimed { claimant, .. }
            | ProjectStatus::Launched { claimant }
            | ProjectStatus::Completed { claimant } => Some(*claimant),
            _ => None,
        }
    }

    /// The meeting that approved the project, while the project waits for or holds a claim.
    fn approval(&self) -> Option<MeetingId> {
        match self {
            ProjectStatus::Approved { meeting_id } => Some(*meeting_id),
            ProjectStatus::Claimed { approved_by, .. } => *approved_by,
            _ => None,
        }
    }
}

/// A proposed project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectState {
    pub project_id: ProjectId,
    pub community_id: CommunityId,
    pub title: Name,
    pub theme: Theme,
    pub status: ProjectStatus,
    /// Every activity recorded, so one cannot be recorded twice.
    pub activities: BTreeSet<ActivityId>,
}

impl ProjectState {
    /// The project's current claimant, if it has one.
    pub fn claimant(&self) -> Option<UnitId> {
        self.status.claimant()
    }
}

/// The decider's state: `None` until the project is proposed.
pub type State = Option<ProjectState>;

/// The commands a project's stream accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ProjectCommand<'a> {
    Propose(&'a ProposeProject),
    Approve(&'a ApproveProject),
    Claim(&'a ClaimProject),
    WithdrawClaim(&'a WithdrawClaim),
    Launch(&'a LaunchProject),
    RecordActivity(&'a RecordActivity),
    Complete(&'a CompleteProject),
    RecordFeedback(&'a RecordFeedback),
    Cancel(&'a CancelProject),
}

impl ProjectCommand<'_> {
    /// The project the command is about (`None` for a proposal whose id is not assigned yet).
    pub fn project_id(&self) -> Option<ProjectId> {
        Some(match self {
            ProjectCommand::Propose(c) => return c.project_id,
            ProjectCommand::Approve(c) => c.project_id,
            ProjectCommand::Claim(c) => c.project_id,
            ProjectCommand::WithdrawClaim(c) => c.project_id,
            ProjectCommand::Launch(c) => c.project_id,
            ProjectCommand::RecordActivity(c) => c.project_id,
            ProjectCommand::Complete(c) => c.project_id,
            ProjectCommand::RecordFeedback(c) => c.project_id,
            ProjectCommand::Cancel(c) => c.project_id,
        })
    }
}

/// The streams besides its own that `command` reads.
pub fn required_facts(state: &State, command: &ProjectCommand<'_>) -> Vec<String> {
    match (state, command) {
        (None, ProjectCommand::Propose(c)) => vec![c.community_id.stream()],
        (Some(_), ProjectCommand::Approve(c)) => vec![c.meeting_id.stream()],
        (Some(project), ProjectCommand::Claim(c)) => {
            let mut streams = vec![project.community_id.stream(), c.unit_id.stream()];
            streams.extend(c.meeting_id.map(|m| m.stream()));
            streams
        }
        _ => Vec::new(),
    }
}

/// Decides `command` on a project in `state`.
pub fn decide(
    state: &State,
    command: &ProjectCommand<'_>,
    facts: &Facts,
) -> Result<Vec<Event>, DomainError> {
    match (state, command) {
        (None, ProjectCommand::Propose(c)) => propose(c, facts),
        (None, other) => Err(not_found(
            other.project_id().map(|id| id.stream()).unwrap_or_default(),
        )),
        (Some(project), command) => decide_on(project, command, facts).map(|event| vec![event]),
    }
}

/// Decides `command` on an existing project: the one event it emits.
fn decide_on(
    project: &ProjectState,
    command: &ProjectCommand<'_>,
    facts: &Facts,
) -> Result<Event, DomainError> {
    let project_id = project.project_id;
    let status = project.status;
    Ok(match command {
        ProjectCommand::Propose(_) => {
            return Err(DomainError::AlreadyExists {
                what: project_id.stream(),
            })
        }
        ProjectCommand::Approve(c) => {
            check_meeting(project, c.meeting_id, facts)?;
            match status {
                ProjectStatus::Proposed => Event::ProjectApproved(ProjectApproved {
                    project_id,
                    meeting_id: c.meeting_id,
                }),
                _ => return Err(refused("ApproveProject", status)),
            }
        }
        ProjectCommand::Claim(c) => claim(project, c, facts)?,
        ProjectCommand::WithdrawClaim(c) => match status {
            ProjectStatus::Claimed { claimant, .. } => Event::ClaimWithdrawn(ClaimWithdrawn {
                project_id,
                unit_id: claimant,
                reason: c.reason.clone(),
            }),
            _ => return Err(refused("WithdrawClaim", status)),
        },
        ProjectCommand::Launch(_) => match status {
            ProjectStatus::Claimed { claimant, .. } => Event::ProjectLaunched(ProjectLaunched {
                project_id,
                unit_id: claimant,
            }),
            _ => return Err(refused("LaunchProject", status)),
        },
        ProjectCommand::RecordActivity(c) => record_activity(project, c)?,
        ProjectCommand::Complete(c) => match status {
            ProjectStatus::Launched { claimant } => Event::ProjectCompleted(ProjectCompleted {
                project_id,
                unit_id: claimant,
                summary: c.summary.clone(),
            }),
            _ => return Err(refused("CompleteProject", status)),
        },
        ProjectCommand::RecordFeedback(c) => match status {
            ProjectStatus::Completed { .. } => Event::FeedbackRecorded(FeedbackRecorded {
                project_id,
                rating: c.rating,
                comment: c.comment.clone(),
            }),
            _ => return Err(refused("RecordFeedback", status)),
        },
        ProjectCommand::Cancel(c) => match status {
            ProjectStatus::Completed { .. } | ProjectStatus::Cancelled => {
                return Err(refused("CancelProject", status))
            }
            _ => Event::ProjectCancelled(ProjectCancelled {
                project_id,
                reason: c.reason.clone(),
            }),
        },
    })
}

fn propose(c: &ProposeProject, facts: &Facts) -> Result<Vec<Event>, DomainError> {
    let project_id = assigned(c.project_id, "project_id")?;
    if facts.community(c.community_id).is_none() {
        return Err(DomainError::UnknownCommunity(c.community_id));
    }
    Ok(vec![Event::ProjectProposed(ProjectProposed {
        project_id,
        community_id: c.community_id,
        title: c.title.clone(),
        theme: c.theme,
        need: c.need.clone(),
    })])
}

/// Checks in order: the community and unit are registered, the meeting (if any) is one of
/// the project's community, the unit is a current member, the project is free to claim.
fn claim(project: &ProjectState, c: &ClaimProject, facts: &Facts) -> Result<Event, DomainError> {
    let community = facts
        .community(project.community_id)
        .ok_or(DomainError::UnknownCommunity(project.community_id))?;
    if facts.unit(c.unit_id).is_none() {
        return Err(DomainError::UnknownUnit(c.unit_id));
    }
    if let Some(meeting_id) = c.meeting_id {
        check_meeting(project, meeting_id, facts)?;
    }
    community.ensure_member(c.unit_id)?;
    match project.status {
        ProjectStatus::Proposed | ProjectStatus::Approved { .. } => {
            Ok(Event::ProjectClaimed(ProjectClaimed {
                project_id: project.project_id,
                unit_id: c.unit_id,
                meeting_id: c.meeting_id,
                commitment: c.commitment.clone(),
            }))
        }
        ProjectStatus::Claimed { claimant, .. } | ProjectStatus::Launched { claimant } => {
            Err(DomainError::ProjectAlreadyClaimed { claimant })
        }
        status => Err(refused("ClaimProject", status)),
    }
}

fn record_activity(project: &ProjectState, c: &RecordActivity) -> Result<Event, DomainError> {
    let ProjectStatus::Launched { claimant } = project.status else {
        return Err(refused("RecordActivity", project.status));
    };
    let activity_id = assigned(c.activity_id, "activity_id")?;
    if project.activities.contains(&activity_id) {
        return Err(DomainError::AlreadyExists {
            what: format!("activity {activity_id} of {}", project.project_id.stream()),
        });
    }
    Ok(Event::ActivityRecorded(ActivityRecorded {
        project_id: project.project_id,
        activity_id,
        unit_id: claimant,
        title: c.title.clone(),
        participants: c.participants,
        volunteers: c.volunteers,
        volunteer_hours: c.volunteer_hours,
        beneficiaries: c.beneficiaries,
        funds_yuan: c.funds_yuan,
        notes: c.notes.clone(),
    }))
}

/// `unknown_meeting` or `meeting_of_another_community` unless the meeting is one of the
/// project's community.
fn check_meeting(
    project: &ProjectState,
    meeting_id: MeetingId,
    facts: &Facts,
) -> Result<(), DomainError> {
    let meeting = facts
        .meeting(meeting_id)
        .ok_or(DomainError::UnknownMeeting(meeting_id))?;
    if meeting.community_id != project.community_id {
        return Err(DomainError::MeetingOfAnotherCommunity {
            meeting: meeting_id,
            meeting_community: meeting.community_id,
            expected: project.community_id,
        });
    }
    Ok(())
}

fn refused(command: &'static str, status: ProjectStatus) -> DomainError {
    DomainError::InvalidTransition {
        command,
        aggregate: "project",
        state: status.name(),
    }
}

/// The state after `event`; events of other aggregates leave it as it was.
pub fn evolve(state: State, event: &Event) -> State {
    let Some(mut project) = state else {
        return match event {
            Event::ProjectProposed(e) => Some(ProjectState {
                project_id: e.project_id,
                community_id: e.community_id,
                title: e.title.clone(),
                theme: e.theme,
                status: ProjectStatus::Proposed,
                activities: BTreeSet::new(),
            }),
            _ => None,
        };
    };
    project.status = match event {
        Event::ProjectApproved(e) => ProjectStatus::Approved {
            meeting_id: e.meeting_id,
        },
        Event::ProjectClaimed(e) => ProjectStatus::Claimed {
            claimant: e.unit_id,
            meeting_id: e.meeting_id,
            approved_by: project.status.approval(),
        },
        Event::ClaimWithdrawn(_) => match project.status.approval() {
            Some(meeting_id) => ProjectStatus::Approved { meeting_id },
            None => ProjectStatus::Proposed,
        },
        Event::ProjectLaunched(e) => ProjectStatus::Launched {
            claimant: e.unit_id,
        },
        Event::ProjectCompleted(e) => ProjectStatus::Completed {
            claimant: e.unit_id,
        },
        Event::ProjectCancelled(_) => ProjectStatus::Cancelled,
        Event::ActivityRecorded(e) => {
            project.activities.insert(e.activity_id);
            project.status
        }
        _ => project.status,
    };
    Some(project)
}

/// The state after all of `events`, from nothing.
pub fn fold(events: &[Event]) -> State {
    events.iter().fold(None, evolve)
}

#[cfg(test)]
mod tests;

//! The Meeting aggregate: one sitting of a community's joint conference.
//!
//! A meeting is convened for a registered community, records which member units attended while
//! it is open, and closes exactly once with its resolutions. Projects read it as a fact when a
//! meeting approves or witnesses a claim.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::commands::{CloseMeeting, ConveneMeeting, RecordAttendance};
use crate::error::DomainError;
use crate::events::{AttendanceRecorded, Event, MeetingClosed, MeetingConvened};
use crate::facts::Facts;
use crate::ids::{CommunityId, MeetingId, UnitId};
use crate::values::{MeetingKind, Name};

use super::{assigned, not_found};

/// Whether a meeting still takes attendance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeetingStatus {
    Open,
    Closed,
}

/// A convened meeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeetingState {
    pub meeting_id: MeetingId,
    pub community_id: CommunityId,
    pub kind: MeetingKind,
    pub title: Name,
    /// Every unit recorded as attending.
    pub attendees: BTreeSet<UnitId>,
    pub status: MeetingStatus,
}

/// The decider's state: `None` until the meeting is convened.
pub type State = Option<MeetingState>;

/// The commands a meeting's stream accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MeetingCommand<'a> {
    Convene(&'a ConveneMeeting),
    RecordAttendance(&'a RecordAttendance),
    Close(&'a CloseMeeting),
}

/// The streams besides its own that `command` reads.
pub fn required_facts(state: &State, command: &MeetingCommand<'_>) -> Vec<String> {
    match (state, command) {
        (None, MeetingCommand::Convene(c)) => vec![c.community_id.stream()],
        (Some(meeting), MeetingCommand::RecordAttendance(_)) => {
            vec![meeting.community_id.stream()]
        }
        _ => Vec::new(),
    }
}

/// Decides `command` on a meeting in `state`.
pub fn decide(
    state: &State,
    command: &MeetingCommand<'_>,
    facts: &Facts,
) -> Result<Vec<Event>, DomainError> {
    match command {
        MeetingCommand::Convene(c) => convene(state, c, facts),
        MeetingCommand::RecordAttendance(c) => {
            let meeting = state
                .as_ref()
                .ok_or_else(|| not_found(c.meeting_id.stream()))?;
            let community = facts
                .community(meeting.community_id)
                .ok_or(DomainError::UnknownCommunity(meeting.community_id))?;
            for unit in c.unit_ids.items() {
                community.ensure_member(*unit)?;
            }
            ensure_open(meeting)?;
            Ok(vec![Event::AttendanceRecorded(AttendanceRecorded {
                meeting_id: c.meeting_id,
                unit_ids: c.unit_ids.clone(),
            })])
        }
        MeetingCommand::Close(c) => {
            let meeting = state
                .as_ref()
                .ok_or_else(|| not_found(c.meeting_id.stream()))?;
            ensure_open(meeting)?;
            Ok(vec![Event::MeetingClosed(MeetingClosed {
                meeting_id: c.meeting_id,
                resolutions: c.resolutions.clone(),
                minutes: c.minutes.clone(),
            })])
        }
    }
}

fn convene(state: &State, c: &ConveneMeeting, facts: &Facts) -> Result<Vec<Event>, DomainError> {
    let meeting_id = assigned(c.meeting_id, "meeting_id")?;
    if state.is_some() {
        return Err(DomainError::AlreadyExists {
            what: meeting_id.stream(),
        });
    }
    if facts.community(c.community_id).is_none() {
        return Err(DomainError::UnknownCommunity(c.community_id));
    }
    Ok(vec![Event::MeetingConvened(MeetingConvened {
        meeting_id,
        community_id: c.community_id,
        kind: c.kind,
        title: c.title.clone(),
        agenda: c.agenda.clone(),
        venue: c.venue.clone(),
    })])
}

fn ensure_open(meeting: &MeetingState) -> Result<(), DomainError> {
    match meeting.status {
        MeetingStatus::Open => Ok(()),
        MeetingStatus::Closed => Err(DomainError::MeetingAlreadyClosed(meeting.meeting_id)),
    }
}

/// The state after `event`; events of other aggregates leave it as it was.
pub fn evolve(state: State, event: &Event) -> State {
    match (state, event) {
        (None, Event::MeetingConvened(e)) => Some(MeetingState {
            meeting_id: e.meeting_id,
            community_id: e.community_id,
            kind: e.kind,
            title: e.title.clone(),
            attendees: BTreeSet::new(),
            status: MeetingStatus::Open,
        }),
        (Some(mut meeting), Event::AttendanceRecorded(e)) => {
            meeting.attendees.extend(e.unit_ids.items().iter().copied());
            Some(meeting)
        }
        (Some(mut meeting), Event::MeetingClosed(_)) => {
            meeting.status = MeetingStatus::Closed;
            Some(meeting)
        }
        (state, _) => state,
    }
}

/// The state after all of `events`, from nothing.
pub fn fold(events: &[Event]) -> State {
    events.iter().fold(None, evolve)
}

#[cfg(test)]
mod tests;

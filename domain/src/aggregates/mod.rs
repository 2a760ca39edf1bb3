//! The six aggregates of DOMAIN.md, each a decider: an initial state (`None`), `evolve`, `decide`.
//!
//! This module routes a [`Command`] to the aggregate whose stream it targets, folds that
//! stream's history into the aggregate's state, and lets the aggregate decide. Each aggregate
//! also names the other streams its decision reads (`required_facts`), and reads no others.

pub mod community;
pub mod district;
pub mod meeting;
pub mod project;
pub mod request;
pub mod unit;

use crate::commands::Command;
use crate::error::DomainError;
use crate::events::Event;
use crate::facts::Facts;
use crate::state::StreamState;

use community::CommunityCommand;
use district::DistrictCommand;
use meeting::MeetingCommand;
use project::ProjectCommand;
use request::RequestCommand;
use unit::UnitCommand;

/// A command, sorted by the aggregate that decides it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AggregateCommand<'a> {
    District(DistrictCommand<'a>),
    Community(CommunityCommand<'a>),
    Unit(UnitCommand<'a>),
    Meeting(MeetingCommand<'a>),
    Project(ProjectCommand<'a>),
    Request(RequestCommand<'a>),
}

impl<'a> From<&'a Command> for AggregateCommand<'a> {
    fn from(command: &'a Command) -> Self {
        use AggregateCommand as A;
        match command {
            Command::RegisterDistrict(c) => A::District(DistrictCommand::Register(c)),
            Command::RegisterCommunity(c) => A::Community(CommunityCommand::Register(c)),
            Command::AdmitMemberUnit(c) => A::Community(CommunityCommand::AdmitMemberUnit(c)),
            Command::WithdrawMemberUnit(c) => A::Community(CommunityCommand::WithdrawMemberUnit(c)),
            Command::RegisterUnit(c) => A::Unit(UnitCommand::Register(c)),
            Command::ConveneMeeting(c) => A::Meeting(MeetingCommand::Convene(c)),
            Command::RecordAttendance(c) => A::Meeting(MeetingCommand::RecordAttendance(c)),
            Command::CloseMeeting(c) => A::Meeting(MeetingCommand::Close(c)),
            Command::ProposeProject(c) => A::Project(ProjectCommand::Propose(c)),
            Command::ApproveProject(c) => A::Project(ProjectCommand::Approve(c)),
            Command::ClaimProject(c) => A::Project(ProjectCommand::Claim(c)),
            Command::WithdrawClaim(c) => A::Project(ProjectCommand::WithdrawClaim(c)),
            Command::LaunchProject(c) => A::Project(ProjectCommand::Launch(c)),
            Command::RecordActivity(c) => A::Project(ProjectCommand::RecordActivity(c)),
            Command::CompleteProject(c) => A::Project(ProjectCommand::Complete(c)),
            Command::RecordFeedback(c) => A::Project(ProjectCommand::RecordFeedback(c)),
            Command::CancelProject(c) => A::Project(ProjectCommand::Cancel(c)),
            Command::RaiseRequest(c) => A::Request(RequestCommand::Raise(c)),
            Command::ResolveRequest(c) => A::Request(RequestCommand::Resolve(c)),
        }
    }
}

/// The target state an aggregate decides from: its own variant of `state`, or its initial state
/// when `state` belongs to another aggregate (a stream holds only its own aggregate's events, so
/// folding it as another aggregate would also have given the initial state).
macro_rules! own {
    ($state:expr, $variant:ident) => {
        match $state {
            StreamState::$variant(own) => own,
            _ => &None,
        }
    };
}

/// The state `command`'s target stream starts from, before its first event.
pub(crate) fn initial_state(command: &Command) -> StreamState {
    match AggregateCommand::from(command) {
        AggregateCommand::District(_) => StreamState::District(None),
        AggregateCommand::Community(_) => StreamState::Community(None),
        AggregateCommand::Unit(_) => StreamState::Unit(None),
        AggregateCommand::Meeting(_) => StreamState::Meeting(None),
        AggregateCommand::Project(_) => StreamState::Project(None),
        AggregateCommand::Request(_) => StreamState::Request(None),
    }
}

/// Decides `command` against its target's `state` and the loaded `facts`.
pub(crate) fn decide(
    command: &Command,
    state: &StreamState,
    facts: &Facts,
) -> Result<Vec<Event>, DomainError> {
    match AggregateCommand::from(command) {
        AggregateCommand::District(c) => district::decide(own!(state, District), &c, facts),
        AggregateCommand::Community(c) => community::decide(own!(state, Community), &c, facts),
        AggregateCommand::Unit(c) => unit::decide(own!(state, Unit), &c, facts),
        AggregateCommand::Meeting(c) => meeting::decide(own!(state, Meeting), &c, facts),
        AggregateCommand::Project(c) => project::decide(own!(state, Project), &c, facts),
        AggregateCommand::Request(c) => request::decide(own!(state, Request), &c, facts),
    }
}

/// The streams besides its target that `command` reads, given the target's `state`.
pub(crate) fn required_facts(command: &Command, state: &StreamState) -> Vec<String> {
    match AggregateCommand::from(command) {
        AggregateCommand::District(c) => district::required_facts(own!(state, District), &c),
        AggregateCommand::Community(c) => community::required_facts(own!(state, Community), &c),
        AggregateCommand::Unit(c) => unit::required_facts(own!(state, Unit), &c),
        AggregateCommand::Meeting(c) => meeting::required_facts(own!(state, Meeting), &c),
        AggregateCommand::Project(c) => project::required_facts(own!(state, Project), &c),
        AggregateCommand::Request(c) => request::required_facts(own!(state, Request), &c),
    }
}

/// A creating command's own id, which the command handler must have assigned
/// ([`Command::assign_ids`]) before deciding.
fn assigned<T>(id: Option<T>, field: &'static str) -> Result<T, DomainError> {
    id.ok_or(DomainError::IdNotAssigned { field })
}

/// `not_found` for a command whose target stream has no events.
fn not_found(stream: String) -> DomainError {
    DomainError::NotFound { stream }
}

#[cfg(test)]
mod tests;

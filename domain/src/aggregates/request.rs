//! The Request aggregate: the two-way half of 双向互动, a member unit asking its community for
//! help, which the community then resolves.
//!
//! Only a current member unit of a registered community may raise one; it is resolved once.

use serde::{Deserialize, Serialize};

use crate::commands::{RaiseRequest, ResolveRequest};
use crate::error::DomainError;
use crate::events::{Event, RequestRaised, RequestResolved};
use crate::facts::Facts;
use crate::ids::{CommunityId, RequestId, UnitId};
use crate::values::Name;

use super::{assigned, not_found};

/// Whether the community still owes an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    Open,
    Resolved,
}

impl RequestStatus {
    /// The status as one lowercase word.
    pub fn name(self) -> &'static str {
        match self {
            RequestStatus::Open => "open",
            RequestStatus::Resolved => "resolved",
        }
    }
}

/// A raised request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestState {
    pub request_id: RequestId,
    pub community_id: CommunityId,
    /// The unit that asked.
    pub unit_id: UnitId,
    pub title: Name,
    pub status: RequestStatus,
}

/// The decider's state: `None` until the request is raised.
pub type State = Option<RequestState>;

/// The commands a request's stream accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RequestCommand<'a> {
    Raise(&'a RaiseRequest),
    Resolve(&'a ResolveRequest),
}

/// The streams besides its own that `command` reads.
pub fn required_facts(state: &State, command: &RequestCommand<'_>) -> Vec<String> {
    match (state, command) {
        (None, RequestCommand::Raise(c)) => vec![c.community_id.stream(), c.unit_id.stream()],
        _ => Vec::new(),
    }
}

/// Decides `command` on a request in `state`.
pub fn decide(
    state: &State,
    command: &RequestCommand<'_>,
    facts: &Facts,
) -> Result<Vec<Event>, DomainError> {
    match command {
        RequestCommand::Raise(c) => raise(state, c, facts),
        RequestCommand::Resolve(c) => {
            let request = state
                .as_ref()
                .ok_or_else(|| not_found(c.request_id.stream()))?;
            if request.status != RequestStatus::Open {
                return Err(DomainError::InvalidTransition {
                    command: "ResolveRequest",
                    aggregate: "request",
                    state: request.status.name(),
                });
            }
            Ok(vec![Event::RequestResolved(RequestResolved {
                request_id: c.request_id,
                resolution: c.resolution.clone(),
            })])
        }
    }
}

fn raise(state: &State, c: &RaiseRequest, facts: &Facts) -> Result<Vec<Event>, DomainError> {
    let request_id = assigned(c.request_id, "request_id")?;
    if state.is_some() {
        return Err(DomainError::AlreadyExists {
            what: request_id.stream(),
        });
    }
    let community = facts
        .community(c.community_id)
        .ok_or(DomainError::UnknownCommunity(c.community_id))?;
    if facts.unit(c.unit_id).is_none() {
        return Err(DomainError::UnknownUnit(c.unit_id));
    }
    community.ensure_member(c.unit_id)?;
    Ok(vec![Event::RequestRaised(RequestRaised {
        request_id,
        community_id: c.community_id,
        unit_id: c.unit_id,
        title: c.title.clone(),
        need: c.need.clone(),
    })])
}

/// The state after `event`; events of other aggregates leave it as it was.
pub fn evolve(state: State, event: &Event) -> State {
    match (state, event) {
        (None, Event::RequestRaised(e)) => Some(RequestState {
            request_id: e.request_id,
            community_id: e.community_id,
            unit_id: e.unit_id,
            title: e.title.clone(),
            status: RequestStatus::Open,
        }),
        (Some(mut request), Event::RequestResolved(_)) => {
            request.status = RequestStatus::Resolved;
            Some(request)
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

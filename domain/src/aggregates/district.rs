//! The District aggregate: a district (街道) exists once registered, and that is all it does.
//!
//! Its stream holds one event; communities and units read it as a fact to check that they
//! belong to a registered district.

use serde::{Deserialize, Serialize};

use crate::commands::RegisterDistrict;
use crate::error::DomainError;
use crate::events::{DistrictRegistered, Event};
use crate::facts::Facts;
use crate::ids::DistrictId;
use crate::values::Name;

use super::assigned;

/// A registered district.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistrictState {
    pub district_id: DistrictId,
    pub name: Name,
}

/// The decider's state: `None` until the district is registered.
pub type State = Option<DistrictState>;

/// The commands a district's stream accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DistrictCommand<'a> {
    Register(&'a RegisterDistrict),
}

/// The streams besides its own that `command` reads.
pub fn required_facts(_state: &State, _command: &DistrictCommand<'_>) -> Vec<String> {
    Vec::new()
}

/// Decides `command` on a district in `state`.
pub fn decide(
    state: &State,
    command: &DistrictCommand<'_>,
    _facts: &Facts,
) -> Result<Vec<Event>, DomainError> {
    match command {
        DistrictCommand::Register(c) => {
            let district_id = assigned(c.district_id, "district_id")?;
            if state.is_some() {
                return Err(DomainError::AlreadyExists {
                    what: district_id.stream(),
                });
            }
            Ok(vec![Event::DistrictRegistered(DistrictRegistered {
                district_id,
                name: c.name.clone(),
            })])
        }
    }
}

/// The state after `event`; events of other aggregates leave it as it was.
pub fn evolve(state: State, event: &Event) -> State {
    match (state, event) {
        (None, Event::DistrictRegistered(e)) => Some(DistrictState {
            district_id: e.district_id,
            name: e.name.clone(),
        }),
        (state, _) => state,
    }
}

/// The state after all of `events`, from nothing.
pub fn fold(events: &[Event]) -> State {
    events.iter().fold(None, evolve)
}

#[cfg(test)]
mod tests;

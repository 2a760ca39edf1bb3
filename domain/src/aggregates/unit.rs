//! The Unit aggregate: a unit's party organisation (单位党组织), registered in a district.
//!
//! A unit may sit in several communities' conferences; membership lives in each community's
//! stream, not here. Communities, projects and requests read this stream as a fact.

use serde::{Deserialize, Serialize};

use crate::commands::RegisterUnit;
use crate::error::DomainError;
use crate::events::{Event, UnitRegistered};
use crate::facts::Facts;
use crate::ids::{DistrictId, UnitId};
use crate::values::Name;

use super::assigned;

/// A registered unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitState {
    pub unit_id: UnitId,
    pub district_id: DistrictId,
    pub name: Name,
}

/// The decider's state: `None` until the unit is registered.
pub type State = Option<UnitState>;

/// The commands a unit's stream accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnitCommand<'a> {
    Register(&'a RegisterUnit),
}

/// The streams besides its own that `command` reads.
pub fn required_facts(state: &State, command: &UnitCommand<'_>) -> Vec<String> {
    match (state, command) {
        (None, UnitCommand::Register(c)) => vec![c.district_id.stream()],
        _ => Vec::new(),
    }
}

/// Decides `command` on a unit in `state`.
pub fn decide(
    state: &State,
    command: &UnitCommand<'_>,
    facts: &Facts,
) -> Result<Vec<Event>, DomainError> {
    match command {
        UnitCommand::Register(c) => {
            let unit_id = assigned(c.unit_id, "unit_id")?;
            if state.is_some() {
                return Err(DomainError::AlreadyExists {
                    what: unit_id.stream(),
                });
            }
            if facts.district(c.district_id).is_none() {
                return Err(DomainError::UnknownDistrict(c.district_id));
            }
            Ok(vec![Event::UnitRegistered(UnitRegistered {
                unit_id,
                district_id: c.district_id,
                name: c.name.clone(),
            })])
        }
    }
}

/// The state after `event`; events of other aggregates leave it as it was.
pub fn evolve(state: State, event: &Event) -> State {
    match (state, event) {
        (None, Event::UnitRegistered(e)) => Some(UnitState {
            unit_id: e.unit_id,
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

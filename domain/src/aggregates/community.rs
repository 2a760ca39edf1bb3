//! The Community aggregate: a community's joint conference and its current member units.
//!
//! A community belongs to a registered district. Its stream records which units sit in its
//! conference; meetings, projects and requests read it as a fact to check membership.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::commands::{AdmitMemberUnit, RegisterCommunity, WithdrawMemberUnit};
use crate::error::DomainError;
use crate::events::{CommunityRegistered, Event, MemberUnitAdmitted, MemberUnitWithdrawn};
use crate::facts::Facts;
use crate::ids::{CommunityId, DistrictId, UnitId};
use crate::values::{MemberKind, Name};

use super::{assigned, not_found};

/// A registered community.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommunityState {
    pub community_id: CommunityId,
    pub district_id: DistrictId,
    pub name: Name,
    /// The party committee (社区党委 / 党总支) that runs the conference.
    pub committee: Option<Name>,
    /// The current member units and how each joined; a withdrawn unit is not here.
    pub members: BTreeMap<UnitId, MemberKind>,
}

impl CommunityState {
    /// Whether `unit` currently sits in this community's conference.
    pub fn is_member(&self, unit: UnitId) -> bool {
        self.members.contains_key(&unit)
    }

    /// `not_a_member_unit` unless `unit` is a current member.
    pub fn ensure_member(&self, unit: UnitId) -> Result<(), DomainError> {
        if self.is_member(unit) {
            Ok(())
        } else {
            Err(DomainError::NotAMemberUnit {
                community: self.community_id,
                unit,
            })
        }
    }
}

/// The decider's state: `None` until the community is registered.
pub type State = Option<CommunityState>;

/// The commands a community's stream accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CommunityCommand<'a> {
    Register(&'a RegisterCommunity),
    AdmitMemberUnit(&'a AdmitMemberUnit),
    WithdrawMemberUnit(&'a WithdrawMemberUnit),
}

/// The streams besides its own that `command` reads.
pub fn required_facts(state: &State, command: &CommunityCommand<'_>) -> Vec<String> {
    match (state, command) {
        (None, CommunityCommand::Register(c)) => vec![c.district_id.stream()],
        (Some(_), CommunityCommand::AdmitMemberUnit(c)) => vec![c.unit_id.stream()],
        _ => Vec::new(),
    }
}

/// Decides `command` on a community in `state`.
pub fn decide(
    state: &State,
    command: &CommunityCommand<'_>,
    facts: &Facts,
) -> Result<Vec<Event>, DomainError> {
    match command {
        CommunityCommand::Register(c) => register(state, c, facts),
        CommunityCommand::AdmitMemberUnit(c) => {
            let community = state
                .as_ref()
                .ok_or_else(|| not_found(c.community_id.stream()))?;
            if facts.unit(c.unit_id).is_none() {
                return Err(DomainError::UnknownUnit(c.unit_id));
            }
            if community.is_member(c.unit_id) {
                return Err(DomainError::AlreadyMember {
                    community: c.community_id,
                    unit: c.unit_id,
                });
            }
            Ok(vec![Event::MemberUnitAdmitted(MemberUnitAdmitted {
                community_id: c.community_id,
                unit_id: c.unit_id,
                kind: c.kind,
            })])
        }
        CommunityCommand::WithdrawMemberUnit(c) => {
            let community = state
                .as_ref()
                .ok_or_else(|| not_found(c.community_id.stream()))?;
            community.ensure_member(c.unit_id)?;
            Ok(vec![Event::MemberUnitWithdrawn(MemberUnitWithdrawn {
                community_id: c.community_id,
                unit_id: c.unit_id,
                reason: c.reason.clone(),
            })])
        }
    }
}

fn register(
    state: &State,
    c: &RegisterCommunity,
    facts: &Facts,
) -> Result<Vec<Event>, DomainError> {
    let community_id = assigned(c.community_id, "community_id")?;
    if state.is_some() {
        return Err(DomainError::AlreadyExists {
            what: community_id.stream(),
        });
    }
    if facts.district(c.district_id).is_none() {
        return Err(DomainError::UnknownDistrict(c.district_id));
    }
    Ok(vec![Event::CommunityRegistered(CommunityRegistered {
        community_id,
        district_id: c.district_id,
        name: c.name.clone(),
        committee: c.committee.clone(),
    })])
}

/// The state after `event`; events of other aggregates leave it as it was.
pub fn evolve(state: State, event: &Event) -> State {
    match (state, event) {
        (None, Event::CommunityRegistered(e)) => Some(CommunityState {
            community_id: e.community_id,
            district_id: e.district_id,
            name: e.name.clone(),
            committee: e.committee.clone(),
            members: BTreeMap::new(),
        }),
        (Some(mut community), Event::MemberUnitAdmitted(e)) => {
            community.members.insert(e.unit_id, e.kind);
            Some(community)
        }
        (Some(mut community), Event::MemberUnitWithdrawn(e)) => {
            community.members.remove(&e.unit_id);
            Some(community)
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

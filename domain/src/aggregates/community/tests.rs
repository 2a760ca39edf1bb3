//! Community rules: a registered district, admission of registered units, current membership.

use serde_json::json;

use crate::events::{CommunityRegistered, Event, MemberUnitAdmitted, MemberUnitWithdrawn};
use crate::testing::fixtures::*;
use crate::testing::{command, given};
use crate::values::MemberKind;

fn register_community() -> crate::Command {
    command(
        "RegisterCommunity",
        json!({
            "community_id": COMMUNITY,
            "district_id": DISTRICT,
            "name": "十里社区",
            "committee": "十里社区党委",
        }),
    )
}

fn admit(unit: crate::ids::UnitId) -> crate::Command {
    command(
        "AdmitMemberUnit",
        json!({"community_id": COMMUNITY, "unit_id": unit, "kind": "double_report"}),
    )
}

fn withdraw(unit: crate::ids::UnitId) -> crate::Command {
    command(
        "WithdrawMemberUnit",
        json!({"community_id": COMMUNITY, "unit_id": unit, "reason": "搬迁"}),
    )
}

#[test]
fn registering_a_community_in_a_registered_district_records_it() {
    given([])
        .with_fact(DISTRICT.stream(), [district_registered(DISTRICT)])
        .when(register_community())
        .then([Event::CommunityRegistered(CommunityRegistered {
            community_id: COMMUNITY,
            district_id: DISTRICT,
            name: name("十里社区"),
            committee: Some(name("十里社区党委")),
        })]);
}

#[test]
fn a_community_needs_a_registered_district() {
    given([])
        .with_fact(
            OTHER_DISTRICT.stream(),
            [district_registered(OTHER_DISTRICT)],
        )
        .when(register_community())
        .then_err("unknown_district");
}

#[test]
fn registering_a_community_twice_is_refused() {
    given([community_registered(COMMUNITY, DISTRICT)])
        .with_fact(DISTRICT.stream(), [district_registered(DISTRICT)])
        .when(register_community())
        .then_err("already_exists");
}

#[test]
fn a_registered_unit_is_admitted_as_a_member() {
    given([community_registered(COMMUNITY, DISTRICT)])
        .with_fact(UNIT.stream(), [unit_registered(UNIT, DISTRICT)])
        .when(admit(UNIT))
        .then([Event::MemberUnitAdmitted(MemberUnitAdmitted {
            community_id: COMMUNITY,
            unit_id: UNIT,
            kind: MemberKind::DoubleReport,
        })]);
}

#[test]
fn admitting_to_a_community_that_does_not_exist_is_not_found() {
    given([])
        .with_fact(UNIT.stream(), [unit_registered(UNIT, DISTRICT)])
        .when(admit(UNIT))
        .then_err("not_found");
}

#[test]
fn only_a_registered_unit_can_be_admitted() {
    given([community_registered(COMMUNITY, DISTRICT)])
        .when(admit(UNIT))
        .then_err("unknown_unit");
}

#[test]
fn a_current_member_cannot_be_admitted_again() {
    given(community_with_members(COMMUNITY, &[UNIT]))
        .with_fact(UNIT.stream(), [unit_registered(UNIT, DISTRICT)])
        .when(admit(UNIT))
        .then_err("already_member");
}

#[test]
fn a_withdrawn_unit_may_be_admitted_again() {
    let mut history = community_with_members(COMMUNITY, &[UNIT]);
    history.push(member_unit_withdrawn(COMMUNITY, UNIT));
    given(history)
        .with_fact(UNIT.stream(), [unit_registered(UNIT, DISTRICT)])
        .when(admit(UNIT))
        .then([Event::MemberUnitAdmitted(MemberUnitAdmitted {
            community_id: COMMUNITY,
            unit_id: UNIT,
            kind: MemberKind::DoubleReport,
        })]);
}

#[test]
fn a_member_unit_withdraws() {
    given(community_with_members(COMMUNITY, &[UNIT]))
        .when(withdraw(UNIT))
        .then([Event::MemberUnitWithdrawn(MemberUnitWithdrawn {
            community_id: COMMUNITY,
            unit_id: UNIT,
            reason: Some(text("搬迁")),
        })]);
}

#[test]
fn a_unit_that_is_not_a_member_cannot_withdraw() {
    given(community_with_members(COMMUNITY, &[UNIT]))
        .when(withdraw(OTHER_UNIT))
        .then_err("not_a_member_unit");
}

#[test]
fn a_unit_that_already_withdrew_cannot_withdraw_again() {
    let mut history = community_with_members(COMMUNITY, &[UNIT]);
    history.push(member_unit_withdrawn(COMMUNITY, UNIT));
    given(history)
        .when(withdraw(UNIT))
        .then_err("not_a_member_unit");
}

#[test]
fn withdrawing_from_a_community_that_does_not_exist_is_not_found() {
    given([]).when(withdraw(UNIT)).then_err("not_found");
}

#[test]
fn the_state_knows_the_current_members_only() {
    let mut history = community_with_members(COMMUNITY, &[UNIT, OTHER_UNIT]);
    history.push(member_unit_withdrawn(COMMUNITY, UNIT));
    let community = super::fold(&history).expect("the community is registered");
    assert!(!community.is_member(UNIT));
    assert!(community.is_member(OTHER_UNIT));
    assert_eq!(community.district_id, DISTRICT);
}

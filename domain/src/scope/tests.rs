//! Scope: whom each command concerns, from its body and its target's history.

use serde_json::json;

use super::{scope_of, Scope};
use crate::events::Event;
use crate::testing::command;
use crate::testing::fixtures::*;

fn scope(name: &str, body: serde_json::Value, history: &[Event]) -> Scope {
    scope_of(&command(name, body), history)
}

#[test]
fn registering_a_community_or_unit_concerns_the_district_named_in_the_body() {
    assert_eq!(
        scope(
            "RegisterCommunity",
            json!({"community_id": COMMUNITY, "district_id": DISTRICT, "name": "十里社区"}),
            &[]
        ),
        Scope {
            district: Some(DISTRICT),
            community: Some(COMMUNITY),
            unit: None,
        }
    );
    assert_eq!(
        scope(
            "RegisterUnit",
            json!({"unit_id": UNIT, "district_id": DISTRICT, "name": "县残联"}),
            &[]
        ),
        Scope {
            district: Some(DISTRICT),
            ..Scope::default()
        }
    );
    assert_eq!(
        scope(
            "RegisterDistrict",
            json!({"district_id": DISTRICT, "name": "赵镇"}),
            &[]
        )
        .district,
        Some(DISTRICT)
    );
}

#[test]
fn membership_commands_concern_the_community_and_its_district_from_history() {
    let history = [community_registered(COMMUNITY, DISTRICT)];
    assert_eq!(
        scope(
            "AdmitMemberUnit",
            json!({"community_id": COMMUNITY, "unit_id": UNIT, "kind": "jurisdiction"}),
            &history
        ),
        Scope {
            district: Some(DISTRICT),
            community: Some(COMMUNITY),
            unit: None,
        }
    );
    assert_eq!(
        scope(
            "WithdrawMemberUnit",
            json!({"community_id": COMMUNITY, "unit_id": UNIT}),
            &[]
        ),
        Scope {
            community: Some(COMMUNITY),
            ..Scope::default()
        }
    );
}

#[test]
fn meeting_commands_concern_the_meetings_community() {
    let convene = json!({
        "community_id": COMMUNITY, "kind": "regular", "title": "会", "agenda": [],
    });
    assert_eq!(
        scope("ConveneMeeting", convene, &[]).community,
        Some(COMMUNITY)
    );
    let history = [meeting_convened(MEETING, COMMUNITY)];
    for (name, body) in [
        (
            "RecordAttendance",
            json!({"meeting_id": MEETING, "unit_ids": []}),
        ),
        (
            "CloseMeeting",
            json!({"meeting_id": MEETING, "resolutions": []}),
        ),
    ] {
        assert_eq!(
            scope(name, body, &history),
            Scope {
                community: Some(COMMUNITY),
                ..Scope::default()
            },
            "{name}"
        );
    }
}

#[test]
fn a_claim_acts_for_the_claiming_unit() {
    assert_eq!(
        scope(
            "ClaimProject",
            json!({"project_id": PROJECT, "unit_id": OTHER_UNIT}),
            &[project_proposed(PROJECT, COMMUNITY)]
        ),
        Scope {
            district: None,
            community: Some(COMMUNITY),
            unit: Some(OTHER_UNIT),
        }
    );
}

#[test]
fn the_claimants_commands_act_for_the_current_claimant() {
    let history = [
        project_proposed(PROJECT, COMMUNITY),
        project_claimed(PROJECT, UNIT, None),
    ];
    for (name, body) in [
        ("WithdrawClaim", json!({"project_id": PROJECT})),
        ("LaunchProject", json!({"project_id": PROJECT})),
        (
            "RecordActivity",
            json!({"project_id": PROJECT, "title": "活动", "participants": 1}),
        ),
        ("CompleteProject", json!({"project_id": PROJECT})),
    ] {
        assert_eq!(
            scope(name, body, &history),
            Scope {
                district: None,
                community: Some(COMMUNITY),
                unit: Some(UNIT),
            },
            "{name}"
        );
    }
}

#[test]
fn an_unclaimed_project_has_no_unit_to_act_for() {
    let history = [
        project_proposed(PROJECT, COMMUNITY),
        project_claimed(PROJECT, UNIT, None),
        claim_withdrawn(PROJECT, UNIT),
    ];
    assert_eq!(
        scope("LaunchProject", json!({"project_id": PROJECT}), &history),
        Scope {
            community: Some(COMMUNITY),
            ..Scope::default()
        }
    );
}

#[test]
fn community_decisions_on_a_project_act_for_no_unit() {
    let history = [
        project_proposed(PROJECT, COMMUNITY),
        project_claimed(PROJECT, UNIT, None),
    ];
    for (name, body) in [
        (
            "ApproveProject",
            json!({"project_id": PROJECT, "meeting_id": MEETING}),
        ),
        ("CancelProject", json!({"project_id": PROJECT})),
        (
            "RecordFeedback",
            json!({"project_id": PROJECT, "rating": 3}),
        ),
    ] {
        assert_eq!(
            scope(name, body, &history),
            Scope {
                community: Some(COMMUNITY),
                ..Scope::default()
            },
            "{name}"
        );
    }
}

#[test]
fn requests_concern_their_community_and_the_raising_unit() {
    assert_eq!(
        scope(
            "RaiseRequest",
            json!({"community_id": COMMUNITY, "unit_id": UNIT, "title": "求助"}),
            &[]
        ),
        Scope {
            district: None,
            community: Some(COMMUNITY),
            unit: Some(UNIT),
        }
    );
    assert_eq!(
        scope(
            "ResolveRequest",
            json!({"request_id": REQUEST}),
            &[request_raised(REQUEST, COMMUNITY, UNIT)]
        ),
        Scope {
            community: Some(COMMUNITY),
            ..Scope::default()
        }
    );
}

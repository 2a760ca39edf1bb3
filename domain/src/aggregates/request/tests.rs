//! Request rules: only a member unit of a registered community asks; a request resolves once.

use serde_json::json;

use crate::error::DomainError;
use crate::events::{Event, RequestRaised, RequestResolved};
use crate::testing::fixtures::*;
use crate::testing::{command, given};

fn raise() -> crate::Command {
    command(
        "RaiseRequest",
        json!({
            "request_id": REQUEST,
            "community_id": COMMUNITY,
            "unit_id": UNIT,
            "title": "老旧院落改造",
            "need": "院落破旧，请社区协调",
        }),
    )
}

fn resolve() -> crate::Command {
    command(
        "ResolveRequest",
        json!({"request_id": REQUEST, "resolution": "已协调改造"}),
    )
}

#[test]
fn a_member_unit_raises_a_request() {
    given([])
        .with_fact(
            COMMUNITY.stream(),
            community_with_members(COMMUNITY, &[UNIT]),
        )
        .with_fact(UNIT.stream(), [unit_registered(UNIT, DISTRICT)])
        .when(raise())
        .then([Event::RequestRaised(RequestRaised {
            request_id: REQUEST,
            community_id: COMMUNITY,
            unit_id: UNIT,
            title: name("老旧院落改造"),
            need: Some(text("院落破旧，请社区协调")),
        })]);
}

#[test]
fn a_request_needs_a_registered_community() {
    given([])
        .with_fact(UNIT.stream(), [unit_registered(UNIT, DISTRICT)])
        .when(raise())
        .then_err("unknown_community");
}

#[test]
fn a_request_needs_a_registered_unit() {
    given([])
        .with_fact(COMMUNITY.stream(), community_with_members(COMMUNITY, &[]))
        .when(raise())
        .then_err("unknown_unit");
}

#[test]
fn only_a_member_unit_may_raise_a_request() {
    given([])
        .with_fact(
            COMMUNITY.stream(),
            community_with_members(COMMUNITY, &[OTHER_UNIT]),
        )
        .with_fact(UNIT.stream(), [unit_registered(UNIT, DISTRICT)])
        .when(raise())
        .then_err("not_a_member_unit");
}

#[test]
fn raising_the_same_request_twice_is_refused() {
    given([request_raised(REQUEST, COMMUNITY, UNIT)])
        .with_fact(
            COMMUNITY.stream(),
            community_with_members(COMMUNITY, &[UNIT]),
        )
        .with_fact(UNIT.stream(), [unit_registered(UNIT, DISTRICT)])
        .when(raise())
        .then_err("already_exists");
}

#[test]
fn the_community_resolves_an_open_request() {
    given([request_raised(REQUEST, COMMUNITY, UNIT)])
        .when(resolve())
        .then([Event::RequestResolved(RequestResolved {
            request_id: REQUEST,
            resolution: Some(text("已协调改造")),
        })]);
}

#[test]
fn a_request_is_resolved_only_once() {
    let error = given([
        request_raised(REQUEST, COMMUNITY, UNIT),
        request_resolved(REQUEST),
    ])
    .when(resolve())
    .then_err("invalid_transition");
    assert!(matches!(
        error,
        DomainError::InvalidTransition {
            state: "resolved",
            aggregate: "request",
            ..
        }
    ));
}

#[test]
fn resolving_a_request_that_does_not_exist_is_not_found() {
    given([]).when(resolve()).then_err("not_found");
}

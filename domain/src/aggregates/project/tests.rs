//! Project rules: the lifecycle, one claimant at a time, and who may claim, each a sentence.

use serde_json::json;

use super::{fold, ProjectStatus};
use crate::error::DomainError;
use crate::events::*;
use crate::ids::{MeetingId, UnitId};
use crate::testing::fixtures::*;
use crate::testing::{command, given, Given};
use crate::values::{Count, Rating, Theme, Yuan};
use crate::Command;

// ---- histories and facts ----

fn proposed() -> Vec<Event> {
    vec![project_proposed(PROJECT, COMMUNITY)]
}

fn approved() -> Vec<Event> {
    let mut events = proposed();
    events.push(project_approved(PROJECT, MEETING));
    events
}

fn claimed() -> Vec<Event> {
    let mut events = proposed();
    events.push(project_claimed(PROJECT, UNIT, None));
    events
}

fn launched() -> Vec<Event> {
    let mut events = claimed();
    events.push(project_launched(PROJECT, UNIT));
    events
}

fn completed() -> Vec<Event> {
    let mut events = launched();
    events.push(project_completed(PROJECT, UNIT));
    events
}

fn cancelled() -> Vec<Event> {
    let mut events = proposed();
    events.push(project_cancelled(PROJECT));
    events
}

/// The project's world: its community with two member units, both registered, a meeting of
/// the community and a meeting of another community.
fn world(history: Vec<Event>) -> Given {
    given(history)
        .with_fact(
            COMMUNITY.stream(),
            community_with_members(COMMUNITY, &[UNIT, OTHER_UNIT]),
        )
        .with_fact(UNIT.stream(), [unit_registered(UNIT, DISTRICT)])
        .with_fact(OTHER_UNIT.stream(), [unit_registered(OTHER_UNIT, DISTRICT)])
        .with_fact(MEETING.stream(), [meeting_convened(MEETING, COMMUNITY)])
        .with_fact(
            OTHER_MEETING.stream(),
            [meeting_convened(OTHER_MEETING, OTHER_COMMUNITY)],
        )
}

// ---- commands ----

fn propose() -> Command {
    command(
        "ProposeProject",
        json!({
            "project_id": PROJECT,
            "community_id": COMMUNITY,
            "title": "4·25预防接种宣传日",
            "theme": "service_problems",
            "need": "居民希望了解预防接种知识",
        }),
    )
}

fn approve(meeting: MeetingId) -> Command {
    command(
        "ApproveProject",
        json!({"project_id": PROJECT, "meeting_id": meeting}),
    )
}

fn claim(unit: UnitId) -> Command {
    command(
        "ClaimProject",
        json!({"project_id": PROJECT, "unit_id": unit}),
    )
}

fn claim_at(unit: UnitId, meeting: MeetingId) -> Command {
    command(
        "ClaimProject",
        json!({
            "project_id": PROJECT,
            "unit_id": unit,
            "meeting_id": meeting,
            "commitment": "组织宣传日",
        }),
    )
}

fn withdraw_claim() -> Command {
    command(
        "WithdrawClaim",
        json!({"project_id": PROJECT, "reason": "人手不足"}),
    )
}

fn launch() -> Command {
    command("LaunchProject", json!({"project_id": PROJECT}))
}

fn record_activity() -> Command {
    command(
        "RecordActivity",
        json!({
            "project_id": PROJECT,
            "activity_id": ACTIVITY,
            "title": "4·25预防接种宣传日",
            "participants": 300,
        }),
    )
}

fn complete() -> Command {
    command(
        "CompleteProject",
        json!({"project_id": PROJECT, "summary": "宣传日圆满完成"}),
    )
}

fn feedback() -> Command {
    command(
        "RecordFeedback",
        json!({"project_id": PROJECT, "rating": 5, "comment": "好评"}),
    )
}

fn cancel() -> Command {
    command(
        "CancelProject",
        json!({"project_id": PROJECT, "reason": "需求已由他人满足"}),
    )
}

#[track_caller]
fn assert_refused_while(error: DomainError, state: &str) {
    match error {
        DomainError::InvalidTransition {
            aggregate: "project",
            state: actual,
            ..
        } => assert_eq!(actual, state),
        other => panic!("expected an invalid transition, got {other:?}"),
    }
}

// ---- proposing ----

#[test]
fn a_project_is_proposed_in_a_registered_community() {
    world(vec![])
        .when(propose())
        .then([Event::ProjectProposed(ProjectProposed {
            project_id: PROJECT,
            community_id: COMMUNITY,
            title: name("4·25预防接种宣传日"),
            theme: Theme::ServiceProblems,
            need: Some(text("居民希望了解预防接种知识")),
        })]);
}

#[test]
fn a_project_needs_a_registered_community() {
    given([]).when(propose()).then_err("unknown_community");
}

#[test]
fn proposing_the_same_project_twice_is_refused() {
    world(proposed()).when(propose()).then_err("already_exists");
}

#[test]
fn every_command_on_a_project_that_does_not_exist_is_not_found() {
    for command in [
        approve(MEETING),
        claim(UNIT),
        withdraw_claim(),
        launch(),
        record_activity(),
        complete(),
        feedback(),
        cancel(),
    ] {
        world(vec![]).when(command).then_err("not_found");
    }
}

// ---- approving ----

#[test]
fn a_meeting_of_the_community_approves_a_proposed_project() {
    world(proposed())
        .when(approve(MEETING))
        .then([project_approved(PROJECT, MEETING)]);
}

#[test]
fn approval_names_a_meeting_that_exists() {
    given(proposed())
        .when(approve(MEETING))
        .then_err("unknown_meeting");
}

#[test]
fn approval_names_a_meeting_of_the_same_community() {
    world(proposed())
        .when(approve(OTHER_MEETING))
        .then_err("meeting_of_another_community");
}

#[test]
fn a_project_is_approved_only_while_proposed() {
    let error = world(approved())
        .when(approve(MEETING))
        .then_err("invalid_transition");
    assert_refused_while(error, "approved");
    let error = world(claimed())
        .when(approve(MEETING))
        .then_err("invalid_transition");
    assert_refused_while(error, "claimed");
}

// ---- claiming ----

#[test]
fn a_member_unit_claims_a_proposed_project() {
    world(proposed())
        .when(claim(UNIT))
        .then([project_claimed(PROJECT, UNIT, None)]);
}

#[test]
fn a_member_unit_claims_an_approved_project_at_a_meeting() {
    world(approved())
        .when(claim_at(UNIT, MEETING))
        .then([Event::ProjectClaimed(ProjectClaimed {
            project_id: PROJECT,
            unit_id: UNIT,
            meeting_id: Some(MEETING),
            commitment: Some(text("组织宣传日")),
        })]);
}

#[test]
fn a_second_claim_is_refused_until_the_first_is_withdrawn() {
    let error = world(claimed())
        .when(claim(OTHER_UNIT))
        .then_err("project_already_claimed");
    assert_eq!(error, DomainError::ProjectAlreadyClaimed { claimant: UNIT });

    let mut withdrawn = claimed();
    withdrawn.push(claim_withdrawn(PROJECT, UNIT));
    world(withdrawn)
        .when(claim(OTHER_UNIT))
        .then([project_claimed(PROJECT, OTHER_UNIT, None)]);
}

#[test]
fn of_two_racing_claims_decided_on_the_same_history_the_later_one_is_refused_once_the_first_is_in()
{
    // Both are accepted against the same version; the store lets only one append. Retried on
    // the new history, the loser is refused.
    world(proposed())
        .when(claim(UNIT))
        .then([project_claimed(PROJECT, UNIT, None)]);
    world(proposed())
        .when(claim(OTHER_UNIT))
        .then([project_claimed(PROJECT, OTHER_UNIT, None)]);
    world(claimed())
        .when(claim(OTHER_UNIT))
        .then_err("project_already_claimed");
}

#[test]
fn a_launched_project_cannot_be_claimed() {
    world(launched())
        .when(claim(OTHER_UNIT))
        .then_err("project_already_claimed");
}

#[test]
fn a_completed_or_cancelled_project_cannot_be_claimed() {
    let error = world(completed())
        .when(claim(OTHER_UNIT))
        .then_err("invalid_transition");
    assert_refused_while(error, "completed");
    let error = world(cancelled())
        .when(claim(UNIT))
        .then_err("invalid_transition");
    assert_refused_while(error, "cancelled");
}

#[test]
fn only_a_current_member_unit_may_claim() {
    world(proposed())
        .with_fact(
            COMMUNITY.stream(),
            community_with_members(COMMUNITY, &[OTHER_UNIT]),
        )
        .when(claim(UNIT))
        .then_err("not_a_member_unit");
}

#[test]
fn a_withdrawn_member_unit_may_not_claim() {
    let mut community = community_with_members(COMMUNITY, &[UNIT]);
    community.push(member_unit_withdrawn(COMMUNITY, UNIT));
    world(proposed())
        .with_fact(COMMUNITY.stream(), community)
        .when(claim(UNIT))
        .then_err("not_a_member_unit");
}

#[test]
fn a_claim_by_an_unregistered_unit_is_an_unknown_unit_before_it_is_a_non_member() {
    world(proposed())
        .with_fact(UNIT.stream(), [])
        .with_fact(COMMUNITY.stream(), community_with_members(COMMUNITY, &[]))
        .when(claim(UNIT))
        .then_err("unknown_unit");
}

#[test]
fn membership_is_checked_before_the_projects_state() {
    world(claimed())
        .with_fact(
            COMMUNITY.stream(),
            community_with_members(COMMUNITY, &[UNIT]),
        )
        .when(claim(OTHER_UNIT))
        .then_err("not_a_member_unit");
}

#[test]
fn a_claim_at_a_meeting_names_a_meeting_that_exists() {
    world(proposed())
        .with_fact(MEETING.stream(), [])
        .when(claim_at(UNIT, MEETING))
        .then_err("unknown_meeting");
}

#[test]
fn a_claim_at_a_meeting_names_a_meeting_of_the_same_community() {
    world(proposed())
        .when(claim_at(UNIT, OTHER_MEETING))
        .then_err("meeting_of_another_community");
}

// ---- withdrawing a claim ----

#[test]
fn the_claimant_withdraws_its_claim() {
    world(claimed())
        .when(withdraw_claim())
        .then([Event::ClaimWithdrawn(ClaimWithdrawn {
            project_id: PROJECT,
            unit_id: UNIT,
            reason: Some(text("人手不足")),
        })]);
}

#[test]
fn a_claim_is_withdrawn_only_while_claimed() {
    for (history, state) in [
        (proposed(), "proposed"),
        (approved(), "approved"),
        (launched(), "launched"),
        (completed(), "completed"),
        (cancelled(), "cancelled"),
    ] {
        let error = world(history)
            .when(withdraw_claim())
            .then_err("invalid_transition");
        assert_refused_while(error, state);
    }
}

#[test]
fn a_withdrawn_claim_returns_an_approved_project_to_approved() {
    let mut history = approved();
    history.push(project_claimed(PROJECT, UNIT, Some(MEETING)));
    history.push(claim_withdrawn(PROJECT, UNIT));
    let project = fold(&history).expect("the project was proposed");
    assert_eq!(
        project.status,
        ProjectStatus::Approved {
            meeting_id: MEETING
        }
    );
    let error = world(history)
        .when(approve(MEETING))
        .then_err("invalid_transition");
    assert_refused_while(error, "approved");
}

#[test]
fn a_withdrawn_claim_returns_an_unapproved_project_to_proposed() {
    let mut history = claimed();
    history.push(claim_withdrawn(PROJECT, UNIT));
    let project = fold(&history).expect("the project was proposed");
    assert_eq!(project.status, ProjectStatus::Proposed);
    world(history)
        .when(approve(MEETING))
        .then([project_approved(PROJECT, MEETING)]);
}

// ---- launching, activities, completion, feedback ----

#[test]
fn the_claimant_launches_a_claimed_project() {
    world(claimed())
        .when(launch())
        .then([project_launched(PROJECT, UNIT)]);
}

#[test]
fn only_a_claimed_project_is_launched() {
    for (history, state) in [
        (proposed(), "proposed"),
        (approved(), "approved"),
        (launched(), "launched"),
        (completed(), "completed"),
        (cancelled(), "cancelled"),
    ] {
        let error = world(history).when(launch()).then_err("invalid_transition");
        assert_refused_while(error, state);
    }
}

#[test]
fn an_activity_of_a_launched_project_is_recorded_for_the_claimant_with_counts_defaulting_to_zero() {
    world(launched())
        .when(record_activity())
        .then([Event::ActivityRecorded(ActivityRecorded {
            project_id: PROJECT,
            activity_id: ACTIVITY,
            unit_id: UNIT,
            title: name("4·25预防接种宣传日"),
            participants: Count::parse(300).expect("in range"),
            volunteers: Count::default(),
            volunteer_hours: Count::default(),
            beneficiaries: Count::default(),
            funds_yuan: Yuan::default(),
            notes: None,
        })]);
}

#[test]
fn activities_are_recorded_only_on_a_launched_project() {
    for (history, state) in [
        (proposed(), "proposed"),
        (claimed(), "claimed"),
        (completed(), "completed"),
        (cancelled(), "cancelled"),
    ] {
        let error = world(history)
            .when(record_activity())
            .then_err("invalid_transition");
        assert_refused_while(error, state);
    }
}

#[test]
fn the_same_activity_is_not_recorded_twice() {
    let mut history = launched();
    history.push(activity_recorded(PROJECT, ACTIVITY, UNIT));
    world(history)
        .when(record_activity())
        .then_err("already_exists");
}

#[test]
fn an_activity_without_an_assigned_id_is_a_caller_bug_not_a_panic() {
    world(launched())
        .when(command(
            "RecordActivity",
            json!({"project_id": PROJECT, "title": "宣传日", "participants": 1}),
        ))
        .then_err("id_not_assigned");
}

#[test]
fn the_claimant_completes_a_launched_project() {
    world(launched())
        .when(complete())
        .then([Event::ProjectCompleted(ProjectCompleted {
            project_id: PROJECT,
            unit_id: UNIT,
            summary: Some(text("宣传日圆满完成")),
        })]);
}

#[test]
fn only_a_launched_project_is_completed() {
    for (history, state) in [
        (proposed(), "proposed"),
        (claimed(), "claimed"),
        (completed(), "completed"),
        (cancelled(), "cancelled"),
    ] {
        let error = world(history)
            .when(complete())
            .then_err("invalid_transition");
        assert_refused_while(error, state);
    }
}

#[test]
fn residents_give_feedback_on_a_completed_project() {
    let expected = Event::FeedbackRecorded(FeedbackRecorded {
        project_id: PROJECT,
        rating: Rating::parse(5).expect("in range"),
        comment: Some(text("好评")),
    });
    world(completed()).when(feedback()).then([expected.clone()]);
    let mut again = completed();
    again.push(expected.clone());
    world(again).when(feedback()).then([expected]);
}

#[test]
fn feedback_is_recorded_only_on_a_completed_project() {
    for (history, state) in [
        (proposed(), "proposed"),
        (launched(), "launched"),
        (cancelled(), "cancelled"),
    ] {
        let error = world(history)
            .when(feedback())
            .then_err("invalid_transition");
        assert_refused_while(error, state);
    }
}

// ---- cancelling ----

#[test]
fn a_project_is_cancelled_from_any_state_before_completed() {
    for history in [proposed(), approved(), claimed(), launched()] {
        world(history)
            .when(cancel())
            .then([Event::ProjectCancelled(ProjectCancelled {
                project_id: PROJECT,
                reason: Some(text("需求已由他人满足")),
            })]);
    }
}

#[test]
fn a_completed_project_cannot_be_cancelled() {
    let error = world(completed())
        .when(cancel())
        .then_err("invalid_transition");
    assert_refused_while(error, "completed");
}

#[test]
fn a_cancelled_project_cannot_be_cancelled_again() {
    let error = world(cancelled())
        .when(cancel())
        .then_err("invalid_transition");
    assert_refused_while(error, "cancelled");
}

// ---- state ----

#[test]
fn the_state_follows_the_lifecycle() {
    let mut history = approved();
    assert_eq!(
        fold(&history).map(|p| p.status),
        Some(ProjectStatus::Approved {
            meeting_id: MEETING
        })
    );
    history.push(project_claimed(PROJECT, UNIT, Some(MEETING)));
    let project = fold(&history).expect("proposed");
    assert_eq!(
        project.status,
        ProjectStatus::Claimed {
            claimant: UNIT,
            meeting_id: Some(MEETING),
            approved_by: Some(MEETING),
        }
    );
    assert_eq!(project.claimant(), Some(UNIT));
    history.push(project_launched(PROJECT, UNIT));
    history.push(activity_recorded(PROJECT, ACTIVITY, UNIT));
    history.push(project_completed(PROJECT, UNIT));
    let project = fold(&history).expect("proposed");
    assert_eq!(project.status, ProjectStatus::Completed { claimant: UNIT });
    assert!(project.activities.contains(&ACTIVITY));
    assert_eq!(project.status.name(), "completed");
}

#[test]
fn evolve_ignores_events_of_other_aggregates() {
    let before = fold(&proposed());
    let after = [
        district_registered(DISTRICT),
        member_unit_admitted(COMMUNITY, UNIT),
        meeting_closed(MEETING),
        request_raised(REQUEST, COMMUNITY, UNIT),
    ]
    .iter()
    .fold(before.clone(), super::evolve);
    assert_eq!(after, before);
    assert_eq!(fold(&[meeting_convened(MEETING, COMMUNITY)]), None);
}

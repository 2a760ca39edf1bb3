//! A project's life over HTTP, and each rule of DOMAIN.md refused with its status and code, with
//! nothing written.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{project_stream, spawn_app, TestApp};

/// Sends a command that the rules must refuse with `status` and `code`; asserts nothing was
/// appended.
async fn refused(app: &TestApp, name: &str, body: Value, status: u16, code: &str) {
    refused_as(app, &app.admin_token, name, body, status, code).await;
}

async fn refused_as(app: &TestApp, token: &str, name: &str, body: Value, status: u16, code: &str) {
    let head = app.head().await;
    let reply = app.command_reply(token, name, body.clone(), &[]).await;
    assert_eq!(
        reply.status.as_u16(),
        status,
        "{name} {body} should be refused with {status} {code}: {}",
        reply.text()
    );
    reply.assert_problem(status, code);
    assert_eq!(app.head().await, head, "a refused {name} appended nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_goes_from_proposal_through_a_meeting_to_residents_feedback() {
    let app = spawn_app().await;
    let world = app.world(2).await;
    let unit = world.units[0];
    let meeting = app.convene(world.community).await;
    app.ok(
        "RecordAttendance",
        json!({"meeting_id": meeting, "unit_ids": world.units}),
    )
    .await;
    let project = app.propose(world.community).await;
    app.ok(
        "ApproveProject",
        json!({"project_id": project, "meeting_id": meeting}),
    )
    .await;
    app.ok(
        "ClaimProject",
        json!({"project_id": project, "unit_id": unit, "meeting_id": meeting}),
    )
    .await;
    app.ok(
        "CloseMeeting",
        json!({"meeting_id": meeting, "resolutions": ["项目认领完成"]}),
    )
    .await;
    let rep = app.issue_token("unit_rep", Some(unit), "罗俊").await;
    app.ok_as(&rep, "LaunchProject", json!({"project_id": project}))
        .await;
    for participants in [300, 40] {
        app.ok_as(
            &rep,
            "RecordActivity",
            json!({"project_id": project, "title": "宣传活动", "participants": participants}),
        )
        .await;
    }
    app.ok_as(&rep, "CompleteProject", json!({"project_id": project}))
        .await;
    app.ok(
        "RecordFeedback",
        json!({"project_id": project, "rating": 5}),
    )
    .await;

    assert_eq!(
        app.stream_types(&project_stream(project)).await,
        [
            "ProjectProposed",
            "ProjectApproved",
            "ProjectClaimed",
            "ProjectLaunched",
            "ActivityRecorded",
            "ActivityRecorded",
            "ProjectCompleted",
            "FeedbackRecorded"
        ]
    );
    assert_eq!(
        app.stream_types(&format!("meeting-{meeting}")).await,
        ["MeetingConvened", "AttendanceRecorded", "MeetingClosed"]
    );
    // A completed project takes no more activities, and cannot be cancelled.
    refused(
        &app,
        "RecordActivity",
        json!({"project_id": project, "title": "补录", "participants": 1}),
        409,
        "invalid_transition",
    )
    .await;
    refused(
        &app,
        "CancelProject",
        json!({"project_id": project}),
        409,
        "invalid_transition",
    )
    .await;
    let (code, out) = app.verify().await;
    assert_eq!(code, 0, "verify: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_is_cancelled_from_any_state_before_completion_and_then_takes_nothing_more() {
    let app = spawn_app().await;
    let world = app.world(1).await;
    let unit = world.units[0];

    let proposed = app.propose(world.community).await;
    app.ok(
        "CancelProject",
        json!({"project_id": proposed, "reason": "需求变化"}),
    )
    .await;

    let claimed = app.propose(world.community).await;
    app.claim(claimed, unit).await;
    app.ok("CancelProject", json!({"project_id": claimed}))
        .await;

    let launched = app.launched_project(world.community, unit).await;
    app.ok("CancelProject", json!({"project_id": launched}))
        .await;
    assert_eq!(
        app.stream_types(&project_stream(launched)).await,
        [
            "ProjectProposed",
            "ProjectClaimed",
            "ProjectLaunched",
            "ProjectCancelled"
        ]
    );

    refused(
        &app,
        "CancelProject",
        json!({"project_id": proposed}),
        409,
        "invalid_transition",
    )
    .await;
    refused(
        &app,
        "ClaimProject",
        json!({"project_id": proposed, "unit_id": unit}),
        409,
        "invalid_transition",
    )
    .await;
    refused(
        &app,
        "LaunchProject",
        json!({"project_id": launched}),
        409,
        "invalid_transition",
    )
    .await;
    let meeting = app.convene(world.community).await;
    refused(
        &app,
        "ApproveProject",
        json!({"project_id": proposed, "meeting_id": meeting}),
        409,
        "invalid_transition",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_claim_is_refused_until_the_first_is_withdrawn_then_another_unit_may_claim() {
    let app = spawn_app().await;
    let world = app.world(2).await;
    let (first, second) = (world.units[0], world.units[1]);
    let project = app.propose(world.community).await;
    let first_rep = app.issue_token("unit_rep", Some(first), "第一单位").await;
    let second_rep = app.issue_token("unit_rep", Some(second), "第二单位").await;

    app.ok_as(
        &first_rep,
        "ClaimProject",
        json!({"project_id": project, "unit_id": first}),
    )
    .await;
    refused_as(
        &app,
        &second_rep,
        "ClaimProject",
        json!({"project_id": project, "unit_id": second}),
        409,
        "project_already_claimed",
    )
    .await;
    // The same unit claiming twice is refused too.
    refused_as(
        &app,
        &first_rep,
        "ClaimProject",
        json!({"project_id": project, "unit_id": first}),
        409,
        "project_already_claimed",
    )
    .await;
    // Only the claimant gives the claim back.
    let reply = app
        .command_reply(
            &second_rep,
            "WithdrawClaim",
            json!({"project_id": project}),
            &[],
        )
        .await;
    reply.assert_problem(403, "forbidden");

    app.ok_as(
        &first_rep,
        "WithdrawClaim",
        json!({"project_id": project, "reason": "力量不足"}),
    )
    .await;
    refused(
        &app,
        "WithdrawClaim",
        json!({"project_id": project}),
        409,
        "invalid_transition",
    )
    .await;
    app.ok_as(
        &second_rep,
        "ClaimProject",
        json!({"project_id": project, "unit_id": second}),
    )
    .await;
    // Now the first unit's representative may no longer launch it; the second's may.
    let reply = app
        .command_reply(
            &first_rep,
            "LaunchProject",
            json!({"project_id": project}),
            &[],
        )
        .await;
    reply.assert_problem(403, "forbidden");
    app.ok_as(&second_rep, "LaunchProject", json!({"project_id": project}))
        .await;

    let events = app.stream_events(&project_stream(project)).await;
    let summary: Vec<(String, Value)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or_default().to_owned(),
                e["data"]["unit_id"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("ProjectProposed".to_owned(), Value::Null),
            ("ProjectClaimed".to_owned(), json!(first)),
            ("ClaimWithdrawn".to_owned(), json!(first)),
            ("ProjectClaimed".to_owned(), json!(second)),
            ("ProjectLaunched".to_owned(), json!(second)),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activities_wait_for_launch_and_feedback_waits_for_completion() {
    let app = spawn_app().await;
    let world = app.world(1).await;
    let project = app.propose(world.community).await;
    let activity = json!({"project_id": project, "title": "宣传", "participants": 3});
    refused(
        &app,
        "RecordActivity",
        activity.clone(),
        409,
        "invalid_transition",
    )
    .await;
    refused(
        &app,
        "LaunchProject",
        json!({"project_id": project}),
        409,
        "invalid_transition",
    )
    .await;
    app.claim(project, world.units[0]).await;
    refused(
        &app,
        "RecordActivity",
        activity.clone(),
        409,
        "invalid_transition",
    )
    .await;
    refused(
        &app,
        "CompleteProject",
        json!({"project_id": project}),
        409,
        "invalid_transition",
    )
    .await;
    app.ok("LaunchProject", json!({"project_id": project}))
        .await;
    refused(
        &app,
        "RecordFeedback",
        json!({"project_id": project, "rating": 4}),
        409,
        "invalid_transition",
    )
    .await;
    app.ok("RecordActivity", activity).await;
    app.ok("CompleteProject", json!({"project_id": project}))
        .await;
    app.ok(
        "RecordFeedback",
        json!({"project_id": project, "rating": 4}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_current_member_unit_claims_attends_or_raises_requests() {
    let app = spawn_app().await;
    let world = app.world(1).await;
    let outsider = app.register_unit(world.district, "非成员单位").await;
    let project = app.propose(world.community).await;
    let meeting = app.convene(world.community).await;
    refused(
        &app,
        "ClaimProject",
        json!({"project_id": project, "unit_id": outsider}),
        409,
        "not_a_member_unit",
    )
    .await;
    refused(
        &app,
        "RecordAttendance",
        json!({"meeting_id": meeting, "unit_ids": [world.units[0], outsider]}),
        409,
        "not_a_member_unit",
    )
    .await;
    refused(
        &app,
        "RaiseRequest",
        json!({"community_id": world.community, "unit_id": outsider, "title": "求助"}),
        409,
        "not_a_member_unit",
    )
    .await;
    // A withdrawn member is no longer one.
    let former = world.units[0];
    app.ok(
        "WithdrawMemberUnit",
        json!({"community_id": world.community, "unit_id": former}),
    )
    .await;
    refused(
        &app,
        "ClaimProject",
        json!({"project_id": project, "unit_id": former}),
        409,
        "not_a_member_unit",
    )
    .await;
    refused(
        &app,
        "WithdrawMemberUnit",
        json!({"community_id": world.community, "unit_id": former}),
        409,
        "not_a_member_unit",
    )
    .await;
    // Admitted again, it may claim.
    app.admit(world.community, former).await;
    refused(
        &app,
        "AdmitMemberUnit",
        json!({"community_id": world.community, "unit_id": former, "kind": "double_report"}),
        409,
        "already_member",
    )
    .await;
    app.claim(project, former).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn references_to_unregistered_things_are_422_and_missing_targets_are_404() {
    let app = spawn_app().await;
    let world = app.world(1).await;
    let nowhere = Uuid::new_v4();
    refused(
        &app,
        "RegisterCommunity",
        json!({"district_id": nowhere, "name": "无名社区"}),
        422,
        "unknown_district",
    )
    .await;
    refused(
        &app,
        "ProposeProject",
        json!({"community_id": nowhere, "title": "项目", "theme": "civility"}),
        422,
        "unknown_community",
    )
    .await;
    refused(
        &app,
        "ConveneMeeting",
        json!({"community_id": nowhere, "kind": "extraordinary", "title": "会", "agenda": []}),
        422,
        "unknown_community",
    )
    .await;
    refused(
        &app,
        "AdmitMemberUnit",
        json!({"community_id": world.community, "unit_id": nowhere, "kind": "jurisdiction"}),
        422,
        "unknown_unit",
    )
    .await;
    let project = app.propose(world.community).await;
    refused(
        &app,
        "ClaimProject",
        json!({"project_id": project, "unit_id": nowhere}),
        422,
        "unknown_unit",
    )
    .await;
    refused(
        &app,
        "ApproveProject",
        json!({"project_id": project, "meeting_id": nowhere}),
        422,
        "unknown_meeting",
    )
    .await;
    // The command's own target does not exist.
    refused(
        &app,
        "LaunchProject",
        json!({"project_id": nowhere}),
        404,
        "not_found",
    )
    .await;
    refused(
        &app,
        "ClaimProject",
        json!({"project_id": nowhere, "unit_id": world.units[0]}),
        404,
        "not_found",
    )
    .await;
    refused(
        &app,
        "AdmitMemberUnit",
        json!({"community_id": nowhere, "unit_id": world.units[0], "kind": "jurisdiction"}),
        404,
        "not_found",
    )
    .await;
    refused(
        &app,
        "CloseMeeting",
        json!({"meeting_id": nowhere, "resolutions": []}),
        404,
        "not_found",
    )
    .await;
    refused(
        &app,
        "ResolveRequest",
        json!({"request_id": nowhere}),
        404,
        "not_found",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_is_approved_and_claimed_only_at_a_meeting_of_its_own_community() {
    let app = spawn_app().await;
    let world = app.world(1).await;
    let other_community = app.register_community(world.district, "十里社区").await;
    let foreign_meeting = app.convene(other_community).await;
    let project = app.propose(world.community).await;
    refused(
        &app,
        "ApproveProject",
        json!({"project_id": project, "meeting_id": foreign_meeting}),
        409,
        "meeting_of_another_community",
    )
    .await;
    refused(
        &app,
        "ClaimProject",
        json!({"project_id": project, "unit_id": world.units[0], "meeting_id": foreign_meeting}),
        409,
        "meeting_of_another_community",
    )
    .await;
    let own_meeting = app.convene(world.community).await;
    app.ok(
        "ApproveProject",
        json!({"project_id": project, "meeting_id": own_meeting}),
    )
    .await;
    refused(
        &app,
        "ApproveProject",
        json!({"project_id": project, "meeting_id": own_meeting}),
        409,
        "invalid_transition",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meeting_closes_once_and_takes_attendance_only_while_open() {
    let app = spawn_app().await;
    let world = app.world(1).await;
    let meeting = app.convene(world.community).await;
    let close =
        json!({"meeting_id": meeting, "resolutions": ["决议一", "决议二"], "minutes": "纪要"});
    app.ok("CloseMeeting", close.clone()).await;
    refused(&app, "CloseMeeting", close, 409, "meeting_already_closed").await;
    refused(
        &app,
        "RecordAttendance",
        json!({"meeting_id": meeting, "unit_ids": [world.units[0]]}),
        409,
        "meeting_already_closed",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_raised_by_a_member_and_resolved_once() {
    let app = spawn_app().await;
    let world = app.world(1).await;
    let body = app
        .ok(
            "RaiseRequest",
            json!({"community_id": world.community, "unit_id": world.units[0], "title": "院落改造"}),
        )
        .await;
    let stream = body["stream"].as_str().expect("a stream").to_owned();
    let request = stream
        .strip_prefix("request-")
        .expect("a request stream")
        .to_owned();
    app.ok("ResolveRequest", json!({"request_id": request}))
        .await;
    refused(
        &app,
        "ResolveRequest",
        json!({"request_id": request}),
        409,
        "invalid_transition",
    )
    .await;
    assert_eq!(
        app.stream_types(&stream).await,
        ["RequestRaised", "RequestResolved"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creating_command_with_a_taken_id_is_refused() {
    let app = spawn_app().await;
    let world = app.world(0).await;
    let reply = app
        .command_reply(
            &app.admin_token,
            "RegisterDistrict",
            json!({"district_id": world.district, "name": "重复"}),
            &[],
        )
        .await;
    // API.md names no code for this refusal; the server's is `already_exists`.
    reply.assert_problem(409, "already_exists");
    assert_eq!(
        app.stream_types(&format!("district-{}", world.district))
            .await,
        ["DistrictRegistered"]
    );
}

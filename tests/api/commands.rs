//! Every one of the 19 commands of API.md, sent over HTTP by the role that would send it, answered
//! with the documented success body, and read back as events of the documented shape.

use chrono::DateTime;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{assert_command_response, assert_event_shape, redacted, spawn_app, TestApp};

/// Sends one command that must succeed with `types`, and returns its response.
async fn step(
    app: &TestApp,
    token: &str,
    name: &str,
    body: Value,
    stream: &str,
    types: &[&str],
) -> Value {
    let (status, reply) = app.command_as(token, name, body.clone(), &[]).await;
    assert_eq!(status, StatusCode::OK, "{name} {body}: {reply}");
    assert_command_response(&reply, stream, types);
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_succeeds_over_http_and_is_stored_as_documented_events() {
    let app = spawn_app().await;
    let admin = app.admin_token.clone();
    let district = Uuid::new_v4();
    let community = Uuid::new_v4();
    let units = [Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()];
    let meeting = Uuid::new_v4();
    let project = Uuid::new_v4();
    let cancelled = Uuid::new_v4();
    let request = Uuid::new_v4();
    let activity = Uuid::new_v4();
    let d = format!("district-{district}");
    let c = format!("community-{community}");
    let m = format!("meeting-{meeting}");
    let p = format!("project-{project}");
    let r = format!("request-{request}");

    let mut responses: Vec<Value> = Vec::new();
    responses.push(
        step(
            &app,
            &admin,
            "RegisterDistrict",
            json!({"district_id": district, "name": "赵镇街道"}),
            &d,
            &["DistrictRegistered"],
        )
        .await,
    );
    // A district administrator from the command line registers the community and its units.
    let district_admin = app
        .issue_token_cli("district_admin", Some(district), "赵镇街道办")
        .await;
    responses.push(
        step(
            &app,
            &district_admin,
            "RegisterCommunity",
            json!({"community_id": community, "district_id": district, "name": "沱源社区", "committee": "沱源社区党委"}),
            &c,
            &["CommunityRegistered"],
        )
        .await,
    );
    for (i, unit) in units.iter().enumerate() {
        responses.push(
            step(
                &app,
                &district_admin,
                "RegisterUnit",
                json!({"unit_id": unit, "district_id": district, "name": format!("县妇幼保健院党总支{i}")}),
                &format!("unit-{unit}"),
                &["UnitRegistered"],
            )
            .await,
        );
    }
    // The community's secretary runs its conference.
    let secretary = app
        .issue_token("community_secretary", Some(community), "沱源社区书记")
        .await;
    for (unit, kind) in units
        .iter()
        .zip(["jurisdiction", "double_report", "social_organisation"])
    {
        responses.push(
            step(
                &app,
                &secretary,
                "AdmitMemberUnit",
                json!({"community_id": community, "unit_id": unit, "kind": kind}),
                &c,
                &["MemberUnitAdmitted"],
            )
            .await,
        );
    }
    responses.push(
        step(
            &app,
            &secretary,
            "WithdrawMemberUnit",
            json!({"community_id": community, "unit_id": units[2], "reason": "撤并"}),
            &c,
            &["MemberUnitWithdrawn"],
        )
        .await,
    );
    responses.push(
        step(
            &app,
            &secretary,
            "ConveneMeeting",
            json!({
                "meeting_id": meeting, "community_id": community, "kind": "regular",
                "title": "党建联席会暨社区营造推进工作会", "agenda": ["六联讨论", "认领党建服务项目"],
                "venue": "沱源社区会议室", "occurred_at": "2018-04-24T14:30:00+08:00"
            }),
            &m,
            &["MeetingConvened"],
        )
        .await,
    );
    responses.push(
        step(
            &app,
            &secretary,
            "RecordAttendance",
            json!({"meeting_id": meeting, "unit_ids": [units[0], units[1]]}),
            &m,
            &["AttendanceRecorded"],
        )
        .await,
    );
    responses.push(
        step(
            &app,
            &secretary,
            "ProposeProject",
            json!({"project_id": project, "community_id": community, "title": "4·25 预防接种宣传", "theme": "public_welfare", "need": "居民希望了解预防接种"}),
            &p,
            &["ProjectProposed"],
        )
        .await,
    );
    responses.push(
        step(
            &app,
            &secretary,
            "ApproveProject",
            json!({"project_id": project, "meeting_id": meeting}),
            &p,
            &["ProjectApproved"],
        )
        .await,
    );
    responses.push(
        step(
            &app,
            &secretary,
            "CloseMeeting",
            json!({"meeting_id": meeting, "resolutions": ["通过六联项目清单"], "minutes": "会议纪要"}),
            &m,
            &["MeetingClosed"],
        )
        .await,
    );
    // The unit's representative claims, gives back, claims again and delivers.
    let rep = app.issue_token("unit_rep", Some(units[0]), "罗俊").await;
    let claim = json!({
        "project_id": project, "unit_id": units[0], "meeting_id": meeting,
        "commitment": "组织宣传日", "occurred_at": "2018-04-24T15:00:00+08:00"
    });
    let first_claim = step(
        &app,
        &rep,
        "ClaimProject",
        claim.clone(),
        &p,
        &["ProjectClaimed"],
    )
    .await;
    responses.push(first_claim.clone());
    responses.push(
        step(
            &app,
            &rep,
            "WithdrawClaim",
            json!({"project_id": project, "reason": "人手调整"}),
            &p,
            &["ClaimWithdrawn"],
        )
        .await,
    );
    let mut reclaim = claim.clone();
    reclaim["commitment"] = json!("组织宣传日（重新认领）");
    responses.push(step(&app, &rep, "ClaimProject", reclaim, &p, &["ProjectClaimed"]).await);
    responses.push(
        step(
            &app,
            &rep,
            "LaunchProject",
            json!({"project_id": project, "occurred_at": "2018-04-25T08:00:00+08:00"}),
            &p,
            &["ProjectLaunched"],
        )
        .await,
    );
    responses.push(
        step(
            &app,
            &rep,
            "RecordActivity",
            json!({
                "project_id": project, "activity_id": activity, "title": "4·25 预防接种宣传活动",
                "participants": 300, "volunteers": 12, "volunteer_hours": 48,
                "beneficiaries": 10, "funds_yuan": 1500, "notes": "赠送礼品",
                "occurred_at": "2018-04-25T14:00:00+08:00"
            }),
            &p,
            &["ActivityRecorded"],
        )
        .await,
    );
    responses.push(
        step(
            &app,
            &rep,
            "CompleteProject",
            json!({"project_id": project, "summary": "约300人参与"}),
            &p,
            &["ProjectCompleted"],
        )
        .await,
    );
    responses.push(
        step(
            &app,
            &secretary,
            "RecordFeedback",
            json!({"project_id": project, "rating": 5, "comment": "好评"}),
            &p,
            &["FeedbackRecorded"],
        )
        .await,
    );
    responses.push(
        step(
            &app,
            &secretary,
            "ProposeProject",
            json!({"project_id": cancelled, "community_id": community, "title": "老旧院落整治", "theme": "living_environment"}),
            &format!("project-{cancelled}"),
            &["ProjectProposed"],
        )
        .await,
    );
    responses.push(
        step(
            &app,
            &secretary,
            "CancelProject",
            json!({"project_id": cancelled, "reason": "并入其他项目"}),
            &format!("project-{cancelled}"),
            &["ProjectCancelled"],
        )
        .await,
    );
    responses.push(
        step(
            &app,
            &rep,
            "RaiseRequest",
            json!({"request_id": request, "community_id": community, "unit_id": units[0], "title": "院落改造求助", "need": "破旧院落"}),
            &r,
            &["RequestRaised"],
        )
        .await,
    );
    responses.push(
        step(
            &app,
            &secretary,
            "ResolveRequest",
            json!({"request_id": request, "resolution": "已协调解决"}),
            &r,
            &["RequestResolved"],
        )
        .await,
    );

    // All 19 commands were used.
    let log = app.all_events().await;
    let commands: std::collections::BTreeSet<&str> = log
        .iter()
        .map(|e| e["metadata"]["command"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        commands.len(),
        19,
        "every command appears in the log: {commands:?}"
    );

    // Positions are the log's, in order, and each response matches what was stored.
    let positions: Vec<i64> = log
        .iter()
        .map(|e| e["position"].as_i64().unwrap_or(0))
        .collect();
    assert_eq!(
        positions,
        (1..=log.len() as i64).collect::<Vec<_>>(),
        "positions have no gaps"
    );
    assert_eq!(responses.len(), log.len());
    for (response, event) in responses.iter().zip(&log) {
        assert_event_shape(event);
        assert_eq!(response["events"][0]["id"], event["id"]);
        assert_eq!(response["events"][0]["type"], event["type"]);
        assert_eq!(response["position"], event["position"]);
        assert_eq!(response["stream"], event["stream"]);
        assert_eq!(response["version"], event["version"]);
        assert_eq!(response["command_id"], event["metadata"]["command_id"]);
    }

    // Each stream's versions count its events from 1.
    for stream in [&d, &c, &m, &p, &r] {
        let events = app.stream_events(stream).await;
        let versions: Vec<i64> = events
            .iter()
            .map(|e| e["version"].as_i64().unwrap_or(0))
            .collect();
        assert_eq!(
            versions,
            (1..=events.len() as i64).collect::<Vec<_>>(),
            "{stream}"
        );
    }

    // The project's stream, read back.
    let stream = app.stream_events(&p).await;
    let types: Vec<&str> = stream
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        types,
        [
            "ProjectProposed",
            "ProjectApproved",
            "ProjectClaimed",
            "ClaimWithdrawn",
            "ProjectClaimed",
            "ProjectLaunched",
            "ActivityRecorded",
            "ProjectCompleted",
            "FeedbackRecorded"
        ]
    );
    let claimed = &stream[2];
    let activity_event = &stream[6];
    // The actor and whom it acted for come from the unit representative's token.
    assert_eq!(claimed["metadata"]["actor"]["name"], "罗俊");
    assert_eq!(claimed["metadata"]["actor"]["role"], "unit_rep");
    assert_eq!(
        claimed["metadata"]["acting_for"],
        json!({"kind": "unit", "id": units[0]})
    );
    assert_eq!(claimed["metadata"]["command"], "ClaimProject");
    assert_eq!(claimed["data"]["unit_id"], json!(units[0]));
    assert_eq!(claimed["data"]["meeting_id"], json!(meeting));
    // The business time is the one the command carried.
    let occurred = |e: &Value| {
        DateTime::parse_from_rfc3339(e["metadata"]["occurred_at"].as_str().unwrap_or_default())
            .expect("RFC 3339")
    };
    assert_eq!(
        occurred(activity_event),
        DateTime::parse_from_rfc3339("2018-04-25T14:00:00+08:00").expect("a time")
    );
    assert_eq!(activity_event["data"]["activity_id"], json!(activity));
    assert_eq!(activity_event["data"]["participants"], 300);
    assert_eq!(activity_event["data"]["funds_yuan"], 1500);
    let secretary_event = &stream[1];
    assert_eq!(
        secretary_event["metadata"]["actor"]["role"],
        "community_secretary"
    );
    assert_eq!(
        secretary_event["metadata"]["acting_for"],
        json!({"kind": "community", "id": community})
    );

    redacted().bind(|| {
        insta::assert_json_snapshot!("claim_project_response", first_claim);
        insta::assert_json_snapshot!("project_claimed_event", claimed);
        insta::assert_json_snapshot!("activity_recorded_event", activity_event);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creating_command_without_its_id_gets_one_made_by_the_server() {
    let app = spawn_app().await;
    let world = app.world(0).await;
    let (status, body) = app
        .command(
            "ProposeProject",
            json!({"community_id": world.community, "title": "便民服务", "theme": "service_problems"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let stream = body["stream"].as_str().expect("a stream");
    let id = stream.strip_prefix("project-").expect("a project stream");
    let id = Uuid::parse_str(id).expect("a UUID");
    assert_eq!(id.get_version_num(), 7, "the server makes UUIDv7 ids: {id}");
    let events = app.stream_events(stream).await;
    assert_eq!(events[0]["data"]["project_id"], json!(id));

    // RecordActivity's activity_id is made too, and distinct for each activity.
    let unit = app.register_unit(world.district, "县残联党支部").await;
    app.admit(world.community, unit).await;
    let project = app.launched_project(world.community, unit).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let body = json!({"project_id": project, "title": "慰问", "participants": 10});
        app.ok("RecordActivity", body).await;
    }
    for event in app.stream_events(&format!("project-{project}")).await {
        if event["type"] == "ActivityRecorded" {
            ids.push(
                event["data"]["activity_id"]
                    .as_str()
                    .expect("an id")
                    .to_owned(),
            );
        }
    }
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_acts_for_the_narrowest_thing_its_command_concerns() {
    let app = spawn_app().await;
    let world = app.world(1).await;
    let district_events = app
        .stream_events(&format!("district-{}", world.district))
        .await;
    let registered = &district_events[0]["metadata"];
    assert_eq!(registered["actor"]["role"], "admin");
    assert_eq!(
        registered["acting_for"],
        json!({"kind": "district", "id": world.district})
    );
    let community_events = app
        .stream_events(&format!("community-{}", world.community))
        .await;
    let admitted = &community_events[1]["metadata"];
    assert_eq!(admitted["command"], "AdmitMemberUnit");
    assert_eq!(
        admitted["acting_for"],
        json!({"kind": "community", "id": world.community})
    );
}

//! `GET /v1/units/{id}`, `/v1/projects/{id}`, `/v1/meetings/{id}` and `/v1/requests/{id}` over
//! HTTP: each body, the position header, read-your-writes with `X-Min-Position` right after a
//! command, who may read what (403), and 404 for ids that name nothing.

use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{redacted, spawn_app, Reply, TestApp};

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

const DISTRICT: u128 = 1;
const OTHER_DISTRICT: u128 = 2;
const SHILI: u128 = 10;
const SANJIANG: u128 = 11;
const OTHER_COMMUNITY: u128 = 12;
const CDC: u128 = 20;
const HOUSING: u128 = 21;
const MARKET: u128 = 22;
const OUTSIDER: u128 = 23;
const MEETING: u128 = 30;
const PROJECT: u128 = 40;
const REQUEST: u128 = 60;

/// Two districts; Shili (CDC, housing office) and Sanjiang (market bureau) in the first, one
/// community with one unit in the second; a meeting, a project claimed at it by the CDC and
/// launched with an activity, and the market bureau's request to Sanjiang, resolved. Returns the
/// last command's position.
async fn story(app: &TestApp) -> i64 {
    let at = |date: &str| format!("{date}T10:00:00+08:00");
    for (district, name) in [(DISTRICT, "赵镇街道"), (OTHER_DISTRICT, "淮口街道")] {
        app.ok(
            "RegisterDistrict",
            json!({"district_id": id(district), "name": name}),
        )
        .await;
    }
    for (community, district, name) in [
        (SHILI, DISTRICT, "十里社区"),
        (SANJIANG, DISTRICT, "三江社区"),
        (OTHER_COMMUNITY, OTHER_DISTRICT, "淮口社区"),
    ] {
        app.ok(
            "RegisterCommunity",
            json!({"community_id": id(community), "district_id": id(district), "name": name}),
        )
        .await;
    }
    for (unit, district, community, name) in [
        (CDC, DISTRICT, SHILI, "金堂县疾病预防控制中心"),
        (HOUSING, DISTRICT, SHILI, "金堂县房产管理局"),
        (MARKET, DISTRICT, SANJIANG, "金堂县市场监督管理局"),
        (OUTSIDER, OTHER_DISTRICT, OTHER_COMMUNITY, "淮口镇卫生院"),
    ] {
        app.ok(
            "RegisterUnit",
            json!({"unit_id": id(unit), "district_id": id(district), "name": name}),
        )
        .await;
        app.ok(
            "AdmitMemberUnit",
            json!({"community_id": id(community), "unit_id": id(unit), "kind": "jurisdiction",
                   "occurred_at": at("2018-01-10")}),
        )
        .await;
    }
    app.ok(
        "ConveneMeeting",
        json!({"meeting_id": id(MEETING), "community_id": id(SHILI), "kind": "regular",
               "title": "第二季度联席会议", "agenda": ["认领项目"], "venue": "党群服务中心",
               "occurred_at": at("2018-04-24")}),
    )
    .await;
    app.ok(
        "RecordAttendance",
        json!({"meeting_id": id(MEETING), "unit_ids": [id(CDC), id(HOUSING)]}),
    )
    .await;
    app.ok(
        "ProposeProject",
        json!({"project_id": id(PROJECT), "community_id": id(SHILI), "title": "4·25 预防接种宣传",
               "theme": "public_welfare", "occurred_at": at("2018-04-20")}),
    )
    .await;
    app.ok(
        "ApproveProject",
        json!({"project_id": id(PROJECT), "meeting_id": id(MEETING), "occurred_at": at("2018-04-24")}),
    )
    .await;
    app.ok(
        "ClaimProject",
        json!({"project_id": id(PROJECT), "unit_id": id(CDC), "meeting_id": id(MEETING),
               "commitment": "组织宣传", "occurred_at": at("2018-04-24")}),
    )
    .await;
    app.ok(
        "CloseMeeting",
        json!({"meeting_id": id(MEETING), "resolutions": ["通过项目"], "occurred_at": at("2018-04-24")}),
    )
    .await;
    app.ok(
        "LaunchProject",
        json!({"project_id": id(PROJECT), "occurred_at": at("2018-04-24")}),
    )
    .await;
    app.ok(
        "RecordActivity",
        json!({"project_id": id(PROJECT), "activity_id": id(50), "title": "宣传日",
               "participants": 300, "volunteers": 12, "volunteer_hours": 48, "beneficiaries": 300,
               "occurred_at": at("2018-04-25")}),
    )
    .await;
    app.ok(
        "RaiseRequest",
        json!({"request_id": id(REQUEST), "community_id": id(SANJIANG), "unit_id": id(MARKET),
               "title": "老旧院落改造", "occurred_at": at("2018-06-01")}),
    )
    .await;
    let last = app
        .ok(
            "ResolveRequest",
            json!({"request_id": id(REQUEST), "resolution": "已协调改造", "occurred_at": at("2018-06-20")}),
        )
        .await;
    last["position"].as_i64().expect("a position")
}

/// GETs `path` with `token`, waiting for `position`.
async fn read(app: &TestApp, path: &str, token: &str, position: i64) -> Reply {
    app.get(
        path,
        Some(token),
        &[("x-min-position", &position.to_string())],
    )
    .await
}

#[track_caller]
fn position_of(reply: &Reply) -> i64 {
    reply
        .header("x-projection-position")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("X-Projection-Position missing: {:?}", reply.headers))
}

const PATHS: [(&str, u128); 4] = [
    ("units", CDC),
    ("projects", PROJECT),
    ("meetings", MEETING),
    ("requests", REQUEST),
];

#[tokio::test]
async fn each_item_answers_its_current_state_with_the_position_it_is_as_of() {
    let app = spawn_app().await;
    let position = story(&app).await;
    for (kind, n) in PATHS {
        let reply = read(
            &app,
            &format!("/v1/{kind}/{}", id(n)),
            &app.admin_token,
            position,
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{kind}: {}", reply.text());
        assert!(
            position_of(&reply) >= position,
            "{kind} answered as of {} before {position}",
            position_of(&reply)
        );
        redacted().bind(|| insta::assert_json_snapshot!(format!("item_{kind}"), reply.json));
    }
}

#[tokio::test]
async fn a_read_right_after_a_command_sees_it() {
    let app = spawn_app().await;
    story(&app).await;
    for n in 0..20u128 {
        let reply = app
            .ok(
                "RecordActivity",
                json!({"project_id": id(PROJECT), "activity_id": id(1_000 + n), "title": format!("探访 {n}"),
                       "participants": 1, "occurred_at": "2018-05-01T10:00:00+08:00"}),
            )
            .await;
        let position = reply["position"].as_i64().expect("a position");
        let project = read(
            &app,
            &format!("/v1/projects/{}", id(PROJECT)),
            &app.admin_token,
            position,
        )
        .await;
        assert_eq!(project.status, StatusCode::OK, "{}", project.text());
        assert_eq!(project.json["activities"]["count"], json!(2 + n as u64));
        assert_eq!(
            project.json["activities"]["recent"][0]["activity_id"],
            json!(id(1_000 + n))
        );
        let unit = read(
            &app,
            &format!("/v1/units/{}", id(CDC)),
            &app.admin_token,
            position,
        )
        .await;
        assert_eq!(
            unit.json["activities"],
            json!(2 + n as u64),
            "{}",
            unit.text()
        );
        assert!(position_of(&project) >= position && position_of(&unit) >= position);
    }
    // A claim, its withdrawal, then another unit's claim, each seen at once.
    let second = id(41);
    app.ok(
        "ProposeProject",
        json!({"project_id": second, "community_id": id(SHILI), "title": "楼道清洁",
               "theme": "living_environment"}),
    )
    .await;
    let steps = [
        (
            "ClaimProject",
            json!({"project_id": second, "unit_id": id(CDC)}),
        ),
        ("WithdrawClaim", json!({"project_id": second})),
        (
            "ClaimProject",
            json!({"project_id": second, "unit_id": id(HOUSING)}),
        ),
    ];
    let mut seen = Vec::new();
    for (name, body) in steps {
        let reply = app.ok(name, body).await;
        let position = reply["position"].as_i64().expect("a position");
        let project = read(
            &app,
            &format!("/v1/projects/{second}"),
            &app.admin_token,
            position,
        )
        .await;
        let profile = read(
            &app,
            &format!("/v1/units/{}", id(CDC)),
            &app.admin_token,
            position,
        )
        .await;
        seen.push((
            project.json["claimant"]["unit_id"].clone(),
            profile.json["claims"][1]["status"].clone(),
        ));
    }
    assert_eq!(
        seen,
        [
            (json!(id(CDC)), json!("claimed")),
            (json!(null), json!("withdrawn")),
            (json!(id(HOUSING)), json!("withdrawn")),
        ]
    );
}

#[tokio::test]
async fn a_malformed_min_position_is_refused() {
    let app = spawn_app().await;
    story(&app).await;
    let reply = app
        .get(
            &format!("/v1/projects/{}", id(PROJECT)),
            Some(&app.admin_token),
            &[("x-min-position", "soon")],
        )
        .await;
    reply.assert_problem(400, "invalid_header");
}

#[tokio::test]
async fn each_role_reads_only_within_its_scope() {
    let app = spawn_app().await;
    let position = story(&app).await;
    let token = |role: &'static str, scope: u128| {
        let app = &app;
        async move {
            app.issue_token(role, Some(id(scope)), &format!("{role} of {scope}"))
                .await
        }
    };
    // (token, [units, projects, meetings, requests] allowed?)
    let cases: Vec<(String, &str, [bool; 4])> = vec![
        (
            token("district_admin", DISTRICT).await,
            "district_admin",
            [true; 4],
        ),
        (token("analyst", DISTRICT).await, "analyst", [true; 4]),
        (token("auditor", DISTRICT).await, "auditor", [true; 4]),
        (
            token("district_admin", OTHER_DISTRICT).await,
            "district_admin elsewhere",
            [false; 4],
        ),
        (
            token("analyst", OTHER_DISTRICT).await,
            "analyst elsewhere",
            [false; 4],
        ),
        (
            token("auditor", OTHER_DISTRICT).await,
            "auditor elsewhere",
            [false; 4],
        ),
        // Shili's secretary: the CDC (a member), Shili's project and meeting; not Sanjiang's request.
        (
            token("community_secretary", SHILI).await,
            "Shili's secretary",
            [true, true, true, false],
        ),
        // Sanjiang's secretary: its request only.
        (
            token("community_secretary", SANJIANG).await,
            "Sanjiang's secretary",
            [false, false, false, true],
        ),
        // The CDC's representative: its own profile, Shili's items; not Sanjiang's request.
        (
            token("unit_rep", CDC).await,
            "the CDC's rep",
            [true, true, true, false],
        ),
        // The housing office's: Shili's items, not the CDC's profile.
        (
            token("unit_rep", HOUSING).await,
            "the housing office's rep",
            [false, true, true, false],
        ),
        // The market bureau's: its own request only.
        (
            token("unit_rep", MARKET).await,
            "the market bureau's rep",
            [false, false, false, true],
        ),
    ];
    for (token, who, allowed) in &cases {
        for ((kind, n), allowed) in PATHS.iter().zip(allowed) {
            let reply = read(&app, &format!("/v1/{kind}/{}", id(*n)), token, position).await;
            if *allowed {
                assert_eq!(
                    reply.status,
                    StatusCode::OK,
                    "{who} reads {kind}: {}",
                    reply.text()
                );
            } else {
                reply.assert_problem(403, "forbidden");
            }
            assert!(
                reply.status != StatusCode::OK || position_of(&reply) >= position,
                "{who} {kind}"
            );
        }
    }
    // A unit that left Sanjiang still reads the request it raised there.
    let left = app
        .ok(
            "WithdrawMemberUnit",
            json!({"community_id": id(SANJIANG), "unit_id": id(MARKET)}),
        )
        .await;
    let left = left["position"].as_i64().expect("a position");
    let market = &cases[10].0;
    let reply = read(&app, &format!("/v1/requests/{}", id(REQUEST)), market, left).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
}

#[tokio::test]
async fn ids_that_name_nothing_are_not_found() {
    let app = spawn_app().await;
    let position = story(&app).await;
    for (kind, n) in PATHS {
        for bad in [
            id(999).to_string(),
            "not-a-uuid".to_owned(),
            id(n + 1_000).to_string(),
        ] {
            let reply = read(
                &app,
                &format!("/v1/{kind}/{bad}"),
                &app.admin_token,
                position,
            )
            .await;
            reply.assert_problem(404, "not_found");
        }
    }
    // An id of another kind of thing is not one of these.
    let reply = read(
        &app,
        &format!("/v1/projects/{}", id(MEETING)),
        &app.admin_token,
        position,
    )
    .await;
    reply.assert_problem(404, "not_found");
    // Without a token, 401 comes first.
    let reply = app.get(&format!("/v1/units/{}", id(CDC)), None, &[]).await;
    reply.assert_problem(401, "unauthorized");
}

#[tokio::test]
async fn the_openapi_document_describes_the_profile_and_the_item_views() {
    let app = spawn_app().await;
    let reply = app.get("/openapi.json", None, &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    for (path, schema) in [
        ("/v1/units/{id}", "UnitProfile"),
        ("/v1/projects/{id}", "ProjectView"),
        ("/v1/meetings/{id}", "MeetingView"),
        ("/v1/requests/{id}", "RequestView"),
    ] {
        let get = &reply.json["paths"][path]["get"];
        assert!(get.is_object(), "{path} is documented");
        assert_eq!(
            get["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            format!("#/components/schemas/{schema}"),
            "{path} answers {schema}"
        );
        assert!(
            get["responses"]["200"]["headers"]["X-Projection-Position"].is_object(),
            "{path} documents X-Projection-Position"
        );
        assert!(
            reply.json["components"]["schemas"][schema].is_object(),
            "{schema} is a component"
        );
    }
}

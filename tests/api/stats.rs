//! `GET /v1/districts/{id}/stats` over HTTP: the shape of API.md, read-your-writes with
//! `X-Min-Position`, the position header, and who may read which district's statistics.

use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{keys, redacted, sorted, spawn_app, TestApp};

const FIGURES: [&str; 23] = [
    "meetings_regular",
    "meetings_extraordinary",
    "quarters_without_regular_meeting",
    "member_units",
    "projects_proposed",
    "projects_claimed",
    "projects_launched",
    "projects_completed",
    "projects_cancelled",
    "claim_rate",
    "completion_rate",
    "median_days_to_claim",
    "median_days_to_launch",
    "activities",
    "participants",
    "volunteers",
    "volunteer_hours",
    "beneficiaries",
    "funds_yuan",
    "requests_raised",
    "requests_resolved",
    "mean_rating",
    "by_theme",
];

const THEMES: [&str; 6] = [
    "party_work",
    "shared_resources",
    "civility",
    "service_problems",
    "public_welfare",
    "living_environment",
];

fn stats_path(district: Uuid, quarter: Option<&str>) -> String {
    match quarter {
        Some(q) => format!("/v1/districts/{district}/stats?quarter={q}"),
        None => format!("/v1/districts/{district}/stats"),
    }
}

#[track_caller]
fn assert_figures(figures: &Value, extra: &[&str]) {
    let mut expected: Vec<&str> = FIGURES.to_vec();
    expected.extend_from_slice(extra);
    assert_eq!(keys(figures), sorted(&expected), "figures: {figures}");
    assert_eq!(
        keys(&figures["by_theme"]),
        sorted(&THEMES),
        "by_theme: {figures}"
    );
    for theme in THEMES {
        assert_eq!(
            keys(&figures["by_theme"][theme]),
            sorted(&["proposed", "claimed", "completed"]),
            "{theme}: {figures}"
        );
    }
}

/// A small 2018Q2 story in one community: a regular meeting, a project proposed, claimed,
/// launched, with one activity. Returns the last command's position.
async fn story(app: &TestApp, community: Uuid, unit: Uuid) -> i64 {
    let project = Uuid::new_v4();
    let at = |date: &str| format!("{date}T10:00:00+08:00");
    app.ok(
        "ConveneMeeting",
        json!({"community_id": community, "kind": "regular", "title": "第二季度联席会议",
               "agenda": ["认领项目"], "occurred_at": at("2018-04-24")}),
    )
    .await;
    app.ok(
        "ProposeProject",
        json!({"project_id": project, "community_id": community, "title": "4·25 预防接种宣传",
               "theme": "public_welfare", "occurred_at": at("2018-04-01")}),
    )
    .await;
    app.ok(
        "ClaimProject",
        json!({"project_id": project, "unit_id": unit, "occurred_at": at("2018-04-10")}),
    )
    .await;
    app.ok(
        "LaunchProject",
        json!({"project_id": project, "occurred_at": at("2018-04-20")}),
    )
    .await;
    let reply = app
        .ok(
            "RecordActivity",
            json!({"project_id": project, "title": "宣传日", "participants": 300,
                   "volunteers": 20, "volunteer_hours": 60, "occurred_at": at("2018-04-25")}),
        )
        .await;
    reply["position"].as_i64().expect("a position")
}

#[tokio::test]
async fn district_stats_have_the_shape_of_api_md_and_say_their_position() {
    let app = spawn_app().await;
    let world = app.world(2).await;
    let position = story(&app, world.community, world.units[0]).await;
    let wait = position.to_string();
    let reply = app
        .get(
            &stats_path(world.district, None),
            Some(&app.admin_token),
            &[("X-Min-Position", &wait)],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let reached: i64 = reply
        .header("x-projection-position")
        .expect("X-Projection-Position")
        .parse()
        .expect("a position");
    assert!(reached >= position, "{reached} < {position}");
    let body = &reply.json;
    assert_eq!(
        keys(body),
        sorted(&["district", "quarter", "totals", "communities"])
    );
    assert_eq!(keys(&body["district"]), sorted(&["id", "name"]));
    assert_eq!(body["district"]["id"], world.district.to_string());
    assert_eq!(body["quarter"], Value::Null);
    assert_figures(&body["totals"], &[]);
    let communities = body["communities"].as_array().expect("a list");
    assert_eq!(communities.len(), 1);
    assert_figures(&communities[0], &["community_id", "name"]);
    assert_eq!(communities[0]["community_id"], world.community.to_string());
    assert_eq!(body["totals"]["projects_claimed"], 1);
    assert_eq!(body["totals"]["member_units"], 2);
    assert_eq!(body["totals"]["participants"], 300);

    let q2 = app
        .get(
            &stats_path(world.district, Some("2018Q2")),
            Some(&app.admin_token),
            &[],
        )
        .await;
    assert_eq!(q2.status, StatusCode::OK, "{}", q2.text());
    assert!(q2.header("x-projection-position").is_some());
    // The world's units were admitted "now", so at the end of 2018Q2 the community had none, and
    // it did not exist yet, so no quarter without a regular meeting is due then.
    redacted().bind(|| insta::assert_json_snapshot!("district_stats_2018Q2", q2.json));
    let q1 = app
        .get(
            &stats_path(world.district, Some("2018Q1")),
            Some(&app.admin_token),
            &[],
        )
        .await;
    assert_eq!(q1.json["quarter"], "2018Q1");
    assert_eq!(q1.json["totals"]["projects_proposed"], 0);
    assert_eq!(q1.json["totals"]["claim_rate"], Value::Null);
}

#[tokio::test]
async fn a_command_then_a_read_with_x_min_position_sees_the_command() {
    let app = spawn_app().await;
    let world = app.world(1).await;
    for n in 1..=20 {
        let reply = app
            .ok(
                "ProposeProject",
                json!({"community_id": world.community, "title": format!("项目{n}"),
                       "theme": "civility"}),
            )
            .await;
        let wait = reply["position"].as_i64().expect("a position").to_string();
        let stats = app
            .get(
                &stats_path(world.district, None),
                Some(&app.admin_token),
                &[("X-Min-Position", &wait)],
            )
            .await;
        assert_eq!(stats.status, StatusCode::OK, "{}", stats.text());
        assert_eq!(stats.json["totals"]["projects_proposed"], n);
        assert_eq!(stats.json["totals"]["by_theme"]["civility"]["proposed"], n);
    }
}

#[tokio::test]
async fn a_position_the_log_never_reaches_is_a_503_after_the_wait() {
    let app = spawn_app().await;
    let district = app.register_district("赵镇街道").await;
    let reply = app
        .get(
            &stats_path(district, None),
            Some(&app.admin_token),
            &[("X-Min-Position", "1000000")],
        )
        .await;
    reply.assert_problem(503, "projection_behind");
    let bad = app
        .get(
            &stats_path(district, None),
            Some(&app.admin_token),
            &[("X-Min-Position", "soon")],
        )
        .await;
    bad.assert_problem(400, "invalid_header");
}

#[tokio::test]
async fn an_analyst_of_district_a_cannot_read_district_bs_stats() {
    let app = spawn_app().await;
    let a = app.register_district("赵镇街道").await;
    let b = app.register_district("官仓街道").await;
    let position = app.head().await.to_string();
    for role in ["analyst", "auditor", "district_admin"] {
        let token = app
            .issue_token(role, Some(a), &format!("{role} of A"))
            .await;
        let own = app
            .get(
                &stats_path(a, None),
                Some(&token),
                &[("X-Min-Position", &position)],
            )
            .await;
        assert_eq!(own.status, StatusCode::OK, "{role}: {}", own.text());
        assert_eq!(own.json["district"]["name"], "赵镇街道");
        let other = app.get(&stats_path(b, None), Some(&token), &[]).await;
        other.assert_problem(403, "forbidden");
        let quarter = app
            .get(&stats_path(b, Some("2018Q2")), Some(&token), &[])
            .await;
        quarter.assert_problem(403, "forbidden");
        // Outside the scope, an unknown district is refused the same way: no probing.
        let unknown = app
            .get(&stats_path(Uuid::new_v4(), None), Some(&token), &[])
            .await;
        unknown.assert_problem(403, "forbidden");
    }
}

#[tokio::test]
async fn community_secretaries_and_unit_reps_may_not_read_district_stats() {
    let app = spawn_app().await;
    let world = app.world(1).await;
    let secretary = app
        .issue_token("community_secretary", Some(world.community), "书记")
        .await;
    let rep = app
        .issue_token("unit_rep", Some(world.units[0]), "联络员")
        .await;
    for token in [secretary, rep] {
        let reply = app
            .get(&stats_path(world.district, None), Some(&token), &[])
            .await;
        reply.assert_problem(403, "forbidden");
    }
}

#[tokio::test]
async fn bad_requests_for_district_stats_are_refused_plainly() {
    let app = spawn_app().await;
    let district = app.register_district("赵镇街道").await;
    let admin = Some(app.admin_token.as_str());
    for quarter in ["2018Q5", "2018q2", "18Q1", "", "2018-Q2"] {
        let reply = app
            .get(&stats_path(district, Some(quarter)), admin, &[])
            .await;
        reply.assert_problem(400, "invalid_query");
    }
    app.get(&stats_path(Uuid::new_v4(), None), admin, &[])
        .await
        .assert_problem(404, "not_found");
    app.get("/v1/districts/not-a-uuid/stats", admin, &[])
        .await
        .assert_problem(404, "not_found");
    app.get(&stats_path(district, None), None, &[])
        .await
        .assert_problem(401, "unauthorized");
}

#[tokio::test]
async fn the_openapi_document_describes_district_stats() {
    let app = spawn_app().await;
    let reply = app.get("/openapi.json", None, &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    let path = &reply.json["paths"]["/v1/districts/{id}/stats"]["get"];
    assert!(path.is_object(), "the path is documented");
    assert!(
        reply.json["components"]["schemas"]["DistrictStats"].is_object(),
        "its response schema is a component"
    );
}

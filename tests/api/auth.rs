//! Authentication and roles (API.md): who may send what, the actor always from the token, and
//! tokens stored only as hashes.

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Row};
use uuid::Uuid;

use crate::helpers::{project_stream, spawn_app, spawn_app_sqlite, TestApp, World};

/// A valid body for each of the 19 commands, against `world` (which has two member units).
fn every_command(world: &World, project: Uuid, meeting: Uuid) -> Vec<(&'static str, Value)> {
    let (c, d, u) = (world.community, world.district, world.units[0]);
    vec![
        ("RegisterDistrict", json!({"name": "新街道"})),
        (
            "RegisterCommunity",
            json!({"district_id": d, "name": "新社区"}),
        ),
        ("RegisterUnit", json!({"district_id": d, "name": "新单位"})),
        (
            "AdmitMemberUnit",
            json!({"community_id": c, "unit_id": u, "kind": "jurisdiction"}),
        ),
        (
            "WithdrawMemberUnit",
            json!({"community_id": c, "unit_id": u}),
        ),
        (
            "ConveneMeeting",
            json!({"community_id": c, "kind": "regular", "title": "会", "agenda": []}),
        ),
        (
            "RecordAttendance",
            json!({"meeting_id": meeting, "unit_ids": [u]}),
        ),
        (
            "CloseMeeting",
            json!({"meeting_id": meeting, "resolutions": []}),
        ),
        (
            "ProposeProject",
            json!({"community_id": c, "title": "项目", "theme": "civility"}),
        ),
        (
            "ApproveProject",
            json!({"project_id": project, "meeting_id": meeting}),
        ),
        ("ClaimProject", json!({"project_id": project, "unit_id": u})),
        ("WithdrawClaim", json!({"project_id": project})),
        ("LaunchProject", json!({"project_id": project})),
        (
            "RecordActivity",
            json!({"project_id": project, "title": "活动", "participants": 1}),
        ),
        ("CompleteProject", json!({"project_id": project})),
        (
            "RecordFeedback",
            json!({"project_id": project, "rating": 5}),
        ),
        ("CancelProject", json!({"project_id": project})),
        (
            "RaiseRequest",
            json!({"community_id": c, "unit_id": u, "title": "求助"}),
        ),
        ("ResolveRequest", json!({"request_id": Uuid::new_v4()})),
    ]
}

async fn forbidden(app: &TestApp, token: &str, name: &str, body: Value) {
    let head = app.head().await;
    let reply = app.command_reply(token, name, body.clone(), &[]).await;
    assert_eq!(
        reply.status,
        StatusCode::FORBIDDEN,
        "{name} {body}: {}",
        reply.text()
    );
    reply.assert_problem(403, "forbidden");
    assert_eq!(app.head().await, head, "a forbidden {name} wrote nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_unknown_token_is_401() {
    let app = spawn_app().await;
    let body = serde_json::to_vec(&json!({"name": "赵镇街道"})).expect("JSON");
    let json_type = ("content-type", "application/json".to_owned());
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("no Authorization header", vec![json_type.clone()]),
        (
            "an unknown bearer token",
            vec![
                json_type.clone(),
                ("authorization", "Bearer lx_0000".to_owned()),
            ],
        ),
        (
            "an admin token with a typo",
            vec![
                json_type.clone(),
                ("authorization", format!("Bearer {}x", app.admin_token)),
            ],
        ),
        (
            "Basic credentials",
            vec![
                json_type.clone(),
                ("authorization", "Basic YWRtaW46YWRtaW4=".to_owned()),
            ],
        ),
        (
            "the admin token as Basic",
            vec![
                json_type.clone(),
                ("authorization", format!("Basic {}", app.admin_token)),
            ],
        ),
        (
            "the token without a scheme",
            vec![
                json_type.clone(),
                ("authorization", app.admin_token.clone()),
            ],
        ),
        (
            "an empty bearer",
            vec![json_type.clone(), ("authorization", "Bearer ".to_owned())],
        ),
        (
            "a 10,000-character token",
            vec![
                json_type.clone(),
                ("authorization", format!("Bearer {}", "a".repeat(10_000))),
            ],
        ),
    ];
    for (what, headers) in cases {
        let reply = app
            .post_raw("/v1/commands/RegisterDistrict", body.clone(), &headers)
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{what}: {}",
            reply.text()
        );
        reply.assert_problem(401, "unauthorized");
    }
    for path in ["/v1/events", "/v1/streams/district-x/events"] {
        let reply = app.get(path, None, &[]).await;
        reply.assert_problem(401, "unauthorized");
        let reply = app.get(path, Some("not-a-token"), &[]).await;
        reply.assert_problem(401, "unauthorized");
    }
    let reply = app
        .post_raw(
            "/v1/tokens",
            serde_json::to_vec(&json!({"role": "admin", "name": "x"})).expect("JSON"),
            &[("content-type", "application/json".to_owned())],
        )
        .await;
    reply.assert_problem(401, "unauthorized");
    insta::assert_json_snapshot!("unauthorized", reply.json);
    // Operations endpoints need none.
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        assert_eq!(
            app.get(path, None, &[]).await.status,
            StatusCode::OK,
            "{path}"
        );
    }
    assert_eq!(app.head().await, 0, "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analysts_and_auditors_send_no_command() {
    let app = spawn_app().await;
    let world = app.world(2).await;
    let project = app.propose(world.community).await;
    let meeting = app.convene(world.community).await;
    for role in ["analyst", "auditor"] {
        let token = app.issue_token(role, Some(world.district), role).await;
        for (name, body) in every_command(&world, project, meeting) {
            forbidden(&app, &token, name, body).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_rep_acts_only_for_its_own_unit() {
    let app = spawn_app().await;
    let world = app.world(2).await;
    let (own, other) = (world.units[0], world.units[1]);
    let rep = app.issue_token("unit_rep", Some(own), "罗俊").await;
    let project = app.propose(world.community).await;
    forbidden(
        &app,
        &rep,
        "ClaimProject",
        json!({"project_id": project, "unit_id": other}),
    )
    .await;
    forbidden(
        &app,
        &rep,
        "RaiseRequest",
        json!({"community_id": world.community, "unit_id": other, "title": "求助"}),
    )
    .await;
    // Projects another unit holds are not its to launch, record or complete.
    app.claim(project, other).await;
    forbidden(&app, &rep, "LaunchProject", json!({"project_id": project})).await;
    forbidden(&app, &rep, "WithdrawClaim", json!({"project_id": project})).await;
    app.ok("LaunchProject", json!({"project_id": project}))
        .await;
    forbidden(
        &app,
        &rep,
        "RecordActivity",
        json!({"project_id": project, "title": "冒领", "participants": 1}),
    )
    .await;
    forbidden(
        &app,
        &rep,
        "CompleteProject",
        json!({"project_id": project}),
    )
    .await;
    // Nor does it run the community's conference.
    forbidden(
        &app,
        &rep,
        "ProposeProject",
        json!({"community_id": world.community, "title": "项目", "theme": "civility"}),
    )
    .await;
    forbidden(
        &app,
        &rep,
        "ConveneMeeting",
        json!({"community_id": world.community, "kind": "regular", "title": "会", "agenda": []}),
    )
    .await;
    forbidden(&app, &rep, "CancelProject", json!({"project_id": project})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_community_secretary_acts_only_on_its_own_community() {
    let app = spawn_app().await;
    let world = app.world(1).await;
    let other = app.register_community(world.district, "十里社区").await;
    app.admit(other, world.units[0]).await;
    let secretary = app
        .issue_token("community_secretary", Some(world.community), "沱源社区书记")
        .await;
    let foreign_project = app.propose(other).await;
    let foreign_meeting = app.convene(other).await;
    forbidden(
        &app,
        &secretary,
        "ConveneMeeting",
        json!({"community_id": other, "kind": "regular", "title": "会", "agenda": []}),
    )
    .await;
    forbidden(
        &app,
        &secretary,
        "ProposeProject",
        json!({"community_id": other, "title": "项目", "theme": "civility"}),
    )
    .await;
    forbidden(
        &app,
        &secretary,
        "AdmitMemberUnit",
        json!({"community_id": other, "unit_id": world.units[0], "kind": "jurisdiction"}),
    )
    .await;
    forbidden(
        &app,
        &secretary,
        "ClaimProject",
        json!({"project_id": foreign_project, "unit_id": world.units[0]}),
    )
    .await;
    forbidden(
        &app,
        &secretary,
        "CancelProject",
        json!({"project_id": foreign_project}),
    )
    .await;
    forbidden(
        &app,
        &secretary,
        "CloseMeeting",
        json!({"meeting_id": foreign_meeting, "resolutions": []}),
    )
    .await;
    forbidden(
        &app,
        &secretary,
        "RegisterDistrict",
        json!({"name": "街道"}),
    )
    .await;
    forbidden(
        &app,
        &secretary,
        "RegisterUnit",
        json!({"district_id": world.district, "name": "单位"}),
    )
    .await;
    // On its own community it may record a claim for a member unit; the event names both.
    let own_project = app.propose(world.community).await;
    app.ok_as(
        &secretary,
        "ClaimProject",
        json!({"project_id": own_project, "unit_id": world.units[0]}),
    )
    .await;
    let events = app.stream_events(&project_stream(own_project)).await;
    let claimed = &events[1];
    assert_eq!(claimed["data"]["unit_id"], json!(world.units[0]));
    assert_eq!(claimed["metadata"]["actor"]["role"], "community_secretary");
    assert_eq!(claimed["metadata"]["actor"]["name"], "沱源社区书记");
    assert_eq!(
        claimed["metadata"]["acting_for"],
        json!({"kind": "community", "id": world.community})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_district_admin_registers_only_in_its_own_district() {
    let app = spawn_app().await;
    let world = app.world(0).await;
    let other_district = app.register_district("另一街道").await;
    let district_admin = app
        .issue_token("district_admin", Some(world.district), "赵镇街道办")
        .await;
    forbidden(
        &app,
        &district_admin,
        "RegisterUnit",
        json!({"district_id": other_district, "name": "单位"}),
    )
    .await;
    forbidden(
        &app,
        &district_admin,
        "RegisterCommunity",
        json!({"district_id": other_district, "name": "社区"}),
    )
    .await;
    forbidden(
        &app,
        &district_admin,
        "RegisterDistrict",
        json!({"name": "街道"}),
    )
    .await;
    forbidden(
        &app,
        &district_admin,
        "ProposeProject",
        json!({"community_id": world.community, "title": "项目", "theme": "civility"}),
    )
    .await;
    app.ok_as(
        &district_admin,
        "RegisterUnit",
        json!({"district_id": world.district, "name": "单位"}),
    )
    .await;

    // It issues tokens within its district only, and never admin tokens.
    let community_token = app
        .issue_token_as(
            &district_admin,
            "community_secretary",
            Some(world.community),
            "书记",
        )
        .await;
    assert!(
        community_token.is_ok(),
        "within its district: {:?}",
        community_token.err().map(|r| r.text())
    );
    let reply = app
        .issue_token_as(&district_admin, "analyst", Some(other_district), "分析员")
        .await
        .expect_err("another district's token");
    reply.assert_problem(403, "forbidden");
    let reply = app
        .issue_token_as(&district_admin, "admin", None, "管理员")
        .await
        .expect_err("an admin token");
    assert!(
        reply.status == StatusCode::FORBIDDEN,
        "a district_admin may not make an admin: {}",
        reply.text()
    );
    // Other roles issue none.
    let secretary = community_token.unwrap_or_default();
    let reply = app
        .issue_token_as(&secretary, "unit_rep", Some(Uuid::new_v4()), "代表")
        .await
        .expect_err("a secretary issues no tokens");
    reply.assert_problem(403, "forbidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_actor_on_events_is_the_token_s_never_the_body_s() {
    let app = spawn_app_sqlite().await;
    let world = app.world(1).await;
    let unit = world.units[0];
    let rep = app.issue_token("unit_rep", Some(unit), "罗俊").await;
    let project = app.propose(world.community).await;
    let head = app.head().await;
    let reply = app
        .command_reply(
            &rep,
            "ClaimProject",
            json!({
                "project_id": project, "unit_id": unit,
                "actor": {"id": Uuid::new_v4(), "name": "书记", "role": "admin"}
            }),
            &[],
        )
        .await;
    reply.assert_problem(422, "invalid_field");
    assert_eq!(
        reply.json["errors"][0]["field"],
        "actor",
        "{}",
        reply.text()
    );
    for smuggled in ["metadata", "acting_for", "recorded_at"] {
        let reply = app
            .command_reply(
                &rep,
                "ClaimProject",
                json!({"project_id": project, "unit_id": unit, smuggled: {"kind": "district"}}),
                &[],
            )
            .await;
        reply.assert_problem(422, "invalid_field");
        assert_eq!(reply.json["errors"][0]["field"], smuggled);
    }
    assert_eq!(app.head().await, head);

    app.ok_as(
        &rep,
        "ClaimProject",
        json!({"project_id": project, "unit_id": unit}),
    )
    .await;
    app.ok_as(&rep, "LaunchProject", json!({"project_id": project}))
        .await;
    let events = app.stream_events(&project_stream(project)).await;
    let (claimed, launched) = (&events[1]["metadata"], &events[2]["metadata"]);
    assert_eq!(claimed["actor"]["name"], "罗俊");
    assert_eq!(claimed["actor"]["role"], "unit_rep");
    assert_eq!(claimed["acting_for"], json!({"kind": "unit", "id": unit}));
    assert_eq!(claimed["actor"], launched["actor"], "one token, one actor");
    // The actor id is the token's id in the registry, and differs from the admin's.
    let admin_actor = &events[0]["metadata"]["actor"]["id"];
    assert_ne!(&claimed["actor"]["id"], admin_actor);
    let mut conn = SqliteConnectOptions::new()
        .filename(app.db_path())
        .read_only(true)
        .connect()
        .await
        .expect("open the SQLite file");
    let id: String = sqlx::query("SELECT id FROM tokens WHERE name = ?1")
        .bind("罗俊")
        .fetch_one(&mut conn)
        .await
        .expect("the token's row")
        .get("id");
    assert_eq!(claimed["actor"]["id"], id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_issued_over_http_or_on_the_command_line_works_at_once_on_the_running_server() {
    let app = spawn_app().await;
    let world = app.world(1).await;
    let by_http = app
        .issue_token("unit_rep", Some(world.units[0]), "HTTP代表")
        .await;
    let by_cli = app
        .issue_token_cli("community_secretary", Some(world.community), "CLI书记")
        .await;
    assert!(
        by_http.len() >= 32 && by_cli.len() >= 32,
        "tokens carry enough entropy"
    );
    assert_ne!(by_http, by_cli);
    let project = app.propose(world.community).await;
    app.ok_as(
        &by_http,
        "ClaimProject",
        json!({"project_id": project, "unit_id": world.units[0]}),
    )
    .await;
    app.ok_as(&by_cli, "CancelProject", json!({"project_id": project}))
        .await;
    let names: Vec<Value> = app
        .stream_events(&project_stream(project))
        .await
        .iter()
        .map(|e| e["metadata"]["actor"]["name"].clone())
        .collect();
    assert_eq!(names[1], "HTTP代表");
    assert_eq!(names[2], "CLI书记");

    // A scope must be something registered, of the role's kind.
    for (role, scope) in [
        ("unit_rep", Some(Uuid::new_v4())),
        ("unit_rep", None),
        ("admin", Some(world.district)),
        ("community_secretary", Some(world.units[0])),
        ("pope", None),
    ] {
        let reply = app
            .issue_token_as(&app.admin_token, role, scope, "x")
            .await
            .expect_err("an invalid role or scope");
        reply.assert_problem(422, "invalid_field");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_stored_only_as_hashes() {
    let app = spawn_app_sqlite().await;
    let world = app.world(1).await;
    let mut tokens = vec![app.admin_token.clone()];
    tokens.push(
        app.issue_token("unit_rep", Some(world.units[0]), "代表")
            .await,
    );
    tokens.push(
        app.issue_token_cli("analyst", Some(world.district), "分析员")
            .await,
    );
    tokens.push(app.issue_token("admin", None, "管理员").await);
    // The tokens work, so they are in the registry…
    for token in &tokens[1..] {
        let reply = app
            .get("/v1/streams/district-x/events", Some(token), &[])
            .await;
        assert_ne!(reply.status, StatusCode::UNAUTHORIZED);
    }
    // …but no column of any row holds their text.
    let mut conn = SqliteConnectOptions::new()
        .filename(app.db_path())
        .read_only(true)
        .connect()
        .await
        .expect("open the SQLite file");
    let rows = sqlx::query("SELECT * FROM tokens")
        .fetch_all(&mut conn)
        .await
        .expect("the tokens table");
    assert_eq!(
        rows.len(),
        3,
        "three issued tokens (the bootstrap one is not stored)"
    );
    for row in &rows {
        for i in 0..row.len() {
            let cell: Option<String> = row.try_get(i).ok().flatten();
            let cell = cell.unwrap_or_default();
            for token in &tokens {
                assert!(
                    !cell.contains(token.as_str()),
                    "a tokens cell holds a token: {cell}"
                );
                let secret = token.strip_prefix("lx_").unwrap_or(token);
                assert!(
                    !cell.contains(secret),
                    "a tokens cell holds a token's secret: {cell}"
                );
            }
        }
    }
    drop(conn);
    // Nor do the database's raw bytes, write-ahead log included.
    for entry in std::fs::read_dir(app.data_dir.path()).expect("the data directory") {
        let path = entry.expect("an entry").path();
        if !path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path).expect("a data file");
        for token in &tokens {
            let secret = token.strip_prefix("lx_").unwrap_or(token).as_bytes();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret),
                "{} holds a token's text",
                path.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_tokens_read_only_the_streams_within_their_scope() {
    let app = spawn_app().await;
    let world = app.world(2).await;
    let project = app.propose(world.community).await;
    let elsewhere = app.world(1).await; // another district, community and unit
    let foreign_project = app.propose(elsewhere.community).await;
    let streams_of = |w: &World, p: Uuid| {
        vec![
            format!("district-{}", w.district),
            format!("community-{}", w.community),
            format!("unit-{}", w.units[0]),
            project_stream(p),
        ]
    };
    let rep = app
        .issue_token("unit_rep", Some(world.units[0]), "代表")
        .await;
    let secretary = app
        .issue_token("community_secretary", Some(world.community), "书记")
        .await;
    let mut readers = vec![
        ("unit_rep", rep.clone()),
        ("community_secretary", secretary),
    ];
    for role in ["district_admin", "analyst", "auditor"] {
        readers.push((
            role,
            app.issue_token(role, Some(world.district), role).await,
        ));
    }
    let mut leaks = Vec::new();
    for (role, token) in &readers {
        for stream in streams_of(&elsewhere, foreign_project) {
            let reply = app
                .get(&format!("/v1/streams/{stream}/events"), Some(token), &[])
                .await;
            if reply.status != StatusCode::FORBIDDEN {
                leaks.push(format!(
                    "{role} of the first district read {stream}: {}",
                    reply.status
                ));
            }
        }
    }
    // Within scope, reads work.
    let reply = app
        .get(
            &format!("/v1/streams/unit-{}/events", world.units[0]),
            Some(&rep),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let reply = app
        .get(
            &format!("/v1/streams/{}/events", project_stream(project)),
            Some(&readers[4].1),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert!(
        leaks.is_empty(),
        "reads outside the token's scope:\n{}",
        leaks.join("\n")
    );
}

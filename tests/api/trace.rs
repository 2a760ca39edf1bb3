//! `GET /v1/trace` and `lianxi trace` end to end: a project's lifecycle in log order with the
//! stored hashes, the shape of API.md, who may trace what, the `from`/`to` bounds on recording
//! time, and the command line beside a running server and without one.

use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{cli, is_rfc3339, is_sha256_hex, is_uuid, keys, sorted, spawn_app, TestApp};

/// A project proposed, claimed by `unit`, launched, with an activity, completed; returns the
/// project and the position of the last event.
async fn lifecycle(app: &TestApp, community: Uuid, unit: Uuid) -> (Uuid, i64) {
    let project = app.launched_project(community, unit).await;
    app.ok(
        "RecordActivity",
        json!({"project_id": project, "title": "4·25 宣传日", "participants": 300}),
    )
    .await;
    let done = app
        .ok("CompleteProject", json!({"project_id": project}))
        .await;
    (project, done["position"].as_i64().expect("a position"))
}

/// `GET /v1/trace?{query}` with `token`, waiting for `min` to be traced.
async fn get_trace(app: &TestApp, token: &str, query: &str, min: i64) -> crate::helpers::Reply {
    app.get(
        &format!("/v1/trace?{query}"),
        Some(token),
        &[("x-min-position", &min.to_string())],
    )
    .await
}

fn entries(body: &Value) -> Vec<Value> {
    assert_eq!(
        keys(body),
        ["entries"],
        "the trace is {{\"entries\"}}: {body}"
    );
    body["entries"].as_array().expect("entries").clone()
}

#[track_caller]
fn assert_entry_shape(entry: &Value) {
    assert_eq!(
        keys(entry),
        sorted(&[
            "position",
            "recorded_at",
            "occurred_at",
            "actor",
            "acting_for",
            "command",
            "event_type",
            "stream",
            "summary",
            "hash"
        ]),
        "entry shape: {entry}"
    );
    assert_eq!(keys(&entry["actor"]), sorted(&["id", "name", "role"]));
    assert_eq!(keys(&entry["acting_for"]), sorted(&["kind", "id", "name"]));
    assert!(is_uuid(entry["actor"]["id"].as_str().unwrap_or_default()));
    assert!(is_rfc3339(
        entry["recorded_at"].as_str().unwrap_or_default()
    ));
    assert!(is_rfc3339(
        entry["occurred_at"].as_str().unwrap_or_default()
    ));
    assert!(is_sha256_hex(entry["hash"].as_str().unwrap_or_default()));
    assert!(entry["summary"].as_str().is_some_and(|s| !s.is_empty()));
}

#[tokio::test]
async fn a_projects_trace_is_its_lifecycle_in_log_order_with_the_stored_hashes() {
    let app = spawn_app().await;
    let world = app.world(2).await;
    let (project, last) = lifecycle(&app, world.community, world.units[0]).await;

    let reply = get_trace(&app, &app.admin_token, &format!("project={project}"), last).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let position: i64 = reply
        .header("x-projection-position")
        .expect("X-Projection-Position")
        .parse()
        .expect("a number");
    assert!(position >= last);
    let entries = entries(&reply.json);
    let types: Vec<&str> = entries
        .iter()
        .map(|e| e["event_type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        types,
        [
            "ProjectProposed",
            "ProjectClaimed",
            "ProjectLaunched",
            "ActivityRecorded",
            "ProjectCompleted"
        ]
    );
    let commands: Vec<&str> = entries
        .iter()
        .map(|e| e["command"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        commands,
        [
            "ProposeProject",
            "ClaimProject",
            "LaunchProject",
            "RecordActivity",
            "CompleteProject"
        ]
    );
    // Straight from the log: every entry is its stored event's position, stream, time and hash.
    let stored = app.stream_events(&format!("project-{project}")).await;
    assert_eq!(entries.len(), stored.len());
    for (entry, event) in entries.iter().zip(&stored) {
        assert_entry_shape(entry);
        assert_eq!(entry["position"], event["position"]);
        assert_eq!(entry["stream"], event["stream"]);
        assert_eq!(entry["event_type"], event["type"]);
        assert_eq!(entry["hash"], event["hash"]);
        assert_eq!(entry["recorded_at"], event["recorded_at"]);
        assert_eq!(entry["occurred_at"], event["metadata"]["occurred_at"]);
        assert_eq!(entry["actor"], event["metadata"]["actor"]);
        assert_eq!(entry["command"], event["metadata"]["command"]);
        assert_eq!(
            entry["acting_for"]["kind"],
            event["metadata"]["acting_for"]["kind"]
        );
        assert_eq!(
            entry["acting_for"]["id"],
            event["metadata"]["acting_for"]["id"]
        );
    }
    // The admin acted for the claimant unit, named in the entry and the summaries.
    assert_eq!(entries[1]["acting_for"]["kind"], "unit");
    assert_eq!(entries[1]["acting_for"]["name"], "单位0");
    assert_eq!(entries[1]["summary"], "«单位0» claimed «4·25 预防接种宣传»");
    assert_eq!(
        entries[3]["summary"],
        "activity «4·25 宣传日» on «4·25 预防接种宣传»: 300 participants, 0 volunteers, 0 beneficiaries, 0 yuan"
    );

    // The community's trace includes all the project's events, the claimant's all from its
    // claim on; both in log order.
    for (query, from) in [
        (format!("unit={}", world.units[0]), 1),
        (format!("community={}", world.community), 0),
    ] {
        let reply = get_trace(&app, &app.admin_token, &query, last).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let positions: Vec<i64> = entries_positions(&reply.json);
        let mut sorted_positions = positions.clone();
        sorted_positions.sort_unstable();
        assert_eq!(positions, sorted_positions, "{query}: log order");
        for entry in &stored[from..] {
            let p = entry["position"].as_i64().expect("a position");
            assert!(positions.contains(&p), "{query} lacks position {p}");
        }
    }
    // The other unit had no part in the project.
    let other = get_trace(
        &app,
        &app.admin_token,
        &format!("unit={}", world.units[1]),
        last,
    )
    .await;
    let other = entries_positions(&other.json);
    assert!(stored
        .iter()
        .all(|e| !other.contains(&e["position"].as_i64().unwrap_or_default())));
}

fn entries_positions(body: &Value) -> Vec<i64> {
    entries(body)
        .iter()
        .map(|e| e["position"].as_i64().expect("a position"))
        .collect()
}

#[tokio::test]
async fn an_auditor_of_district_a_cannot_read_district_bs_trace() {
    let app = spawn_app().await;
    let world = app.world(1).await;
    let (project, _) = lifecycle(&app, world.community, world.units[0]).await;
    let other_district = app.register_district("别的街道").await;
    let last = app.head().await;
    let own_auditor = app
        .issue_token("auditor", Some(world.district), "审计A")
        .await;
    let other_auditor = app
        .issue_token("auditor", Some(other_district), "审计B")
        .await;
    let other_analyst = app
        .issue_token("analyst", Some(other_district), "分析B")
        .await;
    let other_admin = app
        .issue_token("district_admin", Some(other_district), "管理B")
        .await;
    let subjects = [
        format!("project={project}"),
        format!("community={}", world.community),
        format!("unit={}", world.units[0]),
    ];
    for query in &subjects {
        for token in [&other_auditor, &other_analyst, &other_admin] {
            get_trace(&app, token, query, last)
                .await
                .assert_problem(403, "forbidden");
        }
        let reply = get_trace(&app, &own_auditor, query, last).await;
        assert_eq!(reply.status, StatusCode::OK, "{query}: {}", reply.text());
        assert!(!entries(&reply.json).is_empty());
    }
    // An actor's entries are limited to the reader's district: the admin did nothing in B but
    // register it.
    let events = app.all_events().await;
    let admin_id = events[0]["metadata"]["actor"]["id"]
        .as_str()
        .expect("an actor id")
        .to_owned();
    let in_b = get_trace(&app, &other_auditor, &format!("actor={admin_id}"), last).await;
    assert_eq!(in_b.status, StatusCode::OK, "{}", in_b.text());
    let in_b = entries(&in_b.json);
    assert_eq!(in_b.len(), 1, "{in_b:?}");
    assert_eq!(in_b[0]["event_type"], "DistrictRegistered");

    // A unit representative traces its own unit only; a secretary its own community.
    let rep = app
        .issue_token("unit_rep", Some(world.units[0]), "联络员")
        .await;
    let reply = get_trace(&app, &rep, &format!("unit={}", world.units[0]), last).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    get_trace(&app, &rep, &format!("community={}", world.community), last)
        .await
        .assert_problem(403, "forbidden");
    let other_community = app.register_community(world.district, "十里社区").await;
    let secretary = app
        .issue_token("community_secretary", Some(other_community), "书记")
        .await;
    get_trace(&app, &secretary, &format!("project={project}"), last)
        .await
        .assert_problem(403, "forbidden");

    // Unknown things are 404; no token is 401.
    get_trace(
        &app,
        &app.admin_token,
        &format!("project={}", Uuid::new_v4()),
        last,
    )
    .await
    .assert_problem(404, "not_found");
    app.get(&format!("/v1/trace?project={project}"), None, &[])
        .await
        .assert_problem(401, "unauthorized");
}

#[tokio::test]
async fn a_trace_names_exactly_one_subject_and_well_formed_times() {
    let app = spawn_app().await;
    let world = app.world(1).await;
    let token = app.admin_token.clone();
    for query in [
        String::new(),
        format!("project={}&unit={}", Uuid::new_v4(), world.units[0]),
        "project=not-a-uuid".to_owned(),
        format!("community={}&from=yesterday", world.community),
        format!("community={}&to=2018-13-01T00:00:00Z", world.community),
    ] {
        get_trace(&app, &token, &query, 0)
            .await
            .assert_problem(400, "invalid_query");
    }
}

#[tokio::test]
async fn from_and_to_bound_the_recording_time() {
    let app = spawn_app().await;
    let world = app.world(2).await;
    let (_, last) = lifecycle(&app, world.community, world.units[0]).await;
    let query = format!("community={}", world.community);
    let whole = entries(&get_trace(&app, &app.admin_token, &query, last).await.json);
    assert!(whole.len() >= 8, "{whole:?}");
    let time = |entry: &Value| {
        chrono::DateTime::parse_from_rfc3339(entry["recorded_at"].as_str().expect("a time"))
            .expect("RFC 3339")
    };
    let from = &whole[2];
    let to = &whole[5];
    let expected: Vec<i64> = whole
        .iter()
        .filter(|e| time(e) >= time(from) && time(e) < time(to))
        .map(|e| e["position"].as_i64().expect("a position"))
        .collect();
    assert!(expected.contains(&from["position"].as_i64().expect("a position")));
    assert!(!expected.contains(&to["position"].as_i64().expect("a position")));
    // The same instants, once in UTC and once at +08:00 (its `+` encoded, as it must be).
    let utc = format!(
        "{query}&from={}&to={}",
        from["recorded_at"].as_str().expect("a time"),
        to["recorded_at"].as_str().expect("a time")
    );
    let china = chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8");
    let cst = |t: chrono::DateTime<chrono::FixedOffset>| {
        t.with_timezone(&china)
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
            .replace('+', "%2B")
    };
    let offset = format!("{query}&from={}&to={}", cst(time(from)), cst(time(to)));
    for bounded in [utc, offset] {
        let reply = get_trace(&app, &app.admin_token, &bounded, last).await;
        assert_eq!(reply.status, StatusCode::OK, "{bounded}: {}", reply.text());
        assert_eq!(entries_positions(&reply.json), expected, "{bounded}");
    }
}

async fn cli_trace(app: &TestApp, args: &[&str]) -> std::process::Output {
    let mut all = vec!["trace".to_owned()];
    all.extend(app.store_args());
    all.extend(args.iter().map(|a| (*a).to_owned()));
    cli(&all).await
}

#[tokio::test]
async fn lianxi_trace_prints_the_same_entries_beside_the_server_and_without_it() {
    let mut app = spawn_app().await;
    let world = app.world(1).await;
    let (project, last) = lifecycle(&app, world.community, world.units[0]).await;
    let api = get_trace(&app, &app.admin_token, &format!("project={project}"), last).await;
    assert_eq!(api.status, StatusCode::OK, "{}", api.text());
    let project = project.to_string();

    // Beside the running server: JSON is the API's answer, text one line per entry.
    let json_out = cli_trace(&app, &["--project", &project, "--format", "json"]).await;
    assert!(
        json_out.status.success(),
        "{}",
        String::from_utf8_lossy(&json_out.stderr)
    );
    let printed: Value = serde_json::from_slice(&json_out.stdout).expect("JSON on stdout");
    assert_eq!(printed, api.json);
    let text_out = cli_trace(&app, &["--project", &project]).await;
    assert!(text_out.status.success());
    let text = String::from_utf8(text_out.stdout).expect("UTF-8");
    let lines: Vec<&str> = text.lines().collect();
    let api_entries = entries(&api.json);
    assert_eq!(lines.len(), api_entries.len(), "{text}");
    for (line, entry) in lines.iter().zip(&api_entries) {
        let hash = entry["hash"].as_str().expect("a hash");
        let expected = format!(
            "{:>8}  {}  {} ({})  {}  {}  {}  {}",
            entry["position"].as_i64().expect("a position"),
            entry["recorded_at"].as_str().expect("a time"),
            entry["actor"]["name"].as_str().expect("a name"),
            entry["actor"]["role"].as_str().expect("a role"),
            entry["command"].as_str().expect("a command"),
            entry["event_type"].as_str().expect("a type"),
            entry["summary"].as_str().expect("a summary"),
            &hash[..12]
        );
        assert_eq!(*line, expected);
    }

    // Without a server and without the read-model file: traced from the log itself.
    app.kill9().await;
    for file in ["readmodels.db", "readmodels.db-wal", "readmodels.db-shm"] {
        let _ = std::fs::remove_file(app.data_dir.path().join(file));
    }
    let json_out = cli_trace(&app, &["--project", &project, "--format", "json"]).await;
    assert!(
        json_out.status.success(),
        "{}",
        String::from_utf8_lossy(&json_out.stderr)
    );
    let printed: Value = serde_json::from_slice(&json_out.stdout).expect("JSON on stdout");
    assert_eq!(printed, api.json);

    // Exactly one subject.
    let both = cli_trace(&app, &["--project", &project, "--unit", &project]).await;
    assert!(!both.status.success());
    let none = cli_trace(&app, &[]).await;
    assert!(!none.status.success());
}

#[tokio::test]
async fn the_openapi_document_describes_the_trace_and_the_live_feed() {
    let app = spawn_app().await;
    let reply = app.get("/openapi.json", None, &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    let trace = &reply.json["paths"]["/v1/trace"]["get"];
    let params: Vec<&str> = trace["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for name in ["project", "unit", "actor", "community", "from", "to"] {
        assert!(params.contains(&name), "{name} in {params:?}");
    }
    let entry = &reply.json["components"]["schemas"]["TraceEntry"];
    assert_eq!(
        keys(&entry["properties"]),
        sorted(&[
            "position",
            "recorded_at",
            "occurred_at",
            "actor",
            "acting_for",
            "command",
            "event_type",
            "stream",
            "summary",
            "hash"
        ])
    );
    let live = &reply.json["paths"]["/v1/events/live"]["get"];
    assert!(
        live["responses"]["200"]["content"]["text/event-stream"].is_object(),
        "{live}"
    );
}

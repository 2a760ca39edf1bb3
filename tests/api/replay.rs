//! `lianxi replay`: a registered report built from history in memory, as of a position or a
//! recording time, equal to what the live read model showed then.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{cli, spawn_app, TestApp};

async fn replay(app: &TestApp, args: &[&str]) -> std::process::Output {
    let mut all = vec!["replay".to_owned()];
    all.extend(app.store_args());
    all.extend(args.iter().map(|a| (*a).to_owned()));
    cli(&all).await
}

/// The replayed report's JSON, which must succeed.
async fn replay_json(app: &TestApp, args: &[&str]) -> Value {
    let output = replay(app, args).await;
    assert!(
        output.status.success(),
        "lianxi replay {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("replay prints JSON")
}

/// The live board of `community` once it has reached `position`.
async fn live_board(app: &TestApp, community: Uuid, position: i64) -> Value {
    let reply = app
        .get(
            &format!("/v1/communities/{community}/board"),
            Some(&app.admin_token),
            &[("x-min-position", &position.to_string())],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        reply.header("x-projection-position"),
        Some(position.to_string().as_str()),
        "the live board is exactly at {position}"
    );
    reply.json
}

async fn activity(app: &TestApp, project: Uuid, participants: u32) -> i64 {
    app.ok(
        "RecordActivity",
        json!({
            "project_id": project,
            "title": "志愿服务",
            "participants": participants,
            "volunteers": 3,
            "volunteer_hours": 6,
            "occurred_at": "2018-05-04T09:30:00+08:00",
        }),
    )
    .await["position"]
        .as_i64()
        .expect("a position")
}

#[tokio::test]
async fn a_replay_until_a_position_equals_the_live_board_after_that_many_events() {
    let app = spawn_app().await;
    let world = app.world(2).await;
    let project = app.launched_project(world.community, world.units[0]).await;
    let n = activity(&app, project, 300).await;
    let at_n = live_board(&app, world.community, n).await;

    let m = activity(&app, project, 20).await;
    let at_m = live_board(&app, world.community, m).await;
    assert_ne!(at_n, at_m);

    let community = world.community.to_string();
    let replayed_n = replay_json(
        &app,
        &[
            "--report",
            "board",
            "--community",
            &community,
            "--until-position",
            &n.to_string(),
        ],
    )
    .await;
    assert_eq!(
        replayed_n, at_n,
        "replay --until-position {n} equals the live board at {n}"
    );
    let replayed_head = replay_json(&app, &["--report", "board", "--community", &community]).await;
    assert_eq!(replayed_head, at_m);

    // Without --community: every board, as a list.
    let all = replay_json(&app, &["--report", "board"]).await;
    assert_eq!(all, json!([at_m]));
    // The live read models were not touched: still one generation of the board, at the head.
    let projections = app
        .get("/v1/projections", Some(&app.admin_token), &[])
        .await;
    let boards: Vec<&Value> = projections.json["projections"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|p| p["name"] == "board")
        .collect();
    assert_eq!(boards.len(), 1, "{}", projections.text());
    assert_eq!(boards[0]["generation"], 1);
}

#[tokio::test]
async fn a_replay_as_of_a_recording_time_shows_what_the_log_held_then() {
    let app = spawn_app().await;
    let world = app.world(1).await;
    let project = app.launched_project(world.community, world.units[0]).await;
    let before = activity(&app, project, 300).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let then = chrono::Utc::now().to_rfc3339();
    tokio::time::sleep(Duration::from_millis(50)).await;
    activity(&app, project, 20).await;

    let community = world.community.to_string();
    let as_of = replay_json(
        &app,
        &[
            "--report",
            "board",
            "--community",
            &community,
            "--as-of",
            &then,
        ],
    )
    .await;
    let until = replay_json(
        &app,
        &[
            "--report",
            "board",
            "--community",
            &community,
            "--until-position",
            &before.to_string(),
        ],
    )
    .await;
    assert_eq!(as_of, until);
    assert_eq!(as_of["totals"]["participants"], 300);

    let long_ago = replay_json(
        &app,
        &["--report", "board", "--as-of", "2001-01-01T00:00:00Z"],
    )
    .await;
    assert_eq!(long_ago, json!([]), "nothing was recorded in 2001");
}

#[tokio::test]
async fn a_replay_prints_csv_and_names_the_reports_when_asked_for_an_unknown_one() {
    let app = spawn_app().await;
    let world = app.world(1).await;
    let project = app.launched_project(world.community, world.units[0]).await;
    activity(&app, project, 300).await;

    let output = replay(&app, &["--report", "volunteer-hours", "--format", "csv"]).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let csv = String::from_utf8(output.stdout).expect("UTF-8");
    assert_eq!(
        csv,
        format!(
            "quarter,district_id,theme,activities,volunteers,volunteer_hours\n\
             2018Q2,{},public_welfare,1,3,6\n",
            world.district
        )
    );
    let boards = replay(&app, &["--report", "board", "--format", "csv"]).await;
    let boards = String::from_utf8(boards.stdout).expect("UTF-8");
    assert_eq!(
        boards.lines().count(),
        2,
        "a header and one community: {boards}"
    );
    assert!(boards.starts_with("community_id,name,committee,district_id,members,"));

    let unknown = replay(&app, &["--report", "nonsense"]).await;
    assert!(!unknown.status.success());
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        stderr.contains("board") && stderr.contains("volunteer-hours"),
        "the error lists the reports: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_district_stats_report_is_the_json_of_the_stats_endpoint() {
    let app = spawn_app().await;
    let world = app.world(2).await;
    let project = app.launched_project(world.community, world.units[0]).await;
    let position = activity(&app, project, 120).await;
    for quarter in [None, Some("2018Q2")] {
        let mut path = format!("/v1/districts/{}/stats", world.district);
        let mut args = vec!["--report", "district-stats"];
        if let Some(quarter) = quarter {
            path.push_str(&format!("?quarter={quarter}"));
            args.extend(["--quarter", quarter]);
        }
        let live = app
            .get(
                &path,
                Some(&app.admin_token),
                &[("x-min-position", &position.to_string())],
            )
            .await;
        assert_eq!(live.status, StatusCode::OK, "{}", live.text());
        let replayed = replay_json(&app, &args).await;
        assert_eq!(replayed, live.json, "quarter {quarter:?}");
    }
    // With two districts in the log the report asks which one.
    app.register_district("另一个街道").await;
    let output = replay(&app, &["--report", "district-stats"]).await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--district"));
}

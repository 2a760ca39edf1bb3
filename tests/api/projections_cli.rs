//! `lianxi projections status|rebuild` and `POST /v1/projections/{name}/rebuild`, beside a
//! running server: the new generation takes over and the server's projector follows it.

use std::time::Duration;

use projections::projectors::board::BoardProjector;
use projections::Projector;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{cli, spawn_app, TestApp};

/// The board projector's version in this build (a rebuild's new generation has it too).
fn board_version() -> u32 {
    BoardProjector::default().version()
}

async fn projections_cli(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["projections".to_owned()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    all.extend(app.store_args());
    let output = cli(&all).await;
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The board of `community` once it has reached `position`.
async fn board_at(app: &TestApp, community: Uuid, position: i64) -> Value {
    let reply = app
        .get(
            &format!("/v1/communities/{community}/board"),
            Some(&app.admin_token),
            &[("x-min-position", &position.to_string())],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json
}

/// The board's entries in `GET /v1/projections`.
async fn board_generations(app: &TestApp) -> Vec<Value> {
    let reply = app
        .get("/v1/projections", Some(&app.admin_token), &[])
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json["projections"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|p| p["name"] == "board")
        .cloned()
        .collect()
}

async fn activity(app: &TestApp, project: Uuid, participants: u32) -> i64 {
    app.ok(
        "RecordActivity",
        json!({"project_id": project, "title": "志愿服务", "participants": participants}),
    )
    .await["position"]
        .as_i64()
        .expect("a position")
}

/// Waits until the board's only answering generation is `generation`, live.
async fn until_generation(app: &TestApp, generation: i64) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let boards = board_generations(app).await;
        if boards.len() == 1
            && boards[0]["generation"] == generation
            && boards[0]["active"] == true
            && boards[0]["state"] == "live"
        {
            return boards;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "generation {generation} did not take over: {boards:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn projections_status_shows_each_projection_with_its_version_position_and_lag() {
    let app = spawn_app().await;
    let world = app.world(1).await;
    let head = app.head().await;
    board_at(&app, world.community, head).await;

    let (ok, stdout, stderr) = projections_cli(&app, &["status"]).await;
    assert!(ok, "{stderr}");
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some(format!("log head: {head}").as_str()));
    let header: Vec<&str> = lines.next().expect("a header").split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "VERSION",
            "GENERATION",
            "POSITION",
            "LAG",
            "STATE",
            "ERROR"
        ]
    );
    let board: Vec<&str> = stdout
        .lines()
        .find(|l| l.starts_with("board "))
        .unwrap_or_else(|| panic!("a board line in {stdout}"))
        .split_whitespace()
        .collect();
    let version = board_version().to_string();
    assert_eq!(
        board,
        ["board", &version, "1", &head.to_string(), "0", "live"]
    );
}

#[tokio::test]
async fn a_cli_rebuild_beside_the_server_takes_over_and_the_server_follows_the_new_generation() {
    let app = spawn_app().await;
    let world = app.world(2).await;
    let project = app.launched_project(world.community, world.units[0]).await;
    let first = activity(&app, project, 300).await;
    let before = board_at(&app, world.community, first).await;

    let (ok, stdout, stderr) = projections_cli(&app, &["rebuild", "board"]).await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.starts_with(&format!(
            "rebuilt board: generation 2 (version {}) took over at position",
            board_version()
        )),
        "{stdout}"
    );
    assert!(
        stderr.contains("rebuild board: "),
        "progress on stderr: {stderr}"
    );
    until_generation(&app, 2).await;
    assert_eq!(board_at(&app, world.community, first).await, before);

    // The server's projector follows generation 2: a new command shows at once.
    let second = activity(&app, project, 20).await;
    let after = board_at(&app, world.community, second).await;
    assert_eq!(after["totals"]["participants"], 320);
    let boards = until_generation(&app, 2).await;
    assert_eq!(boards[0]["position"], second);

    let (ok, _, stderr) = projections_cli(&app, &["rebuild", "nonsense"]).await;
    assert!(!ok);
    assert!(
        stderr.contains("board"),
        "the error lists the projections: {stderr}"
    );
}

#[tokio::test]
async fn the_rebuild_endpoint_is_for_admins_and_answers_202_with_the_new_generation() {
    let app = spawn_app().await;
    let world = app.world(1).await;
    let project = app.launched_project(world.community, world.units[0]).await;
    let first = activity(&app, project, 300).await;
    let before = board_at(&app, world.community, first).await;

    let analyst = app
        .issue_token("analyst", Some(world.district), "分析员")
        .await;
    let post = |token: String, name: &'static str| {
        let app = &app;
        async move {
            app.post_raw(
                &format!("/v1/projections/{name}/rebuild"),
                Vec::new(),
                &[("authorization", format!("Bearer {token}"))],
            )
            .await
        }
    };
    post(analyst, "board")
        .await
        .assert_problem(403, "forbidden");
    post(app.admin_token.clone(), "nonsense")
        .await
        .assert_problem(404, "not_found");

    let accepted = post(app.admin_token.clone(), "board").await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.text());
    assert_eq!(
        accepted.json,
        json!({"name": "board", "generation": 2, "version": board_version(), "state": "building"})
    );
    until_generation(&app, 2).await;
    assert_eq!(board_at(&app, world.community, first).await, before);
    let second = activity(&app, project, 20).await;
    assert_eq!(
        board_at(&app, world.community, second).await["totals"]["participants"],
        320
    );
}

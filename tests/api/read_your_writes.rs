//! Read-your-writes: a command followed at once by a read with `X-Min-Position` sees its effect,
//! every time; and a position the log has not reached is a 503 after the wait, not a stale answer.

use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_with_x_min_position_sees_the_command_just_sent_a_thousand_times_in_a_row() {
    let app = spawn_app().await;
    let world = app.world(1).await;
    let board_path = format!("/v1/communities/{}/board", world.community);
    for n in 1..=1_000 {
        let response = app
            .ok(
                "ProposeProject",
                json!({"community_id": world.community, "title": format!("项目 {n}"),
                       "theme": "civility"}),
            )
            .await;
        let position = response["position"].as_i64().expect("a position");
        let project = response["stream"]
            .as_str()
            .and_then(|s| s.strip_prefix("project-"))
            .expect("a project stream")
            .to_owned();
        let min = position.to_string();
        let board = app
            .get(
                &board_path,
                Some(&app.admin_token),
                &[("x-min-position", &min)],
            )
            .await;
        assert_eq!(board.status, 200, "{}", board.text());
        let reached: i64 = board
            .header("x-projection-position")
            .and_then(|v| v.parse().ok())
            .expect("X-Projection-Position");
        assert!(
            reached >= position,
            "read {n} answered as of {reached} < {position}"
        );
        let projects = board.json["projects"].as_array().expect("projects");
        assert_eq!(projects.len(), n, "read {n} sees every project so far");
        assert!(
            projects.iter().any(|p| p["project_id"] == project.as_str()),
            "read {n} sees the project just proposed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_beyond_the_log_is_a_503_with_retry_after_once_the_wait_is_over() {
    let app = spawn_app().await;
    let world = app.world(1).await;
    let head = app.head().await;
    let beyond = (head + 1_000).to_string();
    let started = std::time::Instant::now();
    let reply = app
        .get(
            &format!("/v1/communities/{}/board", world.community),
            Some(&app.admin_token),
            &[("x-min-position", &beyond)],
        )
        .await;
    reply.assert_problem(503, "projection_behind");
    assert!(reply.header("retry-after").is_some());
    assert!(started.elapsed() >= std::time::Duration::from_secs(5));
    let bad = app
        .get(
            &format!("/v1/communities/{}/board", world.community),
            Some(&app.admin_token),
            &[("x-min-position", "soon")],
        )
        .await;
    bad.assert_problem(400, "invalid_header");
}

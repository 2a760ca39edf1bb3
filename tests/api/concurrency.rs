//! Commands racing each other: one winner per contested claim, no lost or doubled writes, and
//! unique, gap-free positions under a burst.

use std::collections::BTreeSet;

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{client, project_stream, spawn_app, TestApp};

/// Sends one command on its own client (its own connection), so requests truly overlap.
async fn send_alone(app: &TestApp, token: &str, name: &str, body: Value) -> (StatusCode, Value) {
    let response = client()
        .post(app.url(&format!("/v1/commands/{name}")))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("the server answers");
    let status = response.status();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_racing_claims_on_one_project_have_exactly_one_winner() {
    let app = spawn_app().await;
    let world = app.world(32).await;
    let tokens: Vec<String> = join_all(world.units.iter().enumerate().map(|(i, unit)| {
        let app = &app;
        async move {
            app.issue_token("unit_rep", Some(*unit), &format!("代表{i}"))
                .await
        }
    }))
    .await;

    for round in 0..3 {
        let project = app.propose(world.community).await;
        let head = app.head().await;
        let replies = join_all(world.units.iter().zip(&tokens).map(|(unit, token)| {
            send_alone(
                &app,
                token,
                "ClaimProject",
                json!({"project_id": project, "unit_id": unit}),
            )
        }))
        .await;

        let winners: Vec<usize> = replies
            .iter()
            .enumerate()
            .filter(|(_, (status, _))| *status == StatusCode::OK)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one claim wins: {replies:?}"
        );
        for (i, (status, body)) in replies.iter().enumerate() {
            if i == winners[0] {
                continue;
            }
            assert_eq!(*status, StatusCode::CONFLICT, "round {round}: {body}");
            assert_eq!(
                body["code"], "project_already_claimed",
                "round {round}: {body}"
            );
        }

        let events = app.stream_events(&project_stream(project)).await;
        let claims: Vec<&Value> = events
            .iter()
            .filter(|e| e["type"] == "ProjectClaimed")
            .collect();
        assert_eq!(
            claims.len(),
            1,
            "round {round}: one ProjectClaimed in the stream"
        );
        assert_eq!(claims[0]["data"]["unit_id"], json!(world.units[winners[0]]));
        assert_eq!(claims[0]["id"], replies[winners[0]].1["events"][0]["id"]);
        assert_eq!(
            app.head().await,
            head + 1,
            "round {round}: the losers wrote nothing"
        );
    }
    let (code, out) = app.verify().await;
    assert_eq!(code, 0, "verify: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_two_hundred_commands_to_distinct_streams_all_succeed_with_unique_positions() {
    let app = spawn_app().await;
    let district = app.register_district("赵镇街道").await;
    let head = app.head().await;
    let shared = client();
    let ids: Vec<Uuid> = (0..200).map(|_| Uuid::new_v4()).collect();
    let replies = join_all(ids.iter().enumerate().map(|(i, id)| {
        let request = shared
            .post(app.url("/v1/commands/RegisterUnit"))
            .bearer_auth(&app.admin_token)
            .json(&json!({"unit_id": id, "district_id": district, "name": format!("单位{i}")}));
        async move {
            let response = request.send().await.expect("the server answers");
            let status = response.status();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    }))
    .await;

    let mut positions = BTreeSet::new();
    for ((status, body), id) in replies.iter().zip(&ids) {
        assert_eq!(*status, StatusCode::OK, "{body}");
        assert_eq!(body["stream"], format!("unit-{id}"));
        assert_eq!(body["version"], 1);
        assert!(
            positions.insert(body["position"].as_i64().expect("a position")),
            "duplicate position in {body}"
        );
    }
    // The 200 positions are exactly the next 200 of the log, with no gap.
    let expected: BTreeSet<i64> = (head + 1..=head + 200).collect();
    assert_eq!(positions, expected);
    let log = app.all_events().await;
    assert_eq!(log.len() as i64, head + 200);
    let logged: BTreeSet<String> = log
        .iter()
        .map(|e| e["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    for (_, body) in &replies {
        assert!(logged.contains(body["events"][0]["id"].as_str().unwrap_or_default()));
    }
    let (code, out) = app.verify().await;
    assert_eq!(code, 0, "verify: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_commands_to_one_stream_all_succeed_in_some_order() {
    // Each of these commands is valid whatever order they land in, so every one must succeed:
    // losing the race for the stream's version is the server's to retry, not the client's, and
    // "no input makes the server answer 500".
    const WRITERS: i64 = 64;
    // The race is timing-dependent; a few rounds make a lost race all but certain to show.
    const ROUNDS: i64 = 4;
    let app = spawn_app().await;
    let world = app.world(1).await;
    let project = app.launched_project(world.community, world.units[0]).await;
    for round in 0..ROUNDS {
        let replies = join_all((0..WRITERS).map(|i| {
            send_alone(
                &app,
                &app.admin_token,
                "RecordActivity",
                json!({"project_id": project, "title": format!("活动{round}-{i}"), "participants": i}),
            )
        }))
        .await;
        let failures: Vec<&(StatusCode, Value)> = replies
            .iter()
            .filter(|(status, _)| *status != StatusCode::OK)
            .collect();
        let log = app.log();
        let internal: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("internal error"))
            .collect();
        assert!(
            failures.is_empty(),
            "round {round}: {} of {WRITERS} concurrent RecordActivity on one project failed, \
             e.g. {:?}; server log: {internal:#?}",
            failures.len(),
            failures.first()
        );
        let versions: BTreeSet<i64> = replies
            .iter()
            .map(|(_, body)| body["version"].as_i64().expect("a version"))
            .collect();
        // After ProjectProposed, ProjectClaimed, ProjectLaunched and the earlier rounds.
        let first = 4 + round * WRITERS;
        assert_eq!(
            versions,
            (first..first + WRITERS).collect::<BTreeSet<i64>>()
        );
    }
    let types = app.stream_types(&project_stream(project)).await;
    let activities = types.iter().filter(|t| *t == "ActivityRecorded").count();
    assert_eq!(activities as i64, WRITERS * ROUNDS);
}

//! `Idempotency-Key` and `If-Match` (API.md, "Commands"): a retry appends nothing and gets the
//! first answer; a stale version is refused with nothing written.

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{client, project_stream, spawn_app, Reply, TestApp};

/// Sends `raw` bytes as the body of command `name`, with `token` and an idempotency key.
async fn send_raw_with_key(app: &TestApp, token: &str, name: &str, key: &str, raw: &str) -> Reply {
    app.post_raw(
        &format!("/v1/commands/{name}"),
        raw.to_owned(),
        &[
            ("authorization", format!("Bearer {token}")),
            ("content-type", "application/json".to_owned()),
            ("idempotency-key", key.to_owned()),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_the_same_key_and_an_equal_body_gets_the_first_answer_and_appends_nothing() {
    let app = spawn_app().await;
    let world = app.world(0).await;
    let unit = Uuid::new_v4();
    let first = send_raw_with_key(
        &app,
        &app.admin_token,
        "RegisterUnit",
        "register-unit-1",
        &format!(
            r#"{{"unit_id":"{unit}","district_id":"{}","name":"县妇联党支部"}}"#,
            world.district
        ),
    )
    .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    let head = app.head().await;

    // The same body with its keys in another order and other whitespace is an equal body.
    let retry = send_raw_with_key(
        &app,
        &app.admin_token,
        "RegisterUnit",
        "register-unit-1",
        &format!("{{ \"name\" : \"县妇联党支部\",\n  \"district_id\": \"{}\", \"unit_id\": \"{unit}\" }}", world.district),
    )
    .await;
    assert_eq!(retry.status, StatusCode::OK, "{}", retry.text());
    assert_eq!(retry.json, first.json, "the retry gets the first response");
    assert_eq!(app.head().await, head, "the retry appended nothing");
    assert_eq!(
        app.stream_types(&format!("unit-{unit}")).await,
        ["UnitRegistered"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_creating_command_without_an_id_does_not_create_a_second_thing() {
    let app = spawn_app().await;
    let world = app.world(0).await;
    let body =
        json!({"community_id": world.community, "title": "便民服务", "theme": "service_problems"});
    let key = [("idempotency-key", "propose-1")];
    let (status, first) = app
        .command_as(&app.admin_token, "ProposeProject", body.clone(), &key)
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let head = app.head().await;
    for _ in 0..3 {
        let (status, again) = app
            .command_as(&app.admin_token, "ProposeProject", body.clone(), &key)
            .await;
        assert_eq!(status, StatusCode::OK, "{again}");
        assert_eq!(again, first);
    }
    assert_eq!(app.head().await, head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_with_one_key_append_once_and_all_get_the_same_answer() {
    let app = spawn_app().await;
    let world = app.world(0).await;
    let head = app.head().await;
    // No project_id: each attempt would make its own, so only the key can tell them apart.
    let body =
        json!({"community_id": world.community, "title": "便民服务", "theme": "service_problems"});
    let replies = join_all((0..8).map(|_| {
        let request = client()
            .post(app.url("/v1/commands/ProposeProject"))
            .bearer_auth(&app.admin_token)
            .header("idempotency-key", "burst-1")
            .json(&body);
        async move {
            let response = request.send().await.expect("the server answers");
            (
                response.status(),
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    }))
    .await;
    for (status, reply) in &replies {
        assert_eq!(*status, StatusCode::OK, "{reply}");
        assert_eq!(reply, &replies[0].1, "every retry gets the one answer");
    }
    assert_eq!(app.head().await, head + 1, "exactly one event was appended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_with_another_body_is_refused_and_appends_nothing() {
    let app = spawn_app().await;
    let world = app.world(0).await;
    let key = [("idempotency-key", "k-1")];
    let body = json!({"district_id": world.district, "name": "甲单位"});
    let (status, first) = app
        .command_as(&app.admin_token, "RegisterUnit", body, &key)
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let head = app.head().await;

    let other = json!({"district_id": world.district, "name": "乙单位"});
    let reply = app
        .command_reply(&app.admin_token, "RegisterUnit", other, &key)
        .await;
    reply.assert_problem(422, "idempotency_key_reused");
    // The same body under another command's name is another request too.
    let reply = app
        .command_reply(
            &app.admin_token,
            "RegisterCommunity",
            json!({"district_id": world.district, "name": "甲单位"}),
            &key,
        )
        .await;
    reply.assert_problem(422, "idempotency_key_reused");
    assert_eq!(app.head().await, head);
    insta::assert_json_snapshot!("idempotency_key_reused", reply.json);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_different_token_holders_are_independent() {
    let app = spawn_app().await;
    let world = app.world(0).await;
    let other_admin = app.issue_token("admin", None, "第二管理员").await;
    let district_admin = app
        .issue_token("district_admin", Some(world.district), "街道管理员")
        .await;
    let key = [("idempotency-key", "shared-key")];
    let mut command_ids = Vec::new();
    for (token, name) in [
        (&app.admin_token, "单位甲"),
        (&other_admin, "单位乙"),
        (&district_admin, "单位丙"),
    ] {
        let body = json!({"district_id": world.district, "name": name});
        let (status, reply) = app.command_as(token, "RegisterUnit", body, &key).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        command_ids.push(reply["command_id"].clone());
    }
    command_ids.dedup();
    assert_eq!(command_ids.len(), 3, "three separate commands");
    // Even an equal body from another holder is a new command.
    let body = json!({"district_id": world.district, "name": "单位甲"});
    let head = app.head().await;
    let (status, reply) = app
        .command_as(
            &other_admin,
            "RegisterUnit",
            body.clone(),
            &[("idempotency-key", "another")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(app.head().await, head + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_claim_gets_its_first_answer_not_project_already_claimed() {
    let app = spawn_app().await;
    let world = app.world(2).await;
    let project = app.propose(world.community).await;
    let rep = app
        .issue_token("unit_rep", Some(world.units[0]), "罗俊")
        .await;
    let claim = json!({"project_id": project, "unit_id": world.units[0]});
    let key = [("idempotency-key", "claim-once")];
    let (status, first) = app
        .command_as(&rep, "ClaimProject", claim.clone(), &key)
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let head = app.head().await;

    let (status, retry) = app
        .command_as(&rep, "ClaimProject", claim.clone(), &key)
        .await;
    assert_eq!(status, StatusCode::OK, "{retry}");
    assert_eq!(retry, first);
    // Without the key, the same claim is a second claim.
    let reply = app
        .command_reply(&rep, "ClaimProject", claim.clone(), &[])
        .await;
    reply.assert_problem(409, "project_already_claimed");
    // Even after the claim is withdrawn, the retry answers what happened then, and claims nothing.
    app.ok_as(&rep, "WithdrawClaim", json!({"project_id": project}))
        .await;
    let head_after_withdraw = app.head().await;
    assert_eq!(head_after_withdraw, head + 1);
    let (status, late) = app.command_as(&rep, "ClaimProject", claim, &key).await;
    assert_eq!(status, StatusCode::OK, "{late}");
    assert_eq!(late, first);
    assert_eq!(app.head().await, head_after_withdraw);
    assert_eq!(
        app.stream_types(&project_stream(project)).await,
        ["ProjectProposed", "ProjectClaimed", "ClaimWithdrawn"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_refuses_a_stale_stream_version_and_accepts_the_current_one() {
    let app = spawn_app().await;
    let world = app.world(1).await;
    let project = app.propose(world.community).await; // version 1
    let claim = json!({"project_id": project, "unit_id": world.units[0]});
    let head = app.head().await;

    for stale in ["\"0\"", "\"2\"", "\"7\""] {
        let reply = app
            .command_reply(
                &app.admin_token,
                "ClaimProject",
                claim.clone(),
                &[("if-match", stale)],
            )
            .await;
        reply.assert_problem(409, "stream_version_conflict");
        assert_eq!(app.head().await, head, "If-Match {stale}: nothing appended");
    }
    let reply = app
        .command_reply(
            &app.admin_token,
            "ClaimProject",
            claim.clone(),
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json["version"], 2);

    // The version the client saw is now stale.
    let launch = json!({"project_id": project});
    let reply = app
        .command_reply(
            &app.admin_token,
            "LaunchProject",
            launch.clone(),
            &[("if-match", "\"1\"")],
        )
        .await;
    reply.assert_problem(409, "stream_version_conflict");
    assert_eq!(app.head().await, head + 1);
    let reply = app
        .command_reply(
            &app.admin_token,
            "LaunchProject",
            launch,
            &[("if-match", "\"2\"")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());

    // "0" means the stream must not exist yet: right for a new thing.
    let reply = app
        .command_reply(
            &app.admin_token,
            "ProposeProject",
            json!({"community_id": world.community, "title": "新项目", "theme": "civility"}),
            &[("if-match", "\"0\"")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    // …and wrong for an existing one.
    let reply = app
        .command_reply(
            &app.admin_token,
            "AdmitMemberUnit",
            json!({"community_id": world.community, "unit_id": app.register_unit(world.district, "新单位").await, "kind": "jurisdiction"}),
            &[("if-match", "\"0\"")],
        )
        .await;
    reply.assert_problem(409, "stream_version_conflict");
    let versions: Value = app
        .stream(&format!("community-{}", world.community))
        .await
        .1["version"]
        .clone();
    assert_eq!(versions, 2, "the community stream did not move");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_one_key_and_different_bodies_append_once() {
    let app = spawn_app().await;
    let world = app.world(0).await;
    let head = app.head().await;
    let replies = join_all((0..8).map(|i| {
        let request = client()
            .post(app.url("/v1/commands/RegisterUnit"))
            .bearer_auth(&app.admin_token)
            .header("idempotency-key", "contested")
            .json(&json!({"district_id": world.district, "name": format!("单位{i}")}));
        async move {
            let response = request.send().await.expect("the server answers");
            (
                response.status(),
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    }))
    .await;
    let winners: Vec<&Value> = replies
        .iter()
        .filter(|(status, _)| *status == StatusCode::OK)
        .map(|(_, body)| body)
        .collect();
    assert_eq!(winners.len(), 1, "one body wins the key: {replies:?}");
    for (status, body) in &replies {
        if *status != StatusCode::OK {
            assert_eq!(*status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert_eq!(body["code"], "idempotency_key_reused", "{body}");
        }
    }
    assert_eq!(app.head().await, head + 1);
}

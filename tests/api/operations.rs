//! What operators and outside tools rely on: health, metrics, the OpenAPI document, the raw log
//! over HTTP (JSON pages and NDJSON), request ids, and `lianxi export`.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_event_shape, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_answer_200_without_a_token() {
    let app = spawn_app().await;
    for path in ["/healthz", "/readyz"] {
        let reply = app.get(path, None, &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
        assert!(
            reply.json.is_object(),
            "{path} answers JSON: {}",
            reply.text()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_and_commands_by_name() {
    let app = spawn_app().await;
    let world = app.world(1).await;
    // Once the board shows the whole world, its documents have been written.
    let board = app
        .board_at(world.community, &app.head().await.to_string())
        .await;
    assert_eq!(board.status, StatusCode::OK, "{}", board.text());
    let reply = app.get("/metrics", None, &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/plain")),
        "Prometheus text: {:?}",
        reply.header("content-type")
    );
    let text = reply.text();
    assert!(text.contains("lianxi_http_requests_total"), "{text}");
    let command_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("lianxi_commands_total{"))
        .collect();
    for name in [
        "RegisterDistrict",
        "RegisterCommunity",
        "RegisterUnit",
        "AdmitMemberUnit",
    ] {
        assert!(
            command_lines
                .iter()
                .any(|l| l.contains(&format!("command=\"{name}\""))),
            "lianxi_commands_total has a {name} series: {command_lines:#?}"
        );
    }
    // What the read models wrote, by projection and kind: the board's community document
    // (written once per batch that changed it) has at least its name and ids in it.
    let written = |metric: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(&format!("{metric}{{")))
            .filter(|l| l.contains("projection=\"board\"") && l.contains("kind=\"community\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let documents = written("lianxi_projection_documents_written_total");
    let bytes = written("lianxi_projection_document_bytes_written_total");
    assert!(
        documents >= 1.0,
        "board community documents written: {text}"
    );
    assert!(
        bytes >= documents * 100.0,
        "{bytes} bytes for {documents} community documents"
    );
    // The board's lag, from each event's recording and from the end of its log commit: every
    // event was committed here, so both count the same events, and the second is never longer.
    let series = |metric: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(&format!("{metric}{{projection=\"board\"}}")))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{metric} for board: {text}"))
    };
    let events = series("lianxi_projection_lag_seconds_count");
    assert!(events >= 1.0, "{text}");
    assert_eq!(series("lianxi_projection_commit_lag_seconds_count"), events);
    assert!(
        series("lianxi_projection_commit_lag_seconds_sum")
            <= series("lianxi_projection_lag_seconds_sum"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_3_1_and_lists_the_api() {
    let app = spawn_app().await;
    let reply = app.get("/openapi.json", None, &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    let doc: Value = serde_json::from_slice(&reply.bytes).expect("valid JSON");
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "openapi: {}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().expect("paths");
    for path in [
        "/v1/commands/{name}",
        "/v1/events",
        "/v1/streams/{stream}/events",
        "/v1/tokens",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(
            paths.contains_key(path),
            "the document lists {path}: {:?}",
            paths.keys()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_reads_in_pages_that_chain_by_next_after() {
    let app = spawn_app().await;
    app.world(3).await; // 1 + 1 + 3 + 3 = 8 events
    let first = app.events_page(0, 3).await;
    assert_eq!(
        crate::helpers::keys(&first),
        crate::helpers::sorted(&["events", "next_after"])
    );
    let mut positions = Vec::new();
    let mut after = 0;
    let mut pages = 0;
    loop {
        let page = app.events_page(after, 3).await;
        let events = page["events"].as_array().expect("events");
        assert!(events.len() <= 3, "a page holds at most `limit` events");
        if events.is_empty() {
            assert_eq!(page["next_after"], after, "an empty page stays where it is");
            break;
        }
        for event in events {
            assert_event_shape(event);
            positions.push(event["position"].as_i64().expect("a position"));
        }
        assert_eq!(
            page["next_after"],
            events.last().expect("an event")["position"]
        );
        after = page["next_after"].as_i64().expect("next_after");
        pages += 1;
    }
    assert_eq!(positions, (1..=8).collect::<Vec<i64>>());
    assert_eq!(pages, 3);
    // `after` beyond the head is an empty page.
    let beyond = app.events_page(100, 10).await;
    assert_eq!(beyond["events"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_gives_the_same_events_one_per_line() {
    let app = spawn_app().await;
    app.world(2).await;
    let page = app.events(0).await;
    let reply = app
        .get(
            "/v1/events?after=0",
            Some(&app.admin_token),
            &[("accept", "application/x-ndjson")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/x-ndjson")),
        "{:?}",
        reply.header("content-type")
    );
    let text = reply.text();
    assert!(text.ends_with('\n'), "every line ends with a newline");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON event"))
        .collect();
    assert_eq!(&Value::Array(lines.clone()), &page["events"]);
    let reply = app
        .get(
            "/v1/events?after=2&limit=3",
            Some(&app.admin_token),
            &[("accept", "application/x-ndjson")],
        )
        .await;
    let positions: Vec<i64> = reply
        .text()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("JSON")["position"]
                .as_i64()
                .unwrap_or(0)
        })
        .collect();
    assert_eq!(positions, [3, 4, 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_is_echoed_or_made() {
    let app = spawn_app().await;
    let reply = app
        .get("/healthz", None, &[("x-request-id", "trace-me-42")])
        .await;
    assert_eq!(reply.header("x-request-id"), Some("trace-me-42"));
    let (status, _) = app
        .command("RegisterDistrict", json!({"name": "赵镇街道"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let reply = app
        .command_reply(
            &app.admin_token,
            "RegisterDistrict",
            json!({"name": "x"}),
            &[("x-request-id", "cmd-7")],
        )
        .await;
    assert_eq!(reply.header("x-request-id"), Some("cmd-7"));
    let reply = app.get("/healthz", None, &[]).await;
    assert!(
        reply
            .header("x-request-id")
            .is_some_and(|id| !id.is_empty()),
        "the server makes a request id when none is sent"
    );
    // Errors carry it too.
    let reply = app
        .command_reply(
            "nope",
            "RegisterDistrict",
            json!({"name": "x"}),
            &[("x-request-id", "err-1")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.header("x-request-id"), Some("err-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lianxi_export_prints_the_log_as_the_api_gives_it() {
    let app = spawn_app().await;
    let world = app.world(2).await;
    app.launched_project(world.community, world.units[0]).await;
    let over_http = app.all_events().await;
    let exported = app.export().await;
    let lines: Vec<Value> = exported
        .lines()
        .map(|l| serde_json::from_str(l).expect("each exported line is JSON"))
        .collect();
    assert_eq!(lines.len(), over_http.len());
    assert_eq!(
        lines, over_http,
        "export and /v1/events agree event by event"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_reads_back_with_its_version() {
    let app = spawn_app().await;
    let world = app.world(2).await;
    let (status, body) = app.stream(&format!("community-{}", world.community)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["version"], 3, "{body}");
    let events = body["events"].as_array().expect("events");
    assert_eq!(events.len(), 3);
    for (i, event) in events.iter().enumerate() {
        assert_event_shape(event);
        assert_eq!(event["version"], i as i64 + 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_answers_with_x_projection_position() {
    // API.md, "Queries": "Every read answers with the header X-Projection-Position: N".
    let app = spawn_app().await;
    let world = app.world(1).await;
    let head = app.head().await;
    let token = app.admin_token.clone();
    let mut missing = Vec::new();
    for path in [
        "/v1/events?after=0".to_owned(),
        format!("/v1/streams/community-{}/events", world.community),
    ] {
        let reply = app.get(&path, Some(&token), &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        match reply.header("x-projection-position").map(str::parse::<i64>) {
            Some(Ok(position)) => assert!(position <= head, "{path}: {position} > head {head}"),
            other => missing.push(format!("{path}: {other:?}")),
        }
    }
    assert!(
        missing.is_empty(),
        "reads without X-Projection-Position: {missing:#?}"
    );
}

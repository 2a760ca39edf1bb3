//! `GET /v1/events/live` end to end: server-sent events read with reqwest's byte stream and a
//! small SSE parser. An event appended after connecting arrives as `/v1/events` shows it; a
//! reconnect with `Last-Event-ID` while commands keep flowing repeats nothing and misses nothing;
//! district roles see their district only; other roles are refused.

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{assert_event_shape, spawn_app, TestApp};

/// How long a test waits for a message it expects.
const EXPECT_WITHIN: Duration = Duration::from_secs(10);

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Message {
    id: Option<String>,
    event: Option<String>,
    data: String,
}

impl Message {
    fn position(&self) -> i64 {
        self.id
            .as_deref()
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("a message without a position id: {self:?}"))
    }
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Vec<u8>>> + Send>>;

/// An open feed: the response body and the bytes not parsed yet.
struct Feed {
    body: ByteStream,
    buffer: Vec<u8>,
}

impl Feed {
    /// The next message, or `None` when none comes within `within` (or the stream ends).
    async fn next(&mut self, within: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(message) = self.parse() {
                return Some(message);
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Ok(Some(Ok(bytes))) => self.buffer.extend_from_slice(&bytes),
                Ok(Some(Err(error))) => panic!("the feed failed: {error}"),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// A message that must come.
    async fn expect(&mut self) -> Message {
        self.next(EXPECT_WITHIN)
            .await
            .expect("a message within the deadline")
    }

    /// Takes whole messages (blocks ending in a blank line) off the buffer; comments and
    /// blocks without data (keep-alives) are skipped.
    fn parse(&mut self) -> Option<Message> {
        loop {
            let end = self.buffer.windows(2).position(|w| w == b"\n\n")?;
            let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
            let block = String::from_utf8(block).expect("UTF-8 messages");
            let mut message = Message {
                id: None,
                event: None,
                data: String::new(),
            };
            let mut has_data = false;
            for line in block.lines() {
                if line.is_empty() || line.starts_with(':') {
                    continue;
                }
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "id" => message.id = Some(value.to_owned()),
                    "event" => message.event = Some(value.to_owned()),
                    "data" => {
                        if has_data {
                            message.data.push('\n');
                        }
                        message.data.push_str(value);
                        has_data = true;
                    }
                    _ => {}
                }
            }
            if has_data {
                return Some(message);
            }
        }
    }
}

/// Opens the feed with `token`, `Last-Event-ID` when given and a query string (`?after=0`).
async fn connect(app: &TestApp, token: &str, last_event_id: Option<i64>, query: &str) -> Feed {
    // No overall timeout: the body never ends.
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a client");
    let mut request = client
        .get(app.url(&format!("/v1/events/live{query}")))
        .bearer_auth(token);
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id.to_string());
    }
    let response = request.send().await.expect("the server answers");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    Feed {
        body: Box::pin(
            response
                .bytes_stream()
                .map(|chunk| chunk.map(|b| b.to_vec())),
        ),
        buffer: Vec::new(),
    }
}

async fn propose(app: &TestApp, community: Uuid, title: &str) -> i64 {
    let body = app
        .ok(
            "ProposeProject",
            json!({"community_id": community, "title": title, "theme": "civility"}),
        )
        .await;
    body["position"].as_i64().expect("a position")
}

#[tokio::test]
async fn an_event_appended_after_connecting_arrives() {
    let app = spawn_app().await;
    let world = app.world(1).await;
    let analyst = app
        .issue_token("analyst", Some(world.district), "分析员")
        .await;
    let mut feed = connect(&app, &analyst, None, "").await;
    let position = propose(&app, world.community, "文明楼院").await;
    // Without Last-Event-ID the feed starts at the head: the first message is the new event.
    let message = feed.expect().await;
    assert_eq!(message.position(), position);
    assert_eq!(message.event.as_deref(), Some("ProjectProposed"));
    let data: Value = serde_json::from_str(&message.data).expect("JSON data");
    assert_event_shape(&data);
    let page = app.events_page(position - 1, 1).await;
    assert_eq!(data, page["events"][0], "the event as /v1/events shows it");
}

#[tokio::test]
async fn a_reconnect_with_last_event_id_repeats_nothing_and_misses_nothing() {
    let app = spawn_app().await;
    let world = app.world(2).await;
    let mut seen: Vec<i64> = Vec::new();

    // Connected from the beginning while commands flow; hang up after a dozen events.
    let mut first = connect(&app, &app.admin_token, None, "?after=0").await;
    let writing = async {
        for n in 0..15 {
            propose(&app, world.community, &format!("项目{n}")).await;
        }
    };
    let reading = async {
        while seen.len() < 12 {
            seen.push(first.expect().await.position());
        }
    };
    tokio::join!(writing, reading);
    drop(first);

    // Appends while disconnected.
    for n in 15..25 {
        propose(&app, world.community, &format!("项目{n}")).await;
    }

    // Reconnect from the last id received, while more commands flow.
    let last = *seen.last().expect("events were received");
    let mut second = connect(&app, &app.admin_token, Some(last), "").await;
    let writing = async {
        for n in 25..30 {
            propose(&app, world.community, &format!("项目{n}")).await;
        }
    };
    let mut resumed = Vec::new();
    let reading = async {
        while resumed.len() < 3 {
            resumed.push(second.expect().await.position());
        }
    };
    tokio::join!(writing, reading);
    let head = app.head().await;
    while resumed.last().is_some_and(|p| *p < head) {
        resumed.push(second.expect().await.position());
    }
    seen.extend(resumed);

    let all: Vec<i64> = (1..=head).collect();
    assert_eq!(seen, all, "every position once, in order");
    assert!(
        second.next(Duration::from_millis(300)).await.is_none(),
        "nothing after the head"
    );
}

#[tokio::test]
async fn a_district_analyst_follows_its_district_only() {
    let app = spawn_app().await;
    let world = app.world(1).await;
    let district_b = app.register_district("别的街道").await;
    let community_b = app.register_community(district_b, "外区社区").await;
    let analyst_b = app.issue_token("analyst", Some(district_b), "分析B").await;

    let mut feed = connect(&app, &analyst_b, None, "?after=0").await;
    let mut got = Vec::new();
    while let Some(message) = feed.next(Duration::from_millis(500)).await {
        got.push(message.position());
    }
    let expected: Vec<i64> = app
        .all_events()
        .await
        .iter()
        .filter(|e| {
            let stream = e["stream"].as_str().unwrap_or_default();
            stream == format!("district-{district_b}")
                || stream == format!("community-{community_b}")
        })
        .map(|e| e["position"].as_i64().expect("a position"))
        .collect();
    assert_eq!(got, expected);

    propose(&app, world.community, "A 的项目").await;
    let in_b = propose(&app, community_b, "B 的项目").await;
    let message = feed.expect().await;
    assert_eq!(
        message.position(),
        in_b,
        "district A's project is not shown"
    );
}

#[tokio::test]
async fn other_roles_and_bad_positions_are_refused() {
    let app = spawn_app().await;
    let world = app.world(1).await;
    let rep = app
        .issue_token("unit_rep", Some(world.units[0]), "联络员")
        .await;
    let secretary = app
        .issue_token("community_secretary", Some(world.community), "书记")
        .await;
    for token in [&rep, &secretary] {
        app.get("/v1/events/live", Some(token), &[])
            .await
            .assert_problem(403, "forbidden");
    }
    app.get("/v1/events/live", None, &[])
        .await
        .assert_problem(401, "unauthorized");
    app.get(
        "/v1/events/live",
        Some(&app.admin_token),
        &[("last-event-id", "yesterday")],
    )
    .await
    .assert_problem(400, "invalid_header");
    app.get("/v1/events/live?after=-1", Some(&app.admin_token), &[])
        .await
        .assert_problem(400, "invalid_query");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_live_feed_does_not_hold_up_a_graceful_shutdown() {
    let mut app = spawn_app().await;
    let world = app.world(1).await;
    let mut feed = connect(&app, &app.admin_token.clone(), None, "").await;
    propose(&app, world.community, "文明楼院").await;
    feed.expect().await;
    let asked = std::time::Instant::now();
    app.terminate();
    let status = app.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");
    // Well inside the 20 s grace that in-flight requests get.
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    // The feed ended rather than hanging.
    assert!(feed.next(Duration::from_secs(2)).await.is_none());
}

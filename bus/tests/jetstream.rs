//! The relay and the feed against a real PostgreSQL log (a fresh database per test on the
//! binary's shared throwaway server) and a real nats-server (one throwaway server per test):
//! every event published once and in order, crash and takeover, a NATS outage, retention gaps,
//! and the wire format as a snapshot.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use futures::future::join_all;
use lianxi_bus::message::{self, StreamSettings, STREAM_NAME};
use lianxi_bus::throwaway_nats::ThrowawayNats;
use lianxi_bus::{Feed, LockKey, Relay, RelayConfig, RelayHandle, RelayStatus};
use serde_json::json;
use sqlx::{Connection, PgConnection};
use store::conformance::{append_new, new_event, request};
use store::postgres::{PostgresSettings, PostgresStore};
use store::throwaway_postgres::ThrowawayPostgres;
use store::{EventStore, ExpectedVersion, NewEvent, Position, RawEvent};
use tokio::sync::watch;
use uuid::Uuid;

/// The longest any test waits for something that should take well under a second.
const PATIENCE: Duration = Duration::from_secs(20);

/// A log in a fresh database and a nats-server of its own.
struct Setup {
    nats: ThrowawayNats,
    database_url: String,
    store: Arc<PostgresStore>,
}

async fn setup() -> Setup {
    let database_url = ThrowawayPostgres::shared()
        .expect("a throwaway PostgreSQL")
        .fresh_database()
        .await
        .expect("a fresh database");
    let mut settings = PostgresSettings::from_url(&database_url).expect("a database url");
    // Several tests share one server: a few connections each are plenty.
    settings.read_connections = 4;
    let store = Arc::new(PostgresStore::open(settings).await.expect("open the store"));
    let nats = ThrowawayNats::start().expect("a throwaway nats-server");
    Setup {
        nats,
        database_url,
        store,
    }
}

impl Setup {
    /// Relay settings for tests: quick to retry, quick to notice.
    fn config(&self) -> RelayConfig {
        RelayConfig {
            nats_timeout: Duration::from_secs(2),
            max_backoff: Duration::from_millis(500),
            idle_check: Duration::from_millis(200),
            ..RelayConfig::new(self.nats.url(), &self.database_url)
        }
    }

    fn relay(&self, config: RelayConfig) -> RelayHandle {
        Relay::new(self.store.clone(), config).spawn()
    }

    /// Appends `count` events over `streams` streams of several kinds, ten per append, and
    /// returns the last position written (as the appends answered it: not the store's head,
    /// which is itself computed by the readers' horizon).
    async fn append(&self, streams: &[String], count: usize) -> Position {
        let requests: Vec<_> = (0..count.div_ceil(10))
            .map(|chunk| {
                let stream = &streams[chunk % streams.len()];
                let events = (0..10.min(count - chunk * 10))
                    .map(|i| {
                        let kind = ["ProjectProposed", "ActivityRecorded", "UnitRegistered"][i % 3];
                        new_event(kind, json!({"chunk": chunk, "i": i, "text": "沱源社区"}))
                    })
                    .collect();
                request(stream, ExpectedVersion::Any, events)
            })
            .collect();
        // A few appends at a time, so group commits and interleaved streams happen too.
        let mut last = 0;
        for wave in requests.chunks(8) {
            let written = join_all(
                wave.iter()
                    .map(|request| append_new(self.store.as_ref(), request.clone())),
            )
            .await;
            let positions = written.iter().flatten().map(|event| event.position);
            last = positions.fold(last, Position::max);
        }
        last
    }

    /// The whole log, as the relay reads it.
    async fn log(&self) -> Vec<RawEvent> {
        self.store
            .read_all_raw(0, usize::MAX)
            .await
            .expect("read the log")
    }
}

/// Stream ids of four kinds, as domain ids make them.
fn streams() -> Vec<String> {
    ["project", "community", "unit", "meeting", "project"]
        .iter()
        .map(|kind| format!("{kind}-{}", Uuid::now_v7()))
        .collect()
}

/// One message as JetStream stores it.
#[derive(Debug)]
struct Stored {
    sequence: u64,
    subject: String,
    headers: BTreeMap<String, String>,
    payload: bytes::Bytes,
}

impl Stored {
    fn position(&self) -> Position {
        self.headers[message::POSITION_HEADER]
            .parse()
            .expect("a numeric position")
    }
}

async fn jetstream_of(nats: &ThrowawayNats) -> jetstream::Context {
    let client = async_nats::connect(nats.url()).await.expect("connect");
    jetstream::new(client)
}

/// Every message the stream holds, oldest first.
async fn stored_messages(nats: &ThrowawayNats) -> Vec<Stored> {
    let js = jetstream_of(nats).await;
    let stream = js.get_stream(STREAM_NAME).await.expect("the stream");
    let state = stream.get_info().await.expect("stream info").state;
    let mut messages = Vec::new();
    if state.messages == 0 {
        return messages;
    }
    for sequence in state.first_sequence..=state.last_sequence {
        let raw = stream.get_raw_message(sequence).await.expect("a message");
        let headers = raw
            .headers
            .iter()
            .map(|(name, values)| {
                let value = values.iter().map(|v| v.as_str()).collect::<Vec<_>>();
                (name.to_string(), value.join(","))
            })
            .collect();
        messages.push(Stored {
            sequence: raw.sequence,
            subject: raw.subject.to_string(),
            headers,
            payload: raw.payload,
        });
    }
    messages
}

/// How many messages the stream holds.
async fn stream_count(js: &jetstream::Context) -> u64 {
    match js.get_stream(STREAM_NAME).await {
        Ok(stream) => stream
            .get_info()
            .await
            .map_or(0, |info| info.state.messages),
        Err(_) => 0,
    }
}

/// Waits until the relay behind `status` has had `position` acknowledged.
async fn published_through(status: &mut watch::Receiver<RelayStatus>, position: Position) {
    let reached = tokio::time::timeout(PATIENCE, status.wait_for(|s| s.position >= position))
        .await
        .map(|running| running.is_ok());
    match reached {
        Ok(true) => {}
        Ok(false) => panic!("the relay stopped before reaching {position}"),
        Err(_) => panic!(
            "the relay did not reach {position} within {PATIENCE:?}: {:?}",
            *status.borrow()
        ),
    }
}

/// Asserts the stream holds the log exactly: one message per event, in position order, each
/// with the event's subject, id, position and payload.
fn assert_stream_is_the_log(messages: &[Stored], log: &[RawEvent]) {
    let positions: Vec<Position> = messages.iter().map(Stored::position).collect();
    let expected: Vec<Position> = log.iter().map(|event| event.position).collect();
    assert_eq!(positions, expected, "one message per event, in log order");
    for (stored, event) in messages.iter().zip(log) {
        assert_eq!(
            stored.subject,
            message::subject(&event.stream, &event.event_type)
        );
        assert_eq!(stored.headers["Nats-Msg-Id"], event.id.to_string());
        assert_eq!(&message::decode(&stored.payload).expect("decodes"), event);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_publishes_every_event_once_in_order_and_a_feed_receives_them_all() {
    let setup = setup().await;
    let streams = streams();
    setup.append(&streams, 1_200).await;

    let relay = setup.relay(RelayConfig {
        // Several batches, and the pipeline full in each.
        batch_size: 300,
        ..setup.config()
    });
    let mut status = relay.status();
    // More events while it runs, some of them while it is busy publishing the first ones.
    let head = setup.append(&streams, 800).await;
    assert_eq!(head, 2_000, "positions have no holes here");
    published_through(&mut status, head).await;
    assert!(relay.is_active());

    let log = setup.log().await;
    assert_eq!(log.len(), 2_000);
    assert_stream_is_the_log(&stored_messages(&setup.nats).await, &log);

    // A projector process's view: every event, in order, decoded to what the log holds.
    let mut feed = Feed::open(&setup.nats.url(), &StreamSettings::default(), "board")
        .await
        .expect("open the feed");
    let mut received = Vec::new();
    while received.len() < log.len() {
        let batch = feed
            .next_batch(500, Duration::from_secs(5))
            .await
            .expect("a batch");
        assert!(!batch.is_empty(), "the feed stalled at {}", received.len());
        feed.ack(&batch).await.expect("ack");
        assert!(batch.iter().all(|delivery| delivery.delivered == 1));
        received.extend(batch.into_iter().map(|delivery| delivery.event));
    }
    assert_eq!(received, log);
    let more = feed
        .next_batch(10, Duration::from_millis(300))
        .await
        .expect("nothing more");
    assert!(more.is_empty(), "every delivery was acknowledged once");
    relay.shutdown().await.expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_mid_stream_and_started_again_leaves_one_message_per_event() {
    let setup = setup().await;
    let head = setup.append(&streams(), 3_000).await;
    let config = RelayConfig {
        batch_size: 50,
        max_in_flight: 16,
        ..setup.config()
    };

    let first = setup.relay(config.clone());
    published_through(&mut first.status(), 1).await;
    first.kill().await;
    let js = jetstream_of(&setup.nats).await;
    let before = stream_count(&js).await;
    assert!(
        before < 3_000,
        "killed mid-stream ({before} of 3000 published)"
    );

    let second = setup.relay(config);
    published_through(&mut second.status(), head).await;
    let messages = stored_messages(&setup.nats).await;
    assert_eq!(messages.len() as i64, head, "count == head");
    assert_stream_is_the_log(&messages, &setup.log().await);
    // Consecutive stream sequences: nothing was written and then skipped over.
    assert!(messages
        .windows(2)
        .all(|pair| pair[1].sequence == pair[0].sequence + 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_relays_one_publishes_and_the_other_takes_over_when_it_dies() {
    let setup = setup().await;
    let streams = streams();
    setup.append(&streams, 400).await;
    let relays = [setup.relay(setup.config()), setup.relay(setup.config())];
    let mut statuses = relays.each_ref().map(RelayHandle::status);

    // One of them gets the lock and publishes everything; the other stands by.
    let active = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Some(i) = relays.iter().position(RelayHandle::is_active) {
                return i;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a relay became active");
    let standby = 1 - active;
    published_through(&mut statuses[active], 400).await;
    // Give the standby every chance to misbehave.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert!(relays[active].is_active());
    assert_eq!(
        *statuses[standby].borrow(),
        RelayStatus::default(),
        "the standby neither holds the lock nor publishes"
    );
    let js = jetstream_of(&setup.nats).await;
    assert_eq!(stream_count(&js).await, 400);

    // The active one dies; the standby notices the lock is free and goes on from the stream.
    let [first, second] = relays;
    let (dead, survivor) = if active == 0 {
        (first, second)
    } else {
        (second, first)
    };
    dead.kill().await;
    tokio::time::timeout(
        Duration::from_secs(10),
        statuses[standby].wait_for(|s| s.active),
    )
    .await
    .expect("the standby took over within 10 s")
    .expect("the standby is running");
    let head = setup.append(&streams, 300).await;
    tokio::time::timeout(
        Duration::from_secs(10),
        statuses[standby].wait_for(|s| s.position >= head),
    )
    .await
    .expect("the new active relay published the new events within 10 s")
    .expect("the standby is running");
    assert!(survivor.is_active());
    let messages = stored_messages(&setup.nats).await;
    assert_eq!(messages.len(), 700);
    assert_stream_is_the_log(&messages, &setup.log().await);
    survivor.shutdown().await.expect("a clean stop");
}

/// The backend holding the relay's leader lock in the test's database, if any.
async fn relay_backend(conn: &mut PgConnection) -> Option<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity \
          WHERE application_name = 'lianxi-relay' AND datname = current_database()",
    )
    .fetch_optional(conn)
    .await
    .expect("pg_stat_activity")
}

/// PostgreSQL can drop the lock's connection under a running relay (a restart, an operator's
/// `pg_terminate_backend`): the relay notices within its lock check, takes the lock again on a
/// new connection and goes on from the stream's end, repeating nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_lock_connection_is_dropped_takes_the_lock_again_and_repeats_nothing() {
    let setup = setup().await;
    let streams = streams();
    setup.append(&streams, 200).await;
    let relay = setup.relay(setup.config());
    let mut status = relay.status();
    published_through(&mut status, 200).await;
    let mut conn = PgConnection::connect(&setup.database_url)
        .await
        .expect("a connection of the test's own");
    let before = relay_backend(&mut conn)
        .await
        .expect("the active relay's lock connection");
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(before)
        .fetch_one(&mut conn)
        .await
        .expect("pg_terminate_backend");
    assert!(terminated);
    // Events keep coming meanwhile, so the relay is busy, not idle, when the lock goes.
    let appending = setup.append(&streams, 300);
    let taken_again = async {
        loop {
            match relay_backend(&mut conn).await {
                Some(pid) if pid != before && relay.is_active() => return pid,
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    };
    let (head, _) = tokio::join!(appending, tokio::time::timeout(PATIENCE, taken_again));
    assert!(
        relay_backend(&mut conn)
            .await
            .is_some_and(|pid| pid != before),
        "the relay holds the lock on a new connection"
    );
    published_through(&mut status, head).await;
    let messages = stored_messages(&setup.nats).await;
    assert_stream_is_the_log(&messages, &setup.log().await);
    relay.shutdown().await.expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relays_lock_never_holds_the_logs_readers_back() {
    let setup = setup().await;
    // Read as one bigint, this key would be 1: were the relay's lock taken for a writer in
    // flight (as every bigint advisory lock is), readers would stop at position 1.
    let relay = setup.relay(RelayConfig {
        lock_key: LockKey {
            class: 0,
            object: 1,
        },
        ..setup.config()
    });
    let mut status = relay.status();
    tokio::time::timeout(PATIENCE, status.wait_for(|s| s.active))
        .await
        .expect("the relay became active")
        .expect("the relay is running");
    let head = setup.append(&streams(), 50).await;
    published_through(&mut status, head).await;
    let safe: Position = sqlx::query_scalar("SELECT lianxi_safe_position()")
        .fetch_one(setup.store.pool())
        .await
        .expect("the safe position");
    assert_eq!(safe, head);
    relay.shutdown().await.expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_nats_outage_the_relay_resumes_and_every_event_arrives_once() {
    let mut setup = setup().await;
    let streams = streams();
    let relay = setup.relay(setup.config());
    let mut status = relay.status();
    let head = setup.append(&streams, 300).await;
    published_through(&mut status, head).await;

    // The server crashes; the log goes on.
    setup.nats.kill();
    let appending = {
        let setup = &setup;
        let streams = &streams;
        async move {
            for _ in 0..6 {
                setup.append(streams, 50).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    appending.await;
    assert_eq!(
        status.borrow().position,
        head,
        "nothing acknowledged while NATS was down"
    );
    setup.nats.start_again().expect("nats-server starts again");
    let head = setup.append(&streams, 100).await;
    published_through(&mut status, head).await;

    let messages = stored_messages(&setup.nats).await;
    assert_eq!(
        messages.len(),
        700,
        "every event once, the stored ones kept"
    );
    assert_stream_is_the_log(&messages, &setup.log().await);
    relay.shutdown().await.expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_oldest_messages_dropped_the_feed_reports_where_history_starts() {
    let setup = setup().await;
    let limits = StreamSettings {
        max_messages: Some(100),
        ..StreamSettings::default()
    };
    // Before anything is published the stream holds nothing: a projector must use the log.
    let mut feed = Feed::open(&setup.nats.url(), &limits, "stats")
        .await
        .expect("open the feed");
    assert_eq!(feed.first_available_position().await.expect("asks"), None);

    let head = setup.append(&streams(), 300).await;
    let relay = setup.relay(RelayConfig {
        stream: limits.clone(),
        ..setup.config()
    });
    published_through(&mut relay.status(), head).await;

    // Only the newest 100 are left: a projector at checkpoint 0 sees the gap before it starts...
    assert_eq!(
        feed.first_available_position().await.expect("asks"),
        Some(201)
    );
    // ...and the consumer, delivering everything the stream has, starts past checkpoint + 1.
    let batch = feed
        .next_batch(1_000, Duration::from_secs(5))
        .await
        .expect("a batch");
    assert_eq!(batch.first().map(|d| d.position()), Some(201));
    let mut positions: Vec<Position> = batch.iter().map(|d| d.position()).collect();
    feed.ack(&batch).await.expect("ack");
    while positions.len() < 100 {
        let batch = feed
            .next_batch(1_000, Duration::from_secs(5))
            .await
            .expect("a batch");
        assert!(!batch.is_empty(), "the feed stalled at {positions:?}");
        positions.extend(batch.iter().map(|d| d.position()));
        feed.ack(&batch).await.expect("ack");
    }
    assert_eq!(positions, (201..=300).collect::<Vec<_>>());
    relay.shutdown().await.expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_message_has_the_documented_subject_headers_and_payload() {
    let setup = setup().await;
    let project = format!("project-{}", Uuid::now_v7());
    let event = |event_type: &str, data| NewEvent {
        id: Uuid::now_v7(),
        event_type: event_type.to_owned(),
        schema_version: 1,
        data,
        metadata: json!({
            "actor": {"id": Uuid::now_v7(), "name": "罗俊", "role": "unit_rep"},
            "command": "RecordActivity",
            "command_id": Uuid::now_v7(),
            "occurred_at": "2018-04-25T14:00:00+08:00",
        }),
    };
    append_new(
        setup.store.as_ref(),
        request(
            &project,
            ExpectedVersion::NoStream,
            vec![
                event("ProjectLaunched", json!({"project_id": Uuid::now_v7()})),
                event(
                    "ActivityRecorded",
                    json!({"activity_id": Uuid::now_v7(), "title": "4·25 预防接种宣传活动",
                           "participants": 300, "volunteers": 12, "volunteer_hours": 48}),
                ),
            ],
        ),
    )
    .await;
    let relay = setup.relay(setup.config());
    published_through(&mut relay.status(), 2).await;
    let messages = stored_messages(&setup.nats).await;
    // The second message: it also shows the sequence it was sent to follow.
    let second = &messages[1];
    let payload: serde_json::Value = serde_json::from_slice(&second.payload).expect("json");
    let shown = json!({
        "subject": second.subject,
        "headers": second.headers,
        "payload": payload,
    });
    insta::with_settings!({sort_maps => true}, {
        insta::assert_json_snapshot!("published_message", shown, {
            r#".headers["Nats-Msg-Id"]"# => insta::dynamic_redaction(uuid),
            ".payload.id" => insta::dynamic_redaction(uuid),
            ".payload.data.activity_id" => insta::dynamic_redaction(uuid),
            ".payload.metadata.actor.id" => insta::dynamic_redaction(uuid),
            ".payload.metadata.command_id" => insta::dynamic_redaction(uuid),
            ".payload.stream" => insta::dynamic_redaction(project_stream),
            ".payload.recorded_at" => insta::dynamic_redaction(time),
            ".payload.hash" => insta::dynamic_redaction(sha256),
        });
    });
    relay.shutdown().await.expect("a clean stop");
}

/// Redacts a UUID, after checking it is one.
fn uuid(
    value: insta::internals::Content,
    path: insta::internals::ContentPath<'_>,
) -> insta::internals::Content {
    let text = value.as_str().unwrap_or_default();
    assert!(
        text.parse::<Uuid>().is_ok(),
        "{path} should be a UUID, got {text:?}"
    );
    "[uuid]".into()
}

/// Redacts a project's stream id, after checking it is one.
fn project_stream(
    value: insta::internals::Content,
    _: insta::internals::ContentPath<'_>,
) -> insta::internals::Content {
    let text = value.as_str().unwrap_or_default();
    let id = text.strip_prefix("project-").unwrap_or_default();
    assert!(
        id.parse::<Uuid>().is_ok(),
        "{text:?} should be project-<uuid>"
    );
    "project-[uuid]".into()
}

/// Redacts an RFC 3339 time, after checking it is one.
fn time(
    value: insta::internals::Content,
    _: insta::internals::ContentPath<'_>,
) -> insta::internals::Content {
    let text = value.as_str().unwrap_or_default();
    assert!(
        chrono::DateTime::parse_from_rfc3339(text).is_ok(),
        "{text:?} should be an RFC 3339 time"
    );
    "[time]".into()
}

/// Redacts a hex SHA-256, after checking it is one.
fn sha256(
    value: insta::internals::Content,
    _: insta::internals::ContentPath<'_>,
) -> insta::internals::Content {
    let text = value.as_str().unwrap_or_default();
    assert!(
        text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()),
        "{text:?} should be a hex SHA-256"
    );
    "[sha-256]".into()
}

//! The PostgreSQL backend: the shared conformance suite on a throwaway server, then what only
//! PostgreSQL can show — readers that never skip an event committed late at a lower position,
//! transactions that never touch the log holding no reader back, two servers on one database,
//! wake-ups across processes, and a log the database itself keeps append-only.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use lianxi_store::conformance::{append_new, keyed, new_event, request, unchanged};
use lianxi_store::hash::{event_hash, to_stored_precision, HashInput};
use lianxi_store::postgres::{PostgresSettings, PostgresStore};
use lianxi_store::throwaway_postgres::ThrowawayPostgres;
use lianxi_store::{AppendOutcome, EventStore, ExpectedVersion, Position, RecordedEvent};
use serde_json::json;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

/// A database of its own on the binary's shared server.
async fn fresh_database() -> String {
    ThrowawayPostgres::shared()
        .expect("a throwaway PostgreSQL")
        .fresh_database()
        .await
        .expect("a fresh database")
}

async fn open(url: &str) -> PostgresStore {
    let mut settings = PostgresSettings::from_url(url).expect("a database url");
    // Many tests run at once against one server: a few connections each are plenty.
    settings.read_connections = 4;
    PostgresStore::open(settings).await.expect("open the store")
}

async fn fresh_store() -> (PostgresStore, ()) {
    (open(&fresh_database().await).await, ())
}

lianxi_store::conformance_suite!(fresh_store);

/// A connection that bypasses the store, as another program (or an attacker) would.
async fn raw(url: &str) -> PgConnection {
    PgConnection::connect(url).await.expect("a raw connection")
}

/// Appends one event to `stream` and returns its position.
async fn one(store: &PostgresStore, stream: &str) -> Position {
    let events = vec![new_event("A", json!({"stream": stream}))];
    append_new(store, request(stream, ExpectedVersion::Any, events)).await[0].position
}

/// Reads everything after `after` the way a projector does: page by page until a page is empty.
async fn catch_up(store: &PostgresStore, after: &mut Position, seen: &mut Vec<RecordedEvent>) {
    loop {
        let page = store.read_all(*after, 3).await.expect("read_all");
        let Some(last) = page.last() else {
            return;
        };
        *after = last.position;
        seen.extend(page);
    }
}

/// Begins a transaction on `conn` that takes a position through the writers' protocol and
/// inserts one event there, without committing: a writer of another process, caught mid-way.
async fn hold_a_writer_open(conn: &mut PgConnection, stream: &str) -> Position {
    sqlx::raw_sql("BEGIN")
        .execute(&mut *conn)
        .await
        .expect("begin");
    let position: Position = sqlx::query_scalar("SELECT lianxi_reserve_positions(1)")
        .fetch_one(&mut *conn)
        .await
        .expect("a position");
    let data = json!({"held": true});
    let metadata = json!({});
    let recorded_at = to_stored_precision(Utc::now());
    let id = Uuid::new_v4();
    let hash = event_hash(
        None,
        &HashInput {
            id,
            stream,
            version: 1,
            event_type: "Held",
            schema_version: 1,
            data: &data,
            metadata: &metadata,
            recorded_at,
        },
    );
    sqlx::query(
        "INSERT INTO events (position, id, stream_id, version, event_type, schema_version, data, \
         metadata, recorded_at, hash, command_id) \
         VALUES ($1, $2, $3, 1, 'Held', 1, $4::json, $5::json, $6, $7, $8)",
    )
    .bind(position)
    .bind(id)
    .bind(stream)
    .bind(data.to_string())
    .bind(metadata.to_string())
    .bind(recorded_at)
    .bind(hash)
    .bind(Uuid::new_v4())
    .execute(&mut *conn)
    .await
    .expect("insert the held event");
    position
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reader_never_skips_an_event_committed_late_at_a_lower_position() {
    let url = fresh_database().await;
    let store = open(&url).await;
    let before = [one(&store, "a").await, one(&store, "b").await];

    let mut writer = raw(&url).await;
    let held = hold_a_writer_open(&mut writer, "held").await;
    let mut later = Vec::new();
    for n in 0..5 {
        later.push(one(&store, &format!("later-{n}")).await);
    }
    assert!(
        later.iter().all(|&position| position > held),
        "the later appends took positions after the held one: {held} vs {later:?}"
    );

    // A projector reading now gets what comes before the held position, and nothing after it,
    // however often it asks: the later events are committed, but reading them would skip one.
    let mut checkpoint = 0;
    let mut seen = Vec::new();
    for _ in 0..3 {
        catch_up(&store, &mut checkpoint, &mut seen).await;
    }
    let positions: Vec<Position> = seen.iter().map(|event| event.position).collect();
    assert_eq!(positions, before.to_vec());
    assert_eq!(store.head().await.expect("head"), before[1]);

    sqlx::raw_sql("COMMIT")
        .execute(&mut writer)
        .await
        .expect("commit");
    catch_up(&store, &mut checkpoint, &mut seen).await;
    let positions: Vec<Position> = seen.iter().map(|event| event.position).collect();
    let mut expected: Vec<Position> = before.to_vec();
    expected.push(held);
    expected.extend(&later);
    assert_eq!(positions, expected, "every event, once, in position order");
    assert_eq!(
        store.head().await.expect("head"),
        *later.last().expect("later")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_writer_rolled_back_leaves_a_gap_that_readers_pass() {
    let url = fresh_database().await;
    let store = open(&url).await;
    let mut writer = raw(&url).await;
    let held = hold_a_writer_open(&mut writer, "held").await;
    let after = one(&store, "after").await;
    assert!(store.read_all(0, 10).await.expect("read_all").is_empty());
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut writer)
        .await
        .expect("rollback");

    let log = store.read_all(0, 10).await.expect("read_all");
    assert_eq!(
        log.iter().map(|event| event.position).collect::<Vec<_>>(),
        vec![after]
    );
    assert!(held < after);
    assert!(store
        .verify()
        .await
        .expect("verify")
        .first_failure
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_a_hole_in_the_positions_makes_a_reader_wait_for_writers_in_flight() {
    let url = fresh_database().await;
    let store = open(&url).await;
    let first = [one(&store, "a").await, one(&store, "b").await];
    let positions = |log: Vec<RecordedEvent>| log.iter().map(|e| e.position).collect::<Vec<_>>();

    // Another program's bigint advisory lock looks like a writer in flight below every
    // position. Positions without a hole need no bound: the reader reads on.
    let mut other = raw(&url).await;
    sqlx::raw_sql("BEGIN; SELECT pg_advisory_xact_lock_shared(0)")
        .execute(&mut other)
        .await
        .expect("a foreign lock");
    assert_eq!(
        positions(store.read_all(0, 10).await.expect("read_all")),
        first.to_vec()
    );

    // A writer that rolled back leaves a hole; behind it a reader asks who is in flight, and
    // the foreign lock holds it there (nothing is skipped; it waits).
    let mut writer = raw(&url).await;
    let hole = hold_a_writer_open(&mut writer, "rolled-back").await;
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut writer)
        .await
        .expect("rollback");
    let after = one(&store, "c").await;
    assert!(first[1] < hole && hole < after);
    assert!(store
        .read_all(first[1], 10)
        .await
        .expect("read_all")
        .is_empty());

    sqlx::raw_sql("ROLLBACK")
        .execute(&mut other)
        .await
        .expect("release the foreign lock");
    assert_eq!(
        positions(store.read_all(first[1], 10).await.expect("read_all")),
        vec![after]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_transaction_that_never_touches_the_log_holds_no_reader_back() {
    let url = fresh_database().await;
    let store = open(&url).await;
    // A report or a migration of another table: a transaction with an id, open for a long time.
    let mut other = raw(&url).await;
    sqlx::raw_sql("BEGIN; CREATE TABLE report (n int); INSERT INTO report VALUES (1)")
        .execute(&mut other)
        .await
        .expect("a long transaction");
    let other_xid: String = sqlx::query_scalar("SELECT pg_current_xact_id()::text")
        .fetch_one(&mut other)
        .await
        .expect("its transaction id");

    let appended = [
        one(&store, "a").await,
        one(&store, "b").await,
        one(&store, "c").await,
    ];

    // The usual horizon is stuck behind it: everything after its id waits for it to end.
    let mut probe = raw(&url).await;
    let horizon: String =
        sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
            .fetch_one(&mut probe)
            .await
            .expect("the snapshot horizon");
    // At or before it: the server is shared with other tests, whose own open transactions
    // may hold the cluster-wide horizon further back still.
    let number = |xid: &str| xid.parse::<u64>().expect("a transaction id");
    assert!(
        number(&horizon) <= number(&other_xid),
        "pg_snapshot_xmin ({horizon}) waits for the long transaction ({other_xid})"
    );
    // lianxi's readers are not.
    let log = store.read_all(0, 10).await.expect("read_all");
    assert_eq!(
        log.iter().map(|event| event.position).collect::<Vec<_>>(),
        appended.to_vec()
    );
    assert_eq!(store.head().await.expect("head"), appended[2]);
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut other)
        .await
        .expect("rollback");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_on_one_database_keep_one_consistent_log() {
    let url = fresh_database().await;
    let (first, second) = (open(&url).await, open(&url).await);
    let appends_each = 60;
    let mut tasks = Vec::new();
    for (n, store) in [first.clone(), second.clone()].into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut positions = Vec::new();
            for i in 0..appends_each {
                // Half to one shared stream, half to streams of their own.
                let stream = if i % 2 == 0 {
                    "shared".to_owned()
                } else {
                    format!("own-{n}-{i}")
                };
                positions.push(one(&store, &stream).await);
            }
            positions
        }));
    }
    let mut positions = BTreeSet::new();
    for task in tasks {
        for position in task.await.expect("a writer") {
            assert!(
                positions.insert(position),
                "position {position} given twice"
            );
        }
    }

    let shared = first.read_stream("shared", 0).await.expect("read_stream");
    assert_eq!(
        shared.iter().map(|event| event.version).collect::<Vec<_>>(),
        (1..=appends_each).collect::<Vec<i64>>(),
        "one stream written by two servers has every version once"
    );
    let mut checkpoint = 0;
    let mut seen = Vec::new();
    catch_up(&second, &mut checkpoint, &mut seen).await;
    assert_eq!(
        seen.iter()
            .map(|event| event.position)
            .collect::<BTreeSet<_>>(),
        positions
    );
    let report = second.verify().await.expect("verify");
    assert_eq!(report.first_failure, None);
    assert_eq!(report.events, 2 * appends_each as u64);
}

/// A server writes a batch on the stream heads it last saw in one statement; when another server
/// moved one of them meanwhile, the database refuses that statement and the batch is decided
/// again on the heads as they are: never appended on a stale head, never refused for one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_head_another_server_moved_is_read_again_before_the_batch_is_decided() {
    let url = fresh_database().await;
    let (first, second) = (open(&url).await, open(&url).await);
    let event = || vec![new_event("A", json!({}))];
    append_new(&first, request("s", ExpectedVersion::NoStream, event())).await;
    append_new(&second, request("s", ExpectedVersion::Exact(1), event())).await;
    // `first` last saw version 1: appending on it would fork the stream's hash chain.
    let third = append_new(&first, request("s", ExpectedVersion::Any, event())).await;
    assert_eq!(third[0].version, 3);
    append_new(&second, request("s", ExpectedVersion::Exact(3), event())).await;
    // `first` last saw version 3: its guess agrees with the request, the database does not.
    match first
        .append(request("s", ExpectedVersion::Exact(3), event()))
        .await
    {
        Err(lianxi_store::StoreError::VersionConflict { actual: 4, .. }) => {}
        other => panic!("expected a conflict at version 4, got {other:?}"),
    }
    // A stream only required unchanged, which `first` never saw: taken to be as required, and
    // checked.
    append_new(&second, request("fact", ExpectedVersion::NoStream, event())).await;
    let guarded = |version| {
        unchanged(
            request("t", ExpectedVersion::NoStream, event()),
            "fact",
            version,
        )
    };
    match first.append(guarded(0)).await {
        Err(lianxi_store::StoreError::VersionConflict {
            stream, actual: 1, ..
        }) => {
            assert_eq!(stream, "fact")
        }
        other => panic!("expected a conflict on the fact, got {other:?}"),
    }
    append_new(&first, guarded(1)).await;
    let stream = first.read_stream("s", 0).await.expect("read_stream");
    assert_eq!(
        stream.iter().map(|e| e.version).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    let report = first.verify().await.expect("verify");
    assert_eq!(
        report.first_failure, None,
        "every event chains to the one before it"
    );
    assert_eq!(report.events, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_idempotency_key_sent_to_two_servers_at_once_appends_once() {
    let url = fresh_database().await;
    let (first, second) = (open(&url).await, open(&url).await);
    for round in 0..10 {
        let key = format!("key-{round}");
        let stream = format!("s-{round}");
        let events = vec![new_event("A", json!({"round": round}))];
        let make = || {
            keyed(
                request(&stream, ExpectedVersion::Any, events.clone()),
                "alice",
                &key,
                "d",
            )
        };
        let (a, b) = tokio::join!(first.append(make()), second.append(make()));
        let (a, b) = (a.expect("first"), b.expect("second"));
        let appended = [&a, &b]
            .iter()
            .filter(|outcome| matches!(outcome, AppendOutcome::Appended(_)))
            .count();
        assert_eq!(appended, 1, "round {round}: {a:?} / {b:?}");
        assert_eq!(a.events(), b.events(), "both answer with the same events");
        assert_eq!(first.read_stream(&stream, 0).await.expect("read").len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_commit_by_another_server_wakes_subscribers() {
    let url = fresh_database().await;
    let (listening, writing) = (open(&url).await, open(&url).await);
    let mut head = listening.subscribe();
    let position = one(&writing, "s").await;
    tokio::time::timeout(
        Duration::from_secs(10),
        head.wait_for(|&head| head >= position),
    )
    .await
    .expect("woken within 10 s")
    .expect("the store is alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_database_refuses_to_change_or_remove_events() {
    let url = fresh_database().await;
    let store = open(&url).await;
    one(&store, "s").await;
    let mut conn = raw(&url).await;
    for statement in [
        "UPDATE events SET data = '{}'::json",
        "DELETE FROM events",
        "TRUNCATE events CASCADE",
    ] {
        let error = sqlx::raw_sql(statement)
            .execute(&mut conn)
            .await
            .expect_err(statement);
        assert!(
            error.to_string().contains("events are append-only"),
            "{statement}: {error}"
        );
    }
    assert_eq!(store.read_all(0, 10).await.expect("read").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_finds_an_event_changed_or_removed_behind_the_stores_back() {
    let url = fresh_database().await;
    let store = open(&url).await;
    for _ in 0..3 {
        one(&store, "s").await;
    }
    let last_of_t = one(&store, "t").await;
    assert_eq!(store.verify().await.expect("verify").first_failure, None);

    // A superuser can switch the guards off; the hashes still tell.
    let mut conn = raw(&url).await;
    sqlx::raw_sql(
        "ALTER TABLE events DISABLE TRIGGER USER; \
         UPDATE events SET data = '{\"stream\":\"forged\"}'::json WHERE stream_id = 's' AND version = 2",
    )
    .execute(&mut conn)
    .await
    .expect("tamper");
    let failure = store
        .verify()
        .await
        .expect("verify")
        .first_failure
        .expect("a failure");
    assert_eq!((failure.stream.as_str(), failure.version), ("s", 2));

    // The last event of a stream has no successor to break; its command row still counts it.
    sqlx::raw_sql(
        "UPDATE events SET data = '{\"stream\":\"s\"}'::json WHERE stream_id = 's' AND version = 2; \
         DELETE FROM events WHERE stream_id = 't'",
    )
    .execute(&mut conn)
    .await
    .expect("tamper");
    let failure = store
        .verify()
        .await
        .expect("verify")
        .first_failure
        .expect("a failure");
    assert_eq!(failure.position, last_of_t);
    assert!(failure.reason.contains("gone"), "{}", failure.reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_appends_share_commits_and_all_land() {
    let store = Arc::new(fresh_store().await.0);
    let mut tasks = Vec::new();
    for n in 0..64 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                one(&store, &format!("s-{n}-{i}")).await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("a writer");
    }
    let log = store.read_all(0, 10_000).await.expect("read_all");
    assert_eq!(log.len(), 640);
    assert!(log
        .windows(2)
        .all(|pair| pair[0].position < pair[1].position));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscribers_wake_when_another_servers_late_commit_makes_events_readable() {
    let url = fresh_database().await;
    let store = open(&url).await;
    let mut other_server = raw(&url).await;
    let held = hold_a_writer_open(&mut other_server, "held").await;
    let later = one(&store, "later").await;

    // This store announced its own commit, but it cannot be read yet.
    let mut head = store.subscribe();
    head.borrow_and_update();
    assert!(store.read_all(0, 10).await.expect("read_all").is_empty());

    // The other server commits (and notifies, as its writer does): the head number does not
    // move, yet two events became readable, so subscribers must wake.
    sqlx::query("SELECT pg_notify('lianxi_events', $1)")
        .bind(format!("another-server:{held}"))
        .execute(&mut other_server)
        .await
        .expect("notify");
    sqlx::raw_sql("COMMIT")
        .execute(&mut other_server)
        .await
        .expect("commit");
    tokio::time::timeout(Duration::from_secs(10), head.changed())
        .await
        .expect("woken within 10 s")
        .expect("the store is alive");
    let log = store.read_all(0, 10).await.expect("read_all");
    assert_eq!(
        log.iter().map(|event| event.position).collect::<Vec<_>>(),
        vec![held, later]
    );
}

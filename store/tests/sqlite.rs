//! The SQLite backend: the shared conformance suite, then what only a file on disk can show —
//! reopening, tampering with the file behind the store's back, two processes on one file.

use std::path::Path;
use std::sync::Arc;

use lianxi_store::conformance::{append_new, new_event, request};
use lianxi_store::sqlite::{SqliteStore, DATABASE_FILE};
use lianxi_store::{AppendOutcome, EventStore, ExpectedVersion, StoreError};
use serde_json::json;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::Connection;
use tempfile::TempDir;

async fn fresh_store() -> (SqliteStore, TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteStore::open(dir.path()).await.expect("open the store");
    (store, dir)
}

lianxi_store::conformance_suite!(fresh_store);

/// A connection to the file that bypasses the store, as an attacker or a careless admin would.
async fn raw_connection(path: &Path) -> SqliteConnection {
    SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path))
        .await
        .expect("a raw connection")
}

/// Three events in stream `s` at positions 1, 2, 3, and one in `t` at 4.
async fn small_log(store: &SqliteStore) {
    for n in 1..=3 {
        let events = vec![new_event("A", json!({"n": n}))];
        append_new(store, request("s", ExpectedVersion::Any, events)).await;
    }
    append_new(
        store,
        request("t", ExpectedVersion::Any, vec![new_event("B", json!({}))]),
    )
    .await;
}

#[tokio::test]
async fn a_reopened_store_keeps_its_log_and_positions_continue() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let before = {
        let store = SqliteStore::open(dir.path()).await.expect("open");
        small_log(&store).await;
        store.read_all(0, 100).await.expect("read_all")
    };
    assert!(dir.path().join(DATABASE_FILE).is_file());

    let store = SqliteStore::open(dir.path()).await.expect("reopen");
    assert_eq!(store.read_all(0, 100).await.expect("read_all"), before);
    assert_eq!(store.head().await.expect("head"), 4);
    let next = append_new(
        &store,
        request(
            "s",
            ExpectedVersion::Exact(3),
            vec![new_event("A", json!({"n": 4}))],
        ),
    )
    .await;
    assert_eq!((next[0].position, next[0].version), (5, 4));
    assert_eq!(store.verify().await.expect("verify").first_failure, None);
}

#[tokio::test]
async fn open_creates_missing_directories() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let nested = dir.path().join("data").join("lianxi");
    let store = SqliteStore::open(&nested).await.expect("open");
    assert_eq!(store.path(), nested.join(DATABASE_FILE));
    store.ping().await.expect("ping");
}

#[tokio::test]
async fn verify_names_a_row_changed_behind_the_stores_back() {
    let (store, _dir) = fresh_store().await;
    small_log(&store).await;
    let changed = store.read_all(1, 1).await.expect("read_all")[0].clone();
    assert_eq!(changed.position, 2);

    let mut raw = raw_connection(store.path()).await;
    sqlx::query("DROP TRIGGER events_no_update")
        .execute(&mut raw)
        .await
        .expect("drop the guard");
    sqlx::query(r#"UPDATE events SET data = '{"n":200}' WHERE position = 2"#)
        .execute(&mut raw)
        .await
        .expect("tamper");

    let report = store.verify().await.expect("verify runs");
    let failure = report.first_failure.expect("the change is found");
    assert_eq!(failure.position, 2);
    assert_eq!(failure.event_id, changed.id);
    assert_eq!(failure.stored_hash, changed.hash);
    assert_ne!(failure.expected_hash, failure.stored_hash);
    assert_eq!(report.events, 1, "only the event before it checked out");
}

#[tokio::test]
async fn verify_reports_a_row_that_no_longer_decodes() {
    let (store, _dir) = fresh_store().await;
    small_log(&store).await;
    let mut raw = raw_connection(store.path()).await;
    sqlx::query("DROP TRIGGER events_no_update")
        .execute(&mut raw)
        .await
        .expect("drop the guard");
    sqlx::query("UPDATE events SET data = 'not json' WHERE position = 3")
        .execute(&mut raw)
        .await
        .expect("tamper");

    let failure = store
        .verify()
        .await
        .expect("verify runs")
        .first_failure
        .expect("the change is found");
    assert_eq!(failure.position, 3);
    assert!(failure.reason.contains("JSON"), "{}", failure.reason);
    match store.read_stream("s", 0).await {
        Err(StoreError::Corrupt { position: 3, .. }) => {}
        other => panic!("expected a corrupt row at 3, got {other:?}"),
    }
}

#[tokio::test]
async fn the_log_refuses_updates_and_deletes() {
    let (store, _dir) = fresh_store().await;
    small_log(&store).await;
    let mut raw = raw_connection(store.path()).await;

    let update = sqlx::query(r#"UPDATE events SET data = '{}' WHERE position = 2"#)
        .execute(&mut raw)
        .await;
    let delete = sqlx::query("DELETE FROM events WHERE position = 4")
        .execute(&mut raw)
        .await;
    for refused in [update, delete] {
        let error = refused.expect_err("the trigger refuses it");
        assert!(error.to_string().contains("append-only"), "{error}");
    }
    assert_eq!(store.head().await.expect("head"), 4);
    assert_eq!(store.verify().await.expect("verify").first_failure, None);
}

#[tokio::test]
async fn an_event_id_already_in_the_log_is_refused_alone() {
    let (store, _dir) = fresh_store().await;
    let original = new_event("A", json!({}));
    append_new(
        &store,
        request("s", ExpectedVersion::Any, vec![original.clone()]),
    )
    .await;
    match store
        .append(request("t", ExpectedVersion::Any, vec![original]))
        .await
    {
        Err(StoreError::Invalid(_)) => {}
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert!(store.read_stream("t", 0).await.expect("read").is_empty());
    // The refused request's position is not lost: the next append takes it.
    let next = append_new(
        &store,
        request("t", ExpectedVersion::Any, vec![new_event("B", json!({}))]),
    )
    .await;
    assert_eq!(next[0].position, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_the_database_refuses_does_not_spoil_concurrent_ones() {
    let (store, _dir) = fresh_store().await;
    let taken = new_event("A", json!({}));
    append_new(
        &store,
        request("s", ExpectedVersion::Any, vec![taken.clone()]),
    )
    .await;
    let store: Arc<dyn EventStore> = Arc::new(store);

    // The first request reuses an event id: only the database's unique index can tell.
    let mut requests = vec![request("t", ExpectedVersion::Any, vec![taken])];
    requests.extend((0..31).map(|n| {
        let events = vec![new_event("B", json!({"n": n}))];
        request(&format!("u-{n}"), ExpectedVersion::NoStream, events)
    }));
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|request| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.append(request).await })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("an append task panicked"));
    }
    assert!(
        matches!(results[0], Err(StoreError::Invalid(_))),
        "{:?}",
        results[0]
    );
    assert!(results[1..].iter().all(Result::is_ok), "{results:?}");

    let log = store.read_all(0, usize::MAX).await.expect("read_all");
    let positions: Vec<i64> = log.iter().map(|event| event.position).collect();
    assert_eq!(positions, (1..=32).collect::<Vec<_>>());
    assert_eq!(store.verify().await.expect("verify").first_failure, None);
}

/// Two stores on one file stand for two processes (`lianxi serve` and `lianxi demo`): each has
/// its own writer and its own connections, and only the file lock orders them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file_keep_every_stream_consistent() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join(DATABASE_FILE);
    let first = SqliteStore::open_file(&path).await.expect("open the first");
    let second = SqliteStore::open_file(&path)
        .await
        .expect("open the second");
    let stores: [Arc<dyn EventStore>; 2] = [Arc::new(first.clone()), Arc::new(second.clone())];

    const TASKS_PER_STORE: usize = 16;
    const APPENDS_PER_TASK: usize = 5;
    let mut tasks = Vec::new();
    for (index, store) in stores.iter().enumerate() {
        for task in 0..TASKS_PER_STORE {
            let store = Arc::clone(store);
            tasks.push(tokio::spawn(async move {
                let mut won_race = 0;
                for n in 0..APPENDS_PER_TASK {
                    let data = json!({"store": index, "task": task, "n": n});
                    let shared =
                        request("shared", ExpectedVersion::Any, vec![new_event("A", data)]);
                    append_new(&*store, shared).await;
                    let race = request(
                        &format!("race-{n}"),
                        ExpectedVersion::NoStream,
                        vec![new_event("B", json!({}))],
                    );
                    match store.append(race).await {
                        Ok(AppendOutcome::Appended(_)) => won_race += 1,
                        Err(StoreError::VersionConflict { actual: 1, .. }) => {}
                        other => panic!("unexpected race outcome {other:?}"),
                    }
                }
                won_race
            }));
        }
    }
    let mut races_won = 0;
    for task in tasks {
        races_won += task.await.expect("a task panicked");
    }
    assert_eq!(
        races_won, APPENDS_PER_TASK,
        "each race stream has exactly one winner"
    );

    let total = 2 * TASKS_PER_STORE * APPENDS_PER_TASK;
    for store in [&first, &second] {
        let shared = store.read_stream("shared", 0).await.expect("read");
        let versions: Vec<i64> = shared.iter().map(|event| event.version).collect();
        assert_eq!(versions, (1..=total as i64).collect::<Vec<_>>());
        let log = store.read_all(0, usize::MAX).await.expect("read_all");
        let positions: Vec<i64> = log.iter().map(|event| event.position).collect();
        assert_eq!(
            positions,
            (1..=(total + APPENDS_PER_TASK) as i64).collect::<Vec<_>>()
        );
        let report = store.verify().await.expect("verify");
        assert_eq!(report.first_failure, None);
        assert_eq!(report.events, (total + APPENDS_PER_TASK) as u64);
    }
}

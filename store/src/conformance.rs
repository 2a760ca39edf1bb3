//! The backend-independent store test suite: what every [`EventStore`] and [`TokenRegistry`]
//! must do, written once and run against each backend.
//!
//! Each case is a `pub async fn` taking a fresh, empty store and panicking on failure (this module
//! is test code, compiled only with the `conformance` feature). A backend runs them all with
//! [`conformance_suite!`](crate::conformance_suite), giving it a factory:
//!
//! ```text
//! async fn fresh_store() -> (SqliteStore, tempfile::TempDir) { /* an empty store */ }
//! store::conformance_suite!(fresh_store);
//! ```
//!
//! `fresh_store().await` must return `(store, guard)`: a store implementing both `EventStore` and
//! `TokenRegistry`, and anything that must outlive the test (a temporary directory, a database
//! handle). The calling crate needs `tokio` with the `macros` and `rt-multi-thread` features.
//!
//! The cases only use the public traits, so they pin behaviour, not implementation: versions,
//! positions, idempotency, atomicity under concurrency, the hash chain's definition, verification.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::hash::{event_hash, to_stored_precision, HashInput};
use crate::tokens::{TokenRecord, TokenRegistry};
use crate::{
    AppendOutcome, AppendRequest, EventStore, ExpectedVersion, IdempotencyKey, NewEvent,
    RecordedEvent, Snapshot, StoreError, StreamVersion,
};

/// Instantiates every conformance case as a `#[tokio::test]` for the store `$factory` makes.
/// See the [module documentation](crate::conformance).
#[macro_export]
macro_rules! conformance_suite {
    (@cases $factory:expr; $($case:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let (store, _guard) = ($factory)().await;
                $crate::conformance::$case(::std::sync::Arc::new(store)).await;
            }
        )+
    };
    ($factory:expr) => {
        $crate::conformance_suite!(@cases $factory;
            appending_to_a_new_stream_reads_back_what_was_written,
            no_stream_on_an_existing_stream_conflicts,
            a_stale_exact_version_conflicts_and_writes_nothing,
            any_appends_whatever_the_version,
            an_append_is_refused_when_a_stream_it_read_has_moved,
            a_fact_changed_concurrently_never_lets_a_stale_decision_in,
            a_multi_event_append_is_atomic_and_consecutive,
            read_all_pages_by_position_across_streams,
            read_all_raw_is_read_all_with_the_json_as_text,
            read_stream_raw_is_read_stream_with_the_json_as_text,
            read_stream_returns_the_events_after_a_version,
            an_unknown_stream_reads_as_empty,
            head_is_the_last_position,
            a_commit_dates_the_positions_it_made_durable,
            subscribe_is_woken_by_an_append,
            a_repeated_idempotency_key_returns_the_first_events,
            a_reused_key_with_another_request_is_refused_and_writes_nothing,
            keys_of_different_scopes_do_not_collide,
            a_replayed_command_id_returns_its_events,
            find_idempotent_returns_the_first_request_and_its_events,
            concurrent_first_appends_to_one_stream_let_exactly_one_win,
            concurrent_writers_to_distinct_streams_get_gap_free_positions,
            concurrent_requests_with_one_key_append_once,
            a_refused_request_does_not_spoil_concurrent_ones,
            verify_passes_on_a_good_log,
            an_empty_log_verifies,
            each_hash_chains_to_the_previous_event_of_its_stream,
            event_payloads_read_back_exactly,
            invalid_requests_are_refused_and_write_nothing,
            a_snapshot_reads_back_for_its_stream_and_schema_only,
            a_snapshot_ahead_of_its_stream_is_refused,
            an_older_snapshot_never_replaces_a_newer_one,
            snapshots_leave_the_log_and_its_verification_alone,
            snapshots_page_by_stream_for_one_schema,
        );
        $crate::conformance_suite!(@cases $factory;
            tokens_are_found_by_hash_and_a_duplicate_hash_is_refused,
        );
    };
}

// ---------------------------------------------------------------------------------------------
// Helpers, public so a backend's own tests can build requests the same way.

/// A small event with empty metadata.
pub fn new_event(event_type: &str, data: Value) -> NewEvent {
    NewEvent {
        id: Uuid::new_v4(),
        event_type: event_type.to_owned(),
        schema_version: 1,
        data,
        metadata: json!({"actor": "conformance"}),
    }
}

/// A request for a fresh command, without an idempotency key.
pub fn request(stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> AppendRequest {
    AppendRequest {
        stream: stream.to_owned(),
        expected,
        command_id: Uuid::new_v4(),
        idempotency: None,
        events,
        unchanged: Vec::new(),
    }
}

/// `request`, also requiring `stream` to be at `version` when it commits.
pub fn unchanged(mut request: AppendRequest, stream: &str, version: i64) -> AppendRequest {
    request.unchanged.push(StreamVersion::new(stream, version));
    request
}

/// `request` guarded by idempotency key `key` of holder `scope`, for a request digest `digest`.
pub fn keyed(mut request: AppendRequest, scope: &str, key: &str, digest: &str) -> AppendRequest {
    request.idempotency = Some(IdempotencyKey {
        scope: scope.to_owned(),
        key: key.to_owned(),
        request_hash: digest.to_owned(),
    });
    request
}

/// Appends and insists that the events were appended now.
pub async fn append_new(store: &dyn EventStore, request: AppendRequest) -> Vec<RecordedEvent> {
    match store.append(request).await {
        Ok(AppendOutcome::Appended(events)) => events,
        other => panic!("expected Appended, got {other:?}"),
    }
}

async fn whole_log(store: &dyn EventStore) -> Vec<RecordedEvent> {
    store.read_all(0, usize::MAX).await.expect("read_all")
}

fn positions(events: &[RecordedEvent]) -> Vec<i64> {
    events.iter().map(|event| event.position).collect()
}

fn versions(events: &[RecordedEvent]) -> Vec<i64> {
    events.iter().map(|event| event.version).collect()
}

fn assert_conflict(result: Result<AppendOutcome, StoreError>, stream: &str, actual: i64) {
    match result {
        Err(StoreError::VersionConflict {
            stream: conflicted,
            actual: reported,
            ..
        }) => {
            assert_eq!(conflicted, stream);
            assert_eq!(reported, actual, "the conflict reports the actual version");
        }
        other => panic!("expected a version conflict, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Appending and reading.

pub async fn appending_to_a_new_stream_reads_back_what_was_written(store: Arc<dyn EventStore>) {
    let before = Utc::now() - chrono::Duration::seconds(1);
    let sent = vec![
        new_event("ProjectProposed", json!({"title": "River clean-up"})),
        new_event("ProjectApproved", json!({"by": "district-1"})),
    ];
    let appended = append_new(
        &*store,
        request("project-1", ExpectedVersion::NoStream, sent.clone()),
    )
    .await;

    let read = store
        .read_stream("project-1", 0)
        .await
        .expect("read_stream");
    assert_eq!(read, appended, "what was appended is what reads back");
    assert_eq!(versions(&read), [1, 2]);
    assert!(read[0].position >= 1 && read[1].position > read[0].position);
    for (event, new) in read.iter().zip(&sent) {
        assert_eq!(event.id, new.id);
        assert_eq!(event.stream, "project-1");
        assert_eq!(event.event_type, new.event_type);
        assert_eq!(event.schema_version, new.schema_version);
        assert_eq!(event.data, new.data);
        assert_eq!(event.metadata, new.metadata);
        assert!(event.recorded_at >= before && event.recorded_at <= Utc::now());
        assert_eq!(event.hash.len(), 64, "a hex SHA-256");
    }
}

pub async fn no_stream_on_an_existing_stream_conflicts(store: Arc<dyn EventStore>) {
    let first = new_event("A", json!({}));
    append_new(
        &*store,
        request("s", ExpectedVersion::NoStream, vec![first]),
    )
    .await;
    let again = store
        .append(request(
            "s",
            ExpectedVersion::NoStream,
            vec![new_event("B", json!({}))],
        ))
        .await;
    assert_conflict(again, "s", 1);
    let zero = store
        .append(request(
            "s",
            ExpectedVersion::Exact(0),
            vec![new_event("B", json!({}))],
        ))
        .await;
    assert_conflict(zero, "s", 1);
    assert_eq!(store.read_stream("s", 0).await.expect("read").len(), 1);
}

pub async fn a_stale_exact_version_conflicts_and_writes_nothing(store: Arc<dyn EventStore>) {
    let events = (0..3).map(|n| new_event("A", json!({"n": n}))).collect();
    append_new(&*store, request("s", ExpectedVersion::NoStream, events)).await;
    let head = store.head().await.expect("head");

    for stale in [0, 1, 2, 4] {
        let result = store
            .append(request(
                "s",
                ExpectedVersion::Exact(stale),
                vec![new_event("B", json!({}))],
            ))
            .await;
        assert_conflict(result, "s", 3);
    }
    assert_eq!(
        store.head().await.expect("head"),
        head,
        "nothing was written"
    );
    assert_eq!(store.read_stream("s", 0).await.expect("read").len(), 3);

    let current = append_new(
        &*store,
        request(
            "s",
            ExpectedVersion::Exact(3),
            vec![new_event("B", json!({}))],
        ),
    )
    .await;
    assert_eq!(versions(&current), [4]);
}

pub async fn an_append_is_refused_when_a_stream_it_read_has_moved(store: Arc<dyn EventStore>) {
    let fact = || vec![new_event("Fact", json!({}))];
    append_new(&*store, request("fact", ExpectedVersion::NoStream, fact())).await;
    append_new(&*store, request("fact", ExpectedVersion::Exact(1), fact())).await;
    let head = store.head().await.expect("head");

    for stale in [0, 1, 3] {
        let guarded = unchanged(
            request("s", ExpectedVersion::NoStream, fact()),
            "fact",
            stale,
        );
        assert_conflict(store.append(guarded).await, "fact", 2);
    }
    // Every condition must hold, not just one of them.
    let two = unchanged(
        unchanged(request("s", ExpectedVersion::NoStream, fact()), "fact", 2),
        "absent",
        1,
    );
    assert_conflict(store.append(two).await, "absent", 0);
    assert_eq!(
        store.head().await.expect("head"),
        head,
        "nothing was written"
    );

    let current = unchanged(
        unchanged(request("s", ExpectedVersion::NoStream, fact()), "fact", 2),
        "absent",
        0,
    );
    assert_eq!(versions(&append_new(&*store, current).await), [1]);
}

/// Writers move a fact stream while others append decisions guarded by the version they saw:
/// a guarded append only lands while its fact is still at that version.
pub async fn a_fact_changed_concurrently_never_lets_a_stale_decision_in(
    store: Arc<dyn EventStore>,
) {
    append_new(
        &*store,
        request(
            "fact",
            ExpectedVersion::NoStream,
            vec![new_event("Fact", json!({}))],
        ),
    )
    .await;
    let mut tasks = Vec::new();
    for n in 0..24 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            if n % 3 == 0 {
                let moved = request(
                    "fact",
                    ExpectedVersion::Any,
                    vec![new_event("Fact", json!({}))],
                );
                store.append(moved).await.map(|_| None)
            } else {
                let seen = store.read_stream("fact", 0).await?.len();
                let seen = i64::try_from(seen).expect("small");
                let guarded = unchanged(
                    request(
                        &format!("s-{n}"),
                        ExpectedVersion::NoStream,
                        vec![new_event("Decided", json!({ "saw": seen }))],
                    ),
                    "fact",
                    seen,
                );
                match store.append(guarded).await {
                    Ok(outcome) => Ok(Some(outcome.events()[0].clone())),
                    Err(StoreError::VersionConflict { .. }) => Ok(None),
                    Err(other) => Err(other),
                }
            }
        }));
    }
    let mut decided = Vec::new();
    for task in tasks {
        if let Some(event) = task.await.expect("task").expect("append") {
            decided.push(event);
        }
    }
    let log = whole_log(&*store).await;
    for event in &decided {
        let saw = event.data["saw"].as_i64().expect("saw");
        let fact_version_then = log
            .iter()
            .filter(|e| e.stream == "fact" && e.position < event.position)
            .count();
        assert_eq!(
            i64::try_from(fact_version_then).expect("small"),
            saw,
            "{} was decided on fact version {saw} but committed after another",
            event.stream
        );
    }
    assert_eq!(
        log.iter().filter(|e| e.stream == "fact").count(),
        9,
        "every move of the fact was appended"
    );
}

pub async fn any_appends_whatever_the_version(store: Arc<dyn EventStore>) {
    for expected_version in 1..=3 {
        let events = append_new(
            &*store,
            request("s", ExpectedVersion::Any, vec![new_event("A", json!({}))]),
        )
        .await;
        assert_eq!(versions(&events), [expected_version]);
    }
}

pub async fn a_multi_event_append_is_atomic_and_consecutive(store: Arc<dyn EventStore>) {
    append_new(
        &*store,
        request(
            "other",
            ExpectedVersion::Any,
            vec![new_event("X", json!({}))],
        ),
    )
    .await;
    append_new(
        &*store,
        request("s", ExpectedVersion::Any, vec![new_event("A", json!({}))]),
    )
    .await;
    let events = (0..5).map(|n| new_event("B", json!({"n": n}))).collect();
    let appended = append_new(&*store, request("s", ExpectedVersion::Exact(1), events)).await;
    assert_eq!(versions(&appended), [2, 3, 4, 5, 6]);
    let first = appended[0].position;
    assert_eq!(positions(&appended), (first..first + 5).collect::<Vec<_>>());

    // A conflicting multi-event append writes none of its events.
    let events = (0..5).map(|n| new_event("C", json!({"n": n}))).collect();
    let refused = store
        .append(request("s", ExpectedVersion::Exact(1), events))
        .await;
    assert_conflict(refused, "s", 6);
    assert_eq!(store.read_stream("s", 0).await.expect("read").len(), 6);
}

pub async fn read_all_pages_by_position_across_streams(store: Arc<dyn EventStore>) {
    let mut appended = Vec::new();
    for n in 0..10 {
        let stream = if n % 2 == 0 { "even" } else { "odd" };
        appended.extend(
            append_new(
                &*store,
                request(
                    stream,
                    ExpectedVersion::Any,
                    vec![new_event("A", json!({"n": n}))],
                ),
            )
            .await,
        );
    }
    let all = whole_log(&*store).await;
    assert_eq!(all, appended, "the log is in append order");
    assert!(all
        .windows(2)
        .all(|pair| pair[0].position < pair[1].position));

    let page = store.read_all(all[3].position, 4).await.expect("read_all");
    assert_eq!(page, all[4..8].to_vec());
    let tail = store
        .read_all(all[8].position, 100)
        .await
        .expect("read_all");
    assert_eq!(tail, all[9..].to_vec());
    let past_the_end = store
        .read_all(all[9].position, 100)
        .await
        .expect("read_all");
    assert!(past_the_end.is_empty());
    assert!(store.read_all(0, 0).await.expect("read_all").is_empty());
}

pub async fn read_all_raw_is_read_all_with_the_json_as_text(store: Arc<dyn EventStore>) {
    for n in 0..6 {
        let data = json!({"n": n, "text": "社区 \"quoted\" \u{1F600}", "nested": {"list": [1, 2.5, null]}});
        append_new(
            &*store,
            request(
                if n % 2 == 0 { "a" } else { "b" },
                ExpectedVersion::Any,
                vec![new_event("A", data)],
            ),
        )
        .await;
    }
    let all = whole_log(&*store).await;
    let raw = store.read_all_raw(0, 100).await.expect("read_all_raw");
    assert_eq!(raw.len(), all.len());
    for (raw, parsed) in raw.iter().zip(&all) {
        let data: serde_json::Value = serde_json::from_str(&raw.data).expect("data is JSON");
        let metadata: serde_json::Value =
            serde_json::from_str(&raw.metadata).expect("metadata is JSON");
        assert_eq!(data, parsed.data);
        assert_eq!(metadata, parsed.metadata);
        assert_eq!(
            (
                raw.position,
                raw.id,
                &raw.stream,
                raw.version,
                &raw.event_type
            ),
            (
                parsed.position,
                parsed.id,
                &parsed.stream,
                parsed.version,
                &parsed.event_type
            )
        );
        assert_eq!(
            (raw.schema_version, raw.recorded_at, &raw.hash),
            (parsed.schema_version, parsed.recorded_at, &parsed.hash)
        );
    }
    let page = store
        .read_all_raw(all[2].position, 2)
        .await
        .expect("read_all_raw");
    let positions: Vec<_> = page.iter().map(|e| e.position).collect();
    assert_eq!(positions, [all[3].position, all[4].position]);
}

pub async fn read_stream_raw_is_read_stream_with_the_json_as_text(store: Arc<dyn EventStore>) {
    for n in 0..5 {
        let data = json!({"n": n, "text": "社区 \"quoted\" \u{1F600}", "list": [1, 2.5, null]});
        let stream = if n % 2 == 0 { "a" } else { "b" };
        let events = vec![new_event("A", data)];
        append_new(&*store, request(stream, ExpectedVersion::Any, events)).await;
    }
    for (stream, after) in [("a", 0), ("a", 1), ("b", 0), ("none", 0)] {
        let parsed = store.read_stream(stream, after).await.expect("read_stream");
        let raw = store
            .read_stream_raw(stream, after)
            .await
            .expect("read_stream_raw");
        let reparsed: Vec<RecordedEvent> = raw
            .into_iter()
            .map(|raw| RecordedEvent {
                data: serde_json::from_str(&raw.data).expect("data is JSON"),
                metadata: serde_json::from_str(&raw.metadata).expect("metadata is JSON"),
                position: raw.position,
                id: raw.id,
                stream: raw.stream,
                version: raw.version,
                event_type: raw.event_type,
                schema_version: raw.schema_version,
                recorded_at: raw.recorded_at,
                hash: raw.hash,
            })
            .collect();
        assert_eq!(reparsed, parsed, "stream {stream} after version {after}");
    }
}

pub async fn read_stream_returns_the_events_after_a_version(store: Arc<dyn EventStore>) {
    let events = (0..4).map(|n| new_event("A", json!({"n": n}))).collect();
    append_new(&*store, request("s", ExpectedVersion::NoStream, events)).await;
    append_new(
        &*store,
        request(
            "t",
            ExpectedVersion::NoStream,
            vec![new_event("B", json!({}))],
        ),
    )
    .await;
    assert_eq!(
        versions(&store.read_stream("s", 0).await.expect("read")),
        [1, 2, 3, 4]
    );
    assert_eq!(
        versions(&store.read_stream("s", 2).await.expect("read")),
        [3, 4]
    );
    assert!(store.read_stream("s", 4).await.expect("read").is_empty());
    let t = store.read_stream("t", 0).await.expect("read");
    assert!(t.iter().all(|event| event.stream == "t"));
}

// ---------------------------------------------------------------------------------------------
// Snapshots.

/// A snapshot of `stream` at `version` whose state names both, so a mix-up shows.
fn snapshot(stream: &str, version: i64, schema: i32) -> Snapshot {
    Snapshot {
        stream: stream.to_owned(),
        version,
        schema,
        state: json!({"stream": stream, "version": version, "schema": schema}).to_string(),
    }
}

/// Appends `count` events to a new stream `stream`.
async fn stream_of(store: &dyn EventStore, stream: &str, count: usize) {
    let events = (0..count)
        .map(|n| new_event("A", json!({"n": n})))
        .collect();
    append_new(store, request(stream, ExpectedVersion::NoStream, events)).await;
}

pub async fn a_snapshot_reads_back_for_its_stream_and_schema_only(store: Arc<dyn EventStore>) {
    stream_of(&*store, "s", 3).await;
    stream_of(&*store, "t", 1).await;
    assert_eq!(store.read_snapshot("s", 1).await.expect("read"), None);

    assert!(store
        .save_snapshot(&snapshot("s", 2, 1))
        .await
        .expect("save"));
    assert!(store
        .save_snapshot(&snapshot("s", 3, 2))
        .await
        .expect("save"));
    assert_eq!(
        store.read_snapshot("s", 1).await.expect("read"),
        Some(snapshot("s", 2, 1))
    );
    assert_eq!(
        store.read_snapshot("s", 2).await.expect("read"),
        Some(snapshot("s", 3, 2)),
        "each schema keeps its own snapshot"
    );
    assert_eq!(store.read_snapshot("s", 3).await.expect("read"), None);
    assert_eq!(store.read_snapshot("t", 1).await.expect("read"), None);
}

pub async fn a_snapshot_ahead_of_its_stream_is_refused(store: Arc<dyn EventStore>) {
    stream_of(&*store, "s", 2).await;
    assert!(!store
        .save_snapshot(&snapshot("s", 3, 1))
        .await
        .expect("save"));
    assert!(!store
        .save_snapshot(&snapshot("nobody", 1, 1))
        .await
        .expect("save"));
    assert_eq!(store.read_snapshot("s", 1).await.expect("read"), None);
    assert_eq!(store.read_snapshot("nobody", 1).await.expect("read"), None);
}

pub async fn an_older_snapshot_never_replaces_a_newer_one(store: Arc<dyn EventStore>) {
    stream_of(&*store, "s", 5).await;
    assert!(store
        .save_snapshot(&snapshot("s", 4, 1))
        .await
        .expect("save"));
    assert!(!store
        .save_snapshot(&snapshot("s", 2, 1))
        .await
        .expect("save"));
    assert!(!store
        .save_snapshot(&snapshot("s", 4, 1))
        .await
        .expect("save"));
    assert_eq!(
        store.read_snapshot("s", 1).await.expect("read"),
        Some(snapshot("s", 4, 1))
    );

    // Many savers at once, in any order: the newest is what stays.
    let savers = (1..=5).rev().chain(1..=5).map(|version| {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.save_snapshot(&snapshot("s", version, 1)).await })
    });
    for saver in savers.collect::<Vec<_>>() {
        saver.await.expect("a saver").expect("save");
    }
    assert_eq!(
        store.read_snapshot("s", 1).await.expect("read"),
        Some(snapshot("s", 5, 1))
    );
}

pub async fn snapshots_leave_the_log_and_its_verification_alone(store: Arc<dyn EventStore>) {
    stream_of(&*store, "s", 3).await;
    let before = whole_log(&*store).await;
    let head = store.head().await.expect("head");
    assert!(store
        .save_snapshot(&snapshot("s", 3, 1))
        .await
        .expect("save"));
    assert_eq!(whole_log(&*store).await, before);
    assert_eq!(store.head().await.expect("head"), head);
    let report = store.verify().await.expect("verify");
    assert_eq!(report.first_failure, None);
    assert_eq!(report.events, 3);
}

pub async fn snapshots_page_by_stream_for_one_schema(store: Arc<dyn EventStore>) {
    for stream in ["c", "a", "b"] {
        stream_of(&*store, stream, 2).await;
        assert!(store
            .save_snapshot(&snapshot(stream, 2, 1))
            .await
            .expect("save"));
    }
    assert!(store
        .save_snapshot(&snapshot("a", 1, 7))
        .await
        .expect("save"));
    let first = store.snapshots(1, "", 2).await.expect("a page");
    assert_eq!(first, vec![snapshot("a", 2, 1), snapshot("b", 2, 1)]);
    let rest = store.snapshots(1, "b", 2).await.expect("a page");
    assert_eq!(rest, vec![snapshot("c", 2, 1)]);
    assert!(store.snapshots(1, "c", 2).await.expect("a page").is_empty());
    assert_eq!(
        store.snapshots(7, "", 10).await.expect("a page"),
        vec![snapshot("a", 1, 7)]
    );
}

pub async fn an_unknown_stream_reads_as_empty(store: Arc<dyn EventStore>) {
    assert!(store
        .read_stream("nobody", 0)
        .await
        .expect("read")
        .is_empty());
}

/// Each position this store committed is dated by the end of its group commit, after the
/// events were recorded and before the append returned; a position nobody committed is not.
pub async fn a_commit_dates_the_positions_it_made_durable(store: Arc<dyn EventStore>) {
    let before = chrono::Utc::now();
    let events = vec![new_event("A", json!({})), new_event("B", json!({}))];
    let appended = append_new(&*store, request("a", ExpectedVersion::Any, events)).await;
    let returned = chrono::Utc::now();
    for event in &appended {
        let at = store
            .committed_at(event.position)
            .unwrap_or_else(|| panic!("position {} is dated", event.position));
        assert!(
            at >= event.recorded_at && at >= before && at <= returned,
            "{at}"
        );
    }
    let later = append_new(
        &*store,
        request("b", ExpectedVersion::Any, vec![new_event("C", json!({}))]),
    )
    .await;
    let first = store.committed_at(appended[0].position).expect("dated");
    let second = store.committed_at(later[0].position).expect("dated");
    assert!(second >= first);
    assert_eq!(store.committed_at(later[0].position + 1), None);
}

pub async fn head_is_the_last_position(store: Arc<dyn EventStore>) {
    assert_eq!(
        store.head().await.expect("head"),
        0,
        "an empty log's head is 0"
    );
    append_new(
        &*store,
        request("a", ExpectedVersion::Any, vec![new_event("A", json!({}))]),
    )
    .await;
    let events = vec![new_event("B", json!({})), new_event("C", json!({}))];
    let appended = append_new(&*store, request("b", ExpectedVersion::Any, events)).await;
    assert_eq!(store.head().await.expect("head"), appended[1].position);
    store.ping().await.expect("ping");
}

pub async fn subscribe_is_woken_by_an_append(store: Arc<dyn EventStore>) {
    let mut head = store.subscribe();
    let appended = append_new(
        &*store,
        request("s", ExpectedVersion::Any, vec![new_event("A", json!({}))]),
    )
    .await;
    tokio::time::timeout(Duration::from_secs(10), head.changed())
        .await
        .expect("woken within 10 s")
        .expect("the store is alive");
    assert_eq!(*head.borrow_and_update(), appended[0].position);

    // A receiver made after the append starts at the current head and waits for the next one.
    let mut late = store.subscribe();
    assert_eq!(*late.borrow(), appended[0].position);
    let next = append_new(
        &*store,
        request("s", ExpectedVersion::Any, vec![new_event("B", json!({}))]),
    )
    .await;
    tokio::time::timeout(Duration::from_secs(10), late.changed())
        .await
        .expect("woken within 10 s")
        .expect("the store is alive");
    assert_eq!(*late.borrow(), next[0].position);
}

// ---------------------------------------------------------------------------------------------
// Idempotency.

pub async fn a_repeated_idempotency_key_returns_the_first_events(store: Arc<dyn EventStore>) {
    let events = vec![
        new_event("A", json!({"n": 1})),
        new_event("B", json!({"n": 2})),
    ];
    let first = keyed(
        request("s", ExpectedVersion::NoStream, events),
        "alice",
        "k-1",
        "digest",
    );
    let appended = append_new(&*store, first.clone()).await;

    // A retry: new command id and new event ids, same key and same request digest.
    let retry = keyed(
        request(
            "s",
            ExpectedVersion::NoStream,
            vec![new_event("A", json!({"n": 1}))],
        ),
        "alice",
        "k-1",
        "digest",
    );
    match store.append(retry).await.expect("a retry is not an error") {
        AppendOutcome::Duplicate(events) => assert_eq!(events, appended),
        other => panic!("expected Duplicate, got {other:?}"),
    }
    assert_eq!(
        whole_log(&*store).await,
        appended,
        "nothing new was written"
    );
}

pub async fn a_reused_key_with_another_request_is_refused_and_writes_nothing(
    store: Arc<dyn EventStore>,
) {
    let first = keyed(
        request("s", ExpectedVersion::Any, vec![new_event("A", json!({}))]),
        "alice",
        "k-1",
        "digest-1",
    );
    let appended = append_new(&*store, first).await;
    let other = keyed(
        request("s", ExpectedVersion::Any, vec![new_event("B", json!({}))]),
        "alice",
        "k-1",
        "digest-2",
    );
    match store.append(other).await {
        Err(StoreError::IdempotencyKeyReused { key }) => assert_eq!(key, "k-1"),
        other => panic!("expected IdempotencyKeyReused, got {other:?}"),
    }
    assert_eq!(whole_log(&*store).await, appended);
}

pub async fn keys_of_different_scopes_do_not_collide(store: Arc<dyn EventStore>) {
    let alice = keyed(
        request("s", ExpectedVersion::Any, vec![new_event("A", json!({}))]),
        "alice",
        "same-key",
        "digest-a",
    );
    let bob = keyed(
        request("s", ExpectedVersion::Any, vec![new_event("B", json!({}))]),
        "bob",
        "same-key",
        "digest-b",
    );
    append_new(&*store, alice).await;
    append_new(&*store, bob).await;
    assert_eq!(store.read_stream("s", 0).await.expect("read").len(), 2);
}

pub async fn a_replayed_command_id_returns_its_events(store: Arc<dyn EventStore>) {
    let first = request(
        "s",
        ExpectedVersion::NoStream,
        vec![new_event("A", json!({}))],
    );
    let appended = append_new(&*store, first.clone()).await;
    // The same command again, even with an expectation that would now conflict.
    match store.append(first).await.expect("a replay is not an error") {
        AppendOutcome::Duplicate(events) => assert_eq!(events, appended),
        other => panic!("expected Duplicate, got {other:?}"),
    }
    assert_eq!(whole_log(&*store).await, appended);
}

pub async fn find_idempotent_returns_the_first_request_and_its_events(store: Arc<dyn EventStore>) {
    assert!(store
        .find_idempotent("alice", "k-1")
        .await
        .expect("find_idempotent")
        .is_none());
    let first = keyed(
        request("s", ExpectedVersion::Any, vec![new_event("A", json!({}))]),
        "alice",
        "k-1",
        "digest-1",
    );
    let appended = append_new(&*store, first).await;
    let found = store
        .find_idempotent("alice", "k-1")
        .await
        .expect("find_idempotent");
    assert_eq!(found, Some(("digest-1".to_owned(), appended)));
    assert!(store
        .find_idempotent("bob", "k-1")
        .await
        .expect("find_idempotent")
        .is_none());
}

// ---------------------------------------------------------------------------------------------
// Concurrency.

/// Runs `requests` as concurrent tasks and returns their results in request order.
async fn append_concurrently(
    store: &Arc<dyn EventStore>,
    requests: Vec<AppendRequest>,
) -> Vec<Result<AppendOutcome, StoreError>> {
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|request| {
            let store = Arc::clone(store);
            tokio::spawn(async move { store.append(request).await })
        })
        .collect();
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.expect("an append task panicked"));
    }
    results
}

pub async fn concurrent_first_appends_to_one_stream_let_exactly_one_win(
    store: Arc<dyn EventStore>,
) {
    let requests = (0..32)
        .map(|n| {
            request(
                "contested",
                ExpectedVersion::Exact(0),
                vec![new_event("A", json!({"n": n}))],
            )
        })
        .collect();
    let results = append_concurrently(&store, requests).await;
    let (winners, losers): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
    assert_eq!(
        winners.len(),
        1,
        "exactly one first append wins: {winners:?}"
    );
    for result in losers {
        assert_conflict(result, "contested", 1);
    }
    let winner = winners
        .into_iter()
        .next()
        .and_then(Result::ok)
        .expect("the winner");
    let stream = store.read_stream("contested", 0).await.expect("read");
    assert_eq!(stream.as_slice(), winner.events());
}

pub async fn concurrent_writers_to_distinct_streams_get_gap_free_positions(
    store: Arc<dyn EventStore>,
) {
    const WRITERS: usize = 64;
    const APPENDS: usize = 5;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut positions = Vec::new();
                for n in 0..APPENDS {
                    let stream = format!("writer-{writer}");
                    let events = vec![new_event("A", json!({"n": n}))];
                    let expected = ExpectedVersion::Exact(n as i64);
                    let appended = append_new(&*store, request(&stream, expected, events)).await;
                    positions.extend(appended.iter().map(|event| event.position));
                }
                positions
            })
        })
        .collect();
    let mut acknowledged = Vec::new();
    for task in tasks {
        acknowledged.extend(task.await.expect("a writer panicked"));
    }
    acknowledged.sort_unstable();
    let total = (WRITERS * APPENDS) as i64;
    assert_eq!(
        acknowledged,
        (1..=total).collect::<Vec<_>>(),
        "unique and gap-free"
    );
    assert_eq!(
        positions(&whole_log(&*store).await),
        (1..=total).collect::<Vec<_>>()
    );
    assert_eq!(store.head().await.expect("head"), total);
    let report = store.verify().await.expect("verify");
    assert_eq!(report.first_failure, None);
    assert_eq!(report.streams, WRITERS as u64);
}

pub async fn concurrent_requests_with_one_key_append_once(store: Arc<dyn EventStore>) {
    let requests = (0..32)
        .map(|_| {
            keyed(
                request("s", ExpectedVersion::Any, vec![new_event("A", json!({}))]),
                "alice",
                "k-1",
                "digest",
            )
        })
        .collect();
    let results = append_concurrently(&store, requests).await;
    let mut appended = Vec::new();
    let mut duplicates = Vec::new();
    for result in results {
        match result.expect("no request with the key fails") {
            AppendOutcome::Appended(events) => appended.push(events),
            AppendOutcome::Duplicate(events) => duplicates.push(events),
        }
    }
    assert_eq!(appended.len(), 1, "exactly one request appended");
    assert_eq!(duplicates.len(), 31);
    assert!(duplicates.iter().all(|events| *events == appended[0]));
    assert_eq!(whole_log(&*store).await, appended[0], "one set of events");
}

pub async fn a_refused_request_does_not_spoil_concurrent_ones(store: Arc<dyn EventStore>) {
    let mut requests = Vec::new();
    for n in 0..16 {
        requests.push(request(
            "contested",
            ExpectedVersion::NoStream,
            vec![new_event("A", json!({"n": n}))],
        ));
        requests.push(request(
            &format!("own-{n}"),
            ExpectedVersion::NoStream,
            vec![
                new_event("B", json!({"n": n})),
                new_event("C", json!({"n": n})),
            ],
        ));
    }
    let results = append_concurrently(&store, requests).await;
    let (contested, own): (Vec<_>, Vec<_>) = results
        .into_iter()
        .enumerate()
        .partition(|(index, _)| index % 2 == 0);
    assert_eq!(
        contested
            .iter()
            .filter(|(_, result)| result.is_ok())
            .count(),
        1
    );
    assert!(own.iter().all(|(_, result)| result.is_ok()), "{own:?}");
    let log = whole_log(&*store).await;
    assert_eq!(log.len(), 1 + 16 * 2);
    let last = log.last().map(|event| event.position).unwrap_or_default();
    assert_eq!(
        positions(&log),
        (1..=last).collect::<Vec<_>>(),
        "no gaps left by refusals"
    );
    assert_eq!(store.verify().await.expect("verify").first_failure, None);
}

// ---------------------------------------------------------------------------------------------
// The hash chain and verification.

pub async fn verify_passes_on_a_good_log(store: Arc<dyn EventStore>) {
    for n in 0..10 {
        let stream = format!("s-{}", n % 3);
        let events = (0..=n % 2)
            .map(|m| new_event("A", json!({"n": n, "m": m})))
            .collect();
        append_new(&*store, request(&stream, ExpectedVersion::Any, events)).await;
    }
    let report = store.verify().await.expect("verify");
    assert_eq!(report.first_failure, None);
    assert_eq!(report.events, 15);
    assert_eq!(report.streams, 3);
    assert_eq!(report.head, store.head().await.expect("head"));
}

pub async fn an_empty_log_verifies(store: Arc<dyn EventStore>) {
    let report = store.verify().await.expect("verify");
    assert_eq!(
        (
            report.events,
            report.streams,
            report.head,
            report.first_failure
        ),
        (0, 0, 0, None)
    );
}

pub async fn each_hash_chains_to_the_previous_event_of_its_stream(store: Arc<dyn EventStore>) {
    append_new(
        &*store,
        request(
            "s",
            ExpectedVersion::Any,
            vec![new_event("A", json!({"n": 1}))],
        ),
    )
    .await;
    append_new(
        &*store,
        request("t", ExpectedVersion::Any, vec![new_event("X", json!({}))]),
    )
    .await;
    append_new(
        &*store,
        request(
            "s",
            ExpectedVersion::Any,
            vec![new_event("B", json!({"n": 2}))],
        ),
    )
    .await;
    let stream = store.read_stream("s", 0).await.expect("read");
    let [first, second] = stream.as_slice() else {
        panic!("expected two events, got {stream:?}");
    };
    assert_eq!(first.hash, event_hash(None, &HashInput::from(first)));
    assert_eq!(
        second.hash,
        event_hash(Some(&first.hash), &HashInput::from(second))
    );
    assert_ne!(second.hash, event_hash(None, &HashInput::from(second)));
}

pub async fn event_payloads_read_back_exactly(store: Arc<dyn EventStore>) {
    let data = json!({
        "title": "社区“双报到” \"quoted\" \n\t\u{1F600}",
        "floats": [0.1, 1.0, -0.0, 1e-7, 123_456.789_012_345, 1.797_693_134_862_315_7e308],
        "ints": [0, -1, i64::MIN, u64::MAX],
        "nested": {"z": [], "a": {}, "m": null, "b": true},
    });
    let mut event = new_event("A", data.clone());
    event.metadata = json!({"request_id": "r-1", "ip": null});
    event.schema_version = 3;
    append_new(&*store, request("s", ExpectedVersion::Any, vec![event])).await;
    let read = store.read_stream("s", 0).await.expect("read");
    assert_eq!(read[0].data, data);
    assert_eq!(read[0].schema_version, 3);
    assert_eq!(store.verify().await.expect("verify").first_failure, None);
}

// ---------------------------------------------------------------------------------------------
// Validation and tokens.

pub async fn invalid_requests_are_refused_and_write_nothing(store: Arc<dyn EventStore>) {
    let one = || vec![new_event("A", json!({}))];
    let duplicated = new_event("A", json!({}));
    let invalid = [
        request("s", ExpectedVersion::Any, Vec::new()),
        request("", ExpectedVersion::Any, one()),
        request(&"x".repeat(201), ExpectedVersion::Any, one()),
        keyed(
            request("s", ExpectedVersion::Any, one()),
            "alice",
            "",
            "digest",
        ),
        keyed(
            request("s", ExpectedVersion::Any, one()),
            "alice",
            &"k".repeat(201),
            "d",
        ),
        request(
            "s",
            ExpectedVersion::Any,
            vec![duplicated.clone(), duplicated],
        ),
        unchanged(request("s", ExpectedVersion::Any, one()), "s", 0),
        unchanged(request("s", ExpectedVersion::Any, one()), "", 0),
        unchanged(request("s", ExpectedVersion::Any, one()), "t", -1),
        (0..=AppendRequest::MAX_UNCHANGED)
            .fold(request("s", ExpectedVersion::Any, one()), |request, n| {
                unchanged(request, &format!("t{n}"), 0)
            }),
    ];
    for request in invalid {
        match store.append(request.clone()).await {
            Err(StoreError::Invalid(_)) => {}
            other => panic!("expected Invalid for {request:?}, got {other:?}"),
        }
    }
    assert_eq!(store.head().await.expect("head"), 0);
    // The longest allowed stream id is fine.
    append_new(
        &*store,
        request(&"x".repeat(200), ExpectedVersion::Any, one()),
    )
    .await;
}

pub async fn tokens_are_found_by_hash_and_a_duplicate_hash_is_refused(
    store: Arc<dyn TokenRegistry>,
) {
    let admin = TokenRecord {
        id: Uuid::new_v4(),
        hash: "a".repeat(64),
        role: "admin".into(),
        scope: None,
        name: "管理员".into(),
        created_at: to_stored_precision(Utc::now()),
    };
    let scoped = TokenRecord {
        id: Uuid::new_v4(),
        hash: "b".repeat(64),
        role: "community_secretary".into(),
        scope: Some(Uuid::new_v4()),
        name: "Secretary".into(),
        created_at: to_stored_precision(Utc::now()),
    };
    store
        .insert_token(admin.clone())
        .await
        .expect("insert admin");
    store
        .insert_token(scoped.clone())
        .await
        .expect("insert scoped");
    assert_eq!(
        store.find_token(&admin.hash).await.expect("find"),
        Some(admin.clone())
    );
    assert_eq!(
        store.find_token(&scoped.hash).await.expect("find"),
        Some(scoped)
    );
    assert_eq!(store.find_token(&"c".repeat(64)).await.expect("find"), None);

    let same_hash = TokenRecord {
        id: Uuid::new_v4(),
        name: "impostor".into(),
        ..admin.clone()
    };
    match store.insert_token(same_hash).await {
        Err(StoreError::Invalid(_)) => {}
        other => panic!("expected Invalid for a duplicate hash, got {other:?}"),
    }
    assert_eq!(
        store.find_token(&admin.hash).await.expect("find"),
        Some(admin)
    );
}

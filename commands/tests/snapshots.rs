//! A long stream loads from its newest snapshot plus the events after it, and a snapshot only
//! ever makes a load cheaper: the state it gives is the fold of the whole stream, and a snapshot
//! that cannot be trusted is ignored.

use std::sync::Arc;
use std::time::Duration;

use domain::{Command, StreamState, STATE_SCHEMA};
use lianxi_commands::snapshots::{self, SNAPSHOT_EVERY};
use lianxi_commands::{
    CommandError, CommandHandler, CommandOutcome, CommandRequest, Principal, Role,
};
use serde_json::{json, Value};
use store::sqlite::SqliteStore;
use store::{EventStore, Snapshot};
use uuid::Uuid;

async fn send(
    handler: &CommandHandler,
    name: &str,
    body: Value,
) -> Result<CommandOutcome, CommandError> {
    let command = Command::parse(name, body.to_string().as_bytes()).expect("a valid command");
    handler
        .handle(CommandRequest {
            command,
            principal: Principal {
                actor_id: Uuid::from_u128(1),
                name: "admin".into(),
                role: Role::Admin,
                scope: None,
            },
            request_hash: String::new(),
            idempotency_key: None,
            if_match: None,
            correlation_id: None,
            causation_id: None,
        })
        .await
}

async fn ok(handler: &CommandHandler, name: &str, body: Value) -> CommandOutcome {
    match send(handler, name, body).await {
        Ok(outcome) => outcome,
        Err(error) => panic!("{name} was refused: {error:?}"),
    }
}

/// A launched project with `activities` activities recorded, through `handler`; returns the
/// project's stream and the activities' ids.
async fn long_project(handler: &CommandHandler, activities: usize) -> (String, Vec<Uuid>) {
    let (district, community, unit, project) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    ok(
        handler,
        "RegisterDistrict",
        json!({"district_id": district, "name": "D"}),
    )
    .await;
    ok(
        handler,
        "RegisterCommunity",
        json!({"community_id": community, "district_id": district, "name": "C"}),
    )
    .await;
    ok(
        handler,
        "RegisterUnit",
        json!({"unit_id": unit, "district_id": district, "name": "U"}),
    )
    .await;
    ok(
        handler,
        "AdmitMemberUnit",
        json!({"community_id": community, "unit_id": unit, "kind": "jurisdiction"}),
    )
    .await;
    ok(
        handler,
        "ProposeProject",
        json!({"project_id": project, "community_id": community, "title": "P", "theme": "civility"}),
    )
    .await;
    ok(
        handler,
        "ClaimProject",
        json!({"project_id": project, "unit_id": unit}),
    )
    .await;
    ok(handler, "LaunchProject", json!({"project_id": project})).await;
    let mut ids = Vec::new();
    for n in 0..activities {
        let id = Uuid::now_v7();
        ok(handler, "RecordActivity", activity(project, id, n)).await;
        ids.push(id);
    }
    (format!("project-{project}"), ids)
}

fn activity(project: Uuid, id: Uuid, n: usize) -> Value {
    json!({"project_id": project, "activity_id": id, "title": format!("A{n}"), "participants": 3})
}

/// The fold of `stream`'s whole history, read from the log.
async fn fold_of_log(store: &dyn EventStore, stream: &str) -> StreamState {
    let events: Vec<_> = store
        .read_stream_raw(stream, 0)
        .await
        .expect("read")
        .iter()
        .map(|e| {
            domain::upcast::upcast_str(&e.event_type, e.schema_version, &e.data).expect("upcast")
        })
        .collect();
    StreamState::fold(stream, &events).expect("a known kind")
}

/// Waits for the background save of a snapshot at `version` or later.
async fn snapshot_at_least(store: &dyn EventStore, stream: &str, version: i64) -> Snapshot {
    for _ in 0..200 {
        if let Some(snapshot) = store
            .read_snapshot(stream, STATE_SCHEMA)
            .await
            .expect("read")
        {
            if snapshot.version >= version {
                return snapshot;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no snapshot of {stream} at version {version} or later was saved");
}

#[tokio::test]
async fn a_long_stream_loads_from_its_snapshot_and_the_tail_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn EventStore> = Arc::new(SqliteStore::open(dir.path()).await.expect("open"));
    let handler = CommandHandler::new(Arc::clone(&store));
    let (stream, _) = long_project(&handler, 150).await;
    let head = store.read_stream(&stream, 0).await.expect("read").len() as i64;

    // 153 events: snapshots were due at 64 and 128 (the stream was written through memory).
    let snapshot = snapshot_at_least(&*store, &stream, 2 * SNAPSHOT_EVERY).await;
    assert_eq!(snapshot.version, 2 * SNAPSHOT_EVERY);
    let loaded = snapshots::load(&*store, &stream).await.expect("load");
    assert_eq!(loaded.snapshot_version, snapshot.version);
    assert_eq!(loaded.version, head);
    assert_eq!(loaded.state, fold_of_log(&*store, &stream).await);
    assert_eq!(
        loaded.state.project().map(|p| p.activities.len()),
        Some(150)
    );
}

#[tokio::test]
async fn a_handler_with_nothing_in_memory_decides_from_the_snapshot_as_from_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn EventStore> = Arc::new(SqliteStore::open(dir.path()).await.expect("open"));
    let (stream, activities) = long_project(&CommandHandler::new(Arc::clone(&store)), 100).await;
    snapshot_at_least(&*store, &stream, SNAPSHOT_EVERY).await;
    let project: Uuid = stream["project-".len()..].parse().expect("a uuid");

    // A fresh handler (another process, or after a restart) knows the stream only from the log.
    let fresh = CommandHandler::new(Arc::clone(&store));
    // An activity recorded before the snapshot is still known: recording it again is refused.
    let again = send(
        &fresh,
        "RecordActivity",
        activity(project, activities[3], 3),
    )
    .await;
    match again {
        Err(CommandError::Rejected(error)) => assert_eq!(error.code(), "already_exists"),
        other => panic!("a repeated activity was not refused: {other:?}"),
    }
    // ... and one recorded after it, too.
    let again = send(
        &fresh,
        "RecordActivity",
        activity(project, activities[99], 99),
    )
    .await;
    assert!(matches!(again, Err(CommandError::Rejected(_))), "{again:?}");
    // A new one is appended at the stream's true next version.
    let new = ok(
        &fresh,
        "RecordActivity",
        activity(project, Uuid::now_v7(), 100),
    )
    .await;
    assert_eq!(new.version, 3 + 100 + 1);
}

#[tokio::test]
async fn a_snapshot_that_cannot_be_trusted_is_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn EventStore> = Arc::new(SqliteStore::open(dir.path()).await.expect("open"));
    let (stream, _) = long_project(&CommandHandler::new(Arc::clone(&store)), 10).await;
    let head = store.read_stream(&stream, 0).await.expect("read").len() as i64;
    let truth = fold_of_log(&*store, &stream).await;
    let community = store
        .read_all(0, 10)
        .await
        .expect("read")
        .into_iter()
        .find(|e| e.stream.starts_with("community-"))
        .expect("a community");
    let community_state = fold_of_log(&*store, &community.stream).await;

    let bad = [
        ("not JSON", "{not json".to_owned()),
        (
            "an unknown shape",
            json!({"aggregate": "ledger", "state": {}}).to_string(),
        ),
        (
            "another aggregate's state",
            serde_json::to_string(&community_state).expect("serialise"),
        ),
    ];
    for (version, (what, state)) in (2..).zip(bad) {
        let saved = store
            .save_snapshot(&Snapshot {
                stream: stream.clone(),
                version,
                schema: STATE_SCHEMA,
                state,
            })
            .await
            .expect("save");
        assert!(saved, "the {what} snapshot was not stored");
        let loaded = snapshots::load(&*store, &stream).await.expect("load");
        assert_eq!(loaded.snapshot_version, 0, "{what} was used");
        assert_eq!(loaded.state, truth, "{what}");
        assert_eq!(loaded.version, head);
    }

    // A snapshot of an older shape is not even read.
    let saved = store
        .save_snapshot(&Snapshot {
            stream: stream.clone(),
            version: head,
            schema: STATE_SCHEMA - 1,
            state: serde_json::to_string(&StreamState::Project(None)).expect("serialise"),
        })
        .await
        .expect("save");
    assert!(saved);
    let loaded = snapshots::load(&*store, &stream).await.expect("load");
    assert_eq!(loaded.state, truth);
}

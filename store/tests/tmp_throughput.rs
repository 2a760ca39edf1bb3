use lianxi_store::sqlite::SqliteStore;
use lianxi_store::{AppendRequest, EventStore, ExpectedVersion, NewEvent};
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;
use uuid::Uuid;

fn req() -> AppendRequest {
    let project_id = Uuid::now_v7();
    let command_id = Uuid::now_v7();
    let data = json!({
        "project_id": project_id,
        "community_id": "0190d6c4-7a4e-7c2e-9d1a-3f6b2c8e5a01",
        "title": "Spring clean-up of the Shili courtyard and its bicycle shed",
        "theme": "living_environment",
        "need": "Twenty volunteers for two Saturdays, gloves, bags and a van for the rubbish; the property office lends ladders.",
    });
    let metadata = json!({"command": "ProposeProject", "command_id": command_id, "actor": {"id": "6c69616e-7869-0000-0000-000000000001", "role": "admin"}});
    AppendRequest {
        stream: format!("project-{project_id}"),
        expected: ExpectedVersion::NoStream,
        command_id,
        idempotency: None,
        events: vec![NewEvent {
            id: Uuid::now_v7(),
            event_type: "ProjectProposed".into(),
            schema_version: 1,
            data,
            metadata,
        }],
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn throughput() {
    let dir = tempfile::tempdir().expect("dir");
    let store: Arc<dyn EventStore> = Arc::new(SqliteStore::open(dir.path()).await.expect("open"));
    let per_writer = 300;
    let started = Instant::now();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..per_writer {
                    store.append(req()).await.expect("append");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let elapsed = started.elapsed();
    let total = 64 * per_writer;
    eprintln!(
        "{total} events in {elapsed:?}: {:.0}/s",
        total as f64 / elapsed.as_secs_f64()
    );
}

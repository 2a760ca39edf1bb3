use std::sync::Arc;
use std::time::Instant;
use lianxi_store::conformance::{new_event, request};
use lianxi_store::sqlite::SqliteStore;
use lianxi_store::{EventStore, ExpectedVersion};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn throughput() {
    let dir = tempfile::tempdir().expect("dir");
    let store: Arc<dyn EventStore> = Arc::new(SqliteStore::open(dir.path()).await.expect("open"));
    let per_writer = 400;
    let started = Instant::now();
    let tasks: Vec<_> = (0..64).map(|w| { let store = store.clone(); tokio::spawn(async move {
        for n in 0..per_writer {
            store.append(request(&format!("w-{w}"), ExpectedVersion::Exact(n), vec![new_event("A", json!({"n": n, "title": "small"}))])).await.expect("append");
        }
    })}).collect();
    for t in tasks { t.await.expect("task"); }
    let elapsed = started.elapsed();
    let total = 64 * per_writer;
    eprintln!("{total} events in {elapsed:?}: {:.0}/s", total as f64 / elapsed.as_secs_f64());
    let started = Instant::now();
    let report = store.verify().await.expect("verify");
    eprintln!("verify {} in {:?}", report.events, started.elapsed());
}

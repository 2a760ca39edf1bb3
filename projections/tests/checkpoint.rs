//! The embedded read models' write-ahead log is copied back into their file by a background
//! checkpointer, not by whichever projector batch happens to commit past SQLite's threshold
//! (that batch, and every event in it, used to be late on the read models).

mod support;

use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Duration;

use projections::readdb::{ReadDb, READ_MODEL_FILE};
use projections::runner::Runner;
use store::sqlite::SqliteStore;
use store::EventStore;
use support::{append_district, count, Counter};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_batches_reach_the_file_without_a_commit_checkpointing() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store: Arc<dyn EventStore> =
        Arc::new(SqliteStore::open(dir.path()).await.expect("the log"));
    for n in 1..=20 {
        append_district(store.as_ref(), n).await;
    }
    let db = ReadDb::open(dir.path()).await.expect("the read models");
    let file = dir.path().join(READ_MODEL_FILE);
    let migrated = std::fs::read(&file).expect("the read-model file");

    let runner = Runner::new(store.clone(), db.clone());
    runner.spawn(Box::new(Counter::new(
        "counter",
        Arc::new(AtomicI64::new(0)),
    )));
    assert_eq!(
        runner
            .wait_for("counter", 20, Duration::from_secs(10))
            .await,
        Some(20)
    );
    assert_eq!(count(&db, "counter").await, Some(20));

    // A few pages, far below any automatic checkpoint's threshold: only the checkpointer
    // copies them into the file, within a few of its rounds.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while std::fs::read(&file).expect("the read-model file") == migrated {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the committed batches are still only in the WAL after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

//! A projector that cannot resume for a moment (its read-model database refused it) is tried
//! again while the projectors that run beside it keep following the log, instead of waiting
//! for them to stop. After a PostgreSQL restart, two projector processes each had one
//! projection stuck this way at its checkpoint, reported live, while the others reached the head.

mod support;

use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Duration;

use projections::readdb::{ReadDb, READ_MODEL_FILE};
use projections::runner::Runner;
use sqlx::{Connection, Executor, SqliteConnection};
use store::sqlite::SqliteStore;
use store::EventStore;
use support::{append_district, count, Counter};

/// Longer than the read-model database's busy timeout (10 s): by then a generation could not be
/// created, and the runner has had its error.
const HELD: Duration = Duration::from_secs(12);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_that_could_not_resume_is_retried_while_the_others_follow() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store: Arc<dyn EventStore> =
        Arc::new(SqliteStore::open(dir.path()).await.expect("the log"));
    for n in 1..=5 {
        append_district(store.as_ref(), n).await;
    }
    let db = ReadDb::open(dir.path()).await.expect("the read models");
    let never = || Arc::new(AtomicI64::new(0));

    // `steady` has a generation at the head; `late` has none yet.
    let first = Runner::new(store.clone(), db.clone());
    let task = first.spawn(Box::new(Counter::new("steady", never())));
    assert_eq!(
        first.wait_for("steady", 5, Duration::from_secs(10)).await,
        Some(5)
    );
    task.abort();

    // Another connection holds the write lock: `late` cannot create its generation, while
    // `steady` resumes by reading alone.
    let mut holder = SqliteConnection::connect(&format!(
        "sqlite://{}",
        dir.path().join(READ_MODEL_FILE).display()
    ))
    .await
    .expect("a connection of its own");
    holder
        .execute("BEGIN IMMEDIATE")
        .await
        .expect("the write lock");
    let runner = Runner::new(store.clone(), db.clone());
    runner.spawn_group(vec![
        Box::new(Counter::new("steady", never())),
        Box::new(Counter::new("late", never())),
    ]);
    tokio::time::sleep(HELD).await;
    assert!(
        db.active("late").await.expect("readable").is_none(),
        "`late` created its generation under another connection's write lock"
    );
    holder.execute("ROLLBACK").await.expect("released");

    // Both follow from here: `late` from the start of the log.
    for n in 6..=8 {
        append_district(store.as_ref(), n).await;
    }
    for name in ["steady", "late"] {
        assert_eq!(
            runner.wait_for(name, 8, Duration::from_secs(20)).await,
            Some(8),
            "{name} did not reach the head"
        );
        assert_eq!(count(&db, name).await, Some(8), "{name}");
    }
}

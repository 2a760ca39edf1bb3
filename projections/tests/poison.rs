//! A poison event stops its projector visibly — state, error and position recorded — while other
//! projectors and the write side go on; after a fix and a restart it resumes from its checkpoint.

mod backends;
mod support;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use backends::{on_both_backends, Backend};
use projections::runner::{RunState, Runner};
use support::{append_district, count, Counter};

async fn a_poison_event_stops_only_its_projector_which_resumes_after_a_fix(backend: Backend) {
    let place = backend.place().await;
    let store = place.store().await;
    for n in 1..=10 {
        append_district(store.as_ref(), n).await;
    }
    let db = place.read_db().await;
    let poison = Arc::new(AtomicI64::new(7));
    let healthy = Arc::new(AtomicI64::new(0));

    let runner = Runner::new(store.clone(), db.clone());
    let broken_task = runner.spawn(Box::new(Counter::new("fragile", poison.clone())));
    runner.spawn(Box::new(Counter::new("sturdy", healthy)));

    // The fragile projector stops at 7, with everything before it committed (the batch holding
    // 7 rolled back whole), and says so; the sturdy one reaches the head.
    tokio::time::timeout(Duration::from_secs(10), broken_task)
        .await
        .expect("the failed projector's task ends")
        .expect("no panic");
    let progress = runner
        .progress("fragile")
        .expect("running here")
        .borrow()
        .clone();
    assert_eq!(
        progress.state,
        RunState::Failed {
            position: 7,
            error: "cannot make sense of event 7".into()
        }
    );
    assert_eq!(
        runner.wait_for("sturdy", 10, Duration::from_secs(10)).await,
        Some(10)
    );
    assert_eq!(count(&db, "sturdy").await, Some(10));
    let row = db
        .active("fragile")
        .await
        .expect("readable")
        .expect("a generation");
    assert_eq!(row.state, "failed");
    assert_eq!(row.error_position, Some(7));
    assert_eq!(row.error.as_deref(), Some("cannot make sense of event 7"));
    // Nothing of the failed batch was kept.
    assert_eq!(count(&db, "fragile").await, None);
    assert_eq!(row.position, 0);

    // The write side goes on.
    append_district(store.as_ref(), 11).await;
    assert_eq!(
        runner.wait_for("sturdy", 11, Duration::from_secs(10)).await,
        Some(11)
    );

    // A fixed projector, restarted, resumes from its checkpoint and catches up.
    poison.store(0, Ordering::SeqCst);
    let restarted = Runner::new(store.clone(), db.clone());
    restarted.spawn(Box::new(Counter::new("fragile", poison)));
    assert_eq!(
        restarted
            .wait_for("fragile", 11, Duration::from_secs(10))
            .await,
        Some(11)
    );
    assert_eq!(count(&db, "fragile").await, Some(11));
    let row = db
        .active("fragile")
        .await
        .expect("readable")
        .expect("a generation");
    assert_eq!(row.state, "live");
    assert_eq!(row.error, None);
}

on_both_backends!(a_poison_event_stops_only_its_projector_which_resumes_after_a_fix,);

//! `lianxi serve --role relay`: the PostgreSQL log published to NATS JetStream by whichever of
//! several relay processes holds the lock, every event once and in log order, across a kill -9
//! of the active one. (The relay's own cases, with outages and retention, are in `bus/tests`.)

use std::collections::BTreeSet;
use std::time::Duration;

use bus::throwaway_nats::ThrowawayNats;
use bus::{Feed, StreamSettings};
use serde_json::json;

use crate::helpers::{fresh_database, spawn_app_on_database, spawn_serve, ServeProcess};

/// A relay process for the log at `database_url` and the NATS server at `nats_url`.
async fn relay(database_url: &str, nats_url: &str) -> ServeProcess {
    spawn_serve(&[
        "--role".into(),
        "relay".into(),
        "--database-url".into(),
        database_url.into(),
        "--nats-url".into(),
        nats_url.into(),
    ])
    .await
}

/// Whether `relay` says it holds the lock (`lianxi_relay_active 1`).
async fn is_active(relay: &ServeProcess) -> bool {
    relay.metric("lianxi_relay_active").await == Some(1.0)
}

/// Reads the feed until it has delivered every position of `expected`, failing on a repeat, on
/// a position not in the log, or after `within`.
async fn receive_all(
    feed: &mut Feed,
    expected: &BTreeSet<i64>,
    seen: &mut Vec<i64>,
    within: Duration,
) {
    let deadline = tokio::time::Instant::now() + within;
    while !expected.iter().all(|p| seen.contains(p)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the feed delivered {} of {} events",
            seen.len(),
            expected.len()
        );
        let batch = feed
            .next_batch(500, Duration::from_millis(200))
            .await
            .expect("a batch from the feed");
        for delivery in &batch {
            let position = delivery.position();
            assert!(
                expected.contains(&position),
                "position {position} is not in the log"
            );
            assert!(
                !seen.contains(&position),
                "position {position} was published twice"
            );
            seen.push(position);
        }
        feed.ack(&batch).await.expect("acknowledged");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_relay_of_two_publishes_the_log_and_the_other_takes_over_after_a_kill_9() {
    let nats = ThrowawayNats::start().expect("a throwaway nats-server");
    let database_url = fresh_database().await;
    let app = spawn_app_on_database(&database_url).await;
    let world = app.world(3).await;
    for _ in 0..5 {
        let project = app.propose(world.community).await;
        app.claim(project, world.units[0]).await;
    }

    let mut relays = [
        relay(&database_url, &nats.url()).await,
        relay(&database_url, &nats.url()).await,
    ];
    let mut active = None;
    for _ in 0..100 {
        let states = [is_active(&relays[0]).await, is_active(&relays[1]).await];
        assert!(!(states[0] && states[1]), "two relays active at once");
        if let Some(which) = states.iter().position(|a| *a) {
            active = Some(which);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let active = active.unwrap_or_else(|| {
        panic!(
            "no relay became active; logs:\n{}\n{}",
            relays[0].log(),
            relays[1].log()
        )
    });

    let mut feed = Feed::open(&nats.url(), &StreamSettings::default(), "relay-test")
        .await
        .expect("a feed");
    let log_positions = |events: Vec<serde_json::Value>| -> BTreeSet<i64> {
        events
            .iter()
            .map(|e| e["position"].as_i64().expect("a position"))
            .collect()
    };
    let before = log_positions(app.all_events().await);
    let mut seen = Vec::new();
    receive_all(&mut feed, &before, &mut seen, Duration::from_secs(20)).await;
    assert_eq!(
        seen,
        before.iter().copied().collect::<Vec<_>>(),
        "in log order"
    );

    relays[active].kill9().await;
    let standby = &relays[1 - active];
    for _ in 0..3 {
        let project = app.propose(world.community).await;
        app.claim(project, world.units[1]).await;
    }
    app.ok("RegisterDistrict", json!({"name": "after the kill"}))
        .await;
    let mut took_over = false;
    for _ in 0..100 {
        if is_active(standby).await {
            took_over = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        took_over,
        "the standby did not take over; its log:\n{}",
        standby.log()
    );

    let after = log_positions(app.all_events().await);
    receive_all(&mut feed, &after, &mut seen, Duration::from_secs(20)).await;
    assert_eq!(
        seen,
        after.iter().copied().collect::<Vec<_>>(),
        "every event once, in log order"
    );
    assert_eq!(
        feed.next_batch(10, Duration::from_millis(300))
            .await
            .expect("a batch")
            .len(),
        0
    );
}

#[tokio::test]
async fn a_relay_without_nats_or_postgresql_is_refused_at_start() {
    let output = crate::helpers::cli(&["serve".into(), "--role".into(), "relay".into()]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--role relay needs --database-url (the PostgreSQL log) and --nats-url"),
        "{stderr}"
    );
}

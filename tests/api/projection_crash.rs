//! Crash during live projection: kill -9 the server while commands stream in and projectors
//! follow them; after a restart the read models converge to exactly a fresh rebuild.

use std::time::{Duration, Instant};

use domain::testing::generator::Generator;
use projections::readdb::ReadDb;
use store::sqlite::SqliteStore;

use crate::helpers::spawn_app;

/// Waits until every projection of the server reports the log head.
async fn settled(app: &crate::helpers::TestApp) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = app
            .get("/v1/projections", Some(&app.admin_token), &[])
            .await;
        let head = reply.json["head"].as_i64().expect("head");
        let all = reply.json["projections"].as_array().expect("projections");
        let caught_up = all
            .iter()
            .all(|p| p["position"].as_i64() == Some(head) && p["state"] == "live");
        if caught_up && !all.is_empty() {
            return head;
        }
        assert!(
            Instant::now() < deadline,
            "projections did not settle: {}",
            reply.text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_kill_during_live_projection_the_read_models_equal_a_fresh_rebuild() {
    let mut app = spawn_app().await;
    let mut generator = Generator::new(99, 1, 3, 10);
    // Setup first, in order, then a stream of random commands cut short by kill -9.
    for _ in 0..40 {
        let generated = generator.next_command();
        app.ok(generated.name, generated.body).await;
    }
    let writer = {
        let client = app.client.clone();
        let url = app.url("/v1/commands/");
        let token = app.admin_token.clone();
        let commands: Vec<_> = (0..400).map(|_| generator.next_command()).collect();
        tokio::spawn(async move {
            let mut sent = 0;
            for generated in commands {
                let result = client
                    .post(format!("{url}{}", generated.name))
                    .bearer_auth(&token)
                    .json(&generated.body)
                    .send()
                    .await;
                if result.is_err() {
                    break;
                }
                sent += 1;
            }
            sent
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    app.kill9().await;
    let sent = writer.await.expect("writer task");
    assert!(sent > 0, "some commands went in before the kill");

    app.restart().await;
    let head = settled(&app).await;

    // A fresh rebuild of the same log, in memory, in one pass.
    let store = SqliteStore::open(app.data_dir.path()).await.expect("store");
    let fresh = projections::runner::build_in_memory(&store, Some(head), 100_000)
        .await
        .expect("fresh rebuild");
    let live = ReadDb::open(app.data_dir.path())
        .await
        .expect("read models");
    let live = live.dump_active().await.expect("live documents");
    let fresh = fresh.dump_active().await.expect("fresh documents");
    assert!(!fresh.is_empty());
    assert_eq!(live.len(), fresh.len());
    for (a, b) in live.iter().zip(&fresh) {
        assert_eq!(a, b);
    }
}

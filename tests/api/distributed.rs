//! The distributed mode across processes: two gateways, one relay and two projector processes
//! around one PostgreSQL database and one nats-server. The read models the projector processes
//! build from the JetStream feed equal an embedded-mode rebuild of the same log, and a read on
//! one gateway waits (`X-Min-Position`) for a command sent through the other.

use std::time::{Duration, Instant};

use bus::throwaway_nats::ThrowawayNats;
use domain::testing::generator::Generator;
use projections::readdb::ReadDb;
use store::postgres::PostgresStore;

use crate::helpers::{cli, fresh_database, spawn_serve, ServeProcess};

/// `lianxi serve --role ROLE --database-url DB [--nats-url NATS] [MORE…]`.
async fn role(
    role: &str,
    database_url: &str,
    nats_url: Option<&str>,
    more: &[&str],
) -> ServeProcess {
    let mut args = vec![
        "--role".to_owned(),
        role.to_owned(),
        "--database-url".to_owned(),
        database_url.to_owned(),
    ];
    if let Some(nats_url) = nats_url {
        args.extend(["--nats-url".to_owned(), nats_url.to_owned()]);
    }
    args.extend(more.iter().map(|m| (*m).to_owned()));
    spawn_serve(&args).await
}

/// Waits until every projection, as `gateway` sees them, is live at the log's head.
async fn settled(gateway: &ServeProcess) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let reply = gateway.get("/v1/projections", &[]).await;
        let head = reply.json["head"].as_i64().expect("head");
        let all = reply.json["projections"].as_array().expect("projections");
        let caught_up = all
            .iter()
            .filter(|p| p["active"] == true)
            .all(|p| p["position"].as_i64() == Some(head));
        if caught_up && all.len() >= 5 {
            return head;
        }
        assert!(
            Instant::now() < deadline,
            "projections did not settle: {}",
            reply.text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gateways_relay_and_projector_processes_build_what_an_embedded_rebuild_builds() {
    let nats = ThrowawayNats::start().expect("a throwaway nats-server");
    let nats_url = nats.url();
    let db = fresh_database().await;

    // The seed report's story, written straight to the log before anything else runs.
    let demo = cli(&["demo".into(), "--database-url".into(), db.clone()]).await;
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );

    let relay = role("relay", &db, Some(&nats_url), &[]).await;
    let projectors = [
        role(
            "projector",
            &db,
            Some(&nats_url),
            &[
                "--projection",
                "board",
                "--projection",
                "items",
                "--projection",
                "trace",
            ],
        )
        .await,
        role(
            "projector",
            &db,
            Some(&nats_url),
            &[
                "--projection",
                "district-stats",
                "--projection",
                "unit-profile",
            ],
        )
        .await,
    ];
    let gateways = [
        role("gateway", &db, None, &[]).await,
        role("gateway", &db, None, &[]).await,
    ];

    // A seeded random history, one command at a time, through both gateways in turn.
    let mut generator = Generator::new(5, 1, 3, 10);
    for n in 0..300 {
        let generated = generator.next_command();
        gateways[n % 2].ok(generated.name, generated.body).await;
    }

    // Read-your-writes across gateways: a project proposed through one is read through the
    // other as soon as that one's projections have reached the command's position.
    let proposed = loop {
        let generated = generator.next_command();
        let reply = gateways[0].ok(generated.name, generated.body.clone()).await;
        if generated.name == "ProposeProject" {
            break reply;
        }
    };
    let position = proposed["events"][0]["position"]
        .as_i64()
        .expect("a position");
    let project = proposed["stream"].as_str().expect("a stream")["project-".len()..].to_owned();
    let read = gateways[1]
        .get(
            &format!("/v1/projects/{project}"),
            &[("X-Min-Position", &position.to_string())],
        )
        .await;
    assert_eq!(read.status, 200, "{}", read.text());
    assert_eq!(read.json["id"], project.as_str());
    let as_of: i64 = read
        .header("x-projection-position")
        .expect("the header")
        .parse()
        .expect("a position");
    assert!(as_of >= position);

    let head = settled(&gateways[1]).await;
    assert!(relay.metric("lianxi_relay_active").await == Some(1.0));
    for projector in &projectors {
        let from_feed = projector
            .metric("lianxi_bus_source_feed_events_total")
            .await
            .unwrap_or(0.0);
        assert!(
            from_feed > 0.0,
            "a projector process read nothing from the feed; its log:\n{}",
            projector.log()
        );
    }

    // The same log, rebuilt the embedded way in one pass, in memory.
    let store = PostgresStore::connect(&db).await.expect("the log");
    let fresh = projections::runner::build_in_memory(&store, Some(head), 100_000)
        .await
        .expect("a fresh rebuild");
    let live = ReadDb::connect(&db).await.expect("the read models");
    let live = live
        .dump_active()
        .await
        .expect("the projector processes' documents");
    let fresh = fresh.dump_active().await.expect("the rebuild's documents");
    assert!(fresh.len() > 100, "{} documents", fresh.len());
    assert_eq!(live.len(), fresh.len());
    for (a, b) in live.iter().zip(&fresh) {
        assert_eq!(a, b);
    }
}

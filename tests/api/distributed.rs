//! The distributed mode across processes: gateways, relays and projector processes around one
//! PostgreSQL database and one nats-server. The read models the projector processes build from
//! the JetStream feed equal an embedded-mode rebuild of the same log, a read on one gateway waits
//! (`X-Min-Position`) for a command sent through another, and the same holds after each fault a
//! real deployment sees: a projector or the relay killed, NATS or PostgreSQL away under load, a
//! projector down while the stream's limits dropped what it had not read. A projector process
//! frozen in place holds back neither the relay nor another projector process.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bus::throwaway_nats::ThrowawayNats;
use domain::testing::generator::Generator;
use projections::readdb::ReadDb;
use reqwest::StatusCode;
use serde_json::{json, Value};
use store::postgres::PostgresStore;
use store::throwaway_postgres::ThrowawayPostgres;
use store::EventStore;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::helpers::{cli, client, fresh_database, signal, spawn_serve, ServeProcess};

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
        let (head, at) = positions(gateway).await;
        if at.len() >= 5 && at.values().all(|&position| position == head) {
            return head;
        }
        assert!(
            Instant::now() < deadline,
            "projections did not settle at {head}: {at:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Where each active projection stands, as `gateway` sees them, and the log's head.
async fn positions(gateway: &ServeProcess) -> (i64, BTreeMap<String, i64>) {
    let reply = gateway.get("/v1/projections", &[]).await;
    let head = reply.json["head"].as_i64().expect("head");
    let positions = reply.json["projections"]
        .as_array()
        .expect("projections")
        .iter()
        .filter(|p| p["active"] == true)
        .map(|p| {
            let name = p["name"].as_str().expect("a name").to_owned();
            (name, p["position"].as_i64().expect("a position"))
        })
        .collect();
    (head, positions)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gateways_relay_and_projector_processes_build_what_an_embedded_rebuild_builds() {
    let cluster = cluster(false, 1, &[]).await;
    let (db, relay, projectors, gateways) = (
        &cluster.db,
        &cluster.relays[0],
        &cluster.projectors,
        &cluster.gateways,
    );
    // The seed report's story, written straight to the log beside the running processes.
    let demo = cli(&["demo".into(), "--database-url".into(), db.clone()]).await;
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );

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

    // The same across gateways for a board, read again after each of two new projects (the
    // second read follows a board the gateway has already rendered).
    let community = read.json["community_id"]
        .as_str()
        .expect("the project's community")
        .to_owned();
    for n in 0..2 {
        let reply = gateways[0]
            .ok(
                "ProposeProject",
                json!({"community_id": community, "title": format!("跨网关项目{n}"),
                       "theme": "civility"}),
            )
            .await;
        let position = reply["events"][0]["position"].as_i64().expect("a position");
        let board = gateways[1]
            .get(
                &format!("/v1/communities/{community}/board"),
                &[("X-Min-Position", &position.to_string())],
            )
            .await;
        assert_eq!(board.status, 200, "{}", board.text());
        let titles: Vec<&str> = board.json["projects"]
            .as_array()
            .expect("projects")
            .iter()
            .filter_map(|p| p["title"].as_str())
            .collect();
        assert!(
            titles.contains(&format!("跨网关项目{n}").as_str()),
            "read {n} through the other gateway shows the project: {titles:?}"
        );
    }

    let head = settled(&gateways[1]).await;
    // What the deployment page tells operators to watch, on each process's /metrics.
    assert_eq!(relay.metric("lianxi_relay_active").await, Some(1.0));
    assert!(
        relay
            .metric("lianxi_relay_published_total")
            .await
            .unwrap_or(0.0)
            >= head as f64 * 0.9
    );
    assert!(relay.metric("lianxi_relay_lag_events").await.is_some());
    assert!(relay
        .metric("lianxi_relay_publish_errors_total")
        .await
        .is_some());
    for projector in projectors {
        assert!(projector
            .metric("lianxi_bus_redeliveries_total")
            .await
            .is_some());
        assert!(projector
            .metric("lianxi_bus_source_log_events_total")
            .await
            .is_some());
    }
    for (projector, projection) in [(0, "board"), (0, "items"), (1, "district-stats")] {
        let lag = format!("lianxi_projection_lag_seconds_count{{projection=\"{projection}\"}}");
        let events = projectors[projector].metric(&lag).await.unwrap_or(0.0);
        assert!(events > 0.0, "no lag recorded for {projection}");
    }
    for projector in projectors {
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
    let documents = equals_a_rebuild(db, head).await;
    assert!(documents > 100, "{documents} documents");
}

/// Asserts the read models in database `db` equal a fresh embedded-mode rebuild of its log up
/// to `head`, in one pass, in memory; returns how many documents there are.
async fn equals_a_rebuild(db: &str, head: i64) -> usize {
    let store = PostgresStore::connect(db).await.expect("the log");
    let fresh = projections::runner::build_in_memory(&store, Some(head), 100_000)
        .await
        .expect("a fresh rebuild");
    let live = ReadDb::connect(db).await.expect("the read models");
    let live = live.dump_active().await.expect("the live documents");
    let fresh = fresh.dump_active().await.expect("the rebuild's documents");
    assert_eq!(live.len(), fresh.len());
    for (a, b) in live.iter().zip(&fresh) {
        assert_eq!(a, b);
    }
    live.len()
}

// ---------------------------------------------------------------------------------------------
// Faults.

/// The processes of one deployment, with the NATS server (and, for a test that restarts it,
/// the PostgreSQL server) they use.
struct Cluster {
    nats: ThrowawayNats,
    /// A server of the test's own, when it stops PostgreSQL (the shared one serves others).
    postgres: Option<ThrowawayPostgres>,
    db: String,
    relays: Vec<ServeProcess>,
    projectors: Vec<ServeProcess>,
    gateways: Arc<Vec<ServeProcess>>,
}

/// Starts NATS, `relays` relays with `relay_options`, two projector processes (each with half
/// the projections) and two gateways, on a fresh database (on a PostgreSQL server of the
/// cluster's own when `own_postgres`).
async fn cluster(own_postgres: bool, relays: usize, relay_options: &[&str]) -> Cluster {
    let nats = ThrowawayNats::start().expect("a throwaway nats-server");
    let nats_url = nats.url();
    let (postgres, db) = if own_postgres {
        let postgres = ThrowawayPostgres::start().expect("a throwaway PostgreSQL");
        let db = postgres.fresh_database().await.expect("a database");
        (Some(postgres), db)
    } else {
        (None, fresh_database().await)
    };
    let mut relay_processes = Vec::new();
    for _ in 0..relays {
        relay_processes.push(role("relay", &db, Some(&nats_url), relay_options).await);
    }
    let projectors = vec![
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
    let gateways = Arc::new(vec![
        role("gateway", &db, None, &[]).await,
        role("gateway", &db, None, &[]).await,
    ]);
    Cluster {
        nats,
        postgres,
        db,
        relays: relay_processes,
        projectors,
        gateways,
    }
}

/// Commands sent by [`Load`], and the ids of the events the acknowledged ones appended.
#[derive(Default)]
struct Sent {
    acknowledged: usize,
    /// Answers 503 (the store away) before a retry got the command in.
    unavailable: usize,
    event_ids: BTreeSet<Uuid>,
}

/// A seeded random history sent one command at a time through the gateways in turn, until
/// stopped. A command answered 503 or not answered at all is sent again with the same
/// `Idempotency-Key` until it is accepted, so the history stays valid through outages.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<Mutex<Sent>>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(gateways: Arc<Vec<ServeProcess>>, seed: u64) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(Mutex::new(Sent::default()));
        let (stop_flag, record) = (Arc::clone(&stop), Arc::clone(&sent));
        let task = tokio::spawn(async move {
            let mut generator = Generator::new(seed, 1, 3, 10);
            let http = client();
            let mut n = 0;
            while !stop_flag.load(Ordering::Relaxed) {
                let generated = generator.next_command();
                let key = Uuid::new_v4().to_string();
                loop {
                    let gateway = &gateways[n % gateways.len()];
                    n += 1;
                    let answer = http
                        .post(format!(
                            "http://{}/v1/commands/{}",
                            gateway.addr, generated.name
                        ))
                        .bearer_auth(&gateway.admin_token)
                        .header("Idempotency-Key", &key)
                        .timeout(Duration::from_secs(10))
                        .json(&generated.body)
                        .send()
                        .await;
                    let answer = match answer {
                        Ok(answer) => answer,
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let status = answer.status();
                    let body: Value = answer.json().await.unwrap_or(Value::Null);
                    if status == StatusCode::SERVICE_UNAVAILABLE {
                        assert_eq!(body["code"], "store_unavailable", "{body}");
                        record.lock().await.unavailable += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    assert!(
                        status.is_success(),
                        "{} refused ({status}): {body}",
                        generated.name
                    );
                    let mut sent = record.lock().await;
                    sent.acknowledged += 1;
                    for event in body["events"].as_array().into_iter().flatten() {
                        let id = event["id"].as_str().and_then(|id| id.parse().ok());
                        sent.event_ids.insert(id.expect("an event id"));
                    }
                    break;
                }
            }
        });
        Load { stop, sent, task }
    }

    /// Commands acknowledged so far.
    async fn acknowledged(&self) -> usize {
        self.sent.lock().await.acknowledged
    }

    /// Stops sending and returns what was sent.
    async fn finish(self) -> Sent {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the load");
        Arc::try_unwrap(self.sent)
            .ok()
            .expect("the only owner")
            .into_inner()
    }
}

/// Waits until `load` has had `more` further commands acknowledged.
async fn until_more(load: &Load, more: usize) {
    let target = load.acknowledged().await + more;
    let deadline = Instant::now() + Duration::from_secs(60);
    while load.acknowledged().await < target {
        assert!(
            Instant::now() < deadline,
            "the load stalled at {}",
            load.acknowledged().await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every acknowledged command's events are in the log, once; every read model settles at the
/// head and equals a fresh embedded-mode rebuild of the log (an event applied twice or missed
/// would show there). Returns the head.
async fn converged(cluster: &Cluster, sent: &Sent) -> i64 {
    let head = settled(&cluster.gateways[0]).await;
    let store = PostgresStore::connect(&cluster.db).await.expect("the log");
    let log = store.read_all(0, usize::MAX).await.expect("the log");
    let in_log: BTreeSet<Uuid> = log.iter().map(|e| e.id).collect();
    assert_eq!(in_log.len(), log.len(), "an event id twice in the log");
    let lost: Vec<&Uuid> = sent.event_ids.difference(&in_log).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events are not in the log",
        lost.len()
    );
    assert!(sent.acknowledged > 0);

    equals_a_rebuild(&cluster.db, head).await;
    head
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_projector_killed_under_load_resumes_from_its_checkpoint_and_converges() {
    let mut cluster = cluster(false, 1, &[]).await;
    let load = Load::start(Arc::clone(&cluster.gateways), 11);
    until_more(&load, 100).await;
    for projector in &mut cluster.projectors {
        projector.kill9().await;
    }
    until_more(&load, 50).await;
    for projector in &mut cluster.projectors {
        projector.restart().await;
    }
    until_more(&load, 50).await;
    let sent = load.finish().await;
    converged(&cluster, &sent).await;
    for projector in &cluster.projectors {
        // Back on the feed after the restart, not only on the log.
        let from_feed = projector
            .metric("lianxi_bus_source_feed_events_total")
            .await;
        assert!(from_feed.unwrap_or(0.0) > 0.0, "{}", projector.log());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_relay_killed_under_load_the_standby_takes_over_and_everything_converges() {
    let mut cluster = cluster(false, 2, &[]).await;
    let load = Load::start(Arc::clone(&cluster.gateways), 12);
    until_more(&load, 100).await;
    let mut active = None;
    for (n, relay) in cluster.relays.iter().enumerate() {
        if relay.metric("lianxi_relay_active").await == Some(1.0) {
            active = Some(n);
        }
    }
    let active = active.expect("one relay is active");
    cluster.relays[active].kill9().await;
    until_more(&load, 100).await;
    let sent = load.finish().await;
    converged(&cluster, &sent).await;
    let standby = &cluster.relays[1 - active];
    assert_eq!(
        standby.metric("lianxi_relay_active").await,
        Some(1.0),
        "{}",
        standby.log()
    );
    // The stream holds every event once, in log order, across the takeover.
    let mut feed = bus::Feed::open(
        &cluster.nats.url(),
        &bus::StreamSettings::default(),
        "check",
    )
    .await
    .expect("a feed");
    let mut published = Vec::new();
    loop {
        let batch = feed
            .next_batch(1_000, Duration::from_millis(500))
            .await
            .expect("a batch");
        if batch.is_empty() {
            break;
        }
        published.extend(batch.iter().map(|d| d.position()));
        feed.ack(&batch).await.expect("acknowledged");
    }
    let store = PostgresStore::connect(&cluster.db).await.expect("the log");
    let log: Vec<i64> = store
        .read_all(0, usize::MAX)
        .await
        .expect("the log")
        .iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(published, log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_away_for_10_s_under_load_commands_go_on_and_projections_catch_up() {
    let mut cluster = cluster(false, 1, &[]).await;
    let load = Load::start(Arc::clone(&cluster.gateways), 13);
    until_more(&load, 50).await;
    cluster.nats.stop();
    let during = load.acknowledged().await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    // The processes that need NATS say so on /readyz; gateways do not need it.
    for process in cluster.relays.iter().chain(&cluster.projectors) {
        let ready = process.get("/readyz", &[]).await;
        assert_eq!(ready.status, 503, "{}", ready.text());
        assert_eq!(ready.json["code"], "bus_unavailable");
    }
    assert_eq!(cluster.gateways[0].get("/readyz", &[]).await.status, 200);
    let accepted_while_away = load.acknowledged().await - during;
    assert!(
        accepted_while_away > 20,
        "only {accepted_while_away} commands while NATS was away"
    );
    cluster
        .nats
        .start_again()
        .expect("nats-server starts again");
    until_more(&load, 50).await;
    for process in cluster.relays.iter().chain(&cluster.projectors) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while process.get("/readyz", &[]).await.status != 200 {
            assert!(
                Instant::now() < deadline,
                "not ready again after NATS came back"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let sent = load.finish().await;
    converged(&cluster, &sent).await;
}

/// A projector process frozen mid-stream (SIGSTOP: its connections stay open, the messages its
/// consumer was delivered are never acknowledged) holds back nobody: commands are accepted, the
/// relay publishes, and the other projector process brings its projections to the log's head
/// through the feed, not by falling back to the log. Thawed, the frozen one is delivered again
/// what it had not acknowledged, skips what it had applied, and everything converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_projector_process_holds_back_neither_the_relay_nor_the_other_projector() {
    let cluster = cluster(false, 1, &[]).await;
    let (running, frozen) = (&cluster.projectors[0], &cluster.projectors[1]);
    let load = Load::start(Arc::clone(&cluster.gateways), 16);
    until_more(&load, 50).await;
    frozen.signal(rustix::process::Signal::STOP);
    let from_log = running.metric("lianxi_bus_source_log_events_total").await;
    let (head_at_freeze, _) = positions(&cluster.gateways[0]).await;
    until_more(&load, 150).await;
    let sent = load.finish().await;

    let deadline = Instant::now() + Duration::from_secs(30);
    let (head, at) = loop {
        let (head, at) = positions(&cluster.gateways[1]).await;
        if ["board", "items", "trace"]
            .iter()
            .all(|name| at.get(*name) == Some(&head))
        {
            break (head, at);
        }
        assert!(
            Instant::now() < deadline,
            "the running projector did not reach the head {head} beside a frozen one: {at:?}\n{}",
            running.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(head > head_at_freeze + 100, "{head_at_freeze} → {head}");
    for name in ["district-stats", "unit-profile"] {
        let position = at.get(name).copied().expect("a checkpoint");
        assert!(position < head, "{name} moved while frozen: {at:?}");
    }
    assert_eq!(
        running.metric("lianxi_bus_source_log_events_total").await,
        from_log,
        "the running projector read the log instead of the feed: {}",
        running.log()
    );

    frozen.signal(rustix::process::Signal::CONT);
    converged(&cluster, &sent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgresql_restarted_under_load_every_acknowledged_command_is_kept_and_everything_converges(
) {
    let mut cluster = cluster(true, 1, &[]).await;
    let load = Load::start(Arc::clone(&cluster.gateways), 14);
    until_more(&load, 50).await;
    let postgres = cluster
        .postgres
        .as_mut()
        .expect("the cluster's own PostgreSQL");
    postgres.stop();
    // Away for longer than a gateway waits for a connection (the pool's acquire timeout, 5 s):
    // a command can then not wait the outage out, it is answered 503. (With 3 s, only a command
    // caught mid-statement was, and the one-at-a-time load sometimes had none in flight.)
    tokio::time::sleep(Duration::from_secs(6)).await;
    postgres.resume().expect("PostgreSQL starts again");
    until_more(&load, 50).await;
    let sent = load.finish().await;
    assert!(sent.unavailable > 0, "no command met the outage");
    converged(&cluster, &sent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_projector_down_while_the_stream_dropped_old_events_catches_up_from_the_log() {
    let mut cluster = cluster(false, 1, &["--stream-max-messages", "40"]).await;
    let load = Load::start(Arc::clone(&cluster.gateways), 15);
    until_more(&load, 30).await;
    cluster.projectors[1].kill9().await;
    // Far more than the stream keeps, while the projector is down.
    until_more(&load, 150).await;
    let feed = bus::Feed::open(
        &cluster.nats.url(),
        &bus::StreamSettings::default(),
        "probe",
    )
    .await
    .expect("a feed");
    let first = feed
        .first_available_position()
        .await
        .expect("the stream's first position");
    let checkpoint = ReadDb::connect(&cluster.db)
        .await
        .expect("the read models")
        .active("district-stats")
        .await
        .expect("a checkpoint")
        .map_or(0, |g| g.position);
    assert!(
        first.is_some_and(|first| first > checkpoint + 1),
        "the stream still holds the projector's next event ({first:?}, checkpoint {checkpoint})"
    );
    cluster.projectors[1].restart().await;
    until_more(&load, 30).await;
    let sent = load.finish().await;
    converged(&cluster, &sent).await;
    let from_log = cluster.projectors[1]
        .metric("lianxi_bus_source_log_events_total")
        .await;
    assert!(
        from_log.unwrap_or(0.0) > 0.0,
        "{}",
        cluster.projectors[1].log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_role_in_one_process_through_nats_reads_its_own_writes_and_equals_a_rebuild() {
    let nats = ThrowawayNats::start().expect("a throwaway nats-server");
    let db = fresh_database().await;
    let all = role("all", &db, Some(&nats.url()), &[]).await;
    let mut generator = Generator::new(21, 1, 3, 10);
    let mut last = 0;
    for _ in 0..150 {
        let generated = generator.next_command();
        let reply = all.ok(generated.name, generated.body).await;
        last = reply["events"][0]["position"].as_i64().expect("a position");
    }
    let read = all
        .get("/v1/projections", &[("X-Min-Position", &last.to_string())])
        .await;
    assert_eq!(read.status, 200, "{}", read.text());
    let head = settled(&all).await;
    assert_eq!(all.metric("lianxi_relay_active").await, Some(1.0));
    let from_feed = all.metric("lianxi_bus_source_feed_events_total").await;
    assert!(from_feed.unwrap_or(0.0) > 0.0, "{}", all.log());

    equals_a_rebuild(&db, head).await;
}

/// A projector process starting while NATS is unreachable waits for it (the client retries for
/// ever) before it listens; a SIGTERM then still stops it at once, by the signal's default
/// action: the graceful handlers are installed only as it starts listening (`src/shutdown.rs`),
/// so a supervisor is never left waiting on a start that may not end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_projector_still_waiting_for_nats_at_start() {
    use std::os::unix::process::ExitStatusExt;

    let database_url = fresh_database().await;
    // A loopback port nothing listens on.
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let log_dir = tempfile::tempdir().expect("a log directory");
    let args: Vec<String> = [
        "--role",
        "projector",
        "--database-url",
        &database_url,
        "--nats-url",
        &format!("nats://127.0.0.1:{nowhere}"),
    ]
    .iter()
    .map(|a| (*a).to_owned())
    .collect();
    let mut child = crate::helpers::spawn_serve_unready(&args, log_dir.path());
    let log = || std::fs::read_to_string(log_dir.path().join("server.log")).unwrap_or_default();

    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        child.try_wait().expect("the process's state").is_none(),
        "the projector should still be waiting for NATS; log:\n{}",
        log()
    );
    let sent = Instant::now();
    signal(&child, rustix::process::Signal::TERM);
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .unwrap_or_else(|_| panic!("SIGTERM did not stop the start; log:\n{}", log()))
        .expect("waiting for the projector");
    assert_eq!(status.signal(), Some(15), "{status:?}; log:\n{}", log());
    assert!(sent.elapsed() < Duration::from_secs(5));
    assert!(!log().contains("serving"), "{}", log());
}

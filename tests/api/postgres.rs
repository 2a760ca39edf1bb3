//! What only a database server can do to lianxi: go away under load and come back. While
//! PostgreSQL is down the server answers 503 `store_unavailable` (never 500, nothing
//! half-written) and `/readyz` says so; when it is back, the server recovers by itself, and every
//! command it acknowledged is in the log. Also checks that the suite's PostgreSQL run really
//! writes to PostgreSQL, and that no table there holds a token's text.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use sqlx::{Connection, PgConnection};
use store::throwaway_postgres::ThrowawayPostgres;
use uuid::Uuid;

use crate::helpers::{
    backend_is_postgres, cli, spawn_app, spawn_app_on_database, spawn_app_on_database_with, TestApp,
};

#[tokio::test]
async fn the_suite_runs_on_the_backend_it_names() {
    let app = spawn_app().await;
    let world = app.world(1).await;
    app.propose(world.community).await;
    let head = app.head().await;
    match (&app.database_url, backend_is_postgres()) {
        (Some(url), true) => {
            let mut conn = PgConnection::connect(url)
                .await
                .expect("the test's database");
            let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
                .fetch_one(&mut conn)
                .await
                .expect("count the events");
            assert_eq!(events, head, "every event is in PostgreSQL");
            assert!(!app.db_path().exists(), "and no SQLite log was made");
            // New streams, and streams the server wrote, cost a batch one statement.
            let metrics = app.get("/metrics", None, &[]).await.text();
            let one_statement = metrics
                .lines()
                .filter_map(|line| {
                    line.strip_prefix(
                        r#"lianxi_store_postgres_batches_total{path="one_statement"} "#,
                    )
                })
                .find_map(|value| value.trim().parse::<f64>().ok());
            assert!(
                one_statement.is_some_and(|batches| batches >= 1.0),
                "the server writes batches on heads it knows in one statement: {one_statement:?}"
            );
        }
        (None, false) => assert!(app.db_path().is_file(), "the SQLite log is on disk"),
        (url, postgres) => panic!("backend postgres={postgres} but database url {url:?}"),
    }
}

/// What one command sent during the outage came to.
#[derive(Debug)]
struct Sent {
    project: Uuid,
    status: StatusCode,
    code: Option<String>,
}

/// Sends ProposeProject commands from `clients` tasks until `stop` is set.
fn load(
    app: &Arc<TestApp>,
    community: Uuid,
    clients: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<Sent>>> {
    (0..clients)
        .map(|_| {
            let (app, stop) = (Arc::clone(app), Arc::clone(stop));
            tokio::spawn(async move {
                let mut sent = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let project = Uuid::new_v4();
                    let body = json!({
                        "project_id": project,
                        "community_id": community,
                        "title": "停电也不丢",
                        "theme": "public_welfare",
                    });
                    let reply = app
                        .command_reply(&app.admin_token, "ProposeProject", body, &[])
                        .await;
                    let code = reply.json["code"].as_str().map(str::to_owned);
                    sent.push(Sent {
                        project,
                        status: reply.status,
                        code,
                    });
                    if reply.status != StatusCode::OK && reply.status != StatusCode::CREATED {
                        // Do not spin while the database is away.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                sent
            })
        })
        .collect()
}

async fn ready(app: &TestApp) -> (StatusCode, Option<String>) {
    let reply = app.get("/readyz", None, &[]).await;
    (reply.status, reply.json["code"].as_str().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_postgres_restarts_under_load_the_server_answers_503_recovers_and_keeps_every_acknowledged_command(
) {
    // A server of this test's own: stopping the shared one would fail the others.
    let mut postgres = ThrowawayPostgres::start().expect("a throwaway PostgreSQL");
    let url = postgres.fresh_database().await.expect("a database");
    let app = Arc::new(spawn_app_on_database(&url).await);
    let world = app.world(1).await;
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(&app, world.community, 8, &stop);

    tokio::time::sleep(Duration::from_secs(1)).await;
    postgres.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        ready(&app).await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("store_unavailable".to_owned())
        ),
        "/readyz says the store is away"
    );
    postgres.resume().expect("PostgreSQL starts again");
    let deadline = Instant::now() + Duration::from_secs(30);
    while ready(&app).await.0 != StatusCode::OK {
        assert!(
            Instant::now() < deadline,
            "the server did not recover within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let mut sent = Vec::new();
    for client in clients {
        sent.extend(client.await.expect("a client"));
    }

    let acknowledged: BTreeSet<Uuid> = sent
        .iter()
        .filter(|sent| sent.status.is_success())
        .map(|sent| sent.project)
        .collect();
    let unavailable = sent
        .iter()
        .filter(|sent| sent.status == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    let other: Vec<&Sent> = sent
        .iter()
        .filter(|sent| {
            let expected_refusal = sent.status == StatusCode::SERVICE_UNAVAILABLE
                && sent.code.as_deref() == Some("store_unavailable");
            !(sent.status.is_success() || expected_refusal)
        })
        .collect();
    assert!(
        other.is_empty(),
        "only successes and 503 store_unavailable: {other:?}"
    );
    assert!(
        unavailable > 0,
        "some commands met the outage: {} sent",
        sent.len()
    );
    // Commands succeeded again after the restart, not only before it.
    let last_success = sent.iter().rposition(|sent| sent.status.is_success());
    let first_failure = sent.iter().position(|sent| !sent.status.is_success());
    assert!(
        matches!((first_failure, last_success), (Some(f), Some(l)) if l > f),
        "the server recovered by itself"
    );

    // Every acknowledged command is in the log, whole: one ProjectProposed per project.
    let mut proposed = BTreeSet::new();
    for event in app.all_events().await {
        if event["type"] == "ProjectProposed" {
            let project: Uuid =
                serde_json::from_value(event["data"]["project_id"].clone()).expect("a project id");
            assert!(proposed.insert(project), "project {project} proposed twice");
        }
    }
    let lost: Vec<&Uuid> = acknowledged.difference(&proposed).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged commands are not in the log, e.g. {:?}",
        lost.len(),
        acknowledged.len(),
        lost.iter().take(3).collect::<Vec<_>>()
    );
    let (code, report) = app.verify().await;
    assert_eq!(code, 0, "{report}");
}

#[tokio::test]
async fn tokens_are_stored_only_as_hashes_in_postgresql() {
    let url = crate::helpers::fresh_database().await;
    let app = spawn_app_on_database(&url).await;
    let world = app.world(1).await;
    let tokens = [
        app.issue_token("unit_rep", Some(world.units[0]), "代表")
            .await,
        app.issue_token_cli("analyst", Some(world.district), "分析员")
            .await,
        app.issue_token("admin", None, "管理员").await,
    ];
    for token in &tokens {
        let reply = app.get("/v1/events", Some(token), &[]).await;
        assert_ne!(reply.status, StatusCode::UNAUTHORIZED, "the token works");
    }
    // No row of the log's tables, or of the read models', holds a token's secret.
    let mut conn = PgConnection::connect(&url).await.expect("the database");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables \
         WHERE schemaname IN ('public', 'read_models')",
    )
    .fetch_all(&mut conn)
    .await
    .expect("the tables");
    assert!(
        tables.iter().any(|table| table == "public.tokens"),
        "{tables:?}"
    );
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM tokens")
        .fetch_one(&mut conn)
        .await
        .expect("count tokens");
    assert_eq!(
        stored, 3,
        "three issued tokens (the bootstrap one is not stored)"
    );
    for table in &tables {
        let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT t::text FROM {table} AS t"))
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("reading {table}: {e}"));
        for row in rows {
            for token in &tokens {
                let secret = token.strip_prefix("lx_").unwrap_or(token);
                assert!(
                    !row.contains(secret),
                    "a row of {table} holds a token: {row}"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_server_keeps_to_the_connections_it_is_given() {
    let url = crate::helpers::fresh_database().await;
    let app = spawn_app_on_database_with(
        &url,
        &[
            "--database-connections",
            "2",
            "--read-model-connections",
            "1",
        ],
    )
    .await;
    let world = app.world(2).await;
    let mut projects = Vec::new();
    for _ in 0..5 {
        let project = app.propose(world.community).await;
        app.claim(project, world.units[0]).await;
        projects.push(project);
    }
    // Many reads at once, of the log and of the read models: unbounded pools would open a
    // connection for each. (The board is read once first, after the projections have caught
    // up, so that none of the reads below can come before the community is on the board.)
    let board_path = format!("/v1/communities/{}/board", world.community);
    let first = app
        .board_at(world.community, &app.head().await.to_string())
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    let reads = (0..24).map(|n| {
        let (app, board_path) = (&app, &board_path);
        let stream = crate::helpers::project_stream(projects[n % projects.len()]);
        async move {
            let (log, board) = tokio::join!(
                app.stream(&stream),
                app.get(board_path, Some(&app.admin_token), &[])
            );
            assert_eq!(log.0, StatusCode::OK);
            assert_eq!(board.status, StatusCode::OK, "{}", board.text());
        }
    });
    futures::future::join_all(reads).await;
    let board = app
        .board_at(world.community, &app.head().await.to_string())
        .await;
    assert_eq!(board.status, StatusCode::OK, "{}", board.text());
    // 2 for the log (one listening), 2 for the writer tasks, 1 for the read models; this
    // test's own connection is not counted.
    let mut conn = PgConnection::connect(&url).await.expect("the database");
    let held: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_one(&mut conn)
    .await
    .expect("count connections");
    assert!(
        (1..=5).contains(&held),
        "the server holds {held} connections, at most 5"
    );

    // A pool the listener would take whole is refused, with a message, not a hang.
    let refused = cli(&[
        "verify".to_owned(),
        "--database-url".to_owned(),
        url.clone(),
        "--database-connections".to_owned(),
        "1".to_owned(),
    ])
    .await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--database-connections"), "{stderr}");
}

/// Makes a self-signed certificate and key for `localhost` in a directory the PostgreSQL server
/// can read (as root, the throwaway server runs as the `postgres` account, which must own the
/// key, mode 0600).
fn self_signed_certificate() -> (tempfile::TempDir, String, String) {
    use std::os::unix::fs::{chown, PermissionsExt};
    let dir = tempfile::tempdir().expect("a directory for the certificate");
    let (cert, key) = (dir.path().join("server.crt"), dir.path().join("server.key"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("running openssl");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let id = |flag: &str| -> Option<u32> {
        let out = std::process::Command::new("id")
            .args([flag, "postgres"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false);
    if root {
        let (uid, gid) = (id("-u"), id("-g"));
        for path in [dir.path(), cert.as_path(), key.as_path()] {
            chown(path, uid, gid).expect("chown to the postgres account");
        }
    }
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod the key");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = |p: &std::path::Path| p.display().to_string();
    (dir, path(&cert), path(&key))
}

#[tokio::test]
async fn a_server_reaches_postgresql_over_tls_when_the_url_requires_it() {
    let (_certificate, cert, key) = self_signed_certificate();
    let postgres = ThrowawayPostgres::start_with(&store::throwaway_postgres::Options {
        settings: vec![
            ("ssl".into(), "on".into()),
            ("ssl_cert_file".into(), cert),
            ("ssl_key_file".into(), key),
        ],
        ..Default::default()
    })
    .expect("a throwaway PostgreSQL with TLS");
    let url = postgres.fresh_database().await.expect("a database");
    let app = spawn_app_on_database(&format!("{url}?sslmode=require")).await;
    app.ok("RegisterDistrict", json!({"name": "加密街道"}))
        .await;

    // Every connection of the server's is encrypted.
    let mut probe = PgConnection::connect(&url)
        .await
        .expect("a probe connection");
    let (all, encrypted): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a \
         JOIN pg_stat_ssl s USING (pid) WHERE a.datname = current_database() \
         AND a.pid <> pg_backend_pid()",
    )
    .fetch_one(&mut probe)
    .await
    .expect("the server's connections");
    assert!(all > 0, "the server holds connections");
    assert_eq!(encrypted, all, "every connection of the server uses TLS");
}

/// Two servers on one database both run the projectors (racing for each batch's checkpoint,
/// so one often resumes from a checkpoint the other wrote, past events it never applied); a
/// board read through either after a burst of commands through the other shows every project.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_database_each_serve_the_boards_the_other_changed() {
    let url = crate::helpers::fresh_database().await;
    let a = spawn_app_on_database(&url).await;
    let b = spawn_app_on_database(&url).await;
    let world = a.world(1).await;
    let mut sent = 0;
    for round in 0..12 {
        let writer = if round % 2 == 0 { &a } else { &b };
        let burst = (0..8).map(|i| {
            writer.ok(
                "ProposeProject",
                json!({"community_id": world.community, "title": format!("项目{round}-{i}"),
                       "theme": "civility"}),
            )
        });
        let replies = futures::future::join_all(burst).await;
        sent += replies.len();
        let position = replies
            .iter()
            .filter_map(|r| r["position"].as_i64())
            .max()
            .expect("positions")
            .to_string();
        for reader in [&b, &a] {
            let board = reader.board_at(world.community, &position).await;
            assert_eq!(board.status, 200, "{}", board.text());
            let projects = board.json["projects"].as_array().expect("projects");
            assert_eq!(projects.len(), sent, "after round {round}");
        }
    }
}

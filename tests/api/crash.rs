//! Crashes, tampering and shutdown: an acknowledged event survives `kill -9` (on either backend);
//! a changed row is found and named by `lianxi verify` (the SQLite file, tampered with directly);
//! SIGTERM lets an in-flight request finish.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, Row};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;

use crate::helpers::{client, project_stream, spawn_app, spawn_app_sqlite, spawn_app_with_log};

/// One acknowledged command: the stream and the event it reported.
#[derive(Debug, Clone)]
struct Ack {
    stream: String,
    event_id: String,
    position: i64,
    version: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_survives_kill_9_and_the_log_still_verifies() {
    let mut app = spawn_app().await;
    let world = app.world(8).await;
    let mut projects = Vec::new();
    for unit in &world.units {
        projects.push(app.launched_project(world.community, *unit).await);
    }
    let acked = Arc::new(AtomicUsize::new(0));
    let url = app.url("");
    let token = app.admin_token.clone();

    // Eight writers stream commands in: activities on their own project (one stream each) and
    // new units (a new stream each), recording every 200 they get.
    let writers: Vec<_> = projects
        .iter()
        .enumerate()
        .map(|(writer, project)| {
            let (url, token, acked, project, district) =
                (url.clone(), token.clone(), acked.clone(), *project, world.district);
            tokio::spawn(async move {
                let http = client();
                let mut acks = Vec::new();
                for i in 0..100_000 {
                    let (name, body) = if i % 2 == 0 {
                        ("RecordActivity", json!({"project_id": project, "title": format!("活动{writer}-{i}"), "participants": i}))
                    } else {
                        ("RegisterUnit", json!({"district_id": district, "name": format!("单位{writer}-{i}")}))
                    };
                    let sent = http
                        .post(format!("{url}/v1/commands/{name}"))
                        .bearer_auth(&token)
                        .json(&body)
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await;
                    let Ok(response) = sent else { break };
                    if response.status() != StatusCode::OK {
                        // A 5xx while dying is fine; it was not acknowledged.
                        continue;
                    }
                    let Ok(reply) = response.json::<Value>().await else { break };
                    acks.push(Ack {
                        stream: reply["stream"].as_str().unwrap_or_default().to_owned(),
                        event_id: reply["events"][0]["id"].as_str().unwrap_or_default().to_owned(),
                        position: reply["position"].as_i64().unwrap_or(0),
                        version: reply["version"].as_i64().unwrap_or(0),
                    });
                    acked.fetch_add(1, Ordering::SeqCst);
                }
                acks
            })
        })
        .collect();

    // Kill while they write, once enough has been acknowledged to make the test meaningful.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.load(Ordering::SeqCst) < 300 {
        assert!(
            Instant::now() < deadline,
            "the writers got too few acknowledgements"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    app.kill9().await;
    let mut acks: Vec<Ack> = Vec::new();
    for writer in writers {
        acks.extend(writer.await.expect("a writer task"));
    }
    assert!(acks.len() >= 300);

    app.restart().await;
    let log = app.all_events().await;
    let by_id: HashMap<&str, &Value> = log
        .iter()
        .map(|e| (e["id"].as_str().unwrap_or_default(), e))
        .collect();
    for ack in &acks {
        let event = by_id
            .get(ack.event_id.as_str())
            .unwrap_or_else(|| panic!("acknowledged event lost after kill -9: {ack:?}"));
        assert_eq!(event["position"], ack.position, "{ack:?}");
        assert_eq!(event["stream"], ack.stream.as_str(), "{ack:?}");
        assert_eq!(event["version"], ack.version, "{ack:?}");
    }
    // Read by stream too: each acknowledged event sits at its version.
    let mut streams: HashMap<&str, Vec<&Ack>> = HashMap::new();
    for ack in &acks {
        streams.entry(ack.stream.as_str()).or_default().push(ack);
    }
    for project in &projects {
        let stream = project_stream(*project);
        let events = app.stream_events(&stream).await;
        for ack in streams.get(stream.as_str()).into_iter().flatten() {
            assert_eq!(
                events[(ack.version - 1) as usize]["id"],
                ack.event_id.as_str()
            );
        }
    }
    let (code, out) = app.verify().await;
    assert_eq!(code, 0, "verify after kill -9: {out}");

    // The restarted server takes commands where the log left off.
    let head = app.head().await;
    let reply = app
        .ok(
            "RecordActivity",
            json!({"project_id": projects[0], "title": "重启后", "participants": 1}),
        )
        .await;
    let position = reply["position"].as_i64().expect("a position");
    if app.database_url.is_some() {
        // PostgreSQL's positions come from a sequence: the batch the kill cut off took numbers
        // that no event will have, so the next position is past the head, not next to it.
        assert!(position > head, "position {position} after head {head}");
    } else {
        assert_eq!(position, head + 1, "SQLite's positions have no gaps");
    }
}

/// Opens the stopped server's SQLite file for writing, as an intruder with file access would.
async fn open_for_tampering(app: &crate::helpers::TestApp) -> sqlx::SqliteConnection {
    SqliteConnectOptions::new()
        .filename(app.db_path())
        .foreign_keys(false)
        .connect()
        .await
        .expect("open the SQLite file")
}

/// Drops every trigger on `events` (the append-only guards); returns how many there were.
async fn drop_event_triggers(conn: &mut sqlx::SqliteConnection) -> usize {
    let triggers: Vec<String> = sqlx::query(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'events'",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("the triggers")
    .iter()
    .map(|row| row.get("name"))
    .collect();
    for trigger in &triggers {
        sqlx::query(&format!("DROP TRIGGER \"{trigger}\""))
            .execute(&mut *conn)
            .await
            .expect("drop a trigger");
    }
    triggers.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_and_names_an_event_changed_behind_the_log_s_back() {
    let mut app = spawn_app_sqlite().await;
    let world = app.world(1).await;
    let project = app.propose(world.community).await;
    app.claim(project, world.units[0]).await;
    let proposed = app.stream_events(&project_stream(project)).await[0].clone();
    let (position, id) = (
        proposed["position"].as_i64().expect("a position"),
        proposed["id"].as_str().expect("an id").to_owned(),
    );
    let (code, out) = app.verify().await;
    assert_eq!(code, 0, "an untouched log verifies: {out}");

    app.kill9().await;
    let mut conn = open_for_tampering(&app).await;
    // The log refuses the edit while its guards stand…
    let forge = "UPDATE events SET data = json_set(data, '$.title', 'forged') WHERE position = ?1";
    let refused = sqlx::query(forge).bind(position).execute(&mut conn).await;
    assert!(
        refused.is_err(),
        "an UPDATE of events is refused by the database"
    );
    let refused = sqlx::query("DELETE FROM events WHERE position = ?1")
        .bind(position)
        .execute(&mut conn)
        .await;
    assert!(
        refused.is_err(),
        "a DELETE of events is refused by the database"
    );
    // …so drop every trigger on `events`, and forge.
    assert!(
        drop_event_triggers(&mut conn).await > 0,
        "the events table has guard triggers"
    );
    let changed = sqlx::query(forge)
        .bind(position)
        .execute(&mut conn)
        .await
        .expect("the forged UPDATE");
    assert_eq!(changed.rows_affected(), 1);
    conn.close().await.expect("close the SQLite file");

    let (code, out) = app.verify().await;
    assert_eq!(code, 1, "verify fails on a forged event: {out}");
    assert!(
        out.contains(&format!("position {position}")),
        "verify names position {position}: {out}"
    );
    assert!(out.contains(&id), "verify names event {id}: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_forged_metadata_times_types_and_a_deleted_event() {
    let forgeries = [
        ("the actor's name", "UPDATE events SET metadata = json_set(metadata, '$.actor.name', 'someone else') WHERE position = ?1"),
        ("the business time", "UPDATE events SET metadata = json_set(metadata, '$.occurred_at', '2018-01-01T00:00:00.000000Z') WHERE position = ?1"),
        ("the recording time", "UPDATE events SET recorded_at = '2018-01-01T00:00:00.000000Z' WHERE position = ?1"),
        ("the event type", "UPDATE events SET event_type = 'ProjectCancelled' WHERE position = ?1"),
        ("a count", "UPDATE events SET data = json_set(data, '$.participants', 3000) WHERE position = ?1"),
        ("the event's id", "UPDATE events SET id = '00000000-0000-4000-8000-000000000000' WHERE position = ?1"),
        ("a deleted event", "DELETE FROM events WHERE position = ?1"),
    ];
    for (what, forge) in forgeries {
        let mut app = spawn_app_sqlite().await;
        let world = app.world(1).await;
        let project = app.launched_project(world.community, world.units[0]).await;
        app.ok(
            "RecordActivity",
            json!({"project_id": project, "title": "活动", "participants": 30}),
        )
        .await;
        app.ok("CompleteProject", json!({"project_id": project}))
            .await;
        // The activity: in the middle of its stream and of the log.
        let activity = app.stream_events(&project_stream(project)).await[3].clone();
        assert_eq!(activity["type"], "ActivityRecorded");
        let position = activity["position"].as_i64().expect("a position");
        app.kill9().await;
        let mut conn = open_for_tampering(&app).await;
        drop_event_triggers(&mut conn).await;
        let changed = sqlx::query(forge)
            .bind(position)
            .execute(&mut conn)
            .await
            .expect("the forgery");
        assert_eq!(changed.rows_affected(), 1, "{what}");
        conn.close().await.expect("close the SQLite file");
        let (code, out) = app.verify().await;
        assert_eq!(code, 1, "verify finds {what}: {out}");
        assert!(
            out.contains("position"),
            "verify names a position for {what}: {out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_an_event_deleted_from_the_end_of_its_stream() {
    // Positions are gap-free by design (the single writer assigns them in commit order), so a
    // missing position in the middle of the log is evidence of a deletion even when no stream's
    // chain breaks: here the last event of one stream, followed by other streams' events.
    let mut app = spawn_app_sqlite().await;
    let world = app.world(1).await;
    let project = app.propose(world.community).await;
    let cancelled = app
        .ok("CancelProject", json!({"project_id": project}))
        .await;
    let position = cancelled["position"].as_i64().expect("a position");
    app.register_unit(world.district, "后来的单位").await;
    app.kill9().await;
    let mut conn = open_for_tampering(&app).await;
    drop_event_triggers(&mut conn).await;
    sqlx::query("DELETE FROM events WHERE position = ?1")
        .bind(position)
        .execute(&mut conn)
        .await
        .expect("the deletion");
    conn.close().await.expect("close the SQLite file");
    let (code, out) = app.verify().await;
    assert_eq!(
        code, 1,
        "verify notices that position {position} is gone: {out}"
    );
    assert!(
        out.contains(&format!("{position}")),
        "verify names position {position}: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_command_finish_and_exits_zero() {
    // The request log (tower_http at debug) tells when the server has the request in hand.
    let mut app = spawn_app_with_log("info,tower_http=debug").await;
    let district = Uuid::new_v4();
    let body =
        serde_json::to_vec(&json!({"district_id": district, "name": "赵镇街道"})).expect("JSON");
    let (head_part, tail_part) = body.split_at(body.len() / 2);
    let request_id = format!("in-flight-{}", Uuid::new_v4());
    let mut socket = TcpStream::connect(app.addr).await.expect("connect");
    let request_head = format!(
        "POST /v1/commands/RegisterDistrict HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nx-request-id: {request_id}\r\n\r\n",
        app.addr,
        app.admin_token,
        body.len()
    );
    socket
        .write_all(request_head.as_bytes())
        .await
        .expect("send the head");
    socket
        .write_all(head_part)
        .await
        .expect("send half the body");
    socket.flush().await.expect("flush");

    // Wait (with a deadline) until the server logs that it started on this request.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !app
        .log()
        .lines()
        .any(|l| l.contains(&request_id) && l.contains("started processing request"))
    {
        assert!(
            Instant::now() < deadline,
            "the server never started the request; log:\n{}",
            app.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    app.terminate();
    // Let the server see the signal before the body completes: it logs when it starts to stop.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !app.log().contains("shutting down") {
        assert!(
            Instant::now() < deadline,
            "the server never logged its shutdown; log:\n{}",
            app.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    socket
        .write_all(tail_part)
        .await
        .expect("send the rest of the body");
    socket.flush().await.expect("flush");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), socket.read_to_end(&mut response))
        .await
        .expect("the response arrives")
        .expect("read the response");
    let response = String::from_utf8_lossy(&response).into_owned();
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "the in-flight command got its 200: {response}"
    );
    let json_start = response.find("\r\n\r\n").map_or(0, |i| i + 4);
    let reply: Value = serde_json::from_str(response[json_start..].trim()).expect("a JSON body");
    assert_eq!(reply["stream"], format!("district-{district}"));

    let status = app.wait_exit(Duration::from_secs(30)).await;
    assert!(
        status.success(),
        "the server exits 0 after SIGTERM: {status:?}; log:\n{}",
        app.log()
    );

    // And what it acknowledged is in the log.
    app.restart().await;
    assert_eq!(
        app.stream_types(&format!("district-{district}")).await,
        ["DistrictRegistered"]
    );
    let (code, out) = app.verify().await;
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_is_not_held_up_forever_by_a_client_stalled_in_its_headers() {
    // A client that sends half a request head and goes quiet (a slow or hostile client) must not
    // keep the server from stopping: the request timeout is 30 s, so 35 s is generous.
    let mut app = spawn_app().await;
    let mut stalled = TcpStream::connect(app.addr).await.expect("connect");
    stalled
        .write_all(b"POST /v1/commands/RegisterDistrict HTTP/1.1\r\nhost: lianxi\r\n")
        .await
        .expect("send half a head");
    stalled.flush().await.expect("flush");
    // The server has the connection once it answers another one.
    app.assert_healthy().await;
    app.terminate();
    let started = Instant::now();
    let status = app.wait_exit(Duration::from_secs(35)).await;
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    assert!(started.elapsed() < Duration::from_secs(35));
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_the_moment_the_server_says_it_listens_still_drains_it_and_exits_zero() {
    // A supervisor may stop a server as soon as it announces its port. The signal handlers are
    // installed before that line, so even a SIGTERM sent before the serving loop first waits for
    // one is a graceful stop, not the default action (death by signal 15).
    for _ in 0..5 {
        let mut app = spawn_app_sqlite().await;
        app.terminate();
        let status = app.wait_exit(Duration::from_secs(30)).await;
        assert!(
            status.success(),
            "exit status after an immediate SIGTERM: {status:?}; log:\n{}",
            app.log()
        );
    }
}

#[tokio::test]
async fn verify_finds_a_snapshot_that_differs_from_its_stream() {
    let mut app = spawn_app_sqlite().await;
    let world = app.world(1).await;
    let project = app.launched_project(world.community, world.units[0]).await;
    // 3 + 70 events: past the 64 after which the handler saves a snapshot.
    for n in 0..70 {
        app.ok(
            "RecordActivity",
            json!({"project_id": project, "title": format!("activity {n}"), "participants": 5}),
        )
        .await;
    }
    let stream = project_stream(project);
    let mut saved = false;
    for _ in 0..100 {
        let (code, out) = app.verify().await;
        assert_eq!(code, 0, "an untouched log and its snapshots verify: {out}");
        if out.contains("ok: 1 snapshots equal the fold of their streams") {
            saved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(saved, "the handler saved a snapshot of the long stream");

    app.kill9().await;
    let mut conn = open_for_tampering(&app).await;
    // One activity fewer in the snapshot: the duplicate rule would let it be recorded twice.
    let changed = sqlx::query(
        "UPDATE snapshots SET state = json_remove(state, '$.state.activities[0]') \
         WHERE stream_id = ?1",
    )
    .bind(&stream)
    .execute(&mut conn)
    .await
    .expect("the changed snapshot");
    assert_eq!(changed.rows_affected(), 1);
    conn.close().await.expect("close the SQLite file");

    let (code, out) = app.verify().await;
    assert_eq!(code, 1, "verify fails on a changed snapshot: {out}");
    assert!(
        out.lines().next().is_some_and(|l| l.starts_with("ok: ")),
        "the log itself is intact: {out}"
    );
    assert!(
        out.contains(&format!(
            "SNAPSHOT MISMATCH for stream {stream} at version 64"
        )),
        "verify names the stream and version: {out}"
    );
}

//! Crashes of the read side, by kill -9: of the server while commands stream in and projectors
//! follow them; of the server while it rebuilds projections (`POST /v1/projections/{name}/
//! rebuild`); of `lianxi projections rebuild NAME` half-way, with the server stopped and beside
//! it. After a restart, or the rebuild run again, the read models equal a fresh rebuild.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use commands::{CommandHandler, CommandRequest, Principal, Role};
use domain::testing::generator::{Generated, Generator};
use projections::readdb::{DocumentRow, GenerationRow, ReadDb};
use reqwest::StatusCode;
use rustix::process::{kill_process, Pid, Signal};
use serde_json::Value;
use sqlx::Connection;
use store::sqlite::SqliteStore;
use store::EventStore;
use tokio::io::AsyncReadExt;
use tokio::process::Child;
use uuid::Uuid;

use crate::helpers::{cli, cli_command, spawn_app_sqlite, TestApp};

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
    let mut app = spawn_app_sqlite().await;
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

/// How long the log is for the rebuild crashes. A rebuild commits a checkpoint every batch of
/// 2,000 events (`projections::runner::BATCH`), so 3,000 events give a checkpoint at 2,000
/// before the head, and a last batch long enough (tenths of a second) that a rebuild seen
/// half-way is still half-way when the kill lands a few milliseconds later.
const REBUILD_HISTORY: i64 = 3_000;
/// Generators writing that history at once (a world each), so group commit shares the fsyncs.
const HISTORY_WRITERS: u64 = 16;
/// How long a test waits for something the server or the CLI does on its own.
const PATIENCE: Duration = Duration::from_secs(30);

/// Writes a seeded history into the log of `data_dir`, where no server runs: `HISTORY_WRITERS`
/// generators (seeds `seed`, `seed + 1`, …) at once until the head reaches `target`, each
/// command through the command handler that `POST /v1/commands` uses (over HTTP, a loaded
/// two-core machine takes about 200 commands a second, half what this does). Returns the head
/// and the generators, which can go on where the history stops.
async fn write_history(data_dir: &Path, seed: u64, target: i64) -> (i64, Vec<Generator>) {
    let store: Arc<dyn EventStore> =
        Arc::new(SqliteStore::open(data_dir).await.expect("the log opens"));
    let handler = CommandHandler::new(store.clone());
    let admin = Principal {
        actor_id: Uuid::from_u128(0x5eed),
        name: "history writer".into(),
        role: Role::Admin,
        scope: None,
    };
    let writers = (0..HISTORY_WRITERS).map(|w| {
        let (store, handler, admin) = (&store, &handler, &admin);
        async move {
            let mut generator = Generator::new(seed + w, 1, 3, 10);
            let mut n = 0;
            while store.head().await.expect("the head") < target {
                let generated = generator.next_command();
                let command = generated.command().expect("generated commands parse");
                let outcome = handler
                    .handle(CommandRequest {
                        command,
                        principal: admin.clone(),
                        request_hash: format!("history-{w}-{n}"),
                        idempotency_key: None,
                        if_match: None,
                        correlation_id: None,
                        causation_id: None,
                    })
                    .await;
                assert!(
                    outcome.is_ok(),
                    "writer {w}, command {n}: {generated:?} was refused: {outcome:?}"
                );
                n += 1;
            }
            generator
        }
    });
    let generators = futures::future::join_all(writers).await;
    (store.head().await.expect("the head"), generators)
}

/// Sends `commands` over HTTP one after another until the server stops answering (it was
/// killed); returns how many it acknowledged. Any other answer than 200 fails the test.
fn spawn_writer(app: &TestApp, commands: Vec<Generated>) -> tokio::task::JoinHandle<usize> {
    let client = app.client.clone();
    let url = app.url("/v1/commands/");
    let token = app.admin_token.clone();
    tokio::spawn(async move {
        let mut acknowledged = 0;
        for generated in commands {
            let Ok(response) = client
                .post(format!("{url}{}", generated.name))
                .bearer_auth(&token)
                .json(&generated.body)
                .send()
                .await
            else {
                break;
            };
            let status = response.status();
            let Ok(body) = response.text().await else {
                break;
            };
            assert_eq!(
                status,
                StatusCode::OK,
                "{} {} was refused: {body}",
                generated.name,
                generated.body
            );
            acknowledged += 1;
        }
        acknowledged
    })
}

/// What "the read models equal a fresh rebuild" compares: every document of every answering
/// generation, and the rows of the answering `trace` generation's index (which is a table of
/// its own, not documents).
#[derive(Debug)]
struct ReadModels {
    documents: Vec<DocumentRow>,
    trace_index: Vec<(String, i64)>,
}

impl ReadModels {
    async fn of(db: &ReadDb) -> Self {
        let documents = db.dump_active().await.expect("the documents");
        let trace_index = db.dump_active_trace_index().await.expect("the trace index");
        Self {
            documents,
            trace_index,
        }
    }

    /// A fresh rebuild of the log of `data_dir` up to `head`, in memory, in one pass.
    async fn fresh(data_dir: &Path, head: i64) -> Self {
        let store = SqliteStore::open(data_dir).await.expect("the log");
        let fresh = projections::runner::build_in_memory(&store, Some(head), 100_000)
            .await
            .expect("a fresh rebuild");
        let models = Self::of(&fresh).await;
        assert!(
            !models.documents.is_empty() && !models.trace_index.is_empty(),
            "a fresh rebuild of {head} events has documents and trace rows"
        );
        models
    }

    #[track_caller]
    fn assert_equal_to(&self, fresh: &ReadModels, when: &str) {
        first_difference(when, "documents", &self.documents, &fresh.documents);
        first_difference(
            when,
            "trace index rows",
            &self.trace_index,
            &fresh.trace_index,
        );
    }
}

#[track_caller]
fn first_difference<T: PartialEq + std::fmt::Debug>(
    when: &str,
    what: &str,
    live: &[T],
    fresh: &[T],
) {
    let differs = (0..live.len().max(fresh.len())).find(|&i| live.get(i) != fresh.get(i));
    if let Some(i) = differs {
        panic!(
            "{when}: the answering {what} differ from a fresh rebuild at row {i} \
             ({} live, {} fresh):\n  live:  {:?}\n  fresh: {:?}",
            live.len(),
            fresh.len(),
            live.get(i),
            fresh.get(i)
        );
    }
}

/// Documents of generations that do not answer (retired or abandoned), and trace index rows of
/// `trace` generations that do not answer.
async fn leftovers(db: &ReadDb) -> (i64, i64) {
    db.leftovers()
        .await
        .expect("counting what no generation answers with")
}

/// `GET /v1/projections` as the admin: the head and the listed generations.
async fn listing(app: &TestApp) -> (i64, Vec<Value>) {
    let reply = app
        .get("/v1/projections", Some(&app.admin_token), &[])
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    (
        reply.json["head"].as_i64().expect("a head"),
        reply.json["projections"]
            .as_array()
            .expect("a list of projections")
            .clone(),
    )
}

/// Whether `p` (an entry of `GET /v1/projections`) answers, live, at `head`.
fn answers_at(p: &Value, head: i64) -> bool {
    p["active"] == true && p["state"] == "live" && p["position"] == head && p["lag"] == 0
}

/// Waits until every registered projection has exactly one answering generation in
/// `GET /v1/projections`, live at the log head; returns the head and the listing.
async fn until_answering_at_head(app: &TestApp) -> (i64, Vec<Value>) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (head, listed) = listing(app).await;
        let settled = projections::rebuild::names().iter().all(|name| {
            let answering: Vec<&Value> = listed
                .iter()
                .filter(|p| p["name"] == *name && p["active"] == true)
                .collect();
            answering.len() == 1 && answers_at(answering[0], head)
        });
        if settled {
            return (head, listed);
        }
        assert!(
            Instant::now() < deadline,
            "not every projection came to answer at the head {head} within {PATIENCE:?}: \
             {listed:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `GET /v1/projections` lists exactly `expected` (name → generation), each
/// answering, live at the head: every other generation retired. Returns the head.
async fn until_only(app: &TestApp, expected: &BTreeMap<&str, i64>) -> i64 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (head, listed) = listing(app).await;
        let got: BTreeMap<&str, i64> = listed
            .iter()
            .filter(|p| answers_at(p, head))
            .filter_map(|p| Some((p["name"].as_str()?, p["generation"].as_i64()?)))
            .collect();
        if listed.len() == expected.len() && &got == expected {
            return head;
        }
        assert!(
            Instant::now() < deadline,
            "GET /v1/projections did not come to list only {expected:?}, answering at the \
             head {head}, within {PATIENCE:?}: {listed:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The generation of each projection that answers in the read-model database.
async fn answering_rows(db: &ReadDb) -> BTreeMap<String, GenerationRow> {
    db.generations()
        .await
        .expect("the generations")
        .into_iter()
        .filter(|g| g.active)
        .map(|g| (g.name.clone(), g))
        .collect()
}

/// `POST /v1/projections/{name}/rebuild` as the admin, which must answer 202; returns the new
/// generation.
async fn rebuild_on_server(app: &TestApp, name: &str) -> i64 {
    let reply = app
        .post_raw(
            &format!("/v1/projections/{name}/rebuild"),
            Vec::new(),
            &[("authorization", format!("Bearer {}", app.admin_token))],
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text());
    assert_eq!(reply.json["name"], name, "{}", reply.text());
    assert_eq!(reply.json["state"], "building", "{}", reply.text());
    reply.json["generation"].as_i64().expect("a generation")
}

fn data_dir_arg(data_dir: &Path) -> [String; 2] {
    ["--data-dir".to_owned(), data_dir.display().to_string()]
}

/// `lianxi projections status` on `data_dir`: the log head and the cells of each line under the
/// header (a state of several words is several cells).
async fn status(data_dir: &Path) -> (i64, Vec<Vec<String>>) {
    let mut args = vec!["projections".to_owned(), "status".to_owned()];
    args.extend(data_dir_arg(data_dir));
    let output = cli(&args).await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "projections status failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut lines = stdout.lines();
    let head = lines
        .next()
        .and_then(|l| l.strip_prefix("log head: "))
        .and_then(|h| h.parse().ok())
        .unwrap_or_else(|| panic!("a `log head: N` line first: {stdout}"));
    let rows = lines
        .skip(1)
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect();
    (head, rows)
}

/// The status lines of `name`.
fn lines_of<'a>(rows: &'a [Vec<String>], name: &str) -> Vec<&'a Vec<String>> {
    rows.iter().filter(|r| r[0] == name).collect()
}

/// `lianxi projections rebuild NAME` run to the end; it must succeed and report that generation
/// `generation` took over at `head`.
async fn rebuild_with_cli(data_dir: &Path, name: &str, generation: i64, version: i64, head: i64) {
    let mut args = vec![
        "projections".to_owned(),
        "rebuild".to_owned(),
        name.to_owned(),
    ];
    args.extend(data_dir_arg(data_dir));
    let output = cli(&args).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "rebuild {name} failed: {stderr}");
    let expected = format!(
        "rebuilt {name}: generation {generation} (version {version}) took over at position {head} "
    );
    assert!(
        stdout.starts_with(&expected),
        "expected {expected:?}…, got {stdout:?}; {stderr}"
    );
}

/// How often the killed `lianxi projections rebuild` processes write their checkpoint.
const CLI_REBUILD_WRITE_EVERY: &str = "100";

/// A `lianxi projections rebuild` process and the generation it builds.
struct CliRebuild {
    name: &'static str,
    generation: i64,
    child: Child,
}

/// Starts `lianxi projections rebuild NAME` for every registered projection at once, and kills
/// each with SIGKILL as soon as its new generation has committed a checkpoint short of `head`,
/// found by polling readmodels.db (the plain progress lines come only every two seconds). Fails
/// when one finishes before it was seen half-way. Returns, per projection, the generation
/// killed.
async fn kill_cli_rebuilds_half_way(
    data_dir: &Path,
    db: &ReadDb,
    head: i64,
) -> BTreeMap<&'static str, i64> {
    let before = db.generations().await.expect("the generations");
    let mut running: Vec<CliRebuild> = projections::rebuild::names()
        .into_iter()
        .map(|name| {
            let generation = before
                .iter()
                .filter(|g| g.name == name)
                .map(|g| g.generation)
                .max()
                .unwrap_or(0)
                + 1;
            let mut args = vec![
                "projections".to_owned(),
                "rebuild".to_owned(),
                name.to_owned(),
            ];
            args.extend(data_dir_arg(data_dir));
            // Ten times more checkpoints than elsewhere: on a fast machine a 3,000-event
            // rebuild can otherwise pass its few half-way states between two polls.
            let child = cli_command(&args)
                .env("LIANXI_CATCH_UP_WRITE_EVERY", CLI_REBUILD_WRITE_EVERY)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawning lianxi projections rebuild");
            CliRebuild {
                name,
                generation,
                child,
            }
        })
        .collect();
    let mut killed = BTreeMap::new();
    let deadline = Instant::now() + PATIENCE;
    while !running.is_empty() {
        // The rebuilds are frozen while their rows are read and until each is killed or let go:
        // one seen half-way cannot reach the head (and mark itself live) before its SIGKILL
        // lands, as it could under a loaded machine's scheduling.
        for run in &running {
            signal(&run.child, Signal::STOP);
        }
        let rows = db.generations().await.expect("the generations");
        let mut still = Vec::new();
        for mut run in running {
            let row = rows
                .iter()
                .find(|g| g.name == run.name && g.generation == run.generation);
            let half_way = row.is_some_and(|g| {
                !g.active && g.state == "building" && g.position > 0 && g.position < head
            });
            if half_way {
                run.child.start_kill().expect("SIGKILL the rebuild");
                let status = run.child.wait().await.expect("waiting for the rebuild");
                let mut stderr = String::new();
                if let Some(mut pipe) = run.child.stderr.take() {
                    pipe.read_to_string(&mut stderr).await.expect("its stderr");
                }
                assert_eq!(
                    status.signal(),
                    Some(9),
                    "rebuild {} was to die of the kill, not exit ({status}): {stderr}",
                    run.name
                );
                assert!(
                    stderr.contains(&format!(
                        "rebuilding {}: generation {} ",
                        run.name, run.generation
                    )),
                    "rebuild {} built another generation than {}: {stderr}",
                    run.name,
                    run.generation
                );
                killed.insert(run.name, run.generation);
            } else if let Some(status) = run.child.try_wait().expect("polling the rebuild") {
                panic!(
                    "rebuild {} exited ({status}) before generation {} was seen half-way to {head} \
                     ({row:?}): the history is too short for this machine, or for the runner's \
                     batch size",
                    run.name, run.generation
                );
            } else {
                signal(&run.child, Signal::CONT);
                still.push(run);
            }
        }
        running = still;
        assert!(
            Instant::now() < deadline,
            "rebuilds of {:?} were not seen half-way within {PATIENCE:?}",
            running.iter().map(|r| r.name).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    killed
}

/// Sends `signal` (`Signal::STOP`, `Signal::CONT`) to a child still running; one that has
/// exited is left alone (`id()` is `None` once it is reaped, and a zombie ignores signals).
fn signal(child: &tokio::process::Child, signal: Signal) {
    let pid = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .and_then(Pid::from_raw);
    if let Some(pid) = pid {
        // A child that exited since `id()` was read is no error here.
        let _ = kill_process(pid, signal);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_kill_during_rebuilds_on_the_server_a_restart_answers_at_the_head_with_read_models_equal_to_a_fresh_rebuild(
) {
    let started = Instant::now();
    let mut app = spawn_app_sqlite().await;
    let data_dir = app.data_dir.path().to_owned();
    app.kill9().await;
    let (written, mut generators) = write_history(&data_dir, 7_100, REBUILD_HISTORY).await;
    app.restart().await;
    let (head, before) = until_answering_at_head(&app).await;
    assert_eq!(head, written);

    // Commands keep coming while every registered projection is rebuilt at once.
    let more: Vec<Generated> = (0..400).map(|_| generators[0].next_command()).collect();
    let writer = spawn_writer(&app, more);
    let names = projections::rebuild::names();
    let mut building = BTreeMap::new();
    for name in &names {
        let generation = rebuild_on_server(&app, name).await;
        let answering = before
            .iter()
            .find(|p| p["name"] == *name && p["active"] == true)
            .and_then(|p| p["generation"].as_i64())
            .expect("an answering generation");
        assert!(
            generation > answering,
            "{name}: {generation} after {answering}"
        );
        building.insert(*name, generation);
    }

    // Kill -9 as soon as a new generation has committed a checkpoint short of the head.
    let deadline = Instant::now() + PATIENCE;
    let seen = loop {
        let (head, listed) = listing(&app).await;
        let new: Vec<&Value> = listed
            .iter()
            .filter(|p| {
                let name = p["name"].as_str().unwrap_or_default();
                building.get(name).is_some_and(|g| p["generation"] == *g)
            })
            .collect();
        let half_way: Vec<String> = new
            .iter()
            .filter(|p| p["active"] == false && p["state"] == "building")
            .filter(|p| p["position"].as_i64().is_some_and(|n| n > 0 && n < head))
            .map(|p| {
                format!(
                    "{} generation {} at {}/{head}",
                    p["name"], p["generation"], p["position"]
                )
            })
            .collect();
        if !half_way.is_empty() {
            break half_way;
        }
        assert!(
            new.iter().any(|p| p["active"] == false),
            "every rebuild took over before one was seen half-way: the history is too short \
             for this machine, or for the runner's batch size: {listed:#?}"
        );
        assert!(
            Instant::now() < deadline,
            "no rebuild was seen half-way within {PATIENCE:?}: {listed:#?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    app.kill9().await;
    let acknowledged = writer.await.expect("the writer task");
    eprintln!(
        "killed after {:?}: {seen:?} seen half-way, {acknowledged} commands acknowledged",
        started.elapsed()
    );

    // What the kill left: rebuilt generations that never took over, one at least half-built.
    let db = ReadDb::open(&data_dir).await.expect("the read models");
    let abandoned: BTreeMap<(String, i64), GenerationRow> = db
        .generations()
        .await
        .expect("the generations")
        .into_iter()
        .filter(|g| building.get(g.name.as_str()) == Some(&g.generation) && !g.active)
        .map(|g| ((g.name.clone(), g.generation), g))
        .collect();
    assert!(
        abandoned
            .values()
            .any(|g| g.state == "building" && g.position > 0),
        "the kill landed while a rebuild was half-way: {seen:?}, left {abandoned:#?}"
    );
    let (abandoned_documents, _) = leftovers(&db).await;
    assert!(
        abandoned_documents > 0,
        "a half-built generation has documents"
    );

    // After a restart every projection answers at the head (nothing acknowledged was lost) ...
    app.restart().await;
    let (head, listed) = until_answering_at_head(&app).await;
    assert!(head >= written + acknowledged as i64, "head {head}");
    // ... and the rebuilds the kill cut short go on from their checkpoints and take over: each
    // projection comes to answer from its newest generation, the killed one where there is one.
    let mut expected: BTreeMap<&str, i64> = BTreeMap::new();
    for p in listed.iter().filter(|p| p["active"] == true) {
        let name = p["name"].as_str().expect("a name");
        let name = names
            .iter()
            .copied()
            .find(|n| *n == name)
            .unwrap_or_else(|| panic!("an unexpected projection is listed: {p}"));
        expected.insert(name, p["generation"].as_i64().expect("a generation"));
    }
    for (name, generation) in abandoned.keys() {
        let slot = expected
            .iter_mut()
            .find(|(n, _)| **n == name.as_str())
            .unwrap_or_else(|| panic!("{name} is not answering: {listed:#?}"));
        *slot.1 = (*slot.1).max(*generation);
    }
    let resumed = abandoned
        .keys()
        .filter(|(name, generation)| expected.get(name.as_str()) == Some(generation))
        .count();
    assert!(
        resumed > 0,
        "a killed rebuild is to be resumed: {abandoned:#?}"
    );
    let head = until_only(&app, &expected).await;
    assert!(head >= written + acknowledged as i64, "head {head}");
    let fresh = ReadModels::fresh(&data_dir, head).await;
    ReadModels::of(&db)
        .await
        .assert_equal_to(&fresh, "after the restart");

    // A further rebuild of everything completes, retires what the kill left, and gives the same
    // read models.
    let known = db.generations().await.expect("the generations");
    let mut rebuilt = BTreeMap::new();
    for name in &names {
        let generation = rebuild_on_server(&app, name).await;
        let newest = known
            .iter()
            .filter(|g| g.name == *name)
            .map(|g| g.generation)
            .max();
        assert!(
            Some(generation) > newest,
            "{name}: {generation} after {newest:?}"
        );
        rebuilt.insert(*name, generation);
    }
    assert_eq!(until_only(&app, &rebuilt).await, head);
    ReadModels::of(&db)
        .await
        .assert_equal_to(&fresh, "after a further rebuild");
    assert_eq!(
        leftovers(&db).await.0,
        0,
        "the promotions dropped the documents of every generation that does not answer"
    );

    // The server follows the new generations, and the trace index rows of generations that no
    // longer answer go with its next batch.
    app.register_district("重启后的街道").await;
    assert_eq!(until_only(&app, &rebuilt).await, head + 1);
    assert_eq!(leftovers(&db).await, (0, 0));
    eprintln!("done after {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kills_during_cli_rebuilds_with_the_server_stopped_and_beside_it_the_rebuilds_run_again_take_over_with_read_models_equal_to_a_fresh_rebuild(
) {
    let started = Instant::now();
    let mut app = spawn_app_sqlite().await;
    let data_dir = app.data_dir.path().to_owned();
    app.kill9().await;
    let (head, _) = write_history(&data_dir, 7_300, REBUILD_HISTORY).await;
    app.restart().await;
    assert_eq!(until_answering_at_head(&app).await.0, head);
    app.terminate();
    app.wait_exit(PATIENCE).await;
    let fresh = ReadModels::fresh(&data_dir, head).await;
    let db = ReadDb::open(&data_dir).await.expect("the read models");
    let answering = answering_rows(&db).await;
    ReadModels::of(&db)
        .await
        .assert_equal_to(&fresh, "before any rebuild");

    // 1. The server stopped: each rebuild killed half-way leaves a generation that does not
    // answer, and the answering one as it was.
    let killed = kill_cli_rebuilds_half_way(&data_dir, &db, head).await;
    eprintln!("killed {killed:?} after {:?}", started.elapsed());
    let rows = db.generations().await.expect("the generations");
    let (status_head, lines) = status(&data_dir).await;
    assert_eq!(status_head, head);
    for (name, generation) in &killed {
        let left = rows
            .iter()
            .find(|g| g.name == *name && g.generation == *generation)
            .expect("the killed generation stays");
        assert!(
            !left.active && left.state == "building" && left.position > 0 && left.position < head,
            "{left:?}"
        );
        let old = &answering[*name];
        let version = old.version.to_string();
        assert_eq!(
            lines_of(&lines, name),
            [
                &vec![
                    name.to_string(),
                    version.clone(),
                    old.generation.to_string(),
                    head.to_string(),
                    "0".to_owned(),
                    "live".to_owned(),
                ],
                &[
                    name.to_string(),
                    version,
                    generation.to_string(),
                    left.position.to_string(),
                    (head - left.position).to_string(),
                    "building".to_owned(),
                    "(not".to_owned(),
                    "answering".to_owned(),
                    "yet)".to_owned(),
                ]
                .to_vec(),
            ],
            "projections status after the kill"
        );
    }
    assert_eq!(
        answering_rows(&db).await,
        answering,
        "the answering generations did not move"
    );
    ReadModels::of(&db)
        .await
        .assert_equal_to(&fresh, "after rebuilds killed half-way");

    // Run again, each rebuild takes over, and the killed generations are gone.
    let reruns = killed.iter().map(|(name, generation)| {
        let (version, data_dir) = (answering[*name].version, &data_dir);
        async move { rebuild_with_cli(data_dir, name, generation + 1, version, head).await }
    });
    futures::future::join_all(reruns).await;
    let (_, lines) = status(&data_dir).await;
    for (name, generation) in &killed {
        assert_eq!(
            lines_of(&lines, name),
            [&vec![
                name.to_string(),
                answering[*name].version.to_string(),
                (generation + 1).to_string(),
                head.to_string(),
                "0".to_owned(),
                "live".to_owned(),
            ]],
            "projections status after the rebuilds ran again"
        );
    }
    ReadModels::of(&db)
        .await
        .assert_equal_to(&fresh, "after the rebuilds ran again");
    assert_eq!(
        leftovers(&db).await.0,
        0,
        "documents of retired generations"
    );

    // 2. Beside the running server, which follows the generations the CLI built.
    app.restart().await;
    let expected: BTreeMap<&str, i64> = killed.iter().map(|(n, g)| (*n, g + 1)).collect();
    assert_eq!(until_only(&app, &expected).await, head);
    let killed = kill_cli_rebuilds_half_way(&data_dir, &db, head).await;
    eprintln!(
        "killed {killed:?} beside the server after {:?}",
        started.elapsed()
    );
    app.assert_healthy().await;
    let (listed_head, listed) = listing(&app).await;
    assert_eq!(listed_head, head);
    for (name, generation) in &killed {
        let of_name: Vec<&Value> = listed.iter().filter(|p| p["name"] == *name).collect();
        assert_eq!(of_name.len(), 2, "{name}: {listed:#?}");
        assert!(
            of_name
                .iter()
                .any(|p| p["generation"] == expected[name] && answers_at(p, head)),
            "the server still answers {name} from generation {}: {listed:#?}",
            expected[name]
        );
        assert!(
            of_name.iter().any(|p| p["generation"] == *generation
                && p["active"] == false
                && p["state"] == "building"),
            "the killed generation {generation} of {name} is listed, not answering: {listed:#?}"
        );
    }
    ReadModels::of(&db)
        .await
        .assert_equal_to(&fresh, "beside the server, after rebuilds killed half-way");

    let reruns = killed.iter().map(|(name, generation)| {
        let (version, data_dir) = (answering[*name].version, &data_dir);
        async move { rebuild_with_cli(data_dir, name, generation + 1, version, head).await }
    });
    futures::future::join_all(reruns).await;
    let expected: BTreeMap<&str, i64> = killed.iter().map(|(n, g)| (*n, g + 1)).collect();
    assert_eq!(until_only(&app, &expected).await, head);
    ReadModels::of(&db)
        .await
        .assert_equal_to(&fresh, "beside the server, after the rebuilds ran again");
    assert_eq!(
        leftovers(&db).await.0,
        0,
        "documents of retired generations"
    );
    eprintln!("done after {:?}", started.elapsed());
}

/// The boot mark beside the read models of `app`, if any.
fn boot_mark(app: &TestApp) -> Option<String> {
    std::fs::read_to_string(
        app.data_dir
            .path()
            .join(projections::readdb::boot::MARK_FILE),
    )
    .ok()
    .map(|mark| mark.trim().to_owned())
}

/// A server on SQLite that took 60 commands of generator `seed`, its projections at the head.
async fn settled_server_with_history(seed: u64) -> (TestApp, i64) {
    let app = spawn_app_sqlite().await;
    let mut generator = Generator::new(seed, 1, 3, 10);
    for _ in 0..60 {
        let generated = generator.next_command();
        app.ok(generated.name, generated.body).await;
    }
    let head = settled(&app).await;
    (app, head)
}

/// A server writes its read models without syncs under this boot's mark; a SIGTERM syncs them
/// and removes the mark, so that a later boot of the machine trusts them as they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_syncs_the_read_models_and_removes_the_boot_mark() {
    let (mut app, head) = settled_server_with_history(7).await;
    let booted = projections::readdb::boot::current().expect("Linux says which boot this is");
    assert_eq!(boot_mark(&app), Some(booted), "the running server's mark");

    app.terminate();
    let status = app.wait_exit(PATIENCE).await;
    assert!(status.success(), "{status:?}; log:\n{}", app.log());
    assert_eq!(boot_mark(&app), None, "the mark after a clean stop");
    assert!(
        app.log().contains("lianxi stopped") && !app.log().contains("could not be synced"),
        "{}",
        app.log()
    );

    let stopped = ReadDb::open(app.data_dir.path())
        .await
        .expect("the read models");
    ReadModels::of(&stopped).await.assert_equal_to(
        &ReadModels::fresh(app.data_dir.path(), head).await,
        "after SIGTERM",
    );
}

/// Read models a server was writing unsynced when the machine stopped (its mark names an
/// earlier boot) are not trusted: the next server removes them and builds them again from the
/// log. A document planted in them shows whether they were reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_models_marked_by_an_earlier_boot_are_built_again_from_the_log() {
    let (mut app, head) = settled_server_with_history(8).await;
    app.kill9().await;
    // As the machine would have left it: this boot's mark, now an earlier boot's.
    assert!(boot_mark(&app).is_some(), "a killed server leaves its mark");
    let file = app
        .data_dir
        .path()
        .join(projections::readdb::READ_MODEL_FILE);
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", file.display()))
        .await
        .expect("the read-model file");
    sqlx::query(
        "INSERT INTO documents (projection, generation, kind, key, parent, doc) \
         SELECT name, generation, 'planted', 'torn', NULL, '{}' FROM projections \
         WHERE name = 'board' AND active = 1",
    )
    .execute(&mut conn)
    .await
    .expect("a planted document");
    conn.close().await.expect("closed");
    std::fs::write(
        app.data_dir
            .path()
            .join(projections::readdb::boot::MARK_FILE),
        "an-earlier-boot\n",
    )
    .expect("the mark of an earlier boot");

    app.restart().await;
    assert_eq!(settled(&app).await, head);
    assert!(
        app.log()
            .contains("they were removed and are built again from the log")
            && app.log().contains("an-earlier-boot"),
        "{}",
        app.log()
    );
    let rebuilt = ReadDb::open(app.data_dir.path())
        .await
        .expect("the read models");
    ReadModels::of(&rebuilt).await.assert_equal_to(
        &ReadModels::fresh(app.data_dir.path(), head).await,
        "after the discard",
    );
}

//! Rebuilds while the board answers: a new projector version is built from position 0 into a new
//! generation while the old one answers reads, then takes over; a rebuild beside a running
//! runner (the CLI's or the endpoint's) takes over and the runner follows the new generation.

mod backends;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use backends::{on_both_backends, Backend, Place};
use commands::{CommandHandler, CommandRequest, Principal, Role};
use domain::testing::generator::Generator;
use projections::collection::Store;
use projections::event::ProjectedEvent;
use projections::projectors::board::{self, BoardProjector};
use projections::readdb::ReadDb;
use projections::runner::{RunState, Runner};
use projections::{rebuild, Projector};
use serde_json::{json, Value};
use store::EventStore;
use uuid::Uuid;

const DISTRICT: Uuid = Uuid::from_u128(0xd1);
const COMMUNITY: Uuid = Uuid::from_u128(0xc1);
const WAIT: Duration = Duration::from_secs(20);

fn admin() -> Principal {
    Principal {
        actor_id: Uuid::from_u128(1),
        name: "rebuild test".into(),
        role: Role::Admin,
        scope: None,
    }
}

async fn send(handler: &CommandHandler, name: &str, body: Value) -> i64 {
    let command = domain::Command::parse(name, body.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("{name} {body}: {e:?}"));
    let outcome = handler
        .handle(CommandRequest {
            command,
            principal: admin(),
            request_hash: String::new(),
            idempotency_key: None,
            if_match: None,
            correlation_id: None,
            causation_id: None,
        })
        .await
        .unwrap_or_else(|e| panic!("{name} {body} refused: {e}"));
    outcome.position
}

fn at(day: u32) -> String {
    format!("2018-05-{day:02}T10:00:00+08:00")
}

/// A community with three units and `projects` launched projects, one activity each.
async fn history(handler: &CommandHandler, projects: u128) -> i64 {
    send(
        handler,
        "RegisterDistrict",
        json!({"district_id": DISTRICT, "name": "赵镇街道", "occurred_at": at(1)}),
    )
    .await;
    send(handler, "RegisterCommunity", json!({"community_id": COMMUNITY, "district_id": DISTRICT, "name": "沱源社区", "committee": "沱源社区党委", "occurred_at": at(1)})).await;
    for u in 1..=3u128 {
        let unit = Uuid::from_u128(0x100 + u);
        send(handler, "RegisterUnit", json!({"unit_id": unit, "district_id": DISTRICT, "name": format!("单位{u}"), "occurred_at": at(2)})).await;
        send(handler, "AdmitMemberUnit", json!({"community_id": COMMUNITY, "unit_id": unit, "kind": "jurisdiction", "occurred_at": at(2)})).await;
    }
    let mut position = 0;
    for p in 1..=projects {
        position = activity_on_new_project(handler, p).await;
    }
    position
}

async fn activity_on_new_project(handler: &CommandHandler, p: u128) -> i64 {
    let project = Uuid::from_u128(0x1000 + p);
    let unit = Uuid::from_u128(0x100 + 1 + p % 3);
    send(handler, "ProposeProject", json!({"project_id": project, "community_id": COMMUNITY, "title": format!("项目{p}"), "theme": "public_welfare", "occurred_at": at(3)})).await;
    send(
        handler,
        "ClaimProject",
        json!({"project_id": project, "unit_id": unit, "occurred_at": at(4)}),
    )
    .await;
    send(
        handler,
        "LaunchProject",
        json!({"project_id": project, "occurred_at": at(5)}),
    )
    .await;
    send(handler, "RecordActivity", json!({"project_id": project, "activity_id": Uuid::from_u128(0x2000 + p), "title": "活动", "participants": 10, "occurred_at": at(6)})).await
}

async fn board_json(db: &ReadDb) -> String {
    let as_of = chrono::DateTime::parse_from_rfc3339("2018-06-04T00:00:00+08:00")
        .expect("a time")
        .to_utc();
    let found = board::board(db, COMMUNITY, as_of)
        .await
        .expect("the board reads")
        .expect("the community has a board");
    serde_json::to_string(&found).expect("JSON")
}

/// Waits until `check` holds, polling.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A gate a projector waits at, and the test opens.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
    reached: AtomicBool,
}

impl Gate {
    /// Blocks the projector's thread until the gate opens. `block_in_place` hands the worker's
    /// other work to another thread first: a worker blocked outright may be the one that was
    /// to drive the runtime's I/O and timers next, and then nothing else runs (PostgreSQL's
    /// sockets and the test's polling sleeps both need them).
    fn wait(&self) {
        self.reached.store(true, Ordering::SeqCst);
        tokio::task::block_in_place(|| {
            let mut open = self.open.lock().expect("the gate's lock");
            while !*open {
                open = self.opened.wait(open).expect("the gate's lock");
            }
        });
    }

    fn release(&self) {
        *self.open.lock().expect("the gate's lock") = true;
        self.opened.notify_all();
    }
}

/// The board projector with another version number, stopping at the gate before applying the
/// event at `gate_at`: the code of a new release, caught in the middle of its rebuild.
struct NewRelease {
    inner: BoardProjector,
    version: u32,
    gate_at: i64,
    gate: Arc<Gate>,
}

impl Projector for NewRelease {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn version(&self) -> u32 {
        self.version
    }
    fn want(&mut self, event: &ProjectedEvent) {
        self.inner.want(event)
    }

    fn collections(&mut self) -> Vec<&mut dyn Store> {
        self.inner.collections()
    }
    fn apply(&mut self, event: &ProjectedEvent) -> Result<(), String> {
        if event.position == self.gate_at {
            self.gate.wait();
        }
        self.inner.apply(event)
    }
}

async fn open(place: &Place) -> (Arc<dyn EventStore>, ReadDb) {
    (place.store().await, place.read_db().await)
}

async fn board_row(db: &ReadDb) -> (i64, i64, String, bool) {
    let row = db
        .active(board::NAME)
        .await
        .expect("readable")
        .expect("an active board");
    (row.generation, row.version, row.state, row.active)
}

// Two workers (as every test here has): the projector blocks one of them at the gate, the test
// runs on the other.
async fn changes_a_projectors_version_and_reads_the_board_during_the_rebuild(backend: Backend) {
    let place = backend.place().await;
    let (store, db) = open(&place).await;
    let handler = CommandHandler::new(store.clone());
    let head = history(&handler, 30).await;

    // The current version runs and catches up, as a server of the old release would.
    let current = BoardProjector::default().version();
    let next = current + 1;
    let old = Runner::new(store.clone(), db.clone());
    let task = old.spawn(Box::new(BoardProjector::default()));
    assert_eq!(old.wait_for(board::NAME, head, WAIT).await, Some(head));
    let before = board_json(&db).await;
    task.abort();

    // The new release starts: the next version is built from position 0 into generation 2.
    let gate = Arc::new(Gate::default());
    let new = Runner::new(store.clone(), db.clone());
    let _task = new.spawn(Box::new(NewRelease {
        inner: BoardProjector::default(),
        version: next,
        gate_at: head / 2,
        gate: gate.clone(),
    }));
    until("the rebuild is half-way", || {
        let gate = gate.clone();
        async move { gate.reached.load(Ordering::SeqCst) }
    })
    .await;

    // During the rebuild: the old generation answers the board, whole; the new one is listed
    // as building and does not answer yet.
    assert_eq!(
        board_row(&db).await,
        (1, i64::from(current), "live".to_owned(), true)
    );
    assert_eq!(
        board_json(&db).await,
        before,
        "the old generation answers meanwhile"
    );
    let generations = db.generations().await.expect("readable");
    let building = generations
        .iter()
        .find(|g| g.generation == 2)
        .expect("generation 2 exists");
    assert_eq!(
        (building.version, building.active),
        (i64::from(next), false)
    );
    assert_eq!(building.state, "building");
    assert!(building.position < head, "half-way: {building:?}");

    gate.release();
    until("the next version has taken over", || {
        let db = db.clone();
        async move { board_row(&db).await.1 == i64::from(next) }
    })
    .await;
    assert_eq!(new.wait_for(board::NAME, head, WAIT).await, Some(head));
    assert_eq!(
        board_row(&db).await,
        (2, i64::from(next), "live".to_owned(), true)
    );
    assert_eq!(
        board_json(&db).await,
        before,
        "the new generation answers the same board"
    );
    let old_row = db
        .generation(board::NAME, 1)
        .await
        .expect("readable")
        .expect("kept");
    assert_eq!((old_row.state.as_str(), old_row.active), ("retired", false));
    let leftovers = db.count_documents(board::NAME, 1).await.expect("countable");
    assert_eq!(leftovers, 0, "the old generation's documents are dropped");

    // And it follows the log from there.
    let later = activity_on_new_project(&handler, 31).await;
    assert_eq!(new.wait_for(board::NAME, later, WAIT).await, Some(later));
    assert!(board_json(&db).await.contains("项目31"));
}

async fn a_rebuild_beside_a_running_runner_takes_over_and_the_runner_follows_it(backend: Backend) {
    let place = backend.place().await;
    let (store, db) = open(&place).await;
    let handler = CommandHandler::new(store.clone());
    let head = history(&handler, 10).await;
    let runner = Runner::new(store.clone(), db.clone());
    let _task = runner.spawn(Box::new(BoardProjector::default()));
    assert_eq!(runner.wait_for(board::NAME, head, WAIT).await, Some(head));
    let before = board_json(&db).await;

    // The CLI's (or the endpoint's) rebuild, while the runner follows generation 1. Commands
    // keep coming meanwhile.
    let positions = Arc::new(AtomicI64::new(0));
    let writer = {
        let handler = handler.clone();
        tokio::spawn(async move {
            let mut last = 0;
            for p in 11..=20 {
                last = activity_on_new_project(&handler, p).await;
            }
            last
        })
    };
    let mut projector = BoardProjector::default();
    let rebuilt = rebuild::rebuild(store.as_ref(), &db, &mut projector, |p| {
        positions.store(p, Ordering::SeqCst)
    })
    .await
    .expect("the rebuild finishes");
    assert_eq!(rebuilt.generation, 2);
    assert!(positions.load(Ordering::SeqCst) >= head);
    let last = writer.await.expect("the writer finishes");

    // The runner found its generation retired and follows generation 2 to the head.
    assert_eq!(runner.wait_for(board::NAME, last, WAIT).await, Some(last));
    // Live once it has found the end of the log again (it reports its checkpoint, building,
    // as soon as it resolves the new generation).
    until("the runner follows generation 2, live", || {
        let runner = runner.clone();
        async move {
            runner.progress(board::NAME).is_some_and(|rx| {
                let progress = rx.borrow();
                progress.generation == 2
                    && progress.position == last
                    && progress.state == RunState::Live
            })
        }
    })
    .await;
    let (generation, _, state, active) = board_row(&db).await;
    assert_eq!((generation, state.as_str(), active), (2, "live", true));
    let after = board_json(&db).await;
    assert!(
        after.contains("项目20"),
        "events after the take-over are projected"
    );

    // What the rebuilt generation holds equals a fresh build of the same log.
    let fresh = backend.fresh_read_db().await;
    rebuild::rebuild(
        store.as_ref(),
        &fresh,
        &mut BoardProjector::default(),
        |_| {},
    )
    .await
    .expect("a fresh build");
    assert_eq!(after, board_json(&fresh).await);
    assert_ne!(after, before);
}

async fn a_new_generation_does_not_take_over_behind_the_one_that_answers(backend: Backend) {
    let place = backend.place().await;
    let (store, db) = open(&place).await;
    let handler = CommandHandler::new(store.clone());
    let head = history(&handler, 2).await;
    let mut live = BoardProjector::default();
    rebuild::rebuild(store.as_ref(), &db, &mut live, |_| {})
        .await
        .expect("generation 1");
    let mut behind = BoardProjector::default();
    let fresh = rebuild::start(&db, &mut behind)
        .await
        .expect("generation 2");
    assert!(!fresh.active);
    assert!(!db
        .promote_if_caught_up(board::NAME, fresh.generation)
        .await
        .expect("decided"));
    assert_eq!(board_row(&db).await.0, 1, "generation 1 still answers");
    let done = rebuild::build(store.as_ref(), &db, &mut behind, &fresh, |_| {})
        .await
        .expect("built");
    assert_eq!((done.generation, done.position), (2, head));
    assert_eq!(board_row(&db).await.0, 2);
}

/// A small history with the board projector following it live, and the business time the
/// boards are read at.
struct LiveBoard {
    _place: Place,
    store: Arc<dyn EventStore>,
    db: ReadDb,
    handler: CommandHandler,
    runner: Runner,
    _task: tokio::task::JoinHandle<()>,
    as_of: chrono::DateTime<chrono::Utc>,
}

async fn live_board(backend: Backend) -> LiveBoard {
    let place = backend.place().await;
    let (store, db) = open(&place).await;
    let handler = CommandHandler::new(store.clone());
    history(&handler, 3).await;
    let runner = Runner::new(store.clone(), db.clone());
    let task = runner.spawn(Box::new(BoardProjector::default()));
    let as_of = chrono::DateTime::parse_from_rfc3339("2018-06-04T00:00:00+08:00")
        .expect("a time")
        .to_utc();
    LiveBoard {
        _place: place,
        store,
        db,
        handler,
        runner,
        _task: task,
        as_of,
    }
}

async fn a_cached_board_is_the_board_until_its_community_changes_and_then_the_new_one(
    backend: Backend,
) {
    let LiveBoard {
        _place,
        store,
        db,
        handler,
        runner,
        _task,
        as_of,
    } = live_board(backend).await;
    let cache = board::BoardCache::default();
    let cached = |generation: i64| {
        let (db, cache) = (&db, &cache);
        async move {
            let found = board::board_cached(db, COMMUNITY, as_of, cache, generation)
                .await
                .expect("the board reads")
                .expect("a board");
            serde_json::to_string(&found).expect("JSON")
        }
    };
    let head = store.head().await.expect("head");
    runner.wait_for(board::NAME, head, WAIT).await;
    let generation = board_row(&db).await.0;

    // Read twice (the second from the cache): both are the board.
    let first = cached(generation).await;
    assert_eq!(first, board_json(&db).await);
    assert_eq!(cached(generation).await, first);

    // An event of the community: the next read shows it.
    let reached = activity_on_new_project(&handler, 9).await;
    runner.wait_for(board::NAME, reached, WAIT).await;
    let after = cached(generation).await;
    assert_ne!(after, first, "the new project is on the board");
    assert!(after.contains("项目9"), "{after}");
    assert_eq!(after, board_json(&db).await);

    // Another generation answering is never served rows cached for the previous one.
    let other = cached(generation + 1).await;
    assert_eq!(other, after);
}

async fn a_rendered_board_is_served_again_until_its_community_its_generation_or_the_second_changes(
    backend: Backend,
) {
    let LiveBoard {
        _place,
        store,
        db,
        handler,
        runner,
        _task,
        as_of,
    } = live_board(backend).await;
    let cache = board::BoardCache::default();
    let rendered = |generation: i64, as_of: chrono::DateTime<chrono::Utc>| {
        let (db, cache, runner) = (&db, &cache, &runner);
        async move {
            let written = runner
                .wait_for(board::NAME, 0, WAIT)
                .await
                .expect("running");
            board::board_rendered(db, COMMUNITY, as_of, cache, generation, written)
                .await
                .expect("the board reads")
                .expect("a board")
        }
    };
    let text =
        |board: &board::RenderedBoard| String::from_utf8(board.json.to_vec()).expect("UTF-8");
    let head = store.head().await.expect("head");
    runner.wait_for(board::NAME, head, WAIT).await;
    let generation = board_row(&db).await.0;

    let first = rendered(generation, as_of).await;
    assert_eq!(text(&first), board_json(&db).await);
    assert!(
        Arc::ptr_eq(&first, &rendered(generation, as_of).await),
        "a second read is served the same rendering"
    );
    let a_moment_later = rendered(generation, as_of + chrono::Duration::milliseconds(500)).await;
    assert!(
        Arc::ptr_eq(&first, &a_moment_later),
        "within the same second"
    );

    // Another second or another generation renders again; to the same bytes here, so the
    // rendering kept (with its gzip, made once) is the one before.
    let gzip = first.gzip().expect("compressed").clone();
    let from_memory = cache.unchanged_reads();
    let next_second = rendered(generation, as_of + chrono::Duration::seconds(1)).await;
    assert_eq!(cache.unchanged_reads(), from_memory, "rendered again");
    assert!(Arc::ptr_eq(&first, &next_second), "the same bytes: kept");
    let other = rendered(generation + 1, as_of).await;
    assert_eq!(cache.unchanged_reads(), from_memory, "rendered again");
    assert!(Arc::ptr_eq(&first, &other), "the same bytes: kept");
    assert_eq!(other.gzip().map(|g| g.as_ptr()), Some(gzip.as_ptr()));

    // An event of the community: the next read shows it.
    let reached = activity_on_new_project(&handler, 9).await;
    runner.wait_for(board::NAME, reached, WAIT).await;
    let after = rendered(generation, as_of).await;
    assert!(text(&after).contains("项目9"), "{}", text(&after));
    assert_eq!(text(&after), board_json(&db).await);
    assert_eq!(after.district_id, first.district_id);
}

/// A board read as of now while its community's change is being rendered: the rendering before
/// answers at once, as of the position it was current at, and the new one (made in the
/// background) answers once made; a reader asking for the new position gets the new board.
async fn a_changed_board_is_answered_by_the_rendering_before_while_the_new_one_is_made(
    backend: Backend,
) {
    let LiveBoard {
        _place,
        store,
        db,
        handler,
        runner,
        _task,
        as_of: _,
    } = live_board(backend).await;
    let cache = Arc::new(board::BoardCache::default());
    let head = store.head().await.expect("head");
    runner.wait_for(board::NAME, head, WAIT).await;
    let generation = board_row(&db).await.0;
    let served = |min_position: i64| {
        let (db, cache, runner) = (&db, &cache, &runner);
        async move {
            let written = runner
                .wait_for(board::NAME, min_position, WAIT)
                .await
                .expect("running");
            board::board_served(db, COMMUNITY, cache, generation, written, min_position)
                .await
                .expect("the board reads")
                .expect("a board")
        }
    };
    let text =
        |board: &board::RenderedBoard| String::from_utf8(board.json.to_vec()).expect("UTF-8");

    let (first, first_at) = served(0).await;
    assert!(first_at >= head, "{first_at} < {head}");
    assert!(!text(&first).contains("项目9"));

    let reached = activity_on_new_project(&handler, 9).await;
    runner.wait_for(board::NAME, reached, WAIT).await;
    // Unless a second has passed since the first read (then it renders at once), the answer
    // is the rendering before, as of where it was current, and not the position reached.
    let (previous, previous_at) = served(0).await;
    if Arc::ptr_eq(&previous, &first) {
        assert!(previous_at >= first_at && previous_at < reached);
    } else {
        assert!(text(&previous).contains("项目9"));
        assert!(previous_at >= reached);
    }
    // The new rendering comes from the background.
    let started = std::time::Instant::now();
    let (fresh, fresh_at) = loop {
        let (board, at) = served(0).await;
        if text(&board).contains("项目9") {
            break (board, at);
        }
        assert!(
            started.elapsed() < WAIT,
            "the new rendering never came: still as of {at}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };
    assert!(fresh_at >= reached, "{fresh_at} < {reached}");

    // A reader asking for the new position is never answered with the board before it.
    let _ = activity_on_new_project(&handler, 10).await;
    let newest = store.head().await.expect("head");
    let (wanted, wanted_at) = served(newest).await;
    assert!(wanted_at >= newest);
    assert!(text(&wanted).contains("项目10"), "{}", text(&wanted));
    assert!(!Arc::ptr_eq(&wanted, &fresh));
}

/// Boards read through the cache while a random history goes on, a few commands at a time,
/// equal boards read whole after every step: rows are patched with those the new events
/// changed, and read whole again only when a community had more events than its feed shows.
async fn cached_boards_follow_a_random_history_patched_with_the_rows_its_events_changed(
    backend: Backend,
) {
    let place = backend.place().await;
    let (store, db) = open(&place).await;
    let handler = CommandHandler::new(store.clone());
    let runner = Runner::new(store.clone(), db.clone());
    // A record of changes of this test's own: the other tests here build the same communities.
    let changes = Arc::new(board::BoardChanges::default());
    let _task = runner.spawn(Box::new(BoardProjector::recording_to(Arc::clone(&changes))));
    let cache = board::BoardCache::following(changes);
    let as_of = chrono::Utc::now();
    let mut generator = Generator::new(11, 1, 2, 6);
    let mut second_reads = 0;
    let mut communities = Vec::new();
    let mut steps = 0;
    let mut n = 0;
    while n < 700 {
        // Steps of 1 to 7 commands, and once a stretch of 150 without reading (longer than a
        // community's feed).
        let step = if steps == 40 { 150 } else { 1 + n % 7 };
        for _ in 0..step {
            let generated = generator.next_command();
            if generated.name == "RegisterCommunity" {
                communities.push(
                    serde_json::from_value::<Uuid>(generated.body["community_id"].clone())
                        .expect("a community id"),
                );
            }
            let command = generated.command().expect("generated commands parse");
            handler
                .handle(CommandRequest {
                    command,
                    principal: admin(),
                    request_hash: n.to_string(),
                    idempotency_key: None,
                    if_match: None,
                    correlation_id: None,
                    causation_id: None,
                })
                .await
                .unwrap_or_else(|e| panic!("command {n} {generated:?} refused: {e}"));
            n += 1;
        }
        let head = store.head().await.expect("head");
        let written = runner
            .wait_for(board::NAME, head, WAIT)
            .await
            .expect("running");
        let generation = board_row(&db).await.0;
        for community in &communities {
            let cached = board::board_cached(&db, *community, as_of, &cache, generation)
                .await
                .expect("the board reads");
            let whole = board::board(&db, *community, as_of)
                .await
                .expect("the board reads");
            assert_eq!(cached, whole, "community {community} after {n} commands");
            // Rendered, and read again: the second from memory, both the board.
            let whole = board::RenderedBoard::render(&whole.expect("a board")).expect("renders");
            for _ in 0..2 {
                let rendered =
                    board::board_rendered(&db, *community, as_of, &cache, generation, written)
                        .await
                        .expect("the board reads")
                        .expect("a board");
                assert_eq!(*rendered, whole, "community {community} after {n} commands");
            }
            second_reads += 1;
        }
        steps += 1;
    }
    let unchanged = cache.unchanged_reads();
    assert!(
        unchanged >= second_reads && unchanged < 2 * second_reads,
        "{unchanged} of {} rendered reads were served from memory: at least every second read \
         of a board, never all of the first",
        2 * second_reads
    );
    let (whole, patched) = cache.row_reads();
    assert!(
        patched > whole && whole > communities.len() as u64,
        "{steps} steps: rows read whole {whole} times (each of {} communities once, then after \
         the long stretch), patched {patched} times",
        communities.len()
    );
}

/// A board projector that starts from a checkpoint another process wrote (several servers on
/// one database race for each batch) never applied the events before it: the boards this
/// process rendered earlier must not be served as if nothing had changed.
async fn a_board_projector_resumed_past_events_it_never_applied_leaves_no_board_stale(
    backend: Backend,
) {
    let place = backend.place().await;
    let (store, db) = open(&place).await;
    let handler = CommandHandler::new(store.clone());
    history(&handler, 3).await;
    // Another process's projector, with a record of its own.
    let elsewhere = Runner::new(store.clone(), db.clone());
    let other_record = Arc::new(board::BoardChanges::default());
    let _elsewhere = elsewhere.spawn(Box::new(BoardProjector::recording_to(other_record)));
    let head = store.head().await.expect("head");
    let reached = elsewhere
        .wait_for(board::NAME, head, WAIT)
        .await
        .expect("running");
    let generation = board_row(&db).await.0;
    let here = Arc::new(board::BoardChanges::default());
    let cache = board::BoardCache::following(Arc::clone(&here));
    let as_of = chrono::Utc::now();
    let read = |position: i64| {
        let (db, cache) = (&db, &cache);
        async move {
            board::board_rendered(db, COMMUNITY, as_of, cache, generation, position)
                .await
                .expect("the board reads")
                .expect("a board")
        }
    };
    let before = read(reached).await;

    // The community changes, applied and written by the other process alone; then this
    // process's projector starts from its checkpoint.
    let moved = activity_on_new_project(&handler, 9).await;
    elsewhere.wait_for(board::NAME, moved, WAIT).await;
    let runner = Runner::new(store.clone(), db.clone());
    let _task = runner.spawn(Box::new(BoardProjector::recording_to(here)));
    let written = runner
        .wait_for(board::NAME, moved, WAIT)
        .await
        .expect("running");
    assert!(written >= moved);
    let after = read(written).await;
    assert!(!Arc::ptr_eq(&before, &after), "rendered again");
    let text = String::from_utf8(after.json.to_vec()).expect("UTF-8");
    assert!(text.contains("项目9"), "{text}");
    assert_eq!(text, board_json(&db).await);
}

on_both_backends!(
    a_board_projector_resumed_past_events_it_never_applied_leaves_no_board_stale,
    changes_a_projectors_version_and_reads_the_board_during_the_rebuild,
    a_rebuild_beside_a_running_runner_takes_over_and_the_runner_follows_it,
    a_new_generation_does_not_take_over_behind_the_one_that_answers,
    a_cached_board_is_the_board_until_its_community_changes_and_then_the_new_one,
    a_rendered_board_is_served_again_until_its_community_its_generation_or_the_second_changes,
    a_changed_board_is_answered_by_the_rendering_before_while_the_new_one_is_made,
    cached_boards_follow_a_random_history_patched_with_the_rows_its_events_changed,
);

//! Rebuild equals live: a random valid history (the seeded generator, through the real command
//! handler) projected live, then rebuilt from scratch, gives byte-for-byte the same documents;
//! and a replay up to a position equals the read model built incrementally to that position.

mod backends;

use std::sync::Arc;
use std::time::Duration;

use backends::{on_both_backends, Backend};
use commands::{CommandHandler, CommandRequest, Principal, Role};
use domain::testing::generator::Generator;
use projections::collection::Namespace;
use projections::readdb::ReadDb;
use projections::runner::{
    build_into, catch_up, catch_up_lanes, catch_up_lanes_with, Lane, Limits, Runner,
};
use store::EventStore;
use uuid::Uuid;

fn admin() -> Principal {
    Principal {
        actor_id: Uuid::from_u128(1),
        name: "generator".into(),
        role: Role::Admin,
        scope: None,
    }
}

async fn write_history(store: Arc<dyn EventStore>, seed: u64, commands: usize) {
    let handler = CommandHandler::new(store);
    let mut generator = Generator::new(seed, 2, 3, 8);
    for n in 0..commands {
        let generated = generator.next_command();
        let command = generated.command().expect("generated commands parse");
        let outcome = handler
            .handle(CommandRequest {
                command,
                principal: admin(),
                request_hash: format!("{n}"),
                idempotency_key: None,
                if_match: None,
                correlation_id: None,
                causation_id: None,
            })
            .await;
        assert!(
            outcome.is_ok(),
            "command {n} {generated:?} failed: {outcome:?}"
        );
    }
}

async fn dump(db: &ReadDb) -> Vec<projections::readdb::DocumentRow> {
    db.dump_active().await.expect("documents readable")
}

/// Every projector built from scratch into a fresh read-model database of `backend`.
async fn build_from_scratch(
    backend: Backend,
    store: &dyn EventStore,
    until: Option<i64>,
    step: usize,
) -> ReadDb {
    let db = backend.fresh_read_db().await;
    build_into(store, &db, until, step)
        .await
        .expect("a fresh build");
    db
}

/// Builds to `until` in steps of `step` events, with new projector values for every step.
async fn build_with_restarts(
    backend: Backend,
    store: &dyn EventStore,
    until: i64,
    step: i64,
) -> ReadDb {
    let db = backend.fresh_read_db().await;
    let mut generations = Vec::new();
    for projector in projections::projectors::all() {
        let row = db
            .create_generation(projector.name(), projector.version())
            .await
            .expect("generation");
        generations.push((projector.name(), row.generation));
    }
    let mut position = 0;
    while position < until {
        let next = (position + step).min(until);
        for (mut projector, (name, generation)) in
            projections::projectors::all().into_iter().zip(&generations)
        {
            let ns = Namespace {
                projection: name,
                generation: *generation,
            };
            catch_up(
                store,
                &db,
                projector.as_mut(),
                &ns,
                position,
                Some(next),
                |_| {},
            )
            .await
            .expect("catch up");
        }
        position = next;
    }
    for (name, generation) in generations {
        db.promote(name, generation).await.expect("promote");
    }
    db
}

async fn a_rebuild_from_scratch_equals_the_live_read_models(backend: Backend) {
    let place = backend.place().await;
    let store = place.store().await;
    let live_db = place.read_db().await;
    let runner = Runner::new(store.clone(), live_db.clone());
    let names: Vec<&'static str> = projections::projectors::all()
        .iter()
        .map(|p| p.name())
        .collect();
    for projector in projections::projectors::all() {
        runner.spawn(projector);
    }
    // Commands flow while the projectors run live.
    write_history(store.clone(), 42, 1_500).await;
    let head = store.head().await.expect("head");
    for name in &names {
        let reached = runner
            .wait_for(name, head, Duration::from_secs(30))
            .await
            .expect("projector runs");
        assert_eq!(reached, head, "{name} caught up");
    }
    let live = dump(&live_db).await;
    assert!(!live.is_empty());

    let rebuilt = build_from_scratch(backend, store.as_ref(), None, 2_000).await;
    let rebuilt = dump(&rebuilt).await;
    assert_eq!(live.len(), rebuilt.len(), "same documents");
    for (a, b) in live.iter().zip(&rebuilt) {
        assert_eq!(a, b);
    }
}

async fn a_replay_to_a_position_equals_the_read_model_built_step_by_step_to_it(backend: Backend) {
    let place = backend.place().await;
    let store = place.store().await;
    write_history(store.clone(), 7, 800).await;
    let head = store.head().await.expect("head");
    let middle = head / 2 + 3;
    // One big replay to `middle`…
    let replayed =
        dump(&build_from_scratch(backend, store.as_ref(), Some(middle), 5_000).await).await;
    // …against small steps with a fresh projector each time (nothing cached, as after a
    // restart), stopped at `middle`: a projector that reads a document it did not `want`
    // shows up here.
    let stepped = dump(&build_with_restarts(backend, store.as_ref(), middle, 7).await).await;
    assert_eq!(replayed, stepped);
    // And the whole log differs from the middle: the comparison can fail.
    let whole = dump(&build_from_scratch(backend, store.as_ref(), None, 5_000).await).await;
    assert_ne!(replayed, whole);
}

/// Every projector built from scratch in pages of `page` events, within `limits`.
async fn build_within(
    backend: Backend,
    store: &dyn EventStore,
    page: usize,
    limits: Limits,
) -> ReadDb {
    let db = backend.fresh_read_db().await;
    let mut projectors = projections::projectors::all();
    let mut lanes = Vec::new();
    for projector in projectors.iter_mut() {
        let row = db
            .create_generation(projector.name(), projector.version())
            .await
            .expect("generation");
        let ns = Namespace {
            projection: projector.name(),
            generation: row.generation,
        };
        lanes.push(Lane::new(projector.as_mut(), ns, 0));
    }
    catch_up_lanes_with(store, &db, &mut lanes, None, page, limits, |_, _| {})
        .await
        .expect("the build");
    for lane in &lanes {
        assert!(lane.stopped.is_none());
        db.promote(lane.ns.projection, lane.ns.generation)
            .await
            .expect("promote");
    }
    db
}

async fn read_models_over_the_memory_budget_are_the_same_as_those_held_whole(backend: Backend) {
    let place = backend.place().await;
    let store = place.store().await;
    write_history(store.clone(), 23, 700).await;
    let whole = dump(&build_from_scratch(backend, store.as_ref(), None, 2_000).await).await;
    // A budget of one byte: after every write (every 40 events) every clean document is let
    // go, and each page of 25 events loads what it names, through references it finds in
    // what it loaded. A budget of 8 KB keeps a part, so hits and misses mix.
    for memory in [1, 8 << 10] {
        let limits = Limits {
            write_every: 40,
            write_dirty: usize::MAX,
            memory,
        };
        let within = dump(&build_within(backend, store.as_ref(), 25, limits).await).await;
        assert_eq!(within.len(), whole.len(), "budget {memory}: same documents");
        for (a, b) in within.iter().zip(&whole) {
            assert_eq!(a, b, "budget {memory}");
        }
    }
}

async fn a_catch_up_holds_full_pages_in_memory_and_writes_them_once_with_the_same_result(
    backend: Backend,
) {
    let place = backend.place().await;
    let store = place.store().await;
    write_history(store.clone(), 11, 600).await;
    let head = store.head().await.expect("head");

    // Every projector in small full pages: far below the write thresholds, so nothing is
    // written until the log ends.
    let db = backend.fresh_read_db().await;
    let mut projectors = projections::projectors::all();
    let mut namespaces = Vec::new();
    for projector in &projectors {
        let row = db
            .create_generation(projector.name(), projector.version())
            .await
            .expect("generation");
        namespaces.push(Namespace {
            projection: projector.name(),
            generation: row.generation,
        });
    }
    let mut lanes: Vec<Lane<'_>> = projectors
        .iter_mut()
        .zip(namespaces)
        .map(|(projector, ns)| Lane::new(projector.as_mut(), ns, 0))
        .collect();
    let mut seen = Vec::new();
    catch_up_lanes(store.as_ref(), &db, &mut lanes, None, 50, |lanes, step| {
        seen.push((step.full, lanes[0].position, lanes[0].durable));
    })
    .await
    .expect("catch up");
    for lane in &lanes {
        assert!(lane.stopped.is_none());
        assert_eq!(
            (lane.position, lane.durable),
            (head, head),
            "all written at the end"
        );
    }
    let (held, last) = seen.split_at(seen.len() - 1);
    assert!(held.len() > 10, "many pages: {}", seen.len());
    assert!(
        held.iter()
            .all(|(full, position, durable)| *full && *position > 0 && *durable == 0),
        "full pages are applied, not written: {held:?}"
    );
    assert_eq!(last[0].1, head);
    for lane in &lanes {
        db.promote(lane.ns.projection, lane.ns.generation)
            .await
            .expect("promote");
    }
    drop(lanes);
    let held_then_written = dump(&db).await;

    // The same log written page by page.
    let written_each_page =
        dump(&build_from_scratch(backend, store.as_ref(), None, 2_000).await).await;
    assert!(!written_each_page.is_empty());
    assert_eq!(held_then_written, written_each_page);
}

async fn a_second_builder_of_one_generation_is_refused_instead_of_counting_events_twice(
    backend: Backend,
) {
    let place = backend.place().await;
    let store = place.store().await;
    write_history(store.clone(), 5, 300).await;
    let head = store.head().await.expect("head");
    let middle = head / 2;
    let db = backend.fresh_read_db().await;
    let mut first = projections::rebuild::projector("district-stats").expect("registered");
    let row = db
        .create_generation(first.name(), first.version())
        .await
        .expect("generation");
    let ns = Namespace {
        projection: first.name(),
        generation: row.generation,
    };
    let reached = catch_up(
        store.as_ref(),
        &db,
        first.as_mut(),
        &ns,
        0,
        Some(middle),
        |_| {},
    )
    .await
    .expect("the first builder");
    assert_eq!(reached, middle);
    let before = dump(&db).await;

    // A second builder that believes the generation is still at 0.
    let mut second = projections::rebuild::projector("district-stats").expect("registered");
    let refused = catch_up(store.as_ref(), &db, second.as_mut(), &ns, 0, None, |_| {}).await;
    assert!(
        matches!(refused, Err(projections::ProjectionError::Retired)),
        "{refused:?}"
    );
    assert_eq!(
        dump(&db).await,
        before,
        "nothing of the second builder was written"
    );
    let row = db
        .generation(ns.projection, ns.generation)
        .await
        .expect("read")
        .expect("the generation");
    assert_eq!(row.position, middle);
}

async fn an_interrupted_rebuild_is_found_and_resumed_to_the_read_model_of_a_fresh_build(
    backend: Backend,
) {
    let place = backend.place().await;
    let store = place.store().await;
    write_history(store.clone(), 9, 400).await;
    let head = store.head().await.expect("head");
    let db = place.read_db().await;
    // Every projection built and answering…
    for mut projector in projections::projectors::all() {
        let row = projections::rebuild::start(&db, projector.as_mut())
            .await
            .expect("generation");
        projections::rebuild::build(store.as_ref(), &db, projector.as_mut(), &row, |_| {})
            .await
            .expect("build");
    }
    assert!(projections::rebuild::interrupted(&db)
        .await
        .expect("read")
        .is_empty());
    // …then a rebuild of the board that stopped half-way.
    let mut board = projections::rebuild::projector("board").expect("registered");
    let fresh = projections::rebuild::start(&db, board.as_mut())
        .await
        .expect("generation");
    let ns = Namespace {
        projection: "board",
        generation: fresh.generation,
    };
    catch_up(
        store.as_ref(),
        &db,
        board.as_mut(),
        &ns,
        0,
        Some(head / 2),
        |_| {},
    )
    .await
    .expect("half a build");
    drop(board);

    let found = projections::rebuild::interrupted(&db).await.expect("read");
    assert_eq!(found.len(), 1, "only the board's rebuild was interrupted");
    let (mut projector, generation) = found.into_iter().next().expect("one");
    assert_eq!(
        (projector.name(), generation.generation, generation.position),
        ("board", fresh.generation, head / 2)
    );
    let done =
        projections::rebuild::build(store.as_ref(), &db, projector.as_mut(), &generation, |_| {})
            .await
            .expect("the resumed build");
    assert_eq!((done.generation, done.position), (fresh.generation, head));
    let active = db.active("board").await.expect("read").expect("active");
    assert_eq!(active.generation, fresh.generation);
    assert!(projections::rebuild::interrupted(&db)
        .await
        .expect("read")
        .is_empty());
    assert_eq!(
        dump(&db).await,
        dump(&build_from_scratch(backend, store.as_ref(), None, 2_000).await).await
    );
}

/// What a server runs: every projector on a thread of its own with a current-thread runtime,
/// on a read-model pool (and a log) opened on the test's runtime. It follows the log as it is
/// written, and its read models, trace index included, equal a fresh build's.
async fn projectors_on_a_thread_of_their_own_follow_the_log_on_pools_opened_elsewhere(
    backend: Backend,
) {
    let place = backend.place().await;
    let store = place.store().await;
    let live_db = place.read_db().await;
    let runner = Runner::new(store.clone(), live_db.clone());
    // The thread ends with the process, as in a server.
    runner
        .spawn_group_on_thread(projections::projectors::all())
        .expect("the projections thread");
    write_history(store.clone(), 3, 400).await;
    let head = store.head().await.expect("head");
    for projector in projections::projectors::all() {
        let name = projector.name();
        let reached = runner.wait_for(name, head, Duration::from_secs(30)).await;
        assert_eq!(reached, Some(head), "{name} caught up");
    }
    let fresh = build_from_scratch(backend, store.as_ref(), None, 2_000).await;
    let live = dump(&live_db).await;
    assert!(!live.is_empty());
    assert_eq!(live, dump(&fresh).await);
    assert_eq!(
        live_db.dump_active_trace_index().await.expect("the index"),
        fresh.dump_active_trace_index().await.expect("the index")
    );
}

on_both_backends!(
    projectors_on_a_thread_of_their_own_follow_the_log_on_pools_opened_elsewhere,
    a_rebuild_from_scratch_equals_the_live_read_models,
    a_replay_to_a_position_equals_the_read_model_built_step_by_step_to_it,
    a_catch_up_holds_full_pages_in_memory_and_writes_them_once_with_the_same_result,
    read_models_over_the_memory_budget_are_the_same_as_those_held_whole,
    a_second_builder_of_one_generation_is_refused_instead_of_counting_events_twice,
    an_interrupted_rebuild_is_found_and_resumed_to_the_read_model_of_a_fresh_build,
);

//! The trace read model over a hand-made history written through the real command handler:
//! which entities each event concerns (the index), the entries and their summaries, scopes,
//! time bounds, and the clean-up of a retired generation's index rows.

mod backends;

use std::collections::BTreeMap;
use std::sync::Arc;

use backends::{on_both_backends, Backend, Place};
use commands::{CommandHandler, CommandRequest, Principal, Role};
use projections::collection::Namespace;
use projections::projectors::trace::{self, Subject, TraceError, TraceQuery, Within};
use projections::readdb::ReadDb;
use projections::runner::catch_up;
use projections::Projector;
use serde_json::{json, Value};
use store::EventStore;
use uuid::Uuid;

const DISTRICT_A: Uuid = Uuid::from_u128(0xa);
const DISTRICT_B: Uuid = Uuid::from_u128(0xb);
const SANJIANG: Uuid = Uuid::from_u128(0xc1);
const TUOYUAN: Uuid = Uuid::from_u128(0xc2);
const ELSEWHERE: Uuid = Uuid::from_u128(0xc3);
const MARKET: Uuid = Uuid::from_u128(0x01);
const FEDERATION: Uuid = Uuid::from_u128(0x02);
const FAR_UNIT: Uuid = Uuid::from_u128(0x03);
const MEETING: Uuid = Uuid::from_u128(0x3e);
const VACCINATION: Uuid = Uuid::from_u128(0x91);
const GARDEN: Uuid = Uuid::from_u128(0x92);
const COURTYARD: Uuid = Uuid::from_u128(0x7e);

const ADMIN: Uuid = Uuid::from_u128(0xad);
const SECRETARY: Uuid = Uuid::from_u128(0x5e);
const MARKET_REP: Uuid = Uuid::from_u128(0x71);
const FEDERATION_REP: Uuid = Uuid::from_u128(0x72);

/// Readable names for the fixed ids, for snapshots.
fn labels() -> BTreeMap<String, &'static str> {
    [
        (DISTRICT_A, "district_a"),
        (DISTRICT_B, "district_b"),
        (SANJIANG, "sanjiang"),
        (TUOYUAN, "tuoyuan"),
        (ELSEWHERE, "elsewhere"),
        (MARKET, "market"),
        (FEDERATION, "federation"),
        (FAR_UNIT, "far_unit"),
        (MEETING, "meeting"),
        (VACCINATION, "vaccination"),
        (GARDEN, "garden"),
        (COURTYARD, "courtyard"),
        (ADMIN, "admin"),
        (SECRETARY, "secretary"),
        (MARKET_REP, "market_rep"),
        (FEDERATION_REP, "federation_rep"),
    ]
    .into_iter()
    .map(|(id, label)| (id.to_string(), label))
    .collect()
}

fn label(text: &str) -> String {
    let mut out = text.to_owned();
    for (id, label) in labels() {
        out = out.replace(&id, label);
    }
    out
}

fn principal(actor: Uuid, name: &str, role: Role, scope: Option<Uuid>) -> Principal {
    Principal {
        actor_id: actor,
        name: name.to_owned(),
        role,
        scope,
    }
}

fn admin() -> Principal {
    principal(ADMIN, "街道管理员", Role::Admin, None)
}

struct History {
    store: Arc<dyn EventStore>,
    handler: CommandHandler,
    place: Place,
}

impl History {
    async fn new(backend: Backend) -> Self {
        let place = backend.place().await;
        let store = place.store().await;
        let handler = CommandHandler::new(store.clone());
        Self {
            store,
            handler,
            place,
        }
    }

    /// Sends a command that must be accepted; every body carries a fixed business time.
    async fn send(&self, who: &Principal, name: &str, mut body: Value, at: &str) -> i64 {
        body["occurred_at"] = json!(at);
        let bytes = serde_json::to_vec(&body).expect("JSON");
        let command = domain::Command::parse(name, &bytes).expect("a valid command");
        let outcome = self
            .handler
            .handle(CommandRequest {
                command,
                principal: who.clone(),
                request_hash: format!("{name}-{body}"),
                idempotency_key: None,
                if_match: None,
                correlation_id: None,
                causation_id: None,
            })
            .await;
        match outcome {
            Ok(outcome) => outcome.position,
            Err(error) => panic!("{name} {body} refused: {error:?}"),
        }
    }

    /// Two districts, three communities, three units; a meeting with attendance; a project
    /// claimed, withdrawn, claimed by another unit on its behalf, launched, with an activity;
    /// a cancelled project; a request raised and resolved.
    async fn write(&self) {
        let admin = admin();
        let secretary = principal(
            SECRETARY,
            "三江社区书记",
            Role::CommunitySecretary,
            Some(SANJIANG),
        );
        let market_rep = principal(MARKET_REP, "市场监管局联络员", Role::UnitRep, Some(MARKET));
        let federation_rep = principal(
            FEDERATION_REP,
            "残联联络员",
            Role::UnitRep,
            Some(FEDERATION),
        );
        let day = "2018-04-20T09:00:00+08:00";
        for (id, name) in [(DISTRICT_A, "赵镇街道"), (DISTRICT_B, "别的街道")] {
            self.send(
                &admin,
                "RegisterDistrict",
                json!({"district_id": id, "name": name}),
                day,
            )
            .await;
        }
        for (id, district, name) in [
            (SANJIANG, DISTRICT_A, "三江社区"),
            (TUOYUAN, DISTRICT_A, "沱源社区"),
            (ELSEWHERE, DISTRICT_B, "外区社区"),
        ] {
            self.send(
                &admin,
                "RegisterCommunity",
                json!({"community_id": id, "district_id": district, "name": name}),
                day,
            )
            .await;
        }
        for (id, district, name) in [
            (MARKET, DISTRICT_A, "县市场监管局"),
            (FEDERATION, DISTRICT_A, "县残联"),
            (FAR_UNIT, DISTRICT_B, "外区单位"),
        ] {
            self.send(
                &admin,
                "RegisterUnit",
                json!({"unit_id": id, "district_id": district, "name": name}),
                day,
            )
            .await;
        }
        for (community, unit) in [
            (SANJIANG, MARKET),
            (SANJIANG, FEDERATION),
            (TUOYUAN, MARKET),
            (ELSEWHERE, FAR_UNIT),
        ] {
            self.send(
                &admin,
                "AdmitMemberUnit",
                json!({"community_id": community, "unit_id": unit, "kind": "double_report"}),
                day,
            )
            .await;
        }
        let sits = "2018-04-24T14:30:00+08:00";
        self.send(
            &secretary,
            "ConveneMeeting",
            json!({"meeting_id": MEETING, "community_id": SANJIANG, "kind": "regular",
                   "title": "二季度联席会议", "agenda": ["认领项目"]}),
            sits,
        )
        .await;
        self.send(
            &secretary,
            "RecordAttendance",
            json!({"meeting_id": MEETING, "unit_ids": [MARKET, FEDERATION]}),
            sits,
        )
        .await;
        self.send(
            &secretary,
            "ProposeProject",
            json!({"project_id": VACCINATION, "community_id": SANJIANG,
                   "title": "4·25 预防接种宣传", "theme": "public_welfare"}),
            sits,
        )
        .await;
        self.send(
            &secretary,
            "ApproveProject",
            json!({"project_id": VACCINATION, "meeting_id": MEETING}),
            sits,
        )
        .await;
        self.send(
            &federation_rep,
            "ClaimProject",
            json!({"project_id": VACCINATION, "unit_id": FEDERATION}),
            sits,
        )
        .await;
        self.send(
            &federation_rep,
            "WithdrawClaim",
            json!({"project_id": VACCINATION, "reason": "人手不足"}),
            "2018-04-24T15:00:00+08:00",
        )
        .await;
        self.send(
            &secretary,
            "ClaimProject",
            json!({"project_id": VACCINATION, "unit_id": MARKET, "meeting_id": MEETING}),
            "2018-04-24T15:10:00+08:00",
        )
        .await;
        self.send(
            &secretary,
            "CloseMeeting",
            json!({"meeting_id": MEETING, "resolutions": ["市场监管局认领接种宣传"]}),
            "2018-04-24T16:00:00+08:00",
        )
        .await;
        self.send(
            &market_rep,
            "LaunchProject",
            json!({"project_id": VACCINATION}),
            "2018-04-25T08:00:00+08:00",
        )
        .await;
        self.send(
            &market_rep,
            "RecordActivity",
            json!({"project_id": VACCINATION, "activity_id": Uuid::from_u128(0xac),
                   "title": "4·25 宣传日", "participants": 300, "volunteers": 12}),
            "2018-04-25T10:00:00+08:00",
        )
        .await;
        self.send(
            &admin,
            "ProposeProject",
            json!({"project_id": GARDEN, "community_id": TUOYUAN,
                   "title": "小区绿化", "theme": "living_environment"}),
            "2018-05-02T09:00:00+08:00",
        )
        .await;
        self.send(
            &admin,
            "CancelProject",
            json!({"project_id": GARDEN, "reason": "并入其他项目"}),
            "2018-05-09T09:00:00+08:00",
        )
        .await;
        self.send(
            &market_rep,
            "RaiseRequest",
            json!({"request_id": COURTYARD, "community_id": SANJIANG, "unit_id": MARKET,
                   "title": "老旧院落整治"}),
            "2018-05-10T09:00:00+08:00",
        )
        .await;
        self.send(
            &secretary,
            "ResolveRequest",
            json!({"request_id": COURTYARD, "resolution": "已协调整治"}),
            "2018-05-20T09:00:00+08:00",
        )
        .await;
    }

    /// A read-model database with the trace projected up to the head.
    async fn project(&self) -> ReadDb {
        let db = self.place.backend().fresh_read_db().await;
        project_into(&db, self.store.as_ref()).await;
        db
    }
}

/// Creates a generation of the trace in `db` and builds it from the log, in small batches.
async fn project_into(db: &ReadDb, store: &dyn EventStore) -> i64 {
    let mut projector = trace::TraceProjector::default();
    let row = db
        .create_generation(projector.name(), projector.version())
        .await
        .expect("a generation");
    let ns = Namespace {
        projection: trace::NAME,
        generation: row.generation,
    };
    catch_up(store, db, &mut projector, &ns, 0, None, |_| {})
        .await
        .expect("the trace projects");
    row.generation
}

/// The index of one generation: entity (labelled) → positions.
async fn index(db: &ReadDb, generation: i64) -> BTreeMap<String, Vec<i64>> {
    let rows = db
        .trace_index_of(generation)
        .await
        .expect("the index reads");
    let mut index: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (entity, position) in rows {
        index.entry(label(&entity)).or_default().push(position);
    }
    index
}

fn query(subject: Subject, within: Within) -> TraceQuery {
    TraceQuery {
        subject,
        within,
        from: None,
        to: None,
    }
}

/// Entries as snapshots show them: ids labelled, recording times and hashes checked and hidden.
fn readable(trace: &trace::Trace) -> Value {
    let mut value = serde_json::to_value(trace).expect("JSON");
    for entry in value["entries"].as_array_mut().expect("entries") {
        let recorded = entry["recorded_at"].as_str().expect("recorded_at");
        assert!(
            chrono::DateTime::parse_from_rfc3339(recorded).is_ok(),
            "{recorded}"
        );
        entry["recorded_at"] = json!("[recorded_at]");
        let hash = entry["hash"].as_str().expect("hash");
        assert!(hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()));
        entry["hash"] = json!("[hash]");
    }
    serde_json::from_str(&label(&value.to_string())).expect("JSON")
}

async fn the_index_names_every_entity_an_event_concerns(backend: Backend) {
    let history = History::new(backend).await;
    history.write().await;
    let db = history.project().await;
    insta::assert_json_snapshot!("trace_index", index(&db, 1).await);
}

async fn a_projects_trace_is_its_lifecycle_in_log_order_with_the_stored_hashes(backend: Backend) {
    let history = History::new(backend).await;
    history.write().await;
    let db = history.project().await;
    let trace = trace::trace(
        &db,
        history.store.as_ref(),
        &query(Subject::Project(VACCINATION), Within::Everything),
    )
    .await
    .expect("a trace");
    let log = history.store.read_all(0, 1_000).await.expect("the log");
    for entry in &trace.entries {
        let stored = log
            .iter()
            .find(|e| e.position == entry.position)
            .expect("the entry's event is in the log");
        assert_eq!(entry.hash, stored.hash);
        assert_eq!(entry.stream, stored.stream);
        assert_eq!(entry.event_type, stored.event_type);
        assert_eq!(
            entry.recorded_at,
            store::hash::format_recorded_at(stored.recorded_at)
        );
    }
    let positions: Vec<i64> = trace.entries.iter().map(|e| e.position).collect();
    let mut sorted = positions.clone();
    sorted.sort_unstable();
    assert_eq!(positions, sorted, "log order");
    insta::assert_json_snapshot!("project_trace", readable(&trace));
}

async fn unit_community_and_actor_traces_show_their_summaries(backend: Backend) {
    let history = History::new(backend).await;
    history.write().await;
    let db = history.project().await;
    for (name, subject) in [
        ("unit_trace", Subject::Unit(MARKET)),
        ("community_trace", Subject::Community(TUOYUAN)),
        ("actor_trace", Subject::Actor(FEDERATION_REP)),
    ] {
        let trace = trace::trace(
            &db,
            history.store.as_ref(),
            &query(subject, Within::Everything),
        )
        .await
        .expect("a trace");
        insta::assert_json_snapshot!(name, readable(&trace));
    }
}

async fn scoped_readers_see_only_their_share(backend: Backend) {
    let history = History::new(backend).await;
    history.write().await;
    let db = history.project().await;
    let store = history.store.as_ref();
    let run = |subject, within| {
        let db = db.clone();
        async move { trace::trace(&db, store, &query(subject, within)).await }
    };
    let positions = |trace: trace::Trace| -> Vec<i64> {
        trace.entries.iter().map(|e| e.position).collect::<Vec<_>>()
    };

    // Another district's auditor: refused; its own district's: the whole project.
    let outside = run(Subject::Project(VACCINATION), Within::District(DISTRICT_B)).await;
    assert!(
        matches!(outside, Err(TraceError::OutsideScope(_))),
        "{outside:?}"
    );
    let inside = run(Subject::Project(VACCINATION), Within::District(DISTRICT_A))
        .await
        .expect("its own district");
    let all = run(Subject::Project(VACCINATION), Within::Everything)
        .await
        .expect("admin");
    assert_eq!(inside, all);
    assert!(matches!(
        run(Subject::Community(ELSEWHERE), Within::District(DISTRICT_A)).await,
        Err(TraceError::OutsideScope(_))
    ));
    assert!(matches!(
        run(Subject::Unit(FAR_UNIT), Within::District(DISTRICT_A)).await,
        Err(TraceError::OutsideScope(_))
    ));

    // Tuoyuan's secretary may trace the market bureau (a member), but sees only Tuoyuan's share.
    let shared = run(Subject::Unit(MARKET), Within::Community(TUOYUAN))
        .await
        .expect("a member unit");
    let summaries: Vec<String> = shared.entries.iter().map(|e| e.summary.clone()).collect();
    assert_eq!(
        summaries,
        ["«县市场监管局» admitted to «沱源社区» as double_report"]
    );
    assert!(matches!(
        run(Subject::Unit(FEDERATION), Within::Community(TUOYUAN)).await,
        Err(TraceError::OutsideScope(_))
    ));
    assert!(matches!(
        run(Subject::Project(VACCINATION), Within::Community(TUOYUAN)).await,
        Err(TraceError::OutsideScope(_))
    ));
    assert!(
        run(Subject::Project(VACCINATION), Within::Community(SANJIANG))
            .await
            .is_ok()
    );

    // A unit representative: its own unit only.
    assert!(run(Subject::Unit(FEDERATION), Within::Unit(FEDERATION))
        .await
        .is_ok());
    assert!(matches!(
        run(Subject::Unit(MARKET), Within::Unit(FEDERATION)).await,
        Err(TraceError::OutsideScope(_))
    ));
    assert!(matches!(
        run(Subject::Community(SANJIANG), Within::Unit(FEDERATION)).await,
        Err(TraceError::OutsideScope(_))
    ));

    // An actor's trace is limited to the reader's district.
    assert_eq!(
        positions(
            run(Subject::Actor(ADMIN), Within::District(DISTRICT_B))
                .await
                .expect("an actor")
        ),
        // District B, its community and unit, and the admission to it.
        positions(
            run(Subject::Actor(ADMIN), Within::Everything)
                .await
                .expect("an actor")
        )
        .into_iter()
        .filter(|p| [2, 5, 8, 12].contains(p))
        .collect::<Vec<_>>()
    );

    // Unknown things are unknown, whoever asks; an unknown actor simply did nothing.
    assert!(matches!(
        run(
            Subject::Project(Uuid::from_u128(0xdead)),
            Within::Everything
        )
        .await,
        Err(TraceError::Unknown(_))
    ));
    assert_eq!(
        run(Subject::Actor(Uuid::from_u128(0xdead)), Within::Everything)
            .await
            .expect("an actor")
            .entries,
        []
    );
}

async fn from_and_to_bound_the_recording_time(backend: Backend) {
    let history = History::new(backend).await;
    history.write().await;
    let db = history.project().await;
    let store = history.store.as_ref();
    let log = store.read_all(0, 1_000).await.expect("the log");
    let whole = trace::trace(
        &db,
        store,
        &query(Subject::Community(SANJIANG), Within::Everything),
    )
    .await
    .expect("a trace");
    assert!(whole.entries.len() > 4);
    let time_of = |position: i64| {
        log.iter()
            .find(|e| e.position == position)
            .expect("in the log")
            .recorded_at
    };
    let second = whole.entries[1].position;
    let fourth = whole.entries[3].position;
    let bounded = trace::trace(
        &db,
        store,
        &TraceQuery {
            from: Some(time_of(second)),
            to: Some(time_of(fourth)),
            ..query(Subject::Community(SANJIANG), Within::Everything)
        },
    )
    .await
    .expect("a trace");
    // `from` includes, `to` excludes (recording times of distinct commands differ).
    let expected: Vec<i64> = whole
        .entries
        .iter()
        .filter(|e| {
            let at = time_of(e.position);
            at >= time_of(second) && at < time_of(fourth)
        })
        .map(|e| e.position)
        .collect();
    let got: Vec<i64> = bounded.entries.iter().map(|e| e.position).collect();
    assert_eq!(got, expected);
    assert_eq!(got.first(), Some(&second));
    assert!(!got.contains(&fourth));
}

async fn a_new_generation_replaces_the_old_ones_index_rows(backend: Backend) {
    let history = History::new(backend).await;
    history.write().await;
    let db = history.project().await;
    let first = index(&db, 1).await;
    assert!(!first.is_empty());
    // A rebuild: generation 2 is built beside generation 1, then takes over.
    let generation = project_into(&db, history.store.as_ref()).await;
    assert_eq!(generation, 2);
    assert_eq!(
        index(&db, 1).await,
        first,
        "the old generation still answers"
    );
    db.promote(trace::NAME, 2).await.expect("promoted");
    // The next batch of generation 2 deletes generation 1's rows.
    history
        .send(
            &admin(),
            "RegisterUnit",
            json!({"unit_id": Uuid::from_u128(0x04), "district_id": DISTRICT_A, "name": "新单位"}),
            "2018-06-01T09:00:00+08:00",
        )
        .await;
    let mut projector = trace::TraceProjector::default();
    let ns = Namespace {
        projection: trace::NAME,
        generation: 2,
    };
    let reached = db
        .generation(trace::NAME, 2)
        .await
        .expect("readable")
        .expect("generation 2")
        .position;
    catch_up(
        history.store.as_ref(),
        &db,
        &mut projector,
        &ns,
        reached,
        None,
        |_| {},
    )
    .await
    .expect("projects on");
    assert!(
        index(&db, 1).await.is_empty(),
        "generation 1's rows are gone"
    );
    let second = index(&db, 2).await;
    let mut expected = first.clone();
    let last = history.store.head().await.expect("head");
    for entity in [
        "actor:admin",
        "district:district_a",
        "unit:00000000-0000-0000-0000-000000000004",
    ] {
        expected.entry(entity.to_owned()).or_default().push(last);
    }
    assert_eq!(second, expected);
}

on_both_backends!(
    the_index_names_every_entity_an_event_concerns,
    a_projects_trace_is_its_lifecycle_in_log_order_with_the_stored_hashes,
    unit_community_and_actor_traces_show_their_summaries,
    scoped_readers_see_only_their_share,
    from_and_to_bound_the_recording_time,
    a_new_generation_replaces_the_old_ones_index_rows,
);

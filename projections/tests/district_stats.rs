//! The district statistics over a hand-made history with the edge cases DOMAIN.md's rules make
//! possible: a withdrawn (and re-made) claim, a cancelled project, a quarter without a regular
//! meeting, two communities over two quarters, and a claim whose UTC time falls in the next
//! quarter in China Standard Time. Written through the real command handler, projected with
//! `catch_up`, read with the query the HTTP route uses.

mod backends;

use std::sync::Arc;

use backends::{on_both_backends, Backend, Place};
use commands::{CommandHandler, CommandRequest, Principal, Role};
use domain::values::Quarter;
use projections::collection::Namespace;
use projections::projectors::district_stats::{self, DistrictStats, DistrictStatsProjector};
use projections::readdb::ReadDb;
use projections::runner::catch_up;
use projections::Projector;
use serde_json::{json, Value};
use store::EventStore;
use uuid::Uuid;

const DISTRICT: Uuid = Uuid::from_u128(0xd1);
const OTHER_DISTRICT: Uuid = Uuid::from_u128(0xd2);
const SANJIANG: Uuid = Uuid::from_u128(0xc1);
const TUOYUAN: Uuid = Uuid::from_u128(0xc2);
const HOSPITAL: Uuid = Uuid::from_u128(0xa1);
const BUREAU: Uuid = Uuid::from_u128(0xa2);
const FEDERATION: Uuid = Uuid::from_u128(0xa3);
const MEETING_A1: Uuid = Uuid::from_u128(0xe1);
const MEETING_A2: Uuid = Uuid::from_u128(0xe2);
const MEETING_B1: Uuid = Uuid::from_u128(0xe3);
const MEETING_B2: Uuid = Uuid::from_u128(0xe4);
const VACCINATION: Uuid = Uuid::from_u128(0xf1);
const GIFTS: Uuid = Uuid::from_u128(0xf2);
const GARDEN: Uuid = Uuid::from_u128(0xf3);
const COURTYARD: Uuid = Uuid::from_u128(0xf4);
const STUDY: Uuid = Uuid::from_u128(0xf5);
const REQUEST_B: Uuid = Uuid::from_u128(0xb1);
const REQUEST_A: Uuid = Uuid::from_u128(0xb2);

fn admin() -> Principal {
    Principal {
        actor_id: Uuid::from_u128(1),
        name: "管理员".into(),
        role: Role::Admin,
        scope: None,
    }
}

struct Writer {
    handler: CommandHandler,
    sent: usize,
}

impl Writer {
    async fn send(&mut self, name: &str, body: Value) {
        let bytes = serde_json::to_vec(&body).expect("a JSON body");
        let command = domain::Command::parse(name, &bytes)
            .unwrap_or_else(|e| panic!("{name} {body} does not parse: {e:?}"));
        self.sent += 1;
        let outcome = self
            .handler
            .handle(CommandRequest {
                command,
                principal: admin(),
                request_hash: format!("{}", self.sent),
                idempotency_key: None,
                if_match: None,
                correlation_id: None,
                causation_id: None,
            })
            .await;
        assert!(outcome.is_ok(), "{name} {body} was refused: {outcome:?}");
    }
}

/// The story, in log order; business times (`occurred_at`) put it in 2018Q1 and 2018Q2.
async fn write_history(store: Arc<dyn EventStore>) {
    let mut w = Writer {
        handler: CommandHandler::new(store),
        sent: 0,
    };
    let at = |date: &str| format!("{date}T10:00:00+08:00");
    w.send(
        "RegisterDistrict",
        json!({"district_id": DISTRICT, "name": "赵镇街道", "occurred_at": at("2018-01-05")}),
    )
    .await;
    w.send(
        "RegisterDistrict",
        json!({"district_id": OTHER_DISTRICT, "name": "官仓街道", "occurred_at": at("2018-01-05")}),
    )
    .await;
    for (id, name) in [(SANJIANG, "三江社区"), (TUOYUAN, "沱源社区")] {
        w.send("RegisterCommunity", json!({"community_id": id, "district_id": DISTRICT, "name": name, "committee": format!("{name}党委"), "occurred_at": at("2018-01-10")})).await;
    }
    for (id, name) in [
        (HOSPITAL, "县人民医院"),
        (BUREAU, "县市场监管局"),
        (FEDERATION, "县残联"),
    ] {
        w.send("RegisterUnit", json!({"unit_id": id, "district_id": DISTRICT, "name": name, "occurred_at": at("2018-01-12")})).await;
    }
    for (community, unit) in [
        (SANJIANG, HOSPITAL),
        (SANJIANG, BUREAU),
        (TUOYUAN, BUREAU),
        (TUOYUAN, FEDERATION),
    ] {
        w.send("AdmitMemberUnit", json!({"community_id": community, "unit_id": unit, "kind": "jurisdiction", "occurred_at": at("2018-01-15")})).await;
    }

    // 2018Q1: Sanjiang meets regularly, Tuoyuan only extraordinarily.
    w.send("ConveneMeeting", json!({"meeting_id": MEETING_A1, "community_id": SANJIANG, "kind": "regular", "title": "第一季度联席会议", "agenda": ["认领项目"], "occurred_at": at("2018-03-20")})).await;
    w.send("ConveneMeeting", json!({"meeting_id": MEETING_B1, "community_id": TUOYUAN, "kind": "extraordinary", "title": "临时会议", "agenda": ["重大事项"], "occurred_at": at("2018-02-10")})).await;
    w.send("RecordAttendance", json!({"meeting_id": MEETING_A1, "unit_ids": [HOSPITAL, BUREAU], "occurred_at": at("2018-03-20")})).await;
    w.send("ProposeProject", json!({"project_id": VACCINATION, "community_id": SANJIANG, "title": "4·25 预防接种宣传", "theme": "public_welfare", "occurred_at": at("2018-02-01")})).await;
    w.send("ProposeProject", json!({"project_id": GIFTS, "community_id": SANJIANG, "title": "慰问困难家庭", "theme": "civility", "occurred_at": at("2018-02-05")})).await;
    w.send("ProposeProject", json!({"project_id": GARDEN, "community_id": SANJIANG, "title": "小区绿化", "theme": "living_environment", "occurred_at": at("2018-03-01")})).await;
    w.send("ProposeProject", json!({"project_id": COURTYARD, "community_id": TUOYUAN, "title": "院落整治", "theme": "service_problems", "occurred_at": at("2018-02-15")})).await;
    w.send("ApproveProject", json!({"project_id": VACCINATION, "meeting_id": MEETING_A1, "occurred_at": at("2018-03-20")})).await;
    // 47 days after its proposal.
    w.send("ClaimProject", json!({"project_id": VACCINATION, "unit_id": HOSPITAL, "meeting_id": MEETING_A1, "occurred_at": at("2018-03-20")})).await;
    // Claimed in Q1 by the bureau, withdrawn in Q2, claimed again in Q2 by the hospital (66 days).
    w.send(
        "ClaimProject",
        json!({"project_id": GIFTS, "unit_id": BUREAU, "occurred_at": at("2018-03-10")}),
    )
    .await;
    // 5 days.
    w.send(
        "ClaimProject",
        json!({"project_id": COURTYARD, "unit_id": FEDERATION, "occurred_at": at("2018-02-20")}),
    )
    .await;
    // 16:30 UTC on 31 March is 00:30 on 1 April in UTC+8: a 2018Q2 claim, 31 days.
    w.send(
        "ClaimProject",
        json!({"project_id": GARDEN, "unit_id": BUREAU, "occurred_at": "2018-03-31T16:30:00Z"}),
    )
    .await;
    w.send("CloseMeeting", json!({"meeting_id": MEETING_A1, "resolutions": ["认领三个项目"], "occurred_at": at("2018-03-20")})).await;

    // 2018Q2: both communities meet regularly.
    w.send(
        "WithdrawClaim",
        json!({"project_id": GIFTS, "reason": "人手不足", "occurred_at": at("2018-04-02")}),
    )
    .await;
    w.send(
        "ClaimProject",
        json!({"project_id": GIFTS, "unit_id": HOSPITAL, "occurred_at": at("2018-04-12")}),
    )
    .await;
    w.send("ConveneMeeting", json!({"meeting_id": MEETING_A2, "community_id": SANJIANG, "kind": "regular", "title": "第二季度联席会议", "agenda": ["总结"], "occurred_at": at("2018-04-24")})).await;
    w.send("ConveneMeeting", json!({"meeting_id": MEETING_B2, "community_id": TUOYUAN, "kind": "regular", "title": "第二季度联席会议", "agenda": ["总结"], "occurred_at": at("2018-06-15")})).await;
    // 41, 31 and 3 days from claim to launch.
    w.send(
        "LaunchProject",
        json!({"project_id": COURTYARD, "occurred_at": at("2018-04-02")}),
    )
    .await;
    w.send(
        "LaunchProject",
        json!({"project_id": VACCINATION, "occurred_at": at("2018-04-20")}),
    )
    .await;
    w.send(
        "LaunchProject",
        json!({"project_id": GIFTS, "occurred_at": at("2018-04-15")}),
    )
    .await;
    w.send("RecordActivity", json!({"project_id": VACCINATION, "activity_id": Uuid::from_u128(0x71), "title": "4·25 预防接种宣传日", "participants": 300, "volunteers": 20, "volunteer_hours": 60, "occurred_at": at("2018-04-25")})).await;
    w.send("RecordActivity", json!({"project_id": GIFTS, "activity_id": Uuid::from_u128(0x72), "title": "为10户家庭送去慰问品", "participants": 12, "beneficiaries": 10, "funds_yuan": 2000, "occurred_at": at("2018-05-01")})).await;
    w.send(
        "CancelProject",
        json!({"project_id": GARDEN, "reason": "场地另有安排", "occurred_at": at("2018-05-10")}),
    )
    .await;
    w.send(
        "CompleteProject",
        json!({"project_id": VACCINATION, "occurred_at": at("2018-05-30")}),
    )
    .await;
    w.send(
        "RecordFeedback",
        json!({"project_id": VACCINATION, "rating": 5, "occurred_at": at("2018-06-01")}),
    )
    .await;
    w.send(
        "RecordFeedback",
        json!({"project_id": VACCINATION, "rating": 4, "occurred_at": at("2018-06-02")}),
    )
    .await;
    w.send(
        "WithdrawMemberUnit",
        json!({"community_id": TUOYUAN, "unit_id": BUREAU, "occurred_at": at("2018-05-15")}),
    )
    .await;
    w.send("RaiseRequest", json!({"request_id": REQUEST_B, "community_id": TUOYUAN, "unit_id": FEDERATION, "title": "帮助整治老旧院落", "occurred_at": at("2018-05-20")})).await;
    w.send(
        "ResolveRequest",
        json!({"request_id": REQUEST_B, "occurred_at": at("2018-06-10")}),
    )
    .await;
    w.send("RaiseRequest", json!({"request_id": REQUEST_A, "community_id": SANJIANG, "unit_id": HOSPITAL, "title": "借用活动室", "occurred_at": at("2018-06-20")})).await;
    w.send("ProposeProject", json!({"project_id": STUDY, "community_id": TUOYUAN, "title": "党员学习日", "theme": "party_work", "occurred_at": at("2018-06-01")})).await;
}

/// Builds the statistics from the log into a fresh read-model database of `backend`; with
/// `one_event_batches`, a fresh projector takes each event as a batch of its own, so every
/// document it needs must come from the database through `want`.
async fn build(backend: Backend, store: &dyn EventStore, one_event_batches: bool) -> ReadDb {
    let db = backend.fresh_read_db().await;
    let mut projector = DistrictStatsProjector::default();
    let row = db
        .create_generation(projector.name(), projector.version())
        .await
        .expect("a generation");
    let ns = Namespace {
        projection: projector.name(),
        generation: row.generation,
    };
    let head = store.head().await.expect("the head");
    if one_event_batches {
        for position in 0..head {
            let mut fresh = DistrictStatsProjector::default();
            catch_up(
                store,
                &db,
                &mut fresh,
                &ns,
                position,
                Some(position + 1),
                |_| {},
            )
            .await
            .expect("one event projected");
        }
    } else {
        let reached = catch_up(store, &db, &mut projector, &ns, 0, None, |_| {})
            .await
            .expect("the log projected");
        assert_eq!(reached, head);
    }
    db
}

async fn history(backend: Backend) -> (Place, Arc<dyn EventStore>) {
    let place = backend.place().await;
    let store = place.store().await;
    write_history(store.clone()).await;
    (place, store)
}

async fn stats_of(db: &ReadDb, quarter: Option<&str>) -> DistrictStats {
    let quarter = quarter.map(|q| Quarter::parse(q).expect("a quarter"));
    district_stats::stats(db, DISTRICT, quarter)
        .await
        .expect("the query runs")
        .expect("the district is known")
}

async fn the_statistics_of_a_hand_made_history_overall_and_per_quarter(backend: Backend) {
    let (_dir, store) = history(backend).await;
    let db = build(backend, store.as_ref(), false).await;
    insta::assert_json_snapshot!("overall", stats_of(&db, None).await);
    insta::assert_json_snapshot!("2018Q1", stats_of(&db, Some("2018Q1")).await);
    insta::assert_json_snapshot!("2018Q2", stats_of(&db, Some("2018Q2")).await);
}

async fn a_withdrawn_claim_counts_only_where_the_project_was_claimed_again(backend: Backend) {
    let (_dir, store) = history(backend).await;
    let db = build(backend, store.as_ref(), false).await;
    let sanjiang = |s: &DistrictStats| {
        s.communities
            .iter()
            .find(|c| c.community_id == SANJIANG)
            .expect("Sanjiang is listed")
            .figures
            .clone()
    };
    let q1 = sanjiang(&stats_of(&db, Some("2018Q1")).await);
    let q2 = sanjiang(&stats_of(&db, Some("2018Q2")).await);
    let overall = sanjiang(&stats_of(&db, None).await);
    // The gifts' Q1 claim was withdrawn; only the vaccination claim stands in Q1.
    assert_eq!(q1.projects_claimed, 1);
    assert_eq!(q1.by_theme.civility.claimed, 0);
    assert_eq!(q1.median_days_to_claim, Some(47.0));
    // Q2: the gifts claimed again (66 days) and the garden (31 days, 1 April in UTC+8).
    assert_eq!(q2.projects_claimed, 2);
    assert_eq!(q2.by_theme.civility.claimed, 1);
    assert_eq!(q2.median_days_to_claim, Some(48.5));
    assert_eq!(overall.projects_claimed, 3);
    assert_eq!(overall.median_days_to_claim, Some(47.0));
    // The cancelled garden project still counts as proposed and claimed.
    assert_eq!(overall.projects_cancelled, 1);
    assert_eq!(overall.claim_rate, Some(1.0));
    assert_eq!(overall.completion_rate, Some(0.3333));
}

async fn a_quarter_without_a_regular_meeting_is_counted(backend: Backend) {
    let (_dir, store) = history(backend).await;
    let db = build(backend, store.as_ref(), false).await;
    let tuoyuan = |s: &DistrictStats| {
        s.communities
            .iter()
            .find(|c| c.community_id == TUOYUAN)
            .expect("Tuoyuan is listed")
            .figures
            .clone()
    };
    let q1 = tuoyuan(&stats_of(&db, Some("2018Q1")).await);
    assert_eq!(q1.meetings_regular, 0);
    assert_eq!(q1.meetings_extraordinary, 1);
    assert_eq!(q1.quarters_without_regular_meeting, 1);
    assert_eq!(
        tuoyuan(&stats_of(&db, Some("2018Q2")).await).quarters_without_regular_meeting,
        0
    );
    assert_eq!(
        tuoyuan(&stats_of(&db, None).await).quarters_without_regular_meeting,
        1
    );
    // Before the community existed, and after the latest event of the district, nothing is due.
    for quarter in ["2017Q4", "2018Q3"] {
        let stats = stats_of(&db, Some(quarter)).await;
        assert_eq!(
            stats.totals.quarters_without_regular_meeting, 0,
            "{quarter}"
        );
    }
}

async fn the_totals_recompute_rates_and_medians_over_the_district(backend: Backend) {
    let (_dir, store) = history(backend).await;
    let db = build(backend, store.as_ref(), false).await;
    let overall = stats_of(&db, None).await;
    let t = &overall.totals;
    assert_eq!(t.projects_proposed, 5);
    assert_eq!(t.projects_claimed, 4);
    assert_eq!(t.claim_rate, Some(0.8));
    assert_eq!(t.completion_rate, Some(0.25));
    // Claims after 5, 31, 47 and 66 days; launches after 3, 31 and 41 days.
    assert_eq!(t.median_days_to_claim, Some(39.0));
    assert_eq!(t.median_days_to_launch, Some(31.0));
    assert_eq!(t.mean_rating, Some(4.5));
    assert_eq!(t.member_units, 3);
    // The counts of each quarter add up to the overall ones.
    let q1 = stats_of(&db, Some("2018Q1")).await.totals;
    let q2 = stats_of(&db, Some("2018Q2")).await.totals;
    for (name, sum, all) in [
        (
            "meetings_regular",
            q1.meetings_regular + q2.meetings_regular,
            t.meetings_regular,
        ),
        (
            "quarters_without_regular_meeting",
            q1.quarters_without_regular_meeting + q2.quarters_without_regular_meeting,
            t.quarters_without_regular_meeting,
        ),
        (
            "projects_proposed",
            q1.projects_proposed + q2.projects_proposed,
            t.projects_proposed,
        ),
        (
            "projects_claimed",
            q1.projects_claimed + q2.projects_claimed,
            t.projects_claimed,
        ),
        (
            "projects_launched",
            q1.projects_launched + q2.projects_launched,
            t.projects_launched,
        ),
        (
            "participants",
            q1.participants + q2.participants,
            t.participants,
        ),
        (
            "requests_raised",
            q1.requests_raised + q2.requests_raised,
            t.requests_raised,
        ),
    ] {
        assert_eq!(sum, all, "{name}");
    }
    // Members at the end of each quarter: 4 admissions in Q1, one withdrawal in Q2.
    assert_eq!(q1.member_units, 4);
    assert_eq!(q2.member_units, 3);
}

async fn one_event_per_batch_gives_the_same_statistics_as_one_big_batch(backend: Backend) {
    let (_dir, store) = history(backend).await;
    let whole = build(backend, store.as_ref(), false).await;
    let piecemeal = build(backend, store.as_ref(), true).await;
    for quarter in [None, Some("2018Q1"), Some("2018Q2")] {
        assert_eq!(
            stats_of(&whole, quarter).await,
            stats_of(&piecemeal, quarter).await,
            "{quarter:?}"
        );
    }
}

async fn an_unknown_district_has_no_statistics_and_districts_are_listed(backend: Backend) {
    let (_dir, store) = history(backend).await;
    let db = build(backend, store.as_ref(), false).await;
    let unknown = district_stats::stats(&db, Uuid::from_u128(0xdead), None)
        .await
        .expect("the query runs");
    assert!(unknown.is_none());
    let listed: Vec<Uuid> = district_stats::districts(&db)
        .await
        .expect("the query runs")
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(listed, vec![OTHER_DISTRICT, DISTRICT]);
    // A district without communities answers with zero totals.
    let empty = district_stats::stats(&db, OTHER_DISTRICT, None)
        .await
        .expect("the query runs")
        .expect("known");
    assert!(empty.communities.is_empty());
    assert_eq!(empty.totals.claim_rate, None);
    assert_eq!(empty.totals.median_days_to_claim, None);
}

on_both_backends!(
    the_statistics_of_a_hand_made_history_overall_and_per_quarter,
    a_withdrawn_claim_counts_only_where_the_project_was_claimed_again,
    a_quarter_without_a_regular_meeting_is_counted,
    the_totals_recompute_rates_and_medians_over_the_district,
    one_event_per_batch_gives_the_same_statistics_as_one_big_batch,
    an_unknown_district_has_no_statistics_and_districts_are_listed,
);

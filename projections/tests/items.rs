//! The item views after a hand-made history: a completed project with feedback, a project whose
//! claim was withdrawn and taken by another unit, a cancelled project, a closed meeting, a
//! resolved and an open request (see `item_history`).

mod backends;
mod item_history;

use backends::{on_both_backends, Backend};

use item_history::*;
use projections::projectors::items::{self, ItemsProjector, ProjectStatus, RequestStatus};
use projections::readdb::ReadDb;
use serde_json::json;

async fn views(backend: Backend) -> (History, ReadDb) {
    let history = History::story(backend).await;
    let db = history.project(&mut ItemsProjector::default(), None).await;
    (history, db)
}

async fn project(db: &ReadDb, n: u128) -> items::Found<items::ProjectView> {
    items::project(db, id(n))
        .await
        .expect("the read model answers")
        .expect("the project exists")
}

async fn the_item_views_after_the_story(backend: Backend) {
    let (_history, db) = views(backend).await;
    for (n, name) in [
        (VACCINATION, "project_vaccination"),
        (CARE, "project_care"),
        (DAY_CARE, "project_day_care"),
    ] {
        insta::assert_json_snapshot!(name, project(&db, n).await.item);
    }
    let meeting = items::meeting(&db, id(MEETING))
        .await
        .expect("the read model answers")
        .expect("the meeting exists");
    insta::assert_json_snapshot!("meeting", meeting.item);
    for (n, name) in [
        (COURTYARD, "request_courtyard"),
        (STREETLIGHTS, "request_streetlights"),
    ] {
        let request = items::request(&db, id(n))
            .await
            .expect("the read model answers")
            .expect("the request exists");
        insta::assert_json_snapshot!(name, request.item);
    }
}

async fn a_withdrawn_claim_leaves_the_project_to_the_next_claimant(backend: Backend) {
    let (_history, db) = views(backend).await;
    let care = project(&db, CARE).await;
    let claimant = care.item.claimant.as_ref().expect("a claimant");
    assert_eq!(claimant.unit_id, id(FEDERATION));
    assert_eq!(claimant.name, "金堂县残疾人联合会");
    assert_eq!(care.item.status, ProjectStatus::Launched);
    assert_eq!(care.item.claim_meeting_id, None);
    assert_eq!(care.item.meeting_id, Some(id(MEETING)));
    assert_eq!(care.owner.units, vec![id(FEDERATION)]);
}

async fn a_cancelled_project_keeps_when_and_why(backend: Backend) {
    let (_history, db) = views(backend).await;
    let day_care = project(&db, DAY_CARE).await.item;
    assert_eq!(day_care.status, ProjectStatus::Cancelled);
    assert_eq!(
        day_care.cancelled_at.as_deref(),
        Some("2018-05-20T01:00:00Z")
    );
    assert_eq!(
        day_care.cancellation_reason.as_deref(),
        Some("已由县房管局直接解决")
    );
}

async fn versions_are_the_streams_event_counts(backend: Backend) {
    let (history, db) = views(backend).await;
    for n in [VACCINATION, CARE, DAY_CARE] {
        let events = history
            .store
            .read_stream(&format!("project-{}", id(n)), 0)
            .await
            .expect("the stream");
        assert_eq!(project(&db, n).await.item.version, events.len() as u64);
    }
    let meeting = items::meeting(&db, id(MEETING))
        .await
        .expect("answers")
        .expect("exists");
    assert_eq!(meeting.item.version, 3, "convened, attendance, closed");
    let request = items::request(&db, id(COURTYARD))
        .await
        .expect("answers")
        .expect("exists");
    assert_eq!(request.item.version, 2, "raised, resolved");
    assert_eq!(request.item.status, RequestStatus::Resolved);
}

async fn owners_name_the_district_and_current_members(backend: Backend) {
    let (_history, db) = views(backend).await;
    let courtyard = items::request(&db, id(COURTYARD))
        .await
        .expect("answers")
        .expect("exists");
    assert_eq!(courtyard.owner.community_id, id(SANJIANG));
    assert_eq!(courtyard.owner.district_id, Some(id(DISTRICT)));
    // The CDC left Sanjiang: only the market-supervision bureau is a current member.
    assert_eq!(courtyard.owner.members, vec![id(MARKET)]);
    assert_eq!(courtyard.owner.units, vec![id(MARKET)]);
}

async fn unknown_ids_have_no_view(backend: Backend) {
    let (_history, db) = views(backend).await;
    assert!(items::project(&db, id(999))
        .await
        .expect("answers")
        .is_none());
    assert!(items::meeting(&db, id(VACCINATION))
        .await
        .expect("answers")
        .is_none());
    assert!(items::request(&db, id(999))
        .await
        .expect("answers")
        .is_none());
}

async fn a_project_view_stays_small_however_many_activities(backend: Backend) {
    let mut history = History::story(backend).await;
    for n in 0..25u128 {
        history
            .admin(
                "RecordActivity",
                json!({"project_id": id(CARE), "activity_id": id(100 + n), "title": format!("探访 {n}"),
                       "participants": 2, "volunteer_hours": 1,
                       "occurred_at": "2018-06-01T09:00:00+08:00"}),
            )
            .await;
    }
    let db = history.project(&mut ItemsProjector::default(), None).await;
    let care = project(&db, CARE).await.item;
    assert_eq!(care.activities.count, 26);
    assert_eq!(care.activities.participants, 6 + 25 * 2);
    assert_eq!(care.activities.recent.len(), items::RECENT_ACTIVITIES);
    assert_eq!(
        care.activities.recent[0].activity_id,
        id(124),
        "newest first"
    );
}

async fn one_event_per_batch_gives_the_same_documents_as_whole_batches(backend: Backend) {
    let history = History::story(backend).await;
    let whole = history.project(&mut ItemsProjector::default(), None).await;
    let single = history
        .project(&mut ItemsProjector::default(), Some(1))
        .await;
    let a = History::documents(&whole, items::NAME).await;
    let b = History::documents(&single, items::NAME).await;
    assert!(!a.is_empty());
    assert_eq!(a, b);
}

on_both_backends!(
    the_item_views_after_the_story,
    a_withdrawn_claim_leaves_the_project_to_the_next_claimant,
    a_cancelled_project_keeps_when_and_why,
    versions_are_the_streams_event_counts,
    owners_name_the_district_and_current_members,
    unknown_ids_have_no_view,
    a_project_view_stays_small_however_many_activities,
    one_event_per_batch_gives_the_same_documents_as_whole_batches,
);

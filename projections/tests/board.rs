//! The board's meetings summary ("last held", "next scheduled", "regular this quarter") over
//! meetings spread across quarters, as of dates before, between and after them, including a
//! UTC date that is already the next quarter in China Standard Time; and the same answers from
//! a version-1 document, which a version-1 generation still serves while version 2 is built;
//! members kept as rows of their own, and a version-3 generation (members inside the community
//! document) answering the same board while version 4 is built.

mod backends;
mod item_history;

use backends::{on_both_backends, Backend};
use chrono::{DateTime, Utc};
use item_history::{id, History, CDC, SANJIANG, SHILI};
use projections::projectors::board::{self, BoardProjector, MeetingsView};
use projections::readdb::ReadDb;
use serde_json::json;
use uuid::Uuid;

const DISTRICT: u128 = 1;
const COMMUNITY: u128 = 2;

/// A community whose meetings sit in 2018Q1 (regular), 2018Q3 (extraordinary, then regular)
/// and 2019Q1 (regular); 2018Q2 and 2018Q4 have none.
async fn history(backend: Backend) -> History {
    let mut h = History::new(backend).await;
    h.admin(
        "RegisterDistrict",
        json!({"district_id": id(DISTRICT), "name": "赵镇街道", "occurred_at": "2018-01-01T10:00:00+08:00"}),
    )
    .await;
    h.admin(
        "RegisterCommunity",
        json!({"community_id": id(COMMUNITY), "district_id": id(DISTRICT), "name": "三江社区", "occurred_at": "2018-01-02T10:00:00+08:00"}),
    )
    .await;
    // Convened out of business-time order: the document keeps each quarter's sittings sorted.
    for (n, kind, at) in [
        (10, "regular", "2018-03-20T10:00:00+08:00"),
        (12, "regular", "2018-09-25T10:00:00+08:00"),
        (11, "extraordinary", "2018-08-15T10:00:00+08:00"),
        (13, "regular", "2019-03-10T10:00:00+08:00"),
    ] {
        h.admin(
            "ConveneMeeting",
            json!({"meeting_id": id(n), "community_id": id(COMMUNITY), "kind": kind,
                   "title": format!("会议 {n}"), "agenda": ["议程"], "occurred_at": at}),
        )
        .await;
    }
    h
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("a time")
        .with_timezone(&Utc)
}

fn view(last_held: Option<&str>, next_scheduled: Option<&str>, regular: bool) -> MeetingsView {
    MeetingsView {
        last_held: last_held.map(str::to_owned),
        next_scheduled: next_scheduled.map(str::to_owned),
        regular_this_quarter: regular,
    }
}

/// (as of, what the board says of meetings then).
fn expected() -> Vec<(&'static str, MeetingsView)> {
    let m10 = "2018-03-20T02:00:00Z";
    let m11 = "2018-08-15T02:00:00Z";
    let m12 = "2018-09-25T02:00:00Z";
    let m13 = "2019-03-10T02:00:00Z";
    vec![
        ("2017-12-01T00:00:00Z", view(None, Some(m10), false)),
        // The day it sits, after the sitting: held, and the quarter has had a regular one.
        ("2018-03-20T02:00:00Z", view(Some(m10), Some(m11), true)),
        // A quarter without meetings: look back and ahead across quarters.
        ("2018-05-01T00:00:00Z", view(Some(m10), Some(m11), false)),
        // Between two sittings of one quarter; its regular one is still to come.
        ("2018-09-01T00:00:00Z", view(Some(m11), Some(m12), true)),
        ("2018-11-01T00:00:00Z", view(Some(m12), Some(m13), false)),
        // 17:00 UTC on 31 December is 1 January in UTC+8: 2019Q1, whose regular meeting is
        // still to come.
        ("2018-12-31T17:00:00Z", view(Some(m12), Some(m13), true)),
        ("2019-06-01T00:00:00Z", view(Some(m13), None, false)),
    ]
}

async fn meetings(db: &ReadDb, as_of: &str) -> MeetingsView {
    board::board(db, id(COMMUNITY), at(as_of))
        .await
        .expect("the board query runs")
        .expect("the community is known")
        .meetings
}

async fn meetings_are_summarised_across_quarters(backend: Backend) {
    let h = history(backend).await;
    // Once in the runner's batches, once an event per batch (every document through `want`).
    for step in [None, Some(1)] {
        let db = h.project(&mut BoardProjector::default(), step).await;
        for (as_of, expected) in expected() {
            assert_eq!(
                meetings(&db, as_of).await,
                expected,
                "as of {as_of}, step {step:?}"
            );
        }
    }
}

async fn a_quarter_rewrites_only_its_own_sittings(backend: Backend) {
    let h = history(backend).await;
    let db = h.project(&mut BoardProjector::default(), None).await;
    let documents = History::documents(&db, board::NAME).await;
    let sittings: Vec<(&str, serde_json::Value)> = documents
        .iter()
        .filter(|(kind, _, _)| kind == "sittings")
        .map(|(_, key, doc)| (key.as_str(), serde_json::from_str(doc).expect("JSON")))
        .collect();
    let community = id(COMMUNITY);
    assert_eq!(
        sittings,
        vec![
            (
                format!("{community}:2018Q1").as_str(),
                json!({"sittings": [{"sits_at": "2018-03-20T02:00:00Z", "kind": "regular"}]})
            ),
            (
                format!("{community}:2018Q3").as_str(),
                json!({"sittings": [
                    {"sits_at": "2018-08-15T02:00:00Z", "kind": "extraordinary"},
                    {"sits_at": "2018-09-25T02:00:00Z", "kind": "regular"}
                ]})
            ),
            (
                format!("{community}:2019Q1").as_str(),
                json!({"sittings": [{"sits_at": "2019-03-10T02:00:00Z", "kind": "regular"}]})
            ),
        ]
    );
    let (_, _, doc) = documents
        .iter()
        .find(|(kind, _, _)| kind == "community")
        .expect("the community document");
    let doc: serde_json::Value = serde_json::from_str(doc).expect("JSON");
    assert_eq!(doc["quarters"], json!(["2018Q1", "2018Q3", "2019Q1"]));
    assert!(doc.get("meetings").is_none(), "{doc}");
}

on_both_backends!(
    meetings_are_summarised_across_quarters,
    a_quarter_rewrites_only_its_own_sittings,
    members_are_documents_of_their_own
);

/// A version-1 community document (every meeting in it) as a version-1 generation holds it.
fn version_one_document(community: Uuid) -> String {
    let meeting =
        |kind: &str, sits_at: &str| json!({"kind": kind, "sits_at": sits_at, "closed": true});
    json!({
        "id": community,
        "name": "三江社区",
        "committee": null,
        "district_id": id(DISTRICT),
        "members": {},
        "meetings": {
            id(10).to_string(): meeting("regular", "2018-03-20T02:00:00Z"),
            id(11).to_string(): meeting("extraordinary", "2018-08-15T02:00:00Z"),
            id(12).to_string(): meeting("regular", "2018-09-25T02:00:00Z"),
            id(13).to_string(): meeting("regular", "2019-03-10T02:00:00Z"),
        },
        "open_requests": {},
        "resolved_requests": 0,
        "totals": {"activities": 0, "participants": 0, "volunteers": 0, "volunteer_hours": 0,
                   "beneficiaries": 0, "funds_yuan": 0},
        "recent": []
    })
    .to_string()
}

#[tokio::test]
async fn a_version_one_generation_answers_the_same_while_version_two_is_built() {
    let db = ReadDb::in_memory().await.expect("a read-model db");
    let row = db
        .create_generation(board::NAME, 1)
        .await
        .expect("a generation");
    let community = id(COMMUNITY);
    sqlx::query(
        "INSERT INTO documents (projection, generation, kind, key, parent, doc) \
         VALUES ('board', $1, 'community', $2, NULL, $3)",
    )
    .bind(row.generation)
    .bind(community.to_string())
    .bind(version_one_document(community))
    .execute(db.sqlite().expect("SQLite"))
    .await
    .expect("a version-1 document");
    for (as_of, expected) in expected() {
        assert_eq!(meetings(&db, as_of).await, expected, "as of {as_of}");
    }
}

/// Version 4 keeps each member in a `member` document of its own: a claim or an activity
/// rewrites ~150 bytes, not the community document (whose members were 8 KB in a busy
/// community). Projected in the runner's batches and one event a batch (every document through
/// `want`, so a claim finds the member document it must load), the boards are the same.
async fn members_are_documents_of_their_own(backend: Backend) {
    let h = History::story(backend).await;
    let db = h.project(&mut BoardProjector::default(), None).await;
    let documents = History::documents(&db, board::NAME).await;
    for (kind, key, doc) in &documents {
        if kind == "community" {
            let doc: serde_json::Value = serde_json::from_str(doc).expect("JSON");
            assert!(doc.get("members").is_none(), "{key}: {doc}");
        }
    }
    let members: Vec<(&str, serde_json::Value)> = documents
        .iter()
        .filter(|(kind, _, _)| kind == "member")
        .map(|(_, key, doc)| (key.as_str(), serde_json::from_str(doc).expect("JSON")))
        .collect();
    let shili_cdc = format!("{}:{}", id(SHILI), id(CDC));
    let (_, cdc) = members
        .iter()
        .find(|(key, _)| *key == shili_cdc)
        .expect("CDC is a member of Shili");
    assert_eq!(cdc["unit_id"], json!(id(CDC)));
    assert_eq!(cdc["current"], json!(true));
    assert!(cdc["projects_claimed"].as_u64() >= Some(1), "{cdc}");
    assert!(
        members.iter().any(|(_, m)| m["current"] == json!(false)),
        "the story's withdrawn member stays, not current: {members:?}"
    );
    let by_event = h.project(&mut BoardProjector::default(), Some(1)).await;
    for community in [SHILI, SANJIANG] {
        let board = board_of(&db, community).await;
        assert_eq!(board, board_of(&by_event, community).await);
        for member in &board.members {
            assert!(members
                .iter()
                .any(|(key, _)| *key == format!("{}:{}", id(community), member.unit_id)));
        }
    }
}

async fn board_of(db: &ReadDb, community: u128) -> board::Board {
    board::board(db, id(community), at("2019-01-01T00:00:00Z"))
        .await
        .expect("the board query runs")
        .expect("the community is known")
}

/// A version-3 generation (members inside the community document, no `member` documents)
/// answers the same boards, directly and through the cache, as version 4 built from the same
/// log, while version 4 is built.
#[tokio::test]
async fn a_version_three_generation_answers_the_same_while_version_four_is_built() {
    let h = History::story(Backend::Sqlite).await;
    let v4 = h.project(&mut BoardProjector::default(), None).await;
    let documents = History::documents(&v4, board::NAME).await;
    let v3 = ReadDb::in_memory().await.expect("a read-model db");
    let row = v3
        .create_generation(board::NAME, 3)
        .await
        .expect("a generation");
    let mut members: std::collections::BTreeMap<
        String,
        serde_json::Map<String, serde_json::Value>,
    > = Default::default();
    for (kind, key, doc) in &documents {
        if kind == "member" {
            let (community, unit) = key.split_once(':').expect("community:unit");
            let mut member: serde_json::Value = serde_json::from_str(doc).expect("JSON");
            member.as_object_mut().expect("an object").remove("unit_id");
            members
                .entry(community.to_owned())
                .or_default()
                .insert(unit.to_owned(), member);
        }
    }
    for (kind, key, doc) in &documents {
        let (parent, doc) = match kind.as_str() {
            "member" => continue,
            "community" => {
                let mut doc: serde_json::Value = serde_json::from_str(doc).expect("JSON");
                doc["members"] = json!(members.get(key).cloned().unwrap_or_default());
                for line in doc["recent"].as_array_mut().expect("the feed") {
                    line.as_object_mut().expect("a line").remove("member");
                }
                (None, doc.to_string())
            }
            "project" => {
                let project: serde_json::Value = serde_json::from_str(doc).expect("JSON");
                let community = project["community_id"].as_str().expect("its community");
                (Some(community.to_owned()), doc.clone())
            }
            "sittings" => (
                Some(key.split(':').next().expect("community").to_owned()),
                doc.clone(),
            ),
            _ => (None, doc.clone()),
        };
        sqlx::query(
            "INSERT INTO documents (projection, generation, kind, key, parent, doc) \
             VALUES ('board', $1, $2, $3, $4, $5)",
        )
        .bind(row.generation)
        .bind(kind)
        .bind(key)
        .bind(parent)
        .bind(doc)
        .execute(v3.sqlite().expect("SQLite"))
        .await
        .expect("a version-3 document");
    }
    assert!(!members.is_empty(), "the story has members");
    let cache = board::BoardCache::confirming_each_read();
    let as_of = at("2019-01-01T00:00:00Z");
    let mut claimants_named = 0;
    for community in [SHILI, SANJIANG] {
        let expected = board_of(&v4, community).await;
        assert!(!expected.members.is_empty());
        claimants_named += expected
            .projects
            .iter()
            .filter(|p| p.claimant.as_ref().is_some_and(|c| !c.name.is_empty()))
            .count();
        assert_eq!(
            board_of(&v3, community).await,
            expected,
            "community {community}"
        );
        let cached = board::board_cached(&v3, id(community), as_of, &cache, row.generation)
            .await
            .expect("the board query runs")
            .expect("the community is known");
        assert_eq!(cached, expected, "community {community}, through the cache");
    }
    assert!(claimants_named > 0, "claimants are named from the members");
}

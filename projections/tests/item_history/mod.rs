//! A hand-made history for the unit-profile and item-view tests, sent as real commands through
//! the command handler into a store of the test's backend: the edge cases the read models must
//! get right.
//!
//! The story (Zhaozhen subdistrict, 2018): 十里 Shili convenes its second-quarter meeting; the
//! CDC claims the 4·25 vaccination publicity at it, recorded by Shili's secretary, runs it with
//! about 300 participants and completes it; the housing office claims the care project for
//! disabled persons' households, withdraws, and the disabled persons' federation claims it
//! instead (by its own representative) and gives gifts to 10 households; the CDC claims a
//! day-care utilities project that is then cancelled; the market-supervision bureau asks 三江
//! Sanjiang for help with a run-down courtyard, which Sanjiang resolves; the CDC leaves Sanjiang.
//! Ids are fixed (`Uuid::from_u128`) so snapshots are stable.

#![allow(dead_code)] // each test binary uses a part of it

use std::sync::Arc;

use commands::{CommandHandler, CommandOutcome, CommandRequest, Principal, Role};
use domain::Command;
use projections::collection::Namespace;
use projections::readdb::ReadDb;
use projections::runner::catch_up;
use projections::Projector;
use serde_json::{json, Value};
use store::EventStore;
use uuid::Uuid;

use crate::backends::{Backend, Place};

pub fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

pub const DISTRICT: u128 = 1;
pub const SHILI: u128 = 10;
pub const SANJIANG: u128 = 11;
/// 金堂县疾病预防控制中心: claims by secretary, completes one project, one cancelled.
pub const CDC: u128 = 20;
/// 金堂县残疾人联合会: the second claimant of the care project.
pub const FEDERATION: u128 = 21;
/// 金堂县房产管理局: claims the care project and withdraws.
pub const HOUSING: u128 = 22;
/// 金堂县市场监督管理局: raises the courtyard request to Sanjiang.
pub const MARKET: u128 = 23;
pub const MEETING: u128 = 30;
pub const VACCINATION: u128 = 40;
pub const CARE: u128 = 41;
pub const DAY_CARE: u128 = 42;
pub const ACTIVITY_425: u128 = 50;
pub const ACTIVITY_GIFTS: u128 = 51;
pub const COURTYARD: u128 = 60;
pub const STREETLIGHTS: u128 = 61;

pub fn admin() -> Principal {
    Principal {
        actor_id: id(1_000),
        name: "系统管理员".into(),
        role: Role::Admin,
        scope: None,
    }
}

pub fn shili_secretary() -> Principal {
    Principal {
        actor_id: id(1_001),
        name: "十里社区党委书记".into(),
        role: Role::CommunitySecretary,
        scope: Some(id(SHILI)),
    }
}

pub fn federation_rep() -> Principal {
    Principal {
        actor_id: id(1_002),
        name: "县残联党组织联络员".into(),
        role: Role::UnitRep,
        scope: Some(id(FEDERATION)),
    }
}

/// A store of its own on the test's backend and a handler writing to it.
pub struct History {
    pub place: Place,
    pub store: Arc<dyn EventStore>,
    pub handler: CommandHandler,
    sent: u64,
}

impl History {
    pub async fn new(backend: Backend) -> History {
        let place = backend.place().await;
        let store = place.store().await;
        History {
            place,
            handler: CommandHandler::new(store.clone()),
            store,
            sent: 0,
        }
    }

    /// Sends `name` with `body` as `principal`; the command must succeed.
    pub async fn send(&mut self, principal: &Principal, name: &str, body: Value) -> CommandOutcome {
        self.sent += 1;
        let command = Command::parse(name, body.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{name} {body} does not parse: {e}"));
        self.handler
            .handle(CommandRequest {
                command,
                principal: principal.clone(),
                request_hash: format!("history-{}", self.sent),
                idempotency_key: None,
                if_match: None,
                correlation_id: None,
                causation_id: None,
            })
            .await
            .unwrap_or_else(|e| panic!("{name} {body} was refused: {e:?}"))
    }

    pub async fn admin(&mut self, name: &str, body: Value) -> CommandOutcome {
        self.send(&admin(), name, body).await
    }

    /// Writes the whole story of the module doc.
    pub async fn story(backend: Backend) -> History {
        let mut h = History::new(backend).await;
        h.admin(
            "RegisterDistrict",
            json!({"district_id": id(DISTRICT), "name": "赵镇街道", "occurred_at": "2018-01-02T09:00:00+08:00"}),
        )
        .await;
        for (community, name) in [(SHILI, "十里社区"), (SANJIANG, "三江社区")] {
            h.admin(
                "RegisterCommunity",
                json!({"community_id": id(community), "district_id": id(DISTRICT), "name": name,
                       "committee": format!("{name}党委"), "occurred_at": "2018-01-03T09:00:00+08:00"}),
            )
            .await;
        }
        for (unit, name) in [
            (CDC, "金堂县疾病预防控制中心"),
            (FEDERATION, "金堂县残疾人联合会"),
            (HOUSING, "金堂县房产管理局"),
            (MARKET, "金堂县市场监督管理局"),
        ] {
            h.admin(
                "RegisterUnit",
                json!({"unit_id": id(unit), "district_id": id(DISTRICT), "name": name,
                       "occurred_at": "2018-01-04T09:00:00+08:00"}),
            )
            .await;
        }
        for (community, unit, kind, at) in [
            (SHILI, CDC, "jurisdiction", "2018-01-10T10:00:00+08:00"),
            (
                SHILI,
                FEDERATION,
                "double_report",
                "2018-01-10T10:00:00+08:00",
            ),
            (SHILI, HOUSING, "double_report", "2018-01-10T10:00:00+08:00"),
            (
                SANJIANG,
                MARKET,
                "jurisdiction",
                "2018-01-11T10:00:00+08:00",
            ),
            (SANJIANG, CDC, "double_report", "2018-01-12T10:00:00+08:00"),
        ] {
            h.admin(
                "AdmitMemberUnit",
                json!({"community_id": id(community), "unit_id": id(unit), "kind": kind, "occurred_at": at}),
            )
            .await;
        }

        // Shili's second-quarter meeting, recorded by its secretary.
        let secretary = shili_secretary();
        h.send(
            &secretary,
            "ConveneMeeting",
            json!({"meeting_id": id(MEETING), "community_id": id(SHILI), "kind": "regular",
                   "title": "2018年第二季度党建联席会议", "agenda": ["六联讨论", "认领党建服务项目"],
                   "venue": "十里社区党群服务中心", "occurred_at": "2018-04-24T14:30:00+08:00"}),
        )
        .await;
        h.send(
            &secretary,
            "RecordAttendance",
            json!({"meeting_id": id(MEETING), "unit_ids": [id(HOUSING), id(CDC), id(FEDERATION)],
                   "occurred_at": "2018-04-24T14:30:00+08:00"}),
        )
        .await;
        for (project, title, theme, need) in [
            (
                VACCINATION,
                "4·25 预防接种宣传日",
                "public_welfare",
                "居民不了解预防接种知识",
            ),
            (
                CARE,
                "关爱残疾人家庭",
                "service_problems",
                "残疾人家庭生活困难",
            ),
            (
                DAY_CARE,
                "日间照料中心水电费",
                "shared_resources",
                "日间照料中心运转经费不足",
            ),
        ] {
            h.send(
                &secretary,
                "ProposeProject",
                json!({"project_id": id(project), "community_id": id(SHILI), "title": title,
                       "theme": theme, "need": need, "occurred_at": "2018-04-20T09:00:00+08:00"}),
            )
            .await;
        }
        for project in [VACCINATION, CARE] {
            h.send(
                &secretary,
                "ApproveProject",
                json!({"project_id": id(project), "meeting_id": id(MEETING),
                       "occurred_at": "2018-04-24T15:00:00+08:00"}),
            )
            .await;
        }
        // The secretary records the CDC's claim at the meeting, on the unit's behalf.
        h.send(
            &secretary,
            "ClaimProject",
            json!({"project_id": id(VACCINATION), "unit_id": id(CDC), "meeting_id": id(MEETING),
                   "commitment": "组织预防接种宣传活动", "occurred_at": "2018-04-24T15:10:00+08:00"}),
        )
        .await;
        h.send(
            &secretary,
            "ClaimProject",
            json!({"project_id": id(CARE), "unit_id": id(HOUSING), "meeting_id": id(MEETING),
                   "occurred_at": "2018-04-24T15:20:00+08:00"}),
        )
        .await;
        h.send(
            &secretary,
            "CloseMeeting",
            json!({"meeting_id": id(MEETING), "resolutions": ["通过两个党建项目", "各单位按认领推进"],
                   "minutes": "会议由社区党委书记主持。", "occurred_at": "2018-04-24T17:00:00+08:00"}),
        )
        .await;

        // The 4·25 publicity day.
        h.admin(
            "LaunchProject",
            json!({"project_id": id(VACCINATION), "occurred_at": "2018-04-24T18:00:00+08:00"}),
        )
        .await;
        h.admin(
            "RecordActivity",
            json!({"project_id": id(VACCINATION), "activity_id": id(ACTIVITY_425),
                   "title": "4·25 全国儿童预防接种宣传日", "participants": 300, "volunteers": 12,
                   "volunteer_hours": 48, "beneficiaries": 300, "occurred_at": "2018-04-25T09:00:00+08:00"}),
        )
        .await;
        h.admin(
            "CompleteProject",
            json!({"project_id": id(VACCINATION), "summary": "约300名居民参加",
                   "occurred_at": "2018-04-26T09:00:00+08:00"}),
        )
        .await;
        h.send(
            &secretary,
            "RecordFeedback",
            json!({"project_id": id(VACCINATION), "rating": 5, "comment": "讲解细致，居民好评",
                   "occurred_at": "2018-04-27T09:00:00+08:00"}),
        )
        .await;
        h.send(
            &secretary,
            "RecordFeedback",
            json!({"project_id": id(VACCINATION), "rating": 4, "occurred_at": "2018-04-28T09:00:00+08:00"}),
        )
        .await;

        // The housing office gives the care project back; the federation takes it.
        h.admin(
            "WithdrawClaim",
            json!({"project_id": id(CARE), "reason": "人手不足", "occurred_at": "2018-05-02T09:00:00+08:00"}),
        )
        .await;
        let rep = federation_rep();
        h.send(
            &rep,
            "ClaimProject",
            json!({"project_id": id(CARE), "unit_id": id(FEDERATION),
                   "commitment": "为10户残疾人家庭购买慰问品", "occurred_at": "2018-05-03T09:00:00+08:00"}),
        )
        .await;
        h.send(
            &rep,
            "LaunchProject",
            json!({"project_id": id(CARE), "occurred_at": "2018-05-10T09:00:00+08:00"}),
        )
        .await;
        h.send(
            &rep,
            "RecordActivity",
            json!({"project_id": id(CARE), "activity_id": id(ACTIVITY_GIFTS),
                   "title": "为10户残疾人家庭送慰问品", "participants": 6, "volunteers": 4,
                   "volunteer_hours": 8, "beneficiaries": 10, "funds_yuan": 3000,
                   "occurred_at": "2018-05-12T09:00:00+08:00"}),
        )
        .await;

        // The CDC claims the day-care project without a meeting; it is cancelled.
        h.admin(
            "ClaimProject",
            json!({"project_id": id(DAY_CARE), "unit_id": id(CDC), "occurred_at": "2018-05-15T09:00:00+08:00"}),
        )
        .await;
        h.send(
            &secretary,
            "CancelProject",
            json!({"project_id": id(DAY_CARE), "reason": "已由县房管局直接解决",
                   "occurred_at": "2018-05-20T09:00:00+08:00"}),
        )
        .await;

        // Two-way: the market-supervision bureau asks Sanjiang for help; Sanjiang resolves it.
        h.admin(
            "RaiseRequest",
            json!({"request_id": id(COURTYARD), "community_id": id(SANJIANG), "unit_id": id(MARKET),
                   "title": "老旧院落改造", "need": "单位宿舍院落破旧，需社区协调改造",
                   "occurred_at": "2018-06-01T09:00:00+08:00"}),
        )
        .await;
        h.admin(
            "ResolveRequest",
            json!({"request_id": id(COURTYARD), "resolution": "社区协调完成院落改造",
                   "occurred_at": "2018-06-20T09:00:00+08:00"}),
        )
        .await;
        h.admin(
            "RaiseRequest",
            json!({"request_id": id(STREETLIGHTS), "community_id": id(SHILI), "unit_id": id(CDC),
                   "title": "单位门前路灯维修", "occurred_at": "2018-06-05T09:00:00+08:00"}),
        )
        .await;
        h.admin(
            "WithdrawMemberUnit",
            json!({"community_id": id(SANJIANG), "unit_id": id(CDC), "reason": "工作调整",
                   "occurred_at": "2018-06-30T09:00:00+08:00"}),
        )
        .await;
        h
    }

    /// Projects the whole log with `projector` into a fresh read-model database of the
    /// history's backend, `step` events per batch (`None`: as the runner batches them).
    pub async fn project(&self, projector: &mut dyn Projector, step: Option<i64>) -> ReadDb {
        let db = self.place.backend().fresh_read_db().await;
        let row = db
            .create_generation(projector.name(), projector.version())
            .await
            .expect("a generation");
        let ns = Namespace {
            projection: projector.name(),
            generation: row.generation,
        };
        let head = self.store.head().await.expect("the head");
        let mut position = 0;
        while position < head {
            let until = step.map(|s| (position + s).min(head));
            position = catch_up(
                self.store.as_ref(),
                &db,
                projector,
                &ns,
                position,
                until,
                |_| {},
            )
            .await
            .expect("projected");
        }
        db
    }

    /// Every document of the active generation of `projection`, in a stable order.
    pub async fn documents(db: &ReadDb, projection: &str) -> Vec<(String, String, String)> {
        db.dump_active()
            .await
            .expect("documents readable")
            .into_iter()
            .filter(|d| d.projection == projection)
            .map(|d| (d.kind, d.key, d.doc))
            .collect()
    }
}

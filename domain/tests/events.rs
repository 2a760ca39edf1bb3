//! The events' stored shape is a contract: one snapshot per event type pins its
//! `{"type", "data"}` form, and each one reads back through `upcast` as itself.

use lianxi_domain as domain;

use domain::events::*;
use domain::ids::*;
use domain::upcast::upcast;
use domain::values::*;
use uuid::Uuid;

const DISTRICT: DistrictId = DistrictId(Uuid::from_u128(0x00000001_0000_4000_8000_000000000001));
const COMMUNITY: CommunityId = CommunityId(Uuid::from_u128(0x00000002_0000_4000_8000_000000000001));
const UNIT: UnitId = UnitId(Uuid::from_u128(0x00000003_0000_4000_8000_000000000001));
const OTHER_UNIT: UnitId = UnitId(Uuid::from_u128(0x00000003_0000_4000_8000_000000000002));
const MEETING: MeetingId = MeetingId(Uuid::from_u128(0x00000004_0000_4000_8000_000000000001));
const PROJECT: ProjectId = ProjectId(Uuid::from_u128(0x00000005_0000_4000_8000_000000000001));
const REQUEST: RequestId = RequestId(Uuid::from_u128(0x00000006_0000_4000_8000_000000000001));
const ACTIVITY: ActivityId = ActivityId(Uuid::from_u128(0x00000007_0000_4000_8000_000000000001));

fn name(value: &str) -> Name {
    Name::parse(value).expect("a valid name")
}

fn text(value: &str) -> Text {
    Text::parse(value).expect("a valid text")
}

fn count(value: i64) -> Count {
    Count::parse(value).expect("a valid count")
}

/// One event of every type, with every optional field filled where it has one.
fn samples() -> Vec<Event> {
    vec![
        DistrictRegistered {
            district_id: DISTRICT,
            name: name("赵镇街道"),
        }
        .into(),
        CommunityRegistered {
            community_id: COMMUNITY,
            district_id: DISTRICT,
            name: name("十里社区"),
            committee: Some(name("十里社区党委")),
        }
        .into(),
        MemberUnitAdmitted {
            community_id: COMMUNITY,
            unit_id: UNIT,
            kind: MemberKind::DoubleReport,
        }
        .into(),
        MemberUnitWithdrawn {
            community_id: COMMUNITY,
            unit_id: UNIT,
            reason: Some(text("单位搬迁")),
        }
        .into(),
        UnitRegistered {
            unit_id: UNIT,
            district_id: DISTRICT,
            name: name("县疾控中心党支部"),
        }
        .into(),
        MeetingConvened {
            meeting_id: MEETING,
            community_id: COMMUNITY,
            kind: MeetingKind::Regular,
            title: name("2018年第二季度联席会议"),
            agenda: List::parse(vec![text("审议党建项目"), text("认领项目")]).expect("short"),
            venue: Some(name("十里社区会议室")),
        }
        .into(),
        AttendanceRecorded {
            meeting_id: MEETING,
            unit_ids: List::parse(vec![UNIT, OTHER_UNIT]).expect("short"),
        }
        .into(),
        MeetingClosed {
            meeting_id: MEETING,
            resolutions: List::parse(vec![text("12个单位认领项目")]).expect("short"),
            minutes: Some(text("会议纪要\n第一项")),
        }
        .into(),
        ProjectProposed {
            project_id: PROJECT,
            community_id: COMMUNITY,
            title: name("4·25预防接种宣传日"),
            theme: Theme::ServiceProblems,
            need: Some(text("居民希望了解预防接种知识")),
        }
        .into(),
        ProjectApproved {
            project_id: PROJECT,
            meeting_id: MEETING,
        }
        .into(),
        ProjectClaimed {
            project_id: PROJECT,
            unit_id: UNIT,
            meeting_id: Some(MEETING),
            commitment: Some(text("组织宣传日")),
        }
        .into(),
        ClaimWithdrawn {
            project_id: PROJECT,
            unit_id: UNIT,
            reason: Some(text("人手不足")),
        }
        .into(),
        ProjectLaunched {
            project_id: PROJECT,
            unit_id: UNIT,
        }
        .into(),
        ActivityRecorded {
            project_id: PROJECT,
            activity_id: ACTIVITY,
            unit_id: UNIT,
            title: name("4·25预防接种宣传日"),
            participants: count(300),
            volunteers: count(20),
            volunteer_hours: count(80),
            beneficiaries: count(300),
            funds_yuan: Yuan::parse(2_000).expect("in range"),
            notes: Some(text("约300人参加")),
        }
        .into(),
        ProjectCompleted {
            project_id: PROJECT,
            unit_id: UNIT,
            summary: Some(text("宣传日圆满完成")),
        }
        .into(),
        FeedbackRecorded {
            project_id: PROJECT,
            rating: Rating::parse(5).expect("in range"),
            comment: Some(text("好评")),
        }
        .into(),
        ProjectCancelled {
            project_id: PROJECT,
            reason: None,
        }
        .into(),
        RequestRaised {
            request_id: REQUEST,
            community_id: COMMUNITY,
            unit_id: UNIT,
            title: name("老旧院落改造"),
            need: Some(text("院落破旧")),
        }
        .into(),
        RequestResolved {
            request_id: REQUEST,
            resolution: Some(text("已协调改造")),
        }
        .into(),
    ]
}

#[test]
fn every_event_type_has_a_sample() {
    let types: Vec<&str> = samples().iter().map(Event::event_type).collect();
    assert_eq!(types, EVENT_TYPES);
}

#[test]
fn every_event_type_keeps_its_serialised_shape() {
    for event in samples() {
        insta::assert_json_snapshot!(event.event_type(), event);
    }
}

#[test]
fn every_event_reads_back_from_its_stored_form() {
    for event in samples() {
        let read = upcast(event.event_type(), event.schema_version(), event.data());
        assert_eq!(read.as_ref(), Ok(&event), "{}", event.event_type());
    }
}

#[test]
fn an_event_with_an_unknown_field_does_not_deserialise() {
    let json = serde_json::json!({
        "type": "ProjectLaunched",
        "data": {"project_id": PROJECT, "unit_id": UNIT, "extra": 1},
    });
    assert!(serde_json::from_value::<Event>(json).is_err());
}

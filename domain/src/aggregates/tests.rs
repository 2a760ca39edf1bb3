//! Cross-aggregate tests: the routing, the facts each command declares, and a whole project's
//! life decided through the crate's entry points with nothing but the declared facts.

use std::collections::HashMap;

use serde_json::json;

use crate::commands::Command;
use crate::error::DomainError;
use crate::events::Event;
use crate::facts::Facts;
use crate::testing::command;
use crate::testing::fixtures::*;
use crate::{decide, required_facts};

/// An in-memory log: decides each command with only the facts it declares, then appends.
#[derive(Default)]
struct Log {
    streams: HashMap<String, Vec<Event>>,
    ids_made: u128,
}

impl Log {
    fn stream(&self, stream: &str) -> Vec<Event> {
        self.streams.get(stream).cloned().unwrap_or_default()
    }

    fn run(&mut self, mut command: Command) -> Result<Vec<Event>, DomainError> {
        let ids_made = &mut self.ids_made;
        command.assign_ids(|| {
            *ids_made += 1;
            uuid::Uuid::from_u128(0x0000_0009_0000_4000_8000_0000_0000_0000 + *ids_made)
        });
        let target = command.target_stream().expect("ids were assigned");
        let history = self.stream(&target);
        let mut facts = Facts::new();
        for stream in required_facts(&command, &history) {
            let events = self.stream(&stream);
            facts.insert(stream, events);
        }
        let events = decide(&command, &history, &facts)?;
        self.streams
            .entry(target)
            .or_default()
            .extend(events.iter().cloned());
        Ok(events)
    }

    #[track_caller]
    fn accept(&mut self, name: &str, body: serde_json::Value) -> Vec<&'static str> {
        match self.run(command(name, body)) {
            Ok(events) => events.iter().map(Event::event_type).collect(),
            Err(error) => panic!("{name} was refused: {error}"),
        }
    }
}

#[test]
fn a_project_lives_its_whole_life_from_proposal_to_feedback() {
    let mut log = Log::default();
    let accepted = [
        log.accept(
            "RegisterDistrict",
            json!({"district_id": DISTRICT, "name": "赵镇街道"}),
        ),
        log.accept(
            "RegisterCommunity",
            json!({"community_id": COMMUNITY, "district_id": DISTRICT, "name": "十里社区"}),
        ),
        log.accept(
            "RegisterUnit",
            json!({"unit_id": UNIT, "district_id": DISTRICT, "name": "县疾控中心"}),
        ),
        log.accept(
            "RegisterUnit",
            json!({"unit_id": OTHER_UNIT, "district_id": DISTRICT, "name": "县残联"}),
        ),
        log.accept(
            "AdmitMemberUnit",
            json!({"community_id": COMMUNITY, "unit_id": UNIT, "kind": "jurisdiction"}),
        ),
        log.accept(
            "AdmitMemberUnit",
            json!({"community_id": COMMUNITY, "unit_id": OTHER_UNIT, "kind": "double_report"}),
        ),
        log.accept(
            "ConveneMeeting",
            json!({
                "meeting_id": MEETING, "community_id": COMMUNITY, "kind": "regular",
                "title": "第二季度联席会议", "agenda": ["审议项目"],
                "occurred_at": "2018-04-20T09:00:00+08:00",
            }),
        ),
        log.accept(
            "RecordAttendance",
            json!({"meeting_id": MEETING, "unit_ids": [UNIT, OTHER_UNIT]}),
        ),
        log.accept(
            "ProposeProject",
            json!({
                "project_id": PROJECT, "community_id": COMMUNITY,
                "title": "4·25预防接种宣传日", "theme": "service_problems",
            }),
        ),
        log.accept(
            "ApproveProject",
            json!({"project_id": PROJECT, "meeting_id": MEETING}),
        ),
        log.accept(
            "ClaimProject",
            json!({"project_id": PROJECT, "unit_id": UNIT, "meeting_id": MEETING}),
        ),
        log.accept(
            "CloseMeeting",
            json!({"meeting_id": MEETING, "resolutions": ["项目已认领"]}),
        ),
        log.accept("LaunchProject", json!({"project_id": PROJECT})),
        log.accept(
            "RecordActivity",
            json!({
                "project_id": PROJECT, "title": "宣传日", "participants": 300,
                "volunteers": 20, "volunteer_hours": 80, "beneficiaries": 300,
                "funds_yuan": 2000, "occurred_at": "2018-04-25T09:00:00+08:00",
            }),
        ),
        log.accept("CompleteProject", json!({"project_id": PROJECT})),
        log.accept(
            "RecordFeedback",
            json!({"project_id": PROJECT, "rating": 5, "comment": "好评"}),
        ),
        log.accept(
            "RaiseRequest",
            json!({
                "request_id": REQUEST, "community_id": COMMUNITY, "unit_id": OTHER_UNIT,
                "title": "老旧院落改造",
            }),
        ),
        log.accept("ResolveRequest", json!({"request_id": REQUEST})),
        log.accept(
            "WithdrawMemberUnit",
            json!({"community_id": COMMUNITY, "unit_id": OTHER_UNIT}),
        ),
    ]
    .concat();
    assert_eq!(
        accepted,
        [
            "DistrictRegistered",
            "CommunityRegistered",
            "UnitRegistered",
            "UnitRegistered",
            "MemberUnitAdmitted",
            "MemberUnitAdmitted",
            "MeetingConvened",
            "AttendanceRecorded",
            "ProjectProposed",
            "ProjectApproved",
            "ProjectClaimed",
            "MeetingClosed",
            "ProjectLaunched",
            "ActivityRecorded",
            "ProjectCompleted",
            "FeedbackRecorded",
            "RequestRaised",
            "RequestResolved",
            "MemberUnitWithdrawn",
        ]
    );
    let project = crate::aggregates::project::fold(&log.stream(&PROJECT.stream()))
        .expect("the project exists");
    assert_eq!(project.status.name(), "completed");
    assert_eq!(project.activities.len(), 1);
}

#[test]
fn a_claim_can_be_withdrawn_and_a_project_cancelled_with_only_the_declared_facts() {
    let mut log = Log::default();
    log.accept(
        "RegisterDistrict",
        json!({"name": "赵镇街道", "district_id": DISTRICT}),
    );
    log.accept(
        "RegisterCommunity",
        json!({"community_id": COMMUNITY, "district_id": DISTRICT, "name": "三江社区"}),
    );
    log.accept(
        "RegisterUnit",
        json!({"unit_id": UNIT, "district_id": DISTRICT, "name": "县市场监管局"}),
    );
    log.accept(
        "AdmitMemberUnit",
        json!({"community_id": COMMUNITY, "unit_id": UNIT, "kind": "social_organisation"}),
    );
    log.accept(
        "ProposeProject",
        json!({"project_id": PROJECT, "community_id": COMMUNITY, "title": "院落绿化",
               "theme": "living_environment"}),
    );
    log.accept(
        "ClaimProject",
        json!({"project_id": PROJECT, "unit_id": UNIT}),
    );
    assert_eq!(
        log.accept("WithdrawClaim", json!({"project_id": PROJECT})),
        ["ClaimWithdrawn"]
    );
    assert_eq!(
        log.accept("CancelProject", json!({"project_id": PROJECT})),
        ["ProjectCancelled"]
    );
}

#[test]
fn creating_commands_without_ids_get_them_from_the_handler() {
    let mut log = Log::default();
    log.accept("RegisterDistrict", json!({"name": "赵镇街道"}));
    let (stream, events) = log.streams.iter().next().expect("one stream was written");
    assert!(stream.starts_with("district-"));
    assert_eq!(events.len(), 1);
}

fn streams(command_name: &str, body: serde_json::Value, history: &[Event]) -> Vec<String> {
    required_facts(&command(command_name, body), history)
}

#[test]
fn creating_commands_read_the_streams_they_reference() {
    assert_eq!(
        streams("RegisterDistrict", json!({"name": "赵镇街道"}), &[]),
        Vec::<String>::new()
    );
    assert_eq!(
        streams(
            "RegisterCommunity",
            json!({"district_id": DISTRICT, "name": "十里社区"}),
            &[]
        ),
        [DISTRICT.stream()]
    );
    assert_eq!(
        streams(
            "RegisterUnit",
            json!({"district_id": DISTRICT, "name": "县残联"}),
            &[]
        ),
        [DISTRICT.stream()]
    );
    assert_eq!(
        streams(
            "ConveneMeeting",
            json!({"community_id": COMMUNITY, "kind": "regular", "title": "会", "agenda": []}),
            &[]
        ),
        [COMMUNITY.stream()]
    );
    assert_eq!(
        streams(
            "ProposeProject",
            json!({"community_id": COMMUNITY, "title": "项目", "theme": "civility"}),
            &[]
        ),
        [COMMUNITY.stream()]
    );
    assert_eq!(
        streams(
            "RaiseRequest",
            json!({"community_id": COMMUNITY, "unit_id": UNIT, "title": "求助"}),
            &[]
        ),
        [COMMUNITY.stream(), UNIT.stream()]
    );
}

#[test]
fn a_creating_command_on_a_taken_id_reads_nothing() {
    assert_eq!(
        streams(
            "ProposeProject",
            json!({"project_id": PROJECT, "community_id": COMMUNITY, "title": "项目",
                   "theme": "civility"}),
            &[project_proposed(PROJECT, COMMUNITY)]
        ),
        Vec::<String>::new()
    );
}

#[test]
fn community_commands_read_the_unit_they_admit_and_nothing_to_withdraw() {
    let community = [community_registered(COMMUNITY, DISTRICT)];
    assert_eq!(
        streams(
            "AdmitMemberUnit",
            json!({"community_id": COMMUNITY, "unit_id": UNIT, "kind": "jurisdiction"}),
            &community
        ),
        [UNIT.stream()]
    );
    assert_eq!(
        streams(
            "WithdrawMemberUnit",
            json!({"community_id": COMMUNITY, "unit_id": UNIT}),
            &community
        ),
        Vec::<String>::new()
    );
}

#[test]
fn attendance_reads_the_meetings_community_and_closing_reads_nothing() {
    let meeting = [meeting_convened(MEETING, COMMUNITY)];
    assert_eq!(
        streams(
            "RecordAttendance",
            json!({"meeting_id": MEETING, "unit_ids": [UNIT]}),
            &meeting
        ),
        [COMMUNITY.stream()]
    );
    assert_eq!(
        streams(
            "CloseMeeting",
            json!({"meeting_id": MEETING, "resolutions": []}),
            &meeting
        ),
        Vec::<String>::new()
    );
}

#[test]
fn project_commands_read_the_meeting_and_the_claim_reads_community_unit_and_meeting() {
    let project = [project_proposed(PROJECT, COMMUNITY)];
    assert_eq!(
        streams(
            "ApproveProject",
            json!({"project_id": PROJECT, "meeting_id": MEETING}),
            &project
        ),
        [MEETING.stream()]
    );
    assert_eq!(
        streams(
            "ClaimProject",
            json!({"project_id": PROJECT, "unit_id": UNIT}),
            &project
        ),
        [COMMUNITY.stream(), UNIT.stream()]
    );
    assert_eq!(
        streams(
            "ClaimProject",
            json!({"project_id": PROJECT, "unit_id": UNIT, "meeting_id": MEETING}),
            &project
        ),
        [COMMUNITY.stream(), UNIT.stream(), MEETING.stream()]
    );
    for (name, body) in [
        ("WithdrawClaim", json!({"project_id": PROJECT})),
        ("LaunchProject", json!({"project_id": PROJECT})),
        (
            "RecordActivity",
            json!({"project_id": PROJECT, "title": "活动", "participants": 1}),
        ),
        ("CompleteProject", json!({"project_id": PROJECT})),
        (
            "RecordFeedback",
            json!({"project_id": PROJECT, "rating": 4}),
        ),
        ("CancelProject", json!({"project_id": PROJECT})),
    ] {
        assert_eq!(
            streams(name, body, &project),
            Vec::<String>::new(),
            "{name}"
        );
    }
}

#[test]
fn a_command_on_a_target_that_does_not_exist_reads_nothing() {
    assert_eq!(
        streams(
            "ClaimProject",
            json!({"project_id": PROJECT, "unit_id": UNIT, "meeting_id": MEETING}),
            &[]
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        streams(
            "RecordAttendance",
            json!({"meeting_id": MEETING, "unit_ids": [UNIT]}),
            &[]
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        streams("ResolveRequest", json!({"request_id": REQUEST}), &[]),
        Vec::<String>::new()
    );
}

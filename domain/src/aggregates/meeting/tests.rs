//! Meeting rules: a registered community convenes; members attend while open; it closes once.

use serde_json::json;

use crate::events::{AttendanceRecorded, Event, MeetingClosed, MeetingConvened};
use crate::ids::UnitId;
use crate::testing::fixtures::*;
use crate::testing::{command, given};
use crate::values::MeetingKind;

fn convene() -> crate::Command {
    command(
        "ConveneMeeting",
        json!({
            "meeting_id": MEETING,
            "community_id": COMMUNITY,
            "kind": "extraordinary",
            "title": "项目认领会",
            "agenda": ["审议项目", "认领项目"],
            "venue": "十里社区会议室",
            "occurred_at": "2018-04-20T09:00:00+08:00",
        }),
    )
}

fn attend(units: &[UnitId]) -> crate::Command {
    command(
        "RecordAttendance",
        json!({"meeting_id": MEETING, "unit_ids": units}),
    )
}

fn close() -> crate::Command {
    command(
        "CloseMeeting",
        json!({"meeting_id": MEETING, "resolutions": ["12个单位认领项目"]}),
    )
}

fn convened() -> Vec<Event> {
    vec![meeting_convened(MEETING, COMMUNITY)]
}

#[test]
fn a_registered_community_convenes_a_meeting() {
    given([])
        .with_fact(COMMUNITY.stream(), community_with_members(COMMUNITY, &[]))
        .when(convene())
        .then([Event::MeetingConvened(MeetingConvened {
            meeting_id: MEETING,
            community_id: COMMUNITY,
            kind: MeetingKind::Extraordinary,
            title: name("项目认领会"),
            agenda: list(vec![text("审议项目"), text("认领项目")]),
            venue: Some(name("十里社区会议室")),
        })]);
}

#[test]
fn a_meeting_needs_a_registered_community() {
    given([]).when(convene()).then_err("unknown_community");
}

#[test]
fn convening_the_same_meeting_twice_is_refused() {
    given(convened())
        .with_fact(COMMUNITY.stream(), community_with_members(COMMUNITY, &[]))
        .when(convene())
        .then_err("already_exists");
}

#[test]
fn member_units_attend_an_open_meeting() {
    given(convened())
        .with_fact(
            COMMUNITY.stream(),
            community_with_members(COMMUNITY, &[UNIT, OTHER_UNIT]),
        )
        .when(attend(&[UNIT, OTHER_UNIT]))
        .then([Event::AttendanceRecorded(AttendanceRecorded {
            meeting_id: MEETING,
            unit_ids: list(vec![UNIT, OTHER_UNIT]),
        })]);
}

#[test]
fn every_attending_unit_must_be_a_current_member() {
    given(convened())
        .with_fact(
            COMMUNITY.stream(),
            community_with_members(COMMUNITY, &[UNIT]),
        )
        .when(attend(&[UNIT, OTHER_UNIT]))
        .then_err("not_a_member_unit");
}

#[test]
fn a_withdrawn_unit_cannot_attend() {
    let mut community = community_with_members(COMMUNITY, &[UNIT]);
    community.push(member_unit_withdrawn(COMMUNITY, UNIT));
    given(convened())
        .with_fact(COMMUNITY.stream(), community)
        .when(attend(&[UNIT]))
        .then_err("not_a_member_unit");
}

#[test]
fn attendance_is_recorded_before_the_meeting_closes() {
    given([
        meeting_convened(MEETING, COMMUNITY),
        meeting_closed(MEETING),
    ])
    .with_fact(
        COMMUNITY.stream(),
        community_with_members(COMMUNITY, &[UNIT]),
    )
    .when(attend(&[UNIT]))
    .then_err("meeting_already_closed");
}

#[test]
fn attendance_at_a_meeting_that_does_not_exist_is_not_found() {
    given([])
        .with_fact(
            COMMUNITY.stream(),
            community_with_members(COMMUNITY, &[UNIT]),
        )
        .when(attend(&[UNIT]))
        .then_err("not_found");
}

#[test]
fn attendance_needs_the_meetings_community_to_be_known() {
    given(convened())
        .when(attend(&[UNIT]))
        .then_err("unknown_community");
}

#[test]
fn a_meeting_closes_with_its_resolutions() {
    given(convened())
        .when(close())
        .then([Event::MeetingClosed(MeetingClosed {
            meeting_id: MEETING,
            resolutions: list(vec![text("12个单位认领项目")]),
            minutes: None,
        })]);
}

#[test]
fn a_meeting_closes_once() {
    given([
        meeting_convened(MEETING, COMMUNITY),
        meeting_closed(MEETING),
    ])
    .when(close())
    .then_err("meeting_already_closed");
}

#[test]
fn closing_a_meeting_that_does_not_exist_is_not_found() {
    given([]).when(close()).then_err("not_found");
}

#[test]
fn the_state_remembers_who_attended_and_whether_it_closed() {
    let meeting = super::fold(&[
        meeting_convened(MEETING, COMMUNITY),
        attendance_recorded(MEETING, vec![UNIT]),
        attendance_recorded(MEETING, vec![OTHER_UNIT, UNIT]),
        meeting_closed(MEETING),
    ])
    .expect("the meeting was convened");
    assert_eq!(meeting.attendees.len(), 2);
    assert_eq!(meeting.status, super::MeetingStatus::Closed);
}

//! Upcasting: an old ActivityRecorded payload reads as today's event; bad input is refused.

use serde_json::json;

use super::*;
use crate::testing::fixtures::*;

fn activity_v1() -> Value {
    json!({
        "project_id": PROJECT,
        "activity_id": ACTIVITY,
        "unit_id": UNIT,
        "title": "残联为10户残疾人家庭购买慰问品",
        "participants": 12,
        "volunteers": 4,
        "beneficiaries": 10,
        "funds": 3000,
        "notes": null,
    })
}

#[test]
fn activity_recorded_v1_is_upcast_with_funds_renamed_and_no_volunteer_hours() {
    let event = upcast("ActivityRecorded", 1, activity_v1()).expect("v1 is readable");
    let Event::ActivityRecorded(activity) = &event else {
        panic!("upcast to {}", event.event_type());
    };
    assert_eq!(activity.funds_yuan.get(), 3000);
    assert_eq!(activity.volunteer_hours.get(), 0);
    assert_eq!(activity.beneficiaries.get(), 10);
    assert_eq!(event.schema_version(), 2);
    assert_eq!(event.data()["funds_yuan"], 3000);
    assert_eq!(event.data().get("funds"), None);
}

#[test]
fn a_current_event_reads_back_as_itself() {
    let event = activity_recorded(PROJECT, ACTIVITY, UNIT);
    assert_eq!(
        upcast(event.event_type(), event.schema_version(), event.data()),
        Ok(event)
    );
    let event = project_claimed(PROJECT, UNIT, Some(MEETING));
    assert_eq!(upcast("ProjectClaimed", 1, event.data()), Ok(event));
}

#[test]
fn v2_data_stored_as_v1_does_not_fit() {
    let v2 = activity_recorded(PROJECT, ACTIVITY, UNIT).data();
    let error = upcast("ActivityRecorded", 1, v2).expect_err("v2 data is not v1");
    assert!(
        matches!(error, UpcastError::BadData { version: 1, .. }),
        "{error}"
    );
}

#[test]
fn an_unknown_event_type_is_refused() {
    let error = upcast("ProjectRenamed", 1, json!({})).expect_err("unknown type");
    assert_eq!(error, UpcastError::UnknownType("ProjectRenamed".to_owned()));
    assert_eq!(error.to_string(), "unknown event type \"ProjectRenamed\"");
}

#[test]
fn a_version_newer_than_this_build_is_refused() {
    let error = upcast("ActivityRecorded", 3, activity_v1()).expect_err("from the future");
    assert_eq!(
        error.to_string(),
        "ActivityRecorded schema version 3 is newer than this build knows (2)"
    );
    assert!(matches!(
        upcast("ProjectProposed", 2, json!({})),
        Err(UpcastError::NewerVersion { known: 1, .. })
    ));
    assert!(matches!(
        upcast("ProjectProposed", 0, json!({})),
        Err(UpcastError::InvalidVersion { .. })
    ));
}

#[test]
fn data_that_does_not_fit_its_type_is_refused() {
    let mut data = activity_v1();
    data["participants"] = json!(-1);
    assert!(matches!(
        upcast("ActivityRecorded", 1, data),
        Err(UpcastError::BadData { .. })
    ));
    assert!(matches!(
        upcast("ProjectLaunched", 1, json!({"project_id": PROJECT})),
        Err(UpcastError::BadData { .. })
    ));
    assert!(matches!(
        upcast("ProjectLaunched", 1, json!("not an object")),
        Err(UpcastError::BadData { .. })
    ));
}

#[test]
fn every_type_has_a_current_schema_version() {
    for event_type in crate::EVENT_TYPES {
        let expected = if event_type == "ActivityRecorded" {
            2
        } else {
            1
        };
        assert_eq!(current_schema_version(event_type), expected, "{event_type}");
    }
}

/// One event of every type, as the fixtures build them.
fn one_of_each() -> Vec<Event> {
    vec![
        district_registered(DISTRICT),
        community_registered(COMMUNITY, DISTRICT),
        unit_registered(UNIT, DISTRICT),
        member_unit_admitted(COMMUNITY, UNIT),
        member_unit_withdrawn(COMMUNITY, UNIT),
        meeting_convened(MEETING, COMMUNITY),
        attendance_recorded(MEETING, vec![UNIT]),
        meeting_closed(MEETING),
        project_proposed(PROJECT, COMMUNITY),
        project_approved(PROJECT, MEETING),
        project_claimed(PROJECT, UNIT, Some(MEETING)),
        claim_withdrawn(PROJECT, UNIT),
        project_launched(PROJECT, UNIT),
        activity_recorded(PROJECT, ACTIVITY, UNIT),
        project_completed(PROJECT, UNIT),
        Event::FeedbackRecorded(crate::events::FeedbackRecorded {
            project_id: PROJECT,
            rating: crate::values::Rating::parse(4).expect("a valid rating"),
            comment: Some(text("好")),
        }),
        project_cancelled(PROJECT),
        request_raised(REQUEST, COMMUNITY, UNIT),
        request_resolved(REQUEST),
    ]
}

#[test]
fn upcast_str_reads_every_current_event_as_upcast_does() {
    let events = one_of_each();
    let mut types: Vec<&str> = events.iter().map(Event::event_type).collect();
    let mut expected = crate::EVENT_TYPES.to_vec();
    types.sort_unstable();
    expected.sort_unstable();
    assert_eq!(types, expected, "one event of every type");
    for event in events {
        let text = event.data().to_string();
        let from_text = upcast_str(event.event_type(), event.schema_version(), &text);
        assert_eq!(from_text, Ok(event.clone()), "{}", event.event_type());
    }
}

#[test]
fn upcast_str_upcasts_an_old_shape_and_refuses_what_upcast_refuses() {
    let text = activity_v1().to_string();
    assert_eq!(
        upcast_str("ActivityRecorded", 1, &text),
        upcast("ActivityRecorded", 1, activity_v1())
    );
    assert!(matches!(
        upcast_str("ProjectRenamed", 1, "{}"),
        Err(UpcastError::UnknownType(_))
    ));
    assert!(matches!(
        upcast_str("ActivityRecorded", 3, &text),
        Err(UpcastError::NewerVersion { .. })
    ));
    assert!(matches!(
        upcast_str("ProjectLaunched", 1, "not json"),
        Err(UpcastError::BadData { .. })
    ));
}

#[test]
fn upcast_str_refuses_text_that_is_more_than_one_json_object() {
    // Stored data is one object; text that tries to close it and add fields (a second type
    // tag) must not be read as some other event.
    let launched = project_launched(PROJECT, UNIT).data().to_string();
    for smuggled in [
        format!(r#"{launched},"type":"ProjectCancelled""#),
        format!("{launched}}}"),
        format!("{launched} {launched}"),
        String::new(),
    ] {
        assert!(
            matches!(
                upcast_str("ProjectLaunched", 1, &smuggled),
                Err(UpcastError::BadData { .. })
            ),
            "{smuggled:?} was accepted"
        );
    }
}

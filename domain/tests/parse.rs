//! `Command::parse`: every limit of API.md refuses a bad body before a command exists, and
//! names the offending field by its JSON path.

use lianxi_domain as domain;

use domain::commands::Command;
use domain::ParseError;
use serde_json::{json, Value};

const PROJECT: &str = "00000005-0000-4000-8000-000000000001";
const COMMUNITY: &str = "00000002-0000-4000-8000-000000000001";
const UNIT: &str = "00000003-0000-4000-8000-000000000001";

fn parse(name: &str, body: Value) -> Result<Command, ParseError> {
    Command::parse(name, body.to_string().as_bytes())
}

#[track_caller]
fn refused_field(name: &str, body: Value) -> (String, String) {
    match parse(name, body) {
        Err(ParseError::Field { field, message }) => (field, message),
        other => panic!("expected a field error, got {other:?}"),
    }
}

fn activity(extra: Value) -> Value {
    let mut body = json!({"project_id": PROJECT, "title": "宣传日", "participants": 300});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

fn meeting(agenda: Value) -> Value {
    json!({"community_id": COMMUNITY, "kind": "regular", "title": "联席会议", "agenda": agenda})
}

#[test]
fn every_command_name_parses_a_minimal_body() {
    let bodies = [
        ("RegisterDistrict", json!({"name": "赵镇街道"})),
        (
            "RegisterCommunity",
            json!({"district_id": COMMUNITY, "name": "十里社区"}),
        ),
        (
            "RegisterUnit",
            json!({"district_id": COMMUNITY, "name": "县残联"}),
        ),
        (
            "AdmitMemberUnit",
            json!({"community_id": COMMUNITY, "unit_id": UNIT, "kind": "jurisdiction"}),
        ),
        (
            "WithdrawMemberUnit",
            json!({"community_id": COMMUNITY, "unit_id": UNIT}),
        ),
        ("ConveneMeeting", meeting(json!([]))),
        (
            "RecordAttendance",
            json!({"meeting_id": UNIT, "unit_ids": [UNIT]}),
        ),
        (
            "CloseMeeting",
            json!({"meeting_id": UNIT, "resolutions": []}),
        ),
        (
            "ProposeProject",
            json!({"community_id": COMMUNITY, "title": "项目", "theme": "party_work"}),
        ),
        (
            "ApproveProject",
            json!({"project_id": PROJECT, "meeting_id": UNIT}),
        ),
        (
            "ClaimProject",
            json!({"project_id": PROJECT, "unit_id": UNIT}),
        ),
        ("WithdrawClaim", json!({"project_id": PROJECT})),
        ("LaunchProject", json!({"project_id": PROJECT})),
        ("RecordActivity", activity(json!({}))),
        ("CompleteProject", json!({"project_id": PROJECT})),
        (
            "RecordFeedback",
            json!({"project_id": PROJECT, "rating": 5}),
        ),
        ("CancelProject", json!({"project_id": PROJECT})),
        (
            "RaiseRequest",
            json!({"community_id": COMMUNITY, "unit_id": UNIT, "title": "求助"}),
        ),
        ("ResolveRequest", json!({"request_id": PROJECT})),
    ];
    assert_eq!(bodies.len(), domain::COMMAND_NAMES.len());
    for (name, body) in bodies {
        let command = parse(name, body).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(command.name(), name);
    }
}

#[test]
fn an_unknown_command_name_is_refused() {
    assert_eq!(
        parse("AdoptProject", json!({})),
        Err(ParseError::UnknownCommand("AdoptProject".to_owned()))
    );
}

#[test]
fn an_unknown_field_is_refused() {
    let (field, message) = refused_field(
        "LaunchProject",
        json!({"project_id": PROJECT, "actor": "me"}),
    );
    assert_eq!(field, "actor");
    assert!(message.contains("unknown field `actor`"), "{message}");
}

#[test]
fn a_missing_field_is_refused() {
    let (field, message) = refused_field("ClaimProject", json!({"project_id": PROJECT}));
    assert_eq!(field, "unit_id");
    assert!(message.contains("missing field `unit_id`"), "{message}");
}

#[test]
fn a_field_of_the_wrong_type_is_refused() {
    let (field, _) = refused_field("RecordActivity", activity(json!({"participants": "300"})));
    assert_eq!(field, "participants");
    let (field, _) = refused_field("RecordActivity", activity(json!({"volunteers": 1.5})));
    assert_eq!(field, "volunteers");
}

#[test]
fn counts_are_between_zero_and_a_million() {
    let (field, message) = refused_field("RecordActivity", activity(json!({"participants": -1})));
    assert_eq!(field, "participants");
    assert!(message.contains("between 0 and 1000000"), "{message}");
    let (field, _) = refused_field(
        "RecordActivity",
        activity(json!({"volunteer_hours": 1_000_001})),
    );
    assert_eq!(field, "volunteer_hours");
    let (field, _) = refused_field(
        "RecordActivity",
        activity(json!({"beneficiaries": u64::MAX})),
    );
    assert_eq!(field, "beneficiaries");
    assert!(parse(
        "RecordActivity",
        activity(json!({"participants": 1_000_000}))
    )
    .is_ok());
}

#[test]
fn funds_are_between_zero_and_a_billion_yuan() {
    let (field, _) = refused_field(
        "RecordActivity",
        activity(json!({"funds_yuan": 1_000_000_001_i64})),
    );
    assert_eq!(field, "funds_yuan");
    let (field, _) = refused_field("RecordActivity", activity(json!({"funds_yuan": -5})));
    assert_eq!(field, "funds_yuan");
    assert!(parse(
        "RecordActivity",
        activity(json!({"funds_yuan": 1_000_000_000_i64}))
    )
    .is_ok());
}

#[test]
fn optional_counts_default_to_zero() {
    let Ok(Command::RecordActivity(activity)) = parse("RecordActivity", activity(json!({}))) else {
        panic!("a minimal activity parses");
    };
    assert_eq!(activity.participants.get(), 300);
    assert_eq!(activity.volunteers.get(), 0);
    assert_eq!(activity.volunteer_hours.get(), 0);
    assert_eq!(activity.beneficiaries.get(), 0);
    assert_eq!(activity.funds_yuan.get(), 0);
    assert_eq!(activity.activity_id, None);
}

#[test]
fn a_title_is_at_most_two_hundred_characters() {
    let (field, message) = refused_field(
        "RecordActivity",
        activity(json!({"title": "宣".repeat(201)})),
    );
    assert_eq!(field, "title");
    assert!(
        message.contains("at most 200 characters, got 201"),
        "{message}"
    );
    assert!(parse(
        "RecordActivity",
        activity(json!({"title": "宣".repeat(200)}))
    )
    .is_ok());
    let (field, _) = refused_field("RecordActivity", activity(json!({"title": "   "})));
    assert_eq!(field, "title");
}

#[test]
fn free_text_is_at_most_four_thousand_characters() {
    let (field, _) = refused_field(
        "RecordActivity",
        activity(json!({"notes": "x".repeat(4_001)})),
    );
    assert_eq!(field, "notes");
    assert!(parse(
        "RecordActivity",
        activity(json!({"notes": "x".repeat(4_000)}))
    )
    .is_ok());
}

#[test]
fn control_characters_are_refused_but_newline_and_tab_are_allowed_in_text() {
    let (field, message) =
        refused_field("RecordActivity", activity(json!({"notes": "a\u{0000}b"})));
    assert_eq!(field, "notes");
    assert!(message.contains("U+0000"), "{message}");
    let (field, _) = refused_field("RecordActivity", activity(json!({"title": "bell\u{0007}"})));
    assert_eq!(field, "title");
    assert!(parse("RecordActivity", activity(json!({"notes": "一\n二\t三"}))).is_ok());
    let (field, _) = refused_field("RecordActivity", activity(json!({"title": "一\n二"})));
    assert_eq!(field, "title");
}

#[test]
fn a_list_holds_at_most_a_hundred_items() {
    let items: Vec<String> = (0..101).map(|i| format!("议题{i}")).collect();
    let (field, message) = refused_field("ConveneMeeting", meeting(json!(items)));
    assert_eq!(field, "agenda");
    assert!(message.contains("at most 100 items, got 101"), "{message}");
    assert!(parse("ConveneMeeting", meeting(json!(items[..100]))).is_ok());
}

#[test]
fn a_bad_list_item_is_named_by_its_index() {
    let (field, _) = refused_field(
        "ConveneMeeting",
        meeting(json!(["一", "二", "三", "bad\u{0000}", "五"])),
    );
    assert_eq!(field, "agenda[3]");
    let (field, _) = refused_field(
        "RecordAttendance",
        json!({"meeting_id": UNIT, "unit_ids": [UNIT, "not-a-uuid"]}),
    );
    assert_eq!(field, "unit_ids[1]");
}

#[test]
fn a_business_time_is_a_real_rfc3339_time_between_2000_and_2100() {
    for bad in [
        "1999-12-31T23:59:59+08:00",
        "2101-01-01T00:00:00Z",
        "2018-04-25",
        "2018-04-25 09:00:00",
        "2018-02-30T09:00:00+08:00",
        "yesterday",
    ] {
        let (field, _) = refused_field(
            "LaunchProject",
            json!({"project_id": PROJECT, "occurred_at": bad}),
        );
        assert_eq!(field, "occurred_at", "{bad}");
    }
    let Ok(command) = parse(
        "LaunchProject",
        json!({"project_id": PROJECT, "occurred_at": "2018-04-25T09:00:00+08:00"}),
    ) else {
        panic!("a good time parses");
    };
    let time = command.occurred_at().expect("the time is kept");
    assert_eq!(time.quarter().to_string(), "2018Q2");
}

#[test]
fn a_rating_is_between_one_and_five() {
    for bad in [0, 6, -1] {
        let (field, _) = refused_field(
            "RecordFeedback",
            json!({"project_id": PROJECT, "rating": bad}),
        );
        assert_eq!(field, "rating", "{bad}");
    }
    for good in 1..=5 {
        assert!(parse(
            "RecordFeedback",
            json!({"project_id": PROJECT, "rating": good})
        )
        .is_ok());
    }
}

#[test]
fn an_id_is_a_uuid() {
    let (field, _) = refused_field("LaunchProject", json!({"project_id": "project-42"}));
    assert_eq!(field, "project_id");
    let (field, _) = refused_field("LaunchProject", json!({"project_id": 42}));
    assert_eq!(field, "project_id");
}

#[test]
fn an_unknown_theme_or_kind_is_refused() {
    let (field, _) = refused_field(
        "ProposeProject",
        json!({"community_id": COMMUNITY, "title": "项目", "theme": "sports"}),
    );
    assert_eq!(field, "theme");
    let (field, _) = refused_field(
        "AdmitMemberUnit",
        json!({"community_id": COMMUNITY, "unit_id": UNIT, "kind": "friend"}),
    );
    assert_eq!(field, "kind");
}

#[test]
fn a_body_that_is_not_a_json_object_is_a_syntax_error() {
    for body in [
        &b"[]"[..],
        b"\"LaunchProject\"",
        b"42",
        b"null",
        b"",
        b"{",
        b"{} {}",
        b"{'a': 1}",
    ] {
        assert!(
            matches!(
                Command::parse("LaunchProject", body),
                Err(ParseError::Syntax(_))
            ),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn deeply_nested_json_hits_the_recursion_limit_as_a_syntax_error() {
    let body = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let Err(ParseError::Syntax(message)) = Command::parse("LaunchProject", body.as_bytes()) else {
        panic!("deep nesting must be refused");
    };
    assert!(message.contains("recursion limit"), "{message}");
    let body = format!(
        "{{\"project_id\": \"{PROJECT}\", \"x\": {}{}}}",
        "[".repeat(200),
        "]".repeat(200)
    );
    assert!(matches!(
        Command::parse("LaunchProject", body.as_bytes()),
        Err(ParseError::Syntax(_))
    ));
}

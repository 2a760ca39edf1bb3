//! Values: quarters in China Standard Time, and the limits the OpenAPI schemas publish.

use chrono::DateTime;

use super::*;

#[test]
fn a_quarter_is_reckoned_in_china_standard_time() {
    let time = DateTime::parse_from_rfc3339("2018-03-31T20:00:00Z").expect("valid time");
    assert_eq!(
        Quarter::of(time),
        Quarter {
            year: 2018,
            quarter: 2
        }
    );
    assert_eq!(Quarter::of(time).to_string(), "2018Q2");
    let time = DateTime::parse_from_rfc3339("2018-03-31T15:59:59Z").expect("valid time");
    assert_eq!(Quarter::of(time).to_string(), "2018Q1");
}

#[test]
fn a_business_time_knows_its_quarter() {
    let time = BusinessTime::parse("2018-12-31T23:30:00+08:00").expect("valid time");
    assert_eq!(time.quarter().to_string(), "2018Q4");
    let time = BusinessTime::parse("2018-12-31T16:30:00Z").expect("valid time");
    assert_eq!(time.quarter().to_string(), "2019Q1");
}

#[test]
fn quarters_parse_and_follow_each_other() {
    assert_eq!(
        Quarter::parse("2018Q4").map(Quarter::next),
        Ok(Quarter {
            year: 2019,
            quarter: 1
        })
    );
    for bad in ["2018Q5", "2018Q0", "18Q1", "2018-Q1", "1999Q1", ""] {
        assert!(Quarter::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_openapi_schemas_state_the_limits() {
    use utoipa::PartialSchema;
    let json = |schema| serde_json::to_value(schema).expect("schemas serialise");
    let name = json(Name::schema());
    assert_eq!(name["maxLength"], 200);
    assert_eq!(name["minLength"], 1);
    assert_eq!(json(Text::schema())["maxLength"], 4000);
    assert_eq!(json(Count::schema())["maximum"], 1_000_000);
    assert_eq!(json(Yuan::schema())["maximum"], 1_000_000_000);
    assert_eq!(json(Rating::schema())["minimum"], 1);
    assert_eq!(json(List::<Text>::schema())["maxItems"], 100);
    let mut components = Vec::new();
    <crate::commands::ConveneMeeting as utoipa::ToSchema>::schemas(&mut components);
    let list = components
        .iter()
        .find(|(name, _)| name == "List_Text")
        .map(|(_, schema)| json(schema.clone()))
        .expect("the agenda's schema is a component");
    assert_eq!(list["maxItems"], 100);
    assert_eq!(list["items"]["maxLength"], 4000);
}

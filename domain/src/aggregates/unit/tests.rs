//! Unit rules: a unit is registered once, in a registered district.

use serde_json::json;

use crate::testing::fixtures::*;
use crate::testing::{command, given};

fn register_unit() -> crate::Command {
    command(
        "RegisterUnit",
        json!({"unit_id": UNIT, "district_id": DISTRICT, "name": "县疾控中心党支部"}),
    )
}

#[test]
fn registering_a_unit_in_a_registered_district_records_it() {
    given([])
        .with_fact(DISTRICT.stream(), [district_registered(DISTRICT)])
        .when(register_unit())
        .then([unit_registered(UNIT, DISTRICT)]);
}

#[test]
fn a_unit_needs_a_registered_district() {
    given([]).when(register_unit()).then_err("unknown_district");
}

#[test]
fn registering_a_unit_twice_is_refused() {
    given([unit_registered(UNIT, DISTRICT)])
        .with_fact(DISTRICT.stream(), [district_registered(DISTRICT)])
        .when(register_unit())
        .then_err("already_exists");
}

//! District rules: a district is registered once.

use serde_json::json;

use crate::testing::fixtures::*;
use crate::testing::{command, given};

#[test]
fn registering_a_district_records_it() {
    given([])
        .when(command(
            "RegisterDistrict",
            json!({"district_id": DISTRICT, "name": "赵镇街道"}),
        ))
        .then([district_registered(DISTRICT)]);
}

#[test]
fn registering_a_district_twice_is_refused() {
    given([district_registered(DISTRICT)])
        .when(command(
            "RegisterDistrict",
            json!({"district_id": DISTRICT, "name": "赵镇街道"}),
        ))
        .then_err("already_exists");
}

#[test]
fn a_district_without_an_assigned_id_is_a_caller_bug_not_a_panic() {
    given([])
        .when(command("RegisterDistrict", json!({"name": "赵镇街道"})))
        .then_err("id_not_assigned");
}

//! The unit profile after a hand-made history: memberships joined and left, a claim recorded by
//! a secretary on the unit's behalf, a withdrawn claim that stays listed, a cancelled project,
//! activities and requests (see `item_history`).

mod backends;
mod item_history;

use backends::{on_both_backends, Backend};

use item_history::*;
use projections::projectors::unit_profile::{self, ClaimStatus, UnitProfileProjector};

async fn profiles(backend: Backend) -> (History, projections::readdb::ReadDb) {
    let history = History::story(backend).await;
    let db = history
        .project(&mut UnitProfileProjector::default(), None)
        .await;
    (history, db)
}

async fn profile(db: &projections::readdb::ReadDb, unit: u128) -> unit_profile::UnitProfile {
    unit_profile::unit_profile(db, id(unit))
        .await
        .expect("the read model answers")
        .expect("the unit has a profile")
}

async fn the_profiles_after_the_story(backend: Backend) {
    let (_history, db) = profiles(backend).await;
    for (unit, name) in [
        (CDC, "cdc"),
        (FEDERATION, "federation"),
        (HOUSING, "housing"),
        (MARKET, "market"),
    ] {
        insta::assert_json_snapshot!(format!("profile_{name}"), profile(&db, unit).await);
    }
}

async fn a_claim_recorded_by_a_secretary_names_the_secretary(backend: Backend) {
    let (_history, db) = profiles(backend).await;
    let cdc = profile(&db, CDC).await;
    let claim = &cdc.claims[0];
    assert_eq!(claim.project_id, id(VACCINATION));
    assert_eq!(claim.meeting_id, Some(id(MEETING)));
    assert_eq!(claim.recorded_by.id, shili_secretary().actor_id);
    assert_eq!(claim.recorded_by.role, "community_secretary");
    assert_eq!(claim.status, ClaimStatus::Completed);
}

async fn a_withdrawn_claim_stays_listed_and_the_next_claimant_holds_the_project(backend: Backend) {
    let (_history, db) = profiles(backend).await;
    let housing = profile(&db, HOUSING).await;
    assert_eq!(housing.claims.len(), 1);
    assert_eq!(housing.claims[0].status, ClaimStatus::Withdrawn);
    assert_eq!(
        housing.claims[0].withdrawn_at.as_deref(),
        Some("2018-05-02T01:00:00Z")
    );
    let federation = profile(&db, FEDERATION).await;
    assert_eq!(federation.claims[0].project_id, id(CARE));
    assert_eq!(federation.claims[0].status, ClaimStatus::Launched);
    assert_eq!(federation.claims[0].recorded_by.role, "unit_rep");
}

async fn a_cancelled_project_marks_its_claim_cancelled(backend: Backend) {
    let (_history, db) = profiles(backend).await;
    let cdc = profile(&db, CDC).await;
    let day_care = cdc
        .claims
        .iter()
        .find(|c| c.project_id == id(DAY_CARE))
        .expect("the day-care claim");
    assert_eq!(day_care.status, ClaimStatus::Cancelled);
    assert_eq!(day_care.meeting_id, None);
}

async fn an_unknown_unit_has_no_profile(backend: Backend) {
    let (_history, db) = profiles(backend).await;
    let none = unit_profile::unit_profile(&db, id(999))
        .await
        .expect("the read model answers");
    assert_eq!(none, None);
}

async fn one_event_per_batch_gives_the_same_documents_as_whole_batches(backend: Backend) {
    // References followed across batches (a cancelled project's claimant, a resolved request's
    // raiser) must give what following them inside one batch gives.
    let history = History::story(backend).await;
    let whole = history
        .project(&mut UnitProfileProjector::default(), None)
        .await;
    let single = history
        .project(&mut UnitProfileProjector::default(), Some(1))
        .await;
    let a = History::documents(&whole, unit_profile::NAME).await;
    let b = History::documents(&single, unit_profile::NAME).await;
    assert!(!a.is_empty());
    assert_eq!(a, b);
}

async fn each_claim_is_a_document_of_its_own_so_the_unit_document_stays_small(backend: Backend) {
    let (_history, db) = profiles(backend).await;
    let documents = History::documents(&db, unit_profile::NAME).await;
    let claims = documents
        .iter()
        .filter(|(kind, _, _)| kind == "claim")
        .count();
    assert_eq!(
        claims, 4,
        "the CDC's two, the housing office's, the federation's"
    );
    let (_, _, cdc) = documents
        .iter()
        .find(|(kind, key, _)| kind == "unit" && *key == id(CDC).to_string())
        .expect("the CDC's document");
    assert!(!cdc.contains("claims"), "{cdc}");
}

on_both_backends!(
    the_profiles_after_the_story,
    a_claim_recorded_by_a_secretary_names_the_secretary,
    a_withdrawn_claim_stays_listed_and_the_next_claimant_holds_the_project,
    a_cancelled_project_marks_its_claim_cancelled,
    an_unknown_unit_has_no_profile,
    one_event_per_batch_gives_the_same_documents_as_whole_batches,
    each_claim_is_a_document_of_its_own_so_the_unit_document_stays_small,
);

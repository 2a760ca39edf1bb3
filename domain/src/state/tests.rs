//! A state is only a cache of a fold: deciding from it, even after a round trip through its
//! serialised form, must give exactly what deciding from the whole history gives.

use std::collections::HashMap;
use std::sync::Arc;

use uuid::Uuid;

use super::*;
use crate::testing::fixtures::*;
use crate::testing::generator::Generator;
use crate::{Command, Facts};

/// Ids that repeat from run to run, so a failure can be replayed.
fn counter_ids() -> impl FnMut() -> Uuid {
    let mut next = 0u128;
    move || {
        next += 1;
        Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | next)
    }
}

/// Serialises `state` and reads it back, as a snapshot does.
fn round_trip(state: &StreamState) -> StreamState {
    let json = serde_json::to_string(state).expect("a state serialises");
    serde_json::from_str(&json).expect("a serialised state reads back")
}

#[test]
fn deciding_from_kept_states_equals_deciding_from_histories() {
    let mut generator = Generator::new(7, 2, 4, 12);
    let mut new_id = counter_ids();
    let mut histories: HashMap<String, Vec<Event>> = HashMap::new();
    let mut states: HashMap<String, Arc<StreamState>> = HashMap::new();
    let (mut accepted, mut refused) = (0, 0);

    for step in 0..3_000 {
        let generated = generator.next_command();
        let mut command: Command = generated.command().expect("generated bodies parse");
        command.assign_ids(&mut new_id);
        let stream = command.target_stream().expect("ids are assigned");
        let history = histories.get(&stream).cloned().unwrap_or_default();
        let state = states
            .get(&stream)
            .map(|s| (**s).clone())
            .or_else(|| StreamState::initial(&stream))
            .expect("a known stream kind");

        assert_eq!(
            crate::required_facts(&command, &history),
            crate::required_facts_from(&command, &state),
            "step {step}: {} reads other facts from its state",
            command.name()
        );
        assert_eq!(
            crate::scope_of(&command, &history),
            crate::scope_of_state(&command, &state),
            "step {step}: {} has another scope from its state",
            command.name()
        );
        let mut from_histories = Facts::new();
        let mut from_states = Facts::new();
        for fact in crate::required_facts(&command, &history) {
            let events = histories.get(&fact).cloned().unwrap_or_default();
            from_histories.insert(fact.clone(), events);
            if let Some(kept) = states.get(&fact) {
                from_states.insert_state(fact, Arc::clone(kept));
            } else if let Some(initial) = StreamState::initial(&fact) {
                from_states.insert_state(fact, Arc::new(initial));
            }
        }

        let by_history = crate::decide(&command, &history, &from_histories);
        let by_state = crate::decide_from(&command, &state, &from_states);
        assert_eq!(
            by_history,
            by_state,
            "step {step}: {} decided otherwise from its state",
            command.name()
        );

        if let Ok(events) = by_history {
            accepted += 1;
            let mut next = state;
            next.evolve_all(&events);
            // Every seventh step goes through the snapshot form, as a cold load would.
            let next = if step % 7 == 0 {
                round_trip(&next)
            } else {
                next
            };
            histories.entry(stream.clone()).or_default().extend(events);
            assert_eq!(
                Some(&next),
                StreamState::fold(&stream, &histories[&stream]).as_ref(),
                "step {step}: the kept state drifted from the fold of the history"
            );
            states.insert(stream, Arc::new(next));
        } else {
            refused += 1;
        }
    }
    // The comparison is only worth something if both kinds of outcome were compared.
    assert!(accepted > 1_000, "only {accepted} commands accepted");
    assert!(refused < accepted, "{refused} refused of 3,000");
}

#[test]
fn a_stream_starts_as_the_aggregate_its_kind_names() {
    assert_eq!(
        StreamState::initial(&PROJECT.stream()),
        Some(StreamState::Project(None))
    );
    assert_eq!(
        StreamState::initial(&COMMUNITY.stream()),
        Some(StreamState::Community(None))
    );
    assert_eq!(StreamState::initial("ledger-1"), None);
    assert_eq!(StreamState::initial("project"), None);
}

#[test]
fn a_state_of_another_aggregate_decides_as_a_new_stream() {
    // A meeting's state handed to a project command: the project has not been proposed.
    let mut meeting = StreamState::initial(&MEETING.stream()).expect("a meeting stream");
    meeting.evolve(&meeting_convened(MEETING, COMMUNITY));
    let approve = crate::testing::command(
        "ApproveProject",
        serde_json::json!({"project_id": PROJECT, "meeting_id": MEETING}),
    );
    let error =
        crate::decide_from(&approve, &meeting, &Facts::new()).expect_err("no project to approve");
    assert_eq!(error.code(), "not_found");
}

/// The serialised shape of a state is what snapshots store: a change here must come with a new
/// [`STATE_SCHEMA`], or servers would trust snapshots folded by the old code.
#[test]
fn the_snapshot_form_of_a_state_is_pinned() {
    let mut project = StreamState::initial(&PROJECT.stream()).expect("a project stream");
    project.evolve_all(&[
        project_proposed(PROJECT, COMMUNITY),
        project_claimed(PROJECT, UNIT, None),
        project_launched(PROJECT, UNIT),
        activity_recorded(PROJECT, ACTIVITY, UNIT),
    ]);
    let mut community = StreamState::initial(&COMMUNITY.stream()).expect("a community stream");
    community.evolve_all(&community_with_members(COMMUNITY, &[UNIT, OTHER_UNIT]));
    assert_eq!(round_trip(&project), project);
    assert_eq!(round_trip(&community), community);
    // Unit tests' `file!()` is relative to the workspace, which insta would put under this
    // crate a second time: name the folder outright.
    insta::with_settings!({
        snapshot_path => concat!(env!("CARGO_MANIFEST_DIR"), "/src/state/snapshots"),
        prepend_module_to_snapshot => false,
    }, {
        insta::assert_json_snapshot!(
            "state_schema_1",
            serde_json::json!({
                "schema": STATE_SCHEMA,
                "project": project,
                "community": community,
            })
        );
    });
}

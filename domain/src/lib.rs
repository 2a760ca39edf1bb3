//! The domain of lianxi: community joint party-building conferences, as pure deciders.
//!
//! Everything here is synchronous and free of IO, clocks and randomness. A command is decided
//! from its target stream's past events plus the outside facts it names ([`required_facts`]),
//! which the caller loads from the log first. Rules are tested given/when/then with the
//! `testing` module (compiled for tests and with the `testing` feature).

pub mod aggregates;
pub mod commands;
mod error;
pub mod events;
mod facts;
pub mod ids;
mod scope;
pub mod state;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod upcast;
pub mod values;

pub use commands::{Command, ParseError, COMMAND_NAMES};
pub use error::{DomainError, RejectionKind};
pub use events::{Event, EVENT_TYPES};
pub use facts::Facts;
pub use scope::{scope_of, scope_of_state, Scope};
pub use state::{StreamState, STATE_SCHEMA};
pub use upcast::UpcastError;

/// The streams besides its target that `command` needs to be decided, given the target's
/// history. The caller loads each into [`Facts`] before calling [`decide`].
pub fn required_facts(command: &Command, history: &[Event]) -> Vec<String> {
    required_facts_from(command, &target_state(command, history))
}

/// Decides `command` against its target stream's `history` and the loaded `facts`: the new
/// events to append (at least one), or the rule that refuses it.
pub fn decide(
    command: &Command,
    history: &[Event],
    facts: &Facts,
) -> Result<Vec<Event>, DomainError> {
    decide_from(command, &target_state(command, history), facts)
}

/// [`required_facts`] from the target's folded `state` instead of its history.
pub fn required_facts_from(command: &Command, state: &StreamState) -> Vec<String> {
    aggregates::required_facts(command, state)
}

/// [`decide`] from the target's folded `state` instead of its history: what a caller that keeps
/// states (in memory, or as snapshots) calls.
pub fn decide_from(
    command: &Command,
    state: &StreamState,
    facts: &Facts,
) -> Result<Vec<Event>, DomainError> {
    aggregates::decide(command, state, facts)
}

/// The state of `command`'s target stream after `history`.
fn target_state(command: &Command, history: &[Event]) -> StreamState {
    let mut state = aggregates::initial_state(command);
    state.evolve_all(history);
    state
}

//! A given/when/then harness for deciders, in the spirit of fmodel-rust's specifications.
//!
//! `given(history).with_fact(stream, events).when(command).then(events)` decides `command`
//! through the crate's public [`crate::decide`] and asserts the outcome. Facts are filtered
//! through [`crate::required_facts`] before deciding, so a decision that reads a stream it did
//! not declare fails its happy-path test. Compiled for this crate's tests and, with the
//! `testing` feature, for other crates' tests; [`fixtures`] holds fixed ids and sample events.

pub mod fixtures;
pub mod generator;

use crate::commands::Command;
use crate::error::DomainError;
use crate::events::Event;
use crate::facts::Facts;

/// Starts a specification: the target stream's past events.
pub fn given(history: impl IntoIterator<Item = Event>) -> Given {
    Given {
        history: history.into_iter().collect(),
        facts: Facts::new(),
    }
}

/// Parses `body` as the command `name`, panicking with the parse error when it is invalid.
#[track_caller]
pub fn command(name: &str, body: serde_json::Value) -> Command {
    match Command::parse(name, body.to_string().as_bytes()) {
        Ok(command) => command,
        Err(error) => panic!("the test's {name} body does not parse: {error}"),
    }
}

/// A target history and the facts available besides it.
#[derive(Debug, Clone)]
pub struct Given {
    history: Vec<Event>,
    facts: Facts,
}

impl Given {
    /// Makes `stream`'s history available as a fact.
    pub fn with_fact(
        mut self,
        stream: impl Into<String>,
        events: impl IntoIterator<Item = Event>,
    ) -> Self {
        self.facts
            .insert(stream.into(), events.into_iter().collect::<Vec<_>>());
        self
    }

    /// The command to decide.
    pub fn when(self, command: impl Into<Command>) -> When {
        When {
            given: self,
            command: command.into(),
        }
    }
}

/// A specification ready to decide.
#[derive(Debug, Clone)]
pub struct When {
    given: Given,
    command: Command,
}

impl When {
    /// Decides the command, with only the facts it declares it needs.
    pub fn decision(&self) -> Result<Vec<Event>, DomainError> {
        let history = &self.given.history;
        let mut facts = Facts::new();
        for stream in crate::required_facts(&self.command, history) {
            if let Some(state) = self.given.facts.get(&stream) {
                facts.insert_state(stream, state.clone());
            }
        }
        crate::decide(&self.command, history, &facts)
    }

    /// Asserts the command is accepted with exactly `expected`.
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = Event>) {
        let expected: Vec<Event> = expected.into_iter().collect();
        match self.decision() {
            Ok(events) => assert_eq!(
                events,
                expected,
                "{} emitted other events than expected",
                self.command.name()
            ),
            Err(error) => panic!(
                "{} was refused ({}: {error}), expected {expected:?}",
                self.command.name(),
                error.code()
            ),
        }
    }

    /// Asserts the command is refused with `code`; returns the error for closer looks.
    #[track_caller]
    pub fn then_err(self, code: &str) -> DomainError {
        match self.decision() {
            Ok(events) => panic!(
                "{} was accepted with {events:?}, expected the refusal {code}",
                self.command.name()
            ),
            Err(error) => {
                assert_eq!(
                    error.code(),
                    code,
                    "{} was refused for another reason: {error}",
                    self.command.name()
                );
                error
            }
        }
    }
}

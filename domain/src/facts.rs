//! The outside facts a decision may read: other streams' states, loaded before deciding.
//!
//! A decider never does IO. The caller asks [`crate::required_facts`] which streams a command
//! reads besides its target, loads each one from the log (or its memory of it) into a
//! [`Facts`], and passes it in. A stream that is absent or empty reads as "does not exist": the
//! typed accessors return `None`.

use std::collections::HashMap;
use std::sync::Arc;

use crate::aggregates::{
    community::CommunityState, district::DistrictState, meeting::MeetingState, unit::UnitState,
};
use crate::events::Event;
use crate::ids::{CommunityId, DistrictId, MeetingId, UnitId};
use crate::state::StreamState;

/// Other streams' states, keyed by stream id (`<kind>-<uuid>`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// Shared, so that a caller holding states in memory lends them without copying.
    streams: HashMap<String, Arc<StreamState>>,
}

impl Facts {
    /// No facts at all.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `stream`'s history, folded, replacing what was there. A stream id of no known
    /// kind records nothing: no rule reads such a stream.
    pub fn insert(&mut self, stream: String, events: impl AsRef<[Event]>) {
        if let Some(state) = StreamState::fold(&stream, events.as_ref()) {
            self.streams.insert(stream, Arc::new(state));
        }
    }

    /// Records `stream`'s already folded state, replacing what was there.
    pub fn insert_state(&mut self, stream: String, state: Arc<StreamState>) {
        self.streams.insert(stream, state);
    }

    /// [`Facts::insert`] for builders: `Facts::new().with(s, events)`.
    pub fn with(mut self, stream: impl Into<String>, events: Vec<Event>) -> Self {
        self.insert(stream.into(), events);
        self
    }

    /// The state of `stream`, when it was loaded.
    pub fn get(&self, stream: &str) -> Option<&Arc<StreamState>> {
        self.streams.get(stream)
    }

    /// The stream ids loaded, in no particular order.
    pub fn streams(&self) -> impl Iterator<Item = &str> {
        self.streams.keys().map(String::as_str)
    }

    /// The district, if it is registered.
    pub fn district(&self, id: DistrictId) -> Option<&DistrictState> {
        self.get(&id.stream())?.district()
    }

    /// The community, if it is registered.
    pub fn community(&self, id: CommunityId) -> Option<&CommunityState> {
        self.get(&id.stream())?.community()
    }

    /// The unit, if it is registered.
    pub fn unit(&self, id: UnitId) -> Option<&UnitState> {
        self.get(&id.stream())?.unit()
    }

    /// The meeting, if it was convened.
    pub fn meeting(&self, id: MeetingId) -> Option<&MeetingState> {
        self.get(&id.stream())?.meeting()
    }
}

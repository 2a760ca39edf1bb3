//! The outside facts a decision may read: other streams' histories, loaded before deciding.
//!
//! A decider never does IO. The caller asks [`crate::required_facts`] which streams a command
//! reads besides its target, loads each one from the log into a [`Facts`], and passes it in.
//! A stream that is absent or empty reads as "does not exist": the typed accessors return `None`.

use std::collections::HashMap;
use std::sync::Arc;

use crate::aggregates::{
    community::{self, CommunityState},
    district::{self, DistrictState},
    meeting::{self, MeetingState},
    unit::{self, UnitState},
};
use crate::events::Event;
use crate::ids::{CommunityId, DistrictId, MeetingId, UnitId};

/// Histories of other streams, keyed by stream id (`<kind>-<uuid>`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// Shared, so that a caller holding histories in memory lends them without copying.
    streams: HashMap<String, Arc<[Event]>>,
}

impl Facts {
    /// No facts at all.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `stream`'s history, replacing what was there.
    pub fn insert(&mut self, stream: String, events: impl Into<Arc<[Event]>>) {
        self.streams.insert(stream, events.into());
    }

    /// [`Facts::insert`] for builders: `Facts::new().with(s, events)`.
    pub fn with(mut self, stream: impl Into<String>, events: Vec<Event>) -> Self {
        self.insert(stream.into(), events);
        self
    }

    /// The events of `stream`: empty when it was not loaded or has none.
    pub fn events(&self, stream: &str) -> &[Event] {
        self.streams
            .get(stream)
            .map(|events| &events[..])
            .unwrap_or(&[])
    }

    /// The stream ids loaded, in no particular order.
    pub fn streams(&self) -> impl Iterator<Item = &str> {
        self.streams.keys().map(String::as_str)
    }

    /// The district, if it is registered.
    pub fn district(&self, id: DistrictId) -> Option<DistrictState> {
        district::fold(self.events(&id.stream()))
    }

    /// The community, if it is registered.
    pub fn community(&self, id: CommunityId) -> Option<CommunityState> {
        community::fold(self.events(&id.stream()))
    }

    /// The unit, if it is registered.
    pub fn unit(&self, id: UnitId) -> Option<UnitState> {
        unit::fold(self.events(&id.stream()))
    }

    /// The meeting, if it was convened.
    pub fn meeting(&self, id: MeetingId) -> Option<MeetingState> {
        meeting::fold(self.events(&id.stream()))
    }
}

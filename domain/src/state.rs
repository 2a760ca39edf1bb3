//! A stream's state folded once, so that deciding on a long stream never re-reads its history.
//!
//! Every aggregate decides from its state, and that state is a pure fold of its stream's events.
//! The command handler keeps [`StreamState`]s in memory and saves them as snapshots beside the
//! log ([`STATE_SCHEMA`] says which shape a snapshot has). A snapshot is a cache of a fold, never
//! a source: it can be deleted at any time and is rebuilt from the log.

use serde::{Deserialize, Serialize};

use crate::aggregates::{
    community::{self, CommunityState},
    district::{self, DistrictState},
    meeting::{self, MeetingState},
    project::{self, ProjectState},
    request::{self, RequestState},
    unit::{self, UnitState},
};
use crate::events::Event;
use crate::ids::{CommunityId, DistrictId, MeetingId, ProjectId, RequestId, UnitId};

/// The shape of a serialised [`StreamState`]. Bump it whenever a state's fields or an `evolve`
/// change, so that snapshots folded by older code are ignored rather than trusted.
pub const STATE_SCHEMA: i32 = 1;

/// The state of one stream, by the aggregate that owns it.
///
/// A stream's kind (the part of its id before the first `-`) names its aggregate, so
/// [`StreamState::initial`] knows which one a stream starts as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "aggregate", content = "state", rename_all = "snake_case")]
pub enum StreamState {
    District(district::State),
    Community(community::State),
    Unit(unit::State),
    Meeting(meeting::State),
    Project(project::State),
    Request(request::State),
}

impl StreamState {
    /// The state of `stream` before its first event; `None` for an id of no known kind.
    pub fn initial(stream: &str) -> Option<StreamState> {
        let (kind, _) = stream.split_once('-')?;
        Some(match kind {
            DistrictId::STREAM_KIND => StreamState::District(None),
            CommunityId::STREAM_KIND => StreamState::Community(None),
            UnitId::STREAM_KIND => StreamState::Unit(None),
            MeetingId::STREAM_KIND => StreamState::Meeting(None),
            ProjectId::STREAM_KIND => StreamState::Project(None),
            RequestId::STREAM_KIND => StreamState::Request(None),
            _ => return None,
        })
    }

    /// The state of `stream` after `events`, from its beginning; `None` for an unknown kind.
    pub fn fold(stream: &str, events: &[Event]) -> Option<StreamState> {
        let mut state = StreamState::initial(stream)?;
        state.evolve_all(events);
        Some(state)
    }

    /// Applies one more event of this stream.
    pub fn evolve(&mut self, event: &Event) {
        // `evolve` takes its state by value; `take` leaves `None` behind for the moment between.
        match self {
            StreamState::District(s) => *s = district::evolve(s.take(), event),
            StreamState::Community(s) => *s = community::evolve(s.take(), event),
            StreamState::Unit(s) => *s = unit::evolve(s.take(), event),
            StreamState::Meeting(s) => *s = meeting::evolve(s.take(), event),
            StreamState::Project(s) => *s = project::evolve(s.take(), event),
            StreamState::Request(s) => *s = request::evolve(s.take(), event),
        }
    }

    /// Applies `events` in order.
    pub fn evolve_all<'a>(&mut self, events: impl IntoIterator<Item = &'a Event>) {
        for event in events {
            self.evolve(event);
        }
    }

    /// A rough measure of the memory this state holds, in units of about one event, for caches
    /// that bound what they keep.
    pub fn weight(&self) -> u64 {
        let items = match self {
            StreamState::Community(Some(c)) => c.members.len(),
            StreamState::Meeting(Some(m)) => m.attendees.len(),
            StreamState::Project(Some(p)) => p.activities.len(),
            _ => 0,
        };
        1 + (items as u64) / 4
    }

    /// The district, when this is a registered one.
    pub fn district(&self) -> Option<&DistrictState> {
        match self {
            StreamState::District(s) => s.as_ref(),
            _ => None,
        }
    }

    /// The community, when this is a registered one.
    pub fn community(&self) -> Option<&CommunityState> {
        match self {
            StreamState::Community(s) => s.as_ref(),
            _ => None,
        }
    }

    /// The unit, when this is a registered one.
    pub fn unit(&self) -> Option<&UnitState> {
        match self {
            StreamState::Unit(s) => s.as_ref(),
            _ => None,
        }
    }

    /// The meeting, when this is a convened one.
    pub fn meeting(&self) -> Option<&MeetingState> {
        match self {
            StreamState::Meeting(s) => s.as_ref(),
            _ => None,
        }
    }

    /// The project, when this is a proposed one.
    pub fn project(&self) -> Option<&ProjectState> {
        match self {
            StreamState::Project(s) => s.as_ref(),
            _ => None,
        }
    }

    /// The request, when this is a raised one.
    pub fn request(&self) -> Option<&RequestState> {
        match self {
            StreamState::Request(s) => s.as_ref(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;

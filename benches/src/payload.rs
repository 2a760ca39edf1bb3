//! The one event both the store benchmark and the baseline write: a `ProjectProposed`-like event
//! of about 300 bytes of JSON data, with metadata shaped like the command handler's.

use serde_json::{json, Value};
use uuid::Uuid;

/// The event type written.
pub const EVENT_TYPE: &str = "ProjectProposed";

/// An event's data and metadata.
#[derive(Debug, Clone)]
pub struct Payload {
    pub data: Value,
    pub metadata: Value,
}

impl Payload {
    /// A fresh event for project `project_id` sent by `command_id`.
    pub fn new(project_id: Uuid, command_id: Uuid) -> Payload {
        let data = json!({
            "project_id": project_id,
            "community_id": "0190d6c4-7a4e-7c2e-9d1a-3f6b2c8e5a01",
            "title": "Spring clean-up of the Shili courtyard and its bicycle shed",
            "theme": "living_environment",
            "need": "Twenty volunteers for two Saturdays, gloves, bags and a van for the \
                     rubbish; the property office lends ladders.",
        });
        let metadata = json!({
            "command": "ProposeProject",
            "command_id": command_id,
            "actor": {"id": "6c69616e-7869-0000-0000-000000000001", "role": "admin"},
        });
        Payload { data, metadata }
    }

    /// The serialised data's length in bytes.
    pub fn data_bytes(&self) -> usize {
        self.data.to_string().len()
    }

    /// The serialised metadata's length in bytes.
    pub fn metadata_bytes(&self) -> usize {
        self.metadata.to_string().len()
    }
}

/// How the harness's ids are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IdOrder {
    /// Time-ordered like `Uuid::now_v7`, as the command handler makes them: new keys land at
    /// the right edge of every index.
    V7,
    /// Random like `Uuid::new_v4` (client-chosen ids): every insert touches a random leaf page
    /// of each index on an id.
    V4,
}

/// Unique ids without a `getrandom` system call each (as `Uuid::new_v4` and `Uuid::now_v7`
/// make): a random base per worker and a counter, laid out as version-7 (time-ordered) or
/// version-4 (random) UUIDs. Keeps the harness's own cost per operation small next to what it
/// measures.
#[derive(Debug, Clone)]
pub struct Ids {
    order: IdOrder,
    base: u128,
    next: u64,
}

impl Ids {
    pub fn new(order: IdOrder) -> Ids {
        Ids {
            order,
            base: Uuid::new_v4().as_u128(),
            next: 0,
        }
    }

    /// The next id of this source; never repeats within 2^60 calls.
    pub fn next_id(&mut self) -> Uuid {
        self.next += 1;
        let bytes = (self.base ^ u128::from(self.next)).to_be_bytes();
        match self.order {
            IdOrder::V4 => uuid::Builder::from_random_bytes(bytes).into_uuid(),
            IdOrder::V7 => {
                let millis = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |since| {
                        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
                    });
                // The counter sits in the low bytes, which v7 keeps as they are.
                let mut tail = [0u8; 10];
                tail.copy_from_slice(&bytes[6..]);
                uuid::Builder::from_unix_timestamp_millis(millis, &tail).into_uuid()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_of_the_asked_version() {
        for (order, version) in [(IdOrder::V4, 4), (IdOrder::V7, 7)] {
            let mut ids = Ids::new(order);
            let mut seen = std::collections::HashSet::new();
            for _ in 0..10_000 {
                let id = ids.next_id();
                assert_eq!(id.get_version_num(), version);
                assert!(seen.insert(id));
            }
        }
    }

    #[test]
    fn the_data_is_about_three_hundred_bytes() {
        let payload = Payload::new(Uuid::new_v4(), Uuid::new_v4());
        assert!(
            (250..=350).contains(&payload.data_bytes()),
            "{}",
            payload.data_bytes()
        );
        assert!(payload.metadata_bytes() < 200);
    }
}

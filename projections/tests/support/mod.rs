//! What the runner tests share: a projector that counts events (and can be told to refuse one),
//! and a way to append plain events to a log.

#![allow(dead_code)] // each test binary uses a part of it

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use projections::collection::{Collection, Store};
use projections::event::ProjectedEvent;
use projections::readdb::ReadDb;
use projections::Projector;
use serde_json::json;
use store::{AppendRequest, EventStore, ExpectedVersion, NewEvent};
use uuid::Uuid;

/// Counts events; refuses the event at `poison` (0: none), as a buggy projector would.
pub struct Counter {
    name: &'static str,
    poison: Arc<AtomicI64>,
    counts: Collection<u64>,
}

impl Counter {
    pub fn new(name: &'static str, poison: Arc<AtomicI64>) -> Self {
        Self {
            name,
            poison,
            counts: Collection::new("count"),
        }
    }
}

impl Projector for Counter {
    fn name(&self) -> &'static str {
        self.name
    }
    fn version(&self) -> u32 {
        1
    }
    fn want(&mut self, _event: &ProjectedEvent) {
        self.counts.want("all");
    }
    fn collections(&mut self) -> Vec<&mut dyn Store> {
        vec![&mut self.counts]
    }
    fn apply(&mut self, event: &ProjectedEvent) -> Result<(), String> {
        if event.position == self.poison.load(Ordering::SeqCst) {
            return Err(format!("cannot make sense of event {}", event.position));
        }
        let next = self.counts.get("all").copied().unwrap_or(0) + 1;
        self.counts.put("all", None, next);
        Ok(())
    }
}

pub async fn append_district(store: &dyn EventStore, n: u128) {
    let id = Uuid::from_u128(n);
    store
        .append(AppendRequest {
            stream: format!("district-{id}"),
            expected: ExpectedVersion::NoStream,
            command_id: Uuid::from_u128(1_000 + n),
            idempotency: None,
            events: vec![NewEvent {
                id: Uuid::from_u128(2_000 + n),
                event_type: "DistrictRegistered".into(),
                schema_version: 1,
                data: json!({"district_id": id, "name": format!("District {n}")}),
                metadata: json!({
                    "actor": {"id": Uuid::from_u128(9), "name": "test", "role": "admin"},
                    "acting_for": {"kind": "system", "id": null},
                    "command": "RegisterDistrict",
                    "command_id": Uuid::from_u128(1_000 + n),
                    "correlation_id": Uuid::from_u128(1_000 + n),
                    "causation_id": Uuid::from_u128(1_000 + n),
                    "occurred_at": "2018-04-24T14:30:00+08:00"
                }),
            }],
            unchanged: Vec::new(),
        })
        .await
        .expect("append");
}

pub async fn count(db: &ReadDb, name: &str) -> Option<u64> {
    db.document(name, "count", "all")
        .await
        .expect("readable")
        .map(|doc| doc.parse().expect("a number"))
}

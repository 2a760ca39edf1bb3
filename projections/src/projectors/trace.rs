//! The supervisors' trace: who did what to which project, unit or community, and when, in log
//! order, with each event's hash (DOMAIN.md, "Trace").
//!
//! The entries themselves come straight from the log: this projector only keeps an index of
//! which events concern which entity ([`index`]), so that a trace reads a few hundred events by
//! position rather than scanning the whole log, plus each aggregate's display name and owners
//! (`entity` documents keyed by stream id) for the summaries, `acting_for.name` and scope checks.
//!
//! An event concerns: its actor; the unit, community or district acted for; and by kind —
//! a project event its project, the project's community and district and the unit it names or
//! the current claimant; a meeting event its meeting's community and district and the units
//! recorded as attending; a membership event the community, the unit and both their districts;
//! a request event its community, district and the raising unit. Delivery is exactly once per
//! generation (the runner's guarantee); index rows are also written idempotently.

pub(crate) mod index;
mod query;

use std::collections::BTreeSet;

use domain::Event;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::collection::{Collection, Store, StreamKey, StreamKind};
use crate::event::ProjectedEvent;
use crate::Projector;
use index::{Entity, EntityKind};

pub use query::{
    trace, Subject, Trace, TraceActingFor, TraceActor, TraceEntry, TraceError, TraceQuery, Within,
};

pub const NAME: &str = "trace";
/// The document kind of names and owners, keyed by stream id (`unit-…`).
const ENTITY: &str = "entity";

/// What the trace knows of one aggregate: its display name and what it belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct EntityDoc {
    /// Name or title.
    name: String,
    /// The district it belongs to (a district's own doc has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    district: Option<Uuid>,
    /// Meetings, projects and requests: their community.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    community: Option<Uuid>,
    /// A project: its current claimant; a request: the unit that raised it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unit: Option<Uuid>,
    /// A meeting: the units recorded as attending.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    attended: BTreeSet<Uuid>,
    /// A unit: every community it has been admitted to.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    communities: BTreeSet<Uuid>,
}

/// An index key: `project:<uuid>`, `unit:<uuid>`, …
fn key(kind: &str, id: Uuid) -> String {
    format!("{kind}:{id}")
}

/// The streams an event names in its data: their names appear in its summary, and their
/// documents are what applying it reads or changes.
fn streams_named(event: &Event) -> Vec<String> {
    use Event::*;
    match event {
        DistrictRegistered(e) => vec![e.district_id.stream()],
        CommunityRegistered(e) => vec![e.community_id.stream(), e.district_id.stream()],
        UnitRegistered(e) => vec![e.unit_id.stream(), e.district_id.stream()],
        MemberUnitAdmitted(e) => vec![e.community_id.stream(), e.unit_id.stream()],
        MemberUnitWithdrawn(e) => vec![e.community_id.stream(), e.unit_id.stream()],
        MeetingConvened(e) => vec![e.meeting_id.stream(), e.community_id.stream()],
        AttendanceRecorded(e) => {
            let mut streams = vec![e.meeting_id.stream()];
            streams.extend(e.unit_ids.items().iter().map(|u| u.stream()));
            streams
        }
        MeetingClosed(e) => vec![e.meeting_id.stream()],
        ProjectProposed(e) => vec![e.project_id.stream(), e.community_id.stream()],
        ProjectApproved(e) => vec![e.project_id.stream(), e.meeting_id.stream()],
        ProjectClaimed(e) => vec![e.project_id.stream(), e.unit_id.stream()],
        ClaimWithdrawn(e) => vec![e.project_id.stream(), e.unit_id.stream()],
        ProjectLaunched(e) => vec![e.project_id.stream(), e.unit_id.stream()],
        ActivityRecorded(e) => vec![e.project_id.stream(), e.unit_id.stream()],
        ProjectCompleted(e) => vec![e.project_id.stream(), e.unit_id.stream()],
        FeedbackRecorded(e) => vec![e.project_id.stream()],
        ProjectCancelled(e) => vec![e.project_id.stream()],
        RequestRaised(e) => vec![
            e.request_id.stream(),
            e.community_id.stream(),
            e.unit_id.stream(),
        ],
        RequestResolved(e) => vec![e.request_id.stream()],
    }
}

/// The stream of the district, community or unit an actor acted for; `None` for `system`.
fn acting_for_stream(kind: &str, id: Option<Uuid>) -> Option<String> {
    match (kind, id) {
        ("district" | "community" | "unit", Some(id)) => Some(format!("{kind}-{id}")),
        _ => None,
    }
}

/// Builds the trace index and the names it shows.
pub struct TraceProjector {
    entities: Collection<EntityDoc, StreamKey>,
    index: index::TraceIndex,
}

impl Default for TraceProjector {
    fn default() -> Self {
        Self {
            entities: Collection::new(ENTITY),
            index: index::TraceIndex::default(),
        }
    }
}

impl TraceProjector {
    fn doc(&self, key: StreamKey) -> Option<&EntityDoc> {
        self.entities.get(&key)
    }

    /// The district of a community, from its document.
    fn district_of_community(&self, community: Uuid) -> Option<Uuid> {
        self.doc(StreamKey::new(StreamKind::Community, community))
            .and_then(|d| d.district)
    }

    /// A new meeting, project or request document: named, in its community and district.
    fn in_community(&self, community: Uuid, name: String) -> EntityDoc {
        EntityDoc {
            name,
            district: self.district_of_community(community),
            community: Some(community),
            ..EntityDoc::default()
        }
    }

    /// Changes the documents the event changes.
    fn evolve(&mut self, event: &Event) {
        use Event::*;
        match event {
            DistrictRegistered(e) => self.entities.put(
                StreamKey::from(e.district_id),
                None,
                EntityDoc {
                    name: e.name.to_string(),
                    ..EntityDoc::default()
                },
            ),
            CommunityRegistered(e) => self.entities.put(
                StreamKey::from(e.community_id),
                None,
                EntityDoc {
                    name: e.name.to_string(),
                    district: Some(e.district_id.0),
                    ..EntityDoc::default()
                },
            ),
            UnitRegistered(e) => self.entities.put(
                StreamKey::from(e.unit_id),
                None,
                EntityDoc {
                    name: e.name.to_string(),
                    district: Some(e.district_id.0),
                    ..EntityDoc::default()
                },
            ),
            MemberUnitAdmitted(e) => {
                if let Some(unit) = self.entities.get_mut(&StreamKey::from(e.unit_id)) {
                    unit.communities.insert(e.community_id.0);
                }
            }
            MeetingConvened(e) => {
                let doc = self.in_community(e.community_id.0, e.title.to_string());
                self.entities.put(StreamKey::from(e.meeting_id), None, doc);
            }
            AttendanceRecorded(e) => {
                if let Some(meeting) = self.entities.get_mut(&StreamKey::from(e.meeting_id)) {
                    meeting
                        .attended
                        .extend(e.unit_ids.items().iter().map(|u| u.0));
                }
            }
            ProjectProposed(e) => {
                let doc = self.in_community(e.community_id.0, e.title.to_string());
                self.entities.put(StreamKey::from(e.project_id), None, doc);
            }
            ProjectClaimed(e) => {
                if let Some(project) = self.entities.get_mut(&StreamKey::from(e.project_id)) {
                    project.unit = Some(e.unit_id.0);
                }
            }
            ClaimWithdrawn(e) => {
                if let Some(project) = self.entities.get_mut(&StreamKey::from(e.project_id)) {
                    project.unit = None;
                }
            }
            RequestRaised(e) => {
                let doc = EntityDoc {
                    unit: Some(e.unit_id.0),
                    ..self.in_community(e.community_id.0, e.title.to_string())
                };
                self.entities.put(StreamKey::from(e.request_id), None, doc);
            }
            MemberUnitWithdrawn(_)
            | MeetingClosed(_)
            | ProjectApproved(_)
            | ProjectLaunched(_)
            | ActivityRecorded(_)
            | ProjectCompleted(_)
            | FeedbackRecorded(_)
            | ProjectCancelled(_)
            | RequestResolved(_) => {}
        }
    }

    /// The index keys of everything `event` concerns (after [`Self::evolve`]).
    fn concerns(&self, event: &ProjectedEvent) -> Vec<Entity> {
        use domain::events as e;
        use Event::*;
        let mut keys = Vec::with_capacity(8);
        keys.push(Entity::new(EntityKind::Actor, event.actor.id));
        if let Some(acting) = &event.acting_for {
            let kind = match acting.kind.as_str() {
                "district" => Some(EntityKind::District),
                "community" => Some(EntityKind::Community),
                "unit" => Some(EntityKind::Unit),
                _ => None,
            };
            if let (Some(kind), Some(id)) = (kind, acting.id) {
                keys.push(Entity::new(kind, id));
            }
        }
        // A community named by the event, and its district.
        let community = |keys: &mut Vec<Entity>, community: Uuid| {
            keys.push(Entity::new(EntityKind::Community, community));
            if let Some(district) = self.district_of_community(community) {
                keys.push(Entity::new(EntityKind::District, district));
            }
        };
        // A meeting, project or request: the community and district it belongs to; its doc.
        let owned = |keys: &mut Vec<Entity>, stream: StreamKey| {
            let doc = self.doc(stream);
            if let Some(doc) = doc {
                if let Some(community) = doc.community {
                    keys.push(Entity::new(EntityKind::Community, community));
                }
                if let Some(district) = doc.district {
                    keys.push(Entity::new(EntityKind::District, district));
                }
            }
            doc
        };
        match &event.event {
            DistrictRegistered(e) => {
                keys.push(Entity::new(EntityKind::District, e.district_id.0));
            }
            CommunityRegistered(e) => {
                keys.push(Entity::new(EntityKind::Community, e.community_id.0));
                keys.push(Entity::new(EntityKind::District, e.district_id.0));
            }
            UnitRegistered(e) => {
                keys.push(Entity::new(EntityKind::Unit, e.unit_id.0));
                keys.push(Entity::new(EntityKind::District, e.district_id.0));
            }
            MemberUnitAdmitted(e::MemberUnitAdmitted {
                community_id,
                unit_id,
                ..
            })
            | MemberUnitWithdrawn(e::MemberUnitWithdrawn {
                community_id,
                unit_id,
                ..
            }) => {
                community(&mut keys, community_id.0);
                keys.push(Entity::new(EntityKind::Unit, unit_id.0));
                if let Some(district) = self.doc(StreamKey::from(*unit_id)).and_then(|d| d.district)
                {
                    keys.push(Entity::new(EntityKind::District, district));
                }
            }
            MeetingConvened(e) => community(&mut keys, e.community_id.0),
            AttendanceRecorded(e) => {
                owned(&mut keys, StreamKey::from(e.meeting_id));
                keys.extend(
                    e.unit_ids
                        .items()
                        .iter()
                        .map(|u| Entity::new(EntityKind::Unit, u.0)),
                );
            }
            MeetingClosed(e) => {
                if let Some(meeting) = owned(&mut keys, StreamKey::from(e.meeting_id)) {
                    keys.extend(
                        meeting
                            .attended
                            .iter()
                            .map(|u| Entity::new(EntityKind::Unit, *u)),
                    );
                }
            }
            ProjectProposed(e) => {
                keys.push(Entity::new(EntityKind::Project, e.project_id.0));
                community(&mut keys, e.community_id.0);
            }
            ProjectClaimed(e::ProjectClaimed {
                project_id,
                unit_id,
                ..
            })
            | ClaimWithdrawn(e::ClaimWithdrawn {
                project_id,
                unit_id,
                ..
            })
            | ProjectLaunched(e::ProjectLaunched {
                project_id,
                unit_id,
            })
            | ActivityRecorded(e::ActivityRecorded {
                project_id,
                unit_id,
                ..
            })
            | ProjectCompleted(e::ProjectCompleted {
                project_id,
                unit_id,
                ..
            }) => {
                keys.push(Entity::new(EntityKind::Project, project_id.0));
                owned(&mut keys, StreamKey::from(*project_id));
                keys.push(Entity::new(EntityKind::Unit, unit_id.0));
            }
            ProjectApproved(e::ProjectApproved { project_id, .. })
            | FeedbackRecorded(e::FeedbackRecorded { project_id, .. })
            | ProjectCancelled(e::ProjectCancelled { project_id, .. }) => {
                keys.push(Entity::new(EntityKind::Project, project_id.0));
                // The current claimant answers for what happens to its project.
                if let Some(claimant) =
                    owned(&mut keys, StreamKey::from(*project_id)).and_then(|p| p.unit)
                {
                    keys.push(Entity::new(EntityKind::Unit, claimant));
                }
            }
            RequestRaised(e) => {
                community(&mut keys, e.community_id.0);
                keys.push(Entity::new(EntityKind::Unit, e.unit_id.0));
            }
            RequestResolved(e) => {
                if let Some(unit) =
                    owned(&mut keys, StreamKey::from(e.request_id)).and_then(|r| r.unit)
                {
                    keys.push(Entity::new(EntityKind::Unit, unit));
                }
            }
        }
        keys.sort_unstable();
        keys.dedup();
        keys
    }
}

impl Projector for TraceProjector {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        // 2: the index as posting lists (`trace_postings`).
        2
    }

    fn want(&mut self, event: &ProjectedEvent) {
        for stream in streams_named(&event.event) {
            if let Some(key) = StreamKey::parse(&stream) {
                self.entities.want(key);
            }
        }
    }

    fn collections(&mut self) -> Vec<&mut dyn Store> {
        vec![&mut self.entities, &mut self.index]
    }

    fn apply(&mut self, event: &ProjectedEvent) -> Result<(), String> {
        self.evolve(&event.event);
        let keys = self.concerns(event);
        self.index.record(keys, event.position);
        Ok(())
    }
}

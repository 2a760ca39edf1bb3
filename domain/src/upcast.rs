//! Reading stored events of any age: `(type, schema_version, data)` → the current [`Event`].
//!
//! Events are never rewritten in the log. When an event's shape changes, its schema version
//! goes up, the old shape stays described here, and old payloads are upcast on every read.
//! History so far: `ActivityRecorded` v1 had no `volunteer_hours` and called the money `funds`;
//! v2 renamed it `funds_yuan` and added `volunteer_hours` (0 for old activities).

use serde::Deserialize;
use serde_json::{json, Value};

use crate::events::{ActivityRecorded, Event, EVENT_TYPES};
use crate::ids::{ActivityId, ProjectId, UnitId};
use crate::values::{Count, Name, Text, Yuan};

/// Why a stored event could not be read as an [`Event`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpcastError {
    /// No event of this build has this type name.
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    /// The event was written by a newer build than this one.
    #[error("{event_type} schema version {version} is newer than this build knows ({known})")]
    NewerVersion {
        event_type: String,
        version: i32,
        known: i32,
    },
    /// Versions start at 1.
    #[error("{event_type} schema version {version} is not a valid version")]
    InvalidVersion { event_type: String, version: i32 },
    /// The data does not have the shape of its type and version.
    #[error("{event_type} v{version} data does not fit: {message}")]
    BadData {
        event_type: String,
        version: i32,
        message: String,
    },
}

/// The schema version this build writes for `event_type` (1 for every type never reshaped).
pub fn current_schema_version(event_type: &str) -> i32 {
    match event_type {
        "ActivityRecorded" => 2,
        _ => 1,
    }
}

/// Turns a stored event into the current [`Event`], upcasting an older shape.
pub fn upcast(event_type: &str, schema_version: i32, data: Value) -> Result<Event, UpcastError> {
    check(event_type, schema_version)?;
    let bad_data = |message: String| bad_data(event_type, schema_version, message);
    let data = match (event_type, schema_version) {
        ("ActivityRecorded", 1) => {
            let v1: ActivityRecordedV1 =
                serde_json::from_value(data).map_err(|e| bad_data(e.to_string()))?;
            serde_json::to_value(ActivityRecorded::from(v1)).map_err(|e| bad_data(e.to_string()))?
        }
        _ => data,
    };
    serde_json::from_value(json!({ "type": event_type, "data": data }))
        .map_err(|e| bad_data(e.to_string()))
}

/// [`upcast`] from the stored JSON text: an event of the current shape is parsed straight into
/// its type, without a generic JSON tree in between (the projections read the whole log so).
pub fn upcast_str(event_type: &str, schema_version: i32, data: &str) -> Result<Event, UpcastError> {
    check(event_type, schema_version)?;
    if schema_version < current_schema_version(event_type) {
        let data: Value = serde_json::from_str(data)
            .map_err(|e| bad_data(event_type, schema_version, e.to_string()))?;
        return upcast(event_type, schema_version, data);
    }
    // `Event` is tagged as `{"type": …, "data": …}`; with the tag first, serde reads the data
    // straight into the variant. The type is one of `EVENT_TYPES`, so it needs no escaping.
    let tagged = format!(r#"{{"type":"{event_type}","data":{data}}}"#);
    serde_json::from_str(&tagged).map_err(|e| bad_data(event_type, schema_version, e.to_string()))
}

/// Refuses types and versions this build cannot read.
fn check(event_type: &str, schema_version: i32) -> Result<(), UpcastError> {
    if !EVENT_TYPES.contains(&event_type) {
        return Err(UpcastError::UnknownType(event_type.to_owned()));
    }
    let known = current_schema_version(event_type);
    if schema_version > known {
        return Err(UpcastError::NewerVersion {
            event_type: event_type.to_owned(),
            version: schema_version,
            known,
        });
    }
    if schema_version < 1 {
        return Err(UpcastError::InvalidVersion {
            event_type: event_type.to_owned(),
            version: schema_version,
        });
    }
    Ok(())
}

fn bad_data(event_type: &str, schema_version: i32, message: String) -> UpcastError {
    UpcastError::BadData {
        event_type: event_type.to_owned(),
        version: schema_version,
        message,
    }
}

/// `ActivityRecorded` schema version 1, as the first builds stored it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivityRecordedV1 {
    project_id: ProjectId,
    activity_id: ActivityId,
    unit_id: UnitId,
    title: Name,
    participants: Count,
    volunteers: Count,
    beneficiaries: Count,
    funds: Yuan,
    #[serde(default)]
    notes: Option<Text>,
}

impl From<ActivityRecordedV1> for ActivityRecorded {
    fn from(v1: ActivityRecordedV1) -> Self {
        ActivityRecorded {
            project_id: v1.project_id,
            activity_id: v1.activity_id,
            unit_id: v1.unit_id,
            title: v1.title,
            participants: v1.participants,
            volunteers: v1.volunteers,
            // v1 did not record hours; unknown reads as none.
            volunteer_hours: Count::default(),
            beneficiaries: v1.beneficiaries,
            funds_yuan: v1.funds,
            notes: v1.notes,
        }
    }
}

#[cfg(test)]
mod tests;

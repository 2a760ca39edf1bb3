//! The metadata every event carries (DOMAIN.md): who acted, for whom, by which command, when.

use chrono::{DateTime, Utc};
use domain::Scope;
use serde::Serialize;
use uuid::Uuid;

use crate::auth::{Principal, Role};

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Actor {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ActingFor {
    /// `district`, `community`, `unit`, or `system` for an admin acting on nothing narrower.
    pub kind: &'static str,
    pub id: Option<Uuid>,
}

/// The stored metadata object, the same for every event one command appends.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EventMetadata {
    pub actor: Actor,
    pub acting_for: ActingFor,
    pub command: &'static str,
    pub command_id: Uuid,
    pub correlation_id: Uuid,
    pub causation_id: Uuid,
    /// The business time, RFC 3339.
    pub occurred_at: String,
}

/// Whom the actor acted for: its own scope, or for an admin the narrowest thing the command
/// concerns.
pub(crate) fn acting_for(principal: &Principal, scope: &Scope) -> ActingFor {
    let kind = principal.role.scope_kind();
    match (kind, principal.scope) {
        (Some(kind), Some(id)) => ActingFor { kind, id: Some(id) },
        _ => {
            if let Some(unit) = scope.unit {
                ActingFor {
                    kind: "unit",
                    id: Some(unit.0),
                }
            } else if let Some(community) = scope.community {
                ActingFor {
                    kind: "community",
                    id: Some(community.0),
                }
            } else if let Some(district) = scope.district {
                ActingFor {
                    kind: "district",
                    id: Some(district.0),
                }
            } else {
                ActingFor {
                    kind: "system",
                    id: None,
                }
            }
        }
    }
}

/// RFC 3339 with microseconds, as every time in the log is written.
pub(crate) fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

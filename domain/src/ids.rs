//! Typed identifiers: a `ProjectId` can never be passed where a `UnitId` is meant.

use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
            utoipa::ToSchema,
        )]
        #[serde(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(pub Uuid);

        impl $name {
            /// The stream kind this id names, the part before the dash in a stream id.
            pub const STREAM_KIND: &'static str = $prefix;

            /// The stream of the aggregate with this id, `<kind>-<uuid>`.
            pub fn stream(&self) -> String {
                format!("{}-{}", $prefix, self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }
    };
}

id_type!(
    /// A district (街道), the widest scope of a joint conference system.
    DistrictId,
    "district"
);
id_type!(
    /// A community (社区) whose party committee runs a joint conference.
    CommunityId,
    "community"
);
id_type!(
    /// A unit's party organisation (单位党组织), which may sit in several communities.
    UnitId,
    "unit"
);
id_type!(
    /// A meeting of one community's joint conference.
    MeetingId,
    "meeting"
);
id_type!(
    /// A party-building project (党建项目).
    ProjectId,
    "project"
);
id_type!(
    /// A request raised by a unit to a community.
    RequestId,
    "request"
);
id_type!(
    /// One activity recorded on a project; not a stream of its own.
    ActivityId,
    "activity"
);

/// Splits a stream id `<kind>-<uuid>` into its kind and uuid.
pub fn parse_stream(stream: &str) -> Option<(&str, Uuid)> {
    let (kind, id) = stream.split_once('-')?;
    let id = Uuid::parse_str(id).ok()?;
    Some((kind, id))
}

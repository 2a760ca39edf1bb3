//! Roles, scopes and the policy of who may send which command (API.md, "Authentication and roles").

use domain::{Command, Scope};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// The six roles of API.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything: all commands, token issuance, projection rebuilds.
    Admin,
    /// A district: registers its communities and units; reads and traces the district.
    DistrictAdmin,
    /// A community: its members, meetings, projects and requests.
    CommunitySecretary,
    /// A unit: claims and delivers projects for its own unit, raises its requests.
    UnitRep,
    /// A district: reads, events feed, trace, reports; no commands.
    Analyst,
    /// A district: reads, trace, verify; no commands.
    Auditor,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Admin,
        Role::DistrictAdmin,
        Role::CommunitySecretary,
        Role::UnitRep,
        Role::Analyst,
        Role::Auditor,
    ];

    /// The snake_case name of API.md.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::DistrictAdmin => "district_admin",
            Role::CommunitySecretary => "community_secretary",
            Role::UnitRep => "unit_rep",
            Role::Analyst => "analyst",
            Role::Auditor => "auditor",
        }
    }

    /// What kind of thing the role's scope names; `None` for `admin`, which has no scope.
    pub fn scope_kind(self) -> Option<&'static str> {
        match self {
            Role::Admin => None,
            Role::DistrictAdmin | Role::Analyst | Role::Auditor => Some("district"),
            Role::CommunitySecretary => Some("community"),
            Role::UnitRep => Some("unit"),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == value)
            .ok_or_else(|| {
                let names: Vec<_> = Role::ALL.iter().map(|r| r.as_str()).collect();
                format!(
                    "unknown role {value:?}; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// Who is acting: taken from the bearer token, never from a request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// The actor id written on events (the token's id).
    pub actor_id: Uuid,
    /// The display name written on events.
    pub name: String,
    pub role: Role,
    /// The district, community or unit the role is limited to; `None` only for `admin`.
    pub scope: Option<Uuid>,
}

impl Principal {
    /// Whose idempotency keys these are: keys of different holders never collide.
    pub fn idempotency_scope(&self) -> String {
        self.actor_id.to_string()
    }
}

/// Why a principal may not send a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Forbidden(pub String);

/// Whether `role` may send the command named `name` at all, before anything is loaded. A cheap
/// first gate; [`authorize`] makes the scoped decision once the command's target is known.
pub fn may_send(role: Role, name: &str) -> bool {
    match role {
        Role::Admin => true,
        Role::DistrictAdmin => matches!(name, "RegisterCommunity" | "RegisterUnit"),
        Role::CommunitySecretary => !matches!(
            name,
            "RegisterDistrict" | "RegisterCommunity" | "RegisterUnit"
        ),
        Role::UnitRep => matches!(
            name,
            "ClaimProject"
                | "WithdrawClaim"
                | "LaunchProject"
                | "RecordActivity"
                | "CompleteProject"
                | "RaiseRequest"
        ),
        Role::Analyst | Role::Auditor => false,
    }
}

/// The scoped decision: may `principal` send `command`, which concerns `scope`?
pub fn authorize(principal: &Principal, command: &Command, scope: &Scope) -> Result<(), Forbidden> {
    let name = command.name();
    if !may_send(principal.role, name) {
        return Err(Forbidden(format!(
            "the {} role may not send {name}",
            principal.role
        )));
    }
    let own = principal.scope;
    let within = match principal.role {
        Role::Admin => true,
        Role::DistrictAdmin => scope.district.map(|d| d.0) == own && own.is_some(),
        Role::CommunitySecretary => scope.community.map(|c| c.0) == own && own.is_some(),
        Role::UnitRep => scope.unit.map(|u| u.0) == own && own.is_some(),
        Role::Analyst | Role::Auditor => false,
    };
    if within {
        Ok(())
    } else {
        Err(Forbidden(format!(
            "{name} concerns something outside this token's {} scope",
            principal.role.scope_kind().unwrap_or("admin")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::ids::{CommunityId, DistrictId, UnitId};

    fn principal(role: Role, scope: Option<Uuid>) -> Principal {
        Principal {
            actor_id: Uuid::from_u128(7),
            name: "tester".into(),
            role,
            scope,
        }
    }

    fn claim(unit: Uuid) -> Command {
        let body = format!(
            r#"{{"project_id":"{}","unit_id":"{unit}"}}"#,
            Uuid::from_u128(99)
        );
        Command::parse("ClaimProject", body.as_bytes()).expect("valid claim")
    }

    fn scope(community: Option<u128>, unit: Option<u128>) -> Scope {
        Scope {
            district: Some(DistrictId(Uuid::from_u128(1))),
            community: community.map(|c| CommunityId(Uuid::from_u128(c))),
            unit: unit.map(|u| UnitId(Uuid::from_u128(u))),
        }
    }

    #[test]
    fn a_unit_rep_may_claim_only_for_its_own_unit() {
        let rep = principal(Role::UnitRep, Some(Uuid::from_u128(5)));
        let own = claim(Uuid::from_u128(5));
        assert!(authorize(&rep, &own, &scope(Some(2), Some(5))).is_ok());
        let other = claim(Uuid::from_u128(6));
        assert!(authorize(&rep, &other, &scope(Some(2), Some(6))).is_err());
    }

    #[test]
    fn a_secretary_is_limited_to_its_community() {
        let secretary = principal(Role::CommunitySecretary, Some(Uuid::from_u128(2)));
        let cmd = claim(Uuid::from_u128(5));
        assert!(authorize(&secretary, &cmd, &scope(Some(2), Some(5))).is_ok());
        assert!(authorize(&secretary, &cmd, &scope(Some(3), Some(5))).is_err());
        assert!(authorize(&secretary, &cmd, &scope(None, Some(5))).is_err());
    }

    #[test]
    fn analysts_and_auditors_send_no_commands() {
        for role in [Role::Analyst, Role::Auditor] {
            let p = principal(role, Some(Uuid::from_u128(1)));
            assert!(authorize(&p, &claim(Uuid::from_u128(5)), &scope(Some(2), Some(5))).is_err());
        }
    }

    #[test]
    fn a_district_admin_registers_only_in_its_district() {
        let admin = principal(Role::DistrictAdmin, Some(Uuid::from_u128(1)));
        let body = format!(r#"{{"district_id":"{}","name":"x"}}"#, Uuid::from_u128(1));
        let cmd = Command::parse("RegisterUnit", body.as_bytes()).expect("valid");
        assert!(authorize(&admin, &cmd, &scope(None, None)).is_ok());
        let mut elsewhere = scope(None, None);
        elsewhere.district = Some(DistrictId(Uuid::from_u128(9)));
        assert!(authorize(&admin, &cmd, &elsewhere).is_err());
        assert!(!may_send(Role::DistrictAdmin, "ClaimProject"));
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
    }
}

//! One thing at a time: a unit's profile and the current state of a project, meeting or request.
//!
//! Like every read, each answer carries `X-Projection-Position` and honours `X-Min-Position`
//! (see [`super::reads`]). An id that is not a UUID, or names nothing, is 404; a thing outside
//! the token's scope is 403. Scope, from what the read models hold:
//! - `admin`: everything;
//! - `district_admin`, `analyst`, `auditor`: units and items of their district;
//! - `community_secretary`: items of their community, and the profile of any unit that is or
//!   was a member of it;
//! - `unit_rep`: their own unit's profile; items of communities their unit is a current member
//!   of, and items that name their unit (a request it raised, a project it holds).

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use commands::{Principal, Role};
use projections::projectors::items::{self, Owner};
use projections::projectors::unit_profile::{self, UnitProfile};
use uuid::Uuid;

use super::reads::{may_read_community, reached, with_position};
use crate::error::{ApiError, Result};
use crate::extract::Authenticated;
use crate::AppState;

/// The id in the path; anything but a UUID names nothing (404).
fn parse_id(id: &str, what: &str) -> Result<Uuid> {
    Uuid::parse_str(id).map_err(|_| ApiError::NotFound(format!("no {what} {id:?}")))
}

fn forbidden(what: &str) -> ApiError {
    ApiError::Forbidden(format!("this {what} is outside the token's scope"))
}

fn internal(error: projections::ProjectionError) -> ApiError {
    ApiError::Internal(error.to_string())
}

/// Whether `principal` may read `profile`.
fn may_read_unit(principal: &Principal, profile: &UnitProfile) -> bool {
    match principal.role {
        Role::Admin => true,
        Role::DistrictAdmin | Role::Analyst | Role::Auditor => {
            principal.scope == Some(profile.unit.district_id)
        }
        Role::CommunitySecretary => principal
            .scope
            .is_some_and(|c| profile.communities.iter().any(|m| m.community_id == c)),
        Role::UnitRep => principal.scope == Some(profile.unit.id),
    }
}

/// Whether `principal` may read an item owned as `owner` says.
fn may_read_item(principal: &Principal, owner: &Owner) -> bool {
    let Some(district) = owner.district_id else {
        return principal.role == Role::Admin;
    };
    may_read_community(principal, owner.community_id, district, &owner.members)
        || (principal.role == Role::UnitRep
            && principal.scope.is_some_and(|u| owner.units.contains(&u)))
}

/// A unit's profile: communities joined, projects claimed, activities, totals.
#[utoipa::path(
    get,
    path = "/v1/units/{id}",
    tag = "read models",
    params(("id" = Uuid, Path, description = "The unit"),
        ("X-Min-Position" = Option<i64>, Header, description = "Wait (up to 5 s) until the profile has reached this log position")),
    responses(
        (status = 200, body = UnitProfile, headers(("X-Projection-Position" = i64))),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn unit(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Authenticated(principal): Authenticated,
    headers: HeaderMap,
) -> Result<Response> {
    let id = parse_id(&id, "unit")?;
    let position = reached(&state, unit_profile::NAME, &headers).await?;
    let profile = unit_profile::unit_profile(state.runner.db(), id)
        .await
        .map_err(internal)?
        .ok_or_else(|| ApiError::NotFound(format!("no unit {id}")))?;
    if !may_read_unit(&principal, &profile) {
        return Err(forbidden("unit"));
    }
    Ok(with_position(Json(profile), position))
}

/// A project's current state.
#[utoipa::path(
    get,
    path = "/v1/projects/{id}",
    tag = "read models",
    params(("id" = Uuid, Path, description = "The project"),
        ("X-Min-Position" = Option<i64>, Header, description = "Wait (up to 5 s) until the view has reached this log position")),
    responses(
        (status = 200, body = items::ProjectView, headers(("X-Projection-Position" = i64))),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn project(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Authenticated(principal): Authenticated,
    headers: HeaderMap,
) -> Result<Response> {
    let id = parse_id(&id, "project")?;
    let position = reached(&state, items::NAME, &headers).await?;
    let found = items::project(state.runner.db(), id)
        .await
        .map_err(internal)?
        .ok_or_else(|| ApiError::NotFound(format!("no project {id}")))?;
    if !may_read_item(&principal, &found.owner) {
        return Err(forbidden("project"));
    }
    Ok(with_position(Json(found.item), position))
}

/// A meeting's current state.
#[utoipa::path(
    get,
    path = "/v1/meetings/{id}",
    tag = "read models",
    params(("id" = Uuid, Path, description = "The meeting"),
        ("X-Min-Position" = Option<i64>, Header, description = "Wait (up to 5 s) until the view has reached this log position")),
    responses(
        (status = 200, body = items::MeetingView, headers(("X-Projection-Position" = i64))),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn meeting(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Authenticated(principal): Authenticated,
    headers: HeaderMap,
) -> Result<Response> {
    let id = parse_id(&id, "meeting")?;
    let position = reached(&state, items::NAME, &headers).await?;
    let found = items::meeting(state.runner.db(), id)
        .await
        .map_err(internal)?
        .ok_or_else(|| ApiError::NotFound(format!("no meeting {id}")))?;
    if !may_read_item(&principal, &found.owner) {
        return Err(forbidden("meeting"));
    }
    Ok(with_position(Json(found.item), position))
}

/// A request's current state.
#[utoipa::path(
    get,
    path = "/v1/requests/{id}",
    tag = "read models",
    params(("id" = Uuid, Path, description = "The request"),
        ("X-Min-Position" = Option<i64>, Header, description = "Wait (up to 5 s) until the view has reached this log position")),
    responses(
        (status = 200, body = items::RequestView, headers(("X-Projection-Position" = i64))),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn request(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Authenticated(principal): Authenticated,
    headers: HeaderMap,
) -> Result<Response> {
    let id = parse_id(&id, "request")?;
    let position = reached(&state, items::NAME, &headers).await?;
    let found = items::request(state.runner.db(), id)
        .await
        .map_err(internal)?
        .ok_or_else(|| ApiError::NotFound(format!("no request {id}")))?;
    if !may_read_item(&principal, &found.owner) {
        return Err(forbidden("request"));
    }
    Ok(with_position(Json(found.item), position))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role, scope: Option<u128>) -> Principal {
        Principal {
            actor_id: Uuid::from_u128(7),
            name: "tester".into(),
            role,
            scope: scope.map(Uuid::from_u128),
        }
    }

    fn owner() -> Owner {
        Owner {
            community_id: Uuid::from_u128(2),
            district_id: Some(Uuid::from_u128(1)),
            members: vec![Uuid::from_u128(5)],
            units: vec![Uuid::from_u128(6)],
        }
    }

    #[test]
    fn items_are_read_within_the_scope_of_each_role() {
        let owner = owner();
        let allowed = [
            principal(Role::Admin, None),
            principal(Role::DistrictAdmin, Some(1)),
            principal(Role::Analyst, Some(1)),
            principal(Role::Auditor, Some(1)),
            principal(Role::CommunitySecretary, Some(2)),
            principal(Role::UnitRep, Some(5)),
            principal(Role::UnitRep, Some(6)),
        ];
        for p in &allowed {
            assert!(may_read_item(p, &owner), "{p:?} may read");
        }
        let refused = [
            principal(Role::DistrictAdmin, Some(9)),
            principal(Role::Analyst, Some(9)),
            principal(Role::Auditor, Some(2)),
            principal(Role::CommunitySecretary, Some(3)),
            principal(Role::UnitRep, Some(7)),
        ];
        for p in &refused {
            assert!(!may_read_item(p, &owner), "{p:?} may not read");
        }
    }

    #[test]
    fn an_item_of_an_unknown_community_is_for_admins_only() {
        let mut owner = owner();
        owner.district_id = None;
        assert!(may_read_item(&principal(Role::Admin, None), &owner));
        assert!(!may_read_item(
            &principal(Role::CommunitySecretary, Some(2)),
            &owner
        ));
    }
}

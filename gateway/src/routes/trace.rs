//! `GET /v1/trace`: the supervisors' trace of one project, unit, actor or community, in log
//! order, each entry read from the stored event (API.md, "Queries" and "Shapes").
//!
//! Scope: `admin` traces anything; `district_admin`, `analyst` and `auditor` the projects,
//! communities and units of their district (403 otherwise) and any actor's entries within the
//! district; a `community_secretary` its community, its projects and its member units (entries
//! about its community only) and actors' entries about its community; a `unit_rep` its own unit.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use chrono::{DateTime, Utc};
use commands::{Principal, Role};
use projections::projectors::trace::{self, Subject, TraceError, TraceQuery, Within};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::error::{ApiError, Result};
use crate::extract::Authenticated;
use crate::routes::reads::{reached, with_position};
use crate::AppState;

/// Exactly one of `project`, `unit`, `actor`, `community`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TraceParams {
    /// A project id.
    pub project: Option<String>,
    /// A unit id.
    pub unit: Option<String>,
    /// An actor id (the id of the token that recorded the events).
    pub actor: Option<String>,
    /// A community id.
    pub community: Option<String>,
    /// Only events recorded at or after this time (RFC 3339, inclusive).
    pub from: Option<String>,
    /// Only events recorded before this time (RFC 3339, exclusive).
    pub to: Option<String>,
}

fn uuid(name: &str, value: &str) -> Result<Uuid> {
    Uuid::parse_str(value.trim())
        .map_err(|_| ApiError::InvalidQuery(format!("{name} must be a UUID, got {value:?}")))
}

/// RFC 3339; a `+` of the offset that arrived unencoded (and so decoded as a space) is restored.
fn time(name: &str, value: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(&value.trim().replace(' ', "+"))
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ApiError::InvalidQuery(format!(
                "{name} must be an RFC 3339 time such as 2018-04-25T00:00:00Z, got {value:?}"
            ))
        })
}

impl TraceParams {
    fn subject(&self) -> Result<Subject> {
        let given: Vec<(&str, &String)> = [
            ("project", &self.project),
            ("unit", &self.unit),
            ("actor", &self.actor),
            ("community", &self.community),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.as_ref().map(|v| (name, v)))
        .collect();
        let [(name, value)] = given.as_slice() else {
            return Err(ApiError::InvalidQuery(format!(
                "give exactly one of project, unit, actor or community (got {})",
                if given.is_empty() {
                    "none".to_owned()
                } else {
                    given.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                }
            )));
        };
        let id = uuid(name, value)?;
        Ok(match *name {
            "project" => Subject::Project(id),
            "unit" => Subject::Unit(id),
            "actor" => Subject::Actor(id),
            _ => Subject::Community(id),
        })
    }
}

/// What `principal` may see of the trace.
fn within(principal: &Principal) -> Result<Within> {
    let scope = || {
        principal
            .scope
            .ok_or_else(|| ApiError::Forbidden(format!("a {} token needs a scope", principal.role)))
    };
    Ok(match principal.role {
        Role::Admin => Within::Everything,
        Role::DistrictAdmin | Role::Analyst | Role::Auditor => Within::District(scope()?),
        Role::CommunitySecretary => Within::Community(scope()?),
        Role::UnitRep => Within::Unit(scope()?),
    })
}

/// Who did what to a project, unit or community, or everything one actor did, in log order.
#[utoipa::path(
    get,
    path = "/v1/trace",
    tag = "read models",
    params(TraceParams,
        ("X-Min-Position" = Option<i64>, Header, description = "Wait (up to 5 s) until the trace has reached this log position")),
    responses(
        (status = 200, body = trace::Trace, headers(("X-Projection-Position" = i64))),
        (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn trace(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    query: std::result::Result<Query<TraceParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response> {
    let Query(params) = query.map_err(|e| ApiError::InvalidQuery(e.body_text()))?;
    let subject = params.subject()?;
    let from = params
        .from
        .as_deref()
        .map(|v| time("from", v))
        .transpose()?;
    let to = params.to.as_deref().map(|v| time("to", v)).transpose()?;
    let within = within(&principal)?;
    let position = reached(&state, trace::NAME, &headers).await?;
    let query = TraceQuery {
        subject,
        within,
        from,
        to,
    };
    let found = trace::trace(state.runner.db(), state.store.as_ref(), &query)
        .await
        .map_err(|error| match error {
            TraceError::Unknown(what) => ApiError::NotFound(format!("no {what} is known")),
            TraceError::OutsideScope(what) => {
                ApiError::Forbidden(format!("{what} is outside the token's scope"))
            }
            TraceError::Projection(projections::ProjectionError::Store(store)) => store.into(),
            TraceError::Projection(other) => ApiError::Internal(other.to_string()),
        })?;
    Ok(with_position(Json(found), position))
}

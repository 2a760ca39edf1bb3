//! District statistics: `GET /v1/districts/{id}/stats[?quarter=2018Q2]`, overall or for one
//! quarter (API.md, "Shapes"; how each figure is derived: `projections::projectors::
//! district_stats::query`).
//!
//! Like every read, the answer carries `X-Projection-Position` and honours `X-Min-Position`.
//! Scope: `admin` reads every district; `district_admin`, `analyst` and `auditor` only their
//! own; `community_secretary` and `unit_rep` never (403) — statistics compare the communities
//! of a district, which is more than a community's or a unit's scope. The scope is checked
//! before the district is looked up, so a 403 says nothing about whether a district exists;
//! 404 answers an unknown district, 400 `invalid_query` a malformed `quarter`.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use commands::{Principal, Role};
use domain::values::Quarter;
use projections::projectors::district_stats::{self, DistrictStats};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::reads::{reached, with_position};
use crate::error::{ApiError, Result};
use crate::extract::Authenticated;
use crate::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// One calendar quarter in China Standard Time, like `2018Q2`; absent: all quarters.
    pub quarter: Option<String>,
}

/// Whether `principal` may read the statistics of `district`.
fn may_read_district(principal: &Principal, district: Uuid) -> bool {
    match principal.role {
        Role::Admin => true,
        Role::DistrictAdmin | Role::Analyst | Role::Auditor => principal.scope == Some(district),
        Role::CommunitySecretary | Role::UnitRep => false,
    }
}

/// A district's statistics, per community and in total, overall or for one quarter.
#[utoipa::path(
    get,
    path = "/v1/districts/{id}/stats",
    tag = "read models",
    params(("id" = Uuid, Path, description = "The district"), StatsQuery,
        ("X-Min-Position" = Option<i64>, Header, description = "Wait (up to 5 s) until the statistics have reached this log position")),
    responses(
        (status = 200, body = DistrictStats, headers(("X-Projection-Position" = i64))),
        (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn district_stats(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Authenticated(principal): Authenticated,
    query: std::result::Result<Query<StatsQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response> {
    let Query(query) = query.map_err(|e| ApiError::InvalidQuery(e.body_text()))?;
    let quarter = query
        .quarter
        .as_deref()
        .map(Quarter::parse)
        .transpose()
        .map_err(|e| ApiError::InvalidQuery(format!("quarter {e}")))?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound(format!("no district {id:?}")))?;
    if !may_read_district(&principal, id) {
        return Err(ApiError::Forbidden(
            "this district's statistics are outside the token's scope".to_owned(),
        ));
    }
    let position = reached(&state, district_stats::NAME, &headers).await?;
    let found = district_stats::stats(state.runner.db(), id, quarter)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let Some(found) = found else {
        return Err(ApiError::NotFound(format!("no district {id}")));
    };
    Ok(with_position(Json(found), position))
}

//! `POST /v1/tokens`: issue a bearer token (admin, or a district_admin within its district).

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use commands::Role;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, FieldError, Result};
use crate::extract::{json_body, Authenticated};
use crate::AppState;

/// The body of `POST /v1/tokens`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueToken {
    /// One of `admin`, `district_admin`, `community_secretary`, `unit_rep`, `analyst`, `auditor`.
    pub role: String,
    /// The district, community or unit the role is limited to; absent for `admin`.
    #[serde(default)]
    pub scope: Option<Uuid>,
    /// The holder's display name, written as the actor's name on events.
    pub name: String,
}

/// The new token, shown once: only its hash is stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedToken {
    pub token: String,
}

#[utoipa::path(
    post,
    path = "/v1/tokens",
    tag = "tokens",
    request_body = IssueToken,
    responses(
        (status = 200, body = IssuedToken),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn issue_token(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<IssuedToken>> {
    if !matches!(principal.role, Role::Admin | Role::DistrictAdmin) {
        return Err(ApiError::Forbidden(format!(
            "the {} role may not issue tokens",
            principal.role
        )));
    }
    let body = json_body(&headers, body).await?;
    let mut de = serde_json::Deserializer::from_slice(&body);
    let request: IssueToken = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_data() {
            ApiError::InvalidField(vec![FieldError {
                field,
                message: inner.to_string(),
            }])
        } else {
            ApiError::InvalidBody(inner.to_string())
        }
    })?;
    let role: Role = request.role.parse().map_err(|message| {
        ApiError::InvalidField(vec![FieldError {
            field: "role".to_owned(),
            message,
        }])
    })?;
    let token = state
        .tokens
        .issue(Some(&principal), role, request.scope, &request.name)
        .await?;
    Ok(Json(IssuedToken { token }))
}

//! Request extractors that answer in problem+json: the bearer token and a size-limited body.

use axum::body::{Body, Bytes};
use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts, HeaderMap};
use commands::Principal;

use crate::error::ApiError;
use crate::AppState;

/// The largest request body accepted, in bytes.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The authenticated principal of a `/v1` request; 401 when the token is missing or unknown.
pub struct Authenticated(pub Principal);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let principal = state.tokens.authenticate(header).await?;
        tracing::Span::current().record("actor", tracing::field::display(principal.actor_id));
        Ok(Authenticated(principal))
    }
}

/// Reads a JSON request body of at most [`BODY_LIMIT`] bytes.
pub async fn json_body(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
        let content_type = content_type
            .to_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(ApiError::UnsupportedMediaType);
        }
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > BODY_LIMIT) {
        return Err(ApiError::PayloadTooLarge(BODY_LIMIT));
    }
    axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|_| ApiError::PayloadTooLarge(BODY_LIMIT))
}

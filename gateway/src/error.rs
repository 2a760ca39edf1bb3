//! The one error type of the HTTP API: every failure becomes `application/problem+json`.
//!
//! Each variant documents its status and stable `code`. Turning an error into a response has no
//! side effects; failures are logged by the request span's middleware, and a 500 never leaks
//! its cause to the client.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use commands::{CommandError, TokenError};
use domain::{DomainError, RejectionKind};
use serde::Serialize;
use store::StoreError;
use utoipa::ToSchema;

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// One invalid field, named by its JSON path (`participants`, `agenda[2]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// The problem+json body (RFC 9457) with lianxi's `code`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `invalid_body`: not JSON, not an object, or not UTF-8.
    #[error("{0}")]
    InvalidBody(String),
    /// 422 `invalid_field`: a field is missing, unknown, mistyped or out of its limits.
    #[error("invalid fields")]
    InvalidField(Vec<FieldError>),
    /// 400 `invalid_header`: a header such as `If-Match` or `Idempotency-Key` is malformed.
    #[error("{0}")]
    InvalidHeader(String),
    /// 401 `unauthorized`
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// 403 `forbidden`
    #[error("{0}")]
    Forbidden(String),
    /// 404 `unknown_command`
    #[error("there is no command called {0:?}")]
    UnknownCommand(String),
    /// 405 `method_not_allowed`
    #[error("{0} is not allowed on this path")]
    MethodNotAllowed(String),
    /// 400 `invalid_query`: a query-string parameter is malformed.
    #[error("{0}")]
    InvalidQuery(String),
    /// 503 `timeout`: the request took longer than the server allows.
    #[error("the request took longer than {0:?}")]
    Timeout(std::time::Duration),
    /// 503 `projection_behind`: the read model did not reach `X-Min-Position` within 5 s.
    #[error("{projection} has reached position {reached}, not yet {wanted}")]
    ProjectionBehind {
        projection: String,
        reached: i64,
        wanted: i64,
    },
    /// 404 `not_found`: a path that names nothing.
    #[error("{0}")]
    NotFound(String),
    /// 413 `payload_too_large`
    #[error("the body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// 415 `unsupported_media_type`
    #[error("the body must be application/json")]
    UnsupportedMediaType,
    /// 404, 409 or 422 with the rule's code.
    #[error(transparent)]
    Rejected(#[from] DomainError),
    /// 409 `stream_version_conflict`
    #[error("{0}")]
    VersionConflict(String),
    /// 422 `idempotency_key_reused`
    #[error("{0}")]
    IdempotencyKeyReused(String),
    /// 503 `store_unavailable`
    #[error("the event store is unavailable; nothing was written, try again")]
    StoreUnavailable,
    /// 503 `bus_unavailable`: a relay or projector process cannot reach NATS (`/readyz`).
    #[error("NATS JetStream is unreachable from this process")]
    BusUnavailable,
    /// 500 `internal`: our bug; the detail goes to the server log only.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidBody(_) | ApiError::InvalidHeader(_) | ApiError::InvalidQuery(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Timeout(_) | ApiError::ProjectionBehind { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::InvalidField(_) | ApiError::IdempotencyKeyReused(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::UnknownCommand(_) | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Rejected(e) => match e.kind() {
                RejectionKind::NotFound => StatusCode::NOT_FOUND,
                RejectionKind::UnknownReference => StatusCode::UNPROCESSABLE_ENTITY,
                RejectionKind::Conflict => StatusCode::CONFLICT,
            },
            ApiError::VersionConflict(_) => StatusCode::CONFLICT,
            ApiError::StoreUnavailable | ApiError::BusUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidBody(_) => "invalid_body",
            ApiError::InvalidField(_) => "invalid_field",
            ApiError::InvalidHeader(_) => "invalid_header",
            ApiError::InvalidQuery(_) => "invalid_query",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Timeout(_) => "timeout",
            ApiError::ProjectionBehind { .. } => "projection_behind",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::UnknownCommand(_) => "unknown_command",
            ApiError::NotFound(_) => "not_found",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::Rejected(e) => e.code(),
            ApiError::VersionConflict(_) => "stream_version_conflict",
            ApiError::IdempotencyKeyReused(_) => "idempotency_key_reused",
            ApiError::StoreUnavailable => "store_unavailable",
            ApiError::BusUnavailable => "bus_unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The body this error answers with.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        let code = self.code();
        Problem {
            problem_type: format!("urn:lianxi:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: match self {
                ApiError::InvalidField(errors) if errors.len() == 1 => {
                    format!("{}: {}", errors[0].field, errors[0].message)
                }
                ApiError::InvalidField(_) => "some fields are invalid".to_owned(),
                other => other.to_string(),
            },
            code: code.to_owned(),
            errors: match self {
                ApiError::InvalidField(errors) => errors.clone(),
                _ => Vec::new(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = self.problem();
        let mut response = (self.status(), axum::Json(problem)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        let headers = response.headers_mut();
        match &self {
            ApiError::StoreUnavailable
            | ApiError::BusUnavailable
            | ApiError::Timeout(_)
            | ApiError::ProjectionBehind { .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            // The rest of an over-long body is not read, so the connection cannot be reused:
            // say so, rather than leave the client to find out on its next request.
            ApiError::PayloadTooLarge(_) => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        if let ApiError::Internal(detail) = &self {
            // The client sees a generic body; the cause stays in the server log.
            tracing::error!(%detail, "internal error");
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(detail) => {
                tracing::warn!(%detail, "store unavailable");
                ApiError::StoreUnavailable
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(error: CommandError) -> Self {
        match error {
            CommandError::Forbidden(why) => ApiError::Forbidden(why),
            CommandError::Rejected(rule) => ApiError::Rejected(rule),
            e @ CommandError::VersionConflict { .. } => ApiError::VersionConflict(e.to_string()),
            e @ CommandError::IdempotencyKeyReused(_) => {
                ApiError::IdempotencyKeyReused(e.to_string())
            }
            CommandError::Store(store) => store.into(),
            CommandError::Internal(detail) => ApiError::Internal(detail),
        }
    }
}

impl From<TokenError> for ApiError {
    fn from(error: TokenError) -> Self {
        match error {
            TokenError::Unauthorized => ApiError::Unauthorized,
            TokenError::Forbidden(why) => ApiError::Forbidden(why),
            TokenError::Invalid { field, message } => ApiError::InvalidField(vec![FieldError {
                field: field.to_owned(),
                message,
            }]),
            TokenError::Store(store) => store.into(),
        }
    }
}

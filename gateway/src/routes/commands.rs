//! `POST /v1/commands/{CommandName}`: parse, authenticate, hand over to the command handler.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use commands::{CommandOutcome, CommandRequest};
use domain::{Command, ParseError};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::{ApiError, FieldError, Result};
use crate::extract::{json_body, Authenticated};
use crate::openapi::CommandResponse;
use crate::AppState;

/// The longest `Idempotency-Key` accepted.
const MAX_IDEMPOTENCY_KEY: usize = 200;

/// Sends one command. The body is the command's JSON object (API.md, "Command bodies").
#[utoipa::path(
    post,
    path = "/v1/commands/{name}",
    tag = "commands",
    params(
        ("name" = String, Path, description = "The command's name as in DOMAIN.md, e.g. `ClaimProject`"),
        ("Idempotency-Key" = Option<String>, Header, description = "Up to 200 characters; a retry with an equal body returns the first response"),
        ("If-Match" = Option<String>, Header, description = "The target stream's expected version, quoted: `\"3\"`"),
    ),
    request_body(content = crate::openapi::AnyCommand, description = "The command body"),
    responses(
        (status = 200, description = "Appended (or answered from an earlier identical request)", body = CommandResponse),
        (status = 400, description = "Malformed JSON", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Outside the token's role or scope", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown command or target", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Refused by a rule, or a stale If-Match", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field, unknown reference, or reused idempotency key", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; nothing written", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn send_command(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Authenticated(principal): Authenticated,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<CommandOutcome>> {
    if !domain::COMMAND_NAMES.contains(&name.as_str()) {
        return Err(ApiError::UnknownCommand(name));
    }
    let idempotency_key = header_text(&headers, "idempotency-key")?;
    if let Some(key) = &idempotency_key {
        if key.is_empty() || key.chars().count() > MAX_IDEMPOTENCY_KEY {
            return Err(ApiError::InvalidHeader(format!(
                "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters"
            )));
        }
    }
    let if_match = header_text(&headers, "if-match")?
        .map(|v| parse_if_match(&v))
        .transpose()?;
    let correlation_id = header_uuid(&headers, "x-correlation-id")?;
    let causation_id = header_uuid(&headers, "x-causation-id")?;

    let body = json_body(&headers, body).await?;
    let command = Command::parse(&name, &body).map_err(|e| match e {
        ParseError::UnknownCommand(name) => ApiError::UnknownCommand(name),
        ParseError::Syntax(message) => ApiError::InvalidBody(message),
        ParseError::Field { field, message } => {
            ApiError::InvalidField(vec![FieldError { field, message }])
        }
    })?;
    // Only a keyed request is ever compared with another; hashing costs a second parse.
    let request_hash = idempotency_key
        .as_ref()
        .map(|_| request_hash(&name, &body))
        .unwrap_or_default();
    tracing::Span::current().record("command", name.as_str());

    let outcome = state
        .handler
        .handle(CommandRequest {
            command,
            principal,
            request_hash,
            idempotency_key,
            if_match,
            correlation_id,
            causation_id,
        })
        .await?;
    Ok(Json(outcome))
}

/// The digest an idempotency key guards: the command name and the body's canonical JSON, so
/// that key order and whitespace do not make an equal body look different.
fn request_hash(name: &str, body: &[u8]) -> String {
    let canonical = serde_json::from_slice::<serde_json::Value>(body)
        .map(|v| store::canonical::canonical_bytes(&v))
        .unwrap_or_else(|_| body.to_vec());
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([0]);
    hasher.update(&canonical);
    hex::encode(hasher.finalize())
}

fn header_text(headers: &HeaderMap, name: &str) -> Result<Option<String>> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map(|s| s.trim().to_owned())
                .map_err(|_| ApiError::InvalidHeader(format!("{name} must be visible ASCII")))
        })
        .transpose()
}

fn header_uuid(headers: &HeaderMap, name: &str) -> Result<Option<Uuid>> {
    header_text(headers, name)?
        .map(|v| {
            Uuid::parse_str(&v)
                .map_err(|_| ApiError::InvalidHeader(format!("{name} must be a UUID")))
        })
        .transpose()
}

/// `If-Match: "3"` (quotes optional, a weak `W/` prefix refused: versions are exact).
fn parse_if_match(value: &str) -> Result<i64> {
    let unquoted = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    unquoted
        .parse::<i64>()
        .ok()
        .filter(|v| *v >= 0)
        .ok_or_else(|| {
            ApiError::InvalidHeader(format!(
                "If-Match must be a stream version such as \"3\", got {value:?}"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_takes_quoted_and_bare_versions() {
        assert_eq!(parse_if_match("\"3\"").ok(), Some(3));
        assert_eq!(parse_if_match("0").ok(), Some(0));
        assert!(parse_if_match("W/\"3\"").is_err());
        assert!(parse_if_match("\"-1\"").is_err());
        assert!(parse_if_match("*").is_err());
    }

    #[test]
    fn equal_bodies_in_another_key_order_hash_alike() {
        let a = request_hash("X", br#"{"a":1,"b":[1,2]}"#);
        let b = request_hash("X", br#"{ "b":[1,2], "a":1 }"#);
        assert_eq!(a, b);
        assert_ne!(a, request_hash("Y", br#"{"a":1,"b":[1,2]}"#));
        assert_ne!(a, request_hash("X", br#"{"a":2,"b":[1,2]}"#));
    }
}

//! Why a command was not carried out, with the outcome labels metrics count them by.

use domain::DomainError;
use store::StoreError;

/// Why a command was not carried out. Nothing was written in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The token's role or scope does not allow this command (403 `forbidden`).
    #[error("{0}")]
    Forbidden(String),
    /// A rule of the domain refused it (409, 422 or 404 with the rule's code).
    #[error(transparent)]
    Rejected(#[from] DomainError),
    /// `If-Match` named another version than the stream has (409 `stream_version_conflict`).
    #[error("stream {stream} is at version {actual}, not {expected}")]
    VersionConflict {
        stream: String,
        expected: i64,
        actual: i64,
    },
    /// The same idempotency key came with another request (422 `idempotency_key_reused`).
    #[error("idempotency key {0:?} was used before with a different request")]
    IdempotencyKeyReused(String),
    /// The store cannot be reached (503 `store_unavailable`).
    #[error(transparent)]
    Store(StoreError),
    /// The log holds something this build cannot read, or the decision kept losing races: a
    /// failure of ours, not the client's (500 with a generic body; details go to the log).
    #[error("internal: {0}")]
    Internal(String),
}

impl CommandError {
    /// A short outcome label for metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            CommandError::Forbidden(_) => "forbidden",
            CommandError::Rejected(_) => "rejected",
            CommandError::VersionConflict { .. } => "conflict",
            CommandError::IdempotencyKeyReused(_) => "idempotency_key_reused",
            CommandError::Store(_) => "store_unavailable",
            CommandError::Internal(_) => "error",
        }
    }
}

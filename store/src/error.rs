//! Store failures: conflicts the caller can act on, kept apart from infrastructure failures.

use crate::ExpectedVersion;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stream was not at the expected version; nothing was written.
    #[error("stream {stream} is at version {actual}, expected {expected:?}")]
    VersionConflict {
        stream: String,
        expected: ExpectedVersion,
        actual: i64,
    },
    /// The idempotency key was used before with a different request; nothing was written.
    #[error("idempotency key {key:?} was used before with a different request")]
    IdempotencyKeyReused { key: String },
    /// The request itself is unusable (no events, an over-long stream name, …).
    #[error("invalid append: {0}")]
    Invalid(String),
    /// The database cannot be reached or refused the work; nothing acknowledged was lost.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored row could not be read back (bad JSON, a bad UUID): the log needs attention.
    #[error("corrupt row at position {position}: {detail}")]
    Corrupt { position: i64, detail: String },
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::Unavailable(error.to_string())
    }
}

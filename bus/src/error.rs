//! The bus's failures, each with a stable code for logs, metrics and health checks.

use store::StoreError;

/// What went wrong between the log, PostgreSQL's leader lock and NATS.
///
/// The relay never stops for [`BusError::Nats`], [`BusError::Database`] or [`BusError::Store`]:
/// it logs them and tries again. Only [`BusError::Config`] ends [`crate::Relay::run`].
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// NATS could not be reached, or refused a request (a stream, a consumer, a publish).
    /// Code `bus_unavailable`.
    #[error("NATS unavailable: {0}")]
    Nats(String),
    /// The database holding the relay's leader lock could not be reached. Code
    /// `relay_lock_unavailable`.
    #[error("the relay's lock database is unavailable: {0}")]
    Database(String),
    /// The event log could not be read. Code `store_unavailable` (or `store_corrupt` when a
    /// stored row is unreadable).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A message on the stream is not one the relay published: no `Lianxi-Position` header, or a
    /// payload that is not the wire format. Code `bus_invalid_message`.
    #[error("invalid message at stream sequence {sequence:?}: {detail}")]
    InvalidMessage {
        /// The JetStream sequence of the message, when known.
        sequence: Option<u64>,
        detail: String,
    },
    /// An event of the log cannot be put on the wire: its stored data or metadata is not JSON.
    /// Code `bus_unencodable_event`.
    #[error("the event at position {position} cannot be encoded: {detail}")]
    Unencodable { position: i64, detail: String },
    /// A setting is unusable (a malformed url, a batch size of 0). Code `bus_invalid_config`.
    #[error("invalid bus configuration: {0}")]
    Config(String),
}

impl BusError {
    /// The stable snake_case code of this failure.
    pub fn code(&self) -> &'static str {
        match self {
            BusError::Nats(_) => "bus_unavailable",
            BusError::Database(_) => "relay_lock_unavailable",
            BusError::Store(StoreError::Corrupt { .. }) => "store_corrupt",
            BusError::Store(_) => "store_unavailable",
            BusError::InvalidMessage { .. } => "bus_invalid_message",
            BusError::Unencodable { .. } => "bus_unencodable_event",
            BusError::Config(_) => "bus_invalid_config",
        }
    }

    /// A NATS failure, described by `what` was being done.
    pub(crate) fn nats(what: &str, error: impl std::fmt::Display) -> Self {
        BusError::Nats(format!("{what}: {error}"))
    }
}

impl From<sqlx::Error> for BusError {
    fn from(error: sqlx::Error) -> Self {
        BusError::Database(error.to_string())
    }
}

//! Bearer tokens, kept only as SHA-256 hashes: a stolen database does not yield a usable token.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::StoreError;

/// A token as stored: never the token itself, only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The actor id that events made with this token carry.
    pub id: Uuid,
    /// Lowercase hex SHA-256 of the token text.
    pub hash: String,
    /// One of the roles of API.md, as its snake_case name.
    pub role: String,
    /// The district, community or unit the role is limited to; `None` for `admin`.
    pub scope: Option<Uuid>,
    /// The holder's display name, shown as the actor's name on events.
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// Where tokens are kept. Lookups are by hash, so the comparison never touches the secret.
#[async_trait]
pub trait TokenRegistry: Send + Sync + 'static {
    /// Stores a new token record. A hash that already exists is refused as `Invalid`.
    async fn insert_token(&self, record: TokenRecord) -> Result<(), StoreError>;
    /// The record whose hash equals `hash`, if any.
    async fn find_token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError>;
}

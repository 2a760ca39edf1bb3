//! [`TokenRegistry`] on SQLite: the `tokens` table, one row per token hash.
//!
//! Tokens are rare writes, so they go straight through the read pool's connections (SQLite's
//! busy timeout queues them behind the append writer) rather than through the group commit.
//! `created_at` is stored with all its precision so a record reads back exactly as inserted.

use async_trait::async_trait;
use chrono::SecondsFormat;
use uuid::Uuid;

use super::rows::parse_timestamp;
use super::SqliteStore;
use crate::tokens::{TokenRecord, TokenRegistry};
use crate::StoreError;

#[derive(Debug, sqlx::FromRow)]
struct TokenRow {
    id: String,
    hash: String,
    role: String,
    scope: Option<String>,
    name: String,
    created_at: String,
}

impl TokenRow {
    fn decode(self) -> Result<TokenRecord, StoreError> {
        let corrupt =
            |detail: String| StoreError::Unavailable(format!("corrupt token row: {detail}"));
        let uuid = |text: &str| {
            Uuid::parse_str(text).map_err(|error| corrupt(format!("uuid {text:?}: {error}")))
        };
        Ok(TokenRecord {
            id: uuid(&self.id)?,
            scope: self.scope.as_deref().map(uuid).transpose()?,
            created_at: parse_timestamp(&self.created_at)
                .map_err(|error| corrupt(format!("created_at {:?}: {error}", self.created_at)))?,
            hash: self.hash,
            role: self.role,
            name: self.name,
        })
    }
}

#[async_trait]
impl TokenRegistry for SqliteStore {
    #[tracing::instrument(skip_all, fields(token_id = %record.id, role = %record.role), err)]
    async fn insert_token(&self, record: TokenRecord) -> Result<(), StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO tokens (id, hash, role, scope, name, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(record.id.to_string())
        .bind(&record.hash)
        .bind(&record.role)
        .bind(record.scope.map(|scope| scope.to_string()))
        .bind(&record.name)
        .bind(
            record
                .created_at
                .to_rfc3339_opts(SecondsFormat::AutoSi, true),
        )
        .execute(&self.inner.pool)
        .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
                Err(StoreError::Invalid(format!(
                    "a token with this {} already exists",
                    if error.message().contains("tokens.hash") {
                        "hash"
                    } else {
                        "id"
                    }
                )))
            }
            Err(error) => Err(error.into()),
        }
    }

    #[tracing::instrument(skip_all, err)]
    async fn find_token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        let row: Option<TokenRow> = sqlx::query_as(
            "SELECT id, hash, role, scope, name, created_at FROM tokens WHERE hash = ?1",
        )
        .bind(hash)
        .fetch_optional(&self.inner.pool)
        .await?;
        row.map(TokenRow::decode).transpose()
    }
}

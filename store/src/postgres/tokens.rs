//! [`TokenRegistry`] on PostgreSQL: the `tokens` table, one row per token hash.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::PostgresStore;
use crate::tokens::{TokenRecord, TokenRegistry};
use crate::StoreError;

#[derive(Debug, sqlx::FromRow)]
struct TokenRow {
    id: Uuid,
    hash: String,
    role: String,
    scope: Option<Uuid>,
    name: String,
    created_at: DateTime<Utc>,
}

#[async_trait]
impl TokenRegistry for PostgresStore {
    #[tracing::instrument(skip_all, fields(token_id = %record.id, role = %record.role), err)]
    async fn insert_token(&self, record: TokenRecord) -> Result<(), StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO tokens (id, hash, role, scope, name, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(record.id)
        .bind(&record.hash)
        .bind(&record.role)
        .bind(record.scope)
        .bind(&record.name)
        .bind(record.created_at)
        .execute(self.pool())
        .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
                Err(StoreError::Invalid(format!(
                    "a token with this {} already exists",
                    if error.constraint() == Some("tokens_hash_unique") {
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
            "SELECT id, hash, role, scope, name, created_at FROM tokens WHERE hash = $1",
        )
        .bind(hash)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|row| TokenRecord {
            id: row.id,
            hash: row.hash,
            role: row.role,
            scope: row.scope,
            name: row.name,
            created_at: row.created_at,
        }))
    }
}

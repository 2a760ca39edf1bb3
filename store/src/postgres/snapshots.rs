//! Snapshots on PostgreSQL: the `snapshots` table, one row per stream and state schema.

use sqlx::PgPool;

use crate::{Snapshot, StoreError};

/// The snapshot of `stream` in shape `schema`, if any.
pub(super) async fn read(
    pool: &PgPool,
    stream: &str,
    schema: i32,
) -> Result<Option<Snapshot>, StoreError> {
    let row: Option<(i64, String)> =
        sqlx::query_as("SELECT version, state FROM snapshots WHERE stream_id = $1 AND schema = $2")
            .bind(stream)
            .bind(schema)
            .fetch_optional(pool)
            .await?;
    Ok(row.map(|(version, state)| Snapshot {
        stream: stream.to_owned(),
        version,
        schema,
        state,
    }))
}

/// Up to `limit` snapshots in shape `schema` of the streams after `after`, by stream id.
pub(super) async fn page(
    pool: &PgPool,
    schema: i32,
    after: &str,
    limit: usize,
) -> Result<Vec<Snapshot>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT stream_id, version, state FROM snapshots \
         WHERE schema = $1 AND stream_id > $2 ORDER BY stream_id LIMIT $3",
    )
    .bind(schema)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(stream, version, state)| Snapshot {
            stream,
            version,
            schema,
            state,
        })
        .collect())
}

/// Saves `snapshot` when its stream has reached its version and no newer one is there.
pub(super) async fn save(pool: &PgPool, snapshot: &Snapshot) -> Result<bool, StoreError> {
    // The `EXISTS` keeps a snapshot ahead of its stream out; the upsert's `WHERE` keeps an older
    // one from replacing a newer one saved by a racing server.
    let saved = sqlx::query(
        "INSERT INTO snapshots (stream_id, schema, version, state) \
         SELECT $1, $2, $3, $4 \
         WHERE EXISTS (SELECT 1 FROM events WHERE stream_id = $1 AND version = $3) \
         ON CONFLICT (stream_id, schema) DO UPDATE \
         SET version = excluded.version, state = excluded.state, saved_at = now() \
         WHERE excluded.version > snapshots.version",
    )
    .bind(&snapshot.stream)
    .bind(snapshot.schema)
    .bind(snapshot.version)
    .bind(&snapshot.state)
    .execute(pool)
    .await?;
    Ok(saved.rows_affected() > 0)
}

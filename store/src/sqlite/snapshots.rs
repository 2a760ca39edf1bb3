//! Snapshots on SQLite: the `snapshots` table, one row per stream and state schema.
//!
//! Saves are rare (one per long stream now and then), so like tokens they go through the read
//! pool's connections, queued behind the append writer by SQLite's busy timeout.

use chrono::{SecondsFormat, Utc};
use sqlx::SqlitePool;

use crate::{Snapshot, StoreError};

/// The snapshot of `stream` in shape `schema`, if any.
pub(super) async fn read(
    pool: &SqlitePool,
    stream: &str,
    schema: i32,
) -> Result<Option<Snapshot>, StoreError> {
    let row: Option<(i64, String)> =
        sqlx::query_as("SELECT version, state FROM snapshots WHERE stream_id = ?1 AND schema = ?2")
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
    pool: &SqlitePool,
    schema: i32,
    after: &str,
    limit: usize,
) -> Result<Vec<Snapshot>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT stream_id, version, state FROM snapshots \
         WHERE schema = ?1 AND stream_id > ?2 ORDER BY stream_id LIMIT ?3",
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
pub(super) async fn save(pool: &SqlitePool, snapshot: &Snapshot) -> Result<bool, StoreError> {
    // The `EXISTS` keeps a snapshot ahead of its stream out; the upsert's `WHERE` keeps an older
    // one from replacing a newer one saved by a racing task.
    let saved = sqlx::query(
        "INSERT INTO snapshots (stream_id, schema, version, state, saved_at) \
         SELECT ?1, ?2, ?3, ?4, ?5 \
         WHERE EXISTS (SELECT 1 FROM events WHERE stream_id = ?1 AND version = ?3) \
         ON CONFLICT (stream_id, schema) DO UPDATE \
         SET version = excluded.version, state = excluded.state, saved_at = excluded.saved_at \
         WHERE excluded.version > snapshots.version",
    )
    .bind(&snapshot.stream)
    .bind(snapshot.schema)
    .bind(snapshot.version)
    .bind(&snapshot.state)
    .bind(Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true))
    .execute(pool)
    .await?;
    Ok(saved.rows_affected() > 0)
}

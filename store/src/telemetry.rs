//! The store's metrics, named in one place so every backend reports the same series.
//!
//! - `lianxi_store_append_requests_total{outcome}`: one per `append` call, outcome `appended`,
//!   `duplicate`, `conflict` (a version conflict or a reused idempotency key: the caller's
//!   problem, answered 409) or `error` (invalid requests and infrastructure failures);
//! - `lianxi_store_appended_events_total`: events actually written;
//! - `lianxi_store_batch_requests`: requests sharing one group commit;
//! - `lianxi_store_commit_seconds`: time from `BEGIN` to a durable `COMMIT` of one group commit;
//! - `lianxi_store_postgres_batches_total{path}`: PostgreSQL group commits by how they were
//!   written: `one_statement` (on stream heads the writer knew), `moved` (tried so, but a head
//!   had moved: then prepared under locks), `together` (prepared under locks), `one_by_one`
//!   (redone request by request after a refused bulk write).

use std::time::Duration;

use crate::{AppendOutcome, StoreError};

/// Counts one finished `append` call.
pub(crate) fn record_append(result: &Result<AppendOutcome, StoreError>) {
    let outcome = match result {
        Ok(AppendOutcome::Appended(events)) => {
            metrics::counter!("lianxi_store_appended_events_total").increment(events.len() as u64);
            "appended"
        }
        Ok(AppendOutcome::Duplicate(_)) => "duplicate",
        Err(StoreError::VersionConflict { .. } | StoreError::IdempotencyKeyReused { .. }) => {
            "conflict"
        }
        Err(_) => "error",
    };
    metrics::counter!("lianxi_store_append_requests_total", "outcome" => outcome).increment(1);
}

/// Records one group commit of `requests` requests that took `elapsed`.
pub(crate) fn record_group_commit(requests: usize, elapsed: Duration) {
    metrics::histogram!("lianxi_store_batch_requests").record(requests as f64);
    metrics::histogram!("lianxi_store_commit_seconds").record(elapsed.as_secs_f64());
}

/// Counts one PostgreSQL group commit (or one try at it, `moved`) by how it was written.
pub(crate) fn record_postgres_batch(path: &'static str) {
    metrics::counter!("lianxi_store_postgres_batches_total", "path" => path).increment(1);
}

//! The queue between `append` callers and a backend's single writer task, shared by both
//! backends: how a request reaches the writer, how the writer gathers waiting requests into one
//! group commit, and how each finished append is counted and logged.

use std::time::Instant;

use tokio::sync::{mpsc, oneshot, watch};

use crate::commit_clock::CommitClock;
use crate::{telemetry, AppendOutcome, AppendRequest, Position, StoreError};

/// The most requests one group commit takes.
pub(crate) const MAX_BATCH_REQUESTS: usize = 512;
/// A batch stops taking further requests once it holds this many events.
pub(crate) const MAX_BATCH_EVENTS: usize = 4096;
/// Requests that may wait for the writer before `append` callers wait to enqueue.
pub(crate) const QUEUE_DEPTH: usize = MAX_BATCH_REQUESTS * 4;

/// One append waiting for the writer, with the channel its outcome goes back on.
pub(crate) struct AppendJob {
    pub request: AppendRequest,
    pub reply: oneshot::Sender<Result<AppendOutcome, StoreError>>,
}

/// Validates `request`, hands it to the writer behind `writer` and waits for its outcome, which
/// is counted and logged as every backend's appends are.
pub(crate) async fn append(
    writer: &mpsc::Sender<AppendJob>,
    request: AppendRequest,
) -> Result<AppendOutcome, StoreError> {
    let result = submit(writer, request).await;
    telemetry::record_append(&result);
    match &result {
        Err(error @ (StoreError::Unavailable(_) | StoreError::Corrupt { .. })) => {
            tracing::warn!(%error, "append failed");
        }
        Err(error) => tracing::debug!(%error, "append refused"),
        Ok(_) => {}
    }
    result
}

async fn submit(
    writer: &mpsc::Sender<AppendJob>,
    request: AppendRequest,
) -> Result<AppendOutcome, StoreError> {
    request.validate()?;
    let (reply, outcome) = oneshot::channel();
    writer
        .send(AppendJob { request, reply })
        .await
        .map_err(|_| StoreError::Unavailable("the append writer has stopped".into()))?;
    outcome
        .await
        .map_err(|_| StoreError::Unavailable("the append writer stopped before answering".into()))?
}

/// Waits for the next request, then takes whatever else is already queued (up to the batch
/// limits) into `batch`, which must be empty. Returns the batch's event count, or `None` once
/// every sender is gone.
pub(crate) async fn next_batch(
    jobs: &mut mpsc::Receiver<AppendJob>,
    batch: &mut Vec<AppendJob>,
) -> Option<usize> {
    let first = jobs.recv().await?;
    let mut events = first.request.events.len();
    batch.push(first);
    while batch.len() < MAX_BATCH_REQUESTS && events < MAX_BATCH_EVENTS {
        match jobs.try_recv() {
            Ok(job) => {
                events += job.request.events.len();
                batch.push(job);
            }
            Err(_) => break,
        }
    }
    Some(events)
}

/// What a writer made of one batch: a result per request, in request order, and the highest
/// position it wrote (if any).
pub(crate) type BatchResults = (Vec<Result<AppendOutcome, StoreError>>, Option<Position>);

/// Answers every request of a batch and leaves `jobs` empty; returns whether the batch
/// committed. A committed batch moves `head` before any reply goes out (a caller that saw its
/// append succeed and then subscribes finds the head at or past its events); a failed one
/// answers every request [`StoreError::Unavailable`]: none of it is acknowledged.
pub(crate) fn answer<E: std::fmt::Display>(
    jobs: &mut Vec<AppendJob>,
    outcome: Result<BatchResults, E>,
    head: &watch::Sender<Position>,
    clock: &CommitClock,
    started: Instant,
) -> bool {
    match outcome {
        Ok((results, last)) => {
            telemetry::record_group_commit(jobs.len(), started.elapsed());
            if let Some(last) = last {
                let first = results
                    .iter()
                    .filter_map(|result| match result {
                        Ok(AppendOutcome::Appended(events)) => events.first(),
                        _ => None,
                    })
                    .map(|event| event.position)
                    .min();
                if let Some(first) = first {
                    clock.record(first, last, chrono::Utc::now());
                }
                // Subscribers are woken even when the head does not move: with more than one
                // writer (PostgreSQL), a batch that commits after a later one fills positions
                // below the head, and makes them readable only now.
                head.send_modify(|current| *current = (*current).max(last));
            }
            for (job, result) in jobs.drain(..).zip(results) {
                // A caller that gave up waiting is no reason to fail the others.
                let _ = job.reply.send(result);
            }
            true
        }
        Err(error) => {
            tracing::error!(%error, "the group commit failed; none of its requests is acknowledged");
            let reason = format!("the group commit failed: {error}");
            for job in jobs.drain(..) {
                let _ = job.reply.send(Err(StoreError::Unavailable(reason.clone())));
            }
            false
        }
    }
}

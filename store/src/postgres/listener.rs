//! Moves the store's head when any process commits to the log, via `LISTEN lianxi_events`.
//!
//! A notification is only a wake-up: on each one (and after every reconnection, since
//! notifications sent while disconnected are lost) the listener asks the database for the safe
//! head and announces it if it moved. The log stays the source.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::{oneshot, watch};
use tracing::Instrument;

use super::{safe_head, CHANNEL};
use crate::Position;

/// How long to wait before trying again when the database cannot be reached.
const RETRY: Duration = Duration::from_millis(500);

/// Starts listening until `stop` fires or its sender is dropped.
pub(super) fn spawn(
    pool: PgPool,
    head: Arc<watch::Sender<Position>>,
    mut stop: oneshot::Receiver<()>,
) {
    let span = tracing::info_span!(parent: None, "postgres_listener");
    tokio::spawn(
        async move {
            tokio::select! {
                _ = &mut stop => {}
                () = listen(&pool, &head) => {}
            }
        }
        .instrument(span),
    );
}

/// Listens for ever, reconnecting as needed.
async fn listen(pool: &PgPool, head: &watch::Sender<Position>) {
    loop {
        let mut listener = match connect(pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for commits; retrying");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        refresh(pool, head).await;
        loop {
            match listener.try_recv().await {
                Ok(Some(_)) => {
                    // Many commits, one question: drop the notifications already waiting.
                    while listener.next_buffered().is_some() {}
                    refresh(pool, head).await;
                }
                // The connection was lost and has been made again: catch up on what was missed.
                Ok(None) => refresh(pool, head).await,
                Err(error) => {
                    tracing::warn!(%error, "lost the notification connection; reconnecting");
                    tokio::time::sleep(RETRY).await;
                    break;
                }
            }
        }
    }
}

async fn connect(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Announces the safe head if it moved forward.
async fn refresh(pool: &PgPool, head: &watch::Sender<Position>) {
    match safe_head(pool).await {
        Ok(position) => {
            head.send_if_modified(|current| {
                let moved = *current < position;
                if moved {
                    *current = position;
                }
                moved
            });
        }
        Err(error) => tracing::warn!(%error, "cannot read the log's head"),
    }
}

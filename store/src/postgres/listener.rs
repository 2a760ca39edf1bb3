//! Wakes the store's subscribers when another process commits to the log, via
//! `LISTEN lianxi_events`.
//!
//! A notification is only a wake-up: on each one from another store (and after every
//! reconnection, since notifications sent while disconnected are lost) the listener asks the
//! database for the safe head and wakes every subscriber, even when the head number did not move:
//! a commit that fills a position below the head (another server's writer that took its position
//! earlier) makes events readable without moving it. This store's own commits are skipped: its
//! writer announced them already. The log stays the source.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgNotification, PgPool};
use tokio::sync::{oneshot, watch};
use tracing::Instrument;

use super::{safe_head, CHANNEL};
use crate::Position;

/// How long to wait before trying again when the database cannot be reached.
const RETRY: Duration = Duration::from_millis(500);

/// Starts listening until `stop` fires or its sender is dropped. `own` is this store's name in
/// notifications.
pub(super) fn spawn(
    pool: PgPool,
    head: Arc<watch::Sender<Position>>,
    own: String,
    mut stop: oneshot::Receiver<()>,
) {
    let span = tracing::info_span!(parent: None, "postgres_listener");
    tokio::spawn(
        async move {
            tokio::select! {
                _ = &mut stop => {}
                () = listen(&pool, &head, &own) => {}
            }
        }
        .instrument(span),
    );
}

/// Listens for ever, reconnecting as needed.
async fn listen(pool: &PgPool, head: &watch::Sender<Position>, own: &str) {
    loop {
        let mut listener = match connect(pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for commits; retrying");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        wake(pool, head).await;
        loop {
            match listener.try_recv().await {
                Ok(Some(first)) => {
                    // Many commits, one question: take every notification already waiting.
                    let mut foreign = !is_own(&first, own);
                    while let Some(next) = listener.next_buffered() {
                        foreign |= !is_own(&next, own);
                    }
                    if foreign {
                        wake(pool, head).await;
                    }
                }
                // The connection was lost and has been made again: catch up on what was missed.
                Ok(None) => wake(pool, head).await,
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

/// Whether `notification` is a commit of this store (payload `<writer>:<position>`).
fn is_own(notification: &PgNotification, own: &str) -> bool {
    notification
        .payload()
        .split_once(':')
        .is_some_and(|(writer, _)| writer == own)
}

/// Reads the safe head and wakes every subscriber, moving the head forward if it moved.
async fn wake(pool: &PgPool, head: &watch::Sender<Position>) {
    match safe_head(pool).await {
        Ok(position) => head.send_modify(|current| *current = (*current).max(position)),
        Err(error) => tracing::warn!(%error, "cannot read the log's head"),
    }
}

//! Wakes the store's subscribers when another process commits to the log, via
//! `LISTEN lianxi_events`.
//!
//! A notification is only a wake-up: the log stays the source, and every read stops at the safe
//! position by itself. Each one from another store (payload `<writer>:<last position>`) moves the
//! head forward to that position, if it is further, and wakes every subscriber even when the
//! number did not move: a commit that fills a position below the head (another server's writer
//! that took its position earlier) makes events readable without moving it. The head is then a
//! hint, ahead of the safe head for as long as a lower position is in flight, as it is for this
//! store's own commits; `EventStore::head` asks the database. After every (re)connection, since
//! notifications sent while disconnected are lost, the listener asks the database for the safe
//! head. This store's own commits are skipped: its writer announced them already.
//!
//! (It used to ask for the safe head after every foreign commit: a scan of `pg_locks` each time,
//! more than a quarter of PostgreSQL's time in a distributed benchmark at 1,000 commands/s.)

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
                    // Take every notification already waiting: one wake-up for all of them.
                    let mut foreign = Foreign::default();
                    foreign.add(&first, own);
                    while let Some(next) = listener.next_buffered() {
                        foreign.add(&next, own);
                    }
                    match foreign {
                        Foreign { any: false, .. } => {}
                        Foreign {
                            unreadable: false,
                            last: Some(last),
                            ..
                        } => head.send_modify(|current| *current = (*current).max(last)),
                        // A payload of another shape: ask the database.
                        Foreign { .. } => wake(pool, head).await,
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

/// What the notifications waiting at once say about other stores' commits.
#[derive(Debug, Default, PartialEq, Eq)]
struct Foreign {
    /// Whether any came from another store.
    any: bool,
    /// The furthest last position they named.
    last: Option<Position>,
    /// Whether one had a payload other than `<writer>:<position>`.
    unreadable: bool,
}

impl Foreign {
    /// Takes in `notification` unless it is a commit of this store (`own`).
    fn add(&mut self, notification: &PgNotification, own: &str) {
        self.add_payload(notification.payload(), own);
    }

    fn add_payload(&mut self, payload: &str, own: &str) {
        let parsed = payload
            .split_once(':')
            .map(|(writer, position)| (writer, position.parse::<Position>().ok()));
        match parsed {
            Some((writer, _)) if writer == own => {}
            Some((_, Some(position))) => {
                self.any = true;
                self.last = self.last.max(Some(position));
            }
            _ => {
                self.any = true;
                self.unreadable = true;
            }
        }
    }
}

/// Reads the safe head and wakes every subscriber, moving the head forward if it moved.
async fn wake(pool: &PgPool, head: &watch::Sender<Position>) {
    match safe_head(pool).await {
        Ok(position) => head.send_modify(|current| *current = (*current).max(position)),
        Err(error) => tracing::warn!(%error, "cannot read the log's head"),
    }
}

#[cfg(test)]
mod tests {
    use super::Foreign;

    fn read(payloads: &[&str]) -> Foreign {
        let mut foreign = Foreign::default();
        for payload in payloads {
            foreign.add_payload(payload, "me");
        }
        foreign
    }

    #[test]
    fn own_commits_are_no_news() {
        assert_eq!(read(&["me:7", "me:9"]), Foreign::default());
    }

    #[test]
    fn other_stores_commits_move_the_head_to_the_furthest_they_name() {
        assert_eq!(
            read(&["a:12", "me:40", "b:30", "a:14"]),
            Foreign {
                any: true,
                last: Some(30),
                unreadable: false
            }
        );
    }

    #[test]
    fn a_payload_of_another_shape_sends_the_listener_to_the_database() {
        for odd in ["", "no-colon", "a:", "a:x"] {
            let foreign = read(&["b:3", odd]);
            assert!(foreign.any && foreign.unreadable, "{odd:?}");
        }
    }
}

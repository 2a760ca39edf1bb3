//! One decision at a time per stream, within this process.
//!
//! Optimistic concurrency alone makes N commands racing for one stream cost O(N²) decisions:
//! every loser decides again. Queueing them per stream turns the race into a line, so each
//! decides once, against the log as the previous one left it. The store's expected version still
//! guards against other processes; this lock only saves wasted work here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// Per-stream async locks, forgotten once nobody holds or waits for them.
#[derive(Default)]
pub(crate) struct StreamLocks {
    locks: Mutex<HashMap<String, Weak<AsyncMutex<()>>>>,
}

impl StreamLocks {
    /// Waits for the stream's lock; it is released when the guard is dropped.
    pub(crate) async fn lock(&self, stream: &str) -> OwnedMutexGuard<()> {
        let lock = {
            // A poisoned map only means another task panicked mid-insert; the map is still usable.
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            if locks.len() > 1_024 {
                locks.retain(|_, weak| weak.strong_count() > 0);
            }
            match locks.get(stream).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    let lock = Arc::new(AsyncMutex::new(()));
                    locks.insert(stream.to_owned(), Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_second_holder_of_the_same_stream_waits_for_the_first() {
        let locks = Arc::new(StreamLocks::default());
        let first = locks.lock("project-1").await;
        let waiting = {
            let locks = locks.clone();
            tokio::spawn(async move {
                let _guard = locks.lock("project-1").await;
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "the second holder must wait");
        // Another stream is not held up.
        let _other = locks.lock("project-2").await;
        drop(first);
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("released")
            .expect("no panic");
    }
}

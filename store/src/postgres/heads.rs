//! The stream heads this process's writer tasks last read under lock or wrote, so that a batch
//! over streams they know can be decided without reading and written in one statement.
//!
//! Only ever a guess: the database compares every head a batch was decided on before it writes
//! (`lianxi_append_batch`), so a head that another process moved, or that a failed batch of
//! this one left behind, costs that batch a second attempt, never a wrong append.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::plan::StreamHead;

/// Heads kept per generation. Two generations are kept, so between 16,384 and 32,768 of the
/// most recently used streams (~6 MB at most): the streams a command touches again soon (a
/// project claimed after it was proposed, a community its projects require unchanged) stay,
/// and the many touched once fall out.
const GENERATION: usize = 16_384;

/// The heads, shared by the writer tasks.
#[derive(Debug, Default)]
pub(super) struct KnownHeads {
    inner: Mutex<Generations>,
}

#[derive(Debug, Default)]
pub(super) struct Generations {
    current: HashMap<String, StreamHead>,
    previous: HashMap<String, StreamHead>,
}

impl KnownHeads {
    /// The heads, for one batch's lookups and changes together.
    pub fn lock(&self) -> MutexGuard<'_, Generations> {
        // A panic elsewhere while holding the lock leaves guesses, which the database checks.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Generations {
    /// The head last seen for `stream`, if it is still known.
    pub fn get(&mut self, stream: &str) -> Option<StreamHead> {
        if let Some(head) = self.current.get(stream) {
            return Some(head.clone());
        }
        let head = self.previous.remove(stream)?;
        self.insert(stream.to_owned(), head.clone());
        Some(head)
    }

    /// Records `head` as the head of `stream`, as read under lock or as a batch wrote it.
    pub fn insert(&mut self, stream: String, head: StreamHead) {
        if self.current.len() >= GENERATION && !self.current.contains_key(&stream) {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(stream, head);
    }

    /// Forgets `stream`: a batch that wrote or checked it failed, so its head is not known.
    pub fn remove(&mut self, stream: &str) {
        self.current.remove(stream);
        self.previous.remove(stream);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(version: i64) -> StreamHead {
        StreamHead {
            version,
            hash: Some(format!("{version:064}")),
        }
    }

    #[test]
    fn a_used_head_stays_and_one_left_alone_for_two_generations_goes() {
        let known = KnownHeads::default();
        let mut heads = known.lock();
        heads.insert("hot".into(), head(1));
        heads.insert("cold".into(), head(1));
        for n in 0..2 * GENERATION {
            heads.insert(format!("once-{n}"), head(1));
            // Used again now and then, as a stream its commands keep touching.
            if n % 1_000 == 0 {
                assert_eq!(heads.get("hot"), Some(head(1)));
            }
            if n == GENERATION / 2 {
                assert_eq!(
                    heads.get("cold"),
                    Some(head(1)),
                    "within a generation it is kept"
                );
            }
        }
        assert_eq!(heads.get("hot"), Some(head(1)));
        assert_eq!(
            heads.get("cold"),
            None,
            "two generations on, it is forgotten"
        );
        assert!(heads.current.len() + heads.previous.len() <= 2 * GENERATION);
    }

    #[test]
    fn a_forgotten_head_is_gone_from_both_generations() {
        let known = KnownHeads::default();
        let mut heads = known.lock();
        heads.insert("s".into(), head(3));
        heads.previous = std::mem::take(&mut heads.current);
        heads.insert("s".into(), head(4));
        heads.remove("s");
        assert_eq!(heads.get("s"), None);
    }
}

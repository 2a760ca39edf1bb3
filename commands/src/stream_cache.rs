//! Recently used streams' states, kept in memory so that most commands decide without a read.
//!
//! An entry is always the fold of an exact prefix of its stream in the log: it was either loaded
//! from the log or built from an entry by applying the events this process just committed. It may
//! be stale (another process appended since), never wrong. The handler makes that safe: every
//! acceptance is appended with the versions it was decided on as guards, and every refusal decided
//! from the cache is decided again from the log before it is answered.

use std::sync::Arc;

use domain::StreamState;
use quick_cache::sync::Cache;
use quick_cache::Weighter;

/// How much the cache holds at most, in [`StreamState::weight`]s (about events' worth; a few MB).
const CAPACITY: u64 = 32_768;
/// How many streams the cache expects to hold, to size its table.
const ESTIMATED_STREAMS: usize = 8_192;

/// A stream's state as of `version`.
#[derive(Debug, Clone)]
pub(crate) struct Cached {
    pub state: Arc<StreamState>,
    /// The stream's version `state` is folded up to.
    pub version: i64,
    /// The version of the stream's newest snapshot this process knows of (0: none).
    pub snapshot_version: i64,
}

/// Weighs an entry by the state's size, so a few large states cannot crowd out memory.
#[derive(Clone)]
struct ByWeight;

impl Weighter<String, Cached> for ByWeight {
    fn weight(&self, _stream: &String, cached: &Cached) -> u64 {
        cached.state.weight()
    }
}

/// States by stream id, evicting the least useful when full.
pub(crate) struct StreamCache {
    entries: Cache<String, Cached, ByWeight>,
}

impl Default for StreamCache {
    fn default() -> Self {
        Self {
            entries: Cache::with_weighter(ESTIMATED_STREAMS, CAPACITY, ByWeight),
        }
    }
}

impl StreamCache {
    /// The cached state of `stream`, if any.
    pub(crate) fn get(&self, stream: &str) -> Option<Cached> {
        let found = self.entries.get(stream);
        let outcome = if found.is_some() { "hit" } else { "miss" };
        metrics::counter!("lianxi_command_stream_cache_total", "outcome" => outcome).increment(1);
        found
    }

    /// Remembers `stream` as of `cached.version`, unless a later version is already known.
    pub(crate) fn put(&self, stream: &str, cached: Cached) {
        // Two tasks may race here; either way the entry stays an exact prefix of the log.
        if let Some(known) = self.entries.get(stream) {
            if known.version > cached.version {
                return;
            }
        }
        self.entries.insert(stream.to_owned(), cached);
    }

    /// Forgets `stream`: the log moved past what was cached.
    pub(crate) fn forget(&self, stream: &str) {
        self.entries.remove(stream);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(version: i64) -> Cached {
        Cached {
            state: Arc::new(StreamState::Project(None)),
            version,
            snapshot_version: 0,
        }
    }

    #[test]
    fn an_older_state_never_replaces_a_newer_one() {
        let cache = StreamCache::default();
        cache.put("s", cached(3));
        cache.put("s", cached(2));
        assert_eq!(cache.get("s").map(|c| c.version), Some(3));
        cache.put("s", cached(4));
        assert_eq!(cache.get("s").map(|c| c.version), Some(4));
        cache.forget("s");
        assert!(cache.get("s").is_none());
    }
}

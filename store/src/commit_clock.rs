//! When the latest group commits of this process ended, by the positions each made durable: the
//! projectors' lag is measured "from commit to read model" from it, as issue 3's target reads.
//! Only the live edge of the log is ever asked about, so a few thousand commits are kept.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use crate::Position;

/// How many commits are remembered: at 1,000 commands/s (a few hundred group commits a second)
/// about ten seconds, far more than a live projector trails by.
const KEPT: usize = 4_096;

/// The end of each remembered commit, keyed by the last position it made durable.
#[derive(Debug, Default)]
pub struct CommitClock {
    ends: Mutex<BTreeMap<Position, Commit>>,
}

#[derive(Debug, Clone, Copy)]
struct Commit {
    first: Position,
    at: DateTime<Utc>,
}

impl CommitClock {
    /// Records that positions `first..=last` became durable `at`.
    pub(crate) fn record(&self, first: Position, last: Position, at: DateTime<Utc>) {
        let Ok(mut ends) = self.ends.lock() else {
            return;
        };
        ends.insert(last, Commit { first, at });
        while ends.len() > KEPT {
            ends.pop_first();
        }
    }

    /// When the commit that made `position` durable ended, if this process made it and still
    /// remembers it.
    pub fn committed_at(&self, position: Position) -> Option<DateTime<Utc>> {
        let ends = self.ends.lock().ok()?;
        let (_, commit) = ends.range(position..).next()?;
        (commit.first <= position).then_some(commit.at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(second, 0).expect("a time")
    }

    #[test]
    fn a_position_is_dated_by_the_commit_that_holds_it() {
        let clock = CommitClock::default();
        clock.record(1, 3, at(10));
        // Two writers (PostgreSQL): a later range may commit first.
        clock.record(7, 9, at(11));
        clock.record(4, 6, at(12));

        assert_eq!(clock.committed_at(1), Some(at(10)));
        assert_eq!(clock.committed_at(3), Some(at(10)));
        assert_eq!(clock.committed_at(5), Some(at(12)));
        assert_eq!(clock.committed_at(9), Some(at(11)));
        // Past the head, or in another process's commit: unknown.
        assert_eq!(clock.committed_at(10), None);
    }

    #[test]
    fn only_the_latest_commits_are_remembered() {
        let clock = CommitClock::default();
        for n in 0..(KEPT as i64 + 10) {
            clock.record(n * 2 + 1, n * 2 + 2, at(n));
        }
        // The oldest are forgotten, not dated by a later commit.
        assert_eq!(clock.committed_at(1), None);
        assert_eq!(clock.committed_at(20), None);
        let last = KEPT as i64 + 9;
        assert_eq!(clock.committed_at(last * 2 + 2), Some(at(last)));
    }
}

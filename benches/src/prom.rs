//! The store's group-commit metrics, read from Prometheus text (the server's `/metrics`, or the
//! recorder this harness installs for the in-process store benchmark).
//!
//! Two histograms tell how well group commit works: `lianxi_store_batch_requests` (requests per
//! commit) and `lianxi_store_commit_seconds` (`BEGIN` to durable `COMMIT`). Their `_sum` and
//! `_count` are cumulative, so the difference of two snapshots describes the window between.

use std::sync::OnceLock;

use anyhow::{Context, Result};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

const BATCH: &str = "lianxi_store_batch_requests";
const COMMIT: &str = "lianxi_store_commit_seconds";

/// Cumulative sums and counts of the group-commit histograms.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CommitStats {
    /// Requests committed (sum of batch sizes).
    pub requests: f64,
    /// Group commits.
    pub commits: f64,
    /// Seconds spent from `BEGIN` to durable `COMMIT`, over all commits.
    pub commit_seconds: f64,
}

impl CommitStats {
    /// Reads the histograms' `_sum` and `_count` from Prometheus text.
    pub fn parse(text: &str) -> CommitStats {
        CommitStats {
            requests: sample(text, &format!("{BATCH}_sum")),
            commits: sample(text, &format!("{BATCH}_count")),
            commit_seconds: sample(text, &format!("{COMMIT}_sum")),
        }
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &CommitStats) -> CommitStats {
        CommitStats {
            requests: self.requests - earlier.requests,
            commits: self.commits - earlier.commits,
            commit_seconds: self.commit_seconds - earlier.commit_seconds,
        }
    }

    /// Mean requests per group commit.
    pub fn mean_batch(&self) -> Option<f64> {
        (self.commits > 0.0).then(|| self.requests / self.commits)
    }

    /// Mean milliseconds from `BEGIN` to durable `COMMIT`.
    pub fn mean_commit_ms(&self) -> Option<f64> {
        (self.commits > 0.0).then(|| self.commit_seconds * 1_000.0 / self.commits)
    }
}

/// The sum of every sample of `name` (all label sets); 0 when absent.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let value = if let Some(labelled) = rest.strip_prefix('{') {
                labelled.split_once('}')?.1
            } else if rest.starts_with(' ') {
                rest
            } else {
                return None;
            };
            value.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum()
}

/// Installs (once) a Prometheus recorder in this process, so the store benchmark sees the same
/// group-commit metrics the server exports. Histograms, not summaries: cumulative sums.
pub fn local_recorder() -> Result<&'static PrometheusHandle> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(handle) = HANDLE.get() {
        return Ok(handle);
    }
    let handle = PrometheusBuilder::new()
        .set_buckets(&[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0])
        .context("configuring the metrics recorder")?
        .install_recorder()
        .context("installing the metrics recorder")?;
    Ok(HANDLE.get_or_init(|| handle))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# TYPE lianxi_store_batch_requests histogram
lianxi_store_batch_requests_bucket{le=\"1\"} 3
lianxi_store_batch_requests_sum 40
lianxi_store_batch_requests_count 5
lianxi_store_batch_requests_sum_other 99
lianxi_store_commit_seconds_sum{backend=\"a\"} 0.004
lianxi_store_commit_seconds_sum{backend=\"b\"} 0.006
lianxi_store_commit_seconds_count 5
";

    #[test]
    fn reads_sums_and_counts_across_labels() {
        let stats = CommitStats::parse(TEXT);
        assert_eq!(stats.requests, 40.0);
        assert_eq!(stats.commits, 5.0);
        assert!((stats.commit_seconds - 0.01).abs() < 1e-12);
        assert_eq!(stats.mean_batch(), Some(8.0));
        assert!(stats
            .mean_commit_ms()
            .is_some_and(|ms| (ms - 2.0).abs() < 1e-9));
    }

    #[test]
    fn differences_describe_the_window() {
        let later = CommitStats::parse(TEXT);
        let delta = later.since(&CommitStats {
            requests: 10.0,
            commits: 1.0,
            commit_seconds: 0.002,
        });
        assert_eq!(delta.mean_batch(), Some(7.5));
        assert_eq!(CommitStats::default().mean_batch(), None);
    }
}

//! The store's group-commit metrics, read from Prometheus text (the server's `/metrics`, or the
//! recorder this harness installs for the in-process store benchmark).
//!
//! Two histograms tell how well group commit works: `lianxi_store_batch_requests` (requests per
//! commit) and `lianxi_store_commit_seconds` (`BEGIN` to durable `COMMIT`). Their `_sum` and
//! `_count` are cumulative, so the difference of two snapshots describes the window between.

use std::collections::BTreeMap;
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
pub fn sample(text: &str, name: &str) -> f64 {
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

/// A histogram's cumulative bucket counts: `(upper bound, observations ≤ bound)`, ascending,
/// the last bound `+Inf`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Buckets {
    pub cumulative: Vec<(f64, f64)>,
}

/// A quantile read from buckets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Quantile {
    /// Linearly interpolated inside the bucket that holds the rank (from 0 for the first).
    Within(f64),
    /// In the `+Inf` bucket: above the largest finite bound, which is all the buckets can say.
    Above(f64),
}

impl Quantile {
    /// Milliseconds, `> 10000` for a quantile above the last bound.
    pub fn ms_label(self) -> String {
        match self {
            Quantile::Within(seconds) => {
                let ms = seconds * 1_000.0;
                if ms < 10.0 {
                    format!("{ms:.2}")
                } else {
                    format!("{ms:.1}")
                }
            }
            Quantile::Above(seconds) => format!("> {:.0}", seconds * 1_000.0),
        }
    }

    /// The value in seconds, the bound for `Above`.
    pub fn seconds(self) -> f64 {
        match self {
            Quantile::Within(s) | Quantile::Above(s) => s,
        }
    }
}

impl Buckets {
    /// Observations in all buckets.
    pub fn count(&self) -> f64 {
        self.cumulative.last().map_or(0.0, |(_, count)| *count)
    }

    /// The buckets of the window between `earlier` and `self` (same bounds expected; a bound
    /// missing from `earlier` counts from 0).
    pub fn since(&self, earlier: &Buckets) -> Buckets {
        Buckets {
            cumulative: self
                .cumulative
                .iter()
                .map(|(bound, count)| {
                    let before = earlier
                        .cumulative
                        .iter()
                        .find(|(b, _)| b == bound)
                        .map_or(0.0, |(_, c)| *c);
                    (*bound, (count - before).max(0.0))
                })
                .collect(),
        }
    }

    /// Adds `other`'s counts bound by bound (bounds of `other` unknown here are ignored).
    fn add(&mut self, other: &Buckets) {
        if self.cumulative.is_empty() {
            self.cumulative = other.cumulative.clone();
            return;
        }
        for (bound, count) in &mut self.cumulative {
            if let Some((_, more)) = other.cumulative.iter().find(|(b, _)| b == bound) {
                *count += more;
            }
        }
    }

    /// The `q`-quantile by linear interpolation inside its bucket (Prometheus'
    /// `histogram_quantile`); `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<Quantile> {
        let total = self.count();
        if total <= 0.0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total;
        let (mut lower, mut below) = (0.0, 0.0);
        for &(bound, count) in &self.cumulative {
            if count >= rank && count > below {
                if bound.is_infinite() {
                    return Some(Quantile::Above(lower));
                }
                let share = (rank - below) / (count - below);
                return Some(Quantile::Within(lower + (bound - lower) * share));
            }
            (lower, below) = (bound, count);
        }
        Some(Quantile::Above(lower))
    }

    /// The share of observations ≤ `bound`, exact when `bound` is one of the bounds; `None`
    /// when it is not one, or without observations.
    pub fn share_at_most(&self, bound: f64) -> Option<f64> {
        let total = self.count();
        let (_, count) = self
            .cumulative
            .iter()
            .find(|(b, _)| (b - bound).abs() <= bound.abs() * 1e-9)?;
        (total > 0.0).then(|| count / total)
    }
}

/// Every series of histogram `name` in Prometheus text, keyed by the value of label `key`
/// (`""` when a series has no such label).
pub fn histograms(text: &str, name: &str, key: &str) -> BTreeMap<String, Buckets> {
    let prefix = format!("{name}_bucket{{");
    let mut out: BTreeMap<String, Buckets> = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(&prefix) else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once('}') else {
            continue;
        };
        let Some(count) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        else {
            continue;
        };
        let labels = parse_labels(labels);
        let Some(bound) = labels.iter().find(|(k, _)| k == "le").and_then(|(_, v)| {
            if v == "+Inf" {
                Some(f64::INFINITY)
            } else {
                v.parse::<f64>().ok()
            }
        }) else {
            continue;
        };
        let series = labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        out.entry(series)
            .or_default()
            .cumulative
            .push((bound, count));
    }
    for buckets in out.values_mut() {
        buckets.cumulative.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

/// The sum of every series, bound by bound.
pub fn total(series: &BTreeMap<String, Buckets>) -> Buckets {
    let mut sum = Buckets::default();
    for buckets in series.values() {
        sum.add(buckets);
    }
    sum
}

/// `a="x",b="y"` → `[("a", "x"), ("b", "y")]`, honouring `\"` and `\\` escapes.
fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = text.chars();
    loop {
        let key: String = chars
            .by_ref()
            .skip_while(|c| *c == ',' || c.is_whitespace())
            .take_while(|c| *c != '=')
            .collect();
        if key.is_empty() || chars.next() != Some('"') {
            return out;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(escaped) = chars.next() {
                        value.push(if escaped == 'n' { '\n' } else { escaped });
                    }
                }
                '"' => break,
                other => value.push(other),
            }
        }
        out.push((key.trim().to_owned(), value));
    }
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

    const LAG: &str = "\
# TYPE lianxi_projection_lag_seconds histogram
lianxi_projection_lag_seconds_bucket{projection=\"board\",le=\"0.001\"} 50
lianxi_projection_lag_seconds_bucket{projection=\"board\",le=\"0.01\"} 90
lianxi_projection_lag_seconds_bucket{projection=\"board\",le=\"+Inf\"} 100
lianxi_projection_lag_seconds_sum{projection=\"board\"} 1.5
lianxi_projection_lag_seconds_count{projection=\"board\"} 100
lianxi_projection_lag_seconds_bucket{projection=\"trace\",le=\"0.001\"} 10
lianxi_projection_lag_seconds_bucket{projection=\"trace\",le=\"0.01\"} 10
lianxi_projection_lag_seconds_bucket{projection=\"trace\",le=\"+Inf\"} 10
";

    #[test]
    fn reads_histogram_buckets_by_label() {
        let all = histograms(LAG, "lianxi_projection_lag_seconds", "projection");
        assert_eq!(all.len(), 2);
        let board = &all["board"];
        assert_eq!(board.count(), 100.0);
        // Rank 50 is the whole first bucket: its upper bound.
        assert_eq!(board.quantile(0.5), Some(Quantile::Within(0.001)));
        // Rank 70: halfway through (0.001, 0.01].
        let p70 = board.quantile(0.7).map(Quantile::seconds).unwrap_or(0.0);
        assert!((p70 - 0.0055).abs() < 1e-12, "{p70}");
        // Rank 99 lies in +Inf: only "above 10 ms" is known.
        assert_eq!(board.quantile(0.99), Some(Quantile::Above(0.01)));
        assert_eq!(board.share_at_most(0.01), Some(0.9));
        assert_eq!(board.share_at_most(0.02), None);
        let sum = total(&all);
        assert_eq!(sum.count(), 110.0);
        assert_eq!(sum.share_at_most(0.001), Some(60.0 / 110.0));
    }

    #[test]
    fn window_differences_and_empty_windows() {
        let all = histograms(LAG, "lianxi_projection_lag_seconds", "projection");
        let board = &all["board"];
        let none = board.since(board);
        assert_eq!(none.count(), 0.0);
        assert_eq!(none.quantile(0.99), None);
        let from_nothing = board.since(&Buckets::default());
        assert_eq!(from_nothing, *board);
        assert_eq!(
            parse_labels(r#"a="x\"y",le="1""#),
            vec![("a".into(), "x\"y".into()), ("le".into(), "1".into())]
        );
    }
}

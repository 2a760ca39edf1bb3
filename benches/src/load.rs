//! A closed-loop load generator: N tasks, each sending its next operation as soon as the
//! previous one answered, for a fixed measurement window after an unmeasured warm-up. Paced, each
//! task instead sends at the slots of a fixed schedule (still one operation in flight at most,
//! as a client with one connection); an operation that had to wait for the one before it is
//! charged the wait, its latency counted from its slot.
//!
//! Only operations that both started and finished inside the window count, so the throughput is
//! `completed in window / window length` with no partial-operation bias at either edge.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::task::JoinSet;

/// How long to wait for in-flight operations after the window closes.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The warm-up and measurement lengths.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub warmup: Duration,
    pub measure: Duration,
}

/// One worker's operation, called again and again. `Err` is a failure label (an HTTP status and
/// code, an error kind): it is counted, not fatal.
pub trait Op: Send + 'static {
    /// Runs the worker's next operation.
    fn run(&mut self) -> impl Future<Output = std::result::Result<(), String>> + Send;
}

/// What one closed-loop measurement saw inside its window.
#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    /// Successful operations inside the window.
    pub ok: u64,
    /// Failed operations inside the window, by label.
    pub failures: BTreeMap<String, u64>,
    /// Successful operations over the whole life of the load, warm-up included.
    pub total_ok: u64,
    /// The measured window's actual length.
    pub elapsed: Duration,
    /// Latencies of the successful operations inside the window, in microseconds, sorted.
    pub latencies_us: Vec<u32>,
}

impl LoadResult {
    /// Successful operations per second.
    pub fn rate(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.ok as f64 / seconds
        } else {
            0.0
        }
    }

    /// Failed operations inside the window.
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    /// The `q`-quantile latency (nearest rank), in milliseconds; 0 without samples.
    pub fn latency_ms(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let rank = (q * self.latencies_us.len() as f64).ceil() as usize;
        let index = rank.clamp(1, self.latencies_us.len()) - 1;
        f64::from(self.latencies_us[index]) / 1_000.0
    }
}

/// Shared between the controller and its workers. Times are nanoseconds since `base`;
/// `u64::MAX` means "not yet".
struct Shared {
    base: Instant,
    window_start: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// One worker's record.
#[derive(Default)]
struct Samples {
    /// (finish time, latency µs) of successes that started inside the window.
    ok: Vec<(u64, u32)>,
    /// (finish time, label) of failures that started inside the window.
    failed: Vec<(u64, String)>,
    total_ok: u64,
}

/// A paced worker's schedule: its n-th operation is due `offset + n·interval` after the start.
#[derive(Debug, Clone, Copy)]
struct Pace {
    interval: Duration,
    offset: Duration,
}

/// A running closed loop.
pub struct ClosedLoop {
    shared: Arc<Shared>,
    workers: JoinSet<Samples>,
    window_end: Option<u64>,
}

impl ClosedLoop {
    /// Starts one task per operation; they run until [`ClosedLoop::close_window`].
    pub fn spawn<O: Op>(ops: Vec<O>) -> Self {
        Self::start(ops, None)
    }

    /// As [`ClosedLoop::spawn`], but the tasks together send `rate` operations a second, each
    /// at the slots of its own schedule (staggered so that the slots of all are evenly spaced).
    pub fn spawn_paced<O: Op>(ops: Vec<O>, rate: f64) -> Self {
        Self::start(ops, Some(rate))
    }

    fn start<O: Op>(ops: Vec<O>, rate: Option<f64>) -> Self {
        let shared = Arc::new(Shared {
            base: Instant::now(),
            window_start: AtomicU64::new(u64::MAX),
            stop: AtomicBool::new(false),
        });
        let tasks = ops.len().max(1) as f64;
        let mut workers = JoinSet::new();
        for (index, op) in ops.into_iter().enumerate() {
            let pace = rate.filter(|r| *r > 0.0).map(|rate| Pace {
                interval: Duration::from_secs_f64(tasks / rate),
                offset: Duration::from_secs_f64(index as f64 / rate),
            });
            workers.spawn(worker(op, Arc::clone(&shared), pace));
        }
        ClosedLoop {
            shared,
            workers,
            window_end: None,
        }
    }

    /// Starts counting: operations started from now on are measured.
    pub fn open_window(&self) {
        self.shared
            .window_start
            .store(self.shared.now(), Ordering::SeqCst);
    }

    /// Stops counting and tells every worker to stop after its current operation.
    pub fn close_window(&mut self) {
        self.window_end = Some(self.shared.now());
        self.shared.stop.store(true, Ordering::SeqCst);
    }

    /// Waits for the workers and returns what happened inside the window.
    pub async fn join(mut self) -> Result<LoadResult> {
        let (Some(end), start) = (
            self.window_end,
            self.shared.window_start.load(Ordering::SeqCst),
        ) else {
            bail!("join called before the window was closed");
        };
        if start == u64::MAX || start > end {
            bail!("join called without an open window");
        }
        let mut result = LoadResult {
            elapsed: Duration::from_nanos(end - start),
            ..LoadResult::default()
        };
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            let mut all = Vec::new();
            while let Some(samples) = self.workers.join_next().await {
                all.push(samples.context("a load worker panicked")?);
            }
            anyhow::Ok(all)
        })
        .await
        .context("in-flight operations did not finish within 30 s of the window's end")??;
        for samples in drained {
            result.total_ok += samples.total_ok;
            for (finished, latency) in samples.ok {
                if finished <= end {
                    result.ok += 1;
                    result.latencies_us.push(latency);
                }
            }
            for (finished, label) in samples.failed {
                if finished <= end {
                    *result.failures.entry(label).or_default() += 1;
                }
            }
        }
        result.latencies_us.sort_unstable();
        Ok(result)
    }
}

impl Drop for ClosedLoop {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

async fn worker<O: Op>(mut op: O, shared: Arc<Shared>, pace: Option<Pace>) -> Samples {
    let mut samples = Samples::default();
    let mut slot = pace.map(|pace| pace.offset);
    while !shared.stop.load(Ordering::Relaxed) {
        let started = match (pace, slot.as_mut()) {
            (Some(pace), Some(slot)) => {
                let due = u64::try_from(slot.as_nanos()).unwrap_or(u64::MAX);
                *slot += pace.interval;
                if shared.now() >= due {
                    // Behind: the wait for the operation before is charged to this one.
                    due
                } else {
                    // Early: the timer wakes up to a millisecond late, which is not the
                    // server's time, so the latency counts from the wake-up.
                    tokio::time::sleep_until((shared.base + Duration::from_nanos(due)).into())
                        .await;
                    if shared.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    shared.now()
                }
            }
            _ => shared.now(),
        };
        let outcome = op.run().await;
        let finished = shared.now();
        let measured = started >= shared.window_start.load(Ordering::Relaxed);
        match outcome {
            Ok(()) => {
                samples.total_ok += 1;
                if measured {
                    let micros = finished.saturating_sub(started) / 1_000;
                    samples
                        .ok
                        .push((finished, u32::try_from(micros).unwrap_or(u32::MAX)));
                }
            }
            Err(label) => {
                if measured {
                    samples.failed.push((finished, label));
                }
            }
        }
    }
    samples
}

/// Runs `ops` for the window, calling `probe` at the window's start and end (to snapshot CPU
/// time or server metrics) and returning the load result with the two probe values.
pub async fn measure<O, P, F, Fut>(
    ops: Vec<O>,
    window: Window,
    probe: F,
) -> Result<(LoadResult, P, P)>
where
    O: Op,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<P>>,
{
    run_window(ClosedLoop::spawn(ops), window, probe).await
}

/// [`measure`] with the workers paced to `rate` operations a second in all.
pub async fn measure_paced<O, P, F, Fut>(
    ops: Vec<O>,
    rate: f64,
    window: Window,
    probe: F,
) -> Result<(LoadResult, P, P)>
where
    O: Op,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<P>>,
{
    run_window(ClosedLoop::spawn_paced(ops, rate), window, probe).await
}

async fn run_window<P, F, Fut>(
    mut load: ClosedLoop,
    window: Window,
    mut probe: F,
) -> Result<(LoadResult, P, P)>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<P>>,
{
    tokio::time::sleep(window.warmup).await;
    let before = probe().await?;
    load.open_window();
    tokio::time::sleep(window.measure).await;
    load.close_window();
    let after = probe().await?;
    let result = load.join().await?;
    Ok((result, before, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sleepy {
        fail_every: u64,
        count: u64,
    }

    impl Op for Sleepy {
        async fn run(&mut self) -> std::result::Result<(), String> {
            tokio::time::sleep(Duration::from_millis(2)).await;
            self.count += 1;
            if self.fail_every > 0 && self.count % self.fail_every == 0 {
                Err("planned".to_owned())
            } else {
                Ok(())
            }
        }
    }

    #[tokio::test]
    async fn counts_only_the_window_and_sorts_latencies() {
        let ops = (0..4)
            .map(|_| Sleepy {
                fail_every: 5,
                count: 0,
            })
            .collect();
        let window = Window {
            warmup: Duration::from_millis(50),
            measure: Duration::from_millis(200),
        };
        let (result, (), ()) = measure(ops, window, || async { Ok(()) })
            .await
            .expect("measure");
        assert!(result.ok > 0);
        assert!(
            result.total_ok > result.ok,
            "warm-up successes are not measured"
        );
        assert_eq!(
            result.failures.get("planned").copied().unwrap_or(0),
            result.failed()
        );
        assert!(result.failed() > 0);
        assert!(result.latencies_us.windows(2).all(|w| w[0] <= w[1]));
        assert!(result.latency_ms(0.5) >= 2.0);
        let seconds = result.elapsed.as_secs_f64();
        assert!((0.15..1.0).contains(&seconds), "{seconds}");
    }

    /// An operation of a fixed length that never fails.
    struct Takes(Duration);

    impl Op for Takes {
        async fn run(&mut self) -> std::result::Result<(), String> {
            tokio::time::sleep(self.0).await;
            Ok(())
        }
    }

    #[tokio::test]
    async fn paced_workers_send_at_the_rate_and_are_charged_for_falling_behind() {
        let window = Window {
            warmup: Duration::from_millis(100),
            measure: Duration::from_millis(500),
        };
        // 4 workers at 200 operations a second in all: one every 20 ms each, 1 ms long.
        let quick = (0..4).map(|_| Takes(Duration::from_millis(1))).collect();
        let (result, (), ()) = measure_paced(quick, 200.0, window, || async { Ok(()) })
            .await
            .expect("measure");
        assert!((80..=105).contains(&result.ok), "{} in 0.5 s", result.ok);
        assert!(result.latency_ms(0.5) < 10.0, "{}", result.latency_ms(0.5));

        // Due every 10 ms but 20 ms long: each falls further behind its slots, and the
        // latency counts from the slot.
        let slow = (0..2).map(|_| Takes(Duration::from_millis(20))).collect();
        let (result, (), ()) = measure_paced(slow, 200.0, window, || async { Ok(()) })
            .await
            .expect("measure");
        assert!(
            result.latency_ms(0.99) > 60.0,
            "waits charged: p99 {} ms",
            result.latency_ms(0.99)
        );
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let result = LoadResult {
            latencies_us: (1..=100).map(|ms| ms * 1_000).collect(),
            ..LoadResult::default()
        };
        assert_eq!(result.latency_ms(0.5), 50.0);
        assert_eq!(result.latency_ms(0.99), 99.0);
        assert_eq!(result.latency_ms(1.0), 100.0);
        assert_eq!(LoadResult::default().latency_ms(0.99), 0.0);
    }
}

//! CPU time of a process and of its threads grouped by name, from `/proc` (Linux only; elsewhere
//! every snapshot is empty and the tables leave the CPU columns blank).
//!
//! Thread names say where the time goes without a profiler: `tokio-rt-worker` (async tasks:
//! HTTP, JSON, hashing, the store's writer task), `sqlx-sqlite-wor` (the SQLite worker threads
//! that execute statements), the main thread.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Clock ticks per second of `/proc/*/stat` times.
fn ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse::<f64>().ok())
            .filter(|ticks| *ticks > 0.0)
            .unwrap_or(100.0)
    })
}

/// Seconds of CPU (user + system) per thread group, and for the whole process (which keeps the
/// time of threads that have exited).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuSnapshot {
    pub process: f64,
    pub threads: BTreeMap<String, f64>,
}

impl CpuSnapshot {
    /// Reads the current CPU times of process `pid`.
    pub fn of(pid: u32) -> CpuSnapshot {
        let root = Path::new("/proc").join(pid.to_string());
        let process = read_stat(&root.join("stat")).map_or(0.0, |(_, seconds)| seconds);
        let mut threads = BTreeMap::new();
        if let Ok(entries) = std::fs::read_dir(root.join("task")) {
            for entry in entries.flatten() {
                if let Some((name, seconds)) = read_stat(&entry.path().join("stat")) {
                    *threads.entry(group_name(&name)).or_default() += seconds;
                }
            }
        }
        CpuSnapshot { process, threads }
    }

    /// Reads the CPU times of process `root` and all its descendants (a PostgreSQL postmaster
    /// and its backends, WAL writer, checkpointer…), grouped by process name. Processes that
    /// exited since the last snapshot take their time with them; benchmarks keep their
    /// connections open through a window, so that loses only short-lived helpers.
    pub fn of_tree(root: u32) -> CpuSnapshot {
        let parents = parents();
        let mut tree = vec![root];
        let mut index = 0;
        while let Some(&pid) = tree.get(index) {
            tree.extend(
                parents
                    .iter()
                    .filter(|(_, ppid)| *ppid == pid)
                    .map(|(child, _)| *child),
            );
            index += 1;
        }
        let mut snapshot = CpuSnapshot::default();
        for pid in tree {
            if let Some((name, seconds)) =
                read_stat(&Path::new("/proc").join(pid.to_string()).join("stat"))
            {
                snapshot.process += seconds;
                *snapshot.threads.entry(group_name(&name)).or_default() += seconds;
            }
        }
        snapshot
    }

    /// Reads this process's CPU times.
    pub fn own() -> CpuSnapshot {
        Self::of(std::process::id())
    }

    /// The CPU spent between `earlier` and `self`.
    pub fn since(&self, earlier: &CpuSnapshot) -> CpuSnapshot {
        let threads = self
            .threads
            .iter()
            .map(|(name, seconds)| {
                let before = earlier.threads.get(name).copied().unwrap_or(0.0);
                (name.clone(), (seconds - before).max(0.0))
            })
            .collect();
        CpuSnapshot {
            process: (self.process - earlier.process).max(0.0),
            threads,
        }
    }
}

/// Machine-wide CPU seconds from `/proc/stat`: busy (all processes, all cores) and stolen by
/// the hypervisor.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SystemCpu {
    pub busy: f64,
    pub steal: f64,
}

impl SystemCpu {
    /// The machine's CPU seconds so far (zero when `/proc/stat` cannot be read).
    pub fn now() -> SystemCpu {
        std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|text| parse_system(&text))
            .unwrap_or_default()
    }

    /// The CPU seconds between `earlier` and `self`.
    pub fn since(&self, earlier: &SystemCpu) -> SystemCpu {
        SystemCpu {
            busy: (self.busy - earlier.busy).max(0.0),
            steal: (self.steal - earlier.steal).max(0.0),
        }
    }
}

fn parse_system(text: &str) -> Option<SystemCpu> {
    // `cpu  user nice system idle iowait irq softirq steal guest guest_nice` (guest time is
    // already counted in user).
    let line = text.lines().find(|line| line.starts_with("cpu "))?;
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|field| field.parse::<f64>().ok())
        .collect::<Option<_>>()?;
    let field = |i: usize| ticks.get(i).copied().unwrap_or(0.0);
    let busy = field(0) + field(1) + field(2) + field(5) + field(6);
    Some(SystemCpu {
        busy: busy / ticks_per_second(),
        steal: field(7) / ticks_per_second(),
    })
}

/// Where the CPU went during a measurement: the harness, the server (HTTP only), the database
/// server (PostgreSQL benchmark only: the postmaster and all its processes), the machine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuUse {
    pub harness: CpuSnapshot,
    pub server: Option<CpuSnapshot>,
    pub database: Option<CpuSnapshot>,
    pub system: SystemCpu,
}

impl CpuUse {
    /// Snapshots this process, the server `server_pid` if any, and the machine.
    pub fn now(server_pid: Option<u32>) -> CpuUse {
        Self::with_database(server_pid, None)
    }

    /// Like [`CpuUse::now`], and the database server whose postmaster is `database_pid` with
    /// all its processes.
    pub fn with_database(server_pid: Option<u32>, database_pid: Option<u32>) -> CpuUse {
        CpuUse {
            harness: CpuSnapshot::own(),
            server: server_pid.map(CpuSnapshot::of),
            database: database_pid.map(CpuSnapshot::of_tree),
            system: SystemCpu::now(),
        }
    }

    /// The CPU used between `earlier` and `self`.
    pub fn since(&self, earlier: &CpuUse) -> CpuUse {
        CpuUse {
            harness: self.harness.since(&earlier.harness),
            server: match (&self.server, &earlier.server) {
                (Some(now), Some(then)) => Some(now.since(then)),
                _ => None,
            },
            database: match (&self.database, &earlier.database) {
                (Some(now), Some(then)) => Some(now.since(then)),
                _ => None,
            },
            system: self.system.since(&earlier.system),
        }
    }

    /// CPU seconds of other processes: the machine's busy time less the harness's, server's
    /// and database's.
    pub fn others(&self) -> f64 {
        let server = self.server.as_ref().map_or(0.0, |cpu| cpu.process);
        let database = self.database.as_ref().map_or(0.0, |cpu| cpu.process);
        (self.system.busy - self.harness.process - server - database).max(0.0)
    }
}

/// Waits, before a measurement, until other processes leave the machine mostly idle: the
/// machine's busy time over one second must stay under `below_cores`. Gives up after `max_wait`
/// (the tables show how busy other processes were during each measurement either way).
#[derive(Debug, Clone, Copy)]
pub struct QuietGate {
    pub below_cores: f64,
    pub max_wait: Duration,
}

impl QuietGate {
    /// Returns the machine's busy cores over the last second it looked at.
    pub async fn wait(&self) -> f64 {
        let started = Instant::now();
        let mut announced = false;
        loop {
            let before = SystemCpu::now();
            let window = Instant::now();
            tokio::time::sleep(Duration::from_secs(1)).await;
            let busy = SystemCpu::now().since(&before).busy / window.elapsed().as_secs_f64();
            if busy < self.below_cores {
                return busy;
            }
            if started.elapsed() >= self.max_wait {
                eprintln!(
                    "  the machine is still busy ({busy:.2} cores) after {:.0} s; measuring anyway",
                    self.max_wait.as_secs_f64()
                );
                return busy;
            }
            if !announced {
                eprintln!(
                    "  other processes keep {busy:.2} cores busy; waiting up to {:.0} s for < {:.2}",
                    self.max_wait.as_secs_f64(),
                    self.below_cores
                );
                announced = true;
            }
        }
    }
}

/// A process's resident memory, from `/proc/<pid>/status`: now (`VmRSS`) and its peak so far
/// as the kernel counts it (`VmHWM`, the high-water mark, which no sampling can miss).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
}

impl Memory {
    /// Reads process `pid`'s memory; `None` when `/proc` cannot tell (not Linux, or gone).
    pub fn of(pid: u32) -> Option<Memory> {
        let text = std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status"))
            .ok()?;
        parse_status(&text)
    }
}

fn parse_status(text: &str) -> Option<Memory> {
    let kib = |field: &str| -> Option<u64> {
        text.lines()
            .find_map(|line| line.strip_prefix(field))?
            .split_whitespace()
            .next()?
            .parse::<u64>()
            .ok()
    };
    Some(Memory {
        rss_bytes: kib("VmRSS:")? * 1024,
        peak_rss_bytes: kib("VmHWM:")? * 1024,
    })
}

/// `(comm, utime + stime in seconds)` from a `stat` file.
fn read_stat(path: &Path) -> Option<(String, f64)> {
    let text = std::fs::read_to_string(path).ok()?;
    parse_stat(&text)
}

fn parse_stat(text: &str) -> Option<(String, f64)> {
    // `pid (comm) state ppid …`: comm may hold spaces and parentheses, so split at the last ')'.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // After the comm: state is field 3 of stat(5), so utime (14) and stime (15) are 11 and 12.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((comm, (utime + stime) / ticks_per_second()))
}

/// Every process's (pid, parent pid), from `/proc/<pid>/stat`. A process that ends between
/// the listing and the read is left out.
pub fn parents() -> Vec<(u32, u32)> {
    let mut parents = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(ppid) = std::fs::read_to_string(entry.path().join("stat"))
                .ok()
                .and_then(|text| parse_ppid(&text))
            {
                parents.push((pid, ppid));
            }
        }
    }
    parents
}

/// The parent pid from a `stat` file's text.
fn parse_ppid(text: &str) -> Option<u32> {
    let close = text.rfind(')')?;
    text.get(close + 1..)?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Folds numbered threads into one group: `sqlx-sqlite-wor`, `tokio-rt-worker`, …
fn group_name(comm: &str) -> String {
    comm.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-')
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_with_an_awkward_name() {
        let line = "1234 (a (b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 5 0 0";
        let (name, seconds) = parse_stat(line).expect("parsed");
        assert_eq!(name, "a (b) c");
        assert!((seconds - 300.0 / ticks_per_second()).abs() < 1e-9);
    }

    #[test]
    fn reads_the_parent_pid() {
        let line = "1234 (a (b) c) S 77 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 5 0 0";
        assert_eq!(parse_ppid(line), Some(77));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_tree_holds_its_children() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("a child");
        let tree = CpuSnapshot::of_tree(std::process::id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(tree.threads.contains_key("sleep"), "{:?}", tree.threads);
    }

    #[test]
    fn groups_numbered_threads() {
        assert_eq!(group_name("sqlx-sqlite-wor"), "sqlx-sqlite-wor");
        assert_eq!(group_name("worker-12"), "worker");
        assert_eq!(group_name("tokio-rt-worker"), "tokio-rt-worker");
    }

    #[test]
    fn differences_are_never_negative() {
        let before = CpuSnapshot {
            process: 2.0,
            threads: BTreeMap::from([("gone".to_owned(), 1.0)]),
        };
        let after = CpuSnapshot {
            process: 3.5,
            threads: BTreeMap::from([("new".to_owned(), 0.5)]),
        };
        let delta = after.since(&before);
        assert!((delta.process - 1.5).abs() < 1e-9);
        assert_eq!(delta.threads.get("new").copied(), Some(0.5));
    }

    #[test]
    fn parses_the_machine_line() {
        let text = "cpu  100 5 20 900 7 1 4 30 0 0\ncpu0 50 0 10 450 3 0 2 15 0 0\n";
        let system = parse_system(text).expect("parsed");
        assert!((system.busy - 130.0 / ticks_per_second()).abs() < 1e-9);
        assert!((system.steal - 30.0 / ticks_per_second()).abs() < 1e-9);
    }

    #[test]
    fn parses_resident_memory() {
        let text = "Name:\tlianxi\nVmHWM:\t  153600 kB\nVmRSS:\t   102400 kB\nThreads:\t9\n";
        let memory = parse_status(text).expect("parsed");
        assert_eq!(memory.rss_bytes, 100 * 1024 * 1024);
        assert_eq!(memory.peak_rss_bytes, 150 * 1024 * 1024);
        assert_eq!(parse_status("Name:\tx\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_its_own_process() {
        assert!(Memory::of(std::process::id()).is_some_and(|m| m.rss_bytes > 0));
        let snapshot = CpuSnapshot::own();
        assert!(!snapshot.threads.is_empty());
    }
}

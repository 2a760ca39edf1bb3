//! The moving parts of the distributed benchmark, started and stopped by pid: one durable PostgreSQL, a throwaway nats-server per measurement, `lianxi serve --role …` processes, and where each one's CPU went.

use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use bus::throwaway_nats::ThrowawayNats;

use super::Env;
use crate::http_bench::{Api, Server};
use crate::procstat::{CpuSnapshot, SystemCpu};

/// The benchmark's PostgreSQL: the `postgres` benchmark's, shared.
pub(crate) use crate::pg::server::DurablePostgres as Postgres;

/// A throwaway nats-server with JetStream (file storage), started off the async runtime.
pub(crate) async fn start_nats() -> Result<ThrowawayNats> {
    let nats = tokio::task::spawn_blocking(ThrowawayNats::start)
        .await
        .context("starting nats-server")?
        .map_err(anyhow::Error::msg)
        .context("starting a throwaway nats-server")?;
    eprintln!(
        "  nats-server pid {}, {} (JetStream store {})",
        nats.pid().unwrap_or(0),
        nats.url(),
        nats.store_dir().display()
    );
    Ok(nats)
}

/// Stops `nats` (SIGTERM by its pid, SIGKILL after 10 s), keeping its log first when asked.
pub(crate) async fn stop_nats(env: &Env, nats: ThrowawayNats) -> Result<()> {
    if env.keep_server_logs {
        let kept = env
            .dir
            .join(format!("lianxi-bench-nats-{}.log", nats.pid().unwrap_or(0)));
        std::fs::write(&kept, nats.log())
            .with_context(|| format!("keeping the nats-server log as {}", kept.display()))?;
        eprintln!("  nats-server log kept in {}", kept.display());
    }
    tokio::task::spawn_blocking(move || drop(nats))
        .await
        .context("stopping nats-server")
}

/// `nats-server --version`, for the machine table.
pub(crate) fn nats_version() -> String {
    [
        "nats-server",
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
    ]
    .iter()
    .find_map(|program| {
        let out = std::process::Command::new(program)
            .arg("--version")
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    })
    .unwrap_or_else(|| "unknown".to_owned())
}

/// One `lianxi serve --role …` process and what it is called in the tables.
pub(crate) struct Process {
    pub(crate) label: String,
    pub(crate) server: Server,
}

impl Process {
    /// Starts `lianxi serve --role <role> --database-url <url> [--nats-url <nats>] [more…]` on
    /// a free loopback port with a fresh data directory under `env.dir`.
    pub(crate) async fn start(
        env: &Env,
        label: &str,
        role: &str,
        database_url: &str,
        nats_url: Option<&str>,
        more: &[&str],
    ) -> Result<Process> {
        let mut args = vec!["--role".to_owned(), role.to_owned()];
        if let Some(nats_url) = nats_url {
            args.extend(["--nats-url".to_owned(), nats_url.to_owned()]);
        }
        args.extend(more.iter().map(|m| (*m).to_owned()));
        let scratch = Server::scratch(&env.dir)?;
        let server =
            Server::start_with_args(&env.lianxi, scratch, &env.token, Some(database_url), &args)
                .await
                .with_context(|| format!("starting the {label} (`serve {}`)", args.join(" ")))?;
        eprintln!(
            "  {label}: pid {}, http://{}{}",
            server.pid,
            server.addr,
            if env.keep_server_logs {
                format!(
                    " (log kept as lianxi-bench-server-{}.log at the end)",
                    server.pid
                )
            } else {
                String::new()
            }
        );
        Ok(Process {
            label: label.to_owned(),
            server,
        })
    }

    /// Its operations API (`/metrics`, and the whole API for a gateway).
    pub(crate) fn api(&self, token: &str) -> Result<Api> {
        Api::new(self.server.addr, token)
    }
}

/// Stops every process in `processes` by its pid (SIGTERM, then SIGKILL). On success each log is
/// checked for warnings and kept when asked; when `measured` failed, each process's state and
/// the end of its log are added to the error.
pub(crate) async fn stop_all<T>(
    env: &Env,
    processes: Vec<Process>,
    measured: Result<T>,
) -> Result<T> {
    match measured {
        Ok(value) => {
            let mut first_error = None;
            for process in processes {
                eprintln!(
                    "  stopping the {} (pid {})",
                    process.label, process.server.pid
                );
                if let Err(error) = process
                    .server
                    .finish(Ok(()), &env.dir, env.keep_server_logs)
                    .await
                {
                    first_error.get_or_insert(error);
                }
            }
            match first_error {
                Some(error) => Err(error),
                None => Ok(value),
            }
        }
        Err(error) => {
            let mut diagnoses = Vec::new();
            for mut process in processes {
                let pid = process.server.pid;
                let diagnosis = process.server.diagnose(&env.dir);
                diagnoses.push(format!("{} (pid {pid}): {diagnosis}", process.label));
                let _ = process.server.stop().await;
            }
            Err(error.context(diagnoses.join("\n\n")))
        }
    }
}

/// Where the CPU went, per labelled process (or process tree), between two snapshots.
#[derive(Debug, Clone, Default)]
pub(crate) struct Split {
    /// Seconds of the window.
    pub(crate) seconds: f64,
    /// CPU seconds per label, in the order the probe lists them.
    pub(crate) parts: Vec<(String, f64)>,
    /// The machine's busy and stolen CPU seconds.
    pub(crate) system: SystemCpu,
}

impl Split {
    /// Cores `label` kept busy on average (the sum over processes sharing the label).
    pub(crate) fn cores(&self, label: &str) -> Option<f64> {
        let seconds: Vec<f64> = self
            .parts
            .iter()
            .filter(|(name, _)| name == label)
            .map(|(_, s)| *s)
            .collect();
        (!seconds.is_empty() && self.seconds > 0.0)
            .then(|| seconds.iter().sum::<f64>() / self.seconds)
    }

    /// Cores busy in every labelled process together.
    pub(crate) fn ours(&self) -> f64 {
        self.parts.iter().map(|(_, s)| s).sum::<f64>() / self.seconds.max(1e-9)
    }

    /// Cores other processes used (the machine's busy time less ours).
    pub(crate) fn others(&self) -> f64 {
        (self.system.busy / self.seconds.max(1e-9) - self.ours()).max(0.0)
    }

    /// Cores the hypervisor stole.
    pub(crate) fn steal(&self) -> f64 {
        self.system.steal / self.seconds.max(1e-9)
    }
}

/// What to watch: labelled pids, each a single process or a process tree (PostgreSQL).
#[derive(Debug, Clone, Default)]
pub(crate) struct Probe {
    watched: Vec<(String, u32, bool)>,
}

/// A snapshot of a [`Probe`]'s processes and the machine.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    at: Instant,
    seconds: Vec<f64>,
    system: SystemCpu,
}

impl Probe {
    /// This process (the harness) under `label`.
    pub(crate) fn harness(label: &str) -> Probe {
        Probe {
            watched: vec![(label.to_owned(), std::process::id(), false)],
        }
    }

    /// Watches process `pid` under `label`.
    pub(crate) fn process(mut self, label: &str, pid: u32) -> Probe {
        self.watched.push((label.to_owned(), pid, false));
        self
    }

    /// Watches `root` and all its descendants under `label`.
    pub(crate) fn tree(mut self, label: &str, root: u32) -> Probe {
        self.watched.push((label.to_owned(), root, true));
        self
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            at: Instant::now(),
            seconds: self
                .watched
                .iter()
                .map(|(_, pid, tree)| {
                    if *tree {
                        CpuSnapshot::of_tree(*pid).process
                    } else {
                        CpuSnapshot::of(*pid).process
                    }
                })
                .collect(),
            system: SystemCpu::now(),
        }
    }

    /// The CPU between two snapshots. A process `before` does not have (it was added to the
    /// probe after that snapshot: spawned inside the window) counts from zero.
    pub(crate) fn split(&self, before: &Snapshot, after: &Snapshot) -> Split {
        Split {
            seconds: after.at.duration_since(before.at).as_secs_f64(),
            parts: self
                .watched
                .iter()
                .enumerate()
                .map(|(i, (label, _, _))| {
                    let then = before.seconds.get(i).copied().unwrap_or(0.0);
                    let now = after.seconds.get(i).copied().unwrap_or(0.0);
                    (label.clone(), (now - then).max(0.0))
                })
                .collect(),
            system: after.system.since(&before.system),
        }
    }
}

/// Fails with what went wrong when a role process exited.
pub(crate) fn ensure_running(processes: &mut [Process]) -> Result<()> {
    for process in processes {
        process
            .server
            .ensure_running()
            .map_err(|error| anyhow!("the {}: {error:#}", process.label))?;
    }
    Ok(())
}

//! The moving parts of the distributed benchmark, started and stopped by pid: one durable PostgreSQL, a throwaway nats-server per measurement, `lianxi serve --role …` processes, and where each one's CPU went.

use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, ensure, Context, Result};
use bus::throwaway_nats::ThrowawayNats;
use sqlx::{Connection, PgConnection};
use store::throwaway_postgres::{Durability, Options, ThrowawayPostgres};

use super::Env;
use crate::http_bench::{Api, Server};
use crate::procstat::{CpuSnapshot, SystemCpu};

/// The benchmark's PostgreSQL 15, durable, in `--dir`; stopped by its pid when dropped.
pub(crate) struct Postgres {
    server: ThrowawayPostgres,
    pub(crate) postmaster: u32,
    /// How many statements [`Postgres::report_statements`] prints (0: `pg_stat_statements` is
    /// not loaded).
    statements: usize,
}

impl Postgres {
    /// Starts it and checks that it runs with PostgreSQL's default durability; returns the facts
    /// for the machine table.
    pub(crate) async fn start(
        dir: &Path,
        statements: usize,
    ) -> Result<(Postgres, Vec<(&'static str, String)>)> {
        let options = Options {
            durability: Durability::Full,
            parent_dir: Some(dir.to_owned()),
            settings: if statements > 0 {
                vec![
                    (
                        "shared_preload_libraries".into(),
                        "pg_stat_statements".into(),
                    ),
                    // Statements inside lianxi's functions too, not only the calls.
                    ("pg_stat_statements.track".into(), "all".into()),
                ]
            } else {
                Vec::new()
            },
        };
        let server = tokio::task::spawn_blocking(move || ThrowawayPostgres::start_with(&options))
            .await
            .context("starting PostgreSQL")?
            .map_err(anyhow::Error::msg)
            .context("starting a durable throwaway PostgreSQL")?;
        let postmaster = server.pid().context("PostgreSQL is not running")?;
        let mut conn = PgConnection::connect(&server.url())
            .await
            .context("connecting to PostgreSQL")?;
        let mut settings = Vec::new();
        for name in [
            "fsync",
            "synchronous_commit",
            "full_page_writes",
            "wal_sync_method",
            "shared_buffers",
            "max_connections",
        ] {
            let value: String = sqlx::query_scalar(&format!("SHOW {name}"))
                .fetch_one(&mut conn)
                .await
                .with_context(|| format!("SHOW {name}"))?;
            if ["fsync", "synchronous_commit", "full_page_writes"].contains(&name) {
                ensure!(
                    value == "on",
                    "PostgreSQL runs with {name} = {value}: not the default durability"
                );
            }
            settings.push(format!("{name}={value}"));
        }
        let version: String = sqlx::query_scalar("SHOW server_version")
            .fetch_one(&mut conn)
            .await?;
        ensure!(version.starts_with("15"), "PostgreSQL {version}, not 15");
        let _ = conn.close().await;
        let facts = vec![
            ("PostgreSQL", format!("{version} ({})", settings.join(", "))),
            (
                "PostgreSQL data",
                format!("{} (pid {postmaster})", server.dir().display()),
            ),
        ];
        Ok((
            Postgres {
                server,
                postmaster,
                statements,
            },
            facts,
        ))
    }

    /// A fresh, empty database; its url.
    pub(crate) async fn fresh(&self) -> Result<String> {
        let url = self
            .server
            .fresh_database()
            .await
            .map_err(anyhow::Error::msg)?;
        if self.statements > 0 {
            let mut conn = PgConnection::connect(&url).await?;
            sqlx::raw_sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                .execute(&mut conn)
                .await
                .context("pg_stat_statements")?;
            let _ = conn.close().await;
        }
        Ok(url)
    }

    /// With `--statements`: forgets the statistics gathered so far (at a window's start).
    pub(crate) async fn reset_statements(&self, url: &str) -> Result<()> {
        if self.statements == 0 {
            return Ok(());
        }
        let mut conn = PgConnection::connect(url).await?;
        sqlx::raw_sql("SELECT pg_stat_statements_reset()")
            .execute(&mut conn)
            .await
            .context("resetting pg_stat_statements")?;
        let _ = conn.close().await;
        Ok(())
    }

    /// With `--statements`: prints the statements that took most of the server's time in the
    /// database at `url` since the last reset (a profile of PostgreSQL's share).
    pub(crate) async fn report_statements(&self, url: &str) -> Result<()> {
        if self.statements == 0 {
            return Ok(());
        }
        let mut conn = PgConnection::connect(url).await?;
        let top: Vec<(i64, f64, f64, i64, String)> = sqlx::query_as(
            "SELECT calls, total_exec_time, mean_exec_time, rows, \
                    left(regexp_replace(query, '\\s+', ' ', 'g'), 120) \
             FROM pg_stat_statements \
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             ORDER BY total_exec_time DESC LIMIT $1",
        )
        .bind(i64::try_from(self.statements).unwrap_or(i64::MAX))
        .fetch_all(&mut conn)
        .await
        .context("reading pg_stat_statements")?;
        eprintln!("    statements by the server's time (calls, total ms, mean ms, rows, query):");
        for (calls, total, mean, rows, query) in top {
            eprintln!("    {calls:>8} {total:>9.0} {mean:>8.3} {rows:>8}  {query}");
        }
        let _ = conn.close().await;
        Ok(())
    }

    /// Drops the database at `url` (and any connection still open to it).
    pub(crate) async fn drop_database(&self, url: &str) -> Result<()> {
        let name = url.rsplit('/').next().context("a database url")?;
        let mut conn = PgConnection::connect(&self.server.url()).await?;
        sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await
            .with_context(|| format!("dropping database {name}"))?;
        let _ = conn.close().await;
        Ok(())
    }

    /// Keeps the server's log in `dir` (for `--keep-server-logs`).
    pub(crate) fn keep_log(&self, dir: &Path) -> Result<()> {
        let kept = dir.join(format!("lianxi-bench-postgres-{}.log", self.postmaster));
        std::fs::write(&kept, self.server.log())
            .with_context(|| format!("keeping the PostgreSQL log as {}", kept.display()))?;
        eprintln!("  PostgreSQL log kept in {}", kept.display());
        Ok(())
    }
}

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

//! The PostgreSQL 15 a benchmark runs against: durable (fsync, synchronous_commit and
//! full_page_writes on, refused otherwise), in `--dir` on the disk under test, one fresh database
//! per measurement, `pg_stat_statements` on request; stopped by its pid when dropped.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use sqlx::{Connection, PgConnection};
use store::throwaway_postgres::{Durability, Options, ThrowawayPostgres};

/// The benchmark's PostgreSQL 15, durable, in `--dir`; stopped by its pid when dropped.
pub(crate) struct DurablePostgres {
    server: ThrowawayPostgres,
    pub(crate) postmaster: u32,
    /// How many statements [`DurablePostgres::report_statements`] prints (0: `pg_stat_statements` is
    /// not loaded).
    statements: usize,
}

impl DurablePostgres {
    /// Starts it and checks that it runs with PostgreSQL's default durability; returns the facts
    /// for the machine table.
    pub(crate) async fn start(
        dir: &Path,
        statements: usize,
    ) -> Result<(DurablePostgres, Vec<(&'static str, String)>)> {
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
            "commit_delay",
            "shared_buffers",
            "max_wal_size",
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
            DurablePostgres {
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

    /// The server's port on loopback.
    pub(crate) fn port(&self) -> u16 {
        self.server.port()
    }

    /// Runs `measure` on a fresh database; afterwards prints its statements (with
    /// `--statements`) and drops it.
    pub(crate) async fn with_fresh<T, F, Fut>(&self, measure: F) -> Result<T>
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let url = self.fresh().await?;
        let result = measure(url.clone()).await;
        if let Err(error) = self.report_statements(&url).await {
            eprintln!("    statements unknown: {error:#}");
        }
        let dropped = self.drop_database(&url).await;
        let value = result?;
        dropped?;
        Ok(value)
    }
}

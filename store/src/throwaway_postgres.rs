//! A throwaway PostgreSQL server for tests: its own cluster in a temporary directory, on a free
//! loopback port, with durability off, stopped by pid when dropped.
//!
//! Benchmarks start a durable one instead ([`ThrowawayPostgres::start_durable`], or
//! [`ThrowawayPostgres::start_with`] and [`Options`]): PostgreSQL's default durability (`fsync`,
//! `synchronous_commit` and `full_page_writes` on), so every acknowledged commit waited for its
//! WAL flush, in a directory on the disk under test.
//!
//! Tests of the PostgreSQL backend start one each (or share one per test binary) and never touch
//! a server they did not start. `initdb` refuses to run as root, so as root the cluster is made
//! and run as the unprivileged `postgres` account (Debian's packages create it). A machine
//! without PostgreSQL's server programs is an error, never a skip: in CI a missing service fails.

use std::net::TcpListener;
use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The account that runs the cluster when the tests run as root.
const UNPRIVILEGED: &str = "postgres";
/// How long a fresh server may take to accept connections.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// The superuser the cluster is made with (trust authentication on loopback only).
const USER: &str = "lianxi";

/// What a throwaway server promises about a commit it acknowledged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// For tests: `fsync=off` and `full_page_writes=off`. A commit has reached the operating
    /// system when it is acknowledged (`synchronous_commit` stays on), so it survives a stop of
    /// the server, not a power cut.
    #[default]
    Off,
    /// PostgreSQL's defaults, set explicitly: `fsync=on`, `synchronous_commit=on`,
    /// `full_page_writes=on`. A commit is acknowledged after its WAL is flushed to the disk. For
    /// benchmarks, which must pay what a production server pays.
    Full,
}

/// How to start a throwaway server ([`ThrowawayPostgres::start_with`]).
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub durability: Durability,
    /// The directory the cluster's own temporary directory goes in; the system temp dir when
    /// `None`. A benchmark puts it on the disk under test (not tmpfs). As root, the unprivileged
    /// account must be able to reach it.
    pub parent_dir: Option<PathBuf>,
    /// More server settings, each passed as `-c NAME=VALUE` (a benchmark loads
    /// `pg_stat_statements` this way to see where the server's time goes).
    pub settings: Vec<(String, String)>,
}

/// A running throwaway server. Dropping it stops the server and deletes its files.
#[derive(Debug)]
pub struct ThrowawayPostgres {
    dir: tempfile::TempDir,
    port: u16,
    server: Option<Child>,
    /// uid and gid to run as, when the tests run as root.
    account: Option<(u32, u32)>,
    durability: Durability,
    settings: Vec<(String, String)>,
}

impl ThrowawayPostgres {
    /// Makes a new cluster with durability off (for tests) and starts it. `Err` says what is
    /// missing or what failed.
    pub fn start() -> Result<Self, String> {
        Self::start_with(&Options::default())
    }

    /// Makes a new cluster with PostgreSQL's default durability ([`Durability::Full`]) in the
    /// system temp dir and starts it: for benchmarks, never needed by tests.
    pub fn start_durable() -> Result<Self, String> {
        Self::start_with(&Options {
            durability: Durability::Full,
            ..Options::default()
        })
    }

    /// Makes a new cluster as `options` say and starts it.
    pub fn start_with(options: &Options) -> Result<Self, String> {
        let account = unprivileged_account()?;
        let parent = options
            .parent_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        let dir = tempfile::Builder::new()
            .prefix("lianxi-pg-")
            .tempdir_in(&parent)
            .map_err(|e| format!("a temporary directory in {}: {e}", parent.display()))?;
        if let Some((uid, gid)) = account {
            chown(dir.path(), Some(uid), Some(gid))
                .map_err(|e| format!("giving {} to {UNPRIVILEGED}: {e}", dir.path().display()))?;
        }
        let mut initdb = Command::new(program("initdb")?);
        initdb
            .arg("--pgdata")
            .arg(dir.path().join("data"))
            .args(["--username", USER, "--auth", "trust", "--encoding", "UTF8"])
            .args(["--locale", "C", "--no-sync"])
            .stdin(Stdio::null());
        run_as(&mut initdb, account);
        let output = initdb
            .output()
            .map_err(|e| format!("running initdb: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "initdb failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let mut server = ThrowawayPostgres {
            dir,
            port: free_port()?,
            server: None,
            account,
            durability: options.durability,
            settings: options.settings.clone(),
        };
        server.resume()?;
        Ok(server)
    }

    /// One server for the whole test binary, started by the first test that asks.
    ///
    /// Statics are never dropped, so this server is stopped by a small watcher process instead:
    /// it polls this process's pid and, once the tests are gone, stops the server by its pid and
    /// deletes its files. Tests take a database each from it ([`Self::fresh_database`]).
    pub fn shared() -> Result<&'static ThrowawayPostgres, String> {
        static SHARED: OnceLock<Result<ThrowawayPostgres, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                let server = ThrowawayPostgres::start()?;
                server.stop_when_this_process_exits()?;
                Ok(server)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Creates an empty database of its own for one test and returns its url.
    pub async fn fresh_database(&self) -> Result<String, String> {
        use sqlx::Connection;
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let name = format!(
            "test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = sqlx::PgConnection::connect(&self.url())
            .await
            .map_err(|e| format!("connecting to {}: {e}", self.url()))?;
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .map_err(|e| format!("creating database {name}: {e}"))?;
        let _ = admin.close().await;
        Ok(self.database_url(&name))
    }

    /// `postgres://…` for the cluster's `postgres` database.
    pub fn url(&self) -> String {
        self.database_url("postgres")
    }

    /// `postgres://…` for database `name` of the cluster.
    pub fn database_url(&self, name: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{name}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The durability it was started with.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// The cluster's directory (its data directory is `data` inside).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(Child::id)
    }

    /// Stops the server at once (as a crash or a restart would), keeping its data.
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            // SIGQUIT: immediate shutdown of the postmaster and all its backends.
            let _ = Command::new("kill")
                .args(["-QUIT", &server.id().to_string()])
                .status();
            if !exited_within(&mut server, Duration::from_secs(10)) {
                let _ = server.kill();
                let _ = server.wait();
            }
        }
    }

    /// Starts the server again on its data and port, and waits until it accepts connections.
    pub fn resume(&mut self) -> Result<(), String> {
        if self.server.is_some() {
            return Ok(());
        }
        let mut postgres = Command::new(program("postgres")?);
        postgres
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-p", &self.port.to_string()])
            .arg("-k")
            .arg(self.dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=400",
            ])
            .args(match self.durability {
                // Tests only: nothing here must survive a power cut. Commits still reach the
                // operating system before they are acknowledged (synchronous_commit stays on),
                // so an acknowledged commit survives a stop of the server, as restart tests need.
                Durability::Off => ["-c", "fsync=off", "-c", "full_page_writes=off"].as_slice(),
                Durability::Full => [
                    "-c",
                    "fsync=on",
                    "-c",
                    "synchronous_commit=on",
                    "-c",
                    "full_page_writes=on",
                ]
                .as_slice(),
            })
            .args(
                self.settings
                    .iter()
                    .flat_map(|(name, value)| ["-c".to_owned(), format!("{name}={value}")]),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file(self.dir.path())?));
        run_as(&mut postgres, self.account);
        let mut child = postgres
            .spawn()
            .map_err(|e| format!("starting postgres: {e}"))?;
        let deadline = Instant::now() + READY_WITHIN;
        let is_ready = program("pg_isready")?;
        // Listening is not enough: until recovery ends the server refuses with "the database
        // system is starting up". pg_isready succeeds only once it accepts connections.
        while !accepts_connections(&is_ready, self.port) {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "postgres exited at start ({status}): {}",
                    self.log()
                ));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(format!(
                    "postgres did not listen within 30 s: {}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.server = Some(child);
        Ok(())
    }

    /// Starts the watcher that stops the server (by pid) and deletes its files once this process
    /// has exited, for a server that is never dropped.
    fn stop_when_this_process_exits(&self) -> Result<(), String> {
        let server = self.pid().ok_or("the server is not running")?;
        let script = format!(
            "while kill -0 {tests} 2>/dev/null; do sleep 0.2; done; \
             kill -QUIT {server} 2>/dev/null; sleep 2; rm -rf '{dir}'",
            tests = std::process::id(),
            dir = self.dir.path().display(),
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(drop)
            .map_err(|e| format!("starting the server's watcher: {e}"))
    }

    /// What the server wrote to its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for ThrowawayPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The uid and gid to run as: the unprivileged account when this process is root.
fn unprivileged_account() -> Result<Option<(u32, u32)>, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("reading /proc/self/status: {e}"))?;
    let root = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0");
    if !root {
        return Ok(None);
    }
    let passwd =
        std::fs::read_to_string("/etc/passwd").map_err(|e| format!("reading /etc/passwd: {e}"))?;
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&UNPRIVILEGED))
        .and_then(|fields| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)))
        .map(Some)
        .ok_or_else(|| {
            format!(
                "running as root, and there is no {UNPRIVILEGED} account to run PostgreSQL as \
                 (install PostgreSQL's server package: apt-get install -y postgresql)"
            )
        })
}

/// Sets the account `command` runs as (exec happens after the switch, so no wrapper process
/// stands between the test and the server's pid).
fn run_as(command: &mut Command, account: Option<(u32, u32)>) {
    if let Some((uid, gid)) = account {
        command.gid(gid).uid(uid).env("HOME", "/tmp");
    }
}

/// A PostgreSQL server program: on the PATH, or in Debian's versioned directory.
fn program(name: &str) -> Result<PathBuf, String> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>());
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|version| version.path().join("bin"));
    on_path
        .chain(debian)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            format!(
                "PostgreSQL's `{name}` is neither on the PATH nor in /usr/lib/postgresql/*/bin \
                 (install it: apt-get install -y postgresql)"
            )
        })
}

/// A loopback port nothing listens on right now.
fn free_port() -> Result<u16, String> {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

fn accepts_connections(pg_isready: &Path, port: u16) -> bool {
    Command::new(pg_isready)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            USER,
            "-t",
            "1",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn log_file(dir: &Path) -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("postgres.log"))
        .map_err(|e| format!("the server's log file: {e}"))
}

fn exited_within(child: &mut Child, patience: Duration) -> bool {
    let deadline = Instant::now() + patience;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

//! A throwaway nats-server with JetStream, for tests and benchmarks: its own store in a
//! temporary directory, on free loopback ports, stopped by pid when dropped and, should the
//! test binary end without dropping it, by a watcher process.
//!
//! Fault tests stop it and start it again ([`ThrowawayNats::stop`], [`ThrowawayNats::kill`],
//! [`ThrowawayNats::start_again`]) on the same port and the same store directory, so clients
//! reconnect to the same url and JetStream finds its messages again. A machine without
//! `nats-server` is an error naming the package to install, never a skip: in CI a missing
//! service fails.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a starting server may take to answer `/healthz`.
const READY_WITHIN: Duration = Duration::from_secs(20);
/// How long a stopping server may take to exit before it is killed.
const STOP_WITHIN: Duration = Duration::from_secs(10);
/// The file, in the server's directory, that names the running server's pid for the watcher.
const PID_FILE: &str = "nats-server.pid";

/// A running (or stopped) throwaway nats-server. Dropping it stops the server and deletes its
/// files.
#[derive(Debug)]
pub struct ThrowawayNats {
    dir: tempfile::TempDir,
    port: u16,
    monitor_port: u16,
    server: Option<Child>,
}

impl ThrowawayNats {
    /// Starts a server with JetStream on free loopback ports, its store in a new temporary
    /// directory. `Err` says what is missing or what failed.
    pub fn start() -> Result<Self, String> {
        // Find the program first: a missing one should say so, not fail later.
        program()?;
        let dir = tempfile::Builder::new()
            .prefix("lianxi-nats-")
            .tempdir()
            .map_err(|e| format!("a temporary directory: {e}"))?;
        let mut server = ThrowawayNats {
            dir,
            port: free_port()?,
            monitor_port: free_port()?,
            server: None,
        };
        server.start_again()?;
        server.stop_when_this_process_exits()?;
        Ok(server)
    }

    /// `nats://127.0.0.1:PORT`, the same across restarts.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The HTTP monitoring port (`/healthz`, `/jsz`, …).
    pub fn monitor_port(&self) -> u16 {
        self.monitor_port
    }

    /// JetStream's store directory (`-sd`), kept across restarts.
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(Child::id)
    }

    /// Whether the server was started and not stopped since.
    pub fn is_running(&self) -> bool {
        self.server.is_some()
    }

    /// Stops the server the way an operator would (SIGTERM: it closes its connections and
    /// flushes its store), keeping its data; killed if it has not exited within 10 s.
    pub fn stop(&mut self) {
        self.signal_and_reap("-TERM");
    }

    /// Kills the server at once (SIGKILL), as a crash would, keeping its data. JetStream wrote
    /// every acknowledged message to its files before acknowledging it, so they survive.
    pub fn kill(&mut self) {
        self.signal_and_reap("-KILL");
    }

    fn signal_and_reap(&mut self, signal: &str) {
        let Some(mut server) = self.server.take() else {
            return;
        };
        // The watcher must never signal a pid that may be reused once this one is gone.
        let _ = std::fs::remove_file(self.dir.path().join(PID_FILE));
        let _ = Command::new("kill")
            .args([signal, &server.id().to_string()])
            .status();
        if !exited_within(&mut server, STOP_WITHIN) {
            let _ = server.kill();
            let _ = server.wait();
        }
    }

    /// Starts the server (again) on its ports and store directory, and waits until `/healthz`
    /// answers 200 (JetStream included). Does nothing when it runs already.
    pub fn start_again(&mut self) -> Result<(), String> {
        if self.server.is_some() {
            return Ok(());
        }
        let mut child = Command::new(program()?)
            .arg("-js")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .arg("-sd")
            .arg(self.store_dir())
            .args(["-m", &self.monitor_port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file(self.dir.path())?))
            .spawn()
            .map_err(|e| format!("starting nats-server: {e}"))?;
        std::fs::write(self.dir.path().join(PID_FILE), child.id().to_string())
            .map_err(|e| format!("writing the server's pid file: {e}"))?;
        let deadline = Instant::now() + READY_WITHIN;
        while !healthy(self.monitor_port) {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "nats-server exited at start ({status}): {}",
                    self.log()
                ));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "nats-server was not healthy within {READY_WITHIN:?}: {}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.server = Some(child);
        Ok(())
    }

    /// What the server wrote to its log so far (every start appends).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats-server.log")).unwrap_or_default()
    }

    /// Starts the watcher: a small shell loop that waits for this process to end and then, if
    /// the server's directory is still there (it was never dropped: a static, a leaked task, an
    /// aborted test binary), kills the server named in the pid file and deletes the directory.
    /// A server dropped normally removes its directory, which ends the watcher too.
    fn stop_when_this_process_exits(&self) -> Result<(), String> {
        let dir = self.dir.path().display().to_string();
        let script = format!(
            "while kill -0 {tests} 2>/dev/null && [ -d '{dir}' ]; do sleep 0.2; done; \
             if [ -d '{dir}' ]; then \
               if [ -f '{dir}/{PID_FILE}' ]; then kill -9 \"$(cat '{dir}/{PID_FILE}')\" 2>/dev/null; fi; \
               sleep 0.5; rm -rf '{dir}'; \
             fi",
            tests = std::process::id(),
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
}

impl Drop for ThrowawayNats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The nats-server program: on the PATH, or where Debian's package puts it.
fn program() -> Result<PathBuf, String> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>());
    on_path
        .chain(["/usr/sbin", "/usr/bin", "/usr/local/bin"].map(PathBuf::from))
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            "`nats-server` is neither on the PATH nor in /usr/sbin (install it: \
             apt-get update && apt-get install -y nats-server)"
                .to_owned()
        })
}

/// A loopback port nothing listens on right now.
fn free_port() -> Result<u16, String> {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

/// Whether `GET /healthz` on the monitoring port answers 200: the server accepts clients and
/// JetStream is up. Plain HTTP/1.0 over a socket: nothing more is needed for one status line.
fn healthy(monitor_port: u16) -> bool {
    let attempt = || -> std::io::Result<bool> {
        let mut socket = TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], monitor_port)),
            Duration::from_millis(200),
        )?;
        socket.set_read_timeout(Some(Duration::from_secs(1)))?;
        socket.write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut answer = Vec::new();
        socket.read_to_end(&mut answer)?;
        let answer = String::from_utf8_lossy(&answer);
        Ok(answer
            .lines()
            .next()
            .is_some_and(|status| status.split_whitespace().nth(1) == Some("200")))
    };
    attempt().unwrap_or(false)
}

fn log_file(dir: &Path) -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("nats-server.log"))
        .map_err(|e| format!("the server's log file: {e}"))
}

fn exited_within(child: &mut Child, patience: Duration) -> bool {
    let deadline = Instant::now() + patience;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

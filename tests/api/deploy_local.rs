//! `deploy/local/start` and `deploy/local/stop`, run for real: PostgreSQL, nats-server, two
//! relays, two projector processes and three gateways on loopback ports from a base chosen for
//! the test, a command through one gateway read back through another, then everything stopped
//! by its pid files. The deployment is stopped (`stop` from a drop guard) however the test ends.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use tempfile::TempDir;

/// The binary under test, given to the scripts as `LIANXI_BIN`.
const BIN: &str = env!("CARGO_BIN_EXE_lianxi");
/// The repository, where `deploy/local/` is.
const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// How long `deploy/local/start` may take: initdb, and nine processes to become healthy.
const START_WITHIN: Duration = Duration::from_secs(45);

/// The process names `start` writes pid files for.
const PROCESSES: [&str; 9] = [
    "gateway-1",
    "gateway-2",
    "gateway-3",
    "nats",
    "postgres",
    "projector-1",
    "projector-2",
    "relay-1",
    "relay-2",
];

/// One local deployment's state directory and ports. Dropping it runs `deploy/local/stop`
/// (and, when the test is failing, prints the end of every log first).
struct Deployment {
    /// Holds the state directory; deleted after the drop guard's stop.
    dir: TempDir,
    base: u16,
    admin_token: String,
}

impl Deployment {
    fn new() -> Deployment {
        let dir = tempfile::Builder::new()
            .prefix("lianxi-deploy-local-")
            .tempdir()
            .expect("a temporary directory");
        // As root, PostgreSQL runs as the `postgres` account, which must reach the state
        // directory (tempfile makes it 0700).
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .expect("opening the temporary directory to other accounts");
        }
        Deployment {
            dir,
            base: free_base(),
            admin_token: format!("test-admin-{}", uuid::Uuid::new_v4().simple()),
        }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn url(&self, offset: u16, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.base + offset)
    }

    /// `deploy/local/NAME` with this deployment's settings and nothing else of the caller's
    /// `LIANXI_*` environment.
    fn script(&self, name: &str) -> std::process::Command {
        let mut command =
            std::process::Command::new(Path::new(REPO).join("deploy/local").join(name));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("LIANXI_") {
                command.env_remove(key);
            }
        }
        command
            .env("LIANXI_BIN", BIN)
            .env("LIANXI_STATE_DIR", self.state())
            .env("LIANXI_PORT_BASE", self.base.to_string())
            .env("LIANXI_ADMIN_TOKEN", &self.admin_token)
            .env("LIANXI_START_TIMEOUT", "30")
            .env("LIANXI_STOP_TIMEOUT", "15")
            .stdin(Stdio::null());
        command
    }

    /// Runs `deploy/local/NAME` to its end (at most `within`); its exit status and output.
    async fn run(&self, name: &str, within: Duration) -> Ran {
        let mut command = tokio::process::Command::from(self.script(name));
        command.kill_on_drop(true);
        let output = tokio::time::timeout(within, command.output())
            .await
            .unwrap_or_else(|_| panic!("deploy/local/{name} did not finish within {within:?}"))
            .unwrap_or_else(|e| panic!("running deploy/local/{name}: {e}"));
        Ran {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Every pid file in the state directory: (name, pid).
    fn pid_files(&self) -> Vec<(String, u32)> {
        let Ok(entries) = std::fs::read_dir(self.state().join("pids")) else {
            return Vec::new();
        };
        let mut pids: Vec<(String, u32)> = entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let name = name.strip_suffix(".pid")?.to_owned();
                let text = std::fs::read_to_string(entry.path()).ok()?;
                let pid = text.lines().next()?.trim().parse().ok()?;
                Some((name, pid))
            })
            .collect();
        pids.sort();
        pids
    }

    /// The last lines of every log file, for a failing test.
    fn logs(&self) -> String {
        let mut out = String::new();
        let Ok(entries) = std::fs::read_dir(self.state().join("logs")) else {
            return out;
        };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {} (last 30 lines)\n", path.display()));
            for line in &lines[lines.len().saturating_sub(30)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("the local deployment's logs:\n{}", self.logs());
        }
        // Whatever the test did, nothing it started outlives it.
        let _ = self
            .script("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// What a script run printed, and whether it succeeded.
struct Ran {
    success: bool,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr)
    }
}

/// A base port whose every port (the scripts' layout: base..base+6, NATS's monitor at +142,
/// NATS at +342, PostgreSQL at +352) is free on loopback now. Bases are drawn below 32768,
/// the start of Linux's usual range for port 0, so tests binding port 0 meanwhile do not take
/// them.
fn free_base() -> u16 {
    const OFFSETS: [u16; 10] = [0, 1, 2, 3, 4, 5, 6, 142, 342, 352];
    for _ in 0..100 {
        let draw = (uuid::Uuid::new_v4().as_u128() % 20_000) as u16;
        let base = 12_000 + draw;
        let free = OFFSETS
            .iter()
            .all(|offset| TcpListener::bind(("127.0.0.1", base + offset)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no base port with all ten ports free in 100 draws");
}

/// Whether process `pid` is gone: kill(2) with signal 0 fails, or only its zombie is left (an
/// orphan exits into a zombie where init does not reap, as on some container hosts: it has
/// exited).
fn gone(pid: u32) -> bool {
    let signalled = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .is_some_and(|pid| rustix::process::test_kill_process(pid).is_ok());
    if !signalled {
        return true;
    }
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, after) = stat.rsplit_once(") ")?;
            after.chars().next()
        })
        .is_some_and(|state| state == 'Z' || state == 'X')
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a reqwest client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_scripts_start_every_role_that_then_work_together_and_stop_them_all() {
    let began = Instant::now();
    let deployment = Deployment::new();
    let client = client();

    let started = deployment.run("start", START_WITHIN).await;
    assert!(started.success, "deploy/local/start failed:\n{started}");
    assert!(
        started.stdout.contains(&deployment.admin_token)
            && started.stdout.contains(&deployment.url(2, "")),
        "start prints the admin token and every address:\n{started}"
    );
    let pids = deployment.pid_files();
    let names: Vec<&str> = pids.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, PROCESSES, "one pid file per process");

    // Every lianxi process (gateways 0-2, relay-1 3, projectors 4-5, relay-2 6) and NATS
    // answer their health check.
    for offset in [0, 1, 2, 3, 4, 5, 6, 142] {
        let url = deployment.url(offset, "/healthz");
        let status = client.get(&url).send().await.map(|r| r.status());
        assert!(matches!(status, Ok(StatusCode::OK)), "{url}: {status:?}");
    }

    // A second start refuses and leaves the running deployment alone.
    let again = deployment.run("start", START_WITHIN).await;
    assert!(
        !again.success && again.stderr.contains("already running"),
        "a second start must refuse:\n{again}"
    );
    assert_eq!(
        deployment.pid_files(),
        pids,
        "the refused start changed no pid file"
    );
    assert!(
        pids.iter().all(|(_, pid)| !gone(*pid)),
        "every process still runs"
    );

    // A command through gateway 1 …
    let reply = client
        .post(deployment.url(0, "/v1/commands/RegisterDistrict"))
        .bearer_auth(&deployment.admin_token)
        .json(&json!({"name": "测试街道"}))
        .send()
        .await
        .expect("gateway-1 answers");
    assert_eq!(
        reply.status(),
        StatusCode::OK,
        "RegisterDistrict through gateway-1"
    );
    let body: Value = reply.json().await.expect("a JSON body");
    let position = body["events"][0]["position"]
        .as_i64()
        .unwrap_or_else(|| panic!("events[0].position in {body}"));
    let district = body["stream"]
        .as_str()
        .and_then(|stream| stream.strip_prefix("district-"))
        .unwrap_or_else(|| panic!("a district stream in {body}"))
        .to_owned();

    // … reaches every projection, kept by the projector processes, as gateway 3 sees them …
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let view: Value = client
            .get(deployment.url(2, "/v1/projections"))
            .bearer_auth(&deployment.admin_token)
            .header("X-Min-Position", position.to_string())
            .send()
            .await
            .expect("gateway-3 answers")
            .json()
            .await
            .expect("a JSON body");
        let caught_up: Vec<&str> = view["projections"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["active"] == true && p["position"].as_i64() >= Some(position))
            .filter_map(|p| p["name"].as_str())
            .collect();
        if caught_up.len() == 5 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the projections did not reach position {position} within 20 s: {view}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // … and a read through gateway 2 waits for it (X-Min-Position) and shows it.
    let reply = client
        .get(deployment.url(1, &format!("/v1/districts/{district}/stats")))
        .bearer_auth(&deployment.admin_token)
        .header("X-Min-Position", position.to_string())
        .send()
        .await
        .expect("gateway-2 answers");
    assert_eq!(reply.status(), StatusCode::OK, "the district's statistics");
    let stats: Value = reply.json().await.expect("a JSON body");
    assert_eq!(stats["district"]["name"], "测试街道", "{stats}");

    // relay-1 publishes; relay-2 stands by.
    for (offset, active) in [(3, "1"), (6, "0")] {
        let metrics = client
            .get(deployment.url(offset, "/metrics"))
            .send()
            .await
            .expect("the relay answers")
            .text()
            .await
            .expect("the metrics");
        let line = format!("lianxi_relay_active {active}");
        assert!(
            metrics.lines().any(|l| l == line),
            "the relay on {} says {line:?}:\n{metrics}",
            deployment.url(offset, "")
        );
    }

    // Stop: every process is gone, no pid file is left, and a second stop is fine.
    let stopped = deployment.run("stop", Duration::from_secs(40)).await;
    assert!(stopped.success, "deploy/local/stop failed:\n{stopped}");
    let running: Vec<&(String, u32)> = pids.iter().filter(|(_, pid)| !gone(*pid)).collect();
    assert!(
        running.is_empty(),
        "still running after stop: {running:?}\n{stopped}"
    );
    assert!(
        deployment.pid_files().is_empty(),
        "stop removes every pid file: {:?}",
        deployment.pid_files()
    );
    let leftovers: Vec<_> = std::fs::read_dir(deployment.state().join("pids"))
        .expect("the pid directory stays")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(leftovers.is_empty(), "left in pids/: {leftovers:?}");
    let twice = deployment.run("stop", Duration::from_secs(20)).await;
    assert!(twice.success, "a second stop must succeed:\n{twice}");

    assert!(
        began.elapsed() < Duration::from_secs(90),
        "the whole rehearsal took {:?}",
        began.elapsed()
    );
}

//! The harness: the real `lianxi` binary, started on port 0 over a fresh data directory.
//!
//! [`spawn_app`] runs `lianxi serve --listen 127.0.0.1:0 --data-dir <tempdir>` (plus
//! `--database-url` of a fresh database when `LIANXI_TEST_BACKEND=postgres`) with a random
//! bootstrap admin token, learns the port from the `listening on http://ADDR` line it prints, and
//! hands back a [`TestApp`] with typed helpers. The child is killed when the `TestApp` drops. The
//! server's log (stderr) goes to a file beside the data directory: it is printed when the server
//! cannot start, and a test fails at the end if the server logged a 500 or a panic during it,
//! whether or not the test looked.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use uuid::Uuid;

/// The binary under test, built by cargo for this integration test.
pub const BIN: &str = env!("CARGO_BIN_EXE_lianxi");

/// How long the server may take to print its address.
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

/// The environment variables of API.md; cleared so the developer's shell cannot leak into tests.
const LIANXI_ENV: [&str; 6] = [
    "LIANXI_DATA_DIR",
    "LIANXI_LISTEN",
    "LIANXI_DATABASE_URL",
    "LIANXI_NATS_URL",
    "LIANXI_ADMIN_TOKEN",
    "LIANXI_LOG",
];

/// One running server and everything needed to talk to it, restart it and inspect its files.
pub struct TestApp {
    pub addr: SocketAddr,
    pub admin_token: String,
    pub data_dir: TempDir,
    /// The PostgreSQL database the log is in, when the suite runs on PostgreSQL.
    pub database_url: Option<String>,
    /// More store options given to the server and to the command line beside it.
    store_options: Vec<String>,
    pub child: Option<Child>,
    pub client: reqwest::Client,
    /// Holds the server's stderr log, outside the data directory.
    log_dir: TempDir,
    log_filter: String,
}

/// The backend the suite runs on: `LIANXI_TEST_BACKEND=postgres` runs every test that does not
/// ask for SQLite against PostgreSQL (`scripts/test` runs the suite once for each).
pub fn backend_is_postgres() -> bool {
    match std::env::var("LIANXI_TEST_BACKEND").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Err(_) => false,
        Ok(other) => panic!("LIANXI_TEST_BACKEND is sqlite or postgres, not {other:?}"),
    }
}

/// Starts a server with the default log filter, on the suite's backend.
pub async fn spawn_app() -> TestApp {
    spawn_app_with_log("info").await
}

/// Starts a server on the embedded SQLite store whatever the suite's backend, for tests of what
/// only a file on disk has (tampering with it, kill -9 mid-write, file permissions).
pub async fn spawn_app_sqlite() -> TestApp {
    spawn(None, "info").await
}

/// Starts a server whose log uses `filter` (`LIANXI_LOG`), for tests that read the log.
pub async fn spawn_app_with_log(filter: &str) -> TestApp {
    let database_url = if backend_is_postgres() {
        Some(fresh_database().await)
    } else {
        None
    };
    spawn(database_url, filter).await
}

/// Starts a server on the PostgreSQL database at `url` (a server the test controls).
pub async fn spawn_app_on_database(url: &str) -> TestApp {
    spawn(Some(url.to_owned()), "info").await
}

/// [`spawn_app_on_database`] with more store options (`--database-connections 2`, …).
pub async fn spawn_app_on_database_with(url: &str, options: &[&str]) -> TestApp {
    spawn_with(Some(url.to_owned()), "info", options).await
}

/// An empty database of its own on the test binary's throwaway PostgreSQL server.
pub async fn fresh_database() -> String {
    store::throwaway_postgres::ThrowawayPostgres::shared()
        .expect("a throwaway PostgreSQL (LIANXI_TEST_BACKEND=postgres)")
        .fresh_database()
        .await
        .expect("a fresh database")
}

async fn spawn(database_url: Option<String>, filter: &str) -> TestApp {
    spawn_with(database_url, filter, &[]).await
}

async fn spawn_with(database_url: Option<String>, filter: &str, options: &[&str]) -> TestApp {
    let data_dir = tempfile::tempdir().expect("a temporary data directory");
    let log_dir = tempfile::tempdir().expect("a temporary log directory");
    let admin_token = format!("test-admin-{}", Uuid::new_v4().simple());
    let store_options: Vec<String> = options.iter().map(|o| (*o).to_owned()).collect();
    let mut args = store_args(data_dir.path(), database_url.as_deref());
    args.extend(store_options.iter().cloned());
    let (child, addr) = start_server(&args, &admin_token, log_dir.path(), filter).await;
    TestApp {
        addr,
        admin_token,
        data_dir,
        database_url,
        store_options,
        child: Some(child),
        client: client(),
        log_dir,
        log_filter: filter.to_owned(),
    }
}

/// A client without proxies (tests talk to loopback only) and with a generous timeout.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("a reqwest client")
}

/// The options that name the store: the data directory, and the database when there is one.
fn store_args(data_dir: &Path, database_url: Option<&str>) -> Vec<String> {
    let mut args = vec!["--data-dir".to_owned(), data_dir.display().to_string()];
    if let Some(url) = database_url {
        args.extend(["--database-url".to_owned(), url.to_owned()]);
    }
    args
}

/// `lianxi serve --listen 127.0.0.1:0 ARGS…` with a clean environment, its standard error
/// appended to `log_path` and its standard output piped (where it says `listening on`).
fn serve_command(args: &[String], admin_token: &str, log_path: &Path, filter: &str) -> Command {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .expect("the server log file");
    let mut command = Command::new(BIN);
    for var in LIANXI_ENV {
        command.env_remove(var);
    }
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .env("LIANXI_ADMIN_TOKEN", admin_token)
        .env("LIANXI_LOG", filter)
        .env("LIANXI_CATCH_UP_WRITE_EVERY", CATCH_UP_WRITE_EVERY)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true);
    command
}

/// Starts `lianxi serve --listen 127.0.0.1:0 ARGS…` without waiting for it to listen (it may
/// never): for tests of a start that waits on something. Its log goes to
/// `<log_dir>/server.log`; it is killed when dropped.
pub fn spawn_serve_unready(args: &[String], log_dir: &Path) -> Child {
    serve_command(
        args,
        "unready-admin-token",
        &log_dir.join("server.log"),
        "info",
    )
    .spawn()
    .expect("spawning the lianxi binary")
}

/// Starts `lianxi serve --listen 127.0.0.1:0 ARGS…` and waits for its `listening on` line.
async fn start_server(
    store_args: &[String],
    admin_token: &str,
    log_dir: &Path,
    filter: &str,
) -> (Child, SocketAddr) {
    let log_path = log_dir.join("server.log");
    let mut child = serve_command(store_args, admin_token, &log_path, filter)
        .spawn()
        .expect("spawning the lianxi binary");
    let stdout = child.stdout.take().expect("the child's stdout");
    let mut lines = BufReader::new(stdout).lines();
    let found = tokio::time::timeout(STARTUP_DEADLINE, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(addr) = line.trim().strip_prefix("listening on http://") {
                return addr.parse::<SocketAddr>().ok();
            }
        }
        None
    })
    .await;
    let addr = match found {
        Ok(Some(addr)) => addr,
        other => {
            let _ = child.start_kill();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!(
                "lianxi serve did not print `listening on http://ADDR` within {STARTUP_DEADLINE:?} \
                 ({}); its log:\n{log}",
                if other.is_err() { "timed out" } else { "stdout closed or the address did not parse" }
            );
        }
    };
    // Keep draining stdout so a later print can never block the server on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

/// A response, whole: status, headers, the raw body and the body as JSON (`Null` when it is not).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub bytes: Vec<u8>,
    pub json: Value,
}

impl Reply {
    /// Reads a whole response: status, headers, body (as JSON when it is).
    pub async fn read(response: reqwest::Response) -> Reply {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("the response body").to_vec();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            bytes,
            json,
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts this is the problem+json refusal of API.md with `status` and `code`.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_problem(self.status, &self.headers, &self.json, status, code);
    }
}

/// Asserts an RFC 9457 problem body of API.md: the content type, the five members, the code.
#[track_caller]
pub fn assert_problem(
    actual_status: StatusCode,
    headers: &HeaderMap,
    body: &Value,
    status: u16,
    code: &str,
) {
    assert_eq!(
        actual_status.as_u16(),
        status,
        "expected {status} {code}, got {actual_status}: {body}"
    );
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        content_type.starts_with("application/problem+json"),
        "a {status} must be application/problem+json, got {content_type:?}: {body}"
    );
    assert_eq!(body["code"], code, "wrong code in {body}");
    assert_eq!(body["status"], status, "wrong status member in {body}");
    for member in ["type", "title", "detail", "code"] {
        assert!(
            body[member].as_str().is_some_and(|s| !s.is_empty()),
            "the problem lacks a non-empty {member:?}: {body}"
        );
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The options that name this app's store, for the command line beside it.
    pub fn store_args(&self) -> Vec<String> {
        let mut args = store_args(self.data_dir.path(), self.database_url.as_deref());
        args.extend(self.store_options.iter().cloned());
        args
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.path().join("lianxi.db")
    }

    /// The server's log so far, without terminal colour codes.
    pub fn log(&self) -> String {
        let raw =
            std::fs::read_to_string(self.log_dir.path().join("server.log")).unwrap_or_default();
        strip_ansi(&raw)
    }

    /// Sends a command as the bootstrap admin.
    pub async fn command(&self, name: &str, body: Value) -> (StatusCode, Value) {
        self.command_as(&self.admin_token, name, body, &[]).await
    }

    /// Sends a command with `token` and extra headers.
    pub async fn command_as(
        &self,
        token: &str,
        name: &str,
        body: Value,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let reply = self.command_reply(token, name, body, headers).await;
        (reply.status, reply.json)
    }

    /// [`TestApp::command_as`] with the whole reply.
    pub async fn command_reply(
        &self,
        token: &str,
        name: &str,
        body: Value,
        headers: &[(&str, &str)],
    ) -> Reply {
        let bytes = serde_json::to_vec(&body).expect("a JSON body");
        let mut all = vec![("authorization", format!("Bearer {token}"))];
        all.push(("content-type", "application/json".to_owned()));
        all.extend(headers.iter().map(|(k, v)| (*k, (*v).to_owned())));
        self.post_raw(&format!("/v1/commands/{name}"), bytes, &all)
            .await
    }

    /// Sends a command that must succeed; returns the response body.
    pub async fn ok(&self, name: &str, body: Value) -> Value {
        self.ok_as(&self.admin_token, name, body).await
    }

    /// [`TestApp::ok`] with another token.
    pub async fn ok_as(&self, token: &str, name: &str, body: Value) -> Value {
        let (status, reply) = self.command_as(token, name, body.clone(), &[]).await;
        assert_eq!(status, StatusCode::OK, "{name} {body} was refused: {reply}");
        reply
    }

    /// POSTs raw bytes with exactly the given headers (nothing added).
    pub async fn post_raw(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
        headers: &[(&str, String)],
    ) -> Reply {
        self.post_raw_with(&self.client, path, body, headers).await
    }

    /// [`TestApp::post_raw`] on a given client (its own connection pool).
    pub async fn post_raw_with(
        &self,
        client: &reqwest::Client,
        path: &str,
        body: impl Into<reqwest::Body>,
        headers: &[(&str, String)],
    ) -> Reply {
        let mut request = client.post(self.url(path)).body(body);
        for (name, value) in headers {
            request = request.header(
                HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
                HeaderValue::from_bytes(value.as_bytes()).expect("a header value"),
            );
        }
        Reply::read(request.send().await.expect("the server answers")).await
    }

    /// GETs `path`, with `token` when given and extra headers.
    pub async fn get(&self, path: &str, token: Option<&str>, headers: &[(&str, &str)]) -> Reply {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Reply::read(request.send().await.expect("the server answers")).await
    }

    /// `community`'s board as the admin, once the board projection has written `min_position`
    /// (`X-Min-Position`, passed as given so that tests can send a malformed one too).
    pub async fn board_at(&self, community: Uuid, min_position: &str) -> Reply {
        self.get(
            &format!("/v1/communities/{community}/board"),
            Some(&self.admin_token),
            &[("x-min-position", min_position)],
        )
        .await
    }

    /// `GET /v1/streams/{stream}/events` as the admin.
    pub async fn stream(&self, stream: &str) -> (StatusCode, Value) {
        let reply = self
            .get(
                &format!("/v1/streams/{stream}/events"),
                Some(&self.admin_token),
                &[],
            )
            .await;
        (reply.status, reply.json)
    }

    /// One stream's events, which must exist.
    pub async fn stream_events(&self, stream: &str) -> Vec<Value> {
        let (status, body) = self.stream(stream).await;
        assert_eq!(status, StatusCode::OK, "reading {stream}: {body}");
        body["events"].as_array().expect("an events array").clone()
    }

    /// The event types of one stream, in order.
    pub async fn stream_types(&self, stream: &str) -> Vec<String> {
        self.stream_events(stream)
            .await
            .iter()
            .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// `GET /v1/events?after=N` as the admin: `{"events", "next_after"}`.
    pub async fn events(&self, after: i64) -> Value {
        self.events_page(after, 1_000).await
    }

    pub async fn events_page(&self, after: i64, limit: usize) -> Value {
        let reply = self
            .get(
                &format!("/v1/events?after={after}&limit={limit}"),
                Some(&self.admin_token),
                &[],
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "GET /v1/events: {}",
            reply.text()
        );
        reply.json
    }

    /// The whole log, read page by page.
    pub async fn all_events(&self) -> Vec<Value> {
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let page = self.events(after).await;
            let events = page["events"].as_array().expect("an events array");
            if events.is_empty() {
                return all;
            }
            all.extend(events.iter().cloned());
            after = page["next_after"].as_i64().expect("next_after");
        }
    }

    /// The log's head: the position of its last event, 0 when empty.
    pub async fn head(&self) -> i64 {
        self.all_events()
            .await
            .last()
            .map_or(0, |e| e["position"].as_i64().expect("a position"))
    }

    /// Asserts the server is alive: `/healthz` answers 200.
    pub async fn assert_healthy(&self) {
        let reply = self.get("/healthz", None, &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "/healthz: {}", reply.text());
    }

    /// Issues a token through `POST /v1/tokens` as the admin.
    pub async fn issue_token(&self, role: &str, scope: Option<Uuid>, name: &str) -> String {
        self.issue_token_as(&self.admin_token, role, scope, name)
            .await
            .unwrap_or_else(|reply| panic!("POST /v1/tokens refused: {}", reply.text()))
    }

    /// `POST /v1/tokens` with `token`; the reply when it is not 200.
    pub async fn issue_token_as(
        &self,
        token: &str,
        role: &str,
        scope: Option<Uuid>,
        name: &str,
    ) -> Result<String, Reply> {
        let body = json!({ "role": role, "scope": scope, "name": name });
        let reply = self
            .post_raw(
                "/v1/tokens",
                serde_json::to_vec(&body).expect("JSON"),
                &[
                    ("authorization", format!("Bearer {token}")),
                    ("content-type", "application/json".to_owned()),
                ],
            )
            .await;
        if reply.status != StatusCode::OK {
            return Err(reply);
        }
        let keys: Vec<&String> = reply.json.as_object().expect("an object").keys().collect();
        assert_eq!(keys, ["token"], "POST /v1/tokens answers {{\"token\"}}");
        Ok(reply.json["token"].as_str().expect("a token").to_owned())
    }

    /// Issues a token with `lianxi token issue` against the data directory (beside the server).
    pub async fn issue_token_cli(&self, role: &str, scope: Option<Uuid>, name: &str) -> String {
        let mut args = vec!["token".to_owned(), "issue".to_owned()];
        args.extend(self.store_args());
        args.extend([
            "--role".to_owned(),
            role.to_owned(),
            "--name".to_owned(),
            name.to_owned(),
        ]);
        if let Some(scope) = scope {
            args.push("--scope".to_owned());
            args.push(scope.to_string());
        }
        let output = cli(&args).await;
        assert!(
            output.status.success(),
            "lianxi token issue failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8(output.stdout).expect("UTF-8 stdout");
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "token issue prints the token alone: {stdout:?}"
        );
        lines[0].trim().to_owned()
    }

    /// `lianxi verify` on this app's store: its exit code and stdout.
    pub async fn verify(&self) -> (i32, String) {
        let mut args = vec!["verify".to_owned()];
        args.extend(self.store_args());
        let output = cli(&args).await;
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    }

    /// `lianxi export` on this app's store (NDJSON): its stdout, which must succeed.
    pub async fn export(&self) -> String {
        let mut args = vec!["export".to_owned()];
        args.extend(self.store_args());
        let output = cli(&args).await;
        assert!(
            output.status.success(),
            "lianxi export failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("UTF-8 export")
    }

    /// Kills the server with SIGKILL and waits until it is gone.
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().expect("SIGKILL the server");
            tokio::time::timeout(Duration::from_secs(30), child.wait())
                .await
                .expect("the killed server exits")
                .expect("waiting for the server");
        }
    }

    /// Sends SIGTERM and returns at once; see [`TestApp::wait_exit`]. kill(2) itself, not the
    /// `kill` program: the signal leaves within microseconds, as a supervisor's would.
    pub fn terminate(&self) {
        signal(
            self.child.as_ref().expect("the server is running"),
            rustix::process::Signal::TERM,
        );
    }

    /// Waits (with a deadline) for the server to exit on its own and returns its status.
    pub async fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("the server was running");
        tokio::time::timeout(deadline, child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the server did not exit within {deadline:?}; log:\n{}",
                    self.log()
                )
            })
            .expect("waiting for the server")
    }

    /// Starts the server again on the same data directory (killing it first if it still runs).
    pub async fn restart(&mut self) {
        self.kill9().await;
        let (child, addr) = start_server(
            &self.store_args(),
            &self.admin_token,
            self.log_dir.path(),
            &self.log_filter,
        )
        .await;
        self.child = Some(child);
        self.addr = addr;
    }

    /// Registers a district, a community of it and `units` units, all admitted; returns the ids.
    pub async fn world(&self, units: usize) -> World {
        let district = self.register_district("赵镇街道").await;
        let community = self.register_community(district, "沱源社区").await;
        let registrations = (0..units).map(|i| self.register_unit(district, format!("单位{i}")));
        let units: Vec<Uuid> = futures::future::join_all(registrations).await;
        for unit in &units {
            self.admit(community, *unit).await;
        }
        World {
            district,
            community,
            units,
        }
    }

    pub async fn register_district(&self, name: &str) -> Uuid {
        let id = Uuid::new_v4();
        self.ok(
            "RegisterDistrict",
            json!({ "district_id": id, "name": name }),
        )
        .await;
        id
    }

    pub async fn register_community(&self, district: Uuid, name: &str) -> Uuid {
        let id = Uuid::new_v4();
        self.ok(
            "RegisterCommunity",
            json!({
                "community_id": id,
                "district_id": district,
                "name": name,
                "committee": format!("{name}党委"),
            }),
        )
        .await;
        id
    }

    pub async fn register_unit(&self, district: Uuid, name: impl Into<String>) -> Uuid {
        let id = Uuid::new_v4();
        let name: String = name.into();
        self.ok(
            "RegisterUnit",
            json!({ "unit_id": id, "district_id": district, "name": name }),
        )
        .await;
        id
    }

    pub async fn admit(&self, community: Uuid, unit: Uuid) {
        self.ok(
            "AdmitMemberUnit",
            json!({ "community_id": community, "unit_id": unit, "kind": "jurisdiction" }),
        )
        .await;
    }

    pub async fn convene(&self, community: Uuid) -> Uuid {
        let id = Uuid::new_v4();
        self.ok(
            "ConveneMeeting",
            json!({
                "meeting_id": id,
                "community_id": community,
                "kind": "regular",
                "title": "党建联席会议",
                "agenda": ["六联讨论", "认领党建服务项目"],
                "occurred_at": "2018-04-24T14:30:00+08:00",
            }),
        )
        .await;
        id
    }

    pub async fn propose(&self, community: Uuid) -> Uuid {
        let id = Uuid::new_v4();
        self.ok(
            "ProposeProject",
            json!({
                "project_id": id,
                "community_id": community,
                "title": "4·25 预防接种宣传",
                "theme": "public_welfare",
            }),
        )
        .await;
        id
    }

    pub async fn claim(&self, project: Uuid, unit: Uuid) {
        self.ok(
            "ClaimProject",
            json!({ "project_id": project, "unit_id": unit }),
        )
        .await;
    }

    /// A project proposed, claimed by `unit` and launched, ready for activities.
    pub async fn launched_project(&self, community: Uuid, unit: Uuid) -> Uuid {
        let project = self.propose(community).await;
        self.claim(project, unit).await;
        self.ok("LaunchProject", json!({ "project_id": project }))
            .await;
        project
    }
}

/// Fails the test when the server answered a 500 or panicked during it, even if the test did not
/// look: "No input makes the server answer 500 or stop" (API.md, "Errors").
impl Drop for TestApp {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let log = self.log();
        let bad: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("internal error") || l.contains("panicked"))
            .collect();
        assert!(
            bad.is_empty(),
            "the server failed during the test:\n{}",
            bad.join("\n")
        );
    }
}

/// What [`TestApp::world`] registered.
#[derive(Debug, Clone)]
pub struct World {
    pub district: Uuid,
    pub community: Uuid,
    pub units: Vec<Uuid>,
}

/// Runs the binary with `args` (no server needed) and collects its output.
pub async fn cli(args: &[String]) -> std::process::Output {
    let mut command = Command::new(BIN);
    for var in LIANXI_ENV {
        command.env_remove(var);
    }
    let output = command.args(args).stdin(Stdio::null()).output();
    tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("the lianxi CLI finishes within a minute")
        .expect("running the lianxi CLI")
}

/// The binary with `args` as a command to spawn, with the environment and stdin of [`cli`]: for
/// a CLI run that a test watches or kills half-way. The child is killed if it is dropped.
pub fn cli_command(args: &[String]) -> Command {
    let mut command = Command::new(BIN);
    for var in LIANXI_ENV {
        command.env_remove(var);
    }
    command
        .args(args)
        .env("LIANXI_CATCH_UP_WRITE_EVERY", CATCH_UP_WRITE_EVERY)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Servers and CLI runs under test write a catch-up's changes with every page of the log
/// (the runner's batch is larger), so the crash tests find checkpoints in the middle of a
/// rebuild of a short history. Catch-ups that hold many pages in memory before writing are
/// tested in the projections crate.
const CATCH_UP_WRITE_EVERY: &str = "1000";

/// `text` without ANSI escape sequences (`ESC [ … letter`).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

pub fn project_stream(id: Uuid) -> String {
    format!("project-{id}")
}

/// Whether `value` is a UUID in its hyphenated form.
pub fn is_uuid(value: &str) -> bool {
    value.len() == 36 && Uuid::parse_str(value).is_ok()
}

/// Whether `value` is an RFC 3339 time.
pub fn is_rfc3339(value: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(value).is_ok()
}

/// Whether `value` is 64 lowercase hex digits (a SHA-256).
pub fn is_sha256_hex(value: &str) -> bool {
    value.len() == 64
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The keys of a JSON object, sorted.
#[track_caller]
pub fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .unwrap_or_else(|| panic!("expected an object, got {value}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

/// Sorted owned strings, to compare with [`keys`].
pub fn sorted(names: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    names.sort();
    names
}

/// Asserts the success body of API.md, `{"command_id", "stream", "version", "position",
/// "events": [{"id", "type", "position"}]}`, with the event types expected; returns them.
#[track_caller]
pub fn assert_command_response(body: &Value, stream: &str, types: &[&str]) {
    assert_eq!(
        keys(body),
        sorted(&["command_id", "stream", "version", "position", "events"]),
        "command response shape: {body}"
    );
    assert!(
        is_uuid(body["command_id"].as_str().unwrap_or_default()),
        "command_id is a UUID: {body}"
    );
    assert_eq!(body["stream"], stream, "stream of {body}");
    assert!(
        body["version"].as_i64().is_some_and(|v| v >= 1),
        "version: {body}"
    );
    let events = body["events"].as_array().expect("events is an array");
    let got: Vec<&str> = events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(got, types, "event types of {body}");
    let mut last = 0;
    for event in events {
        assert_eq!(
            keys(event),
            sorted(&["id", "type", "position"]),
            "event ref: {event}"
        );
        assert!(
            is_uuid(event["id"].as_str().unwrap_or_default()),
            "event id: {event}"
        );
        let position = event["position"].as_i64().expect("an integer position");
        assert!(position > last, "positions increase: {body}");
        last = position;
    }
    assert_eq!(
        body["position"], last,
        "position is the last event's: {body}"
    );
}

/// Asserts an event of API.md "Shapes" and its metadata.
#[track_caller]
pub fn assert_event_shape(event: &Value) {
    assert_eq!(
        keys(event),
        sorted(&[
            "position",
            "id",
            "stream",
            "version",
            "type",
            "schema_version",
            "data",
            "metadata",
            "recorded_at",
            "hash"
        ]),
        "event shape: {event}"
    );
    assert!(
        event["position"].as_i64().is_some_and(|p| p >= 1),
        "{event}"
    );
    assert!(event["version"].as_i64().is_some_and(|v| v >= 1), "{event}");
    assert!(
        event["schema_version"].as_i64().is_some_and(|v| v >= 1),
        "{event}"
    );
    assert!(is_uuid(event["id"].as_str().unwrap_or_default()), "{event}");
    assert!(
        event["type"].as_str().is_some_and(|t| !t.is_empty()),
        "{event}"
    );
    assert!(event["data"].is_object(), "data is an object: {event}");
    assert!(
        is_rfc3339(event["recorded_at"].as_str().unwrap_or_default()),
        "{event}"
    );
    assert!(
        is_sha256_hex(event["hash"].as_str().unwrap_or_default()),
        "{event}"
    );
    let stream = event["stream"].as_str().expect("a stream");
    let (kind, id) = stream.split_once('-').expect("<kind>-<uuid>");
    assert!(
        [
            "district",
            "community",
            "unit",
            "meeting",
            "project",
            "request"
        ]
        .contains(&kind)
            && is_uuid(id),
        "stream name {stream:?}"
    );

    let metadata = &event["metadata"];
    assert_eq!(
        keys(metadata),
        sorted(&[
            "actor",
            "acting_for",
            "command",
            "command_id",
            "correlation_id",
            "causation_id",
            "occurred_at"
        ]),
        "metadata shape: {event}"
    );
    assert_eq!(
        keys(&metadata["actor"]),
        sorted(&["id", "name", "role"]),
        "{event}"
    );
    assert!(
        is_uuid(metadata["actor"]["id"].as_str().unwrap_or_default()),
        "{event}"
    );
    assert!(
        metadata["actor"]["name"]
            .as_str()
            .is_some_and(|n| !n.is_empty()),
        "{event}"
    );
    assert!(
        [
            "admin",
            "district_admin",
            "community_secretary",
            "unit_rep",
            "analyst",
            "auditor"
        ]
        .contains(&metadata["actor"]["role"].as_str().unwrap_or_default()),
        "{event}"
    );
    assert_eq!(
        keys(&metadata["acting_for"]),
        sorted(&["kind", "id"]),
        "{event}"
    );
    for id in ["command_id", "correlation_id", "causation_id"] {
        assert!(
            is_uuid(metadata[id].as_str().unwrap_or_default()),
            "{id}: {event}"
        );
    }
    assert!(
        is_rfc3339(metadata["occurred_at"].as_str().unwrap_or_default()),
        "{event}"
    );
}

/// insta settings that hide what changes from run to run, after checking each value's shape:
/// ids must be UUIDs, times RFC 3339, hashes 64 hex digits, streams `<kind>-<uuid>`.
pub fn redacted() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    for key in [
        "id",
        "command_id",
        "correlation_id",
        "causation_id",
        "district_id",
        "community_id",
        "unit_id",
        "meeting_id",
        "project_id",
        "activity_id",
        "request_id",
    ] {
        settings.add_redaction(&format!(".**.{key}"), insta::dynamic_redaction(redact_uuid));
    }
    settings.add_redaction(".**.stream", insta::dynamic_redaction(redact_stream));
    settings.add_redaction(".**.recorded_at", insta::dynamic_redaction(redact_time));
    settings.add_redaction(".**.hash", insta::dynamic_redaction(redact_hash));
    settings
}

fn redact_uuid(
    value: insta::internals::Content,
    path: insta::internals::ContentPath<'_>,
) -> insta::internals::Content {
    match value.as_str() {
        Some(s) => {
            assert!(is_uuid(s), "{path} should be a UUID, got {s:?}");
            "[uuid]".into()
        }
        // `acting_for.id` is null when an admin acts on nothing narrower than the system.
        None => value,
    }
}

fn redact_stream(
    value: insta::internals::Content,
    path: insta::internals::ContentPath<'_>,
) -> insta::internals::Content {
    let s = value
        .as_str()
        .unwrap_or_else(|| panic!("{path} should be a string"));
    let (kind, id) = s
        .split_once('-')
        .unwrap_or_else(|| panic!("{path} should be <kind>-<uuid>, got {s:?}"));
    assert!(is_uuid(id), "{path} should end in a UUID, got {s:?}");
    format!("{kind}-[uuid]").into()
}

fn redact_time(
    value: insta::internals::Content,
    path: insta::internals::ContentPath<'_>,
) -> insta::internals::Content {
    let s = value
        .as_str()
        .unwrap_or_else(|| panic!("{path} should be a string"));
    assert!(is_rfc3339(s), "{path} should be RFC 3339, got {s:?}");
    "[rfc3339]".into()
}

fn redact_hash(
    value: insta::internals::Content,
    path: insta::internals::ContentPath<'_>,
) -> insta::internals::Content {
    let s = value
        .as_str()
        .unwrap_or_else(|| panic!("{path} should be a string"));
    assert!(
        is_sha256_hex(s),
        "{path} should be 64 hex digits, got {s:?}"
    );
    "[sha256]".into()
}

/// Sends `sent` to `child` with kill(2) itself, not the `kill` program: it leaves within
/// microseconds, as a supervisor's signal would.
pub fn signal(child: &Child, sent: rustix::process::Signal) {
    let pid = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .and_then(rustix::process::Pid::from_raw)
        .expect("a running child's pid");
    rustix::process::kill_process(pid, sent).expect("kill(2)");
}

/// A `lianxi serve` process of another role than `all` (a relay, …), for tests of the
/// distributed mode. Killed when dropped.
pub struct ServeProcess {
    pub addr: SocketAddr,
    pub admin_token: String,
    args: Vec<String>,
    child: Option<Child>,
    log_dir: TempDir,
}

/// Starts `lianxi serve --listen 127.0.0.1:0 ARGS…` and waits for its `listening on` line.
pub async fn spawn_serve(args: &[String]) -> ServeProcess {
    let log_dir = tempfile::tempdir().expect("a temporary log directory");
    let admin_token = format!("test-admin-{}", Uuid::new_v4().simple());
    let (child, addr) = start_server(args, &admin_token, log_dir.path(), "info").await;
    ServeProcess {
        addr,
        admin_token,
        args: args.to_vec(),
        child: Some(child),
        log_dir,
    }
}

impl ServeProcess {
    /// The process's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_dir.path().join("server.log")).unwrap_or_default()
    }

    /// `GET path` with the bootstrap admin token and `headers`.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = client()
            .get(format!("http://{}{path}", self.addr))
            .bearer_auth(&self.admin_token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Reply::read(request.send().await.expect("a response")).await
    }

    /// Sends command `name` with the bootstrap admin token; panics unless it is accepted.
    pub async fn ok(&self, name: &str, body: Value) -> Value {
        let response = client()
            .post(format!("http://{}/v1/commands/{name}", self.addr))
            .bearer_auth(&self.admin_token)
            .json(&body)
            .send()
            .await
            .expect("a response");
        let reply = Reply::read(response).await;
        assert!(
            reply.status.is_success(),
            "{name} was refused: {}",
            reply.text()
        );
        reply.json
    }

    /// The value of the metric `name` (with its labels, if any) on its `/metrics`, if there.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = client()
            .get(format!("http://{}/metrics", self.addr))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .filter_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .find_map(|value| value.trim().parse().ok())
    }

    /// Starts the process again with the same options and token (killing it first if it still
    /// runs); it may listen on another port.
    pub async fn restart(&mut self) {
        self.kill9().await;
        let (child, addr) =
            start_server(&self.args, &self.admin_token, self.log_dir.path(), "info").await;
        self.child = Some(child);
        self.addr = addr;
    }

    /// Sends `signal` to the running process: `STOP` freezes it where it is (its sockets stay
    /// open, it reads and acknowledges nothing), `CONT` lets it go on.
    pub fn signal(&self, sent: rustix::process::Signal) {
        signal(self.child.as_ref().expect("the process runs"), sent);
    }

    /// Kills the process with SIGKILL and waits until it is gone.
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().expect("SIGKILL the process");
            tokio::time::timeout(Duration::from_secs(30), child.wait())
                .await
                .expect("the killed process exits")
                .expect("waiting for the process");
        }
    }
}

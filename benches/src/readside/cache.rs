//! Cached logs: a seeded history written once through the real command path and reused, so every read-side run starts from the same log without paying minutes to generate it.
//!
//! `<root>/log-s<seed>-n<events>/lianxi.db` is written by [`domain::testing::generator`] →
//! [`commands::CommandHandler`] → [`store::sqlite::SqliteStore`], exactly as `lianxi serve`
//! would record those commands (hash chains, metadata, command ids). Handling one command at a
//! time pays one fsync per command, so commands go in *chunks* of up to 64 handled concurrently
//! (one group commit): a chunk ends before a command that names an id (any UUID in its body)
//! already named in the chunk, and registrations and membership changes go alone. Every stream
//! a command appends to or reads as a fact is named in its body, except a community's, which
//! only registrations and membership changes alter — so each command sees what it would have
//! seen handled sequentially, and every command must succeed. A `complete` marker is written
//! last: a cache without it is rebuilt.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use commands::{CommandHandler, CommandRequest, Principal, Role};
use domain::testing::generator::{Generated, Generator};
use serde_json::{json, Value};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};
use store::sqlite::{SqliteStore, DATABASE_FILE};
use store::EventStore;
use uuid::Uuid;

use crate::report::thousands;

/// The generated world: 4 districts × 10 communities × 60 units. A district (街道) of about ten
/// communities is typical; 60 units per district start each community with 6 (1–12) member
/// units (each unit joins one community, some later a second, as the generator admits them),
/// about a joint conference's size. 40 communities spread a 1,000,000-event log to ~25,000
/// events per community, and let chunks of independent commands reach ~20 (see the module doc).
pub const WORLD: [usize; 3] = [4, 10, 60];
/// Commands handled concurrently at most (one group commit).
const CHUNK: usize = 64;
/// The marker written once the log is complete.
const MARKER: &str = "complete";
/// How often progress is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// A complete cached log.
#[derive(Debug, Clone)]
pub struct CachedLog {
    /// The directory holding `lianxi.db`.
    pub dir: PathBuf,
    pub seed: u64,
    /// The last position: at least the events asked for, a chunk more at most.
    pub head: i64,
    /// Generated commands it holds (all accepted), for continuing the same world.
    pub commands: u64,
    pub world: [usize; 3],
    /// How long it took to build, in seconds.
    pub build_seconds: f64,
}

impl CachedLog {
    /// A generator of the log's world that has already produced the log's commands: what it
    /// makes next is valid on top of the log.
    pub fn continuation(&self) -> Generator {
        let [districts, communities, units] = self.world;
        let mut generator = Generator::new(self.seed, districts, communities, units);
        for _ in 0..self.commands {
            generator.next_command();
        }
        generator
    }

    /// Copies the log into `data_dir` (created), for a server or a scan to open: the database
    /// and its WAL if one is left (the cache is checkpointed when built, so normally none).
    pub async fn copy_into(&self, data_dir: &Path) -> Result<()> {
        tokio::fs::create_dir_all(data_dir)
            .await
            .with_context(|| format!("creating {}", data_dir.display()))?;
        for suffix in ["", "-wal"] {
            let name = format!("{DATABASE_FILE}{suffix}");
            let from = self.dir.join(&name);
            if suffix.is_empty() || from.exists() {
                tokio::fs::copy(&from, data_dir.join(&name))
                    .await
                    .with_context(|| format!("copying {}", from.display()))?;
            }
        }
        Ok(())
    }
}

/// Where cached logs live by default: `<dir>/lianxi-bench-logs`.
pub fn default_root(dir: &Path) -> PathBuf {
    dir.join("lianxi-bench-logs")
}

/// The cache directory of a log.
pub fn cache_dir(root: &Path, seed: u64, events: i64) -> PathBuf {
    root.join(format!("log-s{seed}-n{events}"))
}

/// The cached log of `events` events from `seed`, built first when missing or incomplete.
pub async fn ensure(root: &Path, seed: u64, events: i64) -> Result<CachedLog> {
    ensure!(events > 0, "--events must be positive");
    let dir = cache_dir(root, seed, events);
    if let Some(log) = read_marker(&dir)? {
        eprintln!(
            "cached log {}: {} events, {} commands (built in {:.0} s)",
            dir.display(),
            thousands(log.head as f64),
            thousands(log.commands as f64),
            log.build_seconds
        );
        return Ok(log);
    }
    if dir.exists() {
        eprintln!(
            "{} is incomplete (no `{MARKER}` marker): building it again",
            dir.display()
        );
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("removing the incomplete {}", dir.display()))?;
    }
    build(&dir, seed, events).await
}

/// The marker's log, when the marker exists and describes this world.
fn read_marker(dir: &Path) -> Result<Option<CachedLog>> {
    let path = dir.join(MARKER);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let marker: Value =
        serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
    let int = |field: &str| marker.get(field).and_then(Value::as_u64);
    let world: Option<Vec<usize>> = marker.get("world").and_then(Value::as_array).map(|w| {
        w.iter()
            .filter_map(|v| v.as_u64().and_then(|v| usize::try_from(v).ok()))
            .collect()
    });
    let (Some(seed), Some(head), Some(commands), Some(world)) =
        (int("seed"), int("head"), int("commands"), world)
    else {
        return Ok(None);
    };
    if world != WORLD || !dir.join(DATABASE_FILE).is_file() {
        return Ok(None);
    }
    Ok(Some(CachedLog {
        dir: dir.to_owned(),
        seed,
        head: i64::try_from(head).context("head out of range")?,
        commands,
        world: WORLD,
        build_seconds: marker.get("seconds").and_then(Value::as_f64).unwrap_or(0.0),
    }))
}

/// Commands that must be handled on their own: registrations, and membership changes (they
/// alter a community stream that later commands read without naming it).
pub fn goes_alone(name: &str) -> bool {
    name.starts_with("Register") || name == "AdmitMemberUnit" || name == "WithdrawMemberUnit"
}

/// Every UUID named anywhere in a command body (fields, arrays, nested objects).
pub fn ids_of(body: &Value) -> Vec<Uuid> {
    fn walk(value: &Value, out: &mut Vec<Uuid>) {
        match value {
            Value::String(text) => {
                if let Ok(id) = Uuid::parse_str(text) {
                    out.push(id);
                }
            }
            Value::Array(items) => items.iter().for_each(|item| walk(item, out)),
            Value::Object(fields) => fields.values().for_each(|item| walk(item, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(body, &mut out);
    out
}

/// Cuts a sequence of commands into chunks that may be handled concurrently.
pub struct Chunker {
    generator: Generator,
    pending: Option<Generated>,
    max: usize,
}

impl Chunker {
    pub fn new(generator: Generator, max: usize) -> Chunker {
        Chunker {
            generator,
            pending: None,
            max: max.max(1),
        }
    }

    /// The next chunk: at least one command; commands that go alone are alone.
    pub fn next_chunk(&mut self) -> Vec<Generated> {
        let mut chunk = Vec::new();
        let mut named: HashSet<Uuid> = HashSet::new();
        loop {
            let command = self
                .pending
                .take()
                .unwrap_or_else(|| self.generator.next_command());
            if goes_alone(command.name) {
                if chunk.is_empty() {
                    chunk.push(command);
                } else {
                    self.pending = Some(command);
                }
                return chunk;
            }
            let ids = ids_of(&command.body);
            if chunk.len() >= self.max || ids.iter().any(|id| named.contains(id)) {
                self.pending = Some(command);
                return chunk;
            }
            named.extend(ids);
            chunk.push(command);
        }
    }
}

fn admin() -> Principal {
    Principal {
        actor_id: Uuid::from_u128(1),
        name: "lianxi-bench generator".into(),
        role: Role::Admin,
        scope: None,
    }
}

/// Writes the log into `dir` (which must not exist), then the marker.
async fn build(dir: &Path, seed: u64, events: i64) -> Result<CachedLog> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    eprintln!(
        "building the log {} ({} events, seed {seed}, world {:?}) through the command handler",
        dir.display(),
        thousands(events as f64),
        WORLD
    );
    let started = Instant::now();
    let store = SqliteStore::open(dir)
        .await
        .with_context(|| format!("opening a store in {}", dir.display()))?;
    let handler = CommandHandler::new(Arc::new(store.clone()));
    let [districts, communities, units] = WORLD;
    let mut chunker = Chunker::new(Generator::new(seed, districts, communities, units), CHUNK);
    let (mut head, mut commands, mut chunks) = (0_i64, 0_u64, 0_u64);
    let mut last_report = (Instant::now(), 0_i64);
    while head < events {
        let chunk = chunker.next_chunk();
        let mut tasks = Vec::with_capacity(chunk.len());
        for generated in chunk {
            let command = generated.command().map_err(|error| {
                anyhow::anyhow!("generated command {commands} does not parse: {error}")
            })?;
            let request = CommandRequest {
                command,
                principal: admin(),
                request_hash: format!("{commands}"),
                idempotency_key: None,
                if_match: None,
                correlation_id: None,
                causation_id: None,
            };
            let handler = handler.clone();
            let n = commands;
            tasks.push((
                n,
                generated,
                tokio::spawn(async move { handler.handle(request).await }),
            ));
            commands += 1;
        }
        for (n, generated, task) in tasks {
            match task.await.context("a command task panicked")? {
                Ok(outcome) => head = head.max(outcome.position),
                Err(error) => bail!(
                    "command {n} of seed {seed} was refused, so the log is not what sequential \
                     handling would write: {} {} → {error}",
                    generated.name,
                    generated.body
                ),
            }
        }
        chunks += 1;
        if last_report.0.elapsed() >= PROGRESS_EVERY {
            let seconds = started.elapsed().as_secs_f64();
            let recent = (head - last_report.1) as f64 / last_report.0.elapsed().as_secs_f64();
            eprintln!(
                "  {} / {} events, {} events/s (last {:.0} s: {}), {:.1} commands per chunk, {:.0} s",
                thousands(head as f64),
                thousands(events as f64),
                thousands(head as f64 / seconds),
                PROGRESS_EVERY.as_secs_f64(),
                thousands(recent),
                commands as f64 / chunks as f64,
                seconds
            );
            last_report = (Instant::now(), head);
        }
    }
    let stored = store.head().await.context("reading the head")?;
    ensure!(
        stored == head,
        "the store's head is {stored}, the commands reported {head}"
    );
    drop(handler);
    drop(store);
    checkpoint(&dir.join(DATABASE_FILE)).await?;
    let seconds = started.elapsed().as_secs_f64();
    let marker = json!({
        "seed": seed,
        "events": events,
        "head": head,
        "commands": commands,
        "world": WORLD,
        "generator": format!("Generator::new({seed}, {districts}, {communities}, {units})"),
        "seconds": seconds,
        "built_at": chrono::Utc::now().to_rfc3339(),
    });
    std::fs::write(dir.join(MARKER), format!("{marker:#}\n"))
        .with_context(|| format!("writing the marker in {}", dir.display()))?;
    eprintln!(
        "  done: {} events from {} commands in {:.0} s ({} events/s, {:.1} commands per chunk)",
        thousands(head as f64),
        thousands(commands as f64),
        seconds,
        thousands(head as f64 / seconds),
        commands as f64 / chunks.max(1) as f64
    );
    Ok(CachedLog {
        dir: dir.to_owned(),
        seed,
        head,
        commands,
        world: WORLD,
        build_seconds: seconds,
    })
}

/// Folds the WAL into the database file and empties it, so that `lianxi.db` alone is the whole
/// log. Retries while the closed store's connections are still going away.
async fn checkpoint(database: &Path) -> Result<()> {
    let mut conn = SqliteConnectOptions::new()
        .filename(database)
        .busy_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("opening {} to checkpoint it", database.display()))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&mut conn)
            .await
            .context("checkpointing the log")?;
        if busy == 0 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the log's WAL could not be checkpointed within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    conn.close().await.context("closing the log")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_ids_in_fields_and_arrays() {
        let a = Uuid::from_u128(1);
        let b = Uuid::from_u128(2);
        let body = json!({"meeting_id": a, "unit_ids": [b, a], "title": "not an id", "n": 3});
        let mut ids = ids_of(&body);
        ids.sort();
        assert_eq!(ids, vec![a, a, b]);
    }

    #[test]
    fn chunks_never_repeat_an_id_and_registrations_go_alone() {
        let mut chunker = Chunker::new(Generator::new(3, 2, 3, 8), 64);
        let mut seen = 0;
        let mut longest = 0;
        while seen < 3_000 {
            let chunk = chunker.next_chunk();
            assert!(!chunk.is_empty() && chunk.len() <= 64);
            if chunk.iter().any(|c| goes_alone(c.name)) {
                assert_eq!(chunk.len(), 1, "{chunk:?}");
            }
            let mut named = HashSet::new();
            for command in &chunk {
                for id in ids_of(&command.body) {
                    // A command may name an id twice itself; two commands may not share one.
                    named.insert((id, command.body.to_string()));
                }
            }
            let ids: Vec<Uuid> = named.iter().map(|(id, _)| *id).collect();
            let distinct: HashSet<Uuid> = ids.iter().copied().collect();
            assert_eq!(ids.len(), distinct.len(), "{chunk:?}");
            longest = longest.max(chunk.len());
            seen += chunk.len();
        }
        assert!(longest > 1, "commands are grouped");
    }

    #[test]
    fn the_chunker_keeps_the_generator_order() {
        let mut chunker = Chunker::new(Generator::new(9, 1, 2, 4), 8);
        let mut plain = Generator::new(9, 1, 2, 4);
        for _ in 0..100 {
            for command in chunker.next_chunk() {
                assert_eq!(command, plain.next_command());
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn builds_reuses_rebuilds_and_continues_a_log() {
        let root = tempfile::tempdir().expect("a temporary directory");
        let log = ensure(root.path(), 5, 300).await.expect("built");
        assert!(log.head >= 300, "{}", log.head);
        assert!(log.commands > 0);
        let wal = log.dir.join(format!("{DATABASE_FILE}-wal"));
        assert!(
            std::fs::metadata(&wal).map_or(true, |m| m.len() == 0),
            "checkpointed"
        );
        let again = ensure(root.path(), 5, 300).await.expect("reused");
        assert_eq!(
            (again.head, again.commands, again.build_seconds),
            (log.head, log.commands, log.build_seconds)
        );

        // A copy holds every event, and the world goes on from where the log stopped.
        let data = root.path().join("copy");
        log.copy_into(&data).await.expect("copied");
        let store = SqliteStore::open(&data).await.expect("the copy opens");
        assert_eq!(store.head().await.expect("head"), log.head);
        let handler = CommandHandler::new(Arc::new(store));
        let mut next = log.continuation();
        for n in 0..40 {
            let generated = next.next_command();
            let request = CommandRequest {
                command: generated.command().expect("parses"),
                principal: admin(),
                request_hash: format!("continued {n}"),
                idempotency_key: None,
                if_match: None,
                correlation_id: None,
                causation_id: None,
            };
            let outcome = handler.handle(request).await;
            assert!(outcome.is_ok(), "{generated:?}: {outcome:?}");
        }

        // Without its marker, a cache counts as interrupted and is built again.
        std::fs::remove_file(log.dir.join(MARKER)).expect("marker removed");
        let rebuilt = ensure(root.path(), 5, 300).await.expect("rebuilt");
        assert_eq!(
            (rebuilt.head, rebuilt.commands),
            (log.head, log.commands),
            "the same seed writes the same history"
        );
    }
}

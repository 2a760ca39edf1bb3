//! Board reads under load: latency of `GET /v1/communities/{id}/board` from many concurrent readers while commands keep changing the boards, against `GET /healthz` under the same load.
//!
//! Each run starts `lianxi serve` on a copy of a cached log and waits until every projection
//! has built it, so boards hold a realistic history. The communities are read from the log's
//! `CommunityRegistered` events beforehand. A background sender then continues the log's own
//! world (the generator, advanced past the log's commands) at `--command-rate`, so the boards
//! being read change under the readers; commands that name no id in common go concurrently,
//! as when building the log. Meanwhile N closed-loop readers (one connection pool, admin token)
//! each read the board of a random community; the baseline is the same N readers on `/healthz`
//! (no auth, no database), measured just before, with the same background commands. A third
//! window reads the boards as a client with an HTTP cache polls them: each reader keeps every
//! board's `ETag` and sends it back in `If-None-Match` (304 while the board is unchanged).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use domain::testing::generator::Generator;
use hyper::header;
use hyper::StatusCode;
use store::sqlite::SqliteStore;
use store::EventStore;
use tokio::task::JoinSet;
use uuid::Uuid;

use super::built::{self, Built};
use super::cache::{goes_alone, ids_of, CachedLog};
use super::lean;
use super::Env;
use crate::http_bench::{Api, Server};
use crate::load::{self, LoadResult, Op, Window};
use crate::procstat::CpuUse;
use crate::report::thousands;

/// Commands the background sender keeps in flight at most.
const MAX_IN_FLIGHT: usize = 64;

/// The HTTP client the readers read with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Client {
    /// A connection of its own per reader, hyper's with no pool ([`lean`]): the harness takes
    /// less of the cores it shares with the server.
    Lean,
    /// One reqwest client (one pool) for all readers, as the other benchmarks send.
    Reqwest,
}

/// Options of the reads benchmark.
#[derive(Debug, Clone)]
pub struct Options {
    pub readers: usize,
    pub client: Client,
    pub window: Window,
    pub command_rate: f64,
    /// Total reads per second of each paced window.
    pub paced_rates: Vec<f64>,
    pub build_timeout: Duration,
}

/// One measured request kind.
#[derive(Debug, Clone)]
pub struct ReadPoint {
    pub load: LoadResult,
    pub cpu: CpuUse,
}

/// One run.
#[derive(Debug, Clone)]
pub struct ReadsRun {
    pub healthz: ReadPoint,
    pub board: ReadPoint,
    /// The same reads from clients that accept gzip, as browsers and HTTP libraries do.
    pub gzip: ReadPoint,
    /// Those reads paced, at each of the options' rates in turn.
    pub paced: Vec<(f64, ReadPoint)>,
    /// The same reads from clients that keep each board's `ETag` and send `If-None-Match`.
    pub conditional: ReadPoint,
    /// How many of those were answered 304.
    pub not_modified: u64,
    pub communities: usize,
    /// Board sizes in bytes, read once per community before measuring: mean and largest.
    pub board_bytes: (f64, usize),
    /// The same, gzip-compressed as sent.
    pub gzip_bytes: (f64, usize),
    pub built: Built,
    pub background: Background,
    /// The slowest projection's lag (events) when the board window closed.
    pub lag_at_end: Option<i64>,
}

/// What the background sender did, over its whole life.
#[derive(Debug, Clone, Default)]
pub struct Background {
    pub ok: u64,
    pub failures: BTreeMap<String, u64>,
    pub seconds: f64,
}

impl Background {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.seconds.max(1e-9)
    }
}

pub async fn run(env: &Env, log: &CachedLog, options: Options) -> Result<Vec<ReadsRun>> {
    ensure!(options.readers > 0, "--readers must be positive");
    let mut runs = Vec::with_capacity(env.runs);
    for index in 1..=env.runs {
        // Before the server starts: once it runs, the background commands keep the machine busy.
        env.wait_for_quiet().await;
        eprintln!(
            "reads run {index}/{}: {} readers on a log of {} events, {} commands/s behind them",
            env.runs,
            options.readers,
            thousands(log.head as f64),
            thousands(options.command_rate)
        );
        let run = one(env, log, options.clone()).await?;
        eprintln!(
            "  board: {} reads/s, p50 {:.2} ms, p99 {:.2} ms; gzip: {} reads/s, p50 {:.2} ms, p99 {:.2} ms; with If-None-Match: {} reads/s, p50 {:.2} ms, p99 {:.2} ms, {} answered 304; /healthz: {} reads/s, p99 {:.2} ms; background {} commands/s, {} failed",
            thousands(run.board.load.rate()),
            run.board.load.latency_ms(0.5),
            run.board.load.latency_ms(0.99),
            thousands(run.gzip.load.rate()),
            run.gzip.load.latency_ms(0.5),
            run.gzip.load.latency_ms(0.99),
            thousands(run.conditional.load.rate()),
            run.conditional.load.latency_ms(0.5),
            run.conditional.load.latency_ms(0.99),
            thousands(run.not_modified as f64),
            thousands(run.healthz.load.rate()),
            run.healthz.load.latency_ms(0.99),
            thousands(run.background.rate()),
            run.background.failures.values().sum::<u64>()
        );
        for (rate, point) in &run.paced {
            eprintln!(
                "  gzip paced at {} reads/s: {} reads/s, p50 {:.2} ms, p99 {:.2} ms",
                thousands(*rate),
                thousands(point.load.rate()),
                point.load.latency_ms(0.5),
                point.load.latency_ms(0.99),
            );
        }
        runs.push(run);
    }
    Ok(runs)
}

async fn one(env: &Env, log: &CachedLog, options: Options) -> Result<ReadsRun> {
    let scratch = Server::scratch(&env.dir)?;
    let data = Server::data_dir(&scratch);
    log.copy_into(&data).await?;
    let communities = communities(&data).await?;
    ensure!(!communities.is_empty(), "the log registers no community");
    let continued = log.clone();
    let generator = tokio::task::spawn_blocking(move || continued.continuation())
        .await
        .context("advancing the generator")?;
    let token = format!("bench-{}", Uuid::new_v4().simple());
    let mut server = Server::start(&env.lianxi, scratch, &token).await?;
    let measured = measure(&mut server, &token, log, communities, generator, options).await;
    super::finish(env, server, measured).await
}

/// Every community the log registers.
async fn communities(data_dir: &std::path::Path) -> Result<Vec<Uuid>> {
    let store = SqliteStore::open(data_dir)
        .await
        .with_context(|| format!("opening the log in {}", data_dir.display()))?;
    let mut found = Vec::new();
    let mut position = 0;
    loop {
        let batch = store.read_all(position, 5_000).await?;
        let Some(last) = batch.last() else { break };
        position = last.position;
        for event in batch
            .iter()
            .filter(|e| e.event_type == "CommunityRegistered")
        {
            let id = event
                .data
                .get("community_id")
                .and_then(|v| v.as_str())
                .and_then(|v| Uuid::parse_str(v).ok())
                .context("a CommunityRegistered event without a community_id")?;
            found.push(id);
        }
    }
    drop(store);
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(found)
}

async fn measure(
    server: &mut Server,
    token: &str,
    log: &CachedLog,
    communities: Vec<Uuid>,
    generator: Generator,
    options: Options,
) -> Result<ReadsRun> {
    let api = Api::new(server.addr, token)?;
    let built = built::wait(server, &api, log.head, built::POLL, options.build_timeout).await?;
    eprintln!(
        "  projections built in {:.1} s; reading {} boards once",
        built.seconds,
        communities.len()
    );
    // Nothing changes the boards yet: each one, read as it is and gzip-compressed, must be the
    // same JSON.
    let mut sizes = Vec::with_capacity(communities.len());
    let mut gzip_sizes = Vec::with_capacity(communities.len());
    for id in &communities {
        let path = format!("/v1/communities/{id}/board");
        let unreadable = |label| anyhow::anyhow!("the board of {id} cannot be read: {label}");
        let (_, plain) = api.get_encoded(&path, false).await.map_err(unreadable)?;
        let (compressed, zipped) = api.get_encoded(&path, true).await.map_err(unreadable)?;
        ensure!(compressed, "the board of {id} did not come gzip-compressed");
        let mut inflated = Vec::with_capacity(plain.len());
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(zipped.as_ref()),
            &mut inflated,
        )
        .with_context(|| format!("the gzip board of {id}"))?;
        ensure!(
            inflated == plain.as_ref(),
            "the board of {id} inflated is not the board sent as it is"
        );
        sizes.push(plain.len());
        gzip_sizes.push(zipped.len());
    }
    let mean_max = |sizes: &[usize]| {
        (
            sizes.iter().sum::<usize>() as f64 / sizes.len().max(1) as f64,
            sizes.iter().copied().max().unwrap_or(0),
        )
    };
    let board_bytes = mean_max(&sizes);
    let gzip_bytes = mean_max(&gzip_sizes);
    let communities = Arc::new(communities);

    let stop = Arc::new(AtomicBool::new(false));
    let sender = tokio::spawn(background(
        api.clone(),
        generator,
        options.command_rate,
        Arc::clone(&stop),
    ));
    let pid = server.pid;
    let probe = || async move { Ok(CpuUse::now(Some(pid))) };
    let addr = server.addr;
    let http = || -> Result<ReaderHttp> {
        Ok(match options.client {
            Client::Lean => ReaderHttp::Lean(lean::Conn::new(addr, token)?),
            Client::Reqwest => ReaderHttp::Reqwest(api.clone()),
        })
    };
    // A window's readers, each reading what `target` makes of its own random state.
    let readers = |target: &dyn Fn(u64) -> Target| -> Result<Vec<Reader>> {
        (0..options.readers)
            .map(|worker| {
                Ok(Reader {
                    http: http()?,
                    target: target(0x9E37_79B9_7F4A_7C15 ^ (worker as u64 + 1)),
                })
            })
            .collect()
    };
    let boards = |gzip: bool| {
        let communities = Arc::clone(&communities);
        move |state| Target::Board {
            communities: Arc::clone(&communities),
            state,
            gzip,
        }
    };
    let point = |(load, before, after): (LoadResult, CpuUse, CpuUse)| ReadPoint {
        load,
        cpu: after.since(&before),
    };
    let window = options.window;
    let healthz = point(load::measure(readers(&|_| Target::Healthz)?, window, probe).await?);
    let board = point(load::measure(readers(&boards(false))?, window, probe).await?);
    let gzip = point(load::measure(readers(&boards(true))?, window, probe).await?);
    let mut paced = Vec::with_capacity(options.paced_rates.len());
    for &rate in &options.paced_rates {
        let ops = readers(&boards(true))?;
        paced.push((
            rate,
            point(load::measure_paced(ops, rate, window, probe).await?),
        ));
    }
    let not_modified = Arc::new(AtomicU64::new(0));
    let conditional = {
        let ops = readers(&|state| Target::ConditionalBoard {
            communities: Arc::clone(&communities),
            state,
            tags: HashMap::new(),
            not_modified: Arc::clone(&not_modified),
        })?;
        point(load::measure(ops, window, probe).await?)
    };
    let lag_at_end = api
        .projection_lags()
        .await?
        .iter()
        .map(|(_, lag)| *lag)
        .max();
    stop.store(true, Ordering::SeqCst);
    let background = sender.await.context("the background sender panicked")?;
    if !background.failures.is_empty() {
        eprintln!("  background commands failed: {:?}", background.failures);
    }
    Ok(ReadsRun {
        healthz,
        board,
        gzip,
        paced,
        conditional,
        not_modified: not_modified.load(Ordering::Relaxed),
        communities: communities.len(),
        board_bytes,
        gzip_bytes,
        built,
        background,
        lag_at_end,
    })
}

/// What a reader reads.
enum Target {
    Healthz,
    Board {
        communities: Arc<Vec<Uuid>>,
        /// splitmix64 state: a cheap, reproducible choice of community.
        state: u64,
        /// Whether the reader accepts gzip (and insists on getting it).
        gzip: bool,
    },
    /// As `Board`, keeping each board's `ETag` to send back.
    ConditionalBoard {
        communities: Arc<Vec<Uuid>>,
        state: u64,
        tags: HashMap<Uuid, String>,
        not_modified: Arc<AtomicU64>,
    },
}

struct Reader {
    http: ReaderHttp,
    target: Target,
}

/// The client a reader reads with ([`Client`]).
enum ReaderHttp {
    Lean(lean::Conn),
    Reqwest(Api),
}

impl ReaderHttp {
    /// `GET path`, accepting gzip when `gzip` (and failing when it does not come compressed);
    /// returns the body's length as sent.
    async fn get(&mut self, path: &str, gzip: bool) -> std::result::Result<usize, String> {
        match self {
            ReaderHttp::Reqwest(api) if gzip => api.get_gzip(path).await,
            ReaderHttp::Reqwest(api) => api.get(path).await,
            ReaderHttp::Lean(conn) => {
                let accept = [(header::ACCEPT_ENCODING, "gzip")];
                let answer = conn.get(path, if gzip { &accept } else { &[] }).await?;
                let compressed = answer
                    .headers
                    .get(header::CONTENT_ENCODING)
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
                if gzip && !compressed {
                    return Err("200 GET not gzip-compressed".to_owned());
                }
                Ok(answer.body_len)
            }
        }
    }

    /// `GET path` with `If-None-Match: etag` when given: the answer's `ETag` and whether it
    /// was 304.
    async fn get_unless(
        &mut self,
        path: &str,
        etag: Option<&str>,
    ) -> std::result::Result<(Option<String>, bool), String> {
        match self {
            ReaderHttp::Reqwest(api) => api.get_unless(path, etag).await,
            ReaderHttp::Lean(conn) => {
                let sent = etag.map(|etag| [(header::IF_NONE_MATCH, etag)]);
                let answer = conn
                    .get(path, sent.as_ref().map_or(&[], |h| &h[..]))
                    .await?;
                let tag = answer
                    .headers
                    .get(header::ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                Ok((tag, answer.status == StatusCode::NOT_MODIFIED))
            }
        }
    }
}

impl Op for Reader {
    async fn run(&mut self) -> std::result::Result<(), String> {
        let pick = |communities: &[Uuid], state: &mut u64| {
            let pick = splitmix(state) % communities.len() as u64;
            communities[usize::try_from(pick).unwrap_or(0)]
        };
        match &mut self.target {
            Target::Healthz => self.http.get("/healthz", false).await.map(|_| ()),
            Target::Board {
                communities,
                state,
                gzip,
            } => {
                let path = format!("/v1/communities/{}/board", pick(communities, state));
                self.http.get(&path, *gzip).await.map(|_| ())
            }
            Target::ConditionalBoard {
                communities,
                state,
                tags,
                not_modified,
            } => {
                let id = pick(communities, state);
                let path = format!("/v1/communities/{id}/board");
                let (tag, unchanged) = self
                    .http
                    .get_unless(&path, tags.get(&id).map(String::as_str))
                    .await?;
                if unchanged {
                    not_modified.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(tag) = tag {
                    tags.insert(id, tag);
                }
                Ok(())
            }
        }
    }
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Counts a finished background command and forgets the ids it named.
fn finished(
    stats: &mut Background,
    named: &mut HashMap<Uuid, usize>,
    done: std::result::Result<(Vec<Uuid>, std::result::Result<(), String>), tokio::task::JoinError>,
) {
    let (ids, outcome) = done.unwrap_or_else(|_| (Vec::new(), Err("task panicked".to_owned())));
    for id in ids {
        if let Some(count) = named.get_mut(&id) {
            *count -= 1;
            if *count == 0 {
                named.remove(&id);
            }
        }
    }
    match outcome {
        Ok(()) => stats.ok += 1,
        Err(label) => *stats.failures.entry(label).or_default() += 1,
    }
}

/// Sends the world's next commands at `rate` until `stop`: each at its slot, concurrently with
/// those in flight unless it names an id one of them names, or must go alone (then it waits for
/// them), so that every command is decided on the log it would have met in order.
async fn background(
    api: Api,
    mut generator: Generator,
    rate: f64,
    stop: Arc<AtomicBool>,
) -> Background {
    let mut stats = Background::default();
    if rate <= 0.0 {
        return stats;
    }
    let started = Instant::now();
    let mut in_flight: JoinSet<(Vec<Uuid>, std::result::Result<(), String>)> = JoinSet::new();
    let mut named: HashMap<Uuid, usize> = HashMap::new();
    for j in 0_u64.. {
        let slot = started + Duration::from_secs_f64(j as f64 / rate);
        tokio::time::sleep_until(slot.into()).await;
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let command = generator.next_command();
        let ids = ids_of(&command.body);
        let alone = goes_alone(command.name);
        while let Some(done) = in_flight.try_join_next() {
            finished(&mut stats, &mut named, done);
        }
        while !in_flight.is_empty()
            && (alone
                || in_flight.len() >= MAX_IN_FLIGHT
                || ids.iter().any(|id| named.contains_key(id)))
        {
            if let Some(done) = in_flight.join_next().await {
                finished(&mut stats, &mut named, done);
            }
        }
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        for id in &unique {
            *named.entry(*id).or_default() += 1;
        }
        let api = api.clone();
        in_flight.spawn(async move {
            let outcome = api.command(command.name, &command.body).await;
            (unique, outcome)
        });
        if alone {
            if let Some(done) = in_flight.join_next().await {
                finished(&mut stats, &mut named, done);
            }
        }
    }
    while let Some(done) = in_flight.join_next().await {
        finished(&mut stats, &mut named, done);
    }
    stats.seconds = started.elapsed().as_secs_f64();
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_spreads_over_every_community() {
        let mut state = 7;
        let mut seen = [0_u32; 40];
        for _ in 0..4_000 {
            seen[usize::try_from(splitmix(&mut state) % 40).unwrap_or(0)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    }
}

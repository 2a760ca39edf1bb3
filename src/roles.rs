//! The processes of the distributed mode (`lianxi serve --role …`), around one PostgreSQL
//! database and NATS JetStream: stateless gateways, one active relay, projector processes.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use commands::TokenService;
use projections::runner::Runner;
use projections::Projector;

use crate::cli::ServeArgs;
use crate::shutdown::ShutdownSignal;
use crate::{backend, listen};

/// How often a gateway reads the projector processes' checkpoints (for `X-Min-Position`).
const CHECKPOINT_POLL: Duration = Duration::from_millis(20);

/// The PostgreSQL URL and the NATS URL `role` needs, or a refusal naming them.
fn urls<'a>(args: &'a ServeArgs, role: &str) -> Result<(&'a str, &'a str)> {
    match (&args.store.database_url, &args.nats_url) {
        (Some(database), Some(nats)) => Ok((database, nats)),
        _ => bail!("--role {role} needs --database-url (the PostgreSQL log) and --nats-url"),
    }
}

/// `/readyz`'s check that this process reaches NATS.
async fn bus_check(args: &ServeArgs) -> Result<gateway::BusCheck> {
    let (_, nats_url) = urls(args, "relay")?;
    let probe = bus::Probe::open(nats_url)
        .await
        .map_err(|error| anyhow::anyhow!("opening a NATS probe: {error}"))?;
    Ok(Arc::new(move || probe.connected()))
}

/// A relay running in this process, and how to stop it.
struct RelayTask {
    stop: tokio::sync::oneshot::Sender<()>,
    /// Resolves if the relay ends by itself (an unusable configuration).
    ended: tokio::sync::oneshot::Receiver<()>,
    task: tokio::task::JoinHandle<Result<(), bus::BusError>>,
}

impl RelayTask {
    /// Starts a relay of `log` to the NATS server the options name.
    fn start(args: &ServeArgs, log: Arc<dyn store::EventStore>, role: &str) -> Result<RelayTask> {
        let (database_url, nats_url) = urls(args, role)?;
        let mut config = bus::RelayConfig::new(nats_url, database_url);
        config.stream = args.stream_settings();
        let relay = bus::Relay::new(log, config);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ended_tx, ended) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let result = relay
                .run(async move {
                    let _ = stopped.await;
                })
                .await;
            let _ = ended_tx.send(());
            result
        });
        Ok(RelayTask { stop, ended, task })
    }

    /// Resolves on SIGTERM or Ctrl-C, or when the relay ended by itself: either way the
    /// process stops, rather than serve a healthy-looking nothing.
    async fn shutdown(ended: tokio::sync::oneshot::Receiver<()>, signal: ShutdownSignal) {
        tokio::select! {
            () = signal.received() => {}
            _ = ended => {}
        }
    }

    /// Stops the relay and reports how it ended.
    async fn finish(
        stop: tokio::sync::oneshot::Sender<()>,
        task: tokio::task::JoinHandle<Result<(), bus::BusError>>,
    ) -> Result<()> {
        let _ = stop.send(());
        task.await
            .context("the relay task")?
            .map_err(|error| anyhow::anyhow!("the relay: {error} ({})", error.code()))
    }
}

/// `--role relay`: publishes the PostgreSQL log to NATS JetStream while it holds the relay lock,
/// stands by while another relay does; serves only the operations endpoints.
pub async fn relay(args: ServeArgs) -> Result<()> {
    urls(&args, "relay")?;
    let backend = backend::open(&args.store).await?;
    let RelayTask { stop, ended, task } = RelayTask::start(&args, backend.log.clone(), "relay")?;
    let (listener, signal) = listen(args.listen, "lianxi relay serving", &backend.location).await?;
    let router = gateway::operations_router(backend.log, Some(bus_check(&args).await?));
    gateway::serve(listener, router, RelayTask::shutdown(ended, signal)).await?;
    RelayTask::finish(stop, task).await?;
    tracing::info!("lianxi relay stopped");
    Ok(())
}

/// A runner of `projectors` fed by this process's durable JetStream consumer for them (one per
/// set of projections: a process restarted with the same set goes on where it stopped).
async fn feed_runner(
    args: &ServeArgs,
    backend: &backend::Backend,
    projectors: &[Box<dyn Projector>],
    role: &str,
) -> Result<Runner> {
    let (_, nats_url) = urls(args, role)?;
    let mut names: Vec<&str> = projectors.iter().map(|p| p.name()).collect();
    names.sort_unstable();
    let durable = format!("lianxi-projector-{}", names.join("-"));
    let read_db = backend::read_models(&args.store).await?;
    let feed = bus::Feed::open(nats_url, &args.stream_settings(), &durable)
        .await
        .map_err(|error| anyhow::anyhow!("opening the feed {durable}: {error}"))?;
    tracing::info!(consumer = %durable, projections = ?names, "following the feed");
    let source = Arc::new(bus::FeedSource::new(feed, backend.log.clone()));
    Ok(Runner::new(backend.log.clone(), read_db).with_source(source))
}

/// `--role projector [--projection NAME…]`: keeps the named projections (all by default) up to
/// date from the JetStream feed, checked against and completed from the log, with checkpoints in
/// PostgreSQL; serves only the operations endpoints.
pub async fn projector(args: ServeArgs) -> Result<()> {
    urls(&args, "projector")?;
    let projectors = chosen(&args.projections)?;
    let backend = backend::open(&args.store).await?;
    let runner = feed_runner(&args, &backend, &projectors, "projector").await?;
    runner.spawn_group(projectors);
    let (listener, signal) =
        listen(args.listen, "lianxi projector serving", &backend.location).await?;
    let router = gateway::operations_router(backend.log, Some(bus_check(&args).await?));
    gateway::serve(listener, router, signal.received()).await?;
    tracing::info!("lianxi projector stopped");
    Ok(())
}

/// `--role all --nats-url …`: every role of the distributed mode in one process (a gateway, a
/// relay that may stand by for another, and every projection fed through JetStream): one host
/// of a small deployment, or a rehearsal of a big one.
pub async fn all(args: ServeArgs) -> Result<()> {
    urls(&args, "all")?;
    let backend = backend::open(&args.store).await?;
    let store = backend.log.clone();
    let RelayTask { stop, ended, task } = RelayTask::start(&args, store.clone(), "all")?;
    let projectors = projections::projectors::all();
    let runner = feed_runner(&args, &backend, &projectors, "all").await?;
    runner.spawn_group(projectors);
    let tokens = TokenService::new(backend.tokens, store.clone(), args.admin_token.as_deref());
    let state = gateway::AppState::new(store, tokens, runner);
    let (listener, signal) =
        listen(args.listen, "lianxi serving (all roles)", &backend.location).await?;
    let stopping = state.clone();
    let shutdown = async move {
        RelayTask::shutdown(ended, signal).await;
        stopping.begin_shutdown();
    };
    gateway::serve(listener, gateway::router(state), shutdown).await?;
    RelayTask::finish(stop, task).await?;
    tracing::info!("lianxi stopped");
    Ok(())
}

/// `--role gateway`: the whole HTTP API with no projector of its own: commands go to the log,
/// reads to the read models the projector processes keep, and `X-Min-Position` waits on their
/// checkpoints. Stateless: run as many as the load needs, behind any load balancer.
pub async fn gateway(args: ServeArgs) -> Result<()> {
    if args.store.database_url.is_none() {
        bail!("--role gateway needs --database-url (the PostgreSQL log and read models)");
    }
    let backend = backend::open(&args.store).await?;
    let store = backend.log.clone();
    let tokens = TokenService::new(backend.tokens, store.clone(), args.admin_token.as_deref());
    let read_db = backend::read_models(&args.store).await?;
    let mut runner = Runner::new(store.clone(), read_db);
    let names: Vec<&'static str> = projections::projectors::all()
        .iter()
        .map(|p| p.name())
        .collect();
    runner.observe(&names, CHECKPOINT_POLL);
    let state = gateway::AppState::new(store, tokens, runner);
    let (listener, signal) =
        listen(args.listen, "lianxi gateway serving", &backend.location).await?;
    let stopping = state.clone();
    let shutdown = async move {
        signal.received().await;
        stopping.begin_shutdown();
    };
    gateway::serve(listener, gateway::router(state), shutdown).await?;
    tracing::info!("lianxi gateway stopped");
    Ok(())
}

/// The projectors `names` asks for, every one when it is empty; an unknown name is refused with
/// the list of known ones.
fn chosen(names: &[String]) -> Result<Vec<Box<dyn Projector>>> {
    let all = projections::projectors::all();
    if names.is_empty() {
        return Ok(all);
    }
    let known: Vec<&str> = all.iter().map(|p| p.name()).collect();
    if let Some(unknown) = names.iter().find(|n| !known.contains(&n.as_str())) {
        bail!(
            "--projection {unknown}: no such projection (known: {})",
            known.join(", ")
        );
    }
    Ok(all
        .into_iter()
        .filter(|p| names.iter().any(|n| n == p.name()))
        .collect())
}

//! The processes of the distributed mode (`lianxi serve --role …`), around one PostgreSQL
//! database and NATS JetStream: stateless gateways, one active relay, projector processes.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use commands::TokenService;
use projections::runner::Runner;
use projections::Projector;

use crate::cli::ServeArgs;
use crate::{backend, listen, shutdown_signal};

/// How often a gateway reads the projector processes' checkpoints (for `X-Min-Position`).
const CHECKPOINT_POLL: Duration = Duration::from_millis(20);

/// The PostgreSQL URL and the NATS URL `role` needs, or a refusal naming them.
fn urls<'a>(args: &'a ServeArgs, role: &str) -> Result<(&'a str, &'a str)> {
    match (&args.store.database_url, &args.nats_url) {
        (Some(database), Some(nats)) => Ok((database, nats)),
        _ => bail!("--role {role} needs --database-url (the PostgreSQL log) and --nats-url"),
    }
}

/// `--role relay`: publishes the PostgreSQL log to NATS JetStream while it holds the relay lock,
/// stands by while another relay does; serves only the operations endpoints.
pub async fn relay(args: ServeArgs) -> Result<()> {
    let (database_url, nats_url) = urls(&args, "relay")?;
    let backend = backend::open(&args.store).await?;
    let mut config = bus::RelayConfig::new(nats_url, database_url);
    config.stream = args.stream_settings();
    let relay = bus::Relay::new(backend.log.clone(), config);
    // The relay runs until the process is told to stop; should it end by itself (an unusable
    // configuration), the process stops too rather than serve a healthy-looking nothing.
    let (stop_relay, relay_stopped) = tokio::sync::oneshot::channel::<()>();
    let (relay_ended, relay_ended_rx) = tokio::sync::oneshot::channel::<()>();
    let relay = tokio::spawn(async move {
        let result = relay
            .run(async move {
                let _ = relay_stopped.await;
            })
            .await;
        let _ = relay_ended.send(());
        result
    });
    let listener = listen(args.listen, "lianxi relay serving", &backend.location).await?;
    let shutdown = async move {
        tokio::select! {
            () = shutdown_signal() => {}
            _ = relay_ended_rx => {}
        }
    };
    gateway::serve(listener, gateway::operations_router(backend.log), shutdown).await?;
    let _ = stop_relay.send(());
    relay
        .await
        .context("the relay task")?
        .map_err(|error| anyhow::anyhow!("the relay: {error} ({})", error.code()))?;
    tracing::info!("lianxi relay stopped");
    Ok(())
}

/// `--role projector [--projection NAME…]`: keeps the named projections (all by default) up to
/// date from the JetStream feed, checked against and completed from the log, with checkpoints in
/// PostgreSQL; serves only the operations endpoints.
pub async fn projector(args: ServeArgs) -> Result<()> {
    let (_, nats_url) = urls(&args, "projector")?;
    let projectors = chosen(&args.projections)?;
    // One durable consumer per set of projections: a process restarted with the same set goes
    // on where its consumer stopped.
    let mut names: Vec<&str> = projectors.iter().map(|p| p.name()).collect();
    names.sort_unstable();
    let durable = format!("lianxi-projector-{}", names.join("-"));
    let backend = backend::open(&args.store).await?;
    let read_db = backend::read_models(&args.store).await?;
    let feed = bus::Feed::open(nats_url, &args.stream_settings(), &durable)
        .await
        .map_err(|error| anyhow::anyhow!("opening the feed {durable}: {error}"))?;
    let source = Arc::new(bus::FeedSource::new(feed, backend.log.clone()));
    let runner = Runner::new(backend.log.clone(), read_db).with_source(source);
    runner.spawn_group(projectors);
    let listener = listen(args.listen, "lianxi projector serving", &backend.location).await?;
    tracing::info!(consumer = %durable, projections = ?names, "following the feed");
    gateway::serve(
        listener,
        gateway::operations_router(backend.log),
        shutdown_signal(),
    )
    .await?;
    tracing::info!("lianxi projector stopped");
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
    let listener = listen(args.listen, "lianxi gateway serving", &backend.location).await?;
    let stopping = state.clone();
    let shutdown = async move {
        shutdown_signal().await;
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

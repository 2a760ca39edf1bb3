//! The `lianxi` binary: wires the crates together behind the command line of API.md.

mod backend;
mod cli;
mod demo;
mod progress;
mod projections_cmd;
mod replay;
mod roles;
mod shutdown;
mod trace_cmd;

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use commands::TokenService;

use shutdown::ShutdownSignal;

use cli::{Cli, Commands, ExportFormat, ServeArgs, ServeRole, StoreArgs, TokenCommand};

/// mimalloc instead of glibc's allocator: see the dependency's note in Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // First, before the allocator's arena has many pages to fault in.
    let thp = without_huge_pages();
    let cli = Cli::parse();
    init_tracing();
    if let Err(error) = thp {
        tracing::debug!(%error, "cannot turn transparent huge pages off");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("lianxi: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("lianxi: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Turns transparent huge pages off for this process. mimalloc asks the kernel for them on its
/// arenas (`MADV_HUGEPAGE`), and a 2 MiB page holding a few live objects is resident whole: in
/// a million-event rebuild, after the read models let documents go, that was ~27 MB of a
/// 168 MB peak (BENCHMARKS.md, "Rebuild memory").
fn without_huge_pages() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    rustix::thread::disable_transparent_huge_pages(true)?;
    Ok(())
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("LIANXI_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Commands::Serve(args) => serve(args).await.map(|()| ExitCode::SUCCESS),
        Commands::Token {
            command:
                TokenCommand::Issue {
                    store,
                    role,
                    scope,
                    name,
                },
        } => {
            let backend = backend::open(&store).await?;
            let role: commands::Role = role.parse().map_err(anyhow::Error::msg)?;
            let tokens = TokenService::new(backend.tokens, backend.log, None);
            let token = tokens.issue(None, role, scope, &name).await?;
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        Commands::Verify { store } => verify(&store).await,
        Commands::Export {
            store,
            after,
            format,
        } => export(&store, after, format)
            .await
            .map(|()| ExitCode::SUCCESS),
        Commands::Demo { store } => {
            let backend = backend::open(&store).await?;
            let summary = demo::run(backend.log).await?;
            let store_flag = match &store.database_url {
                // Never print the URL: it may hold a password.
                Some(_) => "--database-url \"$LIANXI_DATABASE_URL\"".to_owned(),
                None => format!("--data-dir {}", store.data_dir.display()),
            };
            println!("{}", demo::report(&summary, &store_flag));
            Ok(ExitCode::SUCCESS)
        }
        Commands::Replay(args) => replay::command(args).await,
        Commands::Projections { command } => projections_cmd::command(command).await,
        Commands::Trace(args) => trace_cmd::command(args).await,
    }
}

async fn serve(args: ServeArgs) -> Result<()> {
    // The metrics recorder before anything runs: what is recorded before it is installed is
    // lost (a relay sets `lianxi_relay_active` once, as soon as it holds the lock).
    gateway::telemetry::prometheus();
    match (args.role, args.nats_url.is_some()) {
        (ServeRole::All, false) => serve_all(args).await,
        (ServeRole::Relay, _) => roles::relay(args).await,
        (ServeRole::Projector, _) => roles::projector(args).await,
        (ServeRole::Gateway, _) => roles::gateway(args).await,
        (ServeRole::All, true) => roles::all(args).await,
    }
}

/// The whole system in one process: gateway, projectors and the store.
async fn serve_all(args: ServeArgs) -> Result<()> {
    let backend = backend::open(&args.store).await?;
    let store = backend.log.clone();
    let tokens = TokenService::new(backend.tokens, store.clone(), args.admin_token.as_deref());
    let read_db = backend::server_read_models(&args.store).await?;
    let interrupted = projections::rebuild::interrupted(&read_db).await?;
    let runner = projections::runner::Runner::new(store.clone(), read_db.clone());
    // One task for every projector, on a thread of its own: each page of the log is read and
    // decoded once, and applying it never holds up a request.
    runner
        .spawn_group_on_thread(projections::projectors::all())
        .context("starting the projections' thread")?;
    let state = gateway::AppState::new(store, tokens, runner);
    // Rebuilds a stopped process left half-way go on from their checkpoints.
    for (projector, generation) in interrupted {
        tracing::info!(
            projection = projector.name(),
            generation = generation.generation,
            position = generation.position,
            "resuming an interrupted rebuild"
        );
        gateway::routes::rebuild::spawn_build(state.clone(), projector, generation);
    }
    let (listener, signal) = listen(args.listen, "lianxi serving", &backend.location).await?;
    let stopping = state.clone();
    let shutdown = async move {
        signal.received().await;
        stopping.begin_shutdown();
    };
    gateway::serve(listener, gateway::router(state), shutdown).await?;
    // Every request has been answered: the read models are synced and trusted after a restart
    // of the machine too (a failure only costs a rebuild then, so it does not fail the stop).
    if let Err(error) = read_db.close().await {
        tracing::warn!(%error, "the read models could not be synced at the stop");
    }
    tracing::info!("lianxi stopped");
    Ok(())
}

/// Binds `address` and announces it: scripts and tests read the `listening on` line to learn the
/// port when listening on port 0. The SIGTERM and Ctrl-C handlers are installed just before
/// that line, so a supervisor that stops the server as soon as it reads it gets a graceful stop;
/// before it, while the process starts (and may wait on PostgreSQL or NATS), a signal still
/// stops it at once, as it would any program.
async fn listen(
    address: std::net::SocketAddr,
    what: &str,
    location: &str,
) -> Result<(tokio::net::TcpListener, ShutdownSignal)> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("listening on {address}"))?;
    let signal = ShutdownSignal::install().context("listening for SIGTERM and Ctrl-C")?;
    let local = listener.local_addr()?;
    tracing::info!(listen = %local, log = %location, "{what}");
    println!("listening on http://{local}");
    std::io::stdout().flush().ok();
    Ok((listener, signal))
}

async fn verify(args: &StoreArgs) -> Result<ExitCode> {
    let store = backend::open(args).await?.log;
    let report = store.verify().await?;
    match report.first_failure {
        None => {
            println!(
                "ok: {} events in {} streams verified, head at position {}",
                report.events, report.streams, report.head
            );
            // The log is intact; the snapshots decisions are made from must agree with it.
            let snapshots = commands::snapshots::check_all(store.as_ref())
                .await
                .map_err(|error| anyhow::anyhow!("checking the snapshots: {error}"))?;
            match snapshots.first_mismatch {
                None => {
                    println!(
                        "ok: {} snapshots equal the fold of their streams",
                        snapshots.checked
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Some((snapshot, reason)) => {
                    println!(
                        "SNAPSHOT MISMATCH for stream {} at version {}: {reason}\n  snapshots \
                         are a cache of the log: delete them (DELETE FROM snapshots) and they \
                         are made again from the log",
                        snapshot.stream, snapshot.version
                    );
                    Ok(ExitCode::from(1))
                }
            }
        }
        Some(failure) => {
            println!(
                "MISMATCH at position {} (event {}, stream {} version {}): {}\n  stored hash   {}\n  expected hash {}",
                failure.position,
                failure.event_id,
                failure.stream,
                failure.version,
                failure.reason,
                failure.stored_hash,
                failure.expected_hash
            );
            Ok(ExitCode::from(1))
        }
    }
}

async fn export(args: &StoreArgs, after: i64, format: ExportFormat) -> Result<()> {
    let store = backend::open(args).await?.log;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if format == ExportFormat::Csv {
        writeln!(
            out,
            "position,id,stream,version,type,schema_version,recorded_at,hash,data,metadata"
        )?;
    }
    let mut after = after;
    loop {
        let events = store.read_all(after, 1_000).await?;
        let Some(last) = events.last() else { break };
        after = last.position;
        for event in events {
            match format {
                ExportFormat::Ndjson => {
                    let line = serde_json::json!({
                        "position": event.position,
                        "id": event.id,
                        "stream": event.stream,
                        "version": event.version,
                        "type": event.event_type,
                        "schema_version": event.schema_version,
                        "data": event.data,
                        "metadata": event.metadata,
                        "recorded_at": store::hash::format_recorded_at(event.recorded_at),
                        "hash": event.hash,
                    });
                    serde_json::to_writer(&mut out, &line)?;
                    writeln!(out)?;
                }
                ExportFormat::Csv => {
                    writeln!(
                        out,
                        "{},{},{},{},{},{},{},{},{},{}",
                        event.position,
                        event.id,
                        csv_field(&event.stream),
                        event.version,
                        csv_field(&event.event_type),
                        event.schema_version,
                        store::hash::format_recorded_at(event.recorded_at),
                        event.hash,
                        csv_field(&event.data.to_string()),
                        csv_field(&event.metadata.to_string()),
                    )?;
                }
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// RFC 4180 quoting.
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

//! The command line of API.md: every option also reads its `LIANXI_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(
    name = "lianxi",
    version,
    about = "Event-sourced backend for community joint party-building conferences"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Commands,
}

/// Where the log lives: the embedded SQLite data directory, or a PostgreSQL URL.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Directory of the embedded SQLite store.
    #[arg(long, env = "LIANXI_DATA_DIR", default_value = "./lianxi-data")]
    pub data_dir: PathBuf,
    /// PostgreSQL URL for the distributed deployment (takes precedence over --data-dir).
    #[arg(long, env = "LIANXI_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// PostgreSQL: connections for reading the log (one of them listens for commits, so at
    /// least 2); the writer keeps one more of its own.
    #[arg(
        long,
        env = "LIANXI_DATABASE_CONNECTIONS",
        default_value_t = 16,
        value_parser = clap::value_parser!(u32).range(2..=1000)
    )]
    pub database_connections: u32,
    /// PostgreSQL: connections for the read models (projectors' batches and read routes).
    #[arg(
        long,
        env = "LIANXI_READ_MODEL_CONNECTIONS",
        default_value_t = 8,
        value_parser = clap::value_parser!(u32).range(1..=1000)
    )]
    pub read_model_connections: u32,
}

#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Runs the whole system in one process: gateway and the embedded store.
    Serve(ServeArgs),
    /// Bearer tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Recomputes every stream's hash chain; exits 1 naming the first event that does not match.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Prints the raw log for outside tools.
    Export {
        #[command(flatten)]
        store: StoreArgs,
        /// Only events after this position.
        #[arg(long, default_value_t = 0)]
        after: i64,
        #[arg(long, value_enum, default_value_t = ExportFormat::Ndjson)]
        format: ExportFormat,
    },
    /// Loads the seed report's story (Zhaozhen's four communities, their units, meetings,
    /// claims and activities) as real commands; idempotent, works beside a running server.
    Demo {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Builds a report from history in memory, without touching the live read models.
    Replay(crate::replay::ReplayArgs),
    /// Projection positions, lag and versions; rebuilds.
    Projections {
        #[command(subcommand)]
        command: crate::projections_cmd::ProjectionsCommand,
    },
    /// Who did what, when, in log order: a project's, unit's, actor's or community's trace.
    Trace(crate::trace_cmd::TraceArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Address to listen on.
    #[arg(long, env = "LIANXI_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// NATS URL for the distributed deployment.
    #[arg(long, env = "LIANXI_NATS_URL")]
    pub nats_url: Option<String>,
    /// Which part of the distributed deployment this process is.
    #[arg(long, value_enum, default_value_t = ServeRole::All)]
    pub role: ServeRole,
    /// With `--role projector`: a projection this process keeps (repeat the option for more;
    /// all of them when it is not given).
    #[arg(long = "projection", value_name = "NAME")]
    pub projections: Vec<String>,
    /// With `--role relay` (which creates the JetStream stream or updates it): keep at most this
    /// many events in the stream, dropping the oldest (default: no limit).
    #[arg(long, env = "LIANXI_STREAM_MAX_MESSAGES", value_parser = clap::value_parser!(i64).range(1..))]
    pub stream_max_messages: Option<i64>,
    /// With `--role relay`: drop events older than this many seconds from the stream (default:
    /// keep them). Projector processes read what the stream no longer has from the log.
    #[arg(long, env = "LIANXI_STREAM_MAX_AGE", value_parser = clap::value_parser!(u64).range(1..))]
    pub stream_max_age: Option<u64>,
    /// A bootstrap token with the admin role, for first set-up and tests.
    #[arg(long, env = "LIANXI_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

impl ServeArgs {
    /// The JetStream stream's limits these options ask for.
    pub fn stream_settings(&self) -> bus::StreamSettings {
        bus::StreamSettings {
            max_messages: self.stream_max_messages,
            max_age: self.stream_max_age.map(std::time::Duration::from_secs),
            ..bus::StreamSettings::default()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServeRole {
    Gateway,
    Relay,
    Projector,
    All,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Prints a new bearer token once; only its hash is stored.
    Issue {
        #[command(flatten)]
        store: StoreArgs,
        /// admin, district_admin, community_secretary, unit_rep, analyst or auditor.
        #[arg(long)]
        role: String,
        /// The district, community or unit the role is limited to.
        #[arg(long)]
        scope: Option<Uuid>,
        /// The holder's display name.
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Ndjson,
    Csv,
}

//! Which database the command line points at: the embedded SQLite file in `--data-dir`, or the
//! PostgreSQL database of `--database-url`. Every command opens its store through here, so the
//! two backends are chosen in one place.

use std::sync::Arc;

use anyhow::{Context, Result};
use projections::readdb::{Durability, ReadDb};
use store::postgres::{PostgresSettings, PostgresStore};
use store::sqlite::SqliteStore;
use store::tokens::TokenRegistry;
use store::EventStore;

use crate::cli::StoreArgs;

/// An opened event log, with the token registry kept beside it.
#[derive(Clone)]
pub struct Backend {
    pub log: Arc<dyn EventStore>,
    pub tokens: Arc<dyn TokenRegistry>,
    /// Where the log is, for messages: a directory, or `host:port/database`.
    pub location: String,
}

/// Opens the log `args` names: PostgreSQL when a database URL is given, else the SQLite file.
pub async fn open(args: &StoreArgs) -> Result<Backend> {
    match &args.database_url {
        Some(url) => {
            let mut settings = PostgresSettings::from_url(url)?;
            settings.read_connections = args.database_connections;
            let postgres = PostgresStore::open(settings)
                .await
                .context("opening the event log in PostgreSQL")?;
            let options = postgres.pool().connect_options();
            let location = format!(
                "{}:{}/{}",
                options.get_host(),
                options.get_port(),
                options.get_database().unwrap_or("")
            );
            Ok(Backend {
                log: Arc::new(postgres.clone()),
                tokens: Arc::new(postgres),
                location,
            })
        }
        None => {
            let sqlite = SqliteStore::open(&args.data_dir)
                .await
                .with_context(|| format!("opening the store in {}", args.data_dir.display()))?;
            Ok(Backend {
                log: Arc::new(sqlite.clone()),
                tokens: Arc::new(sqlite),
                location: args.data_dir.display().to_string(),
            })
        }
    }
}

/// Opens the read models beside the log: in the same PostgreSQL database (schema
/// `read_models`), or `readmodels.db` in the data directory, synced (for tools).
pub async fn read_models(args: &StoreArgs) -> Result<ReadDb> {
    read_models_with(args, Durability::Synced).await
}

/// [`read_models`] for the server's projectors: the embedded file is written without syncs
/// (`ReadDb::open_unsynced`); the server closes it when it stops.
pub async fn server_read_models(args: &StoreArgs) -> Result<ReadDb> {
    read_models_with(args, Durability::Unsynced).await
}

async fn read_models_with(args: &StoreArgs, durability: Durability) -> Result<ReadDb> {
    match &args.database_url {
        Some(url) => {
            let options = url
                .parse()
                .context("the database url (--database-url) does not parse")?;
            ReadDb::connect_with(options, args.read_model_connections)
                .await
                .context("opening the read models in PostgreSQL")
        }
        None => match durability {
            Durability::Synced => ReadDb::open(&args.data_dir).await,
            Durability::Unsynced => ReadDb::open_unsynced(&args.data_dir).await,
        }
        .with_context(|| format!("opening the read models in {}", args.data_dir.display())),
    }
}

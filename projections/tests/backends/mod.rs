//! The two backends every projection test runs on: one generic suite, two instantiations.
//!
//! A test is written once as `async fn name(backend: Backend)` and instantiated by
//! [`on_both_backends!`] as `sqlite::name` and `postgres::name`. On PostgreSQL, both the log and
//! the read models live in a database of the test's own on the test binary's throwaway server
//! (the read models in their `read_models` schema beside the log's tables). A PostgreSQL that
//! cannot be started fails the test; it never skips it. Snapshots are taken in the generic
//! function, so both instantiations compare against the same files: the read models must be
//! identical on both backends.

#![allow(dead_code)] // each test binary uses a part of it

use std::sync::Arc;

use projections::readdb::ReadDb;
use store::postgres::{PostgresSettings, PostgresStore};
use store::sqlite::SqliteStore;
use store::throwaway_postgres::ThrowawayPostgres;
use store::EventStore;
use tempfile::TempDir;

/// Connections per pool on the shared server: many tests run against it at once.
const CONNECTIONS: u32 = 4;

/// Which backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// A fresh, empty place for a log and its read models.
    pub async fn place(self) -> Place {
        match self {
            Backend::Sqlite => Place::Sqlite(tempfile::tempdir().expect("a temporary directory")),
            Backend::Postgres => Place::Postgres(fresh_database().await),
        }
    }

    /// A fresh, empty read-model database of its own (on SQLite, a private in-memory one).
    pub async fn fresh_read_db(self) -> ReadDb {
        match self {
            Backend::Sqlite => ReadDb::in_memory()
                .await
                .expect("an in-memory read-model db"),
            Backend::Postgres => read_db_at(&fresh_database().await).await,
        }
    }
}

/// Where one test's log and read models live. Opening them again reopens the same ones, as a
/// restarted server would.
pub enum Place {
    Sqlite(TempDir),
    Postgres(String),
}

impl Place {
    pub fn backend(&self) -> Backend {
        match self {
            Place::Sqlite(_) => Backend::Sqlite,
            Place::Postgres(_) => Backend::Postgres,
        }
    }

    /// The event log.
    pub async fn store(&self) -> Arc<dyn EventStore> {
        match self {
            Place::Sqlite(dir) => Arc::new(SqliteStore::open(dir.path()).await.expect("the log")),
            Place::Postgres(url) => {
                let mut settings = PostgresSettings::from_url(url).expect("a database url");
                settings.read_connections = CONNECTIONS;
                Arc::new(PostgresStore::open(settings).await.expect("the log"))
            }
        }
    }

    /// The read models.
    pub async fn read_db(&self) -> ReadDb {
        match self {
            Place::Sqlite(dir) => ReadDb::open(dir.path()).await.expect("the read models"),
            Place::Postgres(url) => read_db_at(url).await,
        }
    }
}

async fn fresh_database() -> String {
    ThrowawayPostgres::shared()
        .expect("a throwaway PostgreSQL (scripts/test installs its programs)")
        .fresh_database()
        .await
        .expect("a fresh database")
}

async fn read_db_at(url: &str) -> ReadDb {
    let options = url.parse().expect("a database url");
    ReadDb::connect_with(options, CONNECTIONS)
        .await
        .expect("the read models on PostgreSQL")
}

/// Instantiates each generic test `async fn case(backend: Backend)` once per backend, as
/// `sqlite::case` and `postgres::case`.
macro_rules! on_both_backends {
    ($($case:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case($crate::backends::Backend::Sqlite).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case($crate::backends::Backend::Postgres).await;
                }
            )+
        }
    };
}
pub(crate) use on_both_backends;

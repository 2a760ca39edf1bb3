//! The embedded read-model database: a SQLite file beside the log (or a private in-memory one),
//! with the pragmas it runs with.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, SqliteConnection};
use tokio::sync::watch;

use super::boot::{self, Found, Mark};
use super::READ_MODEL_FILE;
use crate::ProjectionError;

/// How long a connection waits for another one's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How the read-model file's writes reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous = NORMAL`: a stop of the machine may lose the last batches, never tear the
    /// file. For tools that write now and then.
    Synced,
    /// `synchronous = OFF` under this boot's mark ([`boot`]): nothing on the projectors' path
    /// waits for the disk, and a stop of the machine costs a rebuild from the log. For the
    /// server, whose projectors write all the time: syncing a checkpoint of pages spread over a
    /// large file took 40–100 ms inside a projectors' commit about once a second, most of the
    /// projection lag's tail on a server with a history (BENCHMARKS.md, "Read models
    /// unsynced"). Where the boot cannot be told (not Linux), the file is synced.
    Unsynced,
}

/// The pragmas every read-model connection runs with.
fn tuned(options: SqliteConnectOptions, synchronous: SqliteSynchronous) -> SqliteConnectOptions {
    options
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(synchronous)
        .busy_timeout(BUSY_TIMEOUT)
}

// Page caches, set by role. SQLite's caches in one process draw on one pool, as large as all
// the connections' `cache_size`s together, and a busy connection can grow past its own size
// into what the idle ones are allowed: in a million-event rebuild the projectors' connection,
// sized 8 MiB (1,935 pages), held 9,652 pages (42 MB), nearly all of the 9,672 that the eight
// open connections' sizes add up to (gdb on pcache1's group). So the sum of the sizes below and
// the log's is what SQLite may hold; the kernel's page cache is behind all of them.

/// The projectors' connection: the pages a batch touches (8 MiB).
const PROJECTORS_CACHE: &str = "-8000";

/// Each of the read pool's connections (2 MiB): most reads are answered from the projectors'
/// documents in memory, and the rest read a few pages each.
const READS_CACHE: &str = "-2048";

/// The checkpointer's connection, in pages: a checkpoint copies frames through a buffer of its
/// own, not through the page cache.
const CHECKPOINTER_CACHE: &str = "16";

/// The embedded read-model file's connections.
pub(super) struct Opened {
    /// For the read routes.
    pub reads: SqlitePool,
    /// The projectors' one connection (loads and batches): the pages a batch touches stay in
    /// one cache instead of being read into each of the pool's connections in turn. SQLite has
    /// one writer at a time anyway.
    pub projectors: SqlitePool,
    pub file: EmbeddedFile,
}

/// What the clones of an embedded [`super::ReadDb`] share besides their pools: the
/// checkpointer, and while the file is written unsynced, its mark.
#[derive(Debug)]
pub(super) struct EmbeddedFile {
    _checkpointer: Checkpointer,
    options: SqliteConnectOptions,
    path: PathBuf,
    /// This boot's mark, until [`EmbeddedFile::close`] releases it.
    mark: Mutex<Option<Mark>>,
    /// After [`EmbeddedFile::close`]: the connection that holds the write lock, so that nothing
    /// writes the file again unsynced once its mark is gone.
    closed: Mutex<Option<SqliteConnection>>,
}

/// How many times, 10 ms apart, [`EmbeddedFile::close`] tries to copy every frame of the WAL into the
/// file while readers still hold older snapshots.
const CLOSE_ATTEMPTS: u32 = 500;

impl EmbeddedFile {
    /// Makes a file written unsynced safe to trust in a later boot: takes the write lock (and
    /// keeps it for as long as any clone lives), copies the WAL into the file, syncs both and
    /// the directory, then removes the mark. Does nothing to a synced file. A failure leaves
    /// the mark, so a later boot rebuilds the read models rather than trust them.
    pub async fn close(&self) -> Result<(), ProjectionError> {
        let taken = self.mark.lock().map(|mut mark| mark.take());
        let Ok(Some(mark)) = taken else {
            return Ok(());
        };
        let mut holder = self.options.connect().await?;
        sqlx::query("BEGIN IMMEDIATE").execute(&mut holder).await?;
        // A checkpoint cannot run on the connection inside a transaction: a second one copies.
        let mut copier = self.options.connect().await?;
        let mut attempts = 0;
        loop {
            // (busy, frames in the WAL, frames copied); -1 frames: not in WAL mode.
            let (_, frames, copied): (i64, i64, i64) =
                sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                    .fetch_one(&mut copier)
                    .await?;
            if frames == copied {
                break;
            }
            attempts += 1;
            if attempts == CLOSE_ATTEMPTS {
                return Err(ProjectionError::Storage(format!(
                    "closing the read models: {copied} of {frames} WAL frames copied; \
                     they stay marked for a rebuild after a restart of the machine"
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        copier.close().await?;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || sync_file_and_wal(&path))
            .await
            .map_err(|e| ProjectionError::Storage(format!("syncing the read models: {e}")))?
            .map_err(|e| ProjectionError::Storage(format!("syncing the read models: {e}")))?;
        let released = mark
            .release()
            .map_err(|e| ProjectionError::Storage(format!("releasing the boot mark: {e}")))?;
        if !released {
            tracing::info!(
                "another process still writes the read models unsynced; it removes the boot mark"
            );
        }
        if let Ok(mut closed) = self.closed.lock() {
            *closed = Some(holder);
        }
        Ok(())
    }
}

/// Syncs the read-model file, its WAL (whose frames a restart reads back over the file: they
/// must all be there) and their directory.
fn sync_file_and_wal(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()?;
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    match std::fs::File::open(PathBuf::from(wal)) {
        Ok(wal) => wal.sync_all()?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

async fn pool(
    options: SqliteConnectOptions,
    connections: u32,
) -> Result<SqlitePool, ProjectionError> {
    Ok(SqlitePoolOptions::new()
        .max_connections(connections)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(options)
        .await?)
}

async fn migrate(conn: &mut SqliteConnection) -> Result<(), ProjectionError> {
    sqlx::migrate!("./migrations/sqlite")
        .run(conn)
        .await
        .map_err(|e| ProjectionError::Storage(format!("migrating read models: {e}")))
}

/// The shortest time between two checkpoints of the read-model file. A projectors' commit
/// past [`AUTOCHECKPOINT_PAGES`] copies (and in a synced file, syncs) what the last round left,
/// so the shorter the pause, the less it waits: at 200 ms a few such commits per 30 s took over 50 ms, and the
/// projection lag's p99 at 1,000 commands/s was 49–63 ms; at 50 ms it was 32–40 ms, for the
/// same CPU (BENCHMARKS.md, "Projection lag: checkpoints every 50 ms"). 20 ms was a little
/// better still (30–35 ms) and a little busier.
const CHECKPOINT_PAUSE: Duration = Duration::from_millis(50);

/// The WAL size (in 4 KiB pages, 256 MiB) past which the checkpointer makes the WAL start
/// again from its beginning (`RESTART`): a backstop. SQLite starts it again only when a write
/// begins after a checkpoint that copied everything, and projectors committing every few
/// milliseconds never leave a `PASSIVE` checkpoint that moment (the WAL grew to 12 GB over a
/// million-event rebuild with nothing else). `RESTART` waits for the writer's transaction to end
/// and holds the next one back while it copies what the last `PASSIVE` round left: at 32 MiB it
/// ran twice a second at 1,000 commands/s, and its waits (25–100 ms) were most of the
/// projection lag's p99 (84 ms). What starts the WAL again under load is now the projectors'
/// own commit past [`AUTOCHECKPOINT_PAGES`], about once a second (lag p99 61 ms, BENCHMARKS.md).
const RESTART_FRAMES: i64 = 65_536;

/// Past this WAL size (in pages, 64 MiB) a projectors' commit checkpoints by itself, as SQLite
/// does by default at 1,000 pages. Run by the only writer right after its commit, such a
/// checkpoint copies every frame and the next transaction starts the WAL again; the background
/// `PASSIVE` rounds have copied most of it already. A larger value (512 MiB) left the WAL to
/// grow to the `RESTART`, and the lag's p99 tripled: every lookup of a page searches the WAL's
/// index, which grows with it; 192 MiB was worse too on a server with a history (p99 161–235
/// against 112–131 ms, BENCHMARKS.md, "Read models unsynced").
const AUTOCHECKPOINT_PAGES: &str = "16384";

/// Copies the read models' write-ahead log back into their file off the commit path.
///
/// SQLite's automatic checkpoint runs inside whichever `COMMIT` pushes the WAL past 1,000 pages,
/// and a profile of the projectors under 1,000 commands/s had 13 % of their SQLite time there:
/// the batch that pays it commits late, and every event in it is late on the read models.
/// So the file's connections leave automatic checkpoints to WALs past
/// [`AUTOCHECKPOINT_PAGES`], and a task checkpoints from a connection of its own every
/// [`CHECKPOINT_PAUSE`]: `PASSIVE` (never blocking a writer or a reader), or `RESTART` once the
/// WAL is past [`RESTART_FRAMES`] (a backstop). It stops when the last handle on the database is dropped.
#[derive(Debug)]
pub(super) struct Checkpointer {
    _stop: watch::Sender<()>,
}

impl Checkpointer {
    async fn spawn(options: &SqliteConnectOptions) -> Result<Self, ProjectionError> {
        let mut conn = options.connect().await?;
        let (stop, mut stopped) = watch::channel(());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(CHECKPOINT_PAUSE) => {}
                    // Only `Err` can come: nothing is ever sent, the sender is only dropped.
                    _ = stopped.changed() => break,
                }
                // (busy, frames in the WAL, frames copied): busy only means a reader still
                // needs an older page; the next round copies it.
                let mut result: Result<(i64, i64, i64), sqlx::Error> =
                    sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                        .fetch_one(&mut conn)
                        .await;
                if matches!(result, Ok((_, frames, _)) if frames >= RESTART_FRAMES) {
                    result = sqlx::query_as("PRAGMA wal_checkpoint(RESTART)")
                        .fetch_one(&mut conn)
                        .await;
                }
                if let Err(error) = result {
                    tracing::warn!(%error, "cannot checkpoint the read models; will try again");
                }
            }
            if let Err(error) = conn.close().await {
                tracing::debug!(%error, "closing the read models' checkpointer");
            }
        });
        Ok(Self { _stop: stop })
    }
}

/// Opens (creating) `<data_dir>/readmodels.db`, migrates it and starts its checkpointer. A file
/// an earlier boot left marked as written unsynced is removed first (the projectors build it
/// again from the log).
pub(super) async fn open(
    data_dir: &Path,
    durability: Durability,
) -> Result<Opened, ProjectionError> {
    let booted = boot::current();
    let unsynced = durability == Durability::Unsynced && booted.is_some();
    let (found, mark) = match &booted {
        Some(id) => boot::claim(data_dir, READ_MODEL_FILE, id, unsynced)
            .map_err(|e| ProjectionError::Storage(format!("the read models' boot mark: {e}")))?,
        None => (Found::Whole, None),
    };
    if let Found::Discarded { boot } = found {
        tracing::warn!(
            earlier_boot = %boot,
            "the read models were being written without syncs when the machine stopped; \
             they were removed and are built again from the log"
        );
    }
    let synchronous = if unsynced {
        SqliteSynchronous::Off
    } else {
        SqliteSynchronous::Normal
    };
    let path = data_dir.join(READ_MODEL_FILE);
    let options = tuned(
        SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true),
        synchronous,
    )
    .pragma("wal_autocheckpoint", AUTOCHECKPOINT_PAGES)
    // A WAL file keeps the size of its largest transaction (a catch-up's batches are hundreds
    // of MB) unless SQLite is told to cut it back when it starts again from the beginning.
    .pragma("journal_size_limit", "67108864");
    // Turning a new file to WAL takes an exclusive lock, and SQLite answers a second
    // connection doing the same at that moment with "database is locked" rather than
    // waiting. So one connection switches the mode and migrates before the pool opens more.
    let mut first = options.connect().await?;
    migrate(&mut first).await?;
    first.close().await?;
    let checkpointer =
        Checkpointer::spawn(&options.clone().pragma("cache_size", CHECKPOINTER_CACHE)).await?;
    let projectors = SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        // Waiting for the connection is waiting for the write lock, as long as SQLite would.
        .acquire_timeout(BUSY_TIMEOUT)
        .connect_with(options.clone().pragma("cache_size", PROJECTORS_CACHE))
        .await?;
    Ok(Opened {
        reads: pool(options.clone().pragma("cache_size", READS_CACHE), 8).await?,
        projectors,
        file: EmbeddedFile {
            _checkpointer: checkpointer,
            options: options.pragma("cache_size", CHECKPOINTER_CACHE),
            path,
            mark: Mutex::new(mark),
            closed: Mutex::new(None),
        },
    })
}

/// A private in-memory database.
pub(super) async fn in_memory() -> Result<SqlitePool, ProjectionError> {
    let options = SqliteConnectOptions::from_str("sqlite::memory:")
        .map_err(|e| ProjectionError::Storage(e.to_string()))?;
    // One connection: every connection to `:memory:` would be a different database.
    let pool = pool(tuned(options, SqliteSynchronous::Normal), 1).await?;
    let mut conn = pool.acquire().await?;
    migrate(&mut conn).await?;
    drop(conn);
    Ok(pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the integer pragma `name` on a connection of `pool`.
    async fn pragma(pool: &SqlitePool, name: &str) -> i64 {
        sqlx::query_scalar(&format!("PRAGMA {name}"))
            .fetch_one(pool)
            .await
            .unwrap_or_else(|e| panic!("PRAGMA {name}: {e}"))
    }

    /// The sizes add up to what SQLite may hold in the process, so each role keeps its own.
    #[tokio::test]
    async fn each_connection_has_the_page_cache_of_its_role() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let opened = open(dir.path(), Durability::Synced)
            .await
            .expect("the read-model file");
        assert_eq!(pragma(&opened.projectors, "cache_size").await, -8000);
        // Not SQLite's default (-2000), so a connection without the pragma fails here.
        assert_eq!(pragma(&opened.reads, "cache_size").await, -2048);
    }

    /// A file written unsynced runs without syncs; closing it copies the whole WAL into the
    /// file, removes the mark and keeps the write lock, so nothing writes it unsynced again.
    #[tokio::test]
    async fn closing_an_unsynced_file_copies_its_wal_and_holds_the_write_lock() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let opened = open(dir.path(), Durability::Unsynced)
            .await
            .expect("the read-model file");
        assert_eq!(pragma(&opened.projectors, "synchronous").await, 0, "OFF");
        assert!(dir.path().join(boot::MARK_FILE).exists());
        sqlx::query(
            "INSERT INTO documents (projection, generation, kind, key, parent, doc) \
             VALUES ('board', 1, 'community', 'c', NULL, '{}')",
        )
        .execute(&opened.projectors)
        .await
        .expect("a document");

        opened.file.close().await.expect("closed");

        assert!(!dir.path().join(boot::MARK_FILE).exists());
        // The file alone, without its WAL, has the document: the close copied it in.
        let alone = dir.path().join("alone.db");
        std::fs::copy(dir.path().join(READ_MODEL_FILE), &alone).expect("a copy of the file");
        let mut copy = SqliteConnection::connect(&format!("sqlite://{}", alone.display()))
            .await
            .expect("the copy");
        let copied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM documents")
            .fetch_one(&mut copy)
            .await
            .expect("a count");
        assert_eq!(copied, 1);
        let mut reader = opened.file.options.connect().await.expect("a connection");
        sqlx::query("PRAGMA busy_timeout = 0")
            .execute(&mut reader)
            .await
            .expect("no waiting");
        let write = sqlx::query("DELETE FROM documents")
            .execute(&mut reader)
            .await;
        assert!(
            write.is_err_and(|e| e.to_string().contains("locked")),
            "a write after the close must wait for the lock"
        );
        let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM documents")
            .fetch_one(&mut reader)
            .await
            .expect("reads still answer");
        assert_eq!(kept, 1);
        // Closing again is harmless.
        opened.file.close().await.expect("closed twice");
    }

    /// A synced file has no mark and nothing to do at the close.
    #[tokio::test]
    async fn a_synced_file_runs_with_normal_syncs_and_no_mark() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let opened = open(dir.path(), Durability::Synced)
            .await
            .expect("the read-model file");
        assert_eq!(pragma(&opened.reads, "synchronous").await, 1, "NORMAL");
        assert!(!dir.path().join(boot::MARK_FILE).exists());
        opened.file.close().await.expect("closed");
    }
}

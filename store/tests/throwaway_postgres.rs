//! The throwaway PostgreSQL server the PostgreSQL backend's tests run against: it starts, it is
//! the server it claims to be, it survives a stop and a resume with its data, and dropping it
//! stops the process. A durable one (for benchmarks) runs with PostgreSQL's default durability.

use lianxi_store::throwaway_postgres::{Durability, Options, ThrowawayPostgres};
use sqlx::{Connection, PgConnection};

async fn connect(server: &ThrowawayPostgres) -> PgConnection {
    PgConnection::connect(&server.url())
        .await
        .unwrap_or_else(|e| panic!("connecting to {}: {e}\n{}", server.url(), server.log()))
}

#[tokio::test]
async fn a_throwaway_server_starts_keeps_its_data_across_a_restart_and_stops_when_dropped() {
    let mut server = ThrowawayPostgres::start().expect("a throwaway PostgreSQL");
    let mut conn = connect(&server).await;
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut conn)
        .await
        .expect("its version");
    assert!(version.starts_with("15"), "PostgreSQL 15, not {version}");
    let fsync: String = sqlx::query_scalar("SHOW fsync")
        .fetch_one(&mut conn)
        .await
        .expect("fsync");
    assert_eq!(fsync, "off", "durability is off for tests only");
    sqlx::raw_sql("CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)")
        .execute(&mut conn)
        .await
        .expect("a table");
    drop(conn);

    // A stop drops connections; after a resume the committed row is there.
    let first_pid = server.pid().expect("running");
    server.stop();
    assert!(server.pid().is_none());
    assert!(
        PgConnection::connect(&server.url()).await.is_err(),
        "nothing listens while it is stopped"
    );
    server.resume().expect("it starts again");
    let mut conn = connect(&server).await;
    let n: i32 = sqlx::query_scalar("SELECT n FROM kept")
        .fetch_one(&mut conn)
        .await
        .expect("the row");
    assert_eq!(n, 7);
    drop(conn);

    let pid = server.pid().expect("running");
    assert_ne!(pid, first_pid);
    drop(server);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|stat| stat.contains(") Z ")),
        "the server process {pid} is gone"
    );
}

#[tokio::test]
async fn a_durable_server_flushes_every_commit_and_stops_when_dropped() {
    let parent = tempfile::tempdir().expect("a parent directory");
    // As root the server runs as an unprivileged account, which must reach the parent.
    std::fs::set_permissions(
        parent.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("a reachable parent");
    let server = ThrowawayPostgres::start_with(&Options {
        durability: Durability::Full,
        parent_dir: Some(parent.path().to_owned()),
        settings: vec![("work_mem".into(), "8MB".into())],
    })
    .expect("a durable throwaway PostgreSQL");
    assert_eq!(server.durability(), Durability::Full);
    assert!(
        server.dir().starts_with(parent.path()),
        "{} is under the parent it was given",
        server.dir().display()
    );
    let mut conn = connect(&server).await;
    for setting in ["fsync", "synchronous_commit", "full_page_writes"] {
        let value: String = sqlx::query_scalar(&format!("SHOW {setting}"))
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("SHOW {setting}: {e}"));
        assert_eq!(value, "on", "{setting} is on for a durable server");
    }
    let work_mem: String = sqlx::query_scalar("SHOW work_mem")
        .fetch_one(&mut conn)
        .await
        .expect("SHOW work_mem");
    assert_eq!(work_mem, "8MB", "a setting given in the options is applied");
    drop(conn);

    let pid = server.pid().expect("running");
    let dir = server.dir().to_owned();
    drop(server);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|stat| stat.contains(") Z ")),
        "the server process {pid} is gone"
    );
    assert!(!dir.exists(), "its files are deleted");
}

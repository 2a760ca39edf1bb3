//! What only the PostgreSQL read models have to show: they keep to their own schema, with their
//! own migration history, in a database they share with the event log, and opening them again
//! (a restart, a second server) migrates nothing twice and keeps every document.

use projections::readdb::{Backend, ReadDb};
use sqlx::{Connection, PgConnection};
use store::postgres::PostgresStore;
use store::throwaway_postgres::ThrowawayPostgres;
use store::EventStore;

async fn fresh_database() -> String {
    ThrowawayPostgres::shared()
        .expect("a throwaway PostgreSQL (scripts/test installs its programs)")
        .fresh_database()
        .await
        .expect("a fresh database")
}

/// (schema, table) of every table of ours in the database, in order.
async fn tables(url: &str) -> Vec<(String, String)> {
    let mut conn = PgConnection::connect(url).await.expect("a raw connection");
    sqlx::query_as(
        "SELECT table_schema::text, table_name::text FROM information_schema.tables \
         WHERE table_schema IN ('public', 'read_models') ORDER BY 1, 2",
    )
    .fetch_all(&mut conn)
    .await
    .expect("the catalogue")
}

async fn migrations(url: &str, schema: &str) -> Vec<i64> {
    let mut conn = PgConnection::connect(url).await.expect("a raw connection");
    sqlx::query_scalar(&format!(
        "SELECT version FROM {schema}._sqlx_migrations ORDER BY version"
    ))
    .fetch_all(&mut conn)
    .await
    .expect("a migration history")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_models_keep_to_their_schema_beside_the_log_with_their_own_migrations() {
    let url = fresh_database().await;
    let store = PostgresStore::connect(&url).await.expect("the log");
    let db = ReadDb::connect(&url).await.expect("the read models");
    assert_eq!(db.backend(), Backend::Postgres);
    assert!(db.sqlite().is_none() && db.postgres().is_some());

    let read_models: Vec<String> = tables(&url)
        .await
        .into_iter()
        .filter(|(schema, _)| schema == "read_models")
        .map(|(_, table)| table)
        .collect();
    assert_eq!(
        read_models,
        [
            "_sqlx_migrations",
            "documents",
            "projections",
            "trace_index",
            "trace_postings"
        ]
    );
    let log: Vec<String> = tables(&url)
        .await
        .into_iter()
        .filter(|(schema, _)| schema == "public")
        .map(|(_, table)| table)
        .collect();
    assert!(log.contains(&"events".to_owned()), "{log:?}");
    assert!(
        !log.iter()
            .any(|t| ["documents", "projections", "trace_index"].contains(&t.as_str())),
        "no read-model table in the log's schema: {log:?}"
    );
    assert_eq!(migrations(&url, "read_models").await, [1, 2, 3, 4]);
    // Room on each page for a document's next version (HOT updates: 0003).
    let mut conn = PgConnection::connect(&url).await.expect("a raw connection");
    let options: Option<Vec<String>> = sqlx::query_scalar(
        "SELECT c.reloptions FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'read_models' AND c.relname = 'documents'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("the documents table");
    assert_eq!(options, Some(vec!["fillfactor=70".to_owned()]));
    let log_history = migrations(&url, "public").await;

    // Some documents, then a restart: nothing is migrated again and nothing is lost.
    let row = db
        .create_generation("board", 1)
        .await
        .expect("a generation");
    assert!(row.active);
    drop(db);
    let again = ReadDb::connect(&url).await.expect("reopened");
    assert_eq!(
        again.active("board").await.expect("readable"),
        Some(row),
        "the generation is still there"
    );
    assert_eq!(migrations(&url, "read_models").await, [1, 2, 3, 4]);
    assert_eq!(migrations(&url, "public").await, log_history);
    assert_eq!(store.head().await.expect("the log answers"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_model_database_of_its_own_needs_no_log_beside_it() {
    let url = fresh_database().await;
    let db = ReadDb::connect(&url).await.expect("the read models");
    assert!(db.generations().await.expect("readable").is_empty());
    assert!(tables(&url)
        .await
        .iter()
        .all(|(schema, _)| schema == "read_models"));
}

#[tokio::test]
async fn a_bad_url_is_a_storage_error_not_a_panic() {
    let error = ReadDb::connect("not a url").await.expect_err("refused");
    assert!(matches!(error, projections::ProjectionError::Storage(_)));
}

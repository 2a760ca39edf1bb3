//! A connection or transaction of the read-model database on either backend, so that the code
//! running SQL inside a batch (collections, the trace index, checkpoints) is written once.

use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, Postgres, Sqlite, SqliteConnection, Transaction};

use crate::ProjectionError;

/// A borrowed connection (or open transaction) of the read-model database.
pub enum Conn<'c> {
    Sqlite(&'c mut SqliteConnection),
    Postgres(&'c mut PgConnection),
}

/// Runs `$body` with `$c` bound to the backend's own connection type and `$Db` to its
/// [`sqlx::Database`]: one body, type-checked (and compiled) once per backend, so the SQLite
/// path is exactly the code it was. SQL in the body must suit both dialects; `QueryBuilder`
/// writes each backend's placeholders.
macro_rules! on_conn {
    ($conn:expr, |$c:ident, $Db:ident| $body:expr) => {
        match $conn {
            $crate::readdb::Conn::Sqlite(inner) => {
                #[allow(unused)]
                type $Db = ::sqlx::Sqlite;
                let $c: &mut ::sqlx::SqliteConnection = &mut **inner;
                $body
            }
            $crate::readdb::Conn::Postgres(inner) => {
                #[allow(unused)]
                type $Db = ::sqlx::Postgres;
                let $c: &mut ::sqlx::PgConnection = &mut **inner;
                $body
            }
        }
    };
}
pub(crate) use on_conn;

/// A connection taken from the pool, for reads outside a write transaction.
pub(crate) enum Pooled {
    Sqlite(PoolConnection<Sqlite>),
    Postgres(PoolConnection<Postgres>),
}

impl Pooled {
    pub(crate) fn conn(&mut self) -> Conn<'_> {
        match self {
            Pooled::Sqlite(c) => Conn::Sqlite(c),
            Pooled::Postgres(c) => Conn::Postgres(c),
        }
    }
}

/// An open transaction; dropped without [`Tx::commit`], it rolls back.
pub(crate) enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

impl Tx {
    pub(crate) fn conn(&mut self) -> Conn<'_> {
        match self {
            Tx::Sqlite(tx) => Conn::Sqlite(tx),
            Tx::Postgres(tx) => Conn::Postgres(tx),
        }
    }

    pub(crate) async fn commit(self) -> Result<(), ProjectionError> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await?,
            Tx::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }

    pub(crate) async fn rollback(self) -> Result<(), ProjectionError> {
        match self {
            Tx::Sqlite(tx) => tx.rollback().await?,
            Tx::Postgres(tx) => tx.rollback().await?,
        }
        Ok(())
    }
}

//! What the connection pools check of a connection handed back to them: that no transaction
//! is left open on it.
//!
//! When SQLite fails a COMMIT with an I/O error it rolls the transaction back itself, but sqlx
//! counts it as still open (its depth goes down only when COMMIT or ROLLBACK succeeds). The
//! next `begin()` on that connection then issues `SAVEPOINT` instead of `BEGIN`; after one
//! `ROLLBACK TO SAVEPOINT` the connection sits inside a write transaction that never ends, and
//! every later "commit" on it only releases a savepoint: answered 201, never stored, and every
//! other connection waits for its lock. A connection in that state is closed here, which rolls
//! back whatever it holds, so `commit()` returning Ok always means a real COMMIT.

use std::future::Future;
use std::pin::Pin;

use sea_orm::sqlx::pool::PoolConnectionMetadata;
use sea_orm::sqlx::postgres::PgConnection;
use sea_orm::sqlx::sqlite::SqliteConnection;
use sea_orm::sqlx::{self, Connection, Executor};

type Check<'c> = Pin<Box<dyn Future<Output = Result<bool, sqlx::Error>> + Send + 'c>>;

/// `after_release` for SQLite: keep the connection only when neither sqlx nor SQLite itself
/// holds a transaction on it (SQLite's own flag is not reachable without `unsafe`, so ask it: a
/// `BEGIN` fails inside a transaction).
pub(crate) fn sqlite_outside_transaction(conn: &mut SqliteConnection, _: PoolConnectionMetadata) -> Check<'_> {
    Box::pin(async move {
        // Lets a rollback queued by a dropped transaction run first, so the depth is settled.
        conn.ping().await?;
        if conn.is_in_transaction() {
            tracing::warn!("a database connection was handed back inside a transaction; it is closed");
            return Ok(false);
        }
        match conn.execute(sqlx::raw_sql("BEGIN")).await {
            Ok(_) => {
                conn.execute(sqlx::raw_sql("ROLLBACK")).await?;
                Ok(true)
            }
            Err(_) => {
                tracing::warn!("SQLite holds a transaction on a connection sqlx counts as idle; it is closed");
                Ok(false)
            }
        }
    })
}

/// `after_release` for PostgreSQL: the same test on sqlx's count (PostgreSQL ends a failed
/// transaction itself; a broken connection is closed by sqlx).
pub(crate) fn postgres_outside_transaction(conn: &mut PgConnection, _: PoolConnectionMetadata) -> Check<'_> {
    Box::pin(async move {
        if conn.is_in_transaction() {
            tracing::warn!("a database connection was handed back inside a transaction; it is closed");
            return Ok(false);
        }
        conn.ping().await?;
        Ok(true)
    })
}

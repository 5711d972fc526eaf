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
/// transaction itself; a broken connection is closed by sqlx). No ping here: sqlx pings every
/// connection handed back right after this test (which also sends a rollback a dropped
/// transaction queued), and a second one was a round trip per statement for nothing. (sqlx
/// pings it again when it is handed out: kept, so that a connection the server dropped since,
/// in a restart or a failover, is replaced unseen instead of failing a request.)
pub(crate) fn postgres_outside_transaction(conn: &mut PgConnection, _: PoolConnectionMetadata) -> Check<'_> {
    Box::pin(async move {
        if conn.is_in_transaction() {
            tracing::warn!("a database connection was handed back inside a transaction; it is closed");
            return Ok(false);
        }
        Ok(true)
    })
}

/// `after_connect` for SQLite: refuse a connection that cannot write. When the file cannot be
/// opened for writing (an I/O fault, a read-only remount, `chattr +i`), SQLite quietly opens it
/// read-only instead, and that connection refuses every write for as long as it lives, long
/// after the file is writable again. A write that is rolled back (the header's `user_version`
/// set to itself) tells. It must not wait for the write lock: the connection may be opened for
/// the very task that holds it (a transaction that reads on a second connection), so the probe
/// runs without a busy timeout, and a connection refused the lock because another one is
/// writing is one that asked for it: a read-only connection never does.
pub(crate) fn sqlite_writable(
    conn: &mut SqliteConnection,
    _: PoolConnectionMetadata,
) -> Pin<Box<dyn Future<Output = Result<(), sqlx::Error>> + Send + '_>> {
    Box::pin(async move {
        let busy_ms: i64 = sqlx::query_scalar("PRAGMA busy_timeout").fetch_one(&mut *conn).await?;
        conn.execute(sqlx::raw_sql("PRAGMA busy_timeout = 0")).await?;
        let probe = write_probe(conn).await;
        conn.execute(sqlx::raw_sql(sqlx::AssertSqlSafe(format!("PRAGMA busy_timeout = {busy_ms}")))).await?;
        match probe {
            // SQLITE_BUSY (5, in any extended form): another connection holds the write lock,
            // which a read-only connection never asks for, so this one can write.
            Err(sqlx::Error::Database(e)) if e.code().and_then(|c| c.parse::<i32>().ok()).is_some_and(|c| c & 0xff == 5) => Ok(()),
            other => other,
        }
    })
}

async fn write_probe(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    conn.execute(sqlx::raw_sql("BEGIN IMMEDIATE")).await?;
    let version: Result<i64, sqlx::Error> = sqlx::query_scalar("PRAGMA main.user_version").fetch_one(&mut *conn).await;
    let probe = match version {
        Ok(v) => conn.execute(sqlx::raw_sql(sqlx::AssertSqlSafe(format!("PRAGMA main.user_version = {v}")))).await.map(drop),
        Err(e) => Err(e),
    };
    conn.execute(sqlx::raw_sql("ROLLBACK")).await?;
    probe
}

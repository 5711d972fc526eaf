//! PostgreSQL over TCP without Nagle's algorithm (issue 15, item 1): sqlx 0.9.0 leaves it on
//! (transact-rs/sqlx#4335), so a statement larger than its write buffer waits for the server's
//! delayed acknowledgement, about 40 ms on Linux, every time; a stored Plan is ~30 KB, and
//! bookings over TCP ran at a fifth of their speed over the Unix socket. The fix is carried as a
//! patched sqlx-core (vendor/, see Cargo.toml's [patch.crates-io]).
//!
//! This test sends statements of 64 KB over 127.0.0.1 and looks at how long each takes: with
//! Nagle on, every one takes 40 ms or more; without, a few milliseconds even on a busy machine.
//! It judges by the median, so one slow moment does not fail it, and the margin is ten-fold.
//! Skipped (with a note) when no PostgreSQL listens, unless ITINERARY_REQUIRE_POSTGRES is set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use sea_orm::sqlx::{self, Connection, Executor};

#[tokio::test]
async fn large_statements_over_tcp_do_not_wait_for_delayed_acks() {
    let url = "postgres://postgres@127.0.0.1:5432/test";
    let mut conn = match sqlx::PgConnection::connect(url).await {
        Ok(c) => c,
        Err(e) if std::env::var_os("ITINERARY_REQUIRE_POSTGRES").is_none() => {
            eprintln!("no PostgreSQL on 127.0.0.1:5432 ({e}): skipped");
            return;
        }
        Err(e) => panic!("PostgreSQL on 127.0.0.1:5432 is required: {e}"),
    };
    let big = "x".repeat(64 * 1024);
    let mut took = Vec::new();
    for _ in 0..15 {
        let t = Instant::now();
        let (n,): (i32,) = sqlx::query_as("SELECT length($1)::int").bind(&big).fetch_one(&mut conn).await.unwrap();
        took.push(t.elapsed());
        assert_eq!(n, 64 * 1024);
    }
    conn.execute("SELECT 1").await.unwrap();
    took.sort();
    let median = took[took.len() / 2];
    assert!(
        median < Duration::from_millis(20),
        "a 64 KB statement takes {median:?} at the median over TCP ({took:?}): Nagle's algorithm is on"
    );
}

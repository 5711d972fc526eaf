//! The job worker. What is due when, and whether it is still wanted, lives in the project's
//! own `scheduled_message` table; apalis carries the work between processes.
//!
//! - The dispatcher wakes every `poll` and, by the service's clock, moves messages whose time
//!   has come from `pending` to `queued`. It then pushes one apalis job per message. The job
//!   is due at once, and its idempotency key stops two dispatchers from pushing it twice.
//!   apalis cannot move or cancel a pushed job, and a test clock runs ahead of apalis's own
//!   `run_at`, so jobs are only pushed when they are due.
//! - An apalis worker (SQLite or PostgreSQL, in the service's database) runs each job through
//!   `Deliverer::deliver`. That claims the row with a conditional UPDATE, so a duplicate job or
//!   a second worker finds nothing to do.
//! - A message queued or being sent for longer than the lease goes back to `pending`. This
//!   covers a lost job or a worker killed mid-send. The only way a message goes out twice is a
//!   worker dying after the provider accepted it and before the `sent` record was written.

mod deliver;

pub use deliver::{Deliverer, DeliveryRules, Outcome};

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::*;
use apalis_postgres::{PgPool, PostgresStorage};
use apalis_sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteStorage};
use chrono::Utc;
pub use itinerary_store::Clock;
use itinerary_store::StoreError;
use serde::{Deserialize, Serialize};

/// The apalis queue every process names explicitly (the default is the Rust type name).
pub const QUEUE: &str = "itinerary-deliver";

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("job queue: {0}")]
    Queue(String),
}

/// The job: deliver one scheduled message (by id; what it says is read when it runs).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Deliver {
    pub message_id: i32,
}

/// How the worker polls and how many messages it sends at once (`[worker]` settings).
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    /// How often the dispatcher looks for due messages, and apalis for jobs.
    pub poll: Duration,
    /// Messages sent at the same time by this process.
    pub concurrency: usize,
    /// Due messages moved to the queue per dispatcher pass.
    pub batch: u64,
    /// A message held longer than this (queued or sending) is taken back.
    pub lease: chrono::Duration,
    pub heartbeat: Duration,
}

/// The apalis job store, in the service's own database.
#[derive(Clone, Debug)]
pub enum Queue {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Queue {
    /// Connects to the database at `url` and creates apalis's tables if they are missing.
    pub async fn connect(url: &str) -> Result<Queue, WorkerError> {
        let err = |e: &dyn std::fmt::Display| WorkerError::Queue(e.to_string());
        if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url).map_err(|e| err(&e))?.busy_timeout(Duration::from_secs(10));
            // apalis's setup turns `synchronous` off on the connection it is given: give it one
            // of its own and throw it away, so the queue keeps SQLite's durable default.
            let setup = SqlitePoolOptions::new().max_connections(1).connect_with(opts.clone()).await.map_err(|e| err(&e))?;
            SqliteStorage::<()>::setup(&setup).await.map_err(|e| err(&e))?;
            setup.close().await;
            let pool = SqlitePoolOptions::new().max_connections(2).connect_with(opts).await.map_err(|e| err(&e))?;
            Ok(Queue::Sqlite(pool))
        } else {
            let pool = PgPool::connect(url).await.map_err(|e| err(&e))?;
            PostgresStorage::<()>::setup(&pool).await.map_err(|e| err(&e))?;
            Ok(Queue::Postgres(pool))
        }
    }
}

/// Runs the dispatcher and an apalis worker until `shutdown` completes. A job in progress
/// finishes first.
pub async fn run(
    deliverer: Arc<Deliverer>,
    queue: Queue,
    settings: WorkerSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WorkerError> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let name = deliverer.name.clone();
    let dispatcher = {
        let deliverer = deliverer.clone();
        let queue = queue.clone();
        let settings = settings.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut pusher = Pusher::new(&queue, &settings);
            loop {
                if let Err(e) = dispatch(&deliverer, &mut pusher, &settings).await {
                    tracing::warn!(error = %e, "dispatching due messages failed; trying again");
                }
                tokio::select! {
                    _ = tokio::time::sleep(settings.poll) => {}
                    _ = stop.changed() => break,
                }
            }
        })
    };
    let mut stop = stop_rx.clone();
    let signal = async move {
        let _ = stop.changed().await;
        Ok::<(), std::io::Error>(())
    };
    let handler = move |job: Deliver, d: Data<Arc<Deliverer>>| async move {
        match d.deliver(job.message_id).await {
            Ok(outcome) => {
                tracing::debug!(message = job.message_id, ?outcome, "job done");
                Ok::<(), BoxDynError>(())
            }
            // The database is away: the row stays queued and its lease brings it back.
            Err(e) => Err(Box::new(e) as BoxDynError),
        }
    };
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let result = match queue {
        Queue::Sqlite(pool) => {
            let backend = SqliteStorage::<Deliver>::new(&pool).with_config(sqlite_config(&settings)).poll_with_interval(settings.poll);
            WorkerBuilder::new(name.as_str())
                .backend(backend)
                .data(deliverer)
                .concurrency(settings.concurrency)
                .build(handler)
                .run_until(signal)
                .await
        }
        Queue::Postgres(pool) => {
            let backend = PostgresStorage::<Deliver>::new(&pool).with_config(pg_config(&settings)).poll_with_interval(settings.poll);
            WorkerBuilder::new(name.as_str())
                .backend(backend)
                .data(deliverer)
                .concurrency(settings.concurrency)
                .build(handler)
                .run_until(signal)
                .await
        }
    };
    let _ = dispatcher.await;
    result.map_err(|e| WorkerError::Queue(e.to_string()))
}

fn sqlite_config(s: &WorkerSettings) -> apalis_sqlite::Config {
    apalis_sqlite::Config::default().queue(QUEUE).batch_size(s.concurrency.max(1)).heartbeat_interval(s.heartbeat)
}

fn pg_config(s: &WorkerSettings) -> apalis_postgres::Config {
    apalis_postgres::Config::default().queue(QUEUE).batch_size(s.concurrency.max(1)).heartbeat_interval(s.heartbeat)
}

/// Pushes jobs to whichever database holds the queue.
enum Pusher {
    Sqlite(SqliteStorage<Deliver>),
    Postgres(PostgresStorage<Deliver>),
}

impl Pusher {
    fn new(queue: &Queue, s: &WorkerSettings) -> Pusher {
        match queue {
            Queue::Sqlite(pool) => Pusher::Sqlite(SqliteStorage::new(pool).with_config(sqlite_config(s))),
            Queue::Postgres(pool) => Pusher::Postgres(PostgresStorage::new(pool).with_config(pg_config(s))),
        }
    }

    async fn push(&mut self, message_id: i32, key: String) -> Result<(), WorkerError> {
        let task = TaskBuilder::new(Deliver { message_id }).idempotency_key(key).max_attempts(3).build();
        let r = match self {
            Pusher::Sqlite(s) => s.push_task(task).await.map_err(|e| e.to_string()),
            Pusher::Postgres(s) => s.push_task(task).await.map_err(|e| e.to_string()),
        };
        r.map_err(WorkerError::Queue)
    }
}

/// One pass: take back stale claims, then queue what is due.
async fn dispatch(d: &Deliverer, pusher: &mut Pusher, s: &WorkerSettings) -> Result<(), WorkerError> {
    let abandoned = d.store.requeue_stale(Utc::now(), s.lease).await?;
    if abandoned > 0 {
        tracing::warn!(abandoned, "sends by a worker that stopped are taken back; one may have gone out already");
    }
    loop {
        let now = d.clock.now().await?;
        let due = d.store.due_messages(now, s.batch).await?;
        if due.is_empty() {
            return Ok(());
        }
        let ids: Vec<i32> = due.iter().map(|(id, _)| *id).collect();
        let queued_at = Utc::now();
        // Only what this pass moved: another dispatcher may have taken some of them.
        for id in d.store.mark_queued(&ids, queued_at).await? {
            pusher.push(id, format!("m{id}.q{}", queued_at.timestamp_micros())).await?;
        }
        if (due.len() as u64) < s.batch {
            return Ok(());
        }
    }
}

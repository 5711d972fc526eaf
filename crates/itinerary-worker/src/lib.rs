//! The job worker. What is due when, and whether it is still wanted, lives in the project's
//! own `scheduled_message` table; apalis carries the work between processes.
//!
//! - The dispatcher wakes every `poll` (sooner while there is a backlog) and, by the
//!   service's clock, moves messages whose time has come from `pending` to `queued`: only the
//!   rows its own UPDATE moved, so two dispatchers never queue one message twice. It pushes
//!   them as apalis jobs of up to `job_size` ids, due at once. apalis cannot move or cancel a
//!   pushed job, and a test clock runs ahead of apalis's own `run_at`, so jobs are only pushed
//!   when they are due.
//! - An apalis worker (SQLite or PostgreSQL, in the service's database) runs each job through
//!   `Deliverer::deliver`. That claims the rows with a conditional UPDATE, so a duplicate job or
//!   a second worker finds nothing to do.
//! - A message queued or being sent for longer than the lease goes back to `pending`. This
//!   covers a lost job or a worker killed mid-send. The only way a message goes out twice is a
//!   worker dying after the provider accepted it and before the `sent` record was written.

mod deliver;
mod health;
mod notice;

pub use deliver::{Deliverer, DeliveryRules, Outcome};
pub use health::{Health, Report};

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
use sea_orm::sqlx::postgres::PgPoolOptions;
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

/// The job: deliver the scheduled messages that came due together (by id; what each says is
/// read when it runs). `[worker] job_size` caps how many one job carries; 1 makes a job per
/// message.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Deliver {
    pub messages: Vec<i32>,
}

/// How the worker polls and how many messages it sends at once (`[worker]` settings).
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    /// How often the dispatcher looks for due messages.
    pub poll: Duration,
    /// How often apalis looks for jobs (it takes one batch per look, so this paces a backlog).
    pub fetch: Duration,
    /// Messages sent at the same time by this process.
    pub concurrency: usize,
    /// Due messages moved to the queue per dispatcher pass.
    pub batch: u64,
    /// Messages per job at most.
    pub job_size: usize,
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
    /// The job queue in the service's database, its tables created if missing. On SQLite it
    /// shares the store's pool: one file has one writer, and writers waiting in one pool take
    /// turns at once where writers of two pools would sleep in SQLite's busy handler.
    pub async fn connect(store: &itinerary_store::Store, url: &str) -> Result<Queue, WorkerError> {
        let err = |e: &dyn std::fmt::Display| WorkerError::Queue(e.to_string());
        match store.sqlite_pool() {
            Some(pool) => {
                // apalis's setup turns `synchronous` off on the connection it is given: give it
                // one of its own and throw it away, so the store keeps SQLite's durable default.
                let opts = SqliteConnectOptions::from_str(url).map_err(|e| err(&e))?.busy_timeout(Duration::from_secs(10));
                let setup = SqlitePoolOptions::new().max_connections(1).connect_with(opts).await.map_err(|e| err(&e))?;
                SqliteStorage::<()>::setup(&setup).await.map_err(|e| err(&e))?;
                setup.close().await;
                Ok(Queue::Sqlite(pool))
            }
            None => {
                // A fetch that waits this long for a connection is an outage: apalis then ends
                // the consumer, and `run` starts it again, rather than every poll hanging for
                // sqlx's default of 30 s.
                let pool = PgPoolOptions::new().acquire_timeout(Duration::from_secs(10)).connect(url).await.map_err(|e| err(&e))?;
                PostgresStorage::<()>::setup(&pool).await.map_err(|e| err(&e))?;
                Ok(Queue::Postgres(pool))
            }
        }
    }

    /// Pushes the jobs of one dispatch together (one transaction on SQLite, one multi-row
    /// INSERT on PostgreSQL). Their idempotency keys are unique per dispatch; what keeps two
    /// dispatchers from queueing one message twice is `mark_queued`'s conditional UPDATE.
    async fn push(&self, jobs: &[(Vec<i32>, String)]) -> Result<(), WorkerError> {
        let err = |e: &dyn std::fmt::Display| WorkerError::Queue(e.to_string());
        let tasks = jobs
            .iter()
            .map(|(ids, key)| {
                let args = serde_json::to_vec(&Deliver { messages: ids.clone() }).map_err(|e| err(&e))?;
                Ok(TaskBuilder::new(args).idempotency_key(key).max_attempts(3).build())
            })
            .collect::<Result<Vec<_>, WorkerError>>()?;
        match self {
            Queue::Sqlite(pool) => {
                let mut tx = pool.begin().await.map_err(|e| err(&e))?;
                apalis_sqlite::queries::push_tasks(&mut *tx, QUEUE, &tasks).await.map_err(|e| err(&e))?;
                tx.commit().await.map_err(|e| err(&e))
            }
            Queue::Postgres(pool) => {
                let mut conn = pool.acquire().await.map_err(|e| err(&e))?;
                apalis_postgres::queries::push_tasks(&mut *conn, QUEUE, tasks).await.map_err(|e| err(&e))
            }
        }
    }

    /// Deletes finished jobs. The truth is in `scheduled_message`, so a finished job is of no
    /// further use, and apalis-sqlite's acknowledgement scans the whole job table: left to
    /// grow, every job costs more than the last. (apalis's own `vacuum` also runs VACUUM,
    /// which rewrites the service's whole SQLite file.)
    async fn sweep(&self) -> Result<u64, WorkerError> {
        let err = |e: &dyn std::fmt::Display| WorkerError::Queue(e.to_string());
        let done = match self {
            Queue::Sqlite(pool) => sea_orm::sqlx::query("DELETE FROM Jobs WHERE job_type = ?1 AND status IN ('Done', 'Killed')")
                .bind(QUEUE)
                .execute(pool)
                .await
                .map_err(|e| err(&e))?
                .rows_affected(),
            Queue::Postgres(pool) => sea_orm::sqlx::query("DELETE FROM apalis.jobs WHERE job_type = $1 AND status IN ('Done', 'Killed')")
                .bind(QUEUE)
                .execute(pool)
                .await
                .map_err(|e| err(&e))?
                .rows_affected(),
        };
        Ok(done)
    }
}

/// Runs the dispatcher and an apalis worker until `shutdown` completes. A job in progress
/// finishes first.
///
/// Neither stops for a database outage. The dispatcher retries every poll. apalis ends its
/// worker on the first error of its backend (a failed fetch, heartbeat or acknowledgement:
/// `-> Dead`), so the consumer is built again under a new name, after a pause that grows from
/// 1 s to 8 s while it keeps failing; what the dead one had fetched comes back through the
/// message lease. The deliverer's `health` says which state each is in, for `/health`.
pub async fn run(
    deliverer: Arc<Deliverer>,
    queue: Queue,
    settings: WorkerSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WorkerError> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let health = deliverer.health.clone();
    health.starting();
    // The relay once at start, as a send meets it: a wrong certificate or password is said now,
    // in the log and in /health, not a day of retries later.
    let checker = deliverer.clone();
    tokio::spawn(async move { checker.check_relay().await });
    let dispatcher =
        tokio::spawn(supervise_dispatcher(deliverer.clone(), queue.clone(), settings.clone(), health.clone(), stop_rx.clone()));
    let renewer = tokio::spawn(renew_claims(deliverer.clone(), settings.heartbeat, stop_rx.clone()));
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |rx: &tokio::sync::watch::Receiver<bool>| *rx.borrow();
    let mut incarnation = 0u32;
    let mut failures = 0u32;
    let result = loop {
        if stopped(&stop_rx) {
            break Ok(());
        }
        // A name of its own: apalis refuses one still registered by the worker that died.
        let name = if incarnation == 0 { deliverer.name.clone() } else { format!("{}.r{incarnation}", deliverer.name) };
        incarnation += 1;
        let started = std::time::Instant::now();
        let outcome = consume(&deliverer, &queue, &settings, &health, &name, stop_rx.clone()).await;
        match outcome {
            Ok(()) => break Ok(()),
            Err(e) if stopped(&stop_rx) => break Err(e),
            Err(e) => {
                // A consumer that ran for a while before failing starts again at once-ish.
                if started.elapsed() > Duration::from_secs(60) {
                    failures = 0;
                }
                let pause = Duration::from_secs(1 << failures.min(3));
                failures += 1;
                tracing::error!(error = %e, worker = %name, retry_in_s = pause.as_secs(), "the job consumer stopped; starting it again");
                health.failed(&e.to_string());
                let mut stop = stop_rx.clone();
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    _ = stop.wait_for(|s| *s) => break Ok(()),
                }
            }
        }
    };
    // The dispatcher and the renewer end at their next pass; one stuck on the database must not
    // keep the process from stopping.
    let grace = Duration::from_secs(8);
    let _ = tokio::time::timeout(grace, dispatcher).await;
    let _ = tokio::time::timeout(grace, renewer).await;
    health.stopped();
    result
}

/// Renews this worker's claims every heartbeat until the stop signal (see `sending_lease`).
async fn renew_claims(deliverer: Arc<Deliverer>, every: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        if let Err(e) = deliverer.store.renew_claims(&deliverer.name, &deliverer.in_flight.ids(), Utc::now()).await {
            tracing::warn!(error = %e, "renewing this worker's claims failed; trying again");
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
}

/// One apalis consumer, until the stop signal (Ok) or its backend fails (Err).
async fn consume(
    deliverer: &Arc<Deliverer>,
    queue: &Queue,
    settings: &WorkerSettings,
    health: &Health,
    name: &str,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    let signal = async move {
        let _ = stop.wait_for(|s| *s).await;
        Ok::<(), std::io::Error>(())
    };
    let handler = move |job: Deliver, d: Data<Arc<Deliverer>>| async move {
        match d.deliver(&job.messages).await {
            Ok(outcomes) => {
                tracing::debug!(messages = job.messages.len(), ?outcomes, "job done");
                Ok::<(), BoxDynError>(())
            }
            // The database is away: the row stays queued and its lease brings it back.
            Err(e) => Err(Box::new(e) as BoxDynError),
        }
    };
    let beats = health.clone();
    let on_event = move |_: &WorkerContext, e: &Event| {
        if matches!(e, Event::HeartBeat) {
            beats.beat();
        }
    };
    // The same worker on either backend (their types differ, so a macro, not a function).
    macro_rules! work {
        ($backend:expr) => {
            WorkerBuilder::new(name)
                .backend($backend.poll_with_interval(settings.fetch))
                .data(deliverer.clone())
                .concurrency(settings.concurrency)
                .on_event(on_event)
                .build(handler)
                .run_until(signal)
                .await
        };
    }
    let result = match queue {
        Queue::Sqlite(pool) => work!(SqliteStorage::<Deliver>::new(pool).with_config(sqlite_config(settings))),
        Queue::Postgres(pool) => work!(PostgresStorage::<Deliver>::new(pool).with_config(pg_config(settings))),
    };
    result.map_err(|e| WorkerError::Queue(e.to_string()))
}

/// The dispatcher, started again should it ever end before the stop signal (a panic).
async fn supervise_dispatcher(
    deliverer: Arc<Deliverer>,
    queue: Queue,
    settings: WorkerSettings,
    health: Health,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let pass = tokio::spawn(dispatch_loop(deliverer.clone(), queue.clone(), settings.clone(), health.clone(), stop.clone()));
        match pass.await {
            Ok(()) => return,
            Err(e) if *stop.borrow() => {
                tracing::error!(error = %e, "the dispatcher failed while stopping");
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "the dispatcher failed; starting it again");
                health.failed(&format!("dispatcher: {e}"));
                tokio::time::sleep(settings.poll).await;
            }
        }
    }
}

async fn dispatch_loop(
    deliverer: Arc<Deliverer>,
    queue: Queue,
    settings: WorkerSettings,
    health: Health,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut last_sweep = std::time::Instant::now() - SWEEP_EVERY;
    // Since when this process has reached the database without a failure. After an outage, the
    // other workers' claims went unrenewed too: they get the sending lease to renew them before
    // this one takes anything back as abandoned.
    let mut reached_since: Option<std::time::Instant> = None;
    loop {
        if last_sweep.elapsed() >= SWEEP_EVERY {
            last_sweep = std::time::Instant::now();
            let settled =
                reached_since.is_some_and(|t| chrono::Duration::from_std(t.elapsed()).is_ok_and(|d| d >= sending_lease(&settings)));
            if let Err(e) = sweep(&deliverer, &queue, &settings, settled).await {
                tracing::warn!(error = %e, "taking back stale messages failed; trying again");
                reached_since = None;
            }
        }
        // LINE notices (linking offers) are few: sent from here, a handful per pass.
        if let Err(e) = deliverer.send_line_notices(sending_lease(&settings), 20).await {
            tracing::warn!(error = %e, "sending LINE notices failed; trying again");
        }
        // While there is a backlog, come back as soon as the queue has room.
        let pause = match dispatch(&deliverer, &queue, &settings).await {
            Ok(n) => {
                health.dispatched(Ok(()));
                reached_since.get_or_insert_with(std::time::Instant::now);
                if n == 0 { settings.poll } else { settings.fetch }
            }
            Err(e) => {
                tracing::warn!(error = %e, "dispatching due messages failed; trying again");
                health.dispatched(Err(e.to_string()));
                reached_since = None;
                settings.poll
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
}

fn sqlite_config(s: &WorkerSettings) -> apalis_sqlite::Config {
    apalis_sqlite::Config::default().queue(QUEUE).batch_size(usize::try_from(s.batch).unwrap_or(500).max(1)).heartbeat_interval(s.heartbeat)
}

fn pg_config(s: &WorkerSettings) -> apalis_postgres::Config {
    apalis_postgres::Config::default()
        .queue(QUEUE)
        .batch_size(usize::try_from(s.batch).unwrap_or(500).max(1))
        .heartbeat_interval(s.heartbeat)
}

/// How long a claim on a message being sent lasts unrenewed: three heartbeats, in which a live
/// worker renews it three times. A worker killed mid-send loses its messages to the others this
/// soon, not after the long `lease`.
fn sending_lease(s: &WorkerSettings) -> chrono::Duration {
    chrono::Duration::from_std(s.heartbeat * 3).unwrap_or(s.lease)
}

/// How often claims are checked for staleness and finished jobs deleted.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Takes back stale claims and deletes finished jobs. Until `settled` (this process has reached
/// the database for a sending lease), a sending claim is stale only after the long lease.
async fn sweep(d: &Deliverer, queue: &Queue, s: &WorkerSettings, settled: bool) -> Result<(), WorkerError> {
    let sending = if settled { sending_lease(s) } else { s.lease };
    let abandoned = d.store.requeue_stale(Utc::now(), s.lease, sending).await?;
    if abandoned > 0 {
        tracing::warn!(abandoned, "sends by a worker that stopped are taken back; one may have gone out already");
    }
    queue.sweep().await?;
    Ok(())
}

/// One pass: queue what is due, keeping at most `batch` messages queued at a time (the rest
/// wait in `pending`, where a new version can still supersede them). Returns how many it queued.
async fn dispatch(d: &Deliverer, queue: &Queue, s: &WorkerSettings) -> Result<usize, WorkerError> {
    let room = s.batch.saturating_sub(d.store.queued_count().await?);
    if room == 0 {
        return Ok(0);
    }
    let now = d.clock.now().await?;
    let due = d.store.due_messages(now, room).await?;
    if due.is_empty() {
        return Ok(0);
    }
    let ids: Vec<i32> = due.iter().map(|(id, _)| *id).collect();
    let queued_at = Utc::now();
    // Only what this pass moved: another dispatcher may have taken some of them.
    let queued = d.store.mark_queued(&ids, queued_at).await?;
    let jobs: Vec<(Vec<i32>, String)> = queued
        .chunks(s.job_size.max(1))
        .map(|c| (c.to_vec(), format!("m{}.n{}.q{}", c[0], c.len(), queued_at.timestamp_micros())))
        .collect();
    queue.push(&jobs).await?;
    Ok(queued.len())
}

//! Storage of the service: patients, escorts and resources, itineraries with numbered versions
//! (their events, bookings, scheduled messages and calendar UIDs), coordinators and their tokens,
//! patients' feed tokens and the audit log, in SQLite (the embedded default) or PostgreSQL.
//!
//! Booking: a new itinerary is planned by its request, against what is stored and what this
//! process is about to store (one plan at a time per process), and turned into rows there, in
//! parallel with other requests. The
//! booking writer (`group`) then stores the itineraries that arrived meanwhile in one
//! transaction: it takes the booking lock (a row every booking updates first, so bookings from
//! any number of processes queue there), checks each plan against what is held now
//! (`Ledger::admits`), plans again the few that no longer fit, and writes them with one
//! statement per table. Nothing is half-stored: any failure rolls the whole transaction back.

mod deliveries;
pub mod entity;
mod group;
mod idempotency;
mod itineraries;
mod line;
mod lists;
mod outcomes;
mod people;
mod pool;
mod replies;
mod sessions;
mod stored;
mod token;
mod unique;

pub use deliveries::{Claimed, Clock, Delivered, DeliveryTarget, FailedMessage, ResendError, VersionPlan, carries_calendar, is_summary};
pub use idempotency::{Answered, IdempotencyKey, KEY_LIFETIME};
pub use itineraries::{BookError, ChangePreview, Feed, ItineraryView, MessageView, NewItinerary, VersionView};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use itinerary_core::ClinicSetup;
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbBackend};

pub use line::{AccountLink, CallRequest, LineEvent, LineNotice, LinkProof, NONCE_LIFETIME, PatientMessageView};
pub use lists::{CurrentPlan, ItinerarySummary};
pub use outcomes::{
    DECISIONS, EraseError, Erasure, MAX_SAVES, OccasionView, PatientOutcomes, PlannedOccasion, Questionnaire, QuestionnaireLink,
    ReevaluationView, occasions_of,
};
pub use people::{CoordinatorView, EscortInput, InputError, PatientInput, PatientView, RESOURCES, ResourceView};
pub use replies::{AppointmentAnswer, InboundAnswer, ReplyRecord};
pub use sessions::{Opened, Session};
pub use token::{Token, hash_token};

/// Why the store could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("{entity} {id} does not exist")]
    NotFound { entity: &'static str, id: String },
    #[error("stored {what} cannot be read: {detail}")]
    Corrupt { what: &'static str, detail: String },
    /// The transaction of a group of bookings failed: none of them was stored.
    #[error("database, for a group of bookings: {0}")]
    GroupFailed(String),
    #[error("the booking writer has stopped")]
    WriterStopped,
    /// COMMIT was sent and no answer came back (the connection dropped): the change may or may
    /// not be stored. Never reported as "nothing was changed".
    #[error("the database did not confirm the commit: {0}")]
    CommitUnknown(sea_orm::DbErr),
    /// A request sent again under an idempotency key whose write was committed before: nothing
    /// was done now; this is the answer it had.
    #[error("already done under this idempotency key")]
    Answered(Box<Answered>),
    /// Another request with the same idempotency key is being written at this moment.
    #[error("another request with this idempotency key is being processed")]
    KeyInUse,
}

impl StoreError {
    /// No connection came free within the pool's wait: the request did nothing and may be
    /// sent again after a moment.
    pub fn is_busy(&self) -> bool {
        use sea_orm::{DbErr, RuntimeErr, sqlx};
        let timed_out = |e: &RuntimeErr| matches!(e, RuntimeErr::SqlxError(e) if matches!(**e, sqlx::Error::PoolTimedOut));
        match self {
            StoreError::Db(DbErr::ConnectionAcquire(sea_orm::error::ConnAcquireErr::Timeout)) => true,
            StoreError::Db(DbErr::Conn(e) | DbErr::Exec(e) | DbErr::Query(e)) => timed_out(e),
            _ => false,
        }
    }
}

/// Commits `txn`. An error PostgreSQL answered with that rolls the transaction back (a
/// constraint checked at COMMIT, SQLSTATE class 23; a serialization failure 40001 or deadlock
/// 40P01) means nothing was stored: a plain store error. Any other (the connection dropped, no
/// answer, the backend terminated; and on SQLite, whose codes are not SQLSTATEs, every one)
/// leaves the outcome unknown.
pub(crate) async fn commit(txn: sea_orm::DatabaseTransaction) -> Result<(), StoreError> {
    use sea_orm::{ConnectionTrait, DbErr, RuntimeErr, sqlx};
    let postgres = txn.get_database_backend() == DbBackend::Postgres;
    txn.commit().await.map_err(|e| {
        let rolled_back = postgres
            && match &e {
                DbErr::Exec(RuntimeErr::SqlxError(s)) | DbErr::Query(RuntimeErr::SqlxError(s)) | DbErr::Conn(RuntimeErr::SqlxError(s)) => {
                    matches!(&**s, sqlx::Error::Database(d)
                        if d.code().is_some_and(|c| c.starts_with("23") || c == "40001" || c == "40P01"))
                }
                _ => false,
            };
        if rolled_back { StoreError::Db(e) } else { StoreError::CommitUnknown(e) }
    })
}

impl StoreError {
    pub(crate) fn corrupt(what: &'static str, e: impl std::fmt::Display) -> Self {
        StoreError::Corrupt { what, detail: e.to_string() }
    }
}

/// How the database is, for `/health`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatabaseState {
    Up,
    /// Answering, but every pooled connection is in use: requests wait, then are told `busy`.
    Busy,
    Down,
}

impl DatabaseState {
    pub fn name(self) -> &'static str {
        match self {
            DatabaseState::Up => "up",
            DatabaseState::Busy => "busy",
            DatabaseState::Down => "down",
        }
    }
}

/// How the connection pool admits requests (`[database]` in config/default.toml).
#[derive(Clone, Debug)]
pub struct PoolSettings {
    /// Connections at most (None: 8 on SQLite, 16 on PostgreSQL).
    pub max_connections: Option<u32>,
    /// How long a request waits for a free connection before it is refused as busy.
    pub acquire_timeout: std::time::Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings { max_connections: None, acquire_timeout: std::time::Duration::from_secs(2) }
    }
}

/// A connection pool to the service's database, and what this process keeps in memory.
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
    /// SQLite has one writer: bookings queue here, in order, instead of polling for its lock.
    writer: Arc<tokio::sync::Mutex<()>>,
    /// New itineraries go to the database in groups, through this queue.
    booker: group::Writer,
    /// Bookings planned in this process and on their way to the writer.
    pending: group::Pending,
    /// The clinic as the planner sees it, rebuilt only when escorts or resources change.
    planning: Arc<Mutex<Option<PlanningSetup>>>,
    /// Rendered feeds, by what they show: a version never changes once stored, a patient only
    /// with a new `updated_at`.
    feeds: Arc<Mutex<FeedCache>>,
    /// Parsed plans of stored versions, for the worker (a version never changes once stored).
    plans: Arc<Mutex<PlanCache>>,
    /// How long invites and the booking confirmation wait for further edits, so that several
    /// quick changes send one update.
    update_grace: chrono::Duration,
}

/// Parsed plans by (itinerary id, version).
type PlanCache = HashMap<(i32, i32), Arc<VersionPlan>>;

/// Rendered feeds by their patient's last change (microseconds) and the (itinerary id, version)
/// of every itinerary they show.
type FeedCache = HashMap<(i64, Vec<(i32, i32)>), Arc<str>>;

#[derive(Debug)]
pub(crate) struct PlanningSetup {
    pub(crate) base: usize,
    pub(crate) escorts: Vec<entity::escort::Model>,
    pub(crate) resources: Vec<entity::resource::Model>,
    pub(crate) setup: Arc<ClinicSetup>,
    /// The clinic's change count (`booking_lock.clinic_changes`) when these were read under
    /// the booking lock; None when read outside it.
    pub(crate) clinic_changes: Option<i64>,
}

impl Store {
    /// Connects to `url` (`sqlite://data/itinerary.db?mode=rwc`, `postgres://…`). On SQLite the
    /// pool holds one connection per worker thread and waits for the write lock instead of
    /// failing with SQLITE_BUSY.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Store::connect_with(url, &PoolSettings::default()).await
    }

    /// Connects with these pool settings (`[database]` in config/default.toml).
    pub async fn connect_with(url: &str, pool: &PoolSettings) -> Result<Store, StoreError> {
        let mut opts = ConnectOptions::new(url.to_owned());
        opts.sqlx_logging(false);
        // Admission: a request that finds every connection busy waits this long for one, then
        // is answered 503 with Retry-After (it did nothing), instead of after sqlx's 30 s.
        opts.acquire_timeout(pool.acquire_timeout);
        if url.starts_with("sqlite:") {
            opts.max_connections(pool.max_connections.unwrap_or(8)).min_connections(1);
            // WAL with synchronous=NORMAL: a commit reaches the OS before it returns, so a
            // process crash loses nothing; only a power cut can lose the last commits (never
            // corrupt the file). FULL would fsync every commit, and the worker commits several
            // times per message.
            opts.map_sqlx_sqlite_opts(|o| {
                o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal).synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
            });
            opts.map_sqlx_sqlite_pool_opts(|p| p.after_connect(pool::sqlite_writable).after_release(pool::sqlite_outside_transaction));
        } else {
            opts.max_connections(pool.max_connections.unwrap_or(16));
            opts.map_sqlx_postgres_pool_opts(|p| p.after_release(pool::postgres_outside_transaction));
        }
        let db = Database::connect(opts).await?;
        Ok(Store {
            db,
            writer: Arc::default(),
            booker: group::Writer::default(),
            pending: group::Pending::default(),
            planning: Arc::default(),
            feeds: Arc::default(),
            plans: Arc::default(),
            update_grace: chrono::Duration::minutes(3),
        })
    }

    /// Sets how long invites and confirmations wait for further edits (3 minutes by default).
    #[must_use]
    pub fn with_update_grace(mut self, grace: chrono::Duration) -> Store {
        self.update_grace = grace;
        self
    }

    /// Applies every migration not yet applied.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        use itinerary_migration::MigratorTrait;
        itinerary_migration::Migrator::up(&self.db, None).await?;
        Ok(())
    }

    /// A transaction that holds SQLite's write lock from its first statement. One that reads
    /// first cannot take the lock later once another connection (the worker, say) has committed
    /// (SQLITE_BUSY_SNAPSHOT, at once, without waiting); PostgreSQL needs nothing.
    pub(crate) async fn begin_write(&self) -> Result<sea_orm::DatabaseTransaction, sea_orm::DbErr> {
        use sea_orm::{ConnectionTrait, TransactionTrait};
        let txn = self.db.begin().await?;
        if self.backend() == DbBackend::Sqlite {
            txn.execute_unprepared("UPDATE booking_lock SET bookings = bookings WHERE id = 1").await?;
        }
        Ok(txn)
    }

    /// Held by every booking transaction on SQLite; nothing on PostgreSQL, where the lock row
    /// queues bookings from every process.
    pub(crate) async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self.backend() {
            DbBackend::Sqlite => Some(self.writer.lock().await),
            _ => None,
        }
    }

    /// The SQLite pool itself, for a job queue that keeps its tables in the same file: one
    /// pool means writers queue in the pool instead of sleeping in SQLite's busy handler.
    pub fn sqlite_pool(&self) -> Option<sea_orm::sqlx::SqlitePool> {
        (self.backend() == DbBackend::Sqlite).then(|| self.db.get_sqlite_connection_pool().clone())
    }

    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// How the database is, within 800 ms whatever it does, so that `/health` answers within a
    /// second (issue 15): `Up`; `Busy` when every pooled connection is in use (it works, it is
    /// full); `Down` when it does not answer.
    pub async fn database_state(&self) -> DatabaseState {
        match tokio::time::timeout(std::time::Duration::from_millis(800), self.db.ping()).await {
            Ok(Ok(())) => DatabaseState::Up,
            Ok(Err(e)) if StoreError::Db(e.clone()).is_busy() => DatabaseState::Busy,
            Err(_) if self.pool_full() => DatabaseState::Busy,
            _ => DatabaseState::Down,
        }
    }

    /// Whether every connection the pool may open is open and in use.
    fn pool_full(&self) -> bool {
        match self.db.get_database_backend() {
            DbBackend::Sqlite => {
                let p = self.db.get_sqlite_connection_pool();
                p.num_idle() == 0 && p.size() >= p.options().get_max_connections()
            }
            DbBackend::Postgres => {
                let p = self.db.get_postgres_connection_pool();
                p.num_idle() == 0 && p.size() >= p.options().get_max_connections()
            }
            _ => false,
        }
    }
}

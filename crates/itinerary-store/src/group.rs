//! The booking writer: new itineraries, planned by their requests, are stored in groups, one
//! transaction for every booking that arrived while the previous group was being written.
//! Under the booking lock a group costs the lock, one read of the clinic (escorts, resources)
//! and one of what is held, an INSERT … RETURNING of the itineraries, and one INSERT per table
//! of their rows (chained into one statement on PostgreSQL), however many itineraries it holds;
//! one at a time, every booking paid all of these.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use itinerary_core::{Booking, ClinicSetup, Ledger, Plan, RawPlanRequest};
use tokio::sync::{mpsc, oneshot};

use crate::itineraries::VersionRows;
use crate::{BookError, ItineraryView, NewItinerary, PatientView, Store, StoreError};

/// At most this many itineraries in one transaction.
const GROUP: usize = 32;

/// Writers of groups at once on PostgreSQL, each with its own connection: while one holds the
/// booking lock (~5 ms), the others insert their groups' rows (~20 ms), which needs no lock.
/// SQLite has one writer at a time whatever this says, so one.
const POSTGRES_WRITERS: usize = 3;

/// A new itinerary on its way to the writer, planned ahead where it fitted then.
pub(crate) struct NewBooking {
    pub(crate) by: i32,
    pub(crate) base: Arc<ClinicSetup>,
    /// The clinic it was planned against.
    pub(crate) setup: Arc<ClinicSetup>,
    pub(crate) req: NewItinerary,
    pub(crate) raw: RawPlanRequest,
    pub(crate) patient: PatientView,
    pub(crate) reference: String,
    pub(crate) now: DateTime<Utc>,
    /// Where its bookings can fall: what must be read to check them.
    pub(crate) window: (DateTime<Utc>, DateTime<Utc>),
    /// The plan and its rows, or None when it did not fit what was held then.
    pub(crate) ahead: Option<(Plan, VersionRows)>,
    /// Its bookings, counted by new plans until it is written.
    pub(crate) hold: Option<Hold>,
    /// Its idempotency key: its answer is stored with it.
    pub(crate) key: Option<crate::IdempotencyKey>,
}

/// Bookings planned in this process but not yet written: plans made meanwhile count them as
/// taken. (Other processes' are seen once committed; the writer's check covers the rest.)
#[derive(Clone, Debug, Default)]
pub(crate) struct Pending {
    held: Arc<Mutex<PendingBookings>>,
}

#[derive(Debug, Default)]
struct PendingBookings {
    next: u64,
    by_ticket: BTreeMap<u64, Vec<Booking>>,
}

/// A pending plan's bookings, released when dropped.
#[derive(Debug)]
pub(crate) struct Hold {
    ticket: u64,
    pending: Pending,
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Ok(mut p) = self.pending.held.lock() {
            p.by_ticket.remove(&self.ticket);
        }
    }
}

impl Pending {
    /// Plans with `plan` against `stored` plus every pending booking, and holds the plan's
    /// bookings when it succeeds; one plan at a time in the process (the planner alone, tens of
    /// microseconds; requests build their rows in parallel), so two cannot take the same chair.
    pub(crate) fn plan<E>(&self, plan: impl FnOnce(&Ledger) -> Result<Plan, E>, mut stored: Ledger) -> (Result<Plan, E>, Option<Hold>) {
        let Ok(mut p) = self.held.lock() else { return (plan(&stored), None) };
        for b in p.by_ticket.values().flatten() {
            stored.book(b);
        }
        let made = plan(&stored);
        let hold = made.as_ref().ok().map(|plan| {
            p.next += 1;
            let ticket = p.next;
            p.by_ticket.insert(ticket, plan.bookings());
            Hold { ticket, pending: self.clone() }
        });
        (made, hold)
    }
}

type Job = (NewBooking, oneshot::Sender<Result<ItineraryView, BookError>>);

/// The writer's queue, started by the first booking of a store (and again should the writer
/// ever have stopped: a bug that panics in one group must not refuse every later booking).
pub(crate) type Writer = Arc<Mutex<Option<mpsc::Sender<Job>>>>;

impl Store {
    pub(crate) async fn book(&self, b: NewBooking) -> Result<ItineraryView, BookError> {
        let queue = {
            let mut writer = self.booker.lock().map_err(|_| BookError::Store(StoreError::WriterStopped))?;
            match writer.as_ref() {
                Some(tx) if !tx.is_closed() => tx.clone(),
                _ => {
                    let (tx, rx) = mpsc::channel(1024);
                    let rx = Arc::new(tokio::sync::Mutex::new(rx));
                    let writers = match self.backend() {
                        sea_orm::DbBackend::Postgres => POSTGRES_WRITERS,
                        _ => 1,
                    };
                    for _ in 0..writers {
                        // A writer holds a store without the queue: once every other handle is
                        // dropped, the queue closes and the writers end.
                        let store = Store { booker: Writer::default(), ..self.clone() };
                        tokio::spawn(store.write_groups(rx.clone()));
                    }
                    *writer = Some(tx.clone());
                    tx
                }
            }
        };
        let (tx, rx) = oneshot::channel();
        queue.send((b, tx)).await.map_err(|_| BookError::Store(StoreError::WriterStopped))?;
        // A writer that stopped mid-group dropped the reply, and its transaction rolled back.
        rx.await.map_err(|_| BookError::Store(StoreError::WriterStopped))?
    }

    /// Takes what has queued (one writer at a time), writes it as one group, and again.
    async fn write_groups(self, rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>) {
        let mut jobs: Vec<Job> = Vec::with_capacity(GROUP);
        while rx.lock().await.recv_many(&mut jobs, GROUP).await > 0 {
            let (group, replies): (Vec<NewBooking>, Vec<_>) = jobs.drain(..).unzip();
            let written = match self.backend() {
                sea_orm::DbBackend::Postgres => self.write_group_rows_first(group).await,
                _ => self.write_group(group).await,
            };
            match written {
                Ok(answers) => {
                    for (answer, reply) in answers.into_iter().zip(replies) {
                        let _ = reply.send(answer);
                    }
                }
                // The transaction failed as a whole (the database): every booking of the group
                // hears why, and none is stored; unless its COMMIT went unanswered, when each
                // hears that the outcome is unknown.
                Err(e) => {
                    let why = e.to_string();
                    let unknown = matches!(e, BookError::Store(StoreError::CommitUnknown(_)));
                    for reply in replies {
                        let answer = if unknown {
                            StoreError::CommitUnknown(sea_orm::DbErr::Custom(why.clone()))
                        } else {
                            StoreError::GroupFailed(why.clone())
                        };
                        let _ = reply.send(Err(BookError::Store(answer)));
                    }
                }
            }
        }
    }
}

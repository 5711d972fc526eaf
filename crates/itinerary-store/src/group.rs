//! The booking writer: new itineraries, planned by their requests, are stored in groups, one
//! transaction for every booking that arrived while the previous group was being written.
//! Under the booking lock a group costs the lock, one read of the clinic (escorts, resources)
//! and one of what is held, an INSERT … RETURNING of the itineraries, and one INSERT per table
//! of their rows (chained into one statement on PostgreSQL), however many itineraries it holds;
//! one at a time, every booking paid all of these. On PostgreSQL three writers store groups at
//! once: each inserts all its rows first, then takes the lock and reads what is held in one
//! round trip, checks the plans and commits (`write_group_rows_first`), and reads the clinic
//! only when it changed.
//!
//! Plans are made ahead against what is stored and what this process holds pending (`Pending`):
//! bookings planned and not yet written, and those written in the last seconds that the
//! planner's reading of the stored bookings may have missed. A plan made again by the writer is
//! held there at once too. Whatever the writer finds taken under the lock was taken by another
//! process (or its clinic changed), not by this one.

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
/// booking lock (~4 ms), the others insert their groups' rows (~20 ms), which needs no lock.
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
    by_ticket: BTreeMap<u64, Held>,
    /// Bookings written lately, by itinerary: a plan whose reading of the stored bookings
    /// began before they were committed counts them from here, or it would take what they
    /// hold and the writer would have to plan its whole group again.
    written: std::collections::VecDeque<Written>,
}

/// A pending plan's bookings, and the itinerary they are being stored as once a writer's
/// transaction has inserted it: from its COMMIT until the hold is released, a reading of the
/// stored bookings holds them too, and must not count them twice.
#[derive(Debug)]
struct Held {
    itinerary: Option<i32>,
    bookings: Vec<Booking>,
}

/// An itinerary's bookings, written at `at`, falling within `span` (Unix seconds).
#[derive(Debug)]
struct Written {
    at: std::time::Instant,
    itinerary: i32,
    span: (i64, i64),
    bookings: Vec<Booking>,
}

/// How long written bookings are counted from memory: far longer than a reading of the stored
/// bookings takes to reach the planner.
const WRITTEN_KEPT: std::time::Duration = std::time::Duration::from_secs(2);

/// A pending plan's bookings, released when dropped.
#[derive(Debug)]
pub(crate) struct Hold {
    pub(crate) ticket: u64,
    pending: Pending,
}

/// What a plan's reading of the stored bookings held: these itineraries' bookings within this
/// window. Pending bookings of an itinerary among them are counted once, from the reading.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Read<'a> {
    pub(crate) itineraries: &'a std::collections::HashSet<i32>,
    pub(crate) window: (DateTime<Utc>, DateTime<Utc>),
    /// Read under the booking lock: every booking committed is in the reading, and those
    /// written lately are not counted from memory (one cancelled since would be a phantom).
    pub(crate) locked: bool,
}

impl Hold {
    /// Its itinerary is being stored as `itinerary`, in a transaction not yet committed: once it
    /// is, readings of the stored bookings hold them and plans count them from there.
    pub(crate) fn stored_as(&self, itinerary: i32) {
        if let Ok(mut p) = self.pending.held.lock()
            && let Some(held) = p.by_ticket.get_mut(&self.ticket)
        {
            held.itinerary = Some(itinerary);
        }
    }

    /// Its itinerary (`stored_as`) was committed: its bookings (those of the plan stored; a plan
    /// the writer made again has a hold of its own) are counted from memory for a while, for
    /// plans made against a reading from before.
    pub(crate) fn written(self) {
        if let Ok(mut p) = self.pending.held.lock()
            // Taken from the pending in the same turn of the lock, or a plan could count it twice.
            && let Some(Held { itinerary: Some(itinerary), bookings }) = p.by_ticket.remove(&self.ticket)
        {
            let span = bookings.iter().map(Booking::span).fold((i64::MAX, i64::MIN), |(s, e), (bs, be)| (s.min(bs), e.max(be)));
            p.written.push_back(Written { at: std::time::Instant::now(), itinerary, span, bookings });
        }
    }
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
    /// `read` holds the itineraries `stored` was read with: those pending or written lately but
    /// not among them are counted too (every one committed is among them when `stored` was read
    /// under the booking lock). Holds in `mine` are already in `stored` (the writer's group).
    pub(crate) fn plan<E>(
        &self,
        plan: impl FnOnce(&Ledger) -> Result<Plan, E>,
        mut stored: Ledger,
        read: Read<'_>,
        mine: &[u64],
    ) -> (Result<Plan, E>, Option<Hold>) {
        let Ok(mut p) = self.held.lock() else { return (plan(&stored), None) };
        while p.written.front().is_some_and(|w| w.at.elapsed() > WRITTEN_KEPT) {
            p.written.pop_front();
        }
        let unread = |itinerary: Option<i32>| itinerary.is_none_or(|i| !read.itineraries.contains(&i));
        for (_, held) in p.by_ticket.iter().filter(|(t, held)| !mine.contains(t) && unread(held.itinerary)) {
            for b in &held.bookings {
                stored.book(b);
            }
        }
        let (from, to) = (read.window.0.timestamp(), read.window.1.timestamp());
        for w in p.written.iter().filter(|w| !read.locked && w.span.0 < to && from < w.span.1 && unread(Some(w.itinerary))) {
            for b in &w.bookings {
                stored.book(b);
            }
        }
        let made = plan(&stored);
        let hold = made.as_ref().ok().map(|plan| p.hold(self, plan.bookings()));
        (made, hold)
    }
}

impl PendingBookings {
    fn hold(&mut self, pending: &Pending, bookings: Vec<Booking>) -> Hold {
        self.next += 1;
        self.by_ticket.insert(self.next, Held { itinerary: None, bookings });
        Hold { ticket: self.next, pending: pending.clone() }
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use chrono::TimeZone;

    use super::*;

    /// Whether a plan made now would find one of `chairs` free for the hour `pending` holds,
    /// against `stored` read with `read`.
    fn chair_free(pending: &Pending, stored: &[Booking], read: &[i32], chairs: u16) -> bool {
        chair_free_read(pending, stored, read, chairs, false)
    }

    fn chair_free_read(pending: &Pending, stored: &[Booking], read: &[i32], chairs: u16, locked: bool) -> bool {
        let start = Utc.with_ymd_and_hms(2027, 3, 1, 2, 0, 0).unwrap();
        let mut ledger = Ledger::new(15);
        for b in stored {
            ledger.book(b);
        }
        let read: HashSet<i32> = read.iter().copied().collect();
        let window = (start - chrono::Duration::hours(6), start + chrono::Duration::hours(6));
        let (answer, hold) = pending.plan(
            |l| {
                Err::<Plan, bool>(itinerary_core::ledger::Availability::new(l).chair_free(
                    start,
                    start + chrono::Duration::hours(1),
                    chairs,
                ))
            },
            ledger,
            Read { itineraries: &read, window, locked },
            &[],
        );
        assert!(hold.is_none());
        answer.unwrap_err()
    }

    #[test]
    fn a_pending_booking_is_counted_once_from_its_commit_to_its_release() {
        let start = Utc.with_ymd_and_hms(2027, 3, 1, 2, 0, 0).unwrap();
        let chair = Booking::chair(start, start + chrono::Duration::hours(1));
        let pending = Pending::default();
        let hold = pending.held.lock().unwrap().hold(&pending, vec![chair.clone()]);
        // Planned, not stored: counted from memory.
        assert!(!chair_free(&pending, &[], &[], 1));
        assert!(chair_free(&pending, &[], &[], 2));
        // Inserted as itinerary 7, not committed: a reading without it counts it from memory.
        hold.stored_as(7);
        assert!(!chair_free(&pending, &[], &[], 1));
        // Committed, not yet released: a reading that holds itinerary 7 counts it once.
        assert!(chair_free(&pending, std::slice::from_ref(&chair), &[7], 2));
        // Released as written: the same, and a reading from before its commit counts it too.
        hold.written();
        assert!(chair_free(&pending, std::slice::from_ref(&chair), &[7], 2));
        assert!(!chair_free(&pending, &[], &[], 1));
        assert!(chair_free(&pending, &[], &[], 2));
        // Under the lock the reading holds every committed booking: one written lately and
        // missing from it was cancelled since, and is not counted.
        assert!(chair_free_read(&pending, &[], &[], 1, true));
        assert!(pending.held.lock().unwrap().by_ticket.is_empty());
    }
}

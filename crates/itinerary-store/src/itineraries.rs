//! Itineraries: planned (new ones outside the booking lock, then stored in groups by the booking
//! writer of `group.rs`), changed and cancelled under the lock, and read back with their
//! versions, messages and calendar.

use chrono::{DateTime, Duration, Utc};
use itinerary_calendar::{Appointment, Audience, CalendarState, Change, ChangeKind, Issued, Itinerary, Person};
use itinerary_core::plan::{Invites, When};
use itinerary_core::plan::{MessageDue, MessageKind, Recipient};
use itinerary_core::request::{RawPlanRequest, RawTrip};
use itinerary_core::{Booking, ClinicSetup, Infeasible, InvalidRequest, Ledger, Plan, PlanRequest};
use rand::RngCore;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    TransactionTrait,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use std::borrow::Cow;
use std::sync::Arc;

use crate::PlanningSetup;
use crate::entity::{
    audit_log, booking, calendar_uid, escort, event, feed_token, itinerary, itinerary_version, patient, resource, scheduled_message,
};
use crate::people::{audit, audit_row, escort_from_model};
use crate::unique::Unique;
use crate::{IdempotencyKey, PatientView, Store, StoreError, idempotency, stored};

/// A new booking planned ahead: where its bookings can fall, its plan and rows (none when what
/// it needs was held), and the hold on its bookings.
type PlannedAhead = ((DateTime<Utc>, DateTime<Utc>), Option<(Plan, VersionRows)>, Option<crate::group::Hold>);

/// What a coordinator sends to create or change an itinerary: the plan request, for a stored
/// patient.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NewItinerary {
    pub patient_id: i32,
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_days: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trip_mode: Option<String>,
    pub trips: Vec<RawTrip>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferred_dates: Vec<String>,
    /// The escort to accompany every duty (a coordinator's choice); any free one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escort: Option<String>,
}

/// What a change would do: the new plan, what it replaces, and the calendar messages it sends.
#[derive(Debug)]
pub struct ChangePreview {
    pub plan: Plan,
    pub before: Plan,
    /// Invites, updates and cancellations, one per appointment and attendee that changes.
    pub changes: Vec<Change>,
}

/// Why an itinerary could not be booked.
#[derive(Debug, thiserror::Error)]
pub enum BookError {
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    #[error(transparent)]
    Infeasible(#[from] Infeasible),
    /// It would fit, but other itineraries hold what it needs (an escort, the last chair):
    /// the violations name those rules.
    #[error("held by other bookings: {0}")]
    Conflict(Infeasible),
    #[error("itinerary {0} is cancelled")]
    Cancelled(i32),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sea_orm::DbErr> for BookError {
    fn from(e: sea_orm::DbErr) -> Self {
        BookError::Store(StoreError::Db(e))
    }
}

/// One version of an itinerary, as stored.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct VersionView {
    pub version: i32,
    pub planned_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coordinator_id: Option<i32>,
    /// What this version meant for each calendar UID: invite, update, cancel, unchanged.
    pub calendar_changes: serde_json::Value,
}

/// An itinerary with its current plan, its versions and its messages.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ItineraryView {
    pub id: i32,
    pub reference: String,
    pub patient_id: i32,
    pub status: String,
    pub version: i32,
    pub plan: Plan,
    pub versions: Vec<VersionView>,
    pub messages: Vec<MessageView>,
}

/// A patient's feed as served: its text, and an entity tag that changes with every version.
#[derive(Clone, Debug)]
pub struct Feed {
    pub etag: String,
    pub text: Arc<str>,
}

/// A scheduled message and what became of it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MessageView {
    /// Its id, once stored (not in the answer that stores it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i32>,
    pub key: String,
    pub kind: String,
    pub version: i32,
    pub recipient: serde_json::Value,
    pub due_at: DateTime<Utc>,
    pub due_zone: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<DateTime<Utc>>,
    /// email or line, once sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Why the last attempt failed (or why it was skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The patient's latest answer to it by a LINE button (`ack` or `call`), and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<DateTime<Utc>>,
}

fn reference() -> String {
    let mut b = [0u8; 6];
    rand::rng().fill_bytes(&mut b);
    format!("it-{}", hex::encode(b))
}

fn booking_row(b: &Booking) -> booking::ActiveModel {
    let t = |s: i64| DateTime::<Utc>::from_timestamp(s, 0).unwrap_or_default();
    let (kind, resource, start, end, shared) = match b {
        Booking::Escort { escort, start, end, shared } => ("escort", escort.clone(), *start, *end, shared.clone()),
        Booking::Chair { start, end } => ("chair", "chairs".to_owned(), *start, *end, None),
        Booking::Lab { start, end } => ("lab", "lab".to_owned(), *start, *end, None),
    };
    booking::ActiveModel {
        kind: Set(kind.to_owned()),
        resource: Set(resource),
        starts_at: Set(t(start)),
        ends_at: Set(t(end)),
        shared: Set(shared),
        ..Default::default()
    }
}

fn as_booking(m: &booking::Model) -> Booking {
    match m.kind.as_str() {
        "escort" => Booking::shared_escort(&m.resource, m.starts_at, m.ends_at, m.shared.as_deref()),
        "chair" => Booking::chair(m.starts_at, m.ends_at),
        _ => Booking::lab(m.starts_at, m.ends_at),
    }
}

/// A booking of a group, planned: its answer, its rows and its idempotency key.
type Made = (ItineraryView, VersionRows, Option<IdempotencyKey>);

impl Store {
    /// The clinic as last read (by the booking writer, under the lock, whenever it changed), or
    /// as it is now when it has not been read yet (then `true`): what a new booking is planned
    /// against ahead. A change made since (an escort stood down, a chair added, by this process
    /// or another) is found by the writer, which then plans the booking again under the lock:
    /// two reads fewer per booking.
    async fn setup_seen(&self, base: &ClinicSetup) -> Result<(Arc<ClinicSetup>, bool), StoreError> {
        let key = std::ptr::from_ref(base) as usize;
        if let Ok(cached) = self.planning.lock()
            && let Some(p) = cached.as_ref()
            && p.base == key
        {
            return Ok((p.setup.clone(), false));
        }
        Ok((self.setup_now(&self.db, base).await?, true))
    }

    /// The clinic as it is, under the booking lock whose row said `clinic_changes`: as last
    /// read when nothing changed since (the count is kept by triggers on escorts and resources,
    /// migration 15), read again otherwise.
    async fn setup_locked(
        &self,
        txn: &DatabaseTransaction,
        base: &ClinicSetup,
        clinic_changes: i64,
    ) -> Result<Arc<ClinicSetup>, StoreError> {
        let key = std::ptr::from_ref(base) as usize;
        if let Ok(cached) = self.planning.lock()
            && let Some(p) = cached.as_ref()
            && p.base == key
            && p.clinic_changes == Some(clinic_changes)
        {
            return Ok(p.setup.clone());
        }
        self.read_setup(txn, base, Some(clinic_changes)).await
    }

    /// The clinic as the planner sees it now: the configuration with the stored escorts and
    /// resources. Rebuilt (a clone of the airport and holiday tables) only when they changed.
    async fn setup_now(&self, db: &impl ConnectionTrait, base: &ClinicSetup) -> Result<Arc<ClinicSetup>, StoreError> {
        self.read_setup(db, base, None).await
    }

    /// `setup_now`, read under the booking lock whose row said `clinic_changes` when that is
    /// given: the cache remembers it, for `setup_locked`.
    async fn read_setup(
        &self,
        db: &impl ConnectionTrait,
        base: &ClinicSetup,
        clinic_changes: Option<i64>,
    ) -> Result<Arc<ClinicSetup>, StoreError> {
        let escorts = escort::Entity::find().filter(escort::Column::Active.eq(true)).order_by_asc(escort::Column::Id).all(db).await?;
        let resources = resource::Entity::find().order_by_asc(resource::Column::Id).all(db).await?;
        let key = std::ptr::from_ref(base) as usize;
        if let Ok(mut cached) = self.planning.lock()
            && let Some(p) = cached.as_mut()
            && p.base == key
            && p.escorts == escorts
            && p.resources == resources
        {
            if clinic_changes.is_some() {
                p.clinic_changes = clinic_changes;
            }
            return Ok(p.setup.clone());
        }
        let mut setup = base.clone();
        setup.resources.escorts = escorts.iter().map(escort_from_model).collect::<Result<_, _>>()?;
        for r in &resources {
            let c = u16::try_from(r.capacity).unwrap_or(1);
            match r.id.as_str() {
                "chairs" => setup.resources.chairs = c,
                "lab_draws_per_slot" => setup.resources.lab_draws_per_slot = c,
                _ => {}
            }
        }
        let setup = Arc::new(setup);
        if let Ok(mut cached) = self.planning.lock() {
            *cached = Some(PlanningSetup { base: key, escorts, resources, setup: setup.clone(), clinic_changes });
        }
        Ok(setup)
    }

    /// Plans `req` and stores it as a new itinerary. The plan is made here, against the
    /// bookings as they stand, with every row it stores; then the booking writer (`group`)
    /// stores it in one transaction with the others that arrived meanwhile, under the booking
    /// lock, after checking it against what is held by then. It is planned again there only
    /// when something it needs was taken in between, so bookings never overlap, and the lock
    /// is held for writes rather than planning.
    pub async fn create_itinerary(
        &self,
        by: i32,
        base: &Arc<ClinicSetup>,
        req: &NewItinerary,
        now: DateTime<Utc>,
        key: Option<IdempotencyKey>,
    ) -> Result<ItineraryView, BookError> {
        let patient = self.patient(req.patient_id).await?;
        let raw = raw_request(&patient, req);
        let reference = reference();
        // Against the clinic as last read; should that fail, against the clinic as it is now:
        // an escort back on the rota since must not make a request infeasible.
        let (mut setup, fresh) = self.setup_seen(base).await?;
        let mut planned = self.plan_ahead(&setup, req, &raw, &patient, &reference, by, now).await;
        if planned.is_err() && !fresh {
            setup = self.setup_now(&self.db, base).await?;
            planned = self.plan_ahead(&setup, req, &raw, &patient, &reference, by, now).await;
        }
        let (window, ahead, hold) = planned?;
        let booking = crate::group::NewBooking {
            by,
            base: base.clone(),
            setup,
            req: req.clone(),
            raw,
            patient,
            reference,
            now,
            window,
            ahead,
            hold,
            key,
        };
        self.book(booking).await
    }

    /// Plans a new booking ahead, against `setup` and the bookings stored and pending: where its
    /// bookings can fall, and its plan and rows with the hold on its bookings; no plan when what
    /// it needs was held (stale, perhaps: the writer decides again under the lock).
    #[allow(clippy::too_many_arguments)]
    async fn plan_ahead(
        &self,
        setup: &Arc<ClinicSetup>,
        req: &NewItinerary,
        raw: &RawPlanRequest,
        patient: &PatientView,
        reference: &str,
        by: i32,
        now: DateTime<Utc>,
    ) -> Result<PlannedAhead, BookError> {
        let planning = planning_setup(setup, req)?;
        let parsed = PlanRequest::parse(raw, &planning)?;
        let window = window(&parsed, now);
        let held = bookings_between(&self.db, window).await?;
        // Against what is stored and what this process is about to store (bookings planned
        // but not yet written), so that concurrent requests rarely plan the same escort or
        // chair and the writer seldom has to plan again.
        let read = held.iter().map(|b| b.itinerary_id).collect();
        let (planned, hold) = self.pending.plan(
            |ledger| plan_with(&planning, &parsed, now, ledger),
            ledger_of(&planning, &held),
            crate::group::Read { itineraries: &read, window, locked: false },
            &[],
        );
        let ahead = match planned {
            Ok(plan) => {
                let rows =
                    version_rows(&planning, reference, patient, raw, &plan, 1, by, self.update_grace, &CalendarState::default(), false)?;
                Some((plan, rows))
            }
            Err(BookError::Conflict(_)) => None,
            Err(e) => return Err(e),
        };
        Ok((window, ahead, hold))
    }

    /// What booking `req` now would plan, against the bookings as they stand, storing nothing:
    /// the plan, or why there is none (the same errors as booking). A booking made after it may
    /// still find something taken meanwhile (409).
    pub async fn preview_itinerary(&self, base: &Arc<ClinicSetup>, req: &NewItinerary, now: DateTime<Utc>) -> Result<Plan, BookError> {
        let patient = self.patient(req.patient_id).await?;
        let raw = raw_request(&patient, req);
        let setup = self.setup_now(&self.db, base).await?;
        let planning = planning_setup(&setup, req)?;
        let parsed = PlanRequest::parse(&raw, &planning)?;
        let held = bookings_between(&self.db, window(&parsed, now)).await?;
        plan_with(&planning, &parsed, now, &ledger_of(&planning, &held))
    }

    /// What changing itinerary `id` to `req` now would do, storing nothing: the new plan, the
    /// calendar messages it would send (an update, a cancellation or an invite per appointment
    /// that changes, to the patient or an escort), and the plan it replaces. Its own bookings do
    /// not stand in its way, as in `change_itinerary`.
    pub async fn preview_change(
        &self,
        base: &Arc<ClinicSetup>,
        id: i32,
        req: &NewItinerary,
        now: DateTime<Utc>,
    ) -> Result<ChangePreview, BookError> {
        let it = itinerary::Entity::find_by_id(id)
            .unique(&self.db)
            .await?
            .ok_or(StoreError::NotFound { entity: "itinerary", id: id.to_string() })?;
        if it.status == "cancelled" {
            return Err(BookError::Cancelled(id));
        }
        let patient = self.patient(it.patient_id).await?;
        let raw = raw_request(&patient, req);
        let setup = self.setup_now(&self.db, base).await?;
        let planning = planning_setup(&setup, req)?;
        let parsed = PlanRequest::parse(&raw, &planning)?;
        let held: Vec<booking::Model> =
            bookings_between(&self.db, window(&parsed, now)).await?.into_iter().filter(|b| b.itinerary_id != id).collect();
        let plan = plan_with(&planning, &parsed, now, &ledger_of(&planning, &held))?;
        let before: Plan = stored::parsed("plan", &current_version(&self.db, &it).await?.plan)?;
        let calendar = Itinerary {
            id: &it.reference,
            plan: &plan,
            patient: Person { name: &patient.name, email: &patient.email },
            escorts: &planning.resources.escorts,
            clinic_name: &planning.clinic.name,
            settings: &planning.calendar,
        };
        let appointments = calendar.appointments().map_err(|e| StoreError::corrupt("calendar", e))?;
        let (changes, _) = calendar_state(&self.db, id).await?.changes(&appointments);
        let changes = changes.into_iter().filter(|c| c.kind != ChangeKind::Unchanged).collect();
        Ok(ChangePreview { plan, before, changes })
    }

    /// The request the itinerary's current version was planned from, as a coordinator sent it.
    pub async fn itinerary_request(&self, id: i32) -> Result<NewItinerary, StoreError> {
        let it = itinerary::Entity::find_by_id(id)
            .unique(&self.db)
            .await?
            .ok_or(StoreError::NotFound { entity: "itinerary", id: id.to_string() })?;
        let raw: RawPlanRequest =
            serde_json::from_value(current_version(&self.db, &it).await?.request).map_err(|e| StoreError::corrupt("request", e))?;
        Ok(NewItinerary {
            patient_id: it.patient_id,
            protocol: raw.protocol,
            interval_days: raw.interval_days,
            trip_mode: raw.trip_mode,
            trips: raw.trips,
            preferred_dates: raw.preferred_dates,
            escort: None,
        })
    }

    /// Stores one group of new itineraries in one transaction, under the booking lock, in the
    /// order they came: each checked against what is held (stored, and taken by those before
    /// it in the group), planned again if it no longer fits. Answers for each, in order.
    pub(crate) async fn write_group(
        &self,
        group: Vec<crate::group::NewBooking>,
    ) -> Result<Vec<Result<ItineraryView, BookError>>, BookError> {
        let turn = self.write_turn().await;
        // How many bookings a group carries and where its time goes
        // (RUST_LOG=itinerary_store=debug), for issue 15's sizing.
        let bookings = group.len();
        let started = std::time::Instant::now();
        let lap = |t: &mut std::time::Instant| {
            let us = t.elapsed().as_micros() as u64;
            *t = std::time::Instant::now();
            us
        };
        let mut t = started;
        let txn = self.db.begin().await?;
        lock(&txn).await?;
        let lock_us = lap(&mut t);
        let window = group_window(&group);
        let held = bookings_between(&txn, window).await?;
        let read_us = lap(&mut t);
        let held_rows = held.len();
        let read: std::collections::HashSet<i32> = held.iter().map(|b| b.itinerary_id).collect();
        let mut ledgers: Vec<(Arc<ClinicSetup>, Ledger)> = Vec::new();
        let mut answers: Vec<Result<Made, BookError>> = Vec::with_capacity(group.len());
        // Keys of this group: a second request with one is refused rather than done twice.
        let mut keys = std::collections::HashSet::new();
        // Released once committed (or not): until then, new plans count them as taken.
        let mut holds = Vec::with_capacity(group.len());
        // The clinic as it is now, read once per group (per base configuration: the service
        // has one, tests several), and one ledger for each.
        let mut bases: Vec<(Arc<ClinicSetup>, Arc<ClinicSetup>)> = Vec::new();
        let protocols: Vec<String> = group.iter().map(|b| b.req.protocol.clone()).collect();
        // This group's holds: its bookings are in the ledger already.
        let mut mine: Vec<u64> = group.iter().filter_map(|b| b.hold.as_ref().map(|h| h.ticket)).collect();
        for b in group {
            holds.push(b.hold);
            if let Some(k) = &b.key {
                if !keys.insert((k.coordinator_id, k.key.clone())) {
                    answers.push(Err(StoreError::KeyInUse.into()));
                    continue;
                }
                if let Some(a) = idempotency::answered_on(&txn, k.coordinator_id, &k.key, b.now).await? {
                    answers.push(Err(StoreError::Answered(Box::new(a)).into()));
                    continue;
                }
            }
            let setup = match bases.iter().find(|(base, _)| Arc::ptr_eq(base, &b.base)) {
                Some((_, setup)) => setup.clone(),
                None => {
                    let setup = self.setup_now(&txn, &b.base).await?;
                    bases.push((b.base.clone(), setup.clone()));
                    setup
                }
            };
            let i = match ledgers.iter().position(|(s, _)| Arc::ptr_eq(s, &setup)) {
                Some(i) => i,
                None => {
                    ledgers.push((setup.clone(), ledger_of(&setup, &held)));
                    ledgers.len() - 1
                }
            };
            let ledger = &mut ledgers[i].1;
            let made = match b.ahead {
                Some((plan, rows)) if Arc::ptr_eq(&setup, &b.setup) && ledger.admits(&setup, &plan.bookings()) => Ok((plan, rows)),
                _ => (|| {
                    let planning = planning_setup(&setup, &b.req)?;
                    let parsed = PlanRequest::parse(&b.raw, &planning)?;
                    // Planned again: against what other writers' groups hold too, as planned
                    // ahead (they wait for this lock, and would find it taken), and held
                    // itself at once, for the plans made meanwhile.
                    if let Some(old) = holds.last_mut().and_then(Option::take) {
                        mine.retain(|t| *t != old.ticket);
                    }
                    let (plan, hold) = self.pending.plan(
                        |l| plan_with(&planning, &parsed, b.now, l),
                        ledger.clone(),
                        crate::group::Read { itineraries: &read, window, locked: true },
                        &mine,
                    );
                    let plan = plan?;
                    if let Some(h) = hold {
                        mine.push(h.ticket);
                        if let Some(last) = holds.last_mut() {
                            *last = Some(h);
                        }
                    }
                    let rows = version_rows(
                        &planning,
                        &b.reference,
                        &b.patient,
                        &b.raw,
                        &plan,
                        1,
                        b.by,
                        self.update_grace,
                        &CalendarState::default(),
                        false,
                    )?;
                    Ok((plan, rows))
                })(),
            };
            answers.push(made.map(|(plan, rows)| {
                ledger.book_plan(&plan);
                let view = ItineraryView {
                    id: 0,
                    reference: b.reference,
                    patient_id: b.patient.id,
                    status: "active".to_owned(),
                    version: 1,
                    plan,
                    versions: Vec::new(),
                    messages: Vec::new(),
                };
                (view, rows, b.key)
            }));
        }
        let check_us = lap(&mut t);
        let stored: Vec<itinerary::ActiveModel> =
            answers.iter().filter_map(|a| a.as_ref().ok()).map(|(v, rows, _)| rows.itinerary(&v.reference, v.patient_id)).collect();
        let ids: std::collections::HashMap<String, i32> = if stored.is_empty() {
            std::collections::HashMap::new()
        } else {
            itinerary::Entity::insert_many(stored).exec_with_returning(&txn).await?.into_iter().map(|m| (m.reference, m.id)).collect()
        };
        let mut rows_of = GroupRows::default();
        let mut out = Vec::with_capacity(answers.len());
        for a in answers {
            out.push(match a {
                Ok((mut view, mut rows, key)) => {
                    view.id = *ids.get(&view.reference).ok_or(StoreError::corrupt("itinerary", "not inserted"))?;
                    (view.versions, view.messages) = rows.views_of_version();
                    rows_of.add(&view, key.as_ref(), rows)?;
                    Ok(view)
                }
                Err(e) => Err(e),
            });
        }
        let insert_us = lap(&mut t);
        for (hold, answer) in holds.iter().zip(&out) {
            if let (Some(hold), Ok(view)) = (hold, answer) {
                hold.stored_as(view.id);
            }
        }
        write_rows(&txn, rows_of.all, rows_of.audits).await?;
        idempotency::save(&txn, rows_of.answered, rows_of.latest).await?;
        let booked: Vec<_> =
            out.iter().zip(&protocols).filter_map(|(v, p)| v.as_ref().ok().map(|v| (v.patient_id, p.as_str(), v.id))).collect();
        Store::drafts_booked(&txn, &booked).await?;
        let rows_us = lap(&mut t);
        crate::commit(txn).await?;
        tracing::debug!(
            bookings,
            lock_us,
            read_us,
            held_rows,
            check_us,
            insert_us,
            rows_us,
            commit_us = lap(&mut t),
            total_us = started.elapsed().as_micros() as u64,
            "booking group phases"
        );
        drop(turn);
        for hold in holds.into_iter().flatten() {
            hold.written();
        }
        Ok(out)
    }

    /// PostgreSQL's way to store a group: as `write_group`, but every row, the bookings too, goes
    /// in before the booking lock is taken, so that several writers insert at once, each in its
    /// own backend; the lock is taken with the reading of what is held in one round trip
    /// (migration 19), and held for that, the check and the commit (~4 ms of a group's ~25),
    /// and for what only a few groups need: a keyed booking's check that its key is still
    /// unanswered and its answer saved, the clinic read again when it changed, a proposed second
    /// set marked booked. Every plan here was made ahead, against what was stored and pending in this
    /// process; should one no longer fit under the lock (another process took what it needs, the
    /// clinic changed) or a key have been answered meanwhile, the transaction is rolled back and
    /// the group written by `write_group`, which plans again under the lock.
    pub(crate) async fn write_group_rows_first(
        &self,
        mut group: Vec<crate::group::NewBooking>,
    ) -> Result<Vec<Result<ItineraryView, BookError>>, BookError> {
        let mut keys = std::collections::HashSet::new();
        if group.iter().filter_map(|b| b.key.as_ref()).any(|k| !keys.insert((k.coordinator_id, k.key.clone()))) {
            return self.write_group(group).await;
        }
        // Taken from every booking, or (should one have no plan) from some: those plan again.
        let Some(made) = group.iter_mut().map(|b| b.ahead.take()).collect::<Option<Vec<_>>>() else {
            return self.write_group(group).await;
        };
        let bookings = group.len();
        let started = std::time::Instant::now();
        let txn = self.db.begin().await?;
        let stored: Vec<itinerary::ActiveModel> =
            group.iter().zip(&made).map(|(b, (_, rows))| rows.itinerary(&b.reference, b.patient.id)).collect();
        let ids: std::collections::HashMap<String, i32> =
            itinerary::Entity::insert_many(stored).exec_with_returning(&txn).await?.into_iter().map(|m| (m.reference, m.id)).collect();
        let mut rows_of = GroupRows::default();
        let mut views = Vec::with_capacity(group.len());
        for (b, (plan, mut rows)) in group.iter().zip(made) {
            let (versions, messages) = rows.views_of_version();
            let view = ItineraryView {
                id: *ids.get(&b.reference).ok_or(StoreError::corrupt("itinerary", "not inserted"))?,
                reference: b.reference.clone(),
                patient_id: b.patient.id,
                status: "active".to_owned(),
                version: 1,
                plan,
                versions,
                messages,
            };
            rows_of.add(&view, b.key.as_ref(), rows)?;
            if let Some(hold) = &b.hold {
                hold.stored_as(view.id);
            }
            views.push(view);
        }
        let (all, answered, latest) = (rows_of.all, rows_of.answered, rows_of.latest);
        // The bookings too: until COMMIT no one else sees them, and the check below leaves
        // this group's own out.
        write_rows(&txn, all, rows_of.audits).await?;
        let drafts: Vec<_> = group.iter().zip(&views).map(|(b, v)| (v.patient_id, b.req.protocol.as_str(), v.id)).collect();
        let drafts = Store::drafts_open(&txn, &drafts).await?;
        let rows_us = started.elapsed().as_micros() as u64;
        let (clinic_changes, mut held) = lock_then_held(&txn, group_window(&group)).await?;
        let locked = std::time::Instant::now();
        let ours: std::collections::HashSet<i32> = views.iter().map(|v| v.id).collect();
        held.retain(|b| !ours.contains(&b.itinerary_id));
        let mut fits = true;
        for b in &group {
            if let Some(k) = &b.key {
                fits &= idempotency::answered_on(&txn, k.coordinator_id, &k.key, b.now).await?.is_none();
            }
        }
        let mut ledgers: Vec<(Arc<ClinicSetup>, Arc<ClinicSetup>, Ledger)> = Vec::new();
        for (b, view) in group.iter().zip(&views) {
            if !fits {
                break;
            }
            let i = match ledgers.iter().position(|(base, _, _)| Arc::ptr_eq(base, &b.base)) {
                Some(i) => i,
                None => {
                    let setup = self.setup_locked(&txn, &b.base, clinic_changes).await?;
                    ledgers.push((b.base.clone(), setup.clone(), ledger_of(&setup, &held)));
                    ledgers.len() - 1
                }
            };
            let (_, setup, ledger) = &mut ledgers[i];
            fits = Arc::ptr_eq(setup, &b.setup) && ledger.admits(setup, &view.plan.bookings());
            ledger.book_plan(&view.plan);
        }
        if !fits {
            txn.rollback().await?;
            tracing::debug!(bookings, "booking group planned again under the lock");
            return self.write_group(group).await;
        }
        Store::mark_drafts_booked(&txn, &drafts).await?;
        idempotency::save(&txn, answered, latest).await?;
        crate::commit(txn).await?;
        tracing::debug!(
            bookings,
            rows_us,
            locked_us = locked.elapsed().as_micros() as u64,
            total_us = started.elapsed().as_micros() as u64,
            "booking group phases, rows first"
        );
        for hold in group.into_iter().filter_map(|b| b.hold) {
            hold.written();
        }
        Ok(views.into_iter().map(Ok).collect())
    }

    /// Plans the itinerary again from a changed request, as a new version: its own bookings are
    /// released first, so the new plan may keep them.
    pub async fn change_itinerary(
        &self,
        by: i32,
        base: &ClinicSetup,
        id: i32,
        req: &NewItinerary,
        now: DateTime<Utc>,
        key: Option<IdempotencyKey>,
    ) -> Result<ItineraryView, BookError> {
        let turn = self.write_turn().await;
        let txn = self.db.begin().await?;
        lock(&txn).await?;
        idempotency::done_before(&txn, key.as_ref(), now).await?;
        let it = active_itinerary(&txn, id).await?;
        if req.patient_id != it.patient_id {
            return Err(InvalidRequest {
                errors: vec![itinerary_core::FieldError {
                    field: "patient_id".into(),
                    value: req.patient_id.to_string(),
                    problem: format!("itinerary {id} belongs to patient {}", it.patient_id),
                }],
            }
            .into());
        }
        let patient = self.patient(it.patient_id).await?;
        let setup = self.setup_now(&txn, base).await?;
        let setup = planning_setup(&setup, req)?;
        let raw = raw_request(&patient, req);
        let parsed = PlanRequest::parse(&raw, &setup)?;
        // Its own bookings are released first: the new plan may keep them.
        booking::Entity::delete_many().filter(booking::Column::ItineraryId.eq(id)).exec(&txn).await?;
        let plan = plan_with(&setup, &parsed, now, &ledger_of(&setup, &bookings_between(&txn, window(&parsed, now)).await?))?;
        let version = it.current_version + 1;
        let state = calendar_state(&txn, id).await?;
        let confirmed = confirmation_sent(&txn, id).await?;
        let rows = version_rows(&setup, &it.reference, &patient, &raw, &plan, version, by, self.update_grace, &state, confirmed)?;
        let mut m: itinerary::ActiveModel = it.into();
        m.current_version = Set(version);
        m.updated_at = Set(now);
        m.update(&txn).await?;
        write_version(&txn, id, rows, false).await?;
        audit(&txn, Some(by), "change", "itinerary", &id.to_string(), json!({ "version": version })).await?;
        let view = itinerary_on(&txn, id).await?;
        idempotency::save_one(&txn, key.as_ref(), &view, now).await?;
        crate::commit(txn).await?;
        drop(turn);
        Ok(view)
    }

    /// Cancels the itinerary: its bookings are released, its pending messages cancelled, and
    /// every calendar UID it issued goes out as a cancellation.
    pub async fn cancel_itinerary(
        &self,
        by: i32,
        base: &ClinicSetup,
        id: i32,
        now: DateTime<Utc>,
        key: Option<IdempotencyKey>,
    ) -> Result<ItineraryView, BookError> {
        let turn = self.write_turn().await;
        let txn = self.db.begin().await?;
        lock(&txn).await?;
        idempotency::done_before(&txn, key.as_ref(), now).await?;
        let it = active_itinerary(&txn, id).await?;
        booking::Entity::delete_many().filter(booking::Column::ItineraryId.eq(id)).exec(&txn).await?;
        // Off the date-range view too; the versions keep what was planned.
        event::Entity::delete_many().filter(event::Column::ItineraryId.eq(id)).exec(&txn).await?;
        mark_messages(&txn, id, "cancelled").await?;
        let state = calendar_state(&txn, id).await?;
        let (changes, next) = state.changes(&[]);
        save_calendar_state(&txn, id, &next).await?;
        let version = it.current_version + 1;
        let itinerary_version::Model { request, plan, .. } = current_version(&txn, &it).await?;
        let patient = self.patient(it.patient_id).await?;
        // One letter says the whole itinerary is cancelled and what will not take place, to a
        // patient who was told of it; the cancellations of each appointment follow it.
        if confirmation_sent(&txn, id).await? {
            let summary = stored::Message {
                itinerary_id: id,
                version,
                key: "itinerary_cancelled".to_owned(),
                kind: "itinerary_cancelled".to_owned(),
                recipient: serde_json::to_string(&Recipient::Patient).map_err(|e| StoreError::corrupt("recipient", e))?,
                language: patient.language.clone(),
                due_at: now + self.update_grace,
                due_zone: patient.home_zone.clone(),
                about: None,
                if_late: "send_now".to_owned(),
                before_at: None,
                payload: None,
            };
            stored::execute(&txn, stored::inserts(vec![summary])).await?;
        }
        let to = (patient.home_zone.as_str(), Choice::of(&patient));
        insert_calendar_messages(&txn, (id, version), &changes, now + self.update_grace, to, base.clinic.zone.name()).await?;
        itinerary_version::ActiveModel {
            itinerary_id: Set(id),
            version: Set(version),
            request: Set(request),
            plan: Set(plan),
            planned_at: Set(now),
            coordinator_id: Set(Some(by)),
            calendar_changes: Set(change_records(&changes).map_err(|e| StoreError::corrupt("calendar changes", e))?),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
        let mut m: itinerary::ActiveModel = it.into();
        m.status = Set("cancelled".to_owned());
        m.current_version = Set(version);
        m.updated_at = Set(now);
        m.update(&txn).await?;
        audit(&txn, Some(by), "cancel", "itinerary", &id.to_string(), json!({ "version": version })).await?;
        let view = itinerary_on(&txn, id).await?;
        idempotency::save_one(&txn, key.as_ref(), &view, now).await?;
        crate::commit(txn).await?;
        drop(turn);
        Ok(view)
    }

    /// Issues the patient's standing itineraries to their calendar again, after a change of
    /// name or address: the current plans' appointments against what was issued, as calendar
    /// messages under the current version (no new plan, so no new version). Pending calendar
    /// messages of the UIDs this replaces are superseded; reminders read the patient when sent.
    pub(crate) async fn reissue_calendars(
        &self,
        txn: &DatabaseTransaction,
        base: &ClinicSetup,
        patient: &PatientView,
        choice: Choice,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        // Under the booking lock, like every change of an itinerary's calendar: a version
        // stored meanwhile (another process, PostgreSQL) would otherwise be overwritten.
        lock(txn).await?;
        let standing = standing_itineraries(txn, patient.id).await?;
        if standing.is_empty() {
            return Ok(());
        }
        let setup = self.setup_now(txn, base).await?;
        // Every escort, deactivated ones too: a standing plan keeps the duties booked before an
        // escort stopped taking new ones, and its calendar names them.
        let escorts: Vec<itinerary_core::Escort> = escort::Entity::find()
            .order_by_asc(escort::Column::Id)
            .all(txn)
            .await?
            .iter()
            .map(escort_from_model)
            .collect::<Result<_, _>>()?;
        for it in standing {
            let plan: Plan = stored::parsed("plan", &current_version(txn, &it).await?.plan)?;
            let calendar = Itinerary {
                id: &it.reference,
                plan: &plan,
                patient: Person { name: &patient.name, email: &patient.email },
                escorts: &escorts,
                clinic_name: &setup.clinic.name,
                settings: &setup.calendar,
            };
            let appointments = calendar.appointments().map_err(|e| StoreError::corrupt("calendar", e))?;
            let (changes, next) = calendar_state(txn, it.id).await?.changes(&appointments);
            let changed: Vec<String> =
                changes.iter().filter(|c| c.kind != ChangeKind::Unchanged).map(|c| c.appointment.uid.clone()).collect();
            if changed.is_empty() {
                continue;
            }
            supersede_calendar(txn, it.id, changed).await?;
            save_calendar_state(txn, it.id, &next).await?;
            let due = now + self.update_grace;
            let to = (patient.home_zone.as_str(), choice);
            insert_calendar_messages(txn, (it.id, it.current_version), &changes, due, to, setup.clinic.zone.name()).await?;
        }
        Ok(())
    }

    /// After the patient chose other invites: an invite for each standing appointment now
    /// covered that was not, and a cancellation for each no longer covered, so that their
    /// calendar holds what the choice says and no invited event is left to go stale. Each goes
    /// at a SEQUENCE one higher, kept in the calendar state (the feed shows it too).
    pub(crate) async fn offer_invites(
        &self,
        txn: &DatabaseTransaction,
        base: &ClinicSetup,
        patient: &PatientView,
        before: Invites,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        lock(txn).await?;
        let standing = standing_itineraries(txn, patient.id).await?;
        for it in standing {
            let mut state = calendar_state(txn, it.id).await?;
            // Each at a higher SEQUENCE (RFC 5546: a client orders what it receives by it, and a
            // cancellation or a new invite at the last one's may be taken as already seen); the
            // feed's copy rises with it, which changes nothing for a subscriber.
            let mut changes = Vec::new();
            for i in state.issued.values_mut().filter(|i| !i.cancelled && i.appointment.attendee.audience == Audience::Patient) {
                let key = &i.appointment.event;
                let kind = match (before.wants_key(key), patient.invites.wants_key(key)) {
                    (false, true) => ChangeKind::Invite,
                    (true, false) => ChangeKind::Cancel,
                    _ => continue,
                };
                i.sequence += 1;
                changes.push(Change { kind, sequence: i.sequence, appointment: i.appointment.clone() });
            }
            if changes.is_empty() {
                continue;
            }
            save_calendar_state(txn, it.id, &state).await?;
            supersede_calendar(txn, it.id, changes.iter().map(|c| c.appointment.uid.clone()).collect()).await?;
            // Every change here is the patient's own: the clinic's zone (escorts') is not used.
            let to = (patient.home_zone.as_str(), Choice { now: Invites::Every, sent_under: Invites::Every });
            insert_calendar_messages(txn, (it.id, it.current_version), &changes, now + self.update_grace, to, base.clinic.zone.name())
                .await?;
        }
        Ok(())
    }

    pub async fn itinerary(&self, id: i32) -> Result<ItineraryView, StoreError> {
        itinerary_on(&self.db, id).await
    }
}

/// The patient's itineraries that are not cancelled.
async fn standing_itineraries(txn: &DatabaseTransaction, patient_id: i32) -> Result<Vec<itinerary::Model>, sea_orm::DbErr> {
    itinerary::Entity::find()
        .filter(itinerary::Column::PatientId.eq(patient_id))
        .filter(itinerary::Column::Status.eq("active"))
        .all(txn)
        .await
}

/// The itinerary as stored, read through `db`: a write reads its answer inside its own
/// transaction, so a 2xx never depends on a connection found after the commit.
async fn itinerary_on(db: &impl ConnectionTrait, id: i32) -> Result<ItineraryView, StoreError> {
    {
        let it =
            itinerary::Entity::find_by_id(id).unique(db).await?.ok_or(StoreError::NotFound { entity: "itinerary", id: id.to_string() })?;
        let versions = itinerary_version::Entity::find()
            .filter(itinerary_version::Column::ItineraryId.eq(id))
            .order_by_asc(itinerary_version::Column::Version)
            .all(db)
            .await?;
        let current = versions
            .iter()
            .rev()
            .find(|v| v.version <= it.current_version)
            .ok_or(StoreError::corrupt("itinerary version", "none stored"))?;
        let plan: Plan = stored::parsed("plan", &current.plan)?;
        let rows = scheduled_message::Entity::find()
            .filter(scheduled_message::Column::ItineraryId.eq(id))
            .order_by_asc(scheduled_message::Column::DueAt)
            .all(db)
            .await?;
        // Answers by LINE buttons, the latest per message (rows come oldest first).
        let answers: std::collections::HashMap<i32, (String, DateTime<Utc>)> = crate::entity::patient_message::Entity::find()
            .filter(crate::entity::patient_message::Column::PatientId.eq(it.patient_id))
            .filter(crate::entity::patient_message::Column::MessageId.is_not_null())
            .order_by_asc(crate::entity::patient_message::Column::Id)
            .all(db)
            .await?
            .into_iter()
            .filter_map(|a| Some((a.message_id?, (a.answer?, a.received_at))))
            .collect();
        let messages = rows
            .into_iter()
            .map(|m| MessageView {
                answer: answers.get(&m.id).map(|a| a.0.clone()),
                answered_at: answers.get(&m.id).map(|a| a.1),
                id: Some(m.id),
                key: m.key,
                kind: m.kind,
                version: m.version,
                recipient: m.recipient,
                due_at: m.due_at,
                due_zone: m.due_zone,
                status: m.status,
                sent_at: m.sent_at,
                channel: m.channel,
                error: m.last_error,
            })
            .collect();
        Ok(ItineraryView {
            id: it.id,
            reference: it.reference,
            patient_id: it.patient_id,
            status: it.status,
            version: it.current_version,
            plan,
            versions: versions
                .into_iter()
                .map(|v| VersionView {
                    version: v.version,
                    planned_at: v.planned_at,
                    coordinator_id: v.coordinator_id,
                    calendar_changes: v.calendar_changes,
                })
                .collect(),
            messages,
        })
    }
}

impl Store {
    /// Escort duties (from the bookings of standing itineraries) between `from` and `to`, by
    /// escort and start.
    pub async fn escort_duties_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<booking::Model>, StoreError> {
        Ok(booking::Entity::find()
            .filter(booking::Column::Kind.eq("escort"))
            .filter(booking::Column::StartsAt.lt(to))
            .filter(booking::Column::StartsAt.gt(from - LONGEST_BOOKING))
            .filter(booking::Column::EndsAt.gt(from))
            .order_by_asc(booking::Column::Resource)
            .order_by_asc(booking::Column::StartsAt)
            .all(&self.db)
            .await?)
    }

    /// Every booking (escort duties, chairs, lab draws) overlapping `from`..`to`, by start.
    pub async fn bookings_in(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<booking::Model>, StoreError> {
        Ok(booking::Entity::find()
            .filter(booking::Column::StartsAt.lt(to))
            .filter(booking::Column::StartsAt.gt(from - LONGEST_BOOKING))
            .filter(booking::Column::EndsAt.gt(from))
            .order_by_asc(booking::Column::StartsAt)
            .all(&self.db)
            .await?)
    }

    /// Itineraries with an event between `from` and `to`, newest first.
    pub async fn itineraries_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<(i32, Vec<event::Model>)>, StoreError> {
        let events = event::Entity::find()
            .filter(event::Column::StartsAt.lt(to))
            .filter(event::Column::EndsAt.gt(from))
            .order_by_asc(event::Column::StartsAt)
            .all(&self.db)
            .await?;
        let mut out: Vec<(i32, Vec<event::Model>)> = Vec::new();
        for e in events {
            match out.iter_mut().find(|(id, _)| *id == e.itinerary_id) {
                Some((_, v)) => v.push(e),
                None => out.push((e.itinerary_id, vec![e])),
            }
        }
        Ok(out)
    }

    /// The itinerary as the patient's calendar (METHOD:PUBLISH), at each UID's current SEQUENCE.
    pub async fn itinerary_ics(&self, base: &ClinicSetup, id: i32) -> Result<String, StoreError> {
        self.calendar_of(base, &[id]).await
    }

    /// One METHOD:PUBLISH calendar of the appointments still standing in `ids` (all of one
    /// patient; the first is the newest and names the calendar), in start order, each UID at
    /// its current SEQUENCE.
    async fn calendar_of(&self, base: &ClinicSetup, ids: &[i32]) -> Result<String, StoreError> {
        let newest = *ids.first().ok_or(StoreError::corrupt("calendar", "no itinerary"))?;
        // The newest itinerary's current plan names the calendar: one version read, not all.
        let it = itinerary::Entity::find_by_id(newest)
            .unique(&self.db)
            .await?
            .ok_or(StoreError::NotFound { entity: "itinerary", id: newest.to_string() })?;
        let plan: Plan = stored::parsed("plan", &current_version(&self.db, &it).await?.plan)?;
        let patient = self.patient(it.patient_id).await?;
        let mut sequences = std::collections::HashMap::new();
        let mut live: Vec<Appointment> = Vec::new();
        for &id in ids {
            for i in calendar_state(&self.db, id).await?.issued.into_values().filter(|i| !i.cancelled) {
                sequences.insert(i.appointment.uid.clone(), i.sequence);
                live.push(i.appointment);
            }
        }
        let start = |a: &Appointment| match &a.when {
            When::Timed { start, .. } => start.utc(),
            When::Dates { start, .. } => start.and_hms_opt(0, 0, 0).map(|t| t.and_utc()).unwrap_or_default(),
        };
        live.sort_by(|a, b| start(a).cmp(&start(b)).then_with(|| a.uid.cmp(&b.uid)));
        let it = Itinerary {
            id: &it.reference,
            plan: &plan,
            patient: Person { name: &patient.name, email: &patient.email },
            escorts: &[],
            clinic_name: &base.clinic.name,
            settings: &base.calendar,
        };
        Ok(itinerary_calendar::publish(&it, &live, |uid| sequences.get(uid).copied().unwrap_or(0)))
    }

    /// The calendar a feed token opens: every itinerary of its patient that is not cancelled (a
    /// second set a year later joins the first one's follow-ups), found in one query and
    /// rendered once per set of itinerary versions; with every itinerary cancelled, an empty
    /// calendar. None for a token that is revoked or unknown, or a patient with no itinerary.
    pub async fn feed(&self, base: &ClinicSetup, secret: &str) -> Result<Option<Feed>, StoreError> {
        use sea_orm::sea_query::{Expr, ExprTrait, Order, Query};
        // The patient's last change is part of the feed's identity: a corrected name or address
        // re-issues the calendar without a new version, and subscribers must see it.
        let q = Query::select()
            .column((itinerary::Entity, itinerary::Column::Id))
            .column((itinerary::Entity, itinerary::Column::CurrentVersion))
            .expr_as(Expr::col((patient::Entity, patient::Column::UpdatedAt)), "patient_updated_at")
            .from(feed_token::Entity)
            .inner_join(
                itinerary::Entity,
                Expr::col((itinerary::Entity, itinerary::Column::PatientId)).equals((feed_token::Entity, feed_token::Column::PatientId)),
            )
            .inner_join(
                patient::Entity,
                Expr::col((patient::Entity, patient::Column::Id)).equals((feed_token::Entity, feed_token::Column::PatientId)),
            )
            .and_where(Expr::col((feed_token::Entity, feed_token::Column::TokenHash)).eq(crate::hash_token(secret)))
            .and_where(Expr::col((feed_token::Entity, feed_token::Column::RevokedAt)).is_null())
            .and_where(Expr::col((itinerary::Entity, itinerary::Column::Status)).eq("active"))
            .order_by((itinerary::Entity, itinerary::Column::Id), Order::Desc)
            .to_owned();
        let rows = self.db.query_all(&q).await?;
        let versions: Vec<(i32, i32)> =
            rows.iter().map(|r| Ok((r.try_get("", "id")?, r.try_get("", "current_version")?))).collect::<Result<_, sea_orm::DbErr>>()?;
        let Some(first) = rows.first() else {
            // A patient whose itineraries are all cancelled: an empty calendar, so a subscribed
            // calendar app drops the events (on a 404 many keep the last ones they saw). A URL
            // that never showed anything (no itinerary at all) stays unknown.
            let Some(patient_id) = self.feed_patient(secret).await? else { return Ok(None) };
            let Some(last) = itinerary::Entity::find()
                .filter(itinerary::Column::PatientId.eq(patient_id))
                .order_by_desc(itinerary::Column::Id)
                .one(&self.db)
                .await?
            else {
                return Ok(None);
            };
            let text: Arc<str> = self.calendar_of(base, &[last.id]).await?.into();
            return Ok(Some(Feed { etag: format!("\"{}-{}.cancelled\"", last.id, last.current_version), text }));
        };
        let revision = first.try_get::<DateTime<Utc>>("", "patient_updated_at")?.timestamp_micros();
        let tag = format!("\"{}.p{revision:x}\"", versions.iter().map(|(i, v)| format!("{i}-{v}")).collect::<Vec<_>>().join("."));
        let key = (revision, versions);
        if let Some(hit) = self.feeds.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(Some(Feed { etag: tag, text: hit }));
        }
        let ids: Vec<i32> = key.1.iter().map(|k| k.0).collect();
        let text: Arc<str> = self.calendar_of(base, &ids).await?.into();
        if let Ok(mut cache) = self.feeds.lock() {
            // Bounded: versions only accumulate; start over rather than grow without end.
            if cache.len() >= 10_000 {
                cache.clear();
            }
            cache.insert(key, text.clone());
        }
        Ok(Some(Feed { etag: tag, text }))
    }
}

/// The stored row of the itinerary's current version.
async fn current_version(db: &impl ConnectionTrait, it: &itinerary::Model) -> Result<itinerary_version::Model, StoreError> {
    itinerary_version::Entity::find()
        .filter(itinerary_version::Column::ItineraryId.eq(it.id))
        .filter(itinerary_version::Column::Version.eq(it.current_version))
        .unique(db)
        .await?
        .ok_or(StoreError::corrupt("itinerary version", format!("itinerary {} has no version {}", it.id, it.current_version)))
}

/// The itinerary, if it exists and is not cancelled (read under the booking lock).
async fn active_itinerary(txn: &DatabaseTransaction, id: i32) -> Result<itinerary::Model, BookError> {
    let it =
        itinerary::Entity::find_by_id(id).unique(txn).await?.ok_or(StoreError::NotFound { entity: "itinerary", id: id.to_string() })?;
    if it.status != "active" {
        return Err(BookError::Cancelled(id));
    }
    Ok(it)
}

/// No booking lasts longer (the longest, an escort's airport duty, is hours): what may overlap
/// [from, to) then starts after `from - LONGEST_BOOKING`, which bounds the index range scan
/// from both sides instead of reading every earlier booking. `version_rows` enforces it.
const LONGEST_BOOKING: Duration = Duration::days(1);

/// The bookings of standing itineraries that overlap [from, to).
async fn bookings_between(
    db: &impl ConnectionTrait,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
) -> Result<Vec<booking::Model>, sea_orm::DbErr> {
    booking::Entity::find()
        .filter(booking::Column::StartsAt.lt(to))
        .filter(booking::Column::StartsAt.gt(from - LONGEST_BOOKING))
        .filter(booking::Column::EndsAt.gt(from))
        .all(db)
        .await
}

/// The booking lock, as `lock`, and then the bookings `bookings_between` would read, in one
/// round trip on PostgreSQL (`booking_lock_then_held`, migration 19: its reading begins after
/// the lock is held, so it sees what the lock's previous holder committed); with how many
/// changes the clinic has seen.
async fn lock_then_held(
    txn: &DatabaseTransaction,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
) -> Result<(i64, Vec<booking::Model>), StoreError> {
    let rows = txn
        .query_all_raw(sea_orm::Statement::from_sql_and_values(
            txn.get_database_backend(),
            "SELECT * FROM booking_lock_then_held($1, $2, $3)",
            [from.into(), to.into(), (from - LONGEST_BOOKING).into()],
        ))
        .await?;
    let mut changes = None;
    let mut held = Vec::with_capacity(rows.len());
    for row in rows {
        changes = Some(row.try_get::<i64>("", "clinic_changes")?);
        if row.try_get::<Option<i32>>("", "id")?.is_some() {
            held.push(<booking::Model as sea_orm::FromQueryResult>::from_query_result(&row, "")?);
        }
    }
    Ok((changes.ok_or(StoreError::corrupt("booking_lock", "no row 1"))?, held))
}

/// Takes the booking lock: every booking transaction updates this one row first.
pub(crate) async fn lock(txn: &DatabaseTransaction) -> Result<(), sea_orm::DbErr> {
    txn.execute_unprepared("UPDATE booking_lock SET bookings = bookings + 1 WHERE id = 1").await?;
    Ok(())
}

/// The plan request for a stored patient.
fn raw_request(patient: &PatientView, req: &NewItinerary) -> RawPlanRequest {
    RawPlanRequest {
        patient: patient.raw(),
        protocol: req.protocol.clone(),
        interval_days: req.interval_days,
        trip_mode: req.trip_mode.clone(),
        trips: req.trips.clone(),
        preferred_dates: req.preferred_dates.clone(),
    }
}

/// The clinic the planner sees for `req`: with only the chosen escort, when it names one.
fn planning_setup<'a>(setup: &'a Arc<ClinicSetup>, req: &NewItinerary) -> Result<Cow<'a, ClinicSetup>, InvalidRequest> {
    let Some(id) = &req.escort else { return Ok(Cow::Borrowed(setup)) };
    let Some(e) = setup.resources.escorts.iter().find(|e| e.id == *id) else {
        return Err(InvalidRequest {
            errors: vec![itinerary_core::FieldError {
                field: "escort".into(),
                value: id.clone(),
                problem: "no active escort has this id".into(),
            }],
        });
    };
    let mut only = ClinicSetup::clone(setup);
    only.resources.escorts = vec![e.clone()];
    Ok(Cow::Owned(only))
}

/// Bookings only happen during a stay: what overlaps the trips (a day either side) is all the
/// planner can meet.
fn window(parsed: &PlanRequest, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let from = parsed.trips.iter().map(|t| t.outbound.departs.utc()).min().unwrap_or(now) - Duration::days(1);
    let to = parsed.trips.iter().map(|t| t.return_flight.arrives.utc()).max().unwrap_or(now) + Duration::days(1);
    (from, to)
}

/// Where the bookings of a whole group can fall: what must be read to check them.
fn group_window(group: &[crate::group::NewBooking]) -> (DateTime<Utc>, DateTime<Utc>) {
    let from = group.iter().map(|b| b.window.0).min().unwrap_or_default();
    let to = group.iter().map(|b| b.window.1).max().unwrap_or_default();
    (from, to)
}

fn ledger_of(setup: &ClinicSetup, held: &[booking::Model]) -> Ledger {
    let mut ledger = Ledger::new(setup.rules.slot_minutes);
    for b in held {
        ledger.book(&as_booking(b));
    }
    ledger
}

/// The plan against what other itineraries hold (`held`, at least around its trips). When it does
/// not fit but would in an empty clinic, others hold what it needs: a conflict.
fn plan_with(setup: &ClinicSetup, parsed: &PlanRequest, now: DateTime<Utc>, held: &Ledger) -> Result<Plan, BookError> {
    match itinerary_core::plan(setup, parsed, now, held) {
        Ok(plan) => Ok(plan),
        Err(held) if itinerary_core::plan(setup, parsed, now, &Ledger::new(setup.rules.slot_minutes)).is_ok() => {
            Err(BookError::Conflict(held))
        }
        Err(never) => Err(never.into()),
    }
}

/// Everything one version stores, made before any write: the booking lock is then held for
/// the writes alone. Rows carry no itinerary id until `append` or `write_version`.
#[derive(Default)]
pub(crate) struct VersionRows {
    by: i32,
    planned_at: DateTime<Utc>,
    bookings: Vec<booking::ActiveModel>,
    events: Vec<event::ActiveModel>,
    /// The calendar state after this version, and the UIDs it changed.
    uids: Vec<stored::Uid>,
    changed: Vec<String>,
    messages: Vec<stored::Message>,
    versions: Vec<stored::Version>,
    views: (VersionView, Vec<MessageView>),
}

/// The rows of a group's new itineraries, gathered for one write: theirs, an audit entry each,
/// and the answers of those sent with an idempotency key.
#[derive(Default)]
struct GroupRows {
    all: VersionRows,
    audits: Vec<audit_log::ActiveModel>,
    answered: Vec<crate::entity::idempotency_key::ActiveModel>,
    /// When the last of them was planned.
    latest: DateTime<Utc>,
}

impl GroupRows {
    /// Adds new itinerary `view`'s rows.
    fn add(&mut self, view: &ItineraryView, key: Option<&IdempotencyKey>, rows: VersionRows) -> Result<(), StoreError> {
        let id = view.id;
        self.audits.push(audit_row(
            Some(rows.by),
            "create",
            "itinerary",
            &id.to_string(),
            json!({ "version": 1, "protocol": view.plan.protocol }),
        ));
        self.latest = self.latest.max(rows.planned_at);
        if let Some(k) = key {
            self.answered.push(idempotency::row(k, view, rows.planned_at)?);
        }
        self.all.append(id, rows);
        Ok(())
    }
}

impl VersionRows {
    /// The new itinerary whose first version these rows store.
    fn itinerary(&self, reference: &str, patient_id: i32) -> itinerary::ActiveModel {
        itinerary::ActiveModel {
            reference: Set(reference.to_owned()),
            patient_id: Set(patient_id),
            status: Set("active".to_owned()),
            current_version: Set(1),
            created_at: Set(self.planned_at),
            updated_at: Set(self.planned_at),
            ..Default::default()
        }
    }

    /// What the answer shows of the version these rows store: the version and its messages.
    fn views_of_version(&mut self) -> (Vec<VersionView>, Vec<MessageView>) {
        let (version, messages) = std::mem::take(&mut self.views);
        (vec![version], messages)
    }

    /// Adds `rows`, of itinerary `id`, to these (the rows of one group, written together).
    fn append(&mut self, id: i32, rows: VersionRows) {
        let mut rows = rows.of(id);
        self.bookings.append(&mut rows.bookings);
        self.events.append(&mut rows.events);
        self.uids.append(&mut rows.uids);
        self.messages.append(&mut rows.messages);
        self.versions.append(&mut rows.versions);
    }

    /// The rows, as itinerary `id`'s.
    fn of(mut self, id: i32) -> VersionRows {
        self.bookings.iter_mut().for_each(|r| r.itinerary_id = Set(id));
        self.events.iter_mut().for_each(|r| r.itinerary_id = Set(id));
        self.uids.iter_mut().for_each(|r| r.itinerary_id = id);
        self.messages.iter_mut().for_each(|r| r.itinerary_id = id);
        self.versions.iter_mut().for_each(|r| r.itinerary_id = id);
        self
    }
}

/// The rows of version `version` of itinerary `reference`: its bookings, events, calendar
/// state after `state` (what was issued so far), and messages (`confirmed`: a confirmation
/// already went out).
#[allow(clippy::too_many_arguments)]
fn version_rows(
    setup: &ClinicSetup,
    reference: &str,
    patient: &PatientView,
    raw: &RawPlanRequest,
    plan: &Plan,
    version: i32,
    by: i32,
    grace: Duration,
    state: &CalendarState,
    confirmed: bool,
) -> Result<VersionRows, BookError> {
    let corrupt = |what| move |e: serde_json::Error| StoreError::corrupt(what, e);
    let bookings: Vec<_> = plan.bookings().iter().map(booking_row).collect();
    if let Some(b) = bookings.iter().find(|b| *b.ends_at.as_ref() - *b.starts_at.as_ref() > LONGEST_BOOKING) {
        // The range reads of bookings would miss it: refuse rather than double-book later.
        return Err(StoreError::corrupt(
            "booking",
            format!("{} from {} lasts over {LONGEST_BOOKING}", b.kind.as_ref(), b.starts_at.as_ref()),
        )
        .into());
    }
    let mut events = Vec::with_capacity(plan.events.len());
    for e in &plan.events {
        let (starts_at, ends_at, start_zone, end_zone, start_date, end_date) = match &e.when {
            When::Timed { start, end } => {
                (Some(start.utc()), Some(end.utc()), Some(start.zone().name().to_owned()), Some(end.zone().name().to_owned()), None, None)
            }
            When::Dates { start, end } => {
                let day = |d: chrono::NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
                (day(*start), day(*end), None, None, Some(*start), Some(*end))
            }
        };
        events.push(event::ActiveModel {
            key: Set(e.key.clone()),
            kind: Set(serde_json::to_value(e.kind).map_err(corrupt("event kind"))?.as_str().unwrap_or_default().to_owned()),
            starts_at: Set(starts_at),
            ends_at: Set(ends_at),
            start_zone: Set(start_zone),
            end_zone: Set(end_zone),
            start_date: Set(start_date),
            end_date: Set(end_date),
            escort_id: Set(e.escort.clone()),
            ..Default::default()
        });
    }
    // Calendar: what this version sends under each UID.
    let calendar = Itinerary {
        id: reference,
        plan,
        patient: Person { name: &patient.name, email: &patient.email },
        escorts: &setup.resources.escorts,
        clinic_name: &setup.clinic.name,
        settings: &setup.calendar,
    };
    let appointments = calendar.appointments().map_err(|e| StoreError::corrupt("calendar", e))?;
    let (changes, next) = state.changes(&appointments);
    // Messages of earlier versions are superseded; the worker sends only pending ones. A
    // calendar message not yet sent stays when this version leaves its UID as it was: its
    // invite or cancellation is still owed.
    let changed = changes.iter().filter(|c| c.kind != ChangeKind::Unchanged).map(|c| c.appointment.uid.clone()).collect();
    let uids = uid_rows(0, &next).map_err(corrupt("calendar appointment"))?;
    let calendar_changes = change_records(&changes).map_err(corrupt("calendar changes"))?;
    // Invites and the confirmation wait out the grace period, so quick edits send one update.
    let settled = plan.planned_at.utc() + grace;
    let patient_changed = changes.iter().any(|c| c.kind != ChangeKind::Unchanged && c.appointment.attendee.audience == Audience::Patient);
    let mut rows = Vec::with_capacity(plan.messages.len() + changes.len());
    for m in &plan.messages {
        let mut row = MessageRow::from_plan(m).map_err(corrupt("message"))?;
        if m.kind == MessageKind::BookingConfirmation {
            row.due_at = row.due_at.max(settled);
            // After a confirmation went out, a change is announced only when the patient's
            // appointments changed.
            if confirmed {
                if !patient_changed {
                    continue;
                }
                row.kind = "itinerary_changed".to_owned();
            }
        }
        rows.push(row);
    }
    let home_zone = plan
        .messages
        .iter()
        .find(|m| m.kind == MessageKind::BookingConfirmation)
        .map_or(patient.home_zone.as_str(), |m| m.at.zone().name());
    rows.extend(
        calendar_rows(&changes, settled, (home_zone, Choice::of(patient)), setup.clinic.zone.name()).map_err(corrupt("calendar change"))?,
    );
    let views = rows.iter().map(|r| r.view(version)).collect();
    let messages = rows.into_iter().map(|r| r.stored(version)).collect::<Result<_, _>>().map_err(corrupt("message"))?;
    // JSON goes to the database as text, serialized once, here, outside the booking lock.
    let version_row = stored::Version {
        itinerary_id: 0,
        version,
        request: serde_json::to_string(raw).map_err(corrupt("request"))?,
        plan: serde_json::to_string(plan).map_err(corrupt("plan"))?,
        planned_at: plan.planned_at.utc(),
        coordinator_id: Some(by),
        calendar_changes: calendar_changes.to_string(),
    };
    Ok(VersionRows {
        by,
        planned_at: plan.planned_at.utc(),
        bookings,
        events,
        uids,
        changed,
        messages,
        versions: vec![version_row],
        views: (VersionView { version, planned_at: plan.planned_at.utc(), coordinator_id: Some(by), calendar_changes }, views),
    })
}

/// Stores `rows` as itinerary `id`'s newest version. A later version replaces the events and
/// calendar state, and supersedes the messages its changes make obsolete; the caller released
/// the old bookings before planning.
async fn write_version(
    txn: &DatabaseTransaction,
    id: i32,
    rows: VersionRows,
    first: bool,
) -> Result<(VersionView, Vec<MessageView>), BookError> {
    let mut rows = rows.of(id);
    if !first {
        event::Entity::delete_many().filter(event::Column::ItineraryId.eq(id)).exec(txn).await?;
        calendar_uid::Entity::delete_many().filter(calendar_uid::Column::ItineraryId.eq(id)).exec(txn).await?;
        supersede(txn, id, std::mem::take(&mut rows.changed)).await?;
    }
    let views = std::mem::take(&mut rows.views);
    write_rows(txn, rows, Vec::new()).await?;
    Ok(views)
}

/// One statement per table, and none for a table with nothing to add (on PostgreSQL, one for
/// all): under the booking lock, statements are what the next booking waits for.
async fn write_rows(txn: &DatabaseTransaction, rows: VersionRows, audits: Vec<audit_log::ActiveModel>) -> Result<(), sea_orm::DbErr> {
    let mut inserts = stored::model_inserts(rows.bookings);
    inserts.extend(stored::model_inserts(rows.events));
    inserts.extend(stored::inserts(rows.uids));
    inserts.extend(stored::inserts(rows.messages));
    inserts.extend(stored::inserts(rows.versions));
    inserts.extend(stored::model_inserts(audits));
    stored::execute(txn, inserts).await
}

/// A scheduled message as it is stored: from the plan's reminders or from a calendar change.
struct MessageRow {
    key: String,
    kind: String,
    recipient: serde_json::Value,
    language: String,
    due_at: DateTime<Utc>,
    due_zone: String,
    about: Option<String>,
    before_at: Option<DateTime<Utc>>,
    if_late: String,
    /// The calendar change, as JSON text.
    payload: Option<String>,
}

impl MessageRow {
    fn from_plan(m: &MessageDue) -> Result<MessageRow, serde_json::Error> {
        let name = |v: serde_json::Value| v.as_str().unwrap_or_default().to_owned();
        Ok(MessageRow {
            key: m.key.clone(),
            kind: name(serde_json::to_value(m.kind)?),
            recipient: serde_json::to_value(&m.recipient)?,
            language: m.language.code().to_owned(),
            due_at: m.at.utc(),
            due_zone: m.at.zone().name().to_owned(),
            about: m.about.clone(),
            before_at: m.before.map(|b| b.utc()),
            if_late: name(serde_json::to_value(m.if_late)?),
            payload: None,
        })
    }

    fn view(&self, version: i32) -> MessageView {
        MessageView {
            id: None,
            key: self.key.clone(),
            kind: self.kind.clone(),
            version,
            recipient: self.recipient.clone(),
            due_at: self.due_at,
            due_zone: self.due_zone.clone(),
            status: "pending".to_owned(),
            sent_at: None,
            channel: None,
            error: None,
            answer: None,
            answered_at: None,
        }
    }

    fn stored(self, version: i32) -> Result<stored::Message, serde_json::Error> {
        Ok(stored::Message {
            itinerary_id: 0,
            version,
            key: self.key,
            kind: self.kind,
            recipient: serde_json::to_string(&self.recipient)?,
            language: self.language,
            due_at: self.due_at,
            due_zone: self.due_zone,
            about: self.about,
            if_late: self.if_late,
            before_at: self.before_at,
            payload: self.payload,
        })
    }
}

/// The patient's choice of invites for a set of calendar changes: `now` decides who is invited,
/// `sent_under` who gets updates and cancellations (the choice their invite went out under:
/// they differ only while a patient's new choice and new address are applied together).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Choice {
    pub(crate) now: Invites,
    pub(crate) sent_under: Invites,
}

impl Choice {
    pub(crate) fn of(patient: &PatientView) -> Choice {
        Choice { now: patient.invites, sent_under: patient.invites }
    }

    fn covers(self, c: &Change) -> bool {
        let choice = if c.kind == ChangeKind::Invite { self.now } else { self.sent_under };
        c.appointment.attendee.audience != Audience::Patient || choice.wants_key(&c.appointment.event)
    }
}

/// One message per appointment that changed: an invite, an update or a cancellation, to its
/// attendee, due once the grace period is over; to the patient only for the appointments their
/// choice of invites covers (the feed and the confirmation's file carry them all).
fn calendar_rows(
    changes: &[Change],
    due: DateTime<Utc>,
    (patient_zone, choice): (&str, Choice),
    clinic_zone: &str,
) -> Result<Vec<MessageRow>, serde_json::Error> {
    let mut rows = Vec::new();
    let sent = |c: &&Change| choice.covers(c);
    for c in changes.iter().filter(|c| c.kind != ChangeKind::Unchanged).filter(sent) {
        let (recipient, zone) = match &c.appointment.attendee.audience {
            Audience::Patient => (Recipient::Patient, patient_zone),
            Audience::Escort { id } => (Recipient::Escort { id: id.clone() }, clinic_zone),
        };
        let kind = match c.kind {
            ChangeKind::Invite => "calendar_invite",
            ChangeKind::Update => "calendar_update",
            _ => "calendar_cancel",
        };
        rows.push(MessageRow {
            key: format!("{}.{kind}", c.appointment.event),
            kind: kind.to_owned(),
            recipient: serde_json::to_value(&recipient)?,
            language: c.appointment.attendee.language.code().to_owned(),
            due_at: due,
            due_zone: zone.to_owned(),
            about: Some(c.appointment.uid.clone()),
            before_at: match &c.appointment.when {
                When::Timed { start, .. } => Some(start.utc()),
                When::Dates { .. } => None,
            },
            if_late: "send_now".to_owned(),
            payload: Some(serde_json::to_string(c)?),
        });
    }
    Ok(rows)
}

/// Stores `calendar_rows` of `changes` as messages of (itinerary, version).
async fn insert_calendar_messages(
    txn: &DatabaseTransaction,
    (itinerary_id, version): (i32, i32),
    changes: &[Change],
    due: DateTime<Utc>,
    patient: (&str, Choice),
    clinic_zone: &str,
) -> Result<(), StoreError> {
    let rows = calendar_rows(changes, due, patient, clinic_zone)
        .and_then(|rows| {
            rows.into_iter().map(|r| r.stored(version).map(|m| stored::Message { itinerary_id, ..m })).collect::<Result<Vec<_>, _>>()
        })
        .map_err(|e| StoreError::corrupt("calendar change", e))?;
    stored::execute(txn, stored::inserts(rows)).await?;
    Ok(())
}

/// Whether the patient already received a booking confirmation (or a change notice) for it.
async fn confirmation_sent(db: &impl ConnectionTrait, itinerary_id: i32) -> Result<bool, sea_orm::DbErr> {
    let sent = scheduled_message::Entity::find()
        .filter(scheduled_message::Column::ItineraryId.eq(itinerary_id))
        .filter(scheduled_message::Column::Kind.is_in(["booking_confirmation", "itinerary_changed"]))
        .filter(scheduled_message::Column::Status.eq("sent"))
        .one(db)
        .await?;
    Ok(sent.is_some())
}

/// Messages not yet sent, including those being sent right now: a send that fails or waits for
/// the morning must not bring a superseded or cancelled message back. A message leaving these
/// states drops its payload (the calendar content with the attendee's name and address): only a
/// send reads it, and no copy may outlive a correction or an erasure.
const NOT_YET_SENT: [&str; 3] = ["pending", "queued", "sending"];

/// Supersedes the pending calendar messages of an itinerary for the UIDs in `changed` (and only
/// those: its reminders stand).
async fn supersede_calendar(txn: &DatabaseTransaction, itinerary_id: i32, changed: Vec<String>) -> Result<(), sea_orm::DbErr> {
    use sea_orm::sea_query::Expr;
    scheduled_message::Entity::update_many()
        .col_expr(scheduled_message::Column::Status, Expr::value("superseded"))
        .col_expr(scheduled_message::Column::Payload, Expr::value(Option::<String>::None))
        .filter(scheduled_message::Column::ItineraryId.eq(itinerary_id))
        .filter(scheduled_message::Column::Status.is_in(NOT_YET_SENT))
        .filter(scheduled_message::Column::Payload.is_not_null())
        .filter(scheduled_message::Column::About.is_in(changed))
        .exec(txn)
        .await?;
    Ok(())
}

/// Supersedes the pending reminders of an itinerary, and its pending calendar messages for the
/// UIDs in `changed`.
async fn supersede(txn: &DatabaseTransaction, itinerary_id: i32, changed: Vec<String>) -> Result<(), sea_orm::DbErr> {
    use sea_orm::Condition;
    use sea_orm::sea_query::Expr;
    scheduled_message::Entity::update_many()
        .col_expr(scheduled_message::Column::Status, Expr::value("superseded"))
        .col_expr(scheduled_message::Column::Payload, Expr::value(Option::<String>::None))
        .filter(scheduled_message::Column::ItineraryId.eq(itinerary_id))
        // A message being sent right now is marked too: if its send fails or waits for the
        // morning, it must not come back as pending; if it goes out, it is recorded as sent.
        .filter(scheduled_message::Column::Status.is_in(NOT_YET_SENT))
        .filter(Condition::any().add(scheduled_message::Column::Payload.is_null()).add(scheduled_message::Column::About.is_in(changed)))
        .exec(txn)
        .await?;
    Ok(())
}

async fn mark_messages(txn: &DatabaseTransaction, itinerary_id: i32, status: &str) -> Result<(), sea_orm::DbErr> {
    use sea_orm::sea_query::Expr;
    // In flight too: a send that fails or waits for the morning must not bring it back.
    scheduled_message::Entity::update_many()
        .col_expr(scheduled_message::Column::Status, Expr::value(status))
        .col_expr(scheduled_message::Column::Payload, Expr::value(Option::<String>::None))
        .filter(scheduled_message::Column::ItineraryId.eq(itinerary_id))
        .filter(scheduled_message::Column::Status.is_in(NOT_YET_SENT))
        .exec(txn)
        .await?;
    Ok(())
}

async fn calendar_state(db: &impl ConnectionTrait, itinerary_id: i32) -> Result<CalendarState, StoreError> {
    let rows = calendar_uid::Entity::find().filter(calendar_uid::Column::ItineraryId.eq(itinerary_id)).all(db).await?;
    let mut state = CalendarState::default();
    for r in rows {
        let appointment: Appointment = stored::parsed("calendar appointment", &r.appointment)?;
        state.issued.insert(r.uid, Issued { sequence: u32::try_from(r.sequence).unwrap_or(0), cancelled: r.cancelled, appointment });
    }
    Ok(state)
}

/// What a version records of one calendar change: which appointment, for whom, and what goes
/// out under which SEQUENCE. What was sent is in the message's payload, and the latest content
/// of each UID in `calendar_uid`; repeating whole appointments here was a seventh of the bytes
/// a booking writes.
#[derive(Serialize)]
struct ChangeRecord<'a> {
    uid: &'a str,
    event: &'a str,
    #[serde(flatten)]
    audience: &'a Audience,
    kind: ChangeKind,
    sequence: u32,
}

fn change_records(changes: &[Change]) -> Result<serde_json::Value, serde_json::Error> {
    let records: Vec<ChangeRecord<'_>> = changes
        .iter()
        .map(|c| ChangeRecord {
            uid: &c.appointment.uid,
            event: &c.appointment.event,
            audience: &c.appointment.attendee.audience,
            kind: c.kind,
            sequence: c.sequence,
        })
        .collect();
    serde_json::to_value(records)
}

/// The rows of a calendar state.
/// The rows of `state`. A cancelled UID keeps its number and times but no personal words: its
/// content is never compared again (a UID that returns is invited anew), and a corrected or
/// erased name or address must not live on in it (its cancellation carries its own copy until
/// sent).
fn uid_rows(itinerary_id: i32, state: &CalendarState) -> Result<Vec<stored::Uid>, serde_json::Error> {
    state
        .issued
        .iter()
        .map(|(uid, i)| {
            let appointment = if i.cancelled {
                let mut a = i.appointment.clone();
                a.attendee.name.clear();
                a.attendee.email.clear();
                a.summary.clear();
                a.description.clear();
                a.location = None;
                a.url = None;
                serde_json::to_string(&a)?
            } else {
                serde_json::to_string(&i.appointment)?
            };
            Ok(stored::Uid {
                itinerary_id,
                uid: uid.clone(),
                sequence: i32::try_from(i.sequence).unwrap_or(i32::MAX),
                cancelled: i.cancelled,
                appointment,
            })
        })
        .collect()
}

/// Replaces the stored calendar state of an itinerary.
async fn save_calendar_state(txn: &DatabaseTransaction, itinerary_id: i32, state: &CalendarState) -> Result<(), StoreError> {
    calendar_uid::Entity::delete_many().filter(calendar_uid::Column::ItineraryId.eq(itinerary_id)).exec(txn).await?;
    let rows = uid_rows(itinerary_id, state).map_err(|e| StoreError::corrupt("calendar appointment", e))?;
    stored::execute(txn, stored::inserts(rows)).await?;
    Ok(())
}

//! What is already booked: escorts' duties, infusion chairs and lab slots, across every stored
//! plan. The planner reads it to never double-book; the caller books a plan into it once the plan
//! is accepted (and, in the service, rebuilds it from storage inside the booking transaction).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::ClinicSetup;
use crate::plan::{EventKind, Plan};

/// One use of a resource, from `start` to `end` (UTC seconds, end exclusive).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "resource", rename_all = "snake_case")]
pub enum Booking {
    /// `shared`: a duty several patients may share (one escort meets everyone off one flight).
    Escort {
        escort: String,
        start: i64,
        end: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shared: Option<String>,
    },
    Chair {
        start: i64,
        end: i64,
    },
    Lab {
        start: i64,
        end: i64,
    },
}

impl Booking {
    pub fn escort(escort: &str, start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        Booking::Escort { escort: escort.to_owned(), start: start.timestamp(), end: end.timestamp(), shared: None }
    }
    pub fn shared_escort(escort: &str, start: DateTime<Utc>, end: DateTime<Utc>, shared: Option<&str>) -> Self {
        Booking::Escort { escort: escort.to_owned(), start: start.timestamp(), end: end.timestamp(), shared: shared.map(str::to_owned) }
    }
    pub fn chair(start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        Booking::Chair { start: start.timestamp(), end: end.timestamp() }
    }
    pub fn lab(start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        Booking::Lab { start: start.timestamp(), end: end.timestamp() }
    }
    /// When it begins and ends (Unix seconds).
    pub fn span(&self) -> (i64, i64) {
        match self {
            Booking::Escort { start, end, .. } | Booking::Chair { start, end } | Booking::Lab { start, end } => (*start, *end),
        }
    }
}

impl Plan {
    /// The resources this plan holds: what to book once it is accepted.
    pub fn bookings(&self) -> Vec<Booking> {
        let mut out: Vec<Booking> =
            self.escorts.iter().map(|a| Booking::shared_escort(&a.escort, a.start.utc(), a.end.utc(), a.shared.as_deref())).collect();
        for e in &self.events {
            if let (Some(s), Some(t)) = (e.start(), e.end()) {
                match e.kind {
                    EventKind::Infusion => out.push(Booking::chair(s.utc(), t.utc())),
                    EventKind::BloodTest => out.push(Booking::lab(s.utc(), t.utc())),
                    _ => {}
                }
            }
        }
        out
    }
}

#[derive(Clone, Debug, Default)]
struct EscortBook {
    /// start → duty; duties of one escort never overlap (a shared duty is one duty).
    duties: BTreeMap<i64, Duty>,
}

#[derive(Clone, Debug)]
struct Duty {
    end: i64,
    shared: Option<String>,
    patients: u16,
}

/// Booked resources. Chairs and the lab are counted per slot of `slot_minutes`.
#[derive(Clone, Debug)]
pub struct Ledger {
    slot: i64,
    escorts: HashMap<String, EscortBook>,
    chairs: HashMap<i64, u16>,
    lab: HashMap<i64, u16>,
}

/// Slots touched by [start, end).
fn slots(slot: i64, start: i64, end: i64) -> std::ops::Range<i64> {
    start.div_euclid(slot)..(end + slot - 1).div_euclid(slot)
}

impl Ledger {
    pub fn new(slot_minutes: u32) -> Self {
        Self { slot: i64::from(slot_minutes.max(1)) * 60, escorts: HashMap::new(), chairs: HashMap::new(), lab: HashMap::new() }
    }

    pub fn book(&mut self, b: &Booking) {
        match b {
            Booking::Escort { escort, start, end, shared } => {
                let book = self.escorts.entry(escort.clone()).or_default();
                match book.duties.get_mut(start) {
                    Some(d) if d.end == *end && shared.is_some() && d.shared == *shared => d.patients += 1,
                    _ => {
                        book.duties.insert(*start, Duty { end: *end, shared: shared.clone(), patients: 1 });
                    }
                }
            }
            Booking::Chair { start, end } => {
                for s in slots(self.slot, *start, *end) {
                    *self.chairs.entry(s).or_default() += 1;
                }
            }
            Booking::Lab { start, end } => {
                for s in slots(self.slot, *start, *end) {
                    *self.lab.entry(s).or_default() += 1;
                }
            }
        }
    }

    pub fn book_plan(&mut self, plan: &Plan) {
        for b in plan.bookings() {
            self.book(&b);
        }
    }

    /// Whether the escort has no duty within `buffer` of [start, end), or holds this very shared
    /// duty with room for one more patient (`share`: key and group size).
    pub fn escort_free(&self, escort: &str, start: i64, end: i64, buffer: i64, share: Option<(&str, u16)>) -> bool {
        let Some(book) = self.escorts.get(escort) else { return true };
        // Duties do not overlap, so the last one starting before our end (plus buffer) is the
        // only one that can reach into our interval.
        match book.duties.range(..end + buffer).next_back() {
            Some((&s, d)) => match share {
                Some((key, size)) if s == start && d.end == end && d.shared.as_deref() == Some(key) => d.patients < size,
                _ => d.end + buffer <= start,
            },
            None => true,
        }
    }

    /// Whether the escort already holds this shared duty.
    pub fn escort_holds(&self, escort: &str, start: i64, share: &str) -> bool {
        self.escorts.get(escort).and_then(|b| b.duties.get(&start)).is_some_and(|d| d.shared.as_deref() == Some(share))
    }

    /// How many duties the escort has, to spread the work.
    pub fn escort_load(&self, escort: &str) -> usize {
        self.escorts.get(escort).map_or(0, |b| b.duties.len())
    }

    fn used(map: &HashMap<i64, u16>, slot: i64, start: i64, end: i64) -> impl Iterator<Item = (i64, u16)> + '_ {
        slots(slot, start, end).map(move |s| (s, map.get(&s).copied().unwrap_or(0)))
    }
}

impl Ledger {
    /// Whether one plan's `bookings` still fit beside what the ledger holds, by the tests the
    /// planner made when it took them (rest between duties, room on a shared duty, chairs and
    /// lab draws per slot). A plan made against an earlier reading of the bookings can then be
    /// stored without planning again, when nothing it needs was taken in between.
    pub fn admits(&self, setup: &ClinicSetup, bookings: &[Booking]) -> bool {
        let t = |s: i64| DateTime::<Utc>::from_timestamp(s, 0).unwrap_or_default();
        let buffer = Duration::minutes(i64::from(setup.rules.escort_buffer_minutes));
        let mut avail = Availability::new(self);
        bookings.iter().all(|b| {
            let fits = match b {
                Booking::Escort { escort, start, end, shared } => {
                    avail.escort_free(escort, t(*start), t(*end), buffer, shared.as_deref().map(|k| (k, setup.rules.escort_group_size)))
                }
                Booking::Chair { start, end } => avail.chair_free(t(*start), t(*end), setup.resources.chairs),
                Booking::Lab { start, end } => avail.lab_free(t(*start), t(*end), setup.resources.lab_draws_per_slot),
            };
            avail.take(b.clone());
            fits
        })
    }
}

/// The ledger plus what the plan being made has taken so far.
#[derive(Debug)]
pub struct Availability<'a> {
    ledger: &'a Ledger,
    pending: Vec<Booking>,
}

impl<'a> Availability<'a> {
    pub fn new(ledger: &'a Ledger) -> Self {
        Self { ledger, pending: Vec::new() }
    }

    pub fn mark(&self) -> usize {
        self.pending.len()
    }

    pub fn rollback(&mut self, mark: usize) {
        self.pending.truncate(mark);
    }

    pub fn take(&mut self, b: Booking) {
        self.pending.push(b);
    }

    pub fn escort_free(
        &self,
        escort: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        buffer: Duration,
        share: Option<(&str, u16)>,
    ) -> bool {
        let (s, e, buf) = (start.timestamp(), end.timestamp(), buffer.num_seconds());
        self.ledger.escort_free(escort, s, e, buf, share)
            && self.pending.iter().all(|b| match b {
                Booking::Escort { escort: id, start, end, .. } if id == escort => *end + buf <= s || e + buf <= *start,
                _ => true,
            })
    }

    pub fn escort_holds(&self, escort: &str, start: DateTime<Utc>, share: &str) -> bool {
        self.ledger.escort_holds(escort, start.timestamp(), share)
    }

    /// Whether this plan already uses the escort (to keep one face for the patient).
    pub fn escort_in_plan(&self, escort: &str) -> bool {
        self.pending.iter().any(|b| matches!(b, Booking::Escort { escort: id, .. } if id == escort))
    }

    pub fn escort_load(&self, escort: &str) -> usize {
        self.ledger.escort_load(escort)
    }

    fn capacity_left(&self, map: &HashMap<i64, u16>, chair: bool, start: DateTime<Utc>, end: DateTime<Utc>, capacity: u16) -> bool {
        let (s, e) = (start.timestamp(), end.timestamp());
        Ledger::used(map, self.ledger.slot, s, e).all(|(slot, used)| {
            let (lo, hi) = (slot * self.ledger.slot, (slot + 1) * self.ledger.slot);
            let mine = self
                .pending
                .iter()
                .filter(|b| match b {
                    Booking::Chair { start, end } if chair => *start < hi && lo < *end,
                    Booking::Lab { start, end } if !chair => *start < hi && lo < *end,
                    _ => false,
                })
                .count();
            usize::from(used) + mine < usize::from(capacity)
        })
    }

    pub fn chair_free(&self, start: DateTime<Utc>, end: DateTime<Utc>, chairs: u16) -> bool {
        self.capacity_left(&self.ledger.chairs, true, start, end, chairs)
    }

    pub fn lab_free(&self, start: DateTime<Utc>, end: DateTime<Utc>, per_slot: u16) -> bool {
        self.capacity_left(&self.ledger.lab, false, start, end, per_slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 3, h, m, 0).single().unwrap()
    }

    #[test]
    fn an_escort_is_not_booked_twice_or_without_rest() {
        let mut l = Ledger::new(30);
        l.book(&Booking::escort("E1", t(1, 0), t(2, 0)));
        l.book(&Booking::escort("E1", t(6, 0), t(7, 0)));
        let a = Availability::new(&l);
        let buf = Duration::minutes(30);
        assert!(!a.escort_free("E1", t(1, 30), t(3, 0), buf, None));
        assert!(!a.escort_free("E1", t(2, 15), t(3, 0), buf, None), "needs 30 minutes' rest");
        assert!(a.escort_free("E1", t(2, 30), t(5, 30), buf, None));
        assert!(!a.escort_free("E1", t(0, 0), t(8, 0), buf, None), "may not wrap around a duty");
        assert!(a.escort_free("E2", t(1, 0), t(2, 0), buf, None));
    }

    #[test]
    fn patients_off_one_flight_share_one_escort_up_to_the_group_size() {
        let mut l = Ledger::new(30);
        let key = "pickup MH71 1";
        l.book(&Booking::shared_escort("E1", t(1, 0), t(2, 0), Some(key)));
        let buf = Duration::minutes(30);
        assert!(Availability::new(&l).escort_free("E1", t(1, 0), t(2, 0), buf, Some((key, 2))));
        assert!(!Availability::new(&l).escort_free("E1", t(1, 0), t(2, 0), buf, Some(("pickup MH89 1", 2))), "another flight");
        assert!(!Availability::new(&l).escort_free("E1", t(1, 0), t(2, 0), buf, None), "a private duty");
        l.book(&Booking::shared_escort("E1", t(1, 0), t(2, 0), Some(key)));
        assert!(!Availability::new(&l).escort_free("E1", t(1, 0), t(2, 0), buf, Some((key, 2))), "the car is full");
        assert!(l.escort_holds("E1", t(1, 0).timestamp(), key));
    }

    #[test]
    fn chairs_fill_per_slot_including_pending() {
        let mut l = Ledger::new(30);
        l.book(&Booking::chair(t(1, 0), t(4, 0)));
        let mut a = Availability::new(&l);
        assert!(a.chair_free(t(3, 30), t(6, 30), 2));
        a.take(Booking::chair(t(3, 30), t(6, 30)));
        assert!(!a.chair_free(t(3, 0), t(4, 0), 2));
        assert!(a.chair_free(t(4, 0), t(5, 0), 3));
        assert!(a.chair_free(t(6, 30), t(9, 30), 1));
        a.rollback(0);
        assert!(a.chair_free(t(3, 0), t(4, 0), 2));
    }
}

//! Properties over random valid requests (on real schedules, any date of the holiday table's
//! span, patients in four zones, every protocol), and over arbitrary input: nothing panics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;

use chrono::{Duration, NaiveDate};
use chrono_tz::Tz;
use itinerary_core::clinic::ClinicSetup;
use itinerary_core::messages::{Place, Whereabouts};
use itinerary_core::plan::{EventKind, MessageKind, Recipient};
use itinerary_core::request::{RawFlight, RawPatient, RawTrip};
use itinerary_core::{Ledger, Plan, PlanRequest, RawPlanRequest, plan};
use proptest::prelude::*;
use support::*;

const ZONES: &[&str] = &["Asia/Tokyo", "America/Los_Angeles", "Europe/London", "Australia/Sydney"];

fn request_strategy() -> impl Strategy<Value = RawPlanRequest> {
    (0..OUTBOUND.len(), 0..RETURN.len(), 0i64..320, 2i64..5, 0..ZONES.len(), 0u8..4, prop::bool::ANY).prop_map(
        |(o, r, offset, stay, z, protocol, en)| {
            let out = OUTBOUND[o];
            let ret = RETURN[r];
            let day = date("2026-12-01") + Duration::days(offset);
            let land = day + Duration::days(out.5);
            let mut req = single(trip(out, day, ret, land + Duration::days(stay)));
            req.patient.home_zone = Some(ZONES[z].into());
            if en {
                req.patient.language = Some("en".into());
            }
            match protocol {
                0 | 1 => {}
                2 => {
                    let interval: i64 = if offset % 2 == 0 { 7 } else { 14 };
                    req.protocol = "set-of-3".into();
                    req.interval_days = Some(interval as u16);
                    req.trip_mode = Some("trip-per-infusion".into());
                    req.trips = (0..3)
                        .map(|k| trip(out, day + Duration::days(k * interval), ret, land + Duration::days(k * interval + stay)))
                        .collect();
                }
                _ => {
                    req.protocol = "set-of-3".into();
                    req.interval_days = Some(7);
                    req.trip_mode = Some("one-stay".into());
                    req.trips = vec![trip(out, day, ret, land + Duration::days(16 + stay))];
                }
            }
            req
        },
    )
}

fn check(setup: &ClinicSetup, raw: &RawPlanRequest, req: &PlanRequest, p: &Plan) {
    let c = setup.clinic.zone;
    // Clinic appointments: inside hours on clinic days.
    for e in p.events.iter().filter(|e| e.kind.at_clinic()) {
        let (s, t) = (e.start().unwrap().in_zone(c), e.end().unwrap().in_zone(c));
        assert!(setup.is_clinic_day(s.date()), "{} on {}", e.key, s.date());
        assert!(s.time() >= setup.clinic.opens && t.time() <= setup.clinic.closes && s.date() == t.date(), "{} at {:?}", e.key, s.local());
    }
    for e in &p.events {
        if let (Some(s), Some(t)) = (e.start(), e.end()) {
            assert!(s.utc() < t.utc(), "{} ends before it starts", e.key);
        }
    }
    // Each infusion: a blood test on an earlier clinic day of the same trip, and 24 h before the flight home.
    for inf in p.events_of(EventKind::Infusion) {
        let n = inf.key.rsplit("infusion").next().unwrap();
        let bt =
            p.events.iter().find(|e| e.kind == EventKind::BloodTest && e.key.ends_with(&format!("blood_test{n}"))).expect("blood test");
        assert_eq!(bt.trip, inf.trip);
        assert!(bt.start().unwrap().in_zone(c).date() < inf.start().unwrap().in_zone(c).date());
        let ret = p.event(&format!("trip{}.return", inf.trip.unwrap())).unwrap();
        assert!(ret.start().unwrap().utc() - inf.end().unwrap().utc() >= Duration::hours(24));
    }
    // Flights: the instants are the typed local times in the airports' zones.
    for (k, t) in raw.trips.iter().enumerate() {
        let keyed = req.trips[k].keyed_flights(&format!("trip{}", k + 1));
        let typed: Vec<&RawFlight> = t.outbound.0.iter().chain(&t.return_flight.0).collect();
        assert_eq!(keyed.len(), typed.len(), "one event per flight");
        for ((key, _), f) in keyed.into_iter().zip(typed) {
            let e = p.event(&key).unwrap();
            let (s, a) = (e.start().unwrap(), e.end().unwrap());
            assert_eq!(s.zone(), setup.airports.get(&f.from).unwrap().zone);
            assert_eq!(a.zone(), setup.airports.get(&f.to).unwrap().zone);
            assert_eq!(s.local().format("%Y-%m-%d %H:%M").to_string(), f.depart);
            assert_eq!(a.local().format("%Y-%m-%d %H:%M").to_string(), f.arrive);
        }
    }
    // Messages: before what they remind of, in the recipient's zone, never in the night.
    let wb = Whereabouts::new(req);
    for m in &p.messages {
        if let Some(b) = m.before {
            assert!(m.at.utc() < b.utc(), "{} at {:?} is not before {:?}", m.key, m.at, b);
        }
        let sent_now = m.at.utc() == p.planned_at.utc();
        if !sent_now {
            assert!(!setup.rules.is_quiet(m.at.local().time()), "{} in the recipient's night: {:?}", m.key, m.at.local());
        }
        match &m.recipient {
            Recipient::Patient => match wb.place(m.at.utc()) {
                Place::At(z) => assert_eq!(m.at.zone(), z, "{} is not in the patient's zone", m.key),
                Place::InFlight => panic!("{} is sent while the patient is flying", m.key),
            },
            Recipient::Escort { .. } => assert_eq!(m.at.zone(), c),
            Recipient::Coordinator => {}
        }
        if m.kind == MessageKind::EscortDayPlan {
            assert_eq!(m.language, itinerary_core::request::Language::En);
        }
    }
    for t in &p.tasks {
        assert!(t.opens.utc() < t.closes.utc(), "{}", t.key);
    }
}

fn no_double_booking(setup: &ClinicSetup, plans: &[Plan]) {
    if let Some(problem) = double_booking(setup, plans) {
        panic!("{problem}");
    }
}

/// What, if anything, `plans` together double-book.
fn double_booking(setup: &ClinicSetup, plans: &[Plan]) -> Option<String> {
    let duties: Vec<_> = plans.iter().flat_map(|p| p.escorts.iter()).collect();
    let buffer = Duration::minutes(i64::from(setup.rules.escort_buffer_minutes));
    for (i, a) in duties.iter().enumerate() {
        for b in &duties[i + 1..] {
            let same_shared_duty = a.shared.is_some() && a.shared == b.shared && a.start == b.start && a.end == b.end;
            if a.escort == b.escort
                && !same_shared_duty
                && !(a.end.utc() + buffer <= b.start.utc() || b.end.utc() + buffer <= a.start.utc())
            {
                return Some(format!("{} double-booked", a.escort));
            }
        }
    }
    let mut groups: HashMap<(&str, &str), u16> = HashMap::new();
    for a in duties.iter().filter(|a| a.shared.is_some()) {
        *groups.entry((a.escort.as_str(), a.shared.as_deref().unwrap_or_default())).or_default() += 1;
    }
    if !groups.values().all(|n| *n <= setup.rules.escort_group_size) {
        return Some(format!("more patients than seats: {groups:?}"));
    }
    let mut chairs: HashMap<i64, u16> = HashMap::new();
    let mut lab: HashMap<i64, u16> = HashMap::new();
    for e in plans.iter().flat_map(|p| p.events.iter()) {
        let map = match e.kind {
            EventKind::Infusion => &mut chairs,
            EventKind::BloodTest => &mut lab,
            _ => continue,
        };
        let mut t = e.start().unwrap().utc().timestamp();
        while t < e.end().unwrap().utc().timestamp() {
            *map.entry(t / 1800).or_default() += 1;
            t += 1800;
        }
    }
    if !chairs.values().all(|n| *n <= setup.resources.chairs) {
        return Some("chairs overfilled".into());
    }
    if !lab.values().all(|n| *n <= setup.resources.lab_draws_per_slot) {
        return Some("lab overfilled".into());
    }
    None
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_plan_keeps_the_rules(raws in prop::collection::vec(request_strategy(), 1..8)) {
        let setup = setup();
        let mut ledger = Ledger::new(setup.rules.slot_minutes);
        let mut plans = Vec::new();
        for raw in &raws {
            let req = PlanRequest::parse(raw, &setup).expect("valid");
            if let Ok(p) = plan(&setup, &req, now(), &ledger) {
                check(&setup, raw, &req, &p);
                ledger.book_plan(&p);
                plans.push(p);
            }
        }
        no_double_booking(&setup, &plans);
    }

    /// The service plans against a reading of the bookings that may be stale by the time it
    /// stores the plan; `Ledger::admits` then decides. It must admit exactly the plans that
    /// still keep every capacity rule beside what was stored in between.
    #[test]
    fn a_stale_plan_is_admitted_exactly_when_it_still_fits(raws in prop::collection::vec(request_strategy(), 1..10)) {
        let setup = setup();
        let empty = Ledger::new(setup.rules.slot_minutes);
        let mut ledger = Ledger::new(setup.rules.slot_minutes);
        let mut stored: Vec<Plan> = Vec::new();
        for raw in &raws {
            let req = PlanRequest::parse(raw, &setup).expect("valid");
            // Every plan made against nothing booked: stale for all but the first.
            let Ok(p) = plan(&setup, &req, now(), &empty) else { continue };
            prop_assert!(empty.admits(&setup, &p.bookings()), "a plan fits what it was made against");
            let admitted = ledger.admits(&setup, &p.bookings());
            stored.push(p);
            let clash = double_booking(&setup, &stored);
            prop_assert_eq!(admitted, clash.is_none(), "admitted {} but {:?}", admitted, clash);
            if admitted {
                ledger.book_plan(stored.last().unwrap());
            } else {
                stored.pop();
            }
        }
    }

    #[test]
    fn most_sensible_requests_are_planned(raw in request_strategy()) {
        // Not every random request fits (a weekend, a holiday, a 15:00 flight home), but the
        // planner must explain itself in both languages when it does not.
        let setup = setup();
        let req = PlanRequest::parse(&raw, &setup).expect("valid");
        if let Err(e) = plan(&setup, &req, now(), &Ledger::new(30)) {
            prop_assert!(!e.violations.is_empty());
            for v in &e.violations {
                prop_assert!(!v.text.ja.is_empty() && !v.text.en.is_empty());
            }
        }
    }

    #[test]
    fn no_input_panics(
        name in ".{0,40}", email in ".{0,40}", birth in "[0-9-]{0,12}|.{0,12}", zone in "[A-Za-z/_+-]{0,30}",
        lang in "ja|en|.{0,3}", passport in "[0-9-]{0,12}", protocol in "single-infusion|set-of-3|.{0,10}",
        interval in prop::option::of(any::<u16>()), mode in prop::option::of("one-stay|trip-per-infusion|.{0,5}"),
        from in "[A-Z]{3}|.{0,4}", to in "[A-Z]{3}|.{0,4}", dep in "20[0-9]{2}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}|.{0,20}",
        arr in "20[0-9]{2}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}|.{0,20}", trips in 0usize..4,
        preferred in prop::collection::vec(".{0,12}", 0..3),
    ) {
        let setup = setup();
        let f = RawFlight { flight: "MH71".into(), from: from.clone(), depart: dep.clone(), to: to.clone(), arrive: arr.clone() };
        let back = RawFlight { flight: "MH88".into(), from: to, depart: arr, to: from, arrive: dep };
        let raw = RawPlanRequest {
            patient: RawPatient { name, email, birth_date: birth, home_zone: Some(zone), language: Some(lang), passport_expiry: passport },
            protocol,
            interval_days: interval,
            trip_mode: mode,
            trips: vec![RawTrip { outbound: f.into(), return_flight: back.into() }; trips],
            preferred_dates: preferred,
        };
        if let Ok(req) = PlanRequest::parse(&raw, &setup) {
            let _ = plan(&setup, &req, now(), &Ledger::new(30));
        }
    }

    #[test]
    fn no_flight_time_panics_around_daylight_saving_changes(
        day in 0i64..730, minute in 0u32..1440, stay in 1i64..8, zone_airport in prop::sample::select(vec!["LAX", "LHR", "SYD", "NRT", "JFK"]),
    ) {
        // A patient flying from a DST zone at any minute of any day, the change days included.
        let setup = setup();
        let d = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + Duration::days(day);
        let dep = format!("{d} {:02}:{:02}", minute / 60, minute % 60);
        let arr = format!("{} 06:00", d + Duration::days(1));
        let back_d = d + Duration::days(1 + stay);
        let mut raw = red_eye("2026-12-01");
        raw.trips[0].outbound = RawFlight { flight: "MH1".into(), from: zone_airport.into(), depart: dep, to: "KUL".into(), arrive: arr }.into();
        raw.trips[0].return_flight = RawFlight { flight: "MH2".into(), from: "KUL".into(), depart: format!("{back_d} 23:35"), to: zone_airport.into(), arrive: format!("{} 07:15", back_d + Duration::days(1)) }.into();
        match PlanRequest::parse(&raw, &setup) {
            Ok(req) => { let _ = plan(&setup, &req, now(), &Ledger::new(30)); }
            Err(e) => prop_assert!(e.errors.iter().all(|x| x.field.starts_with("trips[0]")), "{e}"),
        }
    }
}

#[test]
fn a_message_is_never_planned_in_the_air_or_the_night_for_a_patient_in_sydney_in_april() {
    // Sydney leaves daylight time on 4 Apr 2027 (03:00 → 02:00), between the flight home and
    // the 7-day check-in.
    let s = setup();
    let mut raw = red_eye("2027-03-28");
    raw.patient.home_zone = Some("Australia/Sydney".into());
    let req = PlanRequest::parse(&raw, &s).unwrap();
    let p = plan(&s, &req, now(), &Ledger::new(30)).unwrap();
    check(&s, &raw, &req, &p);
    let abbr: Vec<String> = p
        .messages
        .iter()
        .filter(|m| m.at.zone() == Tz::Australia__Sydney)
        .map(|m| itinerary_core::time::zone_abbreviation(&m.at))
        .collect();
    assert!(abbr.contains(&"AEDT".to_owned()) && abbr.contains(&"AEST".to_owned()), "{abbr:?}");
    let checkin = p.messages.iter().find(|m| m.kind == MessageKind::AdverseEventCheckin).unwrap();
    assert_eq!(checkin.at.local().format("%H:%M %Z").to_string(), "10:00 AEST");
}

/// Where patients live and the airport they leave from.
const HOMES: &[(&str, &str)] = &[
    ("Asia/Tokyo", "CTS"),
    ("America/Los_Angeles", "LAX"),
    ("Pacific/Honolulu", "HNL"),
    ("Europe/London", "LHR"),
    ("Australia/Sydney", "SYD"),
];
/// Where they change planes.
const HUBS: &[&str] = &["NRT", "HND", "TPE", "SIN", "HKG", "ICN", "BKK"];

/// A flight between two airports leaving at a UTC instant, written as its local times.
fn leg(setup: &ClinicSetup, n: &str, from: &str, departs: chrono::DateTime<chrono::Utc>, to: &str, minutes: i64) -> RawFlight {
    let local = |code: &str, t: chrono::DateTime<chrono::Utc>| {
        t.with_timezone(&setup.airports.get(code).unwrap().zone).format("%Y-%m-%d %H:%M").to_string()
    };
    let lands = departs + Duration::minutes(minutes);
    RawFlight { flight: n.into(), from: from.into(), depart: local(from, departs), to: to.into(), arrive: local(to, lands) }
}

/// A journey home → hub → KUL and back, with layovers that are sometimes too short, sometimes
/// through the night and sometimes too long; the flights' length in minutes, and the layovers.
fn journey_strategy() -> impl Strategy<Value = (usize, usize, i64, i64, [i64; 4], [i64; 2], i64)> {
    (
        0..HOMES.len(),
        0..HUBS.len(),
        0i64..330,
        0i64..(24 * 12),
        [60i64..840, 300i64..480, 300i64..480, 60i64..840],
        [0i64..(30 * 12), 0i64..(30 * 12)],
        3i64..5,
    )
        .prop_map(|(h, x, day, five, legs, lay, stay)| (h, x, day, five * 5, legs, lay.map(|l| l * 5), stay))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Multi-leg journeys from five zones: a request is refused exactly when a connection is
    /// shorter than the airport's minimum or longer than a day, naming that flight's departure;
    /// a plan has every flight as its own event in its own zones, puts the patient at the hub
    /// between flights and at home before the first, sends nothing while any flight is in the
    /// air, and sends the departure-day message where the first flight leaves.
    #[test]
    fn multi_leg_journeys_are_checked_and_followed((h, x, day, minute, legs, lay, stay) in journey_strategy()) {
        let setup = setup();
        let (zone, home) = HOMES[h];
        let hub = HUBS[x];
        let start = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap() + Duration::days(day);
        let t0 = chrono::TimeZone::from_utc_datetime(&chrono::Utc, &start.and_hms_opt(0, 0, 0).unwrap()) + Duration::minutes(minute);
        let a = leg(&setup, "XX1", home, t0, hub, legs[0]);
        let t1 = t0 + Duration::minutes(legs[0] + lay[0]);
        let b = leg(&setup, "MH2", hub, t1, "KUL", legs[1]);
        let landed = t1 + Duration::minutes(legs[1]);
        // Home in the evening (15:35 UTC is 23:35 in Kuala Lumpur), `stay` days after landing.
        let kl_day = landed.with_timezone(&chrono_tz::Asia::Kuala_Lumpur).date_naive() + Duration::days(stay);
        let t2 = chrono::TimeZone::from_utc_datetime(&chrono::Utc, &kl_day.and_hms_opt(15, 35, 0).unwrap());
        let c = leg(&setup, "MH3", "KUL", t2, hub, legs[2]);
        let t3 = t2 + Duration::minutes(legs[2] + lay[1]);
        let d = leg(&setup, "XX4", hub, t3, home, legs[3]);
        let mut raw = single(RawTrip { outbound: itinerary_core::request::Legs(vec![a, b]), return_flight: itinerary_core::request::Legs(vec![c, d]) });
        raw.patient.home_zone = Some(zone.into());
        let min = i64::from(setup.rules.min_connection(hub));
        let max = i64::from(setup.rules.max_connection_hours) * 60;
        let fits = |l: i64| (min..=max).contains(&l);
        let req = match PlanRequest::parse(&raw, &setup) {
            Ok(req) => {
                prop_assert!(fits(lay[0]) && fits(lay[1]), "accepted a connection of {lay:?} min at {hub} (minimum {min})");
                req
            }
            Err(e) => {
                // A local time in a daylight-saving overlap is refused as ambiguous; otherwise
                // only a connection outside its bounds, named by the next flight's departure.
                let ambiguous = e.errors.iter().any(|x| x.problem.contains("daylight-saving"));
                prop_assert!(ambiguous || !fits(lay[0]) || !fits(lay[1]), "refused {lay:?} at {hub}: {e}");
                if !ambiguous {
                    for (k, l) in lay.iter().enumerate() {
                        let field = format!("trips[0].{}[1].depart", ["outbound", "return"][k]);
                        prop_assert_eq!(fits(*l), !e.errors.iter().any(|x| x.field == field), "{}: {}", field, e);
                    }
                }
                return Ok(());
            }
        };
        let wb = Whereabouts::new(&req);
        let hub_zone = setup.airports.get(hub).unwrap().zone;
        let home_zone: Tz = zone.parse().unwrap();
        prop_assert_eq!(wb.place(t0 - Duration::minutes(1)), Place::At(home_zone));
        prop_assert_eq!(wb.place(t1 - Duration::minutes(lay[0] / 2 + 1)), if lay[0] > 1 { Place::At(hub_zone) } else { Place::InFlight });
        prop_assert_eq!(wb.place(t3 - Duration::minutes(lay[1] / 2 + 1)), if lay[1] > 1 { Place::At(hub_zone) } else { Place::InFlight });
        prop_assert_eq!(wb.place(t1 + Duration::minutes(1)), Place::InFlight);
        prop_assert_eq!(wb.place(t3 + Duration::minutes(legs[3] + 1)), Place::At(home_zone));
        if let Ok(p) = plan(&setup, &req, now(), &Ledger::new(30)) {
            check(&setup, &raw, &req, &p);
            let departure = p.messages.iter().find(|m| m.key == "trip1.departure_day").unwrap();
            prop_assert!(departure.at.utc() < t0);
            prop_assert_eq!(departure.about.as_deref(), Some("trip1.outbound.leg1"));
            prop_assert_eq!(p.events.iter().filter(|e| e.kind == EventKind::Flight).count(), 4);
        }
    }
}

/// Found by `multi_leg_journeys_are_checked_and_followed` (CI, 2026-12-01): Tokyo → Bangkok at
/// 23:35, six hours at Bangkok from 02:25, landing in Kuala Lumpur at 19:01, the blood test the
/// next morning. Its evening-before reminder (19:00, in the air) went to three hours before the
/// Bangkok flight, 07:05 there, then out of the night to 20:00 the evening before, still in
/// Bangkok's zone, when the patient was at home in Tokyo. Moved out of the night, a patient's
/// message now takes the zone they are in at the new time.
#[test]
fn a_reminder_moved_out_of_a_layovers_night_is_in_the_zone_the_patient_is_in() {
    let setup = setup();
    let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&chrono::Utc);
    let a = leg(&setup, "XX1", "CTS", t("2027-06-12T14:35:00Z"), "BKK", 290);
    let b = leg(&setup, "MH2", "BKK", t("2027-06-13T03:05:00Z"), "KUL", 476);
    let c = leg(&setup, "MH3", "KUL", t("2027-06-16T15:35:00Z"), "BKK", 300);
    let d = leg(&setup, "XX4", "BKK", t("2027-06-16T21:50:00Z"), "CTS", 60);
    let mut raw =
        single(RawTrip { outbound: itinerary_core::request::Legs(vec![a, b]), return_flight: itinerary_core::request::Legs(vec![c, d]) });
    raw.patient.home_zone = Some("Asia/Tokyo".into());
    let req = PlanRequest::parse(&raw, &setup).unwrap();
    let p = plan(&setup, &req, now(), &Ledger::new(30)).unwrap();
    check(&setup, &raw, &req, &p);
    let m = p.messages.iter().find(|m| m.key == "trip1.blood_test1.evening_before").unwrap();
    assert_eq!(m.at.zone(), chrono_tz::Asia::Tokyo, "{:?}", m.at);
}

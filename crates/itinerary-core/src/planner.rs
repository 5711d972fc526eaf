//! The planner: from a checked request, the clinic's setup, what is already booked and the
//! current instant, either a whole `Plan` or an `Infeasible` naming every rule it could not keep.
//!
//! It places each infusion (and the blood test before it) on the earliest clinic slot that keeps
//! every rule, trying preferred dates first, and backtracks when a later infusion of a set cannot
//! follow. Escorts are chosen per duty: the one already serving this patient first, then the
//! least loaded, then by id, so the same inputs always give the same plan.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;

use crate::clinic::{ClinicSetup, Escort, Protocol};
use crate::ledger::{Availability, Booking, Ledger};
use crate::messages;
use crate::plan::{
    EscortAssignment, Event, EventKind, Infeasible, Plan, Rule, SCHEMA_VERSION, Text, TripSummary, Violation, Warning, WarningKind, When,
};
use crate::request::{PlanRequest, Trip, TripMode};
use crate::time::{Zoned, add_months, at_local, date_en, date_ja, zone_abbreviation};

/// How many slot evaluations one plan may spend before giving up with what it learnt.
const SEARCH_BUDGET: u32 = 50_000;

fn minutes(m: u32) -> Duration {
    Duration::minutes(i64::from(m))
}

pub(crate) fn hm(t: &Zoned) -> String {
    format!("{} {}", t.local().format("%H:%M"), zone_abbreviation(t))
}

pub(crate) fn when_en(t: &Zoned) -> String {
    format!("{} {}", date_en(t.date(), None), hm(t))
}

pub(crate) fn when_ja(t: &Zoned) -> String {
    format!("{} {}", date_ja(t.date(), None), hm(t))
}

/// A trip's frame in the clinic's zone: when clinic work may start and must end.
#[derive(Clone, Debug)]
pub(crate) struct Frame {
    pub trip: usize,
    pub arrives: Zoned,
    pub departs: Zoned,
    pub red_eye: bool,
    /// Earliest start of a clinic appointment.
    pub earliest: DateTime<Utc>,
    /// Latest end of an infusion.
    pub latest_infusion_end: DateTime<Utc>,
    pub pickup: (Zoned, Zoned),
    /// At the airport by this instant for the flight home.
    pub airport_by: Zoned,
    pub transfer: (Zoned, Zoned),
    pub peak: Option<String>,
    pub days: u32,
}

/// A clinic appointment with its escort.
#[derive(Clone, Debug)]
struct Appointment {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    escort: String,
    duty: (DateTime<Utc>, DateTime<Utc>),
    shared: Option<String>,
}

#[derive(Clone, Debug)]
struct Placed {
    trip: usize,
    blood_test: Option<Appointment>,
    infusion: Appointment,
}

/// How far a candidate day got before it failed; a later stage says more.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    NotClinicDay(Closed),
    TooSoonAfterLanding,
    /// After landing, but before the trip's previous infusion ends.
    BeforePreviousInfusion,
    TooCloseToDeparture,
    ChairsFull,
    NoEscort,
    NoBloodTest,
}

/// Why the clinic sees nobody on a day, in both languages.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Closed {
    Holiday { en: String, ja: String, tentative: bool },
    Weekday { en: String, ja: String },
}

impl Stage {
    fn rule(&self) -> Rule {
        match self {
            Stage::NotClinicDay(_) | Stage::TooSoonAfterLanding | Stage::BeforePreviousInfusion => Rule::ClinicDay,
            Stage::TooCloseToDeparture => Rule::InfusionBeforeDeparture,
            Stage::ChairsFull => Rule::ChairCapacity,
            Stage::NoEscort => Rule::EscortAvailable,
            Stage::NoBloodTest => Rule::BloodTest,
        }
    }
}

struct Search<'s> {
    setup: &'s ClinicSetup,
    req: &'s PlanRequest,
    zone: Tz,
    frames: &'s [Frame],
    /// Trip index of each infusion, in order.
    slots: &'s [usize],
    interval: i64,
    tolerance: i64,
    budget: u32,
    /// Per infusion: for each day tried, the furthest stage reached.
    diagnosis: Vec<BTreeMap<NaiveDate, Stage>>,
    deepest: usize,
    /// What was placed when the search first reached `deepest`, to explain the failure there.
    deepest_placed: Vec<Placed>,
}

/// Plans one request. Pure: the same arguments give the same result. An infeasible answer
/// carries the warnings about the request itself that a plan would (`request_warnings`).
pub fn plan(setup: &ClinicSetup, req: &PlanRequest, now: DateTime<Utc>, ledger: &Ledger) -> Result<Plan, Infeasible> {
    plan_or_why(setup, req, now, ledger).map_err(|violations| Infeasible { violations, warnings: request_warnings(setup, req) })
}

fn plan_or_why(setup: &ClinicSetup, req: &PlanRequest, now: DateTime<Utc>, ledger: &Ledger) -> Result<Plan, Vec<Violation>> {
    let rules = &setup.rules;
    let zone = setup.clinic.zone;
    let mut violations = Vec::new();
    let Some(proto) = setup.protocol(&req.protocol) else {
        return Err(vec![violation(
            Rule::TripMode,
            Some("protocol"),
            [("protocol", req.protocol.clone())],
            format!("プロトコル「{}」は登録されていません。", req.protocol),
            format!("The protocol `{}` is not configured.", req.protocol),
        )]);
    };
    let interval = req.interval_days.unwrap_or(proto.interval_days);
    let slots = match trip_slots(proto, req, interval, rules.single_trip_max_days) {
        Ok(s) => s,
        Err(v) => return Err(vec![v]),
    };
    let frames: Vec<Frame> = req.trips.iter().enumerate().map(|(i, t)| frame(setup, i, t)).collect();

    // Rules on the request as a whole.
    if let Some(first) = frames.first() {
        let arrival = first.arrives.in_zone(zone).date();
        let needed = add_months(arrival, rules.passport_valid_months_after_arrival);
        if req.patient.passport_expiry < needed {
            violations.push(violation(
                Rule::PassportValidity,
                Some("patient.passport_expiry"),
                [
                    ("passport_expiry", req.patient.passport_expiry.to_string()),
                    ("arrival", arrival.to_string()),
                    ("valid_until_at_least", needed.to_string()),
                ],
                format!(
                    "パスポートの有効期限({})が足りません。マレーシア入国日({})から{}か月以上({}以降)必要です。",
                    date_ja(req.patient.passport_expiry, None),
                    date_ja(arrival, None),
                    rules.passport_valid_months_after_arrival,
                    date_ja(needed, None)
                ),
                format!(
                    "The passport expires on {}; Malaysia needs it valid for {} months after arrival ({}), so until at least {}.",
                    req.patient.passport_expiry, rules.passport_valid_months_after_arrival, arrival, needed
                ),
            ));
        }
    }
    for f in &frames {
        let infusions_here = slots.iter().filter(|&&t| t == f.trip).count();
        let field = format!("trips[{}]", f.trip);
        if f.days > rules.visa_free_days {
            violations.push(violation(
                Rule::VisaFree,
                Some(&field),
                [("days", f.days.to_string()), ("visa_free_days", rules.visa_free_days.to_string())],
                format!("旅程{}の滞在は{}日間で、ビザなし滞在の上限{}日を超えます。", f.trip + 1, f.days, rules.visa_free_days),
                format!(
                    "Trip {} stays {} days in Malaysia, over the {} days allowed without a visa.",
                    f.trip + 1,
                    f.days,
                    rules.visa_free_days
                ),
            ));
        }
        if infusions_here == 1 && (f.days < rules.single_trip_min_days || f.days > rules.single_trip_max_days) {
            violations.push(violation(
                Rule::StayLength,
                Some(&field),
                [
                    ("days", f.days.to_string()),
                    ("min_days", rules.single_trip_min_days.to_string()),
                    ("max_days", rules.single_trip_max_days.to_string()),
                ],
                format!(
                    "旅程{}の滞在は{}日間です。1回の点滴の滞在は{}〜{}日間です(到着日・出発日を含む)。",
                    f.trip + 1,
                    f.days,
                    rules.single_trip_min_days,
                    rules.single_trip_max_days
                ),
                format!(
                    "Trip {} is {} days in Malaysia; a single-infusion stay is {}–{} days, arrival and departure days included.",
                    f.trip + 1,
                    f.days,
                    rules.single_trip_min_days,
                    rules.single_trip_max_days
                ),
            ));
        }
    }

    let mut avail = Availability::new(ledger);
    let mut duties: Vec<(usize, &'static str, Appointment)> = Vec::new();
    // Pick-ups and airport transfers are fixed by the flights: staff them first.
    for f in &frames {
        for (what, (s, e), ja, en) in [
            ("pickup", (f.pickup.0.add(-minutes(rules.airport_to_hotel_minutes)), f.pickup.1), "空港お出迎え", "airport pick-up"),
            (
                "transfer",
                (f.transfer.0, f.airport_by.add(minutes(rules.hotel_to_airport_minutes))),
                "空港へのお送り",
                "transfer to the airport",
            ),
        ] {
            // Everyone on one flight shares the escort who meets it (or takes them to it).
            let trip = &req.trips[f.trip];
            let flight = if what == "pickup" { &trip.outbound } else { &trip.return_flight };
            let key = format!("{what} {} {}", flight.number, s.utc().timestamp());
            match pick_escort(setup, req, &avail, s.utc(), e.utc(), Some(&key)) {
                Some(esc) => {
                    avail.take(Booking::shared_escort(&esc.id, s.utc(), e.utc(), Some(&key)));
                    let (start, end) =
                        if what == "pickup" { (f.pickup.0.utc(), f.pickup.1.utc()) } else { (f.transfer.0.utc(), f.airport_by.utc()) };
                    let duty = (s.utc(), e.utc());
                    duties.push((f.trip, what, Appointment { start, end, escort: esc.id.clone(), duty, shared: Some(key) }));
                }
                None => violations.push(violation(
                    Rule::EscortAvailable,
                    Some(&format!("trips[{}]", f.trip)),
                    [("duty", en.to_owned()), ("from", s.utc().to_rfc3339()), ("until", e.utc().to_rfc3339())],
                    format!("旅程{}の{}({}〜{})に対応できるエスコートがいません。", f.trip + 1, ja, when_ja(&s), hm(&e)),
                    format!("No escort is free for trip {}'s {} ({} to {}).", f.trip + 1, en, when_en(&s), hm(&e)),
                )),
            }
        }
    }

    let mut search = Search {
        setup,
        req,
        zone,
        frames: &frames,
        slots: &slots,
        interval: i64::from(interval),
        tolerance: i64::from(proto.interval_tolerance_days),
        budget: SEARCH_BUDGET,
        diagnosis: vec![BTreeMap::new(); slots.len()],
        deepest: 0,
        deepest_placed: Vec::new(),
    };
    let mut placed = Vec::new();
    let found = search.place(0, &mut avail, &mut placed);
    if !found {
        violations.extend(search.explain());
    }

    // Eligibility: age on the first treatment day (or on arrival, when none could be placed).
    let first_day = placed
        .first()
        .map(|p| p.infusion.start.with_timezone(&zone).date_naive())
        .or_else(|| frames.first().map(|f| f.arrives.in_zone(zone).date()));
    if let Some(day) = first_day {
        let age = age_on(req.patient.birth_date, day);
        if age < rules.minimum_age_years as i32 {
            violations.push(violation(
                Rule::Eligibility,
                Some("patient.birth_date"),
                [("birth_date", req.patient.birth_date.to_string()), ("first_treatment_day", day.to_string()), ("age", age.to_string())],
                format!("治療初日({})の年齢が{}歳です。対象は{}歳以上の方です。", date_ja(day, None), age, rules.minimum_age_years),
                format!(
                    "The patient is {} on the first treatment day ({}); treatment is for adults of {} and over.",
                    age, day, rules.minimum_age_years
                ),
            ));
        }
    }

    if !violations.is_empty() {
        violations.sort_by_key(|v| v.rule);
        return Err(violations);
    }
    Ok(build(setup, req, proto, interval, now, &frames, &duties, &placed))
}

fn violation<const N: usize>(rule: Rule, field: Option<&str>, values: [(&str, String); N], ja: String, en: String) -> Violation {
    Violation {
        rule,
        field: field.map(str::to_owned),
        values: values.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        text: Text::new(ja, en),
    }
}

/// Completed years on `day`.
pub fn age_on(birth: NaiveDate, day: NaiveDate) -> i32 {
    let mut age = day.year() - birth.year();
    if (day.month(), day.day()) < (birth.month(), birth.day()) {
        age -= 1;
    }
    age
}

/// Which trip each infusion happens on, or why the trips do not match the protocol.
fn trip_slots(proto: &Protocol, req: &PlanRequest, interval: u16, max_days: u32) -> Result<Vec<usize>, Violation> {
    let n = usize::from(proto.infusions);
    let trips = req.trips.len();
    let count = |expected: usize, why_ja: String, why_en: String| {
        violation(Rule::TripCount, Some("trips"), [("trips", trips.to_string()), ("expected", expected.to_string())], why_ja, why_en)
    };
    if n <= 1 {
        return if trips == 1 {
            Ok(vec![0])
        } else {
            Err(count(
                1,
                format!("{}は1回の渡航です。旅程が{}件あります。", proto.name_ja, trips),
                format!("{} is one trip; the request has {}.", proto.name_en, trips),
            ))
        };
    }
    let span = (n as u32 - 1) * u32::from(interval) + 1;
    match req.trip_mode {
        None => Err(violation(
            Rule::TripMode,
            Some("trip_mode"),
            [("infusions", n.to_string()), ("interval_days", interval.to_string()), ("span_days", span.to_string())],
            format!(
                "{}は{}日間隔で{}回の点滴を行うため、最初から最後の点滴まで{}日かかり、{}日以内の短期滞在には収まりません。trip_mode に \"one-stay\"(長期滞在1回)または \"trip-per-infusion\"(点滴ごとに渡航)を指定してください。",
                proto.name_ja, interval, n, span, max_days
            ),
            format!(
                "{} is {} infusions {} days apart: {} days from first to last, which no {}-day stay holds. Set trip_mode to \"one-stay\" (one long stay) or \"trip-per-infusion\" (one trip per infusion).",
                proto.name_en, n, interval, span, max_days
            ),
        )),
        Some(TripMode::OneStay) if trips == 1 => Ok(vec![0; n]),
        Some(TripMode::OneStay) => Err(count(
            1,
            format!("one-stay は1回の渡航です。旅程が{trips}件あります。"),
            format!("one-stay is a single trip; the request has {trips}."),
        )),
        Some(TripMode::TripPerInfusion) if trips == n => Ok((0..n).collect()),
        Some(TripMode::TripPerInfusion) => Err(count(
            n,
            format!("trip-per-infusion では点滴{n}回に旅程{n}件が必要です。旅程が{trips}件あります。"),
            format!("trip-per-infusion needs {n} trips, one per infusion; the request has {trips}."),
        )),
    }
}

/// What the coordinator should know of each change of plane: a connection through the small
/// hours (02:00 where the patient waits) is a night at the airport, and from
/// `connection_hotel_hours` on it needs a transit hotel booked.
fn connection_warnings(setup: &ClinicSetup, t: u32, trip: &Trip) -> Vec<Warning> {
    let rules = &setup.rules;
    let legs: Vec<&crate::request::Flight> = trip.legs_out().chain(trip.legs_home()).collect();
    let mut out = Vec::new();
    for pair in legs.windows(2) {
        let (landed, next) = (pair[0], pair[1]);
        // Between the two directions the patient is in Malaysia, not changing planes.
        if std::ptr::eq(landed, &trip.outbound) {
            continue;
        }
        let (from, until) = (landed.arrives, next.departs);
        if !crate::time::through_small_hours(from, until, landed.to.zone) {
            continue;
        }
        let minutes = (until.utc() - from.utc()).num_minutes();
        let (h, m) = (minutes / 60, minutes % 60);
        let hotel = minutes >= i64::from(rules.connection_hotel_hours) * 60;
        let place = landed.to.place();
        let (ja_then, en_then) = if hotel {
            ("トランジットホテルを手配してください。".to_owned(), "book a transit hotel.".to_owned())
        } else {
            (
                format!("{}時間未満のため空港内での待機となります。患者さまにお伝えください。", rules.connection_hotel_hours),
                format!("under {} hours, so the patient waits in the terminal: tell them.", rules.connection_hotel_hours),
            )
        };
        out.push(Warning {
            kind: WarningKind::OvernightConnection,
            text: Text::new(
                format!(
                    "旅程{t}:{}で夜を越える乗り継ぎ({}着 {} → {}発 {}、{h}時間{m:02}分)。{ja_then}",
                    place.ja,
                    when_ja(&from),
                    landed.number,
                    when_ja(&until),
                    next.number
                ),
                format!(
                    "Trip {t}: overnight connection at {} ({} lands {}, {} leaves {}: {h} h {m:02} min); {en_then}",
                    place.en,
                    landed.number,
                    when_en(&from),
                    next.number,
                    when_en(&until)
                ),
            ),
        });
    }
    out
}

/// The last day: when the car to the airport leaves after the hotel's check-out time, the room
/// is kept (or a day-use room booked, as the clinic's `late_departure` says) until it leaves, so
/// the patient, a day after an infusion, has somewhere to rest. An event, and a warning for the
/// coordinator to book it.
fn last_day(setup: &ClinicSetup, t: u32, f: &Frame, check_out: NaiveDate) -> Option<(Event, Warning)> {
    use crate::clinic::LateDeparture;
    let zone = setup.clinic.zone;
    let leaves = f.transfer.0.in_zone(zone);
    let check_out_time = setup.clinic.hotel_check_out;
    if leaves.date() != check_out || leaves.time() <= check_out_time {
        return None;
    }
    let from = at_local(check_out, check_out_time, zone);
    let (key, ja, en) = match setup.clinic.late_departure {
        LateDeparture::LateCheckOut => ("late_check_out", "レイトチェックアウト", "Late check-out"),
        LateDeparture::DayUseRoom => ("day_use_room", "デイユースルーム", "Day-use room"),
    };
    let until = hm(&leaves);
    let event = Event {
        key: format!("trip{t}.{key}"),
        kind: EventKind::Hotel,
        trip: Some(t),
        title: Text::new(ja, en),
        location: None,
        location_ja: None,
        when: When::Timed { start: from, end: f.transfer.0 },
        escort: None,
        online: false,
    };
    let warning = Warning {
        kind: WarningKind::LateCheckOut,
        text: Text::new(
            format!(
                "旅程{t}:{} {until}にホテルを出発します(チェックアウトは{})。{ja}({until}まで)を手配してください。",
                date_ja(check_out, None),
                check_out_time.format("%H:%M")
            ),
            format!(
                "Trip {t}: the car leaves the hotel at {until} on {check_out}, after the {} check-out: book a {} until {until}.",
                check_out_time.format("%H:%M"),
                en.to_lowercase()
            ),
        ),
    };
    Some((event, warning))
}

/// The hotel's first night and check-out date: from the night before a red-eye landing (when
/// the rule says so) to the day the car leaves for the airport.
fn hotel_nights(setup: &ClinicSetup, f: &Frame) -> (NaiveDate, NaiveDate) {
    let arrival = f.arrives.in_zone(setup.clinic.zone).date();
    let check_in = if f.red_eye && setup.rules.red_eye_books_previous_night { arrival - Duration::days(1) } else { arrival };
    (check_in, f.transfer.0.date().max(check_in + Duration::days(1)))
}

/// A landing before the room is ready: booked from the night before (red-eye), or an early check-in.
fn arrival_warning(setup: &ClinicSetup, t: u32, f: &Frame) -> Option<Warning> {
    let local_arrival = f.arrives.in_zone(setup.clinic.zone);
    let (check_in, _) = hotel_nights(setup, f);
    let text = if f.red_eye && setup.rules.red_eye_books_previous_night {
        Text::new(
            format!("旅程{t}:{}着の深夜便のため、ホテルは前夜({})から予約してください。", hm(&local_arrival), date_ja(check_in, None)),
            format!(
                "Trip {t}: red-eye landing at {}; the hotel is booked from the night before ({check_in}) so the room is ready.",
                hm(&local_arrival)
            ),
        )
    } else if local_arrival.time() < setup.clinic.hotel_check_in {
        Text::new(
            format!(
                "旅程{t}:{}着、ホテルのチェックインは{}です。アーリーチェックインを手配してください。",
                hm(&local_arrival),
                setup.clinic.hotel_check_in.format("%H:%M")
            ),
            format!(
                "Trip {t}: lands {}, hotel check-in is {}: arrange an early check-in.",
                hm(&local_arrival),
                setup.clinic.hotel_check_in.format("%H:%M")
            ),
        )
    } else {
        return None;
    };
    Some(Warning { kind: WarningKind::EarlyCheckIn, text })
}

/// A flight home in a peak season: the plan is at the airport earlier.
fn peak_warning(setup: &ClinicSetup, t: u32, f: &Frame) -> Option<Warning> {
    let season = f.peak.as_ref()?;
    let minutes = setup.rules.airport_before_departure_peak_minutes;
    Some(Warning {
        kind: WarningKind::PeakSeason,
        text: Text::new(
            format!("旅程{t}:帰国日は繁忙期({season})のため、空港には{minutes}分前に到着する計画です。"),
            format!(
                "Trip {t}: the flight home is in a peak season ({season}); the plan is at the airport {minutes} minutes before departure."
            ),
        ),
    })
}

/// What a coordinator should know of the request whatever the planner finds: its connections,
/// landings before check-in, peak seasons, last days, tentative holidays during the stays, and
/// stays past the holiday table. An infeasible answer carries them too, so fixing the reasons
/// does not hide a surprise that only a feasible plan would have shown.
fn request_warnings(setup: &ClinicSetup, req: &PlanRequest) -> Vec<Warning> {
    let frames: Vec<Frame> = req.trips.iter().enumerate().map(|(i, t)| frame(setup, i, t)).collect();
    let mut out = Vec::new();
    for (f, trip) in frames.iter().zip(&req.trips) {
        let t = f.trip as u32 + 1;
        out.extend(connection_warnings(setup, t, trip));
        out.extend(arrival_warning(setup, t, f));
        out.extend(peak_warning(setup, t, f));
        out.extend(last_day(setup, t, f, hotel_nights(setup, f).1).map(|(_, w)| w));
    }
    messages::tentative_holidays(setup, &frames, &[], &mut out);
    let last_stay = frames.iter().map(|f| f.departs.in_zone(setup.clinic.zone).date()).max();
    if let Some(last) = last_stay {
        for region in &setup.clinic.holiday_regions {
            if setup.holidays.coverage(region).is_none_or(|(_, end)| last > end) {
                out.push(Warning {
                    kind: WarningKind::HolidayTableEnds,
                    text: Text::new(
                        format!("祝日表({region})が{}までの滞在をカバーしていません。祝日を確認してください。", date_ja(last, None)),
                        format!("The holiday table for {region} does not reach {last}: check the stay's holidays by hand."),
                    ),
                });
            }
        }
    }
    out
}

fn frame(setup: &ClinicSetup, i: usize, t: &Trip) -> Frame {
    let rules = &setup.rules;
    let zone = setup.clinic.zone;
    let arrives = t.outbound.arrives;
    let departs = t.return_flight.departs;
    let local_arrival = arrives.in_zone(zone);
    let red_eye = local_arrival.time() < rules.red_eye_until;
    let mut earliest = arrives.utc() + minutes(rules.landing_to_clinic_minutes);
    if red_eye {
        let next_day = at_local(local_arrival.date() + Duration::days(1), NaiveTime::MIN, zone);
        earliest = earliest.max(next_day.utc());
    }
    let dep_date = departs.in_zone(zone).date();
    let peak = rules.is_peak(dep_date).map(|s| s.name.clone());
    let airport_min = if peak.is_some() { rules.airport_before_departure_peak_minutes } else { rules.airport_before_departure_minutes };
    let airport_by = departs.add(-minutes(airport_min)).in_zone(zone);
    let transfer = (airport_by.add(-minutes(rules.hotel_to_airport_minutes)), airport_by);
    let pickup_start = local_arrival.add(minutes(rules.pickup_after_landing_minutes));
    let pickup = (pickup_start, pickup_start.add(minutes(rules.airport_to_hotel_minutes)));
    let days = (dep_date - local_arrival.date()).num_days().max(0) as u32 + 1;
    Frame {
        trip: i,
        arrives,
        departs,
        red_eye,
        earliest,
        latest_infusion_end: departs.utc() - Duration::hours(i64::from(rules.infusion_to_departure_hours)),
        pickup,
        airport_by,
        transfer,
        peak,
        days,
    }
}

/// The escort for a duty: speaks the patient's language (if the rule says so), works then, is
/// free; one already holding this shared duty first, then the one already on this plan, then the
/// least loaded, then by id.
fn pick_escort<'e>(
    setup: &'e ClinicSetup,
    req: &PlanRequest,
    avail: &Availability<'_>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    share: Option<&str>,
) -> Option<&'e Escort> {
    let zone = setup.clinic.zone;
    let (ls, le) = (start.with_timezone(&zone), end.with_timezone(&zone));
    let buffer = minutes(setup.rules.escort_buffer_minutes);
    setup
        .resources
        .escorts
        .iter()
        .filter(|e| !setup.rules.escort_must_speak_patient_language || e.speaks(req.patient.language.code()))
        .filter(|e| {
            e.works_on(ls.date_naive()) && ls.date_naive() == le.date_naive() && e.works_from <= ls.time() && le.time() <= e.works_until
        })
        .filter(|e| avail.escort_free(&e.id, start, end, buffer, share.map(|k| (k, setup.rules.escort_group_size))))
        .min_by_key(|e| {
            let holds = share.is_some_and(|k| avail.escort_holds(&e.id, start, k));
            (!holds, !avail.escort_in_plan(&e.id), avail.escort_load(&e.id), e.id.as_str())
        })
}

impl Search<'_> {
    fn note(&mut self, j: usize, day: NaiveDate, stage: Stage) {
        let slot = self.diagnosis[j].entry(day).or_insert_with(|| stage.clone());
        if stage > *slot {
            *slot = stage;
        }
    }

    fn clinic_day_reason(&self, day: NaiveDate) -> Option<Closed> {
        if let Some(h) = self.setup.holidays.any(&self.setup.clinic.holiday_regions, day) {
            return Some(Closed::Holiday { en: h.name.clone(), ja: h.name_in(true).to_owned(), tentative: h.tentative });
        }
        if !self.setup.clinic.working_days.contains(&day.weekday()) {
            return Some(Closed::Weekday { en: day.format("%A").to_string(), ja: crate::time::weekday_ja(day.weekday()).to_owned() });
        }
        None
    }

    /// Infusion `j`'s date window: its trip's days, narrowed to the protocol interval after `j-1`.
    fn window(&self, j: usize, placed: &[Placed]) -> (NaiveDate, NaiveDate, Option<NaiveDate>) {
        let f = &self.frames[self.slots[j]];
        let (mut lo, mut hi) = (f.arrives.in_zone(self.zone).date(), f.departs.in_zone(self.zone).date());
        let mut target = None;
        if let Some(prev) = j.checked_sub(1).and_then(|p| placed.get(p)) {
            let prev_day = prev.infusion.start.with_timezone(&self.zone).date_naive();
            let t = prev_day + Duration::days(self.interval);
            lo = lo.max(t - Duration::days(self.tolerance));
            hi = hi.min(t + Duration::days(self.tolerance));
            target = Some(t);
        }
        (lo, hi, target)
    }

    fn candidate_days(&self, lo: NaiveDate, hi: NaiveDate, target: Option<NaiveDate>) -> Vec<NaiveDate> {
        let mut days: Vec<NaiveDate> = lo.iter_days().take_while(|d| *d <= hi).collect();
        match target {
            // Nearest the interval first, earlier before later.
            Some(t) => days.sort_by_key(|d| ((*d - t).num_days().abs(), *d)),
            None => days.sort_by_key(|d| (!self.req.preferred_dates.contains(d), *d)),
        }
        days
    }

    fn place(&mut self, j: usize, avail: &mut Availability<'_>, placed: &mut Vec<Placed>) -> bool {
        if j == self.slots.len() {
            return true;
        }
        if j > self.deepest || self.deepest_placed.len() < j {
            self.deepest = j;
            self.deepest_placed = placed.clone();
        }
        let rules = &self.setup.rules;
        let clinic = &self.setup.clinic;
        let frame = &self.frames[self.slots[j]];
        let (lo, hi, target) = self.window(j, placed);
        let block = minutes(rules.infusion_block_minutes);
        let step = minutes(rules.slot_minutes);
        let needs_blood_test = j == 0 || rules.blood_test_before_each_infusion || placed.last().is_some_and(|p| p.trip != frame.trip);
        let previous_end = placed.last().filter(|p| p.trip == frame.trip).map(|p| p.infusion.end);
        for day in self.candidate_days(lo, hi, target) {
            if let Some(why) = self.clinic_day_reason(day) {
                self.note(j, day, Stage::NotClinicDay(why));
                continue;
            }
            let mut t = at_local(day, clinic.opens, self.zone).utc();
            let close = at_local(day, clinic.closes, self.zone).utc();
            while t + block <= close {
                if self.budget == 0 {
                    return false;
                }
                self.budget -= 1;
                let (start, end) = (t, t + block);
                t += step;
                if start < frame.earliest {
                    self.note(j, day, Stage::TooSoonAfterLanding);
                    continue;
                }
                if previous_end.is_some_and(|p| start < p) {
                    self.note(j, day, Stage::BeforePreviousInfusion);
                    continue;
                }
                if end > frame.latest_infusion_end {
                    self.note(j, day, Stage::TooCloseToDeparture);
                    break;
                }
                if !avail.chair_free(start, end, self.setup.resources.chairs) {
                    self.note(j, day, Stage::ChairsFull);
                    continue;
                }
                let travel = minutes(rules.hotel_to_clinic_minutes);
                let duty = (start - travel, end + travel);
                let Some(escort) = pick_escort(self.setup, self.req, avail, duty.0, duty.1, None) else {
                    self.note(j, day, Stage::NoEscort);
                    continue;
                };
                let mark = avail.mark();
                avail.take(Booking::chair(start, end));
                avail.take(Booking::escort(&escort.id, duty.0, duty.1));
                let infusion = Appointment { start, end, escort: escort.id.clone(), duty, shared: None };
                let blood_test = if needs_blood_test {
                    let lower = previous_end.unwrap_or(frame.earliest).max(frame.earliest);
                    match self.blood_test(day, start, lower, avail) {
                        Some(bt) => Some(bt),
                        None => {
                            self.note(j, day, Stage::NoBloodTest);
                            avail.rollback(mark);
                            continue;
                        }
                    }
                } else {
                    None
                };
                placed.push(Placed { trip: frame.trip, blood_test, infusion });
                if self.place(j + 1, avail, placed) {
                    return true;
                }
                placed.pop();
                avail.rollback(mark);
            }
        }
        false
    }

    /// The blood test for an infusion at `inf_start` on `inf_day`: on the latest clinic day that
    /// leaves enough clinic days for the results (or the same day, hours before, with an in-house
    /// lab), at the earliest slot with lab capacity and an escort.
    fn blood_test(
        &mut self,
        inf_day: NaiveDate,
        inf_start: DateTime<Utc>,
        lower: DateTime<Utc>,
        avail: &mut Availability<'_>,
    ) -> Option<Appointment> {
        let rules = &self.setup.rules;
        let clinic = &self.setup.clinic;
        let len = minutes(rules.blood_test_minutes);
        let step = minutes(rules.slot_minutes);
        let lower_day = lower.with_timezone(&self.zone).date_naive();
        let mut days = Vec::new();
        if rules.lab_in_house {
            days.push(inf_day);
        }
        let mut clinic_days_between = 0;
        let mut d = inf_day;
        while d > lower_day {
            d = d.pred_opt()?;
            if !self.setup.is_clinic_day(d) {
                continue;
            }
            clinic_days_between += 1;
            if clinic_days_between >= rules.blood_test_clinic_days_before.max(1) {
                days.push(d);
            }
        }
        for day in days {
            let mut t = at_local(day, clinic.opens, self.zone).utc();
            let close = at_local(day, clinic.closes, self.zone).utc();
            let latest_end =
                if day == inf_day { inf_start - Duration::hours(i64::from(rules.same_day_blood_test_hours_before)) + len } else { close };
            while t + len <= close.min(latest_end) {
                if self.budget == 0 {
                    return None;
                }
                self.budget -= 1;
                let (start, end) = (t, t + len);
                t += step;
                if start < lower || !avail.lab_free(start, end, self.setup.resources.lab_draws_per_slot) {
                    continue;
                }
                let travel = minutes(rules.hotel_to_clinic_minutes);
                let duty = (start - travel, end + travel);
                if let Some(escort) = pick_escort(self.setup, self.req, avail, duty.0, duty.1, None) {
                    avail.take(Booking::lab(start, end));
                    avail.take(Booking::escort(&escort.id, duty.0, duty.1));
                    return Some(Appointment { start, end, escort: escort.id.clone(), duty, shared: None });
                }
            }
        }
        None
    }

    /// Violations for the infusion the search could not get past, day by day.
    fn explain(&self) -> Vec<Violation> {
        let j = self.deepest;
        let placed = &self.deepest_placed;
        let n = self.slots.len();
        let f = &self.frames[self.slots[j]];
        let (lo, hi, target) = self.window(j, placed);
        let which_en = if n > 1 { format!("infusion {} of {}", j + 1, n) } else { "the infusion".to_owned() };
        let which_ja = if n > 1 { format!("{}回目の点滴", j + 1) } else { "点滴".to_owned() };
        let mut out = Vec::new();
        if lo > hi {
            let t = target.unwrap_or(lo);
            out.push(violation(
                Rule::InfusionInterval,
                Some(&format!("trips[{}]", f.trip)),
                [
                    ("due", t.to_string()),
                    ("tolerance_days", self.tolerance.to_string()),
                    ("trip_arrives", f.arrives.date().to_string()),
                    ("trip_departs", f.departs.date().to_string()),
                ],
                format!(
                    "{}は前回から{}日後({}、前後{}日)の予定ですが、旅程{}の滞在({}〜{})と重なりません。",
                    which_ja,
                    self.interval,
                    date_ja(t, None),
                    self.tolerance,
                    f.trip + 1,
                    date_ja(f.arrives.in_zone(self.zone).date(), None),
                    date_ja(f.departs.in_zone(self.zone).date(), None)
                ),
                format!(
                    "{} is due {} days after the previous one, on {} (±{} days), but trip {} is in Malaysia from {} to {}.",
                    which_en,
                    self.interval,
                    t,
                    self.tolerance,
                    f.trip + 1,
                    f.arrives.in_zone(self.zone).date(),
                    f.departs.in_zone(self.zone).date()
                ),
            ));
            return out;
        }
        let mut by_rule: BTreeMap<Rule, Vec<(NaiveDate, &Stage)>> = BTreeMap::new();
        for (d, s) in &self.diagnosis[j] {
            by_rule.entry(s.rule()).or_default().push((*d, s));
        }
        for (rule, days) in by_rule {
            let list_en: Vec<String> =
                days.iter().map(|(d, s)| format!("{} ({})", date_en(*d, None), stage_en(s, f, self.setup))).collect();
            let list_ja: Vec<String> = days.iter().map(|(d, s)| format!("{}({})", date_ja(*d, None), stage_ja(s, f, self.setup))).collect();
            out.push(violation(
                rule,
                Some(&format!("trips[{}]", f.trip)),
                [("days", days.iter().map(|(d, _)| d.to_string()).collect::<Vec<_>>().join(","))],
                format!("{}を{}〜{}に入れられません:{}。", which_ja, date_ja(lo, None), date_ja(hi, None), list_ja.join("、")),
                format!("No slot for {} between {} and {}: {}.", which_en, lo, hi, list_en.join("; ")),
            ));
        }
        if out.is_empty() {
            out.push(violation(
                Rule::ClinicDay,
                Some(&format!("trips[{}]", f.trip)),
                [],
                format!("{}の枠が見つかりません。", which_ja),
                format!("No slot was found for {which_en}."),
            ));
        }
        out
    }
}

/// Why a follow-up is not on `from`, the day its interval gives, but on `to`: each day skipped,
/// and why.
fn follow_up_moved(setup: &ClinicSetup, home_regions: &[String], title: &Text, from: NaiveDate, to: NaiveDate) -> Warning {
    let why = |d: NaiveDate| -> (String, String) {
        if matches!(d.weekday(), chrono::Weekday::Sat | chrono::Weekday::Sun) {
            ("お住まいの地域の週末".to_owned(), "a weekend where the patient lives".to_owned())
        } else if let Some(h) = setup.holidays.any(home_regions, d) {
            (format!("お住まいの地域の祝日「{}」", h.name_in(true)), format!("a public holiday where the patient lives ({})", h.name))
        } else if let Some(h) = setup.holidays.any(&setup.clinic.holiday_regions, d) {
            (format!("クリニックの休診日(祝日「{}」)", h.name_in(true)), format!("the clinic is closed for a public holiday ({})", h.name))
        } else if !setup.is_clinic_day(d) {
            ("クリニックの休診日".to_owned(), "the clinic is closed".to_owned())
        } else {
            (
                "診療時間内で、お休み中の時間帯を避けられる時刻がない日".to_owned(),
                "no hour inside clinic hours and outside the patient's quiet hours".to_owned(),
            )
        }
    };
    let (mut ja, mut en) = (Vec::new(), Vec::new());
    let mut d = from;
    while d < to {
        let (j, e) = why(d);
        ja.push(format!("{}は{j}", date_ja(d, None)));
        en.push(format!("{}: {e}", date_en(d, None)));
        d += Duration::days(1);
    }
    Warning {
        kind: WarningKind::FollowUpMoved,
        text: Text::new(
            format!("{}を{}から{}に移しました({})。", title.ja, date_ja(from, None), date_ja(to, None), ja.join("、")),
            format!("{} moved from {} to {}: {}.", title.en, date_en(from, None), date_en(to, None), en.join("; ")),
        ),
    }
}

fn stage_en(s: &Stage, f: &Frame, setup: &ClinicSetup) -> String {
    let r = &setup.rules;
    match s {
        Stage::NotClinicDay(Closed::Holiday { en, tentative: false, .. }) => format!("public holiday: {en}"),
        Stage::NotClinicDay(Closed::Holiday { en, tentative: true, .. }) => {
            format!("public holiday: {en}, tentative (set by moon sighting, it may move by a day)")
        }
        Stage::NotClinicDay(Closed::Weekday { en, .. }) => format!("the clinic is closed on {en}"),
        Stage::TooSoonAfterLanding if f.red_eye => {
            format!("arrival day of a red-eye landing at {}", hm(&f.arrives.in_zone(setup.clinic.zone)))
        }
        Stage::TooSoonAfterLanding => {
            format!("within {} min of landing at {}", r.landing_to_clinic_minutes, hm(&f.arrives.in_zone(setup.clinic.zone)))
        }
        Stage::BeforePreviousInfusion => "before the trip's previous infusion ends".to_owned(),
        Stage::TooCloseToDeparture => {
            format!("an infusion must end {} h before the flight home at {}", r.infusion_to_departure_hours, when_en(&f.departs))
        }
        Stage::ChairsFull => format!("all {} infusion chairs taken", setup.resources.chairs),
        Stage::NoEscort => "no escort free".to_owned(),
        Stage::NoBloodTest => format!("no blood test slot {} clinic day(s) before", r.blood_test_clinic_days_before),
    }
}

fn stage_ja(s: &Stage, f: &Frame, setup: &ClinicSetup) -> String {
    let r = &setup.rules;
    match s {
        Stage::NotClinicDay(Closed::Holiday { ja, tentative: false, .. }) => format!("祝日「{ja}」のため休診"),
        Stage::NotClinicDay(Closed::Holiday { ja, tentative: true, .. }) => {
            format!("祝日「{ja}」のため休診。月の観測で日付が前後する暫定の祝日です")
        }
        Stage::NotClinicDay(Closed::Weekday { ja, .. }) => format!("{ja}曜日は休診"),
        Stage::TooSoonAfterLanding if f.red_eye => format!("深夜便で{}に到着する日", hm(&f.arrives.in_zone(setup.clinic.zone))),
        Stage::TooSoonAfterLanding => {
            format!("到着({})から{}分以内", hm(&f.arrives.in_zone(setup.clinic.zone)), r.landing_to_clinic_minutes)
        }
        Stage::BeforePreviousInfusion => "同じ渡航の前回の点滴が終わる前".to_owned(),
        Stage::TooCloseToDeparture => {
            format!("点滴は帰国便({})の{}時間前までに終える必要があります", when_ja(&f.departs), r.infusion_to_departure_hours)
        }
        Stage::ChairsFull => format!("点滴チェア{}台がすべて予約済み", setup.resources.chairs),
        Stage::NoEscort => "対応できるエスコートがいません".to_owned(),
        Stage::NoBloodTest => format!("{}診療日前に血液検査の枠がありません", r.blood_test_clinic_days_before),
    }
}

#[expect(clippy::too_many_arguments, reason = "the parts of a plan, each needed once")]
fn build(
    setup: &ClinicSetup,
    req: &PlanRequest,
    proto: &Protocol,
    interval: u16,
    now: DateTime<Utc>,
    frames: &[Frame],
    duties: &[(usize, &'static str, Appointment)],
    placed: &[Placed],
) -> Plan {
    let zone = setup.clinic.zone;
    let rules = &setup.rules;
    let n = placed.len();
    let escort_name = |id: &str| setup.resources.escorts.iter().find(|e| e.id == id).map(|e| e.name.clone()).unwrap_or_default();
    let mut events = Vec::new();
    let mut escorts = Vec::new();
    let mut warnings = Vec::new();
    let assign = |escorts: &mut Vec<EscortAssignment>, a: &Appointment, event: &str, duty: Text| {
        escorts.push(EscortAssignment {
            escort: a.escort.clone(),
            escort_name: escort_name(&a.escort),
            event: event.to_owned(),
            start: Zoned::new(a.duty.0, zone),
            end: Zoned::new(a.duty.1, zone),
            duty,
            shared: a.shared.clone(),
        });
    };
    for (k, (f, trip)) in frames.iter().zip(&req.trips).enumerate() {
        let t = k as u32 + 1;
        let pre = format!("trip{t}");
        warnings.extend(connection_warnings(setup, t, trip));
        for (key, flight) in trip.keyed_flights(&pre) {
            events.push(Event {
                key,
                kind: EventKind::Flight,
                trip: Some(t),
                title: Text::new(
                    format!("フライト {}({}→{})", flight.number, flight.from.iata, flight.to.iata),
                    format!("Flight {} ({} → {})", flight.number, flight.from.iata, flight.to.iata),
                ),
                location: Some(flight.from.place().en),
                location_ja: Some(flight.from.place().ja).filter(|ja| *ja != flight.from.place().en),
                when: When::Timed { start: flight.departs, end: flight.arrives },
                escort: None,
                online: false,
            });
        }
        let (check_in, check_out) = hotel_nights(setup, f);
        events.push(Event {
            key: format!("{pre}.hotel"),
            kind: EventKind::Hotel,
            trip: Some(t),
            title: Text::new(
                format!("ホテル宿泊({}泊)", (check_out - check_in).num_days()),
                format!("Hotel ({} nights)", (check_out - check_in).num_days()),
            ),
            location: None,
            location_ja: None,
            when: When::Dates { start: check_in, end: check_out },
            escort: None,
            online: false,
        });
        if let Some((event, warning)) = last_day(setup, t, f, check_out) {
            events.push(event);
            warnings.push(warning);
        }
        for (_, what, a) in duties.iter().filter(|d| d.0 == f.trip) {
            let (key, kind, title, duty) = if *what == "pickup" {
                (
                    format!("{pre}.pickup"),
                    EventKind::AirportPickup,
                    Text::new("空港お出迎え・ホテルへ送迎", "Airport pick-up and drive to the hotel"),
                    Text::new(
                        "空港でお出迎え",
                        format!("Meet the patient in the arrival hall ({}) and drive to the hotel", trip.outbound.to.iata),
                    ),
                )
            } else {
                (
                    format!("{pre}.transfer"),
                    EventKind::AirportTransfer,
                    Text::new("ホテルから空港へ送迎", "Hotel to airport transfer"),
                    Text::new(
                        "空港へお送り",
                        format!("Drive the patient from the hotel to {} for {}", trip.return_flight.from.iata, trip.return_flight.number),
                    ),
                )
            };
            assign(&mut escorts, a, &key, duty);
            events.push(Event {
                key,
                kind,
                trip: Some(t),
                title,
                location: Some(if kind == EventKind::AirportPickup { trip.outbound.to.place().en } else { "Hotel lobby".to_owned() }),
                location_ja: Some(if kind == EventKind::AirportPickup {
                    trip.outbound.to.place().ja
                } else {
                    "ホテルのロビー".to_owned()
                }),
                when: When::Timed { start: Zoned::new(a.start, zone), end: Zoned::new(a.end, zone) },
                escort: Some(a.escort.clone()),
                online: false,
            });
        }
        warnings.extend(arrival_warning(setup, t, f));
        warnings.extend(peak_warning(setup, t, f));
    }
    for (j, p) in placed.iter().enumerate() {
        let t = p.trip as u32 + 1;
        let pre = format!("trip{t}");
        let nth_ja = if n > 1 { format!("({}/{}回目)", j + 1, n) } else { String::new() };
        let nth_en = if n > 1 { format!(" ({} of {})", j + 1, n) } else { String::new() };
        if let Some(bt) = &p.blood_test {
            let key = format!("{pre}.blood_test{}", j + 1);
            assign(
                &mut escorts,
                bt,
                &key,
                Text::new("通院の付き添い(血液検査)", "Accompany the patient to the clinic for the blood test and back"),
            );
            events.push(clinic_event(
                &key,
                EventKind::BloodTest,
                t,
                Text::new(format!("血液検査{nth_ja}"), format!("Blood test{nth_en}")),
                bt,
                setup,
            ));
        }
        let key = format!("{pre}.infusion{}", j + 1);
        assign(
            &mut escorts,
            &p.infusion,
            &key,
            Text::new("通院の付き添い(点滴)", "Accompany the patient to the clinic for the infusion and back"),
        );
        events.push(clinic_event(
            &key,
            EventKind::Infusion,
            t,
            Text::new(format!("幹細胞点滴{nth_ja}"), format!("Stem-cell infusion{nth_en}")),
            &p.infusion,
            setup,
        ));
    }

    // Online follow-ups after the last infusion, at one local hour for the whole series.
    let home_regions = setup.home_regions(req.patient.home_zone);
    if let Some(last) = placed.last() {
        let last_day = last.infusion.start.with_timezone(&zone).date_naive();
        let mut series: Vec<(String, EventKind, u32, Text)> = rules
            .followup_months
            .iter()
            .map(|m| {
                (
                    format!("followup_{m}m"),
                    EventKind::OnlineFollowUp,
                    *m,
                    Text::new(
                        format!("オンライン診察({m}か月後)"),
                        format!("Online follow-up ({m} month{})", if *m == 1 { "" } else { "s" }),
                    ),
                )
            })
            .collect();
        if rules.reevaluation_months > 0 {
            series.push((
                "reevaluation".to_owned(),
                EventKind::Reevaluation,
                rules.reevaluation_months,
                Text::new(
                    format!("2セット目の再評価(オンライン・{}か月後)", rules.reevaluation_months),
                    format!("Re-evaluation for a second set (online, {} months)", rules.reevaluation_months),
                ),
            ));
        }
        let targets: Vec<NaiveDate> = series.iter().map(|s| add_months(last_day, s.2)).collect();
        let (times, moved) = messages::follow_up_times(setup, req.patient.home_zone, &home_regions, &targets);
        for ((key, kind, _, title), (start, target)) in series.into_iter().zip(times.into_iter().zip(&targets)) {
            if start.date() != *target {
                warnings.push(follow_up_moved(setup, &home_regions, &title, *target, start.date()));
            }
            events.push(Event {
                key,
                kind,
                trip: None,
                title,
                location: None,
                location_ja: None,
                when: When::Timed { start, end: start.add(minutes(rules.followup_minutes)) },
                escort: None,
                online: true,
            });
        }
        if let Some(note) = moved {
            warnings.push(note);
        }
    }

    events.sort_by(|a, b| event_order(a, zone).cmp(&event_order(b, zone)).then_with(|| a.key.cmp(&b.key)));
    escorts.sort_by(|a, b| a.start.cmp(&b.start).then_with(|| a.event.cmp(&b.event)));
    for f in frames {
        let ids: std::collections::BTreeSet<&str> = escorts
            .iter()
            .filter(|a| events.iter().any(|e| e.key == a.event && e.trip == Some(f.trip as u32 + 1)))
            .map(|a| a.escort.as_str())
            .collect();
        if ids.len() > 1 {
            let names: Vec<String> = ids.iter().map(|id| escort_name(id)).collect();
            warnings.push(Warning {
                kind: WarningKind::EscortChange,
                text: Text::new(
                    format!("旅程{}は{}名のエスコートが担当します:{}。", f.trip + 1, ids.len(), names.join("、")),
                    format!(
                        "Trip {} is escorted by {} people: {}; tell the patient who meets them when.",
                        f.trip + 1,
                        ids.len(),
                        names.join(", ")
                    ),
                ),
            });
        }
    }
    let clinic_dates: Vec<NaiveDate> =
        events.iter().filter(|e| e.kind.at_clinic()).filter_map(|e| e.start()).map(|s| s.in_zone(zone).date()).collect();
    messages::tight_connections(setup, frames, &events, &mut warnings);
    let tentative = messages::tentative_holidays(setup, frames, &clinic_dates, &mut warnings);
    messages::holiday_coverage(setup, &events, &home_regions, &mut warnings);

    let whereabouts = messages::Whereabouts::new(req);
    let planned_at = whereabouts.at(now);
    let mut plan = Plan {
        schema_version: SCHEMA_VERSION,
        protocol: proto.id.clone(),
        trip_mode: if proto.infusions > 1 { req.trip_mode } else { None },
        interval_days: if proto.infusions > 1 { Some(interval) } else { None },
        clinic_zone: zone,
        patient_zone: req.patient.home_zone,
        language: req.patient.language,
        planned_at,
        trips: frames
            .iter()
            .map(|f| TripSummary { trip: f.trip as u32 + 1, arrives: f.arrives, departs: f.departs, days: f.days })
            .collect(),
        events,
        escorts,
        tasks: Vec::new(),
        messages: Vec::new(),
        warnings,
    };
    messages::schedule(setup, req, whereabouts, frames, &tentative, &mut plan);
    plan
}

fn clinic_event(key: &str, kind: EventKind, trip: u32, title: Text, a: &Appointment, setup: &ClinicSetup) -> Event {
    Event {
        key: key.to_owned(),
        kind,
        trip: Some(trip),
        title,
        location: Some(setup.clinic.name.clone()),
        location_ja: None,
        when: When::Timed { start: Zoned::new(a.start, setup.clinic.zone), end: Zoned::new(a.end, setup.clinic.zone) },
        escort: Some(a.escort.clone()),
        online: false,
    }
}

fn event_order(e: &Event, zone: Tz) -> DateTime<Utc> {
    match e.when {
        When::Timed { start, .. } => start.utc(),
        // Hotel nights sort at the check-in day's check-in hour, after the arrival.
        When::Dates { start, .. } => at_local(start, NaiveTime::from_hms_opt(12, 0, 0).unwrap_or_default(), zone).utc(),
    }
}

//! The calendar side of `bench/calendar.sh`: a whole-itinerary calendar of N events (default
//! 10,000; patients at home in Tokyo, Los Angeles, London and Sydney, so four VTIMEZONEs with
//! and without daylight saving), rendered by `publish`. Writes `events.json` (the same events,
//! for the Python icalendar and ical-generator peers to render), `ours.ics`, and one JSON line
//! of timings on stdout.
//!
//! cargo run --release -p itinerary-calendar --example race -- OUT_DIR [EVENTS] [RUNS]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::Instant;

use chrono::{Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use itinerary_calendar::{Itinerary, Person};
use itinerary_core::plan::{Event, EventKind, Text, When};
use itinerary_core::request::Language;
use itinerary_core::time::at_local;
use itinerary_core::{CalendarSettings, Plan, Zoned};
use serde_json::json;

const HOMES: [Tz; 4] = [Tz::Asia__Tokyo, Tz::America__Los_Angeles, Tz::Europe__London, Tz::Australia__Sydney];

fn at(d: NaiveDate, hh: u32, mm: u32, tz: Tz) -> Zoned {
    at_local(d, NaiveTime::from_hms_opt(hh, mm, 0).unwrap(), tz)
}

fn event(key: String, kind: EventKind, ja: &str, en: &str, location: Option<&str>, when: When, online: bool) -> Event {
    Event {
        key,
        kind,
        trip: Some(1),
        title: Text::new(ja, en),
        location: location.map(str::to_owned),
        location_ja: None,
        when,
        escort: None,
        online,
    }
}

/// Ten events per patient trip, trips spread over 2027–2029.
fn events(n: usize) -> Vec<Event> {
    let (kl, tokyo) = (Tz::Asia__Kuala_Lumpur, Tz::Asia__Tokyo);
    let clinic = Some("KL Regenerative Clinic, Kuala Lumpur");
    let mut out = Vec::with_capacity(n);
    let mut p = 0;
    while out.len() < n {
        let d = NaiveDate::from_ymd_opt(2027, 1, 4).unwrap() + Duration::days((p * 7 / 10) % 900);
        let home = HOMES[p as usize % HOMES.len()];
        let k = |s: &str| format!("p{p:05}.{s}");
        let timed = |a: Zoned, b: Zoned| When::Timed { start: a, end: b };
        let group = [
            event(
                k("outbound"),
                EventKind::Flight,
                "フライト MH71(NRT→KUL)",
                "Flight MH71",
                Some("Narita International Airport (NRT)"),
                timed(at(d, 21, 40, tokyo), at(d + Duration::days(1), 4, 30, kl)),
                false,
            ),
            event(
                k("pickup"),
                EventKind::AirportPickup,
                "空港お出迎え・ホテルへ送迎",
                "Airport pick-up",
                Some("Kuala Lumpur International Airport (KUL)"),
                timed(at(d + Duration::days(1), 5, 30, kl), at(d + Duration::days(1), 6, 30, kl)),
                false,
            ),
            event(
                k("hotel"),
                EventKind::Hotel,
                "ホテル宿泊(4泊)",
                "Hotel (4 nights)",
                None,
                When::Dates { start: d, end: d + Duration::days(4) },
                false,
            ),
            event(
                k("blood_test1"),
                EventKind::BloodTest,
                "血液検査",
                "Blood test",
                clinic,
                timed(at(d + Duration::days(2), 9, 0, kl), at(d + Duration::days(2), 9, 30, kl)),
                false,
            ),
            event(
                k("infusion1"),
                EventKind::Infusion,
                "幹細胞点滴",
                "Stem-cell infusion",
                clinic,
                timed(at(d + Duration::days(3), 9, 0, kl), at(d + Duration::days(3), 12, 0, kl)),
                false,
            ),
            event(
                k("transfer"),
                EventKind::AirportTransfer,
                "ホテルから空港へ送迎",
                "Hotel to airport",
                Some("Hotel lobby"),
                timed(at(d + Duration::days(4), 19, 35, kl), at(d + Duration::days(4), 20, 35, kl)),
                false,
            ),
            event(
                k("return"),
                EventKind::Flight,
                "フライト MH88(KUL→NRT)",
                "Flight MH88",
                Some("Kuala Lumpur International Airport (KUL)"),
                timed(at(d + Duration::days(4), 23, 35, kl), at(d + Duration::days(5), 7, 15, tokyo)),
                false,
            ),
            event(
                k("followup_1m"),
                EventKind::OnlineFollowUp,
                "オンライン診察(1か月後)",
                "Follow-up (1 month)",
                None,
                timed(at(d + Duration::days(35), 10, 0, home), at(d + Duration::days(35), 10, 30, home)),
                true,
            ),
            event(
                k("followup_3m"),
                EventKind::OnlineFollowUp,
                "オンライン診察(3か月後)",
                "Follow-up (3 months)",
                None,
                timed(at(d + Duration::days(91), 10, 0, home), at(d + Duration::days(91), 10, 30, home)),
                true,
            ),
            event(
                k("followup_6m"),
                EventKind::OnlineFollowUp,
                "オンライン診察(6か月後)",
                "Follow-up (6 months)",
                None,
                timed(at(d + Duration::days(182), 10, 0, home), at(d + Duration::days(182), 10, 30, home)),
                true,
            ),
        ];
        out.extend(group);
        p += 1;
    }
    out.truncate(n);
    out
}

fn plan(events: Vec<Event>) -> Plan {
    let planned = Zoned::new(Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap(), Tz::Asia__Tokyo);
    Plan {
        schema_version: itinerary_core::plan::SCHEMA_VERSION,
        protocol: "single-infusion".into(),
        trip_mode: None,
        interval_days: None,
        clinic_zone: Tz::Asia__Kuala_Lumpur,
        patient_zone: Tz::Asia__Tokyo,
        language: Language::Ja,
        planned_at: planned,
        trips: vec![],
        events,
        escorts: vec![],
        tasks: vec![],
        messages: vec![],
        warnings: vec![],
    }
}

fn when_json(w: &When) -> (serde_json::Value, serde_json::Value) {
    match w {
        When::Timed { start, end } => {
            let f = |z: &Zoned| json!({ "local": z.local().format("%Y-%m-%dT%H:%M:%S").to_string(), "tzid": z.zone().name(), "utc": z.utc().format("%Y-%m-%dT%H:%M:%SZ").to_string() });
            (f(start), f(end))
        }
        When::Dates { start, end } => (json!({ "date": start.to_string() }), json!({ "date": end.to_string() })),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let out = std::path::PathBuf::from(args.next().expect("OUT_DIR"));
    let n: usize = args.next().map_or(10_000, |s| s.parse().expect("EVENTS"));
    let runs: usize = args.next().map_or(20, |s| s.parse().expect("RUNS"));
    std::fs::create_dir_all(&out).unwrap();

    let plan = plan(events(n));
    let settings = CalendarSettings {
        organizer_email: "coordinators@klregen.example.my".into(),
        organizer_name: Some("KL Regenerative Clinic".into()),
        uid_domain: "klregen.example.my".into(),
        follow_up_url: Some("https://telehealth.klregen.example.my/visit".into()),
        refresh_hours: 12,
    };
    let it = Itinerary {
        id: "race",
        plan: &plan,
        patient: Person { name: "山田 太郎", email: "taro.yamada@example.jp" },
        escorts: &[],
        clinic_name: "KL Regenerative Clinic, Kuala Lumpur",
        settings: &settings,
    };
    let appointments = it.appointments().unwrap();

    // The peers get exactly what publish() renders: the same strings, instants and zones.
    let events: Vec<_> = appointments
        .iter()
        .map(|a| {
            let (start, end) = when_json(&a.when);
            json!({ "uid": a.uid, "summary": a.summary, "description": a.description, "location": a.location, "start": start, "end": end,
                    "url": a.url, "transparent": a.transparent, "sequence": 0 })
        })
        .collect();
    let meta = json!({ "organizer": { "name": "KL Regenerative Clinic", "email": settings.organizer_email },
                       "dtstamp": "2026-11-26T00:00:00Z", "name": "山田 太郎 様のご旅程(KL Regenerative Clinic)", "events": events });
    std::fs::write(out.join("events.json"), serde_json::to_vec(&meta).unwrap()).unwrap();

    // The first run generates the VTIMEZONEs (scanning tzdb from 1970); later ones reuse them.
    let t = Instant::now();
    let first = itinerary_calendar::publish(&it, &appointments, |_| 0);
    let cold = t.elapsed().as_secs_f64();
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let text = itinerary_calendar::publish(&it, &appointments, |_| 0);
        times.push(t.elapsed().as_secs_f64());
        assert_eq!(text, first, "the same inputs give the same bytes");
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    std::fs::write(out.join("ours.ics"), &first).unwrap();
    println!(
        "{}",
        json!({ "peer": "itinerary-calendar", "events": n, "first_s": cold, "median_s": median, "runs": runs, "bytes": first.len() })
    );
}

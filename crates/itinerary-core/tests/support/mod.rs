//! Shared by the core's tests and benchmarks: the repository's configuration, request builders
//! from real flight schedules, and a deterministic season of patients.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Duration, NaiveDate, Utc};
use itinerary_core::clinic::ClinicSetup;
use itinerary_core::request::{RawFlight, RawPatient, RawPlanRequest, RawTrip};

pub fn setup() -> ClinicSetup {
    itinerary_config::load(&itinerary_config::repo_config_dir()).expect("config/ loads")
}

pub fn now() -> DateTime<Utc> {
    "2026-11-26T00:00:00Z".parse().unwrap()
}

pub fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// A real schedule: flight, from, local departure, to, local arrival, days from departure to arrival.
#[derive(Clone, Copy, Debug)]
pub struct Schedule(pub &'static str, pub &'static str, pub &'static str, pub &'static str, pub &'static str, pub i64);

pub const OUTBOUND: &[Schedule] = &[
    Schedule("MH89", "NRT", "10:20", "KUL", "17:05", 0),
    Schedule("MH71", "NRT", "21:40", "KUL", "04:30", 1),
    Schedule("MH37", "HND", "00:30", "KUL", "07:10", 0),
    Schedule("D7523", "CTS", "09:20", "KUL", "17:00", 0),
    Schedule("D7533", "FUK", "08:25", "KUL", "13:25", 0),
];

pub const RETURN: &[Schedule] = &[Schedule("MH88", "KUL", "23:35", "NRT", "07:15", 1), Schedule("MH36", "KUL", "15:00", "HND", "22:35", 0)];

pub fn flight(s: Schedule, day: NaiveDate) -> RawFlight {
    RawFlight {
        flight: s.0.into(),
        from: s.1.into(),
        depart: format!("{day} {}", s.2),
        to: s.3.into(),
        arrive: format!("{} {}", day + Duration::days(s.5), s.4),
    }
}

pub fn trip(out: Schedule, out_day: NaiveDate, ret: Schedule, ret_day: NaiveDate) -> RawTrip {
    RawTrip { outbound: flight(out, out_day).into(), return_flight: flight(ret, ret_day).into() }
}

pub fn patient() -> RawPatient {
    RawPatient {
        name: "山田 太郎".into(),
        email: "taro@example.jp".into(),
        birth_date: "1980-01-15".into(),
        home_zone: Some("Asia/Tokyo".into()),
        language: Some("ja".into()),
        passport_expiry: "2032-01-01".into(),
    }
}

pub fn single(trip: RawTrip) -> RawPlanRequest {
    RawPlanRequest { patient: patient(), protocol: "single-infusion".into(), trips: vec![trip], ..Default::default() }
}

/// MH71 out on `day` (lands the next morning), MH88 home three days after landing.
pub fn red_eye(day: &str) -> RawPlanRequest {
    let d = date(day);
    single(trip(OUTBOUND[1], d, RETURN[0], d + Duration::days(4)))
}

/// A small deterministic generator (SplitMix64), so the season is the same on every run.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `n` single-infusion patients landing over `days` days from `start`, as a coordinator books
/// them: real schedules, landing Sunday to Wednesday (so that a blood test and an infusion fit
/// before the weekend), home 4 or 5 days after landing, mostly on the late MH88.
pub fn season(n: usize, start: NaiveDate, days: u64, seed: u64) -> Vec<RawPlanRequest> {
    use chrono::Datelike;
    let mut rng = Rng(seed);
    (0..n)
        .map(|i| {
            let out = OUTBOUND[rng.below(OUTBOUND.len() as u64) as usize];
            let ret = if rng.below(4) == 0 { RETURN[1] } else { RETURN[0] };
            let land = loop {
                let d = start + Duration::days(rng.below(days) as i64);
                if d.weekday().num_days_from_sunday() <= 3 {
                    break d;
                }
            };
            let day = land - Duration::days(out.5);
            let stay = 3 + rng.below(2) as i64; // home 3 or 4 days after landing: 4–5 days
            let mut r = single(trip(out, day, ret, land + Duration::days(stay)));
            r.patient.name = format!("患者 {i}");
            r.patient.email = format!("p{i}@example.jp");
            r
        })
        .collect()
}

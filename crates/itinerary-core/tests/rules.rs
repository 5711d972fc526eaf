//! Each planning rule of the domain table, alone, against the shipped configuration.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use chrono::{Duration, NaiveTime, Timelike};
use chrono_tz::Tz;
use itinerary_core::clinic::ClinicSetup;
use itinerary_core::plan::{EventKind, MessageKind, Recipient, Rule, TaskKind, WarningKind, When};
use itinerary_core::{Infeasible, Ledger, Plan, PlanRequest, RawPlanRequest, plan};
use support::*;

fn run_with(setup: &ClinicSetup, raw: &RawPlanRequest) -> Result<Plan, Infeasible> {
    let req = PlanRequest::parse(raw, setup).unwrap_or_else(|e| panic!("request should be valid: {e}"));
    plan(setup, &req, now(), &Ledger::new(setup.rules.slot_minutes))
}

fn run(raw: &RawPlanRequest) -> Result<Plan, Infeasible> {
    run_with(&setup(), raw)
}

fn rules_of(e: &Infeasible) -> Vec<Rule> {
    e.violations.iter().map(|v| v.rule).collect()
}

fn clinic_start(p: &Plan, kind: EventKind) -> chrono::DateTime<Tz> {
    p.events_of(kind).next().unwrap().start().unwrap().in_zone(Tz::Asia__Kuala_Lumpur).local()
}

#[test]
fn no_clinic_appointment_on_the_day_of_a_red_eye_arrival() {
    let p = run(&red_eye("2026-12-01")).unwrap();
    let landed = date("2026-12-02");
    for e in p.events.iter().filter(|e| e.kind.at_clinic()) {
        assert_ne!(e.start().unwrap().in_zone(Tz::Asia__Kuala_Lumpur).date(), landed, "{}", e.key);
    }
    let hotel = p.event("trip1.hotel").unwrap();
    assert_eq!(hotel.when, When::Dates { start: date("2026-12-01"), end: date("2026-12-05") });
    assert!(p.warnings.iter().any(|w| w.kind == WarningKind::EarlyCheckIn));
}

#[test]
fn a_daytime_arrival_may_have_its_blood_test_three_hours_after_landing() {
    // D7 from Fukuoka lands 13:25 on a Wednesday: blood test at 16:30 that day, with a warning.
    let d = date("2027-01-06");
    let p = run(&single(trip(OUTBOUND[4], d, RETURN[0], d + Duration::days(3)))).unwrap();
    let bt = clinic_start(&p, EventKind::BloodTest);
    assert_eq!((bt.date_naive(), bt.hour(), bt.minute()), (d, 16, 30));
    assert!(p.warnings.iter().any(|w| w.kind == WarningKind::TightConnection));
}

#[test]
fn no_clinic_appointment_on_a_malaysian_public_holiday() {
    // Malaysia Day is Thu 16 Sep 2027. MH89 lands Tue 14 Sep; home Sat 18 Sep.
    let d = date("2027-09-14");
    let p = run(&single(trip(OUTBOUND[0], d, RETURN[0], d + Duration::days(4)))).unwrap();
    for e in p.events.iter().filter(|e| e.kind.at_clinic()) {
        assert_ne!(e.start().unwrap().in_zone(Tz::Asia__Kuala_Lumpur).date(), date("2027-09-16"));
    }
    assert_eq!(clinic_start(&p, EventKind::BloodTest).date_naive(), date("2027-09-15"));
    assert_eq!(clinic_start(&p, EventKind::Infusion).date_naive(), date("2027-09-17"));
}

#[test]
fn a_tentative_holiday_near_the_stay_is_warned_and_rechecked_30_days_before() {
    // Eid al-Adha, Mon 17 May 2027, is tentative. MH89 lands Tue 18 May; Thu 20 is Vesak Day.
    let d = date("2027-05-18");
    let p = run(&single(trip(OUTBOUND[0], d, RETURN[0], d + Duration::days(4)))).unwrap();
    assert_eq!(clinic_start(&p, EventKind::Infusion).date_naive(), date("2027-05-21"));
    assert!(p.warnings.iter().any(|w| w.kind == WarningKind::TentativeHoliday && w.text.en.contains("2027-05-17")));
    let m = p.messages.iter().find(|m| m.kind == MessageKind::TentativeHolidayRecheck).unwrap();
    assert_eq!(m.recipient, Recipient::Coordinator);
    assert_eq!(m.at.in_zone(Tz::Asia__Kuala_Lumpur).date(), date("2027-04-18"));
}

/// An infeasible stay says why each day failed, only the rule that stopped it, with every
/// holiday named in both languages and marked tentative where the moon decides it (issue 14).
#[test]
fn reasons_name_each_holiday_in_both_languages_and_say_when_it_is_tentative() {
    // MH89 lands Tue 9 Mar 2027 at 17:05; Eid al-Fitr is Wed 10 and Thu 11 (tentative); MH88
    // leaves Fri 12 at 23:35, so Friday is too close to the flight.
    let d = date("2027-03-09");
    let e = run(&single(trip(OUTBOUND[0], d, RETURN[0], d + Duration::days(3)))).unwrap_err();
    let en: Vec<&str> = e.violations.iter().map(|v| v.text.en.as_str()).collect();
    let ja: Vec<&str> = e.violations.iter().map(|v| v.text.ja.as_str()).collect();
    let (en, ja) = (en.join(" "), ja.join(" "));
    assert!(en.contains("public holiday: Eid al-Fitr, tentative (set by moon sighting"), "{en}");
    assert!(en.contains("Eid al-Fitr (Second Day), tentative"), "{en}");
    assert!(ja.contains("祝日「ハリ・ラヤ・プアサ(断食明け大祭)」のため休診。月の観測で日付が前後する暫定の祝日です"), "{ja}");
    assert!(ja.contains("ハリ・ラヤ・プアサ 2日目"), "{ja}");
    // The landing day: only the landing rule, with the landing time.
    assert!(en.contains("within 180 min of landing at 17:05 MYT"), "{en}");
    assert!(!en.contains("previous infusion"), "{en}");
    assert!(ja.contains("到着(17:05 MYT)から180分以内"), "{ja}");
    // The answer also carries what a plan would warn about: the tentative holidays of the stay,
    // the early check-in of a 17:05 landing is not one (check-in is 15:00), the last day's room.
    let kinds: Vec<WarningKind> = e.warnings.iter().map(|w| w.kind).collect();
    assert_eq!(kinds.iter().filter(|k| **k == WarningKind::TentativeHoliday).count(), 2, "{:?}", e.warnings);
    assert!(kinds.contains(&WarningKind::LateCheckOut) && !kinds.contains(&WarningKind::EarlyCheckIn), "{kinds:?}");
    assert!(e.warnings.iter().any(|w| w.text.ja.contains("暫定の祝日")), "{:?}", e.warnings);
    // And JSON written before warnings existed still reads.
    let old: Infeasible = serde_json::from_value(serde_json::json!({ "violations": [] })).unwrap();
    assert!(old.warnings.is_empty());
}

/// A follow-up moved off the day its interval gives says so, and why (issue 14).
#[test]
fn a_follow_up_moved_off_a_holiday_says_so_and_why() {
    // Infusion Wed 10 Feb 2027; a month later, 10 and 11 March are Eid al-Fitr: the clinic is
    // closed, so the 1-month follow-up goes to Fri 12 March, and the plan says why.
    let p = run(&red_eye("2027-02-07")).unwrap();
    assert_eq!(clinic_start(&p, EventKind::Infusion).date_naive(), date("2027-02-10"));
    let moved: Vec<_> = p.warnings.iter().filter(|w| w.kind == WarningKind::FollowUpMoved).collect();
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(
        moved[0].text.en,
        "Online follow-up (1 month) moved from Wed 10 Mar 2027 to Fri 12 Mar 2027: Wed 10 Mar 2027: the clinic is closed for \
         a public holiday (Eid al-Fitr); Thu 11 Mar 2027: the clinic is closed for a public holiday (Eid al-Fitr (Second Day))."
    );
    assert!(
        moved[0].text.ja.contains("2027年3月10日(水)はクリニックの休診日(祝日「ハリ・ラヤ・プアサ(断食明け大祭)」)"),
        "{}",
        moved[0].text.ja
    );
}

#[test]
fn the_blood_test_is_at_least_one_clinic_day_before_the_infusion() {
    let p = run(&red_eye("2026-12-01")).unwrap();
    assert!(clinic_start(&p, EventKind::BloodTest).date_naive() < clinic_start(&p, EventKind::Infusion).date_naive());
}

#[test]
fn an_in_house_lab_allows_a_blood_test_four_hours_before_on_the_same_day() {
    let mut s = setup();
    s.rules.lab_in_house = true;
    // MH37 lands Thu 07:10: next clinic days Fri, then the weekend. With an in-house lab the
    // blood test can be Fri morning and the infusion Fri afternoon.
    let d = date("2027-01-07");
    let p = run_with(&s, &single(trip(OUTBOUND[2], d, RETURN[0], d + Duration::days(3)))).unwrap();
    let (bt, inf) = (clinic_start(&p, EventKind::BloodTest), clinic_start(&p, EventKind::Infusion));
    assert_eq!(bt.date_naive(), date("2027-01-08"));
    assert_eq!(inf.date_naive(), date("2027-01-08"));
    assert!(inf - bt >= Duration::hours(4));
    // Without it, the same request cannot fit before the weekend flight home.
    let e = run(&single(trip(OUTBOUND[2], d, RETURN[0], d + Duration::days(3)))).unwrap_err();
    assert!(rules_of(&e).contains(&Rule::BloodTest), "{e}");
}

#[test]
fn the_infusion_block_is_three_hours_inside_clinic_hours_and_ends_24h_before_the_flight() {
    let p = run(&red_eye("2026-12-01")).unwrap();
    let inf = p.events_of(EventKind::Infusion).next().unwrap();
    let (s, e) = (inf.start().unwrap(), inf.end().unwrap());
    assert_eq!(e.utc() - s.utc(), Duration::hours(3));
    assert!(e.in_zone(Tz::Asia__Kuala_Lumpur).time() <= NaiveTime::from_hms_opt(17, 0, 0).unwrap());
    let dep = p.event("trip1.return").unwrap().start().unwrap();
    assert!(dep.utc() - e.utc() >= Duration::hours(24));
}

#[test]
fn an_infusion_too_close_to_the_flight_home_is_refused_with_the_flight_named() {
    // MH89 lands Mon 17:05; MH36 leaves Wed 15:00: blood test Tue, infusion would be Wed.
    let d = date("2027-01-11");
    let e = run(&single(trip(OUTBOUND[0], d, RETURN[1], d + Duration::days(2)))).unwrap_err();
    let v = e.violations.iter().find(|v| v.rule == Rule::InfusionBeforeDeparture).unwrap();
    assert!(v.text.en.contains("24 h before the flight home"), "{}", v.text.en);
    assert!(v.text.ja.contains("24時間前"), "{}", v.text.ja);
}

#[test]
fn at_the_airport_three_hours_before_departure_four_in_peak_season() {
    let p = run(&red_eye("2026-12-01")).unwrap();
    let t = p.event("trip1.transfer").unwrap();
    let dep = p.event("trip1.return").unwrap().start().unwrap();
    assert_eq!(dep.utc() - t.end().unwrap().utc(), Duration::hours(3));
    // Home on Sat 26 Dec: New Year peak.
    let d = date("2026-12-22");
    let p = run(&single(trip(OUTBOUND[0], d, RETURN[0], d + Duration::days(4)))).unwrap();
    let t = p.event("trip1.transfer").unwrap();
    let dep = p.event("trip1.return").unwrap().start().unwrap();
    assert_eq!(dep.utc() - t.end().unwrap().utc(), Duration::hours(4));
    assert!(p.warnings.iter().any(|w| w.kind == WarningKind::PeakSeason));
}

#[test]
fn a_single_infusion_stay_is_three_to_five_days() {
    let d = date("2027-01-10");
    let e = run(&single(trip(OUTBOUND[0], d, RETURN[0], d + Duration::days(6)))).unwrap_err();
    let v = e.violations.iter().find(|v| v.rule == Rule::StayLength).unwrap();
    assert_eq!(v.values["days"], "7");
    assert_eq!(v.field.as_deref(), Some("trips[0]"));
}

#[test]
fn one_long_stay_may_not_exceed_90_days_visa_free() {
    let mut r = red_eye("2027-01-04");
    r.protocol = "set-of-3".into();
    r.trip_mode = Some("one-stay".into());
    r.trips[0].return_flight = flight(RETURN[0], date("2027-04-20")).into();
    let e = run(&r).unwrap_err();
    assert!(rules_of(&e).contains(&Rule::VisaFree), "{e}");
}

#[test]
fn the_passport_must_be_valid_six_months_after_arrival() {
    let mut r = red_eye("2026-12-01");
    r.patient.passport_expiry = "2027-06-01".into(); // arrival 2 Dec + 6 months = 2 Jun
    let e = run(&r).unwrap_err();
    let v = e.violations.iter().find(|v| v.rule == Rule::PassportValidity).unwrap();
    assert_eq!(v.field.as_deref(), Some("patient.passport_expiry"));
    assert_eq!(v.values["passport_expiry"], "2027-06-01");
    r.patient.passport_expiry = "2027-06-02".into();
    let p = run(&r).unwrap();
    let m = p.messages.iter().find(|m| m.kind == MessageKind::PassportRecheck).unwrap();
    assert_eq!(m.at.in_zone(Tz::Asia__Tokyo).date(), date("2026-11-26"), "60 days before had passed at planning: sent now");
}

#[test]
fn mdac_opens_three_days_before_arrival_counting_the_arrival_day() {
    // MH89 lands 10 Jan 2027: the window is 8, 9 and 10 Jan, Malaysian dates.
    let p = run(&single(trip(OUTBOUND[0], date("2027-01-10"), RETURN[0], date("2027-01-14")))).unwrap();
    let t = p.tasks.iter().find(|t| t.kind == TaskKind::Mdac).unwrap();
    assert_eq!(t.opens.local().naive_local().to_string(), "2027-01-08 00:00:00");
    assert_eq!(t.opens.zone(), Tz::Asia__Kuala_Lumpur);
    assert_eq!(t.closes, p.event("trip1.outbound").unwrap().end().unwrap());
    let m = p.messages.iter().find(|m| m.kind == MessageKind::MdacReminder).unwrap();
    assert!(m.at.utc() >= t.opens.utc() && m.at.utc() < t.closes.utc());
    assert_eq!(m.at.zone(), Tz::Asia__Tokyo);
}

#[test]
fn medication_and_visit_japan_web_reminders() {
    let p = run(&red_eye("2026-12-01")).unwrap();
    let m = p.messages.iter().find(|m| m.kind == MessageKind::MedicationReminder).unwrap();
    assert_eq!(m.at.local().naive_local().to_string(), "2026-11-28 19:00:00");
    assert_eq!(m.at.zone(), Tz::Asia__Tokyo);
    let v = p.messages.iter().find(|m| m.kind == MessageKind::VisitJapanWeb).unwrap();
    assert_eq!(v.at.local().naive_local().to_string(), "2026-12-04 19:00:00");
    assert_eq!(v.at.zone(), Tz::Asia__Kuala_Lumpur, "the evening before the flight home, in Malaysia");
}

#[test]
fn adverse_event_checkin_seven_days_after_the_last_infusion_at_home() {
    let p = run(&red_eye("2026-12-01")).unwrap();
    let m = p.messages.iter().find(|m| m.kind == MessageKind::AdverseEventCheckin).unwrap();
    assert_eq!(m.at.local().naive_local().to_string(), "2026-12-11 10:00:00");
    assert_eq!(m.at.zone(), Tz::Asia__Tokyo);
}

#[test]
fn follow_ups_at_1_3_6_months_avoid_japanese_weekends_and_holidays() {
    // Infusion Fri 4 Dec 2026: 4 Jan 2027 is a Monday (fine); 4 Mar Thu; 4 Jun Fri.
    let p = run(&red_eye("2026-12-01")).unwrap();
    let starts: Vec<String> =
        p.events_of(EventKind::OnlineFollowUp).map(|e| e.start().unwrap().local().naive_local().to_string()).collect();
    assert_eq!(starts, ["2027-01-04 10:00:00", "2027-03-04 10:00:00", "2027-06-04 10:00:00"]);
    // An infusion on Wed 3 Mar 2027 puts the 2-month mark... use 1 month onto Showa Day (29 Apr, Thu):
    let d = date("2027-03-28"); // MH71 Sun, lands Mon 29 Mar; blood test Tue 30, infusion Wed 31? No: Mon 29.
    let p = run(&single(trip(OUTBOUND[1], d, RETURN[0], d + Duration::days(4)))).unwrap();
    let inf = clinic_start(&p, EventKind::Infusion).date_naive();
    let first = p.events_of(EventKind::OnlineFollowUp).next().unwrap().start().unwrap();
    let target = itinerary_core::time::add_months(inf, 1);
    assert!(first.date() >= target);
    let s = setup();
    assert!(s.holidays.get("JP", first.date()).is_none());
    assert!(!matches!(chrono::Datelike::weekday(&first.date()), chrono::Weekday::Sat | chrono::Weekday::Sun));
}

#[test]
fn re_evaluation_twelve_months_after_the_set() {
    let p = run(&red_eye("2026-12-01")).unwrap();
    let r = p.events_of(EventKind::Reevaluation).next().unwrap().start().unwrap();
    assert!(r.date() >= date("2027-12-04") && r.date() < date("2027-12-20"), "{}", r.date());
}

#[test]
fn adults_only_on_the_first_treatment_day() {
    // Infusion on Fri 4 Dec 2026: 18 on that day is fine, 18 the day after is not.
    let mut r = red_eye("2026-12-01");
    r.patient.birth_date = "2008-12-04".into();
    assert!(run(&r).is_ok());
    r.patient.birth_date = "2008-12-05".into();
    let e = run(&r).unwrap_err();
    let v = e.violations.iter().find(|v| v.rule == Rule::Eligibility).unwrap();
    assert_eq!(v.values["age"], "17");
    assert_eq!(v.field.as_deref(), Some("patient.birth_date"));
}

#[test]
fn a_set_needs_a_trip_mode_and_says_why() {
    let mut r = red_eye("2027-01-04");
    r.protocol = "set-of-3".into();
    let e = run(&r).unwrap_err();
    assert_eq!(rules_of(&e), [Rule::TripMode]);
    assert!(e.violations[0].text.en.contains("29 days"), "{}", e.violations[0].text.en);
    assert!(e.violations[0].text.ja.contains("trip-per-infusion"));
}

#[test]
fn a_set_in_one_stay_keeps_its_interval() {
    let mut r = single(trip(OUTBOUND[0], date("2027-01-10"), RETURN[0], date("2027-01-30")));
    r.protocol = "set-of-3".into();
    r.interval_days = Some(7);
    r.trip_mode = Some("one-stay".into());
    let p = run(&r).unwrap();
    let days: Vec<_> = p.events_of(EventKind::Infusion).map(|e| e.start().unwrap().in_zone(Tz::Asia__Kuala_Lumpur).date()).collect();
    assert_eq!(days.len(), 3);
    for w in days.windows(2) {
        assert!(((w[1] - w[0]).num_days() - 7).abs() <= 1, "{days:?}");
    }
    assert_eq!(p.events_of(EventKind::BloodTest).count(), 3);
}

#[test]
fn a_set_over_trips_that_miss_the_interval_is_refused_naming_the_trip() {
    let d = date("2027-01-10");
    let mut r = single(trip(OUTBOUND[0], d, RETURN[0], d + Duration::days(4)));
    r.protocol = "set-of-3".into();
    r.trip_mode = Some("trip-per-infusion".into());
    r.trips.push(trip(OUTBOUND[0], d + Duration::days(14), RETURN[0], d + Duration::days(18)));
    r.trips.push(trip(OUTBOUND[0], d + Duration::days(35), RETURN[0], d + Duration::days(39)));
    let e = run(&r).unwrap_err();
    let v = e.violations.iter().find(|v| v.rule == Rule::InfusionInterval).unwrap();
    assert_eq!(v.field.as_deref(), Some("trips[2]"));
    r.trips.pop();
    let e = run(&r).unwrap_err();
    assert_eq!(rules_of(&e), [Rule::TripCount]);
}

#[test]
fn escorts_speak_the_patients_language() {
    let s = setup();
    let mut ledger = Ledger::new(30);
    for i in 0..10 {
        let d = date("2027-01-10") + Duration::days(i % 3);
        let req = PlanRequest::parse(&single(trip(OUTBOUND[0], d, RETURN[0], d + Duration::days(4))), &s).unwrap();
        if let Ok(p) = plan(&s, &req, now(), &ledger) {
            assert!(p.escorts.iter().all(|a| a.escort != "E06"), "E06 speaks no Japanese");
            ledger.book_plan(&p);
        }
    }
}

#[test]
fn many_patients_on_the_same_days_never_double_book_and_the_rest_are_told_why() {
    let s = setup();
    let mut ledger = Ledger::new(30);
    let mut plans = Vec::new();
    let mut refused = Vec::new();
    for _ in 0..20 {
        let req = PlanRequest::parse(&red_eye("2027-01-10"), &s).unwrap();
        match plan(&s, &req, now(), &ledger) {
            Ok(p) => {
                ledger.book_plan(&p);
                plans.push(p);
            }
            Err(e) => refused.push(e),
        }
    }
    assert!(!plans.is_empty() && !refused.is_empty());
    let duties: Vec<_> = plans.iter().flat_map(|p| p.escorts.iter()).collect();
    for (i, a) in duties.iter().enumerate() {
        for b in &duties[i + 1..] {
            let same_shared_duty = a.shared.is_some() && a.shared == b.shared && a.start == b.start;
            if a.escort == b.escort && !same_shared_duty {
                assert!(a.end.utc() <= b.start.utc() || b.end.utc() <= a.start.utc(), "{} double-booked", a.escort);
            }
        }
    }
    let infusions: Vec<_> = plans.iter().flat_map(|p| p.events_of(EventKind::Infusion)).collect();
    for i in &infusions {
        let t = i.start().unwrap().utc();
        let overlapping = infusions.iter().filter(|j| j.start().unwrap().utc() <= t && t < j.end().unwrap().utc()).count();
        assert!(overlapping <= usize::from(s.resources.chairs));
    }
    for e in &refused {
        assert!(e.violations.iter().any(|v| matches!(v.rule, Rule::EscortAvailable | Rule::ChairCapacity | Rule::BloodTest)), "{e}");
    }
}

#[test]
fn patients_on_one_flight_share_the_escort_who_meets_it_up_to_the_group_size() {
    let s = setup();
    let mut ledger = Ledger::new(30);
    let mut pickups = Vec::new();
    for _ in 0..4 {
        let req = PlanRequest::parse(&red_eye("2027-01-10"), &s).unwrap();
        if let Ok(p) = plan(&s, &req, now(), &ledger) {
            ledger.book_plan(&p);
            pickups.push(p.escorts.iter().find(|a| a.event == "trip1.pickup").unwrap().clone());
        }
    }
    let first = &pickups[0];
    let sharing = pickups.iter().filter(|a| a.escort == first.escort && a.shared == first.shared).count();
    assert_eq!(sharing, usize::from(s.rules.escort_group_size), "{pickups:#?}");
    assert!(first.shared.as_deref().unwrap().starts_with("pickup MH71"));
}

#[test]
fn the_same_inputs_give_the_same_plan() {
    let s = setup();
    let req = PlanRequest::parse(&red_eye("2026-12-01"), &s).unwrap();
    let a = serde_json::to_string(&plan(&s, &req, now(), &Ledger::new(30)).unwrap()).unwrap();
    let b = serde_json::to_string(&plan(&s, &req, now(), &Ledger::new(30)).unwrap()).unwrap();
    assert_eq!(a, b);
}

#[test]
fn a_patient_in_los_angeles_gets_messages_at_los_angeles_hours_and_follow_ups_keep_their_hour() {
    let mut r = red_eye("2026-12-08");
    r.patient.home_zone = Some("America/Los_Angeles".into());
    let p = run(&r).unwrap();
    let med = p.messages.iter().find(|m| m.kind == MessageKind::MedicationReminder).unwrap();
    assert_eq!(med.at.zone(), Tz::America__Los_Angeles);
    assert_eq!(med.at.local().hour(), 19);
    let fu: Vec<_> = p.events.iter().filter(|e| e.online).map(|e| e.start().unwrap()).collect();
    let hours: Vec<_> = fu.iter().map(|z| z.local().time()).collect();
    assert!(hours.windows(2).all(|w| w[0] == w[1]), "{hours:?}");
    let abbrs: Vec<_> = fu.iter().map(itinerary_core::time::zone_abbreviation).collect();
    assert!(abbrs.contains(&"PST".to_owned()) && abbrs.contains(&"PDT".to_owned()), "crosses DST: {abbrs:?}");
    assert!(p.warnings.iter().any(|w| w.kind == WarningKind::FollowUpHour && w.text.en.contains("18:00")));
    assert!(!p.warnings.iter().any(|w| w.kind == WarningKind::TightConnection), "a red-eye with a next-day blood test is not tight");
    // Inside clinic hours at the clinic.
    for z in &fu {
        let c = z.in_zone(Tz::Asia__Kuala_Lumpur).time();
        assert!(c >= NaiveTime::from_hms_opt(9, 0, 0).unwrap() && c <= NaiveTime::from_hms_opt(16, 30, 0).unwrap());
    }
}

#[test]
fn patients_in_london_and_sydney_get_their_own_local_hours() {
    for (zone, tz) in [("Europe/London", Tz::Europe__London), ("Australia/Sydney", Tz::Australia__Sydney)] {
        let mut r = red_eye("2027-03-15");
        r.patient.home_zone = Some(zone.into());
        let p = run(&r).unwrap();
        for m in p.messages.iter().filter(|m| m.recipient == Recipient::Patient && m.kind != MessageKind::BookingConfirmation) {
            let where_ = if m.at.utc() < p.event("trip1.outbound").unwrap().start().unwrap().utc()
                || m.at.utc() >= p.event("trip1.return").unwrap().end().unwrap().utc()
            {
                tz
            } else {
                Tz::Asia__Kuala_Lumpur
            };
            assert_eq!(m.at.zone(), where_, "{} at {:?}", m.key, m.at);
            assert!(!setup().rules.is_quiet(m.at.local().time()), "{} in the night: {:?}", m.key, m.at.local());
        }
    }
}

fn leg(n: &str, from: &str, depart: &str, to: &str, arrive: &str) -> itinerary_core::request::RawFlight {
    itinerary_core::request::RawFlight { flight: n.into(), from: from.into(), depart: depart.into(), to: to.into(), arrive: arrive.into() }
}

/// LAX→NRT→KUL and back through Narita, for a patient living in Los Angeles.
fn via_narita() -> RawPlanRequest {
    use itinerary_core::request::{Legs, RawTrip};
    let mut r = single(RawTrip {
        outbound: Legs(vec![
            leg("JL61", "LAX", "2026-12-07 11:50", "NRT", "2026-12-08 16:35"),
            leg("MH71", "NRT", "2026-12-08 21:40", "KUL", "2026-12-09 04:30"),
        ]),
        return_flight: Legs(vec![
            leg("MH88", "KUL", "2026-12-12 23:35", "NRT", "2026-12-13 07:15"),
            leg("JL62", "NRT", "2026-12-13 17:10", "LAX", "2026-12-13 10:10"),
        ]),
    });
    r.patient.home_zone = Some("America/Los_Angeles".into());
    r
}

fn problems(raw: &RawPlanRequest) -> Vec<(String, String)> {
    PlanRequest::parse(raw, &setup()).map(|_| Vec::new()).unwrap_or_else(|e| e.errors.into_iter().map(|x| (x.field, x.problem)).collect())
}

#[test]
fn a_single_flight_request_reads_and_writes_as_it_always_did() {
    let text = r#"{"outbound":{"flight":"MH71","from":"NRT","depart":"2026-12-01 21:40","to":"KUL","arrive":"2026-12-02 04:30"},"return":{"flight":"MH88","from":"KUL","depart":"2026-12-05 23:35","to":"NRT","arrive":"2026-12-06 07:15"}}"#;
    let trip: itinerary_core::request::RawTrip = serde_json::from_str(text).unwrap();
    assert_eq!(trip.outbound.0.len(), 1);
    assert_eq!(serde_json::to_string(&trip).unwrap(), text);
    let p = run(&red_eye("2026-12-01")).unwrap();
    assert_eq!(p.events_of(EventKind::Flight).map(|e| e.key.as_str()).collect::<Vec<_>>(), ["trip1.outbound", "trip1.return"]);
}

#[test]
fn every_flight_of_a_connection_is_its_own_event_and_the_escort_meets_the_last() {
    let p = run(&via_narita()).unwrap();
    let keys: Vec<_> = p.events_of(EventKind::Flight).map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["trip1.outbound.leg1", "trip1.outbound", "trip1.return", "trip1.return.leg2"]);
    let first = p.event("trip1.outbound.leg1").unwrap();
    assert_eq!((first.start().unwrap().zone(), first.end().unwrap().zone()), (Tz::America__Los_Angeles, Tz::Asia__Tokyo));
    let pickup = p.event("trip1.pickup").unwrap().start().unwrap();
    let mh71 = p.event("trip1.outbound").unwrap().end().unwrap();
    assert!(pickup.utc() > mh71.utc(), "the escort meets MH71, the flight that lands in Malaysia");
    // The departure-day message: before JL61, at Los Angeles time, about JL61.
    let dep = p.messages.iter().find(|m| m.key == "trip1.departure_day").unwrap();
    assert_eq!(dep.about.as_deref(), Some("trip1.outbound.leg1"));
    assert_eq!(dep.at.zone(), Tz::America__Los_Angeles);
    assert_eq!(dep.before.unwrap().local().format("%Y-%m-%d %H:%M").to_string(), "2026-12-07 08:50", "three hours before JL61");
    // Changing planes at Narita is not entering Japan: no Visit Japan Web for her.
    assert!(!p.tasks.iter().any(|t| t.kind == TaskKind::VisitJapanWeb));
    // Nothing while any flight is in the air, nothing in the patient's night.
    let wb = itinerary_core::messages::Whereabouts::new(&PlanRequest::parse(&via_narita(), &setup()).unwrap());
    for m in p.messages.iter().filter(|m| m.recipient == Recipient::Patient) {
        assert_ne!(wb.place(m.at.utc()), itinerary_core::messages::Place::InFlight, "{}", m.key);
    }
    // At Narita between MH88 and JL62 the patient is in Tokyo's zone.
    let between = p.event("trip1.return").unwrap().end().unwrap().utc() + Duration::hours(2);
    assert_eq!(wb.place(between), itinerary_core::messages::Place::At(Tz::Asia__Tokyo));
    assert!(!p.warnings.iter().any(|w| w.kind == WarningKind::OvernightConnection), "a day at Narita is not a night");
}

#[test]
fn connections_that_cannot_be_made_are_refused_naming_the_flight() {
    let mut r = via_narita();
    // 16:35 into Narita, out 17:20: 45 minutes, under Narita's 90.
    r.trips[0].outbound.0[1].depart = "2026-12-08 17:20".into();
    r.trips[0].outbound.0[1].arrive = "2026-12-09 00:10".into();
    let p = problems(&r);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].0, "trips[0].outbound[1].depart");
    assert!(p[0].1.contains("45 min") && p[0].1.contains("NRT") && p[0].1.contains("90 min"), "{}", p[0].1);
    // Leaves before the flight before lands.
    r.trips[0].outbound.0[1].depart = "2026-12-08 15:00".into();
    r.trips[0].outbound.0[1].arrive = "2026-12-08 21:50".into();
    assert!(problems(&r)[0].1.contains("departs before the flight before (JL61) lands"), "{:?}", problems(&r));
    // From another airport than the one it landed at.
    let mut r = via_narita();
    r.trips[0].return_flight.0[1].from = "HND".into();
    let p = problems(&r);
    assert_eq!(p[0].0, "trips[0].return[1].from");
    assert!(p[0].1.contains("lands at NRT"), "{}", p[0].1);
    // Two days at Narita is a stay, or a mistyped date.
    let mut r = via_narita();
    r.trips[0].return_flight.0[1].depart = "2026-12-15 17:10".into();
    r.trips[0].return_flight.0[1].arrive = "2026-12-15 10:10".into();
    let p = problems(&r);
    assert_eq!(p[0].0, "trips[0].return[1].depart");
    assert!(p[0].1.contains("more than 24 hours"), "{}", p[0].1);
    // The last flight out must land where the clinic is.
    let mut r = via_narita();
    r.trips[0].outbound.0.pop();
    let p = problems(&r);
    assert!(p.iter().any(|(f, why)| f == "trips[0].outbound.to" && why.contains("not in MY")), "{p:?}");
    // No direction without a flight, and not more than six.
    let mut r = via_narita();
    r.trips[0].outbound.0.clear();
    assert_eq!(problems(&r)[0].0, "trips[0].outbound");
    let mut r = via_narita();
    r.trips[0].return_flight.0 = vec![r.trips[0].return_flight.0[0].clone(); 7];
    assert!(problems(&r)[0].1.contains("at most 6"), "{:?}", problems(&r));
}

#[test]
fn an_overnight_connection_is_warned_with_a_transit_hotel_when_it_is_long() {
    let mut r = via_narita();
    // Home through Taipei instead: in at 22:10, out at 07:30 the next morning.
    r.trips[0].return_flight.0 = vec![
        leg("MH68", "KUL", "2026-12-12 17:15", "TPE", "2026-12-12 22:10"),
        leg("BR12", "TPE", "2026-12-13 07:30", "LAX", "2026-12-13 03:30"),
    ];
    let p = run(&r).unwrap();
    let w: Vec<_> = p.warnings.iter().filter(|w| w.kind == WarningKind::OvernightConnection).collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].text.en.contains("9 h 20 min") && w[0].text.en.contains("book a transit hotel"), "{}", w[0].text.en);
    assert!(w[0].text.ja.contains("トランジットホテル"), "{}", w[0].text.ja);
    // Five hours through the night: in the terminal, and the patient is told.
    r.trips[0].return_flight.0[1] = leg("BR12", "TPE", "2026-12-13 03:10", "LAX", "2026-12-12 23:10");
    let p = run(&r).unwrap();
    let w: Vec<_> = p.warnings.iter().filter(|w| w.kind == WarningKind::OvernightConnection).collect();
    assert!(w.len() == 1 && w[0].text.en.contains("waits in the terminal"), "{w:?}");
}

#[test]
fn a_sapporo_patient_is_at_the_airport_an_hour_before_the_domestic_flight() {
    use itinerary_core::request::{Legs, RawTrip};
    let r = single(RawTrip {
        outbound: Legs(vec![
            leg("NH64", "CTS", "2027-01-17 18:00", "HND", "2027-01-17 19:35"),
            leg("NH885", "HND", "2027-01-18 00:05", "KUL", "2027-01-18 06:25"),
        ]),
        return_flight: Legs(vec![
            leg("NH886", "KUL", "2027-01-22 14:55", "HND", "2027-01-22 22:55"),
            leg("NH51", "HND", "2027-01-23 07:00", "CTS", "2027-01-23 08:35"),
        ]),
    });
    let p = run(&r).unwrap();
    let dep = p.messages.iter().find(|m| m.key == "trip1.departure_day").unwrap();
    assert_eq!(dep.before.unwrap().local().format("%H:%M").to_string(), "17:00");
    // Entering Japan at Haneda: Visit Japan Web closes when NH886 lands there.
    let vjw = p.tasks.iter().find(|t| t.kind == TaskKind::VisitJapanWeb).unwrap();
    assert_eq!(vjw.closes.local().format("%Y-%m-%d %H:%M").to_string(), "2027-01-22 22:55");
}

/// The red-eye home leaves the hotel at 19:35, the day after the infusion: the room is kept
/// until then (or a day-use room booked, as the clinic chooses), shown as an event and warned.
/// A car that leaves before check-out needs nothing.
#[test]
fn the_last_day_keeps_a_room_until_the_car_leaves() {
    let p = run(&red_eye("2026-12-01")).unwrap();
    let stay = p.event("trip1.late_check_out").unwrap();
    assert_eq!(stay.kind, EventKind::Hotel);
    let (from, until) = (stay.start().unwrap(), stay.end().unwrap());
    assert_eq!(from.local().format("%Y-%m-%d %H:%M").to_string(), "2026-12-05 12:00");
    assert_eq!(until.utc(), p.event("trip1.transfer").unwrap().start().unwrap().utc());
    let w: Vec<_> = p.warnings.iter().filter(|w| w.kind == WarningKind::LateCheckOut).collect();
    assert!(w.len() == 1 && w[0].text.en.contains("19:35") && w[0].text.ja.contains("レイトチェックアウト"), "{w:?}");

    let mut setup = setup();
    setup.clinic.late_departure = itinerary_core::clinic::LateDeparture::DayUseRoom;
    let p = run_with(&setup, &red_eye("2026-12-01")).unwrap();
    assert!(p.event("trip1.late_check_out").is_none());
    assert_eq!(p.event("trip1.day_use_room").unwrap().title.ja, "デイユースルーム");

    // MH36 home at 15:00: the car leaves at 11:00, before the 12:00 check-out.
    let d = date("2026-12-01");
    let p = run(&single(trip(OUTBOUND[1], d, RETURN[1], d + Duration::days(4)))).unwrap();
    assert!(p.events.iter().all(|e| !e.key.ends_with("late_check_out")), "{:?}", p.event("trip1.transfer"));
    assert!(!p.warnings.iter().any(|w| w.kind == WarningKind::LateCheckOut));
}

/// A cancellation goes where its invite went, judged by the event's key alone once the event is
/// gone from the plan: the key rule must agree with the kinds for every event there is.
#[test]
fn the_invite_choice_reads_the_same_from_a_key_as_from_an_event() {
    use itinerary_core::plan::Invites;
    let d = date("2027-01-11");
    let mut set = single(trip(OUTBOUND[1], d, RETURN[0], d + Duration::days(18)));
    set.protocol = "set-of-3".into();
    set.interval_days = Some(7);
    set.trip_mode = Some("one-stay".into());
    for raw in [red_eye("2026-12-01"), via_narita(), set] {
        let p = run(&raw).unwrap();
        for e in &p.events {
            for i in Invites::ALL {
                assert_eq!(i.wants(e), i.wants_key(&e.key), "{i:?} {}", e.key);
            }
        }
        assert!(p.events.iter().any(|e| Invites::Clinic.wants(e)) && p.events.iter().any(|e| !Invites::Clinic.wants(e)));
    }
}

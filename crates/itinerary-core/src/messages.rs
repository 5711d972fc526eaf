//! When each message is due, and where the recipient is at that moment: at home before the trip
//! and after it, in Malaysia during it. "19:00 the evening before" means 19:00 where the patient
//! will be that evening. Also the patient's tasks with their windows (MDAC's three days), the
//! online follow-up hour, and the warnings that come from the calendar.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, Utc, Weekday};
use chrono_tz::Tz;

use crate::clinic::ClinicSetup;
use crate::plan::{EventKind, IfLate, MessageDue, MessageKind, PatientTask, Plan, Recipient, TaskKind, Text, Warning, WarningKind};
use crate::planner::{Frame, hm, when_en};
use crate::reference::Holiday;
use crate::request::{Language, PlanRequest};
use crate::time::{Zoned, at_local, date_ja, zone_abbreviation};

/// Where the patient is over time, from their flights.
#[derive(Clone, Debug)]
pub struct Whereabouts {
    home: Tz,
    /// (departs, lands, zone the patient is in after landing)
    legs: Vec<(DateTime<Utc>, DateTime<Utc>, Tz)>,
}

/// Where someone is at an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    At(Tz),
    InFlight,
}

impl Whereabouts {
    pub fn new(req: &PlanRequest) -> Self {
        let home = req.patient.home_zone;
        let mut legs = Vec::new();
        for t in &req.trips {
            // Between flights the patient is where the plane landed: a connection at Narita is
            // in Tokyo's zone, whatever zone home is.
            for f in t.legs_out() {
                legs.push((f.departs.utc(), f.arrives.utc(), f.arrives.zone()));
            }
            let home_legs: Vec<_> = t.legs_home().collect();
            for (i, f) in home_legs.iter().enumerate() {
                // After the last flight home the patient is at home, even when it lands elsewhere.
                let after = if i + 1 == home_legs.len() { home } else { f.arrives.zone() };
                legs.push((f.departs.utc(), f.arrives.utc(), after));
            }
        }
        Self { home, legs }
    }

    /// Where the patient is at `t`, and the zone to show `t` in (in flight: the destination's).
    fn locate(&self, t: DateTime<Utc>) -> (Place, Tz) {
        let mut zone = self.home;
        for (dep, arr, after) in &self.legs {
            if t < *dep {
                return (Place::At(zone), zone);
            }
            if t < *arr {
                return (Place::InFlight, *after);
            }
            zone = *after;
        }
        (Place::At(zone), zone)
    }

    pub fn place(&self, t: DateTime<Utc>) -> Place {
        self.locate(t).0
    }

    /// The instant in the zone the patient is in (in flight: the destination's).
    pub fn at(&self, t: DateTime<Utc>) -> Zoned {
        Zoned::new(t, self.locate(t).1)
    }

    /// `time` on the date `date_in(zone)`, in the zone where the patient will be then; `None`
    /// when that moment is in the air.
    pub fn local(&self, date_in: impl Fn(Tz) -> NaiveDate, time: NaiveTime, guess: Tz) -> Option<Zoned> {
        let mut zone = guess;
        for _ in 0..3 {
            let cand = at_local(date_in(zone), time, zone);
            match self.place(cand.utc()) {
                Place::At(z) if z == zone => return Some(cand),
                Place::At(z) => zone = z,
                Place::InFlight => return None,
            }
        }
        None
    }

    /// Three hours before `dep`, or before the flight the patient is on then, and so on back:
    /// an instant on the ground.
    fn grounded_before(&self, dep: DateTime<Utc>) -> DateTime<Utc> {
        let mut t = dep - Duration::hours(3);
        while let Some((d, _)) = self.leg_at(t) {
            t = d - Duration::hours(3);
        }
        t
    }

    /// The flight the patient is on at `t`, if any: (departs, lands).
    fn leg_at(&self, t: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        self.legs.iter().find(|(d, a, _)| *d <= t && t < *a).map(|l| (l.0, l.1))
    }
}

/// One local hour for the whole series of online follow-ups, so that 10:00 stays 10:00 across
/// daylight-saving changes; each on the first day from its target that is not the patient's
/// weekend or holiday and, when the rule says so, falls inside the clinic's hours.
pub(crate) fn follow_up_times(
    setup: &ClinicSetup,
    home: Tz,
    home_regions: &[String],
    targets: &[NaiveDate],
) -> (Vec<Zoned>, Option<Warning>) {
    let rules = &setup.rules;
    let len = Duration::minutes(i64::from(rules.followup_minutes));
    let preferred = rules.followup_local_time;
    let step = Duration::minutes(i64::from(rules.slot_minutes.max(1)));
    let mut times = Vec::new();
    let mut t = rules.quiet_hours_end;
    while t + len <= rules.quiet_hours_start && t >= rules.quiet_hours_end {
        times.push(t);
        t += step;
    }
    times.sort_by_key(|t| ((*t - preferred).num_minutes().abs(), *t));
    if !times.contains(&preferred) {
        times.insert(0, preferred);
    }
    let fits = |d: NaiveDate, t: NaiveTime| -> Option<Zoned> {
        if matches!(d.weekday(), Weekday::Sat | Weekday::Sun) || setup.holidays.any(home_regions, d).is_some() {
            return None;
        }
        let start = at_local(d, t, home);
        if start.time() != t {
            return None; // inside a daylight-saving gap: not this hour
        }
        if rules.followup_within_clinic_hours {
            let c = start.in_zone(setup.clinic.zone);
            let e = start.add(len).in_zone(setup.clinic.zone);
            if !setup.is_clinic_day(c.date()) || c.time() < setup.clinic.opens || e.time() > setup.clinic.closes || e.date() != c.date() {
                return None;
            }
        }
        Some(start)
    };
    for t in &times {
        let found: Option<Vec<Zoned>> = targets.iter().map(|target| (0..21).find_map(|k| fits(*target + Duration::days(k), *t))).collect();
        if let Some(found) = found {
            let note = (*t != preferred).then(|| {
                let sample = found.first().copied().unwrap_or_else(|| at_local(NaiveDate::MIN, *t, home));
                Warning {
                    kind: WarningKind::FollowUpHour,
                    text: Text::new(
                        format!(
                            "オンライン診察は{}の{}に設定しました(希望の{}はクリニックの診療時間外のため)。",
                            crate::time::zone_name_ja(home),
                            t.format("%H:%M"),
                            preferred.format("%H:%M")
                        ),
                        format!(
                            "Online follow-ups are at {} {} ({} at the clinic): {} there is outside the clinic's hours.",
                            t.format("%H:%M"),
                            zone_abbreviation(&sample),
                            hm(&sample.in_zone(setup.clinic.zone)),
                            preferred.format("%H:%M")
                        ),
                    ),
                }
            });
            return (found, note);
        }
    }
    // No hour fits every follow-up (a zone far from the clinic's): keep the patient's hour.
    let found = targets.iter().map(|d| at_local(*d, preferred, home)).collect();
    let note = Warning {
        kind: WarningKind::FollowUpHour,
        text: Text::new(
            "オンライン診察の時間がクリニックの診療時間と重なりません。個別に調整してください。",
            "No hour suits both the patient's day and the clinic's hours for the online follow-ups: arrange them by hand.",
        ),
    };
    (found, Some(note))
}

pub(crate) fn tight_connections(setup: &ClinicSetup, frames: &[Frame], events: &[crate::plan::Event], warnings: &mut Vec<Warning>) {
    let r = &setup.rules;
    for f in frames {
        let first = events.iter().filter(|e| e.kind.at_clinic() && e.trip == Some(f.trip as u32 + 1)).filter_map(|e| e.start()).min();
        if let Some(first) = first {
            let gap = (first.utc() - f.arrives.utc()).num_minutes();
            if gap < i64::from(r.landing_to_clinic_minutes + r.tight_connection_minutes) {
                warnings.push(Warning {
                    kind: WarningKind::TightConnection,
                    text: Text::new(
                        format!("旅程{}:着陸から最初の通院まで{}分しかありません。便の遅れに注意してください。", f.trip + 1, gap),
                        format!(
                            "Trip {}: the first clinic appointment is {} minutes after landing; a late flight would miss it.",
                            f.trip + 1,
                            gap
                        ),
                    ),
                });
            }
        }
    }
}

/// Tentative (moon-sighting) holidays within a day of any clinic date or inside a stay.
pub(crate) fn tentative_holidays(
    setup: &ClinicSetup,
    frames: &[Frame],
    clinic_dates: &[NaiveDate],
    warnings: &mut Vec<Warning>,
) -> Vec<(NaiveDate, String)> {
    let zone = setup.clinic.zone;
    let regions = &setup.clinic.holiday_regions;
    let mut found: BTreeMap<NaiveDate, &Holiday> = BTreeMap::new();
    let spans = frames
        .iter()
        .map(|f| (f.arrives.in_zone(zone).date() - Duration::days(1), f.departs.in_zone(zone).date() + Duration::days(1)))
        .chain(clinic_dates.iter().map(|d| (*d - Duration::days(1), *d + Duration::days(1))));
    for (from, to) in spans {
        for h in setup.holidays.between(regions, from, to).filter(|h| h.tentative) {
            found.entry(h.date).or_insert(h);
        }
    }
    for (d, h) in &found {
        let name = &h.name;
        warnings.push(Warning {
            kind: WarningKind::TentativeHoliday,
            text: Text::new(
                format!(
                    "{}の「{}」は月の観測で前後する暫定の祝日です。渡航の{}日前に再確認してください。",
                    date_ja(*d, None),
                    h.name_in(true),
                    setup.rules.tentative_holiday_recheck_days
                ),
                format!(
                    "{name} on {d} is tentative (moon sighting) and may move by a day; re-check {} days before travel.",
                    setup.rules.tentative_holiday_recheck_days
                ),
            ),
        });
    }
    found.into_iter().map(|(d, h)| (d, h.name.clone())).collect()
}

pub(crate) fn holiday_coverage(setup: &ClinicSetup, events: &[crate::plan::Event], home_regions: &[String], warnings: &mut Vec<Warning>) {
    let mut check = |region: &str, last: Option<NaiveDate>| {
        let Some(last) = last else { return };
        match setup.holidays.coverage(region) {
            Some((_, end)) if last <= end => {}
            _ => warnings.push(Warning {
                kind: WarningKind::HolidayTableEnds,
                text: Text::new(
                    format!("祝日表({region})が{}までの予定をカバーしていません。祝日を確認してください。", date_ja(last, None)),
                    format!("The holiday table for {region} does not reach {last}: check that day's holidays by hand."),
                ),
            }),
        }
    };
    let zone = setup.clinic.zone;
    let last_clinic = events.iter().filter(|e| e.kind.at_clinic()).filter_map(|e| e.start()).map(|s| s.in_zone(zone).date()).max();
    for r in &setup.clinic.holiday_regions {
        check(r, last_clinic);
    }
    let last_online = events.iter().filter(|e| e.online).filter_map(|e| e.start()).map(|s| s.date()).max();
    for r in home_regions {
        check(r, last_online);
    }
}

/// `at`, or when it falls in the recipient's quiet hours, the hour before those hours began: never
/// later than `at` (a quiet window that starts at midnight once gave 23:00 of the same day, and
/// a message moved out of a long flight that way landed back in it, for ever).
pub(crate) fn wake(r: &crate::clinic::Rules, at: Zoned) -> Zoned {
    let local = at.local();
    if !r.is_quiet(local.time()) {
        return at;
    }
    let evening = r.quiet_hours_start - Duration::hours(1);
    let day = if local.time() >= r.quiet_hours_start { local.date_naive() } else { local.date_naive() - Duration::days(1) };
    let mut moved = at_local(day, evening, at.zone());
    if moved.utc() > at.utc() {
        moved = at_local(day - Duration::days(1), evening, at.zone());
    }
    Zoned::new(moved.utc(), at.zone())
}

struct Scheduler<'a> {
    setup: &'a ClinicSetup,
    wb: Whereabouts,
    now: DateTime<Utc>,
    lang: Language,
    messages: Vec<MessageDue>,
    warnings: Vec<Warning>,
}

impl Scheduler<'_> {
    /// Moves a message out of the recipient's night, earlier: to the evening before the night.
    fn wake(&self, at: Zoned) -> Zoned {
        wake(&self.setup.rules, at)
    }

    /// `wake` for the patient, whose zone is where they are: moved hours earlier, a message may
    /// fall before a flight, in another zone (the evening before a dawn at a connecting airport
    /// is still at home), where it is woken again. Each step goes earlier; a few suffice.
    fn wake_patient(&self, at: Zoned) -> Zoned {
        let mut at = self.wake(at);
        for _ in 0..=self.wb.legs.len() {
            let there = self.wb.at(at.utc());
            if there.zone() == at.zone() {
                break;
            }
            at = self.wake(there);
        }
        at
    }

    /// `time` on the day `days` before `anchor`'s date, where the patient is then. If that moment
    /// is in the air, three hours before that flight departs.
    fn patient_local(&self, anchor: Zoned, days: i64, time: NaiveTime) -> Zoned {
        let guess = self.wb.at(anchor.utc()).zone();
        if let Some(z) = self.wb.local(|z| anchor.in_zone(z).date() - Duration::days(days), time, guess) {
            return z;
        }
        let cand = at_local(anchor.in_zone(guess).date() - Duration::days(days), time, guess);
        let dep = self.wb.leg_at(cand.utc()).map_or(cand.utc(), |l| l.0);
        self.wb.at(dep - Duration::hours(3))
    }

    /// In the morning of `before`'s day if that leaves three hours, else the evening before.
    fn morning_or_evening_before(&self, before: Zoned) -> Zoned {
        let r = &self.setup.rules;
        let morning = self.patient_local(before, 0, r.morning_message_time);
        if morning.utc() + Duration::hours(3) <= before.utc() { morning } else { self.patient_local(before, 1, r.evening_reminder_time) }
    }

    #[expect(clippy::too_many_arguments, reason = "the parts of a plan, each needed once")]
    fn push(
        &mut self,
        key: String,
        kind: MessageKind,
        recipient: Recipient,
        at: Zoned,
        about: Option<&str>,
        before: Option<Zoned>,
        why: String,
        if_late: IfLate,
    ) {
        let lang = match recipient {
            Recipient::Patient => self.lang,
            _ => Language::En,
        };
        let mut at = if recipient == Recipient::Patient { self.wake_patient(at) } else { self.wake(at) };
        // Never while the patient is in the air: after landing if that is still in time and on
        // the ground, else three hours before take-off; with connections that may fall in an
        // earlier flight, and then the same again from there (each step goes earlier, and there
        // are few flights).
        if recipient == Recipient::Patient {
            // One step per flight at most; should the night rules keep it in the air beyond
            // that, three hours before the journey's first flight on the ground, whatever the hour.
            let mut steps = self.wb.legs.len() + 1;
            while let Some((dep, land)) = self.wb.leg_at(at.utc()) {
                if steps == 0 {
                    at = self.wb.at(self.wb.grounded_before(dep));
                    break;
                }
                steps -= 1;
                let after = self.wake_patient(self.wb.at(land + Duration::hours(1)));
                at = if before.is_none_or(|b| after.utc() < b.utc()) && self.wb.leg_at(after.utc()).is_none() {
                    after
                } else {
                    self.wake_patient(self.wb.at(dep - Duration::hours(3)))
                };
            }
        }
        if let Some(b) = before
            && at.utc() >= b.utc()
        {
            at = Zoned::new(b.utc() - Duration::minutes(30), at.zone());
        }
        let mut why = why;
        if at.utc() < self.now {
            let still_ahead = before.is_none_or(|b| b.utc() > self.now);
            if if_late == IfLate::SendNow && still_ahead {
                at = match recipient {
                    Recipient::Patient => self.wb.at(self.now),
                    _ => Zoned::new(self.now, at.zone()),
                };
                why = format!("{why}; that time had passed when the plan was made, so it goes now");
                self.warnings.push(Warning {
                    kind: WarningKind::LateMessage,
                    text: Text::new(
                        format!("「{key}」の送信予定時刻は過ぎているため、すぐに送信します。"),
                        format!("The message {key} was due before the plan was made: it is sent now."),
                    ),
                });
            } else {
                self.warnings.push(Warning {
                    kind: WarningKind::LateMessage,
                    text: Text::new(
                        format!("「{key}」の送信予定時刻は過ぎているため、送信しません。"),
                        format!("The message {key} was due before the plan was made and is no longer useful: it is not sent."),
                    ),
                });
                return;
            }
        }
        self.messages.push(MessageDue { key, kind, recipient, language: lang, at, about: about.map(str::to_owned), before, why, if_late });
    }
}

/// Fills the plan's tasks and messages.
pub(crate) fn schedule(
    setup: &ClinicSetup,
    req: &PlanRequest,
    wb: Whereabouts,
    frames: &[Frame],
    tentative: &[(NaiveDate, String)],
    plan: &mut Plan,
) {
    let r = &setup.rules;
    let zone = setup.clinic.zone;
    let mut s = Scheduler { setup, wb, now: plan.planned_at.utc(), lang: req.patient.language, messages: Vec::new(), warnings: Vec::new() };
    let mut tasks = Vec::new();
    let first_event = plan.events.iter().filter_map(|e| e.start()).min();

    let now = plan.planned_at;
    s.push(
        "booking_confirmation".into(),
        MessageKind::BookingConfirmation,
        Recipient::Patient,
        now,
        None,
        first_event,
        "as soon as the itinerary is booked".into(),
        IfLate::SendNow,
    );

    if let Some(first) = req.trips.first() {
        let dep = first.first_flight().departs;
        let at = s.patient_local(dep, i64::from(r.passport_recheck_days_before_travel), r.morning_message_time);
        tasks.push(PatientTask {
            key: "passport_check".into(),
            kind: TaskKind::PassportCheck,
            trip: Some(1),
            title: Text::new("パスポートの有効期限の確認", "Check the passport's expiry"),
            opens: at,
            closes: dep,
        });
        s.push(
            "passport_check.reminder".into(),
            MessageKind::PassportRecheck,
            Recipient::Patient,
            at,
            Some("passport_check"),
            Some(dep),
            format!(
                "{} days before the first flight, {} where the patient is",
                r.passport_recheck_days_before_travel,
                r.morning_message_time.format("%H:%M")
            ),
            IfLate::SendNow,
        );
        if let Some((first_date, _)) = tentative.first() {
            let at = at_local(
                dep.in_zone(zone).date() - Duration::days(i64::from(r.tentative_holiday_recheck_days)),
                r.morning_message_time,
                zone,
            );
            let names: Vec<String> = tentative.iter().map(|(d, n)| format!("{n} ({d})")).collect();
            let before = plan.events.iter().filter(|e| e.kind.at_clinic()).filter_map(|e| e.start()).min().unwrap_or(dep);
            s.push(
                "tentative_holiday_recheck".into(),
                MessageKind::TentativeHolidayRecheck,
                Recipient::Coordinator,
                at,
                None,
                Some(before),
                format!(
                    "{} days before travel: re-check the tentative holiday(s) {} (first {first_date})",
                    r.tentative_holiday_recheck_days,
                    names.join(", ")
                ),
                IfLate::SendNow,
            );
        }
    }

    for (f, trip) in frames.iter().zip(&req.trips) {
        let t = f.trip + 1;
        let pre = format!("trip{t}");
        let out = &trip.outbound;
        // Where the journey begins: the first flight, which may be a connection (`LAX→NRT`).
        let (first_key, first) = trip.keyed_flights(&pre).into_iter().next().unwrap_or((format!("{pre}.outbound"), out));
        // MDAC: the `mdac_window_days` days up to arrival, arrival day included, in Malaysia's dates.
        let arrival_day = out.arrives.date();
        let opens = at_local(arrival_day - Duration::days(i64::from(r.mdac_window_days.max(1)) - 1), NaiveTime::MIN, out.arrives.zone());
        tasks.push(PatientTask {
            key: format!("{pre}.mdac"),
            kind: TaskKind::Mdac,
            trip: Some(t as u32),
            title: Text::new("マレーシアデジタル到着カード(MDAC)の提出", "Submit the Malaysia Digital Arrival Card (MDAC)"),
            opens,
            closes: out.arrives,
        });
        // The first morning inside the window when the patient is on the ground.
        let first_morning = (0..=i64::from(r.mdac_window_days))
            .filter_map(|k| {
                let guess = s.wb.at(opens.utc()).zone();
                s.wb.local(|z| opens.in_zone(z).date() + Duration::days(k), r.morning_message_time, guess)
            })
            .find(|at| at.utc() >= opens.utc() && at.utc() + Duration::hours(3) <= first.departs.utc())
            .unwrap_or_else(|| s.wb.at(opens.utc().max(first.departs.utc() - Duration::hours(6))));
        s.push(
            format!("{pre}.mdac.reminder"),
            MessageKind::MdacReminder,
            Recipient::Patient,
            first_morning,
            Some(&format!("{pre}.mdac")),
            Some(first.departs),
            format!(
                "the first morning of the MDAC window (opens {} in Malaysia), before the flight",
                opens.local().format("%Y-%m-%d %H:%M")
            ),
            IfLate::SendNow,
        );
        tasks.push(PatientTask {
            key: format!("{pre}.medication"),
            kind: TaskKind::Medication,
            trip: Some(t as u32),
            title: Text::new(
                "常用薬の準備(1か月分以内・元の包装・処方箋の写し・機内持ち込み)",
                "Pack medication: up to one month's supply, original labelled packs, a copy of the prescription, in hand luggage",
            ),
            opens: s.wb.at(first.departs.utc() - Duration::days(7)),
            closes: first.departs,
        });
        let at = s.patient_local(first.departs, i64::from(r.medication_reminder_days_before), r.evening_reminder_time);
        s.push(
            format!("{pre}.medication.reminder"),
            MessageKind::MedicationReminder,
            Recipient::Patient,
            at,
            Some(&format!("{pre}.medication")),
            Some(first.departs),
            format!(
                "{} days before the flight, {} where the patient is",
                r.medication_reminder_days_before,
                r.evening_reminder_time.format("%H:%M")
            ),
            IfLate::SendNow,
        );
        let peak = r.is_peak(first.departs.date()).is_some();
        let airport_by = first.departs.add(-Duration::minutes(i64::from(if first.from.country == first.to.country {
            r.airport_before_domestic_departure_minutes
        } else if peak {
            r.airport_before_departure_peak_minutes
        } else {
            r.airport_before_departure_minutes
        })));
        let at = s.morning_or_evening_before(airport_by);
        s.push(
            format!("{pre}.departure_day"),
            MessageKind::DepartureDay,
            Recipient::Patient,
            at,
            Some(&first_key),
            Some(airport_by),
            format!(
                "be at {} by {} for {}: that morning, or the evening before when the flight is early",
                first.from.iata,
                hm(&airport_by),
                first.number
            ),
            IfLate::SendNow,
        );
        let stay_events: Vec<(String, Zoned, EventKind)> = plan
            .events
            .iter()
            .filter(|e| e.trip == Some(t as u32) && e.kind.at_clinic())
            .filter_map(|e| e.start().map(|st| (e.key.clone(), st, e.kind)))
            .collect();
        for (key, start, _) in stay_events {
            let lobby = start.add(-Duration::minutes(i64::from(r.hotel_to_clinic_minutes)));
            let at = s.patient_local(lobby, 1, r.evening_reminder_time);
            s.push(
                format!("{key}.evening_before"),
                MessageKind::EveningBefore,
                Recipient::Patient,
                at,
                Some(&key),
                Some(lobby),
                format!("{} the evening before, where the patient is: lobby at {}", r.evening_reminder_time.format("%H:%M"), hm(&lobby)),
                IfLate::SendNow,
            );
        }
        let ret = &trip.return_flight;
        let at = s.morning_or_evening_before(f.transfer.0);
        s.push(
            format!("{pre}.return_advice"),
            MessageKind::ReturnFlightAdvice,
            Recipient::Patient,
            at,
            Some(&format!("{pre}.return")),
            Some(f.transfer.0),
            format!(
                "before the hotel pick-up at {} for {}: airport time and advice against clots on a long flight",
                hm(&f.transfer.0),
                ret.number
            ),
            IfLate::SendNow,
        );
        // Visit Japan Web is for entering Japan: the patient flies home to Japan and clears
        // customs where the first flight home lands in Japan (a Los Angeles patient changing
        // planes at Narita does not).
        let entry = trip.legs_home().find(|f| f.to.country == "JP").filter(|_| trip.last_flight().to.country == "JP");
        if r.visit_japan_web_reminder
            && let Some(entry) = entry
        {
            let at = s.patient_local(ret.departs, 1, r.evening_reminder_time);
            tasks.push(PatientTask {
                key: format!("{pre}.visit_japan_web"),
                kind: TaskKind::VisitJapanWeb,
                trip: Some(t as u32),
                title: Text::new("Visit Japan Web の登録(税関申告QRコード)", "Register on Visit Japan Web (customs QR code)"),
                opens: at,
                closes: entry.arrives,
            });
            s.push(
                format!("{pre}.visit_japan_web.reminder"),
                MessageKind::VisitJapanWeb,
                Recipient::Patient,
                at,
                Some(&format!("{pre}.visit_japan_web")),
                Some(f.transfer.0),
                format!("the evening before the flight home to {}, where the patient is", entry.to.iata),
                IfLate::Skip,
            );
        }
    }

    // Counted from the last infusion (the trials' practice), and the message names that day: the
    // patient may have flown home only a few days before.
    let last_infusion = plan.events.iter().filter(|e| e.kind == EventKind::Infusion).filter_map(|e| Some((e.end()?, e.key.clone()))).max();
    if let Some((last, infusion)) = last_infusion {
        let anchor = last.add(Duration::days(i64::from(r.adverse_event_checkin_days)));
        let at = s.patient_local(anchor, 0, r.morning_message_time);
        s.push(
            "checkin_7d".into(),
            MessageKind::AdverseEventCheckin,
            Recipient::Patient,
            at,
            Some(&infusion),
            None,
            format!(
                "{} days after the last infusion ({}), {} where the patient is",
                r.adverse_event_checkin_days,
                when_en(&last.in_zone(zone)),
                r.morning_message_time.format("%H:%M")
            ),
            IfLate::SendNow,
        );
    }
    let online: Vec<(String, Zoned, EventKind)> =
        plan.events.iter().filter(|e| e.online).filter_map(|e| e.start().map(|st| (e.key.clone(), st, e.kind))).collect();
    for (key, start, kind) in online {
        let at = s.patient_local(start, 1, r.evening_reminder_time);
        let kind = if kind == EventKind::Reevaluation { MessageKind::ReevaluationReminder } else { MessageKind::FollowUpReminder };
        s.push(
            format!("{key}.reminder"),
            kind,
            Recipient::Patient,
            at,
            Some(&key),
            Some(start),
            format!("{} the evening before the online appointment, where the patient is", r.evening_reminder_time.format("%H:%M")),
            IfLate::SendNow,
        );
    }

    // The outcomes questionnaire before the first infusion of the set (the baseline) and each
    // online appointment: in the patient's morning, a week before and, if nothing was answered
    // by then (the worker checks), three days before. The key names the occasion
    // (`outcomes.baseline.invite`, `outcomes.followup_3m.nudge`). The baseline's days count
    // back from the journey's first flight, so that the patient is asked at home, not at a
    // stopover; its link stays open until the infusion.
    let first_infusion =
        plan.events.iter().filter(|e| e.kind == EventKind::Infusion).filter_map(|e| Some((e.start()?, e.key.clone()))).min();
    let journey_start = req.trips.first().and_then(|t| t.keyed_flights("trip1").into_iter().next()).map(|(_, f)| f.departs);
    let occasions = first_infusion
        .map(|(start, key)| ("baseline".to_owned(), key, journey_start.filter(|d| d.utc() < start.utc()).unwrap_or(start), start))
        .into_iter()
        .chain(plan.events.iter().filter(|e| e.online).filter_map(|e| e.start().map(|st| (e.key.clone(), e.key.clone(), st, st))));
    for (occasion, about, anchor, start) in occasions.collect::<Vec<_>>() {
        for (days, kind, step, if_late) in [
            (r.outcome_invite_days, MessageKind::OutcomeInvite, "invite", IfLate::SendNow),
            (r.outcome_nudge_days, MessageKind::OutcomeNudge, "nudge", IfLate::Skip),
        ] {
            if days == 0 {
                continue;
            }
            let at = s.patient_local(anchor, i64::from(days), r.morning_message_time);
            s.push(
                format!("outcomes.{occasion}.{step}"),
                kind,
                Recipient::Patient,
                at,
                Some(&about),
                Some(start),
                format!(
                    "{days} days before {}, {} where the patient is{}",
                    if occasion == "baseline" { "the journey to the first infusion" } else { "the online appointment" },
                    r.morning_message_time.format("%H:%M"),
                    if step == "nudge" { ", only if the questionnaire is not answered" } else { "" }
                ),
                if_late,
            );
        }
    }

    // Each escort: the evening before a working day, that day's duties.
    let mut days: Vec<(String, NaiveDate, Zoned, String)> = Vec::new();
    for a in &plan.escorts {
        let d = a.start.in_zone(zone).date();
        if !days.iter().any(|(e, dd, _, _)| *e == a.escort && *dd == d) {
            days.push((a.escort.clone(), d, a.start, a.event.clone()));
        }
    }
    for (escort, d, first, event) in days {
        let at = at_local(d - Duration::days(1), r.evening_reminder_time, zone);
        s.push(
            format!("escort.{escort}.{d}"),
            MessageKind::EscortDayPlan,
            Recipient::Escort { id: escort },
            at,
            Some(&event),
            Some(first),
            format!("{} the evening before the escort's duties on {d}", r.evening_reminder_time.format("%H:%M")),
            IfLate::SendNow,
        );
    }

    s.messages.sort_by(|a, b| a.at.utc().cmp(&b.at.utc()).then_with(|| a.key.cmp(&b.key)));
    tasks.sort_by(|a, b| a.opens.utc().cmp(&b.opens.utc()).then_with(|| a.key.cmp(&b.key)));
    plan.messages = s.messages;
    plan.tasks = tasks;
    plan.warnings.extend(s.warnings);
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn waking_never_moves_a_message_later() {
        let la = chrono_tz::America::Los_Angeles;
        let hm = |h, m| NaiveTime::from_hms_opt(h, m, 0).unwrap_or_default();
        for (start, end) in [(hm(0, 0), hm(7, 0)), (hm(21, 0), hm(8, 0)), (hm(0, 30), hm(6, 0)), (hm(23, 0), hm(5, 0))] {
            let r = crate::clinic::Rules { quiet_hours_start: start, quiet_hours_end: end, ..Default::default() };
            for minute in (0..24 * 60).step_by(10) {
                let t = la.with_ymd_and_hms(2027, 1, 15, 0, 0, 0).unwrap().with_timezone(&Utc) + Duration::minutes(minute);
                let at = Zoned::new(t, la);
                let woke = wake(&r, at);
                assert!(woke.utc() <= at.utc(), "{start}-{end}: {} moved later to {}", at.local(), woke.local());
                assert!(!r.is_quiet(woke.local().time()), "{start}-{end}: {} still quiet at {}", at.local(), woke.local());
            }
        }
    }
}

//! The clinic's side of planning: its zone, working week and hours, the treatment protocols it
//! offers, its resources (escorts, infusion chairs, the lab), and the planning rules, each a
//! setting whose default is the one in the design's domain table.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate, NaiveTime, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::reference::{AirportTable, HolidayCalendar};
use crate::time::hhmm;

/// Everything the planner knows besides the request: loaded once, shared by every plan.
#[derive(Clone, Debug)]
pub struct ClinicSetup {
    pub clinic: Clinic,
    pub rules: Rules,
    pub protocols: Vec<Protocol>,
    pub resources: Resources,
    pub airports: AirportTable,
    pub holidays: HolidayCalendar,
    pub calendar: CalendarSettings,
}

impl ClinicSetup {
    pub fn protocol(&self, id: &str) -> Option<&Protocol> {
        self.protocols.iter().find(|p| p.id == id)
    }

    /// Whether the clinic sees patients on `date`: a working weekday that is not a holiday of any
    /// of its regions (tentative holidays included: they are planned around, and warned about).
    pub fn is_clinic_day(&self, date: NaiveDate) -> bool {
        self.clinic.working_days.contains(&date.weekday()) && self.holidays.any(&self.clinic.holiday_regions, date).is_none()
    }

    /// The holiday regions of a patient who lives in `zone`, from the clinic's zone → region map.
    pub fn home_regions(&self, zone: Tz) -> Vec<String> {
        self.clinic.home_regions.iter().filter(|r| r.zone == zone).map(|r| r.region.clone()).collect()
    }
}

/// How the clinic appears in calendars: who organizes its invites, where online follow-ups are held.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarSettings {
    /// ORGANIZER of every invite. It must receive mail: RSVPs come back to it.
    pub organizer_email: String,
    /// The organizer's display name; the clinic's name when unset.
    #[serde(default)]
    pub organizer_name: Option<String>,
    /// Right-hand side of every UID (`itinerary.event…@domain`). Set once: changing it changes
    /// every UID, and clients then see new events beside the old ones.
    pub uid_domain: String,
    /// Where online follow-ups are held (CONFERENCE and URL of their invites).
    #[serde(default)]
    pub follow_up_url: Option<String>,
    /// How often a subscribed calendar should re-fetch the feed (REFRESH-INTERVAL), in hours.
    #[serde(default = "default_refresh_hours")]
    pub refresh_hours: u32,
}

fn default_refresh_hours() -> u32 {
    12
}

impl CalendarSettings {
    /// What is wrong with these settings, by field.
    pub fn check(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Err(e) = crate::request::check_email(&self.organizer_email) {
            out.push(("organizer_email", format!("`{}` {e}", self.organizer_email)));
        }
        let d = &self.uid_domain;
        if d.is_empty() || !d.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
            out.push(("uid_domain", format!("`{d}` is not a host name")));
        }
        if let Some(u) = &self.follow_up_url
            && (!(u.starts_with("https://") || u.starts_with("http://"))
                || u.chars().any(|c| c.is_whitespace() || c.is_control() || c == '"'))
        {
            out.push(("follow_up_url", format!("`{u}` is not an http(s) URL without spaces")));
        }
        if self.refresh_hours == 0 {
            out.push(("refresh_hours", "must be at least 1".to_owned()));
        }
        out
    }
}

/// Where and when the clinic works.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clinic {
    pub name: String,
    /// ISO 3166-1 alpha-2: trips must land in and leave from this country.
    #[serde(default = "default_country")]
    pub country: String,
    pub zone: Tz,
    #[serde(default = "default_working_days")]
    pub working_days: Vec<Weekday>,
    #[serde(with = "hhmm", default = "default_opens")]
    pub opens: NaiveTime,
    #[serde(with = "hhmm", default = "default_closes")]
    pub closes: NaiveTime,
    /// Regions of the holiday table whose days the clinic is closed.
    #[serde(default = "default_holiday_regions")]
    pub holiday_regions: Vec<String>,
    /// Which holiday region applies to a patient living in a zone (for online follow-ups).
    #[serde(default = "default_home_regions")]
    pub home_regions: Vec<HomeRegion>,
    #[serde(with = "hhmm", default = "default_hotel_check_in")]
    pub hotel_check_in: NaiveTime,
    /// The hotel's check-out time: a car to the airport that leaves later needs the room kept.
    #[serde(with = "hhmm", default = "default_hotel_check_out")]
    pub hotel_check_out: NaiveTime,
    /// What the clinic books then: the room kept (`late-check-out`) or a `day-use-room`.
    #[serde(default)]
    pub late_departure: LateDeparture,
}

/// Where a patient whose car leaves after check-out rests on the last day.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LateDeparture {
    /// The room is kept until the car leaves.
    #[default]
    LateCheckOut,
    /// A room booked for the day (hotels near the airport, or when late check-out is refused).
    DayUseRoom,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HomeRegion {
    pub zone: Tz,
    pub region: String,
}

fn default_country() -> String {
    "MY".to_owned()
}
fn default_working_days() -> Vec<Weekday> {
    vec![Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri]
}
fn default_opens() -> NaiveTime {
    NaiveTime::from_hms_opt(9, 0, 0).unwrap_or_default()
}
fn default_closes() -> NaiveTime {
    NaiveTime::from_hms_opt(17, 0, 0).unwrap_or_default()
}
fn default_hotel_check_in() -> NaiveTime {
    NaiveTime::from_hms_opt(15, 0, 0).unwrap_or_default()
}
fn default_hotel_check_out() -> NaiveTime {
    NaiveTime::from_hms_opt(12, 0, 0).unwrap_or_default()
}
fn default_holiday_regions() -> Vec<String> {
    vec!["MY-KUL".to_owned()]
}
fn default_home_regions() -> Vec<HomeRegion> {
    vec![HomeRegion { zone: Tz::Asia__Tokyo, region: "JP".to_owned() }]
}

/// A treatment protocol: how many infusions, how far apart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Protocol {
    pub id: String,
    pub name_ja: String,
    pub name_en: String,
    pub infusions: u8,
    /// Days between infusions when the request does not choose.
    #[serde(default)]
    pub interval_days: u16,
    /// Intervals a request may choose.
    #[serde(default)]
    pub allowed_interval_days: Vec<u16>,
    /// How many days an infusion may fall either side of its interval (a holiday, a full chair).
    #[serde(default)]
    pub interval_tolerance_days: u16,
}

/// Escorts, chairs and the lab.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Infusion chairs: how many infusions may overlap.
    pub chairs: u16,
    /// Blood draws the lab takes per time slot.
    pub lab_draws_per_slot: u16,
    #[serde(default, rename = "escort")]
    pub escorts: Vec<Escort>,
}

/// A member of staff who meets patients at the airport and takes them to the clinic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Escort {
    pub id: String,
    pub name: String,
    pub email: String,
    /// ISO 639-1 codes.
    pub languages: Vec<String>,
    #[serde(with = "hhmm")]
    pub works_from: NaiveTime,
    #[serde(with = "hhmm")]
    pub works_until: NaiveTime,
    /// Weekly days off.
    #[serde(default)]
    pub weekly_days_off: Vec<Weekday>,
    /// Leave and other single days off.
    #[serde(default)]
    pub dates_off: Vec<NaiveDate>,
}

impl Escort {
    pub fn works_on(&self, date: NaiveDate) -> bool {
        !self.weekly_days_off.contains(&date.weekday()) && !self.dates_off.contains(&date)
    }

    pub fn speaks(&self, language: &str) -> bool {
        self.languages.iter().any(|l| l == language)
    }
}

/// A date range, both ends included (peak travel seasons).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Season {
    pub name: String,
    /// `MM-DD`, every year.
    pub from: String,
    pub to: String,
}

impl Season {
    /// Whether `date` falls in the season; a season may wrap the new year (12-26 to 01-04).
    pub fn contains(&self, date: NaiveDate) -> bool {
        let key = (date.month(), date.day());
        match (parse_month_day(&self.from), parse_month_day(&self.to)) {
            (Some(f), Some(t)) if f <= t => f <= key && key <= t,
            (Some(f), Some(t)) => key >= f || key <= t,
            _ => false,
        }
    }
}

pub fn parse_month_day(s: &str) -> Option<(u32, u32)> {
    let (m, d) = s.split_once('-')?;
    let (m, d) = (m.parse().ok()?, d.parse().ok()?);
    NaiveDate::from_ymd_opt(2024, m, d).map(|_| (m, d))
}

/// The planning rules. Each field is a setting; its default is the domain table's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rules {
    /// An arrival between midnight and this time is a red-eye: no clinic appointment that day.
    #[serde(with = "hhmm")]
    pub red_eye_until: NaiveTime,
    /// Book the hotel from the night before a red-eye arrival, so the room is ready at dawn.
    pub red_eye_books_previous_night: bool,
    /// Immigration, baggage and the drive: the earliest clinic appointment after landing.
    pub landing_to_clinic_minutes: u32,
    /// When the escort meets the patient in the arrival hall, after landing.
    pub pickup_after_landing_minutes: u32,
    pub airport_to_hotel_minutes: u32,
    pub hotel_to_clinic_minutes: u32,
    pub blood_test_minutes: u32,
    /// Clinic days between blood test and infusion (results of wider panels take 1–3 days).
    pub blood_test_clinic_days_before: u32,
    /// An in-house lab may test on the infusion day itself, this many hours before.
    pub lab_in_house: bool,
    pub same_day_blood_test_hours_before: u32,
    /// Blood test before every infusion of a set, not only the first.
    pub blood_test_before_each_infusion: bool,
    /// Vitals + 1–2 h infusion + ≥ 30 min observation + vitals.
    pub infusion_block_minutes: u32,
    /// Clinic policy: the infusion ends this long before the flight home.
    pub infusion_to_departure_hours: u32,
    pub airport_before_departure_minutes: u32,
    pub airport_before_departure_peak_minutes: u32,
    /// When the journey begins with a domestic flight (Sapporo → Tokyo Haneda, then on to
    /// Malaysia), how long before it the patient is at the airport.
    pub airport_before_domestic_departure_minutes: u32,
    pub peak_seasons: Vec<Season>,
    pub hotel_to_airport_minutes: u32,
    pub single_trip_min_days: u32,
    pub single_trip_max_days: u32,
    pub visa_free_days: u32,
    pub passport_valid_months_after_arrival: u32,
    pub passport_recheck_days_before_travel: u32,
    /// MDAC may be submitted within this many days up to arrival, the arrival day included.
    pub mdac_window_days: u32,
    pub medication_reminder_days_before: u32,
    pub visit_japan_web_reminder: bool,
    pub adverse_event_checkin_days: u32,
    pub followup_months: Vec<u32>,
    #[serde(with = "hhmm")]
    pub followup_local_time: NaiveTime,
    pub followup_minutes: u32,
    /// Online follow-ups need a doctor at the clinic: keep them inside clinic hours too.
    pub followup_within_clinic_hours: bool,
    pub reevaluation_months: u32,
    /// The outcomes questionnaire (issue 17) goes this many days before the first infusion of a
    /// set and before each online follow-up, in the patient's morning; 0: not sent.
    pub outcome_invite_days: u32,
    /// ...and again this many days before, if nothing was answered by then; 0: no second.
    pub outcome_nudge_days: u32,
    pub minimum_age_years: u32,
    pub tentative_holiday_recheck_days: u32,
    #[serde(with = "hhmm")]
    pub evening_reminder_time: NaiveTime,
    #[serde(with = "hhmm")]
    pub morning_message_time: NaiveTime,
    /// No message in the recipient's night, in the recipient's zone.
    #[serde(with = "hhmm")]
    pub quiet_hours_start: NaiveTime,
    #[serde(with = "hhmm")]
    pub quiet_hours_end: NaiveTime,
    /// A clinic appointment this close after the earliest possible time is a tight connection.
    pub tight_connection_minutes: u32,
    /// Rest between two tasks of one escort.
    pub escort_buffer_minutes: u32,
    pub escort_must_speak_patient_language: bool,
    /// Patients one escort meets off the same flight, or takes to the same flight, together.
    pub escort_group_size: u16,
    /// Appointments start on this grid; chairs and the lab are counted per slot.
    pub slot_minutes: u32,
    /// The least time between landing and the next flight at an airport without its own entry
    /// in `min_connection_by_airport`.
    pub min_connection_minutes: u32,
    /// The least time between landing and the next flight, by airport (IATA code), for the hubs
    /// patients change planes at. Planning values, kept on the safe side of the airports'
    /// published minimum connection times (which vary by terminal and airline): see the README.
    pub min_connection_by_airport: BTreeMap<String, u32>,
    /// A longer wait between two flights is a stay, not a connection (or a mistyped date).
    pub max_connection_hours: u32,
    /// A connection through the small hours (02:00 where the patient waits) this long or longer
    /// needs a transit hotel; a shorter one is warned about as a night in the terminal.
    pub connection_hotel_hours: u32,
}

fn hm(h: u32, m: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).unwrap_or_default()
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            red_eye_until: hm(8, 0),
            red_eye_books_previous_night: true,
            landing_to_clinic_minutes: 180,
            pickup_after_landing_minutes: 60,
            airport_to_hotel_minutes: 60,
            hotel_to_clinic_minutes: 30,
            blood_test_minutes: 30,
            blood_test_clinic_days_before: 1,
            lab_in_house: false,
            same_day_blood_test_hours_before: 4,
            blood_test_before_each_infusion: true,
            infusion_block_minutes: 180,
            infusion_to_departure_hours: 24,
            airport_before_departure_minutes: 180,
            airport_before_departure_peak_minutes: 240,
            airport_before_domestic_departure_minutes: 60,
            peak_seasons: vec![
                Season { name: "New Year".into(), from: "12-26".into(), to: "01-04".into() },
                Season { name: "Golden Week".into(), from: "04-27".into(), to: "05-06".into() },
                Season { name: "Obon".into(), from: "08-08".into(), to: "08-18".into() },
            ],
            hotel_to_airport_minutes: 60,
            single_trip_min_days: 3,
            single_trip_max_days: 5,
            visa_free_days: 90,
            passport_valid_months_after_arrival: 6,
            passport_recheck_days_before_travel: 60,
            mdac_window_days: 3,
            medication_reminder_days_before: 3,
            visit_japan_web_reminder: true,
            adverse_event_checkin_days: 7,
            followup_months: vec![1, 3, 6],
            followup_local_time: hm(10, 0),
            followup_minutes: 30,
            followup_within_clinic_hours: true,
            reevaluation_months: 12,
            outcome_invite_days: 7,
            outcome_nudge_days: 3,
            minimum_age_years: 18,
            tentative_holiday_recheck_days: 30,
            evening_reminder_time: hm(19, 0),
            morning_message_time: hm(10, 0),
            quiet_hours_start: hm(21, 0),
            quiet_hours_end: hm(8, 0),
            tight_connection_minutes: 60,
            escort_buffer_minutes: 30,
            escort_must_speak_patient_language: true,
            escort_group_size: 3,
            slot_minutes: 30,
            min_connection_minutes: 90,
            min_connection_by_airport: [
                ("NRT", 90),
                ("HND", 90),
                ("KIX", 75),
                ("TPE", 60),
                ("SIN", 60),
                ("HKG", 60),
                ("ICN", 70),
                ("BKK", 75),
                ("LAX", 120),
                ("SFO", 120),
            ]
            .into_iter()
            .map(|(a, m)| (a.to_owned(), m))
            .collect(),
            max_connection_hours: 24,
            connection_hotel_hours: 6,
        }
    }
}

impl Rules {
    pub fn is_peak(&self, date: NaiveDate) -> Option<&Season> {
        self.peak_seasons.iter().find(|s| s.contains(date))
    }

    /// The least time between landing at `iata` and the next flight from there.
    pub fn min_connection(&self, iata: &str) -> u32 {
        self.min_connection_by_airport.get(iata).copied().unwrap_or(self.min_connection_minutes)
    }

    /// Whether a wall-clock time is in the quiet hours (which may wrap midnight).
    pub fn is_quiet(&self, t: NaiveTime) -> bool {
        if self.quiet_hours_start <= self.quiet_hours_end {
            self.quiet_hours_start <= t && t < self.quiet_hours_end
        } else {
            t >= self.quiet_hours_start || t < self.quiet_hours_end
        }
    }

    /// Settings that cannot work together, as (setting, problem).
    pub fn check(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.slot_minutes == 0 || 1440 % self.slot_minutes != 0 {
            out.push(("slot_minutes", format!("{} does not divide a day", self.slot_minutes)));
        }
        if self.single_trip_min_days > self.single_trip_max_days {
            out.push((
                "single_trip_min_days",
                format!("{} is above single_trip_max_days {}", self.single_trip_min_days, self.single_trip_max_days),
            ));
        }
        if self.infusion_block_minutes == 0 || self.blood_test_minutes == 0 {
            out.push(("infusion_block_minutes", "appointments need a length".to_owned()));
        }
        for code in self.min_connection_by_airport.keys() {
            if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
                out.push(("min_connection_by_airport", format!("`{code}` is not an IATA airport code in capitals")));
            }
        }
        if self.max_connection_hours * 60 < self.min_connection_minutes {
            out.push(("max_connection_hours", format!("{} hours is less than min_connection_minutes", self.max_connection_hours)));
        }
        for s in &self.peak_seasons {
            if parse_month_day(&s.from).is_none() || parse_month_day(&s.to).is_none() {
                out.push(("peak_seasons", format!("{}: `{}`..`{}` is not MM-DD..MM-DD", s.name, s.from, s.to)));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_season_may_wrap_the_new_year() {
        let s = Season { name: "New Year".into(), from: "12-26".into(), to: "01-04".into() };
        let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd).unwrap();
        assert!(s.contains(d(2026, 12, 31)));
        assert!(s.contains(d(2027, 1, 4)));
        assert!(!s.contains(d(2027, 1, 5)));
        assert!(!s.contains(d(2026, 12, 25)));
    }

    #[test]
    fn quiet_hours_wrap_midnight() {
        let r = Rules::default();
        assert!(r.is_quiet(hm(21, 0)));
        assert!(r.is_quiet(hm(3, 0)));
        assert!(!r.is_quiet(hm(8, 0)));
        assert!(!r.is_quiet(hm(20, 59)));
    }

    #[test]
    fn default_rules_are_consistent() {
        assert!(Rules::default().check().is_empty());
    }
}

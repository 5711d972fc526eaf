//! What the planner produces: a `Plan` (events, escort assignments, patient tasks, messages due,
//! warnings) or an `Infeasible` naming every rule it could not keep. Both serialize to the stable
//! JSON schema documented in `docs/plan-schema.md`; `SCHEMA_VERSION` changes with any change to it.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::request::{Language, TripMode};
use crate::time::Zoned;

pub const SCHEMA_VERSION: u32 = 1;

/// Text in the patient's language and the staff's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Text {
    pub ja: String,
    pub en: String,
}

impl Text {
    pub fn new(ja: impl Into<String>, en: impl Into<String>) -> Self {
        Self { ja: ja.into(), en: en.into() }
    }

    pub fn get(&self, lang: Language) -> &str {
        match lang {
            Language::Ja => &self.ja,
            Language::En => &self.en,
        }
    }
}

/// Which appointments a patient receives calendar invites for, by email. The booking
/// confirmation (with the whole itinerary as a file) and the feed carry every appointment
/// whatever the choice; reminders are not affected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Invites {
    /// An invite for every appointment: flights, pick-up, hotel, clinic, follow-ups.
    Every,
    /// Invites for the clinic's appointments only (blood tests, infusions, online follow-ups
    /// and the re-evaluation): the quiet default.
    #[default]
    Clinic,
    /// No invites: the calendar comes from the confirmation's file or the subscribed feed.
    Feed,
}

impl Invites {
    pub const ALL: [Invites; 3] = [Invites::Every, Invites::Clinic, Invites::Feed];

    pub fn as_str(self) -> &'static str {
        match self {
            Invites::Every => "every",
            Invites::Clinic => "clinic",
            Invites::Feed => "feed",
        }
    }

    pub fn parse(s: &str) -> Option<Invites> {
        Invites::ALL.into_iter().find(|i| i.as_str() == s)
    }

    /// Whether the patient receives an invite for `e`.
    pub fn wants(self, e: &Event) -> bool {
        match self {
            Invites::Every => true,
            Invites::Clinic => e.kind.at_clinic() || e.online,
            Invites::Feed => false,
        }
    }

    /// The same by the event's stable key alone (`trip1.infusion1`, `followup_3m`), for an
    /// appointment no longer in the plan (its cancellation goes where its invite went).
    pub fn wants_key(self, key: &str) -> bool {
        let last = key.rsplit('.').next().unwrap_or(key);
        match self {
            Invites::Every => true,
            Invites::Clinic => {
                last.starts_with("blood_test") || last.starts_with("infusion") || key.starts_with("followup_") || key == "reevaluation"
            }
            Invites::Feed => false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Flight,
    AirportPickup,
    Hotel,
    BloodTest,
    Infusion,
    AirportTransfer,
    OnlineFollowUp,
    Reevaluation,
}

impl EventKind {
    /// Held at the clinic, inside its hours, on its working days.
    pub fn at_clinic(self) -> bool {
        matches!(self, EventKind::BloodTest | EventKind::Infusion)
    }
}

/// When an event happens: two instants, each in its own zone (a flight departs in one zone and
/// lands in another), or whole dates for hotel nights.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum When {
    Timed {
        start: Zoned,
        end: Zoned,
    },
    /// `start` is the first night; `end` is the check-out date, exclusive, as iCalendar's DTEND.
    Dates {
        start: NaiveDate,
        end: NaiveDate,
    },
}

/// One appointment of the itinerary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Stable within an itinerary (`trip1.infusion1`): calendar UIDs derive from it.
    pub key: String,
    pub kind: EventKind,
    /// 1-based trip this event belongs to; follow-ups belong to none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trip: Option<u32>,
    pub title: Text,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The location in Japanese, where it differs (`成田国際空港(NRT)`); plans stored before it
    /// existed have none and read `location` in both languages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location_ja: Option<String>,
    pub when: When,
    /// Escort accompanying the patient, by id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub escort: Option<String>,
    /// Held online (a video call), not at the clinic.
    pub online: bool,
}

impl Event {
    pub fn start(&self) -> Option<Zoned> {
        match self.when {
            When::Timed { start, .. } => Some(start),
            When::Dates { .. } => None,
        }
    }

    pub fn end(&self) -> Option<Zoned> {
        match self.when {
            When::Timed { end, .. } => Some(end),
            When::Dates { .. } => None,
        }
    }

    /// Whether it has not begun at `now` (hotel nights: from the first night's midnight where
    /// the clinic is): what a cancellation still takes away.
    pub fn not_begun(&self, clinic: Tz, now: chrono::DateTime<chrono::Utc>) -> bool {
        match &self.when {
            When::Timed { start, .. } => start.utc() > now,
            When::Dates { start, .. } => crate::time::at_local(*start, chrono::NaiveTime::MIN, clinic).utc() > now,
        }
    }

    /// Where it is held, in `lang`.
    pub fn location_in(&self, lang: Language) -> Option<&str> {
        match lang {
            Language::Ja => self.location_ja.as_deref().or(self.location.as_deref()),
            Language::En => self.location.as_deref(),
        }
    }
}

/// A stretch of an escort's day booked for one patient's appointment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscortAssignment {
    pub escort: String,
    pub escort_name: String,
    /// The event the escort accompanies.
    pub event: String,
    /// From leaving to being free again: travel included.
    pub start: Zoned,
    pub end: Zoned,
    pub duty: Text,
    /// Set when patients on the same flight share this duty (one escort, one car).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Malaysia Digital Arrival Card.
    Mdac,
    Medication,
    PassportCheck,
    VisitJapanWeb,
}

/// Something the patient must do inside a window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientTask {
    pub key: String,
    pub kind: TaskKind,
    pub trip: Option<u32>,
    pub title: Text,
    pub opens: Zoned,
    pub closes: Zoned,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Recipient {
    Patient,
    Escort { id: String },
    Coordinator,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    BookingConfirmation,
    PassportRecheck,
    TentativeHolidayRecheck,
    MdacReminder,
    MedicationReminder,
    DepartureDay,
    EveningBefore,
    ReturnFlightAdvice,
    VisitJapanWeb,
    AdverseEventCheckin,
    FollowUpReminder,
    ReevaluationReminder,
    /// The outcomes questionnaire, with the patient's link (issue 17).
    OutcomeInvite,
    /// The questionnaire again, sent only if nothing was answered.
    OutcomeNudge,
    EscortDayPlan,
}

/// What to do with a message whose time has already passed when the plan is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IfLate {
    /// Send at planning time if what it is about is still ahead.
    SendNow,
    /// Do not send it.
    Skip,
}

/// A message the worker is to send.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageDue {
    /// Stable within an itinerary (`trip1.mdac_reminder`).
    pub key: String,
    pub kind: MessageKind,
    pub recipient: Recipient,
    pub language: Language,
    /// When to send it, in the zone where the recipient will be at that moment.
    pub at: Zoned,
    /// The event or task it is about, by key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub about: Option<String>,
    /// The instant it must precede (the event's start, the window's close).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Zoned>,
    /// Why this instant, for the coordinator.
    pub why: String,
    pub if_late: IfLate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningKind {
    TentativeHoliday,
    TightConnection,
    /// Online follow-ups are not at the preferred local hour (the clinic's hours do not allow it).
    FollowUpHour,
    /// A follow-up is not on the day its interval gives (a weekend or holiday where the patient
    /// lives, or the clinic closed): the warning names both days and why.
    FollowUpMoved,
    EarlyCheckIn,
    /// The car to the airport leaves after the hotel's check-out: a late check-out or a day-use
    /// room to book.
    LateCheckOut,
    /// A change of plane through the night: a night in the terminal, or a transit hotel to book.
    OvernightConnection,
    PeakSeason,
    EscortChange,
    HolidayTableEnds,
    LateMessage,
}

/// Something the coordinator should know; the plan stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    pub kind: WarningKind,
    pub text: Text,
}

/// One trip's frame: when the patient lands, when they leave, the hotel nights.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TripSummary {
    pub trip: u32,
    pub arrives: Zoned,
    pub departs: Zoned,
    /// Calendar days in Malaysia, the arrival and departure days included.
    pub days: u32,
}

/// A planned itinerary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub schema_version: u32,
    pub protocol: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trip_mode: Option<TripMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_days: Option<u16>,
    pub clinic_zone: Tz,
    pub patient_zone: Tz,
    pub language: Language,
    pub planned_at: Zoned,
    pub trips: Vec<TripSummary>,
    /// In start order; hotel nights sort at their first night's midnight in the clinic's zone.
    pub events: Vec<Event>,
    pub escorts: Vec<EscortAssignment>,
    pub tasks: Vec<PatientTask>,
    /// In sending order.
    pub messages: Vec<MessageDue>,
    pub warnings: Vec<Warning>,
}

impl Plan {
    pub fn event(&self, key: &str) -> Option<&Event> {
        self.events.iter().find(|e| e.key == key)
    }

    pub fn events_of(&self, kind: EventKind) -> impl Iterator<Item = &Event> {
        self.events.iter().filter(move |e| e.kind == kind)
    }
}

/// The rules a plan could not keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    Eligibility,
    PassportValidity,
    TripMode,
    TripCount,
    StayLength,
    VisaFree,
    ClinicDay,
    BloodTest,
    InfusionBeforeDeparture,
    InfusionInterval,
    ChairCapacity,
    LabCapacity,
    EscortAvailable,
}

/// One broken rule, with the values involved, in words a coordinator understands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub rule: Rule,
    /// The request field to change, where one is to blame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub values: BTreeMap<String, String>,
    pub text: Text,
}

/// Why no plan exists: every violated rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("no plan fits: {}", violations.iter().map(|v| v.text.en.as_str()).collect::<Vec<_>>().join(" "))]
pub struct Infeasible {
    pub violations: Vec<Violation>,
    /// What a plan of this request would also warn about (connections, early check-in, peak
    /// season, the last day, tentative holidays, the holiday table's end); answers stored
    /// before it existed have none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Warning>,
}

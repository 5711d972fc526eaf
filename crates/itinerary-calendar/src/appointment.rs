//! What each person is invited to: one `Appointment` per event of the plan for the patient (in
//! their language), and one per escort duty for the escort (in English).
//!
//! An appointment's UID is derived from the itinerary, the event and the attendee, so the same
//! appointment keeps its UID from version to version and a change is an update, never a second
//! event: `ITINERARY.EVENT.patient-H@DOMAIN` or `ITINERARY.EVENT.escort-ID-H@DOMAIN`, where H
//! is a digest of the attendee's address. A new address (another escort, a corrected email) is
//! a new UID: the old mailbox gets a cancellation instead of keeping an event nobody updates.

use std::fmt::Write;

use chrono_tz::Tz;
use itinerary_core::plan::{EscortAssignment, Event, EventKind, When};
use itinerary_core::request::Language;
use itinerary_core::time::{date_en, date_ja, zone_abbreviation};
use itinerary_core::{CalendarSettings, Escort, Plan, Zoned};
use serde::{Deserialize, Serialize};

use crate::CalendarError;

/// Who an appointment is for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Audience {
    Patient,
    Escort { id: String },
}

/// An invitee: ATTENDEE of the invites sent to them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attendee {
    #[serde(flatten)]
    pub audience: Audience,
    pub name: String,
    pub email: String,
    pub language: Language,
}

/// One appointment as one attendee sees it: the content of their VEVENT.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appointment {
    pub uid: String,
    /// The plan event it is about (`trip1.pickup`).
    pub event: String,
    pub attendee: Attendee,
    pub summary: String,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    pub when: When,
    /// Where an online appointment is held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Shown as free time (hotel nights), not busy.
    pub transparent: bool,
}

impl Appointment {
    /// The file an invite for this appointment is written to, one per UID, and never a path: the UID's left part with anything but letters, digits,
    /// `.`, `_` and `-` replaced (`trip-7.trip1.pickup.patient-1a2b3c4d.ics`).
    pub fn file_name(&self) -> String {
        let left = self.uid.rsplit_once('@').map_or(self.uid.as_str(), |(l, _)| l);
        let safe: String = left.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' }).collect();
        format!("{safe}.ics")
    }
}

/// The patient as an invitee.
#[derive(Clone, Copy, Debug)]
pub struct Person<'a> {
    pub name: &'a str,
    pub email: &'a str,
}

/// Everything an itinerary's calendars are made from.
#[derive(Clone, Copy, Debug)]
pub struct Itinerary<'a> {
    /// Stable for the itinerary's life (a booking reference); the left part of every UID.
    pub id: &'a str,
    pub plan: &'a Plan,
    pub patient: Person<'a>,
    /// The clinic's escorts, to address their invites.
    pub escorts: &'a [Escort],
    pub clinic_name: &'a str,
    pub settings: &'a CalendarSettings,
}

/// A UID's left part: letters, digits, `.`, `_`, `-`, at most 64, starting with a letter or digit.
pub fn check_itinerary_id(id: &str) -> Result<(), CalendarError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok { Ok(()) } else { Err(CalendarError::ItineraryId(id.to_owned())) }
}

impl Itinerary<'_> {
    fn uid(&self, event: &str, attendee: &Attendee) -> String {
        let domain = &self.settings.uid_domain;
        let h = address_digest(&attendee.email);
        match &attendee.audience {
            Audience::Patient => format!("{}.{event}.patient-{h:08x}@{domain}", self.id),
            Audience::Escort { id } => format!("{}.{event}.escort-{id}-{h:08x}@{domain}", self.id),
        }
    }

    /// Every appointment of the plan: the patient's, in plan order, then the escorts' duties.
    pub fn appointments(&self) -> Result<Vec<Appointment>, CalendarError> {
        check_itinerary_id(self.id)?;
        let lang = self.plan.language;
        let patient = Attendee {
            audience: Audience::Patient,
            name: self.patient.name.to_owned(),
            email: self.patient.email.to_owned(),
            language: lang,
        };
        let mut out = Vec::with_capacity(self.plan.events.len() + self.plan.escorts.len());
        for e in &self.plan.events {
            out.push(self.patient_appointment(e, &patient));
        }
        for duty in &self.plan.escorts {
            out.push(self.escort_appointment(duty)?);
        }
        Ok(out)
    }

    fn patient_appointment(&self, e: &Event, patient: &Attendee) -> Appointment {
        let lang = patient.language;
        let home = self.plan.patient_zone;
        let url = if e.online { self.settings.follow_up_url.clone() } else { None };
        let mut d = String::new();
        match e.when {
            When::Timed { start, end } => {
                let (from, to) = match lang {
                    Language::Ja => ("開始", "終了"),
                    Language::En => ("Starts", "Ends"),
                };
                let (from, to) = if e.kind == EventKind::Flight {
                    match lang {
                        Language::Ja => ("出発", "到着"),
                        Language::En => ("Departs", "Arrives"),
                    }
                } else {
                    (from, to)
                };
                let _ = writeln!(d, "{from}: {}", moment(lang, &start, home));
                let _ = writeln!(d, "{to}: {}", moment(lang, &end, home));
            }
            When::Dates { start, end } => {
                let (ci, co) = match lang {
                    Language::Ja => ("チェックイン", "チェックアウト"),
                    Language::En => ("Check-in", "Check-out"),
                };
                let _ = writeln!(d, "{ci}: {}", day(lang, start));
                let _ = writeln!(d, "{co}: {}", day(lang, end));
            }
        }
        if let Some(loc) = e.location_in(lang) {
            let _ = writeln!(d, "{}: {loc}", if lang == Language::Ja { "場所" } else { "Where" });
        }
        if let Some(name) = e.escort.as_deref().and_then(|id| self.escorts.iter().find(|x| x.id == id)).map(|x| x.name.as_str()) {
            let _ = writeln!(d, "{}: {name}", if lang == Language::Ja { "同行スタッフ" } else { "Your escort" });
        }
        if let Some(u) = &url {
            let _ = writeln!(d, "{}: {u}", if lang == Language::Ja { "オンライン診察の入室先" } else { "Join the call" });
        }
        d.push_str(self.clinic_name);
        Appointment {
            uid: self.uid(&e.key, patient),
            event: e.key.clone(),
            attendee: patient.clone(),
            summary: e.title.get(lang).to_owned(),
            description: d,
            location: e.location_in(lang).map(str::to_owned),
            when: e.when.clone(),
            url,
            transparent: e.kind == EventKind::Hotel,
        }
    }

    fn escort_appointment(&self, duty: &EscortAssignment) -> Result<Appointment, CalendarError> {
        let escort = self.escorts.iter().find(|x| x.id == duty.escort).ok_or_else(|| CalendarError::UnknownEscort(duty.escort.clone()))?;
        let event = self.plan.event(&duty.event).ok_or_else(|| CalendarError::UnknownEvent(duty.event.clone()))?;
        let clinic = self.plan.clinic_zone;
        let mut d = String::new();
        let _ = writeln!(d, "Patient: {}", self.patient.name);
        let _ = writeln!(d, "{}", duty.duty.en);
        if let When::Timed { start, end } = event.when {
            let _ = writeln!(d, "{}: {} to {}", event.title.en, moment(Language::En, &start, clinic), moment(Language::En, &end, clinic));
        }
        if let Some(loc) = &event.location {
            let _ = writeln!(d, "Where: {loc}");
        }
        // Whether anyone else is on that flight is not this plan's to know (another booking may
        // join it later, or never): say only what holds either way.
        if duty.shared.is_some() {
            let _ = writeln!(
                d,
                "Any other patient of the clinic on the same flight shares this duty and the car, and comes with an invite of their own."
            );
        }
        d.push_str(self.clinic_name);
        let attendee = Attendee {
            audience: Audience::Escort { id: escort.id.clone() },
            name: escort.name.clone(),
            email: escort.email.clone(),
            language: Language::En,
        };
        Ok(Appointment {
            uid: self.uid(&duty.event, &attendee),
            event: duty.event.clone(),
            attendee,
            summary: format!("{}: {}", event.title.en, self.patient.name),
            description: d,
            location: event.location.clone(),
            when: When::Timed { start: duty.start, end: duty.end },
            url: None,
            transparent: false,
        })
    }
}

/// 32 bits of FNV-1a over the lower-cased address: stable across runs, platforms and Rust
/// releases (unlike std's hasher), and not the address itself.
fn address_digest(email: &str) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in email.trim().to_lowercase().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h ^ (h >> 32)) as u32
}

/// `12月3日(木) 09:00 MYT / 10:00 JST`: the instant where it happens, then where `home` is.
fn moment(lang: Language, t: &Zoned, home: Tz) -> String {
    let one = |z: &Zoned, with_date: bool| {
        let date = if with_date { format!("{} ", day(lang, z.date())) } else { String::new() };
        format!("{date}{} {}", z.local().format("%H:%M"), zone_abbreviation(z))
    };
    let head = one(t, true);
    if t.zone() == home {
        return head;
    }
    let there = t.in_zone(home);
    format!("{head} / {}", one(&there, there.date() != t.date()))
}

fn day(lang: Language, d: chrono::NaiveDate) -> String {
    match lang {
        Language::Ja => date_ja(d, None),
        Language::En => date_en(d, None),
    }
}

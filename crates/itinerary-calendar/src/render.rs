//! The calendar objects themselves: the VCALENDAR frame, a VTIMEZONE for every TZID used, and
//! one VEVENT per appointment, written with `line::Lines`.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike, Utc};
use chrono_tz::Tz;
use itinerary_core::CalendarSettings;
use itinerary_core::plan::When;
use itinerary_core::request::Language;

use crate::appointment::{Appointment, Itinerary};
use crate::line::{Lines, Value};
use crate::{text, vtimezone};

/// The iTIP method of a calendar object (RFC 5546).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// The whole itinerary, to import or subscribe to.
    Publish,
    /// An invitation, or an update of one (same UID, higher SEQUENCE).
    Request,
    /// The appointment is off (same UID, SEQUENCE one higher, STATUS:CANCELLED).
    Cancel,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Publish => "PUBLISH",
            Method::Request => "REQUEST",
            Method::Cancel => "CANCEL",
        }
    }
}

/// Where an event's appointments are written from: the organizer and the DTSTAMP of this version.
#[derive(Clone, Copy, Debug)]
pub struct Edition<'a> {
    pub settings: &'a CalendarSettings,
    pub organizer_name: &'a str,
    /// DTSTAMP: when this version of the plan was made, never the clock at rendering time.
    pub stamp: DateTime<Utc>,
}

impl<'a> Edition<'a> {
    pub fn of(it: &Itinerary<'a>) -> Self {
        Edition {
            settings: it.settings,
            organizer_name: it.settings.organizer_name.as_deref().unwrap_or(it.clinic_name),
            stamp: it.plan.planned_at.utc(),
        }
    }
}

/// `YYYYMMDD`, `YYYYMMDDTHHMMSS` and the like, without chrono's general formatter: a 10,000-event
/// calendar writes 40,000 of them.
struct Digits {
    buf: [u8; 16],
    len: usize,
}

impl Digits {
    fn date(d: NaiveDate) -> Self {
        let mut x = Digits { buf: [0; 16], len: 0 };
        x.num(d.year().unsigned_abs(), 4);
        x.num(d.month(), 2);
        x.num(d.day(), 2);
        x
    }

    fn local(t: NaiveDateTime) -> Self {
        let mut x = Self::date(t.date());
        x.buf[x.len] = b'T';
        x.len += 1;
        x.num(t.hour(), 2);
        x.num(t.minute(), 2);
        x.num(t.second(), 2);
        x
    }

    fn utc(t: DateTime<Utc>) -> Self {
        let mut x = Self::local(t.naive_utc());
        x.buf[x.len] = b'Z';
        x.len += 1;
        x
    }

    fn num(&mut self, mut n: u32, width: usize) {
        for i in (0..width).rev() {
            self.buf[self.len + i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
        self.len += width;
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

fn timed(w: &mut Lines, key: &str, z: &itinerary_core::Zoned) {
    w.prop(key, &[("TZID", z.zone().name())], Value::Raw(Digits::local(z.local().naive_local()).as_str()));
}

fn dated(w: &mut Lines, key: &str, d: NaiveDate) {
    w.prop(key, &[("VALUE", "DATE")], Value::Raw(Digits::date(d).as_str()));
}

/// The zones the appointments use, each with the years to cover.
fn zones<'x>(appointments: impl Iterator<Item = &'x Appointment>) -> BTreeMap<&'static str, (Tz, i32, i32)> {
    let mut zones: BTreeMap<&'static str, (Tz, i32, i32)> = BTreeMap::new();
    for a in appointments {
        if let When::Timed { start, end } = &a.when {
            for z in [start, end] {
                let y = z.local().year();
                zones.entry(z.zone().name()).and_modify(|e| (e.1, e.2) = (e.1.min(y), e.2.max(y))).or_insert((z.zone(), y, y));
            }
        }
    }
    zones
}

/// The lines every VEVENT of one calendar shares, written once.
struct Shared {
    dtstamp: String,
    organizer: String,
}

impl Shared {
    fn of(ed: &Edition) -> Self {
        let mut w = Lines::with_capacity(128);
        w.simple("DTSTAMP", Value::Raw(Digits::utc(ed.stamp).as_str()));
        let dtstamp = w.finish();
        let mut w = Lines::with_capacity(128);
        w.prop("ORGANIZER", &[("CN", ed.organizer_name)], Value::Raw(&text::mailto(&ed.settings.organizer_email)));
        Shared { dtstamp, organizer: w.finish() }
    }
}

fn vevent(w: &mut Lines, a: &Appointment, shared: &Shared, sequence: u32, method: Method) {
    w.push_raw("BEGIN:VEVENT\r\n");
    w.simple("UID", Value::Text(&a.uid));
    w.push_raw(&shared.dtstamp);
    let mut seq = Digits { buf: [0; 16], len: 0 };
    seq.num(sequence, sequence.checked_ilog10().unwrap_or(0) as usize + 1);
    w.simple("SEQUENCE", Value::Raw(seq.as_str()));
    match &a.when {
        When::Timed { start, end } => {
            timed(w, "DTSTART", start);
            timed(w, "DTEND", end);
        }
        When::Dates { start, end } => {
            dated(w, "DTSTART", *start);
            dated(w, "DTEND", *end);
        }
    }
    let lang = a.attendee.language.code();
    w.prop("SUMMARY", &[("LANGUAGE", lang)], Value::Text(&a.summary));
    w.prop("DESCRIPTION", &[("LANGUAGE", lang)], Value::Text(&a.description));
    if let Some(loc) = &a.location {
        w.simple("LOCATION", Value::Text(loc));
    }
    w.simple("STATUS", Value::Raw(if method == Method::Cancel { "CANCELLED" } else { "CONFIRMED" }));
    if a.transparent {
        w.simple("TRANSP", Value::Raw("TRANSPARENT"));
    }
    // Health appointments: hidden from people the calendar is shared with.
    w.simple("CLASS", Value::Raw("PRIVATE"));
    if let Some(url) = &a.url {
        w.simple("URL", Value::Raw(url));
        // RFC 7986 CONFERENCE: clients that know it show a join button.
        let label = if a.attendee.language == Language::Ja { "オンライン診察" } else { "Online consultation" };
        w.prop("CONFERENCE", &[("VALUE", "URI"), ("FEATURE", "VIDEO"), ("LABEL", label)], Value::Raw(url));
    }
    w.push_raw(&shared.organizer);
    if method != Method::Publish {
        w.prop(
            "ATTENDEE",
            &[
                ("CN", &a.attendee.name),
                ("CUTYPE", "INDIVIDUAL"),
                ("ROLE", "REQ-PARTICIPANT"),
                ("PARTSTAT", "NEEDS-ACTION"),
                ("RSVP", "TRUE"),
            ],
            Value::Raw(&text::mailto(&a.attendee.email)),
        );
    }
    w.push_raw("END:VEVENT\r\n");
}

fn begin(w: &mut Lines, method: Method, organizer_name: &str) {
    w.push_raw("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n");
    w.simple("PRODID", Value::Text(&format!("-//{organizer_name}//itinerary {}//EN", env!("CARGO_PKG_VERSION"))));
    w.push_raw("CALSCALE:GREGORIAN\r\n");
    w.simple("METHOD", Value::Raw(method.as_str()));
}

fn body<'x>(w: &mut Lines, items: impl Iterator<Item = (&'x Appointment, u32)> + Clone, ed: &Edition, method: Method) {
    for (tz, first, last) in zones(items.clone().map(|(a, _)| a)).into_values() {
        w.push_raw(&vtimezone(tz, first, last));
    }
    let shared = Shared::of(ed);
    for (a, sequence) in items {
        vevent(w, a, &shared, sequence, method);
    }
    w.push_raw("END:VCALENDAR\r\n");
}

/// The name a calendar app shows for the itinerary.
fn calendar_name(it: &Itinerary, organizer: &str) -> String {
    match it.plan.language {
        Language::Ja => format!("{} 様のご旅程({organizer})", it.patient.name),
        Language::En => format!("Itinerary of {} ({organizer})", it.patient.name),
    }
}

/// METHOD:PUBLISH: the whole itinerary as the patient sees it, to import or to subscribe to.
/// `sequence` gives each UID's current SEQUENCE.
pub fn publish(it: &Itinerary, appointments: &[Appointment], sequence: impl Fn(&str) -> u32) -> String {
    let ed = Edition::of(it);
    let mut w = Lines::with_capacity(2048 + appointments.len() * 900);
    begin(&mut w, Method::Publish, ed.organizer_name);
    let name = calendar_name(it, ed.organizer_name);
    // RFC 7986 NAME/DESCRIPTION/REFRESH-INTERVAL, and the X-WR- names Apple and Google read.
    w.simple("NAME", Value::Text(&name));
    w.simple("X-WR-CALNAME", Value::Text(&name));
    let description = match it.plan.language {
        Language::Ja => format!("{}でのご治療の旅程です。変更があるとこのカレンダーも更新されます。", it.clinic_name),
        Language::En => format!("Your treatment itinerary at {}. This calendar follows every change.", it.clinic_name),
    };
    w.simple("DESCRIPTION", Value::Text(&description));
    let refresh = format!("PT{}H", it.settings.refresh_hours);
    w.prop("REFRESH-INTERVAL", &[("VALUE", "DURATION")], Value::Raw(&refresh));
    w.simple("X-PUBLISHED-TTL", Value::Raw(&refresh));
    let mine = appointments.iter().filter(|a| a.attendee.audience == crate::Audience::Patient);
    if mine.clone().next().is_none() {
        // Nothing left (every itinerary cancelled): RFC 5545 wants one component at least, so
        // the clinic's zone stands in, and a subscribed calendar empties itself.
        let year = it.plan.planned_at.date().year();
        w.push_raw(&vtimezone(it.plan.clinic_zone, year, year));
    }
    body(&mut w, mine.map(|a| (a, sequence(&a.uid))), &ed, Method::Publish);
    w.finish()
}

/// METHOD:REQUEST or METHOD:CANCEL: one appointment, to its one attendee.
pub fn invite(ed: &Edition, a: &Appointment, sequence: u32, method: Method) -> String {
    let mut w = Lines::with_capacity(4096);
    begin(&mut w, method, ed.organizer_name);
    body(&mut w, std::iter::once((a, sequence)), ed, method);
    w.finish()
}

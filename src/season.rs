//! `itinerary plan FILE --messages`: every message each recipient receives over the itinerary's
//! season, put into words by the same templates and the same `Letter` facts as the worker, each at
//! the instant and in the zone it is sent: the confirmation and invites at booking, then every
//! reminder and day plan. With `--cancel-at T`, the itinerary is cancelled at T: what was due
//! before goes out, then the cancellation summary and one cancellation per appointment not yet
//! begun, and nothing after. The golden files under tests/golden/messages/ are this output.

use std::fmt::Write;

use anyhow::Context;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use itinerary_calendar::{Audience, CalendarState, ChangeKind, Itinerary, Person};
use itinerary_core::plan::{MessageKind, Recipient, When};
use itinerary_core::request::Language;
use itinerary_core::time::zone_abbreviation;
use itinerary_core::{ClinicSetup, Plan, PlanRequest, Zoned};
use itinerary_notify::letter::{Shown, Subject};
use itinerary_notify::{Letter, Templates};

/// Where a confirmation's personal calendar link stands in the text (the real one is a secret).
const FEED_URL: &str = "https://itinerary.example/feed/(personal link)";

/// One message as sent.
struct Sent {
    to: String,
    at: DateTime<Utc>,
    zone: Tz,
    kind: String,
    key: String,
    subject: String,
    text: String,
}

pub fn render(
    templates: &Templates,
    setup: &ClinicSetup,
    reference: &str,
    plan: &Plan,
    req: &PlanRequest,
    cancel_at: Option<DateTime<Utc>>,
) -> anyhow::Result<String> {
    let patient = format!("{} (patient, {})", req.patient.name, plan.language.code());
    let escort_name = |id: &str| setup.resources.escorts.iter().find(|e| e.id == id).map_or_else(|| id.to_owned(), |e| e.name.clone());
    let mut sent: Vec<Sent> = Vec::new();
    let clinic = &setup.clinic.name;
    let follow_up = setup.calendar.follow_up_url.as_deref();
    let compose = |s: &Subject, feed: Option<String>| -> anyhow::Result<(String, String)> {
        let words = templates.compose(&Letter::of(plan, s, clinic, follow_up, feed)).with_context(|| format!("composing {}", s.key))?;
        Ok((words.subject, words.text))
    };
    let ahead = |t: DateTime<Utc>| cancel_at.is_none_or(|c| t < c);

    // Reminders, day plans and the confirmation, as the planner scheduled them.
    for m in plan.messages.iter().filter(|m| ahead(m.at.utc())) {
        let (to, name, language, escort) = match &m.recipient {
            Recipient::Patient => (patient.clone(), req.patient.name.clone(), m.language, None),
            Recipient::Escort { id } => {
                (format!("{} (escort {id}, en)", escort_name(id)), escort_name(id), Language::En, Some(id.as_str()))
            }
            Recipient::Coordinator => ("Coordinator (en)".to_owned(), "Coordinator".to_owned(), Language::En, None),
        };
        let kind = serde_json::to_value(m.kind)?.as_str().unwrap_or_default().to_owned();
        let s = Subject {
            kind: &kind,
            key: &m.key,
            about: m.about.as_deref(),
            language,
            name: &name,
            reference,
            read_at: m.at.utc(),
            reader_zone: m.at.zone(),
            escort,
            both_zones: m.recipient == Recipient::Patient,
            appointment: None,
        };
        let feed = (m.kind == MessageKind::BookingConfirmation).then(|| FEED_URL.to_owned());
        let (subject, text) = compose(&s, feed)?;
        sent.push(Sent { to, at: m.at.utc(), zone: m.at.zone(), kind, key: m.key.clone(), subject, text });
    }

    // Invites at booking; at a cancellation, a cancellation of each appointment not yet begun.
    let calendar = Itinerary {
        id: reference,
        plan,
        patient: Person { name: &req.patient.name, email: &req.patient.email },
        escorts: &setup.resources.escorts,
        clinic_name: clinic,
        settings: &setup.calendar,
    };
    let appointments = calendar.appointments().context("making the calendar")?;
    let (invites, issued) = CalendarState::default().changes(&appointments);
    let home = plan.messages.iter().find(|m| m.kind == MessageKind::BookingConfirmation).map_or(plan.patient_zone, |m| m.at.zone());
    let mut rounds = vec![(plan.planned_at.utc(), invites)];
    if let Some(at) = cancel_at {
        let s = Subject {
            kind: "itinerary_cancelled",
            key: "itinerary_cancelled",
            about: None,
            language: plan.language,
            name: &req.patient.name,
            reference,
            read_at: at,
            reader_zone: home,
            escort: None,
            both_zones: true,
            appointment: None,
        };
        let (subject, text) = compose(&s, None)?;
        sent.push(Sent { to: patient.clone(), at, zone: home, kind: s.kind.into(), key: s.key.into(), subject, text });
        rounds.push((at, issued.changes(&[]).0));
    }
    for (at, changes) in rounds {
        for c in changes.iter().filter(|c| c.kind != ChangeKind::Unchanged) {
            let a = &c.appointment;
            // As the worker does: a cancellation of what has begun is not sent.
            if c.kind == ChangeKind::Cancel && matches!(a.when, When::Timed { start, .. } if start.utc() <= at) {
                continue;
            }
            let (to, zone, escort) = match &a.attendee.audience {
                Audience::Patient => (patient.clone(), home, None),
                Audience::Escort { id } => (format!("{} (escort {id}, en)", a.attendee.name), plan.clinic_zone, Some(id.as_str())),
            };
            let kind = match c.kind {
                ChangeKind::Invite => "calendar_invite",
                ChangeKind::Update => "calendar_update",
                _ => "calendar_cancel",
            };
            let key = format!("{}.{kind}", a.event);
            let s = Subject {
                kind,
                key: &key,
                about: Some(&a.event),
                language: a.attendee.language,
                name: &a.attendee.name,
                reference,
                read_at: at,
                reader_zone: zone,
                escort,
                both_zones: escort.is_none(),
                appointment: Some(Shown { title: &a.summary, when: &a.when, location: a.location.as_deref() }),
            };
            let (subject, text) = compose(&s, None)?;
            sent.push(Sent { to: to.clone(), at, zone, kind: kind.into(), key, subject, text });
        }
    }

    // By recipient (the patient first), then in sending order.
    sent.sort_by(|a, b| (a.to != patient, &a.to, a.at, &a.key).cmp(&(b.to != patient, &b.to, b.at, &b.key)));
    let mut out = String::new();
    let _ = writeln!(out, "# Every message of itinerary {reference}, as each recipient reads it, in sending order.");
    let _ = writeln!(out, "# Written by `itinerary plan FILE --messages`; times are when each is sent, where its reader is.");
    let mut current = None;
    for m in &sent {
        if current != Some(&m.to) {
            current = Some(&m.to);
            let _ = writeln!(out, "\n════════ {} ════════", m.to);
        }
        let local = Zoned::new(m.at, m.zone);
        let _ = writeln!(
            out,
            "\n──── {} {} ({}) · {} · {}",
            local.local().format("%Y-%m-%d %H:%M"),
            zone_abbreviation(&local),
            m.zone,
            m.kind,
            m.key
        );
        let _ = writeln!(out, "Subject: {}\n", m.subject);
        out.push_str(&m.text);
    }
    Ok(out)
}

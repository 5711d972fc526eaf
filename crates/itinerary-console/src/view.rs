//! A plan as the console shows it: every instant in the clinic's zone and the patient's side by
//! side (the date written where it differs), escorts' duties, tasks with their windows, every
//! message with its local send time, warnings and reasons in the page's language.

use chrono_tz::Tz;
use itinerary_core::plan::{Infeasible, Plan, Recipient, When};
use itinerary_core::time::{date_en, date_ja, zone_abbreviation, zone_name_ja};
use itinerary_core::{Zoned, request::Language};
use itinerary_store::MessageView;
use serde::Serialize;

use crate::Lang;

pub(crate) fn language(lang: Lang) -> Language {
    match lang {
        Lang::Ja => Language::Ja,
        Lang::En => Language::En,
    }
}

/// `2026年12月3日(木) 09:00` or `Thu 3 Dec 2026 09:00`.
pub(crate) fn moment(lang: Lang, t: &Zoned) -> String {
    match lang {
        Lang::Ja => format!("{} {}", date_ja(t.date(), None), t.local().format("%H:%M")),
        Lang::En => format!("{} {}", date_en(t.date(), None), t.local().format("%H:%M")),
    }
}

/// A moment and its zone's name, as every list shows one: `2027年5月18日(火) 10:00 マレーシア時間`.
pub(crate) fn moment_zoned(lang: Lang, t: &Zoned) -> String {
    format!("{} {}", moment(lang, t), zone_label(lang, t))
}

/// The zone's name as a column heading: `マレーシア時間` or `MYT`.
pub(crate) fn zone_label(lang: Lang, t: &Zoned) -> String {
    match lang {
        Lang::Ja => zone_name_ja(t.zone()),
        Lang::En => zone_abbreviation(t),
    }
}

/// One instant in two zones: the clinic's, and the patient's when it differs (its date only
/// where the date differs).
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Both {
    pub clinic: String,
    pub patient: String,
}

pub(crate) fn both(lang: Lang, t: &Zoned, clinic: Tz, patient: Tz) -> Both {
    let c = t.in_zone(clinic);
    let p = t.in_zone(patient);
    let patient_text = if clinic == patient {
        String::new()
    } else if p.date() == c.date() {
        p.local().format("%H:%M").to_string()
    } else {
        moment(lang, &p)
    };
    Both { clinic: moment(lang, &c), patient: patient_text }
}

#[derive(Debug, Serialize)]
pub(crate) struct EventRow {
    pub key: String,
    pub kind: String,
    pub title: String,
    pub start: Both,
    pub end: Both,
    pub dates: Option<String>,
    pub location: Option<String>,
    pub escort: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct DutyRow {
    pub escort: String,
    pub duty: String,
    pub start: String,
    pub end: String,
    pub shared: bool,
}

#[derive(Debug, Serialize)]
pub(crate) struct TaskRow {
    pub title: String,
    pub opens: String,
    pub closes: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct MessageRow {
    /// Stored messages only: what a resend names.
    pub id: Option<i32>,
    pub key: String,
    pub kind: String,
    pub to: String,
    /// When it goes (or went), where its reader is, zone named.
    pub at: String,
    pub why: String,
    pub status: String,
    pub detail: String,
    /// The patient's answer by a LINE button (`ack`, `call`), if any.
    pub answer: Option<String>,
}

/// The plan as the preview and the itinerary page show it.
#[derive(Debug, Serialize)]
pub(crate) struct PlanView {
    pub clinic_zone: String,
    pub patient_zone: String,
    pub same_zone: bool,
    pub events: Vec<EventRow>,
    pub duties: Vec<DutyRow>,
    pub tasks: Vec<TaskRow>,
    pub messages: Vec<MessageRow>,
    pub warnings: Vec<String>,
}

fn recipient(lang: Lang, r: &Recipient, plan: &Plan) -> String {
    match r {
        Recipient::Patient => crate::words(lang).get("to_patient").cloned().unwrap_or_default(),
        Recipient::Escort { id } => plan.escorts.iter().find(|a| &a.escort == id).map_or_else(|| id.clone(), |a| a.escort_name.clone()),
        Recipient::Coordinator => crate::words(lang).get("to_coordinator").cloned().unwrap_or_default(),
    }
}

pub(crate) fn plan_view(lang: Lang, plan: &Plan, sent: Option<&[MessageView]>) -> PlanView {
    let (c, p) = (plan.clinic_zone, plan.patient_zone);
    let l = language(lang);
    let sample = plan.planned_at;
    let events = plan
        .events
        .iter()
        .map(|e| {
            let (start, end, dates) = match &e.when {
                When::Timed { start, end } => (both(lang, start, c, p), both(lang, end, c, p), None),
                When::Dates { start, end } => {
                    let d = |d| match lang {
                        Lang::Ja => date_ja(d, None),
                        Lang::En => date_en(d, None),
                    };
                    (Both::default(), Both::default(), Some(format!("{} – {}", d(*start), d(*end))))
                }
            };
            EventRow {
                key: e.key.clone(),
                kind: serde_json::to_value(e.kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
                title: e.title.get(l).to_owned(),
                start,
                end,
                dates,
                location: e.location_in(l).map(str::to_owned),
                escort: e.escort.as_ref().and_then(|id| plan.escorts.iter().find(|a| &a.escort == id)).map(|a| a.escort_name.clone()),
            }
        })
        .collect();
    let duties = plan
        .escorts
        .iter()
        .map(|a| DutyRow {
            escort: a.escort_name.clone(),
            duty: a.duty.get(l).to_owned(),
            start: moment(lang, &a.start.in_zone(c)),
            end: a.end.in_zone(c).local().format("%H:%M").to_string(),
            shared: a.shared.is_some(),
        })
        .collect();
    let tasks = plan
        .tasks
        .iter()
        .map(|t| TaskRow { title: t.title.get(l).to_owned(), opens: moment_zoned(lang, &t.opens), closes: moment_zoned(lang, &t.closes) })
        .collect();
    let messages = match sent {
        // The stored messages, with what became of each.
        Some(stored) => stored
            .iter()
            .map(|m| {
                let zone: Tz = m.due_zone.parse().unwrap_or(c);
                let at = Zoned::new(m.sent_at.unwrap_or(m.due_at), zone);
                let to = serde_json::from_value::<Recipient>(m.recipient.clone()).map(|r| recipient(lang, &r, plan)).unwrap_or_default();
                MessageRow {
                    id: m.id,
                    key: m.key.clone(),
                    kind: m.kind.clone(),
                    to,
                    at: moment_zoned(lang, &at),
                    why: String::new(),
                    status: m.status.clone(),
                    detail: match (&m.channel, &m.error) {
                        (Some(ch), _) if m.status == "sent" => ch.clone(),
                        (_, Some(e)) => e.clone(),
                        _ => String::new(),
                    },
                    answer: m.answer.clone(),
                }
            })
            .collect(),
        // The plan's, as they would be sent.
        None => plan
            .messages
            .iter()
            .map(|m| MessageRow {
                id: None,
                key: m.key.clone(),
                kind: serde_json::to_value(m.kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
                to: recipient(lang, &m.recipient, plan),
                at: moment_zoned(lang, &m.at),
                why: m.why.clone(),
                status: "scheduled".to_owned(),
                detail: String::new(),
                answer: None,
            })
            .collect(),
    };
    PlanView {
        clinic_zone: zone_label(lang, &sample.in_zone(c)),
        patient_zone: zone_label(lang, &sample.in_zone(p)),
        same_zone: c == p,
        events,
        duties,
        tasks,
        messages,
        warnings: plan.warnings.iter().map(|w| w.text.get(l).to_owned()).collect(),
    }
}

/// Why no plan fits, in the page's language, each with the request field to change.
#[derive(Debug, Serialize)]
pub(crate) struct Reason {
    pub text: String,
    pub field: Option<String>,
}

pub(crate) fn reasons(lang: Lang, inf: &Infeasible) -> Vec<Reason> {
    inf.violations.iter().map(|v| Reason { text: v.text.get(language(lang)).to_owned(), field: v.field.clone() }).collect()
}

/// One calendar message a change sends.
#[derive(Debug, Serialize)]
pub(crate) struct Send {
    pub to: String,
    /// `invite`, `update` or `cancel`.
    pub kind: String,
    pub title: String,
    pub when: String,
}

pub(crate) fn calendar_sends(lang: Lang, p: &itinerary_store::ChangePreview) -> Vec<Send> {
    use itinerary_calendar::{Audience, ChangeKind};
    p.changes
        .iter()
        .map(|c| {
            let a = &c.appointment;
            let when = match &a.when {
                When::Timed { start, .. } => moment_zoned(lang, start),
                When::Dates { start, end } => match lang {
                    Lang::Ja => format!("{} – {}", date_ja(*start, None), date_ja(*end, None)),
                    Lang::En => format!("{} – {}", date_en(*start, None), date_en(*end, None)),
                },
            };
            let to = match &a.attendee.audience {
                Audience::Patient => crate::words(lang).get("to_patient").cloned().unwrap_or_default(),
                Audience::Escort { .. } => a.attendee.name.clone(),
            };
            let kind = match c.kind {
                ChangeKind::Invite => "invite",
                ChangeKind::Update => "update",
                _ => "cancel",
            };
            Send { to, kind: kind.to_owned(), title: a.summary.clone(), when }
        })
        .collect()
}

/// A reminder whose time a change moves, adds or drops.
#[derive(Debug, Serialize)]
pub(crate) struct Moved {
    pub kind: String,
    pub to: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

pub(crate) fn reminders_moved(lang: Lang, p: &itinerary_store::ChangePreview) -> Vec<Moved> {
    use std::collections::BTreeMap;
    let at = |m: &itinerary_core::MessageDue| moment_zoned(lang, &m.at);
    let before: BTreeMap<&str, &itinerary_core::MessageDue> = p.before.messages.iter().map(|m| (m.key.as_str(), m)).collect();
    let after: BTreeMap<&str, &itinerary_core::MessageDue> = p.plan.messages.iter().map(|m| (m.key.as_str(), m)).collect();
    let mut keys: Vec<&str> = before.keys().chain(after.keys()).copied().collect();
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter()
        .filter(|k| *k != "booking_confirmation")
        .filter_map(|k| {
            let (b, a) = (before.get(k).map(|m| at(m)), after.get(k).map(|m| at(m)));
            // To the minute, as the reader sees it (a message sent at booking moves by seconds).
            if b == a {
                return None;
            }
            let (m, plan) = match after.get(k) {
                Some(m) => (m, &p.plan),
                None => (before.get(k)?, &p.before),
            };
            Some(Moved {
                kind: serde_json::to_value(m.kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
                to: recipient(lang, &m.recipient, plan),
                before: b,
                after: a,
            })
        })
        .collect()
}

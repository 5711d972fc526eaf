//! The plan as a person reads it: each instant in the clinic's zone and the patient's
//! (`12月3日(木) 10:00 MYT / 11:00 JST`), titles in Japanese and English.

use std::fmt::Write;

use chrono_tz::Tz;

use crate::plan::{Infeasible, Plan, Recipient, When};
use crate::time::{Zoned, date_ja, zone_abbreviation};

/// `12月3日(木) 10:00 MYT / 11:00 JST`; the second date is shown only when it differs.
pub fn both_zones(t: &Zoned, first: Tz, second: Tz) -> String {
    let a = t.in_zone(first);
    let head = format!("{} {} {}", date_ja(a.date(), None), a.local().format("%H:%M"), zone_abbreviation(&a));
    if first == second {
        return head;
    }
    let b = t.in_zone(second);
    if b.date() == a.date() {
        format!("{head} / {} {}", b.local().format("%H:%M"), zone_abbreviation(&b))
    } else {
        format!("{head} / {} {} {}", date_ja(b.date(), None), b.local().format("%H:%M"), zone_abbreviation(&b))
    }
}

/// The readable timeline `itinerary plan` prints.
pub fn timeline(plan: &Plan, patient_name: &str) -> String {
    let (c, p) = (plan.clinic_zone, plan.patient_zone);
    let mut s = String::new();
    let _ = writeln!(s, "{patient_name} 様 — {}", plan.protocol);
    let _ = writeln!(s, "clinic zone {c} · patient zone {p} · planned {}", both_zones(&plan.planned_at, c, p));
    let mut trip = None;
    for e in &plan.events {
        if e.trip != trip {
            trip = e.trip;
            let _ = match trip {
                Some(t) => writeln!(s, "\n旅程 {t} / Trip {t}"),
                None => writeln!(s, "\nオンライン / Online"),
            };
        }
        let when = match &e.when {
            When::Timed { start, end } if start.zone() != end.zone() || (end.utc() - start.utc()).num_hours() >= 4 => {
                format!("{} → {}", both_zones(start, c, p), both_zones(end, c, p))
            }
            // The end in the clinic's zone, named: `09:00 MYT / 10:00 JST – 09:30 MYT`.
            When::Timed { start, end } => {
                let e = end.in_zone(c);
                format!("{} – {} {}", both_zones(start, c, p), e.local().format("%H:%M"), zone_abbreviation(&e))
            }
            When::Dates { start, end } => {
                format!("{} – {} ({} nights)", date_ja(*start, None), date_ja(*end, None), (*end - *start).num_days())
            }
        };
        let escort = e
            .escort
            .as_ref()
            .and_then(|id| plan.escorts.iter().find(|a| &a.escort == id))
            .map(|a| format!("  [escort {}]", a.escort_name))
            .unwrap_or_default();
        let _ = writeln!(s, "  {when}\n      {} / {}{escort}", e.title.ja, e.title.en);
    }
    if !plan.tasks.is_empty() {
        let _ = writeln!(s, "\n準備 / Tasks");
        for t in &plan.tasks {
            let _ =
                writeln!(s, "  {} / {}\n      {} → {}", t.title.ja, t.title.en, both_zones(&t.opens, c, p), both_zones(&t.closes, c, p));
        }
    }
    if !plan.messages.is_empty() {
        let _ = writeln!(s, "\n送信予定 / Messages");
        for m in &plan.messages {
            let to = match &m.recipient {
                Recipient::Patient => "patient".to_owned(),
                Recipient::Escort { id } => format!("escort {id}"),
                Recipient::Coordinator => "coordinator".to_owned(),
            };
            let local = format!("{} {} {}", date_ja(m.at.date(), None), m.at.local().format("%H:%M"), zone_abbreviation(&m.at));
            let _ = writeln!(s, "  {local:<24} {to:<12} {}  ({})", m.key, m.why);
        }
    }
    if !plan.warnings.is_empty() {
        let _ = writeln!(s, "\n注意 / Warnings");
        for w in &plan.warnings {
            let _ = writeln!(s, "  - {}\n    {}", w.text.ja, w.text.en);
        }
    }
    s
}

/// Why no plan fits, in both languages.
pub fn infeasible(inf: &Infeasible) -> String {
    let mut s = String::from("計画できません / No plan fits:\n");
    for v in &inf.violations {
        let field = v.field.as_deref().map(|f| format!(" [{f}]")).unwrap_or_default();
        let _ = writeln!(s, "  - {}{field}\n    {}", v.text.ja, v.text.en);
    }
    if !inf.warnings.is_empty() {
        let _ = writeln!(s, "\n注意 / Warnings");
        for w in &inf.warnings {
            let _ = writeln!(s, "  - {}\n    {}", w.text.ja, w.text.en);
        }
    }
    s
}

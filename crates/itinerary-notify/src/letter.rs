//! What a message says: the facts of the plan it is about (`Letter`), put into words by the
//! templates in `config/messages/` (one TOML file per language, Jinja syntax), so the wording
//! can change without a rebuild. Instants are written where the recipient will be, with the
//! zone named, and the clinic's time beside it when the two differ:
//! `12月3日(木) 10:00(マレーシア時間)/11:00(日本時間)`.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Tz;
use itinerary_core::Plan;
use itinerary_core::plan::When;
use itinerary_core::request::Language;
use itinerary_core::time::{Zoned, date_en, date_ja, zone_abbreviation, zone_name_ja};
use minijinja::Environment;
use serde::{Deserialize, Serialize};

use crate::NotifyError;

/// Subject and body of every kind of message, per language.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wording {
    subject: String,
    body: String,
}

/// A message put into words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Composed {
    pub subject: String,
    pub text: String,
    pub html: String,
}

const LAYOUT: &str = "layout.html";

impl Templates {
    /// Reads `DIR/ja.toml`, `DIR/en.toml` and `DIR/layout.html`. Every template is compiled
    /// here, so a mistake in one stops the start instead of a message.
    pub fn load(dir: &Path) -> Result<Templates, NotifyError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        for lang in ["ja", "en"] {
            let path = dir.join(format!("{lang}.toml"));
            let text = std::fs::read_to_string(&path).map_err(|e| NotifyError::Template(format!("{}: {e}", path.display())))?;
            let kinds: BTreeMap<String, Wording> =
                toml::from_str(&text).map_err(|e| NotifyError::Template(format!("{}: {}", path.display(), e.to_string().trim_end())))?;
            for (kind, w) in kinds {
                for (part, source) in [("subject", w.subject), ("body", w.body)] {
                    let name = format!("{lang}/{kind}/{part}");
                    env.add_template_owned(name.clone(), source)
                        .map_err(|e| NotifyError::Template(format!("{}: [{kind}] {part}: {e}", path.display())))?;
                }
            }
        }
        let path = dir.join(LAYOUT);
        let layout = std::fs::read_to_string(&path).map_err(|e| NotifyError::Template(format!("{}: {e}", path.display())))?;
        env.add_template_owned(LAYOUT, layout).map_err(|e| NotifyError::Template(format!("{}: {e}", path.display())))?;
        Ok(Templates { env })
    }

    /// Whether `kind` has wording in `language`.
    pub fn has(&self, language: Language, kind: &str) -> bool {
        self.env.get_template(&format!("{}/{kind}/subject", language.code())).is_ok()
    }

    /// The message in `letter.language`, or in English when that language has no wording for it.
    pub fn compose(&self, letter: &Letter) -> Result<Composed, NotifyError> {
        let lang = if self.has(letter.language, &letter.kind) { letter.language.code() } else { "en" };
        let render = |part: &str| -> Result<String, NotifyError> {
            let name = format!("{lang}/{}/{part}", letter.kind);
            let t = self.env.get_template(&name).map_err(|_| NotifyError::Template(format!("no template {name}")))?;
            t.render(minijinja::value::Serde(letter))
                .map(|out| one_kind_of_line_break(&out))
                .map_err(|e| NotifyError::Template(format!("{name}: {e}")))
        };
        let subject = render("subject")?.lines().map(str::trim).collect::<Vec<_>>().join(" ");
        let text = render("body")?.trim().to_owned() + "\n";
        let paragraphs: Vec<Vec<String>> = text.split("\n\n").map(|p| p.lines().map(str::to_owned).collect()).collect();
        let html = self
            .env
            .get_template(LAYOUT)
            .and_then(|t| t.render(minijinja::context! { subject => &subject, paragraphs => paragraphs, lang => lang }))
            .map_err(|e| NotifyError::Template(format!("{LAYOUT}: {e}")))?;
        Ok(Composed { subject, text, html })
    }
}

/// `text` with line feeds as its only control characters (tabs aside): a CR or another control
/// character that came in with a name or a title would stand bare in the mail, which RFC 5322
/// forbids and clients show as they please (found by tests/hostile.rs).
fn one_kind_of_line_break(text: &str) -> String {
    text.replace("\r\n", "\n").chars().map(|c| if c.is_control() && c != '\n' && c != '\t' { ' ' } else { c }).collect()
}

/// The facts a message is written from. Templates see these fields by name.
#[derive(Clone, Debug, Serialize)]
pub struct Letter {
    pub kind: String,
    #[serde(skip)]
    pub language: Language,
    /// The recipient as addressed (「山田 太郎」 then 様 in the template).
    pub name: String,
    pub clinic: String,
    pub reference: String,
    /// The appointment or task the message is about.
    pub event: Option<Line>,
    pub task: Option<TaskLine>,
    /// Every appointment of the plan (confirmation, change notice), or the escort's duties.
    pub timeline: Vec<Line>,
    pub feed_url: Option<String>,
    pub follow_up_url: Option<String>,
}

/// One appointment in words.
#[derive(Clone, Debug, Serialize)]
pub struct Line {
    pub title: String,
    pub when: String,
    pub location: Option<String>,
    pub online: bool,
}

/// One task with its window.
#[derive(Clone, Debug, Serialize)]
pub struct TaskLine {
    pub title: String,
    pub opens: String,
    pub closes: String,
}

/// How instants are written for one recipient: in the zone they will be in, with a second zone.
#[derive(Clone, Copy, Debug)]
pub struct Clocks {
    pub language: Language,
    /// Where the recipient is at the time the message is read.
    pub reader: Tz,
    /// The other zone to show beside it (the clinic's for a patient at home).
    pub other: Tz,
    /// Dates in this year are written without the year.
    pub year: i32,
}

impl Clocks {
    /// `12月3日(木) 10:00(マレーシア時間)/11:00(日本時間)` or `Thu 3 Dec 10:00 MYT (11:00 JST)`.
    pub fn when(&self, t: &Zoned, zone: Tz) -> String {
        let a = t.in_zone(zone);
        let b = t.in_zone(if zone == self.reader { self.other } else { self.reader });
        let same = a.zone() == b.zone() || a.local().naive_local() == b.local().naive_local();
        match self.language {
            Language::Ja => {
                let head = format!("{} {}({})", date_ja(a.date(), Some(self.year)), a.local().format("%H:%M"), zone_name_ja(a.zone()));
                if same {
                    return head;
                }
                let date = if b.date() == a.date() { String::new() } else { format!("{} ", date_ja(b.date(), Some(self.year))) };
                format!("{head}/{date}{}({})", b.local().format("%H:%M"), zone_name_ja(b.zone()))
            }
            Language::En => {
                let head = format!("{} {} {}", date_en(a.date(), Some(self.year)), a.local().format("%H:%M"), zone_abbreviation(&a));
                if same {
                    return head;
                }
                let date = if b.date() == a.date() { String::new() } else { format!("{} ", date_en(b.date(), Some(self.year))) };
                format!("{head} ({date}{} {})", b.local().format("%H:%M"), zone_abbreviation(&b))
            }
        }
    }

    fn dates(&self, start: NaiveDate, end: NaiveDate) -> String {
        let nights = (end - start).num_days();
        match self.language {
            Language::Ja => format!("{} – {}({nights}泊)", date_ja(start, Some(self.year)), date_ja(end, Some(self.year))),
            Language::En => format!("{} – {} ({nights} nights)", date_en(start, Some(self.year)), date_en(end, Some(self.year))),
        }
    }

    /// An appointment of the plan in words, at the zone it happens in.
    pub fn event(&self, e: &itinerary_core::plan::Event) -> Line {
        let title = match self.language {
            Language::Ja => e.title.ja.clone(),
            Language::En => e.title.en.clone(),
        };
        let when = match &e.when {
            When::Timed { start, .. } => self.when(start, if e.online { self.reader } else { start.zone() }),
            When::Dates { start, end } => self.dates(*start, *end),
        };
        Line { title, when, location: e.location.clone(), online: e.online }
    }
}

/// What the worker knows of the message it renders.
#[derive(Clone, Debug)]
pub struct Subject<'a> {
    pub kind: &'a str,
    pub key: &'a str,
    pub about: Option<&'a str>,
    pub language: Language,
    pub name: &'a str,
    pub reference: &'a str,
    /// When it is read, and where.
    pub read_at: DateTime<Utc>,
    pub reader_zone: Tz,
    /// For an escort's day plan: whose duties.
    pub escort: Option<&'a str>,
    /// Show the patient's zone beside the clinic's (not for escorts, who are in Malaysia).
    pub both_zones: bool,
}

impl Letter {
    /// The letter for a message of `plan`.
    pub fn of(plan: &Plan, s: &Subject, clinic: &str, follow_up_url: Option<&str>, feed_url: Option<String>) -> Letter {
        let reader = s.reader_zone;
        let other = match (s.both_zones, reader == plan.clinic_zone) {
            (false, _) => reader,
            (true, true) => plan.patient_zone,
            (true, false) => plan.clinic_zone,
        };
        let clocks = Clocks { language: s.language, reader, other, year: Zoned::new(s.read_at, reader).date().year() };
        let event = s.about.and_then(|k| plan.event(k)).map(|e| clocks.event(e));
        let task = s.about.and_then(|k| plan.tasks.iter().find(|t| t.key == k)).map(|t| TaskLine {
            title: match s.language {
                Language::Ja => t.title.ja.clone(),
                Language::En => t.title.en.clone(),
            },
            opens: clocks.when(&t.opens, reader),
            closes: clocks.when(&t.closes, reader),
        });
        let timeline = match s.escort {
            Some(id) => {
                // `escort.E01.2027-04-19`: the duties of that clinic day.
                let day = s.key.rsplit('.').next().and_then(|d| d.parse::<NaiveDate>().ok());
                plan.events
                    .iter()
                    .filter(|e| e.escort.as_deref() == Some(id))
                    .filter(|e| match &e.when {
                        When::Timed { start, .. } => day.is_none_or(|d| start.in_zone(plan.clinic_zone).date() == d),
                        When::Dates { .. } => false,
                    })
                    .map(|e| clocks.event(e))
                    .collect()
            }
            None => plan.events.iter().map(|e| clocks.event(e)).collect(),
        };
        Letter {
            kind: s.kind.to_owned(),
            language: s.language,
            name: s.name.to_owned(),
            clinic: clinic.to_owned(),
            reference: s.reference.to_owned(),
            event,
            task,
            timeline,
            feed_url,
            follow_up_url: follow_up_url.map(str::to_owned),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use chrono::TimeZone;

    use super::*;

    fn at(s: &str) -> Zoned {
        Zoned::new(s.parse().unwrap(), chrono_tz::Asia::Kuala_Lumpur)
    }

    #[test]
    fn both_zones_are_named_and_the_date_follows_midnight() {
        let c = Clocks { language: Language::Ja, reader: chrono_tz::Asia::Kuala_Lumpur, other: chrono_tz::Asia::Tokyo, year: 2027 };
        assert_eq!(c.when(&at("2027-04-21T01:00:00Z"), chrono_tz::Asia::Kuala_Lumpur), "4月21日(水) 09:00(マレーシア時間)/10:00(日本時間)");
        // 23:35 in Kuala Lumpur is already tomorrow in Tokyo.
        assert_eq!(
            c.when(&at("2027-04-22T15:35:00Z"), chrono_tz::Asia::Kuala_Lumpur),
            "4月22日(木) 23:35(マレーシア時間)/4月23日(金) 00:35(日本時間)"
        );
        // Another year is written out.
        assert!(c.when(&at("2028-04-21T01:00:00Z"), chrono_tz::Asia::Kuala_Lumpur).starts_with("2028年4月21日(金)"));
    }

    #[test]
    fn a_patient_in_los_angeles_reads_daylight_time_on_both_sides_of_the_change() {
        let la = chrono_tz::America::Los_Angeles;
        let c = Clocks { language: Language::Ja, reader: la, other: chrono_tz::Asia::Kuala_Lumpur, year: 2027 };
        // 14 March 2027 is the first day of daylight saving time in Los Angeles.
        let before = Zoned::new(la.with_ymd_and_hms(2027, 3, 13, 10, 0, 0).unwrap().with_timezone(&Utc), la);
        let after = Zoned::new(la.with_ymd_and_hms(2027, 3, 15, 10, 0, 0).unwrap().with_timezone(&Utc), la);
        assert_eq!(c.when(&before, la), "3月13日(土) 10:00(ロサンゼルス時間)/3月14日(日) 02:00(マレーシア時間)");
        assert_eq!(c.when(&after, la), "3月15日(月) 10:00(ロサンゼルス時間)/3月16日(火) 01:00(マレーシア時間)");
        let en = Clocks { language: Language::En, ..c };
        assert_eq!(en.when(&after, la), "Mon 15 Mar 10:00 PDT (Tue 16 Mar 01:00 MYT)");
    }

    #[test]
    fn escorts_read_one_zone() {
        let kl = chrono_tz::Asia::Kuala_Lumpur;
        let c = Clocks { language: Language::En, reader: kl, other: kl, year: 2027 };
        assert_eq!(c.when(&at("2027-04-21T01:00:00Z"), kl), "Wed 21 Apr 09:00 MYT");
    }

    /// Every kind of message renders in both languages from the shipped templates, and a name
    /// with markup is escaped in the HTML part only.
    #[test]
    fn the_shipped_templates_render_every_kind() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/messages");
        let t = Templates::load(&dir).unwrap();
        let kinds = [
            "booking_confirmation",
            "itinerary_changed",
            "calendar_invite",
            "calendar_update",
            "calendar_cancel",
            "passport_recheck",
            "tentative_holiday_recheck",
            "mdac_reminder",
            "medication_reminder",
            "departure_day",
            "evening_before",
            "return_flight_advice",
            "visit_japan_web",
            "adverse_event_checkin",
            "follow_up_reminder",
            "reevaluation_reminder",
            "escort_day_plan",
        ];
        let line = Line { title: "Blood test".into(), when: "Tue 20 Apr 09:00 MYT".into(), location: Some("Clinic".into()), online: false };
        for kind in kinds {
            for language in [Language::Ja, Language::En] {
                for with_facts in [true, false] {
                    let letter = Letter {
                        kind: kind.into(),
                        language,
                        name: "<b>山田</b> 太郎".into(),
                        clinic: "KL Clinic".into(),
                        reference: "it-1".into(),
                        event: with_facts.then(|| line.clone()),
                        task: with_facts.then(|| TaskLine { title: "MDAC".into(), opens: "a".into(), closes: "b".into() }),
                        timeline: vec![line.clone()],
                        feed_url: with_facts.then(|| "https://x/feed/itf_1".into()),
                        follow_up_url: None,
                    };
                    let c = t.compose(&letter).unwrap_or_else(|e| panic!("{kind} {language:?}: {e}"));
                    assert!(!c.subject.is_empty() && !c.subject.contains('\n'), "{kind}: {c:?}");
                    assert!(c.html.contains("&lt;b&gt;山田") || !c.text.contains("<b>山田</b>"), "{kind}: {}", c.html);
                    assert!(!c.html.contains("<b>山田"), "{kind}: unescaped name in HTML");
                }
            }
        }
        // Patients' kinds exist in Japanese; the rest fall back to English.
        assert!(t.has(Language::Ja, "evening_before") && !t.has(Language::Ja, "escort_day_plan"));
    }
}

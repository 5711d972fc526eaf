//! What a message says: the facts of the plan it is about (`Letter`), put into words by the
//! templates in `config/messages/` (one TOML file per language, Jinja syntax), so the wording
//! can change without a rebuild. Instants are written where the recipient will be, with the
//! zone named, and the clinic's time beside it when the two differ:
//! `12月3日(木) 10:00(マレーシア時間)/11:00(日本時間)`.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Tz;
use itinerary_core::plan::{EscortAssignment, Event, EventKind, When};
use itinerary_core::request::Language;
use itinerary_core::time::{date_en, date_ja, zone_abbreviation, zone_name_ja};
use itinerary_core::{Plan, Zoned};
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

/// The facts a message is written from. Templates see these fields by name. Every instant in
/// them comes from the plan (an event, an escort's duty, a task's window, the time the patient is
/// to be ready), so the words cannot promise a time the plan does not hold.
#[derive(Clone, Debug, Serialize)]
pub struct Letter {
    pub kind: String,
    #[serde(skip)]
    pub language: Language,
    /// The recipient as addressed (「山田 太郎」 then 様 in the template).
    pub name: String,
    pub clinic: String,
    pub reference: String,
    /// The appointment or task the message is about: for an invite, update or cancellation, the
    /// attached appointment itself (an escort's duty, not the patient's time).
    pub event: Option<Line>,
    pub task: Option<TaskLine>,
    /// Every appointment of the plan (confirmation, change notice), the escort's duties of the
    /// day (day plan), or the appointments still ahead (cancellation of the whole itinerary).
    pub timeline: Vec<Line>,
    /// When the reader is to be ready, and where: at the airport by (departure day), in the hotel
    /// lobby (the evening before an appointment; the transfer home).
    pub meet: Option<String>,
    /// The escort who meets them there, by name.
    pub escort: Option<String>,
    /// The day's flights in travel order, connections included (departure day: the flights
    /// out; the advice before the flight home: the flights home), each leaving and landing in
    /// its own airport's time.
    pub flights: Vec<Line>,
    /// On the last day, where the patient rests until the car leaves (a late check-out or a
    /// day-use room), when the plan books one.
    pub stay: Option<Line>,
    pub feed_url: Option<String>,
    pub follow_up_url: Option<String>,
    /// The patient's own link to the outcomes questionnaire (issue 17), while it is open.
    pub questionnaire_url: Option<String>,
}

/// One appointment (or an escort's duty) in words.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Line {
    pub title: String,
    /// Its start, zones named (`4月21日(水) 09:00(マレーシア時間)/10:00(日本時間)`).
    pub when: String,
    /// Its end, the time alone, where the reader needs it (an escort's duty).
    pub until: Option<String>,
    /// Its date alone, in the zone it is shown in (`1月14日(木)`).
    pub date: String,
    /// `today` or `tomorrow` where the reader is when the message is read, else empty: the
    /// words for "today" are chosen from this, never assumed.
    pub day: &'static str,
    pub location: Option<String>,
    pub online: bool,
    /// For an escort: the patient's appointment this duty is for (`Flight MH71 lands 05:30 MYT`).
    pub note: Option<String>,
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
    /// When the message is read: "today" and "tomorrow" are counted from it, where the reader is.
    pub read_at: DateTime<Utc>,
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

    /// `09:30(マレーシア時間)` or `09:30 MYT`: the end of something whose start was just given.
    fn time(&self, t: &Zoned, zone: Tz) -> String {
        let a = t.in_zone(zone);
        match self.language {
            Language::Ja => format!("{}({})", a.local().format("%H:%M"), zone_name_ja(zone)),
            Language::En => format!("{} {}", a.local().format("%H:%M"), zone_abbreviation(&a)),
        }
    }

    fn date(&self, d: NaiveDate) -> String {
        match self.language {
            Language::Ja => date_ja(d, Some(self.year)),
            Language::En => date_en(d, Some(self.year)),
        }
    }

    /// `today`, `tomorrow` or empty: `d` against the reader's date when the message is read.
    fn day(&self, d: NaiveDate) -> &'static str {
        let today = self.read_at.with_timezone(&self.reader).date_naive();
        match (d - today).num_days() {
            0 => "today",
            1 => "tomorrow",
            _ => "",
        }
    }

    /// Check-in to check-out; the number of nights is the title's to say.
    fn dates(&self, start: NaiveDate, end: NaiveDate) -> String {
        format!("{} – {}", self.date(start), self.date(end))
    }

    /// A span of time or of hotel nights in words: at the zone it happens in (online: the reader's).
    fn line(&self, title: String, when: &When, location: Option<String>, online: bool) -> Line {
        match when {
            When::Timed { start, .. } => {
                let zone = if online { self.reader } else { start.zone() };
                let date = start.in_zone(zone).date();
                Line {
                    title,
                    when: self.when(start, zone),
                    date: self.date(date),
                    day: self.day(start.in_zone(self.reader).date()),
                    location,
                    online,
                    ..Line::default()
                }
            }
            When::Dates { start, end } => Line {
                title,
                when: self.dates(*start, *end),
                date: self.date(*start),
                day: self.day(*start),
                location,
                online,
                ..Line::default()
            },
        }
    }

    /// An appointment of the plan in words, at the zone it happens in.
    pub fn event(&self, e: &Event) -> Line {
        self.line(e.title.get(self.language).to_owned(), &e.when, e.location_in(self.language).map(str::to_owned), e.online)
    }

    /// A flight: leaving in its airport's time, landing (`until`, date and zone written out) in
    /// the other's.
    fn flight(&self, e: &Event) -> Line {
        let mut line = self.event(e);
        line.until = e.end().map(|end| self.when(&end, end.zone()));
        line
    }

    /// The wait between two flights: `羽田空港(HND)で乗り継ぎ:8時間05分(夜をまたぎます)`.
    fn connection(&self, landed: &Event, next: &Event) -> Option<String> {
        let (from, until) = (landed.end()?, next.start()?);
        let minutes = (until.utc() - from.utc()).num_minutes();
        let (h, m) = (minutes / 60, minutes % 60);
        let overnight = itinerary_core::time::through_small_hours(from, until, from.zone());
        let place = next.location_in(self.language).unwrap_or_default();
        Some(match self.language {
            Language::Ja => format!("{place}で乗り継ぎ:{h}時間{m:02}分{}", if overnight { "(夜をまたぎます)" } else { "" }),
            Language::En => format!("Change of plane at {place}: {h} h {m:02} min{}", if overnight { ", overnight" } else { "" }),
        })
    }

    /// An escort's duty: from leaving to being free again, with the patient's appointment it is for.
    pub fn duty(&self, plan: &Plan, a: &EscortAssignment) -> Line {
        let zone = plan.clinic_zone;
        let event = plan.event(&a.event);
        let mut line = self.line(
            a.duty.get(self.language).to_owned(),
            &When::Timed { start: a.start, end: a.end },
            event.and_then(|e| e.location_in(self.language)).map(str::to_owned),
            false,
        );
        line.when = self.when(&a.start, zone);
        line.until = Some(self.time(&a.end, zone));
        line.note = event.and_then(|e| {
            let (start, end) = (e.start()?, e.end()?);
            // A pick-up waits for a landing and a transfer for a take-off: the escort checks that flight.
            let flight = |lands_here: bool| {
                plan.events.iter().find(|f| {
                    f.kind == EventKind::Flight
                        && f.trip == e.trip
                        && if lands_here { f.end() } else { f.start() }.is_some_and(|t| t.zone() == zone)
                })
            };
            Some(match (e.kind, self.language) {
                (EventKind::AirportPickup, lang) if let Some(f) = flight(true) => {
                    format!("{} {} {}", f.title.get(lang), if lang == Language::Ja { "到着" } else { "lands" }, self.time(&f.end()?, zone))
                }
                (EventKind::AirportTransfer, lang) if let Some(f) = flight(false) => format!(
                    "{} {}–{}, {} {} {}",
                    e.title.get(lang),
                    start.in_zone(zone).local().format("%H:%M"),
                    self.time(&end, zone),
                    f.title.get(lang),
                    if lang == Language::Ja { "出発" } else { "departs" },
                    self.time(&f.start()?, zone)
                ),
                (_, lang) => format!("{} {}–{}", e.title.get(lang), start.in_zone(zone).local().format("%H:%M"), self.time(&end, zone)),
            })
        });
        line
    }
}

/// An appointment as it was sent in an invite, update or cancellation.
#[derive(Clone, Copy, Debug)]
pub struct Shown<'a> {
    pub title: &'a str,
    pub when: &'a When,
    pub location: Option<&'a str>,
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
    /// The escort it is addressed to, when it is.
    pub escort: Option<&'a str>,
    /// Show the patient's zone beside the clinic's (not for escorts, who are in Malaysia).
    pub both_zones: bool,
    /// The appointment an invite, update or cancellation carries.
    pub appointment: Option<Shown<'a>>,
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
        let clocks = Clocks { language: s.language, reader, other, year: Zoned::new(s.read_at, reader).date().year(), read_at: s.read_at };
        let duty_of = |event: &str| s.escort.and_then(|id| plan.escorts.iter().find(|a| a.escort == id && a.event == event));
        let event = match (s.appointment, s.about) {
            // What the attachment says, word for word in its times; for an escort, the duty's
            // note beside it.
            (Some(a), _) => {
                let online = s.about.and_then(|k| plan.event(k)).is_some_and(|e| e.online);
                let mut line = clocks.line(a.title.to_owned(), a.when, a.location.map(str::to_owned), online);
                if let (Some(d), When::Timed { end, .. }) = (s.about.and_then(duty_of), a.when) {
                    line.until = Some(clocks.time(end, plan.clinic_zone));
                    line.note = clocks.duty(plan, d).note;
                }
                Some(line)
            }
            (None, Some(k)) => match duty_of(k) {
                Some(d) => Some(clocks.duty(plan, d)),
                None => plan.event(k).map(|e| clocks.event(e)),
            },
            (None, None) => None,
        };
        let task = s.about.and_then(|k| plan.tasks.iter().find(|t| t.key == k)).map(|t| TaskLine {
            title: t.title.get(s.language).to_owned(),
            opens: clocks.when(&t.opens, reader),
            closes: clocks.when(&t.closes, reader),
        });
        let timeline = match (s.escort, s.kind) {
            (Some(id), "escort_day_plan") => {
                // `escort.E01.2027-04-19`: the duties of that clinic day.
                let day = s.key.rsplit('.').next().and_then(|d| d.parse::<NaiveDate>().ok());
                plan.escorts
                    .iter()
                    .filter(|a| a.escort == id && day.is_none_or(|d| a.start.in_zone(plan.clinic_zone).date() == d))
                    .map(|a| clocks.duty(plan, a))
                    .collect()
            }
            (Some(id), _) => plan.escorts.iter().filter(|a| a.escort == id).map(|a| clocks.duty(plan, a)).collect(),
            // What a cancellation takes away: what had not begun.
            (None, "itinerary_cancelled") => {
                plan.events.iter().filter(|e| e.not_begun(plan.clinic_zone, s.read_at)).map(|e| clocks.event(e)).collect()
            }
            (None, _) => plan.events.iter().map(|e| clocks.event(e)).collect(),
        };
        let due = plan.messages.iter().find(|m| m.key == s.key);
        let about = s.about.and_then(|k| plan.event(k));
        // Who meets the patient next: the escort of this appointment, or of the trip's pick-up
        // (departure day) or transfer (the flight home).
        let escort_of = |kind: EventKind| {
            about
                .and_then(|e| plan.events.iter().find(|x| x.kind == kind && x.trip == e.trip))
                .and_then(|x| plan.escorts.iter().find(|a| a.event == x.key))
        };
        let meeting = match s.kind {
            "evening_before" => about.and_then(|e| plan.escorts.iter().find(|a| a.event == e.key)),
            "departure_day" => escort_of(EventKind::AirportPickup),
            "return_flight_advice" => escort_of(EventKind::AirportTransfer),
            _ => None,
        };
        let meet = match s.kind {
            // The lobby time is the escort's: the duty starts there.
            "evening_before" => meeting.map(|a| a.start).or_else(|| due.and_then(|m| m.before)),
            "departure_day" | "return_flight_advice" => due.and_then(|m| m.before),
            _ => None,
        }
        // Where the meeting is (the airport the flight leaves from, the hotel), the reader's
        // zone beside it when that differs.
        .map(|t| clocks.when(&t, about.and_then(Event::start).map_or(reader, |start| start.zone())));
        let direction = match s.kind {
            "departure_day" => Some("outbound"),
            "return_flight_advice" => Some("return"),
            _ => None,
        };
        let flights = match (direction, about.and_then(|e| e.trip)) {
            (Some(dir), Some(trip)) => {
                let prefix = format!("trip{trip}.{dir}");
                let legs: Vec<&Event> = plan
                    .events
                    .iter()
                    .filter(|e| e.kind == EventKind::Flight && (e.key == prefix || e.key.starts_with(&format!("{prefix}."))))
                    .collect();
                legs.iter()
                    .enumerate()
                    .map(|(i, e)| {
                        let mut line = clocks.flight(e);
                        // Before a connecting flight: where and how long the wait is, and whether
                        // it goes through the night.
                        line.note = i.checked_sub(1).and_then(|p| clocks.connection(legs[p], e));
                        line
                    })
                    .collect()
            }
            _ => Vec::new(),
        };
        let stay = match (s.kind, about.and_then(|e| e.trip)) {
            ("return_flight_advice", Some(trip)) => {
                plan.events.iter().find(|e| e.trip == Some(trip) && e.kind == EventKind::Hotel && matches!(e.when, When::Timed { .. })).map(
                    |e| {
                        let mut line = clocks.event(e);
                        line.until = e.end().map(|end| clocks.time(&end, end.zone()));
                        line
                    },
                )
            }
            _ => None,
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
            meet,
            escort: meeting.map(|a| a.escort_name.clone()),
            flights,
            stay,
            feed_url,
            follow_up_url: follow_up_url.map(str::to_owned),
            questionnaire_url: None,
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
        let c = Clocks {
            language: Language::Ja,
            reader: chrono_tz::Asia::Kuala_Lumpur,
            other: chrono_tz::Asia::Tokyo,
            year: 2027,
            read_at: Utc::now(),
        };
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
        let c = Clocks { language: Language::Ja, reader: la, other: chrono_tz::Asia::Kuala_Lumpur, year: 2027, read_at: Utc::now() };
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
        let c = Clocks { language: Language::En, reader: kl, other: kl, year: 2027, read_at: Utc::now() };
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
            "outcome_invite",
            "outcome_nudge",
            "escort_day_plan",
            "itinerary_cancelled",
        ];
        let line =
            Line { title: "Blood test".into(), when: "Tue 20 Apr 09:00 MYT".into(), location: Some("Clinic".into()), ..Line::default() };
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
                        meet: with_facts.then(|| "Tue 20 Apr 08:30 MYT".into()),
                        escort: with_facts.then(|| "Aisyah".into()),
                        flights: if with_facts { vec![line.clone(), line.clone()] } else { Vec::new() },
                        stay: with_facts.then(|| line.clone()),
                        feed_url: with_facts.then(|| "https://x/feed/itf_1".into()),
                        follow_up_url: None,
                        questionnaire_url: with_facts.then(|| "https://x/questionnaire/itq_1".into()),
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

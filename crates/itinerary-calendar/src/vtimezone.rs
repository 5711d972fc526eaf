//! VTIMEZONE components from the tz database that chrono-tz carries: the same data the planner
//! used to compute every instant, so a client reading our VTIMEZONE gets the instants the Plan says.
//!
//! chrono-tz does not expose transitions, so they are found by stepping a day at a time from 1970
//! to 2090 and bisecting to the second. Each run of transitions that follows one yearly rule (second
//! Sunday of March at 02:00) becomes one observance with an RRULE; a one-off change is an
//! observance of its own. No multi-valued RDATE: ical.js 2.2 and vobject read only its first value.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::{Mutex, OnceLock};

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc, Weekday};
use chrono_tz::{OffsetComponents, Tz};
use itinerary_core::time::{Zoned, zone_abbreviation};

/// The offset regime in force at an instant: its offset from UTC, and tzdb's split of it into a
/// standard offset and a daylight-saving amount (negative in Europe/Dublin's winter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Regime {
    offset: i32,
    base: i64,
    dst: i64,
}

fn regime(tz: Tz, t: i64) -> Regime {
    let utc = DateTime::<Utc>::from_timestamp(t, 0).unwrap_or_default().naive_utc();
    let off = tz.offset_from_utc_datetime(&utc);
    Regime {
        offset: chrono::Offset::fix(&off).local_minus_utc(),
        base: off.base_utc_offset().num_seconds(),
        dst: off.dst_offset().num_seconds(),
    }
}

/// Whether clients should see `r` as summer time (DAYLIGHT). tzdb models Irish summer time as
/// standard and winter as negative saving (Casablanca likewise outside Ramadan); iCalendar
/// clients expect the usual view, so where a negative-saving regime shares `r`'s base offset,
/// `r` is the daylight one.
fn is_daylight(r: Regime, all: &[Transition]) -> bool {
    r.dst > 0 || (r.dst == 0 && all.iter().any(|t| t.to.base == r.base && t.to.dst < 0))
}

/// TZNAME at an instant; tzdb's number ("+08") is replaced by the customary name where one exists.
fn name_at(tz: Tz, t: i64) -> String {
    zone_abbreviation(&Zoned::new(DateTime::<Utc>::from_timestamp(t, 0).unwrap_or_default(), tz))
}

/// One change of offset: at `at` (UTC) the zone goes from `from` to `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Transition {
    at: i64,
    from: i32,
    to: Regime,
    name: String,
}

impl Transition {
    /// The wall-clock time just before the change, as DTSTART of an observance wants it.
    fn local_start(&self) -> NaiveDateTime {
        DateTime::<Utc>::from_timestamp(self.at + i64::from(self.from), 0).unwrap_or_default().naive_utc()
    }
}

const DAY: i64 = 86_400;
/// Before this, observances are not looked for: 1970 is where iCalendar producers conventionally
/// start a zone that has not changed since.
const EPOCH: i64 = 0;

/// The first instant in (lo, hi] whose regime differs from the one at `lo`, if the regimes differ.
fn bisect(tz: Tz, mut lo: i64, mut hi: i64, before: Regime) -> i64 {
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if regime(tz, mid) == before {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

/// Every transition from 1970 until `to`, found a day at a time (no zone has changed twice in
/// one day since then) and bisected to the second.
fn transitions(tz: Tz, to: i64) -> Vec<Transition> {
    let mut out = Vec::new();
    let mut t = EPOCH;
    let mut current = regime(tz, t);
    while t < to {
        let next = (t + DAY).min(to);
        let r = regime(tz, next);
        if r == current {
            t = next;
            continue;
        }
        let at = bisect(tz, t, next, current);
        let after = regime(tz, at);
        out.push(Transition { at, from: current.offset, to: after, name: name_at(tz, at) });
        current = after;
        t = at;
    }
    out
}

/// How a yearly rule names its day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DayRule {
    /// The nth weekday of the month (1-based).
    Nth(u32, Weekday),
    /// The last such weekday of the month.
    Last(Weekday),
    /// The first such weekday on or after a day of the month (tzdb's `Fri>=23`).
    OnOrAfter(Weekday, u32),
    /// A fixed day of the month.
    MonthDay(u32),
}

impl DayRule {
    fn rrule_part(self) -> String {
        match self {
            DayRule::Nth(n, w) => format!("BYDAY={n}{}", weekday_code(w)),
            DayRule::Last(w) => format!("BYDAY=-1{}", weekday_code(w)),
            DayRule::OnOrAfter(w, n) => {
                let days: Vec<String> = (n..n + 7).map(|d| d.to_string()).collect();
                format!("BYDAY={};BYMONTHDAY={}", weekday_code(w), days.join(","))
            }
            DayRule::MonthDay(d) => format!("BYMONTHDAY={d}"),
        }
    }

    fn matches(self, d: NaiveDate) -> bool {
        match self {
            DayRule::Nth(n, w) => d.weekday() == w && (d.day() - 1) / 7 + 1 == n,
            DayRule::Last(w) => d.weekday() == w && (d + Duration::days(7)).month() != d.month(),
            DayRule::OnOrAfter(w, n) => d.weekday() == w && (n..n + 7).contains(&d.day()),
            DayRule::MonthDay(m) => d.day() == m,
        }
    }

    fn candidates(d: NaiveDate) -> Vec<DayRule> {
        // "Last Sunday" before "fourth Sunday" when a date is both: tzdb's rules say lastSun.
        let mut c = Vec::with_capacity(3);
        if (d + Duration::days(7)).month() != d.month() {
            c.push(DayRule::Last(d.weekday()));
        }
        c.push(DayRule::Nth((d.day() - 1) / 7 + 1, d.weekday()));
        // `w>=n` for every n this date satisfies; RFC 5545 writes it as seven BYMONTHDAYs.
        let month_days = (d.with_day(1).unwrap_or(d) + chrono::Months::new(1)).pred_opt().map_or(28, |l| l.day());
        c.extend((d.day().saturating_sub(6).max(1)..=d.day().min(month_days - 6)).map(|n| DayRule::OnOrAfter(d.weekday(), n)));
        c.push(DayRule::MonthDay(d.day()));
        c
    }
}

fn weekday_code(w: Weekday) -> &'static str {
    match w {
        Weekday::Mon => "MO",
        Weekday::Tue => "TU",
        Weekday::Wed => "WE",
        Weekday::Thu => "TH",
        Weekday::Fri => "FR",
        Weekday::Sat => "SA",
        Weekday::Sun => "SU",
    }
}

/// Transitions of one kind that a single yearly rule describes.
struct Run<'a> {
    items: Vec<&'a Transition>,
    rules: Vec<DayRule>,
}

impl<'a> Run<'a> {
    fn extends(&self, t: &Transition) -> bool {
        let Some(last) = self.items.last() else { return false };
        let (a, b) = (last.local_start(), t.local_start());
        b.year() == a.year() + 1
            && b.month() == a.month()
            && b.time() == a.time()
            && t.from == last.from
            && t.to == last.to
            && t.name == last.name
            && self.rules.iter().any(|r| r.matches(b.date()))
    }

    fn push(&mut self, t: &'a Transition) {
        let d = t.local_start().date();
        if self.items.is_empty() {
            self.rules = DayRule::candidates(d);
        } else {
            self.rules.retain(|r| r.matches(d));
        }
        self.items.push(t);
    }
}

fn offset_text(secs: i32) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let a = secs.unsigned_abs();
    let (h, m, s) = (a / 3600, a / 60 % 60, a % 60);
    if s == 0 { format!("{sign}{h:02}{m:02}") } else { format!("{sign}{h:02}{m:02}{s:02}") }
}

fn ical_local(t: NaiveDateTime) -> String {
    t.format("%Y%m%dT%H%M%S").to_string()
}

/// The VTIMEZONE for `tz`, correct for every instant from the start of `first_year` to the end
/// of `last_year`, and from when the rules in force then began; a rule is left open-ended only
/// when tzdb follows it until 2090, so a client that keeps the first VTIMEZONE it sees under a
/// TZID (vobject does, process-wide) still gets later years right. Zones whose changes no yearly
/// rule describes (Casablanca's Ramadan, Cairo's "Friday after the last Thursday") are exact
/// only for the span asked for. CRLF-terminated lines.
pub fn vtimezone(tz: Tz, first_year: i32, last_year: i32) -> String {
    let key = (tz, first_year, last_year);
    if let Ok(cache) = CACHE.get_or_init(Default::default).lock()
        && let Some(hit) = cache.get(&key)
    {
        return hit.clone();
    }
    let v = generate(tz, first_year, last_year);
    if let Ok(mut cache) = CACHE.get_or_init(Default::default).lock() {
        cache.insert(key, v.clone());
    }
    v
}

/// Zones are few and scanning 1970 onwards takes a millisecond: each is generated once per process.
static CACHE: OnceLock<Mutex<HashMap<ZoneSpan, String>>> = OnceLock::new();

/// A zone and the years a VTIMEZONE covers.
type ZoneSpan = (Tz, i32, i32);

/// Rules are checked against tzdb up to here: a rule is written open-ended only when every year
/// until then follows it (chrono-tz's tables run to 2099), so a client reading the VTIMEZONE for
/// later years gets tzdb's answer too. Two years that happen to agree prove nothing: Jerusalem's
/// `Fri>=23` is the last Friday of March in most years, but not in 2028.
const HORIZON_YEAR: i32 = 2090;

fn generate(tz: Tz, first_year: i32, last_year: i32) -> String {
    let year_start = |y: i32| Utc.with_ymd_and_hms(y, 1, 1, 0, 0, 0).single().map_or(EPOCH, |t| t.timestamp());
    let (from, to) = (year_start(first_year), year_start(last_year + 1));
    let horizon = HORIZON_YEAR.max(last_year + 2);
    let all = transitions(tz, year_start(horizon));

    let mut out = String::with_capacity(512);
    let _ = write!(out, "BEGIN:VTIMEZONE\r\nTZID:{}\r\n", tz.name());
    // The regime in force at `from` began with the last change before it; with none since 1970,
    // an observance from 1970 on covers it.
    let opening = all.iter().rposition(|t| t.at <= from);
    if opening.is_none() {
        let r = regime(tz, EPOCH);
        let off = offset_text(r.offset);
        let kind = if is_daylight(r, &all) { "DAYLIGHT" } else { "STANDARD" };
        let _ = write!(
            out,
            "BEGIN:{kind}\r\nDTSTART:19700101T000000\r\nTZOFFSETFROM:{off}\r\nTZOFFSETTO:{off}\r\nTZNAME:{}\r\nEND:{kind}\r\n",
            name_at(tz, EPOCH)
        );
    }
    // Each transition joins the latest run into the same regime if it follows that run's rule.
    let mut runs: Vec<Run> = Vec::new();
    for t in &all {
        match runs.iter_mut().rev().find(|r| r.items.last().is_some_and(|l| l.to == t.to && l.from == t.from)) {
            Some(run) if run.extends(t) => run.push(t),
            _ => {
                let mut run = Run { items: Vec::new(), rules: Vec::new() };
                run.push(t);
                runs.push(run);
            }
        }
    }
    // What matters: runs still going at the opening change, up to the end of the span.
    let opening_at = opening.map_or(i64::MIN, |i| all[i].at);
    runs.retain(|r| r.items.last().is_some_and(|l| l.at >= opening_at) && r.items.first().is_some_and(|f| f.at < to));
    for run in &runs {
        let (Some(first), Some(last)) = (run.items.first(), run.items.last()) else { continue };
        let kind = if is_daylight(first.to, &all) { "DAYLIGHT" } else { "STANDARD" };
        let _ = write!(
            out,
            "BEGIN:{kind}\r\nDTSTART:{}\r\nTZOFFSETFROM:{}\r\nTZOFFSETTO:{}\r\nTZNAME:{}\r\n",
            ical_local(first.local_start()),
            offset_text(first.from),
            offset_text(first.to.offset),
            first.name
        );
        if let Some(rule) = run.rules.first().filter(|_| run.items.len() > 1) {
            let mut rrule = format!("RRULE:FREQ=YEARLY;BYMONTH={};{}", first.local_start().month(), rule.rrule_part());
            // Still following the rule when tzdb's years run out: open-ended, as in tzdb.
            if last.local_start().year() < horizon - 1 {
                let until = DateTime::<Utc>::from_timestamp(last.at, 0).unwrap_or_default();
                let _ = write!(rrule, ";UNTIL={}", until.format("%Y%m%dT%H%M%SZ"));
            }
            crate::line::fold_into(&rrule, &mut out);
        }
        let _ = write!(out, "END:{kind}\r\n");
    }
    out.push_str("END:VTIMEZONE\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> Vec<&str> {
        s.split("\r\n").filter(|l| !l.is_empty()).collect()
    }

    #[test]
    fn los_angeles_follows_the_us_rule_with_dtstart_before_the_change() {
        let v = vtimezone(Tz::America__Los_Angeles, 2026, 2027);
        let l = lines(&v);
        assert!(l.contains(&"DTSTART:20070311T020000"), "{v}");
        assert!(!v.contains("UNTIL"), "{v}");
        assert!(l.contains(&"RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU"), "{v}");
        // The rules in force since 2007, open-ended.
        assert!(l.contains(&"DTSTART:20071104T020000"), "{v}");
        assert!(l.contains(&"RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU"), "{v}");
        assert!(l.contains(&"TZNAME:PDT") && l.contains(&"TZNAME:PST"), "{v}");
        assert!(!v.contains("RDATE") && !v.contains("UID") && !v.contains("DTSTAMP"), "{v}");
    }

    #[test]
    fn sydney_is_daylight_across_new_year() {
        let v = vtimezone(Tz::Australia__Sydney, 2027, 2027);
        let l = lines(&v);
        // New South Wales' rules since 2008: from the first Sunday of October to that of April.
        assert!(l.contains(&"DTSTART:20081005T020000"), "{v}");
        assert!(l.contains(&"RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=1SU"), "{v}");
        assert!(l.contains(&"DTSTART:20080406T030000"), "{v}");
        assert!(l.contains(&"RRULE:FREQ=YEARLY;BYMONTH=4;BYDAY=1SU"), "{v}");
        assert!(l.contains(&"TZOFFSETFROM:+1100") && l.contains(&"TZNAME:AEDT"), "{v}");
    }

    #[test]
    fn london_changes_on_the_last_sunday() {
        let v = vtimezone(Tz::Europe__London, 2026, 2028);
        assert!(v.contains("RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU"), "{v}");
        assert!(v.contains("RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU"), "{v}");
        assert!(v.contains("TZNAME:BST") && v.contains("TZNAME:GMT"), "{v}");
    }

    #[test]
    fn kuala_lumpur_is_named_myt_and_tokyo_starts_in_1970() {
        let kl = vtimezone(Tz::Asia__Kuala_Lumpur, 2026, 2027);
        assert!(kl.contains("TZNAME:MYT") && !kl.contains("TZNAME:+08"), "{kl}");
        assert!(kl.contains("TZOFFSETTO:+0800"), "{kl}");
        let tokyo = vtimezone(Tz::Asia__Tokyo, 2026, 2027);
        assert_eq!(
            lines(&tokyo),
            [
                "BEGIN:VTIMEZONE",
                "TZID:Asia/Tokyo",
                "BEGIN:STANDARD",
                "DTSTART:19700101T000000",
                "TZOFFSETFROM:+0900",
                "TZOFFSETTO:+0900",
                "TZNAME:JST",
                "END:STANDARD",
                "END:VTIMEZONE"
            ]
        );
    }

    #[test]
    fn a_rule_is_claimed_only_when_every_year_of_tzdb_follows_it() {
        // Israel: the Friday on or after 23 March, which is the last Friday in most years only.
        let v = vtimezone(Tz::Asia__Jerusalem, 2026, 2026);
        assert!(v.contains("RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=FR;BYMONTHDAY=23,24,25,26,27,28,29\r\n"), "{v}");
        assert!(!v.contains("-1FR"), "{v}");
    }

    #[test]
    fn irish_summer_time_is_daylight_although_tzdb_calls_winter_negative_saving() {
        let v = vtimezone(Tz::Europe__Dublin, 2026, 2026);
        let daylight = &v[v.find("BEGIN:DAYLIGHT").unwrap()..v.find("END:DAYLIGHT").unwrap()];
        assert!(daylight.contains("TZOFFSETTO:+0100") && daylight.contains("TZNAME:IST"), "{v}");
        let standard = &v[v.rfind("BEGIN:STANDARD").unwrap()..v.rfind("END:STANDARD").unwrap()];
        assert!(standard.contains("TZOFFSETTO:+0000") && standard.contains("TZNAME:GMT"), "{v}");
    }

    #[test]
    fn a_rule_that_stopped_ends_with_until() {
        // Brazil dropped daylight time in 2019: the run that started before ends at its last change.
        let v = vtimezone(Tz::America__Sao_Paulo, 2018, 2020).replace("\r\n ", "");
        assert!(v.contains("UNTIL=20190217T020000Z"), "{v}");
        assert!(!v.contains("RDATE"), "{v}");
    }
}

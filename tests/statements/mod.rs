//! What a message states, read back as a person would: every time it gives (`12月3日(木)
//! 09:00(マレーシア時間)/10:00(日本時間)`, `Thu 3 Dec 08:30 MYT to 10:00 MYT`) turned into an
//! instant from its date, weekday, hour and named zone, and checked against the plan it was
//! written from (issue 18). The parsing is independent of the code that writes these texts.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::LazyLock;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use regex::Regex;
use serde_json::Value;

/// One time a message states.
#[derive(Clone, Debug)]
pub struct Stated {
    pub at: DateTime<Utc>,
    pub zone: Tz,
    /// The words it was read from.
    pub words: String,
    /// It is the other zone's reading of the time just before it (`/10:00(日本時間)`, `(10:00 JST)`).
    pub beside: bool,
}

static JA: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(/)?(?:(?:(\d{4})年)?(\d{1,2})月(\d{1,2})日\(([月火水木金土日])\) ?)?(\d{2}):(\d{2})\(([^()/]+?時間)\)").unwrap()
});
static EN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(\()?(?:(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (\d{1,2}) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)(?: (\d{4}))? )?(\d{2}):(\d{2}) (JST|MYT|PST|PDT|UTC[+-]\d{2}(?::\d{2})?)",
    )
    .unwrap()
});
/// `09:00–09:30 MYT`: the zone named once for both.
static RANGE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(\d{2}:\d{2})–(\d{2}:\d{2}) ([A-Z]{3})").unwrap());

fn zone_ja(name: &str) -> Tz {
    match name {
        "日本時間" => Tz::Asia__Tokyo,
        "マレーシア時間" => Tz::Asia__Kuala_Lumpur,
        "ロサンゼルス時間" => Tz::America__Los_Angeles,
        other => other.trim_end_matches("時間").parse().unwrap_or_else(|_| panic!("a zone no reader knows: {other}")),
    }
}

fn zone_en(name: &str) -> Tz {
    match name {
        "JST" => Tz::Asia__Tokyo,
        "MYT" => Tz::Asia__Kuala_Lumpur,
        "PST" | "PDT" => Tz::America__Los_Angeles,
        other => panic!("a zone abbreviation this checker does not know: {other}"),
    }
}

const WEEKDAYS_JA: [&str; 7] = ["月", "火", "水", "木", "金", "土", "日"];

/// Every time `text` states, read in `year` where no year is written (the year the message is
/// read in). A time without a date takes the last date stated before it; a weekday that does
/// not match its date fails.
pub fn stated(text: &str, year: i32) -> Vec<Stated> {
    let text = RANGE.replace_all(text, "$1 $3–$2 $3");
    let mut found: Vec<(usize, Stated)> = Vec::new();
    let mut last: Option<NaiveDate> = None;
    // Japanese and English readings, in the order they appear.
    let mut tokens: Vec<(usize, usize, bool)> = JA.find_iter(&text).map(|m| (m.start(), m.end(), true)).collect();
    tokens.extend(EN.find_iter(&text).map(|m| (m.start(), m.end(), false)));
    tokens.sort();
    for (start, end, ja) in tokens {
        let words = &text[start..end];
        let (beside, date, hm, zone) = if ja {
            let c = JA.captures(words).unwrap();
            let date = c.get(3).map(|m| {
                let y = c.get(2).map_or(year, |y| y.as_str().parse().unwrap());
                (NaiveDate::from_ymd_opt(y, m.as_str().parse().unwrap(), c[4].parse().unwrap()).unwrap(), c[5].to_owned())
            });
            let date = date.map(|(d, w)| {
                assert_eq!(WEEKDAYS_JA[d.weekday().num_days_from_monday() as usize], w, "{words}: {d} is not a {w}曜日");
                d
            });
            (c.get(1).is_some(), date, (c[6].parse::<u32>().unwrap(), c[7].parse::<u32>().unwrap()), zone_ja(&c[8]))
        } else {
            let c = EN.captures(words).unwrap();
            let date = c.get(3).map(|m| {
                let y = c.get(5).map_or(year, |y| y.as_str().parse().unwrap());
                let d = NaiveDate::parse_from_str(&format!("{y} {} {}", &c[4], m.as_str()), "%Y %b %d").unwrap();
                assert_eq!(d.format("%a").to_string(), &c[2], "{words}: {d} is not a {}", &c[2]);
                d
            });
            (c.get(1).is_some(), date, (c[6].parse::<u32>().unwrap(), c[7].parse::<u32>().unwrap()), zone_en(&c[8]))
        };
        // A time beside another without its own date is on that one's date where it is read:
        // the writer leaves the date out only when it is the same.
        let date = date.or(last).unwrap_or_else(|| panic!("{words}: a time with no date before it"));
        let local = date.and_time(NaiveTime::from_hms_opt(hm.0, hm.1, 0).unwrap());
        let at = zone.from_local_datetime(&local).single().unwrap_or_else(|| panic!("{words}: {local} does not exist once in {zone}"));
        let at = at.with_timezone(&Utc);
        last = Some(date);
        found.push((start, Stated { at, zone, words: words.to_owned(), beside }));
    }
    found.into_iter().map(|(_, s)| s).collect()
}

fn instant(v: &Value) -> Option<DateTime<Utc>> {
    v["utc"].as_str().and_then(|s| s.parse().ok())
}

/// Every instant the plan holds: its events' starts and ends, escorts' duties, tasks' windows, and
/// the instants messages must precede (at the airport by, in the lobby at).
pub fn plan_instants(plan: &Value) -> BTreeSet<DateTime<Utc>> {
    let mut all = BTreeSet::new();
    let list = |k: &str| plan[k].as_array().cloned().unwrap_or_default();
    for e in list("events") {
        all.extend(instant(&e["when"]["start"]));
        all.extend(instant(&e["when"]["end"]));
    }
    for a in list("escorts") {
        all.extend(instant(&a["start"]));
        all.extend(instant(&a["end"]));
    }
    for t in list("tasks") {
        all.extend(instant(&t["opens"]));
        all.extend(instant(&t["closes"]));
    }
    for m in list("messages") {
        all.extend(instant(&m["before"]));
    }
    all
}

/// Checks one message: every time it states is an instant of the plan; a time given beside
/// another is the same instant; the words for "today" and "tomorrow" match the date of the
/// appointment they are about, where the reader is when it is sent.
pub fn check_message(plan: &Value, sent_at: DateTime<Utc>, reader: Tz, subject: &str, text: &str) {
    let year = sent_at.with_timezone(&reader).year();
    let whole = format!("{subject}\n{text}");
    let times = stated(&whole, year);
    let allowed = plan_instants(plan);
    for (i, s) in times.iter().enumerate() {
        assert!(allowed.contains(&s.at), "«{}» is {} UTC, which is no instant of the plan:\n{whole}", s.words, s.at);
        if s.beside {
            let before = &times[i - 1];
            assert_eq!(before.at, s.at, "«{}» and «{}» are not the same instant:\n{whole}", before.words, s.words);
            assert_ne!(before.zone, s.zone, "«{}» repeats its zone:\n{whole}", s.words);
        }
    }
    // The first time stated is what "today" or "tomorrow" is about.
    let today = sent_at.with_timezone(&reader).date_naive();
    if let Some(first) = times.first() {
        let day = first.at.with_timezone(&reader).date_naive();
        let says = |words: &[&str]| words.iter().any(|w| whole.contains(w));
        if says(&["本日", " today", "Today"]) {
            assert_eq!(day, today, "says today for «{}», sent {today}:\n{whole}", first.words);
        }
        if says(&["明日", "tomorrow", "Tomorrow"]) {
            assert_eq!(day, today + Duration::days(1), "says tomorrow for «{}», sent {today}:\n{whole}", first.words);
        }
    }
}

/// For an escort: each duty line (`- Thu 3 Dec 08:30 MYT to 10:00 MYT  Accompany…`, or an
/// invite's first line) starts and ends at one of their duties, never at the patient's time.
pub fn check_escort_times(plan: &Value, escort: &str, text: &str, year: i32) {
    let duties: BTreeSet<(DateTime<Utc>, DateTime<Utc>)> = plan["escorts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["escort"] == escort)
        .map(|a| (instant(&a["start"]).unwrap(), instant(&a["end"]).unwrap()))
        .collect();
    let mut lines = 0;
    let days = ["Mon ", "Tue ", "Wed ", "Thu ", "Fri ", "Sat ", "Sun "];
    for line in text.lines().filter(|l| days.iter().any(|d| l.trim_start_matches("- ").starts_with(d)) && l.contains(" to ")) {
        let t = stated(line, year);
        if t.len() < 2 {
            continue;
        }
        lines += 1;
        assert!(duties.contains(&(t[0].at, t[1].at)), "escort {escort}: «{line}» is not one of their duties {duties:?}");
    }
    assert!(lines > 0, "escort {escort}: no duty stated in:\n{text}");
}

//! Instants with their zone, and the two named policies for turning a wall-clock time into an
//! instant: `strict` for what a person typed (a time inside a daylight-saving gap or overlap is an
//! error), `compatible` for times the planner computes (a gap moves forward by its length, an
//! overlap takes the earlier instant), as RFC 5545 and jiff's `compatible` do.

use chrono::{
    DateTime, Datelike, Duration, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, SecondsFormat, TimeZone, Utc,
    Weekday,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// An instant, stored in UTC, together with the zone it is shown in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Zoned {
    utc: DateTime<Utc>,
    zone: Tz,
}

impl Zoned {
    pub fn new(utc: DateTime<Utc>, zone: Tz) -> Self {
        Self { utc, zone }
    }

    pub fn from_local(local: DateTime<Tz>) -> Self {
        Self { utc: local.with_timezone(&Utc), zone: local.timezone() }
    }

    pub fn utc(&self) -> DateTime<Utc> {
        self.utc
    }

    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// The wall-clock time in this instant's own zone.
    pub fn local(&self) -> DateTime<Tz> {
        self.utc.with_timezone(&self.zone)
    }

    /// The same instant shown in another zone.
    pub fn in_zone(&self, zone: Tz) -> Self {
        Self { utc: self.utc, zone }
    }

    pub fn date(&self) -> NaiveDate {
        self.local().date_naive()
    }

    pub fn time(&self) -> NaiveTime {
        self.local().time()
    }

    pub fn add(&self, d: Duration) -> Self {
        Self { utc: self.utc + d, zone: self.zone }
    }
}

impl PartialOrd for Zoned {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Zoned {
    /// Instants order by UTC; the zone only breaks ties so that `Ord` agrees with `Eq`.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.utc.cmp(&other.utc).then_with(|| self.zone.name().cmp(other.zone.name()))
    }
}

#[derive(Serialize, Deserialize)]
struct ZonedRepr {
    utc: DateTime<Utc>,
    zone: Tz,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    local: Option<String>,
}

impl Serialize for Zoned {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // RFC 3339 to the second, as "%Y-%m-%dT%H:%M:%S%:z" would give, without parsing a format
        // string for every instant of every plan.
        let local = self.local().to_rfc3339_opts(SecondsFormat::Secs, false);
        ZonedRepr { utc: self.utc, zone: self.zone, local: Some(local) }.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Zoned {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = ZonedRepr::deserialize(d)?;
        Ok(Self { utc: r.utc, zone: r.zone })
    }
}

/// Why a typed wall-clock time names no single instant.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LocalTimeError {
    #[error("{local} does not exist in {zone}: the clocks skip it when daylight-saving time starts")]
    Nonexistent { local: NaiveDateTime, zone: Tz },
    #[error(
        "{local} happens twice in {zone} (at {earlier} and at {later}) because daylight-saving time ends; give the time in UTC or avoid the repeated hour"
    )]
    Ambiguous { local: NaiveDateTime, zone: Tz, earlier: DateTime<FixedOffset>, later: DateTime<FixedOffset> },
}

/// A typed wall-clock time to an instant; refuses gaps and overlaps.
pub fn resolve_strict(local: NaiveDateTime, zone: Tz) -> Result<DateTime<Tz>, LocalTimeError> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(t) => Ok(t),
        LocalResult::Ambiguous(a, b) => Err(LocalTimeError::Ambiguous { local, zone, earlier: a.fixed_offset(), later: b.fixed_offset() }),
        LocalResult::None => Err(LocalTimeError::Nonexistent { local, zone }),
    }
}

/// A computed wall-clock time to an instant, never failing: in an overlap the earlier instant, in
/// a gap the instant the clock would show had it not jumped (02:30 on a spring-forward night
/// becomes 03:30 daylight time).
pub fn resolve_compatible(local: NaiveDateTime, zone: Tz) -> DateTime<Tz> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(t) => t,
        LocalResult::Ambiguous(a, _) => a,
        LocalResult::None => {
            // The offset in force just before the gap; gaps are at most a few hours long.
            let mut probe = local;
            for _ in 0..48 {
                probe -= Duration::hours(1);
                if let LocalResult::Single(t) | LocalResult::Ambiguous(t, _) = zone.from_local_datetime(&probe) {
                    let offset = t.offset().fix();
                    let utc = local - Duration::seconds(i64::from(offset.local_minus_utc()));
                    return Utc.from_utc_datetime(&utc).with_timezone(&zone);
                }
            }
            // Unreachable with the tz database; fall back to treating the time as UTC.
            Utc.from_utc_datetime(&local).with_timezone(&zone)
        }
    }
}

/// Whether the wait from `from` to `until`, at a place in `zone`, goes through the small hours
/// (02:00 there): a night at the airport. The one rule for an overnight connection, for the
/// coordinator's warning and the patient's message alike.
pub fn through_small_hours(from: Zoned, until: Zoned, zone: Tz) -> bool {
    let small_hours = NaiveTime::from_hms_opt(2, 0, 0).unwrap_or_default();
    (0..=(until.utc() - from.utc()).num_days() + 1)
        .map(|k| at_local(from.in_zone(zone).date() + Duration::days(k), small_hours, zone).utc())
        .any(|night| from.utc() <= night && night < until.utc())
}

/// The instant at `time` on `date` in `zone`, by the compatible policy.
pub fn at_local(date: NaiveDate, time: NaiveTime, zone: Tz) -> Zoned {
    Zoned::from_local(resolve_compatible(date.and_time(time), zone))
}

/// The short name clients and people expect for a zone at an instant. tzdb has only a number for
/// some zones ("+08" for Asia/Kuala_Lumpur); those get their customary name.
pub fn zone_abbreviation(z: &Zoned) -> String {
    // What "%Z" prints: tzdb's abbreviation, or the offset when it has none.
    let abbr = z.local().offset().to_string();
    if !abbr.starts_with(['+', '-']) {
        return abbr;
    }
    match z.zone() {
        Tz::Asia__Kuala_Lumpur | Tz::Asia__Kuching => "MYT".to_owned(),
        Tz::Asia__Singapore => "SGT".to_owned(),
        Tz::Asia__Manila => "PHT".to_owned(),
        _ => format!("UTC{abbr}"),
    }
}

/// How a Japanese message names a zone: 「日本時間」, 「マレーシア時間」, a city otherwise.
pub fn zone_name_ja(zone: Tz) -> String {
    let name = match zone {
        Tz::Asia__Tokyo => "日本時間",
        Tz::Asia__Kuala_Lumpur | Tz::Asia__Kuching => "マレーシア時間",
        Tz::Asia__Singapore => "シンガポール時間",
        Tz::Asia__Bangkok => "タイ時間",
        Tz::Asia__Seoul => "韓国時間",
        Tz::Asia__Shanghai | Tz::Asia__Hong_Kong | Tz::Asia__Taipei => "中国・台湾時間",
        Tz::America__Los_Angeles => "ロサンゼルス時間",
        Tz::America__New_York => "ニューヨーク時間",
        Tz::America__Chicago => "シカゴ時間",
        Tz::Pacific__Honolulu => "ハワイ時間",
        Tz::Europe__London => "ロンドン時間",
        Tz::Europe__Paris => "パリ時間",
        Tz::Europe__Berlin => "ドイツ時間",
        Tz::Australia__Sydney => "シドニー時間",
        _ => return format!("{}時間", zone.name()),
    };
    name.to_owned()
}

/// The weekday in Japanese, one character: 月火水木金土日.
pub fn weekday_ja(w: Weekday) -> &'static str {
    match w {
        Weekday::Mon => "月",
        Weekday::Tue => "火",
        Weekday::Wed => "水",
        Weekday::Thu => "木",
        Weekday::Fri => "金",
        Weekday::Sat => "土",
        Weekday::Sun => "日",
    }
}

/// `12月3日(木)`, with the year in front when it is not `current_year`.
pub fn date_ja(d: NaiveDate, current_year: Option<i32>) -> String {
    let md = format!("{}月{}日({})", d.month(), d.day(), weekday_ja(d.weekday()));
    match current_year {
        Some(y) if y == d.year() => md,
        _ => format!("{}年{md}", d.year()),
    }
}

/// `Thu 3 Dec`, with the year when it is not `current_year`.
pub fn date_en(d: NaiveDate, current_year: Option<i32>) -> String {
    match current_year {
        Some(y) if y == d.year() => d.format("%a %-d %b").to_string(),
        _ => d.format("%a %-d %b %Y").to_string(),
    }
}

/// Whole calendar months added, clamped to the month's last day (31 Jan + 1 month = 28 Feb).
pub fn add_months(d: NaiveDate, months: u32) -> NaiveDate {
    d.checked_add_months(chrono::Months::new(months)).unwrap_or(NaiveDate::MAX)
}

/// Hours and minutes as `HH:MM` in settings files.
pub mod hhmm {
    use chrono::NaiveTime;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn parse(s: &str) -> Option<NaiveTime> {
        if s == "24:00" {
            return NaiveTime::from_hms_opt(23, 59, 59);
        }
        NaiveTime::parse_from_str(s, "%H:%M").ok()
    }

    pub fn serialize<S: Serializer>(t: &NaiveTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.format("%H:%M").to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveTime, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).ok_or_else(|| D::Error::custom(format!("`{s}` is not a time of day as HH:MM")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap_or(NaiveDateTime::MIN)
    }

    #[test]
    fn strict_refuses_the_spring_forward_gap_in_los_angeles() {
        let e = resolve_strict(dt("2027-03-14 02:30"), Tz::America__Los_Angeles);
        assert!(matches!(e, Err(LocalTimeError::Nonexistent { .. })), "{e:?}");
    }

    #[test]
    fn strict_refuses_the_fall_back_overlap_in_los_angeles() {
        let e = resolve_strict(dt("2026-11-01 01:30"), Tz::America__Los_Angeles);
        match e {
            Err(LocalTimeError::Ambiguous { earlier, later, .. }) => {
                assert_eq!(later - earlier, Duration::hours(1));
            }
            other => panic!("expected ambiguity, got {other:?}"),
        }
    }

    #[test]
    fn compatible_moves_a_gap_forward_and_takes_the_earlier_of_an_overlap() {
        let gap = resolve_compatible(dt("2027-03-14 02:30"), Tz::America__Los_Angeles);
        assert_eq!(gap.format("%H:%M %Z").to_string(), "03:30 PDT");
        let overlap = resolve_compatible(dt("2026-11-01 01:30"), Tz::America__Los_Angeles);
        assert_eq!(overlap.format("%H:%M %Z").to_string(), "01:30 PDT");
        let london = resolve_compatible(dt("2027-03-28 01:15"), Tz::Europe__London);
        assert_eq!(london.format("%H:%M %Z").to_string(), "02:15 BST");
    }

    #[test]
    fn kuala_lumpur_is_named_myt_and_tokyo_jst() {
        let z = at_local(NaiveDate::from_ymd_opt(2026, 12, 3).unwrap_or_default(), NaiveTime::MIN, Tz::Asia__Kuala_Lumpur);
        assert_eq!(zone_abbreviation(&z), "MYT");
        assert_eq!(zone_abbreviation(&z.in_zone(Tz::Asia__Tokyo)), "JST");
    }

    #[test]
    fn the_day_boundary_between_jst_and_myt() {
        // 00:30 in Tokyo on 4 Dec is still 3 Dec, 23:30, in Kuala Lumpur.
        let z = at_local(
            NaiveDate::from_ymd_opt(2026, 12, 4).unwrap_or_default(),
            NaiveTime::from_hms_opt(0, 30, 0).unwrap_or_default(),
            Tz::Asia__Tokyo,
        );
        assert_eq!(z.in_zone(Tz::Asia__Kuala_Lumpur).date(), NaiveDate::from_ymd_opt(2026, 12, 3).unwrap_or_default());
        assert_eq!(date_ja(z.date(), Some(2026)), "12月4日(金)");
        assert_eq!(date_ja(z.date(), Some(2025)), "2026年12月4日(金)");
    }

    #[test]
    fn serialized_instants_carry_utc_zone_and_local_time() {
        let z = at_local(
            NaiveDate::from_ymd_opt(2026, 12, 3).unwrap_or_default(),
            NaiveTime::from_hms_opt(10, 0, 0).unwrap_or_default(),
            Tz::Asia__Kuala_Lumpur,
        );
        let json = serde_json::to_string(&z).unwrap_or_default();
        assert_eq!(json, r#"{"utc":"2026-12-03T02:00:00Z","zone":"Asia/Kuala_Lumpur","local":"2026-12-03T10:00:00+08:00"}"#);
        let back: Zoned = serde_json::from_str(&json).unwrap_or(z.in_zone(Tz::UTC));
        assert_eq!(back, z);

        // Local time drops sub-seconds, and UTC is written "+00:00", not "Z".
        let utc: DateTime<Utc> = "2027-03-14T10:30:00.750Z".parse().unwrap_or_default();
        let la = Zoned::new(utc, Tz::America__Los_Angeles);
        let v = serde_json::to_value(la).unwrap_or_default();
        assert_eq!(v["local"], "2027-03-14T03:30:00-07:00", "daylight time: {v}");
        assert_eq!(v["utc"], "2027-03-14T10:30:00.750Z");
        assert_eq!(serde_json::to_value(la.in_zone(Tz::UTC)).unwrap_or_default()["local"], "2027-03-14T10:30:00+00:00");
    }
}

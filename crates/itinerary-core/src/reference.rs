//! Reference tables the planner reads but never changes: airports (IATA code to time zone) and
//! public holidays by region. Loading them from files is the config crate's job.

use std::collections::{BTreeMap, HashMap};

use chrono::{Datelike, NaiveDate};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// One airport, as the airport table gives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Airport {
    pub iata: String,
    pub name: String,
    pub city: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    pub zone: Tz,
    /// The name Japanese travellers know it by (`airports-ja.csv`), for the airports patients use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_ja: Option<String>,
}

impl Airport {
    /// `成田国際空港(NRT)` in Japanese where the table has a Japanese name, else `Narita International Airport (NRT)`.
    pub fn place(&self) -> crate::plan::Text {
        let en = format!("{} ({})", self.name, self.iata);
        let ja = self.name_ja.as_ref().map_or_else(|| en.clone(), |n| format!("{n}({})", self.iata));
        crate::plan::Text::new(ja, en)
    }
}

/// IATA code → airport.
#[derive(Clone, Debug, Default)]
pub struct AirportTable {
    by_iata: HashMap<String, Airport>,
}

impl AirportTable {
    pub fn new(airports: impl IntoIterator<Item = Airport>) -> Self {
        Self { by_iata: airports.into_iter().map(|a| (a.iata.clone(), a)).collect() }
    }

    /// Looks a code up as typed, ignoring case and surrounding spaces.
    pub fn get(&self, code: &str) -> Option<&Airport> {
        let code = code.trim();
        if code.len() == 3 && code.bytes().all(|b| b.is_ascii_alphabetic()) { self.by_iata.get(&code.to_ascii_uppercase()) } else { None }
    }

    /// Gives `iata` its Japanese name; false when the table has no such airport.
    pub fn name_in_japanese(&mut self, iata: &str, name: &str) -> bool {
        match self.by_iata.get_mut(iata) {
            Some(a) => {
                a.name_ja = Some(name.to_owned());
                true
            }
            None => false,
        }
    }

    pub fn len(&self) -> usize {
        self.by_iata.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_iata.is_empty()
    }
}

/// A public holiday. Tentative ones (Islamic holidays fixed by moon sighting) may move by a day.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holiday {
    pub date: NaiveDate,
    /// In English.
    pub name: String,
    /// In Japanese, where the table gives it (`English / 日本語`).
    pub name_ja: Option<String>,
    pub tentative: bool,
}

impl Holiday {
    /// Its name in Japanese (`ja`) or English, the English one where no Japanese is known.
    pub fn name_in(&self, ja: bool) -> &str {
        match (&self.name_ja, ja) {
            (Some(n), true) => n,
            _ => &self.name,
        }
    }
}

/// Public holidays by region: `MY-KUL` (Kuala Lumpur), `MY-SGR` (Selangor), `JP`.
#[derive(Clone, Debug, Default)]
pub struct HolidayCalendar {
    regions: BTreeMap<String, BTreeMap<NaiveDate, Holiday>>,
}

impl HolidayCalendar {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, region: &str, holiday: Holiday) {
        self.regions.entry(region.to_owned()).or_default().insert(holiday.date, holiday);
    }

    pub fn has_region(&self, region: &str) -> bool {
        self.regions.contains_key(region)
    }

    pub fn get(&self, region: &str, date: NaiveDate) -> Option<&Holiday> {
        self.regions.get(region)?.get(&date)
    }

    /// The holiday on `date` in any of `regions`, the first region first.
    pub fn any<'a>(&'a self, regions: &[String], date: NaiveDate) -> Option<&'a Holiday> {
        regions.iter().find_map(|r| self.get(r, date))
    }

    /// Holidays of `regions` between two dates, both included, in date order.
    pub fn between<'a>(&'a self, regions: &'a [String], from: NaiveDate, to: NaiveDate) -> impl Iterator<Item = &'a Holiday> + 'a {
        let mut out: BTreeMap<NaiveDate, &Holiday> = BTreeMap::new();
        if from <= to {
            for r in regions {
                if let Some(days) = self.regions.get(r) {
                    for (d, h) in days.range(from..=to) {
                        out.entry(*d).or_insert(h);
                    }
                }
            }
        }
        out.into_values()
    }

    /// The first and last date a region's table covers, to warn when a plan reaches past it. The
    /// table lists whole years (`scripts/holiday-table`): from 1 January of its first year to 31
    /// December of its last, so that the weeks after a year's last holiday are covered too.
    pub fn coverage(&self, region: &str) -> Option<(NaiveDate, NaiveDate)> {
        let days = self.regions.get(region)?;
        let (first, last) = (days.keys().next()?, days.keys().next_back()?);
        Some((NaiveDate::from_ymd_opt(first.year(), 1, 1)?, NaiveDate::from_ymd_opt(last.year(), 12, 31)?))
    }
}

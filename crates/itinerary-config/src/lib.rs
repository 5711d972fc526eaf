//! Loads the clinic's reference data and settings from a `config/` directory into the core's
//! types: `clinic.toml` (clinic, rules), `protocols.toml`, `resources.toml` (escorts, chairs,
//! lab), `holidays.csv` and `airports.csv`. Operators edit these files; nothing is compiled in.
//! Every error names the file and, where it can, the line and field.
//!
//! ```
//! let setup = itinerary_config::load(&itinerary_config::repo_config_dir()).unwrap();
//! assert_eq!(setup.airports.get("KUL").unwrap().zone, chrono_tz::Tz::Asia__Kuala_Lumpur);
//! assert_eq!(setup.clinic.zone, chrono_tz::Tz::Asia__Kuala_Lumpur);
//! ```

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use chrono_tz::Tz;
use itinerary_core::clinic::{CalendarSettings, Clinic, ClinicSetup, Protocol, Resources, Rules};
use itinerary_core::reference::{Airport, AirportTable, Holiday, HolidayCalendar};
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

fn invalid(path: &Path, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { path: path.to_owned(), message: message.into() }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })
}

fn toml_file<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    toml::from_str(&read(path)?).map_err(|e| invalid(path, e.to_string()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClinicFile {
    clinic: Clinic,
    #[serde(default)]
    rules: Rules,
    calendar: CalendarSettings,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProtocolsFile {
    protocol: Vec<Protocol>,
}

#[derive(Deserialize)]
struct AirportRow {
    iata: String,
    #[expect(dead_code, reason = "a column of the table, kept for readers of the file")]
    icao: String,
    name: String,
    city: String,
    country: String,
    tz: String,
}

#[derive(Deserialize)]
struct HolidayRow {
    date: String,
    country: String,
    subdivision: String,
    name: String,
    tentative: String,
}

/// Parses `airports.csv` (iata, icao, name, city, country, tz).
pub fn parse_airports(path: &Path, text: &str) -> Result<AirportTable, ConfigError> {
    let mut rdr = csv::ReaderBuilder::new().comment(Some(b'#')).from_reader(text.as_bytes());
    let mut out = Vec::new();
    for (i, row) in rdr.deserialize::<AirportRow>().enumerate() {
        let row = row.map_err(|e| invalid(path, format!("row {}: {e}", i + 2)))?;
        let zone: Tz = row.tz.parse().map_err(|_| invalid(path, format!("{}: unknown time zone `{}`", row.iata, row.tz)))?;
        out.push(Airport { iata: row.iata, name: row.name, city: row.city, country: row.country, zone, name_ja: None });
    }
    Ok(AirportTable::new(out))
}

#[derive(Deserialize)]
struct AirportNameRow {
    iata: String,
    name_ja: String,
}

/// Adds the Japanese names of `airports-ja.csv` (iata, name_ja) to `airports`.
pub fn parse_airport_names_ja(path: &Path, text: &str, airports: &mut AirportTable) -> Result<(), ConfigError> {
    let mut rdr = csv::ReaderBuilder::new().comment(Some(b'#')).from_reader(text.as_bytes());
    for (i, row) in rdr.deserialize::<AirportNameRow>().enumerate() {
        let row = row.map_err(|e| invalid(path, format!("row {}: {e}", i + 2)))?;
        if row.name_ja.trim().is_empty() || !airports.name_in_japanese(&row.iata, row.name_ja.trim()) {
            return Err(invalid(path, format!("row {}: `{}` is not in airports.csv or has no name", i + 2, row.iata)));
        }
    }
    Ok(())
}

/// Parses `holidays.csv` (date, country, subdivision, name, tentative) into regions `MY-KUL`, `JP`.
pub fn parse_holidays(path: &Path, text: &str) -> Result<HolidayCalendar, ConfigError> {
    let mut rdr = csv::ReaderBuilder::new().comment(Some(b'#')).from_reader(text.as_bytes());
    let mut cal = HolidayCalendar::new();
    for (i, row) in rdr.deserialize::<HolidayRow>().enumerate() {
        let row = row.map_err(|e| invalid(path, format!("row {}: {e}", i + 2)))?;
        let date = NaiveDate::parse_from_str(&row.date, "%Y-%m-%d")
            .map_err(|_| invalid(path, format!("row {}: date `{}` is not YYYY-MM-DD", i + 2, row.date)))?;
        let tentative = match row.tentative.as_str() {
            "yes" => true,
            "no" | "" => false,
            other => return Err(invalid(path, format!("row {}: tentative `{other}` is not yes or no", i + 2))),
        };
        let region = if row.subdivision.is_empty() { row.country.clone() } else { format!("{}-{}", row.country, row.subdivision) };
        // `English / 日本語`, as scripts/holiday-table writes every row.
        let (name, name_ja) = match row.name.split_once(" / ") {
            Some((en, ja)) => (en.trim().to_owned(), Some(ja.trim().to_owned())),
            None => (row.name.clone(), None),
        };
        cal.insert(&region, Holiday { date, name, name_ja, tentative });
    }
    Ok(cal)
}

/// Loads and checks everything under `dir`.
pub fn load(dir: &Path) -> Result<ClinicSetup, ConfigError> {
    let clinic_path = dir.join("clinic.toml");
    let ClinicFile { clinic, rules, calendar } = toml_file(&clinic_path)?;
    if let Some((field, problem)) = rules.check().into_iter().next() {
        return Err(invalid(&clinic_path, format!("rules.{field}: {problem}")));
    }
    if let Some((field, problem)) = calendar.check().into_iter().next() {
        return Err(invalid(&clinic_path, format!("calendar.{field}: {problem}")));
    }
    if clinic.opens >= clinic.closes {
        return Err(invalid(&clinic_path, "clinic.opens must be before clinic.closes"));
    }
    let ProtocolsFile { protocol: protocols } = toml_file(&dir.join("protocols.toml"))?;
    for p in &protocols {
        if p.infusions == 0 || (p.infusions > 1 && (p.interval_days == 0 || !p.allowed_interval_days.contains(&p.interval_days))) {
            return Err(invalid(
                &dir.join("protocols.toml"),
                format!("protocol {}: needs infusions ≥ 1 and, for a set, an interval_days among allowed_interval_days", p.id),
            ));
        }
    }
    let resources: Resources = toml_file(&dir.join("resources.toml"))?;
    for e in &resources.escorts {
        if e.works_from >= e.works_until {
            return Err(invalid(&dir.join("resources.toml"), format!("escort {}: works_from must be before works_until", e.id)));
        }
    }
    let airports_path = dir.join("airports.csv");
    let mut airports = parse_airports(&airports_path, &read(&airports_path)?)?;
    // Optional: without it every airport is named in English.
    let names_path = dir.join("airports-ja.csv");
    if names_path.exists() {
        parse_airport_names_ja(&names_path, &read(&names_path)?, &mut airports)?;
    }
    let holidays_path = dir.join("holidays.csv");
    let holidays = parse_holidays(&holidays_path, &read(&holidays_path)?)?;
    for r in &clinic.holiday_regions {
        if !holidays.has_region(r) {
            return Err(invalid(&clinic_path, format!("clinic.holiday_regions: `{r}` has no rows in holidays.csv")));
        }
    }
    Ok(ClinicSetup { clinic, rules, protocols, resources, airports, holidays, calendar })
}

/// The repository's own `config/`, for tests and benchmarks.
pub fn repo_config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_config_loads() {
        let setup = load(&repo_config_dir()).expect("config/ loads");
        assert!(setup.airports.len() > 7000);
        assert_eq!(setup.airports.get("kul").map(|a| a.zone), Some(Tz::Asia__Kuala_Lumpur));
        assert_eq!(setup.airports.get("NRT").map(|a| a.place().ja), Some("成田国際空港(NRT)".to_owned()));
        assert_eq!(setup.airports.get("CDG").map(|a| a.place().ja), setup.airports.get("CDG").map(|a| a.place().en));
        assert!(setup.protocol("single-infusion").is_some());
        assert!(setup.protocol("set-of-3").is_some());
        let d = NaiveDate::from_ymd_opt(2026, 8, 31).unwrap();
        assert!(!setup.is_clinic_day(d), "National Day");
    }

    #[test]
    fn a_bad_holiday_row_names_its_row() {
        let e = parse_holidays(Path::new("h.csv"), "date,country,subdivision,name,tentative\n2026-13-01,MY,KUL,X,no\n").unwrap_err();
        assert!(e.to_string().contains("row 2"), "{e}");
    }
}

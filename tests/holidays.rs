//! The holiday table is what its generator makes (issue 14, item 5): `config/holidays.csv` equals
//! the output of `scripts/holiday-table` with the pinned `holidays` package (the interop venv of
//! `scripts/interop-setup`), so nobody edits a generated row by hand and forgets it, and a bump of
//! the pin shows up as a reviewed change to the table.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

#[test]
fn the_committed_holiday_table_is_what_the_pinned_generator_makes() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("target/interop-venv/bin/python");
    assert!(python.exists(), "{} is missing: run scripts/interop-setup (scripts/test does)", python.display());
    let out = Command::new(python).current_dir(&root).args(["scripts/holiday-table", "--check", "config/holidays.csv"]).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("as holidays 0.109 makes it"), "{said}");
}

/// The table reaches at least 2031, for every region the clinic and its patients use, with the
/// moon-sighting holidays marked tentative every year.
#[test]
fn the_holiday_table_reaches_2031_with_tentative_islamic_holidays() {
    let text = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/holidays.csv")).unwrap();
    for year in 2026..=2031 {
        for region in [",MY,KUL,", ",MY,SGR,", ",JP,,"] {
            let rows: Vec<&str> = text.lines().filter(|l| l.starts_with(&year.to_string()) && l.contains(region)).collect();
            assert!(rows.len() >= 14, "{year}{region}: {} rows", rows.len());
            if region.starts_with(",MY") {
                let eid: Vec<&&str> = rows.iter().filter(|l| l.contains("Eid al-Fitr")).collect();
                assert!(!eid.is_empty(), "{year}{region}: no Eid al-Fitr");
                assert!(eid.iter().all(|l| l.ends_with(",yes")), "{eid:?}");
                assert!(rows.iter().any(|l| l.contains("Malaysia Day") && l.ends_with(",no")), "{year}{region}");
            }
        }
    }
}

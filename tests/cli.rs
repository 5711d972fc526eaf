//! The `itinerary` command end to end: the examples' JSON against golden files, and bad input
//! turned into clear errors with a non-zero exit. Set `UPDATE_GOLDEN=1` to rewrite the golden
//! files after an intended change, and review the diff.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod statements;

use std::path::PathBuf;
use std::process::{Command, Output};

use chrono::{DateTime, Datelike, NaiveDateTime, TimeZone, Utc};

/// A fixed "now", before every example, so the golden files do not change with the clock.
const NOW: &str = "2026-11-26T00:00:00Z";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn itinerary(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_itinerary")).current_dir(root()).args(args).output().expect("runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn golden(example: &str, expect_code: i32) {
    let file = format!("examples/{example}.toml");
    let out = itinerary(&["plan", &file, "--json", "--now", NOW]);
    assert_eq!(out.status.code(), Some(expect_code), "{example}: {}", text(&out.stderr));
    let json = text(&out.stdout);
    serde_json::from_str::<serde_json::Value>(&json).expect("valid JSON");
    let path = root().join("tests/golden").join(format!("{example}.json"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &json).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{} missing: run with UPDATE_GOLDEN=1", path.display()));
    assert!(json == want, "{example}: output differs from {}; run with UPDATE_GOLDEN=1 and review the diff", path.display());
}

#[test]
fn golden_mh71_red_eye() {
    golden("mh71-red-eye", 0);
}

#[test]
fn golden_eve_of_holiday() {
    golden("eve-of-holiday", 0);
}

#[test]
fn golden_los_angeles_patient() {
    golden("los-angeles-patient", 0);
}

#[test]
fn golden_los_angeles_via_narita() {
    golden("los-angeles-via-narita", 0);
}

#[test]
fn golden_sapporo_via_haneda() {
    golden("sapporo-via-haneda", 0);
}

#[test]
fn golden_set_of_3_14_days() {
    golden("set-of-3-14-days", 0);
}

#[test]
fn golden_infeasible() {
    golden("infeasible", 1);
}

/// Every message of an example's season (`plan --messages`) against its golden text file, and
/// every time those messages state against the plan's instants.
fn golden_messages(example: &str, cancel_at: Option<&str>) {
    golden_messages_of(example, &format!("examples/{example}.toml"), cancel_at, if cancel_at.is_some() { "cancelled" } else { "" });
}

/// `golden_messages` of `file` (a variant of the example), kept as `EXAMPLE.VARIANT.txt`.
fn golden_messages_of(example: &str, file: &str, cancel_at: Option<&str>, variant: &str) {
    let mut args = vec!["plan", file, "--messages", "--now", NOW, "--itinerary", example];
    if let Some(at) = cancel_at {
        args.extend(["--cancel-at", at]);
    }
    let out = itinerary(&args);
    assert_eq!(out.status.code(), Some(0), "{example}: {}", text(&out.stderr));
    let season = text(&out.stdout);
    let name = if variant.is_empty() { example.to_owned() } else { format!("{example}.{variant}") };
    let path = root().join("tests/golden/messages").join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &season).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{} missing: run with UPDATE_GOLDEN=1", path.display()));
    assert!(season == want, "{example}: messages differ from {}; run with UPDATE_GOLDEN=1 and review the diff", path.display());

    let plan: serde_json::Value = serde_json::from_slice(&itinerary(&["plan", file, "--json", "--now", NOW]).stdout).unwrap();
    let mut checked = 0;
    for (recipient, sent_at, zone, subject, body) in messages_of(&season) {
        statements::check_message(&plan, sent_at, zone, &subject, &body);
        if let Some(escort) = recipient.split("(escort ").nth(1).and_then(|r| r.split(',').next()) {
            statements::check_escort_times(&plan, escort, &body, sent_at.with_timezone(&zone).year());
        }
        checked += 1;
    }
    assert!(checked > 10, "{example}: only {checked} messages");
}

/// (recipient, sent at, reader's zone, subject, text) of each message in a `--messages` output.
fn messages_of(season: &str) -> Vec<(String, DateTime<Utc>, chrono_tz::Tz, String, String)> {
    let mut out = Vec::new();
    let mut recipient = String::new();
    for block in season.split("\n──── ").skip(1) {
        let (head, rest) = block.split_once('\n').unwrap();
        // `2027-01-10 19:00 JST (Asia/Tokyo) · kind · key`
        let zone: chrono_tz::Tz = head.split(['(', ')']).nth(1).unwrap().parse().unwrap();
        let local = NaiveDateTime::parse_from_str(&head[..16], "%Y-%m-%d %H:%M").unwrap();
        let at = zone.from_local_datetime(&local).earliest().unwrap().with_timezone(&Utc);
        let (message, next) = match rest.split_once("\n════════ ") {
            Some((m, n)) => (m, Some(n)),
            None => (rest, None),
        };
        let (subject, body) = message.split_once("\n\n").unwrap();
        out.push((recipient.clone(), at, zone, subject.trim_start_matches("Subject: ").to_owned(), body.to_owned()));
        if let Some(n) = next {
            recipient = n.lines().next().unwrap().to_owned();
        }
    }
    // The first recipient's banner comes before the first message.
    let first = season.split("════════ ").nth(1).and_then(|s| s.lines().next()).unwrap_or_default().to_owned();
    for m in out.iter_mut().take_while(|m| m.0.is_empty()) {
        m.0 = first.clone();
    }
    out
}

#[test]
fn golden_messages_mh71_red_eye() {
    golden_messages("mh71-red-eye", None);
}

#[test]
fn golden_messages_eve_of_holiday() {
    golden_messages("eve-of-holiday", None);
}

#[test]
fn golden_messages_los_angeles_patient() {
    golden_messages("los-angeles-patient", None);
}

/// Connections: every flight of the day in its own airports' times, the departure message at
/// Los Angeles time before the first flight, and from Sapporo an hour before the domestic one.
#[test]
fn golden_messages_los_angeles_via_narita() {
    golden_messages("los-angeles-via-narita", None);
}

#[test]
fn golden_messages_sapporo_via_haneda() {
    golden_messages("sapporo-via-haneda", None);
}

/// The patient in Los Angeles who reads English: every patient message in English, her zone
/// (PST, then PDT after 14 March) beside Malaysia's.
#[test]
fn golden_messages_los_angeles_patient_in_english() {
    let src = std::fs::read_to_string(root().join("examples/los-angeles-patient.toml")).unwrap();
    assert!(src.contains(r#"language = "ja""#));
    let dir = std::env::temp_dir().join(format!("itinerary-cli-en-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("los-angeles-patient.toml");
    std::fs::write(&path, src.replace(r#"language = "ja""#, r#"language = "en""#)).unwrap();
    golden_messages_of("los-angeles-patient", path.to_str().unwrap(), None, "en");
}

#[test]
fn golden_messages_set_of_3_14_days() {
    golden_messages("set-of-3-14-days", None);
}

/// The set of three cancelled after its first trip: one summary naming what will not happen,
/// one cancellation per appointment still ahead, each naming it.
#[test]
fn golden_messages_set_of_3_cancelled_after_the_first_trip() {
    golden_messages("set-of-3-14-days", Some("2027-01-20T03:00:00Z"));
    let season = std::fs::read_to_string(root().join("tests/golden/messages/set-of-3-14-days.cancelled.txt")).unwrap();
    let cancels: Vec<_> = messages_of(&season).into_iter().filter(|m| m.3.contains("取消") || m.3.starts_with("[")).collect();
    let summary: Vec<_> = cancels.iter().filter(|m| m.3.contains("ご旅程取消")).collect();
    assert_eq!(summary.len(), 1, "one summary");
    assert!(summary[0].4.contains("すべて取り消し") && summary[0].4.contains("幹細胞点滴(3/3回目)"), "{}", summary[0].4);
    assert!(!summary[0].4.contains("幹細胞点滴(1/3回目)"), "the first infusion had happened: {}", summary[0].4);
    let patient: Vec<_> = cancels.iter().filter(|m| m.3.starts_with("【") && m.3.contains("ご予定の取消")).collect();
    assert!(patient.len() > 5, "{}", patient.len());
    let bodies: std::collections::BTreeSet<&str> = patient.iter().map(|m| m.4.as_str()).collect();
    assert_eq!(bodies.len(), patient.len(), "each cancellation names its own appointment");
}

#[test]
fn every_example_has_a_golden_file() {
    // Request files only: examples/ also holds the load client (load.rs).
    for e in std::fs::read_dir(root().join("examples")).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        assert!(root().join("tests/golden").join(format!("{name}.json")).exists(), "examples/{name}.toml has no golden file");
    }
}

#[test]
fn the_timeline_shows_both_zones() {
    let out = itinerary(&["plan", "examples/mh71-red-eye.toml", "--now", NOW]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("山田 太郎 様"), "{s}");
    assert!(s.contains("12月3日(木) 09:00 MYT / 10:00 JST"), "{s}");
    assert!(s.contains("12月5日(土) 23:35 MYT / 2026年12月6日(日) 00:35 JST"), "day boundary: {s}");
}

/// Writes a request file with one line replaced, runs `plan`, returns (exit code, stderr).
fn with_change(from: &str, to: &str) -> (Option<i32>, String) {
    let src = std::fs::read_to_string(root().join("examples/mh71-red-eye.toml")).unwrap();
    assert!(src.contains(from), "fixture lacks {from}");
    let dir = std::env::temp_dir().join(format!("itinerary-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{:x}.toml", fnv1a(to)));
    std::fs::write(&path, src.replace(from, to)).unwrap();
    let out = itinerary(&["plan", path.to_str().unwrap(), "--now", NOW]);
    (out.status.code(), text(&out.stderr))
}

/// A file name per variant (FNV-1a), so parallel tests never share a file.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn assert_bad(from: &str, to: &str, field: &str, value: &str) {
    let (code, err) = with_change(from, to);
    assert_eq!(code, Some(2), "{to}: {err}");
    assert!(err.contains(field) && err.contains(value), "error for {to:?} should name {field} and {value}: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn an_unknown_airport_is_named() {
    assert_bad(r#"to = "KUL""#, r#"to = "XQZ""#, "trips[0].outbound.to", "XQZ");
}

#[test]
fn a_trip_that_does_not_land_in_the_clinics_country_is_refused() {
    assert_bad(r#"to = "KUL""#, r#"to = "BKK""#, "trips[0].outbound.to", "not in MY where the clinic is");
}

#[test]
fn a_flight_that_lands_before_it_departs_is_refused() {
    assert_bad(r#"arrive = "2026-12-02 04:30""#, r#"arrive = "2026-12-01 04:30""#, "trips[0].outbound.arrive", "2026-12-01 04:30");
}

#[test]
fn a_flight_home_before_arrival_is_refused() {
    assert_bad(
        r#"depart = "2026-12-05 23:35", to = "NRT", arrive = "2026-12-06 07:15""#,
        r#"depart = "2026-12-01 23:35", to = "NRT", arrive = "2026-12-02 07:15""#,
        "trips[0].return.depart",
        "2026-12-01 23:35",
    );
}

#[test]
fn a_local_time_in_a_daylight_saving_gap_is_refused() {
    // Los Angeles springs forward at 02:00 on 14 Mar 2027.
    let (code, err) = with_change(
        r#"outbound = { flight = "MH71", from = "NRT", depart = "2026-12-01 21:40""#,
        r#"outbound = { flight = "MH71", from = "LAX", depart = "2027-03-14 02:30""#,
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("trips[0].outbound.depart") && err.contains("does not exist in America/Los_Angeles"), "{err}");
}

#[test]
fn a_local_time_that_happens_twice_is_refused() {
    let (code, err) = with_change(
        r#"outbound = { flight = "MH71", from = "NRT", depart = "2026-12-01 21:40""#,
        r#"outbound = { flight = "MH71", from = "LAX", depart = "2026-11-01 01:30""#,
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("trips[0].outbound.depart") && err.contains("happens twice"), "{err}");
}

#[test]
fn an_unknown_protocol_is_named_with_the_known_ones() {
    assert_bad(r#"protocol = "single-infusion""#, r#"protocol = "double-dose""#, "protocol", "single-infusion, set-of-3");
}

#[test]
fn bad_patient_fields_are_each_named() {
    assert_bad(r#"email = "taro.yamada@example.jp""#, r#"email = "taro.yamada@""#, "patient.email", "taro.yamada@");
    assert_bad(r#"home_zone = "Asia/Tokyo""#, r#"home_zone = "Asia/Osaka""#, "patient.home_zone", "Asia/Osaka");
    assert_bad(r#"birth_date = "1978-05-14""#, r#"birth_date = "1978-02-30""#, "patient.birth_date", "1978-02-30");
    assert_bad(r#"name = "山田 太郎""#, r#"name = "山田\r\nATTENDEE:mailto:x@y.z""#, "patient.name", "line break");
}

#[test]
fn under_18_and_a_short_passport_exit_1_with_the_fields_named() {
    let (code, err) = with_change(r#"birth_date = "1978-05-14""#, r#"birth_date = "2009-01-01""#);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("patient.birth_date") && err.contains("17"), "{err}");
    let (code, err) = with_change(r#"passport_expiry = "2031-03-31""#, r#"passport_expiry = "2027-01-31""#);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("patient.passport_expiry") && err.contains("2027-01-31"), "{err}");
}

#[test]
fn a_malformed_file_says_where() {
    let (code, err) = with_change(r#"protocol = "single-infusion""#, r#"protocol = "single-infusion"#);
    assert_eq!(code, Some(2));
    assert!(err.contains("not a valid request") && err.contains("line"), "{err}");
    let (code, err) = with_change(r#"protocol = "single-infusion""#, "protocol = \"single-infusion\"\ncolour = \"blue\"");
    assert_eq!(code, Some(2));
    assert!(err.contains("unknown field") && err.contains("colour"), "{err}");
    let (code, err) = with_change(r#"protocol = "single-infusion""#, "protocol = 7");
    assert_eq!(code, Some(2));
    assert!(err.contains("protocol"), "{err}");
}

#[test]
fn a_missing_file_and_a_missing_config_are_errors_not_panics() {
    let out = itinerary(&["plan", "examples/does-not-exist.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("does-not-exist.toml"));
    let out = itinerary(&["--config", "/nonexistent", "plan", "examples/mh71-red-eye.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("clinic.toml"), "{}", text(&out.stderr));
}

fn ics_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-ics").join(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// The whole-itinerary calendar of the red-eye example, byte for byte: UIDs, DTSTAMP, folding
/// and VTIMEZONEs do not move unless we mean them to. `UPDATE_GOLDEN=1` rewrites it.
#[test]
fn golden_itinerary_ics() {
    let dir = ics_dir("golden");
    let out = itinerary(&["plan", "examples/mh71-red-eye.toml", "--now", NOW, "--ics", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let got = std::fs::read_to_string(dir.join("itinerary.ics")).unwrap();
    let path = root().join("tests/golden/mh71-red-eye.ics");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{} missing: run with UPDATE_GOLDEN=1", path.display()));
    assert!(got == want, "itinerary.ics differs from {}; run with UPDATE_GOLDEN=1 and review the diff", path.display());
}

/// An escort's invite for an airport duty says only what holds whoever else flies (issue 14,
/// item 6): it claimed "Shared with other patients" when the patient flew alone.
#[test]
fn an_escort_invite_claims_no_fellow_passengers() {
    let dir = ics_dir("escort-alone");
    let out = itinerary(&["plan", "examples/mh71-red-eye.toml", "--now", NOW, "--ics", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut pickups = 0;
    for f in std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()) {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        if name.contains(".pickup.escort-") {
            // Unfolded, as a client reads it.
            let body = std::fs::read_to_string(&f).unwrap().replace("\r\n ", "");
            assert!(!body.contains("Shared with other patients"), "{name}");
            assert!(body.contains("comes with an invite of their own"), "{name}");
            pickups += 1;
        }
    }
    assert_eq!(pickups, 1, "one escort invite for the pick-up");
}

/// The same request and instant give the same bytes in every file, run after run.
#[test]
fn calendar_files_are_byte_identical_across_runs() {
    let (a, b) = (ics_dir("same-a"), ics_dir("same-b"));
    for d in [&a, &b] {
        let out = itinerary(&["plan", "examples/set-of-3-14-days.toml", "--now", NOW, "--ics", d.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    let mut names: Vec<_> = std::fs::read_dir(&a).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert!(names.len() > 30, "{names:?}");
    for n in names {
        assert_eq!(std::fs::read(a.join(&n)).unwrap(), std::fs::read(b.join(&n)).unwrap(), "{n:?} differs between runs");
    }
}

#[test]
fn a_bad_itinerary_id_or_state_file_is_an_error_that_says_which() {
    let dir = ics_dir("bad-id");
    let out = itinerary(&["plan", "examples/mh71-red-eye.toml", "--now", NOW, "--itinerary", "a b/c", "--ics", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("itinerary id `a b/c`"), "{}", text(&out.stderr));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("calendar-state.json"), "{ not json").unwrap();
    let out = itinerary(&["plan", "examples/mh71-red-eye.toml", "--now", NOW, "--ics", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("calendar-state.json"), "{}", text(&out.stderr));
    assert!(!dir.join("itinerary.ics").exists(), "nothing written when the state cannot be read");
}

/// Running again on the same DIR after a change: a moved return flight goes out as an update of
/// the same UID with SEQUENCE 1; what did not change is not sent again.
#[test]
fn a_second_run_on_the_same_dir_sends_only_the_changes() {
    let dir = ics_dir("second-run");
    let req = ics_dir("second-run-request");
    std::fs::create_dir_all(&req).unwrap();
    let file = req.join("trip.toml");
    let original = std::fs::read_to_string(root().join("examples/mh71-red-eye.toml")).unwrap();
    std::fs::write(&file, &original).unwrap();
    let run = |now: &str| itinerary(&["plan", file.to_str().unwrap(), "--now", now, "--ics", dir.to_str().unwrap()]);
    assert_eq!(run(NOW).status.code(), Some(0));
    std::fs::write(&file, original.replace("2026-12-05 23:35", "2026-12-06 23:35").replace("2026-12-06 07:15", "2026-12-07 07:15"))
        .unwrap();
    let out = run("2026-11-27T00:00:00Z");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let changes: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("changes.json")).unwrap()).unwrap();
    assert_eq!(changes["version"], 2);
    let kind = |event: &str, attendee: &str| {
        changes["changes"].as_array().unwrap().iter().find(|c| c["event"] == event && c["attendee"] == attendee).map(|c| c["kind"].clone())
    };
    assert_eq!(kind("trip1.return", "patient"), Some("update".into()), "{changes:#}");
    assert_eq!(kind("trip1.outbound", "patient"), Some("unchanged".into()), "{changes:#}");
    let record =
        changes["changes"].as_array().unwrap().iter().find(|c| c["event"] == "trip1.return" && c["attendee"] == "patient").unwrap();
    let ics = std::fs::read_to_string(dir.join(record["file"].as_str().unwrap())).unwrap();
    assert!(ics.contains("METHOD:REQUEST\r\n") && ics.contains("SEQUENCE:1\r\n") && ics.contains("DTSTAMP:20261127T000000Z\r\n"), "{ics}");
    assert!(ics.contains(&format!("UID:{}\r\n", record["uid"].as_str().unwrap())), "{ics}");
    assert!(record["uid"].as_str().unwrap().starts_with("trip.trip1.return.patient-"), "{record}");
}

/// Rerunning on the same request rewrites nothing: every file would differ only in DTSTAMP
/// (issue 14, item 6).
#[test]
fn a_rerun_without_changes_leaves_the_files_as_they_were() {
    let dir = ics_dir("rerun");
    let run = |now: &str| itinerary(&["plan", "examples/mh71-red-eye.toml", "--now", now, "--ics", dir.to_str().unwrap()]);
    assert_eq!(run(NOW).status.code(), Some(0));
    let read = || -> std::collections::BTreeMap<String, String> {
        std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "ics"))
            .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap()))
            .collect()
    };
    let first = read();
    assert!(first.len() > 10 && first.values().all(|t| t.contains("DTSTAMP:20261126T000000Z")));
    assert_eq!(run("2026-11-27T00:00:00Z").status.code(), Some(0));
    assert_eq!(read(), first, "unchanged files keep their bytes, the first DTSTAMP included");
}

/// A cancellation stays in DIR after later runs (a mailer that missed a run still finds it),
/// and a corrected patient address cancels the old mailbox's events and invites the new one.
#[test]
fn cancellations_stay_and_a_new_address_gets_new_invites() {
    let dir = ics_dir("stay");
    let req = ics_dir("stay-request");
    std::fs::create_dir_all(&req).unwrap();
    let file = req.join("trip.toml");
    let original = std::fs::read_to_string(root().join("examples/set-of-3-14-days.toml")).unwrap();
    let run = |request: &str, now: &str| {
        std::fs::write(&file, request).unwrap();
        let out = itinerary(&["plan", file.to_str().unwrap(), "--now", now, "--ics", dir.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(dir.join("changes.json")).unwrap()).unwrap()
    };
    run(&original, NOW);
    let trips: Vec<&str> = original.split("[[trips]]").collect();
    let one = format!("{}[[trips]]{}", trips[0].replace("set-of-3", "single-infusion").replace("interval_days = 14\n", ""), trips[1]);
    let v2 = run(&one, "2026-11-27T00:00:00Z");
    let cancel =
        v2["changes"].as_array().unwrap().iter().find(|c| c["kind"] == "cancel" && c["event"] == "trip3.infusion3").unwrap().clone();
    run(&one, "2026-11-28T00:00:00Z");
    let ics = std::fs::read_to_string(dir.join(cancel["file"].as_str().unwrap())).unwrap();
    assert!(ics.contains("METHOD:CANCEL\r\n") && ics.contains("STATUS:CANCELLED\r\n") && ics.contains("SEQUENCE:1\r\n"), "{ics}");

    let v4 = run(&one.replace("ichiro.suzuki@example.jp", "ichiro.suzuki@example.com"), "2026-11-29T00:00:00Z");
    let patient: Vec<&serde_json::Value> = v4["changes"].as_array().unwrap().iter().filter(|c| c["attendee"] == "patient").collect();
    let of = |k: &str| patient.iter().filter(|c| c["kind"] == k).count();
    assert!(of("invite") > 5 && of("invite") == of("cancel"), "every patient event moves to the new address: {v4:#}");
}

/// `itinerary plan … --json | head`: a reader that goes away early ends the output quietly, with
/// the plan's exit code, not a panic ("failed printing to stdout: Broken pipe").
#[test]
fn a_reader_that_stops_early_is_not_a_panic() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_itinerary"))
        .current_dir(root())
        .args(["plan", "examples/mh71-red-eye.toml", "--json", "--now", "2026-11-01T00:00:00Z"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    // Closed before the plan is written: its first write meets a closed pipe.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("ends");
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

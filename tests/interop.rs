//! The calendar files `itinerary plan --ics` writes, judged by parsers nobody here wrote: Mozilla
//! ical.js (Thunderbird), Python icalendar 7 and Python vobject. For the examples and for random
//! plans (patients in zones with daylight saving, hostile names), each parser must accept every
//! file and compute exactly the UTC instants the Plan says; Python icalendar computes each twice,
//! once from its own tz database and once from our VTIMEZONE.
//!
//! The parsers are installed by `scripts/test` (tests/interop/package.json, requirements.txt);
//! without them these tests fail with the command that installs them. `ITINERARY_INTEROP_SEED`
//! replays a random run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use itinerary_core::Plan;
use itinerary_core::plan::When;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const SETUP_HINT: &str = "the interop parsers are not installed: run `scripts/test` (or `scripts/interop-setup`) once";

/// A parser, as the command that runs its judge script.
struct Judge {
    name: &'static str,
    program: PathBuf,
    script: PathBuf,
}

fn judges() -> Vec<Judge> {
    let interop = root().join("tests/interop");
    assert!(interop.join("node_modules/ical.js").is_dir(), "{SETUP_HINT} (no tests/interop/node_modules/ical.js)");
    let python = std::env::var_os("ITINERARY_INTEROP_PYTHON").map_or_else(|| root().join("target/interop-venv/bin/python"), PathBuf::from);
    assert!(python.exists(), "{SETUP_HINT} (no {})", python.display());
    vec![
        Judge { name: "ical.js", program: "node".into(), script: interop.join("judge-icaljs.mjs") },
        Judge { name: "python-icalendar", program: python.clone(), script: interop.join("judge-icalendar.py") },
        Judge { name: "vobject", program: python, script: interop.join("judge-vobject.py") },
    ]
}

/// What each parser read, by file.
fn judge_all(files: &[PathBuf]) -> Vec<(&'static str, BTreeMap<PathBuf, Value>)> {
    judges()
        .into_iter()
        .map(|j| {
            let out =
                Command::new(&j.program).arg(&j.script).args(files).output().unwrap_or_else(|e| panic!("{}: {e}; {SETUP_HINT}", j.name));
            assert!(out.status.success(), "{} rejected our files: {}", j.name, String::from_utf8_lossy(&out.stderr));
            let reports: BTreeMap<PathBuf, Value> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| {
                    let v: Value = serde_json::from_str(l).unwrap();
                    (PathBuf::from(v["file"].as_str().unwrap()), v)
                })
                .collect();
            assert_eq!(reports.len(), files.len(), "{} reported on {} of {} files", j.name, reports.len(), files.len());
            (j.name, reports)
        })
        .collect()
}

/// Runs `itinerary plan FILE --json --ics DIR`; the Plan, or None when the planner said infeasible.
fn plan_with_ics(request: &Path, dir: &Path, id: &str, now: &str) -> Option<Plan> {
    let out = Command::new(env!("CARGO_BIN_EXE_itinerary"))
        .current_dir(root())
        .args(["plan", request.to_str().unwrap(), "--json", "--now", now, "--itinerary", id, "--ics", dir.to_str().unwrap()])
        .output()
        .expect("runs");
    match out.status.code() {
        Some(0) => Some(serde_json::from_slice(&out.stdout).expect("a Plan")),
        Some(1) => None,
        _ => panic!("{}: {}", request.display(), String::from_utf8_lossy(&out.stderr)),
    }
}

fn ics_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "ics")).collect();
    v.sort();
    v
}

/// RFC 5545 framing, byte by byte: CRLF only, lines of at most 75 octets, the object ends with
/// CRLF, every TZID has its VTIMEZONE, VTIMEZONE carries neither UID nor DTSTAMP, no RDATE lists.
fn check_framing(file: &Path) {
    let bytes = std::fs::read(file).unwrap();
    let text = std::str::from_utf8(&bytes).unwrap_or_else(|e| panic!("{}: not UTF-8: {e}", file.display()));
    assert!(text.ends_with("END:VCALENDAR\r\n"), "{}: must end with END:VCALENDAR CRLF", file.display());
    let physical: Vec<&str> = text.strip_suffix("\r\n").unwrap().split("\r\n").collect();
    for l in &physical {
        assert!(!l.contains(['\r', '\n']), "{}: a bare CR or LF in {l:?}", file.display());
        assert!(l.len() <= 75, "{}: a line of {} octets: {l:?}", file.display(), l.len());
    }
    let mut logical: Vec<String> = Vec::new();
    for l in physical {
        match l.strip_prefix(' ') {
            Some(rest) => logical.last_mut().unwrap().push_str(rest),
            None => logical.push(l.to_owned()),
        }
    }
    let mut defined = Vec::new();
    let mut used = Vec::new();
    let mut in_vtimezone = false;
    for l in &logical {
        match l.as_str() {
            "BEGIN:VTIMEZONE" => in_vtimezone = true,
            "END:VTIMEZONE" => in_vtimezone = false,
            _ => {}
        }
        if in_vtimezone {
            assert!(!l.starts_with("UID") && !l.starts_with("DTSTAMP"), "{}: VTIMEZONE with {l}", file.display());
            assert!(!(l.starts_with("RDATE") && l.contains(',')), "{}: a multi-valued RDATE: {l}", file.display());
            if let Some(id) = l.strip_prefix("TZID:") {
                defined.push(id.to_owned());
            }
        } else if let Some(i) = l.find(";TZID=") {
            let rest = &l[i + 6..];
            used.push(rest[..rest.find([':', ';']).unwrap()].to_owned());
        }
    }
    for tz in used {
        assert!(defined.contains(&tz), "{}: TZID {tz} has no VTIMEZONE", file.display());
    }
}

/// The event key and, for an escort's duty, the escort's id, from a UID of itinerary `id`
/// (`ID.EVENT.patient-H@DOMAIN`, `ID.EVENT.escort-E01-H@DOMAIN`).
fn uid_parts<'a>(uid: &'a str, id: &str) -> (&'a str, Option<&'a str>) {
    let local = uid.split('@').next().unwrap().strip_prefix(&format!("{id}.")).unwrap_or_else(|| panic!("UID {uid} not of itinerary {id}"));
    let (event, who) = local.rsplit_once('.').unwrap_or_else(|| panic!("UID {uid} names no attendee"));
    if who.starts_with("patient-") {
        return (event, None);
    }
    let escort = who.strip_prefix("escort-").and_then(|w| w.rsplit_once('-')).map(|(e, _)| e);
    (event, Some(escort.unwrap_or_else(|| panic!("UID {uid} names no attendee"))))
}

fn expected_when(plan: &Plan, uid: &str, id: &str) -> (Value, Value) {
    let timed = |s: &itinerary_core::Zoned, e: &itinerary_core::Zoned| {
        let f = |z: &itinerary_core::Zoned| serde_json::json!({ "utc": z.utc().format("%Y-%m-%dT%H:%M:%SZ").to_string(), "tzid": z.zone().name() });
        (f(s), f(e))
    };
    match uid_parts(uid, id) {
        (key, None) => match &plan.event(key).unwrap_or_else(|| panic!("UID {uid}: no event {key}")).when {
            When::Timed { start, end } => timed(start, end),
            When::Dates { start, end } => (
                serde_json::json!({ "date": start.format("%Y%m%d").to_string() }),
                serde_json::json!({ "date": end.format("%Y%m%d").to_string() }),
            ),
        },
        (key, Some(escort)) => {
            let duty =
                plan.escorts.iter().find(|d| d.event == key && d.escort == escort).unwrap_or_else(|| panic!("UID {uid} names no duty"));
            timed(&duty.start, &duty.end)
        }
    }
}

fn same_when(judge: &str, file: &Path, what: &str, got: &Value, want: &Value) {
    let date = |v: &Value| v["date"].as_str().map(|d| d.replace('-', ""));
    if want.get("date").is_some() {
        assert_eq!(date(got), date(want), "{judge}: {} {what}", file.display());
        return;
    }
    assert_eq!(got["utc"], want["utc"], "{judge}: {} {what}: a different instant", file.display());
    if let Some(from_vtimezone) = got.get("utc_from_vtimezone") {
        assert_eq!(from_vtimezone, &want["utc"], "{judge}: {} {what}: our VTIMEZONE gives a different instant", file.display());
    }
    if judge != "vobject" {
        assert_eq!(got["tzid"], want["tzid"], "{judge}: {} {what}", file.display());
    }
}

/// Everything one itinerary's DIR should say, as every parser read it.
struct Expect<'a> {
    id: &'a str,
    plan: &'a Plan,
    patient_name: &'a str,
    patient_email: &'a str,
}

fn check_dir(dir: &Path, x: &Expect, reports: &[(&'static str, BTreeMap<PathBuf, Value>)]) -> usize {
    let files = ics_files(dir);
    assert_eq!(
        files.len(),
        1 + x.plan.events.len() + x.plan.escorts.len(),
        "{}: one PUBLISH plus one invite per appointment",
        dir.display()
    );
    let mut events = 0;
    for (judge, by_file) in reports {
        for f in &files {
            let r = &by_file[f];
            let publish = f.file_name().unwrap() == "itinerary.ics";
            assert_eq!(r["method"], if publish { "PUBLISH" } else { "REQUEST" }, "{judge}: {}", f.display());
            let evs = r["events"].as_array().unwrap();
            assert_eq!(evs.len(), if publish { x.plan.events.len() } else { 1 }, "{judge}: {}", f.display());
            for ev in evs {
                let uid = ev["uid"].as_str().unwrap();
                let (start, end) = expected_when(x.plan, uid, x.id);
                same_when(judge, f, &format!("{uid} start"), &ev["start"], &start);
                same_when(judge, f, &format!("{uid} end"), &ev["end"], &end);
                assert_eq!(ev["sequence"], 0, "{judge}: {}", f.display());
                assert_eq!(ev["status"], "CONFIRMED", "{judge}: {}", f.display());
                let (key, escort) = uid_parts(uid, x.id);
                let summary = ev["summary"].as_str().unwrap();
                match escort {
                    None => assert_eq!(summary, x.plan.event(key).unwrap().title.get(x.plan.language), "{judge}: {}", f.display()),
                    Some(_) => {
                        assert!(summary.ends_with(&format!(": {}", x.patient_name)), "{judge}: {} escort summary {summary:?}", f.display())
                    }
                }
                let attendees = ev["attendees"].as_array().unwrap();
                if publish {
                    assert!(attendees.is_empty(), "{judge}: {}", f.display());
                } else {
                    assert_eq!(attendees.len(), 1, "{judge}: {} one attendee per invite", f.display());
                    let a = &attendees[0];
                    assert_eq!(a["partstat"], "NEEDS-ACTION", "{judge}: {}", f.display());
                    assert_eq!(a["rsvp"], "TRUE", "{judge}: {}", f.display());
                    if escort.is_none() {
                        assert_eq!(a["email"], x.patient_email, "{judge}: {}", f.display());
                        // A double quote goes as RFC 6868's `^'`: ical.js and Python icalendar
                        // decode it; vobject shows it as written.
                        let cn = if *judge == "vobject" { x.patient_name.replace('"', "^'") } else { x.patient_name.to_owned() };
                        assert_eq!(a["cn"], cn, "{judge}: {}", f.display());
                    }
                }
                assert_eq!(ev["organizer"], "coordinators@klregen.example.my", "{judge}: {}", f.display());
                events += 1;
            }
        }
    }
    events
}

fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("interop").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const NOW: &str = "2026-11-26T00:00:00Z";

#[test]
fn every_example_is_read_at_the_instants_the_plan_says() {
    let base = scratch("examples");
    let mut planned = Vec::new();
    for ex in ["mh71-red-eye", "eve-of-holiday", "los-angeles-patient", "set-of-3-14-days", "los-angeles-via-narita", "sapporo-via-haneda"]
    {
        let dir = base.join(ex);
        let plan = plan_with_ics(&root().join(format!("examples/{ex}.toml")), &dir, ex, NOW).unwrap_or_else(|| panic!("{ex} plans"));
        let request: toml::Value = toml::from_str(&std::fs::read_to_string(root().join(format!("examples/{ex}.toml"))).unwrap()).unwrap();
        let p = &request["patient"];
        planned.push((ex, dir, plan, p["name"].as_str().unwrap().to_owned(), p["email"].as_str().unwrap().to_owned()));
    }
    let files: Vec<PathBuf> = planned.iter().flat_map(|(_, d, ..)| ics_files(d)).collect();
    files.iter().for_each(|f| check_framing(f));
    let reports = judge_all(&files);
    let mut n = 0;
    for (ex, dir, plan, name, email) in &planned {
        n += check_dir(dir, &Expect { id: ex, plan, patient_name: name, patient_email: email }, &reports);
    }
    assert!(n > 3 * 60, "only {n} events judged");
}

/// Small, seedable, and the same everywhere: xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

/// Zones with daylight saving in both hemispheres, on both sides of the date line, and none.
const ZONES: &[&str] = &[
    "Asia/Tokyo",
    "America/Los_Angeles",
    "Europe/London",
    "Australia/Sydney",
    "America/New_York",
    "Pacific/Auckland",
    "America/Sao_Paulo",
    "Pacific/Honolulu",
    "Asia/Kuala_Lumpur",
    "Europe/Berlin",
];

/// Names that try to leave their value: separators, quotes, a backslash, emoji, long Japanese
/// text that must be folded between characters.
const NAMES: &[&str] = &[
    "山田 太郎",
    "Eve, \"the\"; O'Neil",
    "Back\\slash: ATTENDEE;CN=x:mailto:evil@example.com",
    "絵文字 😀🏥 さくら",
    "長谷川 雅之介 長谷川 雅之介 長谷川 雅之介 長谷川 雅之介 長谷川 雅之介",
    "Zoë Ñúñez-Øster",
];

/// (flight, from, depart HH:MM, arrive HH:MM, days later) out of Japan; and back.
const OUT: &[(&str, &str, &str, &str, i64)] =
    &[("MH71", "NRT", "21:40", "04:30", 1), ("MH89", "NRT", "10:20", "17:05", 0), ("D7533", "FUK", "08:25", "13:25", 0)];
const BACK: &[(&str, &str, &str, &str, i64)] = &[("MH88", "NRT", "23:35", "07:15", 1), ("MH36", "HND", "15:00", "22:35", 0)];

fn random_request(rng: &mut Rng) -> (String, String, String, String) {
    use chrono::{Duration, NaiveDate};
    // Mondays mostly (a 3–4 day stay then holds a clinic day), any weekday now and then.
    let monday = NaiveDate::from_ymd_opt(2027, 1, 4).unwrap() + Duration::weeks(rng.below(90) as i64);
    let first = if rng.below(5) == 0 { monday + Duration::days(rng.below(7) as i64) } else { monday };
    let zone = *rng.pick(ZONES);
    let name = *rng.pick(NAMES);
    let email = format!("patient{}@example.jp", rng.below(100_000));
    let set = rng.below(3) == 0;
    let mut s = String::new();
    s.push_str(if set {
        "protocol = \"set-of-3\"\ninterval_days = 14\ntrip_mode = \"trip-per-infusion\"\n"
    } else {
        "protocol = \"single-infusion\"\n"
    });
    let lang = if rng.below(4) == 0 { "en" } else { "ja" };
    s.push_str(&format!(
        "[patient]\nname = {}\nemail = \"{email}\"\nbirth_date = \"1980-04-01\"\nhome_zone = \"{zone}\"\nlanguage = \"{lang}\"\npassport_expiry = \"2035-01-01\"\n",
        toml::Value::String(name.to_owned())
    ));
    let stays = rng.below(2) as i64 + 3;
    for t in 0..if set { 3 } else { 1 } {
        let d = first + Duration::days(14 * t);
        let (of, ofrom, odep, oarr, oplus) = *rng.pick(OUT);
        let (bf, bto, bdep, barr, bplus) = *rng.pick(BACK);
        let back = d + Duration::days(stays);
        let mut out = format!(
            "{{ flight = \"{of}\", from = \"{ofrom}\", depart = \"{d} {odep}\", to = \"KUL\", arrive = \"{} {oarr}\" }}",
            d + Duration::days(oplus)
        );
        let home = back + Duration::days(bplus);
        let mut ret =
            format!("{{ flight = \"{bf}\", from = \"KUL\", depart = \"{back} {bdep}\", to = \"{bto}\", arrive = \"{home} {barr}\" }}");
        // A third of the patients live in Sapporo and change planes in Tokyo: each flight of a
        // connection is its own event, in its own airports' zones (issue 14).
        if rng.below(3) == 0 && ofrom != "FUK" {
            let (dep, arr) = if odep == "21:40" { ("16:00", "17:40") } else { ("06:30", "08:10") };
            out = format!(
                "[{{ flight = \"NH52\", from = \"CTS\", depart = \"{d} {dep}\", to = \"{ofrom}\", arrive = \"{d} {arr}\" }}, {out}]"
            );
            // From Haneda at 22:35 the last flight north has gone: the next morning's.
            let (day, dep, arr) = if bto == "HND" { (home + Duration::days(1), "07:00", "08:35") } else { (home, "11:00", "12:45") };
            ret = format!(
                "[{ret}, {{ flight = \"NH53\", from = \"{bto}\", depart = \"{day} {dep}\", to = \"CTS\", arrive = \"{day} {arr}\" }}]"
            );
        }
        s.push_str(&format!("[[trips]]\noutbound = {out}\nreturn = {ret}\n"));
    }
    let now = (first - Duration::days(20 + rng.below(60) as i64)).format("%Y-%m-%dT00:00:00Z").to_string();
    (s, name.to_owned(), email, now)
}

#[test]
fn random_plans_are_read_at_the_instants_the_plan_says() {
    let seed = std::env::var("ITINERARY_INTEROP_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x1CA1_2026_u64);
    println!("ITINERARY_INTEROP_SEED={seed}");
    let mut rng = Rng(seed | 1);
    let base = scratch("random");
    let mut planned = Vec::new();
    // Until 30 plans, from at most 80 requests (some land on a holiday week and are infeasible).
    for i in 0..80 {
        if planned.len() == 30 {
            break;
        }
        let (request, name, email, now) = random_request(&mut rng);
        let file = base.join(format!("r{i:02}.toml"));
        std::fs::write(&file, &request).unwrap();
        let dir = base.join(format!("r{i:02}"));
        let id = format!("r{i:02}");
        if let Some(plan) = plan_with_ics(&file, &dir, &id, &now) {
            planned.push((id, dir, plan, name, email));
        }
    }
    assert_eq!(planned.len(), 30, "too few of 80 random requests planned (seed {seed})");
    let connecting = planned.iter().filter(|p| p.2.events.iter().any(|e| e.key.ends_with(".leg1"))).count();
    assert!(connecting >= 3, "too few plans with connections drawn: {connecting}");
    let zones: std::collections::BTreeSet<_> = planned.iter().map(|p| p.2.patient_zone.name()).collect();
    assert!(zones.len() >= 6, "too few zones drawn: {zones:?}");
    let files: Vec<PathBuf> = planned.iter().flat_map(|(_, d, ..)| ics_files(d)).collect();
    files.iter().for_each(|f| check_framing(f));
    let reports = judge_all(&files);
    for (id, dir, plan, name, email) in &planned {
        check_dir(dir, &Expect { id, plan, patient_name: name, patient_email: email }, &reports);
    }
}

#[test]
fn a_changed_plan_goes_out_as_updates_and_cancellations() {
    let dir = scratch("changes");
    let base = dir.join("request.toml");
    let set = std::fs::read_to_string(root().join("examples/set-of-3-14-days.toml")).unwrap();
    std::fs::write(&base, &set).unwrap();
    let first = plan_with_ics(&base, &dir.join("out"), "change-1", NOW).unwrap();
    // Version 2: a single infusion on the first trip only, back a day later.
    let trips: Vec<&str> = set.split("[[trips]]").collect();
    let one = format!("{}[[trips]]{}", trips[0].replace("set-of-3", "single-infusion").replace("interval_days = 14\n", ""), trips[1]);
    std::fs::write(&base, &one).unwrap();
    let second = plan_with_ics(&base, &dir.join("out"), "change-1", "2026-11-27T00:00:00Z").unwrap();
    assert!(first.events.len() > second.events.len());

    let changes: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("out/changes.json")).unwrap()).unwrap();
    assert_eq!(changes["version"], 2);
    let of = |kind: &str| changes["changes"].as_array().unwrap().iter().filter(|c| c["kind"] == kind).cloned().collect::<Vec<_>>();
    let cancelled = of("cancel");
    assert!(cancelled.iter().any(|c| c["event"] == "trip2.infusion2" && c["attendee"] == "patient"), "{changes:#}");
    assert!(cancelled.iter().all(|c| c["sequence"] == 1), "{changes:#}");
    assert!(!of("unchanged").is_empty(), "the first trip's flights stay as they were: {changes:#}");

    let files = ics_files(&dir.join("out"));
    files.iter().for_each(|f| check_framing(f));
    let reports = judge_all(&files);
    for (judge, by_file) in &reports {
        for c in &cancelled {
            let f = dir.join("out").join(c["file"].as_str().unwrap());
            let r = &by_file[&f];
            assert_eq!(r["method"], "CANCEL", "{judge}: {}", f.display());
            let ev = &r["events"][0];
            assert_eq!(ev["uid"], c["uid"], "{judge}: same UID as the invite it cancels");
            assert_eq!(ev["status"], "CANCELLED", "{judge}: {}", f.display());
            assert_eq!(ev["sequence"], 1, "{judge}: {}", f.display());
            // The cancellation still says which appointment it was, at its old instant.
            let (start, _) = expected_when(&first, ev["uid"].as_str().unwrap(), "change-1");
            same_when(judge, &f, "cancelled start", &ev["start"], &start);
        }
        for c in of("update") {
            let r = &by_file[&dir.join("out").join(c["file"].as_str().unwrap())];
            assert_eq!(r["method"], "REQUEST", "{judge}");
            assert_eq!(r["events"][0]["sequence"], 1, "{judge}: an update carries SEQUENCE + 1");
            let (start, _) = expected_when(&second, c["uid"].as_str().unwrap(), "change-1");
            same_when(judge, Path::new(c["file"].as_str().unwrap()), "updated start", &r["events"][0]["start"], &start);
        }
        // The published calendar holds only what is still planned, at its current SEQUENCE.
        let publish = &by_file[&dir.join("out/itinerary.ics")];
        assert_eq!(publish["events"].as_array().unwrap().len(), second.events.len(), "{judge}");
    }
}

/// A name the request checker would refuse (it holds a line break) still cannot add an attendee
/// or an event when it reaches the calendar some other way: every parser sees one attendee, the
/// right one, and the event it was sent.
/// A patient whose itineraries are all cancelled: the feed still answers a calendar, with no
/// event, so a subscribed app empties itself. Every parser must read it as a calendar with no
/// event (it carries the clinic's VTIMEZONE: RFC 5545 wants one component at least).
#[test]
fn an_emptied_feed_is_a_calendar_every_parser_reads() {
    use itinerary_calendar::{Itinerary, Person};
    let setup = itinerary_config::load(&root().join("config")).unwrap();
    let dir = scratch("emptied");
    let plan = plan_with_ics(&root().join("examples/mh71-red-eye.toml"), &dir, "emptied", "2026-11-26T00:00:00Z").unwrap();
    let it = Itinerary {
        id: "emptied",
        plan: &plan,
        patient: Person { name: "山田 太郎", email: "taro.yamada@example.jp" },
        escorts: &setup.resources.escorts,
        clinic_name: &setup.clinic.name,
        settings: &setup.calendar,
    };
    let f = dir.join("emptied-feed.ics");
    std::fs::write(&f, itinerary_calendar::publish(&it, &[], |_| 0)).unwrap();
    check_framing(&f);
    for (judge, by_file) in judge_all(std::slice::from_ref(&f)) {
        assert_eq!(by_file[&f]["events"].as_array().map(Vec::len), Some(0), "{judge}: {}", by_file[&f]);
    }
}

#[test]
fn a_line_break_in_a_name_cannot_start_a_property() {
    use itinerary_calendar::{Edition, Itinerary, Method, Person};
    let setup = itinerary_config::load(&root().join("config")).unwrap();
    let raw: itinerary_core::RawPlanRequest =
        toml::from_str(&std::fs::read_to_string(root().join("examples/mh71-red-eye.toml")).unwrap()).unwrap();
    let req = itinerary_core::PlanRequest::parse(&raw, &setup).unwrap();
    let now = chrono::DateTime::parse_from_rfc3339(NOW).unwrap().to_utc();
    let plan = itinerary_core::plan(&setup, &req, now, &itinerary_core::Ledger::new(setup.rules.slot_minutes)).unwrap();
    let dir = scratch("hostile");
    let names = [
        "Eve\r\nATTENDEE:mailto:evil@example.com",
        "Eve\nEND:VEVENT\nBEGIN:VEVENT\nUID:evil\nDTSTART:20270101T000000Z",
        "Eve\";RSVP=FALSE:mailto:evil@example.com",
        "Eve\rX-EVIL:1\u{0}\u{1b}",
    ];
    let mut files = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let it = Itinerary {
            id: "hostile",
            plan: &plan,
            patient: Person { name, email: "eve@example.jp" },
            escorts: &setup.resources.escorts,
            clinic_name: &setup.clinic.name,
            settings: &setup.calendar,
        };
        let appointments = it.appointments().unwrap();
        let pickup = appointments
            .iter()
            .find(|a| a.event == "trip1.pickup" && a.attendee.audience == itinerary_calendar::Audience::Patient)
            .unwrap();
        let f = dir.join(format!("request{i}.ics"));
        std::fs::write(&f, itinerary_calendar::invite(&Edition::of(&it), pickup, 0, Method::Request)).unwrap();
        files.push(f);
        let f = dir.join(format!("publish{i}.ics"));
        std::fs::write(&f, itinerary_calendar::publish(&it, &appointments, |_| 0)).unwrap();
        files.push(f);
    }
    files.iter().for_each(|f| check_framing(f));
    for (judge, by_file) in judge_all(&files) {
        for f in &files {
            let evs = by_file[f]["events"].as_array().unwrap();
            let publish = f.file_name().unwrap().to_string_lossy().starts_with("publish");
            assert_eq!(evs.len(), if publish { plan.events.len() } else { 1 }, "{judge}: {}", f.display());
            for ev in evs {
                assert!(ev["uid"].as_str().unwrap().starts_with("hostile."), "{judge}: {}: {ev}", f.display());
                let attendees = ev["attendees"].as_array().unwrap();
                assert_eq!(attendees.len(), usize::from(!publish), "{judge}: {}", f.display());
                for a in attendees {
                    assert_eq!(a["email"], "eve@example.jp", "{judge}: {}", f.display());
                    assert_eq!(a["rsvp"], "TRUE", "{judge}: {}", f.display());
                }
            }
        }
    }
}

/// Zones that stress a VTIMEZONE generator: both hemispheres, rules that changed (US 2007,
/// Brazil 2019, Samoa 2021), negative daylight saving (Dublin), half- and quarter-hour offsets
/// and a half-hour daylight shift (Lord Howe), Ramadan suspensions (Casablanca), rules no
/// "nth weekday" describes (Jerusalem's `Fri>=23`, Nuuk's Saturday before the last Sunday,
/// Cairo's Friday after the last Thursday).
const STRESS_ZONES: &[chrono_tz::Tz] = &[
    chrono_tz::Tz::America__Los_Angeles,
    chrono_tz::Tz::America__New_York,
    chrono_tz::Tz::America__Sao_Paulo,
    chrono_tz::Tz::America__Santiago,
    chrono_tz::Tz::America__St_Johns,
    chrono_tz::Tz::America__Nuuk,
    chrono_tz::Tz::Europe__London,
    chrono_tz::Tz::Europe__Dublin,
    chrono_tz::Tz::Europe__Berlin,
    chrono_tz::Tz::Africa__Casablanca,
    chrono_tz::Tz::Africa__Cairo,
    chrono_tz::Tz::Asia__Jerusalem,
    chrono_tz::Tz::Asia__Tehran,
    chrono_tz::Tz::Asia__Kolkata,
    chrono_tz::Tz::Asia__Kathmandu,
    chrono_tz::Tz::Australia__Sydney,
    chrono_tz::Tz::Australia__Adelaide,
    chrono_tz::Tz::Australia__Lord_Howe,
    chrono_tz::Tz::Pacific__Auckland,
    chrono_tz::Tz::Pacific__Chatham,
    chrono_tz::Tz::Pacific__Apia,
    chrono_tz::Tz::Asia__Kuala_Lumpur,
    chrono_tz::Tz::Asia__Tokyo,
];

/// Noon every `every` days, and 90 minutes either side of each change of offset, from the start
/// of `first` to the start of `until` (years); local times that happen twice are left out, as
/// they cannot name one instant.
fn stress_instants(tz: chrono_tz::Tz, first: i32, until: i32, every: i64) -> Vec<chrono::DateTime<chrono::Utc>> {
    use chrono::{Duration, LocalResult, NaiveDate, TimeZone, Utc};
    let mut instants = Vec::new();
    let mut d = NaiveDate::from_ymd_opt(first, 1, 3).unwrap();
    while d < NaiveDate::from_ymd_opt(until, 1, 1).unwrap() {
        if let LocalResult::Single(t) = tz.from_local_datetime(&d.and_hms_opt(12, 0, 0).unwrap()) {
            instants.push(t.to_utc());
        }
        d += Duration::days(every);
    }
    let mut t = Utc.with_ymd_and_hms(first, 1, 1, 0, 0, 0).unwrap();
    let end = Utc.with_ymd_and_hms(until, 1, 1, 0, 0, 0).unwrap();
    while t < end {
        let next = t + Duration::hours(1);
        if t.with_timezone(&tz).offset().to_string() != next.with_timezone(&tz).offset().to_string() {
            instants.extend([t - Duration::minutes(90), next + Duration::minutes(90)]);
        }
        t = next;
    }
    instants.retain(|u| matches!(tz.from_local_datetime(&u.with_timezone(&tz).naive_local()), LocalResult::Single(_)));
    instants
}

/// Our VTIMEZONEs against tzdb in `STRESS_ZONES`: events at noon every nine days and 90 minutes
/// either side of every transition in 2025–2028; ical.js, vobject and Python icalendar (from our
/// VTIMEZONE) must all compute the instant chrono-tz does.
#[test]
fn vtimezones_agree_with_tzdb_in_every_parser() {
    use chrono::{Duration, TimeZone, Utc};
    use chrono_tz::Tz;
    use itinerary_calendar::{Itinerary, Person};
    use itinerary_core::plan::{Event, EventKind, Text};
    use itinerary_core::request::Language;

    let zones = STRESS_ZONES;
    let setup = itinerary_config::load(&root().join("config")).unwrap();
    let dir = scratch("zones");
    let from = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    let mut files = Vec::new();
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    for &tz in zones {
        let instants = stress_instants(tz, 2025, 2029, 9);
        let events: Vec<Event> = instants
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let z = itinerary_core::Zoned::new(*u, tz);
                Event {
                    key: format!("e{i:04}"),
                    kind: EventKind::OnlineFollowUp,
                    trip: None,
                    title: Text::new("確認", "Check"),
                    location: None,
                    location_ja: None,
                    when: When::Timed { start: z, end: z.add(Duration::minutes(30)) },
                    escort: None,
                    online: false,
                }
            })
            .collect();
        let id = tz.name().replace('/', "-");
        let plan = Plan {
            schema_version: itinerary_core::plan::SCHEMA_VERSION,
            protocol: "zones".into(),
            trip_mode: None,
            interval_days: None,
            clinic_zone: Tz::Asia__Kuala_Lumpur,
            patient_zone: tz,
            language: Language::En,
            planned_at: itinerary_core::Zoned::new(from, tz),
            trips: vec![],
            events,
            escorts: vec![],
            tasks: vec![],
            messages: vec![],
            warnings: vec![],
        };
        for e in &plan.events {
            let start = e.start().unwrap();
            expected.insert(format!("{id}.{}", e.key), start.utc().format("%Y-%m-%dT%H:%M:%SZ").to_string());
        }
        let it = Itinerary {
            id: &id,
            plan: &plan,
            patient: Person { name: "Zone Test", email: "zones@example.jp" },
            escorts: &[],
            clinic_name: "KL Regenerative Clinic",
            settings: &setup.calendar,
        };
        let f = dir.join(format!("{id}.ics"));
        std::fs::write(&f, itinerary_calendar::publish(&it, &it.appointments().unwrap(), |_| 0)).unwrap();
        check_framing(&f);
        files.push(f);
    }
    let reports = judge_all(&files);
    let mut judged = 0;
    for (judge, by_file) in &reports {
        for f in &files {
            for ev in by_file[f]["events"].as_array().unwrap() {
                let uid = ev["uid"].as_str().unwrap();
                let id = f.file_stem().unwrap().to_str().unwrap();
                let want = &expected[&format!("{id}.{}", uid_parts(uid, id).0)];
                assert_eq!(ev["start"]["utc"].as_str().unwrap(), want, "{judge}: {uid} in {}", f.display());
                if let Some(v) = ev["start"].get("utc_from_vtimezone") {
                    assert_eq!(v.as_str().unwrap(), want, "{judge}: {uid}, from our VTIMEZONE, in {}", f.display());
                }
                judged += 1;
            }
        }
    }
    assert!(judged > 3 * 20 * 150, "only {judged} instants judged");
}

/// A client that keeps the first VTIMEZONE it sees under a TZID (vobject does, process-wide)
/// applies it to events years later. Ours, generated for 2026 alone, must give tzdb's instants
/// through 2060 in every parser: a rule is written open-ended only if tzdb keeps it. Left out:
/// Casablanca, whose changes follow Ramadan, and Cairo, whose autumn change is the Friday after
/// the last Thursday of October (in some years 1 November): no yearly RRULE describes either, so
/// their VTIMEZONEs are exact only for the years they were made for.
#[test]
fn a_vtimezone_made_for_one_year_holds_for_later_years() {
    let dir = scratch("later-years");
    let mut files = Vec::new();
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    for &tz in STRESS_ZONES.iter().filter(|&&tz| !matches!(tz, chrono_tz::Tz::Africa__Casablanca | chrono_tz::Tz::Africa__Cairo)) {
        let id = tz.name().replace('/', "-");
        let mut ics = String::from("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//later years//EN\r\n");
        ics.push_str(&itinerary_calendar::vtimezone(tz, 2026, 2026));
        for (i, u) in stress_instants(tz, 2029, 2061, 61).iter().enumerate() {
            let local = u.with_timezone(&tz).format("%Y%m%dT%H%M%S");
            let uid = format!("{id}.{i}@test");
            ics.push_str(&format!(
                "BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20261126T000000Z\r\nDTSTART;TZID={0}:{local}\r\nDTEND;TZID={0}:{local}\r\nSUMMARY:x\r\nEND:VEVENT\r\n",
                tz.name()
            ));
            expected.insert(uid, u.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        }
        ics.push_str("END:VCALENDAR\r\n");
        let f = dir.join(format!("{id}.ics"));
        std::fs::write(&f, ics).unwrap();
        files.push(f);
    }
    let mut judged = 0;
    for (judge, by_file) in judge_all(&files) {
        for f in &files {
            for ev in by_file[f]["events"].as_array().unwrap() {
                let uid = ev["uid"].as_str().unwrap();
                let got = ev["start"].get("utc_from_vtimezone").unwrap_or(&ev["start"]["utc"]);
                assert_eq!(got.as_str().unwrap(), expected[uid], "{judge}: {uid} ({})", f.display());
                judged += 1;
            }
        }
    }
    assert!(judged > 3 * 20 * 150, "only {judged} instants judged");
}

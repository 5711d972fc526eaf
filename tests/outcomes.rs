//! Patient-reported outcomes end to end (issue 17), on SQLite and PostgreSQL, on the test clock:
//! the questionnaire goes with its personal link a week before the journey to the first infusion and each
//! online follow-up (read from the mail as the patient receives it), answers are saved as given
//! and can be corrected until the appointment begins, the second asking goes only to a patient
//! who has not answered; coordinators read the answers as JSON, CSV and a chart that match what
//! is stored; the 12-month decision drafts a second set that is booked as usual; erasure leaves
//! nothing of the patient behind (rows, outbox, log). Bad input changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::line_platform::{browser, form};
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn python() -> PathBuf {
    std::env::var_os("ITINERARY_INTEROP_PYTHON").map_or_else(|| root().join("target/interop-venv/bin/python"), PathBuf::from)
}

const TRIP: &str = r#"{ "protocol": "single-infusion", "trips": [{
    "outbound": { "flight": "MH71", "from": "NRT", "depart": "2027-04-18 21:40", "to": "KUL", "arrive": "2027-04-19 04:30" },
    "return":   { "flight": "MH88", "from": "KUL", "depart": "2027-04-22 23:35", "to": "NRT", "arrive": "2027-04-23 07:15" } }] }"#;

fn settings() -> Vec<(&'static str, String)> {
    vec![
        ("ITINERARY_CLOCK_MODE", "test".to_owned()),
        ("ITINERARY_WORKER_POLL_MS", "100".into()),
        ("ITINERARY_WORKER_LEASE_SECONDS", "3".into()),
        ("ITINERARY_WORKER_HEARTBEAT_SECONDS", "1".into()),
        ("RUST_LOG", "info".into()),
    ]
}

async fn set_clock(s: &Server, now: DateTime<Utc>) {
    let (st, b) = s.call("PUT", "/clock", Some(json!({ "now": now.to_rfc3339() }))).await;
    assert_eq!(st, StatusCode::OK, "{b}");
}

async fn messages(s: &Server, id: i64) -> Vec<Value> {
    let (st, it) = s.call("GET", &format!("/itineraries/{id}"), None).await;
    assert_eq!(st, StatusCode::OK, "{it}");
    it["messages"].as_array().unwrap().clone()
}

fn due(m: &Value) -> DateTime<Utc> {
    m["due_at"].as_str().unwrap().parse().unwrap()
}

/// The message `key` of the itinerary, once its status is one of `statuses` (30 s at most).
async fn settled(s: &Server, id: i64, key: &str, statuses: &[&str]) -> Value {
    let t = Instant::now();
    loop {
        let m = messages(s, id).await.into_iter().find(|m| m["key"] == key).unwrap_or_else(|| panic!("no message {key}"));
        if statuses.contains(&m["status"].as_str().unwrap()) {
            return m;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "{key} is still {}: {m}", m["status"]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Moves the clock to just after message `key` is due and waits for it to settle.
async fn deliver(s: &Server, id: i64, key: &str, statuses: &[&str]) -> Value {
    let m = messages(s, id).await.into_iter().find(|m| m["key"] == key).unwrap_or_else(|| panic!("no message {key}"));
    set_clock(s, due(&m) + chrono::Duration::seconds(1)).await;
    settled(s, id, key, statuses).await
}

/// Every mail in the outbox, as Python's email package reads it (subject, text).
fn mails(db: &Db) -> Vec<Value> {
    let out = Command::new(python()).arg(root().join("tests/smtp/read_mail.py")).arg(&db.outbox).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The questionnaire links in the mails, oldest first.
fn links(db: &Db) -> Vec<String> {
    let mut out = Vec::new();
    for m in mails(db) {
        let text = m["text"].as_str().unwrap_or_default();
        for (at, _) in text.match_indices("http://feed.example/questionnaire/") {
            let url: String = text[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || "/:._".contains(*c)).collect();
            let path = url.strip_prefix("http://feed.example").unwrap().to_owned();
            if !out.contains(&path) {
                out.push(path);
            }
        }
    }
    out
}

async fn page(s: &Server, path: &str) -> (StatusCode, String) {
    let r = browser().get(s.url(path)).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

/// Posts the questionnaire form as a browser does; the status and where it sends the patient.
async fn answer(s: &Server, path: &str, pairs: &[(&str, &str)]) -> (StatusCode, String, String) {
    let r = browser().post(s.url(path)).header("content-type", "application/x-www-form-urlencoded").body(form(pairs)).send().await.unwrap();
    let location = r.headers().get("location").map(|l| l.to_str().unwrap().to_owned()).unwrap_or_default();
    (r.status(), location, r.text().await.unwrap())
}

async fn row(db: &Db, sql: &str) -> Vec<Option<String>> {
    use sea_orm::ConnectionTrait;
    let conn = sea_orm::Database::connect(&db.url).await.unwrap();
    let r = conn.query_one_raw(sea_orm::Statement::from_string(conn.get_database_backend(), sql)).await.unwrap().unwrap();
    (0..r.column_names().len())
        .map(|i| {
            r.try_get_by_index::<Option<String>>(i)
                .or_else(|_| r.try_get_by_index::<Option<i32>>(i).map(|v| v.map(|v| v.to_string())))
                .unwrap()
        })
        .collect()
}

async fn execute(db: &Db, sql: &str) {
    use sea_orm::ConnectionTrait;
    let conn = sea_orm::Database::connect(&db.url).await.unwrap();
    conn.execute_unprepared(sql).await.unwrap();
}

fn hash(secret: &str) -> String {
    itinerary_store::hash_token(secret)
}

async fn outcomes_end_to_end(db: Db, name: &str) {
    let log = std::env::temp_dir().join(format!("itinerary-outcomes-{name}-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let set = settings();
    let set: Vec<(&str, &str)> = set.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s = Server::start_logging(&db, &set, std::fs::File::create(&log).unwrap().into());
    set_clock(&s, "2027-03-01T01:00:00Z".parse().unwrap()).await;
    let (st, p) = s.call("POST", "/patients", Some(patient("山田 太郎"))).await;
    assert_eq!(st, StatusCode::CREATED, "{p}");
    let pid = p["id"].as_i64().unwrap();
    let mut req: Value = serde_json::from_str(TRIP).unwrap();
    req["patient_id"] = pid.into();
    let (st, it) = s.call("POST", "/itineraries", Some(req)).await;
    assert_eq!(st, StatusCode::CREATED, "{it}");
    let (id, reference) = (it["id"].as_i64().unwrap(), it["reference"].as_str().unwrap().to_owned());

    // Planned: a week before the journey to the infusion (leaving Narita on 18 April) and before
    // each online appointment, at 10:00 where the patient is (Tokyo); the second asking three
    // days before.
    let keys: Vec<String> = it["messages"].as_array().unwrap().iter().map(|m| m["key"].as_str().unwrap().to_owned()).collect();
    for k in ["outcomes.baseline.invite", "outcomes.baseline.nudge", "outcomes.followup_1m.invite", "outcomes.reevaluation.nudge"] {
        assert!(keys.iter().any(|x| x == k), "{k} not planned: {keys:?}");
    }
    let invite = it["messages"].as_array().unwrap().iter().find(|m| m["key"] == "outcomes.baseline.invite").unwrap();
    assert_eq!(invite["due_at"], "2027-04-11T01:00:00Z", "10:00 JST a week before the flight: {invite}");
    let planned = it["plan"]["messages"].as_array().unwrap().iter().find(|m| m["key"] == "outcomes.baseline.invite").unwrap();
    assert!(planned["before"].to_string().contains("2027-04-21"), "before the infusion on 21 April: {planned}");

    // The invitation arrives with the patient's own link; the letter states no score.
    deliver(&s, id, "outcomes.baseline.invite", &["sent"]).await;
    let baseline = links(&db).pop().expect("a questionnaire link in the invitation");
    assert_eq!(links(&db).len(), 1);
    let secret = baseline.rsplit('/').next().unwrap().to_owned();
    assert!(secret.starts_with("itq_") && secret.len() == 68, "{secret}");
    assert_eq!(count(&db, &format!("SELECT count(*) FROM outcome_token WHERE token_hash = '{}'", hash(&secret))).await, 1, "kept hashed");
    assert_eq!(count(&db, &format!("SELECT count(*) FROM outcome_token WHERE token_hash = '{secret}'")).await, 0);

    let (st, html) = page(&s, &baseline).await;
    assert_eq!(st, StatusCode::OK);
    assert!(html.contains("この24時間で、かゆみが最も強かったとき") && html.contains("lang=\"ja\""), "in the patient's language");
    let (st, html) = page(&s, &format!("{baseline}?lang=en")).await;
    assert!(st == StatusCode::OK && html.contains("In the last 24 hours, how bad was your itch"));

    // One answer saved as given; the page comes back at the next question.
    let (st, to, _) = answer(&s, &baseline, &[("lang", "ja"), ("itch", "8"), ("save", "itch")]).await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    assert!(to.ends_with("saved=itch#q-sleep"), "{to}");
    let q = |c: &str| format!("SELECT {c} FROM outcome_answer WHERE itinerary_id = {id} AND occasion = 'baseline'");
    assert_eq!(row(&db, &q("itch, sleep")).await, [Some("8".into()), None]);

    // Out of range: 422 naming the field and value, nothing of the form stored.
    let (st, _, html) = answer(&s, &baseline, &[("itch", "11"), ("sleep", "3"), ("save", "sleep")]).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("itch: `11` is not a whole number from 0 to 10"), "{html}");
    assert_eq!(row(&db, &q("itch, sleep")).await, [Some("8".into()), None], "nothing half-stored");
    for bad in [
        vec![("steroid_days", "8")],
        vec![("impression", "0")],
        vec![("treatments", "none"), ("treatments", "biologic")],
        vec![("sleep", "x")],
    ] {
        let (st, _, _) = answer(&s, &baseline, &bad).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
    }
    let (st, to, _) = answer(
        &s,
        &baseline,
        &[
            ("sleep", "6"),
            ("steroid_days", "7"),
            ("impression", "4"),
            ("treatments", "antihistamine"),
            ("treatments", "other"),
            ("treatment_other", "漢方薬"),
            ("save", "all"),
        ],
    )
    .await;
    assert_eq!((st, to.ends_with("#done")), (StatusCode::SEE_OTHER, true), "{to}");

    // Answered: the second asking is skipped.
    let nudge = deliver(&s, id, "outcomes.baseline.nudge", &["skipped", "sent"]).await;
    assert_eq!(nudge["status"], "skipped", "{nudge}");

    // Once the infusion has begun the link is closed, and a save stores nothing.
    set_clock(&s, "2027-04-21T03:00:00Z".parse().unwrap()).await;
    assert_eq!(page(&s, &baseline).await.0, StatusCode::GONE);
    let before = row(&db, &q("CAST(updated_at AS VARCHAR(40))")).await;
    assert_eq!(answer(&s, &baseline, &[("itch", "2")]).await.0, StatusCode::GONE);
    assert_eq!(row(&db, &q("itch")).await, [Some("8".into())]);
    assert_eq!(row(&db, &q("CAST(updated_at AS VARCHAR(40))")).await, before);
    assert_eq!(page(&s, &format!("/questionnaire/itq_{}", "0".repeat(64))).await.0, StatusCode::NOT_FOUND);

    // The 1-month follow-up: not answered, so asked again three days before; then answered.
    deliver(&s, id, "outcomes.followup_1m.invite", &["sent"]).await;
    let nudge = deliver(&s, id, "outcomes.followup_1m.nudge", &["sent", "skipped"]).await;
    assert_eq!(nudge["status"], "sent", "{nudge}");
    // The invitation's link and the second asking's: each a new one (only hashes are kept).
    let new: Vec<String> = links(&db).into_iter().filter(|l| *l != baseline).collect();
    assert_eq!(new.len(), 2, "{new:?}");
    let follow_up = new[0].clone();
    assert_eq!(page(&s, &new[1]).await.0, StatusCode::OK);
    let (st, _, _) = answer(
        &s,
        &follow_up,
        &[("itch", "3"), ("sleep", "1"), ("steroid_days", "2"), ("treatments", "none"), ("impression", "2"), ("save", "all")],
    )
    .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    // No letter states a score: only "please answer".
    for m in mails(&db) {
        let text = m["text"].as_str().unwrap_or_default();
        assert!(!text.contains("漢方薬") && !text.contains("8 → 3"), "a letter with answers in it: {text}");
    }

    // A link forged onto another patient's itinerary opens nothing.
    let (_, p2) = s
        .call(
            "POST",
            "/patients",
            Some(json!({ "name": "佐藤 花子", "email": "hanako@example.jp", "birth_date": "1985-01-02",
        "home_zone": "Asia/Tokyo", "language": "ja", "passport_expiry": "2031-03-31" })),
        )
        .await;
    let (st, it2) = s.call("POST", "/itineraries", Some(request(p2["id"].as_i64().unwrap(), 0))).await;
    assert_eq!(st, StatusCode::CREATED, "{it2}");
    let follow_secret = follow_up.rsplit('/').next().unwrap();
    execute(&db, &format!("UPDATE outcome_token SET itinerary_id = {} WHERE token_hash = '{}'", it2["id"], hash(follow_secret))).await;
    assert_eq!(page(&s, &follow_up).await.0, StatusCode::NOT_FOUND, "a link opens its own patient's itinerary only");
    execute(&db, &format!("UPDATE outcome_token SET itinerary_id = {id} WHERE token_hash = '{}'", hash(follow_secret))).await;

    // What coordinators read matches what is stored.
    let (st, o) = s.call("GET", &format!("/patients/{pid}/outcomes"), None).await;
    assert_eq!(st, StatusCode::OK, "{o}");
    let occasions = o["occasions"].as_array().unwrap();
    let keys: Vec<&str> = occasions.iter().map(|x| x["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["baseline", "followup_1m", "followup_3m", "followup_6m", "reevaluation"]);
    for (x, key) in occasions.iter().zip(["baseline", "followup_1m"]) {
        let stored = row(&db, &format!(
            "SELECT itch, sleep, steroid_days, impression, treatments, treatment_other FROM outcome_answer WHERE itinerary_id = {id} AND occasion = '{key}'"
        ))
        .await;
        let a = &x["answers"];
        let shown: Vec<Option<String>> = ["itch", "sleep", "steroid_days", "impression"]
            .iter()
            .map(|f| a[f].as_i64().map(|v| v.to_string()))
            .chain([a["treatments"].as_array().map(|l| l.iter().map(|t| t.as_str().unwrap()).collect::<Vec<_>>().join(";"))])
            .chain([a["treatment_other"].as_str().map(str::to_owned)])
            .collect();
        assert_eq!(shown, stored, "{key}");
    }
    assert_eq!(
        occasions[1]["summary_en"],
        "itch 8 → 3 (−63%), sleep lost 6 → 1 (−83%), ointment days 7 → 2, severity 4 → 2, tablets or injections: none"
    );
    assert_eq!(o["infusions"].as_array().unwrap().len(), 1);

    let auth = |path: String| s.http.get(s.url(&path)).bearer_auth(&s.token).send();
    let csv = auth(format!("/patients/{pid}/outcomes.csv")).await.unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = csv.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 6, "a header and five occasions: {csv}");
    assert!(lines[1].starts_with(&format!("{reference},1,baseline,baseline,2027-04-21T")), "{}", lines[1]);
    assert!(lines[1].contains(",Asia/Kuala_Lumpur,8,6,7,antihistamine;other,漢方薬,4,"), "{}", lines[1]);
    assert!(lines[2].contains(",3,1,2,none,,2,"), "{}", lines[2]);
    let svg = auth(format!("/patients/{pid}/outcomes.svg")).await.unwrap().text().await.unwrap();
    assert_eq!(svg.matches("fill=\"#1F5FA8\"").count(), 8, "two answers for each of four measures: {svg}");
    assert_eq!(svg.matches("stroke=\"#C0392B\"").count(), 4, "the infusion in each panel");
    let reads =
        count(&db, &format!("SELECT count(*) FROM audit_log WHERE action = 'read' AND entity = 'outcomes' AND entity_id = '{pid}'")).await;
    assert_eq!(reads, 3, "every read of health data is audited");

    // A flood of saves stops at the bound, and what was saved stands.
    let mut statuses = std::collections::BTreeMap::new();
    for _ in 0..itinerary_store::MAX_SAVES {
        *statuses.entry(answer(&s, &follow_up, &[("itch", "4")]).await.0.as_u16()).or_insert(0) += 1;
    }
    let saved_before = 1;
    let expected = [(303, itinerary_store::MAX_SAVES - saved_before), (429, saved_before)].into_iter().collect();
    assert_eq!(statuses, expected, "saves up to the bound, then refused");
    let saves = row(&db, &format!("SELECT saves FROM outcome_answer WHERE itinerary_id = {id} AND occasion = 'followup_1m'")).await;
    assert_eq!(saves, [Some(itinerary_store::MAX_SAVES.to_string())]);

    // The 12-month decision: a second set drafted 52 weeks on, booked as usual.
    let (st, e) = s.call("PUT", &format!("/itineraries/{id}/reevaluation"), Some(json!({ "decision": "maybe" }))).await;
    assert_eq!((st, e["error"]["fields"][0]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("decision")), "{e}");
    let (st, d) = s
        .call("PUT", &format!("/itineraries/{id}/reevaluation"), Some(json!({ "decision": "second_set_proposed", "note": "かゆみ再燃" })))
        .await;
    assert_eq!(st, StatusCode::OK, "{d}");
    let draft = d["draft"].clone();
    assert_eq!(draft["trips"][0]["outbound"]["depart"], "2028-04-16 21:40", "the same weekday a year on: {d}");
    assert_eq!((draft["patient_id"].as_i64(), draft["protocol"].as_str()), (Some(pid), Some("single-infusion")));
    let (st, second) = s.call("POST", "/itineraries", Some(draft)).await;
    assert_eq!(st, StatusCode::CREATED, "{second}");
    let (_, o) = s.call("GET", &format!("/patients/{pid}/outcomes"), None).await;
    assert_eq!(o["reevaluations"][0]["booked_itinerary_id"], second["id"], "{o}");
    assert!(o["reevaluations"][0]["draft"].is_null());
    let sets: Vec<i64> = o["occasions"].as_array().unwrap().iter().map(|x| x["set"].as_i64().unwrap()).collect();
    assert_eq!(sets, [1, 1, 1, 1, 1, 2, 2, 2, 2, 2], "both sets in the history");

    // Erasure: refused while a set has appointments ahead; then nothing of the patient is left.
    let (st, e) = s.call("DELETE", &format!("/patients/{pid}"), None).await;
    assert_eq!((st, e["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("itinerary_active")), "{e}");
    for it in [id, second["id"].as_i64().unwrap()] {
        let (st, c) = s.call("POST", &format!("/itineraries/{it}/cancel"), None).await;
        assert_eq!(st, StatusCode::OK, "{c}");
    }
    let (st, e) = s.call("PUT", &format!("/itineraries/{id}/reevaluation"), Some(json!({ "decision": "declined" }))).await;
    assert_eq!((st, e["error"]["fields"][0]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("itinerary")), "{e}");
    let (st, export) = s.call("GET", &format!("/patients/{pid}/export"), None).await;
    assert_eq!(st, StatusCode::OK);
    let audited: Vec<&str> = export["audit"].as_array().unwrap().iter().map(|a| a["entity"].as_str().unwrap()).collect();
    assert!(audited.contains(&"outcomes") && audited.contains(&"itinerary"), "who read their answers, and what was done: {audited:?}");
    assert_eq!(export["patient"]["email"], "taro.yamada@example.jp");
    assert_eq!(export["outcomes"]["occasions"][0]["answers"]["itch"], 8);
    assert_eq!(export["itineraries"].as_array().unwrap().len(), 2);
    let plan = &export["itineraries"][0]["versions"][0]["plan"];
    assert!(plan.is_object() && plan["events"].is_array(), "the plan as JSON, not as its text: {plan}");
    // Another patient's mail in the outbox stays (their confirmation waits out the update grace).
    let other = db.outbox.join(format!("{}.m999.booking_confirmation.eml", it2["reference"].as_str().unwrap()));
    std::fs::write(&other, "Subject: kept\r\n\r\nkept\r\n").unwrap();
    let (st, erased) = s.call("DELETE", &format!("/patients/{pid}"), None).await;
    assert_eq!(st, StatusCode::OK, "{erased}");
    assert!(erased["outbox_files"].as_u64().unwrap() > 5, "{erased}");
    let ids = format!("{id}, {}", second["id"]);
    for (table, filter) in [
        ("patient", format!("id = {pid}")),
        ("itinerary", format!("patient_id = {pid}")),
        ("itinerary_version", format!("itinerary_id IN ({ids})")),
        ("scheduled_message", format!("itinerary_id IN ({ids})")),
        ("event", format!("itinerary_id IN ({ids})")),
        ("booking", format!("itinerary_id IN ({ids})")),
        ("calendar_uid", format!("itinerary_id IN ({ids})")),
        ("outcome_answer", format!("patient_id = {pid}")),
        ("outcome_token", format!("patient_id = {pid}")),
        ("reevaluation", format!("patient_id = {pid}")),
        ("feed_token", format!("patient_id = {pid}")),
        ("idempotency_key", format!("body LIKE '%{reference}%' OR body LIKE '%taro.yamada%'")),
    ] {
        assert_eq!(count(&db, &format!("SELECT count(*) FROM {table} WHERE {filter}")).await, 0, "{table} keeps the erased patient's rows");
    }
    let left: Vec<String> = std::fs::read_dir(&db.outbox).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!left.iter().any(|f| f.starts_with(&reference)), "outbox mail of the erased patient: {left:?}");
    assert!(left.iter().any(|f| f.starts_with(it2["reference"].as_str().unwrap())), "another patient's mail stays: {left:?}");
    assert_eq!(page(&s, &follow_up).await.0, StatusCode::NOT_FOUND, "an erased patient's link opens nothing");
    assert_eq!(count(&db, &format!("SELECT count(*) FROM audit_log WHERE action = 'erase' AND entity_id = '{pid}'")).await, 1);

    // Nothing personal or clinical in the log.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("questionnaire: answers saved"), "the log is read");
    for secret in ["山田", "taro.yamada", "漢方薬", "itq_", "かゆみ再燃"] {
        assert!(!text.contains(secret), "{secret:?} in the log");
    }
    db.drop_pg().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_on_sqlite() {
    outcomes_end_to_end(Db::sqlite("outcomes"), "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_on_postgres() {
    if let Some(db) = Db::postgres("outcomes").await {
        outcomes_end_to_end(db, "postgres").await;
    }
}

//! `itinerary serve` end to end: the real binary on port 0, against a fresh SQLite file and
//! against PostgreSQL on 127.0.0.1:5432 (a database of its own per test, dropped after). Without
//! a PostgreSQL server the PostgreSQL half prints why and skips, unless
//! `ITINERARY_REQUIRE_POSTGRES=1` (set by .ci/run), where that is a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn health_auth_and_bad_input(db: Db) {
    // Every route is tried without a token and with a wrong one: more failures than a client
    // may make by default (see `guessing_is_refused_per_client`).
    let mut s = Server::start_with(&db, &[("ITINERARY_SERVER_FAILED_AUTH_BURST", "1000")]);
    let (st, h) = s.call("GET", "/health", None).await;
    assert_eq!(st, StatusCode::OK, "{h}");
    // Every coordinator route: 401 without a token and with a wrong one.
    for (method, path, _, auth) in itinerary_api::openapi::ROUTES {
        let path = path.replace("{id}", "1").replace("{token}", "x");
        let r = s.http.request(method.to_uppercase().parse().unwrap(), s.url(&path)).send().await.unwrap();
        if *auth {
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{method} {path} without a token");
            let r = s.http.request(method.to_uppercase().parse().unwrap(), s.url(&path)).bearer_auth("itc_wrong").send().await.unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{method} {path} with a wrong token");
        } else if path == "/line/webhook" || path == "/inbound/email" {
            // Not a coordinator's route: LINE's signature, or the inbound secret, is its
            // credential (tests/line.rs, tests/inbound.rs).
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{method} {path} without its own credential");
        } else {
            assert_ne!(r.status(), StatusCode::UNAUTHORIZED, "{method} {path} is public");
        }
    }
    let doc: Value = s.http.get(s.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let paths: std::collections::BTreeSet<&str> = itinerary_api::openapi::ROUTES.iter().map(|r| r.1).collect();
    assert_eq!(doc["paths"].as_object().unwrap().len(), paths.len());

    // Text PostgreSQL refuses (a NUL character) and dates it cannot hold are refused alike on
    // both databases: 422 naming the field, not a 503 from the database (issue 15, item 4).
    let mut nul = patient("山田\u{0}太郎");
    nul["email"] = json!("nul@example.jp");
    let (st, e) = s.call("POST", "/patients", Some(nul)).await;
    assert_eq!((st, e["error"]["fields"][0]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("name")), "{e}");
    let (_, e01) = s.call("GET", "/escorts/E01", None).await;
    let mut bad = e01.clone();
    bad["languages"] = json!(["j\u{0}"]);
    let (st, e) = s.call("PUT", "/escorts/E01", Some(bad)).await;
    assert_eq!((st, e["error"]["fields"][0]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("languages[0]")), "{e}");
    let r = s.http.get(s.url("/escorts/%00")).bearer_auth(&s.token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "a NUL in a path");
    let far = json!({ "name": "未来 花子", "email": "far@example.jp", "birth_date": "1978-05-14", "passport_expiry": "+10000-01-01" });
    let (st, e) = s.call("POST", "/patients", Some(far)).await;
    assert_eq!((st, e["error"]["fields"][0]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("passport_expiry")), "{e}");

    // Bad input: 4xx naming the field, and nothing stored.
    let (st, e) = s.call("POST", "/patients", Some(json!({ "name": "X", "email": "not-an-email", "birth_date": "1978-13-01", "passport_expiry": "2031-03-31", "home_zone": "Mars/Base" }))).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let fields: Vec<&str> = e["error"]["fields"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["email", "birth_date", "home_zone"], "{e}");
    assert_eq!(e["error"]["fields"][2]["value"], "Mars/Base");
    let (st, e) = s.call("POST", "/patients", Some(json!({ "name": 7 }))).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["error"]["fields"][0]["field"], "name", "{e}");
    let mut p = patient("Eve");
    p["colour"] = json!("blue");
    let (st, e) = s.call("POST", "/patients", Some(p)).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("colour"), "{e}");
    let r = s
        .http
        .post(s.url("/patients"))
        .bearer_auth(&s.token)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let big = format!("{{\"name\": \"{}\"}}", "a".repeat(100_000));
    let r =
        s.http.post(s.url("/patients")).bearer_auth(&s.token).header("content-type", "application/json").body(big).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // What a review got stored, each then failing or breaking the answers (issue 12, 11 and 12).
    for (field, value) in [
        ("email", "x${jndi:ldap://x}@example.jp"),
        ("email", "x\u{1F600}@example.jp"),
        ("email", "xa;X-INJ=1:b@example.jp"),
        ("birth_date", "9999-12-31"),
        ("birth_date", "+10000-01-01"),
        ("birth_date", "-0001-01-01"),
        ("passport_expiry", "+10000-01-01"),
    ] {
        let mut p = patient("Eve");
        p[field] = json!(value);
        let (st, e) = s.call("POST", "/patients", Some(p)).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{field} {value}: {e}");
        assert_eq!((e["error"]["fields"][0]["field"].as_str(), e["error"]["fields"][0]["value"].as_str()), (Some(field), Some(value)));
    }
    let escort = |languages: Value, email: &str| json!({ "id": "E99", "name": "Aisyah", "email": email, "languages": languages, "works_from": "07:00", "works_until": "19:00", "weekly_days_off": [], "dates_off": [] });
    for (body, field) in [
        (escort(json!(["en", ""]), "aisyah@example.my"), "languages[1]"),
        (escort(json!(["en", "x".repeat(10_000)]), "aisyah@example.my"), "languages[1]"),
        (escort(json!(["<script>"]), "aisyah@example.my"), "languages[0]"),
        (escort(json!([]), "aisyah@example.my"), "languages"),
        (escort(json!(["en"]), "aisyah;x=y@example.my"), "email"),
    ] {
        let (st, e) = s.call("PUT", "/escorts/E99", Some(body)).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
        assert_eq!(e["error"]["fields"][0]["field"], field, "{e}");
    }
    let (st, e) = s.call("GET", "/escorts/E99", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "a refused escort is not stored: {e}");
    // Files and answers that hold personal data (issue 12, item 14).
    if let Some(file) = db.url.strip_prefix("sqlite://").and_then(|u| u.split('?').next()) {
        use std::os::unix::fs::PermissionsExt;
        for f in [file.to_owned(), format!("{file}-wal")] {
            let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{f} is {mode:o}");
        }
    }
    for path in ["/patients", "/escorts", "/openapi.json"] {
        let r = s.http.get(s.url(path)).bearer_auth(&s.token).send().await.unwrap();
        assert_eq!(
            (r.headers()["cache-control"].to_str().unwrap(), r.headers()["x-content-type-options"].to_str().unwrap()),
            ("no-store", "nosniff"),
            "{path}"
        );
    }
    let (st, e) = s.call("GET", "/patients/999", None).await;
    assert_eq!((st, e["error"]["fields"][0]["field"].as_str()), (StatusCode::NOT_FOUND, Some("id")), "{e}");
    let (st, _) = s.call("GET", "/patients/abc", None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, e) = s.call("POST", "/itineraries", Some(request(999, 0))).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{e}");
    let (_, list) = s.call("GET", "/patients", None).await;
    assert_eq!(list["patients"].as_array().unwrap().len(), 0, "nothing half-stored: {list}");
    assert!(s.stop().success(), "SIGTERM stops the server cleanly");
    db.drop_pg().await;
}

async fn itinerary_lifecycle(db: Db) {
    let mut s = Server::start(&db);
    let (st, p) = s.call("POST", "/patients", Some(patient("山田 太郎"))).await;
    assert_eq!(st, StatusCode::CREATED, "{p}");
    let pid = p["id"].as_i64().unwrap();
    let mut changed = patient("山田 太郎");
    changed["home_zone"] = json!("America/Los_Angeles");
    let (st, p) = s.call("PUT", &format!("/patients/{pid}"), Some(changed)).await;
    assert_eq!((st, p["home_zone"].as_str()), (StatusCode::OK, Some("America/Los_Angeles")), "{p}");

    // Resources: seeded from config/, capacities checked.
    let (_, r) = s.call("GET", "/resources/chairs", None).await;
    assert_eq!(r["capacity"], 4, "{r}");
    let (st, e) = s.call("PUT", "/resources/chairs", Some(json!({ "capacity": 0 }))).await;
    assert_eq!((st, e["error"]["fields"][0]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("capacity")), "{e}");
    let (st, e) = s.call("PUT", "/resources/spoons", Some(json!({ "capacity": 3 }))).await;
    assert_eq!((st, e["error"]["fields"][0]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("id")), "{e}");
    let (st, r) = s.call("PUT", "/resources/chairs", Some(json!({ "capacity": 5 }))).await;
    assert_eq!((st, r["capacity"].as_i64()), (StatusCode::OK, Some(5)), "{r}");
    let (_, escorts) = s.call("GET", "/escorts", None).await;
    assert_eq!(escorts["escorts"].as_array().unwrap().len(), 6, "seeded from config/resources.toml");
    let (_, e06) = s.call("GET", "/escorts/E06", None).await;
    let (st, _) = s.call("DELETE", "/escorts/E06", None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (_, escorts) = s.call("GET", "/escorts", None).await;
    assert!(escorts["escorts"].as_array().unwrap().iter().all(|e| e["id"] != "E06"), "deactivated: {escorts}");
    let (st, back) = s.call("PUT", "/escorts/E06", Some(e06.clone())).await;
    assert_eq!((st, back), (StatusCode::OK, e06), "putting an escort again takes them back");
    let (st, _) = s.call("DELETE", "/escorts/E99", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, e) = s
        .call(
            "POST",
            "/itineraries",
            Some({
                let mut r = request(pid, 0);
                r["escort"] = json!("E99");
                r
            }),
        )
        .await;
    assert_eq!((st, e["error"]["fields"][0]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("escort")), "{e}");

    // A NUL in a flight number: 422 naming it on both databases (PostgreSQL refuses NUL in text).
    let mut trip = request(pid, 0);
    trip["trips"][0]["outbound"]["flight"] = json!("MH\u{0}71");
    let (st, e) = s.call("POST", "/itineraries", Some(trip)).await;
    assert_eq!(
        (st, e["error"]["fields"][0]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("trips[0].outbound.flight")),
        "{e}"
    );

    // Infeasible: a one-day stay. 422 with the planner's reasons in both languages; nothing kept.
    let mut short = request(pid, 0);
    let landing_day = short["trips"][0]["outbound"]["arrive"].as_str().unwrap()[..10].to_owned();
    short["trips"][0]["return"]["depart"] = format!("{landing_day} 23:35").into();
    let next_day = chrono::NaiveDate::parse_from_str(&landing_day, "%Y-%m-%d").unwrap() + chrono::Duration::days(1);
    short["trips"][0]["return"]["arrive"] = format!("{next_day} 07:15").into();
    let (st, e) = s.call("POST", "/itineraries", Some(short.clone())).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert!(e["error"]["violations"].as_array().unwrap().iter().any(|v| v["text"]["ja"].is_string() && v["text"]["en"].is_string()), "{e}");
    // With the warnings a plan of it would carry (issue 14, item 4): the room until the 19:35 car.
    let warned: Vec<&str> =
        e["error"]["warnings"].as_array().map(|w| w.iter().filter_map(|x| x["kind"].as_str()).collect()).unwrap_or_default();
    assert!(warned.contains(&"late_check_out"), "{e}");
    // The preview says the same and stores nothing; a feasible one answers the plan booking
    // would make, and still stores nothing (issue 13, item 4).
    let (st, pe) = s.call("POST", "/itineraries/preview", Some(short)).await;
    assert_eq!((st, &pe["error"]["violations"]), (StatusCode::UNPROCESSABLE_ENTITY, &e["error"]["violations"]), "{pe}");
    let (st, plan) = s.call("POST", "/itineraries/preview", Some(request(pid, 0))).await;
    assert_eq!(st, StatusCode::OK, "{plan}");
    assert!(plan["events"].as_array().unwrap().len() > 5 && plan["messages"].as_array().unwrap().len() > 5, "{plan}");
    let first = plan["trips"][0]["arrives"]["utc"].as_str().unwrap()[..10].to_owned();
    let after = chrono::NaiveDate::parse_from_str(&first, "%Y-%m-%d").unwrap() + chrono::Duration::days(30);
    let (_, trips) = s.call("GET", &format!("/trips?from={first}&to={after}"), None).await;
    assert!(trips["trips"].as_array().unwrap().is_empty(), "{trips}");
    let (_, audit) = s.call("GET", "/audit", None).await;
    assert!(audit["audit"].as_array().unwrap().iter().all(|x| x["action"] != "create" || x["entity"] != "itinerary"), "{audit}");
    // A passport that runs out within six months of arrival: the field and its value are named.
    let expiry = (chrono::Utc::now().date_naive() + chrono::Duration::days(400)).to_string();
    let mut p = patient("佐藤 花子");
    p["passport_expiry"] = json!(expiry);
    let (st, short_passport) = s.call("POST", "/patients", Some(p)).await;
    assert_eq!(st, StatusCode::CREATED, "{short_passport}");
    let (st, e) = s.call("POST", "/itineraries", Some(request(short_passport["id"].as_i64().unwrap(), 0))).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(
        e["error"]["fields"][0],
        json!({ "field": "patient.passport_expiry", "value": expiry, "problem": e["error"]["fields"][0]["problem"] })
    );

    let (st, it) = s.call("POST", "/itineraries", Some(request(pid, 0))).await;
    assert_eq!(st, StatusCode::CREATED, "{it}");
    let id = it["id"].as_i64().unwrap();
    assert_eq!(it["version"], 1);
    assert!(!it["messages"].as_array().unwrap().is_empty(), "scheduled messages are stored");
    assert!(it["plan"]["escorts"].as_array().unwrap().len() >= 3);

    // Change: back a day later. A new version, the flight home updated in the calendar.
    let mut later = request(pid, 0);
    let shift = |v: &Value| {
        let t = chrono::NaiveDateTime::parse_from_str(v.as_str().unwrap(), "%Y-%m-%d %H:%M").unwrap() + chrono::Duration::days(1);
        Value::String(t.format("%Y-%m-%d %H:%M").to_string())
    };
    later["trips"][0]["return"]["depart"] = shift(&later["trips"][0]["return"]["depart"]);
    later["trips"][0]["return"]["arrive"] = shift(&later["trips"][0]["return"]["arrive"]);
    let (st, it2) = s.call("PUT", &format!("/itineraries/{id}"), Some(later)).await;
    assert_eq!(st, StatusCode::OK, "{it2}");
    assert_eq!(it2["version"], 2);
    let changes = it2["versions"][1]["calendar_changes"].as_array().unwrap();
    assert!(changes.iter().any(|c| c["kind"] == "update" && c["event"] == "trip1.return"), "{changes:?}");
    assert!(it2["messages"].as_array().unwrap().iter().any(|m| m["status"] == "superseded"));

    // The calendar, and the feed at an unguessable URL that shows only this patient.
    let r = s.http.get(s.url(&format!("/itineraries/{id}/calendar.ics"))).bearer_auth(&s.token).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "text/calendar; charset=utf-8");
    let ics = r.text().await.unwrap();
    assert!(ics.starts_with("BEGIN:VCALENDAR\r\n") && ics.ends_with("END:VCALENDAR\r\n") && ics.contains("SEQUENCE:1\r\n"), "{ics}");
    let (st, f) = s.call("POST", &format!("/patients/{pid}/feed"), None).await;
    assert_eq!(st, StatusCode::CREATED, "{f}");
    let feed_path = f["feed_url"].as_str().unwrap().strip_prefix("http://feed.example").unwrap().to_owned();
    let r = s.http.get(s.url(&feed_path)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(
        (r.headers()["cache-control"].to_str().unwrap(), r.headers()["x-content-type-options"].to_str().unwrap()),
        ("no-store", "nosniff")
    );
    assert_eq!(r.text().await.unwrap(), ics, "the feed is the patient's itinerary");
    let r = s.http.get(s.url(&feed_path)).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED, "an unchanged feed answers 304 to its ETag");
    let (_, other) = s.call("POST", "/patients", Some(patient("Other"))).await;
    let (_, f2) = s.call("POST", &format!("/patients/{}/feed", other["id"]), None).await;
    let other_path = f2["feed_url"].as_str().unwrap().strip_prefix("http://feed.example").unwrap().to_owned();
    assert_eq!(s.http.get(s.url(&other_path)).send().await.unwrap().status(), StatusCode::NOT_FOUND, "no itinerary of its own: nothing");
    // Rotating revokes the old URL; revoking ends the new one.
    let (_, f3) = s.call("POST", &format!("/patients/{pid}/feed"), None).await;
    assert_eq!(s.http.get(s.url(&feed_path)).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    let new_path = f3["feed_url"].as_str().unwrap().strip_prefix("http://feed.example").unwrap().to_owned();
    assert_eq!(s.http.get(s.url(&new_path)).send().await.unwrap().status(), StatusCode::OK);
    let (st, _) = s.call("DELETE", &format!("/patients/{pid}/feed"), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(s.http.get(s.url(&new_path)).send().await.unwrap().status(), StatusCode::NOT_FOUND);

    // A second set months later: the feed shows both itineraries, and a new ETag.
    let (st, second) = s.call("POST", "/itineraries", Some(request(pid, 30))).await;
    assert_eq!(st, StatusCode::CREATED, "{second}");
    let (_, f4) = s.call("POST", &format!("/patients/{pid}/feed"), None).await;
    let both_path = f4["feed_url"].as_str().unwrap().strip_prefix("http://feed.example").unwrap().to_owned();
    let r = s.http.get(s.url(&both_path)).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "a new itinerary is a new ETag");
    let both = r.text().await.unwrap();
    for reference in [it2["reference"].as_str().unwrap(), second["reference"].as_str().unwrap()] {
        assert!(both.contains(&format!("UID:{reference}.trip1.infusion1.patient-")), "{reference} missing from the feed");
    }
    let (st, _) = s.call("POST", &format!("/itineraries/{}/cancel", second["id"]), None).await;
    assert_eq!(st, StatusCode::OK);

    // What happens on which day.
    let first = it2["plan"]["trips"][0]["arrives"]["utc"].as_str().unwrap()[..10].to_owned();
    let d = chrono::NaiveDate::parse_from_str(&first, "%Y-%m-%d").unwrap();
    let (st, trips) =
        s.call("GET", &format!("/trips?from={}&to={}", d - chrono::Duration::days(2), d + chrono::Duration::days(8)), None).await;
    assert_eq!(st, StatusCode::OK, "{trips}");
    assert_eq!(trips["trips"][0]["itinerary"], id);
    let duties = trips["escorts"].as_object().unwrap();
    let pickup_escort =
        it2["plan"]["escorts"].as_array().unwrap().iter().find(|d| d["event"] == "trip1.pickup").unwrap()["escort"].as_str().unwrap();
    assert!(
        duties[pickup_escort].as_object().unwrap().values().flat_map(|v| v.as_array().unwrap()).any(|d| d["itinerary"] == id),
        "{trips}"
    );
    assert_eq!(trips["zone"], "Asia/Kuala_Lumpur");

    // A new address: every standing patient appointment is cancelled at the old address and
    // invited at the new one (the UID carries the address), under the current version.
    let (_, before) = s.call("GET", &format!("/itineraries/{id}"), None).await;
    let r = s.http.get(s.url(&both_path)).send().await.unwrap();
    let etag_before_move = r.headers()["etag"].to_str().unwrap().to_owned();
    let fed_before_move = r.text().await.unwrap();
    let mut moved = patient("山田 太郎");
    moved["home_zone"] = json!("America/Los_Angeles");
    moved["email"] = json!("taro.new@example.jp");
    // With the pick-up escort deactivated meanwhile: their booked duty stays, and the
    // correction must not stop at it (it answered 503 "stored calendar cannot be read").
    let (_, pickup) = s.call("GET", &format!("/escorts/{pickup_escort}"), None).await;
    let (st, _) = s.call("DELETE", &format!("/escorts/{pickup_escort}"), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, p) = s.call("PUT", &format!("/patients/{pid}"), Some(moved)).await;
    assert_eq!(st, StatusCode::OK, "{p}");
    let (st, _) = s.call("PUT", &format!("/escorts/{pickup_escort}"), Some(pickup)).await;
    assert_eq!(st, StatusCode::OK);
    // The feed shows the correction at once, under a new ETag (it used to answer 304 for ever).
    let r = s.http.get(s.url(&both_path)).header("if-none-match", &etag_before_move).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "a corrected address is a new ETag");
    let fed = r.text().await.unwrap();
    let uids = |ics: &str| ics.lines().filter(|l| l.starts_with("UID:")).map(str::to_owned).collect::<std::collections::BTreeSet<_>>();
    assert!(uids(&fed).is_disjoint(&uids(&fed_before_move)), "the UIDs carry the address: all new");
    let coordinators = s.http.get(s.url(&format!("/itineraries/{id}/calendar.ics"))).bearer_auth(&s.token).send().await.unwrap();
    assert_eq!(fed, coordinators.text().await.unwrap(), "the feed and the coordinator's calendar agree");
    let (_, after_move) = s.call("GET", &format!("/itineraries/{id}"), None).await;
    let added: Vec<&Value> = after_move["messages"].as_array().unwrap().iter().collect();
    let count = |kind: &str, m: &[&Value]| {
        m.iter().filter(|m| m["kind"] == kind && m["status"] == "pending" && m["recipient"]["role"] == "patient").count()
    };
    let was: Vec<&Value> = before["messages"].as_array().unwrap().iter().collect();
    let (cancels, invites) = (count("calendar_cancel", &added) - count("calendar_cancel", &was), count("calendar_invite", &added));
    assert!(cancels > 0 && cancels == invites, "one cancellation and one invite per appointment: {cancels} {invites}");
    assert_eq!(after_move["version"], before["version"], "no new version: the plan did not change");

    // Cancel: every UID goes out as a cancellation; a second cancel is a conflict.
    let (st, c) = s.call("POST", &format!("/itineraries/{id}/cancel"), None).await;
    assert_eq!((st, c["status"].as_str()), (StatusCode::OK, Some("cancelled")), "{c}");
    assert!(c["versions"][2]["calendar_changes"].as_array().unwrap().iter().all(|x| x["kind"] == "cancel"));
    // What stays pending is the cancellations themselves (sent unless nothing was ever sent
    // under their UID); every reminder is off.
    let pending: Vec<&Value> = c["messages"].as_array().unwrap().iter().filter(|m| m["status"] == "pending").collect();
    assert!(!pending.is_empty() && pending.iter().all(|m| m["kind"] == "calendar_cancel"), "{c}");
    assert!(pending.iter().any(|m| m["version"] == 3), "{c}");
    let (_, after) =
        s.call("GET", &format!("/trips?from={}&to={}", d - chrono::Duration::days(2), d + chrono::Duration::days(8)), None).await;
    assert!(after["trips"].as_array().unwrap().is_empty(), "a cancelled trip leaves the date-range view: {after}");
    let (st, _) = s.call("POST", &format!("/itineraries/{id}/cancel"), None).await;
    assert_eq!(st, StatusCode::CONFLICT);
    // Every itinerary of the patient cancelled: the feed is an empty calendar, not a 404 (on a
    // 404 many calendar apps keep the events they last saw).
    let r = s.http.get(s.url(&both_path)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let empty = r.text().await.unwrap();
    assert!(empty.starts_with("BEGIN:VCALENDAR") && !empty.contains("BEGIN:VEVENT") && empty.contains("BEGIN:VTIMEZONE"), "{empty}");

    // The audit log names coordinators and ids, never the patient's name or email.
    let (_, audit) = s.call("GET", "/audit", None).await;
    let text = audit.to_string();
    assert!(audit["audit"].as_array().unwrap().len() >= 8, "{audit}");
    // Pages: two entries, then the two before them, by the `next` cursor.
    let (_, first) = s.call("GET", "/audit?limit=2", None).await;
    let (_, second) = s.call("GET", &format!("/audit?limit=2&before={}", first["next"]), None).await;
    let all: Vec<&Value> = audit["audit"].as_array().unwrap().iter().take(4).collect();
    let paged: Vec<&Value> = first["audit"].as_array().unwrap().iter().chain(second["audit"].as_array().unwrap()).collect();
    assert_eq!(all, paged, "{first} {second}");
    let (_, p1) = s.call("GET", "/patients?limit=1", None).await;
    assert_eq!((p1["patients"].as_array().unwrap().len(), &p1["next"]), (1, &p1["patients"][0]["id"]), "{p1}");
    let (_, p2) = s.call("GET", &format!("/patients?limit=1&after={}", p1["next"]), None).await;
    assert!(p2["patients"].as_array().unwrap().iter().all(|p| p["id"].as_i64() > p1["next"].as_i64()), "{p2}");
    let (st, e) = s.call("GET", "/patients?limit=0", None).await;
    assert_eq!((st, e["error"]["fields"][0]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("limit")), "{e}");
    let (st, _) = s.call("GET", "/patients?limit=abc", None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(!text.contains("山田") && !text.contains("taro.yamada"), "{audit}");
    assert!(s.stop().success());
    db.drop_pg().await;
}

/// Two coordinators book twelve patients at once, all on the same flights, through `processes`
/// servers on one database: each request gets 201 or 409 naming what other bookings hold (it
/// would fit in an empty clinic), and no escort, chair or lab slot is held twice. With two
/// servers, each plans without seeing what the other has planned but not yet stored, so plans
/// collide at write time and the writer must plan again or refuse (`Ledger::admits`).
async fn parallel_bookings_never_double_book(db: Db, processes: usize) {
    let s = Server::start(&db);
    let others: Vec<Server> = (1..processes).map(|_| Server::start(&db)).collect();
    let out = itinerary(&db).args(["admin", "create-coordinator", "Second Coordinator"]).output().unwrap();
    let second = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let mut ids = Vec::new();
    for i in 0..12 {
        let (st, p) = s.call("POST", "/patients", Some(patient(&format!("Patient {i}")))).await;
        assert_eq!(st, StatusCode::CREATED);
        ids.push(p["id"].as_i64().unwrap());
    }
    let s = std::sync::Arc::new(s);
    let tasks: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, &pid)| {
            let s = s.clone();
            let token = if i % 2 == 0 { s.token.clone() } else { second.clone() };
            let base = if i % processes == 0 { s.base.clone() } else { others[i % processes - 1].base.clone() };
            tokio::spawn(async move {
                let r = s.http.post(format!("{base}/itineraries")).bearer_auth(token).json(&request(pid, 1)).send().await.unwrap();
                (r.status(), r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut plans = Vec::new();
    let mut conflicts = 0;
    for t in tasks {
        let (st, v) = t.await.unwrap();
        match st {
            StatusCode::CREATED => plans.push(v),
            StatusCode::CONFLICT => {
                conflicts += 1;
                assert_eq!(v["error"]["code"], "conflict", "{v}");
                let rules: Vec<&str> = v["error"]["violations"].as_array().unwrap().iter().map(|x| x["rule"].as_str().unwrap()).collect();
                assert!(
                    rules.iter().any(|r| ["escort_available", "chair_capacity", "lab_capacity"].contains(r)),
                    "a 409 names what is held: {v}"
                );
                assert!(!v["error"]["fields"].as_array().unwrap().is_empty(), "{v}");
            }
            other => panic!("{other}: {v}"),
        }
    }
    assert!(plans.len() >= 2 && conflicts >= 1, "{} booked, {conflicts} conflicts", plans.len());
    // Escort duties: no two overlap unless they are the same shared duty.
    let mut duties: Vec<(String, String, String, Option<String>)> = Vec::new();
    for p in &plans {
        for d in p["plan"]["escorts"].as_array().unwrap() {
            duties.push((
                d["escort"].as_str().unwrap().into(),
                d["start"]["utc"].as_str().unwrap().into(),
                d["end"]["utc"].as_str().unwrap().into(),
                d["shared"].as_str().map(Into::into),
            ));
        }
    }
    for (i, a) in duties.iter().enumerate() {
        for b in &duties[i + 1..] {
            let overlap = a.0 == b.0 && a.1 < b.2 && b.1 < a.2;
            assert!(!overlap || (a.3.is_some() && a.3 == b.3), "escort {} double-booked: {a:?} and {b:?}", a.0);
        }
    }
    // Infusions: never more at once than the clinic has chairs (config/resources.toml: 4).
    let infusions: Vec<(String, String)> = plans
        .iter()
        .flat_map(|p| p["plan"]["events"].as_array().unwrap().clone())
        .filter(|e| e["kind"] == "infusion")
        .map(|e| (e["when"]["start"]["utc"].as_str().unwrap().to_owned(), e["when"]["end"]["utc"].as_str().unwrap().to_owned()))
        .collect();
    for (start, _) in &infusions {
        let at_once = infusions.iter().filter(|(s2, e2)| s2 <= start && start < e2).count();
        assert!(at_once <= 4, "{at_once} infusions at {start}");
    }
    println!("{processes} process(es): {} booked, {conflicts} conflicts", plans.len());
    let mut s = std::sync::Arc::try_unwrap(s).ok().unwrap();
    assert!(s.stop().success());
    for mut o in others {
        assert!(o.stop().success());
    }
    db.drop_pg().await;
}

/// Sessions waiting for the booking lock: a change or an erasure updates its row, a booking group
/// takes it with `booking_lock_then_held` (migration 19).
const WAITING_FOR_THE_BOOKING_LOCK: &str = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
     AND wait_event_type = 'Lock' AND (query LIKE 'UPDATE booking_lock%' OR query LIKE 'SELECT * FROM booking_lock_then_held(%')";

/// PostgreSQL stores a booking group's rows before it takes the booking lock, so that several
/// writers insert at once; the plan, made ahead, is checked under the lock, and the group is
/// rolled back and planned again when another process took what it needs meanwhile. Here two
/// servers book two patients on the same flights while the lock is held elsewhere: each plans
/// the same escort ahead (neither sees the other's), both insert their rows and wait; the one
/// that gets the lock second must find the escort taken, and book another, with nothing of its
/// first attempt left behind.
#[tokio::test]
async fn postgres_rows_written_before_the_lock_are_checked_under_it() {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let Some(db) = Db::postgres("rows_first").await else { return };
    let a = Server::start(&db);
    let b = Server::start(&db);
    let mut ids = Vec::new();
    for i in 0..2 {
        let (st, p) = a.call("POST", "/patients", Some(patient(&format!("Patient {i}")))).await;
        assert_eq!(st, StatusCode::CREATED);
        ids.push(p["id"].as_i64().unwrap());
    }
    let conn = sea_orm::Database::connect(&db.url).await.unwrap();
    let blocker = conn.begin().await.unwrap();
    blocker.execute_unprepared("UPDATE booking_lock SET bookings = bookings WHERE id = 1").await.unwrap();
    let book = |s: &Server, pid: i64| {
        let (http, url, token) = (s.http.clone(), s.url("/itineraries"), s.token.clone());
        tokio::spawn(async move {
            let r = http.post(url).bearer_auth(token).json(&request(pid, 1)).send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        })
    };
    let (first, second) = (book(&a, ids[0]), book(&b, ids[1]));
    // Both have written their rows and wait for the lock.
    let waiting = WAITING_FOR_THE_BOOKING_LOCK;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while count(&db, waiting).await < 2 {
        assert!(std::time::Instant::now() < deadline, "both bookings should be waiting for the booking lock");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(count(&db, "SELECT count(*) FROM itinerary").await, 0, "not committed yet");
    blocker.commit().await.unwrap();
    let (first, second) = (first.await.unwrap(), second.await.unwrap());
    assert_eq!(first.0, StatusCode::CREATED, "{}", first.1);
    assert_eq!(second.0, StatusCode::CREATED, "{}", second.1);
    // Escort duties: none overlaps another unless it is the same shared duty (as a pick-up of
    // two patients from one flight may be), which only a plan made seeing the other can be.
    let duties = |v: &Value| -> Vec<(String, String, String, Option<String>)> {
        v["plan"]["escorts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                let text = |k: &str| d[k].as_str().unwrap().to_owned();
                (
                    text("escort"),
                    d["start"]["utc"].as_str().unwrap().to_owned(),
                    d["end"]["utc"].as_str().unwrap().to_owned(),
                    d["shared"].as_str().map(Into::into),
                )
            })
            .collect()
    };
    let (da, db_) = (duties(&first.1), duties(&second.1));
    assert!(!da.is_empty() && !db_.is_empty());
    for x in &da {
        for y in &db_ {
            let overlap = x.0 == y.0 && x.1 < y.2 && y.1 < x.2;
            assert!(!overlap || (x.3.is_some() && x.3 == y.3), "escort {} double-booked: {x:?} and {y:?}", x.0);
        }
    }
    // The attempt rolled back left nothing: one version and one set of rows per itinerary.
    assert_eq!(count(&db, "SELECT count(*) FROM itinerary").await, 2);
    assert_eq!(count(&db, "SELECT count(*) FROM itinerary_version").await, 2);
    assert_eq!(count(&db, "SELECT count(*) FROM audit_log WHERE action = 'create' AND entity = 'itinerary'").await, 2);
    let per = |table: &str| format!("SELECT count(DISTINCT itinerary_id) FROM {table}");
    for table in ["booking", "event", "scheduled_message", "calendar_uid"] {
        assert_eq!(count(&db, &per(table)).await, 2, "{table}");
    }
    let rows = |id: i64| format!("SELECT count(*) FROM scheduled_message WHERE itinerary_id = {id}");
    let (ia, ib) = (first.1["id"].as_i64().unwrap(), second.1["id"].as_i64().unwrap());
    assert_eq!(count(&db, &rows(ia)).await, count(&db, &rows(ib)).await, "the same plan shape, the same messages");
    drop((a, b));
    db.drop_pg().await;
}

/// A group's own rows, inserted before the lock, are in what the lock's reading returns (the
/// same transaction sees them): the check must leave them out, or every group would find its
/// escorts taken by itself, roll back and be planned again under the lock (still correct, at
/// twice the work). A rolled-back attempt leaves a gap in the itinerary ids (a sequence is not
/// rolled back), so bookings made one at a time must get consecutive ids.
#[tokio::test]
async fn postgres_a_group_is_not_checked_against_its_own_rows() {
    let Some(db) = Db::postgres("own_rows").await else { return };
    let s = Server::start(&db);
    let mut ids = Vec::new();
    for i in 0..3 {
        let (st, p) = s.call("POST", "/patients", Some(patient(&format!("Patient {i}")))).await;
        assert_eq!(st, StatusCode::CREATED);
        // One week for all: the reading returns the others' rows too, and they must stay.
        let (st, it) = s.call("POST", "/itineraries", Some(request(p["id"].as_i64().unwrap(), 1))).await;
        assert_eq!(st, StatusCode::CREATED, "{it}");
        ids.push(it["id"].as_i64().unwrap());
    }
    assert_eq!(ids, [ids[0], ids[0] + 1, ids[0] + 2], "a group was rolled back and planned again under the lock");
    assert_eq!(count(&db, "SELECT count(*) FROM itinerary_version").await, 3);
    drop(s);
    db.drop_pg().await;
}

/// A patient erased while a booking of theirs waits for the booking lock with its rows written:
/// the one queued first at the lock goes first, and neither waits on the other (migration 16:
/// the itinerary's patient is checked at COMMIT, under the lock; before, the booking's check had
/// locked the patient's row, and the two deadlocked until PostgreSQL failed one of them a second
/// later: the test counts PostgreSQL's deadlocks). Here the erasure queued first: the patient is erased, the booking
/// is answered that nothing was stored, and nothing of it is. The lock is held here by `SELECT …
/// FOR UPDATE`: a holder that updated the row (as a booking group does) lets the waiters race
/// for its new version when it commits, and either may win (PostgreSQL's EvalPlanQual), which
/// failed this test once in CI with the booking first (answered truly: stored, and the erasure
/// refused with `itinerary_active`).
#[tokio::test]
async fn postgres_an_erasure_queued_before_a_booking_goes_first() {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let Some(db) = Db::postgres("erase_first").await else { return };
    let a = Server::start(&db);
    let (st, p) = a.call("POST", "/patients", Some(patient("Patient 0"))).await;
    assert_eq!(st, StatusCode::CREATED);
    let pid = p["id"].as_i64().unwrap();
    let conn = sea_orm::Database::connect(&db.url).await.unwrap();
    let blocker = conn.begin().await.unwrap();
    blocker.execute_unprepared("SELECT 1 FROM booking_lock WHERE id = 1 FOR UPDATE").await.unwrap();
    let send = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let (http, url, token) = (a.http.clone(), a.url(path), a.token.clone());
        tokio::spawn(async move {
            let mut r = http.request(method, url).bearer_auth(token);
            if let Some(b) = body {
                r = r.json(&b);
            }
            let r = r.send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap_or(Value::Null))
        })
    };
    let waiting = WAITING_FOR_THE_BOOKING_LOCK;
    let wait_for = async |n: i64, what: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while count(&db, waiting).await < n {
            assert!(std::time::Instant::now() < deadline, "{what} should be waiting for the booking lock");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    let erase = send(reqwest::Method::DELETE, &format!("/patients/{pid}"), None);
    wait_for(1, "the erasure").await;
    let book = send(reqwest::Method::POST, "/itineraries", Some(request(pid, 1)));
    wait_for(2, "the booking, its rows written,").await;
    let deadlocks = "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()";
    let before = count(&db, deadlocks).await;
    blocker.commit().await.unwrap();
    let released = std::time::Instant::now();
    let (erase, book) = (erase.await.unwrap(), book.await.unwrap());
    // PostgreSQL looks for a deadlock only after deadlock_timeout (1 s) of waiting.
    let took = released.elapsed();
    assert!(took < std::time::Duration::from_millis(800), "both answered {took:?} after the lock was released");
    assert_eq!(erase.0, StatusCode::OK, "the erasure queued first: {}", erase.1);
    assert_eq!(book.0, StatusCode::SERVICE_UNAVAILABLE, "{}", book.1);
    assert_eq!(book.1["error"]["code"], "store_unavailable", "answered that nothing was stored: {}", book.1);
    for table in ["patient", "itinerary", "itinerary_version", "booking", "event", "scheduled_message", "calendar_uid"] {
        assert_eq!(count(&db, &format!("SELECT count(*) FROM {table}")).await, 0, "{table}");
    }
    // Statistics reach pg_stat_database when a backend reports them: give them the chance.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(count(&db, deadlocks).await, before, "no deadlock between the erasure and the booking");
    drop(a);
    db.drop_pg().await;
}

/// An escort stood down by another process is not booked by this one: its bookings are planned
/// ahead against the clinic as it last read it, and the writer, under the lock, reads the
/// clinic again when its change count (kept by triggers, migration 15) moved.
async fn an_escort_stood_down_elsewhere_is_not_booked(db: Db) {
    let a = Server::start(&db);
    let b = Server::start(&db);
    let mut ids = Vec::new();
    for i in 0..2 {
        let (st, p) = a.call("POST", "/patients", Some(patient(&format!("Patient {i}")))).await;
        assert_eq!(st, StatusCode::CREATED);
        ids.push(p["id"].as_i64().unwrap());
    }
    let escorts = |v: &Value| -> std::collections::BTreeSet<String> {
        v["plan"]["escorts"].as_array().unwrap().iter().map(|d| d["escort"].as_str().unwrap().to_owned()).collect()
    };
    let (st, first) = a.call("POST", "/itineraries", Some(request(ids[0], 1))).await;
    assert_eq!(st, StatusCode::CREATED, "{first}");
    let pickup = first["plan"]["escorts"].as_array().unwrap().iter().find(|d| d["event"] == "trip1.pickup").unwrap()["escort"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, stood_down) = b.call("GET", &format!("/escorts/{pickup}"), None).await;
    let (st, _) = b.call("DELETE", &format!("/escorts/{pickup}"), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    // Another week: nothing of the first booking stands in its way, only the clinic changed,
    // and the sample rota has no other escort for a 04:30 landing.
    let (st, refused) = a.call("POST", "/itineraries", Some(request(ids[1], 3))).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "booked with {pickup} stood down: {refused}");
    assert_eq!(refused["error"]["violations"][0]["rule"], "escort_available", "{refused}");
    // Back on the rota (again through the other process): booked with them.
    let (st, _) = b.call("PUT", &format!("/escorts/{pickup}"), Some(stood_down)).await;
    assert_eq!(st, StatusCode::OK);
    let (st, second) = a.call("POST", "/itineraries", Some(request(ids[1], 3))).await;
    assert_eq!(st, StatusCode::CREATED, "{second}");
    assert!(escorts(&second).contains(&pickup), "{second}");
    drop((a, b));
    db.drop_pg().await;
}

/// An itinerary's rows (versions, events, bookings, messages, calendar UIDs) always belong to
/// an itinerary that exists, and an itinerary with rows is not deleted: foreign keys on SQLite,
/// per-statement triggers on PostgreSQL (migration 17). Each statement copies a booked
/// itinerary's rows, some of them to an itinerary that does not exist.
async fn rows_always_belong_to_an_itinerary(db: Db) {
    use sea_orm::{ConnectionTrait, SqlErr};
    let a = Server::start(&db);
    let (st, p) = a.call("POST", "/patients", Some(patient("Patient 0"))).await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, it) = a.call("POST", "/itineraries", Some(request(p["id"].as_i64().unwrap(), 1))).await;
    assert_eq!(st, StatusCode::CREATED, "{it}");
    let id = it["id"].as_i64().unwrap();
    let none = id + 1_000_000;
    let conn = sea_orm::Database::connect(&db.url).await.unwrap();
    let copy = |to: &[i64]| {
        let from = to.iter().map(|t| format!("SELECT {t} AS t")).collect::<Vec<_>>().join(" UNION ALL ");
        format!(
            "INSERT INTO event (itinerary_id, key, kind, starts_at, ends_at, start_zone, end_zone, start_date, end_date, escort_id) \
             SELECT to_.t, key, kind, starts_at, ends_at, start_zone, end_zone, start_date, end_date, escort_id \
             FROM event, ({from}) AS to_ WHERE itinerary_id = {id}"
        )
    };
    let events = format!("SELECT count(*) FROM event WHERE itinerary_id = {id}");
    let before = count(&db, &events).await;
    assert!(before > 0);
    // SQLite reports a RESTRICT as its trigger's code (1811), which sea-orm does not map.
    let foreign_key = |e: &sea_orm::DbErr| {
        matches!(e.sql_err(), Some(SqlErr::ForeignKeyConstraintViolation(_))) || e.to_string().contains("FOREIGN KEY constraint failed")
    };
    let refused = async |sql: String| {
        let e = conn.execute_unprepared(&sql).await.expect_err(&sql);
        assert!(foreign_key(&e), "{sql}: {e}");
    };
    // Copied to itself: stored.
    conn.execute_unprepared(&copy(&[id])).await.unwrap();
    assert_eq!(count(&db, &events).await, 2 * before);
    // To a missing itinerary, alone or among rows whose itinerary exists: refused, whole.
    refused(copy(&[none])).await;
    refused(copy(&[id, none])).await;
    refused(copy(&[none, id])).await;
    assert_eq!(count(&db, &events).await, 2 * before);
    assert_eq!(count(&db, &format!("SELECT count(*) FROM event WHERE itinerary_id = {none}")).await, 0);
    // Moved to a missing itinerary, or the itinerary deleted or renumbered under its rows.
    refused(format!("UPDATE calendar_uid SET itinerary_id = {none} WHERE itinerary_id = {id}")).await;
    refused(format!("DELETE FROM itinerary WHERE id = {id}")).await;
    refused(format!("UPDATE itinerary SET id = {none} WHERE id = {id}")).await;
    assert_eq!(count(&db, &format!("SELECT count(*) FROM itinerary WHERE id = {id}")).await, 1);
    if db.pg_name.is_some() {
        // An erasure deletes the rows, then the itinerary; a copy made meanwhile waits for it
        // (the itinerary is locked as a foreign key locks it), then finds the itinerary gone.
        use sea_orm::TransactionTrait;
        let eraser = conn.begin().await.unwrap();
        eraser
            .execute_unprepared(&format!(
                "DELETE FROM delivery WHERE message_id IN (SELECT id FROM scheduled_message WHERE itinerary_id = {id})"
            ))
            .await
            .unwrap();
        for table in ["itinerary_version", "event", "booking", "scheduled_message", "calendar_uid"] {
            eraser.execute_unprepared(&format!("DELETE FROM {table} WHERE itinerary_id = {id}")).await.unwrap();
        }
        eraser.execute_unprepared(&format!("DELETE FROM itinerary WHERE id = {id}")).await.unwrap();
        let url = db.url.clone();
        let sql = copy(&[id]);
        let copier = tokio::spawn(async move { sea_orm::Database::connect(&url).await.unwrap().execute_unprepared(&sql).await });
        let waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'";
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while count(&db, waiting).await < 1 {
            assert!(std::time::Instant::now() < deadline, "the copy should wait for the erasure");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        eraser.commit().await.unwrap();
        let e = copier.await.unwrap().expect_err("a copy to an erased itinerary");
        assert!(foreign_key(&e), "{e}");
        assert_eq!(count(&db, &format!("SELECT count(*) FROM event WHERE itinerary_id = {id}")).await, 0);
    }
    drop(a);
    db.drop_pg().await;
}

#[tokio::test]
async fn sqlite_rows_always_belong_to_an_itinerary() {
    rows_always_belong_to_an_itinerary(Db::sqlite("rows_belong")).await;
}

#[tokio::test]
async fn postgres_rows_always_belong_to_an_itinerary() {
    if let Some(db) = Db::postgres("rows_belong").await {
        rows_always_belong_to_an_itinerary(db).await;
    }
}

#[tokio::test]
async fn sqlite_an_escort_stood_down_elsewhere_is_not_booked() {
    an_escort_stood_down_elsewhere_is_not_booked(Db::sqlite("stood_down")).await;
}

#[tokio::test]
async fn postgres_an_escort_stood_down_elsewhere_is_not_booked() {
    if let Some(db) = Db::postgres("stood_down").await {
        an_escort_stood_down_elsewhere_is_not_booked(db).await;
    }
}

/// SIGTERM while bookings are in flight: the server stops taking connections, finishes what it
/// accepted, and exits cleanly. No request is cut off mid-answer, and every itinerary it
/// answered 201 for is there after a restart.
async fn shutdown_finishes_requests_in_flight(db: Db) {
    let mut s = Server::start(&db);
    let mut ids = Vec::new();
    for i in 0..24 {
        let (_, p) = s.call("POST", "/patients", Some(patient(&format!("Patient {i}")))).await;
        ids.push(p["id"].as_i64().unwrap());
    }
    let (base, token, http) = (s.base.clone(), s.token.clone(), s.http.clone());
    let tasks: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, &pid)| {
            let (base, token, http) = (base.clone(), token.clone(), http.clone());
            tokio::spawn(async move {
                let r = http.post(format!("{base}/itineraries")).bearer_auth(token).json(&request(pid, 3 + i as i64 / 3)).send().await;
                match r {
                    Ok(r) => {
                        let status = r.status();
                        let body: Value = r.json().await.expect("an accepted request gets its whole answer");
                        Ok((status, body, std::time::Instant::now()))
                    }
                    Err(e) => Err(e),
                }
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let signalled = std::time::Instant::now();
    assert!(s.stop().success(), "SIGTERM with requests in flight still exits cleanly");
    let mut after_signal = 0;
    let mut booked = Vec::new();
    let (mut answered, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok((st, body, done)) => {
                answered += 1;
                after_signal += usize::from(done > signalled);
                assert!([StatusCode::CREATED, StatusCode::CONFLICT, StatusCode::UNPROCESSABLE_ENTITY].contains(&st), "{st}: {body}");
                if st == StatusCode::CREATED {
                    booked.push(body["id"].as_i64().unwrap());
                }
            }
            // Refused at the door once shutdown began: never cut off after being accepted.
            Err(e) => {
                refused += 1;
                assert!(e.is_connect() || e.is_request(), "a request was cut off: {e:?}");
            }
        }
    }
    println!("{answered} answered ({after_signal} after SIGTERM), {refused} refused at shutdown, {} booked", booked.len());
    assert!(after_signal > 0, "some requests were still in flight when SIGTERM came");
    let s = Server::start(&db);
    for id in booked {
        let (st, it) = s.call("GET", &format!("/itineraries/{id}"), None).await;
        assert_eq!(st, StatusCode::OK, "itinerary {id} answered 201 before shutdown: {it}");
    }
    drop(s);
    db.drop_pg().await;
}

#[tokio::test]
async fn sqlite_shutdown_finishes_requests_in_flight() {
    shutdown_finishes_requests_in_flight(Db::sqlite("shutdown")).await;
}

#[tokio::test]
async fn postgres_shutdown_finishes_requests_in_flight() {
    if let Some(db) = Db::postgres("shutdown").await {
        shutdown_finishes_requests_in_flight(db).await;
    }
}

#[tokio::test]
async fn sqlite_health_auth_and_bad_input() {
    health_auth_and_bad_input(Db::sqlite("bad-input")).await;
}

#[tokio::test]
async fn sqlite_itinerary_lifecycle() {
    itinerary_lifecycle(Db::sqlite("lifecycle")).await;
}

#[tokio::test]
async fn sqlite_parallel_bookings_never_double_book() {
    parallel_bookings_never_double_book(Db::sqlite("parallel"), 1).await;
}

#[tokio::test]
async fn postgres_health_auth_and_bad_input() {
    if let Some(db) = Db::postgres("bad_input").await {
        health_auth_and_bad_input(db).await;
    }
}

#[tokio::test]
async fn postgres_itinerary_lifecycle() {
    if let Some(db) = Db::postgres("lifecycle").await {
        itinerary_lifecycle(db).await;
    }
}

#[tokio::test]
async fn postgres_parallel_bookings_never_double_book() {
    if let Some(db) = Db::postgres("parallel").await {
        parallel_bookings_never_double_book(db, 1).await;
    }
}

#[tokio::test]
async fn postgres_two_processes_never_double_book() {
    if let Some(db) = Db::postgres("two_processes").await {
        parallel_bookings_never_double_book(db, 2).await;
    }
}

/// `itinerary admin` with the server's own settings, as an operator runs it.
fn admin(db: &Db, args: &[&str]) -> (String, String) {
    let out = itinerary(db).arg("admin").args(args).output().unwrap();
    assert!(out.status.success(), "admin {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

/// Coordinator tokens end (issue 12, item 9): they expire, an operator revokes all of a
/// coordinator's at once and lists who used theirs when, and every read of a patient's record
/// is in the audit log beside the changes.
#[tokio::test]
async fn coordinator_tokens_expire_are_revoked_and_reads_are_audited() {
    use sea_orm::ConnectionTrait;
    let db = Db::sqlite("coordinator-tokens");
    let mut s = Server::start(&db);
    let (st, p) = s.call("POST", "/patients", Some(patient("山田 太郎"))).await;
    assert_eq!(st, StatusCode::CREATED);
    let pid = p["id"].as_i64().unwrap();
    let (st, _) = s.call("GET", &format!("/patients/{pid}"), None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s.call("GET", "/patients", None).await;
    assert_eq!(st, StatusCode::OK);

    let (list, _) = admin(&db, &["list-coordinators"]);
    let row = list.lines().find(|l| l.contains("Test Coordinator")).unwrap_or_else(|| panic!("{list}"));
    assert!(row.split_whitespace().nth(3) == Some("1") && row.matches(" UTC").count() == 2, "one live token, used: {row}");

    // A second token that has run out is refused; a fresh one works.
    let (second, _) = admin(&db, &["issue-token", "1", "--days", "1"]);
    let second = second.trim().to_owned();
    let get = |token: &str| s.http.get(s.url("/patients")).bearer_auth(token.to_owned()).send();
    assert_eq!(get(&second).await.unwrap().status(), StatusCode::OK);
    let conn = sea_orm::Database::connect(&db.url).await.unwrap();
    let hash = itinerary_store::hash_token(&second);
    conn.execute_unprepared(&format!("UPDATE coordinator_token SET expires_at = '2026-01-01 00:00:00+00:00' WHERE token_hash = '{hash}'"))
        .await
        .unwrap();
    assert_eq!(get(&second).await.unwrap().status(), StatusCode::UNAUTHORIZED, "an expired token");
    assert_eq!(get(&s.token).await.unwrap().status(), StatusCode::OK);

    // Reads are audited with ids only; then the coordinator is revoked.
    let (_, audit) = s.call("GET", "/audit", None).await;
    let reads: Vec<&Value> =
        audit["audit"].as_array().unwrap().iter().filter(|a| a["action"] == "read" && a["entity"] == "patient").collect();
    assert!(reads.iter().any(|a| a["id"].as_str() == Some(pid.to_string().as_str())) && reads.iter().any(|a| a["id"] == "list"), "{audit}");
    assert!(!audit.to_string().contains("山田"), "{audit}");
    let (_, said) = admin(&db, &["revoke-coordinator", "1"]);
    assert!(said.contains("2 token(s) revoked"), "{said}");
    assert_eq!(get(&s.token).await.unwrap().status(), StatusCode::UNAUTHORIZED, "a revoked coordinator");
    let (list, _) = admin(&db, &["list-coordinators"]);
    let row = list.lines().find(|l| l.contains("Test Coordinator")).unwrap();
    assert_eq!(row.split_whitespace().nth(3), Some("0"), "{row}");
    assert!(s.stop().success());
}

/// A client that keeps presenting wrong tokens or unknown feed URLs gets 429 with Retry-After
/// after its burst, before any lookup; another address polling its feed is not slowed (issue
/// 12, item 8).
#[tokio::test]
async fn guessing_is_refused_per_client() {
    let db = Db::sqlite("guessing");
    let s = Server::start_with(&db, &[("ITINERARY_SERVER_FAILED_AUTH_BURST", "5"), ("ITINERARY_SERVER_FAILED_AUTH_REFILL_SECONDS", "60")]);
    let (_, p) = s.call("POST", "/patients", Some(patient("山田 太郎"))).await;
    let pid = p["id"].as_i64().unwrap();
    let (st, _) = s.call("POST", "/itineraries", Some(request(pid, 0))).await;
    assert_eq!(st, StatusCode::CREATED);
    let (_, f) = s.call("POST", &format!("/patients/{pid}/feed"), None).await;
    let feed = f["feed_url"].as_str().unwrap().strip_prefix("http://feed.example").unwrap().to_owned();
    // The guesser, on 127.0.0.1: wrong feed URLs and tokens are answered until one goes past
    // the burst of five; then 429 without a lookup.
    let mut codes = Vec::new();
    for n in 0..8 {
        let r = if n % 2 == 0 {
            s.http.get(s.url(&format!("/feed/itf_{n:064x}"))).send().await.unwrap()
        } else {
            s.http.get(s.url("/patients")).bearer_auth(format!("itc_{n:064x}")).send().await.unwrap()
        };
        codes.push(r.status().as_u16());
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=61).contains(&wait), "{wait}");
        }
    }
    assert_eq!(codes, [404, 401, 404, 401, 404, 401, 429, 429], "the sixth failure, one past the burst, starts the wait");
    // A patient's calendar app elsewhere polls on, unhindered.
    let port: u16 = s.base.rsplit(':').next().unwrap().parse().unwrap();
    let other = reqwest::Client::builder().local_address(std::net::IpAddr::from([127, 0, 0, 2])).build().unwrap();
    for _ in 0..50 {
        let r = other.get(format!("http://127.0.0.1:{port}{feed}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    // The guesser stays refused, even with the right feed URL, until its allowance refills.
    assert_eq!(s.http.get(s.url(&feed)).send().await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
}

/// Whether the server closed `c` within `within` (EOF or a reset on reading).
async fn closed(c: &mut tokio::net::TcpStream, within: std::time::Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    let t = std::time::Instant::now();
    while t.elapsed() < within {
        match tokio::time::timeout(within.saturating_sub(t.elapsed()), c.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
    false
}

/// Slow clients (slowloris): half a request line holds a connection only until the header
/// timeout, a kept-alive connection is closed when idle as long, and one address cannot hold
/// more than its share, while another address is served throughout (issue 12, item 7).
#[tokio::test]
async fn slow_clients_are_cut_off_and_capped_per_client() {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    let db = Db::sqlite("slow-clients");
    let s = Server::start_with(
        &db,
        &[
            ("ITINERARY_SERVER_HEADER_READ_TIMEOUT_SECONDS", "3"),
            ("ITINERARY_SERVER_CONNECTIONS_PER_CLIENT", "20"),
            ("ITINERARY_SERVER_MAX_CONNECTIONS", "100"),
        ],
    );
    let addr = s.base.strip_prefix("http://").unwrap().to_owned();
    let mut slow = Vec::new();
    for _ in 0..25 {
        let mut c = TcpStream::connect(&addr).await.unwrap();
        c.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
        slow.push(c);
    }
    let mut refused = 0;
    for c in &mut slow {
        if closed(c, std::time::Duration::from_millis(50)).await {
            refused += 1;
        }
    }
    assert_eq!(refused, 5, "beyond 20 from one address, closed at once");
    let other = reqwest::Client::builder().local_address(std::net::IpAddr::from([127, 0, 0, 2])).build().unwrap();
    let r = other.get(format!("http://{addr}/health")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "another address is served meanwhile");
    let t = std::time::Instant::now();
    let mut cut = 0;
    for c in &mut slow {
        if closed(c, std::time::Duration::from_secs(5)).await {
            cut += 1;
        }
    }
    assert_eq!(cut, 25, "every half-sent request is cut off");
    assert!(t.elapsed() < std::time::Duration::from_secs(5), "within the header timeout: {:?}", t.elapsed());
    // Kept alive and idle: closed after the same timeout, not held for ever.
    let mut c = TcpStream::connect(&addr).await.unwrap();
    c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 4096];
    let n = tokio::io::AsyncReadExt::read(&mut c, &mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let idle = std::time::Instant::now();
    assert!(closed(&mut c, std::time::Duration::from_secs(6)).await, "an idle kept-alive connection is closed");
    assert!(idle.elapsed() >= std::time::Duration::from_millis(2500), "not before the timeout: {:?}", idle.elapsed());
}

/// Fifty changes at once, to fifty itineraries, through a pool of two connections that admits
/// a request for one second (issue 15, items 2, 3 and 6): every answer is true to the database
/// (200: the new version is stored; 503 `busy`: nothing was, with Retry-After), none takes
/// longer than the wait plus the work, never sqlx's 30 s.
async fn many_changes_at_once_are_answered_truly_and_soon(db: Db) {
    let s = Server::start_with(
        &db,
        &[("ITINERARY_DATABASE_POOL_SIZE", "2"), ("ITINERARY_DATABASE_ACQUIRE_TIMEOUT_SECONDS", "1"), ("ITINERARY_SERVER_WORKER", "false")],
    );
    let mut ids = Vec::new();
    for i in 0..50 {
        let (st, p) = s.call("POST", "/patients", Some(patient(&format!("Patient {i}")))).await;
        assert_eq!(st, StatusCode::CREATED, "{p}");
        let (st, it) = s.call("POST", "/itineraries", Some(request(p["id"].as_i64().unwrap(), i))).await;
        assert_eq!(st, StatusCode::CREATED, "{it}");
        ids.push((it["id"].as_i64().unwrap(), request(p["id"].as_i64().unwrap(), i)));
    }
    let tasks: Vec<_> = ids
        .iter()
        .map(|(id, req)| {
            let mut req = req.clone();
            let back = req["trips"][0]["return"]["depart"].as_str().unwrap().replace("23:35", "23:50");
            req["trips"][0]["return"]["depart"] = json!(back);
            let (http, url, token) = (s.http.clone(), s.url(&format!("/itineraries/{id}")), s.token.clone());
            tokio::spawn(async move {
                let t = std::time::Instant::now();
                let r = http.put(url).bearer_auth(token).json(&req).send().await.unwrap();
                let (st, retry) = (r.status(), r.headers().contains_key("retry-after"));
                let body: Value = r.json().await.unwrap_or(Value::Null);
                (st, retry, body, t.elapsed())
            })
        })
        .collect();
    // Meanwhile /health answers within a second, and a full pool is not an outage.
    let (http, url) = (s.http.clone(), s.url("/health"));
    let health = tokio::spawn(async move {
        let mut seen = Vec::new();
        for _ in 0..5 {
            let t = std::time::Instant::now();
            let r = http.get(&url).send().await.unwrap();
            let st = r.status();
            let h: Value = r.json().await.unwrap();
            seen.push((st, h["database_state"].as_str().unwrap_or_default().to_owned(), t.elapsed()));
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        seen
    });
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    for (st, state, took) in health.await.unwrap() {
        assert!(took < std::time::Duration::from_millis(1500), "/health took {took:?} under load");
        assert!(st == StatusCode::OK && (state == "up" || state == "busy"), "{st} {state}");
    }
    // Read back once every answer is in: the reads must not compete with the changes.
    let mut answered = std::collections::BTreeMap::<u16, usize>::new();
    for ((id, _), (st, retry, body, took)) in ids.iter().zip(answers) {
        *answered.entry(st.as_u16()).or_default() += 1;
        assert!(took < std::time::Duration::from_secs(10), "itinerary {id}: answered after {took:?}");
        let (_, now) = s.call("GET", &format!("/itineraries/{id}"), None).await;
        match st {
            StatusCode::OK => assert_eq!(now["version"], 2, "answered 200, not stored: {now}"),
            StatusCode::SERVICE_UNAVAILABLE if body["error"]["code"] == "busy" => {
                assert!(retry, "a busy answer says when to try again");
                assert_eq!(now["version"], 1, "answered busy, yet stored: {body}");
            }
            StatusCode::SERVICE_UNAVAILABLE => assert_eq!(body["error"]["code"], "outcome_unknown", "{body}"),
            other => panic!("itinerary {id}: {other} {body}"),
        }
    }
    eprintln!("50 changes at once through 2 connections: {answered:?}");
}

#[tokio::test]
async fn sqlite_many_changes_at_once_are_answered_truly_and_soon() {
    many_changes_at_once_are_answered_truly_and_soon(Db::sqlite("many-changes")).await;
}

#[tokio::test]
async fn postgres_many_changes_at_once_are_answered_truly_and_soon() {
    if let Some(db) = Db::postgres("many_changes").await {
        many_changes_at_once_are_answered_truly_and_soon(db).await;
    }
}

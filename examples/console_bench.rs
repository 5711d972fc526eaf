//! The console's page benchmark (`bench/console.sh`, issue 13 item 11): fills a season with
//! ITINERARIES booked itineraries (more escorts, chairs and lab draws than the sample rota, so
//! that 500 fit in half a year), signs in as a coordinator, then requests each page REPEAT times,
//! one after another, and prints each page's latency percentiles as JSON lines. Needs a running
//! `itinerary serve` (no worker) and a coordinator token.
//!
//! cargo run --release --example console_bench -- BASE_URL TOKEN [ITINERARIES] [REPEAT]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::Instant;

use chrono::{Datelike, NaiveDate, Utc};
use serde_json::{Value, json};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A single infusion leaving on `day` (night flight), home four days later.
fn request(pid: i64, day: NaiveDate) -> Value {
    let f = |n: i64| (day + chrono::Duration::days(n)).format("%Y-%m-%d").to_string();
    json!({ "patient_id": pid, "protocol": "single-infusion", "trips": [{
        "outbound": { "flight": "MH71", "from": "NRT", "depart": format!("{} 21:40", f(0)), "to": "KUL", "arrive": format!("{} 04:30", f(1)) },
        "return": { "flight": "MH88", "from": "KUL", "depart": format!("{} 23:35", f(4)), "to": "NRT", "arrive": format!("{} 07:15", f(5)) } }] })
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let base = args.get(1).expect("BASE_URL").trim_end_matches('/').to_owned();
    let token = args.get(2).expect("TOKEN").clone();
    let n: usize = args.get(3).map_or(500, |s| s.parse().unwrap());
    let repeat: usize = args.get(4).map_or(200, |s| s.parse().unwrap());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let api = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let r = api.request(method, format!("{base}{path}")).bearer_auth(&token);
        let r = match body {
            Some(b) => r.json(&b),
            None => r,
        };
        async move {
            let res = r.send().await.unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    // Capacity for a busy season: 24 more escorts on the early rota and the late one, 12 chairs,
    // 8 lab draws a slot.
    for i in 0..24 {
        let (from, until) = if i % 2 == 0 { ("04:00", "14:00") } else { ("12:00", "24:00") };
        let escort = json!({ "id": format!("B{i:02}"), "name": format!("Bench Escort {i:02}"), "email": format!("b{i:02}@escorts.example.my"),
            "languages": ["ja", "en"], "works_from": from, "works_until": until, "weekly_days_off": [] });
        let (st, e) = call(reqwest::Method::PUT, &format!("/escorts/B{i:02}"), Some(escort)).await;
        assert!(st < 300, "{e}");
    }
    for (id, cap) in [("chairs", 12), ("lab_draws_per_slot", 8)] {
        let (st, e) = call(reqwest::Method::PUT, &format!("/resources/{id}"), Some(json!({ "capacity": cap }))).await;
        assert!(st < 300, "{e}");
    }

    // The season: from a Sunday a year ahead, seven patients on each night's flight on Sunday,
    // Monday and Tuesday (a later one leaves no clinic day for the blood test before the
    // infusion), until N are booked; a request the clinic cannot take moves on to the next.
    let today = Utc::now().date_naive();
    let year_on = today + chrono::Duration::days(365);
    let first = year_on - chrono::Duration::days(i64::from(year_on.weekday().num_days_from_sunday()));
    let expiry = (first + chrono::Duration::days(800)).format("%Y-%m-%d").to_string();
    let started = Instant::now();
    let (mut booked, mut refused, mut slot) = (Vec::new(), 0, 0i64);
    let mut patients = Vec::new();
    while booked.len() < n {
        let day = first + chrono::Duration::days(7 * (slot / 21) + (slot % 21) / 7);
        slot += 1;
        let i = patients.len();
        let (st, p) = call(
            reqwest::Method::POST,
            "/patients",
            Some(
                json!({ "name": format!("Bench Patient {i:04} 山田"), "email": format!("bench{i}@example.jp"), "birth_date": "1980-01-01",
                "passport_expiry": expiry }),
            ),
        )
        .await;
        assert_eq!(st, 201, "{p}");
        let pid = p["id"].as_i64().unwrap();
        patients.push(pid);
        let (st, it) = call(reqwest::Method::POST, "/itineraries", Some(request(pid, day))).await;
        if st == 201 {
            booked.push((it["id"].as_i64().unwrap(), pid, day));
        } else {
            if refused < 3 {
                eprintln!(
                    "refused ({st}): {}",
                    it["error"]["violations"].as_array().map_or(it.to_string(), |v| v
                        .iter()
                        .map(|x| x["text"]["en"].to_string())
                        .collect::<Vec<_>>()
                        .join(" "))
                );
            }
            refused += 1;
        }
    }
    let last = booked.last().map(|b| b.2).unwrap();
    println!(
        "{}",
        json!({ "what": "season", "itineraries": booked.len(), "refused": refused, "from": first.to_string(), "to": last.to_string(),
            "seconds": started.elapsed().as_secs_f64().round() })
    );

    // Sign in as a browser does, and keep the session cookie and a form's CSRF secret.
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let res = browser
        .post(format!("{base}/console/signin"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}&next=/console/"))
        .send()
        .await
        .unwrap();
    let cookie = res.headers().get("set-cookie").unwrap().to_str().unwrap().split(';').next().unwrap().to_owned();
    let page = |path: String| {
        let r = browser.get(format!("{base}{path}")).header("cookie", &cookie).header("accept-language", "ja");
        async move {
            let res = r.send().await.unwrap();
            assert_eq!(res.status(), 200, "{path}");
            res.text().await.unwrap()
        }
    };
    let home = page("/console/".into()).await;
    let csrf = home.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();

    let (mid_it, mid_pid, mid_day) = booked[booked.len() / 2];
    let busy_week = mid_day - chrono::Duration::days(i64::from(mid_day.weekday().num_days_from_monday()));
    let month = busy_week - chrono::Duration::days(7);
    let mut plan_form = vec![("csrf".to_owned(), csrf.clone()), ("protocol".to_owned(), "single-infusion".to_owned())];
    let probe = request(mid_pid, last + chrono::Duration::days(14));
    for dir in ["outbound", "return"] {
        for k in ["flight", "from", "depart", "to", "arrive"] {
            plan_form.push((format!("trips[0].{dir}.{k}"), probe["trips"][0][dir][k].as_str().unwrap().to_owned()));
        }
    }
    let plan_body: String = plan_form.iter().map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v))).collect::<Vec<_>>().join("&");
    let pages: Vec<(&str, String)> = vec![
        ("week", format!("/console/?from={busy_week}")),
        ("board_2_weeks", format!("/console/board?from={busy_week}&days=14")),
        ("board_4_weeks", format!("/console/board?from={month}&days=28")),
        ("patients", "/console/patients".to_owned()),
        ("patients_search", "/console/patients?q=Patient%200123".to_owned()),
        ("patient", format!("/console/patients/{mid_pid}")),
        ("itinerary", format!("/console/itineraries/{mid_it}")),
        ("plan_form", format!("/console/patients/{mid_pid}/plan")),
        ("cancel_preview", format!("/console/itineraries/{mid_it}/cancel")),
        ("change_form", format!("/console/itineraries/{mid_it}/change")),
    ];
    let report = |what: &str, mut lat: Vec<f64>, bytes: usize| {
        lat.sort_by(f64::total_cmp);
        println!(
            "{}",
            json!({ "what": what, "requests": lat.len(), "p50_ms": (percentile(&lat, 0.5) * 1e5).round() / 100.0,
                "p99_ms": (percentile(&lat, 0.99) * 1e5).round() / 100.0, "max_ms": (percentile(&lat, 1.0) * 1e5).round() / 100.0, "bytes": bytes })
        );
    };
    for (what, path) in pages {
        let mut lat = Vec::with_capacity(repeat);
        let mut bytes = 0;
        for _ in 0..repeat {
            let t = Instant::now();
            bytes = page(path.clone()).await.len();
            lat.push(t.elapsed().as_secs_f64());
        }
        report(what, lat, bytes);
    }
    // The plan preview: a form sent, the trip planned against the season, the page rendered.
    let mut lat = Vec::with_capacity(repeat);
    let mut bytes = 0;
    for _ in 0..repeat {
        let t = Instant::now();
        let res = browser
            .post(format!("{base}/console/patients/{mid_pid}/plan"))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("{plan_body}&action=preview"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        bytes = res.text().await.unwrap().len();
        lat.push(t.elapsed().as_secs_f64());
    }
    report("plan_preview", lat, bytes);
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

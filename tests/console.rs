//! The coordinators' console in a real browser: Debian's headless Chromium driven through
//! chromedriver (WebDriver, fantoccini) against the real `itinerary serve` on SQLite, on the test
//! clock. A coordinator signs in with the keyboard, registers a patient (a Japanese name, a
//! wrong field first), plans the MH71 trip, reads the preview with both zones, books it, sees it
//! on the week, reads its messages, is refused an infeasible trip with the reasons in Japanese,
//! and cancels with a preview of what that sends; forms without their CSRF secret are refused,
//! pages without a session lead to sign-in, and revoking the token ends the session.
//!
//! Every page visited is saved as a PNG under target/; `UPDATE_SCREENSHOTS=1` also writes them
//! to docs/screenshots/, which the README shows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::StatusCode;

/// chromedriver on a free port, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Driver {
        let bin = PathBuf::from("/usr/bin/chromedriver");
        assert!(bin.exists(), "{} is missing: scripts/test installs Debian's chromium and chromium-driver", bin.display());
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = Command::new(bin).arg(format!("--port={port}")).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        // "ChromeDriver was started successfully on port N."
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let t = Instant::now();
        let mut line = String::new();
        while !line.contains("started successfully") {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0 && t.elapsed() < Duration::from_secs(20), "chromedriver did not start: {line}");
        }
        std::thread::spawn(move || for _ in out.lines() {});
        Driver { child, url: format!("http://127.0.0.1:{port}") }
    }

    /// A headless Chromium window the size of a laptop, asking for `lang` pages.
    async fn browser(&self, lang: &str) -> Client {
        self.session(lang, None).await
    }

    /// A headless Chromium as a phone shows pages (390 × 844 CSS pixels, touch), asking for
    /// `lang` pages.
    async fn phone(&self, lang: &str) -> Client {
        self.session(lang, Some(serde_json::json!({ "deviceMetrics": { "width": 390, "height": 844, "pixelRatio": 2.0, "touch": true } })))
            .await
    }

    async fn session(&self, lang: &str, mobile: Option<serde_json::Value>) -> Client {
        let mut caps = serde_json::json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000", format!("--lang={lang}")],
                "prefs": { "intl.accept_languages": lang }
            }
        });
        if let Some(m) = mobile {
            caps["goog:chromeOptions"]["mobileEmulation"] = m;
        }
        let caps = caps.as_object().unwrap().clone().into_iter().collect();
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a Chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Saves what the browser shows as `NAME.png` (and in docs/screenshots with UPDATE_SCREENSHOTS).
async fn shot(b: &Client, name: &str) {
    let png = b.screenshot().await.unwrap();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), &png).unwrap();
    if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
        let docs = root().join("docs/screenshots");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::write(docs.join(format!("{name}.png")), &png).unwrap();
    }
}

async fn text(b: &Client) -> String {
    b.find(Locator::Css("body")).await.unwrap().text().await.unwrap()
}

/// Types `keys` into the field labelled by id `id`.
async fn type_into(b: &Client, id: &str, keys: &str) {
    let field = b.find(Locator::Id(id)).await.unwrap_or_else(|_| panic!("no field #{id}"));
    field.clear().await.unwrap();
    field.send_keys(keys).await.unwrap();
}

/// Presses Enter in field `id` (submitting its form) and waits for the next page.
async fn press_enter_in(b: &Client, id: &str) {
    let field = b.find(Locator::Id(id)).await.unwrap();
    next_page(b, async { field.send_keys(&char::from(Key::Enter).to_string()).await.unwrap() }).await;
}

/// Clicks the button `css` and waits for the page it leads to.
async fn click(b: &Client, css: &str) {
    let button = b.find(Locator::Css(css)).await.unwrap_or_else(|_| panic!("no {css}"));
    next_page(b, async { button.click().await.unwrap() }).await;
}

/// Clicks the button at `xpath` and waits for the page it leads to.
async fn click_xpath(b: &Client, xpath: &str) {
    let button = b.find(Locator::XPath(xpath)).await.unwrap_or_else(|_| panic!("no {xpath}"));
    next_page(b, async { button.click().await.unwrap() }).await;
}

/// Runs `action` (a form sent) and waits until the page it was on is gone and the next one
/// has loaded: WebDriver waits for navigations it starts itself, not for a form's.
async fn next_page(b: &Client, action: impl Future<Output = ()>) {
    let old = b.find(Locator::Css("html")).await.unwrap();
    action.await;
    let t = Instant::now();
    while old.tag_name().await.is_ok() {
        assert!(t.elapsed() < Duration::from_secs(20), "the form led nowhere");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    while b.execute("return document.readyState", vec![]).await.unwrap() != "complete" {
        assert!(t.elapsed() < Duration::from_secs(20), "the page did not load");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The MH71 trip of examples/mh71-red-eye.toml, typed into the plan form, local times as printed.
async fn fill_trip(b: &Client, back_depart: &str, back_arrive: &str) {
    for (id, v) in [
        ("f-trips-0-outbound-flight", "MH71"),
        ("f-trips-0-outbound-from", "NRT"),
        ("f-trips-0-outbound-depart", "2026-12-01 21:40"),
        ("f-trips-0-outbound-to", "KUL"),
        ("f-trips-0-outbound-arrive", "2026-12-02 04:30"),
        ("f-trips-0-return-flight", "MH88"),
        ("f-trips-0-return-from", "KUL"),
        ("f-trips-0-return-depart", back_depart),
        ("f-trips-0-return-to", "NRT"),
        ("f-trips-0-return-arrive", back_arrive),
    ] {
        type_into(b, id, v).await;
    }
}

/// Issue 16, item 2, in a real browser at a phone's width: a patient arrives from LINE's chat on
/// the linking page, makes a mistake (told in their language, beside the fields), proves who
/// they are with the keyboard alone (the reference, then Tab, the birth date typed with a
/// Japanese keyboard's full-width digits, Tab, the address, Enter), and the browser goes on to LINE's
/// account-link endpoint (the page's Content-Security-Policy lets the form end there), which
/// links them. In Japanese and in English.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_links_line_on_a_phone_in_a_real_browser() {
    const SECRET: &str = "console-line-secret";
    let db = Db::sqlite("console-line-link");
    let platform = line_platform::Shared::default();
    let base = line_platform::start(platform.clone()).await;
    let settings = line_platform::settings(&base, SECRET);
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s = Server::start_with(&db, &settings);
    platform.lock().unwrap().webhook = Some((s.url("/line/webhook"), SECRET.to_owned()));
    let driver = Driver::start();
    for (k, (lang, user, mistake, typed_birth)) in [
        ("ja", "U1111111111111111111111111111aaaa", "一致しません", "１９７８０５１４"),
        ("en", "U2222222222222222222222222222bbbb", "does not match", "1978-05-14"),
    ]
    .into_iter()
    .enumerate()
    {
        let (st, p) = s.call("POST", "/patients", Some(patient("山田 太郎"))).await;
        assert_eq!(st, StatusCode::CREATED, "{p}");
        let pid = p["id"].as_i64().unwrap();
        let (st, it) = s.call("POST", "/itineraries", Some(request(pid, k as i64))).await;
        assert_eq!(st, StatusCode::CREATED, "{it}");
        let reference = it["reference"].as_str().unwrap().to_owned();
        let token = line_platform::http_link_token(&base, user).await;

        let b = driver.phone(lang).await;
        b.goto(&s.url(&format!("/line/link?linkToken={token}"))).await.unwrap();
        let width: i64 = b.execute("return window.innerWidth", vec![]).await.unwrap().as_i64().unwrap();
        assert!(width <= 400, "a phone's width: {width}");
        // The reference field has the focus: type it, a wrong birth date, Enter.
        assert_eq!(b.active_element().await.unwrap().attr("id").await.unwrap().as_deref(), Some("reference"));
        type_into(&b, "reference", &reference).await;
        type_into(&b, "birth_date", "19780515").await;
        type_into(&b, "email", "taro.yamada@example.jp").await;
        press_enter_in(&b, "email").await;
        assert!(text(&b).await.contains(mistake), "{}", text(&b).await);
        assert_eq!(b.find(Locator::Id("birth_date")).await.unwrap().attr("aria-invalid").await.unwrap().as_deref(), Some("true"));
        shot(&b, &format!("line-link-mistake-{lang}")).await;
        // Keyboard only: the reference is kept; Tab from it reaches the birth date.
        let field = b.find(Locator::Id("reference")).await.unwrap();
        assert_eq!(field.prop("value").await.unwrap().as_deref(), Some(reference.as_str()));
        field.send_keys(&char::from(Key::Tab).to_string()).await.unwrap();
        assert_eq!(b.active_element().await.unwrap().attr("id").await.unwrap().as_deref(), Some("birth_date"));
        b.active_element().await.unwrap().send_keys(typed_birth).await.unwrap();
        b.active_element().await.unwrap().send_keys(&char::from(Key::Tab).to_string()).await.unwrap();
        assert_eq!(b.active_element().await.unwrap().attr("id").await.unwrap().as_deref(), Some("email"));
        b.active_element().await.unwrap().send_keys("taro.yamada@example.jp").await.unwrap();
        shot(&b, &format!("line-link-{lang}")).await;
        press_enter_in(&b, "email").await;
        // The browser went on to LINE's endpoint, which linked the patient.
        let at = b.current_url().await.unwrap();
        assert!(at.as_str().starts_with(&format!("{base}/dialog/bot/accountLink")), "{at}");
        assert!(text(&b).await.contains("Linked"), "{}", text(&b).await);
        let (_, p) = s.call("GET", &format!("/patients/{pid}"), None).await;
        assert_eq!(p["line_user_id"], user, "{p}");
        b.close().await.unwrap();
    }
}

/// Issue 17, item 6: a patient answers the outcomes questionnaire on a phone, keyboard only
/// (Tab to a scale, Space, arrows to the number, Tab to its Save, Enter), in Japanese and in
/// English; each save comes back at the next question saying it was saved; nothing scrolls
/// sideways at 390 px. Then a coordinator reads the answers and the chart on the patient page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_answers_the_questionnaire_on_a_phone_in_a_real_browser() {
    let db = Db::sqlite("console-questionnaire");
    let s = Server::start_with(&db, &[("ITINERARY_CLOCK_MODE", "test"), ("ITINERARY_SERVER_WORKER", "false")]);
    let now: chrono::DateTime<chrono::Utc> = "2027-03-01T01:00:00Z".parse().unwrap();
    let (st, _) = s.call("PUT", "/clock", Some(serde_json::json!({ "now": now.to_rfc3339() }))).await;
    assert_eq!(st, StatusCode::OK);
    // The worker makes each link as its message goes; here the store makes them as it would.
    let store = itinerary_store::Store::connect(&db.url).await.unwrap();
    let driver = Driver::start();
    let tab = char::from(Key::Tab).to_string();
    let mut patient_id = 0;
    for (k, lang) in ["ja", "en"].into_iter().enumerate() {
        let mut p = patient(if lang == "ja" { "山田 太郎" } else { "Ken Tanaka" });
        p["language"] = lang.into();
        let (st, p) = s.call("POST", "/patients", Some(p)).await;
        assert_eq!(st, StatusCode::CREATED, "{p}");
        patient_id = p["id"].as_i64().unwrap();
        let mut req = request(patient_id, k as i64);
        // In 2027, as the test clock is: a Sunday night out, back on Thursday night.
        let days = [["2027-04-18", "2027-04-19", "2027-04-22", "2027-04-23"], ["2027-04-25", "2027-04-26", "2027-04-29", "2027-04-30"]][k];
        req["trips"][0]["outbound"]["depart"] = format!("{} 21:40", days[0]).into();
        req["trips"][0]["outbound"]["arrive"] = format!("{} 04:30", days[1]).into();
        req["trips"][0]["return"]["depart"] = format!("{} 23:35", days[2]).into();
        req["trips"][0]["return"]["arrive"] = format!("{} 07:15", days[3]).into();
        let (st, it) = s.call("POST", "/itineraries", Some(req)).await;
        assert_eq!(st, StatusCode::CREATED, "{it}");
        let id = i32::try_from(it["id"].as_i64().unwrap()).unwrap();
        let secret = store.issue_questionnaire_link(id, "baseline", now).await.unwrap().unwrap();

        let b = driver.phone(lang).await;
        b.goto(&s.url(&format!("/questionnaire/{secret}"))).await.unwrap();
        let (width, scroll) = (
            b.execute("return window.innerWidth", vec![]).await.unwrap().as_i64().unwrap(),
            b.execute("return document.documentElement.scrollWidth", vec![]).await.unwrap().as_i64().unwrap(),
        );
        assert!(width <= 400 && scroll <= width, "a phone's width, nothing sideways: {width} {scroll}");
        assert!(text(&b).await.contains(if lang == "ja" {
            "診察前のアンケート"
        } else {
            "Questionnaire before your appointment"
        }));
        // Tab from the top of the page to the first scale (skip link, language link, then it).
        let body = b.find(Locator::Css("body")).await.unwrap();
        body.send_keys(&tab).await.unwrap();
        for _ in 0..5 {
            if b.active_element().await.unwrap().attr("name").await.unwrap().as_deref() == Some("itch") {
                break;
            }
            b.active_element().await.unwrap().send_keys(&tab).await.unwrap();
        }
        let focused = b.active_element().await.unwrap();
        assert_eq!(focused.attr("name").await.unwrap().as_deref(), Some("itch"), "Tab reaches the first scale");
        // Space picks 0; eight presses of → move to 8; Tab to its Save; Enter.
        focused.send_keys(" ").await.unwrap();
        for _ in 0..8 {
            b.active_element().await.unwrap().send_keys(&char::from(Key::Right).to_string()).await.unwrap();
        }
        b.active_element().await.unwrap().send_keys(&tab).await.unwrap();
        let save = b.active_element().await.unwrap();
        assert_eq!(save.attr("value").await.unwrap().as_deref(), Some("itch"), "Tab goes on to the question's Save");
        next_page(&b, async { save.send_keys(&char::from(Key::Enter).to_string()).await.unwrap() }).await;
        assert!(b.current_url().await.unwrap().as_str().ends_with("saved=itch#q-sleep"), "{}", b.current_url().await.unwrap());
        assert!(text(&b).await.contains(if lang == "ja" { "保存しました" } else { "Saved" }));
        let checked = b.find(Locator::Css("input[name=itch]:checked")).await.unwrap();
        assert_eq!(checked.attr("value").await.unwrap().as_deref(), Some("8"));
        // The page came back at the next question: Tab from there reaches its scale.
        b.active_element().await.unwrap().send_keys(&tab).await.unwrap();
        let focused = b.active_element().await.unwrap();
        assert_eq!(focused.attr("name").await.unwrap().as_deref(), Some("sleep"), "the next question comes next");
        focused.send_keys(" ").await.unwrap();
        for _ in 0..6 {
            b.active_element().await.unwrap().send_keys(&char::from(Key::Right).to_string()).await.unwrap();
        }
        b.active_element().await.unwrap().send_keys(&tab).await.unwrap();
        let save = b.active_element().await.unwrap();
        next_page(&b, async { save.send_keys(&char::from(Key::Enter).to_string()).await.unwrap() }).await;
        b.execute("window.scrollTo(0, 0)", vec![]).await.unwrap();
        shot(&b, &format!("questionnaire-{lang}")).await;
        let stored = count(&db, &format!("SELECT count(*) FROM outcome_answer WHERE itinerary_id = {id} AND itch = 8 AND sleep = 6")).await;
        assert_eq!(stored, 1, "both answers saved as given");
        b.close().await.unwrap();

        // Two follow-ups answered later (by form, as the page sends them), for the chart.
        for (occasion, itch, sleep, days, severity) in [("followup_1m", "5", "3", "4", "3"), ("followup_3m", "2", "1", "1", "2")] {
            let secret = store.issue_questionnaire_link(id, occasion, now).await.unwrap().unwrap();
            let r = line_platform::browser()
                .post(s.url(&format!("/questionnaire/{secret}")))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(line_platform::form(&[
                    ("itch", itch),
                    ("sleep", sleep),
                    ("steroid_days", days),
                    ("impression", severity),
                    ("treatments", "none"),
                ]))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::SEE_OTHER);
        }
        let secret = store.issue_questionnaire_link(id, "baseline", now).await.unwrap().unwrap();
        let r = line_platform::browser()
            .post(s.url(&format!("/questionnaire/{secret}")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(line_platform::form(&[("steroid_days", "7"), ("impression", "4"), ("treatments", "antihistamine")]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
    }

    // The coordinator's view of the English-speaking patient: the table, the summary and the chart.
    let b = driver.browser("ja").await;
    b.goto(&s.url("/console/signin")).await.unwrap();
    type_into(&b, "token", &s.token).await;
    press_enter_in(&b, "token").await;
    b.goto(&s.url(&format!("/console/patients/{patient_id}#outcomes-h"))).await.unwrap();
    let page = text(&b).await;
    assert!(page.contains("治療経過") && page.contains("かゆみ 8 → 2 (−75%)"), "{page}");
    let loaded: bool = b
        .execute("const i = document.querySelector('figure.chart img'); return i.complete && i.naturalWidth > 0", vec![])
        .await
        .unwrap()
        .as_bool()
        .unwrap();
    assert!(loaded, "the chart is served to the page as an image the browser draws");
    b.execute("document.getElementById('outcomes-h').scrollIntoView()", vec![]).await.unwrap();
    shot(&b, "console-outcomes").await;
    b.execute("document.querySelector('figure.chart').scrollIntoView()", vec![]).await.unwrap();
    shot(&b, "console-outcomes-chart").await;
    b.close().await.unwrap();
}

/// Issue 17, items 4 and 5, through the console's forms: the re-evaluation decision (CSRF, a set
/// of another patient refused), the draft of the second set opening the plan form a year on,
/// the answers' CSV, chart and the export, and erasure (the id typed again; refused while a
/// trip is ahead; then the patient is gone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_patient_page_records_the_decision_drafts_the_second_set_and_erases() {
    let db = Db::sqlite("console-outcomes");
    let server = Server::start_with(&db, &[("ITINERARY_CLOCK_MODE", "test"), ("ITINERARY_SERVER_WORKER", "false")]);
    let s = &server;
    let (st, _) = s.call("PUT", "/clock", Some(serde_json::json!({ "now": "2027-03-01T01:00:00Z" }))).await;
    assert_eq!(st, StatusCode::OK);
    let mut ids = Vec::new();
    for (k, name) in ["山田 太郎", "佐藤 花子"].into_iter().enumerate() {
        let (_, p) = s.call("POST", "/patients", Some(patient(name))).await;
        let mut req = request(p["id"].as_i64().unwrap(), 0);
        let days = [["2027-04-18", "2027-04-19", "2027-04-22", "2027-04-23"], ["2027-04-25", "2027-04-26", "2027-04-29", "2027-04-30"]][k];
        for (dir, field, day, time) in [
            ("outbound", "depart", 0, "21:40"),
            ("outbound", "arrive", 1, "04:30"),
            ("return", "depart", 2, "23:35"),
            ("return", "arrive", 3, "07:15"),
        ] {
            req["trips"][0][dir][field] = format!("{} {time}", days[day]).into();
        }
        let (st, it) = s.call("POST", "/itineraries", Some(req)).await;
        assert_eq!(st, StatusCode::CREATED, "{it}");
        ids.push((p["id"].as_i64().unwrap(), it["id"].as_i64().unwrap()));
    }
    let [(pid, id), (_, other)] = ids[..] else { panic!() };
    let (http, cookie) = signed_in(s).await;
    let page = |path: String| {
        let (http, cookie) = (&http, &cookie);
        async move {
            let r = http.get(s.url(&path)).header("cookie", cookie).send().await.unwrap();
            (
                r.status(),
                r.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default(),
                r.text().await.unwrap(),
            )
        }
    };
    let (st, _, html) = page(format!("/console/patients/{pid}")).await;
    assert_eq!(st, StatusCode::OK);
    let csrf = hidden(&html, "csrf");
    let decide = |fields: Vec<(&'static str, String)>| {
        let (http, cookie) = (&http, &cookie);
        async move { form_post(http, &s.url(&format!("/console/patients/{pid}/reevaluation")), Some(cookie), &fields).await }
    };
    let proposal =
        |set: i64| vec![("itinerary", set.to_string()), ("decision", "second_set_proposed".to_owned()), ("note", "再燃".to_owned())];
    assert_eq!(decide(proposal(id)).await.status(), StatusCode::FORBIDDEN, "no CSRF secret");
    let with = |mut f: Vec<(&'static str, String)>| {
        f.push(("csrf", csrf.clone()));
        f
    };
    assert_eq!(decide(with(proposal(other))).await.status(), StatusCode::NOT_FOUND, "another patient's set");
    let bad = decide(with(vec![("itinerary", id.to_string()), ("decision", "maybe".to_owned())])).await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text().await.unwrap().contains("`maybe`: is not one of"));
    let done = decide(with(proposal(id))).await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let (_, _, html) = page(format!("/console/patients/{pid}")).await;
    assert!(html.contains("Second set proposed") && html.contains(&format!("/plan?draft={id}")), "the decision and its draft");
    let (st, _, form) = page(format!("/console/patients/{pid}/plan?draft={id}")).await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        form.contains("value=\"2028-04-16 21:40\"") && form.contains("value=\"2028-04-20 23:35\""),
        "the draft a year on, same weekdays"
    );
    assert_eq!(page(format!("/console/patients/{pid}/plan?draft={other}")).await.0, StatusCode::NOT_FOUND);

    let (st, kind, csv) = page(format!("/console/patients/{pid}/outcomes.csv")).await;
    assert_eq!((st, kind.as_str()), (StatusCode::OK, "text/csv; charset=utf-8"));
    assert_eq!(csv.lines().count(), 6, "a header and five occasions, none answered: {csv}");
    let (st, kind, svg) = page(format!("/console/patients/{pid}/outcomes.svg")).await;
    assert_eq!((st, kind.as_str()), (StatusCode::OK, "image/svg+xml"));
    assert_eq!(svg.matches("stroke=\"#C0392B\"").count(), 4, "the infusion marked, no answer yet");
    let (st, kind, export) = page(format!("/console/patients/{pid}/export")).await;
    assert_eq!((st, kind.as_str()), (StatusCode::OK, "application/json"));
    assert!(export.contains("taro.yamada@example.jp") && !export.contains("佐藤"), "their data only");

    let erase = |confirm: String| {
        let (http, cookie, csrf) = (&http, &cookie, &csrf);
        async move {
            form_post(
                http,
                &s.url(&format!("/console/patients/{pid}/erase")),
                Some(cookie),
                &[("csrf", csrf.clone()), ("confirm", confirm)],
            )
            .await
        }
    };
    assert_eq!(erase("1234567".into()).await.status(), StatusCode::UNPROCESSABLE_ENTITY, "the id typed again, wrongly");
    let ahead = erase(pid.to_string()).await;
    assert_eq!(ahead.status(), StatusCode::CONFLICT);
    assert!(ahead.text().await.unwrap().contains("Cancel it first"));
    let (st, _) = s.call("POST", &format!("/itineraries/{id}/cancel"), None).await;
    assert_eq!(st, StatusCode::OK);
    let gone = erase(pid.to_string()).await;
    assert_eq!((gone.status(), gone.headers()["location"].to_str().unwrap()), (StatusCode::SEE_OTHER, "/console/patients?erased=1"));
    assert!(page("/console/patients?erased=1".into()).await.2.contains("data was erased"));
    assert_eq!(page(format!("/console/patients/{pid}")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(count(&db, &format!("SELECT count(*) FROM itinerary WHERE patient_id = {pid}")).await, 0);
    assert_eq!(count(&db, &format!("SELECT count(*) FROM reevaluation WHERE patient_id = {pid}")).await, 0);
    assert_eq!(count(&db, "SELECT count(*) FROM patient").await, 1, "the other patient stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_plans_books_and_cancels_a_trip_in_a_real_browser() {
    let db = Db::sqlite("console-browser");
    let s = Server::start_with(&db, &[("ITINERARY_CLOCK_MODE", "test"), ("ITINERARY_SERVER_WORKER", "false")]);
    let (st, _) = s.call("PUT", "/clock", Some(serde_json::json!({ "now": "2026-11-26T00:00:00Z" }))).await;
    assert_eq!(st, StatusCode::OK);
    let driver = Driver::start();
    let b = driver.browser("ja").await;

    // No session: the console leads to sign-in, in Japanese for a Japanese browser.
    b.goto(&s.url("/")).await.unwrap();
    assert!(b.current_url().await.unwrap().path().ends_with("/console/signin"), "{}", b.current_url().await.unwrap());
    assert!(text(&b).await.contains("サインイン"));
    // A wrong token is refused on the page; the right one, typed and sent with Enter, opens the week.
    type_into(&b, "token", "itc_not-a-token").await;
    press_enter_in(&b, "token").await;
    assert!(text(&b).await.contains("トークンが正しくない"), "{}", text(&b).await);
    shot(&b, "console-signin").await;
    type_into(&b, "token", &s.token).await;
    press_enter_in(&b, "token").await;
    assert!(b.current_url().await.unwrap().path().ends_with("/console/"));
    assert!(text(&b).await.contains("今週の予定"));

    // Keyboard alone: the first Tab reaches the skip link, Enter on it moves to the content.
    b.find(Locator::Css("body")).await.unwrap().send_keys(&char::from(Key::Tab).to_string()).await.unwrap();
    let focused = b.active_element().await.unwrap();
    assert_eq!(focused.attr("class").await.unwrap().as_deref(), Some("skip"), "the skip link comes first");
    focused.send_keys(&char::from(Key::Enter).to_string()).await.unwrap();
    assert_eq!(b.active_element().await.unwrap().attr("id").await.unwrap().as_deref(), Some("main"));

    // A patient with a Japanese name; a wrong email first, named beside its field.
    b.goto(&s.url("/console/patients")).await.unwrap();
    for (id, v) in
        [("p-name", "山田 太郎"), ("p-email", "taro.yamada@"), ("p-birth_date", "1978-05-14"), ("p-passport_expiry", "2031-03-31")]
    {
        type_into(&b, id, v).await;
    }
    press_enter_in(&b, "p-passport_expiry").await;
    let page = text(&b).await;
    assert!(page.contains("入力内容をご確認ください") && page.contains("taro.yamada@"), "{page}");
    let email = b.find(Locator::Id("p-email")).await.unwrap();
    assert_eq!(email.attr("aria-invalid").await.unwrap().as_deref(), Some("true"));
    shot(&b, "console-patient-error").await;
    type_into(&b, "p-email", "taro.yamada@example.jp").await;
    press_enter_in(&b, "p-email").await;
    assert!(b.current_url().await.unwrap().path().starts_with("/console/patients/"), "{}", text(&b).await);
    let patient_page = b.current_url().await.unwrap();
    // An edit with a wrong birth date is refused beside the field; the right one is saved.
    type_into(&b, "e-birth_date", "1978-02-30").await;
    press_enter_in(&b, "e-birth_date").await;
    let field = b.find(Locator::Id("e-birth_date")).await.unwrap();
    assert_eq!(field.attr("aria-invalid").await.unwrap().as_deref(), Some("true"), "{}", text(&b).await);
    type_into(&b, "e-birth_date", "1978-05-15").await;
    press_enter_in(&b, "e-birth_date").await;
    let (_, p) = s.call("GET", patient_page.path().trim_start_matches("/console"), None).await;
    assert_eq!(p["birth_date"], "1978-05-15", "{p}");
    // Found again by a part of the name.
    b.goto(&s.url("/console/patients?q=%E5%B1%B1%E7%94%B0")).await.unwrap();
    assert!(text(&b).await.contains("山田 太郎"));

    // Plan the MH71 trip: the preview shows both zones, duties, every message with its time.
    b.goto(&format!("{patient_page}/plan")).await.unwrap();
    fill_trip(&b, "2026-12-05 23:35", "2026-12-06 07:15").await;
    click(&b, "button[value=preview]").await;
    let page = text(&b).await;
    assert!(page.contains("予約前の確認"), "{page}");
    assert!(page.contains("マレーシア時間") && page.contains("日本時間"), "both zones: {page}");
    assert!(page.contains("2026年12月4日(金) 09:00") && page.contains("10:00"), "the infusion in both zones: {page}");
    assert!(page.contains("成田国際空港(NRT)") && page.contains("エスコートの担当"), "{page}");
    assert!(page.contains("前日のご案内"), "messages with their kinds: {page}");
    shot(&b, "console-preview").await;
    // Nothing is booked by a preview.
    let (_, trips) = s.call("GET", "/trips?from=2026-11-01&to=2027-01-01", None).await;
    assert_eq!(trips["trips"].as_array().map(Vec::len), Some(0), "{trips}");
    click(&b, "button[value=book]").await;
    let itinerary_page = b.current_url().await.unwrap();
    assert!(itinerary_page.path().starts_with("/console/itineraries/"), "{}", text(&b).await);
    let page = text(&b).await;
    assert!(page.contains("有効") && page.contains("送信待ち") && page.contains("ご予約確定"), "{page}");
    shot(&b, "console-itinerary").await;

    // The patient's feed URL, issued on their page, carries the trip, until it is revoked.
    b.goto(patient_page.as_str()).await.unwrap();
    click(&b, "form[action$='/feed'] button").await;
    let feed_url = b.find(Locator::Id("new-feed")).await.unwrap().prop("value").await.unwrap().unwrap();
    assert!(feed_url.starts_with("http://feed.example/feed/itf_"), "{feed_url}");
    let feed_path = feed_url.trim_start_matches("http://feed.example");
    let feed = reqwest::get(s.url(feed_path)).await.unwrap();
    assert_eq!(feed.status(), StatusCode::OK);
    assert!(feed.text().await.unwrap().contains("MH71"));
    shot(&b, "console-patient").await;
    click(&b, "form[action$='/feed/revoke'] button").await;
    assert_eq!(reqwest::get(s.url(feed_path)).await.unwrap().status(), StatusCode::NOT_FOUND);
    b.goto(itinerary_page.as_str()).await.unwrap();

    // On the week: the landing, the clinic and the flight home, each with its escort. An hour
    // on with no worker running, the confirmation is listed as running late.
    let (st, _) = s.call("PUT", "/clock", Some(serde_json::json!({ "advance_seconds": 3600 }))).await;
    assert_eq!(st, StatusCode::OK);
    b.goto(&s.url("/console/?from=2026-11-30")).await.unwrap();
    let page = text(&b).await;
    assert!(page.contains("送信が遅れているメッセージ") && page.contains("booking_confirmation"), "{page}");
    assert!(page.contains("幹細胞点滴") && page.contains("血液検査") && page.contains("山田 太郎"), "{page}");
    shot(&b, "console-week").await;
    // The board: each escort's duties from leaving to being free again, chairs held at once.
    b.goto(&s.url("/console/board?from=2026-11-30&days=7")).await.unwrap();
    let page = text(&b).await;
    assert!(page.contains("Nur Aisyah binti Rahman") && page.contains("04:30–06:30") && page.contains("08:30–12:30"), "{page}");
    assert!(page.contains("1/4") && page.contains("09:00–12:00 1/4"), "one chair of four, 09:00 to 12:00, on the infusion day: {page}");
    shot(&b, "console-board").await;

    // Two messages fail (the relay refused them): a reminder can be sent again from the page; a
    // calendar invitation cannot (its content is not kept once settled), and the page says why.
    let conn = sea_orm::Database::connect(&db.url).await.unwrap();
    use sea_orm::ConnectionTrait;
    conn.execute_unprepared(
        "UPDATE scheduled_message SET status = 'failed', last_error = '550 mailbox unavailable', payload = NULL \
         WHERE key IN ('trip1.departure_day', 'trip1.infusion1.calendar_invite')",
    )
    .await
    .unwrap();
    b.goto(itinerary_page.as_str()).await.unwrap();
    let page = text(&b).await;
    assert!(page.contains("送信失敗") && page.contains("550 mailbox unavailable"), "{page}");
    shot(&b, "console-itinerary-failed").await;
    click_xpath(&b, "//tr[contains(., 'trip1.departure_day')]//button[@class='resend']").await;
    let page = text(&b).await;
    let departure = page.lines().skip_while(|l| !l.contains("ご出発のご案内")).take(2).collect::<Vec<_>>().join(" ");
    assert!(departure.contains("送信待ち"), "the reminder waits to be sent again: {departure}\n{page}");
    click_xpath(&b, "//tr[contains(., 'trip1.infusion1.calendar_invite')]//button[@class='resend']").await;
    assert!(text(&b).await.contains("旅程を変更すると、カレンダーが改めて送信されます"), "{}", text(&b).await);
    b.goto(&s.url("/console/audit?action=resend")).await.unwrap();
    let page = text(&b).await;
    assert!(page.contains("resend") && page.contains("Test Coordinator"), "{page}");
    shot(&b, "console-audit").await;

    // An infeasible trip: home the day after landing. The reasons are in Japanese, the field marked.
    b.goto(&format!("{patient_page}/plan")).await.unwrap();
    fill_trip(&b, "2026-12-02 23:35", "2026-12-03 07:15").await;
    click(&b, "button[value=preview]").await;
    let page = text(&b).await;
    assert!(page.contains("この内容では計画できません"), "{page}");
    assert!(page.contains("旅程1の滞在は"), "the reason, in Japanese: {page}");
    let marked = b.find(Locator::Id("f-trips-0-return-depart")).await.unwrap();
    assert_eq!(marked.attr("aria-invalid").await.unwrap().as_deref(), Some("true"), "the trip's fields are marked");
    shot(&b, "console-infeasible").await;

    // The same pages in English, kept for the next pages.
    b.goto(&format!("{itinerary_page}?lang=en")).await.unwrap();
    let page = text(&b).await;
    assert!(page.contains("Timeline") && page.contains("Escort duties") && page.contains("MYT") && page.contains("JST"), "{page}");
    shot(&b, "console-itinerary-en").await;
    b.goto(&s.url("/console/")).await.unwrap();
    assert!(text(&b).await.contains("The week"));
    b.goto(&format!("{itinerary_page}?lang=ja")).await.unwrap();

    // Change the flight home to the afternoon one: the preview says which invites are updated
    // and which reminders move, before anything is sent.
    b.goto(&format!("{itinerary_page}/change")).await.unwrap();
    for (id, v) in [
        ("f-trips-0-return-flight", "MH36"),
        ("f-trips-0-return-depart", "2026-12-05 15:00"),
        ("f-trips-0-return-to", "HND"),
        ("f-trips-0-return-arrive", "2026-12-05 22:35"),
    ] {
        type_into(&b, id, v).await;
    }
    click(&b, "button[value=preview]").await;
    let page = text(&b).await;
    assert!(page.contains("変更すると送信されるもの") && page.contains("予定の変更") && page.contains("MH36"), "{page}");
    assert!(page.contains("時刻が変わるリマインダー") && page.contains("ご帰国便のご案内"), "the return advice moves: {page}");
    shot(&b, "console-change-preview").await;
    let (_, before) = s.call("GET", &format!("/itineraries/{}", itinerary_page.path().rsplit('/').next().unwrap()), None).await;
    assert_eq!(before["version"], 1, "a preview changes nothing");
    click(&b, "button[value=change]").await;
    let page = text(&b).await;
    assert!(page.contains("版 2") && page.contains("MH36(KUL→HND)"), "{page}");

    // Cancel, after reading what it sends.
    b.goto(&format!("{itinerary_page}/cancel")).await.unwrap();
    let page = text(&b).await;
    assert!(page.contains("取り消すと送信されるもの") && page.contains("幹細胞点滴"), "{page}");
    shot(&b, "console-cancel").await;
    click(&b, "button.danger").await;
    assert!(text(&b).await.contains("取消済み"));

    // A form without its CSRF secret is refused, with the session's own cookie.
    let cookie = b.get_named_cookie("itinerary_session").await.unwrap();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let forged = http
        .post(s.url("/console/patients"))
        .header("Cookie", format!("itinerary_session={}", cookie.value()))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("csrf=not-the-secret&name=X&email=x%40example.jp&birth_date=1980-01-01&home_zone=Asia%2FTokyo&language=ja&passport_expiry=2031-01-01")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    // Without a session, every page is a 302 to sign-in.
    for path in ["/console/", "/console/patients", itinerary_page.path()] {
        let r = http.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FOUND, "{path}");
        assert!(r.headers()["location"].to_str().unwrap().starts_with("/console/signin"), "{path}");
        assert!(r.headers()["content-security-policy"].to_str().unwrap().contains("default-src 'none'"));
    }
    // On a tablet held upright (iPad Air, 820 × 1180), pages fit the width: nothing to scroll
    // sideways but the board's own table.
    b.set_window_size(820, 1180).await.unwrap();
    for path in ["/console/?from=2026-11-30", "/console/patients", itinerary_page.path()] {
        b.goto(&s.url(path)).await.unwrap();
        let wide = b.execute("return document.documentElement.scrollWidth - window.innerWidth", vec![]).await.unwrap();
        assert!(wide.as_i64().unwrap() <= 0, "{path} scrolls sideways by {wide} px on a tablet");
    }
    b.goto(&s.url("/console/?from=2026-11-30")).await.unwrap();
    shot(&b, "console-week-tablet").await;

    // Revoking the coordinator's token ends the browser's session.
    let out = itinerary(&db).args(["admin", "revoke-coordinator", "1"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    b.goto(&s.url("/console/")).await.unwrap();
    assert!(b.current_url().await.unwrap().path().ends_with("/console/signin"), "the session outlived its token");
    // A session unused for longer than console_idle_minutes (60) is over.
    let out = itinerary(&db).args(["admin", "issue-token", "1"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let r = http
        .post(s.url("/console/signin"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    assert!(r.headers()["set-cookie"].to_str().unwrap().contains("HttpOnly; SameSite=Strict"));
    let week = |cookie: String| {
        let http = http.clone();
        let url = s.url("/console/");
        async move { http.get(url).header("Cookie", cookie).send().await.unwrap().status() }
    };
    assert_eq!(week(cookie.clone()).await, StatusCode::OK);
    {
        use itinerary_store::entity::console_session;
        use sea_orm::{EntityTrait, sea_query::Expr};
        let idle = chrono::Utc::now() - chrono::Duration::minutes(61);
        console_session::Entity::update_many().col_expr(console_session::Column::LastSeenAt, Expr::value(idle)).exec(&conn).await.unwrap();
    }
    assert_eq!(week(cookie).await, StatusCode::FOUND, "an idle session still opens pages");

    // Guessing tokens at the sign-in form is refused after the burst the API allows.
    let mut refused = None;
    for i in 0..30 {
        let r = http
            .post(s.url("/console/signin"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!("token=itc_guess{i}"))
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(r.headers().contains_key("retry-after"));
            refused = Some(i);
            break;
        }
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    assert!(refused.is_some_and(|i| i <= 25), "{refused:?}");
    b.close().await.unwrap();
}

/// A form sent as a browser sends it (application/x-www-form-urlencoded).
async fn form_post(http: &reqwest::Client, url: &str, cookie: Option<&str>, fields: &[(&str, String)]) -> reqwest::Response {
    let enc = |v: &str| {
        v.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                b' ' => "+".to_owned(),
                b => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    let body = fields.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&");
    let mut r = http.post(url).header("content-type", "application/x-www-form-urlencoded").body(body);
    if let Some(c) = cookie {
        r = r.header("cookie", c);
    }
    r.send().await.unwrap()
}

/// A client that does not follow redirects, and the session cookie of the test coordinator.
async fn signed_in(s: &Server) -> (reqwest::Client, String) {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let signed = form_post(&http, &s.url("/console/signin"), None, &[("token", s.token.clone())]).await;
    let cookie = signed
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|c| c.to_str().ok())
        .find(|c| c.starts_with("itinerary_session="))
        .map(|c| c.split(';').next().unwrap().to_owned())
        .expect("a session cookie");
    (http, cookie)
}

/// A journey with a change of plane each way, booked from the console (issue 14): each flight
/// its own event, a too-short connection refused beside its field, and the change form showing
/// every flight again so that a change keeps them.
#[tokio::test]
async fn a_journey_with_connections_is_booked_and_changed_from_the_console() {
    let db = Db::sqlite("console-connections");
    let s = Server::start_with(&db, &[("ITINERARY_SERVER_WORKER", "false")]);
    let mut p = patient("Connecting Flights");
    p["home_zone"] = "America/Los_Angeles".into();
    let (_, p) = s.call("POST", "/patients", Some(p)).await;
    let pid = p["id"].as_i64().unwrap();
    let (http, cookie) = signed_in(&s).await;
    let url = s.url(&format!("/console/patients/{pid}/plan"));
    let page = http.get(&url).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
    let leg = |name: &str, v: [&str; 5]| -> Vec<(String, String)> {
        ["flight", "from", "depart", "to", "arrive"].iter().zip(v).map(|(k, v)| (format!("{name}.{k}"), v.to_owned())).collect()
    };
    let mut form: Vec<(String, String)> = vec![
        ("csrf".into(), hidden(&page, "csrf")),
        ("once".into(), hidden(&page, "once")),
        ("action".into(), "book".into()),
        ("protocol".into(), "single-infusion".into()),
    ];
    form.extend(leg("trips[0].outbound", ["JL61", "LAX", "2027-03-01 11:50", "NRT", "2027-03-02 16:35"]));
    // Narita 16:35 → 17:20: 45 minutes, under Narita's 90.
    form.extend(leg("trips[0].outbound[1]", ["MH71", "NRT", "2027-03-02 17:20", "KUL", "2027-03-03 00:10"]));
    form.extend(leg("trips[0].return", ["MH88", "KUL", "2027-03-06 23:35", "NRT", "2027-03-07 07:15"]));
    form.extend(leg("trips[0].return[1]", ["JL62", "NRT", "2027-03-07 17:10", "LAX", "2027-03-07 10:10"]));
    let send = |form: Vec<(String, String)>| {
        let (http, url, cookie) = (http.clone(), url.clone(), cookie.clone());
        async move {
            let fields: Vec<(&str, String)> = form.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
            form_post(&http, &url, Some(&cookie), &fields).await
        }
    };
    let refused = send(form.clone()).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = refused.text().await.unwrap();
    assert!(html.contains(r#"id="f-trips-0-outbound-1-depart" name="trips[0].outbound[1].depart""#), "the field is on the page");
    assert!(html.contains("e-f-trips-0-outbound-1-depart") && html.contains("minimum connection time there is 90 min"), "{html}");
    assert_eq!(count(&db, "SELECT count(*) FROM itinerary").await, 0, "nothing booked");
    // The evening flight instead, and a new form key.
    for (k, v) in form.iter_mut() {
        match k.as_str() {
            "trips[0].outbound[1].depart" => *v = "2027-03-02 21:40".into(),
            "trips[0].outbound[1].arrive" => *v = "2027-03-03 04:30".into(),
            "once" => *v = hidden(&html, "once"),
            _ => {}
        }
    }
    let booked = send(form).await;
    assert_eq!(booked.status(), StatusCode::SEE_OTHER);
    let id: i64 = booked.headers()["location"].to_str().unwrap().rsplit('/').next().unwrap().parse().unwrap();
    let (_, it) = s.call("GET", &format!("/itineraries/{id}"), None).await;
    let flights: Vec<&str> =
        it["plan"]["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "flight").map(|e| e["key"].as_str().unwrap()).collect();
    assert_eq!(flights, ["trip1.outbound.leg1", "trip1.outbound", "trip1.return", "trip1.return.leg2"]);
    // The change form holds all four flights, the connections opened.
    let change = http.get(s.url(&format!("/console/itineraries/{id}/change"))).header("cookie", &cookie).send().await.unwrap();
    let html = change.text().await.unwrap();
    for (name, value) in [("trips[0].outbound.flight", "JL61"), ("trips[0].outbound[1].flight", "MH71"), ("trips[0].return[1].to", "LAX")] {
        assert!(html.contains(&format!(r#"name="{name}" type="text" value="{value}""#)), "{name} = {value} on the change form");
    }
    assert!(html.contains(r#"<details class="connections" open>"#));
}

/// The value of the hidden input `name` in a page.
fn hidden(html: &str, name: &str) -> String {
    let at = html.find(&format!("name=\"{name}\" value=\"")).unwrap_or_else(|| panic!("no {name} in the page"));
    let rest = &html[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// A form sent twice (a double click, a reload after a slow answer) writes once (issue 15):
/// each writing form carries a one-time key, and the second sending is led to what the first
/// made. The same key with the form changed in between is refused, not applied.
#[tokio::test]
async fn a_form_sent_twice_books_once() {
    let db = Db::sqlite("console-twice");
    let s = Server::start_with(&db, &[("ITINERARY_SERVER_WORKER", "false")]);
    let (_, p) = s.call("POST", "/patients", Some(patient("Twice Sent"))).await;
    let pid = p["id"].as_i64().unwrap();
    let (http, cookie) = signed_in(&s).await;
    let page = http.get(s.url(&format!("/console/patients/{pid}/plan"))).header("cookie", &cookie).send().await.unwrap();
    let html = page.text().await.unwrap();
    let (csrf, once) = (hidden(&html, "csrf"), hidden(&html, "once"));
    assert!(once.len() >= 32, "{once}");
    let mut form = vec![
        ("csrf", csrf.clone()),
        ("once", once.clone()),
        ("action", "book".into()),
        ("protocol", "single-infusion".into()),
        ("trips[0].outbound.flight", "MH71".into()),
        ("trips[0].outbound.from", "NRT".into()),
        ("trips[0].outbound.depart", "2027-03-01 21:40".into()),
        ("trips[0].outbound.to", "KUL".into()),
        ("trips[0].outbound.arrive", "2027-03-02 04:30".into()),
        ("trips[0].return.flight", "MH88".into()),
        ("trips[0].return.from", "KUL".into()),
        ("trips[0].return.depart", "2027-03-05 23:35".into()),
        ("trips[0].return.to", "NRT".into()),
        ("trips[0].return.arrive", "2027-03-06 07:15".into()),
    ];
    let url = s.url(&format!("/console/patients/{pid}/plan"));
    let send = |form: Vec<(&'static str, String)>| {
        let (http, url, cookie) = (http.clone(), url.clone(), cookie.clone());
        tokio::spawn(async move {
            let r = form_post(&http, &url, Some(&cookie), &form).await;
            let to = r.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
            (r.status(), to)
        })
    };
    // Three at once, as a double click and a reload would send them, then once more.
    let at_once: Vec<_> = (0..3).map(|_| send(form.clone())).collect();
    let mut led_to = std::collections::BTreeSet::new();
    for t in at_once {
        let (st, to) = t.await.unwrap();
        assert_eq!(st, StatusCode::SEE_OTHER, "{to:?}");
        led_to.insert(to.unwrap());
    }
    let (st, to) = send(form.clone()).await.unwrap();
    assert_eq!(st, StatusCode::SEE_OTHER);
    led_to.insert(to.unwrap());
    assert_eq!(led_to.len(), 1, "every sending leads to one itinerary: {led_to:?}");
    assert!(led_to.first().unwrap().starts_with("/console/itineraries/"), "{led_to:?}");
    assert_eq!(count(&db, "SELECT count(*) FROM itinerary").await, 1, "booked once");
    // The same form changed and sent again: refused, nothing booked.
    form[12] = ("trips[0].return.depart", "2027-03-05 23:50".into());
    let r = form_post(&http, &url, Some(&cookie), &form).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(count(&db, "SELECT count(*) FROM itinerary").await, 1);
}

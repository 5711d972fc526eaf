//! LINE's webhook (issue 16, item 1) driven as LINE's platform drives it: bodies shaped as the
//! Messaging API reference shows them, signed with the channel secret; a body without a valid
//! signature is refused with 401 and changes nothing; each event counts once however often it
//! is redelivered; an unfollow unlinks the patient; texts and button answers from a linked
//! patient reach the coordinator, nobody else's are kept; nothing personal reaches the log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::line_platform::event;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const SECRET: &str = "8c1fe0d4d2e6a7b3c9f0e1d2c3b4a5f6";
const USER: &str = "U4af4980629a1b2c3d4e5f60718293a4b";
const STRANGER: &str = "U0000000000000000000000000000dead";

async fn deliver(s: &Server, body: &[u8], signature: Option<&str>) -> (StatusCode, Value) {
    let mut r = s.http.post(s.url("/line/webhook")).header("content-type", "application/json").body(body.to_vec());
    if let Some(sig) = signature {
        r = r.header("x-line-signature", sig);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status();
    status_documented("POST", "/line/webhook", status);
    (status, serde_json::from_str(&resp.text().await.unwrap()).unwrap_or(Value::Null))
}

async fn signed(s: &Server, events: Vec<Value>) -> (StatusCode, Value) {
    line_platform::send_events(s, SECRET, events).await
}

async fn webhook_follows_line_contract(db: Db, name: &str) {
    let log = std::env::temp_dir().join(format!("itinerary-line-{name}-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let file = std::fs::File::create(&log).unwrap();
    let platform = line_platform::Shared::default();
    let base = line_platform::start(platform.clone()).await;
    let mut settings = line_platform::settings(&base, SECRET);
    settings.push(("RUST_LOG", "info".into()));
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s = Server::start_logging(&db, &settings, file.into());
    platform.lock().unwrap().webhook = Some((s.url("/line/webhook"), SECRET.to_owned()));
    let text = "明日の集合時間をもう一度教えてください";

    // The verification LINE sends when the URL is set: no events, signed.
    assert_eq!(signed(&s, vec![]).await.0, StatusCode::OK);

    // Unsigned, wrongly signed, signed with another secret, signed for another body: 401, nothing kept.
    let body = serde_json::to_vec(&json!({ "events": [event("01HWAAAAAAAAAAAAAAAAAAAAAA", "follow", USER, json!({}))] })).unwrap();
    for sig in [
        None,
        Some("not base64"),
        Some(itinerary_api::line::signature("another secret", &body).as_str()),
        Some(&itinerary_api::line::signature(SECRET, b"{}")),
    ] {
        let (st, e) = deliver(&s, &body, sig).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{sig:?}: {e}");
    }
    assert_eq!(count(&db, "SELECT count(*) FROM line_event").await, 0, "nothing recorded from an unsigned body");

    // A patient who linked LINE through LINE's account link.
    let (st, p) = s.call("POST", "/patients", Some(patient("山田 太郎"))).await;
    assert_eq!(st, StatusCode::CREATED, "{p}");
    let pid = p["id"].as_i64().unwrap();
    let (st, it) = s.call("POST", "/itineraries", Some(request(pid, 0))).await;
    assert_eq!(st, StatusCode::CREATED, "{it}");
    let reference = it["reference"].as_str().unwrap();
    assert_eq!(line_platform::link(&s, &platform, &base, USER, reference, "1978-05-14").await, 200);

    // Follow, a text, a button answer: each applied once, however often redelivered.
    let msg = event(
        "01HWBBBBBBBBBBBBBBBBBBBBBB",
        "message",
        USER,
        json!({ "message": { "type": "text", "id": "468789577898262530", "text": text } }),
    );
    let answer = event("01HWCCCCCCCCCCCCCCCCCCCCCC", "postback", USER, json!({ "postback": { "data": "answer=ack&message=12" } }));
    let follow = event("01HWAAAAAAAAAAAAAAAAAAAAAA", "follow", USER, json!({}));
    assert_eq!(signed(&s, vec![follow.clone(), msg.clone(), answer.clone()]).await.0, StatusCode::OK);
    let mut again = msg.clone();
    again["deliveryContext"]["isRedelivery"] = true.into();
    assert_eq!(signed(&s, vec![again, answer.clone()]).await.0, StatusCode::OK);
    let (st, m) = s.call("GET", &format!("/patients/{pid}/messages"), None).await;
    assert_eq!(st, StatusCode::OK);
    let got: Vec<(&str, &str)> =
        m["messages"].as_array().unwrap().iter().map(|x| (x["kind"].as_str().unwrap(), x["body"].as_str().unwrap())).collect();
    assert_eq!(got.len(), 2, "each once: {m}");
    assert!(got.contains(&("text", text)) && got.contains(&("postback", "answer=ack&message=12")), "{m}");
    assert_eq!(count(&db, "SELECT count(*) FROM line_contact").await, 1);

    // Someone linked to no patient: recorded as seen, the text not kept.
    let stranger = event(
        "01HWDDDDDDDDDDDDDDDDDDDDDD",
        "message",
        STRANGER,
        json!({ "message": { "type": "text", "id": "1", "text": "予約したいです" } }),
    );
    assert_eq!(signed(&s, vec![stranger]).await.0, StatusCode::OK);
    assert_eq!(count(&db, "SELECT count(*) FROM patient_message").await, 2, "nobody's message is kept");

    // An event of a shape LINE never sends is skipped, not the body (a 4xx would bring the good
    // ones back again and again); a body that is not a webhook's is 400; nothing applied.
    let odd = json!({ "type": "follow", "webhookEventId": "bad id; drop", "source": { "userId": USER } });
    let (st, e) = signed(&s, vec![odd]).await;
    assert_eq!((st, e["skipped"].as_i64(), e["events"].as_i64()), (StatusCode::OK, Some(1), Some(0)), "{e}");
    let body = br#"{"events": [{"type": 1}]}"#;
    let (st, e) = deliver(&s, body, Some(&itinerary_api::line::signature(SECRET, body))).await;
    assert_eq!((st, e["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_event")), "{e}");
    // A batch of long texts (LINE allows 5,000 characters each) is taken whole; a NUL is dropped.
    let long: String = "痒".repeat(5000);
    let batch: Vec<Value> = (0..6)
        .map(|k| {
            event(
                &format!("01HWLONG{k:018}"),
                "message",
                USER,
                json!({ "message": { "type": "text", "id": "2", "text": format!("{long}\u{0}") } }),
            )
        })
        .collect();
    assert_eq!(signed(&s, batch).await.0, StatusCode::OK, "about 90 KB of texts");
    assert_eq!(count(&db, "SELECT count(*) FROM patient_message").await, 8);

    // Unfollow: the patient is unlinked, so reminders go by email again; twice changes nothing.
    let unfollow = event("01HWEEEEEEEEEEEEEEEEEEEEEE", "unfollow", USER, json!({}));
    assert_eq!(signed(&s, vec![unfollow.clone()]).await.0, StatusCode::OK);
    assert_eq!(signed(&s, vec![unfollow]).await.0, StatusCode::OK);
    let (_, p) = s.call("GET", &format!("/patients/{pid}"), None).await;
    assert!(p.get("line_user_id").is_none(), "unlinked: {p}");
    // A follow from before the unfollow, delivered late (a redelivery), does not undo it.
    let late = event("01HWLATEFOLLOW0000000000000", "follow", USER, json!({ "timestamp": 1_796_999_000_000_i64 }));
    assert_eq!(signed(&s, vec![late]).await.0, StatusCode::OK);
    assert_eq!(count(&db, "SELECT count(*) FROM line_contact WHERE unfollowed_at IS NOT NULL").await, 1, "still unfollowed");
    assert_eq!(count(&db, "SELECT count(*) FROM line_event WHERE outcome LIKE 'follow: older than%'").await, 1);
    assert_eq!(count(&db, "SELECT count(*) FROM line_event").await, 13, "thirteen distinct events, each recorded once");
    assert_eq!(count(&db, "SELECT count(*) FROM audit_log WHERE action = 'unlink_line'").await, 1, "the unlinking is audited");

    // The log names kinds and counts, never who or what was written.
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("LINE webhook"), "the webhook is logged: {logged}");
    for secret in [text, USER, STRANGER, "予約したいです", "山田", reference] {
        assert!(!logged.contains(secret), "{secret} in the log");
    }
    let _ = std::fs::remove_file(&log);
}

#[tokio::test]
async fn sqlite_webhook_follows_line_contract() {
    webhook_follows_line_contract(Db::sqlite("line-webhook"), "sqlite").await;
}

#[tokio::test]
async fn postgres_webhook_follows_line_contract() {
    if let Some(db) = Db::postgres("line_webhook").await {
        webhook_follows_line_contract(db, "postgres").await;
    }
}

/// Without a channel secret no signature can be checked: every call is refused.
#[tokio::test]
async fn without_a_channel_secret_the_webhook_refuses_everything() {
    let db = Db::sqlite("line-no-secret");
    let s = Server::start(&db);
    let body = br#"{"events": []}"#;
    let (st, e) = deliver(&s, body, Some(&itinerary_api::line::signature("", body))).await;
    assert_eq!((st, e["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("line_not_configured")), "{e}");
}

/// The texts LINE delivered to `user` (replies and pushes).
fn pushed_to(platform: &line_platform::Shared, user: &str) -> Vec<String> {
    platform.lock().unwrap().texts_to(user)
}

async fn until_pushed(platform: &line_platform::Shared, user: &str, what: &str) -> String {
    for _ in 0..300 {
        if let Some(t) = pushed_to(platform, user).into_iter().find(|t| t.contains(what)) {
            return t;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("nothing with {what:?} pushed to {user}: {:?}", pushed_to(platform, user));
}

/// Issue 16, item 2: a patient links their LINE account with LINE's own account-link flow. The
/// follow brings them the linking URL (a fresh link token from LINE); on our page they prove
/// who they are with their itinerary's reference and their birth date; LINE's accountLink event
/// with our nonce links them; the nonce works once; a coordinator can no longer type an id.
async fn patients_link_line_through_account_link(db: Db, name: &str) {
    let log = std::env::temp_dir().join(format!("itinerary-line-link-{name}-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let platform = line_platform::Shared::default();
    let base = line_platform::start(platform.clone()).await;
    let mut settings = line_platform::settings(&base, SECRET);
    settings.extend([("ITINERARY_WORKER_POLL_MS", "100".to_owned()), ("RUST_LOG", "info".to_owned())]);
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s = Server::start_logging(&db, &settings, std::fs::File::create(&log).unwrap().into());
    platform.lock().unwrap().webhook = Some((s.url("/line/webhook"), SECRET.to_owned()));

    // Two patients with a booking each.
    let mut refs = Vec::new();
    let mut ids = Vec::new();
    for (k, (who, birth)) in [("山田 太郎", "1978-05-14"), ("佐藤 花子", "1985-11-02")].into_iter().enumerate() {
        let mut p = patient(who);
        p["birth_date"] = birth.into();
        let (st, p) = s.call("POST", "/patients", Some(p)).await;
        assert_eq!(st, StatusCode::CREATED, "{p}");
        let (st, it) = s.call("POST", "/itineraries", Some(request(p["id"].as_i64().unwrap(), k as i64))).await;
        assert_eq!(st, StatusCode::CREATED, "{it}");
        ids.push(p["id"].as_i64().unwrap());
        refs.push(it["reference"].as_str().unwrap().to_owned());
    }
    let (taro, hanako) = (ids[0], ids[1]);

    // A coordinator cannot type a LINE user id: not on a new patient, not changed on an old one.
    let mut typed = patient("鈴木 一郎");
    typed["line_user_id"] = USER.into();
    let (st, e) = s.call("POST", "/patients", Some(typed)).await;
    assert_eq!((st, e["error"]["fields"][0]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("line_user_id")), "{e}");

    // The patient adds the clinic's account: the worker fetches a link token and answers the
    // follow with the URL, as a reply (free; a push would spend the month's allowance).
    let reply_token = platform.lock().unwrap().reply_token(USER);
    let follow = event("01HWFOLLOW0000000000000000", "follow", USER, json!({ "replyToken": reply_token }));
    assert_eq!(signed(&s, vec![follow]).await.0, StatusCode::OK);
    let offer = until_pushed(&platform, USER, "/line/link?linkToken=").await;
    assert!(platform.lock().unwrap().replied.iter().any(|(u, _)| u == USER), "the offer went as a reply");
    assert_eq!(count(&db, "SELECT count(*) FROM line_notice WHERE sent_by = 'reply'").await, 1);
    assert!(offer.contains("友だち追加") && offer.contains("10分") && offer.contains("10 minutes"), "{offer}");
    let token = offer.split("linkToken=").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    assert!(platform.lock().unwrap().link_tokens.contains_key(&token), "the token LINE issued: {token}");

    // The page: Japanese unless the browser asks for English; its form may end at LINE.
    let browser = line_platform::browser();
    let r = browser.get(s.url(&format!("/line/link?linkToken={token}"))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains(&format!("form-action 'self' {base}")) && csp.contains("frame-ancestors 'none'"), "{csp}");
    let html = r.text().await.unwrap();
    assert!(html.contains("旅程番号") && html.contains(&format!("value=\"{token}\"")) && html.contains("lang=\"ja\""), "{html}");
    let r = browser.get(s.url(&format!("/line/link?linkToken={token}"))).header("accept-language", "en-US,en;q=0.9").send().await.unwrap();
    assert!(r.text().await.unwrap().contains("Itinerary reference"));
    let r = browser.get(s.url("/line/link")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(!r.text().await.unwrap().contains("<form method=\"post\" action=\"/line/link\""), "no form without a link token");

    // Wrong proofs: a wrong birth date, another patient's reference with one's own birth date,
    // the right two with another address, a malformed date, an empty reference. 422, the same
    // words for each, nothing linked.
    let prove = |reference: String, birth: &'static str, email: &'static str| {
        let (browser, url, token) = (browser.clone(), s.url("/line/link"), token.clone());
        async move {
            let r = browser
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(line_platform::form(&[
                    ("link_token", token.as_str()),
                    ("reference", &reference),
                    ("birth_date", birth),
                    ("email", email),
                ]))
                .send()
                .await
                .unwrap();
            let status = r.status();
            (status, r.headers().get("location").map(|l| l.to_str().unwrap().to_owned()), r.text().await.unwrap())
        }
    };
    const EMAIL: &str = "taro.yamada@example.jp";
    for (reference, birth, email) in [
        (refs[0].clone(), "1978-05-15", EMAIL),
        (refs[1].clone(), "1978-05-14", EMAIL),
        (refs[0].clone(), "1978-05-14", "someone.else@example.jp"),
        (refs[0].clone(), "14/05/1978", EMAIL),
        (String::new(), "1978-05-14", EMAIL),
    ] {
        let (st, _, html) = prove(reference.clone(), birth, email).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{reference} {birth} {email}");
        assert!(html.contains("一致しません"));
    }
    assert_eq!(count(&db, "SELECT count(*) FROM line_link_nonce").await, 0, "no nonce for a wrong proof");
    // Guessing one patient's birth date is cut short: after five wrong proofs in a day, even the
    // right one is refused (and a coordinator sees the refusals in the audit log).
    for _ in 0..4 {
        assert_eq!(prove(refs[1].clone(), "1985-11-03", EMAIL).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let (st, _, html) = prove(refs[1].clone(), "1985-11-02", EMAIL).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    assert!(html.contains("本日はLINE連携を受け付けません"), "{html}");
    assert_eq!(
        count(&db, &format!("SELECT count(*) FROM audit_log WHERE action = 'line_link_refused' AND entity_id = '{hanako}'")).await,
        5
    );

    // The right proof (the reference as printed, in capitals with spaces, still matches): 303
    // to LINE with the link token and a nonce; LINE's accountLink event links the patient.
    let (st, to, _) = prove(format!(" {} ", refs[0].to_uppercase()), "1978-05-14", " TARO.YAMADA@EXAMPLE.JP ").await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let to = to.unwrap();
    let nonce = to.split("nonce=").nth(1).unwrap().to_owned();
    assert!(nonce.len() >= 43, "a nonce of 256 bits: {nonce}");
    assert_eq!(count(&db, &format!("SELECT count(*) FROM line_link_nonce WHERE nonce_hash = '{nonce}'")).await, 0, "stored hashed");
    let (_, p) = s.call("GET", &format!("/patients/{taro}"), None).await;
    assert!(p.get("line_user_id").is_none(), "not linked before LINE says so: {p}");
    http().get(&to).send().await.unwrap();
    assert_eq!(platform.lock().unwrap().link_events.last().unwrap().1, 200);
    let (_, p) = s.call("GET", &format!("/patients/{taro}"), None).await;
    assert_eq!(p["line_user_id"], USER, "{p}");
    assert!(p["line_linked_at"].is_string(), "{p}");
    let linked = until_pushed(&platform, USER, "連携が完了しました").await;
    assert!(!linked.contains("山田") && !linked.contains(&refs[0]), "nothing personal in the notice: {linked}");
    // It links to the patient's calendar feed (LINE carries no calendar file), which opens.
    let feed = linked.split("http://feed.example").nth(1).and_then(|t| t.split_whitespace().next()).expect("a feed URL").to_owned();
    assert!(feed.starts_with("/feed/itf_"), "{linked}");
    let r = http().get(s.url(&feed)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("BEGIN:VCALENDAR"));
    let (_, feeds) = s.call("GET", &format!("/patients/{taro}/feed"), None).await;
    assert!(feeds["feeds"].as_array().unwrap().iter().any(|f| f["origin"] == "line"), "{feeds}");
    // Linked once, never moved by the page: another proof for the patient is refused until a
    // coordinator unlinks them.
    let (st, _, html) = prove(refs[0].clone(), "1978-05-14", EMAIL).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(html.contains("すでにLINEと連携されています"), "{html}");

    // The same link again (a replay): LINE reports it failed, the nonce is spent anyway.
    http().get(&to).send().await.unwrap();
    assert_eq!(platform.lock().unwrap().link_events.last().unwrap().0["link"]["result"], "failed");
    // A forged event with the spent nonce for someone else links nobody, and an unknown nonce neither.
    for (id, n) in
        [("01HWFORGED0000000000000001", nonce.as_str()), ("01HWFORGED0000000000000002", "0000000000000000000000000000000000000000000")]
    {
        let forged = event(id, "accountLink", STRANGER, json!({ "link": { "result": "ok", "nonce": n } }));
        assert_eq!(signed(&s, vec![forged]).await.0, StatusCode::OK);
    }
    let (_, p) = s.call("GET", &format!("/patients/{taro}"), None).await;
    assert_eq!(p["line_user_id"], USER, "still the patient's own: {p}");
    let (_, p) = s.call("GET", &format!("/patients/{hanako}"), None).await;
    assert!(p.get("line_user_id").is_none(), "{p}");
    assert_eq!(
        count(&db, "SELECT count(*) FROM line_event WHERE outcome LIKE 'accountLink refused%'").await,
        3,
        "the replay and both forgeries"
    );
    assert_eq!(count(&db, "SELECT count(*) FROM audit_log WHERE action = 'link_line'").await, 1);

    // Sending back what was read keeps the link; another id is refused, naming the field.
    let (_, mut p) = s.call("GET", &format!("/patients/{taro}"), None).await;
    let obj = p.as_object_mut().unwrap();
    obj.retain(|k, _| !["id", "line_linked_at"].contains(&k.as_str()));
    let (st, e) = s.call("PUT", &format!("/patients/{taro}"), Some(p.clone())).await;
    assert_eq!(st, StatusCode::OK, "{e}");
    p["line_user_id"] = STRANGER.into();
    let (st, e) = s.call("PUT", &format!("/patients/{taro}"), Some(p)).await;
    assert_eq!((st, e["error"]["fields"][0]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("line_user_id")), "{e}");

    // A message from an unlinked LINE user brings a new linking URL (at most one per two minutes).
    for k in 0..3 {
        let m = event(
            &format!("01HWSTRANGER{k:014}"),
            "message",
            STRANGER,
            json!({ "message": { "type": "text", "id": "9", "text": "こんにちは" } }),
        );
        assert_eq!(signed(&s, vec![m]).await.0, StatusCode::OK);
    }
    until_pushed(&platform, STRANGER, "/line/link?linkToken=").await;
    assert_eq!(count(&db, &format!("SELECT count(*) FROM line_notice WHERE line_user_id = '{STRANGER}'")).await, 1);
    // Their events carried a reply token LINE never issued (or one long expired): refused, so
    // the offer was pushed instead.
    assert!(platform.lock().unwrap().accepted.iter().any(|b| b["to"] == STRANGER), "pushed after the reply was refused");
    assert_eq!(count(&db, &format!("SELECT count(*) FROM line_notice WHERE line_user_id = '{STRANGER}' AND sent_by = 'push'")).await, 1);

    // The coordinator unlinks (the patient asked): reminders go by email again.
    let (st, _) = s.call("DELETE", &format!("/patients/{taro}/line"), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, e) = s.call("DELETE", &format!("/patients/{taro}/line"), None).await;
    assert_eq!((st, e["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_linked")), "{e}");
    let (_, p) = s.call("GET", &format!("/patients/{taro}"), None).await;
    assert!(p.get("line_user_id").is_none() && p.get("line_linked_at").is_none(), "{p}");
    // What the link gave ends with it: the feed URL sent on LINE opens nothing any more.
    assert_ne!(http().get(s.url(&feed)).send().await.unwrap().status(), StatusCode::OK, "the LINE feed URL is revoked");

    // Nothing that identifies anyone reaches the log: no user id, reference, token or nonce.
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("LINE account link"), "the flow is logged: {logged}");
    for secret in [USER, STRANGER, refs[0].as_str(), refs[1].as_str(), token.as_str(), nonce.as_str(), "1978-05-14"] {
        assert!(!logged.contains(secret), "{secret} in the log");
    }
    let _ = std::fs::remove_file(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_patients_link_line_through_account_link() {
    patients_link_line_through_account_link(Db::sqlite("line-link"), "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_patients_link_line_through_account_link() {
    if let Some(db) = Db::postgres("line_link").await {
        patients_link_line_through_account_link(db, "postgres").await;
    }
}

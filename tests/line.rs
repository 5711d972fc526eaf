//! LINE's webhook (issue 16, item 1) driven as LINE's platform drives it: bodies shaped as the
//! Messaging API reference shows them, signed with the channel secret; a body without a valid
//! signature is refused with 401 and changes nothing; each event counts once however often it
//! is redelivered; an unfollow unlinks the patient; texts and button answers from a linked
//! patient reach the coordinator, nobody else's are kept; nothing personal reaches the log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const SECRET: &str = "8c1fe0d4d2e6a7b3c9f0e1d2c3b4a5f6";
const USER: &str = "U4af4980629a1b2c3d4e5f60718293a4b";
const STRANGER: &str = "U0000000000000000000000000000dead";

fn event(id: &str, kind: &str, user: &str, extra: Value) -> Value {
    let mut e = json!({
        "type": kind, "mode": "active", "timestamp": 1_797_000_000_000_i64,
        "source": { "type": "user", "userId": user },
        "webhookEventId": id, "deliveryContext": { "isRedelivery": false }
    });
    if kind != "unfollow" {
        e["replyToken"] = "b60d432864f44d079f6d8efe86cf404b".into();
    }
    for (k, v) in extra.as_object().unwrap() {
        e[k] = v.clone();
    }
    e
}

async fn deliver(s: &Server, body: &[u8], signature: Option<&str>) -> (StatusCode, Value) {
    let mut r = s.http.post(s.url("/line/webhook")).header("content-type", "application/json").body(body.to_vec());
    if let Some(sig) = signature {
        r = r.header("x-line-signature", sig);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status();
    (status, serde_json::from_str(&resp.text().await.unwrap()).unwrap_or(Value::Null))
}

async fn signed(s: &Server, events: Vec<Value>) -> (StatusCode, Value) {
    let body = serde_json::to_vec(&json!({ "destination": "Uc0ffee0000000000000000000000000", "events": events })).unwrap();
    deliver(s, &body, Some(&itinerary_api::line::signature(SECRET, &body))).await
}

async fn webhook_follows_line_contract(db: Db, name: &str) {
    let log = std::env::temp_dir().join(format!("itinerary-line-{name}-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let file = std::fs::File::create(&log).unwrap();
    let s = Server::start_logging(&db, &[("ITINERARY_LINE_CHANNEL_SECRET", SECRET), ("RUST_LOG", "info")], file.into());
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

    // A patient whose LINE is linked (typed for now: the account-link flow is not built yet).
    let mut p = patient("山田 太郎");
    p["line_user_id"] = USER.into();
    let (st, p) = s.call("POST", "/patients", Some(p)).await;
    assert_eq!(st, StatusCode::CREATED, "{p}");
    let pid = p["id"].as_i64().unwrap();

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
    assert_eq!(count(&db, "SELECT count(*) FROM line_event").await, 11, "eleven distinct events, each recorded once");
    assert_eq!(count(&db, "SELECT count(*) FROM audit_log WHERE action = 'unlink_line'").await, 1, "the unlinking is audited");

    // The log names kinds and counts, never who or what was written.
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("LINE webhook"), "the webhook is logged: {logged}");
    for secret in [text, USER, STRANGER, "予約したいです", "山田"] {
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

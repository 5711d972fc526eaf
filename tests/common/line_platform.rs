//! A local stand-in for LINE's platform, following the Messaging API's documented contract
//! (LINE itself cannot be reached from a test): push (bearer token, `X-Line-Retry-Key` UUIDs
//! with 409 and `x-line-accepted-request-id` for a key accepted before, 1–5 text messages of at
//! most 5,000 characters, 429 with Retry-After at the rate limit, 429 "monthly limit" past the
//! month's quota), replies (`POST /v2/bot/message/reply`: a reply token the platform put in an
//! event, once, within a minute; 400 "Invalid reply token" otherwise), link tokens (`POST /v2/bot/user/{userId}/linkToken`: ten minutes, single
//! use), and the account-link endpoint (`GET /dialog/bot/accountLink?linkToken&nonce`), which
//! sends the service a signed `accountLink` webhook event: `ok` for a live token, `failed` for
//! one unknown, used or expired, as LINE does.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The channel access token the stand-in accepts.
pub const TOKEN: &str = "line-test-token";

/// How the stand-in behaves, and what it saw.
#[derive(Default)]
pub struct Platform {
    /// Answer the first push with 429 and Retry-After: 1 (the rate limit).
    pub first_push_429: bool,
    /// Pushes accepted in the month before "monthly limit" (None: no limit).
    pub monthly_quota: Option<usize>,
    /// Where `accountLink` events go, and the channel secret that signs them.
    pub webhook: Option<(String, String)>,
    pub accepted: Vec<Value>,
    pub keys: BTreeSet<String>,
    pub refused_429: usize,
    /// Link token → (LINE user, issued at, used).
    pub link_tokens: BTreeMap<String, (String, Instant, bool)>,
    /// The `accountLink` events sent, with the service's answer.
    pub link_events: Vec<(Value, u16)>,
    /// Reply tokens handed out in events: token → (LINE user, issued at, used).
    pub reply_tokens: BTreeMap<String, (String, Instant, bool)>,
    /// Replies accepted: (the user replied to, the body).
    pub replied: Vec<(String, Value)>,
}

impl Platform {
    /// A fresh reply token for an event from `user`, as LINE puts one in each replyable event.
    pub fn reply_token(&mut self, user: &str) -> String {
        let token = format!("{:032x}", rand_u128());
        self.reply_tokens.insert(token.clone(), (user.to_owned(), Instant::now(), false));
        token
    }

    /// Every text LINE delivered to `user`, replies and pushes, in order of kind.
    pub fn texts_to(&self, user: &str) -> Vec<String> {
        let text = |b: &Value| b["messages"][0]["text"].as_str().map(str::to_owned);
        self.replied
            .iter()
            .filter(|(u, _)| u == user)
            .filter_map(|(_, b)| text(b))
            .chain(self.accepted.iter().filter(|b| b["to"] == user).filter_map(text))
            .collect()
    }
}

pub type Shared = Arc<Mutex<Platform>>;

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({ "message": "Authentication failed. Confirm that the access token in the authorization header is valid." })),
    )
        .into_response()
}

async fn push(State(p): State<Shared>, headers: HeaderMap, body: axum::Json<Value>) -> Response {
    if !authorized(&headers) {
        return unauthorized();
    }
    let key = headers.get("x-line-retry-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let uuid = key.len() == 36 && key.split('-').map(str::len).collect::<Vec<_>>() == [8, 4, 4, 4, 12];
    let msgs = body["messages"].as_array().cloned().unwrap_or_default();
    let well_formed = |m: &Value| match m["type"].as_str() {
        Some("text") => m["text"].as_str().is_some_and(|t| !t.is_empty() && t.chars().count() <= 5000),
        _ => false,
    };
    // Quick replies: 1–13 items, each an action with a label of 1–20 characters.
    let item_ok = |i: &Value| {
        i["type"] == "action"
            && ["postback", "message", "uri"].contains(&i["action"]["type"].as_str().unwrap_or_default())
            && i["action"]["label"].as_str().is_some_and(|l| (1..=20).contains(&l.chars().count()))
    };
    let quick_ok = |m: &Value| {
        m.get("quickReply").is_none_or(|q| q["items"].as_array().is_some_and(|i| (1..=13).contains(&i.len()) && i.iter().all(item_ok)))
    };
    if !uuid || !body["to"].is_string() || msgs.is_empty() || msgs.len() > 5 || !msgs.iter().all(|m| well_formed(m) && quick_ok(m)) {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({ "message": "The request body has 1 error(s)" }))).into_response();
    }
    let mut l = p.lock().unwrap();
    if l.first_push_429 && l.refused_429 == 0 {
        l.refused_429 += 1;
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            axum::Json(json!({ "message": "The API rate limit has been exceeded. Try again later." })),
        )
            .into_response();
    }
    if l.keys.contains(&key) {
        return (
            StatusCode::CONFLICT,
            [("x-line-accepted-request-id", "earlier")],
            axum::Json(json!({ "message": "The retry key is already accepted" })),
        )
            .into_response();
    }
    if l.monthly_quota.is_some_and(|q| l.accepted.len() >= q) {
        return (StatusCode::TOO_MANY_REQUESTS, axum::Json(json!({ "message": "You have reached your monthly limit." }))).into_response();
    }
    l.keys.insert(key);
    l.accepted.push(body.0);
    let n = l.accepted.len();
    (
        StatusCode::OK,
        [("x-line-request-id", format!("req-{n}"))],
        axum::Json(json!({ "sentMessages": [{ "id": n.to_string(), "quoteToken": "q" }] })),
    )
        .into_response()
}

async fn reply(State(p): State<Shared>, headers: HeaderMap, body: axum::Json<Value>) -> Response {
    if !authorized(&headers) {
        return unauthorized();
    }
    let token = body["replyToken"].as_str().unwrap_or_default().to_owned();
    let msgs = body["messages"].as_array().cloned().unwrap_or_default();
    if msgs.is_empty()
        || msgs.len() > 5
        || msgs.iter().any(|m| m["type"] != "text" || m["text"].as_str().is_none_or(|t| t.is_empty() || t.chars().count() > 5000))
    {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({ "message": "The request body has 1 error(s)" }))).into_response();
    }
    let mut l = p.lock().unwrap();
    let user = match l.reply_tokens.get_mut(&token) {
        Some((user, at, used)) if !*used && at.elapsed() < Duration::from_secs(60) => {
            *used = true;
            user.clone()
        }
        _ => return (StatusCode::BAD_REQUEST, axum::Json(json!({ "message": "Invalid reply token" }))).into_response(),
    };
    l.replied.push((user, body.0));
    (
        StatusCode::OK,
        [("x-line-request-id", format!("reply-{}", l.replied.len()))],
        axum::Json(json!({ "sentMessages": [{ "id": "r", "quoteToken": "q" }] })),
    )
        .into_response()
}

async fn link_token(State(p): State<Shared>, headers: HeaderMap, Path(user): Path<String>) -> Response {
    if !authorized(&headers) {
        return unauthorized();
    }
    if !(user.starts_with('U') && user.len() == 33) {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({ "message": "The value for the 'userId' parameter is invalid" })))
            .into_response();
    }
    let token = format!("lt{:030x}", rand_u128() >> 8);
    p.lock().unwrap().link_tokens.insert(token.clone(), (user, Instant::now(), false));
    axum::Json(json!({ "linkToken": token })).into_response()
}

fn rand_u128() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    let a = h.finish();
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(a);
    (u128::from(a) << 64) | u128::from(h.finish())
}

/// LINE's account-link endpoint: the browser arrives with our link token and the service's
/// nonce; LINE then tells the service, by a signed webhook event, whether the link was made.
async fn account_link(State(p): State<Shared>, Query(q): Query<BTreeMap<String, String>>) -> Response {
    let (token, nonce) = (q.get("linkToken").cloned().unwrap_or_default(), q.get("nonce").cloned().unwrap_or_default());
    let (event, webhook) = {
        let mut l = p.lock().unwrap();
        let live = match l.link_tokens.get_mut(&token) {
            Some((user, at, used)) if !*used && at.elapsed() < Duration::from_secs(600) => {
                *used = true;
                Some(user.clone())
            }
            _ => None,
        };
        // A failed link still names the user whose token it was, when known.
        let user = live.clone().or_else(|| l.link_tokens.get(&token).map(|(u, _, _)| u.clone())).unwrap_or_default();
        let n = l.link_events.len();
        let reply_token = l.reply_token(&user);
        let event = json!({
            "type": "accountLink", "mode": "active", "timestamp": 1_797_000_000_000_i64 + n as i64,
            "source": { "type": "user", "userId": user },
            "webhookEventId": format!("01LINK{n:020}"), "deliveryContext": { "isRedelivery": false },
            "replyToken": reply_token,
            "link": { "result": if live.is_some() { "ok" } else { "failed" }, "nonce": nonce }
        });
        (event, l.webhook.clone())
    };
    let Some((url, secret)) = webhook else { return (StatusCode::INTERNAL_SERVER_ERROR, "no webhook set").into_response() };
    let body = serde_json::to_vec(&json!({ "destination": "Uc0ffee0000000000000000000000000", "events": [event.clone()] })).unwrap();
    let status = crate::common::http()
        .post(url)
        .header("content-type", "application/json")
        .header("x-line-signature", itinerary_api::line::signature(&secret, &body))
        .body(body)
        .send()
        .await
        .map_or(0, |r| r.status().as_u16());
    let ok = event["link"]["result"] == "ok";
    p.lock().unwrap().link_events.push((event, status));
    (StatusCode::OK, axum::response::Html(if ok { "<p>Linked</p>" } else { "<p>Failed</p>" })).into_response()
}

/// Starts the stand-in; its base URL (for `line.api`; the account-link endpoint is
/// `{base}/dialog/bot/accountLink`).
pub async fn start(platform: Shared) -> String {
    let app = axum::Router::new()
        .route("/v2/bot/message/push", axum::routing::post(push))
        .route("/v2/bot/message/reply", axum::routing::post(reply))
        .route("/v2/bot/user/{user}/linkToken", axum::routing::post(link_token))
        .route("/dialog/bot/accountLink", axum::routing::get(account_link))
        .with_state(platform);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// The service's settings for this stand-in.
pub fn settings(base: &str, secret: &str) -> Vec<(&'static str, String)> {
    vec![
        ("ITINERARY_LINE_API", base.to_owned()),
        ("ITINERARY_LINE_TOKEN", TOKEN.to_owned()),
        ("ITINERARY_LINE_CHANNEL_SECRET", secret.to_owned()),
        ("ITINERARY_LINE_ACCOUNT_LINK_URL", format!("{base}/dialog/bot/accountLink")),
    ]
}

/// An HTML form's body (`application/x-www-form-urlencoded`).
pub fn form(pairs: &[(&str, &str)]) -> String {
    let enc = |t: &str| -> String {
        t.bytes()
            .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect()
    };
    pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

/// A client that does not follow redirects (to see where the linking page sends the patient).
pub fn browser() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// A webhook event as LINE's reference shows it: `kind` from `user`, with `extra` fields
/// (`message`, `postback`, `link`); a reply token on every kind but unfollow.
pub fn event(id: &str, kind: &str, user: &str, extra: Value) -> Value {
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

/// Sends `events` to the service's webhook as LINE does, signed with `secret`.
pub async fn send_events(server: &crate::common::Server, secret: &str, events: Vec<Value>) -> (StatusCode, Value) {
    let body = serde_json::to_vec(&json!({ "destination": "Uc0ffee0000000000000000000000000", "events": events })).unwrap();
    let resp = server
        .http
        .post(server.url("/line/webhook"))
        .header("content-type", "application/json")
        .header("x-line-signature", itinerary_api::line::signature(secret, &body))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    crate::common::status_documented("POST", "/line/webhook", status);
    (status, serde_json::from_str(&resp.text().await.unwrap()).unwrap_or(Value::Null))
}

/// A link token for `user`, as the service's worker would ask LINE for one.
pub async fn http_link_token(base: &str, user: &str) -> String {
    crate::common::http()
        .post(format!("{base}/v2/bot/user/{user}/linkToken"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["linkToken"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Links `user` to the patient of itinerary `reference` (birth date `birth`, the address of
/// `common::patient`) as the patient would: a link token from the platform, the linking page,
/// then LINE's account-link endpoint. The service's answer to the `accountLink` event.
pub async fn link(server: &crate::common::Server, platform: &Shared, base: &str, user: &str, reference: &str, birth: &str) -> u16 {
    let token = http_link_token(base, user).await;
    let r = browser()
        .post(server.url("/line/link"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("link_token", token.as_str()), ("reference", reference), ("birth_date", birth), ("email", "taro.yamada@example.jp")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "the linking page accepted the proof");
    let to = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(to.starts_with(&format!("{base}/dialog/bot/accountLink?linkToken={token}&nonce=")), "{to}");
    let before = platform.lock().unwrap().link_events.len();
    crate::common::http().get(&to).send().await.unwrap();
    let l = platform.lock().unwrap();
    assert_eq!(l.link_events.len(), before + 1);
    l.link_events[before].1
}

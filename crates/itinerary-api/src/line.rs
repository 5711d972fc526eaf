//! `POST /line/webhook`: what LINE's platform sends (issue 16). The body is trusted only once
//! `x-line-signature` equals base64(HMAC-SHA256(channel secret, raw body)), compared in
//! constant time; anything else is 401 and nothing is read. Events are recorded and applied in
//! one transaction before the 200, each once by its `webhookEventId`. Logs carry counts and
//! event kinds, never a user id or a text. Bodies may be up to `LINE_BODY_LIMIT` (LINE batches
//! events, each text up to 5,000 characters).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use hmac::{Hmac, Mac};
use itinerary_store::{AccountLink, LineEvent};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::{ApiError, AppState};

#[derive(Deserialize)]
struct Webhook {
    #[allow(dead_code, reason = "LINE's bot user id; one channel per service, so not checked")]
    destination: Option<String>,
    events: Vec<Event>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    webhook_event_id: String,
    #[serde(default)]
    source: Option<Source>,
    #[serde(default)]
    message: Option<Message>,
    #[serde(default)]
    postback: Option<Postback>,
    #[serde(default)]
    link: Option<Link>,
    #[serde(default)]
    reply_token: Option<String>,
    #[serde(default)]
    timestamp: Option<i64>,
}

/// An `accountLink` event's result: `ok` or `failed`, and the nonce we gave LINE.
#[derive(Deserialize)]
struct Link {
    result: String,
    #[serde(default)]
    nonce: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Source {
    /// `user` (a one-to-one chat), `group` or `room`.
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct Postback {
    data: String,
}

/// The largest webhook body taken: several events of 5,000-character texts fit many times over.
pub const LINE_BODY_LIMIT: usize = 1024 * 1024;

fn refused(code: &'static str, message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, message)
}

/// The signature LINE sends with `body`: base64(HMAC-SHA256(`secret`, `body`)). For a local
/// stand-in of LINE's platform (the tests) and for checking a setup by hand.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether `signature` (base64, as LINE sends it) signs `body` with `secret`.
pub fn signed(secret: &str, body: &[u8], signature: &str) -> bool {
    let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else { return false };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else { return false };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

pub(crate) async fn webhook(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Json<Value>, ApiError> {
    let Some(secret) = s.line_secret.as_deref() else {
        return Err(refused("line_not_configured", "LINE's channel secret is not set (line.channel_secret): no signature can be checked"));
    };
    let Some(signature) = headers.get("x-line-signature").and_then(|v| v.to_str().ok()) else {
        return Err(refused("unsigned", "x-line-signature is missing"));
    };
    if !signed(secret, &body, signature) {
        tracing::warn!(bytes = body.len(), "LINE webhook: the signature does not match; refused");
        return Err(refused("bad_signature", "x-line-signature does not sign this body with the channel secret"));
    }
    let doc: Webhook = serde_json::from_slice(&body).map_err(|e| {
        // serde's message names the path and the expectation, never the value.
        ApiError::field(StatusCode::BAD_REQUEST, "bad_event", "body", "", &format!("not a LINE webhook body: {e}"))
    })?;
    // An event this cannot file (an id or a user id of a shape LINE never sends) is skipped,
    // not the whole body: a 4xx would make LINE send the good ones again and again.
    let mut events = Vec::with_capacity(doc.events.len());
    let mut skipped = 0;
    for e in doc.events {
        let id_ok = !e.webhook_event_id.is_empty()
            && e.webhook_event_id.len() <= 64
            && e.webhook_event_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        // Only a one-to-one chat is the patient's own: a group's or a room's message is not
        // filed as theirs, and nothing about the clinic is said into a group.
        let user_id = e.source.filter(|s| s.kind.as_deref().is_none_or(|k| k == "user")).and_then(|s| s.user_id);
        let user_ok = user_id.as_deref().is_none_or(|u| !u.is_empty() && u.len() <= 64 && u.bytes().all(|b| b.is_ascii_alphanumeric()));
        if !(id_ok && user_ok) || e.kind.len() > 32 {
            skipped += 1;
            continue;
        }
        // PostgreSQL refuses a NUL in text; nobody types one.
        let text = match (e.kind.as_str(), e.message, e.postback) {
            ("message", Some(m), _) if m.kind == "text" => m.text,
            ("postback", _, Some(p)) => Some(p.data),
            _ => None,
        }
        .map(|t| t.replace('\0', ""));
        let link = e.link.and_then(|l| l.nonce.map(|nonce| AccountLink { ok: l.result == "ok", nonce }));
        // A reminder's button: the answer and the message it answers.
        let answer = match e.kind.as_str() {
            "postback" => text.as_deref().and_then(itinerary_notify::line::Answer::parse).map(|(a, m)| (a.code().to_owned(), m)),
            _ => None,
        };
        let reply_token = e.reply_token.filter(|t| t.len() <= 255 && t.bytes().all(|b| b.is_ascii_graphic()));
        events.push(LineEvent {
            webhook_event_id: e.webhook_event_id,
            kind: e.kind,
            user_id,
            text,
            link,
            answer,
            reply_token,
            timestamp_ms: e.timestamp,
        });
    }
    let now = s.clock.now().await?;
    let outcomes = s.store.record_line_events(&events, now).await?;
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    tracing::info!(events = events.len(), skipped, ?kinds, "LINE webhook");
    Ok(Json(json!({ "events": outcomes.len(), "skipped": skipped })))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value Python's hmac module gives for the same secret and body.
    #[test]
    fn a_signature_is_the_base64_hmac_of_the_raw_body() {
        // python3 -c "import hmac,hashlib,base64;print(base64.b64encode(hmac.new(b'secret',b'{}',hashlib.sha256).digest()).decode())"
        assert!(signed("secret", b"{}", "dzJZAsrKgS3CWXM6rNBGtzgXNyx3e42VtAJkdHRRbhM="));
        assert!(!signed("secret", b"{} ", "dzJZAsrKgS3CWXM6rNBGtzgXNyx3e42VtAJkdHRRbhM="));
        assert!(!signed("other", b"{}", "dzJZAsrKgS3CWXM6rNBGtzgXNyx3e42VtAJkdHRRbhM="));
        assert!(!signed("secret", b"{}", "not base64!"));
        assert_eq!(signature("secret", b"{}"), "dzJZAsrKgS3CWXM6rNBGtzgXNyx3e42VtAJkdHRRbhM=");
    }
}

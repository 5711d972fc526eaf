//! `Idempotency-Key` (draft-ietf-httpapi-idempotency-key-header) on the writes that are not
//! idempotent by themselves: `POST /patients`, `POST /itineraries`, `PUT /itineraries/{id}`
//! (a new version each time) and `POST /itineraries/{id}/cancel`. The first request with a key
//! runs and its answer is committed with its write (see `itinerary_store::idempotency`); the
//! same request sent again gets that answer (`Idempotent-Replayed: true`), a different request
//! under the same key 422, and one sent while the first is still running 409. Other writes
//! (`PUT` of escorts, resources and patients, `DELETE`) are idempotent already, and accept and
//! ignore the header.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Mutex;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use itinerary_store::{Answered, IdempotencyKey};

use crate::{ApiError, AppState};

pub(crate) const HEADER: &str = "idempotency-key";
/// Set on an answer replayed from a stored outcome.
pub(crate) const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// Longer keys are refused: a UUID is 36 characters.
const LONGEST: usize = 255;

/// The key a request carries: an RFC 8941 string (`"8e03978e-…"`, as the draft defines it), or
/// the bare value that many clients send.
pub(crate) fn key_in(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all(HEADER).iter();
    let Some(v) = values.next() else { return Ok(None) };
    let bad =
        |value: &str, problem: &str| ApiError::field(StatusCode::BAD_REQUEST, "invalid_idempotency_key", "Idempotency-Key", value, problem);
    if values.next().is_some() {
        return Err(bad("", "sent more than once"));
    }
    let raw = v.to_str().map_err(|_| bad("(not ASCII)", "must be printable ASCII"))?.trim();
    let key = match raw.strip_prefix('"') {
        Some(rest) => {
            let mut out = String::new();
            let mut chars = rest.chars();
            loop {
                match chars.next() {
                    Some('"') if chars.as_str().is_empty() => break out,
                    Some('\\') => match chars.next() {
                        Some(c @ ('"' | '\\')) => out.push(c),
                        _ => return Err(bad(raw, "a quoted key may escape only `\"` and `\\`")),
                    },
                    Some('"') | None => return Err(bad(raw, "a quoted key must end with its only unescaped `\"`")),
                    Some(c) if (' '..='~').contains(&c) => out.push(c),
                    Some(_) => return Err(bad(raw, "must be printable ASCII")),
                }
            }
        }
        None if raw.chars().all(|c| c.is_ascii_graphic()) => raw.to_owned(),
        None => return Err(bad(raw, "an unquoted key may hold no spaces: quote it (\"…\")")),
    };
    if key.is_empty() {
        return Err(bad(raw, "is empty"));
    }
    if key.len() > LONGEST {
        return Err(bad(&format!("{}…", &key[..32]), &format!("is longer than {LONGEST} characters")));
    }
    Ok(Some(key))
}

/// Keys whose request is running in this process.
#[derive(Debug, Default)]
pub struct InFlight(Mutex<HashSet<(i32, String)>>);

/// A key marked as running until dropped.
struct Running<'a>(&'a InFlight, (i32, String));

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if let Ok(mut k) = self.0.0.lock() {
            k.remove(&self.1);
        }
    }
}

impl InFlight {
    fn enter(&self, key: &IdempotencyKey) -> Option<Running<'_>> {
        let id = (key.coordinator_id, key.key.clone());
        let mut keys = self.0.lock().ok()?;
        keys.insert(id.clone()).then(|| Running(self, id))
    }
}

fn in_use() -> ApiError {
    itinerary_store::StoreError::KeyInUse.into()
}

/// The stored answer, if it answered this same request.
fn replay(key: &IdempotencyKey, a: &Answered) -> Result<Response, ApiError> {
    if a.fingerprint != key.fingerprint {
        return Err(ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "Idempotency-Key",
            &key.key,
            "was used for a different request (another method, path or body) in the last 24 hours",
        ));
    }
    let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::OK);
    let mut res = (status, a.body.clone()).into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res.headers_mut().insert(REPLAYED, HeaderValue::from_static("true"));
    Ok(res)
}

/// Runs the write `run` under `key`, or answers as it was answered before.
pub(crate) async fn once<F, Fut>(s: &AppState, key: Option<IdempotencyKey>, run: F) -> Result<Response, ApiError>
where
    F: FnOnce(Option<IdempotencyKey>) -> Fut,
    Fut: Future<Output = Result<Response, ApiError>>,
{
    let Some(key) = key else { return run(None).await };
    let now = s.clock.now().await?;
    if let Some(a) = s.store.answered(key.coordinator_id, &key.key, now).await? {
        return replay(&key, &a);
    }
    let Some(_running) = s.in_flight.enter(&key) else { return Err(in_use()) };
    match run(Some(key.clone())).await {
        // Another process committed it first: checked again under the write's lock.
        Err(ApiError { answered: Some(a), .. }) => replay(&key, &a),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &str) -> Result<Option<String>, String> {
        let mut h = HeaderMap::new();
        h.insert(HEADER, HeaderValue::from_str(v).map_err(|e| e.to_string())?);
        key_in(&h).map_err(|e| e.message)
    }

    #[test]
    fn keys_are_structured_strings_or_bare_tokens() {
        assert_eq!(parse("\"8e03978e-40d5-43e8-bc93-6894a57f9324\""), Ok(Some("8e03978e-40d5-43e8-bc93-6894a57f9324".into())));
        assert_eq!(parse("8e03978e"), Ok(Some("8e03978e".into())));
        assert_eq!(parse("\"a \\\"b\\\" c\""), Ok(Some("a \"b\" c".into())));
        assert_eq!(key_in(&HeaderMap::new()).map_err(|e| e.message), Ok(None));
        for bad in ["\"\"", "\"open", "\"a\"b\"", "two words", "\"a\\x\"", &"k".repeat(256)] {
            let e = parse(bad);
            assert!(matches!(&e, Err(m) if m.starts_with("Idempotency-Key: ")), "{bad}: {e:?}");
        }
    }
}

//! `/line/link`: the page of LINE's account-link flow where a patient proves who they are
//! (issue 16, item 2). LINE's chat brings them here with a link token; they give their
//! itinerary's reference (from their booking confirmation: 48 random bits, never shown to
//! another patient, though an escort's invites carry it), their birth date and the address
//! their mail comes to; on a match the page sends them to LINE's account-link endpoint with the
//! link token and a fresh nonce, and LINE's `accountLink` event with that nonce links them.
//! Nothing is linked on this page, and a mismatch says not which part was wrong. Failed
//! attempts count against the address, as failed sign-ins do, and against the patient (five in
//! a day lock their linking for a day); a patient already linked is not linked again until a
//! coordinator unlinks them. Patients' page: Japanese unless the browser asks for English first.

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use itinerary_store::{LinkProof, StoreError};
use serde::Deserialize;

use crate::pages::render;
use crate::{CSP, Console, Lang, encode, remember_language};

#[derive(Deserialize)]
pub(crate) struct Arrival {
    #[serde(rename = "linkToken", default)]
    link_token: Option<String>,
    #[serde(default)]
    lang: Option<String>,
}

/// What the patient sends.
#[derive(Deserialize)]
pub(crate) struct Proof {
    #[serde(default)]
    link_token: String,
    #[serde(default)]
    reference: String,
    #[serde(default)]
    birth_date: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    lang: Option<String>,
}

/// Whether `token` has the shape of LINE's link tokens (URL-safe, at most a few dozen
/// characters); anything else is not carried to LINE.
fn plausible(token: &str) -> bool {
    (8..=128).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
}

fn lang_of(headers: &HeaderMap, lang: Option<&str>) -> Lang {
    Lang::or(headers, lang.map(|l| format!("lang={l}")).as_deref(), Lang::Ja)
}

/// The page, with a Content-Security-Policy whose form-action also allows LINE's endpoint:
/// browsers apply form-action to the redirect a form's answer makes.
fn page(c: &Console, lang: Lang, status: StatusCode, token: &str, reference: &str, failed: bool) -> Response {
    page_saying(c, lang, status, token, reference, failed, None)
}

/// The page, saying `notice` (a word of `words/*.toml`) instead of the form when there is one.
fn page_saying(c: &Console, lang: Lang, status: StatusCode, token: &str, reference: &str, failed: bool, notice: Option<&str>) -> Response {
    let usable = plausible(token);
    let notice = notice.and_then(|k| crate::words(lang).get(k).cloned());
    let other = if lang == Lang::Ja { "en" } else { "ja" };
    let mut res = render(
        lang,
        status,
        "line_link.html",
        None,
        minijinja::context! {
            usable => usable,
            link_token => token,
            reference => reference,
            failed => failed,
            notice => notice,
            brand => c.setup.clinic.name.clone(),
            lang_href => format!("?linkToken={}&lang={other}", encode(token)),
        },
    );
    let origin = origin(&c.line_account_link);
    if let Ok(v) = HeaderValue::from_str(&CSP.replace("form-action 'self'", &format!("form-action 'self' {origin}"))) {
        res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    res
}

/// A birth date as patients type it on a phone: `1978-05-14`, `1978/5/14`, `1978年5月14日`,
/// `19780514`, in full-width digits from a Japanese keyboard too.
fn birth_date(text: &str) -> Option<chrono::NaiveDate> {
    let ascii: String = text
        .trim()
        .chars()
        .map(|c| match c {
            '０'..='９' => char::from_u32(c as u32 - '０' as u32 + '0' as u32).unwrap_or(c),
            c => c,
        })
        .collect();
    let groups: Vec<&str> = ascii.split(|c: char| !c.is_ascii_digit()).filter(|g| !g.is_empty()).collect();
    let (y, m, d) = match groups.as_slice() {
        [all] if all.len() == 8 => (&all[..4], &all[4..6], &all[6..]),
        [y, m, d] if y.len() == 4 && m.len() <= 2 && d.len() <= 2 => (*y, *m, *d),
        _ => return None,
    };
    chrono::NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    url[after_scheme..].find('/').map_or(url, |i| &url[..after_scheme + i])
}

pub(crate) async fn form(State(c): State<Console>, headers: HeaderMap, Query(q): Query<Arrival>) -> Response {
    let lang = lang_of(&headers, q.lang.as_deref());
    let token = q.link_token.unwrap_or_default();
    let status = if plausible(&token) { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let mut res = page(&c, lang, status, &token, "", false);
    if q.lang.is_some() {
        remember_language(&mut res, lang);
    }
    res
}

async fn start(c: &Console, reference: &str, birth: chrono::NaiveDate, email: &str) -> Result<LinkProof, StoreError> {
    let now = c.clock.now().await?;
    c.store.start_line_link(reference, birth, email, now).await
}

pub(crate) async fn prove(
    State(c): State<Console>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    Form(f): Form<Proof>,
) -> Response {
    let lang = lang_of(&headers, f.lang.as_deref());
    if !plausible(&f.link_token) {
        return page(&c, lang, StatusCode::BAD_REQUEST, &f.link_token, "", false);
    }
    let client = itinerary_api::serve::client(&extensions).map_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |a| a.ip());
    if let Some(wait) = c.failed.blocked(client) {
        let mut res = page_saying(&c, lang, StatusCode::TOO_MANY_REQUESTS, &f.link_token, "", false, Some("link_too_many"));
        if let Ok(v) = HeaderValue::from_str(&(wait.as_secs() + 1).to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return res;
    }
    let reference = f.reference.trim();
    let shaped = reference.len() <= 64 && f.email.len() <= 320;
    let birth = birth_date(&f.birth_date);
    let proof = match (shaped, birth) {
        // The service's clock, as the webhook that spends the nonce reads it.
        (true, Some(birth)) => match start(&c, reference, birth, &f.email).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "starting a LINE account link");
                return page_saying(&c, lang, StatusCode::SERVICE_UNAVAILABLE, &f.link_token, "", false, Some("link_unavailable"));
            }
        },
        _ => LinkProof::NoMatch,
    };
    match proof {
        LinkProof::Nonce(nonce) => {
            tracing::info!("LINE account link: the patient proved who they are; sent to LINE");
            let to = format!("{}?linkToken={}&nonce={}", c.line_account_link, encode(&f.link_token), encode(&nonce));
            (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
        }
        LinkProof::NoMatch => {
            c.failed.failed(client);
            tracing::info!("LINE account link: the proof does not match");
            let shown = if shaped { reference } else { "" };
            page(&c, lang, StatusCode::UNPROCESSABLE_ENTITY, &f.link_token, shown, true)
        }
        LinkProof::Locked => {
            c.failed.failed(client);
            tracing::warn!("LINE account link: refused, too many wrong proofs for this patient today");
            page_saying(&c, lang, StatusCode::TOO_MANY_REQUESTS, &f.link_token, "", false, Some("link_locked"))
        }
        LinkProof::AlreadyLinked => {
            tracing::info!("LINE account link: refused, the patient is linked already");
            page_saying(&c, lang, StatusCode::CONFLICT, &f.link_token, "", false, Some("link_already"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_is_the_scheme_host_and_port() {
        assert_eq!(origin("https://access.line.me/dialog/bot/accountLink"), "https://access.line.me");
        assert_eq!(origin("http://127.0.0.1:3999/dialog"), "http://127.0.0.1:3999");
        assert_eq!(origin("https://x.example"), "https://x.example");
    }

    #[test]
    fn a_birth_date_is_read_as_patients_type_it() {
        let d = chrono::NaiveDate::from_ymd_opt(1978, 5, 14);
        for typed in ["1978-05-14", " 1978/5/14 ", "1978年5月14日", "19780514", "１９７８年５月１４日", "1978.05.14"] {
            assert_eq!(birth_date(typed), d, "{typed}");
        }
        for odd in ["", "14/05/1978", "1978-02-30", "780514", "1978-05-14-1", "nineteen"] {
            assert_eq!(birth_date(odd), None, "{odd}");
        }
    }

    #[test]
    fn only_token_shaped_link_tokens_are_carried() {
        assert!(plausible("NMZTNuVrPTqlr2IF8Bnymkb7rXfYv5EY"));
        assert!(!plausible("short") && !plausible("a b c d e f g h") && !plausible(&"x".repeat(200)) && !plausible("x\"><script>"));
    }
}

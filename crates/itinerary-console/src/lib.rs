//! The coordinators' console: the pages a coordinator in Tokyo or Kuala Lumpur works in, served
//! by `itinerary serve` under `/console/` beside the JSON API. Server-rendered HTML (minijinja
//! templates compiled into the binary, checked when the console is built), one stylesheet, no
//! script; every page in Japanese and English.
//!
//! It owns sign-in (a coordinator's token, exchanged for a session cookie: `HttpOnly`,
//! `SameSite=Strict`, `Secure` behind https, ended by signing out, inactivity or the token's
//! revocation), CSRF protection of every form (a per-session secret in a hidden field), the
//! language of each page (`?lang=`, then `Accept-Language`), and the security headers of its
//! pages (a Content-Security-Policy without `unsafe-inline`, `no-store`, `nosniff`, no framing).
//! What it shows and changes goes through `itinerary-store`, as the API's routes do.

mod link;
mod pages;
mod questionnaire;
mod view;

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use itinerary_core::ClinicSetup;
use itinerary_store::{Clock, Session, Store};
use minijinja::Environment;

/// What every page shares.
#[derive(Clone, Debug)]
pub struct Console {
    pub store: Store,
    pub setup: Arc<ClinicSetup>,
    pub clock: Clock,
    /// A session unused this long is ended.
    pub idle: chrono::Duration,
    /// Cookies only over https (`public_url` is https).
    pub secure: bool,
    /// Where patients reach the service, for their feed URLs (no trailing slash).
    pub public_url: String,
    /// Failed sign-ins by client address, shared with the API's bearer tokens and feed URLs:
    /// a guesser is refused whichever door it tries.
    pub failed: Arc<itinerary_api::guard::FailedAttempts>,
    /// LINE's account-link endpoint (`line.account_link_url`), where `/line/link` sends a
    /// patient who proved who they are.
    pub line_account_link: String,
    /// The mail outbox directory, whose files a patient's erasure deletes too.
    pub outbox: Option<std::path::PathBuf>,
}

/// The name of the session cookie.
const SESSION: &str = "itinerary_session";
/// The name of the language cookie (`ja` or `en`).
const LANG: &str = "itinerary_lang";

/// The console's routes. `/` leads to it.
pub fn router(console: Console) -> Router {
    let signed_in = Router::new()
        .route("/console/", axum::routing::get(pages::week))
        .route("/console/board", axum::routing::get(pages::board))
        .route("/console/patients", axum::routing::get(pages::patients).post(pages::create_patient))
        .route("/console/patients/{id}", axum::routing::get(pages::patient).post(pages::update_patient))
        .route("/console/patients/{id}/feed", axum::routing::post(pages::rotate_feed))
        .route("/console/patients/{id}/feed/revoke", axum::routing::post(pages::revoke_feed))
        .route("/console/patients/{id}/line/unlink", axum::routing::post(pages::unlink_line))
        .route("/console/patients/{id}/outcomes.svg", axum::routing::get(pages::outcomes_chart))
        .route("/console/patients/{id}/outcomes.csv", axum::routing::get(pages::outcomes_csv))
        .route("/console/patients/{id}/export", axum::routing::get(pages::export))
        .route("/console/patients/{id}/reevaluation", axum::routing::post(pages::decide))
        .route("/console/patients/{id}/erase", axum::routing::post(pages::erase))
        .route("/console/patients/{id}/plan", axum::routing::get(pages::plan_form).post(pages::plan))
        .route("/console/itineraries/{id}", axum::routing::get(pages::itinerary))
        .route("/console/itineraries/{id}/cancel", axum::routing::get(pages::cancel_preview).post(pages::cancel))
        .route("/console/itineraries/{id}/change", axum::routing::get(pages::change_form).post(pages::change))
        .route("/console/itineraries/{id}/messages/{message}/resend", axum::routing::post(pages::resend))
        .route("/console/audit", axum::routing::get(pages::audit))
        .route("/console/signout", axum::routing::post(pages::sign_out))
        .route_layer(middleware::from_fn_with_state(console.clone(), require_session));
    Router::new()
        .route("/", axum::routing::get(|| async { Redirect::to("/console/") }))
        .route("/console", axum::routing::get(|| async { Redirect::to("/console/") }))
        .route("/console/signin", axum::routing::get(pages::sign_in_form).post(pages::sign_in))
        .route("/console/static/console.css", axum::routing::get(stylesheet))
        .route("/line/link", axum::routing::get(link::form).post(link::prove))
        .route("/questionnaire/{token}", axum::routing::get(questionnaire::form).post(questionnaire::save))
        .merge(signed_in)
        .layer(middleware::from_fn(page_headers))
        .with_state(console)
}

/// A page's language.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Ja,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Ja => "ja",
            Lang::En => "en",
        }
    }

    /// `?lang=` first, then the language cookie, then the first of Japanese or English the
    /// browser asks for (`Accept-Language`), else English.
    fn of(headers: &HeaderMap, query: Option<&str>) -> Lang {
        Lang::or(headers, query, Lang::En)
    }

    /// As [`Lang::of`], with `otherwise` when nothing says.
    fn or(headers: &HeaderMap, query: Option<&str>, otherwise: Lang) -> Lang {
        let pick = |v: &str| match v.trim() {
            "ja" => Some(Lang::Ja),
            "en" => Some(Lang::En),
            _ => None,
        };
        if let Some(l) = query.and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("lang=")).and_then(pick)) {
            return l;
        }
        if let Some(l) = cookie(headers, LANG).and_then(|v| pick(&v)) {
            return l;
        }
        let accept = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let mut best: Option<(f32, Lang)> = None;
        for part in accept.split(',') {
            let mut it = part.split(';');
            let tag = it.next().unwrap_or_default().trim().to_ascii_lowercase();
            let q = it.find_map(|p| p.trim().strip_prefix("q=")).and_then(|q| q.parse::<f32>().ok()).unwrap_or(1.0);
            let lang = if tag == "ja" || tag.starts_with("ja-") {
                Lang::Ja
            } else if tag == "en" || tag.starts_with("en-") {
                Lang::En
            } else {
                continue;
            };
            if best.is_none_or(|(b, _)| q > b) {
                best = Some((q, lang));
            }
        }
        best.map_or(otherwise, |(_, l)| l)
    }
}

/// The words of every page, by key, in one language (`words/ja.toml`, `words/en.toml`).
pub(crate) fn words(lang: Lang) -> &'static BTreeMap<String, String> {
    static JA: LazyLock<BTreeMap<String, String>> = LazyLock::new(|| parse_words(include_str!("../words/ja.toml")));
    static EN: LazyLock<BTreeMap<String, String>> = LazyLock::new(|| parse_words(include_str!("../words/en.toml")));
    match lang {
        Lang::Ja => &JA,
        Lang::En => &EN,
    }
}

fn parse_words(text: &str) -> BTreeMap<String, String> {
    // Checked by the tests: both files parse and hold the same keys.
    toml::from_str(text).unwrap_or_default()
}

/// The page templates, compiled once; a mistake in one fails the tests, not a coordinator.
pub(crate) fn templates() -> &'static Environment<'static> {
    static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        for (name, source) in TEMPLATES {
            if let Err(e) = env.add_template(name, source) {
                tracing::error!(template = name, error = %e, "a console template does not compile");
            }
        }
        env
    });
    &ENV
}

const TEMPLATES: [(&str, &str); 14] = [
    ("line_link.html", include_str!("../templates/line_link.html")),
    ("questionnaire.html", include_str!("../templates/questionnaire.html")),
    ("audit.html", include_str!("../templates/audit.html")),
    ("board.html", include_str!("../templates/board.html")),
    ("layout.html", include_str!("../templates/layout.html")),
    ("timeline.html", include_str!("../templates/timeline.html")),
    ("signin.html", include_str!("../templates/signin.html")),
    ("week.html", include_str!("../templates/week.html")),
    ("patients.html", include_str!("../templates/patients.html")),
    ("patient.html", include_str!("../templates/patient.html")),
    ("plan.html", include_str!("../templates/plan.html")),
    ("itinerary.html", include_str!("../templates/itinerary.html")),
    ("cancel.html", include_str!("../templates/cancel.html")),
    ("error.html", include_str!("../templates/error.html")),
];

async fn stylesheet() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "max-age=300")], include_str!("../static/console.css"))
        .into_response()
}

/// The headers of every console answer: no script but our own, no inline style or script, no
/// framing, no cache of personal data, no sniffing, no referrer leaking an itinerary's URL.
async fn page_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    // A page may widen form-action (the linking page's form ends at LINE); nothing else.
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// The pages' Content-Security-Policy: our stylesheet, forms to ourselves, nothing else.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The signed-in coordinator and the page's language, for every page behind sign-in.
#[derive(Clone, Debug)]
pub(crate) struct Visit {
    pub session: Session,
    pub lang: Lang,
}

/// Pages behind sign-in: without a live session, 302 to the sign-in page (which comes back).
async fn require_session(State(c): State<Console>, mut req: Request, next: Next) -> Response {
    let lang = Lang::of(req.headers(), req.uri().query());
    let now = chrono::Utc::now();
    let session = match cookie(req.headers(), SESSION) {
        Some(secret) => match c.store.session(&secret, c.idle, now).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "reading a console session");
                return pages::error_page(lang, StatusCode::SERVICE_UNAVAILABLE, "error_unavailable");
            }
        },
        None => None,
    };
    let Some(session) = session else {
        let back = req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
        let to = if req.method() == axum::http::Method::GET && back.starts_with("/console/") {
            format!("/console/signin?next={}", encode(&back))
        } else {
            "/console/signin".to_owned()
        };
        return (StatusCode::FOUND, [(header::LOCATION, to)]).into_response();
    };
    let chosen = req.uri().query().is_some_and(|q| q.split('&').any(|kv| kv.starts_with("lang=")));
    req.extensions_mut().insert(Visit { session, lang });
    let mut res = next.run(req).await;
    if chosen {
        remember_language(&mut res, lang);
    }
    res
}

/// Keeps a language chosen with `?lang=` for the next pages.
pub(crate) fn remember_language(res: &mut Response, lang: Lang) {
    if let Ok(v) = HeaderValue::from_str(&format!("{LANG}={}; Path=/console/; SameSite=Strict; Max-Age=31536000", lang.code())) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// A cookie's value from the request.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then(|| v.to_owned())
    })
}

/// `text` percent-encoded for a query value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

pub(crate) use itinerary_api::guard::same_secret;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn both_languages_have_every_word() {
        let (ja, en) = (words(Lang::Ja), words(Lang::En));
        assert!(ja.len() > 40, "words/ja.toml did not parse");
        let missing: Vec<_> = ja.keys().filter(|k| !en.contains_key(*k)).chain(en.keys().filter(|k| !ja.contains_key(*k))).collect();
        assert!(missing.is_empty(), "in one language only: {missing:?}");
    }

    #[test]
    fn every_template_compiles() {
        for (name, _) in TEMPLATES {
            templates().get_template(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn the_language_follows_the_query_then_the_cookie_then_the_browser() {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_LANGUAGE, HeaderValue::from_static("fr-FR, en;q=0.5, ja;q=0.8"));
        assert_eq!(Lang::of(&h, None), Lang::Ja);
        h.insert(header::COOKIE, HeaderValue::from_static("x=1; itinerary_lang=en"));
        assert_eq!(Lang::of(&h, None), Lang::En);
        assert_eq!(Lang::of(&h, Some("a=b&lang=ja")), Lang::Ja);
        assert_eq!(Lang::of(&HeaderMap::new(), None), Lang::En);
    }
}

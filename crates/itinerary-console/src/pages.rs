//! The console's pages: sign-in, the week, patients, planning a trip with its preview, an
//! itinerary with its messages, and a cancellation with what it will send.

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{Duration, NaiveDate, NaiveTime, Utc};
use itinerary_core::FieldError;
use itinerary_core::plan::{EventKind, When};
use itinerary_core::request::{Legs, RawFlight, RawTrip};
use itinerary_core::time::{at_local, date_en, date_ja};
use itinerary_store::{BookError, IdempotencyKey, InputError, NewItinerary, PatientInput, StoreError};
use minijinja::Value;
use serde::Deserialize;

use crate::view::{self, moment};
use crate::{Console, Lang, SESSION, Visit, cookie, remember_language, same_secret, templates, words};

/// The value of a store call, or (from the handler) the error page it calls for.
macro_rules! or_page {
    ($call:expr, $lang:expr) => {
        match $call {
            Ok(value) => value,
            Err(e) => return store_error($lang, &e),
        }
    };
}

/// The page `name` in `lang`, with `ctx` and the words of that language as `t`.
pub(crate) fn render(lang: Lang, status: StatusCode, name: &str, visit: Option<&Visit>, ctx: Value) -> Response {
    let t = words(lang);
    let page = minijinja::context! {
        t => t,
        lang => lang.code(),
        other_lang => if lang == Lang::Ja { "en" } else { "ja" },
        coordinator => visit.map(|v| v.session.coordinator_name.clone()),
        csrf => visit.map(|v| v.session.csrf.clone()),
        once => visit.map(|_| itinerary_store::Token::generate("").secret),
        ..ctx
    };
    match templates().get_template(name).and_then(|tpl| tpl.render(page)) {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(template = name, error = %e, "rendering a console page");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered").into_response()
        }
    }
}

/// An error page saying `key` (a word of `words/*.toml`).
pub(crate) fn error_page(lang: Lang, status: StatusCode, key: &str) -> Response {
    let message = words(lang).get(key).cloned().unwrap_or_else(|| key.to_owned());
    render(lang, status, "error.html", None, minijinja::context! { message => message })
}

fn store_error(lang: Lang, e: &StoreError) -> Response {
    match e {
        StoreError::NotFound { .. } => error_page(lang, StatusCode::NOT_FOUND, "error_not_found"),
        e => {
            tracing::error!(error = %e, "console");
            error_page(lang, StatusCode::SERVICE_UNAVAILABLE, "error_unavailable")
        }
    }
}

/// A form's CSRF field against the session's: refused with 403 when they differ.
fn forged(visit: &Visit, given: Option<&str>) -> Option<Response> {
    (!given.is_some_and(|g| same_secret(g, &visit.session.csrf))).then(|| error_page(visit.lang, StatusCode::FORBIDDEN, "error_csrf"))
}

/// The key of a form that writes: `once`, rendered with the form, so that the form sent twice (a
/// double click, a reload, a slow network sent again) writes once.
fn form_key(v: &Visit, once: Option<&str>, path: &str, body: &impl serde::Serialize) -> Option<IdempotencyKey> {
    once.filter(|k| !k.is_empty() && k.len() <= 80)
        .map(|k| IdempotencyKey::new(v.session.coordinator_id, &format!("console:{k}"), "POST", path, body, StatusCode::SEE_OTHER.as_u16()))
}

/// For a form sent before under its key (`e` None: looked up before writing; or the write's
/// refusal): the page of what that sending made (`/console/{to}/{id}`), once it is known; or why
/// not, when the form was changed in between. None: nothing was sent before; write.
async fn sent_before(c: &Console, v: &Visit, key: Option<&IdempotencyKey>, e: Option<&StoreError>, to: &str) -> Option<Response> {
    let key = key?;
    let answered = match e {
        None => Some(c.store.answered(key.coordinator_id, &key.key, c.clock.now().await.ok()?).await.ok()??),
        Some(StoreError::Answered(a)) => Some((**a).clone()),
        // The other sending is being written at this moment: its answer follows shortly.
        Some(StoreError::KeyInUse) => {
            let mut found = None;
            for _ in 0..30 {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                let now = c.clock.now().await.ok()?;
                if let Ok(Some(a)) = c.store.answered(key.coordinator_id, &key.key, now).await {
                    found = Some(a);
                    break;
                }
            }
            found
        }
        Some(_) => return None,
    };
    let Some(a) = answered.filter(|a| a.fingerprint == key.fingerprint) else {
        return Some(error_page(v.lang, StatusCode::CONFLICT, "error_form_sent"));
    };
    let id = serde_json::from_str::<serde_json::Value>(&a.body).ok().and_then(|b| b["id"].as_i64());
    Some(match id {
        Some(id) => Redirect::to(&format!("/console/{to}/{id}")).into_response(),
        None => error_page(v.lang, StatusCode::CONFLICT, "error_form_sent"),
    })
}

// ---- sign-in

#[derive(Deserialize)]
pub(crate) struct Next {
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    lang: Option<String>,
}

/// Where to go after signing in: a console page, never another site.
fn safe_next(next: Option<&str>) -> String {
    next.filter(|n| n.starts_with("/console/") && !n.starts_with("//") && !n.contains("\\")).unwrap_or("/console/").to_owned()
}

pub(crate) async fn sign_in_form(headers: HeaderMap, Query(q): Query<Next>) -> Response {
    let lang = Lang::of(&headers, q.lang.as_deref().map(|l| format!("lang={l}")).as_deref());
    let mut res =
        render(lang, StatusCode::OK, "signin.html", None, minijinja::context! { next => safe_next(q.next.as_deref()), failed => false });
    if q.lang.is_some() {
        remember_language(&mut res, lang);
    }
    res
}

#[derive(Deserialize)]
pub(crate) struct SignIn {
    token: String,
    #[serde(default)]
    next: Option<String>,
}

pub(crate) async fn sign_in(
    State(c): State<Console>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    Form(f): Form<SignIn>,
) -> Response {
    let lang = Lang::of(&headers, None);
    let next = safe_next(f.next.as_deref());
    let client = itinerary_api::serve::client(&extensions).map_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |a| a.ip());
    if let Some(wait) = c.failed.blocked(client) {
        let mut res = error_page(lang, StatusCode::TOO_MANY_REQUESTS, "error_too_many");
        if let Ok(v) = HeaderValue::from_str(&(wait.as_secs() + 1).to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return res;
    }
    let opened = c.store.open_session(f.token.trim(), Utc::now()).await;
    if matches!(opened, Ok(None)) {
        c.failed.failed(client);
    }
    match opened {
        Ok(Some(opened)) => {
            let secure = if c.secure { "; Secure" } else { "" };
            let cookie = format!("{SESSION}={}; Path=/console/; HttpOnly; SameSite=Strict{secure}", opened.secret);
            let mut res = Redirect::to(&next).into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                res.headers_mut().append(header::SET_COOKIE, v);
            }
            res
        }
        Ok(None) => render(lang, StatusCode::UNAUTHORIZED, "signin.html", None, minijinja::context! { next => next, failed => true }),
        Err(e) => store_error(lang, &e),
    }
}

#[derive(Deserialize)]
pub(crate) struct CsrfOnly {
    #[serde(default)]
    csrf: Option<String>,
}

pub(crate) async fn sign_out(
    State(c): State<Console>,
    Extension(v): Extension<Visit>,
    headers: HeaderMap,
    Form(f): Form<CsrfOnly>,
) -> Response {
    if let Some(refused) = forged(&v, f.csrf.as_deref()) {
        return refused;
    }
    if let Some(secret) = cookie(&headers, SESSION)
        && let Err(e) = c.store.close_session(&secret).await
    {
        return store_error(v.lang, &e);
    }
    let mut res = Redirect::to("/console/signin").into_response();
    res.headers_mut()
        .append(header::SET_COOKIE, HeaderValue::from_static("itinerary_session=; Path=/console/; HttpOnly; SameSite=Strict; Max-Age=0"));
    res
}

// ---- the week

#[derive(Deserialize)]
pub(crate) struct WeekQuery {
    #[serde(default)]
    from: Option<String>,
}

pub(crate) async fn week(State(c): State<Console>, Extension(v): Extension<Visit>, Query(q): Query<WeekQuery>) -> Response {
    let lang = v.lang;
    let zone = c.setup.clinic.zone;
    let now = or_page!(c.clock.now().await, lang);
    let today = now.with_timezone(&zone).date_naive();
    let from = q.from.as_deref().and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()).unwrap_or(today);
    let start = at_local(from, NaiveTime::MIN, zone).utc();
    let end = at_local(from + Duration::days(7), NaiveTime::MIN, zone).utc();
    let found = or_page!(c.store.itineraries_between(start, end).await, lang);
    let l = view::language(lang);
    // Day → rows (time, what, patient, escort, itinerary).
    let mut days: BTreeMap<NaiveDate, Vec<BTreeMap<&str, String>>> = (0..7).map(|k| (from + Duration::days(k), Vec::new())).collect();
    let ids: Vec<i32> = found.iter().map(|(id, _)| *id).collect();
    let plans = or_page!(c.store.current_plans(&ids).await, lang);
    for it in &plans {
        if it.status != "active" {
            continue;
        }
        let name = &it.patient_name;
        for e in &it.plan.events {
            let When::Timed { start: s, .. } = e.when else { continue };
            if s.utc() < start || s.utc() >= end || e.online {
                continue;
            }
            // Flights home and out are shown where Malaysia sees them: the landing and the take-off.
            let (at, what) = match e.kind {
                EventKind::Flight if e.end().is_some_and(|t| t.zone() == zone) => {
                    (e.end().unwrap_or(s), words(lang).get("arrives").cloned().unwrap_or_default())
                }
                EventKind::Flight => (s, words(lang).get("departs").cloned().unwrap_or_default()),
                _ => (s, String::new()),
            };
            let local = at.in_zone(zone);
            let escort = e
                .escort
                .as_ref()
                .and_then(|id| it.plan.escorts.iter().find(|a| &a.escort == id))
                .map(|a| a.escort_name.clone())
                .unwrap_or_default();
            if let Some(rows) = days.get_mut(&local.date()) {
                rows.push(BTreeMap::from([
                    ("time", local.local().format("%H:%M").to_string()),
                    ("what", format!("{}{}", e.title.get(l), if what.is_empty() { String::new() } else { format!(" · {what}") })),
                    ("kind", serde_json::to_value(e.kind).ok().and_then(|k| k.as_str().map(str::to_owned)).unwrap_or_default()),
                    ("patient", name.clone()),
                    ("escort", escort),
                    ("itinerary", it.id.to_string()),
                    ("reference", it.reference.clone()),
                ]));
            }
        }
    }
    let days: Vec<Value> = days
        .into_iter()
        .map(|(d, mut rows)| {
            rows.sort_by(|a, b| a.get("time").cmp(&b.get("time")));
            let label = match lang {
                Lang::Ja => date_ja(d, None),
                Lang::En => date_en(d, None),
            };
            let holidays: Vec<String> = c
                .setup
                .holidays
                .between(&c.setup.clinic.holiday_regions, d, d)
                .map(|h| {
                    let name = h.name_in(lang == Lang::Ja);
                    if h.tentative {
                        format!("{name} ({})", words(lang).get("tentative").cloned().unwrap_or_default())
                    } else {
                        name.to_owned()
                    }
                })
                .collect();
            minijinja::context! { label => label, today => d == today, rows => rows, holidays => holidays }
        })
        .collect();
    let failed: Vec<Value> = match c.store.failed_messages(20).await {
        Ok(f) => f
            .into_iter()
            .map(|m| minijinja::context! { itinerary => m.itinerary_id, key => m.key, kind => m.kind, error => m.error })
            .collect(),
        Err(e) => return store_error(lang, &e),
    };
    let when = |t: chrono::DateTime<Utc>| view::moment_zoned(lang, &itinerary_core::Zoned::new(t, zone));
    let late: Vec<Value> = match c.store.late_messages(now, Duration::minutes(15), 20).await {
        Ok(f) => f
            .into_iter()
            .map(|m| minijinja::context! { itinerary => m.itinerary_id, key => m.key, due => when(m.due_at), error => m.error })
            .collect(),
        Err(e) => return store_error(lang, &e),
    };
    let replies: Vec<Value> = match c.store.reply_alerts(now - Duration::days(14), 20).await {
        Ok(f) => f
            .into_iter()
            .map(|r| minijinja::context! { itinerary => r.itinerary_id, event => r.event, outcome => r.outcome, reason => r.reason, at => when(r.received_at) })
            .collect(),
        Err(e) => return store_error(lang, &e),
    };
    let calls: Vec<Value> = match c.store.call_requests(now - Duration::days(14), 20).await {
        Ok(f) => f
            .into_iter()
            .map(|r| minijinja::context! { patient => r.patient_id, name => r.patient_name, itinerary => r.itinerary_id, about => r.about, at => when(r.received_at) })
            .collect(),
        Err(e) => return store_error(lang, &e),
    };
    let label = |d: NaiveDate| d.format("%Y-%m-%d").to_string();
    render(
        lang,
        StatusCode::OK,
        "week.html",
        Some(&v),
        minijinja::context! {
            days => days,
            failed => failed,
            late => late,
            calls => calls,
            replies => replies,
            previous => label(from - Duration::days(7)),
            next => label(from + Duration::days(7)),
            clinic_zone => view::zone_label(lang, &itinerary_core::Zoned::new(now, zone)),
        },
    )
}

// ---- patients

#[derive(Deserialize)]
pub(crate) struct Search {
    #[serde(default)]
    q: Option<String>,
    /// Back from erasing a patient: say it was done.
    #[serde(default)]
    erased: Option<String>,
}

pub(crate) async fn patients(State(c): State<Console>, Extension(v): Extension<Visit>, Query(s): Query<Search>) -> Response {
    let q = s.q.unwrap_or_default();
    match c.store.search_patients(&q, 200).await {
        Ok(found) => {
            if let Err(e) =
                c.store.audit_read(v.session.coordinator_id, "patient", "search", serde_json::json!({ "found": found.len() })).await
            {
                return store_error(v.lang, &e);
            }
            render(
                v.lang,
                StatusCode::OK,
                "patients.html",
                Some(&v),
                minijinja::context! { q => q, erased => s.erased.is_some(), patients => Value::from(minijinja::value::Serde(&found)), form => BTreeMap::<String, String>::new(), errors => BTreeMap::<String, String>::new() },
            )
        }
        Err(e) => store_error(v.lang, &e),
    }
}

#[derive(Deserialize)]
pub(crate) struct PatientForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    once: Option<String>,
    name: String,
    email: String,
    birth_date: String,
    home_zone: String,
    language: String,
    passport_expiry: String,
    #[serde(default)]
    invites: String,
}

pub(crate) async fn create_patient(State(c): State<Console>, Extension(v): Extension<Visit>, Form(f): Form<PatientForm>) -> Response {
    if let Some(refused) = forged(&v, f.csrf.as_deref()) {
        return refused;
    }
    let input = PatientInput {
        name: f.name.clone(),
        email: f.email.clone(),
        birth_date: f.birth_date.clone(),
        home_zone: Some(f.home_zone.clone()).filter(|z| !z.trim().is_empty()),
        language: Some(f.language.clone()).filter(|l| !l.trim().is_empty()),
        passport_expiry: f.passport_expiry.clone(),
        line_user_id: None,
        invites: Some(f.invites.clone()).filter(|i| !i.trim().is_empty()),
    };
    let key = form_key(&v, f.once.as_deref(), "/console/patients", &input);
    if let Some(done) = sent_before(&c, &v, key.as_ref(), None, "patients").await {
        return done;
    }
    match c.store.create_patient(v.session.coordinator_id, &input, key.clone()).await {
        Ok(p) => Redirect::to(&format!("/console/patients/{}", p.id)).into_response(),
        Err(InputError::Store(e)) if matches!(e, StoreError::Answered(_) | StoreError::KeyInUse) => {
            sent_before(&c, &v, key.as_ref(), Some(&e), "patients").await.unwrap_or_else(|| store_error(v.lang, &e))
        }
        Err(InputError::Invalid(invalid)) => {
            let errors = field_errors(&invalid.errors);
            let form = BTreeMap::from([
                ("name", f.name),
                ("email", f.email),
                ("birth_date", f.birth_date),
                ("home_zone", f.home_zone),
                ("language", f.language),
                ("passport_expiry", f.passport_expiry),
                ("invites", f.invites),
            ]);
            let found = c.store.search_patients("", 200).await.unwrap_or_default();
            render(
                v.lang,
                StatusCode::UNPROCESSABLE_ENTITY,
                "patients.html",
                Some(&v),
                minijinja::context! { q => "", patients => Value::from(minijinja::value::Serde(&found)), form => form, errors => errors },
            )
        }
        Err(InputError::Store(e)) => store_error(v.lang, &e),
    }
}

/// Field → the problems with it, as the page shows them beside the field.
fn field_errors(errors: &[FieldError]) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for e in errors {
        // A direction's first flight is `outbound[0]` when it has connections: the form names it
        // as the only one.
        let key = e.field.trim_start_matches("patient.").replace("outbound[0].", "outbound.").replace("return[0].", "return.");
        let text = format!("`{}`: {}", e.value, e.problem);
        out.entry(key)
            .and_modify(|t| {
                t.push_str("; ");
                t.push_str(&text);
            })
            .or_insert(text);
    }
    out
}

pub(crate) async fn patient(State(c): State<Console>, Extension(v): Extension<Visit>, Path(id): Path<i32>) -> Response {
    patient_page(&c, &v, id, StatusCode::OK, minijinja::context! {}).await
}

/// A patient's page: their details (an edit form, with each field's problem beside it), their
/// live feed URLs, their itineraries.
async fn patient_page(c: &Console, v: &Visit, id: i32, status: StatusCode, extra: Value) -> Response {
    let p = or_page!(c.store.patient(id).await, v.lang);
    let (its, feeds) = (or_page!(c.store.itineraries_of(id).await, v.lang), or_page!(c.store.feed_tokens(id).await, v.lang));
    let sent = or_page!(c.store.patient_messages(id).await, v.lang);
    let outcomes = or_page!(c.store.patient_outcomes(id).await, v.lang);
    if let Err(e) = c.store.audit_read(v.session.coordinator_id, "outcomes", &id.to_string(), serde_json::json!({ "as": "page" })).await {
        return store_error(v.lang, &e);
    }
    if let Err(e) = c.store.audit_read(v.session.coordinator_id, "patient", &id.to_string(), serde_json::json!({})).await {
        return store_error(v.lang, &e);
    }
    if let Err(e) =
        c.store.audit_read(v.session.coordinator_id, "patient_messages", &id.to_string(), serde_json::json!({ "count": sent.len() })).await
    {
        return store_error(v.lang, &e);
    }
    let zone = c.setup.clinic.zone;
    let at = |t: chrono::DateTime<Utc>| view::moment_zoned(v.lang, &itinerary_core::Zoned::new(t, zone));
    let line = minijinja::context! {
        linked => p.line_user_id.is_some(),
        since => p.line_linked_at.map(at),
    };
    let sent: Vec<Value> = sent
        .iter()
        .take(50)
        .map(|m| minijinja::context! { at => at(m.received_at), channel => m.channel.clone(), kind => m.kind.clone(), body => m.body.clone(), answer => m.answer.clone() })
        .collect();
    let english = v.lang == Lang::En;
    let occasions: Vec<Value> = outcomes
        .occasions
        .iter()
        .map(|o| {
            let a = &o.occasion.answers;
            let treatments = a.treatments.as_ref().map(|l| l.iter().map(|t| t.label(english)).collect::<Vec<_>>().join(", "));
            minijinja::context! {
                set => o.occasion.set,
                reference => o.occasion.reference.clone(),
                occasion => o.occasion.key.clone(),
                kind => format!("{:?}", o.occasion.kind).to_lowercase(),
                at => view::moment_zoned(v.lang, &itinerary_core::Zoned::new(o.occasion.at, o.occasion.zone)),
                answered => o.answered,
                itch => a.itch, sleep => a.sleep, steroid_days => a.steroid_days, impression => a.impression,
                treatments => treatments,
                other => a.treatment_other.clone(),
                summary => if english { o.summary_en.clone() } else { o.summary_ja.clone() },
            }
        })
        .collect();
    let decisions: Vec<Value> = outcomes
        .reevaluations
        .iter()
        .map(|r| {
            minijinja::context! {
                itinerary_id => r.itinerary_id, reference => r.reference.clone(), decision => r.decision.clone(), note => r.note.clone(),
                at => at(r.decided_at), draft => r.draft.is_some(), booked => r.booked_itinerary_id,
            }
        })
        .collect();
    let chartable = outcomes.occasions.iter().any(|o| o.answered) || !outcomes.infusions.is_empty();
    let its: Vec<Value> = its
        .into_iter()
        .map(|i| minijinja::context! { id => i.id, reference => i.reference, status => i.status, version => i.version, created => i.created_at.format("%Y-%m-%d").to_string() })
        .collect();
    let form = BTreeMap::from([
        ("name", p.name.clone()),
        ("email", p.email.clone()),
        ("birth_date", p.birth_date.to_string()),
        ("home_zone", p.home_zone.clone()),
        ("language", p.language.clone()),
        ("passport_expiry", p.passport_expiry.to_string()),
        ("invites", p.invites.as_str().to_owned()),
    ]);
    render(
        v.lang,
        status,
        "patient.html",
        Some(v),
        // What the caller gives (a form sent back with its errors) comes first: the left wins.
        minijinja::context! {
            ..extra,
            ..minijinja::context! {
                patient => Value::from(minijinja::value::Serde(&p)),
                itineraries => its,
                feeds => Value::from(minijinja::value::Serde(&feeds)),
                line => line,
                sent => sent,
                occasions => occasions,
                decisions => decisions,
                chartable => chartable,
                form => form,
                errors => BTreeMap::<String, String>::new(),
            }
        },
    )
}

pub(crate) async fn update_patient(
    State(c): State<Console>,
    Extension(v): Extension<Visit>,
    Path(id): Path<i32>,
    Form(f): Form<PatientForm>,
) -> Response {
    if let Some(refused) = forged(&v, f.csrf.as_deref()) {
        return refused;
    }
    let old = or_page!(c.store.patient(id).await, v.lang);
    let input = PatientInput {
        name: f.name.clone(),
        email: f.email.clone(),
        birth_date: f.birth_date.clone(),
        home_zone: Some(f.home_zone.clone()).filter(|z| !z.trim().is_empty()),
        language: Some(f.language.clone()).filter(|l| !l.trim().is_empty()),
        passport_expiry: f.passport_expiry.clone(),
        // Set by LINE's account link, not typed here.
        line_user_id: old.line_user_id.clone(),
        invites: Some(f.invites.clone()).filter(|i| !i.trim().is_empty()),
    };
    let now = or_page!(c.clock.now().await, v.lang);
    match c.store.update_patient(v.session.coordinator_id, &c.setup, id, &input, now).await {
        Ok(_) => Redirect::to(&format!("/console/patients/{id}")).into_response(),
        Err(InputError::Invalid(invalid)) => {
            let form = BTreeMap::from([
                ("name", f.name),
                ("email", f.email),
                ("birth_date", f.birth_date),
                ("home_zone", f.home_zone),
                ("language", f.language),
                ("passport_expiry", f.passport_expiry),
                ("invites", f.invites),
            ]);
            patient_page(
                &c,
                &v,
                id,
                StatusCode::UNPROCESSABLE_ENTITY,
                minijinja::context! { form => form, errors => field_errors(&invalid.errors) },
            )
            .await
        }
        Err(InputError::Store(e)) => store_error(v.lang, &e),
    }
}

/// A new feed URL for the patient, shown this once; every earlier one stops working.
pub(crate) async fn rotate_feed(
    State(c): State<Console>,
    Extension(v): Extension<Visit>,
    Path(id): Path<i32>,
    Form(f): Form<CsrfOnly>,
) -> Response {
    if let Some(refused) = forged(&v, f.csrf.as_deref()) {
        return refused;
    }
    match c.store.rotate_feed(v.session.coordinator_id, id).await {
        Ok(secret) => {
            let url = format!("{}/feed/{secret}", c.public_url);
            patient_page(&c, &v, id, StatusCode::OK, minijinja::context! { new_feed_url => url }).await
        }
        Err(e) => store_error(v.lang, &e),
    }
}

pub(crate) async fn unlink_line(
    State(c): State<Console>,
    Extension(v): Extension<Visit>,
    Path(id): Path<i32>,
    Form(f): Form<CsrfOnly>,
) -> Response {
    if let Some(refused) = forged(&v, f.csrf.as_deref()) {
        return refused;
    }
    match c.store.unlink_line(v.session.coordinator_id, id, Utc::now()).await {
        Ok(_) => Redirect::to(&format!("/console/patients/{id}")).into_response(),
        Err(e) => store_error(v.lang, &e),
    }
}

pub(crate) async fn revoke_feed(
    State(c): State<Console>,
    Extension(v): Extension<Visit>,
    Path(id): Path<i32>,
    Form(f): Form<CsrfOnly>,
) -> Response {
    if let Some(refused) = forged(&v, f.csrf.as_deref()) {
        return refused;
    }
    match c.store.revoke_feed(v.session.coordinator_id, id).await {
        Ok(()) => Redirect::to(&format!("/console/patients/{id}")).into_response(),
        Err(e) => store_error(v.lang, &e),
    }
}

// ---- planning a trip

/// The airports offered as you type: those patients use (named in Japanese in the airport
/// table) and the hubs they connect through.
fn airports(c: &Console) -> Vec<Value> {
    ["NRT", "HND", "KIX", "ITM", "NGO", "CTS", "FUK", "OKA", "KUL", "PEN", "BKI", "SIN", "TPE", "HKG", "ICN", "BKK", "LAX", "SFO"]
        .iter()
        .filter_map(|code| c.setup.airports.get(code))
        .map(|a| minijinja::context! { iata => a.iata.clone(), name => a.place().get(itinerary_core::request::Language::En).to_owned(), name_ja => a.place().ja })
        .collect()
}

/// The plan form's fields by their request names (`protocol`, `trips[0].outbound.flight`).
type Fields = BTreeMap<String, String>;

fn protocols(c: &Console) -> Vec<Value> {
    c.setup
        .protocols
        .iter()
        .map(|p| minijinja::context! { id => p.id.clone(), infusions => p.infusions, intervals => p.allowed_interval_days.clone(), interval => p.interval_days })
        .collect()
}

/// The plan form (and its preview or refusal) for a new trip of `patient`, or for changing
/// itinerary `changing`.
#[allow(clippy::too_many_arguments)]
fn plan_page(
    c: &Console,
    v: &Visit,
    status: StatusCode,
    patient: &itinerary_store::PatientView,
    changing: Option<&itinerary_store::ItineraryView>,
    fields: &Fields,
    extra: Value,
) -> Response {
    let (action_url, changing) = match changing {
        Some(it) => {
            (format!("/console/itineraries/{}/change", it.id), Some(minijinja::context! { id => it.id, reference => it.reference.clone() }))
        }
        None => (format!("/console/patients/{}/plan", patient.id), None),
    };
    let mut base = minijinja::context! {
        patient => Value::from(minijinja::value::Serde(patient)),
        action_url => action_url,
        f => fields,
        protocols => protocols(c),
        airports => airports(c),
        trips => [0, 1, 2],
        legs => LEGS,
    };
    if let Some(changing) = changing {
        base = minijinja::context! { changing => changing, ..base };
    }
    render(v.lang, status, "plan.html", Some(v), minijinja::context! { ..base, ..extra })
}

#[derive(Deserialize)]
pub(crate) struct PlanQuery {
    /// The set whose proposed second set this form starts from.
    #[serde(default)]
    draft: Option<i32>,
}

pub(crate) async fn plan_form(
    State(c): State<Console>,
    Extension(v): Extension<Visit>,
    Path(id): Path<i32>,
    Query(q): Query<PlanQuery>,
) -> Response {
    let p = or_page!(c.store.patient(id).await, v.lang);
    let mut fields = Fields::from([("protocol".to_owned(), "single-infusion".to_owned())]);
    if let Some(set) = q.draft {
        let outcomes = or_page!(c.store.patient_outcomes(id).await, v.lang);
        match outcomes.reevaluations.into_iter().find(|r| r.itinerary_id == set).and_then(|r| r.draft) {
            Some(draft) => fields = fields_of(&draft),
            None => return error_page(v.lang, StatusCode::NOT_FOUND, "draft_none"),
        }
    }
    plan_page(&c, &v, StatusCode::OK, &p, None, &fields, minijinja::context! {})
}

/// Flights per direction the form offers: as many as a request may have, so that a change made
/// here keeps every flight of one booked through the API.
const LEGS: usize = itinerary_core::request::MAX_LEGS;

/// A flight's fields on the form: `trips[0].outbound` for the first flight of a direction (the
/// name the request's problems use when it is the only one), `trips[0].outbound[1]` for the
/// next.
fn leg_field(trip: usize, dir: &str, leg: usize) -> String {
    if leg == 0 { format!("trips[{trip}].{dir}") } else { format!("trips[{trip}].{dir}[{leg}]") }
}

/// The request a plan form describes. Trips whose fields are all empty are left out.
fn request_of(patient_id: i32, f: &Fields) -> NewItinerary {
    let get = |k: &str| f.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let mut trips = Vec::new();
    for i in 0..3 {
        let leg = |dir: &str, j: usize| {
            let name = leg_field(i, dir, j);
            RawFlight {
                flight: get(&format!("{name}.flight")),
                from: get(&format!("{name}.from")),
                depart: get(&format!("{name}.depart")).replace('T', " "),
                to: get(&format!("{name}.to")),
                arrive: get(&format!("{name}.arrive")).replace('T', " "),
            }
        };
        // The first flight of each direction always; connections when any of their fields is filled.
        let legs = |dir: &str| {
            Legs(
                (0..LEGS).map(|j| leg(dir, j)).enumerate().filter(|(j, l)| *j == 0 || *l != RawFlight::default()).map(|(_, l)| l).collect(),
            )
        };
        let trip = RawTrip { outbound: legs("outbound"), return_flight: legs("return") };
        let empty = trip == RawTrip::default();
        if !empty || i == 0 {
            trips.push(trip);
        }
    }
    NewItinerary {
        patient_id,
        protocol: get("protocol"),
        interval_days: get("interval_days").parse().ok(),
        trip_mode: Some(get("trip_mode")).filter(|m| !m.is_empty()),
        trips,
        preferred_dates: Vec::new(),
        escort: None,
    }
}

pub(crate) async fn plan(
    State(c): State<Console>,
    Extension(v): Extension<Visit>,
    Path(id): Path<i32>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let fields: Fields = form.into_iter().collect();
    if let Some(refused) = forged(&v, fields.get("csrf").map(String::as_str)) {
        return refused;
    }
    let p = or_page!(c.store.patient(id).await, v.lang);
    let req = request_of(id, &fields);
    let now = or_page!(c.clock.now().await, v.lang);
    let book = fields.get("action").is_some_and(|a| a == "book");
    // Booked (the itinerary's id), or previewed (the plan).
    let key = form_key(&v, fields.get("once").map(String::as_str), &format!("/console/patients/{id}/plan"), &req);
    if book && let Some(done) = sent_before(&c, &v, key.as_ref(), None, "itineraries").await {
        return done;
    }
    let outcome: Result<Result<i32, Box<itinerary_core::Plan>>, BookError> = if book {
        c.store.create_itinerary(v.session.coordinator_id, &c.setup, &req, now, key.clone()).await.map(|it| Ok(it.id))
    } else {
        c.store.preview_itinerary(&c.setup, &req, now).await.map(|p| Err(Box::new(p)))
    };
    if let Err(BookError::Store(e)) = &outcome
        && let Some(done) = sent_before(&c, &v, key.as_ref(), Some(e), "itineraries").await
    {
        return done;
    }
    // Everything but the token, the form's key and the button, for the form and the preview's
    // hidden copy.
    let kept: Fields = fields.into_iter().filter(|(k, _)| k != "csrf" && k != "action" && k != "once").collect();
    let page = |status, extra| plan_page(&c, &v, status, &p, None, &kept, extra);
    match outcome {
        Ok(Ok(itinerary)) => Redirect::to(&format!("/console/itineraries/{itinerary}")).into_response(),
        Ok(Err(plan)) => {
            let shown = view::plan_view(v.lang, &plan, None);
            page(StatusCode::OK, minijinja::context! { preview => Value::from(minijinja::value::Serde(&shown)) })
        }
        Err(e) => refused(v.lang, e, &kept, page),
    }
}

/// The form again with why the request was refused: each field's problem beside it, the
/// planner's reasons above it (with the fields to change marked), or what another booking took.
fn refused(lang: Lang, e: BookError, fields: &Fields, page: impl Fn(StatusCode, Value) -> Response) -> Response {
    match e {
        BookError::Invalid(invalid) => {
            page(StatusCode::UNPROCESSABLE_ENTITY, minijinja::context! { errors => field_errors(&invalid.errors) })
        }
        BookError::Infeasible(inf) => {
            let reasons = view::reasons(lang, &inf);
            // A reason names a field or a group of them (`trips[0]`, `trips`): every input of it
            // is marked, and described by the reasons above the form.
            let mut errors: BTreeMap<String, String> = BTreeMap::new();
            for r in &reasons {
                let Some(f) = &r.field else { continue };
                let within = |name: &str| name == f || name.starts_with(&format!("{f}.")) || name.starts_with(&format!("{f}["));
                for name in fields.keys().filter(|n| within(n)) {
                    errors.entry(name.clone()).or_default();
                }
            }
            let notes: Vec<String> = inf.warnings.iter().map(|w| w.text.get(view::language(lang)).to_owned()).collect();
            page(
                StatusCode::UNPROCESSABLE_ENTITY,
                minijinja::context! { reasons => Value::from(minijinja::value::Serde(&reasons)), errors => errors, notes => notes },
            )
        }
        BookError::Conflict(inf) => {
            let reasons = view::reasons(lang, &inf);
            page(StatusCode::CONFLICT, minijinja::context! { reasons => Value::from(minijinja::value::Serde(&reasons)), taken => true })
        }
        BookError::Cancelled(_) => error_page(lang, StatusCode::CONFLICT, "error_cancelled"),
        BookError::Store(e) => store_error(lang, &e),
    }
}

/// The plan form's fields for a stored request.
fn fields_of(req: &NewItinerary) -> Fields {
    let mut f = Fields::from([("protocol".to_owned(), req.protocol.clone())]);
    if let Some(d) = req.interval_days {
        f.insert("interval_days".into(), d.to_string());
    }
    if let Some(m) = &req.trip_mode {
        f.insert("trip_mode".into(), m.clone());
    }
    for (i, t) in req.trips.iter().enumerate() {
        for (dir, legs) in [("outbound", &t.outbound), ("return", &t.return_flight)] {
            for (j, leg) in legs.0.iter().enumerate() {
                for (k, v) in
                    [("flight", &leg.flight), ("from", &leg.from), ("depart", &leg.depart), ("to", &leg.to), ("arrive", &leg.arrive)]
                {
                    f.insert(format!("{}.{k}", leg_field(i, dir, j)), v.clone());
                }
            }
        }
    }
    f
}

pub(crate) async fn change_form(State(c): State<Console>, Extension(v): Extension<Visit>, Path(id): Path<i32>) -> Response {
    let (it, req) = (or_page!(c.store.itinerary(id).await, v.lang), or_page!(c.store.itinerary_request(id).await, v.lang));
    if it.status != "active" {
        return error_page(v.lang, StatusCode::CONFLICT, "error_cancelled");
    }
    let p = or_page!(c.store.patient(it.patient_id).await, v.lang);
    plan_page(&c, &v, StatusCode::OK, &p, Some(&it), &fields_of(&req), minijinja::context! {})
}

pub(crate) async fn change(
    State(c): State<Console>,
    Extension(v): Extension<Visit>,
    Path(id): Path<i32>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let fields: Fields = form.into_iter().collect();
    if let Some(refused) = forged(&v, fields.get("csrf").map(String::as_str)) {
        return refused;
    }
    let it = or_page!(c.store.itinerary(id).await, v.lang);
    let p = or_page!(c.store.patient(it.patient_id).await, v.lang);
    let req = request_of(it.patient_id, &fields);
    let now = or_page!(c.clock.now().await, v.lang);
    let kept: Fields =
        fields.iter().filter(|(k, _)| *k != "csrf" && *k != "action" && *k != "once").map(|(k, v)| (k.clone(), v.clone())).collect();
    let page = |status, extra| plan_page(&c, &v, status, &p, Some(&it), &kept, extra);
    if fields.get("action").is_some_and(|a| a == "change") {
        let key = form_key(&v, fields.get("once").map(String::as_str), &format!("/console/itineraries/{id}/change"), &req);
        if let Some(done) = sent_before(&c, &v, key.as_ref(), None, "itineraries").await {
            return done;
        }
        return match c.store.change_itinerary(v.session.coordinator_id, &c.setup, id, &req, now, key.clone()).await {
            Ok(_) => Redirect::to(&format!("/console/itineraries/{id}")).into_response(),
            Err(BookError::Store(e)) if matches!(e, StoreError::Answered(_) | StoreError::KeyInUse) => {
                sent_before(&c, &v, key.as_ref(), Some(&e), "itineraries").await.unwrap_or_else(|| store_error(v.lang, &e))
            }
            Err(e) => refused(v.lang, e, &kept, page),
        };
    }
    match c.store.preview_change(&c.setup, id, &req, now).await {
        Ok(preview) => {
            let shown = view::plan_view(v.lang, &preview.plan, None);
            let sends = view::calendar_sends(v.lang, &preview);
            let moved = view::reminders_moved(v.lang, &preview);
            page(
                StatusCode::OK,
                minijinja::context! {
                    preview => Value::from(minijinja::value::Serde(&shown)),
                    sends => Value::from(minijinja::value::Serde(&sends)),
                    moved => Value::from(minijinja::value::Serde(&moved)),
                },
            )
        }
        Err(e) => refused(v.lang, e, &kept, page),
    }
}

// ---- an itinerary

pub(crate) async fn itinerary(State(c): State<Console>, Extension(v): Extension<Visit>, Path(id): Path<i32>) -> Response {
    let it = or_page!(c.store.itinerary(id).await, v.lang);
    let p = or_page!(c.store.patient(it.patient_id).await, v.lang);
    if let Err(e) = c.store.audit_read(v.session.coordinator_id, "itinerary", &id.to_string(), serde_json::json!({})).await {
        return store_error(v.lang, &e);
    }
    // What the invitees answered, by appointment (the plan's title, the escort's name).
    let l = view::language(v.lang);
    let answers: Vec<Value> = or_page!(c.store.appointment_answers(id).await, v.lang)
        .into_iter()
        .map(|a| {
            let title = it.plan.events.iter().find(|e| e.key == a.event).map_or_else(|| a.event.clone(), |e| e.title.get(l).to_owned());
            let who = match &a.escort_id {
                Some(e) => it.plan.escorts.iter().find(|x| &x.escort == e).map_or_else(|| e.clone(), |x| x.escort_name.clone()),
                None => p.name.clone(),
            };
            minijinja::context! { title => title, who => who, role => a.role, answer => a.answer, alert => a.alert,
            proposed => a.proposed_start, comment => a.comment }
        })
        .collect();
    // The current version's messages, and every earlier one that went out or failed.
    let shown: Vec<_> =
        it.messages.iter().filter(|m| m.version == it.version || m.status == "sent" || m.status == "failed").cloned().collect();
    let plan = view::plan_view(v.lang, &it.plan, Some(&shown));
    render(
        v.lang,
        StatusCode::OK,
        "itinerary.html",
        Some(&v),
        minijinja::context! { it => minijinja::context! { id => it.id, reference => it.reference, status => it.status, version => it.version }, patient => Value::from(minijinja::value::Serde(&p)), plan => Value::from(minijinja::value::Serde(&plan)), answers => answers },
    )
}

pub(crate) async fn cancel_preview(State(c): State<Console>, Extension(v): Extension<Visit>, Path(id): Path<i32>) -> Response {
    let it = or_page!(c.store.itinerary(id).await, v.lang);
    let p = or_page!(c.store.patient(it.patient_id).await, v.lang);
    let now = or_page!(c.clock.now().await, v.lang);
    let l = view::language(v.lang);
    let (cz, pz) = (it.plan.clinic_zone, it.plan.patient_zone);
    // What the patient and each escort will receive: a cancellation of each appointment not
    // yet begun (the rest are over), and the patient one letter about the whole itinerary.
    let patient_gets: Vec<Value> = it
        .plan
        .events
        .iter()
        .filter(|e| e.not_begun(cz, now))
        .map(|e| {
            let when = match &e.when {
                When::Timed { start, .. } => view::both(v.lang, start, cz, pz),
                When::Dates { .. } => view::Both::default(),
            };
            minijinja::context! { title => e.title.get(l).to_owned(), when => Value::from(minijinja::value::Serde(&when)) }
        })
        .collect();
    let escorts_get: Vec<Value> = it
        .plan
        .escorts
        .iter()
        .filter(|a| a.start.utc() > now)
        .map(|a| minijinja::context! { escort => a.escort_name.clone(), duty => a.duty.get(l).to_owned(), at => moment(v.lang, &a.start.in_zone(cz)) })
        .collect();
    let pending =
        it.messages.iter().filter(|m| m.status == "pending" && m.version == it.version && !m.kind.starts_with("calendar_")).count();
    render(
        v.lang,
        StatusCode::OK,
        "cancel.html",
        Some(&v),
        minijinja::context! {
            it => minijinja::context! { id => it.id, reference => it.reference, status => it.status },
            patient => Value::from(minijinja::value::Serde(&p)),
            patient_gets => patient_gets,
            escorts_get => escorts_get,
            reminders_stopped => pending,
            same_zone => cz == pz,
        },
    )
}

pub(crate) async fn cancel(
    State(c): State<Console>,
    Extension(v): Extension<Visit>,
    Path(id): Path<i32>,
    Form(f): Form<CsrfOnly>,
) -> Response {
    if let Some(refused) = forged(&v, f.csrf.as_deref()) {
        return refused;
    }
    let now = or_page!(c.clock.now().await, v.lang);
    match c.store.cancel_itinerary(v.session.coordinator_id, &c.setup, id, now, None).await {
        Ok(_) | Err(BookError::Cancelled(_)) => Redirect::to(&format!("/console/itineraries/{id}")).into_response(),
        Err(BookError::Store(e)) => store_error(v.lang, &e),
        Err(e) => {
            tracing::warn!(error = %e, "cancelling from the console");
            error_page(v.lang, StatusCode::CONFLICT, "error_cancelled")
        }
    }
}

// ---- the season board

#[derive(Deserialize)]
pub(crate) struct BoardQuery {
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    days: Option<i64>,
}

/// Escorts by day with their duties, chair and lab use at their busiest, holidays: capacity at
/// a glance before promising dates. Days as the clinic counts them.
pub(crate) async fn board(State(c): State<Console>, Extension(v): Extension<Visit>, Query(q): Query<BoardQuery>) -> Response {
    use chrono::Datelike;
    let lang = v.lang;
    let zone = c.setup.clinic.zone;
    let now = or_page!(c.clock.now().await, lang);
    let today = now.with_timezone(&zone).date_naive();
    let monday = today - Duration::days(i64::from(today.weekday().num_days_from_monday()));
    let from = q.from.as_deref().and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()).unwrap_or(monday);
    let days = q.days.unwrap_or(14).clamp(7, 35);
    let dates: Vec<NaiveDate> = (0..days).map(|k| from + Duration::days(k)).collect();
    let start = at_local(from, NaiveTime::MIN, zone).utc();
    let end = at_local(from + Duration::days(days), NaiveTime::MIN, zone).utc();
    let (bookings, escorts) = (or_page!(c.store.bookings_in(start, end).await, lang), or_page!(c.store.escorts().await, lang));
    let day_of = |t: chrono::DateTime<Utc>| t.with_timezone(&zone).date_naive();
    let hm = |t: chrono::DateTime<Utc>| t.with_timezone(&zone).format("%H:%M").to_string();
    // Escort → day → duties; a duty shared by patients on one flight is one bar.
    let mut rows = Vec::new();
    let mut ids: Vec<String> = escorts.iter().map(|e| e.id.clone()).collect();
    for b in bookings.iter().filter(|b| b.kind == "escort") {
        if !ids.contains(&b.resource) {
            ids.push(b.resource.clone()); // deactivated, with duties still booked
        }
    }
    for id in ids {
        let name = escorts.iter().find(|e| e.id == id).map_or_else(|| id.clone(), |e| e.name.clone());
        let cells: Vec<Value> = dates
            .iter()
            .map(|d| {
                let mut bars: Vec<(String, String, Option<String>, Vec<i32>)> = Vec::new();
                for b in bookings.iter().filter(|b| b.kind == "escort" && b.resource == id && day_of(b.starts_at) == *d) {
                    let (s, e) = (hm(b.starts_at), hm(b.ends_at));
                    match bars.iter_mut().find(|x| x.0 == s && x.1 == e && x.2.is_some() && x.2 == b.shared) {
                        Some(bar) => bar.3.push(b.itinerary_id),
                        None => bars.push((s, e, b.shared.clone(), vec![b.itinerary_id])),
                    }
                }
                let bars: Vec<Value> = bars
                    .into_iter()
                    .map(|(s, e, _, its)| minijinja::context! { from => s, until => e, patients => its.len(), itinerary => its.first().copied() })
                    .collect();
                minijinja::context! { bars => bars }
            })
            .collect();
        rows.push(minijinja::context! { escort => name, cells => cells });
    }
    // The most chairs (lab draws) held at once on each day, against the capacity.
    let peak = |kind: &str, d: NaiveDate| {
        let held: Vec<&itinerary_store::entity::booking::Model> =
            bookings.iter().filter(|b| b.kind == kind && day_of(b.starts_at) == d).collect();
        held.iter().map(|b| held.iter().filter(|o| o.starts_at <= b.starts_at && b.starts_at < o.ends_at).count()).max().unwrap_or(0)
    };
    let (chairs, labs) = (c.setup.resources.chairs, c.setup.resources.lab_draws_per_slot);
    let resources = or_page!(c.store.resources().await, lang);
    let capacity = |id: &str, default: u16| resources.iter().find(|r| r.id == id).map_or(i64::from(default), |r| i64::from(r.capacity));
    let (chairs, labs) = (capacity("chairs", chairs), capacity("lab_draws_per_slot", labs));
    // Slot by slot through the clinic's hours: how many are held, runs of equal use merged
    // (`09:00–12:00 2/4`), so a coordinator sees which hours are left.
    let step = Duration::minutes(i64::from(c.setup.rules.slot_minutes.max(1)));
    let spans = |kind: &str, d: NaiveDate, cap: i64| -> Vec<Value> {
        let mut out: Vec<(chrono::DateTime<Utc>, chrono::DateTime<Utc>, usize)> = Vec::new();
        let (mut t, close) = (at_local(d, c.setup.clinic.opens, zone).utc(), at_local(d, c.setup.clinic.closes, zone).utc());
        while t < close {
            let n = bookings.iter().filter(|b| b.kind == kind && b.starts_at < t + step && t < b.ends_at).count();
            match out.last_mut() {
                Some(last) if last.2 == n && last.1 == t => last.1 = t + step,
                _ => out.push((t, t + step, n)),
            }
            t += step;
        }
        out.into_iter()
            .filter(|s| s.2 > 0)
            .map(|(from, until, n)| minijinja::context! { from => hm(from), until => hm(until), used => n, full => i64::try_from(n).unwrap_or(0) >= cap })
            .collect()
    };
    let use_row = |kind: &str, cap: i64| -> Vec<Value> {
        dates
            .iter()
            .map(|d| {
                let n = peak(kind, *d);
                minijinja::context! { used => n, capacity => cap, full => i64::try_from(n).unwrap_or(0) >= cap, spans => spans(kind, *d, cap) }
            })
            .collect()
    };
    let heads: Vec<Value> = dates
        .iter()
        .map(|d| {
            let holidays: Vec<Value> = c
                .setup
                .holidays
                .between(&c.setup.clinic.holiday_regions, *d, *d)
                .map(|h| minijinja::context! { name => h.name_in(lang == Lang::Ja), tentative => h.tentative })
                .collect();
            let label = match lang {
                Lang::Ja => format!("{}/{}({})", d.month(), d.day(), itinerary_core::time::weekday_ja(d.weekday())),
                Lang::En => d.format("%a %-d %b").to_string(),
            };
            minijinja::context! { label => label, closed => !c.setup.is_clinic_day(*d), today => *d == today, holidays => holidays }
        })
        .collect();
    let label = |d: NaiveDate| d.format("%Y-%m-%d").to_string();
    render(
        lang,
        StatusCode::OK,
        "board.html",
        Some(&v),
        minijinja::context! {
            heads => heads,
            rows => rows,
            chairs => use_row("chair", chairs),
            labs => use_row("lab", labs),
            days => days,
            previous => label(from - Duration::days(days)),
            next => label(from + Duration::days(days)),
            first => match lang { Lang::Ja => date_ja(from, None), Lang::En => date_en(from, None) },
            clinic_zone => view::zone_label(lang, &itinerary_core::Zoned::new(now, zone)),
        },
    )
}

pub(crate) async fn resend(
    State(c): State<Console>,
    Extension(v): Extension<Visit>,
    Path((id, message)): Path<(i32, i32)>,
    Form(f): Form<CsrfOnly>,
) -> Response {
    if let Some(refused) = forged(&v, f.csrf.as_deref()) {
        return refused;
    }
    let now = or_page!(c.clock.now().await, v.lang);
    match c.store.resend_message(v.session.coordinator_id, id, message, now).await {
        Ok(()) => Redirect::to(&format!("/console/itineraries/{id}")).into_response(),
        Err(itinerary_store::ResendError::Store(e)) => store_error(v.lang, &e),
        Err(e) => {
            let key = match e {
                itinerary_store::ResendError::Calendar(_) => "error_resend_calendar",
                itinerary_store::ResendError::Begun(_) => "error_resend_begun",
                itinerary_store::ResendError::Cancelled => "error_cancelled",
                _ => "error_resend_not_failed",
            };
            error_page(v.lang, StatusCode::CONFLICT, key)
        }
    }
}

// ---- the audit log

#[derive(Deserialize)]
pub(crate) struct AuditQuery {
    #[serde(default)]
    entity: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    before: Option<i32>,
}

/// Who did what to which record, newest first, filtered by entity and action: ids only, never
/// the content (names, addresses and health data stay out of the log).
pub(crate) async fn audit(State(c): State<Console>, Extension(v): Extension<Visit>, Query(q): Query<AuditQuery>) -> Response {
    let (rows, people) = (or_page!(c.store.audit_log(q.before, 1000).await, v.lang), or_page!(c.store.coordinators().await, v.lang));
    let pick = |f: &Option<String>| f.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    let (entity, action) = (pick(&q.entity), pick(&q.action));
    let zone = c.setup.clinic.zone;
    let shown: Vec<Value> = rows
        .iter()
        .filter(|r| entity.as_ref().is_none_or(|e| &r.entity == e) && action.as_ref().is_none_or(|a| &r.action == a))
        .take(200)
        .map(|r| {
            let who = r.coordinator_id.and_then(|id| people.iter().find(|p| p.id == id)).map_or_else(|| "—".to_owned(), |p| p.name.clone());
            let at = itinerary_core::Zoned::new(r.at, zone);
            minijinja::context! {
                at => view::moment_zoned(v.lang, &at),
                who => who, action => r.action.clone(), entity => r.entity.clone(), id => r.entity_id.clone(),
                detail => r.detail.to_string(),
                link => match r.entity.as_str() { "itinerary" => format!("/console/itineraries/{}", r.entity_id), "patient" => format!("/console/patients/{}", r.entity_id), _ => String::new() },
            }
        })
        .collect();
    let older = rows.last().map(|r| r.id);
    render(
        v.lang,
        StatusCode::OK,
        "audit.html",
        Some(&v),
        minijinja::context! { rows => shown, entity => entity.unwrap_or_default(), action => action.unwrap_or_default(), older => older },
    )
}

/// The patient's outcomes chart (SVG), for the patient page's image; the read is audited.
pub(crate) async fn outcomes_chart(State(c): State<Console>, Extension(v): Extension<Visit>, Path(id): Path<i32>) -> Response {
    let outcomes = or_page!(c.store.patient_outcomes(id).await, v.lang);
    match outcomes.chart(v.lang == Lang::En) {
        Ok(svg) => {
            if let Err(e) =
                c.store.audit_read(v.session.coordinator_id, "outcomes", &id.to_string(), serde_json::json!({ "as": "svg" })).await
            {
                return store_error(v.lang, &e);
            }
            ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response()
        }
        Err(itinerary_outcomes::ChartError::Empty) => error_page(v.lang, StatusCode::NOT_FOUND, "outcomes_none_chart"),
        Err(e) => {
            tracing::error!(error = %e, "drawing an outcomes chart");
            error_page(v.lang, StatusCode::INTERNAL_SERVER_ERROR, "error_unavailable")
        }
    }
}

/// The patient's outcomes as CSV, to download; the read is audited.
pub(crate) async fn outcomes_csv(State(c): State<Console>, Extension(v): Extension<Visit>, Path(id): Path<i32>) -> Response {
    let outcomes = or_page!(c.store.patient_outcomes(id).await, v.lang);
    let Ok(text) = outcomes.csv() else {
        return error_page(v.lang, StatusCode::INTERNAL_SERVER_ERROR, "error_unavailable");
    };
    if let Err(e) = c.store.audit_read(v.session.coordinator_id, "outcomes", &id.to_string(), serde_json::json!({ "as": "csv" })).await {
        return store_error(v.lang, &e);
    }
    let disposition = format!("attachment; filename=\"patient-{id}-outcomes.csv\"");
    ([(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()), (header::CONTENT_DISPOSITION, disposition)], text).into_response()
}

/// Everything stored about the patient, to download for an access request; the read is audited.
pub(crate) async fn export(State(c): State<Console>, Extension(v): Extension<Visit>, Path(id): Path<i32>) -> Response {
    let data = or_page!(c.store.export_patient(id).await, v.lang);
    if let Err(e) = c.store.audit_read(v.session.coordinator_id, "export", &id.to_string(), serde_json::json!({})).await {
        return store_error(v.lang, &e);
    }
    let disposition = format!("attachment; filename=\"patient-{id}-export.json\"");
    let body = serde_json::to_string_pretty(&data).unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json".to_owned()), (header::CONTENT_DISPOSITION, disposition)], body).into_response()
}

#[derive(Deserialize)]
pub(crate) struct DecisionForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    itinerary: i32,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    note: String,
}

/// Records the decision at a set's re-evaluation, back to the patient page.
pub(crate) async fn decide(
    State(c): State<Console>,
    Extension(v): Extension<Visit>,
    Path(id): Path<i32>,
    Form(f): Form<DecisionForm>,
) -> Response {
    if let Some(r) = forged(&v, f.csrf.as_deref()) {
        return r;
    }
    // The set must be this patient's: the form names it by id.
    let set = or_page!(c.store.itinerary(f.itinerary).await, v.lang);
    if set.patient_id != id {
        return error_page(v.lang, StatusCode::NOT_FOUND, "error_not_found");
    }
    let now = or_page!(c.clock.now().await, v.lang);
    match c.store.decide_reevaluation(v.session.coordinator_id, f.itinerary, &f.decision, Some(&f.note), now).await {
        Ok(_) => Redirect::to(&format!("/console/patients/{id}#outcomes-h")).into_response(),
        Err(InputError::Invalid(e)) => {
            let errors = field_errors(&e.errors);
            patient_page(&c, &v, id, StatusCode::UNPROCESSABLE_ENTITY, minijinja::context! { decision_errors => errors }).await
        }
        Err(InputError::Store(e)) => store_error(v.lang, &e),
    }
}

#[derive(Deserialize)]
pub(crate) struct EraseForm {
    #[serde(default)]
    csrf: Option<String>,
    /// The patient's id typed again: an erasure cannot be undone.
    #[serde(default)]
    confirm: String,
}

/// Erases the patient (right to erasure), after the id is typed again.
pub(crate) async fn erase(
    State(c): State<Console>,
    Extension(v): Extension<Visit>,
    Path(id): Path<i32>,
    Form(f): Form<EraseForm>,
) -> Response {
    if let Some(r) = forged(&v, f.csrf.as_deref()) {
        return r;
    }
    if f.confirm.trim() != id.to_string() {
        return patient_page(&c, &v, id, StatusCode::UNPROCESSABLE_ENTITY, minijinja::context! { erase_error => "erase_confirm_wrong" })
            .await;
    }
    let now = or_page!(c.clock.now().await, v.lang);
    match itinerary_api::erasure::erase_patient(&c.store, c.outbox.as_deref(), v.session.coordinator_id, id, now).await {
        Ok(_) => Redirect::to("/console/patients?erased=1").into_response(),
        Err(itinerary_store::EraseError::Active { reference }) => {
            patient_page(
                &c,
                &v,
                id,
                StatusCode::CONFLICT,
                minijinja::context! { erase_error => "erase_active", erase_reference => reference },
            )
            .await
        }
        Err(itinerary_store::EraseError::Store(e)) => store_error(v.lang, &e),
    }
}

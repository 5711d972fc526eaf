//! `/questionnaire/{token}`: the page a patient answers the outcomes questionnaire on (issue
//! 17), on a phone, from the link in their reminder; no account, the link is the credential.
//! Each question has its own save button, and every save keeps all that is answered so far, so
//! nothing is lost when the train goes into a tunnel; answers can be corrected until the
//! appointment begins. The patient's language unless they switch; no script.
//!
//! A link that opens nothing counts against the address as a failed sign-in does (a guesser is
//! refused whichever door it tries). Nothing of the answers is logged.

use axum::extract::{Form, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use itinerary_core::Zoned;
use itinerary_outcomes::{Answers, FieldError, Measure, QUESTIONS, Treatment};
use itinerary_store::{Questionnaire, QuestionnaireLink};
use minijinja::Value;
use serde::Deserialize;

use crate::pages::render;
use crate::{Console, Lang, view};

#[derive(Deserialize)]
pub(crate) struct Shown {
    #[serde(default)]
    lang: Option<String>,
    /// The question just saved, to say so beside it.
    #[serde(default)]
    saved: Option<String>,
}

fn lang_of(asked: Option<&str>, patient: Option<&str>) -> Lang {
    match asked.or(patient) {
        Some("en") => Lang::En,
        _ => Lang::Ja,
    }
}

fn client(extensions: &axum::http::Extensions) -> std::net::IpAddr {
    itinerary_api::serve::client(extensions).map_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |a| a.ip())
}

/// A page saying `key` (a word) instead of the questionnaire.
fn notice(c: &Console, lang: Lang, status: StatusCode, key: &str) -> Response {
    let text = crate::words(lang).get(key).cloned().unwrap_or_default();
    render(
        lang,
        status,
        "questionnaire.html",
        None,
        minijinja::context! { notice => text, brand => c.setup.clinic.name.clone(), lang_href => format!("?lang={}", if lang == Lang::Ja { "en" } else { "ja" }) },
    )
}

/// The questionnaire with `q`'s answers (or, after a refused save, what was sent) and errors.
#[expect(clippy::too_many_arguments, reason = "what one page shows, each needed once")]
fn page(
    c: &Console,
    lang: Lang,
    status: StatusCode,
    token: &str,
    q: &Questionnaire,
    shown: &Answers,
    errors: &[FieldError],
    saved: Option<&str>,
) -> Response {
    let english = lang == Lang::En;
    let closes = view::moment_zoned(lang, &q.closes);
    let when = view::moment_zoned(lang, &Zoned::new(q.occasion.at, q.occasion.zone));
    let title = q.title.get(view::language(lang)).to_owned();
    let questions: Vec<Value> = QUESTIONS
        .iter()
        .map(|question| {
            let measure = Measure::ALL.into_iter().find(|m| m.field() == question.field);
            let (lo, hi) = measure.map_or((0, 0), Measure::range);
            let answer = measure.and_then(|m| m.of(shown));
            let chosen = shown.treatments.clone().unwrap_or_default();
            let choices: Vec<Value> = Treatment::ALL
                .iter()
                .map(|t| minijinja::context! { code => t.code(), label => t.label(english), checked => chosen.contains(t) })
                .collect();
            let anchors = if english { question.anchors_en } else { question.anchors_ja };
            let answered = match question.field {
                "treatments" => q.occasion.answers.treatments.is_some(),
                _ => measure.and_then(|m| m.of(&q.occasion.answers)).is_some(),
            };
            minijinja::context! {
                field => question.field,
                text => if english { question.en } else { question.ja },
                values => (lo..=hi).collect::<Vec<u8>>(),
                answer => answer,
                anchors => anchors.to_vec(),
                choices => choices,
                other => shown.treatment_other.clone().unwrap_or_default(),
                answered => answered,
                error => errors.iter().find(|e| e.field == question.field).map(|e| e.to_string()),
                other_error => errors.iter().find(|e| e.field == "treatment_other").map(|e| e.to_string()),
                just_saved => saved == Some(question.field),
            }
        })
        .collect();
    let other = if lang == Lang::Ja { "en" } else { "ja" };
    render(
        lang,
        status,
        "questionnaire.html",
        None,
        minijinja::context! {
            token => token,
            questions => questions,
            when => when,
            title => title,
            closes => closes,
            errors => !errors.is_empty(),
            brand => c.setup.clinic.name.clone(),
            lang_href => format!("?lang={other}"),
        },
    )
}

pub(crate) async fn form(
    State(c): State<Console>,
    Path(token): Path<String>,
    Query(s): Query<Shown>,
    extensions: axum::http::Extensions,
) -> Response {
    let asked = s.lang.as_deref();
    let who = client(&extensions);
    if c.failed.blocked(who).is_some() {
        return notice(&c, lang_of(asked, None), StatusCode::TOO_MANY_REQUESTS, "q_too_many");
    }
    let now = match c.clock.now().await {
        Ok(n) => n,
        Err(_) => return notice(&c, lang_of(asked, None), StatusCode::SERVICE_UNAVAILABLE, "q_unavailable"),
    };
    match c.store.questionnaire(&token, now).await {
        Ok(QuestionnaireLink::Open(q)) => {
            let lang = lang_of(asked, Some(&q.language));
            let mut res = page(&c, lang, StatusCode::OK, &token, &q, &q.occasion.answers, &[], s.saved.as_deref());
            if asked.is_some() {
                crate::remember_language(&mut res, lang);
            }
            res
        }
        Ok(link) => refused(&c, lang_of(asked, None), who, &link),
        Err(e) => {
            tracing::error!(error = %e, "opening a questionnaire");
            notice(&c, lang_of(asked, None), StatusCode::SERVICE_UNAVAILABLE, "q_unavailable")
        }
    }
}

fn refused(c: &Console, lang: Lang, who: std::net::IpAddr, link: &QuestionnaireLink) -> Response {
    match link {
        QuestionnaireLink::Unknown => {
            c.failed.failed(who);
            tracing::info!("questionnaire: a link that opens nothing");
            notice(c, lang, StatusCode::NOT_FOUND, "q_unknown")
        }
        QuestionnaireLink::Closed => notice(c, lang, StatusCode::GONE, "q_closed"),
        // Final for this occasion (no Retry-After): the clinic can take answers by other means.
        QuestionnaireLink::TooMany => {
            tracing::warn!("questionnaire: saves refused, the bound for one occasion reached");
            notice(c, lang, StatusCode::TOO_MANY_REQUESTS, "q_saves_exhausted")
        }
        QuestionnaireLink::Open(_) => notice(c, lang, StatusCode::INTERNAL_SERVER_ERROR, "q_unavailable"),
    }
}

pub(crate) async fn save(
    State(c): State<Console>,
    Path(token): Path<String>,
    extensions: axum::http::Extensions,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let asked = fields.iter().find(|(k, _)| k == "lang").map(|(_, v)| v.as_str()).filter(|l| matches!(*l, "ja" | "en")).map(str::to_owned);
    let saved_field = fields.iter().find(|(k, _)| k == "save").map(|(_, v)| v.clone());
    let who = client(&extensions);
    if c.failed.blocked(who).is_some() {
        return notice(&c, lang_of(asked.as_deref(), None), StatusCode::TOO_MANY_REQUESTS, "q_too_many");
    }
    let now = match c.clock.now().await {
        Ok(n) => n,
        Err(_) => return notice(&c, lang_of(asked.as_deref(), None), StatusCode::SERVICE_UNAVAILABLE, "q_unavailable"),
    };
    let given = Answers::from_fields(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let result = match &given {
        Ok(a) => c.store.save_questionnaire(&token, a, now).await,
        // Nothing is saved from a form with a bad answer: shown again with each problem.
        Err(_) => c.store.questionnaire(&token, now).await,
    };
    match (result, given) {
        (Ok(QuestionnaireLink::Open(q)), Ok(_)) => {
            tracing::info!(occasion = %q.occasion.key, "questionnaire: answers saved");
            let lang = lang_of(asked.as_deref(), Some(&q.language));
            // Back to the page, at the question after the one saved.
            let at = saved_field.as_deref().and_then(|f| QUESTIONS.iter().position(|x| x.field == f));
            let next = at.and_then(|i| QUESTIONS.get(i + 1)).map_or("done".to_owned(), |x| format!("q-{}", x.field));
            let saved = saved_field.as_deref().filter(|f| QUESTIONS.iter().any(|x| x.field == *f)).unwrap_or("all");
            let to = format!("/questionnaire/{token}?lang={}&saved={saved}#{next}", lang.code());
            (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
        }
        (Ok(QuestionnaireLink::Open(q)), Err(errors)) => {
            let lang = lang_of(asked.as_deref(), Some(&q.language));
            // What was sent, as far as it reads, over what is stored: the patient corrects one field.
            let valid: Vec<(&str, &str)> =
                fields.iter().filter(|(k, _)| !errors.iter().any(|e| &e.field == k)).map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let shown = q.occasion.answers.merged(&Answers::from_fields(valid).unwrap_or_default());
            page(&c, lang, StatusCode::UNPROCESSABLE_ENTITY, &token, &q, &shown, &errors, None)
        }
        (Ok(link), _) => refused(&c, lang_of(asked.as_deref(), None), who, &link),
        (Err(e), _) => {
            tracing::error!(error = %e, "saving a questionnaire");
            notice(&c, lang_of(asked.as_deref(), None), StatusCode::SERVICE_UNAVAILABLE, "q_unavailable")
        }
    }
}

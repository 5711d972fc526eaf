//! The routes. Everything but `/health`, `/openapi.json` and the feed needs a coordinator's
//! bearer token.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chrono::{DateTime, NaiveDate, Utc};
use itinerary_store::{EscortInput, IdempotencyKey, NewItinerary, PatientInput};
use serde::Deserialize;
use serde_json::json;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::{ApiError, AppState, BODY_LIMIT, idempotency, openapi};

/// The coordinator a request was authenticated as.
#[derive(Clone, Copy, Debug)]
struct Coordinator(i32);

type ApiResult<T> = Result<T, ApiError>;

pub fn router(state: AppState) -> Router {
    let coordinators = Router::new()
        .route("/patients", post(create_patient).get(list_patients))
        .route("/patients/{id}", get(get_patient).put(update_patient).delete(erase_patient))
        .route("/patients/{id}/outcomes", get(patient_outcomes))
        .route("/patients/{id}/outcomes.csv", get(patient_outcomes_csv))
        .route("/patients/{id}/outcomes.svg", get(patient_outcomes_chart))
        .route("/patients/{id}/export", get(export_patient))
        .route("/patients/{id}/feed", get(list_feeds).post(rotate_feed).delete(revoke_feed))
        .route("/patients/{id}/messages", get(patient_messages))
        .route("/patients/{id}/line", axum::routing::delete(unlink_line))
        .route("/escorts", get(list_escorts))
        .route("/escorts/{id}", get(get_escort).put(put_escort).delete(deactivate_escort))
        .route("/resources", get(list_resources))
        .route("/resources/{id}", get(get_resource).put(put_resource))
        .route("/itineraries", post(create_itinerary))
        .route("/itineraries/preview", post(preview_itinerary))
        .route("/itineraries/{id}", get(get_itinerary).put(change_itinerary))
        .route("/itineraries/{id}/cancel", post(cancel_itinerary))
        .route("/itineraries/{id}/answers", get(itinerary_answers))
        .route("/itineraries/{id}/reevaluation", axum::routing::put(decide_reevaluation))
        .route("/itineraries/{id}/messages/{message_id}/resend", post(resend_message))
        .route("/itineraries/{id}/calendar.ics", get(itinerary_ics))
        .route("/trips", get(trips))
        .route("/audit", get(audit))
        .route("/messages/failed", get(failed_messages))
        .route("/clock", get(get_clock).put(set_clock))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/health", get(health))
        .route("/openapi.json", get(|| async { Json(openapi::document()) }))
        .route("/feed/{token}", get(feed))
        .route("/line/webhook", post(crate::line::webhook).layer(DefaultBodyLimit::max(crate::line::LINE_BODY_LIMIT)))
        .route("/inbound/email", post(inbound_email).layer(DefaultBodyLimit::max(itinerary_inbound::MAX_BYTES)))
        .merge(coordinators)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no_route", "no such route; see /openapi.json") })
        .layer(middleware::from_fn(refuse_control_characters_in_path))
        // A bug that panics in a handler answers 500 in the API's shape and is logged, instead
        // of a dropped connection that clients (and mail services) would retry blindly.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
            tracing::error!("a request handler panicked; answered 500");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the service failed on this request (a bug, logged); read the resource to see whether it changed",
            )
            .into_response()
        }))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // Answers carry personal and health data: no cache may keep them, and no browser may
        // read a calendar or JSON as anything else.
        .layer(SetResponseHeaderLayer::if_not_present(header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .with_state(state)
}

/// A path whose decoded form holds a control character (`/escorts/%00`): no id has one, and
/// PostgreSQL refuses a NUL in text outright (a 503 from the database before this), so it is
/// 422 naming the path, the same on both databases. Bodies are checked field by field where
/// they are parsed.
async fn refuse_control_characters_in_path(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                decoded.push(u8::try_from(h * 16 + l).unwrap_or(0));
                i += 3;
            }
            (b, _, _) => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    let text = String::from_utf8_lossy(&decoded);
    if text.chars().any(char::is_control) {
        let shown: String = text.chars().map(|c| if c.is_control() { '\u{fffd}' } else { c }).collect();
        return ApiError::field(StatusCode::UNPROCESSABLE_ENTITY, "invalid_path", "path", &shown, "contains a control character")
            .into_response();
    }
    next.run(req).await
}

async fn authenticate(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let client = client_ip(&req);
    if let Some(wait) = s.failed.blocked(client) {
        return too_many_failures(wait);
    }
    let token =
        req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
    let Some(token) = token else {
        s.failed.failed(client);
        return ApiError::unauthorized().into_response();
    };
    match s.store.coordinator_for(token).await {
        Ok(Some(id)) => {
            req.extensions_mut().insert(Coordinator(id));
            next.run(req).await
        }
        Ok(None) => {
            s.failed.failed(client);
            ApiError::unauthorized().into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The client's address as the server accepted it (unspecified when the router is driven
/// without the server, which then counts all failures together).
fn client_ip(req: &Request) -> std::net::IpAddr {
    crate::serve::client(req.extensions()).map_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |a| a.ip())
}

fn too_many_failures(wait: std::time::Duration) -> Response {
    let secs = wait.as_secs() + 1;
    let mut r = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_failures",
        format!("too many failed attempts from this address; try again in {secs} s"),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// 200 when the database answers and this process's worker (if it runs one) delivers; 503
/// with the reason otherwise, for a load balancer or a supervisor to act on.
async fn health(State(s): State<AppState>) -> Response {
    let state = s.store.database_state().await;
    // A full pool works (requests wait, then are told busy): not a reason to take this process
    // out of service. A database that does not answer is.
    let db = state != itinerary_store::DatabaseState::Down;
    let (worker_ok, worker) = match &s.worker {
        Some(w) => (w.0)(),
        None => (true, serde_json::Value::Null),
    };
    let status = match (db, worker_ok) {
        (true, true) => "ok",
        (false, _) => "database unavailable",
        (true, false) if worker["relay"]["state"] == "misconfigured" => "email relay misconfigured",
        (true, false) => "worker not delivering",
    };
    let code = if db && worker_ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body =
        json!({ "status": status, "database": format!("{:?}", s.store.backend()), "database_state": state.name(), "worker": worker });
    (code, Json(body)).into_response()
}

fn body<T>(b: Result<Json<T>, JsonRejection>) -> ApiResult<T> {
    b.map(|Json(t)| t).map_err(Into::into)
}

fn id(p: Result<Path<i32>, PathRejection>) -> ApiResult<i32> {
    p.map(|Path(i)| i).map_err(Into::into)
}

async fn create_patient(
    State(s): State<AppState>,
    Extension(c): Extension<Coordinator>,
    headers: HeaderMap,
    b: Result<Json<PatientInput>, JsonRejection>,
) -> ApiResult<Response> {
    let input = body(b)?;
    let key = keyed(&headers, c, "POST", "/patients", &input, StatusCode::CREATED)?;
    idempotency::once(&s, key, async |key| {
        let p = s.store.create_patient(c.0, &input, key).await?;
        Ok((StatusCode::CREATED, Json(p)).into_response())
    })
    .await
}

/// The request's idempotency key, with the fingerprint of what it asks.
fn keyed(
    headers: &HeaderMap,
    c: Coordinator,
    method: &str,
    path: &str,
    body: &impl serde::Serialize,
    status: StatusCode,
) -> ApiResult<Option<IdempotencyKey>> {
    Ok(idempotency::key_in(headers)?.map(|k| IdempotencyKey::new(c.0, &k, method, path, body, status.as_u16())))
}

/// `?limit=N` (1–1000, 100 by default) and a cursor: `after` (ids ascending) or `before`
/// (newest first). The answer's `next` is the cursor for the following page, null at the end.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    #[serde(default)]
    limit: Option<u64>,
    #[serde(default)]
    after: Option<i32>,
    #[serde(default)]
    before: Option<i32>,
}

impl Page {
    fn limit(&self) -> ApiResult<u64> {
        match self.limit {
            None => Ok(100),
            Some(n @ 1..=1000) => Ok(n),
            Some(n) => {
                Err(ApiError::field(StatusCode::UNPROCESSABLE_ENTITY, "invalid", "limit", &n.to_string(), "must be between 1 and 1000"))
            }
        }
    }
}

async fn list_patients(
    State(s): State<AppState>,
    Extension(c): Extension<Coordinator>,
    q: Result<Query<Page>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(page) = q?;
    let limit = page.limit()?;
    let patients = s.store.patients(page.after.unwrap_or(0), limit).await?;
    let next = (patients.len() as u64 == limit).then(|| patients.last().map(|p| p.id)).flatten();
    let ids: Vec<i32> = patients.iter().map(|p| p.id).collect();
    s.store.audit_read(c.0, "patient", "list", json!({ "ids": ids })).await?;
    Ok(Json(json!({ "patients": patients, "next": next })).into_response())
}

async fn get_patient(
    State(s): State<AppState>,
    Extension(c): Extension<Coordinator>,
    p: Result<Path<i32>, PathRejection>,
) -> ApiResult<Response> {
    let patient = s.store.patient(id(p)?).await?;
    s.store.audit_read(c.0, "patient", &patient.id.to_string(), json!({})).await?;
    Ok(Json(patient).into_response())
}

/// What the patient sent (LINE texts and button answers), newest first; the read is audited.
async fn patient_messages(
    State(s): State<AppState>,
    Extension(c): Extension<Coordinator>,
    p: Result<Path<i32>, PathRejection>,
) -> ApiResult<Response> {
    let patient = id(p)?;
    let messages = s.store.patient_messages(patient).await?;
    s.store.audit_read(c.0, "patient_messages", &patient.to_string(), json!({ "count": messages.len() })).await?;
    Ok(Json(json!({ "messages": messages })).into_response())
}

async fn unlink_line(
    State(s): State<AppState>,
    Extension(c): Extension<Coordinator>,
    p: Result<Path<i32>, PathRejection>,
) -> ApiResult<Response> {
    let patient = id(p)?;
    if s.store.unlink_line(c.0, patient, Utc::now()).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, "not_linked", "the patient has not linked LINE"))
    }
}

/// `POST /inbound/email`: one raw RFC 5322 message, as hosted mail services post what arrives
/// at the organizer address, with `Authorization: Bearer <inbound.secret>`. 200 with what was
/// made of it (a refused reply is recorded, so it is 200 too: a 4xx would bring it back again).
async fn inbound_email(
    State(s): State<AppState>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Response> {
    let client = crate::serve::client(&extensions).map_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |a| a.ip());
    if let Some(wait) = s.failed.blocked(client) {
        return Err(ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_failures", "too many failed attempts from this address")
            .retry_after(wait.as_secs() + 1));
    }
    let Some(secret) = s.inbound_secret.as_deref() else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "inbound_not_configured",
            "inbound.secret is not set: no sender can be checked",
        ));
    };
    let given =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or_default();
    if !crate::guard::same_secret(given.trim(), secret) {
        s.failed.failed(client);
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "bad_secret", "Authorization is not Bearer <inbound.secret>"));
    }
    let body = body.map_err(|e| {
        ApiError::new(
            e.status(),
            "unreadable_body",
            format!("the message could not be read (at most {} bytes): {e}", itinerary_inbound::MAX_BYTES),
        )
    })?;
    let mail = itinerary_inbound::read(&body).map_err(|e| {
        let status = if matches!(e, itinerary_inbound::InboundError::TooLarge { .. }) {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        tracing::info!(error = %e, "inbound mail refused");
        ApiError::field(status, "unreadable_mail", "body", "", &e.to_string())
    })?;
    let now = s.clock.now().await?;
    let answer = s.store.record_inbound(&mail, "api", &s.setup.calendar.organizer_email, now).await?;
    Ok(Json(answer).into_response())
}

/// A patient's outcomes (health data: every read is audited).
async fn patient_outcomes(
    State(s): State<AppState>,
    Extension(c): Extension<Coordinator>,
    p: Result<Path<i32>, PathRejection>,
) -> ApiResult<Response> {
    let id = id(p)?;
    let outcomes = s.store.patient_outcomes(id).await?;
    s.store.audit_read(c.0, "outcomes", &id.to_string(), json!({ "as": "json" })).await?;
    Ok(Json(outcomes).into_response())
}

async fn patient_outcomes_csv(
    State(s): State<AppState>,
    Extension(c): Extension<Coordinator>,
    p: Result<Path<i32>, PathRejection>,
) -> ApiResult<Response> {
    let id = id(p)?;
    let outcomes = s.store.patient_outcomes(id).await?;
    let text = outcomes.csv().map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    s.store.audit_read(c.0, "outcomes", &id.to_string(), json!({ "as": "csv" })).await?;
    let disposition = format!("attachment; filename=\"patient-{id}-outcomes.csv\"");
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()), (header::CONTENT_DISPOSITION, disposition)], text).into_response())
}

#[derive(Deserialize)]
struct ChartQuery {
    #[serde(default)]
    lang: Option<String>,
}

async fn patient_outcomes_chart(
    State(s): State<AppState>,
    Extension(c): Extension<Coordinator>,
    p: Result<Path<i32>, PathRejection>,
    q: Result<Query<ChartQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let id = id(p)?;
    let english = q.map(|Query(q)| q.lang.as_deref() != Some("ja")).unwrap_or(true);
    let outcomes = s.store.patient_outcomes(id).await?;
    let svg = match outcomes.chart(english) {
        Ok(svg) => svg,
        Err(itinerary_outcomes::ChartError::Empty) => {
            return Err(ApiError::new(StatusCode::NOT_FOUND, "no_outcomes", "nothing to chart: no answer and no infusion"));
        }
        Err(e) => return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())),
    };
    s.store.audit_read(c.0, "outcomes", &id.to_string(), json!({ "as": "svg" })).await?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}

/// Everything stored about a patient, for an access request (audited).
async fn export_patient(
    State(s): State<AppState>,
    Extension(c): Extension<Coordinator>,
    p: Result<Path<i32>, PathRejection>,
) -> ApiResult<Response> {
    let id = id(p)?;
    let export = s.store.export_patient(id).await?;
    s.store.audit_read(c.0, "export", &id.to_string(), json!({})).await?;
    let disposition = format!("attachment; filename=\"patient-{id}-export.json\"");
    Ok(([(header::CONTENT_DISPOSITION, disposition)], Json(export)).into_response())
}

/// Erases a patient (right to erasure); 409 while an itinerary has appointments ahead.
async fn erase_patient(
    State(s): State<AppState>,
    Extension(c): Extension<Coordinator>,
    p: Result<Path<i32>, PathRejection>,
) -> ApiResult<Response> {
    let id = id(p)?;
    let now = s.clock.now().await?;
    match crate::erasure::erase_patient(&s.store, s.outbox.as_deref(), c.0, id, now).await {
        Ok(e) => Ok(Json(e).into_response()),
        Err(itinerary_store::EraseError::Active { reference }) => Err(ApiError::field(
            StatusCode::CONFLICT,
            "itinerary_active",
            "itinerary",
            &reference,
            "is active with appointments ahead: cancel it first (the patient, escorts and calendars are told), then erase",
        )),
        Err(itinerary_store::EraseError::Store(e)) => Err(e.into()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Decision {
    decision: String,
    #[serde(default)]
    note: Option<String>,
}

/// The decision at a set's 12-month re-evaluation; `second_set_proposed` keeps a draft.
async fn decide_reevaluation(
    State(s): State<AppState>,
    Extension(c): Extension<Coordinator>,
    p: Result<Path<i32>, PathRejection>,
    b: Result<Json<Decision>, JsonRejection>,
) -> ApiResult<Response> {
    let id = id(p)?;
    let b = body(b)?;
    let now = s.clock.now().await?;
    Ok(Json(s.store.decide_reevaluation(c.0, id, &b.decision, b.note.as_deref(), now).await?).into_response())
}

async fn list_feeds(
    State(s): State<AppState>,
    Extension(c): Extension<Coordinator>,
    p: Result<Path<i32>, PathRejection>,
) -> ApiResult<Response> {
    let id = id(p)?;
    let feeds = s.store.feed_tokens(id).await?;
    s.store.audit_read(c.0, "feed", &id.to_string(), json!({})).await?;
    Ok(Json(json!({ "feeds": feeds })).into_response())
}

async fn update_patient(
    State(s): State<AppState>,
    Extension(c): Extension<Coordinator>,
    p: Result<Path<i32>, PathRejection>,
    b: Result<Json<PatientInput>, JsonRejection>,
) -> ApiResult<Response> {
    let id = id(p)?;
    let b = body(b)?;
    Ok(Json(s.store.update_patient(c.0, &s.setup, id, &b, s.clock.now().await?).await?).into_response())
}

async fn rotate_feed(
    State(s): State<AppState>,
    Extension(c): Extension<Coordinator>,
    p: Result<Path<i32>, PathRejection>,
) -> ApiResult<Response> {
    let secret = s.store.rotate_feed(c.0, id(p)?).await?;
    let url = format!("{}/feed/{secret}", s.public_url);
    Ok((StatusCode::CREATED, Json(json!({ "feed_url": url }))).into_response())
}

async fn revoke_feed(
    State(s): State<AppState>,
    Extension(c): Extension<Coordinator>,
    p: Result<Path<i32>, PathRejection>,
) -> ApiResult<Response> {
    s.store.revoke_feed(c.0, id(p)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_escorts(State(s): State<AppState>) -> ApiResult<Response> {
    Ok(Json(json!({ "escorts": s.store.escorts().await? })).into_response())
}

async fn get_escort(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(Json(s.store.escort(&id).await?).into_response())
}

async fn put_escort(
    State(s): State<AppState>,
    Extension(c): Extension<Coordinator>,
    Path(id): Path<String>,
    b: Result<Json<EscortInput>, JsonRejection>,
) -> ApiResult<Response> {
    let e = body(b)?;
    if e.id != id {
        return Err(ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "id",
            &e.id,
            &format!("differs from the id in the path ({id})"),
        ));
    }
    Ok(Json(s.store.put_escort(Some(c.0), &e).await?).into_response())
}

async fn deactivate_escort(State(s): State<AppState>, Extension(c): Extension<Coordinator>, Path(id): Path<String>) -> ApiResult<Response> {
    s.store.deactivate_escort(c.0, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_resources(State(s): State<AppState>) -> ApiResult<Response> {
    Ok(Json(json!({ "resources": s.store.resources().await? })).into_response())
}

async fn get_resource(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(Json(s.store.resource(&id).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Capacity {
    capacity: i64,
}

async fn put_resource(
    State(s): State<AppState>,
    Extension(c): Extension<Coordinator>,
    Path(id): Path<String>,
    b: Result<Json<Capacity>, JsonRejection>,
) -> ApiResult<Response> {
    let cap = body(b)?;
    Ok(Json(s.store.put_resource(Some(c.0), &id, cap.capacity).await?).into_response())
}

async fn create_itinerary(
    State(s): State<AppState>,
    Extension(c): Extension<Coordinator>,
    headers: HeaderMap,
    b: Result<Json<NewItinerary>, JsonRejection>,
) -> ApiResult<Response> {
    let req = body(b)?;
    let key = keyed(&headers, c, "POST", "/itineraries", &req, StatusCode::CREATED)?;
    idempotency::once(&s, key, async |key| {
        let it = s.store.create_itinerary(c.0, &s.setup, &req, s.clock.now().await?, key).await?;
        Ok((StatusCode::CREATED, Json(it)).into_response())
    })
    .await
}

async fn preview_itinerary(
    State(s): State<AppState>,
    Extension(_): Extension<Coordinator>,
    b: Result<Json<NewItinerary>, JsonRejection>,
) -> ApiResult<Response> {
    let req = body(b)?;
    let plan = s.store.preview_itinerary(&s.setup, &req, s.clock.now().await?).await?;
    Ok(Json(plan).into_response())
}

async fn resend_message(
    State(s): State<AppState>,
    Extension(c): Extension<Coordinator>,
    p: Result<Path<(i32, i32)>, PathRejection>,
) -> ApiResult<Response> {
    let Path((id, message)) = p?;
    match s.store.resend_message(c.0, id, message, s.clock.now().await?).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(itinerary_store::ResendError::Store(e)) => Err(e.into()),
        Err(e) => Err(ApiError::new(StatusCode::CONFLICT, "not_resent", e.to_string())),
    }
}

async fn get_itinerary(
    State(s): State<AppState>,
    Extension(c): Extension<Coordinator>,
    p: Result<Path<i32>, PathRejection>,
) -> ApiResult<Response> {
    let it = s.store.itinerary(id(p)?).await?;
    s.store.audit_read(c.0, "itinerary", &it.id.to_string(), json!({ "patient": it.patient_id })).await?;
    Ok(Json(it).into_response())
}

/// What the attendees answered: each standing appointment's answer from each invitee (by
/// mail), the patient's LINE link, and what the patient sent.
async fn itinerary_answers(
    State(s): State<AppState>,
    Extension(c): Extension<Coordinator>,
    p: Result<Path<i32>, PathRejection>,
) -> ApiResult<Response> {
    let it = s.store.itinerary(id(p)?).await?;
    let appointments = s.store.appointment_answers(it.id).await?;
    let patient = s.store.patient(it.patient_id).await?;
    let messages = s.store.patient_messages(it.patient_id).await?;
    s.store.audit_read(c.0, "itinerary_answers", &it.id.to_string(), json!({ "patient": it.patient_id })).await?;
    let line = json!({ "linked": patient.line_user_id.is_some(), "linked_at": patient.line_linked_at });
    let line = if patient.line_linked_at.is_none() { json!({ "linked": patient.line_user_id.is_some() }) } else { line };
    Ok(Json(json!({ "appointments": appointments, "line": line, "messages": messages })).into_response())
}

async fn change_itinerary(
    State(s): State<AppState>,
    Extension(c): Extension<Coordinator>,
    p: Result<Path<i32>, PathRejection>,
    headers: HeaderMap,
    b: Result<Json<NewItinerary>, JsonRejection>,
) -> ApiResult<Response> {
    let id = id(p)?;
    let req = body(b)?;
    let key = keyed(&headers, c, "PUT", &format!("/itineraries/{id}"), &req, StatusCode::OK)?;
    idempotency::once(&s, key, async |key| {
        Ok(Json(s.store.change_itinerary(c.0, &s.setup, id, &req, s.clock.now().await?, key).await?).into_response())
    })
    .await
}

async fn cancel_itinerary(
    State(s): State<AppState>,
    Extension(c): Extension<Coordinator>,
    p: Result<Path<i32>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let id = id(p)?;
    let key = keyed(&headers, c, "POST", &format!("/itineraries/{id}/cancel"), &(), StatusCode::OK)?;
    idempotency::once(&s, key, async |key| {
        Ok(Json(s.store.cancel_itinerary(c.0, &s.setup, id, s.clock.now().await?, key).await?).into_response())
    })
    .await
}

/// Messages that could not be delivered (a permanent refusal, or retries that ran out).
async fn failed_messages(State(s): State<AppState>, Extension(c): Extension<Coordinator>) -> ApiResult<Response> {
    let failed = s.store.failed_messages(500).await?;
    s.store.audit_read(c.0, "message", "failed", json!({ "count": failed.len() })).await?;
    Ok(Json(json!({ "failed": failed })).into_response())
}

async fn get_clock(State(s): State<AppState>) -> ApiResult<Response> {
    let offset_ms = if s.clock.is_test() { s.store.clock_offset().await? } else { 0 };
    Ok(Json(json!({ "now": s.clock.now().await?, "test": s.clock.is_test(), "offset_ms": offset_ms })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetClock {
    /// Move the clock to this instant.
    #[serde(default)]
    now: Option<DateTime<Utc>>,
    /// Or move it on by this many seconds.
    #[serde(default)]
    advance_seconds: Option<i64>,
}

/// Moves the test clock (refused unless the service runs with `[clock] mode = "test"`).
async fn set_clock(
    State(s): State<AppState>,
    Extension(c): Extension<Coordinator>,
    b: Result<Json<SetClock>, JsonRejection>,
) -> ApiResult<Response> {
    let req = body(b)?;
    if !s.clock.is_test() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "clock_is_system",
            "the clock is the system clock; start the service with [clock] mode = \"test\" to move it",
        ));
    }
    let current = s.store.clock_offset().await?;
    let offset = match (req.now, req.advance_seconds) {
        (Some(t), None) => (t - Utc::now()).num_milliseconds(),
        (None, Some(secs)) if (0..=10 * 366 * 86_400).contains(&secs) => current + secs * 1000,
        (None, Some(secs)) => {
            return Err(ApiError::field(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "advance_seconds",
                &secs.to_string(),
                "must be between 0 and ten years; the clock does not go back",
            ));
        }
        _ => return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", "give either now or advance_seconds")),
    };
    s.store.set_clock_offset(offset).await?;
    tracing::info!(coordinator = c.0, offset_ms = offset, "test clock moved");
    get_clock(State(s)).await
}

fn calendar(text: String) -> Response {
    let mut r = text.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/calendar; charset=utf-8"));
    r
}

async fn itinerary_ics(
    State(s): State<AppState>,
    Extension(c): Extension<Coordinator>,
    p: Result<Path<i32>, PathRejection>,
) -> ApiResult<Response> {
    let id = id(p)?;
    let ics = s.store.itinerary_ics(&s.setup, id).await?;
    s.store.audit_read(c.0, "itinerary", &id.to_string(), json!({ "as": "calendar" })).await?;
    Ok(calendar(ics))
}

/// The patient's feed: the token is the only credential, and shows only its own patient.
/// Calendar apps poll it; an unchanged itinerary answers 304 to their `If-None-Match`.
async fn feed(State(s): State<AppState>, Path(token): Path<String>, req: Request) -> ApiResult<Response> {
    let client = client_ip(&req);
    if let Some(wait) = s.failed.blocked(client) {
        return Ok(too_many_failures(wait));
    }
    let headers = req.headers();
    let token = token.strip_suffix(".ics").unwrap_or(&token);
    let Some(feed) = s.store.feed(&s.setup, token).await? else {
        s.failed.failed(client);
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no_feed", "no such feed (revoked, never issued, or no itinerary yet)"));
    };
    let unchanged =
        headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| v.split(',').any(|t| t.trim() == feed.etag));
    let mut r = if unchanged { StatusCode::NOT_MODIFIED.into_response() } else { calendar(feed.text.to_string()) };
    if let Ok(etag) = HeaderValue::from_str(&feed.etag) {
        r.headers_mut().insert(header::ETAG, etag);
    }
    // Personal data: no cache may keep it. Calendar apps keep the ETag of their own accord.
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Range {
    from: NaiveDate,
    to: NaiveDate,
}

/// What each itinerary has, and what each escort does on which day, between two dates (UTC
/// days, `to` exclusive; escorts' days in the clinic's zone).
async fn trips(
    State(s): State<AppState>,
    Extension(c): Extension<Coordinator>,
    q: Result<Query<Range>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(r) = q?;
    if r.to <= r.from || (r.to - r.from).num_days() > 366 {
        return Err(ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_query",
            "to",
            &r.to.to_string(),
            "must be after `from` and at most 366 days later",
        ));
    }
    let day = |d: NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc()).unwrap_or_default();
    let found = s.store.itineraries_between(day(r.from), day(r.to)).await?;
    let trips: Vec<_> = found
        .into_iter()
        .map(|(itinerary, events)| {
            let events: Vec<_> = events
                .into_iter()
                .map(|e| json!({ "key": e.key, "kind": e.kind, "starts_at": e.starts_at.map(|t: DateTime<Utc>| t.to_rfc3339()), "ends_at": e.ends_at.map(|t| t.to_rfc3339()), "zone": e.start_zone, "escort": e.escort_id }))
                .collect();
            json!({ "itinerary": itinerary, "events": events })
        })
        .collect();
    // What each escort does on which day, days as the clinic counts them.
    let zone = s.setup.clinic.zone;
    let mut escorts = serde_json::Map::new();
    for d in s.store.escort_duties_between(day(r.from), day(r.to)).await? {
        let local_day = d.starts_at.with_timezone(&zone).date_naive().to_string();
        let duty = json!({
            "itinerary": d.itinerary_id,
            "starts_at": d.starts_at.with_timezone(&zone).to_rfc3339(),
            "ends_at": d.ends_at.with_timezone(&zone).to_rfc3339(),
            "shared": d.shared,
        });
        let days = escorts.entry(d.resource).or_insert_with(|| json!({}));
        if let Some(list) = days.as_object_mut().map(|m| m.entry(local_day).or_insert_with(|| json!([])))
            && let Some(a) = list.as_array_mut()
        {
            a.push(duty);
        }
    }
    s.store.audit_read(c.0, "trips", &format!("{}..{}", r.from, r.to), json!({ "count": trips.len() })).await?;
    Ok(Json(json!({ "from": r.from, "to": r.to, "zone": zone.name(), "trips": trips, "escorts": escorts })).into_response())
}

async fn audit(State(s): State<AppState>, q: Result<Query<Page>, QueryRejection>) -> ApiResult<Response> {
    let Query(page) = q?;
    let limit = page.limit()?;
    let entries = s.store.audit_log(page.before, limit).await?;
    let next = (entries.len() as u64 == limit).then(|| entries.last().map(|a| a.id)).flatten();
    let rows: Vec<_> = entries
        .into_iter()
        .map(|a| json!({ "at": a.at, "coordinator": a.coordinator_id, "action": a.action, "entity": a.entity, "id": a.entity_id, "detail": a.detail }))
        .collect();
    Ok(Json(json!({ "audit": rows, "next": next })).into_response())
}

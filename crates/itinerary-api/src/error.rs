//! Every failure as JSON: `{"error": {"code", "message", "fields": [{"field", "value", "problem"}]}}`.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use itinerary_core::{FieldError, Infeasible, InvalidRequest, Violation};
use itinerary_store::{Answered, BookError, InputError, StoreError};
use serde_json::json;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub fields: Vec<FieldError>,
    /// For 422 from the planner: every broken rule, in Japanese and English.
    pub violations: Option<Box<Infeasible>>,
    /// Seconds to wait before sending it again (`Retry-After`), for a refusal that did nothing.
    pub retry_after: Option<u64>,
    /// The stored answer of a request already done under its idempotency key.
    pub answered: Option<Box<Answered>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), fields: Vec::new(), violations: None, retry_after: None, answered: None }
    }

    /// Says when to send it again.
    #[must_use]
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn field(status: StatusCode, code: &'static str, field: &str, value: &str, problem: &str) -> Self {
        let mut e = ApiError::new(status, code, format!("{field}: `{value}`: {problem}"));
        e.fields.push(FieldError { field: field.into(), value: value.into(), problem: problem.into() });
        e
    }

    pub fn unauthorized() -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "a valid bearer token is required (Authorization: Bearer itc_…)")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "code": self.code, "message": self.message });
        if !self.fields.is_empty() {
            body["fields"] = json!(self.fields);
        }
        if let Some(v) = self.violations {
            body["violations"] = json!(v.violations);
            if !v.warnings.is_empty() {
                body["warnings"] = json!(v.warnings);
            }
        }
        let mut res = (self.status, Json(json!({ "error": body }))).into_response();
        if let Some(v) = self.retry_after.and_then(|s| axum::http::HeaderValue::from_str(&s.to_string()).ok()) {
            res.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
        }
        res
    }
}

impl From<InvalidRequest> for ApiError {
    fn from(e: InvalidRequest) -> Self {
        let mut out = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", e.to_string());
        out.fields = e.errors;
        out
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { entity, id } => {
                ApiError::field(StatusCode::NOT_FOUND, "not_found", "id", &id, &format!("no such {entity}"))
            }
            e if e.is_busy() => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "every database connection is busy; nothing was changed: send it again after Retry-After",
            )
            .retry_after(1),
            StoreError::CommitUnknown(e) => {
                tracing::error!(error = %e, "a commit was not confirmed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "outcome_unknown",
                    "the database did not confirm the change: it may have been made; send it again with the same \
                     Idempotency-Key to get its answer, or read the record before sending it again",
                )
            }
            StoreError::KeyInUse => ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_key_in_use",
                "a request with this Idempotency-Key is still being processed; send it again after Retry-After to get its answer",
            )
            .retry_after(1),
            StoreError::Answered(a) => {
                let mut e = ApiError::new(StatusCode::CONFLICT, "already_done", "already done under this Idempotency-Key");
                e.answered = Some(a);
                e
            }
            other => {
                // The detail goes to the log (it holds no personal data: ids and database errors).
                tracing::error!(error = %other, "store failure");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the database could not complete the request; nothing was changed",
                )
            }
        }
    }
}

impl From<InputError> for ApiError {
    fn from(e: InputError) -> Self {
        match e {
            InputError::Invalid(i) => i.into(),
            InputError::Store(s) => s.into(),
        }
    }
}

/// The value a violation blames: the one named like its field (`passport_expiry` for
/// `patient.passport_expiry`), or all it names.
fn field_value(v: &Violation) -> String {
    let name = v.field.as_deref().and_then(|f| f.rsplit('.').next()).unwrap_or_default();
    v.values.get(name).cloned().unwrap_or_else(|| v.values.values().cloned().collect::<Vec<_>>().join(", "))
}

impl From<BookError> for ApiError {
    fn from(e: BookError) -> Self {
        match e {
            BookError::Invalid(i) => i.into(),
            BookError::Infeasible(inf) => {
                let mut out = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "infeasible", inf.to_string());
                out.fields = inf
                    .violations
                    .iter()
                    .filter_map(|v| {
                        v.field.as_ref().map(|f| FieldError { field: f.clone(), value: field_value(v), problem: v.text.en.clone() })
                    })
                    .collect();
                out.violations = Some(Box::new(inf));
                out
            }
            BookError::Conflict(inf) => {
                let mut out = ApiError::new(StatusCode::CONFLICT, "conflict", format!("other bookings hold what this needs: {inf}"));
                out.fields = inf
                    .violations
                    .iter()
                    .map(|v| FieldError {
                        field: v.field.clone().unwrap_or_else(|| "trips".into()),
                        value: field_value(v),
                        problem: v.text.en.clone(),
                    })
                    .collect();
                out.violations = Some(Box::new(inf));
                out
            }
            BookError::Cancelled(id) => {
                ApiError::field(StatusCode::CONFLICT, "cancelled", "id", &id.to_string(), "the itinerary is cancelled")
            }
            BookError::Store(s) => s.into(),
        }
    }
}

/// serde's message names the path to the bad field (`trips[0].outbound.depart: invalid type…`).
impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let (status, code) = match &r {
            JsonRejection::JsonDataError(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
            JsonRejection::JsonSyntaxError(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            JsonRejection::MissingJsonContentType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "not_json"),
            _ if r.status() == StatusCode::PAYLOAD_TOO_LARGE => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            _ => (r.status(), "bad_body"),
        };
        let text = r.body_text();
        let detail = text.split_once(": ").map_or(text.as_str(), |(_, d)| d).to_owned();
        let field = detail.split_once(": ").map(|(f, _)| f.to_owned()).filter(|f| !f.contains(' ')).unwrap_or_else(|| "body".to_owned());
        let mut e = ApiError::new(status, code, detail.clone());
        e.fields.push(FieldError { field, value: String::new(), problem: detail });
        e
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::field(StatusCode::BAD_REQUEST, "bad_path", "id", "", &r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::field(StatusCode::BAD_REQUEST, "bad_query", "query", "", &r.body_text())
    }
}

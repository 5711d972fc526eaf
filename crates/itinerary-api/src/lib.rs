//! The HTTP API: coordinators manage patients, escorts and itineraries behind bearer tokens;
//! patients subscribe to their calendar at an unguessable feed URL. Every error is JSON that
//! names the field and the value; no route answers 500 for bad input.

pub mod erasure;
mod error;
pub mod guard;
mod idempotency;
pub mod line;
pub mod openapi;
mod routes;
pub mod serve;

use std::sync::Arc;

use axum::Router;
use itinerary_core::ClinicSetup;
use itinerary_store::{Clock, Store};

pub use error::ApiError;
pub use idempotency::InFlight;

/// What every request handler shares.
#[derive(Clone, Debug)]
pub struct AppState {
    pub store: Store,
    pub setup: Arc<ClinicSetup>,
    /// Where feed URLs point (`https://itinerary.example.my`), without a trailing slash.
    pub public_url: String,
    /// Now, for planning: the system clock, or the test clock that `PUT /clock` moves.
    pub clock: Clock,
    /// The delivery worker of this process, when it runs one.
    pub worker: Option<WorkerStatus>,
    /// Failed bearer tokens and feed URLs by client address.
    pub failed: Arc<guard::FailedAttempts>,
    /// Idempotency keys whose request is running in this process.
    pub in_flight: Arc<InFlight>,
    /// LINE's channel secret, which signs its webhook bodies; without it every webhook call
    /// is refused.
    pub line_secret: Option<Arc<str>>,
    /// The shared secret a hosted mail service sends with `POST /inbound/email`; without it
    /// every call is refused.
    pub inbound_secret: Option<Arc<str>>,
    /// The mail outbox directory, whose files a patient's erasure deletes too.
    pub outbox: Option<std::path::PathBuf>,
}

/// Whether this process's worker is delivering (false makes `/health` answer 503), and its
/// report as JSON.
#[derive(Clone)]
pub struct WorkerStatus(pub Arc<dyn Fn() -> (bool, serde_json::Value) + Send + Sync>);

impl std::fmt::Debug for WorkerStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WorkerStatus")
    }
}

/// The largest request body accepted (a plan request is a few KiB).
pub const BODY_LIMIT: usize = 64 * 1024;

pub fn router(state: AppState) -> Router {
    routes::router(state)
}

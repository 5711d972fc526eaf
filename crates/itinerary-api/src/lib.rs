//! The HTTP API: coordinators manage patients, escorts and itineraries behind bearer tokens;
//! patients subscribe to their calendar at an unguessable feed URL. Every error is JSON that
//! names the field and the value; no route answers 500 for bad input.

mod error;
pub mod openapi;
mod routes;

use std::sync::Arc;

use axum::Router;
use itinerary_core::ClinicSetup;
use itinerary_store::{Clock, Store};

pub use error::ApiError;

/// What every request handler shares.
#[derive(Clone, Debug)]
pub struct AppState {
    pub store: Store,
    pub setup: Arc<ClinicSetup>,
    /// Where feed URLs point (`https://itinerary.example.my`), without a trailing slash.
    pub public_url: String,
    /// Now, for planning: the system clock, or the test clock that `PUT /clock` moves.
    pub clock: Clock,
}

/// The largest request body accepted (a plan request is a few KiB).
pub const BODY_LIMIT: usize = 64 * 1024;

pub fn router(state: AppState) -> Router {
    routes::router(state)
}

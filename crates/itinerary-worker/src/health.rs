//! How the worker is doing, for `/health`: whether its job consumer runs and beats, whether the
//! dispatcher's last pass reached the database, and every restart with its reason.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Shared between the worker's tasks and the HTTP service of the same process. A new one is
/// `starting` from its creation, so `/health` asked before the worker runs says so.
#[derive(Clone, Debug)]
pub struct Health(Arc<Mutex<Report>>);

impl Default for Health {
    fn default() -> Self {
        let h = Health(Arc::default());
        h.starting();
        h
    }
}

/// The worker as `/health` shows it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// `starting`, `running`, `restarting` (after a failure, waiting to start again) or `stopped`.
    pub state: &'static str,
    /// Whether messages that come due are being delivered now.
    pub ok: bool,
    /// Times the job consumer or the dispatcher was started again after a failure.
    pub restarts: u32,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    /// The consumer's last heartbeat in the job queue.
    pub last_heartbeat: Option<DateTime<Utc>>,
    /// The dispatcher's last pass that reached the database.
    pub last_dispatch: Option<DateTime<Utc>>,
    /// Why the dispatcher's passes fail, while they do.
    pub dispatch_error: Option<String>,
    /// The email relay as last met, by the check at start or a send.
    pub relay: Relay,
    #[serde(skip)]
    started_at: Option<DateTime<Utc>>,
}

/// The email relay: `unchecked`, `ok`, `unreachable` (a moment: messages wait and retry) or
/// `misconfigured` (its certificate, TLS mode or credentials: nothing can go until `[smtp]` is
/// fixed, and /health answers 503).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Relay {
    pub state: &'static str,
    pub error: Option<String>,
    pub at: Option<DateTime<Utc>>,
}

impl Health {
    /// What the relay did last: accepted (or the check passed), or refused and why.
    pub(crate) fn relay(&self, state: &'static str, error: Option<String>) {
        self.update(|r| r.relay = Relay { state, error, at: Some(Utc::now()) });
    }

    fn update(&self, f: impl FnOnce(&mut Report)) {
        if let Ok(mut r) = self.0.lock() {
            f(&mut r);
        }
    }

    pub(crate) fn starting(&self) {
        self.update(|r| {
            r.state = "starting";
            r.started_at = Some(Utc::now());
        });
    }

    pub(crate) fn beat(&self) {
        self.update(|r| {
            r.state = "running";
            r.last_heartbeat = Some(Utc::now());
        });
    }

    pub(crate) fn failed(&self, error: &str) {
        self.update(|r| {
            r.state = "restarting";
            r.restarts += 1;
            r.last_error = Some(error.to_owned());
            r.last_error_at = Some(Utc::now());
        });
    }

    pub(crate) fn dispatched(&self, result: Result<(), String>) {
        self.update(|r| match result {
            Ok(()) => {
                r.last_dispatch = Some(Utc::now());
                r.dispatch_error = None;
            }
            Err(e) => r.dispatch_error = Some(e),
        });
    }

    pub(crate) fn stopped(&self) {
        self.update(|r| r.state = "stopped");
    }

    /// The report, judged: delivering means the consumer runs and beat within three heartbeats,
    /// and the dispatcher reached the database within `stale` (a few polls); a worker that has
    /// just started gets three heartbeats to get there.
    pub fn report(&self, heartbeat: Duration, stale: Duration) -> Report {
        let Ok(r) = self.0.lock() else { return Report { state: "unknown", ..Report::default() } };
        let mut r = r.clone();
        let now = Utc::now();
        let recent = |t: Option<DateTime<Utc>>, within: Duration| t.is_some_and(|t| (now - t).to_std().unwrap_or_default() <= within);
        // A worker gets three heartbeats to register, and `stale` for its first pass.
        let consuming = (r.state == "running" && recent(r.last_heartbeat, heartbeat * 3))
            || (r.state == "starting" && recent(r.started_at, heartbeat * 3));
        let dispatching = recent(r.last_dispatch, stale) || (r.last_dispatch.is_none() && recent(r.started_at, stale));
        r.ok = consuming && dispatching && r.relay.state != "misconfigured";
        if r.relay.state.is_empty() {
            r.relay.state = "unchecked";
        }
        r
    }
}

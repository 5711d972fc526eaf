//! One message, once: claim it, decide whether it is still wanted and whether now is a decent
//! hour where its reader is, render it, hand it to a transport, and record the outcome.

use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveTime, Utc};
use chrono_tz::Tz;
use itinerary_calendar::{Change, ChangeKind, Edition, Method, invite};
use itinerary_core::ClinicSetup;
use itinerary_core::request::Language;
use itinerary_core::time::at_local;
use itinerary_notify::letter::{Letter, Shown, Subject};
use itinerary_notify::mime::{self, CalendarPart, Envelope};
use itinerary_notify::transport::retry_key;
use itinerary_notify::{EmailTransport, LineClient, SendError, Templates};
use itinerary_store::{Claimed, Delivered, DeliveryTarget, Store, carries_calendar, is_summary};
use tokio::sync::OwnedSemaphorePermit;

use crate::{Clock, WorkerError};

/// How the worker delivers: `[delivery]` in config/default.toml.
#[derive(Clone, Debug)]
pub struct DeliveryRules {
    /// A message found more than this late (the worker was down) follows its `if_late` rule.
    pub late_after: Duration,
    /// First retry after a transient failure; each next one waits twice as long, up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// Give up (failed, shown to the coordinator) when transient failures last this long.
    pub retry_for: Duration,
    /// LINE pushes per calendar month before falling back to email.
    pub line_monthly_budget: u64,
    /// Where coordinator messages go (none: they are skipped, and say so).
    pub coordinator_email: Option<String>,
    /// For feed links in confirmations.
    pub public_url: String,
}

/// Why a message is not sent.
enum Unwanted {
    /// There is nothing to say: skipped.
    Moot(String),
    /// It was owed and its time is over: failed.
    Missed(String),
}

/// What happened to a message this worker took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Sent { channel: String },
    Skipped(String),
    Deferred(DateTime<Utc>),
    Retry(DateTime<Utc>),
    Failed(String),
}

/// Everything delivering needs, shared by every job of this worker.
#[derive(Debug)]
pub struct Deliverer {
    pub store: Store,
    pub setup: Arc<ClinicSetup>,
    pub templates: Arc<Templates>,
    pub email: EmailTransport,
    pub line: Option<LineClient>,
    pub rules: DeliveryRules,
    pub clock: Clock,
    /// Unique per process: claims name it.
    pub name: String,
    /// Sends open at once (SMTP transactions, LINE pushes), across every job of this process,
    /// each held until its outcome is recorded: what a crash can leave accepted but unrecorded,
    /// and so send twice, is at most this many.
    pub sends: Arc<tokio::sync::Semaphore>,
    /// The messages this process holds right now; only their claims are renewed.
    pub in_flight: InFlight,
    /// How this worker is doing, for `/health`: its tasks and the relay as last met.
    pub health: crate::Health,
}

/// The ids of the messages a process is delivering. A message whose task ended without a
/// record (the database failed it) leaves the set, so its claim lapses and another worker takes
/// it over, instead of being renewed for as long as the process lives.
#[derive(Clone, Debug, Default)]
pub struct InFlight(Arc<std::sync::Mutex<std::collections::HashSet<i32>>>);

/// One message in `InFlight`, for as long as its task lives.
struct Holding {
    id: i32,
    set: InFlight,
}

impl Drop for Holding {
    fn drop(&mut self) {
        if let Ok(mut s) = self.set.0.lock() {
            s.remove(&self.id);
        }
    }
}

impl InFlight {
    fn hold(&self, id: i32) -> Holding {
        if let Ok(mut s) = self.0.lock() {
            s.insert(id);
        }
        Holding { id, set: self.clone() }
    }

    /// The ids held now.
    pub fn ids(&self) -> Vec<i32> {
        self.0.lock().map(|s| s.iter().copied().collect()).unwrap_or_default()
    }
}

impl Deliverer {
    /// Delivers the messages of `ids` that are still queued, at once, and records what became
    /// of each. Those not claimed (sent, moved, cancelled, another worker's) are left alone.
    pub async fn deliver(self: &Arc<Self>, ids: &[i32]) -> Result<Vec<Outcome>, WorkerError> {
        // Claims run on the system clock: a test clock that jumps a month must not make every
        // claim look stale.
        let claimed = self.store.claim(ids, &self.name, Utc::now()).await?;
        let holds: Vec<Holding> = claimed.iter().map(|m| self.in_flight.hold(m.id)).collect();
        let now = self.clock.now().await?;
        // Every send runs to its end and records its outcome, even when another fails or the
        // job itself is dropped (apalis drops the jobs of a consumer that died): tasks are
        // detached. A send cut off mid-transaction could have been accepted, and it left its
        // pooled SMTP connection inside the transaction.
        let tasks: Vec<_> = claimed
            .into_iter()
            .zip(holds)
            .map(|(m, hold)| {
                let d = self.clone();
                tokio::spawn(async move {
                    let _hold = hold;
                    d.deliver_one(m, now).await
                })
            })
            .collect();
        let mut outcomes = Vec::with_capacity(ids.len());
        let mut first_error = None;
        for task in tasks {
            match task.await.map_err(|e| WorkerError::Queue(format!("delivery task: {e}"))).and_then(|r| r) {
                Ok(o) => outcomes.push(o),
                Err(e) => {
                    tracing::warn!(error = %e, "a delivery could not be recorded; its lease brings it back");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(outcomes),
        }
    }

    async fn deliver_one(&self, m: Claimed, now: DateTime<Utc>) -> Result<Outcome, WorkerError> {
        let id = m.id;
        if m.delivered_late {
            let d = Delivered { channel: "late".into(), provider_ref: Some("sent by a worker whose claim had lapsed".into()) };
            self.store.record_sent(id, &self.name, m.attempt, &d, now).await?;
            return Ok(Outcome::Sent { channel: d.channel });
        }
        match self.unwanted(&m, now) {
            Some(Unwanted::Moot(reason)) => {
                self.store.record_skipped(id, &self.name, &reason, now).await?;
                tracing::info!(message = id, kind = %m.kind, %reason, "skipped");
                return Ok(Outcome::Skipped(reason));
            }
            Some(Unwanted::Missed(reason)) => return self.missed(&m, reason, now).await,
            None => {}
        }
        // The questionnaire's second asking goes only to a patient who has not answered.
        if m.kind == "outcome_nudge"
            && let Some(occasion) = questionnaire_occasion(&m)
            && self.store.questionnaire_answered(m.itinerary_id, occasion).await?
        {
            let reason = "the questionnaire was answered".to_owned();
            self.store.record_skipped(id, &self.name, &reason, now).await?;
            tracing::info!(message = id, kind = %m.kind, %reason, "skipped");
            return Ok(Outcome::Skipped(reason));
        }
        let zone: Tz = m.due_zone.parse().unwrap_or(self.setup.clinic.zone);
        if let Some(morning) = self.after_night(now, zone) {
            if m.before_at.is_some_and(|b| morning >= b) {
                let reason = format!("the reader's night ({zone}) lasts until after what it is about begins");
                return self.missed(&m, reason, now).await;
            }
            self.store.defer(id, &self.name, &format!("night in {zone}: deferred to the morning"), morning).await?;
            return Ok(Outcome::Deferred(morning));
        }
        match self.send(&m, now).await {
            // The send's turn (relays, LINE) is kept until the record commits: a crash can then
            // leave at most `sends` messages accepted and unrecorded.
            Ok((d, _turn)) => {
                if d.channel == "email" {
                    self.health.relay("ok", None);
                }
                // From the provider's acceptance to the record: the one window in which a crash
                // sends a message twice. Logged so that it can be measured.
                let accepted = std::time::Instant::now();
                let mine = self.record_sent_patiently(id, m.attempt, &d, now).await?;
                let window_us = accepted.elapsed().as_micros();
                if !mine {
                    tracing::warn!(message = id, "sent after this worker's claim had lapsed");
                }
                tracing::info!(message = id, kind = %m.kind, channel = %d.channel, attempt = m.attempt, window_us, "sent");
                Ok(Outcome::Sent { channel: d.channel })
            }
            Err((channel, SendError::Configuration(e))) => {
                // Every message would meet the same: said at once, here and in /health.
                let e = format!("relay configuration: {e}");
                self.health.relay("misconfigured", Some(e.clone()));
                self.store.record_failed(id, &self.name, &channel, &e, now).await?;
                tracing::error!(message = id, kind = %m.kind, %channel, error = %e, "failed: the relay's setup is wrong");
                Ok(Outcome::Failed(e))
            }
            Err((channel, SendError::Permanent(e))) => {
                self.store.record_failed(id, &self.name, &channel, &e, now).await?;
                tracing::warn!(message = id, kind = %m.kind, %channel, error = %e, "failed for good");
                Ok(Outcome::Failed(e))
            }
            Err((channel, SendError::Transient { reason, retry_after })) => {
                let wait = self.backoff(m.attempt).max(retry_after.and_then(|d| Duration::from_std(d).ok()).unwrap_or_default());
                let next = now + wait;
                let first_due = m.first_attempt_at.unwrap_or(now).min(now);
                if next - first_due > self.rules.retry_for {
                    let e = format!("gave up after {} attempts: {reason}", m.attempt);
                    self.store.record_failed(id, &self.name, &channel, &e, now).await?;
                    return Ok(Outcome::Failed(e));
                }
                self.store.record_retry(id, &self.name, &channel, &reason, next, now).await?;
                tracing::info!(message = id, kind = %m.kind, %channel, attempt = m.attempt, error = %reason, retry_at = %next, "will retry");
                Ok(Outcome::Retry(next))
            }
        }
    }

    /// Connects to the relay once, as a send would, and says what it found: in the log and in
    /// `/health`. A relay that is only down is a warning (messages wait); a wrong certificate,
    /// TLS mode or password is an error an operator must fix.
    pub async fn check_relay(&self) {
        if !matches!(self.email, EmailTransport::Smtp(..)) {
            return;
        }
        match self.email.check().await {
            Ok(()) => {
                self.health.relay("ok", None);
                tracing::info!("the email relay accepts this worker's TLS and credentials");
            }
            Err(SendError::Configuration(e)) => {
                self.health.relay("misconfigured", Some(e.clone()));
                tracing::error!(error = %e, "the email relay's setup is wrong: no email can be sent until [smtp] is fixed");
            }
            Err(e) => {
                self.health.relay("unreachable", Some(e.to_string()));
                tracing::warn!(error = %e, "the email relay is not reachable now; messages wait and retry");
            }
        }
    }

    /// Why the message should not go out now, if it should not: nothing to say (skipped), or too
    /// late to say it (a failure the coordinator sees).
    fn unwanted(&self, m: &Claimed, now: DateTime<Utc>) -> Option<Unwanted> {
        if m.kind == "calendar_cancel" && !m.uid_was_sent {
            return Some(Unwanted::Moot("nothing was ever sent under this UID".into()));
        }
        if m.already_sent && !carries_calendar(&m.kind) {
            return Some(Unwanted::Moot("the same reminder for the same time was sent by an earlier version".into()));
        }
        if let Some(b) = m.before_at.filter(|b| *b <= now) {
            // Made after its appointment began (a cancellation of what is over): nothing was owed.
            if m.attempt <= 1 && m.due_at >= b {
                return Some(Unwanted::Moot("what it is about had begun before it was due".into()));
            }
            return Some(Unwanted::Missed(format!("what it is about began at {} before it could be delivered", b.to_rfc3339())));
        }
        if now - m.due_at > self.rules.late_after && m.if_late == "skip" {
            return Some(Unwanted::Missed(format!(
                "due at {} and found {} min late; its rule is not to send late",
                m.due_at.to_rfc3339(),
                (now - m.due_at).num_minutes()
            )));
        }
        if matches!(m.target, DeliveryTarget::Coordinator) && self.rules.coordinator_email.is_none() {
            return Some(Unwanted::Moot("no coordinator address is configured ([delivery] coordinator_email)".into()));
        }
        None
    }

    /// Records a message that was owed and can no longer be delivered as failed, with why and
    /// what the last attempt met, so that `GET /messages/failed` shows it.
    async fn missed(&self, m: &Claimed, reason: String, now: DateTime<Utc>) -> Result<Outcome, WorkerError> {
        let reason = match (&m.last_error, m.attempt > 1) {
            (Some(last), true) => format!("not delivered: {reason}, after {} attempt(s); the last: {last}", m.attempt - 1),
            (Some(last), false) => format!("not delivered: {reason}; before that: {last}"),
            (None, _) => format!("not delivered: {reason} (no worker reached it in time)"),
        };
        self.store.record_failed(m.id, &self.name, "none", &reason, now).await?;
        tracing::warn!(message = m.id, kind = %m.kind, %reason, "failed");
        Ok(Outcome::Failed(reason))
    }

    /// The end of the night in `zone` (the clinic's quiet hours), if `now` is inside it.
    fn after_night(&self, now: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
        let rules = &self.setup.rules;
        let end = rules.quiet_hours_end;
        let local = now.with_timezone(&zone);
        let t = local.time();
        if !rules.is_quiet(t) {
            return None;
        }
        let day = if t >= end { local.date_naive() + Duration::days(1) } else { local.date_naive() };
        Some(at_local(day, end, zone).utc())
    }

    pub(crate) fn backoff(&self, attempt: i32) -> Duration {
        let doublings = u32::try_from(attempt.saturating_sub(1).clamp(0, 20)).unwrap_or(0);
        (self.rules.first_backoff * 2_i32.pow(doublings)).min(self.rules.max_backoff)
    }

    /// Renders and hands the message over. A relay or LINE send waits for a turn (rendering
    /// does not), and an accepted one returns it, for the caller to hold until recorded.
    async fn send(&self, m: &Claimed, now: DateTime<Utc>) -> Result<(Delivered, Option<OwnedSemaphorePermit>), (String, SendError)> {
        let internal = |e: String| (String::new(), SendError::Transient { reason: e, retry_after: None });
        let (name, email, language, line_id) = match &m.target {
            DeliveryTarget::Patient(p) => {
                (p.name.clone(), p.email.clone(), if p.language == "en" { Language::En } else { Language::Ja }, p.line_user_id.clone())
            }
            DeliveryTarget::Escort { name, email, .. } => (name.clone(), email.clone(), Language::En, None),
            DeliveryTarget::Coordinator => {
                ("Coordinator".to_owned(), self.rules.coordinator_email.clone().unwrap_or_default(), Language::En, None)
            }
        };
        let change: Option<Change> = match &m.payload {
            Some(p) => Some(serde_json::from_value(p.clone()).map_err(|e| internal(format!("stored calendar change: {e}")))?),
            None => None,
        };
        // An invite goes to the address its UID was made for (a cancellation to the old one).
        let (name, email, language) = match &change {
            Some(c) => (c.appointment.attendee.name.clone(), c.appointment.attendee.email.clone(), c.appointment.attendee.language),
            None => (name, email, language),
        };
        let reader = m.due_zone.parse().unwrap_or(self.setup.clinic.zone);
        let about = change.as_ref().map(|c| c.appointment.event.as_str()).or(m.about.as_deref());
        let escort = match &m.target {
            DeliveryTarget::Escort { id, .. } => Some(id.as_str()),
            _ => None,
        };
        let subject = Subject {
            kind: &m.kind,
            key: &m.key,
            about,
            language,
            name: &name,
            reference: &m.reference,
            read_at: now,
            reader_zone: reader,
            escort,
            both_zones: matches!(m.target, DeliveryTarget::Patient(_)),
            appointment: change.as_ref().map(|c| Shown {
                title: &c.appointment.summary,
                when: &c.appointment.when,
                location: c.appointment.location.as_deref(),
            }),
        };
        let summary = is_summary(&m.kind);
        let feed_url = match (&m.target, summary) {
            (DeliveryTarget::Patient(p), true) => {
                let token = self.store.issue_feed_token(p.id).await.map_err(|e| internal(e.to_string()))?;
                Some(format!("{}/feed/{token}", self.rules.public_url))
            }
            _ => None,
        };
        let mut letter =
            Letter::of(&m.plan.plan, &subject, &self.setup.clinic.name, self.setup.calendar.follow_up_url.as_deref(), feed_url);
        // The patient's own questionnaire link, made as the message goes (only its hash is
        // kept); none once the occasion has begun.
        if let (DeliveryTarget::Patient(_), Some(occasion)) = (&m.target, questionnaire_occasion(m)) {
            let link = self.store.issue_questionnaire_link(m.itinerary_id, occasion, now).await.map_err(|e| internal(e.to_string()))?;
            letter.questionnaire_url = link.map(|secret| format!("{}/questionnaire/{secret}", self.rules.public_url));
        }
        let words = self.templates.compose(&letter).map_err(|e| ("email".to_owned(), SendError::Permanent(e.to_string())))?;

        // LINE carries reminders (text) for patients who linked it, within the month's budget;
        // anything with a calendar goes by email.
        if let (Some(line), Some(to), None, false) = (&self.line, line_id.as_deref(), &change, summary) {
            match self.line_allowed(now).await {
                Ok(true) => {
                    let text = format!("{}\n\n{}", words.subject, words.text.trim_end());
                    let turn = self.sends.clone().acquire_owned().await.map_err(|e| internal(e.to_string()))?;
                    // Buttons to answer with: the postback names this message.
                    let buttons = itinerary_notify::line::answer_buttons(m.id, language == Language::En);
                    match line.push_asking(to, &[text], &buttons, &retry_key(m.id, reference_salt(&m.reference))).await {
                        Ok(r) => return Ok((Delivered { channel: "line".into(), provider_ref: Some(r) }, Some(turn))),
                        Err(e @ SendError::Transient { .. }) => return Err(("line".into(), e)),
                        Err(SendError::Permanent(e) | SendError::Configuration(e)) => {
                            tracing::warn!(message = m.id, error = %e, "LINE refused; sending by email");
                        }
                    }
                }
                Ok(false) => tracing::info!(message = m.id, "LINE budget for the month used up; sending by email"),
                Err(e) => return Err(internal(e.to_string())),
            }
        }

        let calendar = match (&change, summary) {
            (Some(c), _) => {
                let ed = Edition {
                    settings: &self.setup.calendar,
                    organizer_name: self.setup.calendar.organizer_name.as_deref().unwrap_or(&self.setup.clinic.name),
                    stamp: m.plan.plan.planned_at.utc(),
                };
                let method = if c.kind == ChangeKind::Cancel { Method::Cancel } else { Method::Request };
                Some(CalendarPart {
                    method: method.as_str(),
                    ics: invite(&ed, &c.appointment, c.sequence, method),
                    file_name: "invite.ics".into(),
                })
            }
            (None, true) => {
                let ics = self.store.itinerary_ics(&self.setup, m.itinerary_id).await.map_err(|e| internal(e.to_string()))?;
                Some(CalendarPart { method: "PUBLISH", ics, file_name: "itinerary.ics".into() })
            }
            (None, false) => None,
        };
        let channel = self.email.channel().to_owned();
        let permanent = |e: itinerary_notify::NotifyError| (channel.clone(), SendError::Permanent(e.to_string()));
        let organizer = self.setup.calendar.organizer_name.as_deref().unwrap_or(&self.setup.clinic.name);
        let envelope = Envelope {
            from: mime::mailbox("calendar.organizer_email", organizer, &self.setup.calendar.organizer_email).map_err(permanent)?,
            to: mime::mailbox("recipient email", &name, &email).map_err(permanent)?,
            message_id: format!("<{}.m{}@{}>", m.reference, m.id, self.setup.calendar.uid_domain),
        };
        let message = mime::email(&envelope, &words, calendar.as_ref()).map_err(permanent)?;
        let file = format!("{}.m{}.{}", m.reference, m.id, m.kind);
        // The outbox writes each file once by name, so a crash cannot send it twice.
        let turn = match &self.email {
            EmailTransport::Smtp(..) => Some(self.sends.clone().acquire_owned().await.map_err(|e| internal(e.to_string()))?),
            EmailTransport::Outbox(_) => None,
        };
        match self.email.send(&message, &file).await {
            Ok(r) => Ok((Delivered { channel, provider_ref: Some(r) }, turn)),
            Err(e) => Err((channel, e)),
        }
    }

    /// Records a send the provider accepted, trying again for two minutes while the database
    /// does not answer: the message was sent, and giving up would let another worker send it
    /// again once its claim lapsed. (The claim stays held and renewed meanwhile.)
    async fn record_sent_patiently(&self, id: i32, attempt: i32, d: &Delivered, now: DateTime<Utc>) -> Result<bool, WorkerError> {
        let mut tries = 0;
        loop {
            match self.store.record_sent(id, &self.name, attempt, d, now).await {
                Ok(mine) => return Ok(mine),
                Err(e) if tries < 120 => {
                    if tries == 0 {
                        tracing::warn!(message = id, error = %e, "a sent message could not be recorded; trying again");
                    }
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub(crate) async fn line_allowed(&self, now: DateTime<Utc>) -> Result<bool, WorkerError> {
        use chrono::Datelike;
        // LINE counts its allowance per calendar month in Japan time.
        let tokyo = now.with_timezone(&chrono_tz::Asia::Tokyo);
        let first = tokyo.date_naive().with_day(1).unwrap_or(tokyo.date_naive());
        let since = at_local(first, NaiveTime::MIN, chrono_tz::Asia::Tokyo).utc();
        let sent = self.store.sent_since("line", since).await? + self.store.line_notices_sent_since(since).await?;
        Ok(sent < self.rules.line_monthly_budget)
    }
}

/// The random part of an itinerary reference (`it-` and 12 hex digits): a salt for LINE
/// retry keys that differs between deployments.
/// The questionnaire occasion a message carries a link to: the outcomes messages name it in
/// their key (`outcomes.baseline.invite`), the follow-up reminders are about it.
fn questionnaire_occasion(m: &Claimed) -> Option<&str> {
    match m.kind.as_str() {
        "outcome_invite" | "outcome_nudge" => m.key.strip_prefix("outcomes.").and_then(|k| k.rsplit_once('.')).map(|(o, _)| o),
        "follow_up_reminder" | "reevaluation_reminder" => m.about.as_deref(),
        _ => None,
    }
}

fn reference_salt(reference: &str) -> u64 {
    u64::from_str_radix(reference.trim_start_matches("it-"), 16).unwrap_or(0)
}

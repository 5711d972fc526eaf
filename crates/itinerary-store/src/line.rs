//! What arrives from LINE's webhook (issue 16): each event applied once, by its
//! `webhookEventId`, in the transaction that records it, so a redelivered event (LINE retries
//! when an answer is slow or lost) changes nothing twice. A follow records the LINE user; an
//! unfollow unlinks every patient linked to them, so their messages go by email again; a text
//! or a postback from a linked user is kept as a message from that patient; from anyone else it
//! is not kept (there is no one to file it under, and it may hold health details).
//!
//! Linking (LINE's account-link flow): a follow, or a message from a LINE user linked to
//! nobody, queues a `link_offer` notice, which the worker sends with a fresh link token from
//! LINE; the patient proves who they are on `/line/link` (their itinerary's reference and their
//! birth date), which makes a nonce (`start_line_link`: random, stored hashed, single use,
//! [`NONCE_LIFETIME`]); LINE's `accountLink` event brings the nonce back with the LINE user
//! id, and only then is the patient linked. A nonce unknown, used or expired links nobody.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, TransactionTrait};
use serde::Serialize;
use serde_json::json;

use crate::entity::{itinerary, line_contact, line_event, line_link_nonce, line_notice, patient, patient_message};
use crate::people::audit;
use crate::unique::Unique;
use crate::{Store, StoreError};

/// One webhook event, as the API checked and parsed it.
#[derive(Clone, Debug)]
pub struct LineEvent {
    pub webhook_event_id: String,
    /// `follow`, `unfollow`, `message`, `postback`, `accountLink`, …
    pub kind: String,
    pub user_id: Option<String>,
    /// A text message's text, or a postback's `data`.
    pub text: Option<String>,
    /// An `accountLink` event's `link`: whether LINE says it succeeded, and our nonce.
    pub link: Option<AccountLink>,
    /// A reminder's button (a postback of ours): `ack` or `call`, and the scheduled message.
    pub answer: Option<(String, i32)>,
    /// The event's reply token (single use, short-lived), for a free reply.
    pub reply_token: Option<String>,
    /// LINE's `timestamp`: when the event happened (ms since the epoch).
    pub timestamp_ms: Option<i64>,
}

/// What an `accountLink` event reports.
#[derive(Clone, Debug)]
pub struct AccountLink {
    /// `link.result == "ok"`.
    pub ok: bool,
    pub nonce: String,
}

/// How long a nonce made on the linking page stays good: LINE's link token, which the
/// patient carries to LINE with it, lives ten minutes too.
pub const NONCE_LIFETIME: chrono::Duration = chrono::Duration::minutes(10);

/// A LINE user is offered the linking URL at most once in this long (a patient writing five
/// messages before linking gets one offer, not five).
const OFFER_EVERY: chrono::Duration = chrono::Duration::minutes(2);

/// A notice to a LINE user that belongs to no itinerary, as the worker claimed it.
#[derive(Clone, Debug)]
pub struct LineNotice {
    pub id: i32,
    pub line_user_id: String,
    /// `link_offer` or `linked`.
    pub kind: String,
    /// This attempt's number, from 1.
    pub attempt: i32,
    pub retry_key: String,
    /// The patient's language once linked (`linked` notices), else None: Japanese first.
    pub language: Option<String>,
    /// The reply token of the event it answers, on its first attempt only (it lives a minute).
    pub reply_token: Option<String>,
    /// For `linked`: the patient linked (their feed goes with the notice).
    pub patient_id: Option<i32>,
}

/// A message from a patient, for the coordinator.
#[derive(Clone, Debug, Serialize)]
pub struct PatientMessageView {
    pub id: i32,
    pub channel: String,
    /// `text` (written by the patient) or `postback` (a button they pressed).
    pub kind: String,
    pub body: String,
    pub received_at: DateTime<Utc>,
    /// For an answer: the scheduled message it answers, and `ack` or `call`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
}

impl Store {
    /// Applies the events not seen before and records every one; answers what was done with
    /// each, in order (`already seen` for a redelivery).
    pub async fn record_line_events(&self, events: &[LineEvent], now: DateTime<Utc>) -> Result<Vec<String>, StoreError> {
        let txn = self.begin_write().await?;
        let mut outcomes = Vec::with_capacity(events.len());
        for e in events {
            // The event's id first, in a savepoint: on PostgreSQL a second delivery arriving at
            // once waits for the first to commit, then finds the id taken and does nothing.
            let seen = {
                let sp = TransactionTrait::begin(&txn).await?;
                let row = line_event::ActiveModel {
                    webhook_event_id: Set(e.webhook_event_id.clone()),
                    kind: Set(e.kind.clone()),
                    received_at: Set(now),
                    outcome: Set(String::new()),
                };
                match row.insert(&sp).await {
                    Ok(_) => {
                        sp.commit().await?;
                        false
                    }
                    Err(err) if matches!(err.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_))) => {
                        sp.rollback().await?;
                        true
                    }
                    Err(err) => return Err(err.into()),
                }
            };
            if seen {
                outcomes.push("already seen".to_owned());
                continue;
            }
            let outcome = match (e.kind.as_str(), e.user_id.as_deref()) {
                ("follow" | "unfollow", Some(user)) if overtaken(&txn, user, e.timestamp_ms).await? => {
                    format!("{}: older than the follow or unfollow applied last; ignored", e.kind)
                }
                ("follow", Some(user)) => {
                    follow(&txn, user, now).await?;
                    mark_event(&txn, user, e.timestamp_ms).await?;
                    if linked_patients(&txn, user).await?.is_empty() && offer_link(&txn, user, e.reply_token.as_deref(), now).await? {
                        "followed; the linking URL offered".to_owned()
                    } else {
                        "followed".to_owned()
                    }
                }
                ("accountLink", Some(user)) => account_link(&txn, user, e.link.as_ref(), e.reply_token.as_deref(), now).await?,
                ("unfollow", Some(user)) => {
                    use sea_orm::sea_query::Expr;
                    if let Some(c) = line_contact::Entity::find_by_id(user.to_owned()).unique(&txn).await? {
                        let mut c: line_contact::ActiveModel = c.into();
                        c.unfollowed_at = Set(Some(now));
                        c.update(&txn).await?;
                    }
                    mark_event(&txn, user, e.timestamp_ms).await?;
                    let linked = linked_patients(&txn, user).await?;
                    patient::Entity::update_many()
                        .col_expr(patient::Column::LineUserId, Expr::value(Option::<String>::None))
                        .filter(patient::Column::LineUserId.eq(user))
                        .exec(&txn)
                        .await?;
                    for p in &linked {
                        audit(&txn, None, "unlink_line", "patient", &p.id.to_string(), json!({ "why": "unfollow" })).await?;
                    }
                    forget_line(&txn, &linked.iter().map(|p| p.id).collect::<Vec<_>>(), now).await?;
                    // A blocked account cannot be written to: what was waiting for them is dropped.
                    line_notice::Entity::update_many()
                        .col_expr(line_notice::Column::Status, Expr::value("cancelled"))
                        .filter(line_notice::Column::LineUserId.eq(user))
                        .filter(line_notice::Column::Status.eq("pending"))
                        .exec(&txn)
                        .await?;
                    format!("unfollowed; {} patient(s) unlinked", linked.len())
                }
                ("message" | "postback", Some(user)) => {
                    let linked = linked_patients(&txn, user).await?;
                    match (linked.first(), &e.text) {
                        (Some(p), Some(text)) => {
                            // An answer counts only for a message sent to one of this user's
                            // patients; the message names the patient it is filed under.
                            let answered = match &e.answer {
                                Some((code, message)) => {
                                    answered_message(&txn, &linked, *message).await?.map(|(pid, m)| (pid, m, code.clone()))
                                }
                                None => None,
                            };
                            let (patient_id, message_id, answer) = match answered {
                                Some((pid, m, code)) => (pid, Some(m), Some(code)),
                                None => (p.id, None, None),
                            };
                            let kind = match (&answer, e.kind.as_str()) {
                                (Some(_), _) => "answer",
                                (None, "message") => "text",
                                (None, _) => "postback",
                            };
                            patient_message::ActiveModel {
                                patient_id: Set(patient_id),
                                channel: Set("line".to_owned()),
                                kind: Set(kind.to_owned()),
                                body: Set(text.clone()),
                                webhook_event_id: Set(Some(e.webhook_event_id.clone())),
                                received_at: Set(now),
                                message_id: Set(message_id),
                                answer: Set(answer.clone()),
                                ..Default::default()
                            }
                            .insert(&txn)
                            .await?;
                            match answer {
                                Some(a) => format!("kept for the patient: answer {a}"),
                                None => "kept for the patient".to_owned(),
                            }
                        }
                        (Some(_), None) => "not text: not kept".to_owned(),
                        (None, _) if offer_link(&txn, user, e.reply_token.as_deref(), now).await? => {
                            "from a LINE user linked to no patient: not kept; the linking URL offered".to_owned()
                        }
                        (None, _) => "from a LINE user linked to no patient: not kept".to_owned(),
                    }
                }
                (kind, _) => format!("{kind}: not handled"),
            };
            line_event::Entity::update_many()
                .col_expr(line_event::Column::Outcome, sea_orm::sea_query::Expr::value(outcome.clone()))
                .filter(line_event::Column::WebhookEventId.eq(e.webhook_event_id.clone()))
                .exec(&txn)
                .await?;
            outcomes.push(outcome);
        }
        crate::commit(txn).await?;
        Ok(outcomes)
    }
}

/// Whether a follow or unfollow that happened at `at` (LINE's timestamp) is older than the
/// one applied last for `user`: a redelivery arriving after a newer event.
async fn overtaken(txn: &sea_orm::DatabaseTransaction, user: &str, at: Option<i64>) -> Result<bool, StoreError> {
    let Some(at) = at else { return Ok(false) };
    let last = line_contact::Entity::find_by_id(user.to_owned()).unique(txn).await?.and_then(|c| c.last_event_ms);
    Ok(last.is_some_and(|last| at < last))
}

/// Records `at` as the time of the follow or unfollow applied last for `user`.
async fn mark_event(txn: &sea_orm::DatabaseTransaction, user: &str, at: Option<i64>) -> Result<(), StoreError> {
    use sea_orm::sea_query::Expr;
    if let Some(at) = at {
        line_contact::Entity::update_many()
            .col_expr(line_contact::Column::LastEventMs, Expr::value(at))
            .filter(line_contact::Column::LineUserId.eq(user))
            .exec(txn)
            .await?;
    }
    Ok(())
}

/// The LINE user follows the clinic's account (again): one row per user, whoever writes first.
async fn follow(txn: &sea_orm::DatabaseTransaction, user: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
    use sea_orm::sea_query::Expr;
    let again = || {
        line_contact::Entity::update_many()
            .col_expr(line_contact::Column::FollowedAt, Expr::value(now))
            .col_expr(line_contact::Column::UnfollowedAt, Expr::value(Option::<DateTime<Utc>>::None))
            .filter(line_contact::Column::LineUserId.eq(user))
            .exec(txn)
    };
    if again().await?.rows_affected > 0 {
        return Ok(());
    }
    let sp = TransactionTrait::begin(txn).await?;
    let row = line_contact::ActiveModel {
        line_user_id: Set(user.to_owned()),
        followed_at: Set(now),
        unfollowed_at: Set(None),
        last_event_ms: Set(None),
    };
    match row.insert(&sp).await {
        Ok(_) => sp.commit().await?,
        Err(err) if matches!(err.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_))) => {
            sp.rollback().await?;
            again().await?;
        }
        Err(err) => return Err(err.into()),
    }
    Ok(())
}

impl Store {
    /// What the patient sent, newest first.
    pub async fn patient_messages(&self, patient_id: i32) -> Result<Vec<PatientMessageView>, StoreError> {
        self.patient(patient_id).await?;
        Ok(patient_message::Entity::find()
            .filter(patient_message::Column::PatientId.eq(patient_id))
            .order_by_desc(patient_message::Column::ReceivedAt)
            .order_by_desc(patient_message::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|m| PatientMessageView {
                id: m.id,
                channel: m.channel,
                kind: m.kind,
                body: m.body,
                received_at: m.received_at,
                message_id: m.message_id,
                answer: m.answer,
            })
            .collect())
    }
}

/// The patient and message a button answered, when message `message` went to one of `linked`
/// (a postback naming someone else's message is kept as a plain postback, not as an answer).
async fn answered_message(
    txn: &sea_orm::DatabaseTransaction,
    linked: &[patient::Model],
    message: i32,
) -> Result<Option<(i32, i32)>, StoreError> {
    use crate::entity::scheduled_message;
    let Some(m) = scheduled_message::Entity::find_by_id(message).unique(txn).await? else { return Ok(None) };
    let Some(it) = itinerary::Entity::find_by_id(m.itinerary_id).unique(txn).await? else { return Ok(None) };
    let to_patient = m.recipient.get("role").and_then(|r| r.as_str()) == Some("patient");
    Ok(linked.iter().find(|p| p.id == it.patient_id && to_patient).map(|p| (p.id, m.id)))
}

/// What a LINE link gave, taken back when it ends: the feed URLs sent on LINE stop working,
/// and the patients' unspent nonces are gone (none can link again behind the unlinking).
async fn forget_line(txn: &sea_orm::DatabaseTransaction, patients: &[i32], now: DateTime<Utc>) -> Result<(), StoreError> {
    use crate::entity::feed_token;
    use sea_orm::sea_query::Expr;
    if patients.is_empty() {
        return Ok(());
    }
    feed_token::Entity::update_many()
        .col_expr(feed_token::Column::RevokedAt, Expr::value(now))
        .filter(feed_token::Column::PatientId.is_in(patients.iter().copied()))
        .filter(feed_token::Column::Origin.eq("line"))
        .filter(feed_token::Column::RevokedAt.is_null())
        .exec(txn)
        .await?;
    line_link_nonce::Entity::delete_many()
        .filter(line_link_nonce::Column::PatientId.is_in(patients.iter().copied()))
        .filter(line_link_nonce::Column::UsedAt.is_null())
        .exec(txn)
        .await?;
    Ok(())
}

/// The patients linked to a LINE user, the first linked first (what they write is filed there).
async fn linked_patients(txn: &sea_orm::DatabaseTransaction, user: &str) -> Result<Vec<patient::Model>, StoreError> {
    Ok(patient::Entity::find().filter(patient::Column::LineUserId.eq(user)).order_by_asc(patient::Column::Id).all(txn).await?)
}

/// Queues the linking URL for `user`, unless one was queued within [`OFFER_EVERY`]. Whether
/// it queued one.
async fn offer_link(
    txn: &sea_orm::DatabaseTransaction,
    user: &str,
    reply_token: Option<&str>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let recent = line_notice::Entity::find()
        .filter(line_notice::Column::LineUserId.eq(user))
        .filter(line_notice::Column::Kind.eq("link_offer"))
        .filter(line_notice::Column::CreatedAt.gt(now - OFFER_EVERY))
        .one(txn)
        .await?;
    if recent.is_some() {
        return Ok(false);
    }
    queue_notice(txn, user, "link_offer", None, reply_token, now).await?;
    Ok(true)
}

async fn queue_notice(
    txn: &sea_orm::DatabaseTransaction,
    user: &str,
    kind: &str,
    patient_id: Option<i32>,
    reply_token: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    line_notice::ActiveModel {
        line_user_id: Set(user.to_owned()),
        kind: Set(kind.to_owned()),
        patient_id: Set(patient_id),
        status: Set("pending".to_owned()),
        attempts: Set(0),
        created_at: Set(now),
        due_at: Set(now),
        retry_key: Set(uuid_v4()),
        reply_token: Set(reply_token.filter(|t| t.len() <= 255).map(str::to_owned)),
        ..Default::default()
    }
    .insert(txn)
    .await?;
    Ok(())
}

/// A random UUID (version 4) for `X-Line-Retry-Key`.
fn uuid_v4() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// LINE's `accountLink` event: the nonce names the patient who proved who they are on our
/// page; a good one links them to `user` (and is spent), anything else links nobody.
async fn account_link(
    txn: &sea_orm::DatabaseTransaction,
    user: &str,
    link: Option<&AccountLink>,
    reply_token: Option<&str>,
    now: DateTime<Utc>,
) -> Result<String, StoreError> {
    use sea_orm::sea_query::Expr;
    let Some(link) = link else { return Ok("accountLink without link: refused".to_owned()) };
    let hash = crate::hash_token(&link.nonce);
    // Spent whatever the result: a nonce opens one attempt.
    let spent = line_link_nonce::Entity::update_many()
        .col_expr(line_link_nonce::Column::UsedAt, Expr::value(now))
        .filter(line_link_nonce::Column::NonceHash.eq(hash.clone()))
        .filter(line_link_nonce::Column::UsedAt.is_null())
        .filter(line_link_nonce::Column::ExpiresAt.gt(now))
        .exec(txn)
        .await?;
    if spent.rows_affected == 0 {
        tracing::warn!("LINE accountLink with a nonce that is unknown, used or expired: nobody linked");
        return Ok("accountLink refused: the nonce is unknown, used or expired".to_owned());
    }
    if !link.ok {
        return Ok("accountLink: LINE reports the link failed; nobody linked".to_owned());
    }
    let nonce = line_link_nonce::Entity::find_by_id(hash).unique(txn).await?.ok_or(StoreError::corrupt("line_link_nonce", "vanished"))?;
    let Some(p) = patient::Entity::find_by_id(nonce.patient_id).unique(txn).await? else {
        return Ok("accountLink: the patient is gone; nobody linked".to_owned());
    };
    // Linked meanwhile (another LINE account finished first): never moved silently.
    if p.line_user_id.as_deref().is_some_and(|u| u != user) {
        return Ok("accountLink refused: the patient is linked to another LINE account".to_owned());
    }
    let mut m: patient::ActiveModel = p.into();
    m.line_user_id = Set(Some(user.to_owned()));
    m.line_linked_at = Set(Some(now));
    m.updated_at = Set(now);
    let p = m.update(txn).await?;
    follow(txn, user, now).await?;
    audit(txn, None, "link_line", "patient", &p.id.to_string(), json!({ "via": "account_link" })).await?;
    queue_notice(txn, user, "linked", Some(p.id), reply_token, now).await?;
    Ok("accountLink: the patient is linked".to_owned())
}

/// What the linking page's proof came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkProof {
    /// The nonce to send to LINE with the link token (shown once; stored hashed).
    Nonce(String),
    /// No itinerary has this reference, or its patient another birth date or address (which
    /// one is not said).
    NoMatch,
    /// Too many wrong proofs for this patient lately: refused until a day has passed.
    Locked,
    /// The patient is linked to a LINE account already: a coordinator unlinks it first, so a
    /// link is never silently moved to someone else's LINE.
    AlreadyLinked,
}

/// Wrong proofs for one patient's itineraries before linking is refused for [`LOCK_FOR`].
pub const LINK_FAILURES_ALLOWED: i32 = 5;
const LOCK_FOR: chrono::Duration = chrono::Duration::hours(24);

impl Store {
    /// The linking page's check: `reference` (an itinerary's, from the booking confirmation),
    /// the patient's birth date and the address their mail goes to. The reference alone is not
    /// secret (escorts' invites carry it), so all three must match, and a patient whose proofs
    /// failed [`LINK_FAILURES_ALLOWED`] times within a day is refused for a day. On a match, a
    /// fresh nonce for LINE's account link.
    pub async fn start_line_link(
        &self,
        reference: &str,
        birth_date: chrono::NaiveDate,
        email: &str,
        now: DateTime<Utc>,
    ) -> Result<LinkProof, StoreError> {
        let reference = reference.trim().to_ascii_lowercase();
        let txn = self.begin_write().await?;
        let Some(it) = itinerary::Entity::find().filter(itinerary::Column::Reference.eq(reference)).unique(&txn).await? else {
            return Ok(LinkProof::NoMatch);
        };
        let Some(p) = patient::Entity::find_by_id(it.patient_id).unique(&txn).await? else { return Ok(LinkProof::NoMatch) };
        let recent = p.line_link_failed_at.is_some_and(|t| t > now - LOCK_FOR);
        let failures = if recent { p.line_link_failures } else { 0 };
        if failures >= LINK_FAILURES_ALLOWED {
            return Ok(LinkProof::Locked);
        }
        if p.birth_date != birth_date || !p.email.trim().eq_ignore_ascii_case(email.trim()) {
            let id = p.id;
            let mut m: patient::ActiveModel = p.into();
            m.line_link_failures = Set(failures + 1);
            m.line_link_failed_at = Set(Some(now));
            m.update(&txn).await?;
            audit(&txn, None, "line_link_refused", "patient", &id.to_string(), json!({ "failures": failures + 1 })).await?;
            crate::commit(txn).await?;
            return Ok(LinkProof::NoMatch);
        }
        if p.line_user_id.is_some() {
            return Ok(LinkProof::AlreadyLinked);
        }
        if failures > 0 {
            let mut m: patient::ActiveModel = p.clone().into();
            m.line_link_failures = Set(0);
            m.update(&txn).await?;
        }
        let nonce = crate::Token::generate("");
        line_link_nonce::ActiveModel {
            nonce_hash: Set(nonce.hash),
            patient_id: Set(p.id),
            created_at: Set(now),
            expires_at: Set(now + NONCE_LIFETIME),
            used_at: Set(None),
        }
        .insert(&txn)
        .await?;
        // Spent and expired nonces are of no further use.
        line_link_nonce::Entity::delete_many()
            .filter(line_link_nonce::Column::ExpiresAt.lt(now - chrono::Duration::days(1)))
            .exec(&txn)
            .await?;
        audit(&txn, None, "start_line_link", "patient", &p.id.to_string(), json!({})).await?;
        crate::commit(txn).await?;
        Ok(LinkProof::Nonce(nonce.secret))
    }

    /// A coordinator unlinks the patient's LINE (the patient asked, or it was linked by
    /// mistake): their messages go by email again.
    pub async fn unlink_line(&self, by: i32, patient_id: i32, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let txn = self.begin_write().await?;
        let p = patient::Entity::find_by_id(patient_id)
            .unique(&txn)
            .await?
            .ok_or(StoreError::NotFound { entity: "patient", id: patient_id.to_string() })?;
        if p.line_user_id.is_none() {
            return Ok(false);
        }
        let mut m: patient::ActiveModel = p.into();
        m.line_user_id = Set(None);
        m.line_linked_at = Set(None);
        m.updated_at = Set(now);
        m.update(&txn).await?;
        forget_line(&txn, &[patient_id], now).await?;
        audit(&txn, Some(by), "unlink_line", "patient", &patient_id.to_string(), json!({ "why": "coordinator" })).await?;
        crate::commit(txn).await?;
        Ok(true)
    }

    /// Claims up to `limit` notices due by `due_by` (the service's clock), or whose claim is
    /// older than `lease` (a worker that died mid-send), for `worker`. Claims run on the
    /// system clock (`now`), as messages' do: a test clock that jumps must not make them stale.
    pub async fn claim_line_notices(
        &self,
        worker: &str,
        due_by: DateTime<Utc>,
        now: DateTime<Utc>,
        lease: chrono::Duration,
        limit: u64,
    ) -> Result<Vec<LineNotice>, StoreError> {
        use sea_orm::QuerySelect;
        use sea_orm::sea_query::{Condition, Expr, ExprTrait};
        let stale = now - lease;
        let due = Condition::any()
            .add(Condition::all().add(line_notice::Column::Status.eq("pending")).add(line_notice::Column::DueAt.lte(due_by)))
            .add(Condition::all().add(line_notice::Column::Status.eq("sending")).add(line_notice::Column::ClaimedAt.lt(stale)));
        let candidates =
            line_notice::Entity::find().filter(due.clone()).order_by_asc(line_notice::Column::Id).limit(limit).all(&self.db).await?;
        let mut claimed = Vec::new();
        for n in candidates {
            let txn = self.begin_write().await?;
            let taken = line_notice::Entity::update_many()
                .col_expr(line_notice::Column::Status, Expr::value("sending"))
                .col_expr(line_notice::Column::ClaimedBy, Expr::value(worker))
                .col_expr(line_notice::Column::ClaimedAt, Expr::value(now))
                .col_expr(line_notice::Column::Attempts, Expr::col(line_notice::Column::Attempts).add(1))
                .filter(line_notice::Column::Id.eq(n.id))
                .filter(due.clone())
                .exec(&txn)
                .await?;
            // The patient named when the link was made, if still linked to this LINE user.
            let linked = match n.patient_id {
                Some(pid) => patient::Entity::find_by_id(pid)
                    .unique(&txn)
                    .await?
                    .filter(|p| p.line_user_id.as_deref() == Some(n.line_user_id.as_str())),
                None => None,
            };
            crate::commit(txn).await?;
            if taken.rows_affected == 1 {
                claimed.push(LineNotice {
                    id: n.id,
                    line_user_id: n.line_user_id,
                    kind: n.kind,
                    attempt: n.attempts + 1,
                    retry_key: n.retry_key,
                    language: linked.as_ref().map(|p| p.language.clone()),
                    patient_id: linked.as_ref().map(|p| p.id),
                    // A minute's life: only the first attempt may use it.
                    reply_token: if n.attempts == 0 { n.reply_token } else { None },
                });
            }
        }
        Ok(claimed)
    }

    /// Records what became of a claimed notice: `Ok(())` sent; `Err((reason, Some(when)))`
    /// tried again then; `Err((reason, None))` given up. Only the claiming worker's record counts.
    pub async fn finish_line_notice(
        &self,
        id: i32,
        worker: &str,
        outcome: Result<&str, (String, Option<DateTime<Utc>>)>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        use sea_orm::sea_query::Expr;
        let q = line_notice::Entity::update_many()
            .filter(line_notice::Column::Id.eq(id))
            .filter(line_notice::Column::Status.eq("sending"))
            .filter(line_notice::Column::ClaimedBy.eq(worker));
        let q = match outcome {
            Ok(by) => q
                .col_expr(line_notice::Column::Status, Expr::value("sent"))
                .col_expr(line_notice::Column::SentAt, Expr::value(now))
                .col_expr(line_notice::Column::SentBy, Expr::value(by)),
            Err((reason, Some(when))) => q
                .col_expr(line_notice::Column::Status, Expr::value("pending"))
                .col_expr(line_notice::Column::DueAt, Expr::value(when))
                .col_expr(line_notice::Column::LastError, Expr::value(reason)),
            Err((reason, None)) => {
                q.col_expr(line_notice::Column::Status, Expr::value("failed")).col_expr(line_notice::Column::LastError, Expr::value(reason))
            }
        };
        let txn = self.begin_write().await?;
        q.exec(&txn).await?;
        crate::commit(txn).await?;
        Ok(())
    }

    /// LINE notices pushed since `since` (they spend the month's allowance like reminders;
    /// replies are free).
    pub async fn line_notices_sent_since(&self, since: DateTime<Utc>) -> Result<u64, StoreError> {
        use sea_orm::PaginatorTrait;
        Ok(line_notice::Entity::find()
            .filter(line_notice::Column::Status.eq("sent"))
            .filter(line_notice::Column::SentBy.eq("push"))
            .filter(line_notice::Column::SentAt.gte(since))
            .count(&self.db)
            .await?)
    }
}

/// A patient who pressed "please call me" under a reminder.
#[derive(Clone, Debug, Serialize)]
pub struct CallRequest {
    pub patient_id: i32,
    pub patient_name: String,
    /// The itinerary of the reminder answered.
    pub itinerary_id: Option<i32>,
    /// The reminder's key (`departure_day`, `followup_1m.reminder`, …).
    pub about: Option<String>,
    pub received_at: DateTime<Utc>,
}

impl Store {
    /// Who asked to be called since `since`, newest first.
    pub async fn call_requests(&self, since: DateTime<Utc>, limit: u64) -> Result<Vec<CallRequest>, StoreError> {
        use crate::entity::scheduled_message;
        use sea_orm::QuerySelect;
        let asked = patient_message::Entity::find()
            .filter(patient_message::Column::Answer.eq("call"))
            .filter(patient_message::Column::ReceivedAt.gte(since))
            .order_by_desc(patient_message::Column::ReceivedAt)
            .limit(limit)
            .all(&self.db)
            .await?;
        let mut out = Vec::with_capacity(asked.len());
        for a in asked {
            let Some(p) = patient::Entity::find_by_id(a.patient_id).unique(&self.db).await? else { continue };
            let m = match a.message_id {
                Some(id) => scheduled_message::Entity::find_by_id(id).unique(&self.db).await?,
                None => None,
            };
            out.push(CallRequest {
                patient_id: p.id,
                patient_name: p.name,
                itinerary_id: m.as_ref().map(|m| m.itinerary_id),
                about: m.map(|m| m.key),
                received_at: a.received_at,
            });
        }
        Ok(out)
    }
}

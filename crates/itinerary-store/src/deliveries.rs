//! The delivery ledger: which scheduled messages are due, who is sending one now, and what
//! became of each attempt. A message moves `pending → queued → sending → sent` (or `failed`,
//! `skipped`, back to `pending` for a retry); every step is one conditional UPDATE, so two
//! workers never both hold it, and a "sent" delivery row carries the message id in a unique
//! column, so the database itself refuses a second one.

use chrono::{DateTime, Duration, Utc};
use itinerary_core::Plan;
use itinerary_core::plan::Recipient;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use serde::Serialize;

use std::sync::Arc;

use crate::entity::{clock, delivery, escort, feed_token, itinerary, itinerary_version, scheduled_message};
use crate::unique::Unique;
use crate::{PatientView, Store, StoreError, Token};

/// Where a claimed message goes.
#[derive(Clone, Debug)]
pub enum DeliveryTarget {
    Patient(PatientView),
    Escort { id: String, name: String, email: String },
    Coordinator,
}

/// A message this worker now holds, with what rendering it needs.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub id: i32,
    pub itinerary_id: i32,
    pub reference: String,
    pub version: i32,
    pub key: String,
    pub kind: String,
    pub due_at: DateTime<Utc>,
    pub due_zone: String,
    pub before_at: Option<DateTime<Utc>>,
    pub about: Option<String>,
    pub if_late: String,
    /// 1 on the first attempt.
    pub attempt: i32,
    /// Why the last attempt failed or waited, if one did.
    pub last_error: Option<String>,
    pub payload: Option<serde_json::Value>,
    /// The message's itinerary version: its plan, reference and patient.
    pub plan: Arc<VersionPlan>,
    pub target: DeliveryTarget,
    /// Same key, same event time, already sent by an earlier version: nothing new to say.
    pub already_sent: bool,
    /// For a cancellation: whether anything was ever sent under its UID.
    pub uid_was_sent: bool,
    /// A worker whose claim had lapsed sent it already (a `late` delivery): do not send again.
    pub delivered_late: bool,
    /// When the first attempt failed, for a retry (retries stop after `retry_hours` from it).
    pub first_attempt_at: Option<DateTime<Utc>>,
}

/// The confirmation and the change notice: the whole itinerary, attached as PUBLISH.
pub fn is_summary(kind: &str) -> bool {
    matches!(kind, "booking_confirmation" | "itinerary_changed")
}

/// A message that carries a calendar (a summary, or an invite, update or cancellation).
pub fn carries_calendar(kind: &str) -> bool {
    is_summary(kind) || kind.starts_with("calendar_")
}

/// An itinerary version as the worker needs it; stored versions never change, so it is cached.
#[derive(Debug)]
pub struct VersionPlan {
    pub reference: String,
    pub patient_id: i32,
    pub plan: Plan,
}

/// What the transport answered for a message it accepted.
#[derive(Clone, Debug)]
pub struct Delivered {
    pub channel: String,
    pub provider_ref: Option<String>,
}

/// A message that could not be delivered, for the coordinator.
#[derive(Clone, Debug, Serialize)]
pub struct FailedMessage {
    pub message_id: i32,
    pub itinerary_id: i32,
    pub key: String,
    pub kind: String,
    pub recipient: serde_json::Value,
    pub due_at: DateTime<Utc>,
    pub attempts: i32,
    pub error: Option<String>,
}

impl From<scheduled_message::Model> for FailedMessage {
    fn from(m: scheduled_message::Model) -> Self {
        FailedMessage {
            message_id: m.id,
            itinerary_id: m.itinerary_id,
            key: m.key,
            kind: m.kind,
            recipient: m.recipient,
            due_at: m.due_at,
            attempts: m.attempts,
            error: m.last_error,
        }
    }
}

/// The service's idea of now: the system clock, or in tests and demos the system clock plus an
/// offset kept in the database, so every process of a deployment agrees on it.
#[derive(Clone, Debug)]
pub enum Clock {
    System,
    Test(Store),
}

impl Clock {
    pub async fn now(&self) -> Result<DateTime<Utc>, StoreError> {
        match self {
            Clock::System => Ok(Utc::now()),
            Clock::Test(store) => Ok(Utc::now() + Duration::milliseconds(store.clock_offset().await?)),
        }
    }

    pub fn is_test(&self) -> bool {
        matches!(self, Clock::Test(_))
    }
}

impl Store {
    /// The test clock's offset from the system clock, in milliseconds (0 when never set).
    pub async fn clock_offset(&self) -> Result<i64, StoreError> {
        Ok(clock::Entity::find_by_id(1).unique(&self.db).await?.map_or(0, |c| c.offset_ms))
    }

    pub async fn set_clock_offset(&self, offset_ms: i64) -> Result<(), StoreError> {
        let row = clock::ActiveModel { id: Set(1), offset_ms: Set(offset_ms), updated_at: Set(Utc::now()) };
        if clock::Entity::find_by_id(1).unique(&self.db).await?.is_some() {
            row.update(&self.db).await?;
        } else {
            row.insert(&self.db).await?;
        }
        Ok(())
    }

    /// Pending messages due by `now`, earliest first, as (id, attempts so far).
    pub async fn due_messages(&self, now: DateTime<Utc>, limit: u64) -> Result<Vec<(i32, i32)>, StoreError> {
        let rows: Vec<(i32, i32)> = scheduled_message::Entity::find()
            .select_only()
            .column(scheduled_message::Column::Id)
            .column(scheduled_message::Column::Attempts)
            .filter(scheduled_message::Column::Status.eq("pending"))
            .filter(scheduled_message::Column::DueAt.lte(now))
            .order_by_asc(scheduled_message::Column::DueAt)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(rows)
    }

    /// Marks messages as handed to the job queue, and returns those that were still pending.
    pub async fn mark_queued(&self, ids: &[i32], now: DateTime<Utc>) -> Result<Vec<i32>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = scheduled_message::Entity::update_many()
            .col_expr(scheduled_message::Column::Status, Expr::value("queued"))
            .col_expr(scheduled_message::Column::ClaimedAt, Expr::value(now))
            .col_expr(scheduled_message::Column::ClaimedBy, Expr::value(Option::<String>::None))
            .filter(scheduled_message::Column::Id.is_in(ids.iter().copied()))
            .filter(scheduled_message::Column::Status.eq("pending"))
            .exec_with_returning(&self.db)
            .await?;
        Ok(rows.into_iter().map(|m| m.id).collect())
    }

    /// Messages queued or being sent for longer than `lease` go back to pending: their job was
    /// lost, or their worker died. A send that died after the provider accepted it is the one
    /// window in which a message can go out twice; each is recorded as an `abandoned` delivery.
    /// Returns how many sends were abandoned.
    /// `queued` messages older than `lease` (their job was lost) and `sending` ones whose claim
    /// was not renewed within `sending_lease` (their worker stopped: a live one renews its
    /// claims every heartbeat, `renew_claims`) go back to `pending`.
    pub async fn requeue_stale(&self, now: DateTime<Utc>, lease: Duration, sending_lease: Duration) -> Result<u64, StoreError> {
        use sea_orm::sea_query::{Alias, Func, Query};
        let cutoff = now - lease;
        let sending_cutoff = now - sending_lease.min(lease);
        let txn = self.db.begin().await?;
        // Written first, as INSERT … SELECT, so the transaction takes the write lock at once
        // (a read that later writes fails on a busy SQLite file instead of waiting).
        let stale = Query::select()
            .column(scheduled_message::Column::Id)
            .expr(Func::coalesce([Expr::col(scheduled_message::Column::Channel), Expr::val("")]))
            .column(scheduled_message::Column::Attempts)
            .expr(Expr::val("abandoned"))
            .expr(Expr::val("the worker stopped while sending; it may have gone out"))
            .expr(Expr::val(now))
            .from(scheduled_message::Entity)
            .and_where(scheduled_message::Column::Status.eq("sending"))
            .and_where(scheduled_message::Column::ClaimedAt.lt(sending_cutoff))
            .to_owned();
        let insert = Query::insert()
            .into_table(delivery::Entity)
            .columns([
                Alias::new("message_id"),
                Alias::new("channel"),
                Alias::new("attempt"),
                Alias::new("status"),
                Alias::new("error"),
                Alias::new("at"),
            ])
            .select_from(stale)
            .map_err(|e| StoreError::corrupt("stale claims query", e))?
            .to_owned();
        let abandoned = txn.execute(&insert).await?.rows_affected();
        scheduled_message::Entity::update_many()
            .col_expr(scheduled_message::Column::Status, Expr::value("pending"))
            .col_expr(scheduled_message::Column::ClaimedBy, Expr::value(Option::<String>::None))
            .filter(
                sea_orm::Condition::any()
                    .add(scheduled_message::Column::Status.eq("queued").and(scheduled_message::Column::ClaimedAt.lt(cutoff)))
                    .add(scheduled_message::Column::Status.eq("sending").and(scheduled_message::Column::ClaimedAt.lt(sending_cutoff))),
            )
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(abandoned)
    }

    /// Keeps `worker`'s claims on the messages of `ids` (those it holds in memory) fresh, so that
    /// only a worker that stopped, or a message whose task ended unrecorded, loses them (after
    /// the sending lease, not the long queue lease).
    pub async fn renew_claims(&self, worker: &str, ids: &[i32], now: DateTime<Utc>) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        Ok(scheduled_message::Entity::update_many()
            .col_expr(scheduled_message::Column::ClaimedAt, Expr::value(now))
            .filter(scheduled_message::Column::ClaimedBy.eq(worker))
            .filter(scheduled_message::Column::Id.is_in(ids.iter().copied()))
            .filter(scheduled_message::Column::Status.eq("sending"))
            .exec(&self.db)
            .await?
            .rows_affected)
    }

    /// Takes the messages of `ids` that are still queued for `worker`, in one statement; the
    /// others (sent, moved, cancelled, or another worker has them) are left alone.
    pub async fn claim(&self, ids: &[i32], worker: &str, now: DateTime<Utc>) -> Result<Vec<Claimed>, StoreError> {
        let taken = scheduled_message::Entity::update_many()
            .col_expr(scheduled_message::Column::Status, Expr::value("sending"))
            .col_expr(scheduled_message::Column::ClaimedBy, Expr::value(worker))
            .col_expr(scheduled_message::Column::ClaimedAt, Expr::value(now))
            .col_expr(scheduled_message::Column::Attempts, Expr::col(scheduled_message::Column::Attempts).add(1))
            .filter(scheduled_message::Column::Id.is_in(ids.iter().copied()))
            .filter(scheduled_message::Column::Status.eq("queued"))
            .exec_with_returning(&self.db)
            .await?;
        let mut claimed = Vec::with_capacity(taken.len());
        for m in taken {
            claimed.push(self.claimed(m).await?);
        }
        Ok(claimed)
    }

    /// What rendering a claimed message needs.
    async fn claimed(&self, m: scheduled_message::Model) -> Result<Claimed, StoreError> {
        let id = m.id;
        let version = self.version_plan(m.itinerary_id, m.version).await?;
        let recipient: Recipient = serde_json::from_value(m.recipient.clone()).map_err(|e| StoreError::corrupt("recipient", e))?;
        let target = match recipient {
            Recipient::Patient => DeliveryTarget::Patient(self.patient(version.patient_id).await?),
            Recipient::Escort { id } => {
                let e = escort::Entity::find_by_id(id.clone())
                    .unique(&self.db)
                    .await?
                    .ok_or(StoreError::NotFound { entity: "escort", id: id.clone() })?;
                DeliveryTarget::Escort { id, name: e.name, email: e.email }
            }
            Recipient::Coordinator => DeliveryTarget::Coordinator,
        };
        // Only reminders and cancellations look at what went out before.
        let earlier_sent = if carries_calendar(&m.kind) && m.kind != "calendar_cancel" {
            Vec::new()
        } else {
            scheduled_message::Entity::find()
                .filter(scheduled_message::Column::ItineraryId.eq(m.itinerary_id))
                .filter(scheduled_message::Column::Status.eq("sent"))
                .filter(scheduled_message::Column::Id.ne(id))
                .filter(
                    sea_orm::Condition::any()
                        .add(scheduled_message::Column::Key.eq(m.key.clone()))
                        .add(scheduled_message::Column::About.eq(m.about.clone().unwrap_or_default())),
                )
                .all(&self.db)
                .await?
        };
        let already_sent = earlier_sent.iter().any(|s| s.key == m.key && s.before_at == m.before_at);
        let uid_was_sent = m.about.as_ref().is_some_and(|uid| earlier_sent.iter().any(|s| s.about.as_ref() == Some(uid)));
        // Earlier attempts matter only to a retry.
        let (delivered_late, first_attempt_at) = if m.attempts > 1 {
            let earlier = delivery::Entity::find().filter(delivery::Column::MessageId.eq(id)).all(&self.db).await?;
            // A coordinator's resend starts a new run of attempts.
            let since = earlier.iter().filter(|d| d.status == "resent").map(|d| d.at).max();
            let attempts = earlier.iter().filter(|d| since.is_none_or(|s| d.at > s));
            (earlier.iter().any(|d| d.status == "late"), attempts.map(|d| d.at).min())
        } else {
            (false, None)
        };
        Ok(Claimed {
            id,
            itinerary_id: m.itinerary_id,
            reference: version.reference.clone(),
            version: m.version,
            key: m.key,
            kind: m.kind,
            due_at: m.due_at,
            due_zone: m.due_zone,
            before_at: m.before_at,
            about: m.about,
            if_late: m.if_late,
            attempt: m.attempts,
            last_error: m.last_error,
            payload: m.payload.map(|p| crate::stored::parsed("message payload", &p)).transpose()?,
            plan: version,
            target,
            already_sent,
            uid_was_sent,
            delivered_late,
            first_attempt_at,
        })
    }

    /// The plan of one itinerary version, parsed once per process.
    async fn version_plan(&self, itinerary_id: i32, version: i32) -> Result<Arc<VersionPlan>, StoreError> {
        if let Some(v) = self.plans.lock().ok().and_then(|c| c.get(&(itinerary_id, version)).cloned()) {
            return Ok(v);
        }
        let it = itinerary::Entity::find_by_id(itinerary_id)
            .unique(&self.db)
            .await?
            .ok_or(StoreError::NotFound { entity: "itinerary", id: itinerary_id.to_string() })?;
        let plan: Option<String> = itinerary_version::Entity::find()
            .select_only()
            .column(itinerary_version::Column::Plan)
            .filter(itinerary_version::Column::ItineraryId.eq(itinerary_id))
            .filter(itinerary_version::Column::Version.eq(version))
            .into_tuple()
            .unique(&self.db)
            .await?;
        let plan = plan.ok_or(StoreError::corrupt("itinerary version", format!("{version} of itinerary {itinerary_id}")))?;
        let plan: Plan = crate::stored::parsed("plan", &plan)?;
        let v = Arc::new(VersionPlan { reference: it.reference, patient_id: it.patient_id, plan });
        if let Ok(mut c) = self.plans.lock() {
            // A worker touches the versions of a few days at a time: a small cache will do.
            if c.len() >= 4096 {
                c.clear();
            }
            c.insert((itinerary_id, version), v.clone());
        }
        Ok(v)
    }

    /// Records that the provider accepted the message. `false` when this worker no longer held
    /// it (its claim lapsed): the delivery is then recorded as `late`, so that a worker claiming
    /// the message after this record does not send it again (one that claimed it before may).
    pub async fn record_sent(&self, id: i32, worker: &str, attempt: i32, d: &Delivered, now: DateTime<Utc>) -> Result<bool, StoreError> {
        if self.backend() == sea_orm::DbBackend::Postgres {
            // One statement, so one round trip closes the duplicate window: the update and the
            // delivery row commit together (a data-modifying WITH runs exactly once).
            let sql = "WITH held AS (UPDATE scheduled_message SET status = 'sent', sent_at = $1, channel = $2, last_error = NULL, payload = NULL \
                       WHERE id = $3 AND status IN ('sending', 'superseded', 'cancelled') AND claimed_by = $4 RETURNING id) \
                       INSERT INTO delivery (message_id, channel, attempt, status, provider_ref, at, sent_key) \
                       SELECT $3, $2, $5, CASE WHEN EXISTS (SELECT 1 FROM held) THEN 'sent' ELSE 'late' END, $6, $1, \
                       CASE WHEN EXISTS (SELECT 1 FROM held) THEN $7 END RETURNING (SELECT count(*) FROM held) AS held";
            let values: [sea_orm::Value; 7] = [
                now.into(),
                d.channel.clone().into(),
                id.into(),
                worker.into(),
                attempt.into(),
                d.provider_ref.clone().into(),
                id.to_string().into(),
            ];
            let row = self.db.query_one_raw(sea_orm::Statement::from_sql_and_values(sea_orm::DbBackend::Postgres, sql, values)).await?;
            let held: i64 = row.map(|r| r.try_get("", "held")).transpose()?.unwrap_or(0);
            return Ok(held == 1);
        }
        let txn = self.db.begin().await?;
        let held = scheduled_message::Entity::update_many()
            .col_expr(scheduled_message::Column::Status, Expr::value("sent"))
            .col_expr(scheduled_message::Column::SentAt, Expr::value(now))
            .col_expr(scheduled_message::Column::Channel, Expr::value(d.channel.clone()))
            .col_expr(scheduled_message::Column::LastError, Expr::value(Option::<String>::None))
            .col_expr(scheduled_message::Column::Payload, Expr::value(Option::<String>::None))
            .filter(scheduled_message::Column::Id.eq(id))
            // Superseded or cancelled while it was being sent: it went out all the same, so it
            // says sent.
            .filter(scheduled_message::Column::Status.is_in(["sending", "superseded", "cancelled"]))
            .filter(scheduled_message::Column::ClaimedBy.eq(worker))
            .exec(&txn)
            .await?;
        // A claim that lapsed (another worker may hold it now) records a `late` delivery
        // without the unique key: the holder then finds it and does not send again.
        let held = held.rows_affected == 1;
        delivery::ActiveModel {
            message_id: Set(id),
            channel: Set(d.channel.clone()),
            attempt: Set(attempt),
            status: Set(if held { "sent" } else { "late" }.to_owned()),
            provider_ref: Set(d.provider_ref.clone()),
            at: Set(now),
            sent_key: Set(held.then(|| id.to_string())),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
        txn.commit().await?;
        Ok(held)
    }

    /// A transient failure: the message goes back to pending, due again at `next`.
    pub async fn record_retry(
        &self,
        id: i32,
        worker: &str,
        channel: &str,
        error: &str,
        next: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.record_outcome(id, worker, channel, "retry", error, Some(next), now).await
    }

    /// A permanent failure, shown to the coordinator.
    pub async fn record_failed(&self, id: i32, worker: &str, channel: &str, error: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.record_outcome(id, worker, channel, "failed", error, None, now).await
    }

    /// Not sent on purpose (outdated, nothing new, never invited): `reason` says why.
    pub async fn record_skipped(&self, id: i32, worker: &str, reason: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.record_outcome(id, worker, "", "skipped", reason, None, now).await
    }

    /// Deferred without an attempt (the recipient's night): pending again, due at `next`.
    pub async fn defer(&self, id: i32, worker: &str, reason: &str, next: DateTime<Utc>) -> Result<(), StoreError> {
        scheduled_message::Entity::update_many()
            .col_expr(scheduled_message::Column::Status, Expr::value("pending"))
            .col_expr(scheduled_message::Column::DueAt, Expr::value(next))
            .col_expr(scheduled_message::Column::LastError, Expr::value(reason))
            .col_expr(scheduled_message::Column::Attempts, Expr::col(scheduled_message::Column::Attempts).sub(1))
            .filter(scheduled_message::Column::Id.eq(id))
            .filter(scheduled_message::Column::Status.eq("sending"))
            .filter(scheduled_message::Column::ClaimedBy.eq(worker))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn record_outcome(
        &self,
        id: i32,
        worker: &str,
        channel: &str,
        status: &str,
        error: &str,
        next: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin().await?;
        let mut update = scheduled_message::Entity::update_many()
            .col_expr(scheduled_message::Column::Status, Expr::value(if next.is_some() { "pending" } else { status }))
            .col_expr(scheduled_message::Column::LastError, Expr::value(error))
            .filter(scheduled_message::Column::Id.eq(id))
            .filter(scheduled_message::Column::Status.eq("sending"))
            .filter(scheduled_message::Column::ClaimedBy.eq(worker));
        match next {
            Some(next) => update = update.col_expr(scheduled_message::Column::DueAt, Expr::value(next)),
            None => update = update.col_expr(scheduled_message::Column::Payload, Expr::value(Option::<String>::None)),
        }
        let held = update.exec(&txn).await?;
        if held.rows_affected == 1 && status != "skipped" {
            delivery::ActiveModel {
                message_id: Set(id),
                channel: Set(channel.to_owned()),
                attempt: Set(attempts(&txn, id).await?),
                status: Set(status.to_owned()),
                error: Set(Some(error.to_owned())),
                at: Set(now),
                ..Default::default()
            }
            .insert(&txn)
            .await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// Messages that failed for good, newest first.
    pub async fn failed_messages(&self, limit: u64) -> Result<Vec<FailedMessage>, StoreError> {
        let rows = scheduled_message::Entity::find()
            .filter(scheduled_message::Column::Status.eq("failed"))
            .order_by_desc(scheduled_message::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(FailedMessage::from).collect())
    }

    /// Messages still waiting more than `late` after they were due (no worker running, a relay
    /// retrying, a backlog), oldest first: what a coordinator should look at before a patient
    /// misses one.
    pub async fn late_messages(&self, now: DateTime<Utc>, late: Duration, limit: u64) -> Result<Vec<FailedMessage>, StoreError> {
        let rows = scheduled_message::Entity::find()
            .filter(scheduled_message::Column::Status.is_in(["pending", "queued", "sending"]))
            .filter(scheduled_message::Column::DueAt.lt(now - late))
            .order_by_asc(scheduled_message::Column::DueAt)
            .limit(limit)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(FailedMessage::from).collect())
    }

    /// How many messages went out on `channel` since `since` (LINE's monthly allowance).
    pub async fn sent_since(&self, channel: &str, since: DateTime<Utc>) -> Result<u64, StoreError> {
        use sea_orm::PaginatorTrait;
        Ok(delivery::Entity::find()
            .filter(delivery::Column::Channel.eq(channel))
            .filter(delivery::Column::Status.eq("sent"))
            .filter(delivery::Column::At.gte(since))
            .count(&self.db)
            .await?)
    }

    /// Messages handed to the job queue and not yet taken by a worker.
    pub async fn queued_count(&self) -> Result<u64, StoreError> {
        use sea_orm::PaginatorTrait;
        Ok(scheduled_message::Entity::find().filter(scheduled_message::Column::Status.eq("queued")).count(&self.db).await?)
    }

    /// A further feed URL for the patient, for a booking confirmation to carry (tokens are
    /// stored hashed, so an existing one cannot be shown again). Same form as the
    /// coordinator's, listed with them at `GET /patients/{id}/feed` as `confirmation`, audited,
    /// and ended with them by a rotation or a revocation.
    pub async fn issue_feed_token(&self, patient_id: i32) -> Result<String, StoreError> {
        self.issue_feed_token_in(patient_id, "confirmation").await
    }

    /// Ends one feed URL by its secret (one issued for a message that did not go).
    pub async fn revoke_feed_secret(&self, secret: &str) -> Result<(), StoreError> {
        use sea_orm::sea_query::Expr;
        let txn = self.begin_write().await?;
        feed_token::Entity::update_many()
            .col_expr(feed_token::Column::RevokedAt, Expr::value(Utc::now()))
            .filter(feed_token::Column::TokenHash.eq(crate::hash_token(secret)))
            .filter(feed_token::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?;
        crate::commit(txn).await?;
        Ok(())
    }

    /// As [`Store::issue_feed_token`], for a message of `origin` (`confirmation`, or `line`:
    /// the word on LINE that the link is made).
    pub async fn issue_feed_token_in(&self, patient_id: i32, origin: &str) -> Result<String, StoreError> {
        let t = Token::generate(crate::people::FEED_PREFIX);
        let txn = self.begin_write().await?;
        feed_token::ActiveModel {
            patient_id: Set(patient_id),
            token_hash: Set(t.hash.clone()),
            created_at: Set(Utc::now()),
            revoked_at: Set(None),
            origin: Set(origin.to_owned()),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
        crate::people::audit(&txn, None, "issue", "feed", &patient_id.to_string(), serde_json::json!({ "origin": origin })).await?;
        txn.commit().await?;
        Ok(t.secret)
    }
}

async fn attempts(db: &impl ConnectionTrait, id: i32) -> Result<i32, StoreError> {
    let n: Option<i32> =
        scheduled_message::Entity::find_by_id(id).select_only().column(scheduled_message::Column::Attempts).into_tuple().unique(db).await?;
    Ok(n.unwrap_or(0))
}

/// Why a failed message cannot be sent again.
#[derive(Debug, thiserror::Error)]
pub enum ResendError {
    #[error("message {0} of this itinerary did not fail")]
    NotFailed(i32),
    #[error("what message {0} is about has begun")]
    Begun(i32),
    #[error("message {0} carried a calendar, kept only until it settled: change the itinerary to issue its calendar again")]
    Calendar(i32),
    #[error("the itinerary is cancelled")]
    Cancelled,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sea_orm::DbErr> for ResendError {
    fn from(e: sea_orm::DbErr) -> Self {
        ResendError::Store(StoreError::Db(e))
    }
}

impl Store {
    /// Sends a failed message of itinerary `itinerary_id` again, now, with a new run of
    /// attempts (a coordinator fixed the address, or the relay): back to pending, recorded as
    /// `resent` among its deliveries and in the audit log.
    pub async fn resend_message(&self, by: i32, itinerary_id: i32, message_id: i32, now: DateTime<Utc>) -> Result<(), ResendError> {
        let txn = self.begin_write().await?;
        let it = itinerary::Entity::find_by_id(itinerary_id)
            .unique(&txn)
            .await?
            .ok_or(StoreError::NotFound { entity: "itinerary", id: itinerary_id.to_string() })?;
        if it.status == "cancelled" {
            return Err(ResendError::Cancelled);
        }
        let m = scheduled_message::Entity::find_by_id(message_id)
            .unique(&txn)
            .await?
            .filter(|m| m.itinerary_id == itinerary_id && m.status == "failed")
            .ok_or(ResendError::NotFailed(message_id))?;
        if m.before_at.is_some_and(|b| b <= now) {
            return Err(ResendError::Begun(message_id));
        }
        if carries_calendar(&m.kind) && m.payload.is_none() && !is_summary(&m.kind) {
            return Err(ResendError::Calendar(message_id));
        }
        scheduled_message::Entity::update_many()
            .col_expr(scheduled_message::Column::Status, Expr::value("pending"))
            .col_expr(scheduled_message::Column::DueAt, Expr::value(now))
            .col_expr(scheduled_message::Column::Attempts, Expr::value(0))
            .col_expr(scheduled_message::Column::LastError, Expr::value(Option::<String>::None))
            .filter(scheduled_message::Column::Id.eq(message_id))
            .filter(scheduled_message::Column::Status.eq("failed"))
            .exec(&txn)
            .await?;
        delivery::ActiveModel {
            message_id: Set(message_id),
            channel: Set(String::new()),
            attempt: Set(0),
            status: Set("resent".to_owned()),
            error: Set(None),
            at: Set(now),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
        crate::people::audit(
            &txn,
            Some(by),
            "resend",
            "message",
            &message_id.to_string(),
            serde_json::json!({ "itinerary": itinerary_id, "kind": m.kind }),
        )
        .await?;
        txn.commit().await?;
        Ok(())
    }
}

//! What arrives from LINE's webhook (issue 16): each event applied once, by its
//! `webhookEventId`, in the transaction that records it, so a redelivered event (LINE retries
//! when an answer is slow or lost) changes nothing twice. A follow records the LINE user; an
//! unfollow unlinks every patient linked to them, so their messages go by email again; a text
//! or a postback from a linked user is kept as a message from that patient; from anyone else it
//! is not kept (there is no one to file it under, and it may hold health details).

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, TransactionTrait};
use serde::Serialize;
use serde_json::json;

use crate::entity::{line_contact, line_event, patient, patient_message};
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
                ("follow", Some(user)) => {
                    follow(&txn, user, now).await?;
                    "followed".to_owned()
                }
                ("unfollow", Some(user)) => {
                    use sea_orm::sea_query::Expr;
                    if let Some(c) = line_contact::Entity::find_by_id(user.to_owned()).unique(&txn).await? {
                        let mut c: line_contact::ActiveModel = c.into();
                        c.unfollowed_at = Set(Some(now));
                        c.update(&txn).await?;
                    }
                    let linked = patient::Entity::find().filter(patient::Column::LineUserId.eq(user)).all(&txn).await?;
                    patient::Entity::update_many()
                        .col_expr(patient::Column::LineUserId, Expr::value(Option::<String>::None))
                        .filter(patient::Column::LineUserId.eq(user))
                        .exec(&txn)
                        .await?;
                    for p in &linked {
                        audit(&txn, None, "unlink_line", "patient", &p.id.to_string(), json!({ "why": "unfollow" })).await?;
                    }
                    format!("unfollowed; {} patient(s) unlinked", linked.len())
                }
                ("message" | "postback", Some(user)) => {
                    let linked = patient::Entity::find()
                        .filter(patient::Column::LineUserId.eq(user))
                        .order_by_asc(patient::Column::Id)
                        .all(&txn)
                        .await?;
                    match (linked.first(), &e.text) {
                        (Some(p), Some(text)) => {
                            patient_message::ActiveModel {
                                patient_id: Set(p.id),
                                channel: Set("line".to_owned()),
                                kind: Set(if e.kind == "message" { "text" } else { "postback" }.to_owned()),
                                body: Set(text.clone()),
                                webhook_event_id: Set(Some(e.webhook_event_id.clone())),
                                received_at: Set(now),
                                ..Default::default()
                            }
                            .insert(&txn)
                            .await?;
                            "kept for the patient".to_owned()
                        }
                        (Some(_), None) => "not text: not kept".to_owned(),
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
        txn.commit().await.map_err(StoreError::CommitUnknown)?;
        Ok(outcomes)
    }
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
    let row = line_contact::ActiveModel { line_user_id: Set(user.to_owned()), followed_at: Set(now), unfollowed_at: Set(None) };
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
            .map(|m| PatientMessageView { id: m.id, channel: m.channel, kind: m.kind, body: m.body, received_at: m.received_at })
            .collect())
    }
}

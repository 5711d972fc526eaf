//! Replies that arrive by mail (issue 16, item 4). A calendar reply is believed only when
//! everything in it matches what was sent: METHOD REPLY or COUNTER, our ORGANIZER, a UID we
//! issued and have not cancelled, the one ATTENDEE that UID was sent to, a sender who is that
//! attendee, and a SEQUENCE no older than the invite's. Then the attendee's answer (PARTSTAT) is
//! recorded against the appointment; a clinic appointment declined, or another time proposed
//! for it, raises an alert. Anything else is recorded as refused with the reason and changes
//! nothing. A reply without a calendar is a text from the patient, filed by the message it
//! answers (our Message-ID names the itinerary and message) or else by the sender's address;
//! from anyone else it is not kept. Nothing is logged but outcomes and reasons.

use chrono::{DateTime, Utc};
use itinerary_calendar::{Appointment, Audience};
use itinerary_core::plan::Invites;
use itinerary_inbound::{CalendarReply, Inbound};
use sea_orm::sea_query::{Expr, ExprTrait, Func};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::Serialize;
use serde_json::json;

use crate::entity::{calendar_reply, calendar_uid, itinerary, patient, patient_message, scheduled_message};
use crate::people::audit;
use crate::unique::Unique;
use crate::{Store, StoreError};

/// What became of one inbound message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InboundAnswer {
    /// `applied` (a calendar answer recorded), `refused` (a calendar reply not believed),
    /// `kept` (a text filed for a patient) or `not_kept` (a text from nobody we know).
    pub outcome: &'static str,
    pub reason: String,
    /// A clinic appointment was declined, or another time proposed for it.
    pub alert: bool,
}

/// One attendee's latest answer to one appointment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AppointmentAnswer {
    pub event: String,
    /// `patient` or `escort`.
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub escort_id: Option<String>,
    /// `accepted`, `declined`, `tentative`, `delegated`, or `no_answer` yet.
    pub answer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<DateTime<Utc>>,
    /// A COUNTER's proposal, as the attendee's client wrote it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proposed_start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proposed_end: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub alert: bool,
}

/// A reply as recorded, for the coordinator's list of refusals and alerts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReplyRecord {
    pub id: i32,
    pub received_at: DateTime<Utc>,
    pub itinerary_id: Option<i32>,
    pub event: Option<String>,
    pub outcome: String,
    pub reason: String,
}

const PARTSTATS: [&str; 5] = ["ACCEPTED", "DECLINED", "TENTATIVE", "DELEGATED", "NEEDS-ACTION"];

/// What a calendar reply was checked against, once its UID is known.
struct Matched {
    itinerary_id: i32,
    event: String,
    role: String,
    escort_id: Option<String>,
}

impl Store {
    /// Records one message read by `itinerary_inbound::read`, arrived `via` `mail` or `api`.
    /// `organizer` is the address invites are sent from (`calendar.organizer_email`).
    pub async fn record_inbound(
        &self,
        mail: &Inbound,
        via: &str,
        organizer: &str,
        now: DateTime<Utc>,
    ) -> Result<InboundAnswer, StoreError> {
        match &mail.calendar {
            Some(c) => self.record_calendar_reply(mail, c, via, organizer, now).await,
            None => self.record_text_reply(mail, now).await,
        }
    }

    async fn record_calendar_reply(
        &self,
        mail: &Inbound,
        c: &CalendarReply,
        via: &str,
        organizer: &str,
        now: DateTime<Utc>,
    ) -> Result<InboundAnswer, StoreError> {
        let txn = self.begin_write().await?;
        let mut matched: Option<Matched> = None;
        let verdict: Result<String, String> = async {
            if c.method != "REPLY" && c.method != "COUNTER" {
                return Err(format!("METHOD {:?} is not a reply (REPLY or COUNTER)", c.method));
            }
            let Some(uid) = c.uid.as_deref() else { return Err("no UID".to_owned()) };
            let attendee = match c.attendees.as_slice() {
                [] => return Err("no ATTENDEE".to_owned()),
                [one] => one,
                many => return Err(format!("a reply names one ATTENDEE (RFC 5546 3.2.3); this names {}", many.len())),
            };
            match &c.organizer {
                None => return Err("no ORGANIZER".to_owned()),
                Some(o) if !o.eq_ignore_ascii_case(organizer.trim()) => return Err("the ORGANIZER is not this service's".to_owned()),
                Some(_) => {}
            }
            let Some(row) =
                // FOR UPDATE on PostgreSQL: two replies to one UID at once are checked one after
                // the other, so the DTSTAMP order holds (SQLite's write transaction does already).
                calendar_uid::Entity::find().filter(calendar_uid::Column::Uid.eq(uid)).lock_exclusive().one(&txn).await.map_err(|e| e.to_string())?
            else {
                return Err("unknown UID".to_owned());
            };
            let appointment: Appointment =
                serde_json::from_str(&row.appointment).map_err(|e| format!("stored appointment unreadable: {e}"))?;
            let (role, escort_id) = match &appointment.attendee.audience {
                Audience::Patient => ("patient".to_owned(), None),
                Audience::Escort { id } => ("escort".to_owned(), Some(id.clone())),
            };
            matched = Some(Matched { itinerary_id: row.itinerary_id, event: appointment.event.clone(), role, escort_id });
            if row.cancelled {
                return Err("the appointment is cancelled".to_owned());
            }
            if !attendee.email.eq_ignore_ascii_case(appointment.attendee.email.trim()) {
                return Err("the ATTENDEE is not the one this UID was sent to".to_owned());
            }
            if mail.from.as_deref().is_none_or(|f| !f.eq_ignore_ascii_case(&attendee.email)) {
                return Err("the sender is not the ATTENDEE".to_owned());
            }
            if mail.dmarc_failed {
                return Err("the receiving mail server says the sender failed DMARC (Authentication-Results)".to_owned());
            }
            if c.sequence < i64::from(row.sequence) {
                return Err(format!("SEQUENCE {} is older than the invite's {}", c.sequence, row.sequence));
            }
            // A reply answers what was sent: never a SEQUENCE not issued yet.
            if c.sequence > i64::from(row.sequence) {
                return Err(format!("SEQUENCE {} is newer than any invite sent ({})", c.sequence, row.sequence));
            }
            // DTSTAMP is required in a reply (RFC 5546 3.2.3) and orders replies; one from the
            // future would outrank every genuine answer to come.
            let Some(stamp) = c.dtstamp.as_deref() else { return Err("no DTSTAMP (UTC)".to_owned()) };
            let latest = (now + chrono::Duration::days(1)).format("%Y%m%dT%H%M%SZ").to_string();
            if stamp > latest.as_str() {
                return Err(format!("DTSTAMP {stamp} is in the future"));
            }
            // A reply made before the one recorded (a replay, or mail arriving out of order)
            // does not undo it (RFC 5546 2.1.5: the latest DTSTAMP counts).
            let newer = calendar_reply::Entity::find()
                .filter(calendar_reply::Column::Uid.eq(uid))
                .filter(calendar_reply::Column::Outcome.eq("applied"))
                .filter(calendar_reply::Column::Sequence.gte(i32::try_from(c.sequence).unwrap_or(i32::MAX)))
                .all(&txn)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter_map(|r| r.dtstamp)
                .max();
            if let (Some(newer), Some(this)) = (&newer, &c.dtstamp)
                && this < newer
            {
                return Err(format!("DTSTAMP {this} is older than the answer recorded ({newer})"));
            }
            if !PARTSTATS.contains(&attendee.partstat.as_str()) {
                return Err(format!("PARTSTAT {:?} is not one RFC 5545 defines for an event", attendee.partstat));
            }
            Ok(attendee.partstat.clone())
        }
        .await;
        let m = matched.as_ref();
        let (outcome, reason, partstat, alert) = match &verdict {
            Ok(p) => {
                let clinic = m.is_some_and(|m| Invites::Clinic.wants_key(&m.event));
                let alert = clinic && (p == "DECLINED" || c.method == "COUNTER");
                let reason =
                    if c.method == "COUNTER" { "another time proposed".to_owned() } else { format!("answered {}", p.to_ascii_lowercase()) };
                ("applied", reason, Some(p.clone()), alert)
            }
            Err(why) => ("refused", why.clone(), None, false),
        };
        let applied = outcome == "applied";
        calendar_reply::ActiveModel {
            received_at: Set(now),
            via: Set(via.to_owned()),
            method: Set(c.method.chars().take(32).collect()),
            uid: Set(c.uid.as_ref().map(|u| u.chars().take(255).collect())),
            itinerary_id: Set(m.map(|m| m.itinerary_id)),
            event_key: Set(m.map(|m| m.event.clone())),
            role: Set(m.map(|m| m.role.clone())),
            escort_id: Set(m.and_then(|m| m.escort_id.clone())),
            partstat: Set(partstat.clone()),
            sequence: Set(i32::try_from(c.sequence).unwrap_or(i32::MAX)),
            dtstamp: Set(c.dtstamp.clone()),
            proposed_start: Set(if applied { c.proposed_start.clone() } else { None }),
            proposed_end: Set(if applied { c.proposed_end.clone() } else { None }),
            comment: Set(if applied { c.comment.clone().map(|t| t.replace('\0', "")) } else { None }),
            outcome: Set(outcome.to_owned()),
            reason: Set(reason.clone()),
            alert: Set(alert),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
        if let (true, Some(m)) = (applied, m) {
            let detail = json!({ "event": m.event, "role": m.role, "answer": partstat.as_deref().map(str::to_ascii_lowercase), "method": c.method, "alert": alert });
            audit(&txn, None, "calendar_reply", "itinerary", &m.itinerary_id.to_string(), detail).await?;
        }
        crate::commit(txn).await?;
        tracing::info!(outcome, %reason, alert, "calendar reply");
        Ok(InboundAnswer { outcome, reason, alert })
    }

    async fn record_text_reply(&self, mail: &Inbound, now: DateTime<Utc>) -> Result<InboundAnswer, StoreError> {
        let not_kept = |reason: &str| {
            tracing::info!(reason, "a text reply not kept");
            InboundAnswer { outcome: "not_kept", reason: reason.to_owned(), alert: false }
        };
        let (Some(from), Some(text)) = (mail.from.as_deref(), mail.text.as_deref()) else {
            return Ok(not_kept(if mail.from.is_none() { "no sender" } else { "nothing written" }));
        };
        let txn = self.begin_write().await?;
        // The message it answers: ours are <it-…​.m{id}@domain>.
        let mut filed: Option<(i32, Option<i32>)> = None;
        for id in &mail.replies_to {
            let Some((reference, message)) = id.split('@').next().and_then(|l| l.rsplit_once(".m")) else { continue };
            let Ok(message) = message.parse::<i32>() else { continue };
            let Some(m) = scheduled_message::Entity::find_by_id(message).unique(&txn).await? else { continue };
            let Some(it) = itinerary::Entity::find_by_id(m.itinerary_id).unique(&txn).await? else { continue };
            let Some(p) = patient::Entity::find_by_id(it.patient_id).unique(&txn).await? else { continue };
            if it.reference == reference && p.email.trim().eq_ignore_ascii_case(from) {
                filed = Some((p.id, Some(m.id)));
                break;
            }
        }
        if filed.is_none() {
            let by_address = patient::Entity::find()
                .filter(Expr::expr(Func::lower(Expr::col(patient::Column::Email))).eq(from.to_ascii_lowercase()))
                .order_by_desc(patient::Column::UpdatedAt)
                .one(&txn)
                .await?;
            filed = by_address.map(|p| (p.id, None));
        }
        let Some((patient_id, message_id)) = filed else {
            return Ok(not_kept("the sender is no patient's address"));
        };
        patient_message::ActiveModel {
            patient_id: Set(patient_id),
            channel: Set("email".to_owned()),
            kind: Set("text".to_owned()),
            body: Set(text.replace('\0', "")),
            webhook_event_id: Set(None),
            received_at: Set(now),
            message_id: Set(message_id),
            answer: Set(None),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
        crate::commit(txn).await?;
        tracing::info!(answers_a_message = message_id.is_some(), "a text reply kept for the patient");
        Ok(InboundAnswer { outcome: "kept", reason: "kept as a message from the patient".to_owned(), alert: false })
    }

    /// Each invited attendee's latest answer to each standing appointment of the itinerary
    /// (`no_answer` where none came).
    pub async fn appointment_answers(&self, itinerary_id: i32) -> Result<Vec<AppointmentAnswer>, StoreError> {
        let uids = calendar_uid::Entity::find()
            .filter(calendar_uid::Column::ItineraryId.eq(itinerary_id))
            .filter(calendar_uid::Column::Cancelled.eq(false))
            .all(&self.db)
            .await?;
        let replies = calendar_reply::Entity::find()
            .filter(calendar_reply::Column::ItineraryId.eq(itinerary_id))
            .filter(calendar_reply::Column::Outcome.eq("applied"))
            .order_by_asc(calendar_reply::Column::Id)
            .all(&self.db)
            .await?;
        let mut out = Vec::with_capacity(uids.len());
        for u in uids {
            let a: Appointment = crate::stored::parsed("calendar appointment", &u.appointment)?;
            let (role, escort_id) = match a.attendee.audience {
                Audience::Patient => ("patient".to_owned(), None),
                Audience::Escort { id } => ("escort".to_owned(), Some(id)),
            };
            // The latest by DTSTAMP, then by arrival: the answer that counts (RFC 5546 2.1.5).
            let last = replies
                .iter()
                .filter(|r| r.uid.as_deref() == Some(u.uid.as_str()))
                .max_by(|a, b| (&a.dtstamp, a.id).cmp(&(&b.dtstamp, b.id)));
            out.push(AppointmentAnswer {
                event: a.event,
                role,
                escort_id,
                answer: last
                    .and_then(|r| r.partstat.as_deref())
                    .map_or_else(|| "no_answer".to_owned(), |p| p.to_ascii_lowercase().replace('-', "_")),
                answered_at: last.map(|r| r.received_at),
                proposed_start: last.and_then(|r| r.proposed_start.clone()),
                proposed_end: last.and_then(|r| r.proposed_end.clone()),
                comment: last.and_then(|r| r.comment.clone()),
                alert: last.is_some_and(|r| r.alert),
            });
        }
        out.sort_by(|x, y| (&x.event, &x.role, &x.escort_id).cmp(&(&y.event, &y.role, &y.escort_id)));
        Ok(out)
    }

    /// Replies since `since` that need a coordinator: alerts and refusals, newest first.
    pub async fn reply_alerts(&self, since: DateTime<Utc>, limit: u64) -> Result<Vec<ReplyRecord>, StoreError> {
        use sea_orm::QuerySelect;
        use sea_orm::sea_query::Condition;
        Ok(calendar_reply::Entity::find()
            .filter(calendar_reply::Column::ReceivedAt.gte(since))
            .filter(Condition::any().add(calendar_reply::Column::Alert.eq(true)).add(calendar_reply::Column::Outcome.eq("refused")))
            .order_by_desc(calendar_reply::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|r| ReplyRecord {
                id: r.id,
                received_at: r.received_at,
                itinerary_id: r.itinerary_id,
                event: r.event_key,
                outcome: r.outcome,
                reason: r.reason,
            })
            .collect())
    }
}

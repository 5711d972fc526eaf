//! Sessions of the coordinators' console: opened with a live coordinator token, kept as the
//! SHA-256 of their secret, ended by signing out, by inactivity, or by the token's revocation or
//! expiry (a session is only as alive as the token it was opened with).

use chrono::{DateTime, Duration, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use serde_json::json;

use crate::entity::{console_session, coordinator, coordinator_token, itinerary, itinerary_version, patient};
use crate::people::{audit, live_token};
use crate::unique::Unique;
use crate::{PatientView, Store, StoreError, Token, hash_token};

/// A signed-in coordinator, as a page needs them.
#[derive(Clone, Debug)]
pub struct Session {
    pub coordinator_id: i32,
    pub coordinator_name: String,
    /// The secret every form of this session carries.
    pub csrf: String,
}

/// A session just opened: the cookie's secret (shown once) and the session.
#[derive(Debug)]
pub struct Opened {
    pub secret: String,
    pub session: Session,
}

impl Store {
    /// Opens a session for the holder of coordinator token `token`, or `None` when it is not a
    /// live token.
    pub async fn open_session(&self, token: &str, now: DateTime<Utc>) -> Result<Option<Opened>, StoreError> {
        let Some(t) = coordinator_token::Entity::find()
            .filter(coordinator_token::Column::TokenHash.eq(hash_token(token)))
            .unique(&self.db)
            .await?
            .filter(|t| live_token(t, now))
        else {
            return Ok(None);
        };
        let who = coordinator::Entity::find_by_id(t.coordinator_id)
            .unique(&self.db)
            .await?
            .ok_or(StoreError::NotFound { entity: "coordinator", id: t.coordinator_id.to_string() })?;
        let secret = Token::generate("its_");
        let csrf = Token::generate("").secret;
        let txn = sea_orm::TransactionTrait::begin(&self.db).await?;
        console_session::ActiveModel {
            secret_hash: Set(secret.hash),
            token_id: Set(t.id),
            csrf: Set(csrf.clone()),
            created_at: Set(now),
            last_seen_at: Set(now),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
        audit(&txn, Some(who.id), "sign_in", "coordinator", &who.id.to_string(), json!({})).await?;
        txn.commit().await?;
        Ok(Some(Opened { secret: secret.secret, session: Session { coordinator_id: who.id, coordinator_name: who.name, csrf } }))
    }

    /// The session of cookie secret `secret`, if it is still open: seen within `idle`, its
    /// token live. Each use keeps it open (written at most once a minute).
    pub async fn session(&self, secret: &str, idle: Duration, now: DateTime<Utc>) -> Result<Option<Session>, StoreError> {
        let Some(s) =
            console_session::Entity::find().filter(console_session::Column::SecretHash.eq(hash_token(secret))).unique(&self.db).await?
        else {
            return Ok(None);
        };
        let token = coordinator_token::Entity::find_by_id(s.token_id).unique(&self.db).await?;
        let Some(token) = token.filter(|t| live_token(t, now) && now - s.last_seen_at <= idle) else {
            console_session::Entity::delete_by_id(s.id).exec(&self.db).await?;
            return Ok(None);
        };
        if now - s.last_seen_at > Duration::minutes(1) {
            console_session::Entity::update_many()
                .col_expr(console_session::Column::LastSeenAt, sea_orm::sea_query::Expr::value(now))
                .filter(console_session::Column::Id.eq(s.id))
                .exec(&self.db)
                .await?;
        }
        let name = coordinator::Entity::find_by_id(token.coordinator_id).unique(&self.db).await?.map(|c| c.name).unwrap_or_default();
        Ok(Some(Session { coordinator_id: token.coordinator_id, coordinator_name: name, csrf: s.csrf }))
    }

    /// Ends the session of cookie secret `secret` (signing out).
    pub async fn close_session(&self, secret: &str) -> Result<(), StoreError> {
        console_session::Entity::delete_many().filter(console_session::Column::SecretHash.eq(hash_token(secret))).exec(&self.db).await?;
        Ok(())
    }
}

/// One itinerary in a patient's list.
#[derive(Clone, Debug)]
pub struct ItinerarySummary {
    pub id: i32,
    pub reference: String,
    pub status: String,
    pub version: i32,
    pub created_at: DateTime<Utc>,
}

impl Store {
    /// Patients whose name or email holds `q` (any script, ASCII letters in either case), or
    /// who have an itinerary whose reference is `q`; at most `limit`, by name.
    pub async fn search_patients(&self, q: &str, limit: u64) -> Result<Vec<PatientView>, StoreError> {
        use sea_orm::sea_query::{Expr, ExprTrait, Func};
        let q = q.trim();
        let mut find = patient::Entity::find();
        if !q.is_empty() {
            let pattern = format!("%{}%", q.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
            let lower = |c: patient::Column| Expr::expr(Func::lower(Expr::col(c)));
            let like = |c: patient::Column| lower(c).like(sea_orm::sea_query::LikeExpr::new(pattern.clone()).escape('\\'));
            let by_reference: Vec<i32> = itinerary::Entity::find()
                .filter(itinerary::Column::Reference.eq(q))
                .all(&self.db)
                .await?
                .into_iter()
                .map(|i| i.patient_id)
                .collect();
            find = find.filter(
                Condition::any()
                    .add(like(patient::Column::Name))
                    .add(like(patient::Column::Email))
                    .add(patient::Column::Id.is_in(by_reference)),
            );
        }
        let rows = find.order_by_asc(patient::Column::Name).order_by_asc(patient::Column::Id).limit(limit).all(&self.db).await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// The patient's itineraries, newest first.
    pub async fn itineraries_of(&self, patient_id: i32) -> Result<Vec<ItinerarySummary>, StoreError> {
        let rows = itinerary::Entity::find()
            .filter(itinerary::Column::PatientId.eq(patient_id))
            .order_by_desc(itinerary::Column::Id)
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|i| ItinerarySummary {
                id: i.id,
                reference: i.reference,
                status: i.status,
                version: i.current_version,
                created_at: i.created_at,
            })
            .collect())
    }
}

/// An itinerary's current plan with what a list shows beside it.
#[derive(Clone, Debug)]
pub struct CurrentPlan {
    pub id: i32,
    pub reference: String,
    pub status: String,
    pub patient_id: i32,
    pub patient_name: String,
    pub plan: itinerary_core::Plan,
}

impl Store {
    /// The current plans of itineraries `ids`, in three reads whatever their number (the week
    /// page shows every itinerary with an appointment in it).
    pub async fn current_plans(&self, ids: &[i32]) -> Result<Vec<CurrentPlan>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let its = itinerary::Entity::find().filter(itinerary::Column::Id.is_in(ids.iter().copied())).all(&self.db).await?;
        let which = its.iter().fold(Condition::any(), |c, it| {
            c.add(
                Condition::all()
                    .add(itinerary_version::Column::ItineraryId.eq(it.id))
                    .add(itinerary_version::Column::Version.eq(it.current_version)),
            )
        });
        let versions = itinerary_version::Entity::find().filter(which).all(&self.db).await?;
        let patients = patient::Entity::find().filter(patient::Column::Id.is_in(its.iter().map(|i| i.patient_id))).all(&self.db).await?;
        let mut out = Vec::with_capacity(its.len());
        for it in its {
            let Some(v) = versions.iter().find(|v| v.itinerary_id == it.id) else {
                return Err(StoreError::corrupt("itinerary version", format!("itinerary {} has no version {}", it.id, it.current_version)));
            };
            let plan = serde_json::from_value(v.plan.clone()).map_err(|e| StoreError::corrupt("plan", e))?;
            let patient_name = patients.iter().find(|p| p.id == it.patient_id).map(|p| p.name.clone()).unwrap_or_default();
            out.push(CurrentPlan { id: it.id, reference: it.reference, status: it.status, patient_id: it.patient_id, patient_name, plan });
        }
        Ok(out)
    }
}

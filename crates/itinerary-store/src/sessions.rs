//! Sessions of the coordinators' console: opened with a live coordinator token, kept as the
//! SHA-256 of their secret, ended by signing out, by inactivity, or by the token's revocation or
//! expiry (a session is only as alive as the token it was opened with).

use chrono::{DateTime, Duration, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use serde_json::json;

use crate::entity::{console_session, coordinator, coordinator_token};
use crate::people::{audit, live_token};
use crate::unique::Unique;
use crate::{Store, StoreError, Token, hash_token};

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
        let txn = self.begin_write().await?;
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

//! Idempotency keys (`Idempotency-Key`, draft-ietf-httpapi-idempotency-key-header): the answer to
//! a write is stored with the write, in its transaction, under the coordinator's key and a
//! fingerprint of the request. A request sent again with the key after its answer was lost (a
//! dropped connection, a COMMIT whose outcome could not be known) finds that answer instead of
//! doing the write twice; one that finds nothing knows that nothing was done. Only what was
//! committed is kept: a write that failed changed nothing and runs afresh when sent again.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, Set};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::entity::idempotency_key;
use crate::unique::Unique;
use crate::{Store, StoreError};

/// How long an answer is kept: a client retries within minutes; a day covers a client that
/// comes back after an outage. After that the key may be used again.
pub const KEY_LIFETIME: Duration = Duration::hours(24);

/// A write's key, as the API received it.
#[derive(Clone, Debug)]
pub struct IdempotencyKey {
    pub coordinator_id: i32,
    pub key: String,
    /// What the request was: a key sent again with another request is refused.
    pub fingerprint: String,
    /// The status its success is answered with.
    pub status: u16,
}

impl IdempotencyKey {
    /// The key of coordinator `coordinator_id`'s request `method path` with `body` (as parsed,
    /// so that spacing and the order of fields do not make it another request).
    pub fn new(coordinator_id: i32, key: &str, method: &str, path: &str, body: &impl Serialize, status: u16) -> IdempotencyKey {
        let mut h = Sha256::new();
        h.update(method.as_bytes());
        h.update(b" ");
        h.update(path.as_bytes());
        h.update(b"\n");
        // A body that serializes is one the handler already parsed; should it not, the
        // fingerprint is of the path alone, which still refuses another route's key.
        h.update(serde_json::to_vec(body).unwrap_or_default());
        IdempotencyKey { coordinator_id, key: key.to_owned(), fingerprint: hex::encode(h.finalize()), status }
    }
}

/// The answer stored under a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answered {
    pub fingerprint: String,
    pub status: u16,
    /// The JSON body, as first sent.
    pub body: String,
}

impl Store {
    /// The answer stored under coordinator `coordinator_id`'s `key`, if one was committed in the
    /// last `KEY_LIFETIME`.
    pub async fn answered(&self, coordinator_id: i32, key: &str, now: DateTime<Utc>) -> Result<Option<Answered>, StoreError> {
        Ok(answered_on(&self.db, coordinator_id, key, now).await?)
    }
}

pub(crate) async fn answered_on(
    db: &impl ConnectionTrait,
    coordinator_id: i32,
    key: &str,
    now: DateTime<Utc>,
) -> Result<Option<Answered>, sea_orm::DbErr> {
    let found = idempotency_key::Entity::find()
        .filter(idempotency_key::Column::CoordinatorId.eq(coordinator_id))
        .filter(idempotency_key::Column::Key.eq(key))
        .filter(idempotency_key::Column::CreatedAt.gt(now - KEY_LIFETIME))
        .unique(db)
        .await?;
    Ok(found.map(|m| Answered { fingerprint: m.fingerprint, status: u16::try_from(m.status).unwrap_or(200), body: m.body }))
}

/// Inside a write's transaction, before it changes anything: the answer already stored under
/// its key (another request with the key committed first), as the error that replays it.
pub(crate) async fn done_before(txn: &DatabaseTransaction, key: Option<&IdempotencyKey>, now: DateTime<Utc>) -> Result<(), StoreError> {
    let Some(k) = key else { return Ok(()) };
    match answered_on(txn, k.coordinator_id, &k.key, now).await? {
        Some(a) => Err(StoreError::Answered(Box::new(a))),
        None => Ok(()),
    }
}

/// The row that keeps `body` as the answer under `key`.
pub(crate) fn row(key: &IdempotencyKey, body: &impl Serialize, now: DateTime<Utc>) -> Result<idempotency_key::ActiveModel, StoreError> {
    Ok(idempotency_key::ActiveModel {
        coordinator_id: Set(key.coordinator_id),
        key: Set(key.key.clone()),
        fingerprint: Set(key.fingerprint.clone()),
        status: Set(i32::from(key.status)),
        body: Set(serde_json::to_string(body).map_err(|e| StoreError::corrupt("answer", e))?),
        created_at: Set(now),
    })
}

/// Drops answers past their lifetime (so an old key may be used again), then stores `rows`.
pub(crate) async fn save(txn: &DatabaseTransaction, rows: Vec<idempotency_key::ActiveModel>, now: DateTime<Utc>) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    idempotency_key::Entity::delete_many().filter(idempotency_key::Column::CreatedAt.lte(now - KEY_LIFETIME)).exec(txn).await?;
    // Only a write outside the booking lock (a new patient, on PostgreSQL) can meet another
    // process's request with the same key here.
    match idempotency_key::Entity::insert_many(rows).exec(txn).await {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_))) => Err(StoreError::KeyInUse),
        Err(e) => Err(e.into()),
    }
}

/// `save` of one answer, if the write has a key.
pub(crate) async fn save_one(
    txn: &DatabaseTransaction,
    key: Option<&IdempotencyKey>,
    body: &impl Serialize,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    match key {
        Some(k) => save(txn, vec![row(k, body, now)?], now).await,
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Serialize)]
    struct Change {
        a: Vec<u8>,
        b: u8,
    }

    #[test]
    fn a_fingerprint_is_of_the_request_not_of_its_spelling() {
        let parse = |s: &str| serde_json::from_str::<Change>(s).map_err(|e| e.to_string());
        let k = |path: &str, body: &Result<Change, String>| IdempotencyKey::new(1, "k", "PUT", path, body, 200).fingerprint;
        let (a, b) = (parse(r#"{"b": 1, "a": [1, 2]}"#), parse(r#"{"a":[1,2],"b":1}"#));
        assert!(a.is_ok());
        assert_eq!(k("/itineraries/1", &a), k("/itineraries/1", &b));
        assert_ne!(k("/itineraries/1", &a), k("/itineraries/2", &a));
        assert_ne!(k("/itineraries/1", &a), k("/itineraries/1", &parse(r#"{"a":[1,2],"b":2}"#)));
        assert_ne!(k("/itineraries/1", &a), IdempotencyKey::new(1, "k", "POST", "/itineraries/1", &a, 200).fingerprint);
    }
}

//! Patients, escorts, coordinators and their tokens, feed tokens, and the audit log.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use itinerary_core::plan::Invites;
use itinerary_core::request::{FieldError, RawPatient, check_email, civil_date};
use itinerary_core::{ClinicSetup, Escort, InvalidRequest};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::entity::{audit_log, coordinator, coordinator_token, escort, feed_token, patient, resource};
use crate::unique::Unique;
use crate::{IdempotencyKey, Store, StoreError, Token, hash_token};

/// A patient as a coordinator sends it (create and update).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PatientInput {
    pub name: String,
    pub email: String,
    /// YYYY-MM-DD.
    pub birth_date: String,
    /// IANA zone where the patient lives (Asia/Tokyo when absent).
    #[serde(default)]
    pub home_zone: Option<String>,
    /// `ja` (default) or `en`.
    #[serde(default)]
    pub language: Option<String>,
    pub passport_expiry: String,
    /// Set by the patient alone, through LINE's account link (`/line/link`): refused here unless
    /// it is what is stored already (a client sending back what it read).
    #[serde(default)]
    pub line_user_id: Option<String>,
    /// Which calendar invites they receive: `every`, `clinic` (the default for a new patient) or
    /// `feed`. Left out of a change, it stays as it was.
    #[serde(default)]
    pub invites: Option<String>,
}

/// A stored patient.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PatientView {
    pub id: i32,
    pub name: String,
    pub email: String,
    pub birth_date: NaiveDate,
    pub home_zone: String,
    pub language: String,
    pub passport_expiry: NaiveDate,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line_user_id: Option<String>,
    /// When the patient linked LINE through its account link (absent for an id a coordinator
    /// typed before that flow existed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line_linked_at: Option<DateTime<Utc>>,
    pub invites: Invites,
}

impl From<patient::Model> for PatientView {
    fn from(m: patient::Model) -> Self {
        PatientView {
            id: m.id,
            name: m.name,
            email: m.email,
            birth_date: m.birth_date,
            home_zone: m.home_zone,
            language: m.language,
            passport_expiry: m.passport_expiry,
            line_user_id: m.line_user_id,
            line_linked_at: m.line_linked_at,
            // A value this program did not write reads as what patients had before the choice.
            invites: Invites::parse(&m.invites).unwrap_or(Invites::Every),
        }
    }
}

impl PatientView {
    /// The patient as the planner's request wants it.
    pub fn raw(&self) -> RawPatient {
        RawPatient {
            name: self.name.clone(),
            email: self.email.clone(),
            birth_date: self.birth_date.to_string(),
            home_zone: Some(self.home_zone.clone()),
            language: Some(self.language.clone()),
            passport_expiry: self.passport_expiry.to_string(),
        }
    }
}

struct CheckedPatient {
    name: String,
    email: String,
    birth_date: NaiveDate,
    home_zone: Tz,
    language: String,
    passport_expiry: NaiveDate,
    invites: Option<Invites>,
}

/// Why a LINE user id cannot be typed: a wrong one would send a patient's reminders to a
/// stranger, so only LINE's account link, where the patient proves who they are, sets it.
const TYPED_LINE: &str = "is set by the patient through LINE's account link (the linking page), never typed; leave it out";

/// The patient as sent, checked. `stored_line` is the LINE user id stored already (a change may
/// send it back unchanged).
fn check_patient(p: &PatientInput, stored_line: Option<&str>) -> Result<CheckedPatient, InvalidRequest> {
    let mut errors = Vec::new();
    let mut bad = |field: &str, value: &str, problem: &str| {
        errors.push(FieldError { field: field.to_owned(), value: value.to_owned(), problem: problem.to_owned() })
    };
    let name = p.name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        bad("name", &p.name.escape_default().to_string(), "must be 1–200 characters without line breaks");
    }
    if let Err(problem) = check_email(p.email.trim()) {
        bad("email", &p.email, problem);
    }
    let birth_date = match civil_date(&p.birth_date) {
        Ok(d) if d > Utc::now().date_naive() => {
            bad("birth_date", &p.birth_date, "is in the future");
            None
        }
        Ok(d) => Some(d),
        Err(problem) => {
            bad("birth_date", &p.birth_date, problem);
            None
        }
    };
    let passport_expiry = civil_date(&p.passport_expiry).map_err(|problem| bad("passport_expiry", &p.passport_expiry, problem)).ok();
    let zone_text = p.home_zone.as_deref().unwrap_or("Asia/Tokyo").trim();
    let home_zone = zone_text.parse::<Tz>().ok();
    if home_zone.is_none() {
        bad("home_zone", zone_text, "not an IANA time zone such as Asia/Tokyo or America/Los_Angeles");
    }
    let language = p.language.as_deref().unwrap_or("ja").trim().to_owned();
    if language != "ja" && language != "en" {
        bad("language", &language, "must be `ja` or `en`");
    }
    if let Some(l) = p.line_user_id.as_deref().filter(|l| Some(*l) != stored_line) {
        bad("line_user_id", l, TYPED_LINE);
    }
    let invites = match p.invites.as_deref().map(str::trim) {
        None => None,
        Some(v) => {
            let parsed = Invites::parse(v);
            if parsed.is_none() {
                bad("invites", v, "must be `every`, `clinic` or `feed`");
            }
            parsed
        }
    };
    match (birth_date, passport_expiry, home_zone) {
        (Some(birth_date), Some(passport_expiry), Some(home_zone)) if errors.is_empty() => Ok(CheckedPatient {
            name: name.to_owned(),
            email: p.email.trim().to_owned(),
            birth_date,
            home_zone,
            language,
            passport_expiry,
            invites,
        }),
        _ => Err(InvalidRequest { errors }),
    }
}

/// The counted resources a coordinator can set.
pub const RESOURCES: &[&str] = &["chairs", "lab_draws_per_slot"];

/// A counted resource and its capacity.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ResourceView {
    pub id: String,
    pub capacity: i32,
}

impl From<resource::Model> for ResourceView {
    fn from(m: resource::Model) -> Self {
        ResourceView { id: m.id, capacity: m.capacity }
    }
}

/// An escort as a coordinator sends it and the planner reads it.
pub type EscortInput = Escort;

fn escort_model(x: &Escort) -> Result<escort::ActiveModel, InvalidRequest> {
    let mut errors = Vec::new();
    if x.id.is_empty() || x.id.len() > 16 || !x.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        errors.push(FieldError { field: "id".into(), value: x.id.clone(), problem: "1–16 letters, digits, `-` or `_`".into() });
    }
    if x.name.trim().is_empty() || x.name.chars().count() > 200 || x.name.chars().any(char::is_control) {
        errors.push(FieldError {
            field: "name".into(),
            value: x.name.escape_default().to_string(),
            problem: "must be a name on one line, 1–200 characters".into(),
        });
    }
    if x.languages.is_empty() || x.languages.len() > 10 {
        errors.push(FieldError {
            field: "languages".into(),
            value: x.languages.len().to_string(),
            problem: "must list 1–10 languages the escort speaks".into(),
        });
    }
    for (i, l) in x.languages.iter().enumerate() {
        if !is_language_tag(l) {
            errors.push(FieldError {
                field: format!("languages[{i}]"),
                value: l.chars().take(40).collect::<String>().escape_default().to_string(),
                problem: "not a language tag such as `ja`, `en` or `ms`".into(),
            });
        } else if x.languages[..i].contains(l) {
            errors.push(FieldError { field: format!("languages[{i}]"), value: l.clone(), problem: "is listed twice".into() });
        }
    }
    if let Err(p) = check_email(&x.email) {
        errors.push(FieldError { field: "email".into(), value: x.email.clone(), problem: p.into() });
    }
    if x.works_from >= x.works_until {
        errors.push(FieldError {
            field: "works_until".into(),
            value: x.works_until.format("%H:%M").to_string(),
            problem: "must be after works_from".into(),
        });
    }
    if !errors.is_empty() {
        return Err(InvalidRequest { errors });
    }
    Ok(escort::ActiveModel {
        id: Set(x.id.clone()),
        name: Set(x.name.trim().to_owned()),
        email: Set(x.email.clone()),
        languages: Set(json!(x.languages)),
        works_from: Set(x.works_from.format("%H:%M").to_string()),
        works_until: Set(x.works_until.format("%H:%M").to_string()),
        weekly_days_off: Set(json!(x.weekly_days_off)),
        dates_off: Set(json!(x.dates_off)),
        active: Set(true),
        updated_at: Set(Utc::now()),
    })
}

/// A BCP 47 language tag as messages choose by it: a 2–3 letter lower-case language, then
/// optional subtags (`zh-Hant`, `pt-BR`), at most 35 characters.
fn is_language_tag(t: &str) -> bool {
    let mut parts = t.split('-');
    let lang = parts.next().unwrap_or_default();
    t.len() <= 35
        && (2..=3).contains(&lang.len())
        && lang.bytes().all(|b| b.is_ascii_lowercase())
        && parts.all(|p| (2..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

pub(crate) fn escort_from_model(m: &escort::Model) -> Result<EscortInput, StoreError> {
    let v = json!({
        "id": m.id, "name": m.name, "email": m.email, "languages": m.languages, "works_from": m.works_from,
        "works_until": m.works_until, "weekly_days_off": m.weekly_days_off, "dates_off": m.dates_off,
    });
    serde_json::from_value(v).map_err(|e| StoreError::corrupt("escort", e))
}

/// What a store call that takes input can end in.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sea_orm::DbErr> for InputError {
    fn from(e: sea_orm::DbErr) -> Self {
        InputError::Store(StoreError::Db(e))
    }
}

impl Store {
    pub async fn create_patient(&self, by: i32, p: &PatientInput, key: Option<IdempotencyKey>) -> Result<PatientView, InputError> {
        let c = check_patient(p, None)?;
        let now = Utc::now();
        let txn = self.begin_write().await?;
        crate::idempotency::done_before(&txn, key.as_ref(), now).await?;
        let m = patient::ActiveModel {
            name: Set(c.name),
            email: Set(c.email),
            birth_date: Set(c.birth_date),
            home_zone: Set(c.home_zone.name().to_owned()),
            language: Set(c.language),
            passport_expiry: Set(c.passport_expiry),
            line_user_id: Set(None),
            line_linked_at: Set(None),
            invites: Set(c.invites.unwrap_or_default().as_str().to_owned()),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
        audit(&txn, Some(by), "create", "patient", &m.id.to_string(), json!({})).await?;
        let view = PatientView::from(m);
        crate::idempotency::save_one(&txn, key.as_ref(), &view, now).await?;
        crate::commit(txn).await?;
        Ok(view)
    }

    /// Updates the patient. A new name or address also goes to their calendars: every standing
    /// itinerary's patient appointments are issued again (the UID carries the address, so a new
    /// address means a cancellation to the old one and invites to the new), in the same
    /// transaction.
    pub async fn update_patient(
        &self,
        by: i32,
        base: &ClinicSetup,
        id: i32,
        p: &PatientInput,
        now: DateTime<Utc>,
    ) -> Result<PatientView, InputError> {
        let txn = self.begin_write().await?;
        // The booking lock before reading what the patient had: two changes of one patient at
        // once (PostgreSQL) would otherwise both start from the same old choice of invites and
        // address, and the calendar messages of one would be computed from a stale state.
        crate::itineraries::lock(&txn).await?;
        let old =
            patient::Entity::find_by_id(id).unique(&txn).await?.ok_or(StoreError::NotFound { entity: "patient", id: id.to_string() })?;
        let c = check_patient(p, old.line_user_id.as_deref())?;
        let changed: Vec<&str> = [
            ("name", old.name != c.name),
            ("email", old.email != c.email),
            ("birth_date", old.birth_date != c.birth_date),
            ("home_zone", old.home_zone != c.home_zone.name()),
            ("language", old.language != c.language),
            ("passport_expiry", old.passport_expiry != c.passport_expiry),
            ("invites", c.invites.is_some_and(|i| i.as_str() != old.invites)),
        ]
        .into_iter()
        .filter_map(|(f, d)| d.then_some(f))
        .collect();
        let before = Invites::parse(&old.invites).unwrap_or(Invites::Every);
        let mut m: patient::ActiveModel = old.into();
        m.name = Set(c.name);
        m.email = Set(c.email);
        m.birth_date = Set(c.birth_date);
        m.home_zone = Set(c.home_zone.name().to_owned());
        m.language = Set(c.language);
        m.passport_expiry = Set(c.passport_expiry);
        if let Some(i) = c.invites {
            m.invites = Set(i.as_str().to_owned());
        }
        m.updated_at = Set(Utc::now());
        let m = m.update(&txn).await?;
        let patient: PatientView = m.into();
        // A new address means new UIDs: the old ones are cancelled where their invites went
        // (the choice before), the new ones invited as the patient now chooses. Otherwise a new
        // name updates what was sent, and a new choice sends what it adds and takes away.
        if changed.contains(&"email") {
            let choice = crate::itineraries::Choice { now: patient.invites, sent_under: before };
            self.reissue_calendars(&txn, base, &patient, choice, now).await?;
        } else {
            if changed.contains(&"name") {
                let choice = crate::itineraries::Choice { now: before, sent_under: before };
                self.reissue_calendars(&txn, base, &patient, choice, now).await?;
            }
            if changed.contains(&"invites") {
                self.offer_invites(&txn, base, &patient, before, now).await?;
            }
        }
        // Field names only: the values are personal data.
        audit(&txn, Some(by), "update", "patient", &id.to_string(), json!({ "fields": changed })).await?;
        crate::commit(txn).await?;
        Ok(patient)
    }

    pub async fn patient(&self, id: i32) -> Result<PatientView, StoreError> {
        patient::Entity::find_by_id(id)
            .unique(&self.db)
            .await?
            .map(Into::into)
            .ok_or(StoreError::NotFound { entity: "patient", id: id.to_string() })
    }

    /// Patients in id order, at most `limit` of them after the id `after`.
    pub async fn patients(&self, after: i32, limit: u64) -> Result<Vec<PatientView>, StoreError> {
        use sea_orm::QuerySelect;
        let rows = patient::Entity::find()
            .filter(patient::Column::Id.gt(after))
            .order_by_asc(patient::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Creates the escort, or replaces the one with the same id.
    pub async fn put_escort(&self, by: Option<i32>, e: &EscortInput) -> Result<EscortInput, InputError> {
        let m = escort_model(e)?;
        let txn = self.begin_write().await?;
        let exists = escort::Entity::find_by_id(e.id.clone()).unique(&txn).await?.is_some();
        let saved = if exists { m.update(&txn).await? } else { m.insert(&txn).await? };
        audit(&txn, by, if exists { "update" } else { "create" }, "escort", &saved.id, json!({})).await?;
        crate::commit(txn).await?;
        escort_from_model(&saved).map_err(Into::into)
    }

    pub async fn escort(&self, id: &str) -> Result<EscortInput, StoreError> {
        let m = escort::Entity::find_by_id(id.to_owned())
            .unique(&self.db)
            .await?
            .ok_or(StoreError::NotFound { entity: "escort", id: id.to_owned() })?;
        escort_from_model(&m)
    }

    /// The escorts who take new duties.
    pub async fn escorts(&self) -> Result<Vec<EscortInput>, StoreError> {
        escort::Entity::find()
            .filter(escort::Column::Active.eq(true))
            .order_by_asc(escort::Column::Id)
            .all(&self.db)
            .await?
            .iter()
            .map(escort_from_model)
            .collect()
    }

    /// The escort takes no new duties from now on (leaving, on long leave); duties already
    /// booked stay. Putting the escort again brings them back.
    pub async fn deactivate_escort(&self, by: i32, id: &str) -> Result<(), StoreError> {
        let txn = self.begin_write().await?;
        let m = escort::Entity::find_by_id(id.to_owned())
            .unique(&txn)
            .await?
            .ok_or(StoreError::NotFound { entity: "escort", id: id.to_owned() })?;
        let mut m: escort::ActiveModel = m.into();
        m.active = Set(false);
        m.updated_at = Set(Utc::now());
        m.update(&txn).await?;
        audit(&txn, Some(by), "deactivate", "escort", id, json!({})).await?;
        crate::commit(txn).await?;
        Ok(())
    }

    /// Fills an empty escort table from the configuration (the first start of a new database).
    pub async fn seed_escorts(&self, escorts: &[Escort]) -> Result<usize, InputError> {
        if escort::Entity::find().one(&self.db).await?.is_some() {
            return Ok(0);
        }
        for e in escorts {
            self.put_escort(None, e).await?;
        }
        Ok(escorts.len())
    }

    /// The counted resources: `chairs` (infusion chairs) and `lab_draws_per_slot`.
    pub async fn resources(&self) -> Result<Vec<ResourceView>, StoreError> {
        Ok(resource::Entity::find().order_by_asc(resource::Column::Id).all(&self.db).await?.into_iter().map(Into::into).collect())
    }

    pub async fn resource(&self, id: &str) -> Result<ResourceView, StoreError> {
        resource::Entity::find_by_id(id.to_owned())
            .unique(&self.db)
            .await?
            .map(Into::into)
            .ok_or(StoreError::NotFound { entity: "resource", id: id.to_owned() })
    }

    /// Sets a resource's capacity (from the next booking on).
    pub async fn put_resource(&self, by: Option<i32>, id: &str, capacity: i64) -> Result<ResourceView, InputError> {
        if !RESOURCES.contains(&id) {
            return Err(InvalidRequest {
                errors: vec![FieldError { field: "id".into(), value: id.into(), problem: format!("one of: {}", RESOURCES.join(", ")) }],
            }
            .into());
        }
        let capacity = match u16::try_from(capacity) {
            Ok(c) if c > 0 => i32::from(c),
            _ => {
                return Err(InvalidRequest {
                    errors: vec![FieldError { field: "capacity".into(), value: capacity.to_string(), problem: "must be 1–65535".into() }],
                }
                .into());
            }
        };
        let txn = self.begin_write().await?;
        let m = resource::ActiveModel { id: Set(id.to_owned()), capacity: Set(capacity), updated_at: Set(Utc::now()) };
        let saved = if resource::Entity::find_by_id(id.to_owned()).unique(&txn).await?.is_some() {
            m.update(&txn).await?
        } else {
            m.insert(&txn).await?
        };
        audit(&txn, by, "update", "resource", id, json!({ "capacity": capacity })).await?;
        crate::commit(txn).await?;
        Ok(saved.into())
    }

    /// Fills missing resources from the configuration (the first start of a new database).
    pub async fn seed_resources(&self, chairs: u16, lab_draws_per_slot: u16) -> Result<(), InputError> {
        for (id, c) in [("chairs", chairs), ("lab_draws_per_slot", lab_draws_per_slot)] {
            if resource::Entity::find_by_id(id.to_owned()).unique(&self.db).await?.is_none() {
                self.put_resource(None, id, i64::from(c)).await?;
            }
        }
        Ok(())
    }

    /// A new coordinator and their first bearer token, shown only here, valid for `valid_for`.
    pub async fn create_coordinator(&self, name: &str, valid_for: chrono::Duration) -> Result<(i32, String), StoreError> {
        let txn = self.begin_write().await?;
        let c =
            coordinator::ActiveModel { name: Set(name.to_owned()), created_at: Set(Utc::now()), ..Default::default() }.insert(&txn).await?;
        let secret = insert_coordinator_token(&txn, c.id, valid_for).await?;
        audit(&txn, None, "create", "coordinator", &c.id.to_string(), json!({})).await?;
        crate::commit(txn).await?;
        Ok((c.id, secret))
    }

    /// A further token for an existing coordinator (theirs expired, or was revoked), shown only
    /// here. Their other tokens stay as they are.
    pub async fn issue_coordinator_token(&self, id: i32, valid_for: chrono::Duration) -> Result<String, StoreError> {
        let txn = self.begin_write().await?;
        coordinator::Entity::find_by_id(id)
            .unique(&txn)
            .await?
            .ok_or(StoreError::NotFound { entity: "coordinator", id: id.to_string() })?;
        let secret = insert_coordinator_token(&txn, id, valid_for).await?;
        audit(&txn, None, "issue_token", "coordinator", &id.to_string(), json!({ "days": valid_for.num_days() })).await?;
        crate::commit(txn).await?;
        Ok(secret)
    }

    /// Ends every token of the coordinator at once. Returns how many were not yet revoked.
    pub async fn revoke_coordinator(&self, id: i32) -> Result<u64, StoreError> {
        use sea_orm::sea_query::Expr;
        let txn = self.begin_write().await?;
        coordinator::Entity::find_by_id(id)
            .unique(&txn)
            .await?
            .ok_or(StoreError::NotFound { entity: "coordinator", id: id.to_string() })?;
        let revoked = coordinator_token::Entity::update_many()
            .col_expr(coordinator_token::Column::RevokedAt, Expr::value(Utc::now()))
            .filter(coordinator_token::Column::CoordinatorId.eq(id))
            .filter(coordinator_token::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?
            .rows_affected;
        audit(&txn, None, "revoke", "coordinator", &id.to_string(), json!({ "tokens": revoked })).await?;
        crate::commit(txn).await?;
        Ok(revoked)
    }

    /// Every coordinator with their tokens' state and last use, for `itinerary admin
    /// list-coordinators`.
    pub async fn coordinators(&self) -> Result<Vec<CoordinatorView>, StoreError> {
        let now = Utc::now();
        let people = coordinator::Entity::find().order_by_asc(coordinator::Column::Id).all(&self.db).await?;
        let tokens = coordinator_token::Entity::find().all(&self.db).await?;
        Ok(people
            .into_iter()
            .map(|c| {
                let mine: Vec<&coordinator_token::Model> = tokens.iter().filter(|t| t.coordinator_id == c.id).collect();
                let live: Vec<&&coordinator_token::Model> = mine.iter().filter(|t| live_token(t, now)).collect();
                CoordinatorView {
                    id: c.id,
                    name: c.name,
                    created_at: c.created_at,
                    live_tokens: live.len(),
                    expires_at: live.iter().filter_map(|t| t.expires_at).max(),
                    last_used_at: mine.iter().filter_map(|t| t.last_used_at).max(),
                }
            })
            .collect())
    }

    /// The coordinator a bearer token belongs to, if it is live (not revoked, not expired).
    /// Its last use is recorded at most every five minutes, so reads stay reads.
    pub async fn coordinator_for(&self, secret: &str) -> Result<Option<i32>, StoreError> {
        let now = Utc::now();
        let Some(t) = coordinator_token::Entity::find()
            .filter(coordinator_token::Column::TokenHash.eq(hash_token(secret)))
            .unique(&self.db)
            .await?
            .filter(|t| live_token(t, now))
        else {
            return Ok(None);
        };
        if t.last_used_at.is_none_or(|at| now - at > chrono::Duration::minutes(5)) {
            coordinator_token::Entity::update_many()
                .col_expr(coordinator_token::Column::LastUsedAt, sea_orm::sea_query::Expr::value(now))
                .filter(coordinator_token::Column::Id.eq(t.id))
                .exec(&self.db)
                .await?;
        }
        Ok(Some(t.coordinator_id))
    }

    /// Records that a coordinator read personal data: the ids only, never the content.
    pub async fn audit_read(&self, by: i32, entity: &str, id: &str, detail: serde_json::Value) -> Result<(), StoreError> {
        audit(&self.db, Some(by), "read", entity, id, detail).await?;
        Ok(())
    }

    /// A new feed token for the patient; earlier ones stop working. The secret is shown once.
    pub async fn rotate_feed(&self, by: i32, patient_id: i32) -> Result<String, StoreError> {
        let t = Token::generate(FEED_PREFIX);
        self.replace_feed(by, patient_id, "rotate", Some(t.hash)).await?;
        Ok(t.secret)
    }

    pub async fn revoke_feed(&self, by: i32, patient_id: i32) -> Result<(), StoreError> {
        self.replace_feed(by, patient_id, "revoke", None).await
    }

    /// Revokes the patient's feed tokens and, with `hash`, issues a new one, in one transaction.
    async fn replace_feed(&self, by: i32, patient_id: i32, action: &str, hash: Option<String>) -> Result<(), StoreError> {
        self.patient(patient_id).await?;
        let txn = self.begin_write().await?;
        revoke_feeds(&txn, patient_id).await?;
        if let Some(hash) = hash {
            feed_token::ActiveModel {
                patient_id: Set(patient_id),
                token_hash: Set(hash),
                created_at: Set(Utc::now()),
                revoked_at: Set(None),
                origin: Set("coordinator".into()),
                ..Default::default()
            }
            .insert(&txn)
            .await?;
        }
        audit(&txn, Some(by), action, "feed", &patient_id.to_string(), json!({})).await?;
        crate::commit(txn).await?;
        Ok(())
    }

    /// The patient's live feed tokens (not the secrets, which are not kept), oldest first.
    pub async fn feed_tokens(&self, patient_id: i32) -> Result<Vec<serde_json::Value>, StoreError> {
        self.patient(patient_id).await?;
        let rows = feed_token::Entity::find()
            .filter(feed_token::Column::PatientId.eq(patient_id))
            .filter(feed_token::Column::RevokedAt.is_null())
            .order_by_asc(feed_token::Column::Id)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(|t| json!({ "id": t.id, "origin": t.origin, "created_at": t.created_at })).collect())
    }

    /// The patient a feed token opens, if it is valid.
    pub async fn feed_patient(&self, secret: &str) -> Result<Option<i32>, StoreError> {
        let t = feed_token::Entity::find()
            .filter(feed_token::Column::TokenHash.eq(hash_token(secret)))
            .filter(feed_token::Column::RevokedAt.is_null())
            .unique(&self.db)
            .await?;
        Ok(t.map(|t| t.patient_id))
    }

    /// The audit log, newest first: at most `limit` entries older than the id `before`.
    pub async fn audit_log(&self, before: Option<i32>, limit: u64) -> Result<Vec<audit_log::Model>, StoreError> {
        use sea_orm::QuerySelect;
        let mut q = audit_log::Entity::find();
        if let Some(b) = before {
            q = q.filter(audit_log::Column::Id.lt(b));
        }
        Ok(q.order_by_desc(audit_log::Column::Id).limit(limit).all(&self.db).await?)
    }
}

/// Every feed URL has this form, whoever it was given to.
pub(crate) const FEED_PREFIX: &str = "itf_";

/// A coordinator as `itinerary admin list-coordinators` shows them.
#[derive(Clone, Debug, Serialize)]
pub struct CoordinatorView {
    pub id: i32,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// Tokens neither revoked nor expired.
    pub live_tokens: usize,
    /// When the last of them ends.
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

pub(crate) fn live_token(t: &coordinator_token::Model, now: DateTime<Utc>) -> bool {
    t.revoked_at.is_none() && t.expires_at.is_some_and(|e| e > now)
}

async fn insert_coordinator_token(db: &impl ConnectionTrait, id: i32, valid_for: chrono::Duration) -> Result<String, StoreError> {
    let t = Token::generate("itc_");
    let now = Utc::now();
    coordinator_token::ActiveModel {
        coordinator_id: Set(id),
        token_hash: Set(t.hash),
        created_at: Set(now),
        revoked_at: Set(None),
        expires_at: Set(Some(now + valid_for)),
        last_used_at: Set(None),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(t.secret)
}

async fn revoke_feeds(db: &impl ConnectionTrait, patient_id: i32) -> Result<(), sea_orm::DbErr> {
    use sea_orm::sea_query::Expr;
    feed_token::Entity::update_many()
        .col_expr(feed_token::Column::RevokedAt, Expr::value(Utc::now()))
        .filter(feed_token::Column::PatientId.eq(patient_id))
        .filter(feed_token::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}

/// One line of the audit log. `detail` holds ids and field names, never personal data.
pub(crate) async fn audit(
    db: &impl ConnectionTrait,
    by: Option<i32>,
    action: &str,
    entity: &str,
    entity_id: &str,
    detail: serde_json::Value,
) -> Result<(), sea_orm::DbErr> {
    audit_log::Entity::insert(audit_row(by, action, entity, entity_id, detail)).exec_without_returning(db).await?;
    Ok(())
}

/// The row of one line of the audit log.
pub(crate) fn audit_row(by: Option<i32>, action: &str, entity: &str, entity_id: &str, detail: serde_json::Value) -> audit_log::ActiveModel {
    audit_log::ActiveModel {
        coordinator_id: Set(by),
        action: Set(action.to_owned()),
        entity: Set(entity.to_owned()),
        entity_id: Set(entity_id.to_owned()),
        detail: Set(detail),
        at: Set(Utc::now()),
        ..Default::default()
    }
}

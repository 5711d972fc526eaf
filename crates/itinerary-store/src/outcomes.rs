//! Patient-reported outcomes (issue 17): personal questionnaire links, the answers saved as they
//! are given, the course of each patient's answers for coordinators, the decision at the
//! 12-month re-evaluation (with the draft of a second set it makes), and a patient's erasure and
//! export.
//!
//! An occasion is the first infusion of an itinerary (`baseline`) or one of its online
//! appointments (`followup_1m`, …, `reevaluation`), read from the itinerary's current plan: a
//! follow-up moved moves when its questionnaire closes. A link (`itq_…`, 256 bits, stored as
//! SHA-256) opens one occasion of one patient, until that occasion begins.

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use itinerary_core::plan::{EventKind, Text};
use itinerary_core::{Plan, Zoned};
use itinerary_outcomes::{Answers, Occasion, OccasionKind};
use sea_orm::sea_query::ExprTrait;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    TransactionTrait,
};
use serde::Serialize;
use serde_json::json;

use crate::entity::{
    booking, calendar_reply, calendar_uid, delivery, event, feed_token, idempotency_key, itinerary, itinerary_version, line_contact,
    line_link_nonce, line_notice, outcome_answer, outcome_token, patient, patient_message, reevaluation, scheduled_message,
};
use crate::itineraries::{NewItinerary, lock};
use crate::people::audit;
use crate::token::{Token, hash_token};
use crate::unique::Unique;
use crate::{Store, StoreError};

/// Saves one occasion takes at most: a patient correcting answers never comes near; a script
/// flooding the link stops here.
pub const MAX_SAVES: i32 = 200;
/// A link outlives its occasion's planned start by at most this (the occasion's current start
/// closes it first; this bounds a link whose itinerary is changed again and again).
const LINK_BACKSTOP: Duration = Duration::days(400);

/// An occasion of a plan: its key, what it is, when it begins and the appointment's title.
#[derive(Clone, Debug)]
pub struct PlannedOccasion {
    pub key: String,
    pub kind: OccasionKind,
    pub start: Zoned,
    /// The appointment it comes before (the infusion, the online follow-up).
    pub event: String,
    pub title: Text,
}

/// The occasions of `plan`, in time order: its first infusion, then its online appointments.
pub fn occasions_of(plan: &Plan) -> Vec<PlannedOccasion> {
    let mut out = Vec::new();
    let first =
        plan.events.iter().filter(|e| e.kind == EventKind::Infusion).filter_map(|e| Some((e.start()?, e))).min_by_key(|(s, _)| s.utc());
    if let Some((start, e)) = first {
        out.push(PlannedOccasion {
            key: "baseline".into(),
            kind: OccasionKind::Baseline,
            start,
            event: e.key.clone(),
            title: e.title.clone(),
        });
    }
    for e in plan.events.iter().filter(|e| e.online) {
        let Some(start) = e.start() else { continue };
        let kind = if e.kind == EventKind::Reevaluation { OccasionKind::Reevaluation } else { OccasionKind::FollowUp };
        out.push(PlannedOccasion { key: e.key.clone(), kind, start, event: e.key.clone(), title: e.title.clone() });
    }
    out.sort_by_key(|o| o.start.utc());
    out
}

/// A questionnaire as its page shows it.
#[derive(Clone, Debug)]
pub struct Questionnaire {
    pub patient_id: i32,
    /// `ja` or `en`, the patient's language.
    pub language: String,
    pub occasion: Occasion,
    pub title: Text,
    /// When it closes (the occasion's start), in the zone it happens in.
    pub closes: Zoned,
}

/// What a link opens.
#[derive(Clone, Debug)]
pub enum QuestionnaireLink {
    Open(Box<Questionnaire>),
    /// No such link (or it was for a patient since erased).
    Unknown,
    /// The occasion began, the itinerary was cancelled, or the link is past its backstop.
    Closed,
    /// This occasion took `MAX_SAVES` saves already.
    TooMany,
}

/// A patient's outcomes for coordinators: every occasion of every set (answered or not), the
/// infusions, the doctor's summary lines and the re-evaluation decisions.
#[derive(Clone, Debug, Serialize)]
pub struct PatientOutcomes {
    pub patient_id: i32,
    pub occasions: Vec<OccasionView>,
    pub infusions: Vec<DateTime<Utc>>,
    pub reevaluations: Vec<ReevaluationView>,
}

impl PatientOutcomes {
    /// The occasions as rows of the CSV a doctor opens (`itinerary_outcomes::csv`).
    pub fn csv(&self) -> Result<String, itinerary_outcomes::CsvError> {
        itinerary_outcomes::csv(&self.rows())
    }

    /// The chart of every measure with the infusions marked (`itinerary_outcomes::chart`).
    pub fn chart(&self, english: bool) -> Result<String, itinerary_outcomes::ChartError> {
        itinerary_outcomes::chart(&self.rows(), &self.infusions, english)
    }

    fn rows(&self) -> Vec<Occasion> {
        self.occasions.iter().map(|o| o.occasion.clone()).collect()
    }
}

/// One occasion, with the summary against its set's baseline for a follow-up.
#[derive(Clone, Debug, Serialize)]
pub struct OccasionView {
    #[serde(flatten)]
    pub occasion: Occasion,
    pub answered: bool,
    /// `itch 8 → 3 (−63%), …` against the baseline of the same set.
    pub summary_en: Option<String>,
    pub summary_ja: Option<String>,
}

/// The coordinator's decision at a set's re-evaluation.
#[derive(Clone, Debug, Serialize)]
pub struct ReevaluationView {
    pub itinerary_id: i32,
    pub reference: String,
    pub decision: String,
    pub note: Option<String>,
    pub decided_at: DateTime<Utc>,
    /// For a proposed second set not booked yet: its request, to preview and book.
    pub draft: Option<NewItinerary>,
    pub booked_itinerary_id: Option<i32>,
}

/// The decisions a coordinator may record.
pub const DECISIONS: [&str; 3] = ["second_set_proposed", "declined", "not_indicated"];

/// What an erasure removed, by table (counts only).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Erasure {
    pub patient_id: i32,
    pub rows: std::collections::BTreeMap<&'static str, u64>,
    /// The erased itineraries' references: the caller erases what it keeps under them (the
    /// mail outbox).
    #[serde(skip)]
    pub references: Vec<String>,
    /// Messages deleted from the mail outbox (set by the caller).
    pub outbox_files: usize,
}

/// Why a patient could not be erased.
#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An itinerary still holds appointments ahead: cancelling it first tells the patient, the
    /// escorts and their calendars, which an erasure could no longer do.
    #[error("itinerary {reference} is active with appointments ahead: cancel it first")]
    Active { reference: String },
}

impl From<sea_orm::DbErr> for EraseError {
    fn from(e: sea_orm::DbErr) -> Self {
        EraseError::Store(e.into())
    }
}

fn answers_of(row: &outcome_answer::Model) -> Answers {
    let n = |v: Option<i32>| v.and_then(|v| u8::try_from(v).ok());
    Answers {
        itch: n(row.itch),
        sleep: n(row.sleep),
        steroid_days: n(row.steroid_days),
        treatments: row.treatments.as_deref().map(Answers::parse_treatment_codes),
        treatment_other: row.treatment_other.clone(),
        impression: n(row.impression),
    }
}

async fn plan_of(db: &impl ConnectionTrait, it: &itinerary::Model) -> Result<Plan, StoreError> {
    let v = itinerary_version::Entity::find()
        .filter(itinerary_version::Column::ItineraryId.eq(it.id))
        .filter(itinerary_version::Column::Version.eq(it.current_version))
        .unique(db)
        .await?
        .ok_or(StoreError::corrupt("itinerary version", format!("itinerary {} has no version {}", it.id, it.current_version)))?;
    crate::stored::parsed("plan", &v.plan)
}

impl Store {
    /// A fresh link to the questionnaire of `occasion` of itinerary `itinerary_id`, for its
    /// patient; none when the itinerary is not active or the occasion is not ahead.
    pub async fn issue_questionnaire_link(
        &self,
        itinerary_id: i32,
        occasion: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, StoreError> {
        let Some(it) = itinerary::Entity::find_by_id(itinerary_id).unique(&self.db).await? else { return Ok(None) };
        if it.status != "active" {
            return Ok(None);
        }
        let plan = plan_of(&self.db, &it).await?;
        let Some(o) = occasions_of(&plan).into_iter().find(|o| o.key == occasion && o.start.utc() > now) else { return Ok(None) };
        let token = Token::generate("itq_");
        outcome_token::Entity::insert(outcome_token::ActiveModel {
            token_hash: Set(token.hash),
            patient_id: Set(it.patient_id),
            itinerary_id: Set(it.id),
            occasion: Set(o.key),
            created_at: Set(now),
            expires_at: Set(o.start.utc() + LINK_BACKSTOP),
        })
        .exec_without_returning(&self.db)
        .await?;
        Ok(Some(token.secret))
    }

    /// Whether anything was answered for `occasion` of itinerary `itinerary_id`.
    pub async fn questionnaire_answered(&self, itinerary_id: i32, occasion: &str) -> Result<bool, StoreError> {
        let row = outcome_answer::Entity::find()
            .filter(outcome_answer::Column::ItineraryId.eq(itinerary_id))
            .filter(outcome_answer::Column::Occasion.eq(occasion))
            .unique(&self.db)
            .await?;
        Ok(row.is_some_and(|r| !answers_of(&r).is_empty()))
    }

    /// What the link `secret` opens now.
    pub async fn questionnaire(&self, secret: &str, now: DateTime<Utc>) -> Result<QuestionnaireLink, StoreError> {
        opened(&self.db, secret, now).await
    }

    /// Saves `given` (only the answers it holds) to the questionnaire the link opens, in one
    /// transaction; what it now holds, or why nothing was saved.
    pub async fn save_questionnaire(&self, secret: &str, given: &Answers, now: DateTime<Utc>) -> Result<QuestionnaireLink, StoreError> {
        // Read, then write: on SQLite the write lock is taken first (BEGIN IMMEDIATE), else the
        // worker's writes in between make the upgrade fail as "database is locked".
        let txn = self.begin_write().await?;
        let link = opened(&txn, secret, now).await?;
        let QuestionnaireLink::Open(mut q) = link else { return Ok(link) };
        // The occasion's row exists, then is locked (PostgreSQL): two saves at once (a double
        // tap, a retry after a tunnel) queue here instead of one failing on the unique index
        // or overwriting the other's answers.
        let fresh = outcome_answer::ActiveModel {
            patient_id: Set(q.patient_id),
            itinerary_id: Set(q.occasion.itinerary_id),
            occasion: Set(q.occasion.key.clone()),
            answered_at: Set(now),
            updated_at: Set(now),
            saves: Set(0),
            ..Default::default()
        };
        let keys = sea_orm::sea_query::OnConflict::columns([outcome_answer::Column::ItineraryId, outcome_answer::Column::Occasion])
            .do_nothing()
            .to_owned();
        outcome_answer::Entity::insert(fresh).on_conflict(keys).exec_without_returning(&txn).await?;
        let row = outcome_answer::Entity::find()
            .filter(outcome_answer::Column::ItineraryId.eq(q.occasion.itinerary_id))
            .filter(outcome_answer::Column::Occasion.eq(&q.occasion.key))
            .lock_exclusive()
            .one(&txn)
            .await?
            .ok_or(StoreError::corrupt("outcome answer", "not there after its insert"))?;
        if row.saves >= MAX_SAVES {
            return Ok(QuestionnaireLink::TooMany);
        }
        let merged = answers_of(&row).merged(given);
        let n = |v: Option<u8>| Set(v.map(i32::from));
        let (first, saves) = (row.saves == 0, row.saves + 1);
        let answered_at = if first { now } else { row.answered_at };
        let mut m: outcome_answer::ActiveModel = row.into();
        m.itch = n(merged.itch);
        m.sleep = n(merged.sleep);
        m.steroid_days = n(merged.steroid_days);
        m.treatments = Set(merged.treatment_codes());
        m.treatment_other = Set(merged.treatment_other.clone());
        m.impression = n(merged.impression);
        m.answered_at = Set(answered_at);
        m.updated_at = Set(now);
        m.saves = Set(saves);
        m.update(&txn).await?;
        crate::commit(txn).await?;
        q.occasion.answers = merged;
        q.occasion.answered_at = Some(answered_at);
        q.occasion.updated_at = Some(now);
        Ok(QuestionnaireLink::Open(q))
    }

    /// Every occasion of the patient's sets, answered or not, with the summaries and decisions.
    /// Health data: the caller audits the read.
    pub async fn patient_outcomes(&self, patient_id: i32) -> Result<PatientOutcomes, StoreError> {
        let p = self.patient(patient_id).await?;
        let its = itinerary::Entity::find()
            .filter(itinerary::Column::PatientId.eq(p.id))
            .order_by_asc(itinerary::Column::Id)
            .all(&self.db)
            .await?;
        let rows = outcome_answer::Entity::find().filter(outcome_answer::Column::PatientId.eq(p.id)).all(&self.db).await?;
        let mut occasions = Vec::new();
        let mut infusions = Vec::new();
        let mut set = 0;
        for it in &its {
            let plan = plan_of(&self.db, it).await?;
            let cancelled = it.status == "cancelled";
            if !cancelled {
                set += 1;
                infusions.extend(plan.events.iter().filter(|e| e.kind == EventKind::Infusion).filter_map(|e| e.start()).map(|s| s.utc()));
            }
            let mut baseline: Option<Answers> = None;
            for o in occasions_of(&plan) {
                let row = rows.iter().find(|r| r.itinerary_id == it.id && r.occasion == o.key);
                if cancelled && row.is_none() {
                    continue;
                }
                let answers = row.map(answers_of).unwrap_or_default();
                let (summary_en, summary_ja) = match (&baseline, o.kind) {
                    (Some(b), OccasionKind::FollowUp | OccasionKind::Reevaluation) if !answers.is_empty() => (
                        Some(itinerary_outcomes::summary(b, &answers, true)).filter(|s| !s.is_empty()),
                        Some(itinerary_outcomes::summary(b, &answers, false)).filter(|s| !s.is_empty()),
                    ),
                    _ => (None, None),
                };
                if o.kind == OccasionKind::Baseline && !answers.is_empty() {
                    baseline = Some(answers.clone());
                }
                let answered = !answers.is_empty();
                occasions.push(OccasionView {
                    occasion: Occasion {
                        itinerary_id: it.id,
                        reference: it.reference.clone(),
                        set: if cancelled { 0 } else { set },
                        key: o.key,
                        kind: o.kind,
                        at: o.start.utc(),
                        zone: o.start.zone(),
                        answers,
                        answered_at: row.map(|r| r.answered_at),
                        updated_at: row.map(|r| r.updated_at),
                    },
                    answered,
                    summary_en,
                    summary_ja,
                });
            }
        }
        infusions.sort();
        let reevaluations = reevaluation::Entity::find()
            .filter(reevaluation::Column::PatientId.eq(p.id))
            .order_by_asc(reevaluation::Column::ItineraryId)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|r| {
                let reference = its.iter().find(|i| i.id == r.itinerary_id).map(|i| i.reference.clone()).unwrap_or_default();
                reevaluation_view(r, reference)
            })
            .collect::<Result<_, _>>()?;
        Ok(PatientOutcomes { patient_id: p.id, occasions, infusions, reevaluations })
    }

    /// Records the decision at itinerary `itinerary_id`'s re-evaluation (again: the last one
    /// stands). `second_set_proposed` keeps a draft of the second set: the same patient and
    /// protocol, every flight 52 weeks later (the same weekday, as airlines' schedules run).
    pub async fn decide_reevaluation(
        &self,
        by: i32,
        itinerary_id: i32,
        decision: &str,
        note: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<ReevaluationView, crate::InputError> {
        use crate::InputError;
        let mut errors = Vec::new();
        if !DECISIONS.contains(&decision) {
            errors.push(itinerary_core::FieldError {
                field: "decision".into(),
                value: decision.chars().take(40).collect(),
                problem: format!("is not one of {}", DECISIONS.join(", ")),
            });
        }
        let note = note.map(str::trim).filter(|n| !n.is_empty());
        if let Some(n) = note
            && (n.chars().count() > 2000 || n.chars().any(|c| c.is_control() && c != '\n'))
        {
            errors.push(itinerary_core::FieldError {
                field: "note".into(),
                value: n.chars().take(40).collect(),
                problem: "is longer than 2000 characters or holds a control character".into(),
            });
        }
        if !errors.is_empty() {
            return Err(InputError::Invalid(itinerary_core::InvalidRequest { errors }));
        }
        let it = itinerary::Entity::find_by_id(itinerary_id)
            .unique(&self.db)
            .await
            .map_err(StoreError::from)?
            .ok_or(StoreError::NotFound { entity: "itinerary", id: itinerary_id.to_string() })?;
        if it.status != "active" {
            return Err(InputError::Invalid(itinerary_core::InvalidRequest {
                errors: vec![itinerary_core::FieldError {
                    field: "itinerary".into(),
                    value: it.reference.clone(),
                    problem: "is cancelled: a decision is recorded on a set that took place".into(),
                }],
            }));
        }
        let draft = if decision == "second_set_proposed" {
            let mut req = self.itinerary_request(it.id).await?;
            shift_request(&mut req, Duration::weeks(52)).map_err(|e| StoreError::corrupt("request", e))?;
            Some(serde_json::to_string(&req).map_err(|e| StoreError::corrupt("request", e))?)
        } else {
            None
        };
        let txn = self.db.begin().await.map_err(StoreError::from)?;
        let row = reevaluation::Model {
            itinerary_id: it.id,
            patient_id: it.patient_id,
            decision: decision.to_owned(),
            note: note.map(str::to_owned),
            decided_by: Some(by),
            decided_at: now,
            draft,
            booked_itinerary_id: None,
        };
        // The last decision stands; two at once on PostgreSQL meet here rather than on the key.
        let replace = sea_orm::sea_query::OnConflict::column(reevaluation::Column::ItineraryId)
            .update_columns([
                reevaluation::Column::Decision,
                reevaluation::Column::Note,
                reevaluation::Column::DecidedBy,
                reevaluation::Column::DecidedAt,
                reevaluation::Column::Draft,
                reevaluation::Column::BookedItineraryId,
            ])
            .to_owned();
        reevaluation::Entity::insert(reevaluation::ActiveModel::from(row.clone()))
            .on_conflict(replace)
            .exec_without_returning(&txn)
            .await
            .map_err(StoreError::from)?;
        audit(&txn, Some(by), "decide_reevaluation", "itinerary", &it.id.to_string(), json!({ "decision": decision })).await?;
        crate::commit(txn).await?;
        Ok(reevaluation_view(row, it.reference)?)
    }

    /// Marks proposed second sets as booked by the new itineraries of `booked` (patient,
    /// protocol, itinerary: one of the patient's with the draft's protocol), in the transaction
    /// that stores them: one read for a booking group, an update only where a proposal is open.
    pub(crate) async fn drafts_booked(txn: &DatabaseTransaction, booked: &[(i32, &str, i32)]) -> Result<(), StoreError> {
        let open = Self::drafts_open(txn, booked).await?;
        Self::mark_drafts_booked(txn, &open).await
    }

    /// The proposed second sets the itineraries of `booked` book, as (the re-evaluation's
    /// itinerary, the new one): a read, which locks nothing, so that a booking group can make it
    /// before it takes the booking lock.
    pub(crate) async fn drafts_open(txn: &DatabaseTransaction, booked: &[(i32, &str, i32)]) -> Result<Vec<(i32, i32)>, StoreError> {
        if booked.is_empty() {
            return Ok(Vec::new());
        }
        let open = reevaluation::Entity::find()
            .filter(reevaluation::Column::PatientId.is_in(booked.iter().map(|(patient, _, _)| *patient)))
            .filter(reevaluation::Column::Decision.eq("second_set_proposed"))
            .filter(reevaluation::Column::BookedItineraryId.is_null())
            .all(txn)
            .await?;
        Ok(open
            .into_iter()
            .filter_map(|r| {
                let protocol = r.draft.as_deref().and_then(|d| serde_json::from_str::<NewItinerary>(d).ok()).map(|d| d.protocol);
                booked
                    .iter()
                    .find(|(patient, p, id)| *patient == r.patient_id && Some(*p) == protocol.as_deref() && *id != r.itinerary_id)
                    .map(|(_, _, id)| (r.itinerary_id, *id))
            })
            .collect())
    }

    /// Marks the proposals `drafts_open` found as booked, where they are still open: under the
    /// booking lock, as erasure deletes them (rows locked in that order only, never the
    /// other way round).
    pub(crate) async fn mark_drafts_booked(txn: &DatabaseTransaction, open: &[(i32, i32)]) -> Result<(), StoreError> {
        for (reevaluated, by) in open {
            reevaluation::Entity::update_many()
                .col_expr(reevaluation::Column::BookedItineraryId, sea_orm::sea_query::Expr::value(*by))
                .filter(reevaluation::Column::ItineraryId.eq(*reevaluated))
                .filter(reevaluation::Column::Decision.eq("second_set_proposed"))
                .filter(reevaluation::Column::BookedItineraryId.is_null())
                .exec(txn)
                .await?;
        }
        Ok(())
    }

    /// Erases the patient (the right to erasure of APPI and PDPA): their record, itineraries
    /// with every version, appointment, booking, message and delivery record, calendar UIDs and
    /// replies, LINE link, contact, nonces and notices, feed and questionnaire links, answers,
    /// re-evaluations, and cached idempotent answers that carry their data; in one transaction
    /// under the booking lock. The audit log keeps its rows (ids and field names, no personal
    /// data) and gains one saying who erased whom. Refused while an itinerary has appointments
    /// ahead: cancel it first.
    pub async fn erase_patient(&self, by: i32, patient_id: i32, now: DateTime<Utc>) -> Result<Erasure, EraseError> {
        let turn = self.write_turn().await;
        let txn = self.db.begin().await?;
        lock(&txn).await?;
        let p = patient::Entity::find_by_id(patient_id)
            .unique(&txn)
            .await?
            .ok_or(StoreError::NotFound { entity: "patient", id: patient_id.to_string() })?;
        let its = itinerary::Entity::find().filter(itinerary::Column::PatientId.eq(p.id)).all(&txn).await?;
        for it in its.iter().filter(|i| i.status == "active") {
            let plan = plan_of(&txn, it).await?;
            if plan.events.iter().any(|e| e.end().is_some_and(|end| end.utc() > now)) {
                return Err(EraseError::Active { reference: it.reference.clone() });
            }
        }
        let ids: Vec<i32> = its.iter().map(|i| i.id).collect();
        let mut e = Erasure { patient_id: p.id, references: its.iter().map(|i| i.reference.clone()).collect(), ..Default::default() };
        let messages: Vec<i32> = scheduled_message::Entity::find()
            .filter(scheduled_message::Column::ItineraryId.is_in(ids.clone()))
            .all(&txn)
            .await?
            .into_iter()
            .map(|m| m.id)
            .collect();
        let mut count = |table: &'static str, n: u64| *e.rows.entry(table).or_default() += n;
        count(
            "delivery",
            delivery::Entity::delete_many().filter(delivery::Column::MessageId.is_in(messages)).exec(&txn).await?.rows_affected,
        );
        macro_rules! by_itinerary {
            ($($m:ident),*) => {$(
                count(stringify!($m), $m::Entity::delete_many().filter($m::Column::ItineraryId.is_in(ids.clone())).exec(&txn).await?.rows_affected);
            )*};
        }
        by_itinerary!(scheduled_message, calendar_uid, calendar_reply, booking, event, itinerary_version);
        macro_rules! by_patient {
            ($($m:ident),*) => {$(
                count(stringify!($m), $m::Entity::delete_many().filter($m::Column::PatientId.eq(p.id)).exec(&txn).await?.rows_affected);
            )*};
        }
        by_patient!(outcome_answer, outcome_token, reevaluation, patient_message, line_link_nonce, line_notice, feed_token);
        if let Some(line) = &p.line_user_id {
            count(
                "line_notice",
                line_notice::Entity::delete_many().filter(line_notice::Column::LineUserId.eq(line)).exec(&txn).await?.rows_affected,
            );
            count(
                "line_contact",
                line_contact::Entity::delete_many().filter(line_contact::Column::LineUserId.eq(line)).exec(&txn).await?.rows_affected,
            );
        }
        // Answers kept for idempotent retries (a day) that carry the patient's data: the
        // patient's own (their address is in it) and their itineraries' (their reference).
        // By id too: an address changed within the day leaves the old one in a cached answer.
        let mut cached = sea_orm::Condition::any()
            .add(idempotency_key::Column::Body.contains(&p.email))
            .add(idempotency_key::Column::Body.contains(format!("{{\"id\":{},\"name\"", p.id)))
            .add(idempotency_key::Column::Body.contains(format!("\"patient_id\":{},", p.id)));
        for it in &its {
            cached = cached.add(idempotency_key::Column::Body.contains(&it.reference));
        }
        count("idempotency_key", idempotency_key::Entity::delete_many().filter(cached).exec(&txn).await?.rows_affected);
        count("itinerary", itinerary::Entity::delete_many().filter(itinerary::Column::PatientId.eq(p.id)).exec(&txn).await?.rows_affected);
        count("patient", patient::Entity::delete_by_id(p.id).exec(&txn).await?.rows_affected);
        let removed: u64 = e.rows.values().sum();
        audit(&txn, Some(by), "erase", "patient", &p.id.to_string(), json!({ "rows": removed })).await?;
        crate::commit(txn).await?;
        drop(turn);
        Ok(e)
    }

    /// Everything stored about the patient, for an access request (APPI art. 33, PDPA s. 30):
    /// their record, itineraries with every version's plan, messages and their delivery
    /// records, calendar replies, messages they sent, LINE state, answers and decisions, and the
    /// audit entries about them. The caller audits the read.
    pub async fn export_patient(&self, patient_id: i32) -> Result<serde_json::Value, StoreError> {
        let p = self.patient(patient_id).await?;
        let its = itinerary::Entity::find()
            .filter(itinerary::Column::PatientId.eq(p.id))
            .order_by_asc(itinerary::Column::Id)
            .all(&self.db)
            .await?;
        let mut itineraries = Vec::new();
        for it in &its {
            let versions = itinerary_version::Entity::find()
                .filter(itinerary_version::Column::ItineraryId.eq(it.id))
                .order_by_asc(itinerary_version::Column::Version)
                .all(&self.db)
                .await?;
            let messages = scheduled_message::Entity::find()
                .filter(scheduled_message::Column::ItineraryId.eq(it.id))
                .order_by_asc(scheduled_message::Column::Id)
                .all(&self.db)
                .await?;
            let replies = calendar_reply::Entity::find().filter(calendar_reply::Column::ItineraryId.eq(it.id)).all(&self.db).await?;
            // The plan is stored as JSON text (migration 18): given back as JSON, not a string.
            let versions = versions
                .iter()
                .map(|v| {
                    let plan: serde_json::Value = crate::stored::parsed("plan", &v.plan)?;
                    Ok(json!({ "version": v.version, "planned_at": v.planned_at, "request": v.request, "plan": plan }))
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            itineraries.push(json!({
                "id": it.id,
                "reference": it.reference,
                "status": it.status,
                "created_at": it.created_at,
                "versions": versions,
                "messages": messages.iter().map(|m| json!({
                    "id": m.id, "kind": m.kind, "key": m.key, "due_at": m.due_at, "status": m.status,
                    "sent_at": m.sent_at, "channel": m.channel,
                })).collect::<Vec<_>>(),
                "calendar_replies": replies.iter().map(|r| json!({
                    "received_at": r.received_at, "method": r.method, "event_key": r.event_key, "role": r.role,
                    "partstat": r.partstat, "comment": r.comment, "outcome": r.outcome,
                })).collect::<Vec<_>>(),
            }));
        }
        let sent = patient_message::Entity::find().filter(patient_message::Column::PatientId.eq(p.id)).all(&self.db).await?;
        let outcomes = self.patient_outcomes(p.id).await?;
        use crate::entity::audit_log;
        // Every entry about them: the record and its reads (answers, messages, feeds, exports)
        // by the patient's id, their itineraries' by theirs.
        let about_patient = ["patient", "outcomes", "export", "patient_messages", "feed", "line"];
        let about = sea_orm::Condition::any()
            .add(audit_log::Column::Entity.is_in(about_patient).and(audit_log::Column::EntityId.eq(p.id.to_string())))
            .add(
                audit_log::Column::Entity
                    .is_in(["itinerary", "itinerary_answers"])
                    .and(audit_log::Column::EntityId.is_in(its.iter().map(|i| i.id.to_string()))),
            );
        let audit_rows = audit_log::Entity::find().filter(about).order_by_asc(audit_log::Column::Id).all(&self.db).await?;
        Ok(json!({
            "exported_for": "access request (APPI art. 33, PDPA s. 30)",
            "patient": p,
            "itineraries": itineraries,
            "messages_from_patient": sent.iter().map(|m| json!({
                "channel": m.channel, "kind": m.kind, "body": m.body, "received_at": m.received_at, "answer": m.answer,
            })).collect::<Vec<_>>(),
            "outcomes": outcomes,
            "audit": audit_rows.iter().map(|a| json!({ "action": a.action, "entity": a.entity, "entity_id": a.entity_id, "at": a.at, "coordinator_id": a.coordinator_id, "detail": a.detail })).collect::<Vec<_>>(),
        }))
    }
}

fn reevaluation_view(r: reevaluation::Model, reference: String) -> Result<ReevaluationView, StoreError> {
    let draft = match (&r.draft, r.booked_itinerary_id) {
        (Some(d), None) => Some(serde_json::from_str(d).map_err(|e| StoreError::corrupt("draft", e))?),
        _ => None,
    };
    Ok(ReevaluationView {
        itinerary_id: r.itinerary_id,
        reference,
        decision: r.decision,
        note: r.note,
        decided_at: r.decided_at,
        draft,
        booked_itinerary_id: r.booked_itinerary_id,
    })
}

/// Every date of the request `by` later (flights' local times, preferred dates).
fn shift_request(req: &mut NewItinerary, by: Duration) -> Result<(), chrono::ParseError> {
    // Every form a booking accepts (`request.rs`), written back in the canonical one.
    let later = |t: &str| -> Result<String, chrono::ParseError> {
        let t = t.trim();
        let mut last = None;
        for f in ["%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"] {
            match NaiveDateTime::parse_from_str(t, f) {
                Ok(v) => return Ok((v + by).format("%Y-%m-%d %H:%M").to_string()),
                Err(e) => last = Some(e),
            }
        }
        match last {
            Some(e) => Err(e),
            None => NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M").map(|v| v.to_string()),
        }
    };
    for trip in &mut req.trips {
        for f in trip.outbound.0.iter_mut().chain(trip.return_flight.0.iter_mut()) {
            f.depart = later(&f.depart)?;
            f.arrive = later(&f.arrive)?;
        }
    }
    for d in &mut req.preferred_dates {
        *d = (chrono::NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d")? + by).format("%Y-%m-%d").to_string();
    }
    Ok(())
}

/// What link `secret` opens, read in `db`.
async fn opened(db: &impl ConnectionTrait, secret: &str, now: DateTime<Utc>) -> Result<QuestionnaireLink, StoreError> {
    if !secret.starts_with("itq_") || secret.len() > 100 {
        return Ok(QuestionnaireLink::Unknown);
    }
    let Some(t) = outcome_token::Entity::find_by_id(hash_token(secret)).unique(db).await? else {
        return Ok(QuestionnaireLink::Unknown);
    };
    if now >= t.expires_at {
        return Ok(QuestionnaireLink::Closed);
    }
    let Some(it) = itinerary::Entity::find_by_id(t.itinerary_id).unique(db).await? else { return Ok(QuestionnaireLink::Unknown) };
    // A link opens its own patient's itinerary only.
    if it.patient_id != t.patient_id {
        return Ok(QuestionnaireLink::Unknown);
    }
    if it.status != "active" {
        return Ok(QuestionnaireLink::Closed);
    }
    let plan = plan_of(db, &it).await?;
    let Some(o) = occasions_of(&plan).into_iter().find(|o| o.key == t.occasion) else { return Ok(QuestionnaireLink::Closed) };
    if now >= o.start.utc() {
        return Ok(QuestionnaireLink::Closed);
    }
    let Some(p) = patient::Entity::find_by_id(t.patient_id).unique(db).await? else { return Ok(QuestionnaireLink::Unknown) };
    let row = outcome_answer::Entity::find()
        .filter(outcome_answer::Column::ItineraryId.eq(it.id))
        .filter(outcome_answer::Column::Occasion.eq(&o.key))
        .unique(db)
        .await?;
    let occasion = Occasion {
        itinerary_id: it.id,
        reference: it.reference.clone(),
        set: 0,
        key: o.key.clone(),
        kind: o.kind,
        at: o.start.utc(),
        zone: o.start.zone(),
        answers: row.as_ref().map(answers_of).unwrap_or_default(),
        answered_at: row.as_ref().map(|r| r.answered_at),
        updated_at: row.as_ref().map(|r| r.updated_at),
    };
    let q = Questionnaire { patient_id: p.id, language: p.language, occasion, title: o.title, closes: o.start };
    Ok(QuestionnaireLink::Open(Box::new(q)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use itinerary_core::request::{RawFlight, RawTrip};

    use super::*;

    #[test]
    fn a_draft_moves_every_date_52_weeks_in_any_form_a_booking_takes() {
        let flight = |depart: &str, arrive: &str| RawFlight {
            flight: "MH71".into(),
            from: "NRT".into(),
            depart: depart.into(),
            to: "KUL".into(),
            arrive: arrive.into(),
        };
        let mut req = NewItinerary {
            patient_id: 1,
            protocol: "single-infusion".into(),
            interval_days: None,
            trip_mode: None,
            trips: vec![RawTrip {
                outbound: flight(" 2027-04-18T21:40 ", "2027-04-19 04:30:00").into(),
                return_flight: flight("2027-04-22 23:35", "2027-04-23T07:15:00").into(),
            }],
            preferred_dates: vec![" 2027-04-21".into()],
            escort: None,
        };
        shift_request(&mut req, Duration::weeks(52)).unwrap();
        let out = &req.trips[0].outbound.0[0];
        let back = &req.trips[0].return_flight.0[0];
        assert_eq!((out.depart.as_str(), out.arrive.as_str()), ("2028-04-16 21:40", "2028-04-17 04:30"));
        assert_eq!((back.depart.as_str(), back.arrive.as_str()), ("2028-04-20 23:35", "2028-04-21 07:15"));
        assert_eq!(req.preferred_dates, ["2028-04-19"]);
        req.trips[0].outbound.0[0].depart = "someday".into();
        assert!(shift_request(&mut req, Duration::weeks(52)).is_err());
    }
}

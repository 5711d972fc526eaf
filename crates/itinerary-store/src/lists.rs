//! What the console lists: patients found by name, email or reference, a patient's itineraries,
//! and the current plans of many itineraries at once (the week page).

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::entity::{itinerary, itinerary_version, patient};
use crate::{PatientView, Store, StoreError};

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
            let plan = crate::stored::parsed("plan", &v.plan)?;
            let patient_name = patients.iter().find(|p| p.id == it.patient_id).map(|p| p.name.clone()).unwrap_or_default();
            out.push(CurrentPlan { id: it.id, reference: it.reference, status: it.status, patient_id: it.patient_id, patient_name, plan });
        }
        Ok(out)
    }
}

//! The rows a booking writes by the dozen, with their JSON already serialized to text. Through
//! the entities, a JSON value is cloned as a tree twice and serialized while the statement is
//! bound, under the booking lock; as text it is serialized once, before, and bound as a string
//! (cast to `json` on PostgreSQL, whose columns are typed; SQLite keeps JSON as text anyway).

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, Iden, Value};

use crate::entity::{calendar_uid, itinerary_version, scheduled_message};

/// A JSON column's value, from its text.
fn json(backend: DbBackend, text: String) -> Expr {
    opt_json(backend, Some(text))
}

fn opt_json(backend: DbBackend, text: Option<String>) -> Expr {
    let v = Expr::val(Value::String(text));
    match backend {
        DbBackend::Postgres => v.cast_as("json"),
        _ => v,
    }
}

/// A row of one of these tables.
pub(crate) trait Row: Sized {
    type Table: Iden + 'static + Copy;
    type Column: Iden + 'static + Copy;
    const TABLE: Self::Table;
    const COLUMNS: &'static [Self::Column];
    fn values(self, backend: DbBackend) -> Vec<Expr>;
}

/// One INSERT per thousand rows (within SQLite's and PostgreSQL's limits on bound values),
/// none for none.
pub(crate) async fn insert<R: Row>(txn: &DatabaseTransaction, mut rows: Vec<R>) -> Result<(), sea_orm::DbErr> {
    let backend = txn.get_database_backend();
    while !rows.is_empty() {
        let rest = rows.split_off(rows.len().min(1000));
        let mut q = Query::insert();
        q.into_table(R::TABLE).columns(R::COLUMNS.iter().copied());
        for r in rows {
            q.values_panic(r.values(backend));
        }
        txn.execute(&q).await?;
        rows = rest;
    }
    Ok(())
}

pub(crate) struct Uid {
    pub(crate) itinerary_id: i32,
    pub(crate) uid: String,
    pub(crate) sequence: i32,
    pub(crate) cancelled: bool,
    pub(crate) appointment: String,
}

impl Row for Uid {
    type Table = calendar_uid::Entity;
    type Column = calendar_uid::Column;
    const TABLE: Self::Table = calendar_uid::Entity;
    const COLUMNS: &'static [Self::Column] = {
        use calendar_uid::Column as C;
        &[C::ItineraryId, C::Uid, C::Sequence, C::Cancelled, C::Appointment]
    };
    fn values(self, b: DbBackend) -> Vec<Expr> {
        vec![
            Expr::val(self.itinerary_id),
            Expr::val(self.uid),
            Expr::val(self.sequence),
            Expr::val(self.cancelled),
            json(b, self.appointment),
        ]
    }
}

pub(crate) struct Message {
    pub(crate) itinerary_id: i32,
    pub(crate) version: i32,
    pub(crate) key: String,
    pub(crate) kind: String,
    pub(crate) recipient: String,
    pub(crate) language: String,
    pub(crate) due_at: DateTime<Utc>,
    pub(crate) due_zone: String,
    pub(crate) about: Option<String>,
    pub(crate) if_late: String,
    pub(crate) before_at: Option<DateTime<Utc>>,
    pub(crate) payload: Option<String>,
}

impl Row for Message {
    type Table = scheduled_message::Entity;
    type Column = scheduled_message::Column;
    const TABLE: Self::Table = scheduled_message::Entity;
    const COLUMNS: &'static [Self::Column] = {
        use scheduled_message::Column as C;
        &[
            C::ItineraryId,
            C::Version,
            C::Key,
            C::Kind,
            C::Recipient,
            C::Language,
            C::DueAt,
            C::DueZone,
            C::About,
            C::IfLate,
            C::Status,
            C::BeforeAt,
            C::Payload,
            C::Attempts,
        ]
    };
    fn values(self, b: DbBackend) -> Vec<Expr> {
        vec![
            Expr::val(self.itinerary_id),
            Expr::val(self.version),
            Expr::val(self.key),
            Expr::val(self.kind),
            json(b, self.recipient),
            Expr::val(self.language),
            Expr::val(self.due_at),
            Expr::val(self.due_zone),
            Expr::val(self.about),
            Expr::val(self.if_late),
            Expr::val("pending"),
            Expr::val(self.before_at),
            opt_json(b, self.payload),
            Expr::val(0),
        ]
    }
}

pub(crate) struct Version {
    pub(crate) itinerary_id: i32,
    pub(crate) version: i32,
    pub(crate) request: String,
    pub(crate) plan: String,
    pub(crate) planned_at: DateTime<Utc>,
    pub(crate) coordinator_id: Option<i32>,
    pub(crate) calendar_changes: String,
}

impl Row for Version {
    type Table = itinerary_version::Entity;
    type Column = itinerary_version::Column;
    const TABLE: Self::Table = itinerary_version::Entity;
    const COLUMNS: &'static [Self::Column] = {
        use itinerary_version::Column as C;
        &[C::ItineraryId, C::Version, C::Request, C::Plan, C::PlannedAt, C::CoordinatorId, C::CalendarChanges]
    };
    fn values(self, b: DbBackend) -> Vec<Expr> {
        vec![
            Expr::val(self.itinerary_id),
            Expr::val(self.version),
            json(b, self.request),
            json(b, self.plan),
            Expr::val(self.planned_at),
            Expr::val(self.coordinator_id),
            json(b, self.calendar_changes),
        ]
    }
}

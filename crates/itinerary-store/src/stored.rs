//! The rows a booking writes by the dozen, with their JSON already serialized to text. Through
//! the entities, a JSON value is cloned as a tree twice and serialized while the statement is
//! bound, under the booking lock; as text it is serialized once, before, and bound as a string
//! (cast to `json` on PostgreSQL, whose columns are typed; SQLite keeps JSON as text anyway).

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, CommonTableExpression, Expr, ExprTrait, InsertStatement, PostgresQueryBuilder, Query, WithClause};
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, Iden, Iterable, QueryTrait, Statement, Value,
};

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

/// An INSERT and how many values it binds.
pub(crate) type Insert = (InsertStatement, usize);

/// One INSERT per thousand rows (within SQLite's limit on bound values), none for none.
pub(crate) fn inserts<R: Row>(backend: DbBackend, mut rows: Vec<R>) -> Vec<Insert> {
    let mut out = Vec::new();
    while !rows.is_empty() {
        let rest = rows.split_off(rows.len().min(1000));
        let mut q = Query::insert();
        q.into_table(R::TABLE).columns(R::COLUMNS.iter().copied());
        let n = rows.len() * R::COLUMNS.len();
        for r in rows {
            q.values_panic(r.values(backend));
        }
        out.push((q, n));
        rows = rest;
    }
    out
}

/// The same for entity rows.
pub(crate) fn model_inserts<A>(mut rows: Vec<A>) -> Vec<Insert>
where
    A: ActiveModelTrait,
{
    let columns = <<A::Entity as EntityTrait>::Column as Iterable>::iter().count();
    let mut out = Vec::new();
    while !rows.is_empty() {
        let rest = rows.split_off(rows.len().min(1000));
        let n = rows.len() * columns;
        out.push((<A::Entity as EntityTrait>::insert_many(rows).into_query(), n));
        rows = rest;
    }
    out
}

/// Runs `inserts` in order. On PostgreSQL they go as few statements as the limit on bound
/// values allows, chained as data-modifying CTEs: over TCP, sqlx 0.9.0 leaves Nagle's
/// algorithm on (transact-rs/sqlx#4335), and every statement larger than its write buffer
/// waits ~40 ms for a delayed ACK; a group's five large INSERTs waited five times.
pub(crate) async fn execute(txn: &DatabaseTransaction, inserts: Vec<Insert>) -> Result<(), sea_orm::DbErr> {
    let backend = txn.get_database_backend();
    if backend != DbBackend::Postgres {
        for (q, _) in inserts {
            txn.execute(&q).await?;
        }
        return Ok(());
    }
    let mut chained: Vec<InsertStatement> = Vec::new();
    let mut bound = 0;
    for (q, n) in inserts {
        if bound + n > PG_VALUES && !chained.is_empty() {
            chain(txn, std::mem::take(&mut chained)).await?;
            bound = 0;
        }
        chained.push(q);
        bound += n;
    }
    chain(txn, chained).await
}

/// Values bound per chained statement, well under PostgreSQL's 65,535; one INSERT alone (at most
/// a thousand rows of at most 14 columns) always fits.
const PG_VALUES: usize = 30_000;

async fn chain(txn: &DatabaseTransaction, mut inserts: Vec<InsertStatement>) -> Result<(), sea_orm::DbErr> {
    let Some(last) = inserts.pop() else { return Ok(()) };
    if inserts.is_empty() {
        txn.execute(&last).await?;
        return Ok(());
    }
    let mut with = WithClause::new();
    for (i, q) in inserts.into_iter().enumerate() {
        with.cte(CommonTableExpression::new().query(q).table_name(Alias::new(format!("insert_{i}"))).to_owned());
    }
    let (sql, values) = with.query(last).build(PostgresQueryBuilder);
    txn.execute_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, values)).await?;
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

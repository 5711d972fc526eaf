//! The rows a booking writes by the dozen, with their JSON already serialized to text. Through
//! the entities, a JSON value is cloned as a tree twice and serialized while the statement is
//! bound, under the booking lock; as text it is serialized once, before, and bound as a string.
//!
//! On SQLite the rows go as multi-row INSERTs. On PostgreSQL each table's rows go as one JSON
//! document (`json_populate_recordset`) and every table of a write in one statement (chained
//! data-modifying CTEs): the statement's text depends only on which tables it fills, so each
//! connection parses and plans it once and binds one value per table. As multi-row VALUES, a
//! group of eight bookings bound ~20,000 values to a statement of new text: parsing, planning and
//! binding it took ~10 ms of the ~25 ms the group held the booking lock (issue 15).

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, InsertStatement, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ColumnType, ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, EntityName, EntityTrait, Iterable,
    Statement, Value,
};

use crate::entity::{calendar_uid, itinerary_version, scheduled_message};

/// A row of one of these tables, its JSON columns as text.
pub(crate) trait Row: Sized {
    type Entity: EntityTrait<Column = Self::Column>;
    type Column: ColumnTrait + 'static + Copy;
    const COLUMNS: &'static [Self::Column];
    fn values(self) -> Vec<Value>;
}

/// Rows of one table, ready to insert.
pub(crate) struct Table {
    name: &'static str,
    /// Each column's name, and whether it is JSON (its value JSON text, or a `Value::Json`).
    columns: Vec<(&'static str, bool)>,
    rows: Vec<Vec<Value>>,
}

fn column<C: ColumnTrait>(c: C) -> (&'static str, bool) {
    (c.as_str(), matches!(c.def().get_column_type(), ColumnType::Json | ColumnType::JsonBinary))
}

/// The rows as a table to insert; none for none.
pub(crate) fn inserts<R: Row>(rows: Vec<R>) -> Vec<Table> {
    if rows.is_empty() {
        return Vec::new();
    }
    let name = R::Entity::default().table_name();
    vec![Table { name, columns: R::COLUMNS.iter().map(|c| column(*c)).collect(), rows: rows.into_iter().map(Row::values).collect() }]
}

/// The same for entity rows: the columns the first row sets (not the generated id).
pub(crate) fn model_inserts<A: ActiveModelTrait>(rows: Vec<A>) -> Vec<Table> {
    let Some(first) = rows.first() else { return Vec::new() };
    let columns: Vec<<A::Entity as EntityTrait>::Column> = <<A::Entity as EntityTrait>::Column as Iterable>::iter()
        .filter(|c| first.get(*c).is_set() || first.get(*c).is_unchanged())
        .collect();
    let values =
        rows.into_iter().map(|r| columns.iter().map(|c| r.get(*c).into_value().unwrap_or(Value::String(None))).collect()).collect();
    let name = A::Entity::default().table_name();
    vec![Table { name, columns: columns.into_iter().map(column).collect(), rows: values }]
}

/// Inserts `tables` in order.
pub(crate) async fn execute(txn: &DatabaseTransaction, tables: Vec<Table>) -> Result<(), DbErr> {
    if tables.is_empty() {
        return Ok(());
    }
    if txn.get_database_backend() != DbBackend::Postgres {
        for t in tables {
            for q in sqlite_inserts(t) {
                txn.execute(&q).await?;
            }
        }
        return Ok(());
    }
    let mut sql = String::new();
    let mut values = Vec::with_capacity(tables.len());
    let last = tables.len() - 1;
    for (i, t) in tables.into_iter().enumerate() {
        let cols = t.columns.iter().map(|(c, _)| format!("\"{c}\"")).collect::<Vec<_>>().join(", ");
        let insert = format!(
            "INSERT INTO \"{name}\" ({cols}) SELECT {cols} FROM json_populate_recordset(NULL::\"{name}\", ${n}::json)",
            name = t.name,
            n = i + 1
        );
        match (i, i == last) {
            (0, true) => sql.push_str(&insert),
            (_, true) => write!(sql, " {insert}").map_err(|e| DbErr::Custom(e.to_string()))?,
            (0, false) => write!(sql, "WITH \"insert_{i}\" AS ({insert})").map_err(|e| DbErr::Custom(e.to_string()))?,
            _ => write!(sql, ", \"insert_{i}\" AS ({insert})").map_err(|e| DbErr::Custom(e.to_string()))?,
        }
        values.push(Value::String(Some(document(&t)?)));
    }
    txn.execute_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, values)).await?;
    Ok(())
}

/// One INSERT per thousand rows (within SQLite's limit on bound values).
fn sqlite_inserts(t: Table) -> Vec<InsertStatement> {
    let mut out = Vec::new();
    let mut rows = t.rows.into_iter().peekable();
    while rows.peek().is_some() {
        let mut q = Query::insert();
        q.into_table(Alias::new(t.name)).columns(t.columns.iter().map(|(c, _)| Alias::new(*c)));
        for r in rows.by_ref().take(1000) {
            q.values_panic(r.into_iter().map(Expr::val));
        }
        out.push(q);
    }
    out
}

/// The rows as a JSON array of objects, JSON columns embedded as they are.
fn document(t: &Table) -> Result<String, DbErr> {
    let mut out = String::with_capacity(t.rows.len() * 256);
    out.push('[');
    for (i, row) in t.rows.iter().enumerate() {
        out.push_str(if i == 0 { "{" } else { ",{" });
        for (j, ((name, json), v)) in t.columns.iter().zip(row).enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push('"');
            out.push_str(name);
            out.push_str("\":");
            write_value(&mut out, v, *json).map_err(|e| DbErr::Custom(format!("{}.{name}: {e}", t.name)))?;
        }
        out.push('}');
    }
    out.push(']');
    Ok(out)
}

fn write_value(out: &mut String, v: &Value, json: bool) -> Result<(), String> {
    let text = |s: &str| serde_json::to_string(s).map_err(|e| e.to_string());
    match v {
        Value::Bool(Some(b)) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(Some(n)) => write!(out, "{n}").map_err(|e| e.to_string())?,
        Value::BigInt(Some(n)) => write!(out, "{n}").map_err(|e| e.to_string())?,
        Value::SmallInt(Some(n)) => write!(out, "{n}").map_err(|e| e.to_string())?,
        // Serialized by us, before: valid JSON text.
        Value::String(Some(s)) if json => out.push_str(s),
        Value::String(Some(s)) => out.push_str(&text(s)?),
        Value::Json(Some(j)) => out.push_str(&serde_json::to_string(j).map_err(|e| e.to_string())?),
        // Microseconds, truncated, as sqlx binds an instant: PostgreSQL keeps no more.
        Value::ChronoDateTimeUtc(Some(t)) => write!(out, "\"{}\"", t.format("%Y-%m-%dT%H:%M:%S%.6fZ")).map_err(|e| e.to_string())?,
        Value::ChronoDate(Some(d)) => write!(out, "\"{}\"", d.format("%Y-%m-%d")).map_err(|e| e.to_string())?,
        Value::Bool(None)
        | Value::Int(None)
        | Value::BigInt(None)
        | Value::SmallInt(None)
        | Value::String(None)
        | Value::Json(None)
        | Value::ChronoDateTimeUtc(None)
        | Value::ChronoDate(None) => out.push_str("null"),
        other => return Err(format!("no JSON form for {other:?}")),
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
    type Entity = calendar_uid::Entity;
    type Column = calendar_uid::Column;
    const COLUMNS: &'static [Self::Column] = {
        use calendar_uid::Column as C;
        &[C::ItineraryId, C::Uid, C::Sequence, C::Cancelled, C::Appointment]
    };
    fn values(self) -> Vec<Value> {
        vec![self.itinerary_id.into(), self.uid.into(), self.sequence.into(), self.cancelled.into(), self.appointment.into()]
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
    type Entity = scheduled_message::Entity;
    type Column = scheduled_message::Column;
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
    fn values(self) -> Vec<Value> {
        vec![
            self.itinerary_id.into(),
            self.version.into(),
            self.key.into(),
            self.kind.into(),
            self.recipient.into(),
            self.language.into(),
            self.due_at.into(),
            self.due_zone.into(),
            self.about.into(),
            self.if_late.into(),
            "pending".into(),
            self.before_at.into(),
            self.payload.into(),
            0.into(),
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
    type Entity = itinerary_version::Entity;
    type Column = itinerary_version::Column;
    const COLUMNS: &'static [Self::Column] = {
        use itinerary_version::Column as C;
        &[C::ItineraryId, C::Version, C::Request, C::Plan, C::PlannedAt, C::CoordinatorId, C::CalendarChanges]
    };
    fn values(self) -> Vec<Value> {
        vec![
            self.itinerary_id.into(),
            self.version.into(),
            self.request.into(),
            self.plan.into(),
            self.planned_at.into(),
            self.coordinator_id.into(),
            self.calendar_changes.into(),
        ]
    }
}

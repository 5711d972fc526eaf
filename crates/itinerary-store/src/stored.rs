//! The rows a booking writes by the dozen, with their JSON already serialized to text. Through
//! the entities, a JSON value is cloned as a tree twice and serialized while the statement is
//! bound, under the booking lock; as text it is serialized once, before, and bound as a string.
//!
//! On SQLite the rows go as multi-row INSERTs. On PostgreSQL each column of a table's rows goes
//! as one array, bound in PostgreSQL's binary format, and `unnest` turns the arrays back into
//! rows; every table of a write goes in one statement (chained data-modifying CTEs), whose text
//! depends only on which tables and columns it fills (and which hold a NULL), so each connection
//! parses and plans it once. As multi-row VALUES, a group of eight bookings bound ~20,000 values
//! to a statement of new text (parsing, planning and binding it took ~10 ms of the ~25 ms the
//! group held the booking lock); as one JSON document per table, PostgreSQL lexed every row's
//! text and looked each field up by name (`json_lex` and its hashing, ~10 % of the machine's CPU
//! at 450 bookings a second; issue 15).

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, ArrayType, Expr, InsertStatement, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ColumnType, ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, EntityName, EntityTrait, Iterable,
    Statement, Value,
};

use crate::StoreError;
use crate::entity::{calendar_uid, itinerary_version, scheduled_message};

/// A JSON column stored as text (a plan, an appointment, a payload), parsed; unreadable, it is
/// `what` corrupt.
pub(crate) fn parsed<T: serde::de::DeserializeOwned>(what: &'static str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::corrupt(what, e))
}

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
    let mut values = Vec::new();
    let last = tables.len() - 1;
    for (i, t) in tables.into_iter().enumerate() {
        let insert = unnest_insert(t, &mut values)?;
        match (i, i == last) {
            (0, true) => sql.push_str(&insert),
            (_, true) => write!(sql, " {insert}").map_err(|e| DbErr::Custom(e.to_string()))?,
            (0, false) => write!(sql, "WITH \"insert_{i}\" AS ({insert})").map_err(|e| DbErr::Custom(e.to_string()))?,
            _ => write!(sql, ", \"insert_{i}\" AS ({insert})").map_err(|e| DbErr::Custom(e.to_string()))?,
        }
    }
    txn.execute_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, values)).await?;
    Ok(())
}

/// `INSERT INTO t (…) SELECT … FROM unnest($n::type[], …)`, its arrays pushed onto `values`.
/// A column with a NULL in some rows goes with a mask (`bool[]`: sea-query binds no NULL
/// element in an array); a column NULL in every row as a NULL literal.
fn unnest_insert(t: Table, values: &mut Vec<Value>) -> Result<String, DbErr> {
    let table = t.name;
    let mut columns: Vec<Vec<Value>> = t.columns.iter().map(|_| Vec::with_capacity(t.rows.len())).collect();
    for row in t.rows {
        for (column, v) in columns.iter_mut().zip(row) {
            column.push(v);
        }
    }
    let (mut arrays, mut aliases, mut select) = (Vec::new(), Vec::new(), Vec::new());
    for (j, ((name, json), column)) in t.columns.iter().zip(columns).enumerate() {
        let fail = |why: String| DbErr::Custom(format!("{table}.{name}: {why}"));
        let mut kind: Option<Element> = None;
        for v in &column {
            match (element(v).map_err(fail)?, &kind) {
                (Some(k), Some(seen)) if k.name != seen.name => return Err(fail(format!("{v:?} among {} values", seen.name))),
                (Some(k), None) => kind = Some(k),
                _ => {}
            }
        }
        let Some(kind) = kind else {
            select.push("NULL".to_owned());
            continue;
        };
        let mut nulls = Vec::with_capacity(column.len());
        let mut elements = Vec::with_capacity(column.len());
        for v in column {
            let null = !v.is_some();
            nulls.push(Value::Bool(Some(null)));
            elements.push(match v {
                _ if null => kind.stand_in.clone(),
                Value::Json(Some(j)) => Value::String(Some(j.to_string())),
                v => v,
            });
        }
        values.push(Value::Array(kind.array, Some(Box::new(elements))));
        arrays.push(format!("${}::{}[]", values.len(), kind.name));
        aliases.push(format!("\"c{j}\""));
        let cast = if *json { "::json" } else { "" };
        if nulls.contains(&Value::Bool(Some(true))) {
            values.push(Value::Array(ArrayType::Bool, Some(Box::new(nulls))));
            arrays.push(format!("${}::bool[]", values.len()));
            aliases.push(format!("\"n{j}\""));
            select.push(format!("CASE WHEN \"n{j}\" THEN NULL ELSE \"c{j}\"{cast} END"));
        } else {
            select.push(format!("\"c{j}\"{cast}"));
        }
    }
    let cols = t.columns.iter().map(|(c, _)| format!("\"{c}\"")).collect::<Vec<_>>().join(", ");
    Ok(format!(
        "INSERT INTO \"{table}\" ({cols}) SELECT {} FROM unnest({}) AS \"u\"({})",
        select.join(", "),
        arrays.join(", "),
        aliases.join(", ")
    ))
}

/// How a column's values go as an array.
struct Element {
    array: ArrayType,
    /// PostgreSQL's name for its elements.
    name: &'static str,
    /// What stands in an array for a NULL (masked).
    stand_in: Value,
}

/// The array a value goes in; None for a NULL.
fn element(v: &Value) -> Result<Option<Element>, String> {
    let e = |array, name, stand_in| Ok(Some(Element { array, name, stand_in }));
    match v {
        _ if !v.is_some() => Ok(None),
        Value::Bool(_) => e(ArrayType::Bool, "bool", Value::Bool(Some(false))),
        Value::SmallInt(_) => e(ArrayType::SmallInt, "int2", Value::SmallInt(Some(0))),
        Value::Int(_) => e(ArrayType::Int, "int4", Value::Int(Some(0))),
        Value::BigInt(_) => e(ArrayType::BigInt, "int8", Value::BigInt(Some(0))),
        Value::String(_) | Value::Json(_) => e(ArrayType::String, "text", Value::String(Some(String::new()))),
        Value::ChronoDateTimeUtc(_) => {
            e(ArrayType::ChronoDateTimeUtc, "timestamptz", Value::ChronoDateTimeUtc(Some(DateTime::<Utc>::UNIX_EPOCH)))
        }
        Value::ChronoDate(_) => e(ArrayType::ChronoDate, "date", Value::ChronoDate(Some(DateTime::<Utc>::UNIX_EPOCH.date_naive()))),
        other => Err(format!("no array for {other:?}")),
    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn table(rows: Vec<Vec<Value>>) -> Table {
        Table { name: "t", columns: vec![("a", false), ("b", false), ("c", true), ("d", false)], rows }
    }

    #[test]
    fn each_column_goes_as_one_array_and_nulls_as_a_mask() {
        let at = DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::days(1);
        let rows = vec![
            vec![1.into(), Value::String(Some("x".into())), Value::String(Some("{\"k\":1}".into())), Value::ChronoDateTimeUtc(None)],
            vec![2.into(), Value::String(None), Value::Json(Some(Box::new(serde_json::json!([1])))), Value::ChronoDateTimeUtc(None)],
        ];
        let mut values = Vec::new();
        let sql = unnest_insert(table(rows), &mut values).unwrap();
        assert_eq!(
            sql,
            "INSERT INTO \"t\" (\"a\", \"b\", \"c\", \"d\") SELECT \"c0\", CASE WHEN \"n1\" THEN NULL ELSE \"c1\" END, \"c2\"::json, NULL \
             FROM unnest($1::int4[], $2::text[], $3::bool[], $4::text[]) AS \"u\"(\"c0\", \"c1\", \"n1\", \"c2\")"
        );
        let strings =
            |v: &[&str]| Value::Array(ArrayType::String, Some(Box::new(v.iter().map(|s| Value::String(Some((*s).into()))).collect())));
        let bools = |v: &[bool]| Value::Array(ArrayType::Bool, Some(Box::new(v.iter().map(|b| Value::Bool(Some(*b))).collect())));
        assert_eq!(values[0], Value::Array(ArrayType::Int, Some(Box::new(vec![1.into(), 2.into()]))));
        assert_eq!(values[1], strings(&["x", ""]));
        assert_eq!(values[2], bools(&[false, true]));
        assert_eq!(values[3], strings(&["{\"k\":1}", "[1]"]));
        // A column of instants, one of them NULL.
        let rows = vec![vec![Value::ChronoDateTimeUtc(Some(at))], vec![Value::ChronoDateTimeUtc(None)]];
        let mut values = Vec::new();
        let t = Table { name: "t", columns: vec![("at", false)], rows };
        assert!(unnest_insert(t, &mut values).unwrap().contains("$1::timestamptz[], $2::bool[]"));
    }

    #[test]
    fn a_column_of_mixed_or_unknown_values_is_refused() {
        let rows = vec![vec![1.into(), 1.into(), 1.into(), 1.into()], vec![Value::String(Some("1".into())), 1.into(), 1.into(), 1.into()]];
        let e = unnest_insert(table(rows), &mut Vec::new()).unwrap_err().to_string();
        assert!(e.contains("t.a") && e.contains("among int4 values"), "{e}");
        let rows = vec![vec![Value::Double(Some(1.0)), 1.into(), 1.into(), 1.into()]];
        let e = unnest_insert(table(rows), &mut Vec::new()).unwrap_err().to_string();
        assert!(e.contains("t.a") && e.contains("no array for"), "{e}");
    }
}

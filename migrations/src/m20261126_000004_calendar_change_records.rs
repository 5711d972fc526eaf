//! A version's `calendar_changes` holds one record per UID, `{uid, event, role, id?, kind,
//! sequence}`. Versions stored before held the whole appointment in each change (the message
//! payloads and `calendar_uid` keep that content); this rewrites them to the record, so that
//! every itinerary answer has the one shape `/openapi.json` describes.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Map, Value};

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

/// The record of one change in the old shape (`{kind, sequence, appointment}`); None for one
/// already in the new shape.
fn record(change: &Value) -> Option<Value> {
    let a = change.get("appointment")?;
    let mut r = Map::new();
    r.insert("uid".into(), a["uid"].clone());
    r.insert("event".into(), a["event"].clone());
    r.insert("role".into(), a["attendee"]["role"].clone());
    if let Some(id) = a["attendee"].get("id") {
        r.insert("id".into(), id.clone());
    }
    r.insert("kind".into(), change["kind"].clone());
    r.insert("sequence".into(), change["sequence"].clone());
    Some(Value::Object(r))
}

/// The version's changes as records, or None when none is in the old shape.
fn records(changes: &Value) -> Option<Value> {
    let list = changes.as_array()?;
    if !list.iter().any(|c| c.get("appointment").is_some()) {
        return None;
    }
    Some(Value::Array(list.iter().map(|c| record(c).unwrap_or_else(|| c.clone())).collect()))
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        let backend = m.get_database_backend();
        let rows = db
            .query_all_raw(Statement::from_string(
                backend,
                "SELECT id, CAST(calendar_changes AS TEXT) AS changes FROM itinerary_version WHERE CAST(calendar_changes AS TEXT) LIKE '%\"appointment\"%'",
            ))
            .await?;
        for row in rows {
            let id: i32 = row.try_get("", "id")?;
            let text: String = row.try_get("", "changes")?;
            let changes: Value = serde_json::from_str(&text).map_err(|e| DbErr::Migration(format!("itinerary_version {id}: {e}")))?;
            let Some(new) = records(&changes) else { continue };
            let value = Expr::val(new.to_string());
            let value = if backend == DbBackend::Postgres { value.cast_as("json") } else { value };
            m.exec_stmt(
                Query::update().table("itinerary_version").value("calendar_changes", value).and_where(Expr::col("id").eq(id)).to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    /// The whole appointments are not restored: nothing reads them.
    async fn down(&self, _: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn old_changes_become_records_and_new_ones_stay() {
        let old = json!([
            { "kind": "invite", "sequence": 0, "appointment": { "uid": "it-1.trip1.pickup.patient-ab@x", "event": "trip1.pickup",
                "attendee": { "role": "patient", "name": "山田 太郎", "email": "t@example.jp", "language": "ja" }, "summary": "s" } },
            { "kind": "update", "sequence": 2, "appointment": { "uid": "it-1.trip1.pickup.escort-E01@x", "event": "trip1.pickup",
                "attendee": { "role": "escort", "id": "E01", "name": "N", "email": "e@example.my", "language": "en" } } },
        ]);
        assert_eq!(
            records(&old),
            Some(json!([
                { "uid": "it-1.trip1.pickup.patient-ab@x", "event": "trip1.pickup", "role": "patient", "kind": "invite", "sequence": 0 },
                { "uid": "it-1.trip1.pickup.escort-E01@x", "event": "trip1.pickup", "role": "escort", "id": "E01", "kind": "update", "sequence": 2 },
            ]))
        );
        let new = json!([{ "uid": "u", "event": "e", "role": "patient", "kind": "cancel", "sequence": 1 }]);
        assert_eq!(records(&new), None);
        assert_eq!(records(&json!([])), None);
    }
}

//! Migration 4 on a database that holds versions in the old shape, on SQLite and PostgreSQL:
//! each change becomes its record, and nothing else in the row moves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use itinerary_migration::{Migrator, MigratorTrait};
use sea_orm_migration::sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde_json::{Value, json};

const ADMIN_PG: &str = "postgres://postgres@127.0.0.1:5432/test";

async fn rewrites_old_versions(db: &DatabaseConnection) {
    Migrator::up(db, Some(3)).await.unwrap();
    let old = json!([{ "kind": "invite", "sequence": 0, "appointment": { "uid": "it-1.trip1.pickup.escort-E01@x",
        "event": "trip1.pickup", "attendee": { "role": "escort", "id": "E01", "name": "N", "email": "e@example.my", "language": "en" } } }]);
    let new = json!([{ "uid": "u", "event": "trip1.hotel", "role": "patient", "kind": "unchanged", "sequence": 3 }]);
    let at = "2027-01-01T00:00:00Z";
    db.execute_unprepared(&format!(
        "INSERT INTO patient (name, email, birth_date, home_zone, language, passport_expiry, created_at, updated_at) \
         VALUES ('A', 'a@example.jp', '1980-01-01', 'Asia/Tokyo', 'ja', '2035-01-01', '{at}', '{at}');
         INSERT INTO itinerary (reference, patient_id, status, current_version, created_at, updated_at) VALUES ('it-1', 1, 'active', 2, '{at}', '{at}');
         INSERT INTO itinerary_version (itinerary_id, version, request, plan, planned_at, calendar_changes) VALUES
           (1, 1, '{{}}', '{{\"p\": 1}}', '{at}', '{old}'), (1, 2, '{{}}', '{{\"p\": 2}}', '{at}', '{new}');"
    ))
    .await
    .unwrap();
    Migrator::up(db, None).await.unwrap();
    let rows = db
        .query_all_raw(sea_orm_migration::sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT CAST(calendar_changes AS TEXT) AS c, CAST(plan AS TEXT) AS p FROM itinerary_version ORDER BY version",
        ))
        .await
        .unwrap();
    let read = |i: usize, col: &str| serde_json::from_str::<Value>(&rows[i].try_get::<String>("", col).unwrap()).unwrap();
    assert_eq!(
        read(0, "c"),
        json!([{ "uid": "it-1.trip1.pickup.escort-E01@x", "event": "trip1.pickup", "role": "escort", "id": "E01", "kind": "invite", "sequence": 0 }])
    );
    assert_eq!(read(1, "c"), new);
    assert_eq!((read(0, "p"), read(1, "p")), (json!({ "p": 1 }), json!({ "p": 2 })));
}

#[tokio::test]
async fn sqlite_old_calendar_changes_become_records() {
    let db = Database::connect("sqlite::memory:").await.unwrap();
    rewrites_old_versions(&db).await;
}

#[tokio::test]
async fn postgres_old_calendar_changes_become_records() {
    let admin = match Database::connect(ADMIN_PG).await {
        Ok(c) => c,
        Err(e) => {
            assert!(std::env::var_os("ITINERARY_REQUIRE_POSTGRES").is_none(), "PostgreSQL is required here but does not answer: {e}");
            println!("skipping the PostgreSQL half: no server at {ADMIN_PG} ({e})");
            return;
        }
    };
    let name = format!("itinerary_migration4_{}", std::process::id());
    admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name}")).await.unwrap();
    admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.unwrap();
    let db = Database::connect(format!("postgres://postgres@127.0.0.1:5432/{name}")).await.unwrap();
    rewrites_old_versions(&db).await;
    db.close().await.unwrap();
    admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.unwrap();
}

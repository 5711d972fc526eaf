//! On PostgreSQL, the three JSON columns a booking fills by the kilobyte are `text`: a version's
//! plan (~22 KB), each calendar UID's appointment (~12 KB a booking in all) and each calendar
//! message's payload (~8 KB). As `json`, PostgreSQL lexed every value to check it (`json_in`,
//! 6.5 % of its backends' CPU under `bench/load.sh`; issue 15); the service writes them with
//! serde_json and reads them back with it, and never queries inside them. The plan stays stored
//! uncompressed (`STORAGE EXTERNAL`, migration 14), which a change of type would reset.
//! SQLite stores every one of these as text already.

use sea_orm_migration::prelude::*;

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

const COLUMNS: [(&str, &str); 3] = [("itinerary_version", "plan"), ("calendar_uid", "appointment"), ("scheduled_message", "payload")];

async fn retype(m: &SchemaManager<'_>, to: &str) -> Result<(), DbErr> {
    if m.get_database_backend() != sea_orm::DbBackend::Postgres {
        return Ok(());
    }
    let db = m.get_connection();
    for (table, column) in COLUMNS {
        db.execute_unprepared(&format!("ALTER TABLE {table} ALTER COLUMN {column} TYPE {to} USING {column}::{to}")).await?;
    }
    db.execute_unprepared("ALTER TABLE itinerary_version ALTER COLUMN plan SET STORAGE EXTERNAL").await?;
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        retype(m, "text").await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        retype(m, "json").await
    }
}

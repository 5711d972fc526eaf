//! Cheaper rows for the booking writer (issue 15), measured with its `booking group phases`
//! log and `EXPLAIN (ANALYZE, WAL)` of one group's inserts (README, Benchmarks):
//!
//! - `ix_message_itinerary` (itinerary_id) goes: `ix_message_about` (itinerary_id, about) leads
//!   with the same column and serves every lookup by itinerary; each scheduled message paid for
//!   both (a group writes ~300).
//! - On PostgreSQL the stored plan, request and calendar changes are kept uncompressed
//!   (`STORAGE EXTERNAL`, still out of line): pglz compressing each ~16 KB plan took ~4 ms of a
//!   group's ~26 ms of inserts, under the booking lock. The price is disk: ~16 KB a version
//!   instead of ~5 KB. SQLite does not compress.

use sea_orm_migration::prelude::*;

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

const COLUMNS: [&str; 3] = ["plan", "request", "calendar_changes"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(Index::drop().name("ix_message_itinerary").table("scheduled_message").to_owned()).await?;
        if m.get_database_backend() == sea_orm::DbBackend::Postgres {
            for c in COLUMNS {
                m.get_connection()
                    .execute_unprepared(&format!("ALTER TABLE itinerary_version ALTER COLUMN {c} SET STORAGE EXTERNAL"))
                    .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() == sea_orm::DbBackend::Postgres {
            for c in COLUMNS {
                m.get_connection()
                    .execute_unprepared(&format!("ALTER TABLE itinerary_version ALTER COLUMN {c} SET STORAGE EXTENDED"))
                    .await?;
            }
        }
        m.create_index(Index::create().name("ix_message_itinerary").table("scheduled_message").col("itinerary_id").to_owned()).await
    }
}

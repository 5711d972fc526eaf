//! On PostgreSQL, an itinerary's patient is checked at COMMIT (`fk_itinerary_patient`
//! `DEFERRABLE INITIALLY DEFERRED`), not when the itinerary is inserted. The booking writers
//! insert their groups' itineraries before they take the booking lock (issue 15); checked at
//! once, the key locked each patient's row (`FOR KEY SHARE`) while the group waited for the
//! lock, and erasing one of those patients (which takes the booking lock, then deletes the
//! patient) was a deadlock PostgreSQL broke after `deadlock_timeout` by failing one of them.
//! Checked at COMMIT, which every booking transaction reaches holding the booking lock, the
//! locks are taken in one order: the erasure queued first goes first, and the group finds its
//! patient gone and stores nothing. SQLite has one writer at a time and no such wait.

use sea_orm_migration::prelude::*;

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

async fn set(m: &SchemaManager<'_>, how: &str) -> Result<(), DbErr> {
    if m.get_database_backend() == sea_orm::DbBackend::Postgres {
        m.get_connection().execute_unprepared(&format!("ALTER TABLE itinerary ALTER CONSTRAINT fk_itinerary_patient {how}")).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        set(m, "DEFERRABLE INITIALLY DEFERRED").await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        set(m, "NOT DEFERRABLE").await
    }
}

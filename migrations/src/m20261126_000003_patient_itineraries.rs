//! An index on `itinerary.patient_id`: a patient's feed is looked up by its token and then
//! by patient, on every fetch. Without it each fetch scanned every itinerary (the load
//! benchmark's feeds fell from ~10,000/s at 300 itineraries to ~4,500/s at 2,000).

use sea_orm_migration::prelude::*;

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(Index::create().name("ix_itinerary_patient").table("itinerary").col("patient_id").to_owned()).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(Index::drop().name("ix_itinerary_patient").table("itinerary").to_owned()).await
    }
}

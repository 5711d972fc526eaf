//! Tokens that end and say where they came from (issue 12, items 9 and 10):
//! - `coordinator_token.expires_at`: a coordinator's token works until then (tokens stored
//!   before this migration get 90 days from when it runs); `last_used_at`, for the list of
//!   coordinators and their last use.
//! - `feed_token.origin`: `coordinator` (shown once by `POST /patients/{id}/feed`) or
//!   `confirmation` (carried by a booking confirmation), so a coordinator can see every live
//!   feed URL of a patient, and rotation is seen to end them all.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{string, timestamp_with_time_zone_null};

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite adds one at a time.
        for col in ["expires_at", "last_used_at"] {
            m.alter_table(Table::alter().table("coordinator_token").add_column(timestamp_with_time_zone_null(col)).to_owned()).await?;
        }
        let in_90_days = chrono::Utc::now() + chrono::Duration::days(90);
        m.exec_stmt(
            Query::update()
                .table("coordinator_token")
                .value("expires_at", in_90_days)
                .and_where(Expr::col("expires_at").is_null())
                .to_owned(),
        )
        .await?;
        m.alter_table(Table::alter().table("feed_token").add_column(string("origin").default("coordinator")).to_owned()).await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table("feed_token").drop_column("origin").to_owned()).await?;
        for col in ["last_used_at", "expires_at"] {
            m.alter_table(Table::alter().table("coordinator_token").drop_column(col).to_owned()).await?;
        }
        Ok(())
    }
}

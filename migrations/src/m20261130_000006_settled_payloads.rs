//! Settled messages keep no payload, and cancelled calendar UIDs no personal words (issue 12,
//! item 14): a payload is the calendar content as sent, the attendee's name and address
//! included, read only by a send; kept after it, a corrected name or address lived on in every
//! sent, skipped, failed, superseded or cancelled message. From this version on the store drops
//! a payload when its message settles; this clears the ones settled before. (The `calendar_uid`
//! rows of cancelled UIDs are rewritten without names the next time their itinerary's calendar
//! is stored.)

use sea_orm_migration::prelude::*;

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.exec_stmt(
            Query::update()
                .table("scheduled_message")
                .value("payload", Option::<serde_json::Value>::None)
                .and_where(Expr::col("status").is_in(["sent", "skipped", "failed", "superseded", "cancelled"]))
                .and_where(Expr::col("payload").is_not_null())
                .to_owned(),
        )
        .await
    }

    async fn down(&self, _: &SchemaManager) -> Result<(), DbErr> {
        // What was cleared is gone, as intended.
        Ok(())
    }
}

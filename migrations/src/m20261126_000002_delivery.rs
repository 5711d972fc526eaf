//! What the worker needs to deliver each scheduled message once: the instant a message must
//! precede, its claim (who is sending it, since when), attempts and the next one, and a unique
//! `sent_key` on deliveries so the database itself refuses a second "sent" for one message.
//! Also the test clock's offset, shared by every process of a deployment.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        let message_cols = [
            timestamp_with_time_zone_null("before_at"),
            json_null("payload"),
            integer("attempts").default(0).to_owned(),
            string_null("claimed_by"),
            timestamp_with_time_zone_null("claimed_at"),
            timestamp_with_time_zone_null("sent_at"),
            string_null("channel"),
            string_null("last_error"),
        ];
        for col in message_cols {
            m.alter_table(Table::alter().table("scheduled_message").add_column(col).to_owned()).await?;
        }
        m.alter_table(Table::alter().table("delivery").add_column(string_null("sent_key")).to_owned()).await?;
        m.create_index(Index::create().name("ux_delivery_sent").table("delivery").col("sent_key").unique().to_owned()).await?;
        m.create_index(Index::create().name("ix_message_about").table("scheduled_message").col("itinerary_id").col("about").to_owned())
            .await?;
        m.create_table(
            Table::create()
                .table("clock")
                .col(pk_auto("id"))
                .col(big_integer("offset_ms"))
                .col(timestamp_with_time_zone("updated_at"))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("clock").to_owned()).await?;
        m.drop_index(Index::drop().name("ix_message_about").table("scheduled_message").to_owned()).await?;
        m.drop_index(Index::drop().name("ux_delivery_sent").table("delivery").to_owned()).await?;
        m.alter_table(Table::alter().table("delivery").drop_column("sent_key").to_owned()).await?;
        for col in ["before_at", "payload", "attempts", "claimed_by", "claimed_at", "sent_at", "channel", "last_error"] {
            m.alter_table(Table::alter().table("scheduled_message").drop_column(col).to_owned()).await?;
        }
        Ok(())
    }
}

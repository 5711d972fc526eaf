//! What LINE's webhook tells us (issue 16): every event once, by its `webhookEventId`, with what
//! was done with it (LINE redelivers, and a redelivered event must change nothing twice); the
//! LINE users who follow the clinic's account; and what patients send, kept against the
//! patient (a message from a LINE user linked to nobody is not kept: there is no one to file
//! it under, and it may hold health details).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{integer, pk_auto, string, string_null, text, timestamp_with_time_zone, timestamp_with_time_zone_null};

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("line_event")
                .col(string("webhook_event_id").primary_key())
                .col(string("kind"))
                .col(timestamp_with_time_zone("received_at"))
                .col(string("outcome"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("line_contact")
                .col(string("line_user_id").primary_key())
                .col(timestamp_with_time_zone("followed_at"))
                .col(timestamp_with_time_zone_null("unfollowed_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("patient_message")
                .col(pk_auto("id"))
                .col(integer("patient_id"))
                .col(string("channel"))
                .col(string("kind"))
                .col(text("body"))
                .col(string_null("webhook_event_id"))
                .col(timestamp_with_time_zone("received_at"))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_message_patient")
                        .from("patient_message", "patient_id")
                        .to("patient", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("ix_patient_message").table("patient_message").col("patient_id").to_owned()).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in ["patient_message", "line_contact", "line_event"] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}

//! LINE's account-link flow (issue 16, item 2). A patient links their LINE account themselves:
//! the worker sends a LINE user the linking URL (`line_notice`, an outbox of its own, since such
//! a notice belongs to no itinerary), the patient proves who they are on our page, and we hand
//! LINE a nonce (`line_link_nonce`: stored hashed, single use, short-lived) that LINE's
//! `accountLink` event brings back. `patient.line_linked_at` says when the link was made that
//! way; a LINE user id typed by a coordinator before this migration keeps it empty.
//!
//! Answers (item 3): a reminder on LINE carries quick-reply buttons; the postback a button
//! sends is kept as the patient's message with the scheduled message it answers and the answer
//! (`ack`: understood, `call`: please call me).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer_null, integer, integer_null, pk_auto, string, string_null, timestamp_with_time_zone, timestamp_with_time_zone_null,
};

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table("patient").add_column(timestamp_with_time_zone_null("line_linked_at")).to_owned()).await?;
        // Wrong proofs on the linking page for this patient's itineraries, and when the last
        // was: past a few in a day, linking is refused until a day has passed.
        m.alter_table(Table::alter().table("patient").add_column(integer("line_link_failures").default(0)).to_owned()).await?;
        m.alter_table(Table::alter().table("patient").add_column(timestamp_with_time_zone_null("line_link_failed_at")).to_owned()).await?;
        m.alter_table(Table::alter().table("patient_message").add_column(integer_null("message_id")).to_owned()).await?;
        m.alter_table(Table::alter().table("patient_message").add_column(string_null("answer")).to_owned()).await?;
        // LINE's `timestamp` (ms) of the latest follow or unfollow applied: an older one
        // arriving late (a redelivery) does not undo a newer one.
        m.alter_table(Table::alter().table("line_contact").add_column(big_integer_null("last_event_ms")).to_owned()).await?;
        m.create_table(
            Table::create()
                .table("line_link_nonce")
                .col(string("nonce_hash").primary_key())
                .col(integer("patient_id"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("expires_at"))
                .col(timestamp_with_time_zone_null("used_at"))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_link_nonce_patient")
                        .from("line_link_nonce", "patient_id")
                        .to("patient", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("line_notice")
                .col(pk_auto("id"))
                .col(string("line_user_id"))
                // `link_offer` (the linking URL) or `linked` (the link is made).
                .col(string("kind"))
                // For `linked`: the patient linked, named when the link was made.
                .col(integer_null("patient_id"))
                // pending, sending, sent, failed
                .col(string("status"))
                .col(integer("attempts").default(0))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("due_at"))
                .col(string_null("claimed_by"))
                .col(timestamp_with_time_zone_null("claimed_at"))
                .col(timestamp_with_time_zone_null("sent_at"))
                .col(string_null("last_error"))
                // The X-Line-Retry-Key of every attempt: LINE sends a notice once however often it is tried.
                .col(string("retry_key"))
                // The event's reply token: a reply is free where a push spends the month's allowance.
                .col(string_null("reply_token"))
                // How it went: `reply` or `push`.
                .col(string_null("sent_by"))
                .to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("ix_line_notice_due").table("line_notice").col("status").col("due_at").to_owned()).await?;
        m.create_index(Index::create().name("ix_line_notice_user").table("line_notice").col("line_user_id").to_owned()).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in ["line_notice", "line_link_nonce"] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        m.alter_table(Table::alter().table("line_contact").drop_column("last_event_ms").to_owned()).await?;
        m.alter_table(Table::alter().table("patient_message").drop_column("answer").to_owned()).await?;
        m.alter_table(Table::alter().table("patient_message").drop_column("message_id").to_owned()).await?;
        m.alter_table(Table::alter().table("patient").drop_column("line_link_failed_at").to_owned()).await?;
        m.alter_table(Table::alter().table("patient").drop_column("line_link_failures").to_owned()).await?;
        m.alter_table(Table::alter().table("patient").drop_column("line_linked_at").to_owned()).await
    }
}

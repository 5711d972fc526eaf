//! Replies to calendar invites (issue 16, item 4): every iMIP REPLY or COUNTER that arrives, by
//! mail or by the inbound-mail route, with what was made of it. `applied` rows are the
//! attendees' answers (the latest per UID and attendee counts); `refused` rows say why (an
//! unknown UID, another attendee, a forged organizer, an older SEQUENCE) and change nothing. No
//! address is kept: the attendee is named by role (and escort id), as the invite was.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{boolean, integer, integer_null, pk_auto, string, string_null, text_null, timestamp_with_time_zone};

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("calendar_reply")
                .col(pk_auto("id"))
                .col(timestamp_with_time_zone("received_at"))
                // `mail` (itinerary ingest-mail) or `api` (POST /inbound/email)
                .col(string("via"))
                .col(string("method"))
                .col(string_null("uid"))
                .col(integer_null("itinerary_id"))
                .col(string_null("event_key"))
                // `patient` or `escort`
                .col(string_null("role"))
                .col(string_null("escort_id"))
                .col(string_null("partstat"))
                .col(integer("sequence").default(0))
                // The reply's DTSTAMP (UTC, as text: it sorts): a replayed older reply loses.
                .col(string_null("dtstamp"))
                .col(string_null("proposed_start"))
                .col(string_null("proposed_end"))
                .col(text_null("comment"))
                // `applied` or `refused`
                .col(string("outcome"))
                .col(string("reason"))
                // A clinic appointment declined: the coordinator is to act.
                .col(boolean("alert").default(false))
                .to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("ix_calendar_reply_itinerary").table("calendar_reply").col("itinerary_id").to_owned()).await?;
        // Replies name a UID alone; the unique index leads with the itinerary.
        m.create_index(Index::create().name("ix_calendar_uid_uid").table("calendar_uid").col("uid").to_owned()).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(Index::drop().name("ix_calendar_uid_uid").table("calendar_uid").to_owned()).await?;
        m.drop_table(Table::drop().table("calendar_reply").to_owned()).await
    }
}

//! The first schema: people, resources, itineraries with numbered versions, their events and
//! bookings, scheduled messages and deliveries, calendar UIDs, tokens (hashed) and the audit log.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

fn fk(name: &str, from_table: &'static str, from_col: &'static str, to_table: &'static str) -> ForeignKeyCreateStatement {
    ForeignKey::create().name(name).from(from_table, from_col).to(to_table, "id").on_delete(ForeignKeyAction::Restrict).to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("coordinator")
                .col(pk_auto("id"))
                .col(string("name"))
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
        )
        .await?;
        // Bearer tokens, as SHA-256 of the token: a leaked table does not let anyone in.
        m.create_table(
            Table::create()
                .table("coordinator_token")
                .col(pk_auto("id"))
                .col(integer("coordinator_id"))
                .col(string_uniq("token_hash"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone_null("revoked_at"))
                .foreign_key(&mut fk("fk_token_coordinator", "coordinator_token", "coordinator_id", "coordinator"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("patient")
                .col(pk_auto("id"))
                .col(string("name"))
                .col(string("email"))
                .col(date("birth_date"))
                .col(string("home_zone"))
                .col(string("language"))
                .col(date("passport_expiry"))
                .col(string_null("line_user_id"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("escort")
                .col(string("id").primary_key())
                .col(string("name"))
                .col(string("email"))
                .col(json("languages"))
                .col(string("works_from"))
                .col(string("works_until"))
                .col(json("weekly_days_off"))
                .col(json("dates_off"))
                .col(boolean("active"))
                .col(timestamp_with_time_zone("updated_at"))
                .to_owned(),
        )
        .await?;
        // Counted resources: infusion chairs, blood draws per slot.
        m.create_table(
            Table::create()
                .table("resource")
                .col(string("id").primary_key())
                .col(integer("capacity"))
                .col(timestamp_with_time_zone("updated_at"))
                .to_owned(),
        )
        .await?;
        // One row every booking transaction updates first: it serializes bookings across
        // processes (a row lock on PostgreSQL, the write lock on SQLite), so two coordinators
        // never book the same escort or the last chair at once.
        m.create_table(Table::create().table("booking_lock").col(integer("id").primary_key()).col(big_integer("bookings")).to_owned())
            .await?;
        m.exec_stmt(Query::insert().into_table("booking_lock").columns(["id", "bookings"]).values_panic([1.into(), 0.into()]).to_owned())
            .await?;

        m.create_table(
            Table::create()
                .table("itinerary")
                .col(pk_auto("id"))
                // The stable id in every calendar UID of the itinerary.
                .col(string_uniq("reference"))
                .col(integer("patient_id"))
                .col(string("status"))
                .col(integer("current_version"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(&mut fk("fk_itinerary_patient", "itinerary", "patient_id", "patient"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("itinerary_version")
                .col(pk_auto("id"))
                .col(integer("itinerary_id"))
                .col(integer("version"))
                .col(json("request"))
                .col(json("plan"))
                .col(timestamp_with_time_zone("planned_at"))
                .col(integer_null("coordinator_id"))
                // What the change meant for each calendar UID (invite, update, cancel, unchanged).
                .col(json("calendar_changes"))
                .foreign_key(&mut fk("fk_version_itinerary", "itinerary_version", "itinerary_id", "itinerary"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create().name("ux_version").table("itinerary_version").col("itinerary_id").col("version").unique().to_owned(),
        )
        .await?;
        // The current version's events, for listing trips by date.
        m.create_table(
            Table::create()
                .table("event")
                .col(pk_auto("id"))
                .col(integer("itinerary_id"))
                .col(string("key"))
                .col(string("kind"))
                .col(timestamp_with_time_zone_null("starts_at"))
                .col(timestamp_with_time_zone_null("ends_at"))
                .col(string_null("start_zone"))
                .col(string_null("end_zone"))
                .col(date_null("start_date"))
                .col(date_null("end_date"))
                .col(string_null("escort_id"))
                .foreign_key(&mut fk("fk_event_itinerary", "event", "itinerary_id", "itinerary"))
                .to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("ix_event_starts").table("event").col("starts_at").to_owned()).await?;
        // What active itineraries hold: escort duties, chair and lab slots. The planner's Ledger
        // is rebuilt from these inside the booking transaction.
        m.create_table(
            Table::create()
                .table("booking")
                .col(pk_auto("id"))
                .col(integer("itinerary_id"))
                .col(string("kind"))
                .col(string("resource"))
                .col(timestamp_with_time_zone("starts_at"))
                .col(timestamp_with_time_zone("ends_at"))
                .col(string_null("shared"))
                .foreign_key(&mut fk("fk_booking_itinerary", "booking", "itinerary_id", "itinerary"))
                .to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("ix_booking_time").table("booking").col("starts_at").col("ends_at").to_owned()).await?;
        m.create_index(Index::create().name("ix_booking_itinerary").table("booking").col("itinerary_id").to_owned()).await?;
        m.create_table(
            Table::create()
                .table("scheduled_message")
                .col(pk_auto("id"))
                .col(integer("itinerary_id"))
                .col(integer("version"))
                .col(string("key"))
                .col(string("kind"))
                .col(json("recipient"))
                .col(string("language"))
                .col(timestamp_with_time_zone("due_at"))
                .col(string("due_zone"))
                .col(string_null("about"))
                .col(string("if_late"))
                // pending, superseded (a later version replaced it), cancelled, sent, failed, skipped
                .col(string("status"))
                .foreign_key(&mut fk("fk_message_itinerary", "scheduled_message", "itinerary_id", "itinerary"))
                .to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("ix_message_due").table("scheduled_message").col("status").col("due_at").to_owned()).await?;
        m.create_index(Index::create().name("ix_message_itinerary").table("scheduled_message").col("itinerary_id").to_owned()).await?;
        m.create_table(
            Table::create()
                .table("delivery")
                .col(pk_auto("id"))
                .col(integer("message_id"))
                .col(string("channel"))
                .col(integer("attempt"))
                .col(string("status"))
                .col(string_null("provider_ref"))
                .col(string_null("error"))
                .col(timestamp_with_time_zone("at"))
                .foreign_key(&mut fk("fk_delivery_message", "delivery", "message_id", "scheduled_message"))
                .to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("ix_delivery_message").table("delivery").col("message_id").to_owned()).await?;
        m.create_table(
            Table::create()
                .table("calendar_uid")
                .col(pk_auto("id"))
                .col(integer("itinerary_id"))
                .col(string("uid"))
                .col(integer("sequence"))
                .col(boolean("cancelled"))
                .col(json("appointment"))
                .foreign_key(&mut fk("fk_uid_itinerary", "calendar_uid", "itinerary_id", "itinerary"))
                .to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("ux_calendar_uid").table("calendar_uid").col("itinerary_id").col("uid").unique().to_owned())
            .await?;
        // A patient's subscription feed: the URL carries the token, the table only its hash.
        m.create_table(
            Table::create()
                .table("feed_token")
                .col(pk_auto("id"))
                .col(integer("patient_id"))
                .col(string_uniq("token_hash"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone_null("revoked_at"))
                .foreign_key(&mut fk("fk_feed_patient", "feed_token", "patient_id", "patient"))
                .to_owned(),
        )
        .await?;
        // Who changed what, when: ids and field names only, never names, emails or health details.
        m.create_table(
            Table::create()
                .table("audit_log")
                .col(pk_auto("id"))
                .col(integer_null("coordinator_id"))
                .col(string("action"))
                .col(string("entity"))
                .col(string("entity_id"))
                .col(json("detail"))
                .col(timestamp_with_time_zone("at"))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            "audit_log",
            "feed_token",
            "calendar_uid",
            "delivery",
            "scheduled_message",
            "booking",
            "event",
            "itinerary_version",
            "itinerary",
            "booking_lock",
            "resource",
            "escort",
            "patient",
            "coordinator_token",
            "coordinator",
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}

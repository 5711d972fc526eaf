//! The database schema, one for SQLite (the embedded default) and PostgreSQL, as sea-orm
//! migrations. Every instant is a `timestamp with time zone` in UTC; zones are stored beside
//! them by name. Applied by `itinerary migrate` and at the start of `itinerary serve`.

pub use sea_orm_migration::prelude::*;

mod m20261126_000001_initial;
mod m20261126_000002_delivery;
mod m20261126_000003_patient_itineraries;
mod m20261126_000004_calendar_change_records;
mod m20261130_000005_token_lifetimes;
mod m20261130_000006_settled_payloads;
mod m20261130_000007_console_sessions;
mod m20261130_000008_idempotency_keys;
mod m20261130_000009_invite_choice;
mod m20261130_000010_line_webhook;
mod m20261130_000011_line_account_link;
mod m20261130_000012_calendar_replies;
mod m20261130_000013_outcomes;
mod m20261130_000014_cheaper_booking_rows;
mod m20261130_000015_clinic_changes;
mod m20261130_000016_patient_checked_at_commit;
mod m20261201_000017_itinerary_rows_checked_per_statement;
mod m20261201_000018_booking_json_as_text;
mod m20261201_000019_booking_lock_then_held;

#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261126_000001_initial::Migration),
            Box::new(m20261126_000002_delivery::Migration),
            Box::new(m20261126_000003_patient_itineraries::Migration),
            Box::new(m20261126_000004_calendar_change_records::Migration),
            Box::new(m20261130_000005_token_lifetimes::Migration),
            Box::new(m20261130_000006_settled_payloads::Migration),
            Box::new(m20261130_000007_console_sessions::Migration),
            Box::new(m20261130_000008_idempotency_keys::Migration),
            Box::new(m20261130_000009_invite_choice::Migration),
            Box::new(m20261130_000010_line_webhook::Migration),
            Box::new(m20261130_000011_line_account_link::Migration),
            Box::new(m20261130_000012_calendar_replies::Migration),
            Box::new(m20261130_000013_outcomes::Migration),
            Box::new(m20261130_000014_cheaper_booking_rows::Migration),
            Box::new(m20261130_000015_clinic_changes::Migration),
            Box::new(m20261130_000016_patient_checked_at_commit::Migration),
            Box::new(m20261201_000017_itinerary_rows_checked_per_statement::Migration),
            Box::new(m20261201_000018_booking_json_as_text::Migration),
            Box::new(m20261201_000019_booking_lock_then_held::Migration),
        ]
    }
}

//! Sessions of the coordinators' console (issue 13): a browser signs in with a coordinator's
//! token and gets a session cookie. Only the SHA-256 of the cookie's secret is kept, with the
//! token it was opened with (revoking the token ends the session) and a CSRF secret for its
//! forms; `last_seen_at` ends it after inactivity.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{integer, pk_auto, string, string_uniq, timestamp_with_time_zone};

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("console_session")
                .col(pk_auto("id"))
                .col(string_uniq("secret_hash"))
                .col(integer("token_id"))
                .col(string("csrf"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("last_seen_at"))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_session_token")
                        .from("console_session", "token_id")
                        .to("coordinator_token", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("console_session").to_owned()).await
    }
}

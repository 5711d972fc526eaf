//! Idempotency keys (issue 15): the answer to a write sent with `Idempotency-Key`, stored in
//! the write's own transaction, so that a client which never heard the answer (a dropped
//! connection, a COMMIT whose outcome was unknown) can send the request again and get the
//! answer of what was done, rather than doing it twice. One key per coordinator; kept a day.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{integer, string, text, timestamp_with_time_zone};

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("idempotency_key")
                .col(integer("coordinator_id"))
                .col(string("key"))
                // SHA-256 of the method, the path and the request's body as parsed.
                .col(string("fingerprint"))
                .col(integer("status"))
                .col(text("body"))
                .col(timestamp_with_time_zone("created_at"))
                .primary_key(Index::create().col("coordinator_id").col("key"))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_idempotency_coordinator")
                        .from("idempotency_key", "coordinator_id")
                        .to("coordinator", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("ix_idempotency_created").table("idempotency_key").col("created_at").to_owned()).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("idempotency_key").to_owned()).await
    }
}

//! Patient-reported outcomes (issue 17): the answers to the questionnaire before the first
//! infusion of a set and each online follow-up (one row per itinerary and occasion, each measure
//! a column, saved as given), the personal links that open it (stored as SHA-256, one patient,
//! one occasion), and the coordinator's decision at the 12-month re-evaluation with the draft of
//! a second set it made.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{integer, integer_null, pk_auto, string, string_null, text_null, timestamp_with_time_zone};

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("outcome_answer")
                .col(pk_auto("id"))
                .col(integer("patient_id"))
                .col(integer("itinerary_id"))
                // `baseline`, or the follow-up's event key (`followup_3m`, `reevaluation`)
                .col(string("occasion"))
                .col(integer_null("itch"))
                .col(integer_null("sleep"))
                .col(integer_null("steroid_days"))
                // Codes joined by `;` (`none`, `biologic;other`)
                .col(string_null("treatments"))
                .col(text_null("treatment_other"))
                .col(integer_null("impression"))
                .col(timestamp_with_time_zone("answered_at"))
                .col(timestamp_with_time_zone("updated_at"))
                // Saves so far: a flood is refused past a bound no patient reaches.
                .col(integer("saves").default(0))
                .foreign_key(
                    ForeignKey::create().from("outcome_answer", "patient_id").to("patient", "id").on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create().name("ux_outcome_answer").table("outcome_answer").col("itinerary_id").col("occasion").unique().to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("ix_outcome_answer_patient").table("outcome_answer").col("patient_id").to_owned()).await?;
        m.create_table(
            Table::create()
                .table("outcome_token")
                .col(string("token_hash").primary_key())
                .col(integer("patient_id"))
                .col(integer("itinerary_id"))
                .col(string("occasion"))
                .col(timestamp_with_time_zone("created_at"))
                // A backstop: the link also closes when the occasion (as planned now) begins.
                .col(timestamp_with_time_zone("expires_at"))
                .foreign_key(
                    ForeignKey::create().from("outcome_token", "patient_id").to("patient", "id").on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("ix_outcome_token_patient").table("outcome_token").col("patient_id").to_owned()).await?;
        m.create_table(
            Table::create()
                .table("reevaluation")
                // The set (itinerary) whose 12-month re-evaluation this is.
                .col(integer("itinerary_id").primary_key())
                .col(integer("patient_id"))
                // `second_set_proposed`, `declined` or `not_indicated`
                .col(string("decision"))
                .col(text_null("note"))
                .col(integer_null("decided_by"))
                .col(timestamp_with_time_zone("decided_at"))
                // For `second_set_proposed`: the request of the second set, as JSON, until booked.
                .col(text_null("draft"))
                .col(integer_null("booked_itinerary_id"))
                .foreign_key(
                    ForeignKey::create().from("reevaluation", "patient_id").to("patient", "id").on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("ix_reevaluation_patient").table("reevaluation").col("patient_id").to_owned()).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("reevaluation").to_owned()).await?;
        m.drop_table(Table::drop().table("outcome_token").to_owned()).await?;
        m.drop_table(Table::drop().table("outcome_answer").to_owned()).await
    }
}

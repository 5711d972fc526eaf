//! Which calendar invites a patient receives (issue 14, item 7): `every` appointment, `clinic`
//! appointments only (blood tests, infusions, online follow-ups), or the `feed` alone. Patients
//! stored before this migration keep `every`, what they were already getting; new patients get
//! the quiet default the service chooses (`clinic`).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::string;

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table("patient").add_column(string("invites").default("every")).to_owned()).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table("patient").drop_column("invites").to_owned()).await
    }
}

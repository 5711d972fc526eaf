//! A count of changes to the clinic (escorts and resources) on the booking lock's row, kept by
//! triggers, so that the booking writer reads the escorts and resources under the lock only
//! when they changed since it last did (issue 15: two statements fewer under the lock for each
//! group of bookings). Triggers rather than the store's writes, so that a change made any way
//! (an operator's SQL included) is counted. The trigger updates the lock's row, so a change to
//! the clinic waits for a booking group in flight, and the next group sees it.

use sea_orm_migration::prelude::*;

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

const TABLES: [&str; 2] = ["escort", "resource"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("booking_lock")
                .add_column(ColumnDef::new("clinic_changes").big_integer().not_null().default(0))
                .to_owned(),
        )
        .await?;
        let db = m.get_connection();
        if m.get_database_backend() == sea_orm::DbBackend::Postgres {
            db.execute_unprepared(
                "CREATE FUNCTION clinic_changed() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN UPDATE booking_lock SET clinic_changes = clinic_changes + 1 WHERE id = 1; RETURN NULL; END $$",
            )
            .await?;
            for t in TABLES {
                db.execute_unprepared(&format!(
                    "CREATE TRIGGER {t}_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {t} \
                     FOR EACH STATEMENT EXECUTE FUNCTION clinic_changed()"
                ))
                .await?;
            }
        } else {
            for t in TABLES {
                for event in ["INSERT", "UPDATE", "DELETE"] {
                    db.execute_unprepared(&format!(
                        "CREATE TRIGGER {t}_{e}_changed AFTER {event} ON {t} \
                         BEGIN UPDATE booking_lock SET clinic_changes = clinic_changes + 1 WHERE id = 1; END",
                        e = event.to_lowercase()
                    ))
                    .await?;
                }
            }
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        if m.get_database_backend() == sea_orm::DbBackend::Postgres {
            for t in TABLES {
                db.execute_unprepared(&format!("DROP TRIGGER {t}_changed ON {t}")).await?;
            }
            db.execute_unprepared("DROP FUNCTION clinic_changed()").await?;
        } else {
            for t in TABLES {
                for e in ["insert", "update", "delete"] {
                    db.execute_unprepared(&format!("DROP TRIGGER {t}_{e}_changed")).await?;
                }
            }
        }
        m.alter_table(Table::alter().table("booking_lock").drop_column("clinic_changes").to_owned()).await
    }
}

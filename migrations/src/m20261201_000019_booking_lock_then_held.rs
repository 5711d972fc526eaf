//! On PostgreSQL, a booking group takes the booking lock and reads the bookings it must check
//! against in one round trip: `booking_lock_then_held(since, until, earliest)`. The lock is the
//! one serial section of booking (issue 15: held ~6.8 ms a group at 12 clients, busy ~76 % of
//! the booking phase under `bench/load.sh`), and every round trip inside it waits for the
//! service's and PostgreSQL's processes to be scheduled on a busy machine.
//!
//! The function is VOLATILE, so (in READ COMMITTED, as the service runs) its second query takes
//! a snapshot after its first has the lock: it sees every booking the lock's previous holder
//! committed. A single SQL statement would not: its snapshot is taken before it waits for the
//! lock. The first row carries the lock row's `clinic_changes` and no booking (its `id` is
//! NULL), so the count arrives when no booking is held too. SQLite has one writer and keeps its
//! two statements.

use sea_orm_migration::prelude::*;

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

const FUNCTION: &str = r#"
CREATE FUNCTION booking_lock_then_held(since timestamptz, until timestamptz, earliest timestamptz)
RETURNS TABLE (clinic_changes bigint, id integer, itinerary_id integer, kind varchar, resource varchar,
               starts_at timestamptz, ends_at timestamptz, shared varchar)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    changes bigint;
BEGIN
    UPDATE booking_lock SET bookings = bookings + 1 WHERE id = 1 RETURNING clinic_changes INTO changes;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'booking_lock has no row 1';
    END IF;
    RETURN QUERY SELECT changes, NULL::integer, NULL::integer, NULL::varchar, NULL::varchar,
                        NULL::timestamptz, NULL::timestamptz, NULL::varchar;
    -- A query of its own: its snapshot includes what the lock's previous holder committed.
    RETURN QUERY SELECT changes, b.id, b.itinerary_id, b.kind, b.resource, b.starts_at, b.ends_at, b.shared
                 FROM booking b
                 WHERE b.starts_at < until AND b.starts_at > earliest AND b.ends_at > since;
END
$$;
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() == sea_orm::DbBackend::Postgres {
            m.get_connection().execute_unprepared(FUNCTION).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() == sea_orm::DbBackend::Postgres {
            m.get_connection().execute_unprepared("DROP FUNCTION booking_lock_then_held(timestamptz, timestamptz, timestamptz)").await?;
        }
        Ok(())
    }
}

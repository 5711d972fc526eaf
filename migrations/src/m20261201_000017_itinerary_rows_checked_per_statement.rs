//! On PostgreSQL, the rows of an itinerary (its versions, events, bookings, scheduled messages
//! and calendar UIDs) are checked against `itinerary` once per statement instead of once per
//! row. A foreign key checks each inserted row with its own query (an index lookup and a
//! `FOR KEY SHARE` lock of the same itinerary row, run through SPI): a booking writes ~73 such
//! rows, and those checks were 18 % of PostgreSQL's CPU under `bench/load.sh` (issue 15,
//! `perf record --call-graph dwarf` of the backends: `AfterTriggerEndQuery`).
//!
//! The five foreign keys become triggers that keep their meaning:
//! - after an INSERT, one statement-level trigger per table reads the distinct itineraries of
//!   the new rows (a transition table), locks them `FOR KEY SHARE` as a foreign key would (a
//!   concurrent erasure waits, or, having deleted one first, makes this insert fail), and fails
//!   with SQLSTATE 23503 naming the old constraint if any is missing;
//! - a row moved to another itinerary is checked the same way, row by row (nothing moves rows;
//!   the `WHEN` clause costs nothing for the updates that do not);
//! - deleting an itinerary, or changing its id, that still has rows fails with 23503, as
//!   `ON DELETE RESTRICT` did (erasure deletes the rows first).
//!
//! The checks rely on READ COMMITTED (every transaction of the service runs in it): each query
//! in a trigger sees what committed before it, as a foreign key's cross-check does. Under
//! REPEATABLE READ the delete-side check would miss rows committed after the snapshot. TRUNCATE
//! of `itinerary` is not refused (nothing truncates).
//!
//! SQLite keeps its foreign keys: it checks them in-process, cheaply, and has one writer.

use sea_orm_migration::prelude::*;

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

/// Each table holding an itinerary's rows, and its foreign key's name.
const ROWS: [(&str, &str); 5] = [
    ("itinerary_version", "fk_version_itinerary"),
    ("event", "fk_event_itinerary"),
    ("booking", "fk_booking_itinerary"),
    ("scheduled_message", "fk_message_itinerary"),
    ("calendar_uid", "fk_uid_itinerary"),
];

const FUNCTIONS: &str = r#"
CREATE FUNCTION itinerary_rows_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ids integer[] := ARRAY(SELECT DISTINCT itinerary_id FROM added);
    locked integer;
    missing integer;
BEGIN
    -- By the primary key, one lookup per itinerary (joined to the transition table, whose size
    -- a cached plan does not know, PostgreSQL chose to scan all of `itinerary`).
    PERFORM 1 FROM itinerary WHERE id = ANY (ids) FOR KEY SHARE;
    GET DIAGNOSTICS locked = ROW_COUNT;
    IF locked < cardinality(ids) THEN
        SELECT x INTO missing FROM unnest(ids) AS x WHERE NOT EXISTS (SELECT 1 FROM itinerary i WHERE i.id = x) LIMIT 1;
        RAISE EXCEPTION 'insert or update on table "%" violates foreign key constraint "%"', TG_TABLE_NAME, TG_ARGV[0]
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = TG_ARGV[0], TABLE = TG_TABLE_NAME,
                  DETAIL = format('Key (itinerary_id)=(%s) is not present in table "itinerary".', missing);
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION itinerary_row_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM itinerary WHERE id = NEW.itinerary_id FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'insert or update on table "%" violates foreign key constraint "%"', TG_TABLE_NAME, TG_ARGV[0]
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = TG_ARGV[0], TABLE = TG_TABLE_NAME,
                  DETAIL = format('Key (itinerary_id)=(%s) is not present in table "itinerary".', NEW.itinerary_id);
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION itinerary_left_with_rows() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    referencing text;
BEGIN
    IF EXISTS (SELECT 1 FROM itinerary_version WHERE itinerary_id = OLD.id) THEN referencing := 'itinerary_version';
    ELSIF EXISTS (SELECT 1 FROM event WHERE itinerary_id = OLD.id) THEN referencing := 'event';
    ELSIF EXISTS (SELECT 1 FROM booking WHERE itinerary_id = OLD.id) THEN referencing := 'booking';
    ELSIF EXISTS (SELECT 1 FROM scheduled_message WHERE itinerary_id = OLD.id) THEN referencing := 'scheduled_message';
    ELSIF EXISTS (SELECT 1 FROM calendar_uid WHERE itinerary_id = OLD.id) THEN referencing := 'calendar_uid';
    ELSE
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'update or delete on table "itinerary" violates foreign key constraint on table "%"', referencing
        USING ERRCODE = 'foreign_key_violation', TABLE = referencing,
              DETAIL = format('Key (id)=(%s) is still referenced from table "%s".', OLD.id, referencing);
END
$$;

CREATE TRIGGER itinerary_left_with_rows AFTER DELETE ON itinerary
    FOR EACH ROW EXECUTE FUNCTION itinerary_left_with_rows();
CREATE TRIGGER itinerary_renumbered AFTER UPDATE OF id ON itinerary
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION itinerary_left_with_rows();
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Ok(());
        }
        let db = m.get_connection();
        db.execute_unprepared(FUNCTIONS).await?;
        for (table, fk) in ROWS {
            db.execute_unprepared(&format!(
                "ALTER TABLE {table} DROP CONSTRAINT {fk};
                 CREATE TRIGGER {fk}_inserted AFTER INSERT ON {table} REFERENCING NEW TABLE AS added
                     FOR EACH STATEMENT EXECUTE FUNCTION itinerary_rows_inserted('{fk}');
                 CREATE TRIGGER {fk}_moved AFTER UPDATE OF itinerary_id ON {table}
                     FOR EACH ROW WHEN (OLD.itinerary_id IS DISTINCT FROM NEW.itinerary_id)
                     EXECUTE FUNCTION itinerary_row_moved('{fk}');"
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Ok(());
        }
        let db = m.get_connection();
        for (table, fk) in ROWS {
            db.execute_unprepared(&format!(
                "DROP TRIGGER {fk}_inserted ON {table};
                 DROP TRIGGER {fk}_moved ON {table};
                 ALTER TABLE {table} ADD CONSTRAINT {fk} FOREIGN KEY (itinerary_id) REFERENCES itinerary (id) ON DELETE RESTRICT;"
            ))
            .await?;
        }
        db.execute_unprepared(
            "DROP TRIGGER itinerary_left_with_rows ON itinerary;
             DROP TRIGGER itinerary_renumbered ON itinerary;
             DROP FUNCTION itinerary_left_with_rows();
             DROP FUNCTION itinerary_row_moved();
             DROP FUNCTION itinerary_rows_inserted();",
        )
        .await?;
        Ok(())
    }
}

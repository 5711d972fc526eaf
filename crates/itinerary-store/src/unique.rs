//! Reading the row a unique key selects, without `LIMIT ?`.
//!
//! sea-orm's `one()` appends `LIMIT ?` with the 1 bound as a parameter. SQLite lets a bound
//! LIMIT shape the query plan, so it marks such a statement to be compiled again whenever that
//! parameter is bound again (`sqlite3ExprIsInteger` sets the statement's expmask): every
//! execution re-parsed its SQL, about 5% of the server's CPU under the load benchmark (the
//! bearer-token and patient lookups of every booking, the feed-token lookup of every feed). A
//! unique key selects at most one row, so no LIMIT is needed. (SQLite skips this when the
//! connection has SQLITE_DBCONFIG_ENABLE_QPSG set, which sqlx offers no way to set.)

use sea_orm::{ConnectionTrait, DbErr, EntityTrait, Select, Selector, SelectorTrait};

pub(crate) trait Unique {
    type Row;
    /// The row, if any. Only for a filter on a unique key: a second row is an error.
    async fn unique(self, db: &impl ConnectionTrait) -> Result<Option<Self::Row>, DbErr>;
}

fn at_most_one<T>(rows: Vec<T>, what: &str) -> Result<Option<T>, DbErr> {
    let mut rows = rows.into_iter();
    let row = rows.next();
    if rows.next().is_some() {
        return Err(DbErr::Custom(format!("two {what} rows where a unique key selects one")));
    }
    Ok(row)
}

impl<E: EntityTrait> Unique for Select<E> {
    type Row = E::Model;
    async fn unique(self, db: &impl ConnectionTrait) -> Result<Option<E::Model>, DbErr> {
        at_most_one(self.all(db).await?, E::default().table_name())
    }
}

/// Columns of a row (`select_only().column(..).into_tuple()`).
impl<S: SelectorTrait> Unique for Selector<S> {
    type Row = S::Item;
    async fn unique(self, db: &impl ConnectionTrait) -> Result<Option<S::Item>, DbErr> {
        at_most_one(self.all(db).await?, "selected")
    }
}

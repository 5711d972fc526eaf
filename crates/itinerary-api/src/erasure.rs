//! A patient's erasure (right to erasure, APPI and PDPA), shared by the API and the console:
//! the database's part in one transaction (`Store::erase_patient`), then the mail kept in the
//! outbox under the erased itineraries' references.

use std::path::Path;

use chrono::{DateTime, Utc};
use itinerary_store::{EraseError, Erasure, Store};

/// Erases patient `id` and their outbox mail. A failure to delete outbox files after the
/// database committed is logged and reported in the count (`outbox_files` stays what was
/// deleted): the rows are gone either way, and a second erasure cannot find the references.
pub async fn erase_patient(store: &Store, outbox: Option<&Path>, by: i32, id: i32, now: DateTime<Utc>) -> Result<Erasure, EraseError> {
    let mut e = store.erase_patient(by, id, now).await?;
    if let Some(dir) = outbox {
        match itinerary_notify::transport::erase_from_outbox(dir, &e.references) {
            Ok(n) => e.outbox_files = n,
            Err(err) => tracing::error!(patient = id, error = %err, "erasing a patient's mail from the outbox: delete it by hand"),
        }
    }
    tracing::info!(patient = id, "patient erased");
    Ok(e)
}

//! `itinerary plan --ics DIR`: the calendar files of one itinerary version, and the state that
//! makes the next run on the same DIR send updates and cancellations instead of new invites.
//!
//! DIR holds `itinerary.ics` (METHOD:PUBLISH), one `EVENT.patient.ics` / `EVENT.escort-ID.ics`
//! per appointment (METHOD:REQUEST; METHOD:CANCEL for one dropped in this version),
//! `changes.json` (each appointment's fate in this version) and `calendar-state.json` (the
//! SEQUENCE of every UID ever sent). Files of the previous version that this one does not write
//! again are removed.

use std::path::Path;

use anyhow::Context;
use itinerary_calendar::{CalendarState, ChangeKind, Edition, Itinerary, Method, Person};
use itinerary_core::{ClinicSetup, Plan, PlanRequest};
use serde::{Deserialize, Serialize};

const STATE: &str = "calendar-state.json";
const CHANGES: &str = "changes.json";
const PUBLISHED: &str = "itinerary.ics";

#[derive(Serialize, Deserialize)]
struct ChangeRecord {
    kind: ChangeKind,
    uid: String,
    event: String,
    attendee: String,
    sequence: u32,
    /// The invite or cancellation written for it.
    file: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct ChangesFile {
    itinerary: String,
    version: u32,
    files: Vec<String>,
    changes: Vec<ChangeRecord>,
}

pub struct Written {
    pub files: usize,
    pub version: u32,
}

pub fn write(dir: &Path, id: &str, plan: &Plan, req: &PlanRequest, setup: &ClinicSetup) -> anyhow::Result<Written> {
    let it = Itinerary {
        id,
        plan,
        patient: Person { name: &req.patient.name, email: &req.patient.email },
        escorts: &setup.resources.escorts,
        clinic_name: &setup.clinic.name,
        settings: &setup.calendar,
    };
    let appointments = it.appointments().with_context(|| format!("making the calendar of itinerary `{id}`"))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;

    let state_path = dir.join(STATE);
    let previous: CalendarState = match std::fs::read_to_string(&state_path) {
        Ok(text) => {
            serde_json::from_str(&text).with_context(|| format!("{}: not a calendar state this program wrote", state_path.display()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => CalendarState::default(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", state_path.display())),
    };
    let old_files: Vec<String> = std::fs::read_to_string(dir.join(CHANGES))
        .ok()
        .and_then(|t| serde_json::from_str::<ChangesFile>(&t).ok())
        .map(|c| c.files)
        .unwrap_or_default();

    let (changes, state) = previous.changes(&appointments);
    let ed = Edition::of(&it);
    let mut files = vec![PUBLISHED.to_owned()];
    let mut records = Vec::with_capacity(changes.len());
    let mut outputs = vec![(PUBLISHED.to_owned(), itinerary_calendar::publish(&it, &appointments, |uid| state.sequence(uid)))];
    for c in &changes {
        let a = &c.appointment;
        // Every current appointment has its invite in DIR, at its current SEQUENCE; a dropped one
        // its cancellation.
        let method = if c.kind == ChangeKind::Cancel { Method::Cancel } else { Method::Request };
        let name = a.file_name();
        outputs.push((name.clone(), itinerary_calendar::invite(&ed, a, c.sequence, method)));
        files.push(name.clone());
        let file = Some(name);
        let attendee = match &a.attendee.audience {
            itinerary_calendar::Audience::Patient => "patient".to_owned(),
            itinerary_calendar::Audience::Escort { id } => format!("escort {id}"),
        };
        records.push(ChangeRecord { kind: c.kind, uid: a.uid.clone(), event: a.event.clone(), attendee, sequence: c.sequence, file });
    }
    for old in old_files.iter().filter(|f| !files.contains(f)) {
        // Only names this program wrote, never a path outside DIR.
        if old.ends_with(".ics") && !old.contains(['/', '\\']) {
            let _ = std::fs::remove_file(dir.join(old));
        }
    }
    for (name, text) in &outputs {
        std::fs::write(dir.join(name), text).with_context(|| format!("writing {}", dir.join(name).display()))?;
    }
    let summary = ChangesFile { itinerary: id.to_owned(), version: state.version, files, changes: records };
    std::fs::write(dir.join(CHANGES), serde_json::to_string_pretty(&summary)? + "\n")?;
    std::fs::write(&state_path, serde_json::to_string_pretty(&state)? + "\n")?;
    Ok(Written { files: outputs.len(), version: state.version })
}

//! `itinerary plan --ics DIR`: the calendar files of one itinerary, and the state that makes the
//! next run on the same DIR send updates and cancellations instead of new invites.
//!
//! DIR holds `itinerary.ics` (METHOD:PUBLISH) and, for every UID ever issued, its latest message:
//! METHOD:REQUEST at the current SEQUENCE for an appointment still planned, METHOD:CANCEL for one
//! that was dropped. Nothing is deleted, so a cancellation is still there for a mailer that
//! missed a run. `changes.json` says what changed in this run (`invite`, `update`, `cancel`,
//! `unchanged`) and `calendar-state.json` keeps every UID's SEQUENCE.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use itinerary_calendar::{Audience, CalendarState, ChangeKind, Edition, Itinerary, Method, Person};
use itinerary_core::{ClinicSetup, Plan, PlanRequest};
use serde::Serialize;

const STATE: &str = "calendar-state.json";
const CHANGES: &str = "changes.json";
const PUBLISHED: &str = "itinerary.ics";

#[derive(Serialize)]
struct ChangeRecord<'a> {
    kind: ChangeKind,
    uid: &'a str,
    event: &'a str,
    attendee: String,
    sequence: u32,
    file: String,
}

#[derive(Serialize)]
struct ChangesFile<'a> {
    itinerary: &'a str,
    version: u32,
    /// This run's changes, in plan order, then cancellations.
    changes: Vec<ChangeRecord<'a>>,
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

    let state_path = dir.join(STATE);
    let previous: CalendarState = match std::fs::read_to_string(&state_path) {
        Ok(text) => {
            serde_json::from_str(&text).with_context(|| format!("{}: not a calendar state this program wrote", state_path.display()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => CalendarState::default(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", state_path.display())),
    };
    let (changes, state) = previous.changes(&appointments);
    let ed = Edition::of(&it);

    // Every file is rendered before any is written: a failure leaves DIR as it was.
    let mut outputs: BTreeMap<String, String> = BTreeMap::new();
    outputs.insert(PUBLISHED.to_owned(), itinerary_calendar::publish(&it, &appointments, |uid| state.sequence(uid)));
    for (uid, issued) in &state.issued {
        let method = if issued.cancelled { Method::Cancel } else { Method::Request };
        let name = issued.appointment.file_name();
        if outputs.insert(name.clone(), itinerary_calendar::invite(&ed, &issued.appointment, issued.sequence, method)).is_some() {
            bail!("two appointments would share the file {name} (the second is {uid}): not writing either");
        }
    }
    let records = changes
        .iter()
        .map(|c| ChangeRecord {
            kind: c.kind,
            uid: &c.appointment.uid,
            event: &c.appointment.event,
            attendee: match &c.appointment.attendee.audience {
                Audience::Patient => "patient".to_owned(),
                Audience::Escort { id } => format!("escort {id}"),
            },
            sequence: c.sequence,
            file: c.appointment.file_name(),
        })
        .collect();

    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, text) in &outputs {
        // A file that would differ only in its DTSTAMP is left as it is: a mailer watching DIR
        // (or a person diffing it) sees only what changed.
        let path = dir.join(name);
        if std::fs::read_to_string(&path).is_ok_and(|old| same_but_dtstamp(&old, text)) {
            continue;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let summary = ChangesFile { itinerary: id, version: state.version, changes: records };
    std::fs::write(dir.join(CHANGES), serde_json::to_string_pretty(&summary)? + "\n")?;
    // Last: until the state is written, a rerun computes the same changes again.
    std::fs::write(&state_path, serde_json::to_string_pretty(&state)? + "\n")?;
    Ok(Written { files: outputs.len(), version: state.version })
}

/// Whether two calendar files say the same but for when they were made.
fn same_but_dtstamp(a: &str, b: &str) -> bool {
    let lines = |s: &str| s.split("\r\n").filter(|l| !l.starts_with("DTSTAMP:")).map(str::to_owned).collect::<Vec<_>>();
    lines(a) == lines(b)
}

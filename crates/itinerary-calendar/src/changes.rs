//! From one plan version to the next: which appointments go out as new invites, which as
//! updates, which as cancellations, and which are unchanged. SEQUENCE is kept per UID across
//! every version, cancelled ones included, so an appointment that returns after a cancellation
//! still goes out with a higher SEQUENCE than anything sent before under its UID.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Appointment;

/// What has been sent under each UID so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarState {
    /// The plan version this state describes (1 for the first).
    pub version: u32,
    pub issued: BTreeMap<String, Issued>,
}

/// The last thing sent under one UID.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issued {
    pub sequence: u32,
    pub cancelled: bool,
    pub appointment: Appointment,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// First sent (or sent again after a cancellation): REQUEST.
    Invite,
    /// Content changed: REQUEST with the same UID and SEQUENCE + 1.
    Update,
    /// Gone from the plan: CANCEL with the same UID and SEQUENCE + 1.
    Cancel,
    /// Nothing to send.
    Unchanged,
}

/// One appointment's fate in a new version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub kind: ChangeKind,
    pub sequence: u32,
    /// As it is now; for a cancellation, as it was last sent.
    pub appointment: Appointment,
}

impl CalendarState {
    /// The SEQUENCE a UID carries now (0 for one never sent).
    pub fn sequence(&self, uid: &str) -> u32 {
        self.issued.get(uid).map_or(0, |i| i.sequence)
    }

    /// What moving to `next` means for every appointment, and the state after it. Changes come in
    /// the order of `next`, then cancellations in UID order.
    pub fn changes(&self, next: &[Appointment]) -> (Vec<Change>, CalendarState) {
        let mut state = CalendarState { version: self.version + 1, issued: self.issued.clone() };
        let mut out = Vec::with_capacity(next.len());
        for a in next {
            let (kind, sequence) = match self.issued.get(&a.uid) {
                None => (ChangeKind::Invite, 0),
                Some(i) if i.cancelled => (ChangeKind::Invite, i.sequence + 1),
                Some(i) if i.appointment == *a => (ChangeKind::Unchanged, i.sequence),
                Some(i) => (ChangeKind::Update, i.sequence + 1),
            };
            state.issued.insert(a.uid.clone(), Issued { sequence, cancelled: false, appointment: a.clone() });
            out.push(Change { kind, sequence, appointment: a.clone() });
        }
        for (uid, i) in &self.issued {
            if i.cancelled || next.iter().any(|a| a.uid == *uid) {
                continue;
            }
            let sequence = i.sequence + 1;
            state.issued.insert(uid.clone(), Issued { sequence, cancelled: true, appointment: i.appointment.clone() });
            out.push(Change { kind: ChangeKind::Cancel, sequence, appointment: i.appointment.clone() });
        }
        (out, state)
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;
    use itinerary_core::plan::When;
    use itinerary_core::request::Language;

    use super::*;
    use crate::{Attendee, Audience};

    fn appt(uid: &str, day: u32) -> Appointment {
        let d = NaiveDate::from_ymd_opt(2027, 1, day).unwrap_or_default();
        Appointment {
            uid: uid.into(),
            event: "trip1.hotel".into(),
            attendee: Attendee { audience: Audience::Patient, name: "P".into(), email: "p@example.jp".into(), language: Language::Ja },
            summary: "Hotel".into(),
            description: String::new(),
            location: None,
            when: When::Dates { start: d, end: d.succ_opt().unwrap_or(d) },
            url: None,
            transparent: true,
        }
    }

    fn kinds(c: &[Change]) -> Vec<(ChangeKind, &str, u32)> {
        c.iter().map(|c| (c.kind, c.appointment.uid.as_str(), c.sequence)).collect()
    }

    #[test]
    fn sequence_only_rises_through_update_cancel_and_return() {
        let s0 = CalendarState::default();
        let (c, s1) = s0.changes(&[appt("a", 4), appt("b", 5)]);
        assert_eq!(kinds(&c), [(ChangeKind::Invite, "a", 0), (ChangeKind::Invite, "b", 0)]);
        let (c, s2) = s1.changes(&[appt("a", 6)]);
        assert_eq!(kinds(&c), [(ChangeKind::Update, "a", 1), (ChangeKind::Cancel, "b", 1)]);
        // Unchanged, and a cancelled UID is not cancelled twice.
        let (c, s3) = s2.changes(&[appt("a", 6)]);
        assert_eq!(kinds(&c), [(ChangeKind::Unchanged, "a", 1)]);
        assert!(s3.issued["b"].cancelled);
        // Back after its cancellation: above every SEQUENCE sent under its UID.
        let (c, s4) = s3.changes(&[appt("a", 6), appt("b", 5)]);
        assert_eq!(kinds(&c), [(ChangeKind::Unchanged, "a", 1), (ChangeKind::Invite, "b", 2)]);
        assert_eq!((s4.version, s4.sequence("b")), (4, 2));
    }
}

//! A `Plan` as RFC 5545 calendars that iPhone, Google and Outlook show at the right hour:
//!
//! - `publish`: the whole itinerary (METHOD:PUBLISH, RFC 7986 NAME, DESCRIPTION,
//!   REFRESH-INTERVAL), for import or for a subscription feed;
//! - `invite`: one appointment to one attendee (METHOD:REQUEST), or its cancellation
//!   (METHOD:CANCEL, same UID, SEQUENCE + 1, STATUS:CANCELLED);
//! - `CalendarState::changes`: what a new plan version sends (invites, updates, cancellations);
//! - a VTIMEZONE for every TZID used, generated from the same tz database the planner used.
//!
//! Output is a pure function of its inputs: UIDs come from the itinerary, the event and the
//! attendee; DTSTAMP from the plan version; nothing from the clock or a random source.
//!
//! ```
//! let v = itinerary_calendar::vtimezone(chrono_tz::Tz::America__Los_Angeles, 2027, 2027);
//! assert!(v.contains("DTSTART:20070311T020000\r\n")); // spring forward at 02:00 local, since 2007
//! assert!(v.contains("RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU\r\n"));
//! ```

mod appointment;
mod changes;
mod line;
mod render;
pub mod text;
mod vtimezone;

pub use appointment::{Appointment, Attendee, Audience, Itinerary, Person, check_itinerary_id};
pub use changes::{CalendarState, Change, ChangeKind, Issued};
pub use render::{Edition, Method, invite, publish};
pub use vtimezone::vtimezone;

/// Why a calendar cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum CalendarError {
    #[error("itinerary id `{0}`: use 1–64 letters, digits, `.`, `_` or `-`, starting with a letter or digit")]
    ItineraryId(String),
    #[error("escort `{0}` is in the plan but not among the clinic's escorts")]
    UnknownEscort(String),
    #[error("the plan assigns an escort to event `{0}`, which it does not hold")]
    UnknownEvent(String),
}

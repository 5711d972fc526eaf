//! The scheduler core: domain types, the stay planner, the clinic calendar, protocols, reminder
//! rules and where-is-the-patient. Pure by design: no async runtime, database, network or clock;
//! the current instant is an argument, so every rule can be tested at any instant, daylight-saving
//! changes included.
//!
//! ```text
//! RawPlanRequest ──PlanRequest::parse──▶ PlanRequest ──plan(setup, request, now, ledger)──▶ Plan | Infeasible
//! ```
//!
//! A typed local time that daylight saving skips is an error, never a guess:
//!
//! ```
//! use chrono::NaiveDate;
//! use chrono_tz::Tz;
//! use itinerary_core::time::{LocalTimeError, resolve_strict};
//!
//! let t = NaiveDate::from_ymd_opt(2027, 3, 14).unwrap().and_hms_opt(2, 30, 0).unwrap();
//! assert!(matches!(resolve_strict(t, Tz::America__Los_Angeles), Err(LocalTimeError::Nonexistent { .. })));
//! let t = NaiveDate::from_ymd_opt(2026, 12, 3).unwrap().and_hms_opt(10, 0, 0).unwrap();
//! assert_eq!(resolve_strict(t, Tz::Asia__Kuala_Lumpur).unwrap().to_rfc3339(), "2026-12-03T10:00:00+08:00");
//! ```

pub mod clinic;
pub mod display;
pub mod ledger;
pub mod messages;
pub mod plan;
pub mod planner;
pub mod reference;
pub mod request;
pub mod time;

pub use clinic::{CalendarSettings, Clinic, ClinicSetup, Escort, Protocol, Resources, Rules};
pub use ledger::{Booking, Ledger};
pub use plan::{Event, EventKind, Infeasible, MessageDue, Plan, Violation};
pub use planner::plan;
pub use reference::{Airport, AirportTable, Holiday, HolidayCalendar};
pub use request::{FieldError, InvalidRequest, PlanRequest, RawPlanRequest};
pub use time::Zoned;

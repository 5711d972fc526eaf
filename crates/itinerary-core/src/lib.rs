//! The scheduler core: domain types, the stay planner, the clinic calendar, protocols, reminder
//! rules and where-is-the-patient. Pure by design: no async runtime, database, network or clock;
//! the current instant is an argument, so every rule can be tested at any instant, daylight-saving
//! changes included.
//!
//! ```text
//! RawPlanRequest ──PlanRequest::parse──▶ PlanRequest ──plan(setup, request, now, ledger)──▶ Plan | Infeasible
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

pub use clinic::{Clinic, ClinicSetup, Escort, Protocol, Resources, Rules};
pub use ledger::{Booking, Ledger};
pub use plan::{Event, EventKind, Infeasible, MessageDue, Plan, Violation};
pub use planner::plan;
pub use reference::{Airport, AirportTable, Holiday, HolidayCalendar};
pub use request::{FieldError, InvalidRequest, PlanRequest, RawPlanRequest};
pub use time::Zoned;

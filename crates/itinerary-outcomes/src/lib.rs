//! Patient-reported outcomes (issue 17): what a patient answers before the first infusion of a
//! set (the baseline) and before each online follow-up, so that the doctor comes to a
//! five-minute call with the course of the skin in front of them.
//!
//! This crate owns the questionnaire (the questions in Japanese and English, the choices, what
//! a valid answer is), the doctor's summary line of a follow-up against its baseline, the CSV
//! export and the chart (SVG drawn with plotters). It is pure: no I/O, no clock. The questions
//! are this project's own wording of common practice in atopic dermatitis trials (a 0–10
//! numeric rating of the worst itch in 24 hours, of sleep lost to itch, days of topical
//! anti-inflammatory treatment, systemic treatments, a five-point global impression of
//! severity); they are not a licensed validated instrument (`QUESTIONNAIRE.md` says so, and what
//! adding POEM would take).

mod chart;
mod export;
mod questionnaire;
mod summary;

pub use chart::{ChartError, chart};
/// Why the CSV could not be written.
pub use csv::Error as CsvError;
pub use export::csv;
pub use questionnaire::{Answers, FieldError, Measure, QUESTIONS, Question, Treatment};
pub use summary::summary;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// What an answer is given before.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OccasionKind {
    /// Before the first infusion of a set.
    Baseline,
    /// Before an online follow-up (1, 3 and 6 months).
    FollowUp,
    /// Before the re-evaluation for a second set (12 months).
    Reevaluation,
}

/// One questionnaire of one patient: the occasion it is for and what was answered.
#[derive(Clone, Debug, Serialize)]
pub struct Occasion {
    pub itinerary_id: i32,
    /// The itinerary's reference (a set of infusions).
    pub reference: String,
    /// 1 for the patient's first set, 2 for the second, by the itineraries' order.
    pub set: u32,
    /// `baseline`, or the follow-up's event key (`followup_3m`, `reevaluation`).
    pub key: String,
    pub kind: OccasionKind,
    /// When it begins (the first infusion, the call): answers are taken until then.
    pub at: DateTime<Utc>,
    /// The zone the patient is in at that time, for showing it.
    pub zone: chrono_tz::Tz,
    pub answers: Answers,
    pub answered_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl Occasion {
    /// Whether anything was answered.
    pub fn answered(&self) -> bool {
        !self.answers.is_empty()
    }
}

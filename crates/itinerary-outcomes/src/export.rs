//! The CSV a doctor or a study opens in a spreadsheet: one row per occasion.

use crate::Occasion;

/// The occasions as CSV (RFC 4180, a header row, UTC instants in RFC 3339 and the patient's local
/// time beside them, treatments as codes joined by `;`).
pub fn csv(occasions: &[Occasion]) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "reference",
        "set",
        "occasion",
        "kind",
        "occasion_at_utc",
        "occasion_at_local",
        "zone",
        "itch",
        "sleep",
        "steroid_days",
        "treatments",
        "treatment_other",
        "impression",
        "answered_at_utc",
        "updated_at_utc",
    ])?;
    let n = |v: Option<u8>| v.map(|v| v.to_string()).unwrap_or_default();
    let t = |v: Option<chrono::DateTime<chrono::Utc>>| v.map(|v| v.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).unwrap_or_default();
    for o in occasions {
        let kind = match o.kind {
            crate::OccasionKind::Baseline => "baseline",
            crate::OccasionKind::FollowUp => "follow_up",
            crate::OccasionKind::Reevaluation => "reevaluation",
        };
        w.write_record([
            o.reference.clone(),
            o.set.to_string(),
            o.key.clone(),
            kind.to_owned(),
            t(Some(o.at)),
            o.at.with_timezone(&o.zone).format("%Y-%m-%d %H:%M").to_string(),
            o.zone.name().to_owned(),
            n(o.answers.itch),
            n(o.answers.sleep),
            n(o.answers.steroid_days),
            o.answers.treatment_codes().unwrap_or_default(),
            // A cell starting with = + - @ is a formula to a spreadsheet: quoted as text.
            defused(o.answers.treatment_other.as_deref().unwrap_or_default()),
            n(o.answers.impression),
            t(o.answered_at),
            t(o.updated_at),
        ])?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Free text a spreadsheet would run as a formula gets a leading apostrophe (OWASP's advice
/// against CSV injection).
fn defused(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text.to_owned() }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use chrono::TimeZone;

    use super::*;
    use crate::{Answers, OccasionKind};

    #[test]
    fn one_row_per_occasion_with_both_times_and_formulas_defused() {
        let at = chrono::Utc.with_ymd_and_hms(2027, 6, 1, 1, 0, 0).unwrap();
        let o = Occasion {
            itinerary_id: 1,
            reference: "IT-1".into(),
            set: 1,
            key: "followup_1m".into(),
            kind: OccasionKind::FollowUp,
            at,
            zone: chrono_tz::Asia::Tokyo,
            answers: Answers::from_fields([("itch", "4"), ("treatments", "other"), ("treatment_other", "=HYPERLINK(\"x\")")]).unwrap(),
            answered_at: Some(at - chrono::Duration::days(2)),
            updated_at: None,
        };
        let text = csv(&[o]).unwrap();
        let mut lines = text.lines();
        assert!(lines.next().unwrap().starts_with("reference,set,occasion,kind,occasion_at_utc"));
        assert_eq!(
            lines.next().unwrap(),
            "IT-1,1,followup_1m,follow_up,2027-06-01T01:00:00Z,2027-06-01 10:00,Asia/Tokyo,4,,,other,\"'=HYPERLINK(\"\"x\"\")\",,2027-05-30T01:00:00Z,"
        );
    }
}

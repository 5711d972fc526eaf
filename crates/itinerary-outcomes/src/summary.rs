//! The line a doctor reads before a follow-up call: each measure against the baseline.

use crate::questionnaire::{Answers, Measure, Treatment};

/// `itch 8 → 3 (−63%), sleep lost 6 → 1 (−83%), ointment days 7 → 2, severity 4 → 2, tablets or
/// injections: none` (or in Japanese). A measure missing on either side is left out; a
/// percentage only where the baseline is above zero. Empty when nothing can be compared.
pub fn summary(baseline: &Answers, now: &Answers, english: bool) -> String {
    let mut parts = Vec::new();
    for m in Measure::ALL {
        let (Some(b), Some(n)) = (m.of(baseline), m.of(now)) else { continue };
        let name = match (m, english) {
            (Measure::Itch, false) => "かゆみ",
            (Measure::Itch, true) => "itch",
            (Measure::Sleep, false) => "睡眠障害",
            (Measure::Sleep, true) => "sleep lost",
            (Measure::SteroidDays, false) => "外用薬の日数",
            (Measure::SteroidDays, true) => "ointment days",
            (Measure::Impression, false) => "重症度",
            (Measure::Impression, true) => "severity",
        };
        let percent = match m {
            Measure::Itch | Measure::Sleep if b > 0 => {
                let p = (f64::from(n) - f64::from(b)) * 100.0 / f64::from(b);
                // U+2212 MINUS SIGN, as a printed report writes it.
                let sign = if p < 0.0 { "−" } else { "+" };
                // Half away from zero, as a reader rounds (formatting rounds 62.5 to even).
                format!(" ({sign}{}%)", p.abs().round())
            }
            _ => String::new(),
        };
        parts.push(format!("{name} {b} → {n}{percent}"));
    }
    if let Some(list) = &now.treatments {
        let named: Vec<&str> = list.iter().map(|t| short(*t, english)).collect();
        let mut line = if english {
            format!("tablets or injections: {}", named.join(", "))
        } else {
            format!("内服・注射: {}", named.join("、"))
        };
        if let Some(other) = now.treatment_other.as_deref().filter(|_| list.contains(&Treatment::Other)) {
            line.push_str(&format!(" ({other})"));
        }
        parts.push(line);
    }
    parts.join(if english { ", " } else { "、" })
}

fn short(t: Treatment, english: bool) -> &'static str {
    match (t, english) {
        (Treatment::None, false) => "なし",
        (Treatment::None, true) => "none",
        (Treatment::Antihistamine, false) => "抗ヒスタミン薬",
        (Treatment::Antihistamine, true) => "antihistamine",
        (Treatment::OralSteroid, false) => "ステロイド内服",
        (Treatment::OralSteroid, true) => "oral steroid",
        (Treatment::Ciclosporin, false) => "シクロスポリン",
        (Treatment::Ciclosporin, true) => "ciclosporin",
        (Treatment::JakInhibitor, false) => "JAK阻害薬",
        (Treatment::JakInhibitor, true) => "JAK inhibitor",
        (Treatment::Biologic, false) => "注射薬",
        (Treatment::Biologic, true) => "injection",
        (Treatment::Other, false) => "その他",
        (Treatment::Other, true) => "other",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_follow_up_reads_against_its_baseline() {
        let base = Answers::from_fields([("itch", "8"), ("sleep", "0"), ("steroid_days", "7"), ("impression", "4")]).unwrap();
        let now = Answers::from_fields([("itch", "3"), ("sleep", "2"), ("steroid_days", "2"), ("treatments", "none")]).unwrap();
        assert_eq!(summary(&base, &now, true), "itch 8 → 3 (−63%), sleep lost 0 → 2, ointment days 7 → 2, tablets or injections: none");
        assert_eq!(summary(&base, &now, false), "かゆみ 8 → 3 (−63%)、睡眠障害 0 → 2、外用薬の日数 7 → 2、内服・注射: なし");
        assert_eq!(summary(&Answers::default(), &Answers::default(), true), "");
        let worse = Answers::from_fields([("itch", "10")]).unwrap();
        assert_eq!(summary(&base, &worse, true), "itch 8 → 10 (+25%)");
    }
}

//! The questions, their choices, and what a valid answer is.

use serde::{Deserialize, Serialize};

/// A measure charted over time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    Itch,
    Sleep,
    SteroidDays,
    Impression,
}

impl Measure {
    pub const ALL: [Measure; 4] = [Measure::Itch, Measure::Sleep, Measure::SteroidDays, Measure::Impression];

    /// The form's and the API's name of the field.
    pub fn field(self) -> &'static str {
        match self {
            Measure::Itch => "itch",
            Measure::Sleep => "sleep",
            Measure::SteroidDays => "steroid_days",
            Measure::Impression => "impression",
        }
    }

    /// The lowest and highest valid answer.
    pub fn range(self) -> (u8, u8) {
        match self {
            Measure::Itch | Measure::Sleep => (0, 10),
            Measure::SteroidDays => (0, 7),
            Measure::Impression => (1, 5),
        }
    }

    /// A short name for a chart's panel or a summary (`かゆみ(最大)` / `Worst itch`).
    pub fn label(self, english: bool) -> &'static str {
        match (self, english) {
            (Measure::Itch, false) => "かゆみ(最も強いとき 0–10)",
            (Measure::Itch, true) => "Worst itch (0–10)",
            (Measure::Sleep, false) => "かゆみによる睡眠障害(0–10)",
            (Measure::Sleep, true) => "Sleep lost to itch (0–10)",
            (Measure::SteroidDays, false) => "外用薬を使った日数(週 0–7)",
            (Measure::SteroidDays, true) => "Days with ointment (per week, 0–7)",
            (Measure::Impression, false) => "全体の重症度(1–5)",
            (Measure::Impression, true) => "Overall severity (1–5)",
        }
    }

    /// The answer in `a`.
    pub fn of(self, a: &Answers) -> Option<u8> {
        match self {
            Measure::Itch => a.itch,
            Measure::Sleep => a.sleep,
            Measure::SteroidDays => a.steroid_days,
            Measure::Impression => a.impression,
        }
    }
}

/// Oral or injected treatments in use (the choices; `other` has free text beside it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Treatment {
    None,
    Antihistamine,
    OralSteroid,
    Ciclosporin,
    JakInhibitor,
    Biologic,
    Other,
}

impl Treatment {
    pub const ALL: [Treatment; 7] = [
        Treatment::None,
        Treatment::Antihistamine,
        Treatment::OralSteroid,
        Treatment::Ciclosporin,
        Treatment::JakInhibitor,
        Treatment::Biologic,
        Treatment::Other,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Treatment::None => "none",
            Treatment::Antihistamine => "antihistamine",
            Treatment::OralSteroid => "oral_steroid",
            Treatment::Ciclosporin => "ciclosporin",
            Treatment::JakInhibitor => "jak_inhibitor",
            Treatment::Biologic => "biologic",
            Treatment::Other => "other",
        }
    }

    pub fn parse(code: &str) -> Option<Treatment> {
        Treatment::ALL.into_iter().find(|t| t.code() == code)
    }

    /// As the patient reads it, with the brand names they know in Japan and Malaysia.
    pub fn label(self, english: bool) -> &'static str {
        match (self, english) {
            (Treatment::None, false) => "使っていない",
            (Treatment::None, true) => "None",
            (Treatment::Antihistamine, false) => "かゆみ止めの飲み薬(抗ヒスタミン薬)",
            (Treatment::Antihistamine, true) => "Antihistamine tablets for itch",
            (Treatment::OralSteroid, false) => "ステロイドの飲み薬",
            (Treatment::OralSteroid, true) => "Steroid tablets",
            (Treatment::Ciclosporin, false) => "シクロスポリン(ネオーラルなど)",
            (Treatment::Ciclosporin, true) => "Ciclosporin (Neoral and others)",
            (Treatment::JakInhibitor, false) => "JAK阻害薬(オルミエント、リンヴォック、サイバインコなど)",
            (Treatment::JakInhibitor, true) => "JAK inhibitor tablets (Olumiant, Rinvoq, Cibinqo and others)",
            (Treatment::Biologic, false) => "注射薬(デュピクセント、ミチーガ、アドトラーザ、イブグリースなど)",
            (Treatment::Biologic, true) => "Injections (Dupixent, Mitchga, Adtralza, Ebglyss and others)",
            (Treatment::Other, false) => "その他",
            (Treatment::Other, true) => "Other",
        }
    }
}

/// What a patient answered for one occasion; `None` is not answered yet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answers {
    pub itch: Option<u8>,
    pub sleep: Option<u8>,
    pub steroid_days: Option<u8>,
    pub treatments: Option<Vec<Treatment>>,
    pub treatment_other: Option<String>,
    pub impression: Option<u8>,
}

/// A field refused, with the value as given and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field}: `{value}` {message}")]
pub struct FieldError {
    pub field: String,
    pub value: String,
    pub message: String,
}

/// The longest free text kept for "other" treatments, in characters.
pub const OTHER_MAX_CHARS: usize = 200;

impl Answers {
    pub fn is_empty(&self) -> bool {
        *self == Answers::default()
    }

    /// The answers in a form's (or a JSON body's) fields, as given: every named field is
    /// checked and a bad one refused with its name and value; nothing absent or empty is
    /// touched. `treatments` may repeat.
    pub fn from_fields<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Answers, Vec<FieldError>> {
        let mut a = Answers::default();
        let mut errors = Vec::new();
        let refuse = |errors: &mut Vec<FieldError>, field: &str, value: &str, message: String| {
            // A value is echoed for the reader, never whole if it is long.
            let shown: String = value.chars().take(40).collect();
            errors.push(FieldError { field: field.to_owned(), value: shown, message });
        };
        for (name, value) in fields {
            let v = value.trim();
            if let Some(m) = Measure::ALL.into_iter().find(|m| m.field() == name) {
                if v.is_empty() {
                    continue;
                }
                let (lo, hi) = m.range();
                match v.parse::<u8>() {
                    Ok(n) if (lo..=hi).contains(&n) => match m {
                        Measure::Itch => a.itch = Some(n),
                        Measure::Sleep => a.sleep = Some(n),
                        Measure::SteroidDays => a.steroid_days = Some(n),
                        Measure::Impression => a.impression = Some(n),
                    },
                    _ => refuse(&mut errors, name, value, format!("is not a whole number from {lo} to {hi}")),
                }
            } else if name == "treatments" {
                if v.is_empty() {
                    continue;
                }
                match Treatment::parse(v) {
                    Some(t) => {
                        let list = a.treatments.get_or_insert_with(Vec::new);
                        if !list.contains(&t) {
                            list.push(t);
                        }
                    }
                    None => {
                        let codes: Vec<&str> = Treatment::ALL.iter().map(|t| t.code()).collect();
                        refuse(&mut errors, name, value, format!("is not one of {}", codes.join(", ")));
                    }
                }
            } else if name == "treatment_other" {
                if v.chars().count() > OTHER_MAX_CHARS {
                    refuse(&mut errors, name, value, format!("is longer than {OTHER_MAX_CHARS} characters"));
                } else if v.chars().any(|c| c.is_control()) {
                    refuse(&mut errors, name, value, "holds a control character".to_owned());
                } else if !v.is_empty() {
                    a.treatment_other = Some(v.to_owned());
                }
            }
        }
        if let Some(list) = &mut a.treatments {
            list.sort();
            if list.contains(&Treatment::None) && list.len() > 1 {
                refuse(&mut errors, "treatments", "none", "cannot be chosen with a treatment".to_owned());
            }
        }
        if errors.is_empty() { Ok(a) } else { Err(errors) }
    }

    /// These answers with `newer`'s given ones over them: a page saves what it was given and
    /// keeps the rest.
    pub fn merged(&self, newer: &Answers) -> Answers {
        Answers {
            itch: newer.itch.or(self.itch),
            sleep: newer.sleep.or(self.sleep),
            steroid_days: newer.steroid_days.or(self.steroid_days),
            treatments: newer.treatments.clone().or_else(|| self.treatments.clone()),
            // The free text belongs to the choices it came with.
            treatment_other: if newer.treatments.is_some() { newer.treatment_other.clone() } else { self.treatment_other.clone() },
            impression: newer.impression.or(self.impression),
        }
    }

    /// The treatments as stored and exported: codes joined by `;`.
    pub fn treatment_codes(&self) -> Option<String> {
        self.treatments.as_ref().map(|l| l.iter().map(|t| t.code()).collect::<Vec<_>>().join(";"))
    }

    /// The same read back; unknown codes are dropped.
    pub fn parse_treatment_codes(codes: &str) -> Vec<Treatment> {
        codes.split(';').filter_map(Treatment::parse).collect()
    }
}

/// One question as the page shows it.
#[derive(Clone, Copy, Debug)]
pub struct Question {
    /// The form field.
    pub field: &'static str,
    pub ja: &'static str,
    pub en: &'static str,
    /// The words at the ends of a scale (low, high), or of each point for the impression.
    pub anchors_ja: &'static [&'static str],
    pub anchors_en: &'static [&'static str],
}

/// The questionnaire, in the order asked. Japanese in the polite form a clinic writes to its
/// patients; English as plainly.
pub const QUESTIONS: [Question; 5] = [
    Question {
        field: "itch",
        ja: "この24時間で、かゆみが最も強かったときはどの程度でしたか。",
        en: "In the last 24 hours, how bad was your itch at its worst?",
        anchors_ja: &["0 = かゆみはなかった", "10 = 考えられる最悪のかゆみ"],
        anchors_en: &["0 = no itch", "10 = worst itch imaginable"],
    },
    Question {
        field: "sleep",
        ja: "昨夜は、かゆみのためにどの程度睡眠が妨げられましたか。",
        en: "Last night, how much did itch keep you from sleeping?",
        anchors_ja: &["0 = まったく妨げられなかった", "10 = まったく眠れなかった"],
        anchors_en: &["0 = not at all", "10 = I could not sleep at all"],
    },
    Question {
        field: "steroid_days",
        ja: "この7日間で、ステロイド外用薬やその他の抗炎症外用薬(プロトピック、コレクチム、モイゼルトなど)を塗った日は何日ありましたか。",
        en: "In the last 7 days, on how many days did you apply a steroid or other anti-inflammatory ointment or cream (such as tacrolimus, delgocitinib or difamilast)?",
        anchors_ja: &["0日", "7日(毎日)"],
        anchors_en: &["0 days", "7 days (every day)"],
    },
    Question {
        field: "treatments",
        ja: "肌の治療のために現在お使いの飲み薬・注射薬はどれですか。当てはまるものをすべてお選びください。",
        en: "Which tablets or injections for your skin are you using now? Choose all that apply.",
        anchors_ja: &[],
        anchors_en: &[],
    },
    Question {
        field: "impression",
        ja: "現在の湿疹の状態は、全体としてどの程度だと感じますか。",
        en: "Overall, how would you describe your eczema now?",
        anchors_ja: &["1 = 症状はない", "2 = 軽い", "3 = 中くらい", "4 = 重い", "5 = とても重い"],
        anchors_en: &["1 = none", "2 = mild", "3 = moderate", "4 = severe", "5 = very severe"],
    },
];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn answers_in_range_are_kept_and_others_named() {
        let a =
            Answers::from_fields([("itch", "7"), ("sleep", ""), ("steroid_days", "0"), ("impression", "5"), ("treatments", "biologic")])
                .unwrap();
        assert_eq!((a.itch, a.sleep, a.steroid_days, a.impression), (Some(7), None, Some(0), Some(5)));
        assert_eq!(a.treatments, Some(vec![Treatment::Biologic]));
        let e = Answers::from_fields([("itch", "11"), ("steroid_days", "8"), ("impression", "0"), ("sleep", "-1"), ("treatments", "x")])
            .unwrap_err();
        let named: Vec<_> = e.iter().map(|e| (e.field.as_str(), e.value.as_str())).collect();
        assert_eq!(named, [("itch", "11"), ("steroid_days", "8"), ("impression", "0"), ("sleep", "-1"), ("treatments", "x")]);
        assert_eq!(e[0].to_string(), "itch: `11` is not a whole number from 0 to 10");
        assert!(Answers::from_fields([("treatments", "none"), ("treatments", "biologic")]).is_err());
        assert!(Answers::from_fields([("treatment_other", "a\u{0}b")]).is_err());
        assert!(Answers::from_fields([("treatment_other", "薬".repeat(201).as_str())]).is_err());
    }

    #[test]
    fn a_later_save_keeps_what_it_did_not_name() {
        let first = Answers::from_fields([("itch", "8"), ("treatments", "other"), ("treatment_other", "漢方")]).unwrap();
        let then = Answers::from_fields([("sleep", "3")]).unwrap();
        let both = first.merged(&then);
        assert_eq!((both.itch, both.sleep), (Some(8), Some(3)));
        assert_eq!(both.treatment_other.as_deref(), Some("漢方"));
        let changed = both.merged(&Answers::from_fields([("treatments", "none")]).unwrap());
        assert_eq!((changed.treatments, changed.treatment_other), (Some(vec![Treatment::None]), None));
    }

    #[test]
    fn every_question_has_both_languages_and_a_field() {
        for q in QUESTIONS {
            assert!(!q.ja.is_empty() && !q.en.is_empty());
            assert_eq!(q.anchors_ja.len(), q.anchors_en.len());
            assert!(Measure::ALL.iter().any(|m| m.field() == q.field) || q.field == "treatments");
        }
    }
}

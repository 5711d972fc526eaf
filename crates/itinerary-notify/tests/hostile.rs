//! Message rendering with hostile names, as a property (issue 12, item 16): whatever a patient's
//! or escort's name holds (line breaks, quotes, angle brackets, encoded-word markers, header
//! look-alikes, any script), every kind of message composes, and the email around it keeps its
//! shape: CRLF line ends only, no line over 998 octets, one To, and no header the name smuggled
//! in.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::LazyLock;

use itinerary_core::request::Language;
use itinerary_notify::letter::{Line, TaskLine};
use itinerary_notify::mime::{self, CalendarPart, Envelope};
use itinerary_notify::{Letter, Templates};
use proptest::prelude::*;

static TEMPLATES: LazyLock<Templates> =
    LazyLock::new(|| Templates::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/messages")).unwrap());

const KINDS: [&str; 10] = [
    "itinerary_cancelled",
    "outcome_invite",
    "booking_confirmation",
    "calendar_invite",
    "calendar_cancel",
    "departure_day",
    "evening_before",
    "follow_up_reminder",
    "itinerary_changed",
    "escort_day_plan",
];

/// The headers a message may carry; anything else came from a name.
const HEADERS: [&str; 9] =
    ["from", "reply-to", "to", "subject", "message-id", "mime-version", "date", "content-type", "content-transfer-encoding"];

fn hostile() -> impl Strategy<Value = String> {
    "(\\PC|[\r\n\t\"<>;:,=?@\\\\]|=\\?utf-8\\?B\\?|\r\nBcc: x@example\\.com|山田|😀){0,40}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn any_name_composes_and_the_mail_keeps_its_shape(name in hostile(), title in hostile(), kind in prop::sample::select(KINDS.to_vec()), ja in any::<bool>()) {
        let line = Line { title: title.clone(), when: "Tue 20 Apr 09:00 MYT".into(), location: Some(title.clone()), ..Line::default() };
        let letter = Letter {
            kind: kind.into(),
            language: if ja { Language::Ja } else { Language::En },
            name: name.clone(),
            clinic: "KL Regenerative Clinic".into(),
            reference: "it-1".into(),
            event: Some(line.clone()),
            task: Some(TaskLine { title: title.clone(), opens: "a".into(), closes: "b".into() }),
            timeline: vec![line.clone()],
            meet: Some("Tue 20 Apr 08:30 MYT".into()),
            escort: Some(title.clone()),
            flights: vec![line.clone(), line.clone()],
            stay: Some(line),
            feed_url: Some("https://x.example/feed/itf_1".into()),
            follow_up_url: None,
            questionnaire_url: Some("https://x.example/questionnaire/itq_1".into()),
        };
        let words = TEMPLATES.compose(&letter).unwrap();
        prop_assert!(!words.subject.contains(['\r', '\n']), "{:?}", words.subject);
        let env = Envelope {
            from: mime::mailbox("from", "KL Regenerative Clinic", "coordinators@klregen.example.my").unwrap(),
            to: mime::mailbox("to", &name, "taro.yamada@example.jp").unwrap(),
            message_id: "<it-1.m1@klregen.example.my>".into(),
        };
        let cal = CalendarPart { method: "REQUEST", ics: "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n".into(), file_name: "invite.ics".into() };
        let bytes = mime::email(&env, &words, Some(&cal)).unwrap().formatted();
        let text = String::from_utf8(bytes).unwrap();
        let body_at = text.find("\r\n\r\n").expect("a header section");
        prop_assert!(!text.replace("\r\n", "").contains(['\r', '\n']), "a bare CR or LF");
        prop_assert!(text.split("\r\n").all(|l| l.len() <= 998), "a line over 998 octets");
        let mut names = Vec::new();
        for l in text[..body_at].split("\r\n") {
            if l.starts_with([' ', '\t']) {
                continue;
            }
            let (h, _) = l.split_once(':').unwrap_or((l, ""));
            names.push(h.to_ascii_lowercase());
        }
        prop_assert!(names.iter().all(|h| HEADERS.contains(&h.as_str())), "headers {names:?}");
        prop_assert_eq!(names.iter().filter(|h| *h == "to").count(), 1);
    }
}

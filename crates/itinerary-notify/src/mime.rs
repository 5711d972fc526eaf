//! Email as calendar clients expect it (iMIP, RFC 6047): a multipart/alternative of text/plain,
//! text/html and `text/calendar; method=…` (the parameter equal to the METHOD inside, base64);
//! with a calendar, that part sits in a multipart/mixed beside the same calendar attached as a
//! file, for clients that only show attachments. A `PUBLISH` overview (the booking
//! confirmation's whole itinerary) goes as the attachment only: inline, clients treat it as an
//! iTIP message and meet each UID first published there, then invited at the same SEQUENCE in
//! the invite beside it (RFC 5546 2.1.4 wants SEQUENCE to rise when METHOD changes). As a file
//! it is something the patient may import, with the invites' UIDs, so an import updates the
//! invited events instead of doubling them.

use lettre::Message;
use lettre::message::header::{ContentDisposition, ContentTransferEncoding, ContentType};
use lettre::message::{Mailbox, MultiPart, SinglePart};

use crate::NotifyError;
use crate::letter::Composed;
use crate::transport::without_addresses;

/// A calendar object to carry: its METHOD (`REQUEST`, `CANCEL`, `PUBLISH`) and text.
#[derive(Clone, Debug)]
pub struct CalendarPart {
    pub method: &'static str,
    pub ics: String,
    /// The attachment's file name (`invite.ics`, `itinerary.ics`).
    pub file_name: String,
}

/// Who sends, to whom, and the Message-ID that names this message (the same on every attempt,
/// so a receiving system can tell a resend from a new message).
#[derive(Clone, Debug)]
pub struct Envelope {
    pub from: Mailbox,
    pub to: Mailbox,
    pub message_id: String,
}

/// Parses `Name <addr>` pieces into a mailbox, naming the field that is wrong. Control
/// characters in the name become spaces: lettre panics on a line break in a display name
/// (found by tests/hostile.rs), and names come from people and from config files.
pub fn mailbox(field: &str, name: &str, email: &str) -> Result<Mailbox, NotifyError> {
    let address = email
        .parse::<lettre::Address>()
        .map_err(|e| NotifyError::Address { field: field.to_owned(), problem: without_addresses(&e.to_string()) })?;
    let name: String = name.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
    Ok(Mailbox::new(Some(name).filter(|n| !n.is_empty()), address))
}

/// The whole email.
pub fn email(env: &Envelope, words: &Composed, calendar: Option<&CalendarPart>) -> Result<Message, NotifyError> {
    let builder = Message::builder()
        .from(env.from.clone())
        .reply_to(env.from.clone())
        .to(env.to.clone())
        .subject(words.subject.clone())
        .message_id(Some(env.message_id.clone()));
    let alternative =
        MultiPart::alternative().singlepart(SinglePart::plain(words.text.clone())).singlepart(SinglePart::html(words.html.clone()));
    let message = match calendar {
        None => builder.multipart(alternative),
        Some(cal) => {
            let kind = ContentType::parse(&format!("text/calendar; method={}; charset=UTF-8", cal.method))
                .map_err(|e| NotifyError::Template(format!("calendar content type: {e}")))?;
            let inline = SinglePart::builder().header(kind).header(ContentTransferEncoding::Base64).body(cal.ics.clone());
            let file_type = ContentType::parse(&format!("application/ics; name=\"{}\"", cal.file_name))
                .map_err(|e| NotifyError::Template(format!("attachment content type: {e}")))?;
            let attachment = SinglePart::builder()
                .header(file_type)
                .header(ContentDisposition::attachment(&cal.file_name))
                .header(ContentTransferEncoding::Base64)
                .body(cal.ics.clone());
            let body = if cal.method == "PUBLISH" { alternative } else { alternative.singlepart(inline) };
            builder.multipart(MultiPart::mixed().multipart(body).singlepart(attachment))
        }
    };
    message.map_err(|e| NotifyError::Template(format!("email: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_calendar_part_names_its_method_and_travels_in_base64_twice() {
        let env = Envelope {
            from: mailbox("from", "Clinic", "clinic@example.my").unwrap(),
            to: mailbox("to", "山田 太郎", "taro@example.jp").unwrap(),
            message_id: "<it-1.m1@example.my>".into(),
        };
        let words = Composed { subject: "件名".into(), text: "本文\n".into(), html: "<p>本文</p>".into() };
        let ics = "BEGIN:VCALENDAR\r\nMETHOD:CANCEL\r\nEND:VCALENDAR\r\n".to_owned();
        let cal = CalendarPart { method: "CANCEL", ics, file_name: "invite.ics".into() };
        let raw = String::from_utf8(email(&env, &words, Some(&cal)).unwrap().formatted()).unwrap();
        assert!(raw.to_lowercase().contains("content-type: text/calendar; method=cancel; charset=utf-8"), "{raw}");
        assert!(raw.contains("method=CANCEL"), "the method keeps its case: {raw}");
        assert!(raw.contains("Content-Type: multipart/alternative"), "{raw}");
        assert!(raw.contains("Content-Disposition: attachment; filename=\"invite.ics\""), "{raw}");
        assert!(raw.matches("Content-Transfer-Encoding: base64").count() >= 2, "{raw}");
        assert!(raw.contains("Message-ID: <it-1.m1@example.my>"), "{raw}");
        assert!(mailbox("to", "x", "not an address").is_err());
    }

    #[test]
    fn an_overview_goes_as_a_file_only() {
        let env = Envelope {
            from: mailbox("from", "Clinic", "clinic@example.my").unwrap(),
            to: mailbox("to", "山田 太郎", "taro@example.jp").unwrap(),
            message_id: "<it-1.m1@example.my>".into(),
        };
        let words = Composed { subject: "件名".into(), text: "本文\n".into(), html: "<p>本文</p>".into() };
        let ics = "BEGIN:VCALENDAR\r\nMETHOD:PUBLISH\r\nEND:VCALENDAR\r\n".to_owned();
        let cal = CalendarPart { method: "PUBLISH", ics, file_name: "itinerary.ics".into() };
        let raw = String::from_utf8(email(&env, &words, Some(&cal)).unwrap().formatted()).unwrap();
        assert!(!raw.to_lowercase().contains("text/calendar"), "no inline calendar: {raw}");
        assert!(raw.contains("Content-Disposition: attachment; filename=\"itinerary.ics\""), "{raw}");
    }
}

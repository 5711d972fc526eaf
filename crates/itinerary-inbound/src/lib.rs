//! What arrives by mail (issue 16, item 4): one RFC 5322 message, as a mail server's pipe or a
//! hosted mail service hands it over, read into what the service can act on. A calendar part
//! (`text/calendar`, inline or attached) is read with the `icalendar` crate's parser into a
//! [`CalendarReply`] (iMIP, RFC 6047: METHOD:REPLY to accept, decline or say tentative, or
//! METHOD:COUNTER to propose another time, RFC 5546 3.2.3 and 3.2.7); a message without one is a
//! text reply, kept without what it quotes. Deciding whether a reply is believed (its UID,
//! attendee, sender, organizer and SEQUENCE against what was sent) is the store's job, not this
//! crate's: this one only reads, and refuses what cannot be read, naming why without quoting
//! anything personal.

use icalendar::parser::{Component, Property, read_calendar, unfold};
use mail_parser::{MessageParser, MimeHeaders, PartType};
use serde::Serialize;

/// The largest message read (a reply is a few KiB; Outlook quoting a long invite is tens).
pub const MAX_BYTES: usize = 2 * 1024 * 1024;

/// The longest text reply kept, in characters (as a LINE text).
pub const MAX_TEXT: usize = 5000;

/// Why a message cannot be read. Never quotes the message: it may carry health details.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    #[error("the message is {bytes} bytes; at most {limit} are read")]
    TooLarge { bytes: usize, limit: usize },
    #[error("not an RFC 5322 message (no header block)")]
    NotMail,
    #[error("the calendar part cannot be read: {0}")]
    Calendar(String),
}

/// One message, read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Inbound {
    /// The sender's address (From), lower-cased.
    pub from: Option<String>,
    pub message_id: Option<String>,
    /// The message ids it answers (In-Reply-To, then References), without angle brackets.
    pub replies_to: Vec<String>,
    /// The receiving mail server says the sender's domain failed DMARC
    /// (`Authentication-Results: …; dmarc=fail`): the From address is not to be believed.
    pub dmarc_failed: bool,
    pub calendar: Option<CalendarReply>,
    /// Without a calendar part: what the sender wrote, without the message they quote.
    pub text: Option<String>,
}

/// The VEVENT of an iMIP message, as far as a reply needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CalendarReply {
    /// `REPLY`, `COUNTER`, or whatever else the VCALENDAR says (refused later).
    pub method: String,
    pub uid: Option<String>,
    /// 0 when absent (RFC 5545 3.8.7.4).
    pub sequence: i64,
    /// ORGANIZER's address, lower-cased, without `mailto:`.
    pub organizer: Option<String>,
    pub attendees: Vec<AttendeeAnswer>,
    /// COUNTER: the time proposed, as written (`20270518T100000Z`, or with its TZID).
    pub proposed_start: Option<String>,
    pub proposed_end: Option<String>,
    /// The attendee's note (COMMENT), if any.
    pub comment: Option<String>,
    /// When the attendee's client made the reply (DTSTAMP, UTC `YYYYMMDDTHHMMSSZ`): of two
    /// replies with one SEQUENCE the later counts (RFC 5546 2.1.5).
    pub dtstamp: Option<String>,
}

/// One ATTENDEE line of a reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AttendeeAnswer {
    /// Lower-cased, without `mailto:`.
    pub email: String,
    /// `ACCEPTED`, `DECLINED`, `TENTATIVE`, … upper-cased; `NEEDS-ACTION` when absent.
    pub partstat: String,
}

/// Reads one message.
pub fn read(raw: &[u8]) -> Result<Inbound, InboundError> {
    if raw.len() > MAX_BYTES {
        return Err(InboundError::TooLarge { bytes: raw.len(), limit: MAX_BYTES });
    }
    // mail-parser reads anything into a message; a message has a header block with a colon
    // before its first blank line.
    let head_end = find(raw, b"\r\n\r\n").or_else(|| find(raw, b"\n\n")).unwrap_or(raw.len());
    if head_end == 0 || !raw[..head_end].contains(&b':') {
        return Err(InboundError::NotMail);
    }
    let message = MessageParser::default().parse(raw).ok_or(InboundError::NotMail)?;
    if message.headers().is_empty() {
        return Err(InboundError::NotMail);
    }
    let from = message.from().and_then(|a| a.first()).and_then(|a| a.address()).map(|a| a.trim().to_ascii_lowercase());
    let message_id = message.message_id().map(str::to_owned);
    let replies_to = [message.in_reply_to(), message.references()]
        .into_iter()
        .filter_map(|h| h.as_text_list())
        .flatten()
        .map(|id| id.trim().trim_matches(['<', '>']).to_owned())
        .filter(|id| !id.is_empty())
        .collect();
    let calendar_text = message.parts.iter().find_map(|p| {
        let ct = p.content_type()?;
        let calendar = (ct.ctype().eq_ignore_ascii_case("text") && ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case("calendar")))
            || (ct.ctype().eq_ignore_ascii_case("application") && ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case("ics")));
        if !calendar {
            return None;
        }
        match &p.body {
            PartType::Text(t) => Some(t.to_string()),
            PartType::Binary(b) | PartType::InlineBinary(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    });
    let calendar = calendar_text.as_deref().map(calendar_reply).transpose()?;
    let text = match calendar {
        Some(_) => None,
        None => message.body_text(0).map(|t| fresh_text(&t)).filter(|t| !t.is_empty()),
    };
    let dmarc_failed = message
        .header_values("Authentication-Results")
        .filter_map(|h| h.as_text())
        .any(|t| t.to_ascii_lowercase().split([';', ' ', '\t', '\r', '\n']).any(|w| w == "dmarc=fail"));
    Ok(Inbound { from, message_id, replies_to, dmarc_failed, calendar, text })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn prop<'a>(c: &'a Component<'a>, name: &str) -> Option<&'a Property<'a>> {
    c.properties.iter().find(|p| p.name.as_str().eq_ignore_ascii_case(name))
}

fn param<'a>(p: &'a Property<'a>, name: &str) -> Option<&'a str> {
    p.params.iter().find(|x| x.key.as_str().eq_ignore_ascii_case(name)).and_then(|x| x.val.as_ref()).map(|v| v.as_str().trim_matches('"'))
}

/// `mailto:Taro@Example.jp` → `taro@example.jp`.
fn address(value: &str) -> String {
    let v = value.trim();
    let v = match v.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("mailto:") => &v[7..],
        _ => v,
    };
    v.trim().to_ascii_lowercase()
}

fn calendar_reply(text: &str) -> Result<CalendarReply, InboundError> {
    let unfolded = unfold(text);
    let cal = read_calendar(&unfolded).map_err(|_| InboundError::Calendar("not an iCalendar object (RFC 5545)".into()))?;
    let method = cal
        .properties
        .iter()
        .find(|p| p.name.as_str().eq_ignore_ascii_case("METHOD"))
        .map(|p| p.val.as_str().trim().to_ascii_uppercase())
        .unwrap_or_default();
    let event = cal
        .components
        .iter()
        .find(|c| c.name.as_str().eq_ignore_ascii_case("VEVENT"))
        .ok_or_else(|| InboundError::Calendar("no VEVENT".into()))?;
    let value = |name: &str| prop(event, name).map(|p| p.val.as_str().trim().to_owned()).filter(|v| !v.is_empty());
    let sequence = match value("SEQUENCE") {
        None => 0,
        Some(s) => s.parse::<i64>().map_err(|_| InboundError::Calendar("SEQUENCE is not a number".into()))?,
    };
    let attendees = event
        .properties
        .iter()
        .filter(|p| p.name.as_str().eq_ignore_ascii_case("ATTENDEE"))
        .map(|p| AttendeeAnswer {
            email: address(p.val.as_str()),
            partstat: param(p, "PARTSTAT").map_or_else(|| "NEEDS-ACTION".to_owned(), |s| s.trim().to_ascii_uppercase()),
        })
        .collect();
    let counter = method == "COUNTER";
    Ok(CalendarReply {
        uid: value("UID"),
        sequence,
        organizer: prop(event, "ORGANIZER").map(|p| address(p.val.as_str())),
        attendees,
        proposed_start: if counter { value("DTSTART") } else { None },
        proposed_end: if counter { value("DTEND") } else { None },
        comment: prop(event, "COMMENT").map(|p| p.val.clone().unescape_text().as_str().chars().take(MAX_TEXT).collect()),
        dtstamp: value("DTSTAMP").filter(|d| is_utc_stamp(d)),
        method,
    })
}

/// `20270518T001244Z`: the only form DTSTAMP may take (RFC 5545 3.8.7.2), which sorts as text.
fn is_utc_stamp(d: &str) -> bool {
    let b = d.as_bytes();
    b.len() == 16 && b[8] == b'T' && b[15] == b'Z' && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit)
}

/// What the sender wrote above what they quote: up to the first quoted line (`>`), an
/// attribution line (`On … wrote:`, `2027年5月18日(火) … <a@b>:`), or an Outlook header block
/// (`-----Original Message-----`, `From:`/`差出人:` at a line's start), trimmed, at most
/// [`MAX_TEXT`] characters.
pub fn fresh_text(text: &str) -> String {
    let mut kept = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        let attribution = (l.ends_with("wrote:") || l.ends_with(':') || l.ends_with('：')) && l.contains('@');
        let outlook =
            l.starts_with("-----Original Message") || l.starts_with("From:") || l.starts_with("差出人:") || l.starts_with("差出人：");
        if l.starts_with('>') || attribution || outlook || l.ends_with("のメッセージ:") {
            break;
        }
        kept.push(line.trim_end());
    }
    let text = kept.join("\n");
    text.trim().chars().take(MAX_TEXT).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_quoted_reply_keeps_what_was_written() {
        let t = "承知しました。\n当日よろしくお願いします。\n\n2027年5月18日(火) 10:00 KL Clinic <clinic@example.my>:\n> 山田 太郎 様\n> 明日は…";
        assert_eq!(fresh_text(t), "承知しました。\n当日よろしくお願いします。");
        assert_eq!(fresh_text("Thanks!\n\nOn Tue, May 18, 2027 at 10:00 AM Clinic <c@x.my> wrote:\n> hi"), "Thanks!");
        assert_eq!(fresh_text("OK\r\n-----Original Message-----\r\nFrom: x"), "OK");
        assert_eq!(fresh_text(&"痒".repeat(6000)).chars().count(), MAX_TEXT);
    }

    #[test]
    fn an_address_is_read_whatever_its_bytes() {
        assert_eq!(address("MAILTO:Taro@Example.jp"), "taro@example.jp");
        // A multibyte character across the seventh byte: no panic.
        assert_eq!(address("abcdeé@x"), "abcdeé@x");
        assert_eq!(address("é"), "é");
    }

    #[test]
    fn what_is_not_mail_is_refused() {
        assert_eq!(read(b""), Err(InboundError::NotMail));
        assert_eq!(read(b"just some words\nwithout headers"), Err(InboundError::NotMail));
        assert!(matches!(read(&vec![b'a'; MAX_BYTES + 1]), Err(InboundError::TooLarge { .. })));
    }
}

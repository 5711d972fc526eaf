//! Values made safe for a content line: no value can end its line, or its parameter, and start
//! one of its own, whatever a patient's name holds (CRLF, quotes, separators, emoji).

/// TEXT without controls: CRLF and CR become LF (which the writer escapes as `\n`), tabs become
/// spaces, every other control character (forbidden in TEXT by RFC 5545 3.3.11) is dropped.
pub fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() != Some(&'\n') {
                    out.push('\n');
                }
            }
            '\n' => out.push('\n'),
            '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// RFC 5545 TEXT escaping of a cleaned value.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    escape_into(s, &mut out);
    out
}

/// `escape`, appending to `out`. Everything that needs work is ASCII, so the runs between such
/// bytes are copied whole.
pub fn escape_into(s: &str, out: &mut String) {
    let b = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let special = matches!(c, b'\\' | b';' | b',' | b'\n' | b'\r' | b'\t') || c < 0x20 || c == 0x7f;
        if !special {
            i += 1;
            continue;
        }
        out.push_str(&s[start..i]);
        match c {
            b'\\' => out.push_str("\\\\"),
            b';' => out.push_str("\\;"),
            b',' => out.push_str("\\,"),
            b'\n' => out.push_str("\\n"),
            // CRLF is one line break; a lone CR is one too.
            b'\r' if b.get(i + 1) != Some(&b'\n') => out.push_str("\\n"),
            b'\t' => out.push(' '),
            // Other controls (RFC 5545 3.3.11 forbids them) are dropped.
            _ => {}
        }
        i += 1;
        start = i;
    }
    out.push_str(&s[start..]);
}

/// A parameter value (a CN): one line, no controls, and RFC 6868's escapes: DQUOTE (which RFC
/// 5545 forbids in a parameter value) as `^'`, so `Eve "the" O'Neil` survives in ical.js and
/// Python icalendar (vobject shows `^'` as written), and `^` as `^^` (a parser that decodes would
/// otherwise turn `Ann^nBob` into two lines). The writer quotes the value when it holds `:`, `;`
/// or `,`.
pub fn param(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in clean(s).trim().chars() {
        match c {
            '\n' => out.push(' '),
            '"' => out.push_str("^'"),
            '^' => out.push_str("^^"),
            c => out.push(c),
        }
    }
    out
}

/// A `mailto:` URI, with the characters RFC 6068 reserves percent-encoded.
pub fn mailto(email: &str) -> String {
    let mut out = String::with_capacity(email.len() + 7);
    out.push_str("mailto:");
    for b in email.bytes() {
        if b.is_ascii_alphanumeric() || b".-_~!$'*+=^`{|}@/&".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_and_controls_cannot_end_a_value() {
        assert_eq!(clean("Eve\r\nATTENDEE:mailto:x@y\rZ\u{0}\u{7}"), "Eve\nATTENDEE:mailto:x@y\nZ");
        assert_eq!(escape("a,b;c\\d\r\ne"), "a\\,b\\;c\\\\d\\ne");
        assert_eq!(param("Eve \"the\"\r\nATTENDEE:x"), "Eve ^'the^' ATTENDEE:x", "RFC 6868: a double quote is ^'");
        assert_eq!(param("Ann^nBob"), "Ann^^nBob", "RFC 6868: a caret is written twice");
        assert_eq!(mailto("o'neil+jp@example.jp"), "mailto:o'neil+jp@example.jp");
        assert_eq!(mailto("a,b;c@x.jp"), "mailto:a%2Cb%3Bc@x.jp");
    }
}

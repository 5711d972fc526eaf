//! Content lines (RFC 5545 3.1): `NAME;PARAM=value:value`, folded at 75 octets without splitting
//! a UTF-8 character, CRLF-terminated.
//!
//! Written here rather than with the `icalendar` crate (0.17), whose folder lets the last
//! continuation of a long line reach 76 octets (a leading space plus 75), which
//! tests/interop.rs caught on a Japanese description; it also passes CR and controls through in
//! TEXT and stamps a random UID and the clock's DTSTAMP on every component lacking them,
//! VTIMEZONE included.

use crate::text;

/// The longest physical line, CRLF excluded.
const LIMIT: usize = 75;

/// A value as it goes on the line.
#[derive(Clone, Copy, Debug)]
pub enum Value<'a> {
    /// TEXT: cleaned of controls and escaped.
    Text(&'a str),
    /// Already in its RFC 5545 form (a date, a number, a URI checked when configured).
    Raw(&'a str),
}

/// One calendar object being written.
#[derive(Debug, Default)]
pub struct Lines {
    out: String,
    line: String,
}

impl Lines {
    pub fn with_capacity(n: usize) -> Self {
        Lines { out: String::with_capacity(n), line: String::with_capacity(256) }
    }

    /// `NAME;K=V…:value`. Parameter values are cleaned (no controls, no DQUOTE) and quoted when
    /// they hold `:`, `;` or `,`.
    pub fn prop(&mut self, name: &str, params: &[(&str, &str)], value: Value) {
        self.line.clear();
        self.line.push_str(name);
        for (k, v) in params {
            self.line.push(';');
            self.line.push_str(k);
            self.line.push('=');
            // Most values (TZID, LANGUAGE, VALUE) need no cleaning: no copy for them.
            let cleaned;
            let v = if v.bytes().any(|b| b < 0x20 || b == 0x7f || b == b'"' || b == b'^') || v.trim() != *v {
                cleaned = text::param(v);
                cleaned.as_str()
            } else {
                v
            };
            if v.contains([':', ';', ',']) {
                self.line.push('"');
                self.line.push_str(v);
                self.line.push('"');
            } else {
                self.line.push_str(v);
            }
        }
        self.line.push(':');
        match value {
            Value::Text(t) => text::escape_into(t, &mut self.line),
            Value::Raw(r) if !r.bytes().any(|b| b < 0x20 || b == 0x7f) => self.line.push_str(r),
            Value::Raw(r) => self.line.extend(r.chars().filter(|c| !c.is_control())),
        }
        fold_into(&self.line, &mut self.out);
    }

    /// A property with no parameters.
    pub fn simple(&mut self, name: &str, value: Value) {
        self.prop(name, &[], value);
    }

    /// Lines already folded and terminated (a VTIMEZONE).
    pub fn push_raw(&mut self, s: &str) {
        self.out.push_str(s);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// Folds `l` at 75 octets on character boundaries: the first line holds up to 75 octets, each
/// continuation a space and up to 74.
pub fn fold_into(l: &str, out: &mut String) {
    if l.len() <= LIMIT {
        out.push_str(l);
        out.push_str("\r\n");
        return;
    }
    let mut rest = l;
    let mut room = LIMIT;
    while rest.len() > room {
        let mut cut = room;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push_str(&rest[..cut]);
        out.push_str("\r\n ");
        rest = &rest[cut..];
        room = LIMIT - 1;
    }
    out.push_str(rest);
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_physical_line_fits_and_unfolds_to_the_original() {
        for s in ["a".repeat(75), "a".repeat(76), "a".repeat(149), "a".repeat(150), "あ".repeat(60), format!("x{}", "😀".repeat(40))] {
            let mut out = String::new();
            fold_into(&s, &mut out);
            for l in out.strip_suffix("\r\n").unwrap().split("\r\n") {
                assert!(l.len() <= 75, "{} octets: {l:?}", l.len());
            }
            assert_eq!(out.strip_suffix("\r\n").unwrap().replace("\r\n ", ""), s);
        }
    }

    #[test]
    fn nothing_in_a_value_starts_a_property() {
        let mut w = Lines::default();
        w.prop("ATTENDEE", &[("CN", "Eve\"\r\nATTENDEE:mailto:x@y")], Value::Raw("mailto:a@b.jp\r\nX:1"));
        w.simple("SUMMARY", Value::Text("Eve\r\nATTENDEE:mailto:x@y; a, b\\"));
        let out = w.finish();
        let lines: Vec<&str> = out.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(
            lines,
            ["ATTENDEE;CN=\"Eve^' ATTENDEE:mailto:x@y\":mailto:a@b.jpX:1", "SUMMARY:Eve\\nATTENDEE:mailto:x@y\\; a\\, b\\\\"]
        );
    }

    /// RFC 5545 unescaping, as a parser does it.
    fn unescape(s: &str) -> String {
        let mut out = String::new();
        let mut it = s.chars();
        while let Some(c) = it.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match it.next() {
                Some('n' | 'N') => out.push('\n'),
                Some(c) => out.push(c),
                None => {}
            }
        }
        out
    }

    proptest::proptest! {
        /// Any text, folded and unfolded, comes back as itself minus what TEXT cannot hold, on
        /// one logical line, with every physical line within 75 octets.
        #[test]
        fn any_text_stays_in_its_value(v in "(\\PC|[\r\n\t\\;,:\"\u{0}-\u{1f}あ😀]){0,300}") {
            let mut w = Lines::default();
            w.simple("SUMMARY", Value::Text(&v));
            let out = w.finish();
            let physical: Vec<&str> = out.strip_suffix("\r\n").unwrap().split("\r\n").collect();
            for (i, l) in physical.iter().enumerate() {
                proptest::prop_assert!(l.len() <= 75);
                proptest::prop_assert!(!l.contains(['\r', '\n']));
                proptest::prop_assert_eq!(i == 0, !l.starts_with(' '));
            }
            let logical = out.strip_suffix("\r\n").unwrap().replace("\r\n ", "");
            let value = logical.strip_prefix("SUMMARY:").unwrap();
            proptest::prop_assert_eq!(unescape(value), text::clean(&v));
        }
    }
}

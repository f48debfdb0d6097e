//! JSON for terminals and line-oriented logs.
//!
//! serde_json escapes the C0 controls (U+0000 to U+001F), quotes and backslashes, so a newline
//! or ESC in a path cannot break a line or reach a terminal raw. It leaves the rest of Unicode
//! as it is, including DEL, the C1 controls (U+0080 to U+009F: U+009B is CSI, which terminals
//! that honour 8-bit controls act on just as on `ESC [`), the line and paragraph separators and
//! the bidirectional overrides that make text display in another order than it reads
//! ("Trojan Source"). [`TerminalSafe`] escapes those too, as `\uXXXX`: the value decodes to the
//! same string, and what prints is inert.

use std::io;

use serde::Serialize;
use serde_json::ser::{Formatter, Serializer};

/// A compact [`Formatter`] that also escapes DEL, the C1 controls, U+2028/U+2029 and the
/// bidirectional formatting characters.
#[derive(Clone, Copy, Debug, Default)]
pub struct TerminalSafe;

fn needs_escape(c: char) -> bool {
    matches!(
        c,
        '\u{7f}'..='\u{9f}' | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    )
}

impl Formatter for TerminalSafe {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // Every character escaped here is DEL or starts with byte 0xC2 or 0xE2 in UTF-8.
        if !fragment.bytes().any(|b| matches!(b, 0x7f | 0xc2 | 0xe2)) {
            return w.write_all(fragment.as_bytes());
        }
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if needs_escape(c) {
                w.write_all(&fragment.as_bytes()[start..i])?;
                write!(w, "\\u{:04x}", u32::from(c))?;
                start = i + c.len_utf8();
            }
        }
        w.write_all(&fragment.as_bytes()[start..])
    }
}

/// Writes `value` as compact JSON with [`TerminalSafe`] escaping.
pub fn to_writer<W: io::Write, T: ?Sized + Serialize>(w: W, value: &T) -> serde_json::Result<()> {
    value.serialize(&mut Serializer::with_formatter(w, TerminalSafe))
}

/// `value` as compact JSON with [`TerminalSafe`] escaping.
pub fn to_string<T: ?Sized + Serialize>(value: &T) -> serde_json::Result<String> {
    let mut out = Vec::with_capacity(128);
    to_writer(&mut out, value)?;
    // The serializer writes only valid UTF-8.
    String::from_utf8(out).map_err(|e| serde::ser::Error::custom(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_serde_json_leaves_and_round_trips() {
        let s = "a\u{1b}[2J\u{7f}\u{85}\u{9b}31m\u{2028}\u{202e}txt.exe\u{2066}é✓\n";
        let json = to_string(&s).unwrap();
        assert_eq!(
            json,
            r#""a\u001b[2J\u007f\u0085\u009b31m\u2028\u202etxt.exe\u2066é✓\n""#
        );
        assert!(!json.chars().any(char::is_control), "{json}");
        let back: String = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn plain_text_is_written_as_serde_json_writes_it() {
        let v = serde_json::json!({"path": "/usr/bin/café", "n": 1, "list": ["x", null]});
        assert_eq!(to_string(&v).unwrap(), serde_json::to_string(&v).unwrap());
    }
}

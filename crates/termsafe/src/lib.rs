//! Attacker-controlled strings (paths, argv, comm, pod and namespace names, labels) made safe
//! for a terminal.
//!
//! A terminal acts on what it is sent: ESC and the 8-bit CSI (U+009B) start sequences that move
//! the cursor, rewrite the window title or clear the screen; CR and newline forge lines; bidi
//! overrides and isolates (U+202A–U+202E, U+2066–U+2069) reorder what is shown, so
//! `/tmp/\u{202e}hs.exe` reads as `/tmp/exe.sh`; zero-width and filler characters hide text.
//! Each such character is written as a visible escape instead (`\x1b`, `\u{202e}`), a backslash
//! as `\\` so that an escape cannot be forged, and every field is bounded, so one finding stays
//! one line. No crate does exactly this: `str::escape_debug` also escapes quotes and every
//! combining mark (unreadable in Indic scripts), and strip-style crates drop characters, which
//! hides that they were there.

use std::fmt::Write as _;

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Writes `s` to `out` escaped ([`needs_escape`]), in at most `max` characters counted after
/// escaping. A longer value keeps its head and its tail with `…` between (a path's file name
/// and a command line's last words matter as much as their start); an escape is never cut.
pub fn push_field(out: &mut String, s: &str, max: usize) {
    if escaped_len_within(s, max) {
        for (i, c) in s.chars().enumerate() {
            push_char(out, c, i == 0);
        }
        return;
    }
    let room = max.saturating_sub(1);
    let head_room = room - room / 3;
    let tail_room = room / 3;
    let mut used = 0;
    let mut head_end = 0;
    for (i, (at, c)) in s.char_indices().enumerate() {
        let len = escaped_len(c, i == 0);
        if used + len > head_room {
            break;
        }
        push_char(out, c, i == 0);
        used += len;
        head_end = at + c.len_utf8();
    }
    out.push('…');
    let rest = s.get(head_end..).unwrap_or_default();
    let mut tail_start = rest.len();
    let mut used = 0;
    for (at, c) in rest.char_indices().rev() {
        let len = escaped_len(c, false);
        if used + len > tail_room {
            break;
        }
        used += len;
        tail_start = at;
    }
    for c in rest.get(tail_start..).unwrap_or_default().chars() {
        push_char(out, c, false);
    }
}

/// [`push_field`] into a new string.
pub fn field(s: &str, max: usize) -> String {
    let mut out = String::new();
    push_field(&mut out, s, max);
    out
}

/// Whether `s` escaped fits in `max` characters; stops counting once it does not (a field can
/// be a 100 KiB command line).
fn escaped_len_within(s: &str, max: usize) -> bool {
    let mut len = 0;
    for (i, c) in s.chars().enumerate() {
        len += escaped_len(c, i == 0);
        if len > max {
            return false;
        }
    }
    true
}

/// Whether `c` is written as an escape rather than as itself. `first`: it begins the field,
/// where a combining mark would attach to the separator before it and show as nothing.
pub fn needs_escape(c: char, first: bool) -> bool {
    if c == '\\' || c.is_control() || default_ignorable(c) {
        return true;
    }
    match c.general_category() {
        // Cf holds the bidi controls, zero-width characters and other invisible formatting;
        // Zl/Zp break lines; private-use and unassigned characters show as anything or nothing
        // (and an unassigned one may be a format character of a newer Unicode).
        GeneralCategory::Format
        | GeneralCategory::LineSeparator
        | GeneralCategory::ParagraphSeparator
        | GeneralCategory::Surrogate
        | GeneralCategory::PrivateUse
        | GeneralCategory::Unassigned => true,
        // A no-break or ideographic space passes for a plain one: `ls\u{a0}` is not `ls `.
        GeneralCategory::SpaceSeparator => c != ' ',
        GeneralCategory::NonspacingMark
        | GeneralCategory::SpacingMark
        | GeneralCategory::EnclosingMark => first,
        _ => false,
    }
}

/// Unicode's Default_Ignorable_Code_Point: characters a renderer shows as nothing. Most are
/// format characters (Cf, escaped by category anyway); this list adds the ones that are letters
/// or marks by category: the Hangul fillers (which make names that look empty), the combining
/// grapheme joiner, Khmer inherent vowels and the variation selectors.
/// <https://www.unicode.org/Public/UCD/latest/ucd/DerivedCoreProperties.txt>
fn default_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}'
            | '\u{034f}'
            | '\u{061c}'
            | '\u{115f}'..='\u{1160}'
            | '\u{17b4}'..='\u{17b5}'
            | '\u{180b}'..='\u{180f}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{3164}'
            | '\u{fe00}'..='\u{fe0f}'
            | '\u{feff}'
            | '\u{ffa0}'
            | '\u{fff0}'..='\u{fff8}'
            | '\u{1bca0}'..='\u{1bca3}'
            | '\u{1d173}'..='\u{1d17a}'
            | '\u{e0000}'..='\u{e0fff}'
    )
}

fn escaped_len(c: char, first: bool) -> usize {
    if !needs_escape(c, first) {
        return 1;
    }
    match c {
        '\\' | '\t' | '\n' | '\r' => 2,
        c if c.is_control() => 4,
        // `\u{` + hex digits + `}`
        c => 4 + (32 - (c as u32).leading_zeros()).div_ceil(4) as usize,
    }
}

fn push_char(out: &mut String, c: char, first: bool) {
    if !needs_escape(c, first) {
        out.push(c);
        return;
    }
    match c {
        '\\' => out.push_str("\\\\"),
        '\t' => out.push_str("\\t"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        // C0, DEL and C1 (U+0080–U+009F): all below 0x100.
        c if c.is_control() => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No character that acts on a terminal or hides itself is left in `s`.
    fn terminal_safe(s: &str) -> bool {
        s.chars().all(|c| {
            !c.is_control()
                && !default_ignorable(c)
                && !matches!(
                    c.general_category(),
                    GeneralCategory::Format
                        | GeneralCategory::LineSeparator
                        | GeneralCategory::ParagraphSeparator
                )
        })
    }

    #[test]
    fn escapes_what_acts_on_a_terminal_and_keeps_the_rest() {
        let cases: &[(&str, &str)] = &[
            ("/usr/bin/curl", "/usr/bin/curl"),
            ("sh -c 'echo \"hi\"'", "sh -c 'echo \"hi\"'"),
            // ESC: a colour, a title change (OSC ... BEL), a screen clear.
            ("\u{1b}[31mred", "\\x1b[31mred"),
            ("\u{1b}]0;owned\u{7}", "\\x1b]0;owned\\x07"),
            ("a\u{1b}[2Jb", "a\\x1b[2Jb"),
            // The 8-bit CSI and the rest of C1, and DEL.
            ("\u{9b}31m", "\\x9b31m"),
            ("\u{85}\u{80}\u{9f}\u{7f}", "\\x85\\x80\\x9f\\x7f"),
            // Lines forged with CR, LF, tab, NUL, BEL, backspace.
            ("ok\r\nforged finding", "ok\\r\\nforged finding"),
            ("a\tb\u{0}c\u{7}d\u{8}", "a\\tb\\x00c\\x07d\\x08"),
            // A backslash is escaped, so `\x1b` typed by an attacker is not an escape of ours.
            ("\\x1b", "\\\\x1b"),
            // Bidi overrides, embeddings, isolates and marks.
            ("/tmp/\u{202e}hs.exe", "/tmp/\\u{202e}hs.exe"),
            (
                "\u{202a}\u{202b}\u{202c}\u{202d}",
                "\\u{202a}\\u{202b}\\u{202c}\\u{202d}",
            ),
            (
                "\u{2066}a\u{2067}b\u{2068}c\u{2069}",
                "\\u{2066}a\\u{2067}b\\u{2068}c\\u{2069}",
            ),
            ("\u{200e}\u{200f}\u{61c}", "\\u{200e}\\u{200f}\\u{61c}"),
            // Invisible characters: zero-width, soft hyphen, BOM, word joiner, tags, fillers.
            (
                "k\u{200b}ube\u{200d}let\u{ad}\u{feff}\u{2060}",
                "k\\u{200b}ube\\u{200d}let\\u{ad}\\u{feff}\\u{2060}",
            ),
            ("\u{e0041}\u{3164}\u{115f}", "\\u{e0041}\\u{3164}\\u{115f}"),
            // Line and paragraph separators, look-alike spaces.
            ("a\u{2028}b\u{2029}c", "a\\u{2028}b\\u{2029}c"),
            ("ls\u{a0}\u{3000}", "ls\\u{a0}\\u{3000}"),
            // Private use and unassigned code points.
            ("\u{e000}\u{10ffff}", "\\u{e000}\\u{10ffff}"),
            // Readable text in any script stays as it is, combining marks included...
            ("/srv/données/日本語/файл", "/srv/données/日本語/файл"),
            ("cafe\u{301}", "cafe\u{301}"),
            ("हिन्दी", "हिन्दी"),
            // ... except a mark that begins the field (it would attach to the separator).
            ("\u{301}x", "\\u{301}x"),
            // Invalid UTF-8 arrives as U+FFFD, which is visible.
            ("\u{fffd}", "\u{fffd}"),
        ];
        for (input, want) in cases {
            let got = field(input, 1000);
            assert_eq!(&got, want, "{input:?}");
            assert!(terminal_safe(&got), "{input:?} -> {got:?}");
        }
    }

    #[test]
    fn every_control_character_is_escaped() {
        for c in (0u32..0x20).chain(0x7f..0xa0).filter_map(char::from_u32) {
            let got = field(&c.to_string(), 100);
            assert!(
                got.starts_with('\\') && terminal_safe(&got),
                "{c:?} -> {got:?}"
            );
        }
    }

    #[test]
    fn long_values_are_cut_in_the_middle_within_the_bound() {
        // A 100 KiB command line.
        let argv = format!("python3 -c {} /tmp/payload", "A".repeat(100_000));
        let got = field(&argv, 80);
        assert_eq!(got.chars().count(), 80, "{got}");
        assert!(got.starts_with("python3 -c AAA"), "{got}");
        assert!(got.ends_with("AAA /tmp/payload"), "{got}");
        assert_eq!(got.matches('…').count(), 1);
        // Exactly at the bound: kept whole.
        let fits = "x".repeat(80);
        assert_eq!(field(&fits, 80), fits);
        let over = "x".repeat(81);
        assert_eq!(field(&over, 80).chars().count(), 80);
        // The bound counts escapes, and never cuts one.
        let escapes = "\u{1b}".repeat(1000);
        let got = field(&escapes, 30);
        assert!(got.chars().count() <= 30, "{got}");
        let (head, tail) = got.split_once('…').unwrap();
        assert!(
            head.split("\\x1b").all(str::is_empty) && tail.split("\\x1b").all(str::is_empty),
            "{got}"
        );
        let bidi = "\u{202e}".repeat(1000);
        let got = field(&bidi, 30);
        assert!(got.chars().count() <= 30 && terminal_safe(&got), "{got}");
        let (head, tail) = got.split_once('…').unwrap();
        assert!(
            head.split("\\u{202e}").all(str::is_empty)
                && tail.split("\\u{202e}").all(str::is_empty),
            "{got}"
        );
        // Multi-byte characters are counted as characters and never split.
        let wide = "日".repeat(500);
        let got = field(&wide, 21);
        assert_eq!(got.chars().count(), 21);
        // Degenerate bounds.
        assert_eq!(field("abc", 0), "…");
        assert_eq!(field("abc", 1), "…");
        assert_eq!(field("", 0), "");
    }

    #[test]
    fn escape_lengths_match_what_is_written() {
        for c in [
            'a',
            '\\',
            '\n',
            '\u{1b}',
            '\u{9b}',
            '\u{ad}',
            '\u{202e}',
            '\u{e0041}',
            '\u{10ffff}',
            '\u{301}',
        ] {
            for first in [true, false] {
                let mut s = String::new();
                push_char(&mut s, c, first);
                assert_eq!(s.chars().count(), escaped_len(c, first), "{c:?} {first}");
            }
        }
    }
}

//! Strings that come from agents (a node name, an agent version, a probe's error) or from
//! member accounts (tag values) are data: before they are stored in a coverage row or put in an
//! issue string they are bounded in bytes and stripped of what could forge or hide text in a
//! console or a log (control characters, line and paragraph separators, bidi overrides).

/// At most `max` bytes of `s` (cut at a character boundary, `…` marking the cut, within the
/// bound), every control or formatting character replaced by U+FFFD.
pub fn bounded(s: &str, max: usize) -> String {
    const MARK: char = '…';
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars() {
        let c = if is_unsafe(c) { '\u{FFFD}' } else { c };
        if out.len() + c.len_utf8() > max {
            while !out.is_empty() && out.len() + MARK.len_utf8() > max {
                out.pop();
            }
            if out.len() + MARK.len_utf8() <= max {
                out.push(MARK);
            }
            return out;
        }
        out.push(c);
    }
    out
}

/// C0 and C1 controls, DEL, the line and paragraph separators and the bidi controls.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
        )
        || ('\u{202A}'..='\u{202E}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// Up to `max` items of `items` joined by `, `, with `and N more` when some were left out.
pub fn list<S: AsRef<str>>(items: &[S], max: usize) -> String {
    let mut out = items
        .iter()
        .take(max)
        .map(|s| s.as_ref())
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > max {
        out.push_str(&format!(" and {} more", items.len() - max));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_bounded_and_defused() {
        assert_eq!(bounded("0.1.0", 64), "0.1.0");
        assert_eq!(
            bounded("a\nb\u{1b}[31m\u{202e}c", 64),
            "a\u{FFFD}b\u{FFFD}[31m\u{FFFD}c"
        );
        let long = bounded(&"é".repeat(100), 10);
        assert!(long.len() <= 10, "{long}");
        assert!(long.ends_with('…'), "{long}");
        assert_eq!(bounded("abcdef", 3), "…");
        assert_eq!(bounded("abcdef", 2), "");
        assert_eq!(bounded("", 0), "");
    }

    #[test]
    fn lists_say_how_many_were_left_out() {
        assert_eq!(list(&["a", "b", "c"], 5), "a, b, c");
        assert_eq!(list(&["a", "b", "c"], 2), "a, b and 1 more");
        assert_eq!(list::<&str>(&[], 2), "");
    }
}

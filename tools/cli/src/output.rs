//! How answers are shown: the API's JSON (pretty-printed), or aligned tables for people.
//!
//! Every string in a table may come from an attacker (a finding's title, process, pod or
//! namespace name; a filter's description; a tag): each cell goes through
//! [`peregrine_termsafe::field`], so control characters, escape sequences, bidi and invisible
//! characters are written as visible escapes and no cell exceeds its column's bound.

use std::io::Write;

use serde_json::Value;

/// A table's columns: a heading and the most characters a cell may take.
pub struct Table {
    headings: Vec<&'static str>,
    bounds: Vec<usize>,
    rows: Vec<Vec<String>>,
}

/// A cell longer than this in a key/value table is cut in the middle.
pub const VALUE_BOUND: usize = 120;

impl Table {
    pub fn new(columns: &[(&'static str, usize)]) -> Table {
        Table {
            headings: columns.iter().map(|c| c.0).collect(),
            bounds: columns.iter().map(|c| c.1).collect(),
            rows: Vec::new(),
        }
    }

    /// A row of raw strings: escaped and bounded here.
    pub fn row<S: AsRef<str>>(&mut self, cells: &[S]) {
        let row = self
            .bounds
            .iter()
            .enumerate()
            .map(|(i, &bound)| {
                let cell = cells.get(i).map(AsRef::as_ref).unwrap_or("");
                peregrine_termsafe::field(if cell.is_empty() { "-" } else { cell }, bound)
            })
            .collect();
        self.rows.push(row);
    }

    /// Columns padded to their widest cell, two spaces apart; the last is not padded.
    pub fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        let mut widths: Vec<usize> = self.headings.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |out: &mut dyn Write, cells: &mut dyn Iterator<Item = &str>| {
            let mut s = String::new();
            let last = widths.len().saturating_sub(1);
            for (i, (cell, w)) in cells.zip(&widths).enumerate() {
                s.push_str(cell);
                if i < last {
                    let pad = w.saturating_sub(cell.chars().count()) + 2;
                    s.extend(std::iter::repeat_n(' ', pad));
                }
            }
            writeln!(out, "{}", s.trim_end())
        };
        line(out, &mut self.headings.iter().copied())?;
        for row in &self.rows {
            line(out, &mut row.iter().map(String::as_str))?;
        }
        Ok(())
    }
}

/// A JSON value as one cell: strings as they are, `null` as `-`, lists of scalars joined with
/// commas, objects as compact JSON.
pub fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            items.iter().map(text).collect::<Vec<_>>().join(",")
        }
        other => other.to_string(),
    }
}

/// The value at a JSON pointer (`/a/b`), as a cell.
pub fn at(v: &Value, pointer: &str) -> String {
    v.pointer(pointer).map(text).unwrap_or_default()
}

/// An object as `KEY  VALUE` rows, nested objects flattened to dotted keys.
pub fn key_values(v: &Value) -> Table {
    let mut t = Table::new(&[("KEY", 64), ("VALUE", VALUE_BOUND)]);
    let mut rows = Vec::new();
    flatten("", v, &mut rows);
    for (k, v) in rows {
        t.row(&[k, v]);
    }
    t
}

fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        // Lists of objects (an organization's accounts) as `key.0.field` rows.
        Value::Array(items) if !prefix.is_empty() && items.iter().any(Value::is_object) => {
            for (i, v) in items.iter().enumerate() {
                flatten(&format!("{prefix}.{i}"), v, out);
            }
        }
        _ if prefix.is_empty() => {}
        other => out.push((prefix.to_owned(), text(other))),
    }
}

pub fn json(out: &mut impl Write, v: &Value) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, v).map_err(std::io::Error::other)?;
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(t: &Table) -> String {
        let mut out = Vec::new();
        t.write(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn columns_are_aligned_escaped_and_bounded() {
        let mut t = Table::new(&[("ID", 10), ("POD", 20), ("TITLE", 20)]);
        t.row(&["a", "web-1", "short"]);
        t.row(&["bbbb", "\u{1b}]0;pwned\u{7}", &"x".repeat(100)]);
        t.row(&["c", "", "z"]);
        let s = render(&t);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "ID    POD               TITLE");
        assert_eq!(lines[1], "a     web-1             short");
        assert_eq!(
            lines[2],
            format!(
                "bbbb  \\x1b]0;pwned\\x07  {}…{}",
                "x".repeat(13),
                "x".repeat(6)
            )
        );
        assert_eq!(lines[3], "c     -                 z");
        assert!(!s.contains('\u{1b}') && !s.contains('\u{7}'));
    }

    #[test]
    fn objects_flatten_to_key_values() {
        let t = key_values(
            &json!({"name": "f", "findingCriteria": {"criterion": {"type": {"eq": ["A", "B"]}}}, "tags": {}, "n": null, "accounts": [{"accountId": "1"}]}),
        );
        let s = render(&t);
        assert!(s.contains("findingCriteria.criterion.type.eq  A,B"), "{s}");
        assert!(s.contains("tags                               {}"), "{s}");
        assert!(s.contains("n                                  -"), "{s}");
        assert!(s.contains("accounts.0.accountId               1"), "{s}");
    }
}

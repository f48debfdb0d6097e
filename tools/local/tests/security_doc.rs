//! docs/security.md names, for each claim, the test that shows it. Every name must be real: a
//! test renamed or deleted makes the threat model point at nothing, and this test fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The backticked spans of `text`.
fn code_spans(text: &str) -> impl Iterator<Item = &str> {
    text.split('`').skip(1).step_by(2)
}

/// (file, test) references: `path.rs::name`, and `::name` for the file named last in the same
/// line.
fn references(doc: &str) -> (Vec<String>, Vec<(String, String)>) {
    let mut files = Vec::new();
    let mut tests = Vec::new();
    for line in doc.lines() {
        let mut last_file: Option<String> = None;
        for span in code_spans(line) {
            if let Some(name) = span.strip_prefix("::") {
                let file = last_file
                    .clone()
                    .unwrap_or_else(|| panic!("`{span}` follows no file in: {line}"));
                tests.push((file, name.to_owned()));
            } else if let Some((file, name)) = span.split_once(".rs::") {
                let file = format!("{file}.rs");
                tests.push((file.clone(), name.to_owned()));
                last_file = Some(file);
            } else if span.ends_with(".rs") && span.contains('/') {
                files.push(span.to_owned());
                last_file = Some(span.to_owned());
            }
        }
    }
    (files, tests)
}

#[test]
fn every_test_the_threat_model_names_exists() {
    let doc = std::fs::read_to_string(root().join("docs/security.md")).unwrap();
    assert!(
        !doc.contains("PENDING"),
        "docs/security.md still has a claim without its test"
    );
    let (files, tests) = references(&doc);
    assert!(
        tests.len() >= 40,
        "only {} test references found",
        tests.len()
    );
    for f in &files {
        assert!(
            root().join(f).is_file(),
            "docs/security.md names {f}, which does not exist"
        );
    }
    for (file, name) in &tests {
        let text = std::fs::read_to_string(root().join(file))
            .unwrap_or_else(|e| panic!("docs/security.md names {file}: {e}"));
        assert!(
            text.contains(&format!("fn {name}(")),
            "docs/security.md names {file}::{name}, which is not a function there"
        );
    }
}

#[test]
fn the_reference_parser_finds_continuations() {
    let (files, tests) =
        references("| x | `a/b.rs::one`, `::two`; `c/d.rs` `::three` | `e/f.rs::four` |");
    assert_eq!(files, ["c/d.rs"]);
    let pairs: Vec<(&str, &str)> = tests
        .iter()
        .map(|(f, t)| (f.as_str(), t.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("a/b.rs", "one"),
            ("a/b.rs", "two"),
            ("c/d.rs", "three"),
            ("e/f.rs", "four")
        ]
    );
}

#[test]
#[should_panic(expected = "follows no file")]
fn a_continuation_without_a_file_is_an_error() {
    references("| `::orphan` |");
}

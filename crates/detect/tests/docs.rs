//! docs/rules.md stays in step with the code: it documents every field, every built-in rule says
//! what it fires on, and the complete example loads and behaves as described.

// Test helpers outside #[test] functions fail by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use peregrine_detect::{Catalog, Engine, Field, RuleSet};

const GUIDE: &str = include_str!("../../../docs/rules.md");

#[test]
fn every_field_is_documented() {
    let missing: Vec<&str> = Field::ALL
        .iter()
        .map(|f| f.name())
        .filter(|n| !GUIDE.contains(&format!("`{n}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/rules.md does not mention: {missing:?}"
    );
}

#[test]
fn every_builtin_rule_documents_itself() {
    // The catalog's documentation is the rules themselves (`peregrine-agent rules` lists them),
    // so that a new finding type is its rule and its cases, and nothing else to keep in step.
    let builtin = Catalog::builtin().unwrap();
    assert!(builtin.rules().count() > 0);
    for r in builtin.rules() {
        assert!(!r.title.trim().is_empty(), "{} has no title", r.id);
        assert!(
            r.description.trim().len() >= 40,
            "{} needs a description that says what it fires on",
            r.id
        );
        assert!(!r.mitre.is_empty(), "{} has no MITRE tags", r.id);
    }
    assert!(GUIDE.contains("peregrine-agent rules"));
}

#[test]
fn the_complete_example_works_as_described() {
    let set = RuleSet::from_yaml("site.yaml", yaml_after("## A complete example")).unwrap();
    let engine = Engine::new([Catalog::builtin().unwrap(), set]);
    assert!(engine.warnings().is_empty());

    let in_prod = |e: E| e.argv(&["kubectl", "get", "pods"]).pod("prod", "api-7d9f");
    let ev = in_prod(E::exec("/usr/local/bin/kubectl")).ev();
    let m = eval(&engine, &ev);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].rule_id, "kubectl-in-app-pod");
    assert_eq!(
        m[0].context.command_line_example.as_deref(),
        Some("kubectl get pods")
    );
    let f = peregrine_detect::to_finding(
        &m[0],
        &ev,
        &Default::default(),
        peregrine_event::Timestamp::default(),
    );
    assert_eq!(
        f.title,
        "kubectl was run in an application pod in pod prod/api-7d9f."
    );
    let evidence = serde_json::to_value(&m[0].evidence).unwrap();
    assert_eq!(
        evidence,
        serde_json::json!([
            {"field": "container", "operator": "exists", "expected": null, "actual": true},
            {"field": "container.pod_namespace", "operator": "in", "expected": "prod", "actual": "prod"},
            {"field": "process.name", "operator": "eq", "expected": "kubectl", "actual": "kubectl"},
            {"field": "exec.basename", "operator": "eq", "expected": "kubectl", "actual": "kubectl"}
        ])
    );

    let start = GUIDE.find("```json\n").unwrap() + "```json\n".len();
    let end = GUIDE[start..].find("```").unwrap() + start;
    let documented: serde_json::Value = serde_json::from_str(&GUIDE[start..end]).unwrap();
    assert_eq!(evidence, documented, "the evidence shown in docs/rules.md");

    // The exception, and a namespace outside the list.
    let debug = in_prod(E::exec("/usr/local/bin/kubectl"))
        .image("123456789012.dkr.ecr.eu-west-1.amazonaws.com/platform/debug:1.2");
    assert!(eval(&engine, &debug.ev()).is_empty());
    assert!(
        eval(&engine, &E::exec("/usr/local/bin/kubectl").ev()).is_empty(),
        "namespace default"
    );
}

/// The first ```yaml block after `heading`.
fn yaml_after(heading: &str) -> &'static str {
    let start = GUIDE.find(heading).unwrap();
    let yaml_start = GUIDE[start..].find("```yaml\n").unwrap() + start + "```yaml\n".len();
    let yaml_end = GUIDE[yaml_start..].find("```").unwrap() + yaml_start;
    &GUIDE[yaml_start..yaml_end]
}

#[test]
fn the_documented_test_cases_pass() {
    let set = RuleSet::from_yaml("site.yaml", yaml_after("## A complete example")).unwrap();
    let engine = Engine::new([Catalog::builtin().unwrap(), set.clone()]);
    let summary = peregrine_detect::cases::run(
        &engine,
        &set,
        "site.tests.yaml",
        yaml_after("## Testing rules"),
    )
    .unwrap();
    assert_eq!(summary.cases, 4);
}

#[test]
fn documented_error_messages_are_real() {
    let yaml = |id: &str, kinds: &str, cond: &str| {
        format!(
            "version: 1.0.0\nrules:\n  - id: {id}\n    maturity: stable\n    title: t\n    type: 'Execution:Runtime/X'\n    severity: 5\n    kinds: {kinds}\n    condition: {cond}\n"
        )
    };
    let load_error = |yaml: &str| {
        RuleSet::from_yaml("site.yaml", yaml)
            .unwrap_err()
            .to_string()
    };
    let rule = |id: &str, kinds: &str, cond: &str| load_error(&yaml(id, kinds, cond));
    let errors = [
        rule(
            "kubectl-in-app-pod",
            "[exec]",
            "{field: proces.name, op: eq, value: kubectl}",
        ),
        rule(
            "big-files",
            "[open]",
            "{field: file.path, op: gt, value: 1}",
        ),
        rule(
            "setuid",
            "[chmod]",
            "{field: file.mode, op: bits_any, value: \"0o8000\"}",
        ),
        rule("x", "[exec]", "{field: file.path, op: eq, value: /x}"),
        load_error(
            &yaml("x", "[exec]", "{field: kind, op: exists}")
                .replace("maturity: stable", "maturity: beta"),
        ),
        load_error("version: 2.0.0\nrules: []\n"),
    ];
    for e in errors {
        assert!(
            GUIDE.contains(&e),
            "docs/rules.md should show this message verbatim:\n{e}"
        );
    }
}

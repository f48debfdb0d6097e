//! Every built-in rule's test cases: `rules/<file>.tests.yaml` beside `rules/<file>.yaml`, run
//! through `peregrine_detect::cases`. The per-rule tables live in those files; this target only
//! finds them, and checks that the harness itself rejects what it must.

// Test helpers outside #[test] functions fail by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use peregrine_detect::cases::{self, CaseError, CaseProblem};
use peregrine_detect::{Catalog, Engine, Maturity, RuleSet};

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("rules")
}

/// Every built-in rule, whatever its maturity.
fn engine() -> Engine {
    Engine::new([Catalog::with_maturities(&Maturity::ALL).unwrap()])
}

#[test]
fn every_rule_file_passes_its_cases() {
    let engine = engine();
    let mut rule_files: Vec<PathBuf> = std::fs::read_dir(rules_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "yaml")
                && !p.to_string_lossy().ends_with(".tests.yaml")
        })
        .collect();
    rule_files.sort();
    assert!(!rule_files.is_empty());
    let mut failures = Vec::new();
    let mut total = 0;
    for rules in &rule_files {
        let tests = rules.with_extension("tests.yaml");
        let name = tests.file_name().unwrap().to_string_lossy().into_owned();
        let Ok(cases_yaml) = std::fs::read_to_string(&tests) else {
            failures.push(format!("{} has no {name} beside it", rules.display()));
            continue;
        };
        let set = RuleSet::from_yaml(
            &rules.display().to_string(),
            &std::fs::read_to_string(rules).unwrap(),
        )
        .unwrap();
        match cases::run(&engine, &set, &name, &cases_yaml) {
            Ok(s) => total += s.cases,
            Err(e) => failures.push(e.to_string()),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every case catalog.rs held before the move (192), and none lost since.
    assert!(total >= 192, "only {total} cases");
}

#[test]
fn every_rule_file_is_in_the_catalog() {
    let mut files: Vec<String> = std::fs::read_dir(rules_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && !n.ends_with(".tests.yaml"))
        .map(|n| format!("builtin/{n}"))
        .collect();
    files.sort();
    let embedded: Vec<&str> = Catalog::SOURCES.iter().map(|(n, _)| *n).collect();
    assert_eq!(files, embedded);
}

// ---------------------------------------------------------------------------------------------
// The harness fails on what it must.

const RULES: &str = "version: 1.0.0\nrules:\n  - {id: nc, maturity: stable, title: t, type: 'Execution:Runtime/Nc', severity: 5, kinds: [exec], condition: {field: process.name, op: eq, value: nc}}\n  - {id: socat, maturity: sandbox, title: t, type: 'Execution:Runtime/Socat', severity: 5, kinds: [exec], condition: {field: process.name, op: eq, value: socat}}\n";

fn run(cases_yaml: &str) -> Result<cases::Summary, CaseError> {
    let set = RuleSet::from_yaml("site.yaml", RULES).unwrap();
    let engine = Engine::new([set.clone()]);
    cases::run(&engine, &set, "site.tests.yaml", cases_yaml)
}

fn problems(cases_yaml: &str) -> Vec<CaseProblem> {
    match run(cases_yaml) {
        Err(CaseError::Failed { problems, .. }) => problems,
        other => panic!("{other:?}"),
    }
}

const GOOD: &str = "tests:
  - rule: nc
    fires: [{name: nc, event: {kind: exec, exe: /usr/bin/nc}}]
    misses: [{name: ncat, event: {kind: exec, exe: /usr/bin/ncat}}]
  - type: Execution:Runtime/Socat
    fires: [{name: socat, event: {kind: exec, exe: /usr/bin/socat}}]
  - rule: socat
    fires: [{name: socat, event: {kind: exec, exe: /usr/bin/socat}}]
    misses: [{name: open, event: {kind: open, path: /usr/bin/socat, flags: [O_RDONLY]}}]
";

#[test]
fn a_good_file_passes() {
    assert_eq!(run(GOOD).unwrap().cases, 5);
}

#[test]
fn an_unknown_rule_or_type_fails() {
    let p = problems(&format!(
        "{GOOD}  - rule: netcat\n    fires: [{{name: x, event: {{kind: exec}}}}]\n  - type: Execution:Runtime/Nope\n    fires: [{{name: x, event: {{kind: exec}}}}]\n"
    ));
    assert_eq!(
        p,
        [
            CaseProblem::UnknownRule("netcat".into()),
            CaseProblem::UnknownType("Execution:Runtime/Nope".into())
        ]
    );
}

#[test]
fn a_rule_without_a_firing_case_or_a_near_miss_fails() {
    let p = problems(
        "tests:\n  - rule: nc\n    fires: [{name: nc, event: {kind: exec, exe: /usr/bin/nc}}]\n",
    );
    assert_eq!(
        p,
        [
            CaseProblem::Uncovered {
                rule: "nc".into(),
                missing: "near-miss"
            },
            CaseProblem::Uncovered {
                rule: "socat".into(),
                missing: "firing"
            },
            CaseProblem::Uncovered {
                rule: "socat".into(),
                missing: "near-miss"
            },
        ]
    );
}

#[test]
fn unknown_keys_fail_with_their_location() {
    for bad in [
        GOOD.replace("fires: [{name: nc,", "fire: [{name: nc,"),
        GOOD.replace("exe: /usr/bin/nc}", "exe: /usr/bin/nc, flgs: [O_WRONLY]}"),
        GOOD.replace("{name: nc, event", "{name: nc, expect: true, event"),
    ] {
        let e = run(&bad).unwrap_err();
        assert!(
            matches!(&e, CaseError::Yaml { message, .. } if message.contains("unknown field") && message.contains("line")),
            "{e:?}"
        );
    }
    let e = run(&GOOD.replace("flags: [O_RDONLY]", "flags: [O_RDONYL]")).unwrap_err();
    assert!(e.to_string().contains("unknown flag"), "{e}");
}

#[test]
fn wrong_outcomes_and_details_are_named() {
    let p = problems(&GOOD.replace(
        "misses: [{name: ncat, event: {kind: exec, exe: /usr/bin/ncat}}]",
        "misses: [{name: ncat, event: {kind: exec, exe: /usr/bin/nc}}, {name: bad, event: {kind: exec, path: /x}}]",
    ));
    assert_eq!(p.len(), 2, "{p:?}");
    assert_eq!(
        p[0].to_string(),
        "rule `nc`, case \"ncat\": must not fire, but it did (rules that fired: [nc])"
    );
    assert!(
        p[1].to_string()
            .contains("`path` do(es) not apply to exec events"),
        "{}",
        p[1]
    );
    let p = problems(&GOOD.replace(
        "fires: [{name: nc, event: {kind: exec, exe: /usr/bin/nc}}]",
        "fires: [{name: nc, event: {kind: exec, exe: /usr/bin/nc}, context: {toolName: nc}}]",
    ));
    assert!(
        matches!(&p[..], [CaseProblem::Mismatch { what, .. }] if what == "context.toolName"),
        "{p:?}"
    );
}

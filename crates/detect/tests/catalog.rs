//! The catalog as a whole: the finding types and severities it must cover, and ordinary
//! activity that must fire nothing. Each rule's own cases (events that must fire it, near
//! misses, the context it fills) are in `rules/<file>.tests.yaml`, run by `tests/rules.rs`.

// Test helpers outside #[test] functions (event builders, table checkers) fail by panicking,
// which clippy's allow-*-in-tests settings do not cover.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use peregrine_detect::Catalog;

#[test]
fn catalog_covers_the_required_types_with_guardduty_severities() {
    let want = [
        ("Execution:Runtime/NewBinaryExecuted", 5.0),
        (
            "PrivilegeEscalation:Runtime/CGroupsReleaseAgentModified",
            8.0,
        ),
        ("PrivilegeEscalation:Runtime/RuncContainerEscape", 8.0),
        ("PrivilegeEscalation:Runtime/DockerSocketAccessed", 5.0),
        ("Persistence:Runtime/SensitiveFileModified", 5.0),
        ("PrivilegeEscalation:Runtime/SensitiveFileModified", 5.0),
        ("DefenseEvasion:Runtime/SensitiveFileModified", 5.0),
        ("PrivilegeEscalation:Runtime/ElevationToRoot", 5.0),
        ("Impact:Runtime/CryptoMinerExecuted", 8.0),
    ];
    let rules: Vec<_> = builtin().rules().collect();
    for (t, sev) in want {
        let r = rules
            .iter()
            .find(|r| r.finding_type == t)
            .unwrap_or_else(|| panic!("no rule for {t}"));
        assert_eq!(r.severity, sev, "{t}");
        assert!(r.enabled);
        assert!(!r.mitre.is_empty(), "{t} has no MITRE tags");
    }
    let mut tool_sevs: Vec<f64> = rules
        .iter()
        .filter(|r| r.finding_type == "Execution:Runtime/SuspiciousTool")
        .map(|r| r.severity)
        .collect();
    tool_sevs.sort_by(f64::total_cmp);
    assert_eq!(tool_sevs, [2.0, 5.0, 8.0, 8.0]);
    assert!(
        builtin().warnings().is_empty(),
        "{:?}",
        builtin().warnings()
    );
}

#[test]
fn state_finding_types_are_ours_and_no_rule_claims_them() {
    let every =
        peregrine_detect::Engine::new([
            Catalog::with_maturities(&peregrine_detect::Maturity::ALL).unwrap()
        ]);
    for t in Catalog::STATE_FINDING_TYPES {
        assert!(
            every.rules().all(|r| r.finding_type != t.finding_type),
            "a rule raises {}",
            t.finding_type
        );
        assert!(t.finding_type.contains(":Runtime/"));
    }
    let blinded = Catalog::STATE_FINDING_TYPES
        .iter()
        .find(|t| t.finding_type == peregrine_detect::AGENT_BLINDED)
        .unwrap();
    assert_eq!(
        blinded.finding_type,
        "DefenseEvasion:Runtime/PeregrineAgentBlinded"
    );
    assert!(!blinded.guardduty, "ours, not GuardDuty's");
    assert_eq!(blinded.severity, 8.0);
}

#[test]
fn unrelated_activity_fires_nothing() {
    let quiet = [
        E::open("/var/lib/app/data.db", RDWR),
        E::open("/tmp/upload-123", WRITE),
        E::open("/etc/nginx/nginx.conf", O_RDONLY),
        E::open("/var/log/nginx/access.log", APPEND),
        E::connect_inet("10.0.12.7", 5432),
        E::connect_unix("/var/run/nscd/socket"),
        E::exec("/usr/bin/python3"),
        E::exec("/usr/bin/curl").argv(&["curl", "-s", "http://svc"]),
        E::fork(),
        E::unlink("/tmp/upload-123"),
        E::rename("/var/lib/app/tmp", "/var/lib/app/data"),
    ];
    for e in quiet {
        let ev = e.ev();
        let got = eval(builtin(), &ev);
        assert!(
            got.is_empty(),
            "{:?} fired {:?}",
            ev.kind,
            got.iter().map(|m| &m.rule_id).collect::<Vec<_>>()
        );
    }
}

/// An exception never rests on what the suppressed process chooses for itself (STYLE.md,
/// "Detections"): its comm, its argv[0] or a file name. Every built-in exception, and every
/// exception a built-in override adds, is walked with YAML aliases resolved.
#[test]
fn no_builtin_exception_rests_on_a_chosen_name() {
    const FORGEABLE: &[&str] = &[
        "process.comm",
        "process.name",
        "parent.name",
        "parent.comm",
        "ancestors.name",
        // argv[0] is any element of argv, and the start of the command line.
        "process.argv",
        "process.cmdline",
    ];
    let mut bad = Vec::new();
    let mut seen = 0;
    for (file, yaml) in Catalog::SOURCES {
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).expect("catalog YAML");
        let lists = ["rules", "overrides"]
            .iter()
            .filter_map(|k| doc.get(k).and_then(|v| v.as_sequence()))
            .flatten();
        for rule in lists {
            let id = rule
                .get("id")
                .or_else(|| rule.get("rule"))
                .and_then(|v| v.as_str())
                .unwrap_or("?");
            let exceptions = rule.get("exceptions").and_then(|v| v.as_sequence());
            for exc in exceptions.into_iter().flatten() {
                let name = exc.get("name").and_then(|v| v.as_str()).unwrap_or("?");
                let fields = exc.get("fields").and_then(|v| v.as_sequence());
                for field in fields.into_iter().flatten() {
                    seen += 1;
                    let field = field.as_str().unwrap_or("");
                    if FORGEABLE.contains(&field) || field.ends_with("basename") {
                        bad.push(format!("{file}: {id}: exception {name:?} uses {field}"));
                    }
                }
            }
        }
    }
    assert!(seen > 10, "the walk found only {seen} exception fields");
    assert!(
        bad.is_empty(),
        "exceptions must use the executable's path and place, not a name the process chose \
         (docs/rules.md#exceptions):\n{}",
        bad.join("\n")
    );
}

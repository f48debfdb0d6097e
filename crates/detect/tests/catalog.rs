//! The catalog as a whole: the finding types and severities it must cover, and ordinary
//! activity that must fire nothing. Each rule's own cases (events that must fire it, near
//! misses, the context it fills) are in `rules/<file>.tests.yaml`, run by `tests/rules.rs`.

// Test helpers outside #[test] functions (event builders, table checkers) fail by panicking,
// which clippy's allow-*-in-tests settings do not cover.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;

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

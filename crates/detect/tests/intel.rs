//! Threat-list detections: the events that fire each type, near misses, and trusted entries
//! that suppress a match.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use std::net::IpAddr;
use std::sync::Arc;

use peregrine_detect::{Engine, Match, to_finding};
use peregrine_event::{Event, Timestamp};
use peregrine_finding::FindingEnv;
use peregrine_intel::{Category, Format, IntelBuilder, ListInfo, ListKind, parse};
use peregrine_testkit::builders::{EventBuilder, process};

const USER_SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const MINER_SHA: &str = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";
const TRUSTED_SHA: &str = "fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9";

fn engine() -> Engine {
    let mut b = IntelBuilder::new();
    let mut add = |name: &str, kind, category, text: &str| {
        let entries = parse(Format::Txt, text.as_bytes()).unwrap().entries;
        b.add_list(
            ListInfo {
                name: name.into(),
                kind,
                category,
            },
            entries,
        )
        .unwrap();
    };
    add(
        "c2",
        ListKind::Threat,
        Category::CommandAndControl,
        "203.0.113.5\n198.51.100.0/24\n",
    );
    add("tor", ListKind::Threat, Category::TorRelay, "192.0.2.99\n");
    add("miners", ListKind::Threat, Category::CryptoMiner, MINER_SHA);
    add(
        "phish",
        ListKind::Threat,
        Category::Phishing,
        "192.0.2.50\n",
    );
    add(
        "mine",
        ListKind::Threat,
        Category::Custom,
        &format!("192.0.2.7\n2001:db8::7\n{USER_SHA}\n{TRUSTED_SHA}\n"),
    );
    add(
        "ok",
        ListKind::Trusted,
        Category::Custom,
        &format!("198.51.100.9\n{TRUSTED_SHA}\n"),
    );
    Engine::new([]).with_intel(Arc::new(b.build()))
}

fn connect(ip: &str) -> Event {
    let ip: IpAddr = ip.parse().unwrap();
    EventBuilder::connect_inet(ip, 443)
        .by(process(4242, "/usr/bin/curl").build())
        .build()
}

fn exec(sha: Option<&str>) -> Event {
    let mut p = process(4242, "/tmp/x");
    if let Some(s) = sha {
        p = p.sha256(s);
    }
    EventBuilder::exec("/tmp/x").by(p.build()).build()
}

/// (finding type, severity, list names) of each match.
/// (finding type, severity, list names).
type Fired = Vec<(String, f64, Vec<String>)>;

fn fired(e: &Engine, ev: &Event) -> Fired {
    let mut out: Vec<Match> = Vec::new();
    e.evaluate(ev, &mut out);
    out.into_iter()
        .map(|m| {
            let lists = m
                .threat_intel
                .iter()
                .filter_map(|d| d.threat_list_name.clone())
                .collect();
            (m.finding_type, m.severity, lists)
        })
        .collect()
}

#[test]
fn fires_misses_and_suppressions() {
    let e = engine();
    let t = |ty: &str, sev: f64, lists: &[&str]| {
        vec![(
            ty.to_owned(),
            sev,
            lists.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )]
    };
    let none = Vec::new();
    let cases: Vec<(&str, Event, Fired)> = vec![
        (
            "c2 address",
            connect("203.0.113.5"),
            t("Backdoor:Runtime/C&CActivity.B", 8.0, &["c2"]),
        ),
        (
            "c2 network",
            connect("198.51.100.20"),
            t("Backdoor:Runtime/C&CActivity.B", 8.0, &["c2"]),
        ),
        (
            "tor relay",
            connect("192.0.2.99"),
            t("UnauthorizedAccess:Runtime/TorClient", 8.0, &["tor"]),
        ),
        (
            "user list",
            connect("192.0.2.7"),
            t(
                "UnauthorizedAccess:Runtime/MaliciousIPCaller.Custom",
                5.0,
                &["mine"],
            ),
        ),
        (
            "user list, IPv4-mapped",
            connect("::ffff:192.0.2.7"),
            t(
                "UnauthorizedAccess:Runtime/MaliciousIPCaller.Custom",
                5.0,
                &["mine"],
            ),
        ),
        (
            "user list, IPv6",
            connect("2001:db8::7"),
            t(
                "UnauthorizedAccess:Runtime/MaliciousIPCaller.Custom",
                5.0,
                &["mine"],
            ),
        ),
        (
            "near miss: next address",
            connect("203.0.113.6"),
            none.clone(),
        ),
        (
            "near miss: outside the network",
            connect("198.51.101.1"),
            none.clone(),
        ),
        (
            "trusted inside a c2 network",
            connect("198.51.100.9"),
            none.clone(),
        ),
        (
            "a domain-only category raises nothing for an address",
            connect("192.0.2.50"),
            none.clone(),
        ),
        (
            "user hash",
            exec(Some(USER_SHA)),
            t(
                "Execution:Runtime/MaliciousFileExecuted.Custom",
                8.0,
                &["mine"],
            ),
        ),
        (
            "miner hash, upper case",
            exec(Some(&MINER_SHA.to_uppercase())),
            t("Impact:Runtime/CryptoMinerExecuted", 8.0, &["miners"]),
        ),
        ("trusted hash", exec(Some(TRUSTED_SHA)), none.clone()),
        (
            "near miss: other hash",
            exec(Some(&USER_SHA.replace('9', "8"))),
            none.clone(),
        ),
        ("hash not known yet", exec(None), none.clone()),
    ];
    for (name, ev, want) in cases {
        assert_eq!(fired(&e, &ev), want, "{name}");
    }
}

#[test]
fn the_finding_carries_guardduty_threat_intelligence_details() {
    let e = engine();
    let ev = exec(Some(USER_SHA));
    let mut out = Vec::new();
    e.evaluate(&ev, &mut out);
    let env = FindingEnv {
        node_name: "ip-10-0-1-2".into(),
        ..FindingEnv::default()
    };
    let f = to_finding(&out[0], &ev, &env, Timestamp::now());
    let json = serde_json::to_value(&f).unwrap();
    assert_eq!(
        json["service"]["evidence"],
        serde_json::json!({"threatIntelligenceDetails": [
            {"threatListName": "mine", "threatFileSha256": USER_SHA}
        ]})
    );
    assert_eq!(
        json["service"]["runtimeDetails"]["context"]["threatFilePath"],
        "/tmp/x"
    );
    assert_eq!(
        f.title,
        "An executable on your threat list was run in node ip-10-0-1-2."
    );

    let ev = connect("203.0.113.5");
    out.clear();
    e.evaluate(&ev, &mut out);
    let f = to_finding(&out[0], &ev, &env, Timestamp::now());
    let json = serde_json::to_value(&f).unwrap();
    assert_eq!(
        json["service"]["evidence"]["threatIntelligenceDetails"][0]["threatListName"],
        "c2"
    );
    assert_eq!(out[0].evidence[0].actual, "203.0.113.5");
}

#[test]
fn without_lists_nothing_fires() {
    let mut out = Vec::new();
    Engine::new([]).evaluate(&connect("203.0.113.5"), &mut out);
    assert!(out.is_empty());
}

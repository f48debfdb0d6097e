//! Matching semantics: most specific entry, every list holding it, trusted suppression,
//! wildcards and CNAME chains; and the network table against a brute-force reference.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;
use peregrine_intel::{
    Category, Entry, Format, Intel, IntelBuilder, ListInfo, ListKind, Lookup, parse,
};
use proptest::prelude::*;

const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn list(name: &str, kind: ListKind, category: Category, text: &str) -> (ListInfo, Vec<Entry>) {
    let entries = parse(Format::Txt, text.as_bytes()).unwrap().entries;
    (
        ListInfo {
            name: name.into(),
            kind,
            category,
        },
        entries,
    )
}

fn intel(lists: Vec<(ListInfo, Vec<Entry>)>) -> Intel {
    let mut b = IntelBuilder::new();
    for (info, entries) in lists {
        b.add_list(info, entries).unwrap();
    }
    b.build()
}

/// `entry <- list, list` for a threat match, `trusted:entry` when suppressed, `-` for a miss.
fn show(l: Lookup<'_>) -> String {
    match l {
        Lookup::Miss => "-".into(),
        Lookup::Threat(m) => format!(
            "{} <- {}",
            m.entry,
            m.hits
                .iter()
                .map(|h| h.list.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Lookup::Trusted { trusted, .. } => format!("trusted:{}", trusted.entry),
    }
}

fn sample() -> Intel {
    intel(vec![
        list(
            "c2",
            ListKind::Threat,
            Category::CommandAndControl,
            "10.0.0.0/8\n10.1.0.0/16\n10.1.2.3\n2001:db8::/32\n2001:db8:1::/48\nc2.example\n*.dyn.example\n",
        ),
        list(
            "user",
            ListKind::Threat,
            Category::Custom,
            &format!("10.1.0.0/16\n{SHA}\nc2.example\n"),
        ),
        list(
            "ok",
            ListKind::Trusted,
            Category::Custom,
            "10.9.0.0/16\nsafe.dyn.example\ncdn.example\n",
        ),
    ])
}

#[test]
fn addresses() {
    let i = sample();
    let cases = [
        ("10.1.2.3", "10.1.2.3 <- c2"),
        ("10.1.2.4", "10.1.0.0/16 <- c2, user"),
        ("10.200.0.1", "10.0.0.0/8 <- c2"),
        ("::ffff:10.200.0.1", "10.0.0.0/8 <- c2"),
        ("10.9.1.1", "trusted:10.9.0.0/16"),
        ("11.0.0.0", "-"),
        ("9.255.255.255", "-"),
        ("2001:db8:1::5", "2001:db8:1::/48 <- c2"),
        ("2001:db8:2::5", "2001:db8::/32 <- c2"),
        ("2001:db9::", "-"),
    ];
    for (ip, want) in cases {
        assert_eq!(show(i.lookup_ip(ip.parse().unwrap())), want, "{ip}");
    }
}

#[test]
fn domains() {
    let i = sample();
    let cases = [
        ("c2.example", "c2.example <- c2, user"),
        ("C2.Example.", "c2.example <- c2, user"),
        ("www.c2.example", "-"),
        ("dyn.example", "-"),
        ("a.b.dyn.example", "*.dyn.example <- c2"),
        ("safe.dyn.example", "trusted:safe.dyn.example"),
        ("example", "-"),
        ("", "-"),
    ];
    for (name, want) in cases {
        assert_eq!(show(i.lookup_domain(name)), want, "{name}");
    }
    let long = format!("{}.dyn.example", "a".repeat(300));
    assert_eq!(show(i.lookup_domain(&long)), "-");
}

#[test]
fn cname_chains() {
    let i = sample();
    // The query name is innocent, its CNAME target is not.
    assert_eq!(
        show(i.lookup_chain(["www.shop.example", "x.dyn.example"])),
        "*.dyn.example <- c2"
    );
    let Lookup::Threat(m) = i.lookup_chain(["www.shop.example", "X.dyn.example"]) else {
        panic!()
    };
    assert_eq!(m.name, Some("X.dyn.example"));
    // A trusted query name covers its chain; a trusted target does not cover the query name.
    assert_eq!(
        show(i.lookup_chain(["cdn.example", "c2.example"])),
        "trusted:cdn.example"
    );
    assert_eq!(
        show(i.lookup_chain(["c2.example", "cdn.example"])),
        "c2.example <- c2, user"
    );
    assert_eq!(show(i.lookup_chain(["a.example", "b.example"])), "-");
}

#[test]
fn hashes() {
    let i = sample();
    assert_eq!(show(i.lookup_sha256(SHA)), format!("{SHA} <- user"));
    assert_eq!(
        show(i.lookup_sha256(&SHA.to_uppercase())),
        format!("{SHA} <- user")
    );
    assert_eq!(show(i.lookup_sha256(&SHA[1..])), "-");
    assert_eq!(show(i.lookup_sha256(&format!("{}0", &SHA[..63]))), "-");
    let t = intel(vec![
        list("user", ListKind::Threat, Category::Custom, SHA),
        list("ok", ListKind::Trusted, Category::Custom, SHA),
    ]);
    assert_eq!(show(t.lookup_sha256(SHA)), format!("trusted:{SHA}"));
}

#[test]
fn threat_names_and_stats() {
    let entries = parse(
        Format::AlienVault,
        b"192.0.2.1#4#2#Malicious Host#US##0,0#1\n",
    )
    .unwrap()
    .entries;
    let i = intel(vec![(
        ListInfo {
            name: "av".into(),
            kind: ListKind::Threat,
            category: Category::Custom,
        },
        entries,
    )]);
    let Lookup::Threat(m) = i.lookup_ip("192.0.2.1".parse().unwrap()) else {
        panic!()
    };
    assert_eq!(m.hits[0].threat_name, Some("Malicious Host"));
    let s = sample().stats();
    assert_eq!(
        (s.lists, s.entries, s.addresses, s.domains, s.sha256s),
        (3, 13, 1, 4, 1)
    );
    assert!(s.approx_bytes > 0);
    assert_eq!(
        Intel::empty().lookup_ip("10.0.0.1".parse().unwrap()),
        Lookup::Miss
    );
}

/// The most specific network holding `a`, by brute force.
fn reference(nets: &[Ipv4Net], a: Ipv4Addr) -> Option<Ipv4Net> {
    nets.iter()
        .filter(|n| n.contains(&a))
        .max_by_key(|n| n.prefix_len())
        .copied()
}

proptest! {
    #[test]
    fn networks_match_brute_force(
        nets in prop::collection::vec((any::<u32>(), 0u8..=32), 1..40),
        probes in prop::collection::vec(any::<u32>(), 1..60),
    ) {
        // Cluster the networks so they nest: keep the top byte in a small range.
        let nets: Vec<Ipv4Net> = nets
            .into_iter()
            .map(|(a, l)| Ipv4Net::new(Ipv4Addr::from(a & 0x03ff_ffff), l).unwrap().trunc())
            .collect();
        let text: String = nets.iter().map(|n| format!("{n}\n")).collect();
        let i = intel(vec![list("l", ListKind::Threat, Category::Custom, &text)]);
        let mut addrs: Vec<Ipv4Addr> = probes.iter().map(|p| Ipv4Addr::from(p & 0x03ff_ffff)).collect();
        // Probe every network's edges too.
        for n in &nets {
            addrs.push(n.network());
            addrs.push(n.broadcast());
            if let Some(after) = u32::from(n.broadcast()).checked_add(1) {
                addrs.push(after.into());
            }
        }
        for a in addrs {
            let want = reference(&nets, a).map(|n| {
                if n.prefix_len() == 32 { n.addr().to_string() } else { n.to_string() }
            });
            let got = match i.lookup_ip(IpAddr::V4(a)) {
                Lookup::Threat(m) => Some(m.entry.to_string()),
                _ => None,
            };
            prop_assert_eq!(got, want, "{}", a);
        }
    }
}

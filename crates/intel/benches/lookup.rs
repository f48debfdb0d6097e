#![allow(clippy::expect_used)] // a benchmark harness: failing loudly is the point
//! Lookup throughput with 1,000,000 entries loaded, one thread.
//!
//!     cargo bench -p peregrine-intel --bench lookup
//!
//! The threat lists hold 400k IPv4 addresses, 100k IPv4 networks (/16 to /32, nested),
//! 50k IPv6 addresses and networks, 300k domains (a tenth of them `*.` wildcards) and 150k
//! SHA-256s, plus a trusted list of 2,000 entries (GuardDuty's limit). Lookups mix hits and
//! misses (a tenth hit); domain lookups are names two labels below a listed or unlisted
//! domain, so wildcard suffixes are walked. Set `PEREGRINE_BENCH_SECS` to change each phase's
//! run time (default 3 s).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use peregrine_intel::{Category, Entry, Indicator, IntelBuilder, ListInfo, ListKind, Lookup};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn domain(i: u64) -> String {
    format!(
        "d{i:x}-{}.example{}",
        i % 97,
        ["", ".net", ".org", ".io"][(i % 4) as usize]
    )
}

fn sha(i: u64) -> [u8; 32] {
    let mut h = [0u8; 32];
    for (k, b) in h.iter_mut().enumerate() {
        *b = (i
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(k as u32 * 5)
            >> (k % 8)) as u8;
    }
    h
}

fn hex(h: &[u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

fn entry(indicator: Indicator) -> Entry {
    Entry {
        indicator,
        threat_name: None,
    }
}

fn run<F: FnMut(usize) -> bool>(what: &str, n: usize, secs: f64, mut f: F) {
    let deadline = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut done = 0u64;
    let mut hits = 0u64;
    while start.elapsed() < deadline {
        for i in 0..n {
            hits += u64::from(f(i));
        }
        done += n as u64;
    }
    let per_s = done as f64 / start.elapsed().as_secs_f64();
    println!(
        "{what:<10} {:>6.2} M lookups/s per core ({:.0} ns each, {:.1}% hits)",
        per_s / 1e6,
        1e9 / per_s,
        100.0 * hits as f64 / done as f64
    );
}

fn main() {
    let secs: f64 = std::env::var("PEREGRINE_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut entries = Vec::with_capacity(1_000_000);
    let mut v4 = Vec::new();
    for _ in 0..400_000 {
        let a = Ipv4Addr::from(rng.next() as u32);
        v4.push(a);
        entries.push(entry(Indicator::Net(IpNet::from(IpAddr::V4(a)))));
    }
    for _ in 0..100_000 {
        let len = 16 + (rng.next() % 17) as u8;
        let net = Ipv4Net::new(Ipv4Addr::from(rng.next() as u32), len)
            .expect("len")
            .trunc();
        entries.push(entry(Indicator::Net(IpNet::V4(net))));
    }
    let mut v6 = Vec::new();
    for i in 0..50_000u64 {
        let a = Ipv6Addr::from((0x2001_0db8u128 << 96) | u128::from(rng.next()) << 16);
        v6.push(a);
        let len = if i % 2 == 0 { 128 } else { 48 + (i % 64) as u8 };
        let net = Ipv6Net::new(a, len).expect("len").trunc();
        entries.push(entry(Indicator::Net(IpNet::V6(net))));
    }
    for i in 0..300_000u64 {
        entries.push(entry(Indicator::Domain {
            name: domain(i),
            wildcard: i % 10 == 0,
        }));
    }
    for i in 0..150_000u64 {
        entries.push(entry(Indicator::Sha256(sha(i))));
    }
    assert_eq!(entries.len(), 1_000_000);
    let trusted: Vec<Entry> = (0..2_000u64)
        .map(|i| {
            entry(Indicator::Domain {
                name: domain(i * 7 + 1),
                wildcard: false,
            })
        })
        .collect();

    let t = Instant::now();
    let mut b = IntelBuilder::new();
    let threat = ListInfo {
        name: "bench".into(),
        kind: ListKind::Threat,
        category: Category::Custom,
    };
    let ok = ListInfo {
        name: "ok".into(),
        kind: ListKind::Trusted,
        category: Category::Custom,
    };
    b.add_list(threat, entries).expect("list");
    b.add_list(ok, trusted).expect("list");
    let intel = b.build();
    let s = intel.stats();
    println!(
        "built in {:.2} s: {} entries, {} addresses, {} network ranges, {} domains, {} SHA-256s, ~{} MiB",
        t.elapsed().as_secs_f64(),
        s.entries,
        s.addresses,
        s.networks,
        s.domains,
        s.sha256s,
        s.approx_bytes >> 20
    );

    // Probes: 1 in 10 a listed value (or inside a listed network), the rest random.
    const N: usize = 1 << 16;
    let ips: Vec<IpAddr> = (0..N)
        .map(|i| match i % 20 {
            0 => IpAddr::V4(v4[rng.next() as usize % v4.len()]),
            1 => IpAddr::V6(v6[rng.next() as usize % v6.len()]),
            2..=4 => IpAddr::V6(Ipv6Addr::from(
                (0x2001_0db8u128 << 96) | u128::from(rng.next()),
            )),
            _ => IpAddr::V4(Ipv4Addr::from(rng.next() as u32)),
        })
        .collect();
    let names: Vec<String> = (0..N)
        .map(|i| {
            let d = if i % 10 == 0 {
                domain(rng.next() % 300_000)
            } else {
                domain(1_000_000 + rng.next() % 1_000_000)
            };
            if i % 3 == 0 {
                d
            } else {
                format!("www.cdn{}.{d}", i % 7)
            }
        })
        .collect();
    let hashes: Vec<String> = (0..N)
        .map(|i| {
            hex(&sha(if i % 10 == 0 {
                rng.next() % 150_000
            } else {
                1_000_000 + rng.next()
            }))
        })
        .collect();

    run("addresses", N, secs, |i| {
        ips.get(i)
            .is_some_and(|ip| !matches!(black_box(intel.lookup_ip(*ip)), Lookup::Miss))
    });
    run("domains", N, secs, |i| {
        names
            .get(i)
            .is_some_and(|n| !matches!(black_box(intel.lookup_domain(n)), Lookup::Miss))
    });
    run("sha256", N, secs, |i| {
        hashes
            .get(i)
            .is_some_and(|h| !matches!(black_box(intel.lookup_sha256(h)), Lookup::Miss))
    });
}

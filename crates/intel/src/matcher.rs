//! The matcher: threat and trusted lists compiled into lookup tables.
//!
//! - Addresses: single addresses in a hash map; networks in a sorted table of disjoint ranges,
//!   each resolved to its most specific network, so a lookup is one hash probe and one binary
//!   search, whatever the number of prefix lengths. The most specific entry wins (an address
//!   over a network, a /24 over a /16).
//! - Domains: exact names and wildcard suffixes in hash maps; a name is looked up whole, then
//!   each parent suffix against the wildcards, most specific first.
//! - SHA-256s: a hash map of the 32 bytes.
//!
//! Each table slot heads a chain of hits, one per list (and threat name) holding the entry, so
//! an entry in two lists reports both. A trusted entry covering the value (any trusted
//! address, network, name or hash) suppresses the match.

use std::collections::HashMap as StdMap;

/// foldhash's randomly seeded hasher: lookups hash event values (attacker-chosen) but never
/// insert them, and the seed is per process; SipHash would cost a third of a lookup.
type HashMap<K, V> = StdMap<K, V, foldhash::fast::RandomState>;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::indicator::{Indicator, MAX_DOMAIN_LEN, Sha256Hex, canonical_ip, decode_sha256};
use crate::parse::Entry;

/// Threat or trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ListKind {
    Threat,
    Trusted,
}

/// What a threat list is about. Built-in lists say which GuardDuty threat family their entries
/// belong to (and so which finding type a match raises); a user's threat list is `Custom`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Category {
    /// User-supplied threat list: the `.Custom` finding types.
    Custom,
    /// Command-and-control servers (`Backdoor:Runtime/C&CActivity.B`, `!DNS`).
    CommandAndControl,
    /// Cryptocurrency mining pools and services (`CryptoCurrency:Runtime/BitcoinTool.B`, `!DNS`).
    CryptoCurrency,
    /// Tor relays (`UnauthorizedAccess:Runtime/TorClient`).
    TorRelay,
    /// Sinkholes and black-hole addresses (`Trojan:Runtime/BlackholeTraffic`, `!DNS`).
    Blackhole,
    /// Drop points for stolen data (`Trojan:Runtime/DropPoint`, `!DNS`).
    DropPoint,
    /// Known DGA domains (`Trojan:Runtime/DGADomainRequest.C!DNS`).
    Dga,
    /// Drive-by download sources (`Trojan:Runtime/DriveBySourceTraffic!DNS`).
    DriveBySource,
    /// Phishing domains (`Trojan:Runtime/PhishingDomainRequest!DNS`).
    Phishing,
    /// Malicious executables (`Execution:Runtime/MaliciousFileExecuted`).
    MaliciousFile,
    /// Crypto-miner executables (`Impact:Runtime/CryptoMinerExecuted`).
    CryptoMiner,
}

/// A list as loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListInfo {
    /// The list's name: `threatListName` in findings.
    pub name: String,
    pub kind: ListKind,
    pub category: Category,
}

/// One list holding the matched entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit<'a> {
    pub list: &'a ListInfo,
    /// The threat name the list gave the entry, if any (`threatNames`).
    pub threat_name: Option<&'a str>,
}

/// The entry that matched, as it was written in the list (normalised).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchedEntry<'a> {
    Net(IpNet),
    Domain { name: &'a str, wildcard: bool },
    Sha256(&'a [u8; 32]),
}

impl std::fmt::Display for MatchedEntry<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MatchedEntry::Net(n) if n.prefix_len() == n.max_prefix_len() => {
                write!(f, "{}", n.addr())
            }
            MatchedEntry::Net(n) => write!(f, "{n}"),
            MatchedEntry::Domain { name, wildcard } => {
                write!(f, "{}{name}", if *wildcard { "*." } else { "" })
            }
            MatchedEntry::Sha256(h) => write!(f, "{}", Sha256Hex(h)),
        }
    }
}

/// A match: the entry and every list that holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matched<'a> {
    pub entry: MatchedEntry<'a>,
    /// For a domain lookup over a CNAME chain, the name in the chain that matched.
    pub name: Option<&'a str>,
    /// At least one.
    pub hits: Vec<Hit<'a>>,
}

/// The outcome of a lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// In no threat list.
    Miss,
    Threat(Matched<'a>),
    /// In a threat list, but a trusted list covers it: no finding.
    Trusted {
        threat: Matched<'a>,
        trusted: Matched<'a>,
    },
}

impl<'a> Lookup<'a> {
    /// The threat match, unless none or suppressed.
    pub fn threat(self) -> Option<Matched<'a>> {
        match self {
            Lookup::Threat(m) => Some(m),
            _ => None,
        }
    }
}

const NONE: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct HitRec {
    list: u16,
    name: u32,
    next: u32,
}

#[derive(Clone, Copy, Debug)]
struct Range<T> {
    start: T,
    end: T,
    /// The network this range belongs to (its most specific covering entry).
    net: T,
    len: u8,
    hit: u32,
}

/// One kind's (threat or trusted) tables.
#[derive(Debug, Default)]
struct Table {
    hosts4: HashMap<u32, u32>,
    hosts6: HashMap<u128, u32>,
    ranges4: Vec<Range<u32>>,
    ranges6: Vec<Range<u128>>,
    exact: HashMap<Box<str>, u32>,
    wild: HashMap<Box<str>, u32>,
    sha: HashMap<[u8; 32], u32>,
}

/// Compiled threat and trusted lists. Immutable once built; `Sync`, so one serves every
/// thread. Build with [`IntelBuilder`].
#[derive(Debug, Default)]
pub struct Intel {
    lists: Vec<ListInfo>,
    names: Vec<Box<str>>,
    hits: Vec<HitRec>,
    threat: Table,
    trusted: Table,
    entries: usize,
}

/// Counts and approximate memory of a built [`Intel`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IntelStats {
    pub lists: usize,
    /// Entries added, duplicates included.
    pub entries: usize,
    pub addresses: usize,
    pub networks: usize,
    pub domains: usize,
    pub sha256s: usize,
    /// Approximate heap bytes of the tables (capacity times slot size, plus strings).
    pub approx_bytes: usize,
}

/// Pending network entries, keyed by (network address, prefix length).
#[derive(Default)]
struct PendingNets {
    v4: HashMap<(u32, u8), u32>,
    v6: HashMap<(u128, u8), u32>,
}

/// Collects lists, then [`IntelBuilder::build`]s the tables.
#[derive(Default)]
pub struct IntelBuilder {
    intel: Intel,
    name_ids: HashMap<Box<str>, u32>,
    nets: [PendingNets; 2],
}

/// Too many lists or threat names for the compact tables.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildError {
    #[error("more than {max} lists")]
    TooManyLists { max: usize },
    #[error("more than {max} entries")]
    TooManyEntries { max: usize },
}

impl IntelBuilder {
    pub fn new() -> IntelBuilder {
        IntelBuilder::default()
    }

    /// Adds a list and its entries.
    pub fn add_list<I: IntoIterator<Item = Entry>>(
        &mut self,
        info: ListInfo,
        entries: I,
    ) -> Result<(), BuildError> {
        let list = u16::try_from(self.intel.lists.len()).map_err(|_| BuildError::TooManyLists {
            max: u16::MAX as usize,
        })?;
        let kind = info.kind;
        self.intel.lists.push(info);
        for e in entries {
            self.add(list, kind, e.indicator, e.threat_name.as_deref())?;
        }
        Ok(())
    }

    fn add(
        &mut self,
        list: u16,
        kind: ListKind,
        indicator: Indicator,
        threat_name: Option<&str>,
    ) -> Result<(), BuildError> {
        let name = match threat_name {
            None => NONE,
            Some(n) => match self.name_ids.get(n) {
                Some(&id) => id,
                None => {
                    let id = u32::try_from(self.intel.names.len())
                        .ok()
                        .filter(|&id| id != NONE)
                        .ok_or(BuildError::TooManyEntries { max: NONE as usize })?;
                    self.intel.names.push(n.into());
                    self.name_ids.insert(n.into(), id);
                    id
                }
            },
        };
        self.intel.entries += 1;
        let hits = &mut self.intel.hits;
        let table = match kind {
            ListKind::Threat => &mut self.intel.threat,
            ListKind::Trusted => &mut self.intel.trusted,
        };
        let pending = &mut self.nets[kind as usize];
        match indicator {
            Indicator::Net(IpNet::V4(n)) if n.prefix_len() == 32 => chain(
                hits,
                table.hosts4.entry(u32::from(n.addr())).or_insert(NONE),
                list,
                name,
            ),
            Indicator::Net(IpNet::V6(n)) if n.prefix_len() == 128 => chain(
                hits,
                table.hosts6.entry(u128::from(n.addr())).or_insert(NONE),
                list,
                name,
            ),
            Indicator::Net(IpNet::V4(n)) => chain(
                hits,
                pending
                    .v4
                    .entry((u32::from(n.network()), n.prefix_len()))
                    .or_insert(NONE),
                list,
                name,
            ),
            Indicator::Net(IpNet::V6(n)) => chain(
                hits,
                pending
                    .v6
                    .entry((u128::from(n.network()), n.prefix_len()))
                    .or_insert(NONE),
                list,
                name,
            ),
            Indicator::Domain { name: d, wildcard } => {
                let map = if wildcard {
                    &mut table.wild
                } else {
                    &mut table.exact
                };
                chain(
                    hits,
                    map.entry(d.into_boxed_str()).or_insert(NONE),
                    list,
                    name,
                )
            }
            Indicator::Sha256(h) => chain(hits, table.sha.entry(h).or_insert(NONE), list, name),
        }
    }

    /// Compiles the tables.
    pub fn build(mut self) -> Intel {
        let [threat, trusted] = std::mem::take(&mut self.nets);
        for (pending, table) in [
            (threat, &mut self.intel.threat),
            (trusted, &mut self.intel.trusted),
        ] {
            table.ranges4 = disjoint(pending.v4);
            table.ranges6 = disjoint(pending.v6);
            table.hosts4.shrink_to_fit();
            table.hosts6.shrink_to_fit();
            table.exact.shrink_to_fit();
            table.wild.shrink_to_fit();
            table.sha.shrink_to_fit();
        }
        self.intel.hits.shrink_to_fit();
        self.intel.names.shrink_to_fit();
        self.intel
    }
}

/// Prepends a hit to a chain, unless the same list already gave the same name.
fn chain(hits: &mut Vec<HitRec>, head: &mut u32, list: u16, name: u32) -> Result<(), BuildError> {
    let mut i = *head;
    while let Some(h) = hits.get(i as usize) {
        if h.list == list && h.name == name {
            return Ok(());
        }
        i = h.next;
    }
    let id = u32::try_from(hits.len())
        .ok()
        .filter(|&id| id != NONE)
        .ok_or(BuildError::TooManyEntries { max: NONE as usize })?;
    hits.push(HitRec {
        list,
        name,
        next: *head,
    });
    *head = id;
    Ok(())
}

/// Unsigned address types for the range tables.
trait Addr: Copy + Ord + std::hash::Hash + std::fmt::Debug {
    fn last_of(net: Self, len: u8) -> Self;
    fn next(self) -> Option<Self>;
    fn prev(self) -> Option<Self>;
}

impl Addr for u32 {
    fn last_of(net: u32, len: u8) -> u32 {
        net | u32::MAX.checked_shr(u32::from(len)).unwrap_or(0)
    }
    fn next(self) -> Option<u32> {
        self.checked_add(1)
    }
    fn prev(self) -> Option<u32> {
        self.checked_sub(1)
    }
}

impl Addr for u128 {
    fn last_of(net: u128, len: u8) -> u128 {
        net | u128::MAX.checked_shr(u32::from(len)).unwrap_or(0)
    }
    fn next(self) -> Option<u128> {
        self.checked_add(1)
    }
    fn prev(self) -> Option<u128> {
        self.checked_sub(1)
    }
}

/// Networks (which nest or are disjoint, never partly overlap) to sorted disjoint ranges, each
/// labelled with the most specific network covering it.
fn disjoint<T: Addr>(nets: HashMap<(T, u8), u32>) -> Vec<Range<T>> {
    let mut nets: Vec<((T, u8), u32)> = nets.into_iter().collect();
    // By start, then the widest first: a network's sub-networks follow it.
    nets.sort_unstable_by_key(|((start, len), _)| (*start, *len));
    let mut out: Vec<Range<T>> = Vec::new();
    // Open networks, outermost first: (end, net, len, hit).
    let mut stack: Vec<(T, T, u8, u32)> = Vec::new();
    // The first address not yet covered by an emitted range; None once past the top.
    let mut cursor: Option<T> = None;
    let emit = |out: &mut Vec<Range<T>>, start: T, end: T, top: &(T, T, u8, u32)| {
        if start <= end {
            out.push(Range {
                start,
                end,
                net: top.1,
                len: top.2,
                hit: top.3,
            });
        }
    };
    // Closes every open network ending before `until` (all of them for None).
    let close = |out: &mut Vec<Range<T>>,
                 stack: &mut Vec<(T, T, u8, u32)>,
                 cursor: &mut Option<T>,
                 until: Option<T>| {
        while let Some(top) = stack.last().copied() {
            if until.is_some_and(|u| top.0 >= u) {
                break;
            }
            if let Some(c) = *cursor {
                emit(out, c, top.0, &top);
            }
            *cursor = top.0.next();
            stack.pop();
            if cursor.is_none() {
                stack.clear();
            }
        }
    };
    for ((start, len), hit) in nets {
        let end = T::last_of(start, len);
        close(&mut out, &mut stack, &mut cursor, Some(start));
        if let (Some(top), Some(c), Some(before)) = (stack.last(), cursor, start.prev()) {
            emit(&mut out, c, before, top);
        }
        cursor = Some(start);
        stack.push((end, start, len, hit));
    }
    close(&mut out, &mut stack, &mut cursor, None);
    out.shrink_to_fit();
    out
}

fn find_range<T: Addr>(ranges: &[Range<T>], a: T) -> Option<&Range<T>> {
    let i = ranges.partition_point(|r| r.start <= a);
    let r = ranges.get(i.checked_sub(1)?)?;
    (a <= r.end).then_some(r)
}

/// Lowercases a name into a stack buffer, without its trailing dot; None if too long or not
/// ASCII (names from DNS are ASCII: internationalised ones travel as punycode).
fn lower_name(name: &str, buf: &mut [u8; MAX_DOMAIN_LEN]) -> Option<usize> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let b = name.as_bytes();
    if b.is_empty() || b.len() > MAX_DOMAIN_LEN || !name.is_ascii() {
        return None;
    }
    let dst = buf.get_mut(..b.len())?;
    for (d, s) in dst.iter_mut().zip(b) {
        *d = s.to_ascii_lowercase();
    }
    Some(b.len())
}

impl Table {
    /// (entry, hit head) for an address.
    fn ip(&self, ip: IpAddr) -> Option<(IpNet, u32)> {
        match canonical_ip(ip) {
            IpAddr::V4(v4) => {
                let a = u32::from(v4);
                if let Some(&h) = self.hosts4.get(&a) {
                    return Some((IpNet::from(IpAddr::V4(v4)), h));
                }
                let r = find_range(&self.ranges4, a)?;
                let net = ipnet::Ipv4Net::new(r.net.into(), r.len).ok()?;
                Some((IpNet::V4(net), r.hit))
            }
            IpAddr::V6(v6) => {
                let a = u128::from(v6);
                if let Some(&h) = self.hosts6.get(&a) {
                    return Some((IpNet::from(IpAddr::V6(v6)), h));
                }
                let r = find_range(&self.ranges6, a)?;
                let net = ipnet::Ipv6Net::new(r.net.into(), r.len).ok()?;
                Some((IpNet::V6(net), r.hit))
            }
        }
    }

    /// (stored name, wildcard, hit head) for a lowercased name: the exact name first, then
    /// wildcards from the longest suffix (`*.b.c` for `a.b.c`) to the shortest.
    fn domain<'t>(&'t self, name: &str) -> Option<(&'t str, bool, u32)> {
        if let Some((k, &h)) = self.exact.get_key_value(name) {
            return Some((k, false, h));
        }
        if self.wild.is_empty() {
            return None;
        }
        let mut rest = name;
        while let Some(dot) = rest.find('.') {
            rest = rest.get(dot + 1..)?;
            if let Some((k, &h)) = self.wild.get_key_value(rest) {
                return Some((k, true, h));
            }
        }
        None
    }

    fn bytes(&self) -> usize {
        fn map<K, V>(m: &HashMap<K, V>) -> usize {
            // hashbrown: one control byte per bucket, plus the slot.
            m.capacity() * (std::mem::size_of::<(K, V)>() + 1)
        }
        map(&self.hosts4)
            + map(&self.hosts6)
            + self.ranges4.capacity() * std::mem::size_of::<Range<u32>>()
            + self.ranges6.capacity() * std::mem::size_of::<Range<u128>>()
            + map(&self.exact)
            + self.exact.keys().map(|k| k.len()).sum::<usize>()
            + map(&self.wild)
            + self.wild.keys().map(|k| k.len()).sum::<usize>()
            + map(&self.sha)
    }
}

impl Intel {
    /// No lists.
    pub fn empty() -> Intel {
        Intel::default()
    }

    pub fn lists(&self) -> &[ListInfo] {
        &self.lists
    }

    fn hits(&self, mut head: u32) -> Vec<Hit<'_>> {
        let mut v = Vec::with_capacity(1);
        while let Some(h) = self.hits.get(head as usize) {
            if let Some(list) = self.lists.get(h.list as usize) {
                v.push(Hit {
                    list,
                    threat_name: self.names.get(h.name as usize).map(|n| &**n),
                });
            }
            head = h.next;
        }
        // Lists in the order they were added.
        v.reverse();
        v
    }

    /// Looks up a remote address. Allocates only on a match.
    pub fn lookup_ip(&self, ip: IpAddr) -> Lookup<'_> {
        let Some((net, head)) = self.threat.ip(ip) else {
            return Lookup::Miss;
        };
        let threat = Matched {
            entry: MatchedEntry::Net(net),
            name: None,
            hits: self.hits(head),
        };
        match self.trusted.ip(ip) {
            Some((tnet, th)) => Lookup::Trusted {
                threat,
                trusted: Matched {
                    entry: MatchedEntry::Net(tnet),
                    name: None,
                    hits: self.hits(th),
                },
            },
            None => Lookup::Threat(threat),
        }
    }

    /// Looks up a domain name (a DNS query name). See [`Intel::lookup_chain`].
    pub fn lookup_domain<'a>(&'a self, name: &'a str) -> Lookup<'a> {
        self.lookup_chain([name])
    }

    /// Looks up a DNS query name and its CNAME chain (the query name first): the first name
    /// in the chain that a threat list holds matches, unless a trusted list holds that name
    /// or the query name. Names that are not ASCII or longer than 253 characters match
    /// nothing. Allocates only on a match.
    pub fn lookup_chain<'a, I>(&'a self, names: I) -> Lookup<'a>
    where
        I: IntoIterator<Item = &'a str>,
    {
        let mut buf = [0u8; MAX_DOMAIN_LEN];
        let mut first_trusted: Option<Option<Matched<'a>>> = None;
        for name in names {
            let Some(n) = lower_name(name, &mut buf) else {
                continue;
            };
            let Some(lower) = buf.get(..n).and_then(|b| std::str::from_utf8(b).ok()) else {
                continue;
            };
            let trusted = self.trusted_domain(lower, name);
            if first_trusted.is_none() {
                first_trusted = Some(trusted.clone());
            }
            let Some((k, wildcard, head)) = self.threat.domain(lower) else {
                continue;
            };
            let threat = Matched {
                entry: MatchedEntry::Domain { name: k, wildcard },
                name: Some(name),
                hits: self.hits(head),
            };
            return match trusted.or(first_trusted.flatten()) {
                Some(t) => Lookup::Trusted { threat, trusted: t },
                None => Lookup::Threat(threat),
            };
        }
        Lookup::Miss
    }

    fn trusted_domain<'a>(&'a self, lower: &str, name: &'a str) -> Option<Matched<'a>> {
        let (k, wildcard, head) = self.trusted.domain(lower)?;
        Some(Matched {
            entry: MatchedEntry::Domain { name: k, wildcard },
            name: Some(name),
            hits: self.hits(head),
        })
    }

    /// Looks up an executable's SHA-256 (64 hex digits, either case; anything else misses).
    pub fn lookup_sha256(&self, hex: &str) -> Lookup<'_> {
        let Some(h) = decode_sha256(hex) else {
            return Lookup::Miss;
        };
        let Some((k, &head)) = self.threat.sha.get_key_value(&h) else {
            return Lookup::Miss;
        };
        let threat = Matched {
            entry: MatchedEntry::Sha256(k),
            name: None,
            hits: self.hits(head),
        };
        match self.trusted.sha.get_key_value(&h) {
            Some((tk, &th)) => Lookup::Trusted {
                threat,
                trusted: Matched {
                    entry: MatchedEntry::Sha256(tk),
                    name: None,
                    hits: self.hits(th),
                },
            },
            None => Lookup::Threat(threat),
        }
    }

    /// Counts and approximate memory.
    pub fn stats(&self) -> IntelStats {
        let t = [&self.threat, &self.trusted];
        IntelStats {
            lists: self.lists.len(),
            entries: self.entries,
            addresses: t.iter().map(|t| t.hosts4.len() + t.hosts6.len()).sum(),
            networks: t.iter().map(|t| t.ranges4.len() + t.ranges6.len()).sum(),
            domains: t.iter().map(|t| t.exact.len() + t.wild.len()).sum(),
            sha256s: t.iter().map(|t| t.sha.len()).sum(),
            approx_bytes: t.iter().map(|t| t.bytes()).sum::<usize>()
                + self.hits.capacity() * std::mem::size_of::<HitRec>()
                + self.names.capacity() * std::mem::size_of::<Box<str>>()
                + self.names.iter().map(|n| n.len()).sum::<usize>()
                + self
                    .lists
                    .iter()
                    .map(|l| l.name.len() + std::mem::size_of::<ListInfo>())
                    .sum::<usize>(),
        }
    }
}

//! One list entry: an address or network, a domain, or a file's SHA-256, normalised.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// Longest domain name DNS allows (RFC 1035 §2.3.4), without the trailing dot.
pub const MAX_DOMAIN_LEN: usize = 253;
/// Longest DNS label.
pub const MAX_LABEL_LEN: usize = 63;
/// Longest threat name kept from a list (longer names are cut).
pub const MAX_THREAT_NAME_LEN: usize = 256;

/// What a list entry matches.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Indicator {
    /// An address (a /32 or /128 network) or a network, host bits cleared.
    Net(IpNet),
    /// A domain name, lowercase ASCII (punycode for internationalised names), no trailing dot.
    /// `wildcard`: the entry was `*.name` and matches names below `name`, not `name` itself.
    Domain { name: String, wildcard: bool },
    /// A file's SHA-256.
    Sha256([u8; 32]),
}

impl fmt::Display for Indicator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Indicator::Net(n) if n.prefix_len() == n.max_prefix_len() => write!(f, "{}", n.addr()),
            Indicator::Net(n) => write!(f, "{n}"),
            Indicator::Domain { name, wildcard } => {
                write!(f, "{}{name}", if *wildcard { "*." } else { "" })
            }
            Indicator::Sha256(h) => write!(f, "{}", Sha256Hex(h)),
        }
    }
}

/// Lowercase hex of a SHA-256.
pub struct Sha256Hex<'a>(pub &'a [u8; 32]);

impl fmt::Display for Sha256Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Why a value is not an indicator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    Empty,
    /// Has a `/` but is not a network (`10.0.0.0/33`, `host/path`).
    BadNetwork,
    /// Looks like a URL; lists take the domain or the address.
    Url,
    /// Longer than 253 characters, or a label longer than 63.
    DomainTooLong,
    /// Characters a host name cannot have, an empty label, or an all-digit last label.
    BadDomain,
    /// A hash, but not a SHA-256 (MD5 and SHA-1 are not matched).
    NotSha256,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Invalid::Empty => "empty value",
            Invalid::BadNetwork => "not an address or CIDR network",
            Invalid::Url => "a URL (give the domain or the address)",
            Invalid::DomainTooLong => "domain longer than 253 characters or a label longer than 63",
            Invalid::BadDomain => "not an address, network, domain or SHA-256",
            Invalid::NotSha256 => "a hash other than SHA-256 (MD5 and SHA-1 are not matched)",
        })
    }
}

/// Parses one value as GuardDuty's plaintext lists take it: an IPv4 or IPv6 address, a CIDR
/// network, a domain (`*.` for its subdomains) or a SHA-256 in hex.
pub fn parse_indicator(s: &str) -> Result<Indicator, Invalid> {
    let s = s.trim();
    if s.is_empty() {
        return Err(Invalid::Empty);
    }
    if s.contains("://") {
        return Err(Invalid::Url);
    }
    if s.contains('/') {
        return parse_net(s);
    }
    if let Ok(ip) = IpAddr::from_str(s) {
        return Ok(Indicator::Net(host_net(ip)));
    }
    // Digits and dots (`192.0.2.300`), or colons: a mistyped address, not a domain.
    if s.contains(':') || s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(Invalid::BadNetwork);
    }
    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return parse_sha256(s).ok_or(Invalid::BadDomain);
    }
    if matches!(s.len(), 32 | 40) && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Invalid::NotSha256);
    }
    parse_domain(s)
}

/// An address or a CIDR network (host bits cleared: `10.1.2.3/8` is `10.0.0.0/8`).
pub fn parse_net(s: &str) -> Result<Indicator, Invalid> {
    let s = s.trim();
    if let Ok(net) = IpNet::from_str(s) {
        return Ok(Indicator::Net(normalise_net(net)));
    }
    IpAddr::from_str(s)
        .map(|ip| Indicator::Net(host_net(ip)))
        .map_err(|_| Invalid::BadNetwork)
}

/// An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) is the IPv4 address, in lists and lookups.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

fn host_net(ip: IpAddr) -> IpNet {
    IpNet::from(canonical_ip(ip))
}

fn normalise_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(|n| IpNet::V4(n.trunc()))
                .unwrap_or(net.trunc()),
            None => net.trunc(),
        },
        _ => net.trunc(),
    }
}

/// A SHA-256 in hex (either case).
pub fn parse_sha256(s: &str) -> Option<Indicator> {
    decode_sha256(s.trim()).map(Indicator::Sha256)
}

/// 64 hex digits to bytes, without allocating.
pub fn decode_sha256(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        let hi = hex_val(*b.get(2 * i)?)?;
        let lo = hex_val(*b.get(2 * i + 1)?)?;
        *o = (hi << 4) | lo;
    }
    Some(out)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// A domain entry: `*.` prefix for a wildcard, trailing dot dropped, lowercase; an
/// internationalised name becomes its punycode (`xn--`) form, and punycode is kept as written.
pub fn parse_domain(s: &str) -> Result<Indicator, Invalid> {
    let s = s.trim();
    let (wildcard, rest) = match s.strip_prefix("*.") {
        Some(r) => (true, r),
        None => (false, s),
    };
    let name = normalise_domain(rest)?;
    Ok(Indicator::Domain { name, wildcard })
}

/// Normalises a domain name for storage or lookup (see [`parse_domain`]).
pub fn normalise_domain(s: &str) -> Result<String, Invalid> {
    let s = s.strip_suffix('.').unwrap_or(s);
    if s.is_empty() {
        return Err(Invalid::Empty);
    }
    // Bound before any conversion: the IDNA mapping of a huge string costs time.
    if s.len() > 4 * MAX_DOMAIN_LEN {
        return Err(Invalid::DomainTooLong);
    }
    let name = if s.is_ascii() {
        s.to_ascii_lowercase()
    } else {
        idna::domain_to_ascii(s).map_err(|_| Invalid::BadDomain)?
    };
    check_domain(&name)?;
    Ok(name)
}

/// A lowercase ASCII name: at most 253 characters, labels of 1-63 letters, digits, `-` or `_`
/// (underscore appears in real names: `_dmarc`, some CDNs), and a last label that is not all
/// digits (so `1.2.3.999` is not taken for a domain).
pub(crate) fn check_domain(name: &str) -> Result<(), Invalid> {
    if name.len() > MAX_DOMAIN_LEN {
        return Err(Invalid::DomainTooLong);
    }
    let mut last = "";
    for label in name.split('.') {
        if label.is_empty() {
            return Err(Invalid::BadDomain);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(Invalid::DomainTooLong);
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(Invalid::BadDomain);
        }
        last = label;
    }
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Invalid::BadDomain);
    }
    Ok(())
}

/// A threat name from a list, bounded and with control characters replaced; `None` if blank.
pub(crate) fn threat_name(s: &str) -> Option<String> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    Some(
        s.chars()
            .take(MAX_THREAT_NAME_LEN)
            .map(|c| if c.is_control() { '\u{fffd}' } else { c })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        let ok = [
            ("192.0.2.1", "192.0.2.1"),
            (" 198.51.100.0/24 ", "198.51.100.0/24"),
            ("198.51.100.7/24", "198.51.100.0/24"),
            ("2001:db8::1", "2001:db8::1"),
            ("2001:DB8::/32", "2001:db8::/32"),
            ("::ffff:192.0.2.9", "192.0.2.9"),
            ("::ffff:192.0.2.0/120", "192.0.2.0/24"),
            ("Evil.Example.COM.", "evil.example.com"),
            ("*.pool.example", "*.pool.example"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
            ("bücher.example", "xn--bcher-kva.example"),
            (
                "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
        ];
        for (input, want) in ok {
            let got = parse_indicator(input).map(|i| i.to_string());
            assert_eq!(got, Ok(want.to_owned()), "{input}");
        }
        let bad = [
            ("", Invalid::Empty),
            ("10.0.0.0/33", Invalid::BadNetwork),
            ("http://evil.example/x", Invalid::Url),
            ("d41d8cd98f00b204e9800998ecf8427e", Invalid::NotSha256),
            ("1.2.3.999", Invalid::BadNetwork),
            ("bad domain.example", Invalid::BadDomain),
            ("a..example", Invalid::BadDomain),
            ("*.", Invalid::Empty),
        ];
        for (input, want) in bad {
            assert_eq!(parse_indicator(input), Err(want), "{input:?}");
        }
        let long = format!("{}.example", "a".repeat(64));
        assert_eq!(parse_indicator(&long), Err(Invalid::DomainTooLong));
        let long = format!("{}example", "abcdefghi.".repeat(25));
        assert_eq!(parse_indicator(&long), Err(Invalid::DomainTooLong));
    }
}

//! GuardDuty's list formats: plaintext, STIX (1.x XML and 2.x JSON), OTX CSV, FireEye iSIGHT
//! CSV, Proofpoint ET CSV and AlienVault reputation.
//!
//! Lists are untrusted input (a user's S3 object, a feed): every value is bounded, a malformed
//! line is counted and reported with its line number and never stops the parse, and only a
//! list of which nothing could be read is an error.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use quick_xml::events::Event as XmlEvent;
use regex::Regex;

use crate::indicator::{
    Indicator, Invalid, parse_domain, parse_indicator, parse_net, parse_sha256, threat_name,
};

/// Largest list accepted, as GuardDuty's limit for a list file (35 MB).
pub const MAX_FILE_BYTES: usize = 35 * 1024 * 1024;
/// Longest line (or CSV record, or XML value) read; longer ones are rejected.
pub const MAX_LINE_BYTES: usize = 4096;
/// How many rejected lines are kept with their reason; the rest are only counted.
pub const MAX_REPORTED: usize = 100;

/// A list format, by the names GuardDuty's API uses (`format` of an entity set).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// `TXT`: one value per line, `#` comments.
    Txt,
    /// `STIX`: STIX 1.x XML or a STIX 2.x JSON bundle (told apart by the first character).
    Stix,
    /// `OTX_CSV`: AlienVault OTX pulse export, `Indicator type,Indicator,Description`.
    OtxCsv,
    /// `ALIEN_VAULT`: AlienVault IP reputation, `ip#reliability#risk#activity#country#...`.
    AlienVault,
    /// `PROOF_POINT`: Proofpoint ET Intelligence reputation CSV (`ip,category,score,...` or
    /// `domain,category,score,...`).
    ProofPoint,
    /// `FIRE_EYE`: FireEye iSIGHT Threat Intelligence CSV, columns named in its header.
    FireEye,
}

impl Format {
    pub const ALL: [Format; 6] = [
        Format::Txt,
        Format::Stix,
        Format::OtxCsv,
        Format::AlienVault,
        Format::ProofPoint,
        Format::FireEye,
    ];

    /// GuardDuty's name: `TXT`, `STIX`, `OTX_CSV`, `ALIEN_VAULT`, `PROOF_POINT`, `FIRE_EYE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Txt => "TXT",
            Format::Stix => "STIX",
            Format::OtxCsv => "OTX_CSV",
            Format::AlienVault => "ALIEN_VAULT",
            Format::ProofPoint => "PROOF_POINT",
            Format::FireEye => "FIRE_EYE",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown format name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown list format {0:?}: expected TXT, STIX, OTX_CSV, ALIEN_VAULT, PROOF_POINT or FIRE_EYE"
)]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;
    /// GuardDuty's names, in any case, `-` for `_` accepted.
    fn from_str(s: &str) -> Result<Format, UnknownFormat> {
        let norm = s.trim().to_ascii_uppercase().replace('-', "_");
        Format::ALL
            .into_iter()
            .find(|f| f.as_str() == norm)
            .ok_or_else(|| UnknownFormat(s.chars().take(64).collect()))
    }
}

/// One value read from a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub indicator: Indicator,
    /// The threat the list names for it (STIX indicator name, OTX description, AlienVault
    /// activity, Proofpoint category, FireEye malware family), bounded to 256 characters.
    pub threat_name: Option<String>,
}

/// Where in the list a rejected value was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    /// 1-based line of a text, CSV or XML list.
    Line(u64),
    /// 1-based position of the object in a STIX 2 bundle's `objects`.
    Object(u64),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(n) => write!(f, "line {n}"),
            Location::Object(n) => write!(f, "object {n}"),
        }
    }
}

/// Why a line or value was not read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    Invalid(Invalid),
    /// Longer than [`MAX_LINE_BYTES`].
    LineTooLong,
    /// A CSV record or AlienVault line without the column the format needs.
    MissingColumn(&'static str),
    /// An indicator type the matcher does not take (URL, email, MD5...), as named by the list.
    UnsupportedType(String),
    /// A STIX pattern with no comparison of an address, domain or SHA-256.
    UnsupportedPattern,
    /// The XML, JSON or CSV syntax broke here; the parse stopped.
    Syntax(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Invalid(i) => write!(f, "{i}"),
            Reason::LineTooLong => write!(f, "longer than {MAX_LINE_BYTES} bytes"),
            Reason::MissingColumn(c) => write!(f, "no {c} column"),
            Reason::UnsupportedType(t) => write!(f, "indicator type {t:?} is not matched"),
            Reason::UnsupportedPattern => {
                f.write_str("pattern compares no IP address, network, domain or SHA-256")
            }
            Reason::Syntax(m) => write!(f, "syntax error: {m}"),
        }
    }
}

/// A value that was not read, with the first characters of what was there (escaped when shown).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    pub at: Location,
    pub reason: Reason,
    /// At most 64 characters of the value or line.
    pub excerpt: String,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} ({:?})", self.at, self.reason, self.excerpt)
    }
}

/// What a list held.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParsedList {
    pub entries: Vec<Entry>,
    /// The first [`MAX_REPORTED`] rejected values, in order.
    pub rejected: Vec<Rejected>,
    /// Every rejected value, including those not kept in `rejected`.
    pub rejected_total: usize,
}

impl ParsedList {
    fn reject(&mut self, at: Location, reason: Reason, value: &str) {
        self.rejected_total += 1;
        if self.rejected.len() < MAX_REPORTED {
            self.rejected.push(Rejected {
                at,
                reason,
                excerpt: value.chars().take(64).collect(),
            });
        }
    }

    fn push(
        &mut self,
        at: Location,
        value: &str,
        parsed: Result<Indicator, Invalid>,
        name: Option<&str>,
    ) {
        match parsed {
            Ok(indicator) => self.entries.push(Entry {
                indicator,
                threat_name: name.and_then(threat_name),
            }),
            Err(e) => self.reject(at, Reason::Invalid(e), value),
        }
    }
}

/// A list that could not be used at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("list is {bytes} bytes, more than the {max} accepted")]
    TooLarge { bytes: usize, max: usize },
    #[error("no entry could be read: {rejected_total} values rejected{}", .first.as_ref().map(|r| format!(", the first at {r}")).unwrap_or_default())]
    NothingParsed {
        rejected_total: usize,
        first: Option<Rejected>,
    },
}

/// Parses a list. The bytes are read as UTF-8, an invalid sequence becoming U+FFFD (so the
/// value holding it is rejected, not the list).
pub fn parse(format: Format, bytes: &[u8]) -> Result<ParsedList, ParseError> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(ParseError::TooLarge {
            bytes: bytes.len(),
            max: MAX_FILE_BYTES,
        });
    }
    let text = String::from_utf8_lossy(bytes);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut out = ParsedList::default();
    match format {
        Format::Txt => parse_txt(text, &mut out),
        Format::Stix => {
            if text.trim_start().starts_with(['{', '[']) {
                parse_stix2(text, &mut out)
            } else {
                parse_stix1(text, &mut out)
            }
        }
        Format::OtxCsv => parse_otx(text, &mut out),
        Format::AlienVault => parse_alienvault(text, &mut out),
        Format::ProofPoint => parse_proofpoint(text, &mut out),
        Format::FireEye => parse_fireeye(text, &mut out),
    }
    if out.entries.is_empty() && out.rejected_total > 0 {
        return Err(ParseError::NothingParsed {
            rejected_total: out.rejected_total,
            first: out.rejected.first().cloned(),
        });
    }
    Ok(out)
}

/// Non-empty, non-comment lines with their 1-based numbers; too-long lines are rejected here.
fn lines<'a>(text: &'a str, out: &mut ParsedList) -> Vec<(u64, &'a str)> {
    let mut v = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let n = i as u64 + 1;
        if line.len() > MAX_LINE_BYTES {
            out.reject(Location::Line(n), Reason::LineTooLong, line);
            continue;
        }
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        v.push((n, line));
    }
    v
}

fn parse_txt(text: &str, out: &mut ParsedList) {
    for (n, line) in lines(text, out) {
        out.push(Location::Line(n), line, parse_indicator(line), None);
    }
}

/// AlienVault reputation: `ip#reliability#risk#activity#country#city#lat,long#...`; the
/// activity (`Malicious Host`, `Scanning Host;Spamming`) is the threat name.
fn parse_alienvault(text: &str, out: &mut ParsedList) {
    for (n, line) in lines(text, out) {
        let mut cols = line.split('#');
        let ip = cols.next().unwrap_or_default();
        let activity = cols.nth(2);
        out.push(Location::Line(n), line, parse_net(ip), activity);
    }
}

/// CSV records with their 1-based line numbers; `#` lines are comments. A broken record is
/// rejected and the next one read.
fn csv_records(text: &str, out: &mut ParsedList) -> Vec<(u64, csv::StringRecord)> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let mut v = Vec::new();
    let mut rec = csv::StringRecord::new();
    loop {
        let line = rdr.position().line();
        match rdr.read_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {
                let n = rec.position().map_or(line, |p| p.line());
                if rec.as_slice().len() > MAX_LINE_BYTES {
                    out.reject(Location::Line(n), Reason::LineTooLong, rec.as_slice());
                } else if rec.iter().any(|f| !f.is_empty()) {
                    v.push((n, rec.clone()));
                }
            }
            Err(e) => {
                out.reject(Location::Line(line), Reason::Syntax(e.to_string()), "");
                // The csv reader resynchronises at the next record after most errors; an
                // I/O-level error cannot happen on a byte slice.
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    break;
                }
            }
        }
    }
    v
}

/// Whether a record is a header row: its first field names a column rather than holding a value.
fn is_header(rec: &csv::StringRecord, names: &[&str]) -> bool {
    rec.get(0)
        .is_some_and(|f| names.iter().any(|n| f.eq_ignore_ascii_case(n)))
}

/// OTX pulse CSV: `Indicator type,Indicator,Description` (the header is optional).
fn parse_otx(text: &str, out: &mut ParsedList) {
    for (n, rec) in csv_records(text, out) {
        if is_header(&rec, &["indicator type", "type"]) {
            continue;
        }
        let at = Location::Line(n);
        let (Some(kind), Some(value)) = (rec.get(0), rec.get(1)) else {
            out.reject(at, Reason::MissingColumn("Indicator"), rec.as_slice());
            continue;
        };
        let name = rec.get(2);
        let parsed = match kind.to_ascii_lowercase().as_str() {
            "ipv4" | "ipv6" | "cidr" => parse_net(value),
            "domain" | "hostname" => parse_domain(value),
            "filehash-sha256" => parse_sha256(value).ok_or(Invalid::BadDomain),
            _ => {
                out.reject(
                    at,
                    Reason::UnsupportedType(kind.chars().take(32).collect()),
                    value,
                );
                continue;
            }
        };
        out.push(at, value, parsed, name);
    }
}

/// The Proofpoint ET categories named in its reputation documentation; others are shown by number.
fn et_category(n: &str) -> Option<&'static str> {
    Some(match n {
        "1" => "CnC",
        "2" => "Bot",
        "3" => "Spam",
        "4" => "Drop",
        "5" => "SpywareCnC",
        "7" => "DriveBySrc",
        "10" => "TorNode",
        "13" => "Compromised",
        "16" => "Proxy",
        "21" => "Scanner",
        "23" => "Brute_Forcer",
        "29" => "Blackhole",
        "40" => "Bitcoin_Related",
        _ => return None,
    })
}

/// Proofpoint ET reputation: `ip,category,score,first_seen,last_seen,ports (|)` or
/// `domain,category,score,first_seen,last_seen`; the category is the threat name.
fn parse_proofpoint(text: &str, out: &mut ParsedList) {
    for (n, rec) in csv_records(text, out) {
        if is_header(&rec, &["ip", "domain"]) {
            continue;
        }
        let Some(value) = rec.get(0) else { continue };
        let name = rec
            .get(1)
            .filter(|c| !c.is_empty())
            .map(|c| match et_category(c) {
                Some(name) => format!("ET category {c} ({name})"),
                None => format!("ET category {c}"),
            });
        out.push(
            Location::Line(n),
            value,
            parse_indicator(value),
            name.as_deref(),
        );
    }
}

/// FireEye iSIGHT CSV: the header names the columns; `ip`, `cidr`, `domain` and `sha256` are
/// read, `malwareFamily` (else `actor`, else `title`) names the threat.
fn parse_fireeye(text: &str, out: &mut ParsedList) {
    let records = csv_records(text, out);
    let mut iter = records.into_iter();
    let Some((hn, header)) = iter.next() else {
        return;
    };
    let col = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (ip, cidr, domain, sha) = (col("ip"), col("cidr"), col("domain"), col("sha256"));
    if ip.is_none() && cidr.is_none() && domain.is_none() && sha.is_none() {
        out.reject(
            Location::Line(hn),
            Reason::MissingColumn("ip, cidr, domain or sha256"),
            header.as_slice(),
        );
        return;
    }
    let name_cols = [col("malwareFamily"), col("actor"), col("title")];
    for (n, rec) in iter {
        let at = Location::Line(n);
        let name = name_cols
            .iter()
            .flatten()
            .filter_map(|&c| rec.get(c))
            .find(|s| !s.is_empty());
        let get = |c: Option<usize>| c.and_then(|c| rec.get(c)).filter(|s| !s.is_empty());
        // A record about a URL, an email or an MD5 only has none of these: nothing to match,
        // and not an error.
        for (value, parse) in [
            (get(ip), parse_net as fn(&str) -> Result<Indicator, Invalid>),
            (get(cidr), parse_net),
            (get(domain), parse_domain),
            (get(sha), |s: &str| {
                parse_sha256(s).ok_or(Invalid::NotSha256)
            }),
        ] {
            if let Some(v) = value {
                out.push(at, v, parse(v), name);
            }
        }
    }
}

/// A STIX 2 pattern's comparisons of the objects the matcher takes.
/// (Written without `\s`: the workspace's regex has no Unicode classes.)
const STIX2_COMPARISON_RE: &str = r#"(ipv4-addr|ipv6-addr|domain-name|file)[ \t\r\n]*:[ \t\r\n]*(value|hashes[ \t\r\n]*\.[ \t\r\n]*(?:'SHA-256'|"SHA-256"|SHA256|'SHA256'|SHA-256))[ \t\r\n]*=[ \t\r\n]*'((?:[^'\\]|\\.){0,512})'"#;
static STIX2_COMPARISON: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(STIX2_COMPARISON_RE).ok());

/// The indicators a STIX 2 pattern compares for equality, OR or AND alike: for a list of IOCs
/// each compared value is taken.
fn stix2_pattern(pattern: &str) -> Vec<(&'static str, String)> {
    let Some(re) = STIX2_COMPARISON.as_ref() else {
        return Vec::new();
    };
    re.captures_iter(pattern)
        .filter_map(|c| {
            let obj = c.get(1)?.as_str();
            let prop = c.get(2)?.as_str();
            let value = c.get(3)?.as_str().replace("\\'", "'").replace("\\\\", "\\");
            let kind = match obj {
                "ipv4-addr" | "ipv6-addr" => "net",
                "domain-name" => "domain",
                "file" if prop.starts_with("hashes") => "sha256",
                _ => return None,
            };
            Some((kind, value))
        })
        .collect()
}

fn parse_stix2(text: &str, out: &mut ParsedList) {
    let doc: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            out.reject(
                Location::Line(e.line() as u64),
                Reason::Syntax(e.to_string()),
                "",
            );
            return;
        }
    };
    // A bundle, a bare array of objects, or a single indicator.
    let objects: Vec<&serde_json::Value> = match &doc {
        serde_json::Value::Array(a) => a.iter().collect(),
        serde_json::Value::Object(o) => match o.get("objects").and_then(|v| v.as_array()) {
            Some(a) => a.iter().collect(),
            None => vec![&doc],
        },
        _ => Vec::new(),
    };
    for (i, obj) in objects.into_iter().enumerate() {
        let at = Location::Object(i as u64 + 1);
        if obj.get("type").and_then(|t| t.as_str()) != Some("indicator") {
            continue;
        }
        if obj
            .get("pattern_type")
            .and_then(|t| t.as_str())
            .is_some_and(|t| t != "stix")
        {
            let t = obj
                .get("pattern_type")
                .and_then(|t| t.as_str())
                .unwrap_or_default();
            out.reject(
                at,
                Reason::UnsupportedType(t.chars().take(32).collect()),
                "",
            );
            continue;
        }
        let Some(pattern) = obj.get("pattern").and_then(|p| p.as_str()) else {
            out.reject(at, Reason::MissingColumn("pattern"), "");
            continue;
        };
        if pattern.len() > MAX_LINE_BYTES {
            out.reject(at, Reason::LineTooLong, pattern);
            continue;
        }
        let name = obj.get("name").and_then(|n| n.as_str());
        let found = stix2_pattern(pattern);
        if found.is_empty() {
            out.reject(at, Reason::UnsupportedPattern, pattern);
        }
        for (kind, value) in found {
            let parsed = match kind {
                "net" => parse_net(&value),
                "domain" => parse_domain(&value),
                _ => parse_sha256(&value).ok_or(Invalid::NotSha256),
            };
            out.push(at, &value, parsed, name);
        }
    }
}

/// What a STIX 1 value element holds.
#[derive(Clone, Copy, PartialEq)]
enum Stix1Value {
    Address,
    Domain,
    Hash,
    HashType,
    Title,
}

/// STIX 1.x (CybOX) indicators: `AddressObj:Address_Value` (IPv4/IPv6, CIDR),
/// `DomainNameObj:Value` and `cyboxCommon:Simple_Hash_Value` whose `Type` is SHA256. Values
/// may be lists joined by `##comma##` (CybOX's `apply_condition="ANY"`). The indicator's
/// `Title` names the threat.
fn parse_stix1(text: &str, out: &mut ParsedList) {
    // Not trimmed by the reader: it would trim around entity references (`a &amp; b`);
    // values are trimmed when complete.
    let mut reader = quick_xml::Reader::from_str(text);
    let line_at = |pos: u64| -> u64 {
        let pos = usize::try_from(pos).unwrap_or(usize::MAX).min(text.len());
        text.as_bytes()
            .get(..pos)
            .map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count()) as u64
            + 1
    };
    let mut title: Option<String> = None;
    let mut in_domain_props = false;
    let mut hash_type: Option<String> = None;
    let mut current: Option<(Stix1Value, String)> = None;
    loop {
        let pos = reader.buffer_position();
        let ev = match reader.read_event() {
            Ok(ev) => ev,
            Err(e) => {
                out.reject(
                    Location::Line(line_at(reader.error_position())),
                    Reason::Syntax(e.to_string()),
                    "",
                );
                return;
            }
        };
        match ev {
            XmlEvent::Eof => return,
            XmlEvent::Start(e) => {
                let local = e.local_name();
                match local.as_ref() {
                    b"Indicator" => {
                        title = None;
                    }
                    b"Properties" => {
                        in_domain_props = e.attributes().flatten().any(|a| {
                            a.key.local_name().as_ref() == b"type"
                                && a.value.windows(10).any(|w| w == b"DomainName")
                        });
                    }
                    b"Simple_Hash_Value" => current = Some((Stix1Value::Hash, String::new())),
                    b"Type" => current = Some((Stix1Value::HashType, String::new())),
                    b"Address_Value" => current = Some((Stix1Value::Address, String::new())),
                    b"Value" if in_domain_props => {
                        current = Some((Stix1Value::Domain, String::new()))
                    }
                    b"Title" => current = Some((Stix1Value::Title, String::new())),
                    b"Hash" => hash_type = None,
                    _ => {}
                }
            }
            XmlEvent::Text(t) => {
                if let Some((_, buf)) = current.as_mut()
                    && buf.len() <= MAX_LINE_BYTES
                    && let Ok(s) = t.decode()
                {
                    buf.push_str(&s);
                }
            }
            XmlEvent::CData(t) => {
                if let Some((_, buf)) = current.as_mut()
                    && buf.len() <= MAX_LINE_BYTES
                    && let Ok(s) = t.decode()
                {
                    buf.push_str(&s);
                }
            }
            XmlEvent::GeneralRef(r) => {
                if let Some((_, buf)) = current.as_mut() {
                    let c = match r.as_ref() {
                        b"amp" => "&",
                        b"lt" => "<",
                        b"gt" => ">",
                        b"quot" => "\"",
                        b"apos" => "'",
                        _ => "\u{fffd}",
                    };
                    buf.push_str(c);
                }
            }
            XmlEvent::End(e) => {
                let local = e.local_name();
                let Some((what, mut value)) = current.take() else {
                    if local.as_ref() == b"Properties" {
                        in_domain_props = false;
                    }
                    continue;
                };
                let at = Location::Line(line_at(pos));
                value = value.trim().to_owned();
                if value.len() > MAX_LINE_BYTES {
                    out.reject(at, Reason::LineTooLong, &value);
                    continue;
                }
                match what {
                    Stix1Value::Title => title = Some(value),
                    Stix1Value::HashType => hash_type = Some(value),
                    Stix1Value::Address | Stix1Value::Domain | Stix1Value::Hash => {
                        if what == Stix1Value::Hash
                            && hash_type.as_deref().is_some_and(|t| {
                                !t.trim().eq_ignore_ascii_case("sha256")
                                    && !t.trim().eq_ignore_ascii_case("sha-256")
                            })
                        {
                            out.reject(at, Reason::Invalid(Invalid::NotSha256), &value);
                            continue;
                        }
                        for v in value
                            .split("##comma##")
                            .map(str::trim)
                            .filter(|v| !v.is_empty())
                        {
                            let parsed = match what {
                                Stix1Value::Address => parse_net(v),
                                Stix1Value::Domain => parse_domain(v),
                                _ => match parse_sha256(v) {
                                    Some(i) => Ok(i),
                                    None => Err(Invalid::NotSha256),
                                },
                            };
                            out.push(at, v, parsed, title.as_deref());
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn stix2_regex_compiles() {
        let re = regex::Regex::new(super::STIX2_COMPARISON_RE);
        assert!(re.is_ok(), "{re:?}");
    }
}

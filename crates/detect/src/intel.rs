//! Threat-intelligence detections: remote addresses of connect events and executables'
//! SHA-256s of exec events looked up in the loaded lists ([`peregrine_intel::Intel`]).
//!
//! Which finding a match raises depends on the list's [`Category`]: built-in lists name a
//! GuardDuty threat family, a user's threat list is `Custom` and raises the `.Custom` type. A
//! trusted list covering the value suppresses the match. The DNS types (`!DNS`,
//! `MetadataDNSRebind`) need DNS capture and are not raised yet; the matcher's
//! [`Intel::lookup_chain`](peregrine_intel::Intel::lookup_chain) is ready for them.

use peregrine_event::{Detail, Event, Kind};
use peregrine_finding::{Evidence, MitreTag, RuntimeContext, ThreatIntelligenceDetail};
use peregrine_intel::{Category, Intel, Lookup, Matched};

use crate::engine::{AggregationKey, AggregationResource, Match};
use crate::report::quote;
use crate::rule::Maturity;

/// A finding type raised from a threat list.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IntelFindingType {
    pub finding_type: &'static str,
    pub severity: f64,
    /// The clause for the title: "... in pod ns/name."
    pub title: &'static str,
    /// Whether GuardDuty defines the type (false: Peregrine's own).
    pub guardduty: bool,
}

const C2: IntelFindingType = IntelFindingType {
    finding_type: "Backdoor:Runtime/C&CActivity.B",
    severity: 8.0,
    title: "A process connected to a known command-and-control server",
    guardduty: true,
};
const BITCOIN: IntelFindingType = IntelFindingType {
    finding_type: "CryptoCurrency:Runtime/BitcoinTool.B",
    severity: 8.0,
    title: "A process connected to an address associated with cryptocurrency mining",
    guardduty: true,
};
const TOR_CLIENT: IntelFindingType = IntelFindingType {
    finding_type: "UnauthorizedAccess:Runtime/TorClient",
    severity: 8.0,
    title: "A process connected to a Tor relay",
    guardduty: true,
};
const BLACKHOLE: IntelFindingType = IntelFindingType {
    finding_type: "Trojan:Runtime/BlackholeTraffic",
    severity: 5.0,
    title: "A process tried to reach a black-hole (sinkhole) address",
    guardduty: true,
};
const DROP_POINT: IntelFindingType = IntelFindingType {
    finding_type: "Trojan:Runtime/DropPoint",
    severity: 5.0,
    title: "A process connected to an address known to hold stolen data",
    guardduty: true,
};
/// GuardDuty has no runtime type for a user's IP list; this mirrors its EC2 type
/// `UnauthorizedAccess:EC2/MaliciousIPCaller.Custom` (Medium).
const IP_CUSTOM: IntelFindingType = IntelFindingType {
    finding_type: "UnauthorizedAccess:Runtime/MaliciousIPCaller.Custom",
    severity: 5.0,
    title: "A process connected to an address on your threat list",
    guardduty: false,
};
const MALICIOUS_FILE: IntelFindingType = IntelFindingType {
    finding_type: "Execution:Runtime/MaliciousFileExecuted",
    severity: 8.0,
    title: "A known malicious executable was run",
    guardduty: true,
};
const MALICIOUS_FILE_CUSTOM: IntelFindingType = IntelFindingType {
    finding_type: "Execution:Runtime/MaliciousFileExecuted.Custom",
    severity: 8.0,
    title: "An executable on your threat list was run",
    guardduty: true,
};
const CRYPTO_MINER: IntelFindingType = IntelFindingType {
    finding_type: "Impact:Runtime/CryptoMinerExecuted",
    severity: 8.0,
    title: "A known crypto-miner executable was run",
    guardduty: true,
};

/// Every finding type the threat lists raise today, for listings and docs.
pub const INTEL_FINDING_TYPES: &[IntelFindingType] = &[
    C2,
    BITCOIN,
    TOR_CLIENT,
    BLACKHOLE,
    DROP_POINT,
    IP_CUSTOM,
    MALICIOUS_FILE,
    MALICIOUS_FILE_CUSTOM,
    CRYPTO_MINER,
];

/// The type a remote address on a list of this category raises (none for domain-only and
/// file categories).
pub fn address_type(c: Category) -> Option<IntelFindingType> {
    match c {
        Category::CommandAndControl => Some(C2),
        Category::CryptoCurrency => Some(BITCOIN),
        Category::TorRelay => Some(TOR_CLIENT),
        Category::Blackhole => Some(BLACKHOLE),
        Category::DropPoint => Some(DROP_POINT),
        Category::Custom => Some(IP_CUSTOM),
        Category::Dga
        | Category::DriveBySource
        | Category::Phishing
        | Category::MaliciousFile
        | Category::CryptoMiner => None,
    }
}

/// The type an executable's SHA-256 on a list of this category raises.
pub fn file_type(c: Category) -> Option<IntelFindingType> {
    match c {
        Category::MaliciousFile => Some(MALICIOUS_FILE),
        Category::CryptoMiner => Some(CRYPTO_MINER),
        Category::Custom => Some(MALICIOUS_FILE_CUSTOM),
        _ => None,
    }
}

fn mitre(t: &IntelFindingType) -> Vec<MitreTag> {
    let (tactic, technique, name) = match t.finding_type {
        "CryptoCurrency:Runtime/BitcoinTool.B" | "Impact:Runtime/CryptoMinerExecuted" => {
            ("Impact", "T1496", "Resource Hijacking")
        }
        "UnauthorizedAccess:Runtime/TorClient" => {
            ("Command and Control", "T1090.003", "Multi-hop Proxy")
        }
        "Execution:Runtime/MaliciousFileExecuted"
        | "Execution:Runtime/MaliciousFileExecuted.Custom" => {
            ("Execution", "T1204.002", "User Execution: Malicious File")
        }
        "Trojan:Runtime/DropPoint" => ("Exfiltration", "T1041", "Exfiltration Over C2 Channel"),
        _ => ("Command and Control", "T1071", "Application Layer Protocol"),
    };
    vec![MitreTag {
        tactic: tactic.to_owned(),
        technique: technique.to_owned(),
        name: name.to_owned(),
    }]
}

/// Looks the event up and appends one match per finding type its entry's lists raise.
pub(crate) fn evaluate(intel: &Intel, ev: &Event, out: &mut Vec<Match>) {
    match (ev.kind, &ev.detail) {
        (Kind::Connect, Detail::Net(n)) => {
            let Some(addr) = n.address else { return };
            if let Lookup::Threat(m) = intel.lookup_ip(addr) {
                push(
                    ev,
                    &m,
                    "net.address",
                    &addr.to_string(),
                    address_type,
                    None,
                    out,
                );
            }
        }
        (Kind::Exec, _) => {
            let Some(sha) = ev.process.sha256.as_deref() else {
                return;
            };
            if let Lookup::Threat(m) = intel.lookup_sha256(sha) {
                let sha = m.entry.to_string();
                push(ev, &m, "process.sha256", &sha, file_type, Some(&sha), out);
            }
        }
        _ => {}
    }
}

fn push(
    ev: &Event,
    m: &Matched<'_>,
    field: &str,
    actual: &str,
    type_of: fn(Category) -> Option<IntelFindingType>,
    sha: Option<&str>,
    out: &mut Vec<Match>,
) {
    // One match per finding type, carrying every list that raised it.
    let mut types: Vec<(IntelFindingType, Vec<ThreatIntelligenceDetail>)> = Vec::new();
    for h in &m.hits {
        let Some(t) = type_of(h.list.category) else {
            continue;
        };
        let detail = ThreatIntelligenceDetail {
            threat_list_name: Some(h.list.name.clone()),
            threat_names: h.threat_name.map(str::to_owned).into_iter().collect(),
            threat_file_sha256: sha.map(str::to_owned),
        };
        match types
            .iter_mut()
            .find(|(x, _)| x.finding_type == t.finding_type)
        {
            Some((_, v)) => v.push(detail),
            None => types.push((t, vec![detail])),
        }
    }
    let entry = m.entry.to_string();
    for (t, details) in types {
        let lists: Vec<String> = details
            .iter()
            .filter_map(|d| d.threat_list_name.as_deref())
            .map(quote)
            .collect();
        let mut context = RuntimeContext::default();
        if sha.is_some() && !ev.process.exe.is_empty() {
            context.threat_file_path = Some(ev.process.exe.clone());
        }
        out.push(Match {
            rule_id: format!("intel:{}", t.finding_type),
            maturity: Maturity::Stable,
            pack_version: "intel".to_owned(),
            title: t.title.to_owned(),
            description: format!(
                "{} matched entry {} of threat list {}.",
                quote(actual),
                quote(&entry),
                lists.join(", ")
            ),
            finding_type: t.finding_type.to_owned(),
            severity: t.severity,
            mitre: mitre(&t),
            evidence: vec![Evidence {
                field: field.to_owned(),
                operator: "in_threat_list".to_owned(),
                expected: serde_json::json!({"entry": entry, "lists": lists}),
                actual: serde_json::Value::String(actual.to_owned()),
            }],
            context,
            aggregation: AggregationKey {
                finding_type: t.finding_type.to_owned(),
                resource: match &ev.container {
                    Some(c) => AggregationResource::Container(c.id.clone()),
                    None => AggregationResource::Host,
                },
                values: vec![actual.to_owned()],
            },
            threat_intel: details,
        });
    }
}

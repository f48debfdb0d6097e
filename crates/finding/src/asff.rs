//! Security Hub export: a finding in the AWS Security Finding Format (ASFF), mapped the way
//! GuardDuty maps its own findings when it sends them to Security Hub (GuardDuty user guide,
//! "Integrating with AWS Security Hub CSPM"; docs/securityhub.md has the table).
//!
//! The mapping is pure and owns every ASFF limit, so the adapter (`peregrine-store`'s
//! `SecurityHubImporter`) only converts [`AsffFinding`] into the SDK's types:
//!
//! - strings the workload controls (names, paths, command lines) are data: control, line
//!   separator and bidi characters become U+FFFD (Security Hub's patterns are `.*\S.*` and its
//!   console renders text), and each is cut to its field's length in characters, ending with
//!   [`TRUNCATION_MARKER`]; the exact values stay in the finding on EventBridge and in DynamoDB;
//! - `Title` at most 256 characters, `Description` 1024, `Id` and `GeneratorId` 512;
//! - `ProductFields` at most [`MAX_PRODUCT_FIELDS`] entries (key 128, value 2048 characters),
//!   all values together within a byte budget; what does not fit is counted in
//!   `peregrine/productFieldsOmitted`;
//! - the serialised finding at most [`MAX_ASFF_BYTES`], under Security Hub's 240 KB.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::{Finding, TRUNCATION_MARKER, clamp_severity, json_len, severity_label};

/// `SchemaVersion` of every ASFF finding.
pub const SCHEMA_VERSION: &str = "2018-10-08";
/// `ProductName` and `CompanyName`: a custom integration may set them (Security Hub then shows
/// them, and fills its own `aws/securityhub/ProductName` and `.../CompanyName` product fields;
/// the `aws/` keys are Security Hub's, so Peregrine sets none).
pub const PRODUCT_NAME: &str = "Peregrine";
pub const COMPANY_NAME: &str = "Peregrine";
/// BatchImportFindings takes at most 100 findings per call.
pub const MAX_FINDINGS_PER_CALL: usize = 100;
/// Security Hub refuses a finding over 240 KB; ours stay under this, with room to spare for the
/// SDK's serialisation (the same JSON members, in another order).
pub const MAX_ASFF_BYTES: usize = 200 * 1024;
/// ASFF: `ProductFields` holds at most 50 pairs.
pub const MAX_PRODUCT_FIELDS: usize = 50;
/// ASFF: a `ProductFields` key is at most 128 characters, a value 2048.
pub const MAX_PRODUCT_FIELD_KEY_CHARS: usize = 128;
pub const MAX_PRODUCT_FIELD_VALUE_CHARS: usize = 2048;
/// ASFF: `Title` is at most 256 characters, `Description` 1024.
pub const MAX_TITLE_CHARS: usize = 256;
pub const MAX_DESCRIPTION_CHARS: usize = 1024;
/// ASFF: `Id` and `GeneratorId` are at most 512 characters.
pub const MAX_ID_CHARS: usize = 512;
/// The product field that counts the fields left out (the 50-pair limit or the byte budget).
pub const OMITTED_FIELD: &str = "peregrine/productFieldsOmitted";
/// Every `ProductFields` key and value together, in JSON bytes: with the other members (each
/// bounded on its own, a few KiB in all) the finding stays under [`MAX_ASFF_BYTES`].
const PRODUCT_FIELDS_BUDGET: usize = 96 * 1024;
/// ASFF: `Resource.Id` (no documented limit; kept to the identifier limit), `Details.Other`
/// values (fewer than 1024 characters; the other resource details are kept to the same),
/// `Process.Name` (64) and `Process.Path` (512).
const MAX_RESOURCE_ID_CHARS: usize = 512;
const MAX_DETAIL_CHARS: usize = 1023;
const MAX_PROCESS_NAME_CHARS: usize = 64;
const MAX_PROCESS_PATH_CHARS: usize = 512;
const MAX_TYPE_CHARS: usize = 256;
/// ASFF: `Resource.Region` is at most 16 characters.
const MAX_REGION_CHARS: usize = 16;

/// A finding that cannot become an ASFF finding. It is not retried until it changes.
#[derive(Debug, thiserror::Error)]
pub enum AsffError {
    /// Security Hub takes, under the default product ARN, only findings of the calling account.
    #[error("accountId {0:?} is not a 12-digit AWS account id")]
    Account(String),
    /// The finding ARN is the ASFF `Id`: at most 512 characters, and not empty.
    #[error("the finding ARN ({0} characters) is not a usable ASFF Id (1 to 512 characters)")]
    Id(usize),
    #[error("the ASFF finding is {0} bytes, over the {MAX_ASFF_BYTES}-byte bound")]
    TooLarge(usize),
}

/// One finding in ASFF (`AwsSecurityFinding`; members PascalCase as in the API).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffFinding {
    pub schema_version: String,
    /// The finding ARN: one Security Hub finding per Peregrine finding, updated in place when
    /// it is imported again.
    pub id: String,
    pub product_arn: String,
    pub product_name: String,
    pub company_name: String,
    /// The detector ARN, as GuardDuty gives its detector's.
    pub generator_id: String,
    pub aws_account_id: String,
    pub types: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_observed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_observed_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub severity: AsffSeverity,
    pub title: String,
    pub description: String,
    pub product_fields: BTreeMap<String, String>,
    pub resources: Vec<AsffResource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<AsffProcess>,
    /// `ACTIVE`, or `ARCHIVED` for an archived finding.
    pub record_state: String,
    pub workflow: AsffWorkflow,
    pub finding_provider_fields: AsffProviderFields,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffSeverity {
    /// `LOW`, `MEDIUM`, `HIGH` or `CRITICAL`: GuardDuty's band of the severity.
    pub label: String,
    /// The severity times ten, rounded down: 1.0–3.9 → 10–39 (LOW), 4.0–6.9 → 40–69, 7.0–8.9 →
    /// 70–89, 9.0–10.0 → 90–100, the bands Security Hub gives the labels.
    pub normalized: i32,
    /// The finding's own severity, e.g. `8` or `5.5`.
    pub original: String,
}

/// `FindingProviderFields`: where a provider keeps its severity and types, so a customer's
/// `BatchUpdateFindings` of the top-level ones is not overwritten by the next import.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffProviderFields {
    pub severity: AsffProviderSeverity,
    pub types: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffProviderSeverity {
    pub label: String,
    pub original: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffResource {
    /// `AwsEksCluster` or `Container`.
    #[serde(rename = "Type")]
    pub resource_type: String,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<AsffResourceDetails>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffResourceDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_eks_cluster: Option<AsffEksCluster>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<AsffContainer>,
    /// What ASFF has no member for: the node, the pod.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub other: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffEksCluster {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffContainer {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_runtime: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The image digest, when the image reference carries one (`...@sha256:...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// The image reference as the runtime reported it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_name: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffProcess {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_pid: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launched_at: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffWorkflow {
    /// `NEW` on import; Security Hub ignores the provider's workflow on later imports (the
    /// customer owns it).
    pub status: String,
}

/// GuardDuty's ASFF type prefix (`namespace/category`) for each threat purpose, from its
/// table of runtime finding types; a purpose GuardDuty does not use for runtime findings takes
/// the category its other findings of that purpose use.
const PURPOSE_PREFIX: &[(&str, &str)] = &[
    ("Backdoor", "TTPs/Command and Control"),
    ("Behavior", "Unusual Behaviors/VM"),
    ("CredentialAccess", "TTPs/Credential Access"),
    ("CryptoCurrency", "TTPs/Command and Control"),
    ("DefenseEvasion", "TTPs/Defense Evasion"),
    ("Discovery", "TTPs/Discovery"),
    ("Execution", "TTPs/Execution"),
    ("Exfiltration", "Effects/Data Exfiltration"),
    ("Impact", "TTPs/Impact"),
    ("InitialAccess", "TTPs/Initial Access"),
    ("Persistence", "TTPs/Persistence"),
    (
        "Policy",
        "Software and Configuration Checks/AWS Security Best Practices",
    ),
    ("PrivilegeEscalation", "TTPs/Privilege Escalation"),
    ("Recon", "TTPs/Discovery"),
    ("ResourceConsumption", "Effects/Resource Consumption"),
    ("Stealth", "TTPs/Defense Evasion"),
    ("Trojan", "TTPs/Command and Control"),
    ("UnauthorizedAccess", "TTPs/Initial Access"),
];

/// GuardDuty's runtime types whose ASFF prefix is not their purpose's (its table, verbatim,
/// including the two `TTPs/DefenseEvasion` spellings).
const TYPE_PREFIX: &[(&str, &str)] = &[
    (
        "DefenseEvasion:Runtime/PtraceAntiDebugging",
        "TTPs/DefenseEvasion",
    ),
    (
        "DefenseEvasion:Runtime/SuspiciousCommand",
        "TTPs/DefenseEvasion",
    ),
    (
        "PrivilegeEscalation:Runtime/SuspiciousCommand",
        "Software and Configuration Checks",
    ),
    (
        "Trojan:Runtime/DriveBySourceTraffic!DNS",
        "TTPs/Initial Access",
    ),
    ("Trojan:Runtime/DropPoint", "Effects/Data Exfiltration"),
    ("Trojan:Runtime/DropPoint!DNS", "Effects/Data Exfiltration"),
    ("UnauthorizedAccess:Runtime/MetadataDNSRebind", "TTPs"),
    (
        "UnauthorizedAccess:Runtime/TorClient",
        "Effects/Resource Consumption",
    ),
    (
        "UnauthorizedAccess:Runtime/TorRelay",
        "Effects/Resource Consumption",
    ),
];

/// A threat purpose nobody maps: a runtime finding is unusual process behaviour.
const UNKNOWN_PREFIX: &str = "Unusual Behaviors/Process";

/// The ASFF type of a finding type, as GuardDuty names its own:
/// `Execution:Runtime/ReverseShell` → `TTPs/Execution/Execution:Runtime-ReverseShell`. The
/// classifier is the type with its `/` made a `-`.
pub fn asff_type(finding_type: &str) -> String {
    let prefix = TYPE_PREFIX
        .iter()
        .find(|(t, _)| *t == finding_type)
        .map(|(_, p)| *p)
        .or_else(|| {
            let purpose = finding_type.split_once(':').map_or("", |(p, _)| p);
            PURPOSE_PREFIX
                .iter()
                .find(|(p, _)| *p == purpose)
                .map(|(_, prefix)| *prefix)
        })
        .unwrap_or(UNKNOWN_PREFIX);
    let classifier = text(&finding_type.replacen('/', "-", 1), MAX_TYPE_CHARS)
        .unwrap_or_else(|| "Unknown".to_owned());
    format!("{prefix}/{classifier}")
}

/// `Severity` as GuardDuty maps it: the label of its band, the normalized value in the same
/// band, the finding's own number as the original.
pub fn asff_severity(severity: f64) -> AsffSeverity {
    let severity = clamp_severity(severity);
    // 1.0..=10.0 times ten is 10..=100: the cast cannot overflow.
    let normalized = ((severity * 10.0).floor() as i32).clamp(1, 100);
    AsffSeverity {
        label: severity_label(severity).to_ascii_uppercase(),
        normalized,
        original: format!("{severity}"),
    }
}

/// Whether a character must not reach a Security Hub string: C0 and C1 controls, DEL, the line
/// and paragraph separators and the bidi controls.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
        )
        || ('\u{202A}'..='\u{202E}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// A string for a Security Hub field: unsafe characters replaced by U+FFFD, at most
/// `max_chars` characters (cut ones end with [`TRUNCATION_MARKER`]). `None` when no visible
/// character is left (ASFF strings must hold one).
pub fn text(s: &str, max_chars: usize) -> Option<String> {
    let marker_chars = TRUNCATION_MARKER.chars().count();
    let cut = s.chars().nth(max_chars).is_some();
    let keep = if cut {
        max_chars.saturating_sub(marker_chars)
    } else {
        max_chars
    };
    let mut out: String = s
        .chars()
        .take(keep)
        .map(|c| if is_unsafe(c) { '\u{FFFD}' } else { c })
        .collect();
    if cut && keep > 0 {
        out.push_str(TRUNCATION_MARKER);
    }
    out.chars().any(|c| !c.is_whitespace()).then_some(out)
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// The `ProductFields` of a finding, filled in priority order within the pair limit and the
/// byte budget.
struct Fields {
    map: BTreeMap<String, String>,
    budget: usize,
    omitted: usize,
}

/// Lists rendered as one compact JSON value, after everything else: long, and less telling
/// than the members they would crowd out.
const DEFERRED: &[&str] = &["lineage", "evidence"];
/// Members rendered as one compact JSON value rather than flattened.
const COMPACT: &[&str] = &["mitre", "expected", "actual"];
/// Members left out: constants (`EKSCluster`, `default`, `pods`) and the pod's container list,
/// which repeats `containerDetails`.
const SKIPPED: &[&str] = &[
    "peregrine/resource/resourceType",
    "peregrine/resource/kubernetesDetails/kubernetesWorkloadDetails/type",
    "peregrine/resource/kubernetesDetails/kubernetesWorkloadDetails/containers",
    "peregrine/service/additionalInfo/type",
];

impl Fields {
    fn new() -> Self {
        Fields {
            map: BTreeMap::new(),
            budget: PRODUCT_FIELDS_BUDGET,
            omitted: 0,
        }
    }

    fn push(&mut self, key: &str, value: &str) {
        let (Some(key), Some(value)) = (
            text(key, MAX_PRODUCT_FIELD_KEY_CHARS),
            text(value, MAX_PRODUCT_FIELD_VALUE_CHARS),
        ) else {
            return;
        };
        if self.map.contains_key(&key) {
            return;
        }
        let cost = json_len(&key) + json_len(&value) + 2;
        // One pair stays free for the omitted count.
        if self.map.len() + 1 >= MAX_PRODUCT_FIELDS || cost > self.budget {
            self.omitted += 1;
            return;
        }
        self.budget -= cost;
        self.map.insert(key, value);
    }

    /// Flattens a JSON value as GuardDuty flattens its findings: `a/b/c` for members,
    /// `list.0_/member` for list items; lists of scalars, and the [`COMPACT`] members, as one
    /// JSON value. [`DEFERRED`] members are set aside for [`Fields::deferred`].
    fn flatten(&mut self, prefix: &str, v: &Value, deferred: &mut Vec<(String, Value)>) {
        match v {
            Value::Null => {}
            Value::String(s) => self.push(prefix, s),
            Value::Bool(_) | Value::Number(_) => self.push(prefix, &v.to_string()),
            Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
                if !items.is_empty() {
                    self.push(prefix, &v.to_string());
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.flatten(&format!("{prefix}.{i}_"), item, deferred);
                }
            }
            Value::Object(members) => {
                for (k, v) in members {
                    let key = format!("{prefix}/{k}");
                    if SKIPPED.contains(&key.as_str()) {
                        continue;
                    }
                    if DEFERRED.contains(&k.as_str()) {
                        deferred.push((key, v.clone()));
                    } else if COMPACT.contains(&k.as_str()) {
                        if !v.is_null() {
                            self.push(&key, &v.to_string());
                        }
                    } else {
                        self.flatten(&key, v, deferred);
                    }
                }
            }
        }
    }

    /// The set-aside lists, each as one compact JSON value, in the order they were met.
    fn deferred(&mut self, deferred: Vec<(String, Value)>) {
        for (key, v) in deferred {
            if v.as_array().is_some_and(|a| !a.is_empty()) {
                self.push(&key, &v.to_string());
            }
        }
    }

    fn finish(mut self) -> BTreeMap<String, String> {
        if self.omitted > 0 {
            self.map
                .insert(OMITTED_FIELD.to_owned(), self.omitted.to_string());
        }
        self.map
    }
}

/// The finding's `ProductFields`: its id and type, then the finding flattened under
/// `peregrine/` as GuardDuty flattens its `service` under `aws/guardduty/service/`: the service
/// members, the rule that fired, the runtime details, the resource, `additionalInfo`; the
/// lineage and the evidence last.
fn product_fields(f: &Finding) -> BTreeMap<String, String> {
    let mut fields = Fields::new();
    fields.push("peregrine/findingId", &f.id);
    fields.push("peregrine/type", &f.finding_type);
    let mut deferred = Vec::new();
    let service = serde_json::to_value(&f.service).unwrap_or(Value::Null);
    if let Value::Object(members) = &service {
        for (k, v) in members {
            if !v.is_object() {
                fields.flatten(&format!("peregrine/service/{k}"), v, &mut deferred);
            }
        }
        // The rule, then the process before its context (whose members can be many).
        for section in [
            "detection",
            "runtimeDetails/process",
            "runtimeDetails/context",
        ] {
            if let Some(v) = service.pointer(&format!("/{section}")) {
                fields.flatten(&format!("peregrine/service/{section}"), v, &mut deferred);
            }
        }
    }
    let resource = serde_json::to_value(&f.resource).unwrap_or(Value::Null);
    fields.flatten("peregrine/resource", &resource, &mut deferred);
    if let Value::Object(members) = &service {
        for (k, v) in members {
            if v.is_object() && k != "detection" && k != "runtimeDetails" {
                fields.flatten(&format!("peregrine/service/{k}"), v, &mut deferred);
            }
        }
    }
    fields.deferred(deferred);
    fields.finish()
}

fn partition(p: &str) -> Option<String> {
    matches!(
        p,
        "aws" | "aws-cn" | "aws-us-gov" | "aws-iso" | "aws-iso-b" | "azure-cloud"
    )
    .then(|| p.to_owned())
}

fn put(other: &mut BTreeMap<String, String>, key: &str, value: Option<&str>) {
    if let Some(v) = value.and_then(|v| text(v, MAX_DETAIL_CHARS)) {
        other.insert(key.to_owned(), v);
    }
}

/// `Resources`: the cluster (`AwsEksCluster`, with the node in `Other`), and for a process in
/// a container the container (`Container`, with the pod in `Other`), as GuardDuty lists the
/// cluster and the container of its EKS runtime findings.
fn resources(f: &Finding) -> Vec<AsffResource> {
    let partition = partition(&f.partition);
    let region = text(&f.region, MAX_REGION_CHARS);
    let r = &f.resource;
    let cluster = r.eks_cluster_details.as_ref();
    let name = cluster.and_then(|c| text(&c.name, MAX_DETAIL_CHARS));
    let arn = cluster
        .and_then(|c| c.arn.as_deref())
        .and_then(|a| text(a, MAX_RESOURCE_ID_CHARS));
    let mut node = BTreeMap::new();
    if let Some(i) = &r.instance_details {
        put(&mut node, "nodeName", i.node_name.as_deref());
        put(&mut node, "instanceId", i.instance_id.as_deref());
    }
    // The cluster's ARN when the finding has it; else its name (the agent does not say which
    // account the cluster is in, so an ARN would be a guess).
    let cluster_id = arn
        .clone()
        .or_else(|| cluster.and_then(|c| text(&c.name, MAX_RESOURCE_ID_CHARS)))
        .unwrap_or_else(|| "unknown".to_owned());
    let mut out = vec![AsffResource {
        resource_type: "AwsEksCluster".to_owned(),
        id: cluster_id,
        partition: partition.clone(),
        region: region.clone(),
        details: Some(AsffResourceDetails {
            aws_eks_cluster: Some(AsffEksCluster { arn, name }),
            container: None,
            other: node,
        }),
    }];
    if let Some(c) = &r.container_details {
        let workload = r
            .kubernetes_details
            .as_ref()
            .and_then(|k| k.kubernetes_workload_details.as_ref());
        let mut pod = BTreeMap::new();
        put(&mut pod, "containerId", c.id.as_deref());
        put(
            &mut pod,
            "podName",
            workload.and_then(|w| w.name.as_deref()),
        );
        put(
            &mut pod,
            "podNamespace",
            workload.and_then(|w| w.namespace.as_deref()),
        );
        put(&mut pod, "podUid", workload.and_then(|w| w.uid.as_deref()));
        let id =
            c.id.as_deref()
                .or(c.name.as_deref())
                .and_then(|i| text(i, MAX_RESOURCE_ID_CHARS))
                .unwrap_or_else(|| "unknown".to_owned());
        let image = c.image.as_deref();
        out.push(AsffResource {
            resource_type: "Container".to_owned(),
            id,
            partition,
            region,
            details: Some(AsffResourceDetails {
                aws_eks_cluster: None,
                container: Some(AsffContainer {
                    container_runtime: c
                        .container_runtime
                        .as_deref()
                        .and_then(|s| text(s, MAX_DETAIL_CHARS)),
                    name: c.name.as_deref().and_then(|s| text(s, MAX_DETAIL_CHARS)),
                    image_id: image
                        .and_then(|i| i.split_once('@'))
                        .and_then(|(_, digest)| text(digest, MAX_DETAIL_CHARS)),
                    image_name: image.and_then(|s| text(s, MAX_DETAIL_CHARS)),
                }),
                other: pod,
            }),
        });
    }
    out
}

/// `Process`: the process that acted, its parent's pid from the lineage.
fn process(f: &Finding) -> Option<AsffProcess> {
    let p = f.service.runtime_details.as_ref()?.process.as_ref()?;
    let pid = |p: Option<u32>| p.and_then(|p| i32::try_from(p).ok());
    Some(AsffProcess {
        name: p
            .name
            .as_deref()
            .and_then(|s| text(s, MAX_PROCESS_NAME_CHARS)),
        path: p
            .executable_path
            .as_deref()
            .and_then(|s| text(s, MAX_PROCESS_PATH_CHARS)),
        pid: pid(p.pid),
        parent_pid: pid(p.lineage.first().and_then(|l| l.pid)),
        launched_at: p.start_time.map(|t| t.to_string()),
    })
}

/// The finding as Security Hub takes it under `product_arn` (the account's default product,
/// `arn:<partition>:securityhub:<region>:<account>:product/<account>/default`).
pub fn to_asff(f: &Finding, product_arn: &str) -> Result<AsffFinding, AsffError> {
    if !is_account_id(&f.account_id) {
        return Err(AsffError::Account(f.account_id.clone()));
    }
    let id_chars = f.arn.chars().count();
    let id = match text(&f.arn, MAX_ID_CHARS) {
        Some(id) if id_chars <= MAX_ID_CHARS && id == f.arn => id,
        _ => return Err(AsffError::Id(id_chars)),
    };
    // The detector's ARN: the finding ARN without its `/finding/<id>`.
    let generator = f
        .arn
        .rsplit_once("/finding/")
        .map_or(f.arn.as_str(), |(d, _)| d);
    let generator_id = text(generator, MAX_ID_CHARS).unwrap_or_else(|| id.clone());
    let types = vec![asff_type(&f.finding_type)];
    let severity = asff_severity(f.severity);
    let fallback =
        || text(&f.finding_type, MAX_TITLE_CHARS).unwrap_or_else(|| "Peregrine finding".to_owned());
    let mut asff = AsffFinding {
        schema_version: SCHEMA_VERSION.to_owned(),
        id,
        product_arn: product_arn.to_owned(),
        product_name: PRODUCT_NAME.to_owned(),
        company_name: COMPANY_NAME.to_owned(),
        generator_id,
        aws_account_id: f.account_id.clone(),
        types: types.clone(),
        first_observed_at: f.service.event_first_seen.map(|t| t.to_string()),
        last_observed_at: f.service.event_last_seen.map(|t| t.to_string()),
        created_at: f.created_at.to_string(),
        updated_at: f.updated_at.to_string(),
        finding_provider_fields: AsffProviderFields {
            severity: AsffProviderSeverity {
                label: severity.label.clone(),
                original: severity.original.clone(),
            },
            types,
        },
        severity,
        title: text(&f.title, MAX_TITLE_CHARS).unwrap_or_else(fallback),
        description: text(&f.description, MAX_DESCRIPTION_CHARS).unwrap_or_else(fallback),
        product_fields: product_fields(f),
        resources: resources(f),
        process: process(f),
        record_state: if f.service.archived {
            "ARCHIVED"
        } else {
            "ACTIVE"
        }
        .to_owned(),
        workflow: AsffWorkflow {
            status: "NEW".to_owned(),
        },
    };
    // The budget above keeps every finding under the bound; should it not, the largest
    // product fields go first, and the count of what went says so.
    let mut size = json_len(&asff);
    while size > MAX_ASFF_BYTES {
        let Some(largest) = asff
            .product_fields
            .iter()
            .filter(|(k, _)| k.as_str() != OMITTED_FIELD)
            .max_by_key(|(k, v)| (v.len(), k.as_str()))
            .map(|(k, _)| k.clone())
        else {
            return Err(AsffError::TooLarge(size));
        };
        asff.product_fields.remove(&largest);
        let omitted = asff
            .product_fields
            .get(OMITTED_FIELD)
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0);
        asff.product_fields
            .insert(OMITTED_FIELD.to_owned(), (omitted + 1).to_string());
        size = json_len(&asff);
    }
    Ok(asff)
}

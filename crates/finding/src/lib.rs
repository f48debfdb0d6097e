//! Peregrine's finding model: GuardDuty finding schema 2.0, camelCase on the wire, so that
//! consumers of GuardDuty Runtime Monitoring findings (EventBridge rules, Security Hub
//! mappings, SIEM parsers) read Peregrine's findings unchanged.
//!
//! Shapes follow `../shared/reference/guardduty-runtime.md` §2. Two Peregrine extensions are
//! additive and ignored by GuardDuty consumers: `service.detection.rule` (which rule fired, with
//! the evidence) and `resource.instanceDetails.nodeName`.
//!
//! Strings in a finding (paths, process names, pod names) come from the monitored workload and
//! are attacker-controlled. They are carried as data and only ever escaped by the serialiser,
//! and they are bounded: each string is cut at [`MAX_FIELD_BYTES`] with [`TRUNCATION_MARKER`],
//! and the whole finding stays under [`MAX_FINDING_BYTES`] of JSON ([`Finding::bound`]).

mod bound;
mod model;
mod time;
mod types;

pub mod asff;
pub mod eventbridge;

use peregrine_event::Timestamp;
use serde::Serialize;
use sha2::{Digest, Sha256};

pub use crate::bound::{
    MAX_FIELD_BYTES, MAX_FINDING_BYTES, MAX_LIST_ITEMS, MIN_FIELD_BYTES, TRUNCATION_MARKER,
    flag_additional_info, is_truncated, json_len, truncate,
};
pub use crate::model::*;
pub use crate::time::IsoTime;
pub use crate::types::{RUNTIME_TYPES, RuntimeType, runtime_type};

/// `schemaVersion` of every finding Peregrine writes.
pub const SCHEMA_VERSION: &str = "2.0";
/// `service.serviceName`.
pub const SERVICE_NAME: &str = "peregrine";
/// `service.featureName`, as GuardDuty sets it for runtime findings.
pub const FEATURE_NAME: &str = "RuntimeMonitoring";
/// `resource.resourceType` for findings on EKS, container or host.
pub const RESOURCE_TYPE_EKS: &str = "EKSCluster";
/// `service.resourceRole`: the resource is the one attacked, not the attacker.
pub const RESOURCE_ROLE_TARGET: &str = "TARGET";
/// `kubernetesWorkloadDetails.type`: runtime findings name the pod.
pub const WORKLOAD_TYPE_POD: &str = "pods";
/// `service.additionalInfo.type`.
pub const ADDITIONAL_INFO_TYPE: &str = "default";
/// Lowest and highest severity GuardDuty allows.
pub const SEVERITY_MIN: f64 = 1.0;
pub const SEVERITY_MAX: f64 = 10.0;

/// Errors from building, merging or publishing findings.
#[derive(Debug, thiserror::Error)]
pub enum FindingError {
    /// [`Finding::record_occurrence`] was given an occurrence of a different finding.
    #[error(
        "cannot aggregate: {field} differs ({ours:?} vs {theirs:?}); occurrences of one finding share id, type and account"
    )]
    NotSameFinding {
        field: &'static str,
        ours: String,
        theirs: String,
    },
    #[error("finding does not serialise to JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// EventBridge rejects PutEvents entries over 256 KiB.
    #[error(
        "EventBridge entry would be {bytes} bytes, over the {limit}-byte PutEvents limit; trim relatedFilePaths or the command line"
    )]
    TooLarge { bytes: usize, limit: usize },
}

/// Where findings are raised: the account, the detector and the node. One per agent or Lambda;
/// built once from configuration and passed to every finding.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FindingEnv {
    pub account_id: String,
    pub region: String,
    /// `aws`, `aws-cn` or `aws-us-gov`.
    pub partition: String,
    pub detector_id: String,
    pub cluster_name: String,
    pub cluster_arn: Option<String>,
    /// The Kubernetes node the event came from.
    pub node_name: String,
    /// The node's EC2 instance id, when known.
    pub instance_id: Option<String>,
    pub agent_id: String,
    pub agent_version: String,
}

/// The finding id: 32 lowercase hex digits, the same for every occurrence that shares
/// account, region, type and aggregation key (reference §9).
///
/// Each part is length-prefixed before hashing, so attacker-controlled text in the aggregation
/// key cannot shift a boundary and collide with another finding's parts.
pub fn finding_id(
    account_id: &str,
    region: &str,
    finding_type: &str,
    aggregation_key: &str,
) -> String {
    let mut h = Sha256::new();
    for part in [
        "peregrine-finding-id-v1",
        account_id,
        region,
        finding_type,
        aggregation_key,
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    let digest = h.finalize();
    // 128 bits: GuardDuty ids are 32 hex digits, and 2^64 findings before a likely collision.
    match digest.first_chunk::<16>() {
        Some(first) => hex::encode(first),
        // Unreachable: a SHA-256 digest is 32 bytes.
        None => hex::encode(digest),
    }
}

/// `arn:{partition}:peregrine:{region}:{account}:detector/{detectorId}/finding/{id}`.
pub fn finding_arn(
    partition: &str,
    region: &str,
    account_id: &str,
    detector_id: &str,
    id: &str,
) -> String {
    format!("arn:{partition}:peregrine:{region}:{account_id}:detector/{detector_id}/finding/{id}")
}

/// The severity word GuardDuty shows for a numeric severity (reference §6.5): Low below 4,
/// Medium below 7, High below 9, else Critical. A NaN (which no rule can produce: severities
/// are validated when rules load) reads as Low.
pub fn severity_label(severity: f64) -> &'static str {
    if severity.is_nan() || severity < 4.0 {
        "Low"
    } else if severity < 7.0 {
        "Medium"
    } else if severity < 9.0 {
        "High"
    } else {
        "Critical"
    }
}

/// Clamps a severity into GuardDuty's 1.0–10.0 range; NaN becomes the minimum so the finding
/// still serialises as a number.
pub fn clamp_severity(severity: f64) -> f64 {
    if severity.is_nan() {
        SEVERITY_MIN
    } else {
        severity.clamp(SEVERITY_MIN, SEVERITY_MAX)
    }
}

/// The last path segment: `python3.8` for `/usr/bin/python3.8`.
fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// A process name as GuardDuty shows it: the executable's file name, or the kernel's `comm`
/// when the executable path is unknown.
fn process_name(exe: &str, comm: &str) -> Option<String> {
    let name = basename(exe);
    if !name.is_empty() {
        Some(name.to_owned())
    } else if !comm.is_empty() {
        Some(comm.to_owned())
    } else {
        None
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

impl ProcessDetails {
    /// Maps the event's process, keeping its lineage order (nearest ancestor first).
    /// `namespacePid` and `user` are omitted: the agent reports neither.
    pub fn from_process(p: &peregrine_event::Process) -> Self {
        ProcessDetails {
            name: process_name(&p.exe, &p.comm),
            executable_path: non_empty(&p.exe),
            executable_sha256: p.sha256.clone(),
            namespace_pid: None,
            pwd: non_empty(&p.cwd),
            pid: Some(p.pid),
            start_time: Some(p.start_time.into()),
            uuid: Some(p.uuid.to_string()),
            parent_uuid: Some(p.parent_uuid.to_string()),
            user: None,
            user_id: Some(p.uid),
            euid: Some(p.euid),
            lineage: p.lineage.iter().map(LineageObject::from_ancestor).collect(),
        }
    }

    /// A process known only as an ancestor record, e.g. the process that wrote a new binary.
    pub fn from_ancestor(a: &peregrine_event::Ancestor) -> Self {
        ProcessDetails {
            name: process_name(&a.exe, &a.comm),
            executable_path: non_empty(&a.exe),
            pid: Some(a.pid),
            start_time: Some(a.start_time.into()),
            uuid: Some(a.uuid.to_string()),
            parent_uuid: Some(a.parent_uuid.to_string()),
            user_id: Some(a.uid),
            euid: Some(a.euid),
            ..ProcessDetails::default()
        }
    }
}

impl LineageObject {
    pub fn from_ancestor(a: &peregrine_event::Ancestor) -> Self {
        LineageObject {
            start_time: Some(a.start_time.into()),
            namespace_pid: None,
            user_id: Some(a.uid),
            name: process_name(&a.exe, &a.comm),
            pid: Some(a.pid),
            uuid: Some(a.uuid.to_string()),
            executable_path: non_empty(&a.exe),
            euid: Some(a.euid),
            parent_uuid: Some(a.parent_uuid.to_string()),
        }
    }
}

/// The image name before its last `/`, as GuardDuty's `imagePrefix`:
/// `public.ecr.aws/nginx` for `public.ecr.aws/nginx/nginx:1.27`, none for `nginx:1.27`.
pub fn image_prefix(image: &str) -> Option<&str> {
    image
        .rsplit_once('/')
        .map(|(prefix, _)| prefix)
        .filter(|p| !p.is_empty())
}

impl Container {
    pub fn from_event(c: &peregrine_event::Container) -> Self {
        Container {
            container_runtime: non_empty(&c.runtime),
            id: non_empty(&c.id),
            name: c.name.clone(),
            image: c.image.clone(),
            image_prefix: c.image.as_deref().and_then(image_prefix).map(str::to_owned),
        }
    }
}

impl Resource {
    /// The resource of an event: always the cluster and the node; plus the pod and container
    /// when the process runs in one (`container` is `None` for a process on the host).
    pub fn for_workload(container: Option<&peregrine_event::Container>, env: &FindingEnv) -> Self {
        let container_details = container.map(Container::from_event);
        let kubernetes_details = container.and_then(|c| {
            // While the runtime has not answered (metadata pending) the pod is unknown; a
            // workload block with nothing but the container would claim more than we know.
            if c.pod_name.is_none() && c.pod_namespace.is_none() && c.pod_uid.is_none() {
                return None;
            }
            Some(KubernetesDetails {
                kubernetes_workload_details: Some(KubernetesWorkloadDetails {
                    name: c.pod_name.clone(),
                    workload_type: Some(WORKLOAD_TYPE_POD.to_owned()),
                    uid: c.pod_uid.clone(),
                    namespace: c.pod_namespace.clone(),
                    containers: container_details.iter().cloned().collect(),
                }),
            })
        });
        Resource {
            resource_type: RESOURCE_TYPE_EKS.to_owned(),
            eks_cluster_details: Some(EksClusterDetails {
                name: env.cluster_name.clone(),
                arn: env.cluster_arn.clone(),
                ..EksClusterDetails::default()
            }),
            kubernetes_details,
            container_details,
            instance_details: Some(InstanceDetails {
                instance_id: env.instance_id.clone(),
                availability_zone: None,
                node_name: non_empty(&env.node_name),
            }),
        }
    }
}

/// What [`Finding::new`] needs besides the environment: the detection's outcome for one event.
#[derive(Clone, Debug, PartialEq)]
pub struct NewFinding {
    pub finding_type: String,
    pub severity: f64,
    pub title: String,
    pub description: String,
    /// With account, region and type, makes the finding id (see [`finding_id`]).
    pub aggregation_key: String,
    pub rule: RuleExplanation,
    pub process: Option<ProcessDetails>,
    pub context: RuntimeContext,
    pub resource: Resource,
    /// When the event happened: `eventFirstSeen` and `eventLastSeen`.
    pub event_time: Timestamp,
    /// When the finding is written: `createdAt` and `updatedAt`.
    pub now: Timestamp,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AdditionalInfoValue<'a> {
    rule_id: &'a str,
    agent_details: AgentDetails<'a>,
    /// Set when any value in the finding was cut ([`TRUNCATION_MARKER`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    truncated: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AgentDetails<'a> {
    agent_id: &'a str,
    agent_version: &'a str,
}

impl Finding {
    /// A new finding with `count` 1, within the size bounds ([`Finding::bound`]).
    pub fn new(env: &FindingEnv, n: NewFinding) -> Finding {
        let id = finding_id(
            &env.account_id,
            &env.region,
            &n.finding_type,
            &n.aggregation_key,
        );
        let arn = finding_arn(
            &env.partition,
            &env.region,
            &env.account_id,
            &env.detector_id,
            &id,
        );
        // The agent's id and version come from the (possibly compromised) node.
        let (mut agent_id, mut agent_version) = (env.agent_id.clone(), env.agent_version.clone());
        let agent_cut = truncate(&mut agent_id, MAX_FIELD_BYTES)
            | truncate(&mut agent_version, MAX_FIELD_BYTES);
        let info = AdditionalInfoValue {
            rule_id: &n.rule.id,
            agent_details: AgentDetails {
                agent_id: &agent_id,
                agent_version: &agent_version,
            },
            truncated: agent_cut,
        };
        // A struct of strings always serialises; the fallback only keeps this infallible.
        let info = serde_json::to_string(&info).unwrap_or_else(|_| String::from("{}"));
        let mut finding = Finding {
            schema_version: SCHEMA_VERSION.to_owned(),
            account_id: env.account_id.clone(),
            region: env.region.clone(),
            partition: env.partition.clone(),
            id,
            arn,
            finding_type: n.finding_type,
            severity: clamp_severity(n.severity),
            confidence: None,
            title: n.title,
            description: n.description,
            created_at: n.now.into(),
            updated_at: n.now.into(),
            resource: n.resource,
            service: Service {
                service_name: SERVICE_NAME.to_owned(),
                feature_name: Some(FEATURE_NAME.to_owned()),
                detector_id: env.detector_id.clone(),
                archived: false,
                count: 1,
                event_first_seen: Some(n.event_time.into()),
                event_last_seen: Some(n.event_time.into()),
                resource_role: Some(RESOURCE_ROLE_TARGET.to_owned()),
                user_feedback: None,
                user_feedback_comments: None,
                additional_info: Some(AdditionalInfo {
                    value: info,
                    info_type: ADDITIONAL_INFO_TYPE.to_owned(),
                }),
                runtime_details: Some(RuntimeDetails {
                    process: n.process,
                    context: Some(n.context),
                }),
                detection: Some(Detection { rule: Some(n.rule) }),
                evidence: None,
            },
        };
        finding.bound();
        finding
    }

    /// The GuardDuty severity word for this finding.
    pub fn severity_label(&self) -> &'static str {
        severity_label(self.severity)
    }

    /// Folds a later occurrence of the same finding into this one (GuardDuty semantics,
    /// reference §3.3): `count` adds up, `createdAt`/`eventFirstSeen` keep the earliest,
    /// `updatedAt`/`eventLastSeen` only move forward, and the details (title, description,
    /// severity, resource, process, context, evidence, agent) become those of the latest
    /// occurrence. An occurrence that arrives late (its last event is older than ours) adds
    /// to the count and the first-seen time but does not overwrite newer details. `archived`
    /// and `userFeedback` are the analyst's and stay.
    pub fn record_occurrence(&mut self, newer: &Finding) -> Result<(), FindingError> {
        for (field, ours, theirs) in [
            ("id", &self.id, &newer.id),
            ("type", &self.finding_type, &newer.finding_type),
            ("accountId", &self.account_id, &newer.account_id),
            ("region", &self.region, &newer.region),
        ] {
            if ours != theirs {
                return Err(FindingError::NotSameFinding {
                    field,
                    ours: ours.clone(),
                    theirs: theirs.clone(),
                });
            }
        }
        let s = &mut self.service;
        let is_latest = match (s.event_last_seen, newer.service.event_last_seen) {
            (Some(ours), Some(theirs)) => theirs >= ours,
            (None, _) => true,
            (Some(_), None) => newer.updated_at >= self.updated_at,
        };
        s.count = s.count.saturating_add(newer.service.count);
        s.event_first_seen = earliest(s.event_first_seen, newer.service.event_first_seen);
        s.event_last_seen = latest(s.event_last_seen, newer.service.event_last_seen);
        self.created_at = self.created_at.min(newer.created_at);
        self.updated_at = self.updated_at.max(newer.updated_at);
        if is_latest {
            let n = &newer.service;
            let s = &mut self.service;
            s.runtime_details = n.runtime_details.clone();
            s.detection = n.detection.clone();
            s.additional_info = n.additional_info.clone();
            self.resource = newer.resource.clone();
            self.title = newer.title.clone();
            self.description = newer.description.clone();
            self.severity = newer.severity;
        }
        Ok(())
    }
}

fn earliest(a: Option<IsoTime>, b: Option<IsoTime>) -> Option<IsoTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn latest(a: Option<IsoTime>, b: Option<IsoTime>) -> Option<IsoTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

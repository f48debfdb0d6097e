//! The serde types of a finding, GuardDuty schema 2.0, camelCase on the wire (reference §2).
//!
//! Every optional member is skipped when absent, and unknown members are ignored when reading
//! (no `deny_unknown_fields`), so findings written by a newer Peregrine, or GuardDuty's own,
//! still load.

use serde::{Deserialize, Serialize};

use crate::time::IsoTime;

/// One finding (GuardDuty shape `Finding`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// Always [`SCHEMA_VERSION`](crate::SCHEMA_VERSION) for findings Peregrine writes.
    pub schema_version: String,
    pub account_id: String,
    pub region: String,
    pub partition: String,
    /// 32 lowercase hex digits, stable across aggregated occurrences ([`finding_id`](crate::finding_id)).
    pub id: String,
    pub arn: String,
    #[serde(rename = "type")]
    pub finding_type: String,
    /// 1.0–10.0; see [`severity_label`](crate::severity_label).
    pub severity: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    pub title: String,
    pub description: String,
    pub created_at: IsoTime,
    pub updated_at: IsoTime,
    pub resource: Resource,
    pub service: Service,
}

/// `resource` for EKS runtime findings (reference §2.5).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    /// `EKSCluster` for every finding Peregrine writes on EKS.
    pub resource_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eks_cluster_details: Option<EksClusterDetails>,
    /// Absent for a process on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_details: Option<KubernetesDetails>,
    /// Absent for a process on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_details: Option<Container>,
    /// The worker node, so a responder can isolate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_details: Option<InstanceDetails>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EksClusterDetails {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<IsoTime>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tag {
    pub key: String,
    pub value: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_workload_details: Option<KubernetesWorkloadDetails>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesWorkloadDetails {
    /// The pod name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `pods`: runtime findings name the pod, not its controller.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub workload_type: Option<String>,
    /// The pod uid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<Container>,
}

/// GuardDuty shape `Container`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_runtime: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The image name before its last `/` (`public.ecr.aws/nginx` for `public.ecr.aws/nginx/nginx:1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_prefix: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    /// Peregrine extension: the Kubernetes node name. GuardDuty has no member for it, and a node
    /// without a known instance id (not on EC2, or IMDS unreachable) must still be named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
}

/// `service` (reference §2.2).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    pub service_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_name: Option<String>,
    pub detector_id: String,
    #[serde(default)]
    pub archived: bool,
    pub count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_first_seen: Option<IsoTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_last_seen: Option<IsoTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_feedback: Option<String>,
    /// Peregrine's addition to GuardDuty's schema: the comment sent with the last
    /// `UpdateFindingsFeedback` (GuardDuty accepts one but does not return it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_feedback_comments: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_info: Option<AdditionalInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_details: Option<RuntimeDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detection: Option<Detection>,
    /// `service.evidence`: the threat-intelligence entries behind a list-based finding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<ServiceEvidence>,
}

/// `service.evidence` (GuardDuty shape `Evidence`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEvidence {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub threat_intelligence_details: Vec<ThreatIntelligenceDetail>,
}

/// One list that matched (GuardDuty shape `ThreatIntelligenceDetail`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreatIntelligenceDetail {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threat_list_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub threat_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threat_file_sha256: Option<String>,
}

/// `service.additionalInfo`: `value` is itself a JSON document, as a string.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdditionalInfo {
    pub value: String,
    #[serde(rename = "type")]
    pub info_type: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<RuntimeContext>,
}

/// `ProcessDetails` (reference §2.3). Every member is optional in GuardDuty's model.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable_sha256: Option<String>,
    /// The pid inside the container's pid namespace; omitted when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pwd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<IsoTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_uuid: Option<String>,
    /// The user name; omitted when unknown (the agent reports ids, not names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub euid: Option<u32>,
    /// Ancestors, nearest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lineage: Vec<LineageObject>,
}

/// One ancestor in `ProcessDetails.lineage`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LineageObject {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<IsoTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub euid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_uuid: Option<String>,
}

/// `RuntimeContext` (reference §2.4): which members are set depends on the finding type.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modifying_process: Option<Box<ProcessDetails>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_at: Option<IsoTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub library_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ld_preload_value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runc_binary_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_agent_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_system_type: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_file_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell_history_file_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_process: Option<Box<ProcessDetails>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iana_protocol_number: Option<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub memory_regions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_line_example: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threat_file_path: Option<String>,
    /// `Write`, `Delete`, `Rename`, `Link` or `Symlink`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_operation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_path: Option<String>,
    /// At most [`MAX_RELATED_FILE_PATHS`]; use [`RuntimeContext::add_related_file_path`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related_file_paths: Vec<String>,
}

/// GuardDuty caps `relatedFilePaths` at 25 entries.
pub const MAX_RELATED_FILE_PATHS: usize = 25;

impl RuntimeContext {
    /// Adds a path to `relatedFilePaths`, keeping the list free of duplicates and within
    /// [`MAX_RELATED_FILE_PATHS`]. Returns whether the path was added.
    pub fn add_related_file_path(&mut self, path: &str) -> bool {
        if self.related_file_paths.len() >= MAX_RELATED_FILE_PATHS
            || self.related_file_paths.iter().any(|p| p == path)
        {
            return false;
        }
        self.related_file_paths.push(path.to_owned());
        true
    }
}

/// `service.detection`. GuardDuty fills `anomaly`/`sequence`; Peregrine adds `rule`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Detection {
    /// Peregrine extension: which rule fired and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<RuleExplanation>,
}

/// Peregrine's explainability extension: the rule and every condition that matched, with the
/// value the event actually had.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleExplanation {
    pub id: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mitre: Vec<MitreTag>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<Evidence>,
}

/// A MITRE ATT&CK tag, e.g. `{tactic: "Privilege Escalation", technique: "T1611", name: "Escape to Host"}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MitreTag {
    pub tactic: String,
    pub technique: String,
    pub name: String,
}

/// One matched condition: `field operator expected`, and the event's `actual` value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Evidence {
    pub field: String,
    pub operator: String,
    pub expected: serde_json::Value,
    pub actual: serde_json::Value,
}

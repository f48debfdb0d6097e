//! CreateSampleFindings: one sample finding per runtime type (all 46, or the types named), as
//! GuardDuty makes them: the title starts with `[SAMPLE]`, `service.additionalInfo.value` holds
//! `"sample":true`, and the values are placeholders (`GeneratedFindingProcessName`, ...) with the
//! type's context members filled. They take the real findings' path: each is written to
//! FindingsTable with its publish due now (the outbox), so the publisher sends it to
//! EventBridge (and Security Hub when the export is on), and the ARCHIVE filters apply to them
//! as the detector applies them.

use peregrine_criteria::{ArchiveRules, quoted};
use peregrine_event::Timestamp;
use peregrine_finding::{
    Container, EksClusterDetails, Finding, FindingEnv, InstanceDetails, KubernetesDetails,
    KubernetesWorkloadDetails, NewFinding, ProcessDetails, RESOURCE_TYPE_EKS, RUNTIME_TYPES,
    Resource, RuleExplanation, RuntimeContext, RuntimeType, WORKLOAD_TYPE_POD,
    flag_additional_info, runtime_type,
};
use peregrine_store::{FindingWrite, settle_write};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::ApiDeps;
use crate::error::ApiError;
use crate::ops::parse;

/// The flag set in `additionalInfo.value`.
pub const SAMPLE_MARK: &str = "sample";
/// `findingTypes` names at most 50 types, as GuardDuty's.
pub const MAX_TYPES: usize = 50;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateRequest {
    #[serde(default)]
    finding_types: Option<Vec<String>>,
}

fn placeholder(what: &str) -> String {
    format!("GeneratedFinding{what}")
}

fn process(what: &str) -> ProcessDetails {
    ProcessDetails {
        name: Some(placeholder(&format!("{what}Name"))),
        executable_path: Some(placeholder(&format!("{what}ExecutablePath"))),
        executable_sha256: Some(placeholder(&format!("{what}ExecutableSha256"))),
        namespace_pid: Some(1234),
        pwd: Some(placeholder(&format!("{what}Pwd"))),
        pid: Some(5678),
        start_time: None,
        uuid: Some(placeholder(&format!("{what}Uuid"))),
        parent_uuid: Some(placeholder(&format!("{what}ParentUuid"))),
        user: Some(placeholder(&format!("{what}User"))),
        user_id: Some(1001),
        euid: Some(1001),
        lineage: Vec::new(),
    }
}

/// Fills one context member with GuardDuty's kind of placeholder.
fn fill(c: &mut RuntimeContext, member: &str, now: Timestamp) {
    let p = placeholder;
    match member {
        "modifyingProcess" => c.modifying_process = Some(Box::new(process("ModifyingProcess"))),
        "modifiedAt" => c.modified_at = Some(now.into()),
        "scriptPath" => c.script_path = Some(p("ScriptPath")),
        "libraryPath" => c.library_path = Some(p("LibraryPath")),
        "ldPreloadValue" => c.ld_preload_value = Some(p("LdPreloadValue")),
        "socketPath" => c.socket_path = Some(p("SocketPath")),
        "runcBinaryPath" => c.runc_binary_path = Some(p("RuncBinaryPath")),
        "releaseAgentPath" => c.release_agent_path = Some(p("ReleaseAgentPath")),
        "mountSource" => c.mount_source = Some(p("MountSource")),
        "mountTarget" => c.mount_target = Some(p("MountTarget")),
        "fileSystemType" => c.file_system_type = Some(p("FileSystemType")),
        "flags" => c.flags = vec![p("Flag")],
        "moduleName" => c.module_name = Some(p("ModuleName")),
        "moduleFilePath" => c.module_file_path = Some(p("ModuleFilePath")),
        "moduleSha256" => c.module_sha256 = Some(p("ModuleSha256")),
        "shellHistoryFilePath" => c.shell_history_file_path = Some(p("ShellHistoryFilePath")),
        "targetProcess" => c.target_process = Some(Box::new(process("TargetProcess"))),
        "addressFamily" => c.address_family = Some("AF_INET".into()),
        "ianaProtocolNumber" => c.iana_protocol_number = Some(6),
        "memoryRegions" => c.memory_regions = vec![p("MemoryRegion")],
        "toolName" => c.tool_name = Some(p("ToolName")),
        "toolCategory" => c.tool_category = Some(p("ToolCategory")),
        "serviceName" => c.service_name = Some(p("ServiceName")),
        "commandLineExample" => c.command_line_example = Some(p("CommandLineExample")),
        "threatFilePath" => c.threat_file_path = Some(p("ThreatFilePath")),
        "fileOperation" => c.file_operation = Some("Write".into()),
        "filePath" => c.file_path = Some(p("FilePath")),
        "relatedFilePaths" => c.related_file_paths = vec![p("RelatedFilePath")],
        // The table names only the members above (a test walks every type).
        _ => {}
    }
}

/// The sample finding of one type. `nonce` makes its id new on each call.
pub fn sample_finding(t: &RuntimeType, env: &FindingEnv, now: Timestamp, nonce: &str) -> Finding {
    let mut context = RuntimeContext::default();
    for m in t.context {
        fill(&mut context, m, now);
    }
    let container = Container {
        container_runtime: Some("containerd".into()),
        id: Some(placeholder("ContainerId")),
        name: Some(placeholder("ContainerName")),
        image: Some(placeholder("ContainerImage")),
        image_prefix: Some(placeholder("ContainerImagePrefix")),
    };
    let resource = Resource {
        resource_type: RESOURCE_TYPE_EKS.to_owned(),
        eks_cluster_details: Some(EksClusterDetails {
            name: placeholder("EKSClusterName"),
            arn: Some(format!(
                "arn:{}:eks:{}:{}:cluster/GeneratedFindingEKSClusterName",
                env.partition, env.region, env.account_id
            )),
            ..EksClusterDetails::default()
        }),
        kubernetes_details: Some(KubernetesDetails {
            kubernetes_workload_details: Some(KubernetesWorkloadDetails {
                name: Some(placeholder("PodName")),
                workload_type: Some(WORKLOAD_TYPE_POD.to_owned()),
                uid: Some(placeholder("PodUid")),
                namespace: Some(placeholder("Namespace")),
                containers: vec![container.clone()],
            }),
        }),
        container_details: Some(container),
        instance_details: Some(InstanceDetails {
            instance_id: Some("i-99999999".into()),
            availability_zone: None,
            node_name: Some(placeholder("NodeName")),
        }),
    };
    let mut f = Finding::new(
        env,
        NewFinding {
            finding_type: t.name.to_owned(),
            severity: t.severity,
            title: format!(
                "[SAMPLE] {} was detected in EKS cluster GeneratedFindingEKSClusterName.",
                t.name
            ),
            description: format!(
                "[SAMPLE] A sample finding of type {} made by CreateSampleFindings; no activity took place.",
                t.name
            ),
            aggregation_key: format!("sample#{nonce}"),
            rule: RuleExplanation {
                id: "sample".into(),
                title: "Sample finding".into(),
                ..RuleExplanation::default()
            },
            process: Some(process("Process")),
            context,
            resource,
            event_time: now,
            now,
        },
    );
    flag_additional_info(&mut f, SAMPLE_MARK);
    f
}

/// The types a request names: all of them when none is named; an unknown one is a 400.
fn types(names: Option<&[String]>) -> Result<Vec<&'static RuntimeType>, ApiError> {
    let names = match names {
        None | Some([]) => return Ok(RUNTIME_TYPES.iter().collect()),
        Some(n) => n,
    };
    if names.len() > MAX_TYPES {
        return Err(ApiError::bad(format!(
            "findingTypes names {} types; at most {MAX_TYPES} are allowed.",
            names.len()
        )));
    }
    let mut out: Vec<&'static RuntimeType> = Vec::with_capacity(names.len());
    for n in names {
        let t = runtime_type(n).ok_or_else(|| {
            ApiError::bad(format!(
                "The finding type {} is not a Runtime Monitoring finding type.",
                quoted(n)
            ))
        })?;
        if !out.iter().any(|o| o.name == t.name) {
            out.push(t);
        }
    }
    Ok(out)
}

pub async fn create(deps: &ApiDeps, body: &[u8], account_id: &str) -> Result<Value, ApiError> {
    let r: CreateRequest = parse(body)?;
    let types = types(r.finding_types.as_deref())?;
    // The filters as the detector reads them: a sample an ARCHIVE filter matches is stored
    // archived and not published.
    let filters: Vec<_> = deps
        .filters
        .all()
        .await?
        .into_iter()
        .map(|f| f.filter)
        .collect();
    let rules = ArchiveRules::new(&filters).map_err(|(name, e)| {
        tracing::error!(filter = %name, error = %e, "stored filter does not compile");
        ApiError::Store(peregrine_store::StoreError::Corrupt {
            key: format!("filter {name}"),
            reason: e.to_string(),
        })
    })?;
    let now = Timestamp::now();
    let nonce = now.unix_nanos().to_string();
    let env = FindingEnv {
        account_id: account_id.to_owned(),
        region: deps.config.region.clone(),
        partition: peregrine_aws::partition(&deps.config.region).to_owned(),
        detector_id: deps.config.detector_id.clone(),
        cluster_name: placeholder("EKSClusterName"),
        node_name: placeholder("NodeName"),
        agent_id: placeholder("AgentId"),
        agent_version: placeholder("AgentVersion"),
        ..FindingEnv::default()
    };
    for t in types {
        let mut write = FindingWrite::new_finding(sample_finding(t, &env, now, &nonce), now);
        settle_write(&mut write, &rules, now, deps.config.finding_retention)
            .map_err(|_| ApiError::bad("A sample finding cannot be serialised."))?;
        deps.store.put_new(&write.item).await?;
    }
    Ok(json!({}))
}

/// The schema check of a sample finding (its JSON): what, if anything, keeps it from being a
/// valid sample of its type: it must deserialise into the finding model, carry the members
/// GuardDuty requires of a finding, the sample marks, its type's default severity and context
/// members, and the placeholder process.
pub fn sample_problems(json: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let model: Finding = match serde_json::from_value(json.clone()) {
        Ok(f) => f,
        Err(e) => return vec![format!("not a finding: {e}")],
    };
    for m in [
        "accountId",
        "arn",
        "createdAt",
        "id",
        "region",
        "resource",
        "schemaVersion",
        "severity",
        "type",
        "updatedAt",
    ] {
        if json[m].is_null() {
            out.push(format!("no {m}"));
        }
    }
    if !model.title.starts_with("[SAMPLE] ") {
        out.push(format!("title {:?} is not [SAMPLE]", model.title));
    }
    let sample = model
        .service
        .additional_info
        .as_ref()
        .and_then(|i| serde_json::from_str::<Value>(&i.value).ok())
        .is_some_and(|v| v[SAMPLE_MARK] == true);
    if !sample {
        out.push("additionalInfo.value has no \"sample\":true".into());
    }
    let Some(t) = runtime_type(&model.finding_type) else {
        out.push(format!("{} is not a runtime type", model.finding_type));
        return out;
    };
    if (model.severity - t.severity).abs() > f64::EPSILON {
        out.push(format!("severity {} is not {}", model.severity, t.severity));
    }
    for m in t.context {
        if json["service"]["runtimeDetails"]["context"][m].is_null() {
            out.push(format!("no context.{m}"));
        }
    }
    if json["service"]["runtimeDetails"]["process"]["name"] != "GeneratedFindingProcessName" {
        out.push("the process is not the placeholder".into());
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The schema check: every type's sample deserialises into the finding model and carries
    /// the members GuardDuty requires, the sample marks and the type's context members.
    #[test]
    fn every_sample_fits_the_finding_model() {
        let env = FindingEnv {
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            partition: "aws".into(),
            detector_id: "peregrine".into(),
            ..FindingEnv::default()
        };
        let now = Timestamp::now();
        assert_eq!(RUNTIME_TYPES.len(), 46);
        for t in RUNTIME_TYPES {
            let f = sample_finding(t, &env, now, "n");
            let json = serde_json::to_value(&f).unwrap();
            assert_eq!(json["type"], t.name);
            assert_eq!(sample_problems(&json), Vec::<String>::new(), "{}", t.name);
        }
    }

    #[test]
    fn named_types_are_checked() {
        assert_eq!(types(None).unwrap().len(), 46);
        assert_eq!(types(Some(&[])).unwrap().len(), 46);
        let two = vec![
            "Execution:Runtime/ReverseShell".to_owned(),
            "Execution:Runtime/ReverseShell".to_owned(),
        ];
        assert_eq!(types(Some(&two)).unwrap().len(), 1);
        assert!(types(Some(&["Recon:EC2/PortProbe".to_owned()])).is_err());
        assert!(types(Some(&vec!["x".to_owned(); 51])).is_err());
    }
}

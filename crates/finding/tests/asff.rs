//! The Security Hub (ASFF) mapping, field by field: a container finding, a host finding, the
//! type and severity tables, and hostile strings against ASFF's limits.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use peregrine_event::{Ancestor, Container as EvContainer, Process, Timestamp};
use peregrine_finding::asff::{
    self, AsffFinding, MAX_ASFF_BYTES, MAX_DESCRIPTION_CHARS, MAX_PRODUCT_FIELD_KEY_CHARS,
    MAX_PRODUCT_FIELD_VALUE_CHARS, MAX_PRODUCT_FIELDS, MAX_TITLE_CHARS, OMITTED_FIELD,
    asff_severity, asff_type, to_asff,
};
use peregrine_finding::*;
use peregrine_testkit::builders::{Pod, ancestor, finding_env, pod_container, process as proc};
use serde_json::{Value, json};
use uuid::Uuid;

const T0: i64 = 1_764_000_000_123_456_789; // 2025-11-24T16:00:00.123456789Z
const PRODUCT: &str = "arn:aws:securityhub:eu-west-1:111122223333:product/111122223333/default";

fn process() -> Process {
    let parent = Ancestor {
        uuid: Uuid::from_u128(0xa),
        start_time: Timestamp::from_unix_nanos(T0 - 5_000_000_000),
        ..ancestor(10, "/usr/bin/bash")
    };
    proc(42, "/usr/bin/tee")
        .argv(&["tee", "/sys/fs/cgroup/release_agent"])
        .cwd("/tmp")
        .uuid(Uuid::from_u128(0x2a))
        .started(T0 - 1_000_000_000)
        .sha256("ab".repeat(32))
        .lineage(vec![parent])
        .build()
}

fn container() -> EvContainer {
    pod_container(
        "c0ffee".repeat(10) + "abcd",
        Pod {
            namespace: "default",
            name: "web-1",
            uid: "pod-uid-1",
            container: "web",
            image: "public.ecr.aws/nginx/nginx:1.27@sha256:0123abcd",
        },
    )
}

fn finding_with(
    container: Option<&EvContainer>,
    p: Process,
    finding_type: &str,
    severity: f64,
    title: &str,
) -> Finding {
    let env = finding_env();
    let mut f = Finding::new(
        &env,
        NewFinding {
            finding_type: finding_type.into(),
            severity,
            title: title.into(),
            description: "A process wrote the cgroups release_agent file.".into(),
            aggregation_key: "k".into(),
            rule: RuleExplanation {
                id: "cgroups-release-agent-modified".into(),
                title: "Container escape via cgroups release_agent".into(),
                mitre: vec![MitreTag {
                    tactic: "Privilege Escalation".into(),
                    technique: "T1611".into(),
                    name: "Escape to Host".into(),
                }],
                evidence: vec![Evidence {
                    field: "file.basename".into(),
                    operator: "eq".into(),
                    expected: json!("release_agent"),
                    actual: json!("release_agent"),
                }],
            },
            process: Some(ProcessDetails::from_process(&p)),
            context: RuntimeContext {
                release_agent_path: Some("/sys/fs/cgroup/release_agent".into()),
                ..RuntimeContext::default()
            },
            resource: Resource::for_workload(container, &env),
            event_time: Timestamp::from_unix_nanos(T0),
            now: Timestamp::from_unix_nanos(T0 + 2_000_000_000),
        },
    );
    // A later occurrence: the ASFF times follow the finding's.
    f.service.count = 3;
    f.service.event_last_seen = Some(Timestamp::from_unix_nanos(T0 + 60_000_000_000).into());
    f.updated_at = Timestamp::from_unix_nanos(T0 + 61_000_000_000).into();
    f
}

const RELEASE_AGENT: &str = "PrivilegeEscalation:Runtime/CGroupsReleaseAgentModified";

fn container_finding() -> Finding {
    let c = container();
    finding_with(
        Some(&c),
        process(),
        RELEASE_AGENT,
        8.0,
        "Container escape via cgroups release_agent in pod default/web-1.",
    )
}

fn host_finding() -> Finding {
    finding_with(
        None,
        process(),
        RELEASE_AGENT,
        8.0,
        "Container escape via cgroups release_agent on node ip-10-0-1-2.",
    )
}

fn json_of(a: &AsffFinding) -> Value {
    serde_json::to_value(a).unwrap()
}

/// Each row: a JSON pointer into the ASFF finding and the value it must have (`Value::Null`:
/// absent).
fn check(name: &str, got: &Value, rows: &[(&str, Value)]) {
    for (pointer, want) in rows {
        let have = got.pointer(pointer).cloned().unwrap_or(Value::Null);
        assert_eq!(
            &have,
            want,
            "{name}: {pointer}\n{}",
            serde_json::to_string_pretty(got).unwrap()
        );
    }
}

fn common_rows(f: &Finding) -> Vec<(&'static str, Value)> {
    let detector = "arn:aws:peregrine:eu-west-1:111122223333:detector/det-1";
    let ttp = "TTPs/Privilege Escalation/PrivilegeEscalation:Runtime-CGroupsReleaseAgentModified";
    vec![
        ("/SchemaVersion", json!("2018-10-08")),
        ("/Id", json!(f.arn)),
        ("/ProductArn", json!(PRODUCT)),
        ("/ProductName", json!("Peregrine")),
        ("/CompanyName", json!("Peregrine")),
        ("/GeneratorId", json!(detector)),
        ("/AwsAccountId", json!("111122223333")),
        ("/Types", json!([ttp])),
        ("/FindingProviderFields/Types", json!([ttp])),
        ("/CreatedAt", json!("2025-11-24T16:00:02.123Z")),
        ("/UpdatedAt", json!("2025-11-24T16:01:01.123Z")),
        ("/FirstObservedAt", json!("2025-11-24T16:00:00.123Z")),
        ("/LastObservedAt", json!("2025-11-24T16:01:00.123Z")),
        ("/Severity/Label", json!("HIGH")),
        ("/Severity/Normalized", json!(80)),
        ("/Severity/Original", json!("8")),
        ("/FindingProviderFields/Severity/Label", json!("HIGH")),
        ("/FindingProviderFields/Severity/Original", json!("8")),
        (
            "/Description",
            json!("A process wrote the cgroups release_agent file."),
        ),
        ("/RecordState", json!("ACTIVE")),
        ("/Workflow/Status", json!("NEW")),
        ("/Process/Name", json!("tee")),
        ("/Process/Path", json!("/usr/bin/tee")),
        ("/Process/Pid", json!(42)),
        ("/Process/ParentPid", json!(10)),
        ("/Process/LaunchedAt", json!("2025-11-24T15:59:59.123Z")),
        ("/Resources/0/Type", json!("AwsEksCluster")),
        (
            "/Resources/0/Id",
            json!("arn:aws:eks:eu-west-1:111122223333:cluster/prod"),
        ),
        ("/Resources/0/Partition", json!("aws")),
        ("/Resources/0/Region", json!("eu-west-1")),
        ("/Resources/0/Details/AwsEksCluster/Name", json!("prod")),
        (
            "/Resources/0/Details/AwsEksCluster/Arn",
            json!("arn:aws:eks:eu-west-1:111122223333:cluster/prod"),
        ),
        (
            "/Resources/0/Details/Other/nodeName",
            json!("ip-10-0-1-2.eu-west-1.compute.internal"),
        ),
        ("/Resources/0/Details/Other/instanceId", json!("i-0abc")),
        // Security Hub's own keys are left to it.
        ("/ProductFields/aws~1securityhub~1ProductName", Value::Null),
        ("/ProductFields/peregrine~1findingId", json!(f.id)),
        ("/ProductFields/peregrine~1type", json!(RELEASE_AGENT)),
        ("/ProductFields/peregrine~1service~1count", json!("3")),
        (
            "/ProductFields/peregrine~1service~1archived",
            json!("false"),
        ),
        (
            "/ProductFields/peregrine~1service~1serviceName",
            json!("peregrine"),
        ),
        (
            "/ProductFields/peregrine~1service~1detectorId",
            json!("det-1"),
        ),
        (
            "/ProductFields/peregrine~1service~1resourceRole",
            json!("TARGET"),
        ),
        (
            "/ProductFields/peregrine~1service~1eventLastSeen",
            json!("2025-11-24T16:01:00.123Z"),
        ),
        (
            "/ProductFields/peregrine~1service~1detection~1rule~1id",
            json!("cgroups-release-agent-modified"),
        ),
        (
            "/ProductFields/peregrine~1service~1detection~1rule~1mitre",
            json!(
                r#"[{"name":"Escape to Host","tactic":"Privilege Escalation","technique":"T1611"}]"#
            ),
        ),
        (
            "/ProductFields/peregrine~1service~1runtimeDetails~1process~1executablePath",
            json!("/usr/bin/tee"),
        ),
        (
            "/ProductFields/peregrine~1service~1runtimeDetails~1process~1lineage",
            json!(
                r#"[{"euid":0,"executablePath":"/usr/bin/bash","name":"bash","parentUuid":"00000000-0000-0000-0000-000000000000","pid":10,"startTime":"2025-11-24T15:59:55.123Z","userId":0,"uuid":"00000000-0000-0000-0000-00000000000a"}]"#
            ),
        ),
        (
            "/ProductFields/peregrine~1service~1runtimeDetails~1context~1releaseAgentPath",
            json!("/sys/fs/cgroup/release_agent"),
        ),
        (
            "/ProductFields/peregrine~1service~1detection~1rule~1evidence",
            json!(
                r#"[{"actual":"release_agent","expected":"release_agent","field":"file.basename","operator":"eq"}]"#
            ),
        ),
        (
            "/ProductFields/peregrine~1resource~1eksClusterDetails~1name",
            json!("prod"),
        ),
        (
            "/ProductFields/peregrine~1resource~1instanceDetails~1nodeName",
            json!("ip-10-0-1-2.eu-west-1.compute.internal"),
        ),
        (
            "/ProductFields/peregrine~1productFieldsOmitted",
            Value::Null,
        ),
    ]
}

#[test]
fn a_container_finding_maps_field_by_field() {
    let f = container_finding();
    let got = json_of(&to_asff(&f, PRODUCT).unwrap());
    let c = container();
    let mut rows = common_rows(&f);
    rows.extend([
        (
            "/Title",
            json!("Container escape via cgroups release_agent in pod default/web-1."),
        ),
        ("/Resources/1/Type", json!("Container")),
        ("/Resources/1/Id", json!(c.id)),
        ("/Resources/1/Partition", json!("aws")),
        ("/Resources/1/Details/Container/Name", json!("web")),
        (
            "/Resources/1/Details/Container/ImageName",
            json!("public.ecr.aws/nginx/nginx:1.27@sha256:0123abcd"),
        ),
        (
            "/Resources/1/Details/Container/ImageId",
            json!("sha256:0123abcd"),
        ),
        (
            "/Resources/1/Details/Container/ContainerRuntime",
            json!("containerd"),
        ),
        ("/Resources/1/Details/Other/podName", json!("web-1")),
        ("/Resources/1/Details/Other/podNamespace", json!("default")),
        ("/Resources/1/Details/Other/podUid", json!("pod-uid-1")),
        ("/Resources/1/Details/Other/containerId", json!(c.id)),
        ("/Resources/2", Value::Null),
        (
            "/ProductFields/peregrine~1resource~1containerDetails~1name",
            json!("web"),
        ),
        (
            "/ProductFields/peregrine~1resource~1kubernetesDetails~1kubernetesWorkloadDetails~1namespace",
            json!("default"),
        ),
    ]);
    check("container", &got, &rows);
    let fields = got["ProductFields"].as_object().unwrap();
    assert!(fields.len() <= MAX_PRODUCT_FIELDS, "{}", fields.len());
}

#[test]
fn a_host_finding_has_the_cluster_and_node_but_no_container() {
    let f = host_finding();
    let got = json_of(&to_asff(&f, PRODUCT).unwrap());
    let mut rows = common_rows(&f);
    rows.extend([
        (
            "/Title",
            json!("Container escape via cgroups release_agent on node ip-10-0-1-2."),
        ),
        ("/Resources/1", Value::Null),
        (
            "/ProductFields/peregrine~1resource~1containerDetails~1name",
            Value::Null,
        ),
    ]);
    check("host", &got, &rows);
}

#[test]
fn archived_findings_are_archived_and_a_cluster_without_arn_is_named() {
    let mut f = host_finding();
    f.service.archived = true;
    f.resource.eks_cluster_details.as_mut().unwrap().arn = None;
    let got = json_of(&to_asff(&f, PRODUCT).unwrap());
    check(
        "archived",
        &got,
        &[
            ("/RecordState", json!("ARCHIVED")),
            ("/ProductFields/peregrine~1service~1archived", json!("true")),
            ("/Resources/0/Id", json!("prod")),
            ("/Resources/0/Details/AwsEksCluster/Arn", Value::Null),
            ("/Resources/0/Details/AwsEksCluster/Name", json!("prod")),
        ],
    );
}

#[test]
fn types_follow_guardduty_s_table() {
    for (ours, theirs) in [
        (
            "Execution:Runtime/NewBinaryExecuted",
            "TTPs/Execution/Execution:Runtime-NewBinaryExecuted",
        ),
        (
            "Execution:Runtime/ReverseShell",
            "TTPs/Execution/Execution:Runtime-ReverseShell",
        ),
        (
            "Persistence:Runtime/SensitiveFileModified",
            "TTPs/Persistence/Persistence:Runtime-SensitiveFileModified",
        ),
        (
            "DefenseEvasion:Runtime/SensitiveFileModified",
            "TTPs/Defense Evasion/DefenseEvasion:Runtime-SensitiveFileModified",
        ),
        // GuardDuty's table spells these two without the space.
        (
            "DefenseEvasion:Runtime/SuspiciousCommand",
            "TTPs/DefenseEvasion/DefenseEvasion:Runtime-SuspiciousCommand",
        ),
        (
            "DefenseEvasion:Runtime/PtraceAntiDebugging",
            "TTPs/DefenseEvasion/DefenseEvasion:Runtime-PtraceAntiDebugging",
        ),
        (
            "PrivilegeEscalation:Runtime/DockerSocketAccessed",
            "TTPs/Privilege Escalation/PrivilegeEscalation:Runtime-DockerSocketAccessed",
        ),
        (
            "PrivilegeEscalation:Runtime/SuspiciousCommand",
            "Software and Configuration Checks/PrivilegeEscalation:Runtime-SuspiciousCommand",
        ),
        (
            "Discovery:Runtime/SuspiciousCommand",
            "TTPs/Discovery/Discovery:Runtime-SuspiciousCommand",
        ),
        (
            "Impact:Runtime/CryptoMinerExecuted",
            "TTPs/Impact/Impact:Runtime-CryptoMinerExecuted",
        ),
        (
            "CryptoCurrency:Runtime/BitcoinTool.B!DNS",
            "TTPs/Command and Control/CryptoCurrency:Runtime-BitcoinTool.B!DNS",
        ),
        (
            "Backdoor:Runtime/C&CActivity.B",
            "TTPs/Command and Control/Backdoor:Runtime-C&CActivity.B",
        ),
        (
            "Trojan:Runtime/DropPoint!DNS",
            "Effects/Data Exfiltration/Trojan:Runtime-DropPoint!DNS",
        ),
        (
            "Trojan:Runtime/DriveBySourceTraffic!DNS",
            "TTPs/Initial Access/Trojan:Runtime-DriveBySourceTraffic!DNS",
        ),
        (
            "Trojan:Runtime/BlackholeTraffic",
            "TTPs/Command and Control/Trojan:Runtime-BlackholeTraffic",
        ),
        (
            "UnauthorizedAccess:Runtime/TorClient",
            "Effects/Resource Consumption/UnauthorizedAccess:Runtime-TorClient",
        ),
        (
            "UnauthorizedAccess:Runtime/MetadataDNSRebind",
            "TTPs/UnauthorizedAccess:Runtime-MetadataDNSRebind",
        ),
        // Peregrine's own types take their purpose's category.
        (
            "DefenseEvasion:Runtime/PeregrineAgentBlinded",
            "TTPs/Defense Evasion/DefenseEvasion:Runtime-PeregrineAgentBlinded",
        ),
        (
            "DefenseEvasion:Runtime/PeregrineIoUringInContainer",
            "TTPs/Defense Evasion/DefenseEvasion:Runtime-PeregrineIoUringInContainer",
        ),
        // A purpose nobody maps is unusual process behaviour.
        (
            "Weird:Runtime/Thing",
            "Unusual Behaviors/Process/Weird:Runtime-Thing",
        ),
    ] {
        assert_eq!(asff_type(ours), theirs, "{ours}");
    }
}

#[test]
fn severities_keep_guardduty_s_bands() {
    for (severity, label, normalized, original) in [
        (1.0, "LOW", 10, "1"),
        (2.0, "LOW", 20, "2"),
        (3.9, "LOW", 39, "3.9"),
        (4.0, "MEDIUM", 40, "4"),
        (5.0, "MEDIUM", 50, "5"),
        (6.99, "MEDIUM", 69, "6.99"),
        (7.0, "HIGH", 70, "7"),
        (8.0, "HIGH", 80, "8"),
        (8.9, "HIGH", 89, "8.9"),
        (9.0, "CRITICAL", 90, "9"),
        (10.0, "CRITICAL", 100, "10"),
        // Out of range or not a number: clamped as the finding model clamps.
        (42.0, "CRITICAL", 100, "10"),
        (f64::NAN, "LOW", 10, "1"),
    ] {
        let s = asff_severity(severity);
        assert_eq!(
            (s.label.as_str(), s.normalized, s.original.as_str()),
            (label, normalized, original),
            "{severity}"
        );
    }
}

/// A path of `len` characters, mostly control characters and bidi overrides.
fn hostile(len: usize, tag: usize) -> String {
    let mut s = format!("/\u{1b}]0;pwned{tag}\u{7}\n\u{202e}");
    let junk = [
        '\0', '\u{7}', '\n', '\r', '\u{1b}', '\u{9b}', '"', '\\', '\u{2028}', 'é',
    ];
    while s.chars().count() < len {
        s.push(junk[s.len() % junk.len()]);
    }
    s
}

/// Every string in a value, with its JSON pointer.
fn strings<'a>(v: &'a Value, at: String, out: &mut Vec<(String, &'a str)>) {
    match v {
        Value::String(s) => out.push((at, s)),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, v)| strings(v, format!("{at}/{i}"), out)),
        Value::Object(o) => o
            .iter()
            .for_each(|(k, v)| strings(v, format!("{at}/{k}"), out)),
        _ => {}
    }
}

#[test]
fn attacker_strings_are_defused_and_every_limit_holds() {
    // The largest finding the model allows: every workload string at its cap, full of
    // control characters, quotes and bidi overrides; a long lineage; many context members.
    let long = hostile(MAX_FIELD_BYTES * 4, 0);
    let mut p = process();
    p.exe = long.clone();
    p.cwd = long.clone();
    p.lineage = (0..40)
        .map(|i| Ancestor {
            exe: hostile(5000, i),
            ..ancestor(100 + i as u32, "/bin/sh")
        })
        .collect();
    let c = EvContainer {
        name: Some(long.clone()),
        image: Some(long.clone()),
        pod_name: Some(long.clone()),
        pod_namespace: Some(long.clone()),
        ..container()
    };
    let title = format!("Escape in pod {}", "\u{1b}[31m".repeat(300));
    let mut f = finding_with(Some(&c), p, RELEASE_AGENT, 8.0, &title);
    f.description = hostile(10_000, 9);
    let ctx = f
        .service
        .runtime_details
        .as_mut()
        .unwrap()
        .context
        .as_mut()
        .unwrap();
    ctx.command_line_example = Some(long.clone());
    ctx.script_path = Some(long.clone());
    ctx.ld_preload_value = Some(long.clone());
    ctx.file_path = Some(long.clone());
    for i in 0..25 {
        ctx.add_related_file_path(&hostile(3000, i));
    }
    f.bound();
    assert!(is_truncated(&f), "the finding itself was cut");

    let a = to_asff(&f, PRODUCT).unwrap();
    let bytes = serde_json::to_vec(&a).unwrap().len();
    assert!(bytes <= MAX_ASFF_BYTES, "{bytes} bytes");
    assert!(a.title.chars().count() <= MAX_TITLE_CHARS);
    assert!(
        a.title.starts_with("Escape in pod \u{FFFD}[31m"),
        "{}",
        a.title
    );
    assert!(a.title.ends_with(TRUNCATION_MARKER), "{}", a.title);
    assert!(a.description.chars().count() <= MAX_DESCRIPTION_CHARS);
    assert!(a.product_fields.len() <= MAX_PRODUCT_FIELDS);
    for (k, v) in &a.product_fields {
        assert!(k.chars().count() <= MAX_PRODUCT_FIELD_KEY_CHARS, "{k}");
        assert!(v.chars().count() <= MAX_PRODUCT_FIELD_VALUE_CHARS, "{k}");
    }
    // ASFF: `Details.Other` values under 1024 characters (the pod's name here is long).
    let pod = &a.resources[1].details.as_ref().unwrap().other;
    assert!(pod["podName"].chars().count() < 1024);
    for r in &a.resources {
        for v in r.details.as_ref().unwrap().other.values() {
            assert!(v.chars().count() < 1024, "{v}");
        }
    }
    // The finding's own bounds keep this one within the budget: nothing left out.
    assert!(!a.product_fields.contains_key(OMITTED_FIELD));
    assert_eq!(a.product_fields["peregrine/service/count"], "3");
    assert!(
        a.product_fields["peregrine/service/runtimeDetails/context/commandLineExample"]
            .starts_with("/\u{FFFD}]0;pwned0\u{FFFD}\u{FFFD}\u{FFFD}")
    );
    assert!(
        a.process
            .as_ref()
            .unwrap()
            .path
            .as_ref()
            .unwrap()
            .chars()
            .count()
            <= 512
    );
    assert_eq!(a.process.as_ref().unwrap().pid, Some(42));

    // No string in the whole ASFF finding carries a control, line-separator or bidi
    // character, and each has a visible one (ASFF's `.*\S.*`).
    let v = json_of(&a);
    let mut all = Vec::new();
    strings(&v, String::new(), &mut all);
    for (at, s) in all {
        assert!(
            !s.chars().any(|c| c.is_control()
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}')),
            "{at}: {s:?}"
        );
        assert!(s.chars().any(|c| !c.is_whitespace()), "{at} is blank");
    }
}

/// A stored finding need not have been bounded (one stored before the bounds existed, or
/// written by something else): the mapping holds ASFF's limits on its own.
#[test]
fn an_unbounded_finding_still_fits_and_says_what_was_left_out() {
    let long = hostile(8_000, 1);
    let mut p = process();
    p.exe = long.clone();
    p.cwd = long.clone();
    let c = EvContainer {
        pod_name: Some(long.clone()),
        ..container()
    };
    let mut f = finding_with(Some(&c), p.clone(), RELEASE_AGENT, 8.0, &long);
    f.description = long.clone();
    let other = ProcessDetails::from_process(&p);
    let ctx = f
        .service
        .runtime_details
        .as_mut()
        .unwrap()
        .context
        .as_mut()
        .unwrap();
    ctx.modifying_process = Some(Box::new(other.clone()));
    ctx.target_process = Some(Box::new(other));
    for (i, s) in [
        &mut ctx.script_path,
        &mut ctx.library_path,
        &mut ctx.ld_preload_value,
        &mut ctx.socket_path,
        &mut ctx.runc_binary_path,
        &mut ctx.mount_source,
        &mut ctx.mount_target,
        &mut ctx.module_name,
        &mut ctx.module_file_path,
        &mut ctx.shell_history_file_path,
        &mut ctx.tool_name,
        &mut ctx.service_name,
        &mut ctx.command_line_example,
        &mut ctx.threat_file_path,
        &mut ctx.file_path,
    ]
    .into_iter()
    .enumerate()
    {
        *s = Some(hostile(8_000, i));
    }
    assert!(json_len(&f) > MAX_ASFF_BYTES, "unbounded: {}", json_len(&f));

    let a = to_asff(&f, PRODUCT).unwrap();
    let bytes = serde_json::to_vec(&a).unwrap().len();
    assert!(bytes <= MAX_ASFF_BYTES, "{bytes} bytes");
    assert_eq!(a.product_fields.len(), MAX_PRODUCT_FIELDS);
    for (k, v) in &a.product_fields {
        assert!(k.chars().count() <= MAX_PRODUCT_FIELD_KEY_CHARS, "{k}");
        assert!(v.chars().count() <= MAX_PRODUCT_FIELD_VALUE_CHARS, "{k}");
    }
    // What did not fit is counted; the fields set first (the service's, the rule's, the
    // process's) are there, the lineage (set last) is not.
    let omitted: usize = a.product_fields[OMITTED_FIELD].parse().unwrap();
    assert!(omitted >= 10, "{omitted}");
    assert_eq!(a.product_fields["peregrine/service/count"], "3");
    assert_eq!(
        a.product_fields["peregrine/service/detection/rule/id"],
        "cgroups-release-agent-modified"
    );
    assert!(
        a.product_fields["peregrine/service/runtimeDetails/process/executablePath"]
            .ends_with(TRUNCATION_MARKER)
    );
    assert!(
        !a.product_fields
            .contains_key("peregrine/service/runtimeDetails/process/lineage")
    );
    assert_eq!(a.title.chars().count(), MAX_TITLE_CHARS);
    assert_eq!(a.description.chars().count(), MAX_DESCRIPTION_CHARS);
    // ASFF: a `Details.Other` value has fewer than 1024 characters.
    let pod = &a.resources[1].details.as_ref().unwrap().other["podName"];
    assert_eq!(pod.chars().count(), 1023);
    assert!(pod.ends_with(TRUNCATION_MARKER));
}

#[test]
fn findings_security_hub_cannot_take_are_refused_with_the_reason() {
    let mut f = host_finding();
    f.account_id = "me".into();
    assert!(matches!(
        to_asff(&f, PRODUCT),
        Err(asff::AsffError::Account(a)) if a == "me"
    ));
    let mut f = host_finding();
    f.arn = "a".repeat(513);
    assert!(matches!(
        to_asff(&f, PRODUCT),
        Err(asff::AsffError::Id(513))
    ));
    // A blank title or description falls back to the type (ASFF requires both).
    let mut f = host_finding();
    f.title = "  ".into();
    f.description = "\n".into();
    let a = to_asff(&f, PRODUCT).unwrap();
    assert_eq!(a.title, RELEASE_AGENT);
    assert_eq!(a.description, "\u{FFFD}");
}

#[test]
fn text_is_cut_in_characters_with_the_marker() {
    assert_eq!(asff::text("abc", 10).as_deref(), Some("abc"));
    assert_eq!(asff::text("  ", 10), None);
    assert_eq!(asff::text("", 10), None);
    let cut = asff::text(&"é".repeat(300), 256).unwrap();
    assert_eq!(cut.chars().count(), 256);
    assert!(cut.ends_with(TRUNCATION_MARKER));
    assert_eq!(
        asff::text("a\u{202e}b\nc", 10).as_deref(),
        Some("a\u{FFFD}b\u{FFFD}c")
    );
}

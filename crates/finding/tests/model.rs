//! The finding model against GuardDuty's shape: golden JSON, resources, ids, severities and
//! aggregation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use peregrine_event::{Ancestor, Container as EvContainer, Process, Timestamp};
use peregrine_finding::*;
use peregrine_testkit::builders::{Pod, ancestor, finding_env, pod_container, process as proc};
use serde_json::{Value, json};
use uuid::Uuid;

const T0: i64 = 1_764_000_000_123_456_789; // 2025-11-24T16:00:00.123456789Z

fn process() -> Process {
    let parent = Ancestor {
        uuid: Uuid::from_u128(0xa),
        parent_uuid: Uuid::from_u128(0x1),
        uid: 1000,
        euid: 1000,
        start_time: Timestamp::from_unix_nanos(T0 - 5_000_000_000),
        ..ancestor(10, "/usr/bin/bash")
    };
    let grandparent = Ancestor {
        uuid: Uuid::from_u128(0x1),
        comm: "containerd-shim".into(),
        start_time: Timestamp::from_unix_nanos(T0 - 9_000_000_000),
        ..ancestor(1, "")
    };
    proc(42, "/usr/bin/tee")
        .argv(&["tee", "/sys/fs/cgroup/release_agent"])
        .user(1000)
        .cwd("/tmp")
        .uuid(Uuid::from_u128(0x2a))
        .started(T0 - 1_000_000_000)
        .sha256("ab".repeat(32))
        .lineage(vec![parent, grandparent])
        .with(|p| (p.euid, p.gid) = (0, 0))
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
            image: "public.ecr.aws/nginx/nginx:1.27",
        },
    )
}

fn new_finding(container: Option<&EvContainer>, key: &str, event_ns: i64, now_ns: i64) -> Finding {
    let env = finding_env();
    Finding::new(
        &env,
        NewFinding {
            finding_type: "PrivilegeEscalation:Runtime/CGroupsReleaseAgentModified".into(),
            severity: 8.0,
            title: "Container escape via cgroups release_agent was attempted in pod default/web-1."
                .into(),
            description: "desc".into(),
            aggregation_key: key.into(),
            rule: RuleExplanation {
                id: "cgroups-release-agent-modified".into(),
                title: "Container escape via cgroups release_agent was attempted".into(),
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
            process: Some(ProcessDetails::from_process(&process())),
            context: RuntimeContext {
                release_agent_path: Some("/sys/fs/cgroup/release_agent".into()),
                ..RuntimeContext::default()
            },
            resource: Resource::for_workload(container, &env),
            event_time: Timestamp::from_unix_nanos(event_ns),
            now: Timestamp::from_unix_nanos(now_ns),
        },
    )
}

#[test]
fn golden_container_finding_has_guardduty_shape() {
    let c = container();
    let f = new_finding(Some(&c), "k", T0, T0 + 2_000_000_000);
    let got = serde_json::to_value(&f).unwrap();
    let id = finding_id(
        "111122223333",
        "eu-west-1",
        "PrivilegeEscalation:Runtime/CGroupsReleaseAgentModified",
        "k",
    );
    let container_json = json!({
        "containerRuntime": "containerd",
        "id": c.id,
        "name": "web",
        "image": "public.ecr.aws/nginx/nginx:1.27",
        "imagePrefix": "public.ecr.aws/nginx"
    });
    let resource = json!({
        "resourceType": "EKSCluster",
        "eksClusterDetails": {"name": "prod", "arn": "arn:aws:eks:eu-west-1:111122223333:cluster/prod"},
        "kubernetesDetails": {"kubernetesWorkloadDetails": {
            "name": "web-1", "type": "pods", "uid": "pod-uid-1", "namespace": "default",
            "containers": [container_json.clone()]
        }},
        "containerDetails": container_json,
        "instanceDetails": {"instanceId": "i-0abc", "nodeName": "ip-10-0-1-2.eu-west-1.compute.internal"}
    });
    let service = json!({
        "serviceName": "peregrine",
        "featureName": "RuntimeMonitoring",
        "detectorId": "det-1",
        "archived": false,
        "count": 1,
        "eventFirstSeen": "2025-11-24T16:00:00.123Z",
        "eventLastSeen": "2025-11-24T16:00:00.123Z",
        "resourceRole": "TARGET",
        "additionalInfo": {
            "value": "{\"ruleId\":\"cgroups-release-agent-modified\",\"agentDetails\":{\"agentId\":\"agent-7\",\"agentVersion\":\"0.1.0\"}}",
            "type": "default"
        },
        "runtimeDetails": {
            "process": {
                "name": "tee",
                "executablePath": "/usr/bin/tee",
                "executableSha256": "ab".repeat(32),
                "pwd": "/tmp",
                "pid": 42,
                "startTime": "2025-11-24T15:59:59.123Z",
                "uuid": "00000000-0000-0000-0000-00000000002a",
                "parentUuid": "00000000-0000-0000-0000-00000000000a",
                "userId": 1000,
                "euid": 0,
                "lineage": [
                    {"startTime": "2025-11-24T15:59:55.123Z", "userId": 1000, "name": "bash", "pid": 10,
                     "uuid": "00000000-0000-0000-0000-00000000000a", "executablePath": "/usr/bin/bash",
                     "euid": 1000, "parentUuid": "00000000-0000-0000-0000-000000000001"},
                    {"startTime": "2025-11-24T15:59:51.123Z", "userId": 0, "name": "containerd-shim", "pid": 1,
                     "uuid": "00000000-0000-0000-0000-000000000001",
                     "euid": 0, "parentUuid": "00000000-0000-0000-0000-000000000000"}
                ]
            },
            "context": {"releaseAgentPath": "/sys/fs/cgroup/release_agent"}
        },
        "detection": {"rule": {
            "id": "cgroups-release-agent-modified",
            "title": "Container escape via cgroups release_agent was attempted",
            "mitre": [{"tactic": "Privilege Escalation", "technique": "T1611", "name": "Escape to Host"}],
            "evidence": [{"field": "file.basename", "operator": "eq", "expected": "release_agent", "actual": "release_agent"}]
        }}
    });
    let want = json!({
        "schemaVersion": "2.0",
        "accountId": "111122223333",
        "region": "eu-west-1",
        "partition": "aws",
        "id": id,
        "arn": format!("arn:aws:peregrine:eu-west-1:111122223333:detector/det-1/finding/{id}"),
        "type": "PrivilegeEscalation:Runtime/CGroupsReleaseAgentModified",
        "severity": 8.0,
        "title": "Container escape via cgroups release_agent was attempted in pod default/web-1.",
        "description": "desc",
        "createdAt": "2025-11-24T16:00:02.123Z",
        "updatedAt": "2025-11-24T16:00:02.123Z",
        "resource": resource,
        "service": service,
    });
    assert_eq!(
        got,
        want,
        "got:\n{}",
        serde_json::to_string_pretty(&got).unwrap()
    );
    // The value of additionalInfo is itself JSON, as GuardDuty's is.
    let info: Value =
        serde_json::from_str(&f.service.additional_info.as_ref().unwrap().value).unwrap();
    assert_eq!(info["agentDetails"]["agentVersion"], "0.1.0");
}

#[test]
fn host_process_resource_has_cluster_and_node_but_no_workload() {
    let f = new_finding(None, "k", T0, T0);
    let v = serde_json::to_value(&f).unwrap();
    let r = &v["resource"];
    assert_eq!(r["resourceType"], "EKSCluster");
    assert_eq!(r["eksClusterDetails"]["name"], "prod");
    assert_eq!(r["instanceDetails"]["instanceId"], "i-0abc");
    assert_eq!(
        r["instanceDetails"]["nodeName"],
        "ip-10-0-1-2.eu-west-1.compute.internal"
    );
    assert!(r.get("containerDetails").is_none());
    assert!(r.get("kubernetesDetails").is_none());
}

#[test]
fn container_without_pod_metadata_has_container_but_no_workload() {
    let c = EvContainer {
        id: "abc".into(),
        runtime: "containerd".into(),
        ..EvContainer::default()
    };
    let r = Resource::for_workload(Some(&c), &finding_env());
    assert!(r.kubernetes_details.is_none());
    let cd = r.container_details.unwrap();
    assert_eq!(cd.id.as_deref(), Some("abc"));
    assert_eq!(cd.image_prefix, None);
}

#[test]
fn serde_round_trip_and_unknown_fields_are_tolerated() {
    let c = container();
    let f = new_finding(Some(&c), "k", T0, T0);
    let s = serde_json::to_string(&f).unwrap();
    let back: Finding = serde_json::from_str(&s).unwrap();
    assert_eq!(back, f);

    // A GuardDuty-written finding: extra members, epoch-second timestamps for `timestamp`
    // shapes, no Peregrine extensions.
    let mut v: Value = serde_json::from_str(&s).unwrap();
    v["confidence"] = json!(5.5);
    v["associatedAttackSequenceArn"] = json!("arn:x");
    v["service"]["evidence"] = json!({"threatIntelligenceDetails": []});
    v["service"]["runtimeDetails"]["process"]["startTime"] = json!(1_764_000_000.5);
    v["service"]["runtimeDetails"]["process"]["namespacePid"] = json!(7);
    v["service"]["detection"] = json!({"anomaly": {"profiles": {}}});
    v["resource"]["instanceDetails"]["imageId"] = json!("ami-1");
    let g: Finding = serde_json::from_value(v).unwrap();
    assert_eq!(g.confidence, Some(5.5));
    let p = g.service.runtime_details.unwrap().process.unwrap();
    assert_eq!(p.namespace_pid, Some(7));
    assert_eq!(
        p.start_time.unwrap().unix_nanos(),
        1_764_000_000_500_000_000
    );
    assert_eq!(g.service.detection.unwrap().rule, None);
}

#[test]
fn none_fields_are_skipped() {
    let f = new_finding(None, "k", T0, T0);
    let s = serde_json::to_string(&f).unwrap();
    assert!(!s.contains("null"), "{s}");
    assert!(!s.contains("namespacePid"));
    assert!(!s.contains("\"user\""));
    assert!(!s.contains("confidence"));
    assert!(!s.contains("relatedFilePaths"));
}

#[test]
fn finding_id_is_stable_and_distinguishes_its_parts() {
    let a = finding_id("1", "r", "T", "key");
    assert_eq!(a, finding_id("1", "r", "T", "key"));
    assert_eq!(a.len(), 32);
    assert!(
        a.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    // Pinned: a change of the id scheme would split every open finding in two.
    assert_eq!(a, "7f41ca4191367f37ed32f6a35d9f3179");
    assert_ne!(a, finding_id("1", "r", "T", "key2"));
    assert_ne!(a, finding_id("2", "r", "T", "key"));
    assert_ne!(a, finding_id("1", "r", "U", "key"));
    // Moving a boundary does not collide.
    assert_ne!(finding_id("1", "r", "Tk", "ey"), a);
    assert_ne!(finding_id("1", "rT", "", "key"), a);
}

#[test]
fn arn_format() {
    assert_eq!(
        finding_arn("aws-cn", "cn-north-1", "123", "d", "abc"),
        "arn:aws-cn:peregrine:cn-north-1:123:detector/d/finding/abc"
    );
}

#[test]
fn severity_labels_follow_guardduty_bands() {
    for (s, want) in [
        (1.0, "Low"),
        (2.0, "Low"),
        (3.9, "Low"),
        (4.0, "Medium"),
        (5.0, "Medium"),
        (6.9, "Medium"),
        (7.0, "High"),
        (8.0, "High"),
        (8.9, "High"),
        (9.0, "Critical"),
        (10.0, "Critical"),
        (f64::NAN, "Low"),
    ] {
        assert_eq!(severity_label(s), want, "{s}");
    }
    assert_eq!(clamp_severity(0.0), 1.0);
    assert_eq!(clamp_severity(12.0), 10.0);
    assert_eq!(clamp_severity(f64::NAN), 1.0);
}

#[test]
fn aggregation_counts_moves_times_and_takes_latest_details() {
    let c = container();
    let mut first = new_finding(Some(&c), "k", T0, T0 + 1_000);
    let mut second = new_finding(Some(&c), "k", T0 + 60_000_000_000, T0 + 61_000_000_000);
    second.title = "second".into();
    second
        .service
        .runtime_details
        .as_mut()
        .unwrap()
        .context
        .as_mut()
        .unwrap()
        .release_agent_path = Some("/x/release_agent".into());
    second.service.count = 3;
    first.service.archived = true;
    first.record_occurrence(&second).unwrap();
    // Finding times hold milliseconds.
    let ms = |ns: i64| IsoTime::from(Timestamp::from_unix_nanos(ns)).unix_nanos();

    assert_eq!(first.service.count, 4);
    assert_eq!(first.created_at.unix_nanos(), ms(T0 + 1_000));
    assert_eq!(first.updated_at.unix_nanos(), ms(T0 + 61_000_000_000));
    assert_eq!(first.service.event_first_seen.unwrap().unix_nanos(), ms(T0));
    assert_eq!(
        first.service.event_last_seen.unwrap().unix_nanos(),
        ms(T0 + 60_000_000_000)
    );
    assert_eq!(first.title, "second");
    let ctx = first
        .service
        .runtime_details
        .as_ref()
        .unwrap()
        .context
        .as_ref()
        .unwrap();
    assert_eq!(ctx.release_agent_path.as_deref(), Some("/x/release_agent"));
    assert!(
        first.service.archived,
        "the analyst's archive flag survives new occurrences"
    );

    // A late, older occurrence adds to the count and the first-seen time, but neither moves
    // the last-seen time back nor replaces newer details.
    let mut late = new_finding(Some(&c), "k", T0 - 5_000_000_000, T0 + 2_000);
    late.title = "late".into();
    first.record_occurrence(&late).unwrap();
    assert_eq!(first.service.count, 5);
    assert_eq!(
        first.service.event_first_seen.unwrap().unix_nanos(),
        ms(T0 - 5_000_000_000)
    );
    assert_eq!(
        first.service.event_last_seen.unwrap().unix_nanos(),
        ms(T0 + 60_000_000_000)
    );
    assert_eq!(first.updated_at.unix_nanos(), ms(T0 + 61_000_000_000));
    assert_eq!(first.title, "second");
}

#[test]
fn aggregation_refuses_a_different_finding() {
    let mut a = new_finding(None, "k1", T0, T0);
    let b = new_finding(None, "k2", T0, T0);
    let err = a.record_occurrence(&b).unwrap_err();
    assert!(
        matches!(err, FindingError::NotSameFinding { field: "id", .. }),
        "{err}"
    );
    assert_eq!(a.service.count, 1);
}

#[test]
fn related_file_paths_are_capped_and_deduplicated() {
    let mut ctx = RuntimeContext::default();
    assert!(ctx.add_related_file_path("/a"));
    assert!(!ctx.add_related_file_path("/a"));
    for i in 0..40 {
        ctx.add_related_file_path(&format!("/f{i}"));
    }
    assert_eq!(ctx.related_file_paths.len(), MAX_RELATED_FILE_PATHS);
}

#[test]
fn image_prefix_is_everything_before_the_last_slash() {
    assert_eq!(
        image_prefix("public.ecr.aws/amazonlinux/amazonlinux:latest"),
        Some("public.ecr.aws/amazonlinux")
    );
    assert_eq!(image_prefix("nginx:1.27"), None);
    assert_eq!(image_prefix("/x"), None);
}

#[test]
fn eventbridge_detail_is_the_finding_and_checks_size() {
    let f = new_finding(None, "k", T0, T0);
    assert_eq!(eventbridge::SOURCE, "peregrine");
    assert_eq!(eventbridge::DETAIL_TYPE, "Peregrine Finding");
    let e = eventbridge::entry(&f).unwrap();
    let v = serde_json::to_value(&e).unwrap();
    assert_eq!(v["Source"], "peregrine");
    assert_eq!(v["DetailType"], "Peregrine Finding");
    let detail: Finding = serde_json::from_str(v["Detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail, f);
    // Fields EventBridge rules match on in GuardDuty's detail sit at the same paths.
    let d: Value = serde_json::from_str(&e.detail).unwrap();
    assert_eq!(d["severity"], 8.0);
    assert_eq!(d["service"]["featureName"], "RuntimeMonitoring");
    assert_eq!(d["resource"]["resourceType"], "EKSCluster");

    let mut big = f.clone();
    big.description = "x".repeat(eventbridge::MAX_ENTRY_BYTES);
    assert!(matches!(
        eventbridge::entry(&big),
        Err(FindingError::TooLarge { .. })
    ));
}

#[test]
fn truncate_cuts_on_a_char_boundary_and_marks() {
    let mut s = "é".repeat(100); // 200 bytes
    assert!(truncate(&mut s, 51));
    assert!(s.len() <= 51, "{}", s.len());
    assert!(s.ends_with(TRUNCATION_MARKER));
    assert!(s.starts_with("éé"));
    let mut short = "abc".to_owned();
    assert!(!truncate(&mut short, 3));
    assert_eq!(short, "abc");
}

/// A path of `len` bytes that is mostly control characters (newlines, ESC, NUL, BEL).
fn hostile(len: usize, tag: u8) -> String {
    let mut s = format!("/\u{1b}[2J{tag}\n");
    while s.len() < len {
        s.push(['\0', '\u{7}', '\n', '\r', '\u{1b}'][s.len() % 5]);
    }
    s.truncate(len);
    s
}

fn hostile_finding(ancestors: usize, path_len: usize) -> Finding {
    let env = finding_env();
    let lineage: Vec<Ancestor> = (0..ancestors)
        .map(|i| Ancestor {
            comm: hostile(64, i as u8),
            ..ancestor(100 + i as u32, &hostile(path_len, i as u8))
        })
        .collect();
    let p = proc(42, &hostile(path_len, 200))
        .argv(&[&"A".repeat(100_000), &hostile(100_000, 201)])
        .cwd(&hostile(path_len, 202))
        .lineage(lineage)
        .build();
    Finding::new(
        &env,
        NewFinding {
            finding_type: "Execution:Runtime/NewBinaryExecuted".into(),
            severity: 5.0,
            title: "t".into(),
            description: "d".into(),
            aggregation_key: "k".into(),
            rule: RuleExplanation {
                id: "r".into(),
                title: "t".into(),
                mitre: vec![],
                evidence: vec![Evidence {
                    field: "process.cmdline".into(),
                    operator: "contains".into(),
                    expected: json!("A"),
                    actual: json!(p.argv.join(" ")),
                }],
            },
            context: RuntimeContext {
                command_line_example: Some(p.argv.join(" ")),
                file_path: Some(hostile(path_len, 203)),
                ..RuntimeContext::default()
            },
            process: Some(ProcessDetails::from_process(&p)),
            resource: Resource::for_workload(Some(&container()), &env),
            event_time: Timestamp::from_unix_nanos(T0),
            now: Timestamp::from_unix_nanos(T0),
        },
    )
}

#[test]
fn every_attacker_string_is_cut_with_a_marker_and_flagged() {
    let f = hostile_finding(8, 4096);
    let json = serde_json::to_string(&f).unwrap();
    assert!(json.len() <= MAX_FINDING_BYTES, "{}", json.len());
    assert!(is_truncated(&f));
    let info: Value =
        serde_json::from_str(&f.service.additional_info.as_ref().unwrap().value).unwrap();
    assert_eq!(info["truncated"], true);
    assert_eq!(info["ruleId"], "r");
    let p = f
        .service
        .runtime_details
        .as_ref()
        .unwrap()
        .process
        .as_ref()
        .unwrap();
    assert_eq!(p.lineage.len(), 8);
    for path in p
        .lineage
        .iter()
        .map(|l| l.executable_path.as_deref().unwrap())
        .chain([
            p.executable_path.as_deref().unwrap(),
            p.pwd.as_deref().unwrap(),
        ])
    {
        assert!(path.len() <= MAX_FIELD_BYTES, "{}", path.len());
        assert!(path.ends_with(TRUNCATION_MARKER));
        assert!(
            path.starts_with("/\u{1b}[2J"),
            "a prefix of the original, control characters kept"
        );
    }
    let ctx = f
        .service
        .runtime_details
        .as_ref()
        .unwrap()
        .context
        .as_ref()
        .unwrap();
    assert!(
        ctx.command_line_example
            .as_deref()
            .unwrap()
            .ends_with(TRUNCATION_MARKER)
    );
    let actual = &f
        .service
        .detection
        .as_ref()
        .unwrap()
        .rule
        .as_ref()
        .unwrap()
        .evidence[0]
        .actual;
    assert!(actual.as_str().unwrap().len() <= MAX_FIELD_BYTES);
    // Short values are untouched: the largest are cut first.
    let workload = f
        .resource
        .kubernetes_details
        .as_ref()
        .unwrap()
        .kubernetes_workload_details
        .as_ref()
        .unwrap();
    assert_eq!(workload.name.as_deref(), Some("web-1"));
    // Control characters only ever appear escaped in the JSON.
    assert!(!json.bytes().any(|b| b < 0x20), "no raw control bytes");
    assert!(json.contains("\\u001b[2J"));
}

#[test]
fn a_finding_over_the_budget_shrinks_deterministically() {
    // 32 ancestors with 4 KiB paths of control characters: even cut at MAX_FIELD_BYTES the
    // escaped JSON (six bytes a character) is several times the budget.
    let f = hostile_finding(32, 4096);
    let len = json_len(&f);
    assert!(len <= MAX_FINDING_BYTES, "{len}");
    assert_eq!(len, serde_json::to_vec(&f).unwrap().len());
    assert!(is_truncated(&f));
    let p = f
        .service
        .runtime_details
        .as_ref()
        .unwrap()
        .process
        .as_ref()
        .unwrap();
    let path = p.lineage[0].executable_path.as_deref().unwrap();
    assert!(
        path.len() < MAX_FIELD_BYTES && path.ends_with(TRUNCATION_MARKER),
        "{}",
        path.len()
    );
    assert!(path.len() >= MIN_FIELD_BYTES - TRUNCATION_MARKER.len());
    // Same input, same finding; bounding again changes nothing.
    let again = hostile_finding(32, 4096);
    assert_eq!(again, f);
    let mut twice = f.clone();
    assert!(!twice.bound(), "nothing left to cut");
    assert_eq!(twice, f);
    assert!(eventbridge::entry(&f).is_ok());
}

#[test]
fn an_ordinary_finding_is_not_flagged() {
    let f = new_finding(Some(&container()), "k", T0, T0);
    assert!(!is_truncated(&f));
    assert!(
        !serde_json::to_string(&f)
            .unwrap()
            .contains(TRUNCATION_MARKER)
    );
}

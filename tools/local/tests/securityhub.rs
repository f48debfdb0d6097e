//! The Security Hub export against moto, provisioned from template.yaml with
//! `SecurityHubExport=Enabled`: the detector's real findings, published by it, are imported by
//! the publisher into moto's Security Hub and read back with GetFindings, field by field; an
//! update is imported again under the same Id; a Security Hub that refuses (not enabled) leaves
//! them pending while EventBridge delivers, and the next run imports them; a hostile finding
//! passes the launcher's ASFF checks (crates/testkit/moto/peregrine_moto.py).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

mod common;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_securityhub::types::AwsSecurityFinding;
use common::*;
use peregrine_detector::{AwsDeps, handle_at};
use peregrine_event::Timestamp;
use peregrine_finding::asff::{MAX_DESCRIPTION_CHARS, MAX_PRODUCT_FIELDS, MAX_TITLE_CHARS};
use peregrine_local::function_config;
use peregrine_local::functions::{DETECTOR_BINARY, PUBLISHER_BINARY};
use peregrine_publisher::{AwsPublisherDeps, publish_due};
use peregrine_store::iso;
use peregrine_testkit::moto::{ACCOUNT_ID, REGION};
use peregrine_testkit::samples;
use serde_json::Value;

const AGENT: &str = "i-0a1b2c3d4e5f60718";
const BLINDED: &str = "DefenseEvasion:Runtime/PeregrineAgentBlinded";
const MINUTE: i64 = 60_000_000_000;

fn product() -> String {
    format!("arn:aws:securityhub:{REGION}:{ACCOUNT_ID}:product/{ACCOUNT_ID}/default")
}

struct Export {
    local: Local,
    detector: AwsDeps,
    publisher: AwsPublisherDeps,
    hub: aws_sdk_securityhub::Client,
}

/// moto with the template provisioned and the export on; the functions configured from the
/// template's environment, as in a deployment.
async fn export() -> Export {
    let local = local_with("peregrine", &[("SecurityHubExport", "Enabled")]).await;
    let detector_config: peregrine_detector::Config =
        function_config(&local.stack, DETECTOR_BINARY).unwrap();
    let publisher_config: peregrine_publisher::Config =
        function_config(&local.stack, PUBLISHER_BINARY).unwrap();
    assert_eq!(
        detector_config.security_hub_product_arn.as_deref(),
        Some(product().as_str())
    );
    assert_eq!(
        publisher_config.security_hub_product_arn,
        detector_config.security_hub_product_arn
    );
    let detector = AwsDeps::from_sdk(&local.sdk, detector_config).unwrap();
    let publisher = AwsPublisherDeps::from_sdk(&local.sdk, publisher_config);
    let hub = aws_sdk_securityhub::Client::new(&local.sdk);
    Export {
        local,
        detector,
        publisher,
        hub,
    }
}

fn body(sequence: u64, events: &[peregrine_event::Event]) -> String {
    let msgs = samples::encode(AGENT, sequence, events, Timestamp::now()).unwrap();
    assert_eq!(msgs.len(), 1);
    msgs.into_iter().next().unwrap().body
}

impl Export {
    /// Every finding moto's Security Hub holds, by Id.
    async fn security_hub(&self) -> HashMap<String, AwsSecurityFinding> {
        let mut out = HashMap::new();
        let mut token = None;
        loop {
            let page = self
                .hub
                .get_findings()
                .set_next_token(token)
                .send()
                .await
                .unwrap();
            for f in page.findings() {
                out.insert(f.id().unwrap().to_owned(), f.clone());
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => return out,
            }
        }
    }

    /// The stored findings, by ARN (the ASFF Id), with their items.
    async fn stored(
        &self,
    ) -> HashMap<
        String,
        (
            Value,
            HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
        ),
    > {
        self.local
            .scan("FindingsTable")
            .await
            .into_iter()
            .map(|item| {
                let f = finding(&item);
                (f["arn"].as_str().unwrap().to_owned(), (f, item))
            })
            .collect()
    }
}

fn product_field<'a>(a: &'a AwsSecurityFinding, k: &str) -> &'a str {
    a.product_fields()
        .and_then(|m| m.get(k))
        .map(String::as_str)
        .unwrap_or_else(|| panic!("no product field {k}: {a:?}"))
}

/// The ASFF finding against the stored one it was made from, field by field.
fn check_mapping(a: &AwsSecurityFinding, f: &Value) {
    let arn = f["arn"].as_str().unwrap();
    let finding_type = f["type"].as_str().unwrap();
    assert_eq!(a.schema_version(), Some("2018-10-08"));
    assert_eq!(a.id(), Some(arn));
    assert_eq!(a.product_arn(), Some(product().as_str()));
    assert_eq!(
        a.generator_id(),
        Some(format!("arn:aws:peregrine:{REGION}:{ACCOUNT_ID}:detector/peregrine").as_str())
    );
    assert_eq!(a.aws_account_id(), Some(ACCOUNT_ID));
    let want_type = match finding_type {
        RELEASE_AGENT => {
            "TTPs/Privilege Escalation/PrivilegeEscalation:Runtime-CGroupsReleaseAgentModified"
        }
        SSH_KEYS => "TTPs/Persistence/Persistence:Runtime-SensitiveFileModified",
        NEW_BINARY => "TTPs/Execution/Execution:Runtime-NewBinaryExecuted",
        BLINDED => "TTPs/Defense Evasion/DefenseEvasion:Runtime-PeregrineAgentBlinded",
        other => panic!("unexpected type {other}"),
    };
    assert_eq!(a.types(), [want_type]);
    assert_eq!(
        a.finding_provider_fields().unwrap().types(),
        [want_type],
        "FindingProviderFields.Types"
    );
    assert_eq!(a.created_at(), f["createdAt"].as_str());
    assert_eq!(a.updated_at(), f["updatedAt"].as_str());
    assert_eq!(
        a.first_observed_at(),
        f["service"]["eventFirstSeen"].as_str()
    );
    assert_eq!(a.last_observed_at(), f["service"]["eventLastSeen"].as_str());
    let severity = f["severity"].as_f64().unwrap();
    let s = a.severity().unwrap();
    let label = match severity {
        x if x < 4.0 => "LOW",
        x if x < 7.0 => "MEDIUM",
        x if x < 9.0 => "HIGH",
        _ => "CRITICAL",
    };
    assert_eq!(s.label().map(|l| l.as_str()), Some(label));
    assert_eq!(s.normalized(), Some((severity * 10.0).floor() as i32));
    assert_eq!(s.original(), Some(format!("{severity}").as_str()));
    assert_eq!(a.title(), f["title"].as_str());
    assert_eq!(a.description(), f["description"].as_str());
    assert_eq!(a.record_state().map(|r| r.as_str()), Some("ACTIVE"));
    assert_eq!(
        a.workflow().and_then(|w| w.status()).map(|s| s.as_str()),
        Some("NEW")
    );
    // The cluster: named (the agent does not say which account it is in, so no ARN), with
    // the node.
    let cluster = &a.resources()[0];
    assert_eq!(cluster.r#type(), Some("AwsEksCluster"));
    assert_eq!(cluster.id(), Some("prod-eu"));
    assert_eq!(cluster.partition().map(|p| p.as_str()), Some("aws"));
    assert_eq!(cluster.region(), Some(REGION));
    let details = cluster.details().unwrap();
    assert_eq!(details.aws_eks_cluster().unwrap().name(), Some("prod-eu"));
    assert_eq!(
        details.other().unwrap()["nodeName"],
        "ip-10-0-12-34.eu-west-1.compute.internal"
    );
    // The container of a pod's finding; none for the node's.
    match f["resource"]["containerDetails"].as_object() {
        Some(c) => {
            assert_eq!(a.resources().len(), 2);
            let r = &a.resources()[1];
            assert_eq!(r.r#type(), Some("Container"));
            assert_eq!(r.id(), c["id"].as_str());
            let d = r.details().unwrap();
            let container = d.container().unwrap();
            assert_eq!(container.name(), Some("api"));
            assert_eq!(
                container.image_name(),
                Some("123456789012.dkr.ecr.eu-west-1.amazonaws.com/payments/api:2.14.1")
            );
            assert_eq!(container.container_runtime(), Some("containerd"));
            let pod = &f["resource"]["kubernetesDetails"]["kubernetesWorkloadDetails"];
            assert_eq!(d.other().unwrap()["podNamespace"], "payments");
            assert_eq!(
                Some(d.other().unwrap()["podName"].as_str()),
                pod["name"].as_str()
            );
            assert!(
                pod["name"]
                    .as_str()
                    .unwrap()
                    .starts_with("payments-api-7d9f")
            );
            let p = a.process().unwrap();
            let want = &f["service"]["runtimeDetails"]["process"];
            assert_eq!(p.name(), want["name"].as_str());
            assert_eq!(p.path(), want["executablePath"].as_str());
            assert_eq!(p.pid().map(i64::from), want["pid"].as_i64());
            assert_eq!(p.launched_at(), want["startTime"].as_str());
        }
        None => assert_eq!(a.resources().len(), 1),
    }
    assert_eq!(product_field(a, "peregrine/type"), finding_type);
    assert_eq!(
        product_field(a, "peregrine/findingId"),
        f["id"].as_str().unwrap()
    );
    assert_eq!(
        product_field(a, "peregrine/service/count"),
        f["service"]["count"].to_string()
    );
    assert_eq!(a.product_name(), Some("Peregrine"));
    assert_eq!(a.company_name(), Some("Peregrine"));
    assert!(a.product_fields().unwrap().len() <= MAX_PRODUCT_FIELDS);
}

#[tokio::test]
async fn the_detector_s_findings_are_imported_with_guardduty_s_mapping_and_updates_again() {
    let e = export().await;
    e.hub.enable_security_hub().send().await.unwrap();
    let t0 = Timestamp::now();
    let at = |m: i64| Timestamp::from_unix_nanos(t0.unix_nanos() + m * MINUTE);

    // Pod 0's three attacks and a blinded agent: three container findings and a node's.
    let attack = body(1, &samples::attack(0, samples::T0));
    let blinded = samples::blinded_heartbeat_body(AGENT, 2, at(0)).unwrap();
    let r = handle_at(
        &e.detector,
        e.local.sqs_event(&[("a", &attack), ("hb", &blinded)]),
        at(0),
    )
    .await
    .unwrap();
    assert!(r.batch_item_failures.is_empty(), "{r:?}");
    // Published by the detector, each is due for import from its publish.
    let stored = e.stored().await;
    assert_eq!(stored.len(), 4);
    for (_, item) in stored.values() {
        assert!(!item.contains_key("publishState"), "published: {item:?}");
        assert_eq!(s(item, "securityHubState"), "PENDING");
        assert_eq!(s(item, "securityHubDueAt"), iso(at(0)));
    }
    assert_eq!(
        e.local
            .query_index("bySecurityHubState", "securityHubState", "PENDING")
            .await
            .len(),
        4
    );

    // The publisher's run imports them.
    let summary = publish_due(&e.publisher, at(1), None).await.unwrap();
    assert_eq!(summary.due, 0, "nothing left to publish");
    let sh = summary.security_hub.unwrap();
    assert_eq!(
        (sh.due, sh.imported, sh.failed, sh.still_pending),
        (4, 4, 0, 0)
    );
    let held = e.security_hub().await;
    assert_eq!(held.len(), 4);
    for (arn, (f, item)) in &e.stored().await {
        check_mapping(&held[arn], f);
        assert!(!item.contains_key("securityHubState"), "{item:?}");
        assert!(!item.contains_key("securityHubDueAt"));
        assert_eq!(s(item, "securityHubImportedAt"), iso(at(1)));
    }
    assert!(
        e.local
            .query_index("bySecurityHubState", "securityHubState", "PENDING")
            .await
            .is_empty()
    );
    let sh = publish_due(&e.publisher, at(2), None)
        .await
        .unwrap()
        .security_hub
        .unwrap();
    assert_eq!(sh.due, 0, "imported once");

    // The release_agent write again: count 2, published at the frequency, imported again
    // under the same Id.
    let again = body(3, &samples::release_agent_write(0, samples::T0 + MINUTE));
    handle_at(&e.detector, e.local.sqs_event(&[("b", &again)]), at(3))
        .await
        .unwrap();
    let s10 = publish_due(&e.publisher, at(10), None).await.unwrap();
    assert_eq!(
        (s10.published, s10.security_hub.unwrap().due),
        (0, 0),
        "not published before the frequency, so not imported"
    );
    let s16 = publish_due(&e.publisher, at(16), None).await.unwrap();
    assert_eq!(s16.published, 1);
    assert_eq!(s16.security_hub.unwrap().imported, 1);
    let held = e.security_hub().await;
    assert_eq!(held.len(), 4, "updated in place");
    let stored = e.stored().await;
    let (arn, (f, _)) = stored
        .iter()
        .find(|(_, (f, _))| f["type"] == RELEASE_AGENT)
        .unwrap();
    assert_eq!(f["service"]["count"], 2);
    check_mapping(&held[arn], f);
    assert!(held[arn].updated_at() > held[arn].created_at());
}

#[tokio::test]
async fn security_hub_refusing_leaves_findings_pending_and_eventbridge_delivers() {
    // Security Hub is not enabled: moto (through the launcher) answers InvalidAccessException,
    // as AWS does.
    let e = export().await;
    let t0 = Timestamp::now();
    let at = |m: i64| Timestamp::from_unix_nanos(t0.unix_nanos() + m * MINUTE);
    let attack = body(1, &samples::attack(0, samples::T0));
    let r = handle_at(&e.detector, e.local.sqs_event(&[("a", &attack)]), at(0))
        .await
        .unwrap();
    assert!(r.batch_item_failures.is_empty());
    // EventBridge delivered, through the template's rule.
    let delivered = e
        .local
        .drain("HighSeverityFindingsQueue", Duration::from_secs(1))
        .await;
    assert_eq!(delivered.len(), 1);

    let summary = publish_due(&e.publisher, at(1), None).await.unwrap();
    let sh = summary.security_hub.unwrap();
    assert_eq!(
        (sh.due, sh.imported, sh.failed, sh.still_pending),
        (3, 0, 3, 3)
    );
    for (_, item) in e.stored().await.values() {
        assert!(!item.contains_key("publishState"), "published: {item:?}");
        assert_eq!(s(item, "securityHubState"), "PENDING", "{item:?}");
        assert_eq!(s(item, "securityHubDueAt"), iso(at(0)), "not set back");
        assert!(!item.contains_key("securityHubImportedAt"));
    }
    // A new finding meanwhile still goes out on EventBridge at once.
    let more = body(2, &samples::release_agent_write(5, samples::T0));
    handle_at(&e.detector, e.local.sqs_event(&[("b", &more)]), at(2))
        .await
        .unwrap();
    assert_eq!(
        e.local
            .drain("HighSeverityFindingsQueue", Duration::from_secs(1))
            .await
            .len(),
        1
    );

    // Security Hub is enabled: the next run imports all four.
    e.hub.enable_security_hub().send().await.unwrap();
    let sh = publish_due(&e.publisher, at(3), None)
        .await
        .unwrap()
        .security_hub
        .unwrap();
    assert_eq!((sh.due, sh.imported, sh.still_pending), (4, 4, 0));
    let held = e.security_hub().await;
    assert_eq!(held.len(), 4);
    for (arn, (f, item)) in &e.stored().await {
        check_mapping(&held[arn], f);
        assert!(!item.contains_key("securityHubState"));
    }
}

#[tokio::test]
async fn a_hostile_finding_is_taken_within_asff_s_limits() {
    let e = export().await;
    e.hub.enable_security_hub().send().await.unwrap();
    let now = Timestamp::now();
    let hostile = body(1, &[samples::hostile_release_agent_write().unwrap()]);
    handle_at(&e.detector, e.local.sqs_event(&[("h", &hostile)]), now)
        .await
        .unwrap();
    let sh = publish_due(&e.publisher, now, None)
        .await
        .unwrap()
        .security_hub
        .unwrap();
    // The launcher refuses (FailedFindings, InvalidInput) what breaks an ASFF limit or
    // pattern: taken means within them.
    assert_eq!((sh.imported, sh.failed), (1, 0), "{sh:?}");
    let held = e.security_hub().await;
    let a = held.values().next().unwrap();
    assert!(a.title().unwrap().chars().count() <= MAX_TITLE_CHARS);
    assert!(a.description().unwrap().chars().count() <= MAX_DESCRIPTION_CHARS);
    // The workload's strings are there, defused: the terminal escape is a U+FFFD.
    let pwd = product_field(a, "peregrine/service/runtimeDetails/process/pwd");
    assert!(pwd.starts_with("/\u{FFFD}]0;pwned98\u{FFFD}"), "{pwd:?}");
    for v in a.product_fields().unwrap().values() {
        assert!(!v.chars().any(char::is_control), "{v:?}");
    }
}

#[tokio::test]
async fn findings_of_a_cluster_in_another_account_are_published_but_not_imported() {
    let e = export().await;
    e.hub.enable_security_hub().send().await.unwrap();
    let now = Timestamp::now();
    // The agent names its cluster by ARN, in another account: the findings are that account's,
    // which Security Hub does not take under this account's default product (the launcher,
    // as AWS, would refuse each one).
    let identity = peregrine_wire::AgentIdentity {
        cluster_arn: Some(
            "arn:aws:eks:us-east-1:210987654321:cluster/prod-eu"
                .parse()
                .unwrap(),
        ),
        ..samples::identity(AGENT)
    };
    let body = samples::encode_as(identity, 1, &samples::attack(0, samples::T0), now)
        .unwrap()
        .remove(0)
        .body;
    handle_at(&e.detector, e.local.sqs_event(&[("a", &body)]), now)
        .await
        .unwrap();
    assert_eq!(
        e.local
            .drain("HighSeverityFindingsQueue", Duration::from_secs(1))
            .await
            .len(),
        1,
        "published on EventBridge"
    );
    let sh = publish_due(&e.publisher, now, None)
        .await
        .unwrap()
        .security_hub
        .unwrap();
    assert_eq!(
        (sh.due, sh.imported, sh.skipped, sh.failed, sh.still_pending),
        (3, 0, 3, 0, 0)
    );
    assert!(e.security_hub().await.is_empty());
    for (f, item) in e.stored().await.values() {
        assert_eq!(f["accountId"], "210987654321");
        assert!(
            !item.contains_key("securityHubState"),
            "no longer due: {item:?}"
        );
    }
}

//! Identities do not collide (issue 11 item 9), against moto through the real handler: two
//! clusters with the same node name, the same host process activity and the same container id
//! get distinct findings, while one cluster's batch delivered twice still folds into one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

mod common;

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use common::{Local, local};
use peregrine_detector::handle;
use peregrine_event::{Event, Timestamp};
use peregrine_testkit::builders::{EventBuilder, agent_identity, process};
use peregrine_testkit::samples;
use peregrine_wire::{BatchEncoder, EncoderConfig};

const NODE: &str = "ip-10-0-1-2.eu-west-1.compute.internal";

impl Local {
    async fn deliver(&self, message_id: &str, body: &str) {
        let event = self.invocation(&[(message_id, body)], 0);
        let r = handle(&self.deps, event).await.unwrap();
        assert!(r.batch_item_failures.is_empty(), "{r:?}");
    }
}

/// A miner run on the host, then the same run in a container (the sample pod's container).
fn events(container: bool) -> Vec<Event> {
    let p = process(4242, "/tmp/xmrig").argv(&["xmrig"]).build();
    let mut e = EventBuilder::exec("/tmp/xmrig")
        .by(p)
        .at(samples::T0)
        .build();
    if container {
        e.container = samples::attack(0, samples::T0)
            .into_iter()
            .find_map(|e| e.container);
        assert!(e.container.is_some());
    }
    vec![e]
}

/// One batch (sequence `seq`) from `agent` on node [`NODE`] of `cluster`.
fn body(agent: &str, cluster: &str, seq: u64, events: &[Event]) -> String {
    let mut m = BatchEncoder::new(
        agent_identity(agent, NODE, cluster),
        EncoderConfig::default(),
    )
    .unwrap()
    .with_next_sequence(seq)
    .encode(events, Timestamp::now())
    .unwrap();
    assert_eq!(m.len(), 1);
    m.remove(0).body
}

fn s(item: &HashMap<String, AttributeValue>, k: &str) -> String {
    item[k].as_s().unwrap().clone()
}

fn count(item: &HashMap<String, AttributeValue>) -> u64 {
    let f: serde_json::Value = serde_json::from_str(&s(item, "finding")).unwrap();
    f["service"]["count"].as_u64().unwrap()
}

#[tokio::test]
async fn two_clusters_with_the_same_names_get_their_own_findings() {
    let l = local().await;
    for container in [false, true] {
        let evs = events(container);
        // The same batch twice from cluster A (a redelivery), then once from cluster B with
        // the same node name and, for the container case, the same container id.
        let seq = u64::from(container) + 1;
        let a = body("agent-a", "cluster-a", seq, &evs);
        l.deliver(&format!("a-{container}"), &a).await;
        l.deliver(&format!("a-{container}"), &a).await;
        l.deliver(
            &format!("b-{container}"),
            &body("agent-b", "cluster-b", seq, &evs),
        )
        .await;
    }
    let items = l.findings().await;
    let mut by_cluster: HashMap<String, usize> = HashMap::new();
    for item in &items {
        *by_cluster.entry(s(item, "clusterName")).or_default() += 1;
        assert_eq!(count(item), 1, "a redelivery counts once: {item:?}");
    }
    assert_eq!(items.len(), 4, "host and container, per cluster: {items:?}");
    assert_eq!(by_cluster["cluster-a"], 2);
    assert_eq!(by_cluster["cluster-b"], 2);
}

#[tokio::test]
async fn one_clusters_repeats_still_fold_into_one_finding() {
    let l = local().await;
    let evs = events(true);
    l.deliver("m-1", &body("agent-a", "cluster-a", 1, &evs))
        .await;
    // The same activity in a new batch (another sequence) of the same cluster and agent.
    l.deliver("m-2", &body("agent-a", "cluster-a", 2, &evs))
        .await;
    let items = l.findings().await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(count(&items[0]), 2);
}

/// An agent told its cluster's ARN, on node [`NODE`].
fn identity_in(agent: &str, arn: &str) -> peregrine_wire::AgentIdentity {
    let arn: peregrine_event::ClusterArn = arn.parse().unwrap();
    peregrine_wire::AgentIdentity {
        cluster_arn: Some(arn.clone()),
        ..agent_identity(agent, NODE, arn.cluster_name())
    }
}

#[tokio::test]
async fn same_named_clusters_in_two_accounts_keep_their_findings_and_heartbeats_apart() {
    let l = local().await;
    let a = "arn:aws:eks:eu-west-1:111111111111:cluster/prod";
    let b = "arn:aws:eks:us-east-2:222222222222:cluster/prod";
    let evs = events(true);
    for (i, arn) in [a, b].into_iter().enumerate() {
        let m = BatchEncoder::new(identity_in("agent", arn), EncoderConfig::default())
            .unwrap()
            .with_next_sequence(1)
            .encode(&evs, Timestamp::now())
            .unwrap();
        l.deliver(&format!("batch-{i}"), &m[0].body).await;
        let hb = samples::reporting_heartbeat_body(identity_in("agent", arn), 2, Timestamp::now())
            .unwrap();
        l.deliver(&format!("hb-{i}"), &hb).await;
    }
    // An agent of a `prod` that was not told its ARN.
    let legacy = agent_identity("agent", NODE, "prod");
    l.deliver(
        "hb-legacy",
        &samples::reporting_heartbeat_body(legacy, 2, Timestamp::now()).unwrap(),
    )
    .await;

    // One finding per account (the same agent id, node, container and sequence would have
    // folded them into one before), each in its cluster's account and region.
    let items = l.findings().await;
    assert_eq!(items.len(), 2, "{items:?}");
    let mut seen: Vec<(String, String, String)> = items
        .iter()
        .map(|item| {
            let f: serde_json::Value = serde_json::from_str(&s(item, "finding")).unwrap();
            (
                f["accountId"].as_str().unwrap().to_owned(),
                f["region"].as_str().unwrap().to_owned(),
                f["resource"]["eksClusterDetails"]["arn"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("111111111111".into(), "eu-west-1".into(), a.into()),
            ("222222222222".into(), "us-east-2".into(), b.into()),
        ]
    );

    // Three heartbeat rows for one node name: one per ARN, one under the bare name.
    let rows = aws_sdk_dynamodb::Client::new(&l.sdk)
        .scan()
        .table_name(&l.stack.tables["HeartbeatsTable"])
        .send()
        .await
        .unwrap()
        .items()
        .to_vec();
    let mut keys: Vec<String> = rows
        .iter()
        .map(|r| s(r, peregrine_store::HEARTBEAT_KEY))
        .collect();
    keys.sort();
    assert_eq!(keys, [a, b, "prod"]);
    assert!(rows.iter().all(|r| s(r, "clusterName") == "prod"));
}

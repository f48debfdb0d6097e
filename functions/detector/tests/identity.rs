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

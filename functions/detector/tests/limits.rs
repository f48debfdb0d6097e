//! Limits against moto, provisioned from template.yaml: a hostile event's finding is bounded
//! before it is stored or published (issue 11 item 8), and a near deadline defers records
//! rather than losing them (item 10).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod common;

use aws_lambda_events::sqs::SqsBatchResponse;
use common::{Local, local};
use peregrine_detector::handle;
use peregrine_event::Timestamp;
use peregrine_finding::eventbridge::MAX_ENTRY_BYTES;
use peregrine_finding::{MAX_FIELD_BYTES, MAX_FINDING_BYTES, TRUNCATION_MARKER};
use peregrine_testkit::samples;
use serde_json::Value;

/// DynamoDB's item limit: 400 KB, attribute names and values.
const DYNAMO_MAX_ITEM_BYTES: usize = 400 * 1024;
const AGENT: &str = "i-0hostile";

impl Local {
    /// What the bus delivered to HighSeverityFindingsQueue (the EventBridge envelopes).
    async fn high_severity_events(&self) -> Vec<String> {
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        let url = &self.stack.queues["HighSeverityFindingsQueue"].url;
        let mut out = Vec::new();
        loop {
            let r = sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .wait_time_seconds(if out.is_empty() { 2 } else { 0 })
                .send()
                .await
                .unwrap();
            if r.messages().is_empty() {
                return out;
            }
            for m in r.messages() {
                out.push(m.body().unwrap_or_default().to_owned());
                sqs.delete_message()
                    .queue_url(url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }
}

fn no_raw_control(what: &str, s: &str) {
    assert!(
        !s.chars().any(char::is_control),
        "{what} has a raw control character: {s:?}"
    );
}

fn failures(r: &SqsBatchResponse) -> Vec<String> {
    r.batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

#[tokio::test]
async fn a_hostile_finding_is_bounded_in_dynamodb_and_on_the_bus() {
    let l = local().await;
    let events = vec![samples::hostile_release_agent_write().expect("the release_agent write")];
    let msgs = samples::encode(AGENT, 1, &events, Timestamp::now()).unwrap();
    assert_eq!(msgs.len(), 1);
    let r = handle(&l.deps, l.invocation(&[("m-1", &msgs[0].body)], 0))
        .await
        .unwrap();
    assert!(failures(&r).is_empty(), "{r:?}");

    // Stored: one item, under DynamoDB's limit, the finding under the budget.
    let items = l.findings().await;
    assert_eq!(items.len(), 1, "{items:?}");
    let item = &items[0];
    let item_bytes: usize = item
        .iter()
        .map(|(k, v)| {
            k.len()
                + v.as_s()
                    .map(String::len)
                    .unwrap_or_else(|_| v.as_n().map(String::len).unwrap_or(8))
        })
        .sum();
    assert!(item_bytes < DYNAMO_MAX_ITEM_BYTES, "{item_bytes}");
    let stored = item["finding"].as_s().unwrap();
    assert!(stored.len() <= MAX_FINDING_BYTES, "{}", stored.len());
    assert!(
        !stored.bytes().any(|b| b < 0x20),
        "control characters only as JSON escapes in the stored finding"
    );
    assert!(stored.contains("\\u001b]0;pwned"), "escaped, not dropped");
    assert!(stored.contains(TRUNCATION_MARKER));
    assert!(
        item.get("publishState").is_none(),
        "published at once: {item:?}"
    );

    // Published: the same document, inside an entry under EventBridge's limit.
    let published = l.high_severity_events().await;
    assert_eq!(
        published.len(),
        1,
        "severity 8 reaches the high-severity queue"
    );
    let envelope: Value = serde_json::from_str(&published[0]).unwrap();
    let detail = &envelope["detail"];
    let detail_text = serde_json::to_string(detail).unwrap();
    assert!(
        "peregrine".len() + "Peregrine Finding".len() + detail_text.len() <= MAX_ENTRY_BYTES,
        "{}",
        detail_text.len()
    );
    let f: Value = serde_json::from_str(stored).unwrap();
    assert_eq!(detail["id"], f["id"]);

    for f in [&f, detail] {
        let info: Value =
            serde_json::from_str(f["service"]["additionalInfo"]["value"].as_str().unwrap())
                .unwrap();
        assert_eq!(info["truncated"], true, "{info}");
        no_raw_control("title", f["title"].as_str().unwrap());
        no_raw_control("description", f["description"].as_str().unwrap());
        let process = &f["service"]["runtimeDetails"]["process"];
        let lineage = process["lineage"].as_array().unwrap();
        assert_eq!(lineage.len(), 8);
        for (i, a) in lineage.iter().enumerate() {
            let path = a["executablePath"].as_str().unwrap();
            assert!(path.len() <= MAX_FIELD_BYTES, "{}", path.len());
            assert!(path.ends_with(TRUNCATION_MARKER), "ancestor {i}");
            // The structured value keeps the control characters (escaped in the JSON).
            assert!(
                path.starts_with(&format!("/\u{1b}]0;pwned{i}\u{7}\n")),
                "{path:?}"
            );
        }
        let pwd = process["pwd"].as_str().unwrap();
        assert!(pwd.len() <= MAX_FIELD_BYTES && pwd.ends_with(TRUNCATION_MARKER));
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn a_near_deadline_defers_records_and_redelivery_loses_and_duplicates_nothing() {
    let l = local().await;
    let bodies: Vec<String> = (0..4u32)
        .map(|i| {
            let events = samples::release_agent_write(i, samples::T0);
            samples::encode(AGENT, u64::from(i) + 10, &events, Timestamp::now())
                .unwrap()
                .remove(0)
                .body
        })
        .collect();
    let ids = ["r-0", "r-1", "r-2", "r-3"];
    let records: Vec<(&str, &str)> = ids
        .iter()
        .copied()
        .zip(bodies.iter().map(String::as_str))
        .collect();
    assert!(l.deps.config.deadline_margin >= Duration::from_secs(1));

    // Two seconds left, under the margin: nothing is started, everything comes back.
    let r = handle(&l.deps, l.invocation(&records, now_ms() + 2_000))
        .await
        .unwrap();
    assert_eq!(failures(&r), ids);
    assert!(l.findings().await.is_empty(), "no record was started");

    // SQS redelivers them to an invocation with time to spare; then once more (a duplicate
    // delivery), which the dedupe markers absorb.
    for _ in 0..2 {
        let r = handle(&l.deps, l.invocation(&records, now_ms() + 60_000))
            .await
            .unwrap();
        assert!(failures(&r).is_empty(), "{r:?}");
    }
    let items = l.findings().await;
    assert_eq!(items.len(), 4, "one finding per pod, none lost");
    for item in &items {
        assert_eq!(
            item["count"].as_n().unwrap(),
            "1",
            "no duplicate occurrence"
        );
    }
    assert_eq!(
        l.high_severity_events().await.len(),
        4,
        "each published once"
    );
}

//! Suppression filters and sample findings against moto, provisioned from template.yaml, with
//! findings made by the real detector and published by the real publisher: an ARCHIVE filter
//! keeps the next matching finding off the bus (a queue targeted by an EventBridge rule on
//! the bus sees every other finding), filters CRUD with ranks and pagination, malformed
//! requests, and CreateSampleFindings for all 46 runtime types.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use lambda_runtime::LambdaEvent;
use peregrine_api::{ApiDeps, handle as api, sample_problems};
use peregrine_detector::{AwsDeps, handle_at};
use peregrine_event::Timestamp;
use peregrine_finding::RUNTIME_TYPES;
use peregrine_local::function_config;
use peregrine_local::functions::{API_BINARY, DETECTOR_BINARY, PUBLISHER_BINARY};
use peregrine_publisher::{AwsPublisherDeps, publish_due};
use peregrine_testkit::lambda::function_url_request;
use peregrine_testkit::samples;
use serde_json::{Value, json};

const AGENT: &str = "i-0a1b2c3d4e5f60718";
const RELEASE_AGENT: &str = "PrivilegeEscalation:Runtime/CGroupsReleaseAgentModified";
const MINUTE: i64 = 60_000_000_000;

struct Env {
    local: Local,
    api: ApiDeps,
    detector: AwsDeps,
    publisher: AwsPublisherDeps,
    detector_id: String,
    /// Every finding event on the bus (a rule on `source: peregrine` targets it).
    all_findings_queue: String,
}

async fn env() -> Env {
    let local = local().await;
    let config: peregrine_api::Config = function_config(&local.stack, API_BINARY).unwrap();
    let detector_id = config.detector_id.clone();
    let api = ApiDeps::from_sdk(&local.sdk, config);
    let detector = AwsDeps::from_sdk(
        &local.sdk,
        function_config(&local.stack, DETECTOR_BINARY).unwrap(),
    )
    .unwrap();
    let publisher = AwsPublisherDeps::from_sdk(
        &local.sdk,
        function_config(&local.stack, PUBLISHER_BINARY).unwrap(),
    );
    // A rule → queue for every finding, so a test can see what was and was not published.
    let sqs = local.sqs();
    let url = sqs
        .create_queue()
        .queue_name("all-findings")
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    let events = aws_sdk_eventbridge::Client::new(&local.sdk);
    let bus = local.stack.buses["FindingsBus"].clone();
    events
        .put_rule()
        .name("all-findings")
        .event_bus_name(&bus)
        .event_pattern(
            json!({"source": ["peregrine"], "detail-type": ["Peregrine Finding"]}).to_string(),
        )
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule("all-findings")
        .event_bus_name(&bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("q")
                .arn(arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    Env {
        local,
        api,
        detector,
        publisher,
        detector_id,
        all_findings_queue: url,
    }
}

impl Env {
    async fn call(
        &self,
        method: &str,
        path: &str,
        query: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let path = format!("/detector/{}{path}", self.detector_id);
        let query: Vec<(&str, &str)> = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .collect();
        let request = function_url_request(method, &path, &query, body.map(|b| b.to_string()));
        let r = api(&self.api, LambdaEvent::new(request, Default::default()))
            .await
            .unwrap();
        (r.status_code, serde_json::from_str(&r.body).unwrap())
    }

    async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, path, "", body.clone()).await;
        assert_eq!(status, 200, "{method} {path} {body:?}: {v}");
        v
    }

    async fn bad(&self, method: &str, path: &str, body: Option<Value>) -> String {
        let (status, v) = self.call(method, path, "", body.clone()).await;
        assert_eq!(status, 400, "{method} {path} {body:?}: {v}");
        assert_eq!(v["__type"], "BadRequestException");
        v["message"].as_str().unwrap().to_owned()
    }

    /// The types of the finding events delivered to the all-findings queue since last time.
    async fn published(&self) -> Vec<String> {
        let sqs = self.local.sqs();
        let mut out = Vec::new();
        let mut wait = 1;
        loop {
            let r = sqs
                .receive_message()
                .queue_url(&self.all_findings_queue)
                .max_number_of_messages(10)
                .wait_time_seconds(wait)
                .send()
                .await
                .unwrap();
            if r.messages().is_empty() {
                out.sort();
                return out;
            }
            for m in r.messages() {
                let e: Value = serde_json::from_str(m.body().unwrap()).unwrap();
                out.push(e["detail"]["type"].as_str().unwrap().to_owned());
                sqs.delete_message()
                    .queue_url(&self.all_findings_queue)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
            wait = 0;
        }
    }

    /// Pod `pod`'s attack (release_agent 8, SSH key 5, new binary 5) through the detector.
    async fn attack(&self, sequence: u64, pod: u32, at: Timestamp) {
        let events = samples::attack(pod, samples::T0 + i64::from(pod) * MINUTE);
        let body = samples::encode(AGENT, sequence, &events, Timestamp::now())
            .unwrap()
            .remove(0)
            .body;
        let id = format!("m-{sequence}");
        let r = handle_at(&self.detector, self.local.sqs_event(&[(&id, &body)]), at)
            .await
            .unwrap();
        assert!(r.batch_item_failures.is_empty(), "{r:?}");
    }

    async fn findings_of_type(&self, t: &str) -> Vec<Value> {
        let ids = self
            .ok(
                "POST",
                "/findings",
                Some(json!({"findingCriteria": {"criterion": {"type": {"eq": [t]}}}})),
            )
            .await["findingIds"]
            .clone();
        self.ok("POST", "/findings/get", Some(json!({"findingIds": ids})))
            .await["findings"]
            .as_array()
            .unwrap()
            .clone()
    }

    async fn raw_item(
        &self,
        id: &str,
    ) -> std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
        self.local
            .dynamo()
            .get_item()
            .table_name(self.local.table("FindingsTable"))
            .key(
                "id",
                aws_sdk_dynamodb::types::AttributeValue::S(id.to_owned()),
            )
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item
            .unwrap()
    }

    async fn names(&self, query: &str) -> (Vec<String>, Option<String>) {
        let (status, v) = self.call("GET", "/filter", query, None).await;
        assert_eq!(status, 200, "{v}");
        let names = v["filterNames"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_owned())
            .collect();
        (names, v["nextToken"].as_str().map(str::to_owned))
    }
}

fn archive_type(name: &str, t: &str) -> Value {
    json!({
        "name": name,
        "action": "ARCHIVE",
        "findingCriteria": {"criterion": {"type": {"eq": [t]}}},
    })
}

#[tokio::test]
async fn an_archive_filter_keeps_the_next_matching_finding_off_the_bus() {
    let e = env().await;
    let now = Timestamp::now();
    e.ok(
        "POST",
        "/filter",
        Some(archive_type("suppress-release-agent", RELEASE_AGENT)),
    )
    .await;

    // The next attack: the release_agent finding is stored archived and never published;
    // the two others arrive.
    e.attack(1, 0, now).await;
    assert_eq!(
        e.published().await,
        [
            "Execution:Runtime/NewBinaryExecuted",
            "Persistence:Runtime/SensitiveFileModified"
        ]
    );
    let suppressed = e.findings_of_type(RELEASE_AGENT).await;
    assert_eq!(suppressed.len(), 1);
    assert_eq!(suppressed[0]["service"]["archived"], true);
    let id = suppressed[0]["id"].as_str().unwrap();
    let item = e.raw_item(id).await;
    for outbox in ["publishState", "lastPublishedAt", "securityHubState"] {
        assert!(
            !item.contains_key(outbox),
            "{outbox} set on a suppressed finding"
        );
    }
    // Every finding expires FindingRetentionDays (90) after its write.
    let expires: i64 = item["expiresAt"].as_n().unwrap().parse().unwrap();
    assert_eq!(expires, now.unix_nanos() / 1_000_000_000 + 90 * 86_400);

    // An update of it, and the publisher once every frequency has passed: still nothing.
    e.attack(
        2,
        0,
        Timestamp::from_unix_nanos(now.unix_nanos() + 20 * MINUTE),
    )
    .await;
    let later = Timestamp::from_unix_nanos(now.unix_nanos() + 40 * MINUTE);
    publish_due(&e.publisher, later, None).await.unwrap();
    let published = e.published().await;
    assert!(
        !published.iter().any(|t| t == RELEASE_AGENT),
        "{published:?}"
    );
    assert_eq!(published.len(), 2, "the others' updates: {published:?}");
    let again = e.findings_of_type(RELEASE_AGENT).await;
    assert_eq!(again[0]["service"]["count"], 2);
    assert_eq!(again[0]["service"]["archived"], true);
    // Nor did the template's high-severity rule see it (it is the only severity-8 one).
    assert!(
        e.local
            .drain("HighSeverityFindingsQueue", Duration::ZERO)
            .await
            .is_empty()
    );

    // Another pod's attack once the filter is deleted: published again.
    e.ok("DELETE", "/filter/suppress-release-agent", None).await;
    e.attack(
        3,
        1,
        Timestamp::from_unix_nanos(now.unix_nanos() + 41 * MINUTE),
    )
    .await;
    assert!(e.published().await.iter().any(|t| t == RELEASE_AGENT));
}

#[tokio::test]
async fn filters_round_trip_with_ranks_updates_deletes_pages_and_bad_requests() {
    let e = env().await;
    let criteria = json!({"criterion": {"severity": {"gte": 7}}});
    for name in ["a-1", "b-2", "c-3"] {
        let r = e
            .ok(
                "POST",
                "/filter",
                Some(json!({"name": name, "findingCriteria": criteria})),
            )
            .await;
        assert_eq!(r, json!({"name": name}));
    }
    // Inserted at rank 1: the others move down.
    e.ok(
        "POST",
        "/filter",
        Some(json!({
            "name": "first", "description": "high ones", "action": "ARCHIVE", "rank": 1,
            "findingCriteria": {"criterion": {
                "resource.containerDetails.image": {"matches": ["registry.example/*"]},
                "severity": {"gte": 7}
            }},
            "clientToken": "tok-1", "tags": {"team": "sec"}
        })),
    )
    .await;
    assert_eq!(e.names("").await.0, ["first", "a-1", "b-2", "c-3"]);
    let got = e.ok("GET", "/filter/first", None).await;
    assert_eq!(got["name"], "first");
    assert_eq!(got["action"], "ARCHIVE");
    assert_eq!(got["rank"], 1);
    assert_eq!(got["description"], "high ones");
    assert_eq!(got["tags"], json!({"team": "sec"}));
    assert_eq!(
        got["findingCriteria"]["criterion"]["resource.containerDetails.image"]["matches"],
        json!(["registry.example/*"])
    );
    assert_eq!(e.ok("GET", "/filter/b-2", None).await["rank"], 3);
    // The same create again with its clientToken: idempotent; without: a 400.
    e.ok(
        "POST",
        "/filter",
        Some(json!({"name": "first", "clientToken": "tok-1", "findingCriteria": criteria})),
    )
    .await;
    assert!(
        e.bad(
            "POST",
            "/filter",
            Some(json!({"name": "first", "findingCriteria": criteria}))
        )
        .await
        .contains("already exists")
    );

    // Update: move c-3 to rank 1, change its action and description.
    let r = e
        .ok(
            "POST",
            "/filter/c-3",
            Some(json!({"rank": 1, "action": "ARCHIVE", "description": "moved"})),
        )
        .await;
    assert_eq!(r, json!({"name": "c-3"}));
    assert_eq!(e.names("").await.0, ["c-3", "first", "a-1", "b-2"]);
    let c = e.ok("GET", "/filter/c-3", None).await;
    assert_eq!(
        (c["rank"].clone(), c["action"].clone()),
        (json!(1), json!("ARCHIVE"))
    );
    // A rank past the end is the end.
    e.ok("POST", "/filter/first", Some(json!({"rank": 100})))
        .await;
    assert_eq!(e.names("").await.0, ["c-3", "a-1", "b-2", "first"]);

    // Delete closes the gap.
    assert_eq!(e.ok("DELETE", "/filter/a-1", None).await, json!({}));
    assert_eq!(e.names("").await.0, ["c-3", "b-2", "first"]);
    assert_eq!(e.ok("GET", "/filter/first", None).await["rank"], 3);
    assert!(
        e.bad("GET", "/filter/a-1", None)
            .await
            .contains("does not exist")
    );

    // Pages.
    let (page, next) = e.names("maxResults=2").await;
    assert_eq!(page, ["c-3", "b-2"]);
    let next = next.expect("a second page");
    let (page, last) = e.names(&format!("maxResults=2&nextToken={next}")).await;
    assert_eq!((page, last), (vec!["first".to_owned()], None));

    // Malformed requests.
    let bad_body = |b: Value| e.bad("POST", "/filter", Some(b));
    assert!(
        bad_body(json!({"name": "no spaces!", "findingCriteria": criteria}))
            .await
            .contains("not valid")
    );
    assert!(
        bad_body(json!({"name": "ok-name", "rank": 0, "findingCriteria": criteria}))
            .await
            .contains("rank")
    );
    assert!(
        bad_body(json!({"name": "ok-name", "rank": 101, "findingCriteria": criteria}))
            .await
            .contains("rank")
    );
    assert!(
        bad_body(json!({"name": "ok-name", "action": "DELETE", "findingCriteria": criteria}))
            .await
            .contains("NOOP or ARCHIVE")
    );
    assert!(
        bad_body(
            json!({"name": "ok-name", "findingCriteria": {"criterion": {"nope": {"eq": ["x"]}}}})
        )
        .await
        .contains("nope")
    );
    assert!(
        bad_body(json!({"name": "ok-name", "findingCriteria": {"criterion": {}}}))
            .await
            .contains("at least one")
    );
    assert!(bad_body(json!({"name": "ok-name", "findingCriteria": {"criterion": {"severity": {"matches": ["8"]}}}})).await.contains("text fields"));
    assert!(
        bad_body(
            json!({"name": "ok-name", "description": "x".repeat(513), "findingCriteria": criteria})
        )
        .await
        .contains("description")
    );
    assert!(
        bad_body(json!({"name": "ok-name", "findingCriteria": criteria, "extra": 1}))
            .await
            .contains("extra")
    );
    assert!(
        e.bad("POST", "/filter/c-3", Some(json!({"rank": -1})))
            .await
            .contains("rank")
    );
    assert!(
        e.bad("POST", "/filter/missing", Some(json!({"rank": 1})))
            .await
            .contains("does not exist")
    );
    assert!(
        e.bad("PUT", "/filter/c-3", None)
            .await
            .contains("not \"PUT\"")
    );
    assert!(e.bad("GET", "/findings", None).await.contains("POST"));
    let (status, v) = e.call("GET", "/filter", "maxResults=0", None).await;
    assert_eq!(status, 400, "{v}");
    let (status, v) = e.call("GET", "/filter", "nextToken=garbage", None).await;
    assert_eq!(status, 400, "{v}");
    // ListFindings refuses the filter-only operators.
    assert!(
        e.bad(
            "POST",
            "/findings",
            Some(json!({"findingCriteria": {"criterion": {"type": {"matches": ["*"]}}}}))
        )
        .await
        .contains("only filters")
    );

    // The 101st filter.
    for i in 0..97 {
        e.ok(
            "POST",
            "/filter",
            Some(json!({"name": format!("bulk-{i:03}"), "findingCriteria": criteria})),
        )
        .await;
    }
    assert_eq!(e.names("maxResults=50").await.0.len(), 50);
    let msg = bad_body(json!({"name": "one-too-many", "findingCriteria": criteria})).await;
    assert!(msg.contains("100"), "{msg}");
    let mut all = Vec::new();
    let mut query = String::new();
    loop {
        let (page, next) = e.names(&query).await;
        all.extend(page);
        match next {
            Some(n) => query = format!("nextToken={n}"),
            None => break,
        }
    }
    assert_eq!(all.len(), 100);
    assert_eq!(all.iter().collect::<BTreeSet<_>>().len(), 100);
}

#[tokio::test]
async fn sample_findings_for_every_type_are_published_and_filters_apply_to_them() {
    let e = env().await;
    // A suppression rule applies to samples as to real findings.
    e.ok(
        "POST",
        "/filter",
        Some(archive_type(
            "no-reverse-shell",
            "Execution:Runtime/ReverseShell",
        )),
    )
    .await;
    assert_eq!(
        e.ok("POST", "/findings/create", Some(json!({}))).await,
        json!({})
    );
    let ids = {
        let mut ids = Vec::new();
        let mut token = String::new();
        loop {
            let v = e
                .ok("POST", "/findings", Some(json!({"nextToken": token})))
                .await;
            ids.extend(v["findingIds"].as_array().unwrap().iter().cloned());
            token = v["nextToken"].as_str().unwrap().to_owned();
            if token.is_empty() {
                break;
            }
        }
        ids
    };
    assert_eq!(ids.len(), 46);
    let mut types = BTreeSet::new();
    for part in ids.chunks(50) {
        for f in e
            .ok("POST", "/findings/get", Some(json!({"findingIds": part})))
            .await["findings"]
            .as_array()
            .unwrap()
        {
            let problems = sample_problems(f);
            assert!(problems.is_empty(), "{problems:?}");
            let archived = f["service"]["archived"].as_bool().unwrap();
            assert_eq!(archived, f["type"] == "Execution:Runtime/ReverseShell");
            types.insert(f["type"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(types.len(), 46);
    assert_eq!(
        types,
        RUNTIME_TYPES.iter().map(|t| t.name.to_owned()).collect()
    );

    // The publisher sends them, as it sends real findings: all but the suppressed one.
    publish_due(&e.publisher, Timestamp::now(), None)
        .await
        .unwrap();
    let published = e.published().await;
    assert_eq!(published.len(), 45, "{published:?}");
    assert!(
        !published
            .iter()
            .any(|t| t == "Execution:Runtime/ReverseShell")
    );

    // Named types only (repeats count once); an unknown type is a 400.
    e.ok(
        "POST",
        "/findings/create",
        Some(json!({"findingTypes": [
            "Impact:Runtime/CryptoMinerExecuted",
            "DefenseEvasion:Runtime/KernelModuleLoaded",
            "Impact:Runtime/CryptoMinerExecuted"
        ]})),
    )
    .await;
    publish_due(&e.publisher, Timestamp::now(), None)
        .await
        .unwrap();
    assert_eq!(
        e.published().await,
        [
            "DefenseEvasion:Runtime/KernelModuleLoaded",
            "Impact:Runtime/CryptoMinerExecuted"
        ]
    );
    let msg = e
        .bad(
            "POST",
            "/findings/create",
            Some(json!({"findingTypes": ["Recon:EC2/PortProbe"]})),
        )
        .await;
    assert!(msg.contains("PortProbe"), "{msg}");
}

//! The findings API against moto, provisioned from template.yaml, over findings the real
//! detector made from sample attacks: every operation, filters, sorting, pagination,
//! archive/unarchive, feedback, and each class of bad request.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use lambda_runtime::LambdaEvent;
use peregrine_api::{ApiDeps, ApiResponse, handle};
use peregrine_event::Timestamp;
use peregrine_provision::{LocalStack, ProvisionOptions, Template, function_config, provision};
use peregrine_testkit::builders::agent_identity;
use peregrine_testkit::{lambda, moto::Moto, samples};
use serde_json::{Value, json};

struct Local {
    _moto: Moto,
    sdk: aws_config::SdkConfig,
    stack: LocalStack,
    api: ApiDeps,
    detector: String,
}

/// Each sample pod's attack is three findings: release_agent (8), SSH key (5), new binary (5).
const PODS_A: u32 = 3;
const PODS_B: u32 = 1;

async fn local() -> Local {
    let moto = Moto::start().expect("moto (scripts/setup installs it)");
    let sdk = moto.sdk_config().await;
    let template = Template::load(
        &std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml"),
    )
    .unwrap();
    let stack = provision(&sdk, &template, &ProvisionOptions::default())
        .await
        .unwrap();
    let config: peregrine_api::Config = function_config(&stack, peregrine_api::BINARY).unwrap();
    let detector = config.detector_id.clone();
    let api = ApiDeps::from_sdk(&sdk, config);
    Local {
        _moto: moto,
        sdk,
        stack,
        api,
        detector,
    }
}

impl Local {
    /// Attacks in `PODS_A` pods of cluster-a and `PODS_B` of cluster-b, through the detector.
    async fn detect(&self) {
        let config: peregrine_detector::Config =
            function_config(&self.stack, peregrine_detector::BINARY).unwrap();
        let deps = peregrine_detector::AwsDeps::from_sdk(&self.sdk, config).unwrap();
        let mut bodies = Vec::new();
        for (cluster, pods, first) in [("cluster-a", PODS_A, 0), ("cluster-b", PODS_B, 10)] {
            let events: Vec<_> = (first..first + pods)
                .flat_map(|i| samples::attack(i, samples::T0 + i64::from(i) * 1_000_000_000))
                .collect();
            let identity = agent_identity(&format!("agent-{cluster}"), "node-1", cluster);
            for m in samples::encode_as(identity, 1, &events, Timestamp::now()).unwrap() {
                bodies.push(m.body);
            }
        }
        for (i, body) in bodies.iter().enumerate() {
            let id = format!("m-{i}");
            let event = LambdaEvent::new(
                lambda::sqs_event(&self.stack.queues["EventsQueue"].arn, &[(&id, body)]),
                lambda::context("req", &self.stack.functions["DetectorFunction"].arn),
            );
            let r = peregrine_detector::handle(&deps, event).await.unwrap();
            assert!(r.batch_item_failures.is_empty(), "{r:?}");
        }
    }

    async fn call_raw(&self, method: &str, path: &str, body: Option<String>) -> ApiResponse {
        let request = lambda::function_url_request(method, path, &[], body);
        handle(&self.api, LambdaEvent::new(request, Default::default()))
            .await
            .unwrap()
    }

    /// POST `/detector/{id}/findings{op}` with a JSON body: (status, body).
    async fn post(&self, op: &str, body: Value) -> (u16, Value) {
        let path = format!("/detector/{}/findings{op}", self.detector);
        let r = self.call_raw("POST", &path, Some(body.to_string())).await;
        (r.status_code, serde_json::from_str(&r.body).unwrap())
    }

    async fn ok(&self, op: &str, body: Value) -> Value {
        let (status, v) = self.post(op, body.clone()).await;
        assert_eq!(status, 200, "{op} {body}: {v}");
        v
    }

    async fn ids(&self, body: Value) -> Vec<String> {
        let v = self.ok("", body).await;
        v["findingIds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_str().unwrap().to_owned())
            .collect()
    }

    async fn findings(&self, ids: &[String]) -> Vec<Value> {
        let v = self.ok("/get", json!({"findingIds": ids})).await;
        v["findings"].as_array().unwrap().clone()
    }

    async fn all(&self) -> Vec<Value> {
        let ids = self.ids(json!({})).await;
        self.findings(&ids).await
    }
}

fn criterion(c: Value) -> Value {
    json!({"findingCriteria": {"criterion": c}})
}

const RELEASE_AGENT: &str = "PrivilegeEscalation:Runtime/CGroupsReleaseAgentModified";

#[tokio::test]
async fn list_get_filter_sort_and_statistics() {
    let l = local().await;
    l.detect().await;
    let all = l.all().await;
    let total = usize::try_from(3 * (PODS_A + PODS_B)).unwrap();
    assert_eq!(all.len(), total, "{all:#?}");
    // Default order: updatedAt, newest first.
    let updated: Vec<&str> = all
        .iter()
        .map(|f| f["updatedAt"].as_str().unwrap())
        .collect();
    assert!(updated.windows(2).all(|w| w[0] >= w[1]), "{updated:?}");

    // Type (an index query), severity ranges, cluster, namespace, pod, account, archived.
    let by_type = l
        .ids(criterion(json!({"type": {"eq": [RELEASE_AGENT]}})))
        .await;
    assert_eq!(by_type.len(), usize::try_from(PODS_A + PODS_B).unwrap());
    let high = l.ids(criterion(json!({"severity": {"gte": 7}}))).await;
    assert_eq!(high, by_type.clone(), "only release_agent is High");
    let medium = l
        .ids(criterion(json!({"severity": {"gte": 4, "lt": 7}})))
        .await;
    assert_eq!(medium.len(), total - high.len());
    let none = l.ids(criterion(json!({"severity": {"gt": 8}}))).await;
    assert!(none.is_empty());
    let b = l
        .ids(criterion(
            json!({"resource.eksClusterDetails.name": {"eq": ["cluster-b"]}}),
        ))
        .await;
    assert_eq!(b.len(), 3);
    let not_b = l
        .ids(criterion(
            json!({"resource.eksClusterDetails.name": {"neq": ["cluster-b"]}, "type": {"neq": [RELEASE_AGENT]}}),
        ))
        .await;
    assert_eq!(not_b.len(), usize::try_from(2 * PODS_A).unwrap());
    let ns = l
        .ids(criterion(json!({
            "resource.kubernetesDetails.kubernetesWorkloadDetails.namespace": {"eq": ["payments"]},
            "accountId": {"eq": [all[0]["accountId"].as_str().unwrap()]},
            "service.archived": {"eq": ["false"]},
        })))
        .await;
    assert_eq!(ns.len(), total);
    let pod = all
        .iter()
        .find_map(|f| {
            f.pointer("/resource/kubernetesDetails/kubernetesWorkloadDetails/name")
                .and_then(Value::as_str)
        })
        .expect("a finding names its pod");
    let of_pod = l
        .ids(criterion(json!({
            "resource.kubernetesDetails.kubernetesWorkloadDetails.name": {"eq": [pod]},
        })))
        .await;
    assert_eq!(of_pod.len(), 3, "{pod}");
    // updatedAt in epoch milliseconds, with a type (the index's range key).
    let newest = all[0]["updatedAt"].as_str().unwrap();
    let ms = time::OffsetDateTime::parse(newest, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp_nanos()
        / 1_000_000;
    let recent = l.ids(criterion(json!({"updatedAt": {"gte": ms}}))).await;
    assert!(!recent.is_empty() && recent.len() <= total);
    assert!(recent.contains(&all[0]["id"].as_str().unwrap().to_owned()));
    let later = l
        .ids(criterion(
            json!({"updatedAt": {"gt": ms}, "type": {"eq": [RELEASE_AGENT]}}),
        ))
        .await;
    assert!(later.is_empty(), "{later:?}");

    // Sort by severity, ascending: the Medium ones first.
    let asc = l
        .ids(json!({"sortCriteria": {"attributeName": "severity", "orderBy": "ASC"}}))
        .await;
    let got = l.findings(&asc).await;
    let sev: Vec<f64> = got
        .iter()
        .map(|f| f["severity"].as_f64().unwrap())
        .collect();
    assert!(sev.windows(2).all(|w| w[0] <= w[1]), "{sev:?}");
    assert!(sev[0] < sev[sev.len() - 1]);

    // GetFindings: unknown ids are left out; the order asked for is kept.
    let two = vec![
        all[1]["id"].as_str().unwrap().to_owned(),
        "nope".to_owned(),
        all[0]["id"].as_str().unwrap().to_owned(),
    ];
    let got = l.findings(&two).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["id"], all[1]["id"]);
    assert_eq!(got[0], all[1], "GetFindings returns the stored finding");

    // Statistics: by severity (GuardDuty's COUNT_BY_SEVERITY), type, cluster, namespace.
    let s = l
        .ok(
            "/statistics",
            json!({"findingStatisticTypes": ["COUNT_BY_SEVERITY"]}),
        )
        .await;
    let counts = &s["findingStatistics"]["countBySeverity"];
    assert_eq!(counts["8.0"], json!(high.len()), "{s}");
    assert_eq!(counts["5.0"], json!(total - high.len()), "{s}");
    let s = l
        .ok("/statistics", json!({"groupBy": "FINDING_TYPE"}))
        .await;
    let rows = s["findingStatistics"]["groupedByFindingType"]
        .as_array()
        .unwrap();
    assert_eq!(rows.len(), 3, "{s}");
    assert!(
        rows.iter()
            .all(|r| r["totalFindings"] == json!(PODS_A + PODS_B))
    );
    let s = l
        .ok(
            "/statistics",
            json!({"groupBy": "CLUSTER", "orderBy": "DESC"}),
        )
        .await;
    let rows = s["findingStatistics"]["groupedByCluster"]
        .as_array()
        .unwrap();
    assert_eq!(rows[0]["clusterName"], "cluster-a", "{s}");
    assert_eq!(rows[0]["totalFindings"], json!(3 * PODS_A));
    assert_eq!(rows[1]["totalFindings"], json!(3 * PODS_B));
    let s = l
        .ok(
            "/statistics",
            json!({"groupBy": "NAMESPACE", "maxResults": 1, "findingCriteria": {"criterion": {"severity": {"gte": 7}}}}),
        )
        .await;
    let rows = s["findingStatistics"]["groupedByNamespace"]
        .as_array()
        .unwrap();
    assert_eq!(rows.len(), 1, "{s}");
    assert_eq!(
        (
            rows[0]["namespace"].as_str(),
            rows[0]["totalFindings"].as_u64()
        ),
        (Some("payments"), Some(u64::from(PODS_A)))
    );
    let s = l.ok("/statistics", json!({"groupBy": "SEVERITY"})).await;
    assert_eq!(
        s["findingStatistics"]["groupedBySeverity"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "{s}"
    );
}

#[tokio::test]
async fn pages_cover_every_finding_once() {
    let l = local().await;
    l.detect().await;
    let total = usize::try_from(3 * (PODS_A + PODS_B)).unwrap();
    for sort in [
        json!(null),
        json!({"attributeName": "severity", "orderBy": "ASC"}),
        json!({"attributeName": "type", "orderBy": "DESC"}),
    ] {
        let mut seen = Vec::new();
        let mut token = String::new();
        let mut pages = 0;
        loop {
            let mut body = json!({"maxResults": 5, "nextToken": token});
            if !sort.is_null() {
                body["sortCriteria"] = sort.clone();
            }
            let v = l.ok("", body).await;
            let ids = v["findingIds"].as_array().unwrap();
            assert!(ids.len() <= 5);
            seen.extend(ids.iter().map(|i| i.as_str().unwrap().to_owned()));
            pages += 1;
            token = v["nextToken"].as_str().unwrap().to_owned();
            if token.is_empty() {
                break;
            }
            assert!(pages < 10, "pagination does not end");
        }
        assert_eq!(pages, total.div_ceil(5), "{sort}");
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), total, "{sort}: {seen:?}");
        // The pages in order are the single-page listing.
        let mut one = json!({});
        if !sort.is_null() {
            one["sortCriteria"] = sort.clone();
        }
        assert_eq!(l.ids(one).await, seen, "{sort}");
    }

    // A token only continues the query it came from.
    let v = l.ok("", json!({"maxResults": 2})).await;
    let token = v["nextToken"].as_str().unwrap();
    let (status, err) = l
        .post(
            "",
            json!({"maxResults": 2, "nextToken": token, "sortCriteria": {"attributeName": "severity"}}),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["__type"], "BadRequestException");
}

#[tokio::test]
async fn archive_unarchive_and_feedback_round_trip() {
    let l = local().await;
    l.detect().await;
    let high = l
        .ids(criterion(json!({
            "type": {"eq": [RELEASE_AGENT]},
            "resource.eksClusterDetails.name": {"eq": ["cluster-a"]},
        })))
        .await;
    assert_eq!(high.len(), usize::try_from(PODS_A).unwrap());
    let target = high[0].clone();
    let before = l.findings(std::slice::from_ref(&target)).await.remove(0);

    // Archive: listing `service.archived eq false` leaves it out, `eq true` finds only it.
    let v = l
        .ok(
            "/archive",
            json!({"findingIds": [target, target, "unknown-id"]}),
        )
        .await;
    assert_eq!(v, json!({}));
    let active = l
        .ids(criterion(json!({"service.archived": {"eq": ["false"]}})))
        .await;
    assert!(!active.contains(&target));
    assert_eq!(
        active.len(),
        usize::try_from(3 * (PODS_A + PODS_B)).unwrap() - 1
    );
    let archived = l
        .ids(criterion(json!({"service.archived": {"eq": ["true"]}})))
        .await;
    assert_eq!(archived, vec![target.clone()]);
    let after = l.findings(std::slice::from_ref(&target)).await.remove(0);
    assert_eq!(after["service"]["archived"], true);
    // Nothing else about the finding changed.
    let mut unarchived = after.clone();
    unarchived["service"]["archived"] = json!(false);
    assert_eq!(unarchived, before);

    // The detector's next occurrence of it keeps the analyst's state (its version moved on),
    // and a write based on what was read before it is refused, not applied over it.
    let stale = l.api.store.get(&target).await.unwrap().unwrap();
    l.detect_again().await;
    let mut unarchive_stale = stale.clone();
    unarchive_stale.finding.service.archived = false;
    assert!(
        !l.api
            .store
            .put_if_version(&unarchive_stale, stale.version)
            .await
            .unwrap(),
        "a write conditional on a stale version is refused"
    );
    let again = l.findings(std::slice::from_ref(&target)).await.remove(0);
    assert_eq!(again["service"]["archived"], true, "{again}");
    assert!(
        again["service"]["count"].as_u64().unwrap() > before["service"]["count"].as_u64().unwrap()
    );

    // Feedback with a comment, then unarchive: both survive a round trip.
    l.ok(
        "/feedback",
        json!({"findingIds": [target], "feedback": "NOT_USEFUL", "comments": "test pod, expected"}),
    )
    .await;
    l.ok("/unarchive", json!({"findingIds": [target]})).await;
    let f = l.findings(std::slice::from_ref(&target)).await.remove(0);
    assert_eq!(f["service"]["archived"], false);
    assert_eq!(f["service"]["userFeedback"], "NOT_USEFUL");
    assert_eq!(f["service"]["userFeedbackComments"], "test pod, expected");
    let useful = l
        .ids(criterion(
            json!({"service.userFeedback": {"eq": ["NOT_USEFUL"]}}),
        ))
        .await;
    assert_eq!(useful, vec![target.clone()]);
    // The row's version moved with every write (the detector's discipline).
    let item = aws_sdk_dynamodb::Client::new(&l.sdk)
        .get_item()
        .table_name(&l.stack.tables["FindingsTable"])
        .key(
            "id",
            aws_sdk_dynamodb::types::AttributeValue::S(target.clone()),
        )
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let stored = peregrine_store::stored_finding(&item).unwrap();
    assert!(stored.version >= 5, "{}", stored.version);
    assert_eq!(
        serde_json::to_value(&stored.finding).unwrap()["service"]["userFeedback"],
        "NOT_USEFUL"
    );
}

impl Local {
    /// The same attacks again, an hour later: the detector folds them into the same findings.
    async fn detect_again(&self) {
        let config: peregrine_detector::Config =
            function_config(&self.stack, peregrine_detector::BINARY).unwrap();
        let deps = peregrine_detector::AwsDeps::from_sdk(&self.sdk, config).unwrap();
        let events: Vec<_> = (0..PODS_A)
            .flat_map(|i| samples::attack(i, samples::T0 + 3_600_000_000_000))
            .collect();
        let identity = agent_identity("agent-cluster-a", "node-1", "cluster-a");
        for (i, m) in samples::encode_as(identity, 100, &events, Timestamp::now())
            .unwrap()
            .iter()
            .enumerate()
        {
            let id = format!("again-{i}");
            let event = LambdaEvent::new(
                lambda::sqs_event(&self.stack.queues["EventsQueue"].arn, &[(&id, &m.body)]),
                lambda::context("req", &self.stack.functions["DetectorFunction"].arn),
            );
            let r = peregrine_detector::handle(&deps, event).await.unwrap();
            assert!(r.batch_item_failures.is_empty(), "{r:?}");
        }
    }
}

#[tokio::test]
async fn bad_requests_are_400s_never_500s() {
    let l = local().await;
    l.detect().await;
    let ids: Vec<String> = (0..51).map(|i| format!("id-{i}")).collect();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "",
            json!({"findingCriteria": {"criterion": {"nope": {"eq": ["x"]}}}}),
            "nope",
        ),
        (
            "",
            json!({"findingCriteria": {"criterion": {"type": {"like": ["x"]}}}}),
            "like",
        ),
        (
            "",
            json!({"findingCriteria": {"criterion": {"type": {"gt": 3}}}}),
            "gt",
        ),
        (
            "",
            json!({"findingCriteria": {"criterion": {"severity": {"eq": ["high"]}}}}),
            "number",
        ),
        (
            "",
            json!({"findingCriteria": {"criterion": {"service.archived": {"eq": ["maybe"]}}}}),
            "true or false",
        ),
        (
            "",
            json!({"findingCriteria": {"criterion": {"type": {}}}}),
            "no operator",
        ),
        (
            "",
            json!({"findingCriteria": {"criterion": {"type": {"eq": []}}}}),
            "values",
        ),
        (
            "",
            json!({"findingCriteria": {"criterion": {"severity": {"gt": "7"}}}}),
            "not valid",
        ),
        ("", json!({"findingCriteria": {"criteria": {}}}), "criteria"),
        ("", json!({"maxResults": 0}), "maxResults"),
        ("", json!({"maxResults": 51}), "maxResults"),
        ("", json!({"maxResults": "ten"}), "not valid"),
        (
            "",
            json!({"sortCriteria": {"attributeName": "colour"}}),
            "colour",
        ),
        (
            "",
            json!({"sortCriteria": {"attributeName": "severity", "orderBy": "UP"}}),
            "ASC or DESC",
        ),
        ("", json!({"nextToken": "not-a-token"}), "nextToken"),
        (
            "",
            json!({"nextToken": "eyJ2IjoxLCJxIjoiMDAiLCJrIjpudWxsLCJpZCI6IngifQ"}),
            "nextToken",
        ),
        ("", json!({"unknown": 1}), "unknown"),
        ("/get", json!({"findingIds": []}), "findingIds"),
        ("/get", json!({"findingIds": ids}), "findingIds"),
        ("/get", json!({"findingIds": ["bad id\n"]}), "not valid"),
        ("/get", json!({}), "findingIds"),
        ("/archive", json!({"findingIds": ids}), "findingIds"),
        (
            "/feedback",
            json!({"findingIds": ["a"], "feedback": "MEH"}),
            "USEFUL",
        ),
        (
            "/feedback",
            json!({"findingIds": ["a"], "feedback": "USEFUL", "comments": "x".repeat(1025)}),
            "comments",
        ),
        ("/statistics", json!({}), "either"),
        ("/statistics", json!({"groupBy": "COLOUR"}), "groupBy"),
        (
            "/statistics",
            json!({"findingStatisticTypes": ["COUNT_BY_COLOUR"]}),
            "COUNT_BY_SEVERITY",
        ),
        (
            "/statistics",
            json!({"groupBy": "SEVERITY", "maxResults": 101}),
            "maxResults",
        ),
    ];
    for (op, body, says) in cases {
        let (status, err) = l.post(op, body.clone()).await;
        assert_eq!(status, 400, "{op} {body}: {err}");
        assert_eq!(err["__type"], "BadRequestException", "{op} {body}");
        let message = err["message"].as_str().unwrap();
        assert!(message.contains(says), "{op} {body}: {message}");
        assert!(!message.chars().any(char::is_control), "{message:?}");
    }

    // Malformed JSON, an oversized body, another detector, another method, no such route.
    let path = format!("/detector/{}/findings", l.detector);
    for (method, path, body, status) in [
        (
            "POST",
            path.clone(),
            Some("{\"findingCriteria\":".to_owned()),
            400,
        ),
        ("POST", path.clone(), Some("[1,2]".to_owned()), 400),
        (
            "POST",
            path.clone(),
            Some(format!("{{\"x\":\"{}\"}}", "a".repeat(300 * 1024))),
            400,
        ),
        (
            "POST",
            "/detector/someone-else/findings".to_owned(),
            Some("{}".to_owned()),
            400,
        ),
        ("GET", path.clone(), None, 400),
        (
            "POST",
            format!("/detector/{}/filters", l.detector),
            Some("{}".to_owned()),
            404,
        ),
    ] {
        let r = l.call_raw(method, &path, body).await;
        assert_eq!(r.status_code, status, "{method} {path}: {}", r.body);
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert!(v["message"].is_string() && v["__type"].is_string(), "{v}");
    }
    // An empty body is an empty request: list everything.
    let r = l.call_raw("POST", &path, None).await;
    assert_eq!(r.status_code, 200, "{}", r.body);
}

#[tokio::test]
async fn a_store_failure_is_a_500_without_details() {
    let l = local().await;
    let config = peregrine_api::Config {
        findings_table: "no-such-table".into(),
        ..l.api.config.clone()
    };
    let broken = Local {
        api: ApiDeps::from_sdk(&l.sdk, config),
        ..l
    };
    let (status, err) = broken.post("", json!({})).await;
    assert_eq!(status, 500, "{err}");
    assert_eq!(err["__type"], "InternalServerErrorException");
    let message = err["message"].as_str().unwrap();
    assert!(
        !message.contains("no-such-table") && !message.contains("Scan"),
        "{message}"
    );
}

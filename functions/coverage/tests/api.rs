//! The findings API's coverage and organization operations over what the real sweeper wrote in
//! a moto organization: ListCoverage (filters, sorts, pages), GetCoverageStatistics, and
//! Describe/UpdateOrganizationConfiguration, whose changes the next sweep honours.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

mod common;

use std::time::Duration;

use common::*;
use lambda_runtime::LambdaEvent;
use peregrine_api::ApiDeps;
use peregrine_org::config::{AutoEnable, Management, Monitoring};
use peregrine_org::coverage::SweepState;
use peregrine_provision::function_config;
use peregrine_store::{ConfigStore, DynamoConfigStore};
use serde_json::{Value, json};

fn api(org: &Org) -> ApiDeps {
    let config: peregrine_api::Config = function_config(&org.stack, peregrine_api::BINARY).unwrap();
    ApiDeps::from_sdk(&org.sdk, config)
}

/// One request: (status, body).
async fn call(api: &ApiDeps, method: &str, rest: &str, body: Option<&str>) -> (u16, Value) {
    let path = format!("/detector/{}/{rest}", api.config.detector_id);
    let request = peregrine_testkit::lambda::function_url_request(
        method,
        &path,
        &[],
        body.map(str::to_owned),
    );
    let r = peregrine_api::handle(api, LambdaEvent::new(request, Default::default()))
        .await
        .unwrap();
    (r.status_code, serde_json::from_str(&r.body).unwrap())
}

async fn ok(api: &ApiDeps, method: &str, rest: &str, body: Value) -> Value {
    let (status, v) = call(api, method, rest, Some(&body.to_string())).await;
    assert_eq!(status, 200, "{method} {rest} {body}: {v}");
    v
}

async fn bad(api: &ApiDeps, method: &str, rest: &str, body: &str) -> String {
    let (status, v) = call(api, method, rest, Some(body)).await;
    assert_eq!(status, 400, "{method} {rest} {body}: {v}");
    assert_eq!(v["__type"], "BadRequestException");
    v["message"].as_str().unwrap().to_owned()
}

/// The clusters' names a ListCoverage request returns, in order.
async fn names(api: &ApiDeps, body: Value) -> Vec<String> {
    let v = ok(api, "POST", "coverage", body).await;
    v["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["resourceId"].as_str().unwrap().to_owned())
        .collect()
}

fn filter(key: &str, condition: Value) -> Value {
    json!({"filterCriteria": {"filterCriterion": [{"criterionKey": key, "filterCondition": condition}]}})
}

#[tokio::test]
async fn coverage_lists_filters_sorts_pages_and_counts_the_sweeps_clusters() {
    let org = org(&[]).await;
    let members = org.accounts(2, "member").await;
    let (a, b) = (&members[0], &members[1]);
    org.member_role(a, EXTERNAL_ID).await;
    org.member_role(b, EXTERNAL_ID).await;
    let web = org.cluster(a, "web", &[], 2).await;
    let batch = org.cluster(a, "batch", &[], 2).await;
    let other = org.cluster(b, "other", &[], 1).await;
    for n in &web {
        org.heartbeat("web", n, Duration::from_secs(20)).await;
    }
    org.heartbeat("batch", &batch[0], Duration::from_secs(20))
        .await;
    org.heartbeat("other", &other[0], Duration::from_secs(20))
        .await;
    let summary = org.deps().sweep(clock(), None).await.unwrap();
    assert_eq!(summary.clusters_swept, 3, "{summary:?}");
    let api = api(&org);

    // Every cluster, by account then id (the default sort).
    let all = ok(&api, "POST", "coverage", json!({})).await;
    let resources = all["resources"].as_array().unwrap();
    assert_eq!(resources.len(), 3, "{all}");
    assert!(all.get("nextToken").is_none());
    let of = |name: &str| {
        resources
            .iter()
            .find(|r| r["resourceId"] == name)
            .unwrap()
            .clone()
    };
    let unhealthy = of("batch");
    assert_eq!(unhealthy["coverageStatus"], "UNHEALTHY");
    assert_eq!(unhealthy["accountId"], a.as_str());
    assert_eq!(unhealthy["detectorId"], api.config.detector_id.as_str());
    assert!(
        unhealthy["issue"]
            .as_str()
            .unwrap()
            .starts_with("Agent not reporting:1 of 2 nodes"),
        "{unhealthy}"
    );
    let d = &unhealthy["resourceDetails"];
    assert_eq!(d["resourceType"], "EKS");
    let d = &d["eksClusterDetails"];
    assert_eq!(d["clusterName"], "batch");
    assert_eq!(
        (d["coveredNodes"].as_u64(), d["compatibleNodes"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(d["nodesWithoutAgent"], json!([batch[1]]));
    assert_eq!(d["addonDetails"]["addonVersion"], "0.1.0");
    assert_eq!(d["managementType"], "MANUAL");
    assert_eq!(
        d["clusterArn"],
        format!("arn:aws:eks:us-east-1:{a}:cluster/batch").as_str()
    );
    let healthy = of("web");
    assert_eq!(healthy["coverageStatus"], "HEALTHY");
    assert!(healthy.get("issue").is_none(), "{healthy}");
    assert_eq!(healthy["issues"], json!([]));

    // Filters.
    let status = |c: Value| filter("COVERAGE_STATUS", c);
    assert_eq!(
        names(&api, status(json!({"equals": ["UNHEALTHY"]}))).await,
        ["batch"]
    );
    assert_eq!(
        names(&api, status(json!({"notEquals": ["UNHEALTHY"]})))
            .await
            .len(),
        2
    );
    assert_eq!(
        names(&api, filter("ACCOUNT_ID", json!({"equals": [b]}))).await,
        ["other"]
    );
    assert_eq!(
        names(
            &api,
            filter("EKS_CLUSTER_NAME", json!({"equals": ["web", "other"]}))
        )
        .await
        .len(),
        2
    );
    let arn = format!("arn:aws:eks:us-east-1:{b}:cluster/other");
    assert_eq!(
        names(&api, filter("CLUSTER_ARN", json!({"equals": [arn]}))).await,
        ["other"]
    );
    assert_eq!(
        names(
            &api,
            filter("MANAGEMENT_TYPE", json!({"equals": ["MANUAL"]}))
        )
        .await
        .len(),
        3
    );
    assert_eq!(
        names(&api, filter("AGENT_VERSION", json!({"equals": ["0.1.0"]})))
            .await
            .len(),
        3
    );
    assert!(
        names(&api, filter("ADDON_VERSION", json!({"equals": ["9.9.9"]})))
            .await
            .is_empty()
    );
    assert_eq!(
        names(&api, filter("RESOURCE_TYPE", json!({"equals": ["EKS"]})))
            .await
            .len(),
        3
    );
    let both = json!({"filterCriteria": {"filterCriterion": [
        {"criterionKey": "ACCOUNT_ID", "filterCondition": {"equals": [a]}},
        {"criterionKey": "COVERAGE_STATUS", "filterCondition": {"equals": ["HEALTHY"]}},
    ]}});
    assert_eq!(names(&api, both).await, ["web"]);

    // Sorts.
    let sort = |attribute: &str, order: &str| json!({"sortCriteria": {"attributeName": attribute, "orderBy": order}});
    assert_eq!(
        names(&api, sort("EKS_CLUSTER_NAME", "ASC")).await,
        ["batch", "other", "web"]
    );
    assert_eq!(
        names(&api, sort("EKS_CLUSTER_NAME", "DESC")).await,
        ["web", "other", "batch"]
    );
    assert_eq!(
        names(&api, sort("COVERAGE_STATUS", "DESC")).await[0],
        "batch"
    );
    assert_eq!(names(&api, sort("ISSUE", "DESC")).await[0], "batch");

    // Pages of one, bound to their criteria.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let request = |token: &Option<String>| {
        let mut r = sort("EKS_CLUSTER_NAME", "ASC");
        r["maxResults"] = json!(1);
        if let Some(t) = token {
            r["nextToken"] = json!(t);
        }
        r
    };
    loop {
        let page = ok(&api, "POST", "coverage", request(&token)).await;
        let r = page["resources"].as_array().unwrap();
        assert_eq!(r.len(), 1, "{page}");
        seen.push(r[0]["resourceId"].as_str().unwrap().to_owned());
        match page["nextToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["batch", "other", "web"]);
    let first = ok(&api, "POST", "coverage", request(&None)).await;
    let t = first["nextToken"].as_str().unwrap();
    let message = bad(
        &api,
        "POST",
        "coverage",
        &json!({"nextToken": t, "maxResults": 1}).to_string(),
    )
    .await;
    assert!(message.contains("nextToken"), "{message}");

    // Statistics, whole and filtered.
    let stats = ok(
        &api,
        "POST",
        "coverage/statistics",
        json!({"statisticsType": ["COUNT_BY_COVERAGE_STATUS", "COUNT_BY_RESOURCE_TYPE"]}),
    )
    .await;
    assert_eq!(
        stats,
        json!({"coverageStatistics": {
            "countByCoverageStatus": {"HEALTHY": 2, "UNHEALTHY": 1},
            "countByResourceType": {"EKS": 3},
        }})
    );
    let mut by_account = filter("ACCOUNT_ID", json!({"equals": [a]}));
    by_account["statisticsType"] = json!(["COUNT_BY_COVERAGE_STATUS"]);
    let stats = ok(&api, "POST", "coverage/statistics", by_account).await;
    assert_eq!(
        stats["coverageStatistics"],
        json!({"countByCoverageStatus": {"HEALTHY": 1, "UNHEALTHY": 1}})
    );

    // Malformed requests.
    for (rest, body) in [
        ("coverage", r#"{"maxResults": 0}"#),
        ("coverage", r#"{"maxResults": 51}"#),
        ("coverage", r#"{"colour": 1}"#),
        ("coverage", r#"{"nextToken": "garbage"}"#),
        (
            "coverage",
            r#"{"filterCriteria": {"filterCriterion": [{"criterionKey": "NAME", "filterCondition": {"equals": ["x"]}}]}}"#,
        ),
        (
            "coverage",
            r#"{"filterCriteria": {"filterCriterion": [{"criterionKey": "ACCOUNT_ID", "filterCondition": {}}]}}"#,
        ),
        (
            "coverage",
            r#"{"filterCriteria": {"filterCriterion": [{"criterionKey": "ACCOUNT_ID", "filterCondition": {"equals": []}}]}}"#,
        ),
        ("coverage", r#"{"sortCriteria": {"attributeName": "SIZE"}}"#),
        ("coverage", r#"{"sortCriteria": {"orderBy": "UP"}}"#),
        ("coverage", "{"),
        ("coverage/statistics", r#"{}"#),
        ("coverage/statistics", r#"{"statisticsType": []}"#),
        (
            "coverage/statistics",
            r#"{"statisticsType": ["COUNT_BY_SEVERITY"]}"#,
        ),
    ] {
        bad(&api, "POST", rest, body).await;
    }
    let (status, _) = call(&api, "GET", "coverage", None).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn organization_configuration_round_trips_and_the_next_sweep_honours_it() {
    let org = org(&[]).await;
    let first = org.accounts(1, "first").await.remove(0);
    org.member_role(&first, EXTERNAL_ID).await;
    let api = api(&org);
    let config = DynamoConfigStore::new(org.dynamo(), &org.config.config_table);

    // Before any sweep: the template's defaults (ALL, MANUAL).
    let before = ok(&api, "GET", "admin", json!({})).await;
    assert_eq!(before["autoEnableOrganizationMembers"], "ALL");
    assert_eq!(before["autoEnable"], true);
    assert_eq!(before["memberAccountLimitReached"], false);
    assert_eq!(before["features"][0]["name"], "RUNTIME_MONITORING");
    assert_eq!(before["features"][0]["autoEnable"], "ALL");
    assert_eq!(
        before["features"][0]["additionalConfiguration"][0],
        json!({"name": "EKS_ADDON_MANAGEMENT", "autoEnable": "NONE"})
    );
    assert_eq!(before["defaultAgentManagement"], "MANUAL");
    assert!(before.get("updatedAt").is_none());

    let deps = org.deps();
    let sweep = deps.sweep(clock(), None).await.unwrap();
    assert_eq!(
        sweep.count_by_sweep_state.get(&SweepState::Swept),
        Some(&1),
        "{sweep:?}"
    );

    // Auto-enable NONE: the next account to join is not monitored.
    ok(
        &api,
        "POST",
        "admin",
        json!({"autoEnableOrganizationMembers": "NONE"}),
    )
    .await;
    let after = ok(&api, "GET", "admin", json!({})).await;
    assert_eq!(after["autoEnableOrganizationMembers"], "NONE");
    assert_eq!(after["autoEnable"], false);
    assert!(after["updatedAt"].is_string());
    let stored = config.load().await.unwrap();
    assert_eq!(stored.org.as_ref().unwrap().auto_enable, AutoEnable::None);
    // NONE does not turn off who was on.
    assert_eq!(stored.accounts[&first].monitoring, Monitoring::Enabled);

    let late = org.accounts(1, "late").await.remove(0);
    org.member_role(&late, EXTERNAL_ID).await;
    let sweep = deps.sweep(clock(), None).await.unwrap();
    assert_eq!(
        sweep.count_by_sweep_state.get(&SweepState::Swept),
        Some(&1),
        "only the first member is swept: {sweep:?}"
    );
    let stored = config.load().await.unwrap();
    assert_eq!(stored.accounts[&late].monitoring, Monitoring::Disabled);

    // Turned on by an administrator, with automatic management: the next sweep reaches it.
    ok(
        &api,
        "POST",
        "admin",
        json!({"accounts": [{"accountId": late, "monitoring": "ENABLED", "management": "AUTO"}],
               "features": [{"name": "RUNTIME_MONITORING",
                             "additionalConfiguration": [{"name": "EKS_ADDON_MANAGEMENT", "autoEnable": "NEW"}]}]}),
    )
    .await;
    let described = ok(&api, "GET", "admin", json!({})).await;
    assert_eq!(described["defaultAgentManagement"], "AUTO");
    let row = described["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["accountId"] == late.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        (
            row["monitoring"].as_str(),
            row["management"].as_str(),
            row["origin"].as_str()
        ),
        (Some("ENABLED"), Some("AUTO"), Some("ADMINISTRATOR"))
    );
    let stored = config.load().await.unwrap();
    assert_eq!(stored.org.unwrap().default_management, Management::Auto);
    let sweep = deps.sweep(clock(), None).await.unwrap();
    assert_eq!(
        sweep.count_by_sweep_state.get(&SweepState::Swept),
        Some(&2),
        "{sweep:?}"
    );

    // Malformed: 400, and nothing changes.
    for body in [
        r#"{"autoEnableOrganizationMembers": "SOME"}"#,
        r#"{"autoEnableOrganizationMembers": "ALL", "autoEnable": false}"#,
        r#"{"features": [{"name": "S3_DATA_EVENTS", "autoEnable": "ALL"}]}"#,
        r#"{"features": [{"name": "RUNTIME_MONITORING", "additionalConfiguration": [{"name": "EC2_AGENT_MANAGEMENT", "autoEnable": "ALL"}]}]}"#,
        r#"{"accounts": [{"accountId": "12"}]}"#,
        r#"{"accounts": [{"accountId": "111122223333", "monitoring": "ON"}]}"#,
        r#"{"clusterScope": "SOME"}"#,
        r#"{"colour": 1}"#,
        "[",
    ] {
        bad(&api, "POST", "admin", body).await;
    }
    let unchanged = ok(&api, "GET", "admin", json!({})).await;
    assert_eq!(unchanged["autoEnableOrganizationMembers"], "NONE");
    let (status, _) = call(&api, "DELETE", "admin", None).await;
    assert_eq!(status, 400);
}

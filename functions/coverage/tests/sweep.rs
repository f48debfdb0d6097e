//! The sweeper against moto: accounts reached through their member role, a member account
//! without it, pagination of accounts and clusters, a status change published once, the
//! include and exclude tags, and the config table's rows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

mod common;

use std::sync::Mutex;
use std::time::Duration;

use aws_config::SdkConfig;
use common::*;
use peregrine_coverage::{AgentManager, ManagementOutcome};
use peregrine_event::Timestamp;
use peregrine_org::config::{ClusterScope, Monitoring};
use peregrine_org::coverage::{CoverageStatus, IssueKind, ManagementType, SweepState};
use peregrine_org::inventory::ClusterInventory;
use peregrine_store::{ConfigStore, CoverageStore, DynamoConfigStore, DynamoCoverageStore};

fn stores(org: &Org) -> (DynamoConfigStore, DynamoCoverageStore) {
    (
        DynamoConfigStore::new(org.dynamo(), &org.config.config_table),
        DynamoCoverageStore::new(org.dynamo(), &org.config.coverage_table),
    )
}

async fn status_of(coverage: &DynamoCoverageStore, cluster: &str) -> Option<CoverageStatus> {
    coverage
        .clusters()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.coverage.cluster_name == cluster)
        .map(|c| c.coverage.coverage_status)
}

#[tokio::test]
async fn sweeps_the_organization_and_publishes_each_change_once() {
    let org = org(&[]).await;
    // 22 members and the management account: more than one ListAccounts page (20).
    let members = org.accounts(22, "member").await;
    let (a, b, wrong) = (&members[0], &members[1], &members[2]);
    org.member_role(a, EXTERNAL_ID).await;
    org.member_role(b, EXTERNAL_ID).await;
    org.member_role(wrong, "another-id").await;
    let web = org.cluster(a, "web", &[], 2).await;
    let batch = org.cluster(a, "batch", &[], 2).await;
    let other = org.cluster(b, "other", &[], 1).await;
    org.cluster(b, "sandbox", &[("peregrine:managed", "false")], 1)
        .await;
    for n in &web {
        org.heartbeat("web", n, Duration::from_secs(20)).await;
    }
    org.heartbeat("batch", &batch[0], Duration::from_secs(20))
        .await;
    org.heartbeat("other", &other[0], Duration::from_secs(20))
        .await;
    let queue = org.status_change_queue().await;
    let deps = org.deps();
    let (config, coverage) = stores(&org);

    let first = deps.sweep(clock(), None).await.unwrap();
    assert_eq!(first.accounts, 23);
    assert!(first.complete);
    assert_eq!(first.clusters_swept, 3, "{first:?}");
    assert_eq!(first.count_by_sweep_state.get(&SweepState::Swept), Some(&2));
    // The wrong external id, 19 members without the role, and the management account.
    assert_eq!(
        first.count_by_sweep_state.get(&SweepState::Failed),
        Some(&21)
    );

    let clusters = coverage.clusters().await.unwrap();
    assert_eq!(clusters.len(), 3, "sandbox is excluded");
    let batch_row = clusters
        .iter()
        .find(|c| c.coverage.cluster_name == "batch")
        .unwrap();
    let c = &batch_row.coverage;
    assert_eq!(c.account_id, *a);
    assert_eq!(c.coverage_status, CoverageStatus::Unhealthy);
    assert_eq!((c.covered_nodes, c.compatible_nodes), (1, 2));
    assert_eq!(c.nodes_without_agent, vec![batch[1].clone()]);
    assert!(
        c.issue
            .as_deref()
            .unwrap()
            .starts_with("Agent not reporting:1 of 2 nodes have no heartbeat within 180s"),
        "{:?}",
        c.issue
    );
    assert_eq!(
        status_of(&coverage, "web").await,
        Some(CoverageStatus::Healthy)
    );
    assert_eq!(
        status_of(&coverage, "other").await,
        Some(CoverageStatus::Healthy)
    );
    let nodes = coverage.nodes(a, "us-east-1", "batch").await.unwrap();
    assert_eq!(nodes.len(), 2);

    let accounts = coverage.accounts().await.unwrap();
    let row = |id: &str| {
        accounts
            .iter()
            .find(|r| r.account_id == id)
            .unwrap()
            .clone()
    };
    assert_eq!(row(b).excluded_clusters, 1);
    let denied = row(wrong);
    assert_eq!(denied.sweep_state, SweepState::Failed);
    assert_eq!(denied.issues[0].kind, IssueKind::AuthorizationFailure);
    assert!(
        denied.issues[0].detail.contains("PeregrineCoverageRole"),
        "{:?}",
        denied.issues
    );
    assert_eq!(row(&members[21]).sweep_state, SweepState::Failed);

    // Auto-enable ALL (the template's default) wrote a row for every account.
    let stored = config.load().await.unwrap();
    assert_eq!(stored.accounts.len(), 23);
    assert!(
        stored
            .accounts
            .values()
            .all(|r| r.monitoring == Monitoring::Enabled)
    );

    let stats = coverage.statistics().await.unwrap().unwrap();
    assert_eq!(
        stats.count_by_coverage_status.get(&CoverageStatus::Healthy),
        Some(&2)
    );
    assert_eq!(
        stats
            .count_by_coverage_status
            .get(&CoverageStatus::Unhealthy),
        Some(&1)
    );
    assert_eq!(
        stats.count_by_account[a].get(&CoverageStatus::Unhealthy),
        Some(&1)
    );
    assert_eq!((stats.covered_nodes, stats.compatible_nodes), (4, 5));

    // One event: batch, seen unhealthy for the first time.
    let events = org.events(&queue).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    let e = &events[0];
    assert_eq!(e["detail-type"], "Peregrine Coverage Status Change");
    assert_eq!(e["detail"]["currentStatus"], "UNHEALTHY");
    assert!(e["detail"]["previousStatus"].is_null());
    assert_eq!(e["detail"]["resourceAccountId"], a.as_str());
    let d = &e["detail"]["resourceDetails"]["eksClusterDetails"];
    assert_eq!(d["clusterName"], "batch");
    assert_eq!(
        (d["availableNodes"].as_str(), d["desiredNodes"].as_str()),
        (Some("1"), Some("2"))
    );

    // The same inventory again: the same rows, no event.
    let second = deps.sweep(clock(), None).await.unwrap();
    assert_eq!(second.events_published, 0);
    assert_eq!(
        second.count_by_coverage_status,
        first.count_by_coverage_status
    );
    assert!(org.events(&queue).await.is_empty());

    // web's agents stop: one HEALTHY -> UNHEALTHY event, then nothing more.
    for n in &web {
        org.heartbeat("web", n, Duration::from_secs(900)).await;
    }
    let third = deps.sweep(clock(), None).await.unwrap();
    assert_eq!(third.events_published, 1);
    let events = org.events(&queue).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["detail"]["previousStatus"], "HEALTHY");
    assert_eq!(events[0]["detail"]["currentStatus"], "UNHEALTHY");
    assert_eq!(
        events[0]["detail"]["resourceDetails"]["eksClusterDetails"]["clusterName"],
        "web"
    );
    deps.sweep(clock(), None).await.unwrap();
    assert!(
        org.events(&queue).await.is_empty(),
        "published once, not every sweep"
    );
    let web_row = coverage
        .clusters()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.coverage.cluster_name == "web")
        .unwrap();
    assert_eq!(web_row.previous_status, Some(CoverageStatus::Healthy));
    assert_eq!(web_row.last_published, Some(CoverageStatus::Unhealthy));

    // The account whose role was missing gets it: the next sweep reaches it.
    let late = &members[3];
    org.member_role(late, EXTERNAL_ID).await;
    org.cluster(late, "late", &[], 0).await;
    let fourth = deps.sweep(clock(), None).await.unwrap();
    assert_eq!(
        fourth.count_by_sweep_state.get(&SweepState::Swept),
        Some(&3)
    );
    assert_eq!(
        status_of(&coverage, "late").await,
        Some(CoverageStatus::Healthy)
    );
}

/// Records the clusters it is asked to manage.
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl AgentManager for Recorder {
    async fn manage(&self, _member: &SdkConfig, cluster: &ClusterInventory) -> ManagementOutcome {
        self.0.lock().unwrap().push(cluster.name.clone());
        ManagementOutcome::default()
    }
}

#[tokio::test]
async fn pages_of_clusters_and_the_include_and_exclude_tags() {
    let org = org(&[]).await;
    let account = org.accounts(1, "big").await.remove(0);
    org.member_role(&account, EXTERNAL_ID).await;
    let inside = org.inside(&account).await;
    // 102 clusters: more than one ListClusters page (100).
    for i in 0..100 {
        org.cluster_in(&inside, &account, &format!("c{i:03}"), &[], 0)
            .await;
    }
    org.cluster_in(
        &inside,
        &account,
        "tagged-in",
        &[("peregrine:managed", "true")],
        0,
    )
    .await;
    org.cluster_in(
        &inside,
        &account,
        "tagged-out",
        &[("peregrine:managed", "FALSE")],
        0,
    )
    .await;
    let deps = org.deps().with_manager(Recorder::default());
    let (config, coverage) = stores(&org);

    let first = deps.sweep(Timestamp::now(), None).await.unwrap();
    assert_eq!(first.clusters_swept, 101, "{first:?}");
    assert_eq!(coverage.clusters().await.unwrap().len(), 101);
    let row = coverage
        .accounts()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.account_id == account)
        .unwrap();
    assert_eq!(row.excluded_clusters, 1);
    // MANUAL (the default): only the cluster tagged in is managed.
    assert_eq!(
        *deps.manager.0.lock().unwrap(),
        vec!["tagged-in".to_owned()]
    );

    // Only the clusters tagged in, from now on.
    let mut settings = config.load().await.unwrap().accounts[&account].clone();
    let read = settings.updated_at;
    settings.cluster_scope = Some(ClusterScope::IncludedOnly);
    assert!(config.put_account(&settings, Some(read)).await.unwrap());
    let second = deps.sweep(Timestamp::now(), None).await.unwrap();
    assert_eq!(second.clusters_swept, 1);
    assert_eq!(second.clusters_removed, 100);
    let left: Vec<String> = coverage
        .clusters()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.coverage.cluster_name)
        .collect();
    assert_eq!(left, vec!["tagged-in"]);
}

#[tokio::test]
async fn same_named_clusters_in_two_accounts_are_covered_by_their_own_agents() {
    let org = org(&[]).await;
    let members = org.accounts(2, "twin").await;
    let (a, b) = (&members[0], &members[1]);
    org.member_role(a, EXTERNAL_ID).await;
    org.member_role(b, EXTERNAL_ID).await;
    let a_nodes = org.cluster(a, "prod", &[], 2).await;
    let b_nodes = org.cluster(b, "prod", &[], 1).await;
    let arn = |account: &str| format!("arn:aws:eks:us-east-1:{account}:cluster/prod");
    for n in &a_nodes {
        org.heartbeat(&arn(a), n, Duration::from_secs(20)).await;
    }
    // A's agents report a node named like B's (both VPCs use the same addresses): it is still
    // A's heartbeat, and B's node stays uncovered.
    org.heartbeat(&arn(a), &b_nodes[0], Duration::from_secs(20))
        .await;
    let deps = org.deps();
    let (_config, coverage) = stores(&org);
    let summary = deps.sweep(clock(), None).await.unwrap();
    assert_eq!(summary.clusters_swept, 2, "{summary:?}");
    let clusters = coverage.clusters().await.unwrap();
    let of = |account: &str| {
        clusters
            .iter()
            .find(|c| c.coverage.account_id == account)
            .unwrap()
            .coverage
            .clone()
    };
    let (ca, cb) = (of(a), of(b));
    assert_eq!(ca.coverage_status, CoverageStatus::Healthy, "{ca:?}");
    assert_eq!((ca.covered_nodes, ca.compatible_nodes), (2, 2));
    assert_eq!(cb.coverage_status, CoverageStatus::Unhealthy, "{cb:?}");
    assert_eq!((cb.covered_nodes, cb.compatible_nodes), (0, 1));
    assert_eq!(cb.nodes_without_agent, b_nodes);

    // An agent that was not told its ARN reports under the bare name, which B's cluster reads
    // too: B is covered (docs/coverage.md, "Cluster names across accounts").
    org.heartbeat("prod", &b_nodes[0], Duration::from_secs(20))
        .await;
    deps.sweep(clock(), None).await.unwrap();
    let clusters = coverage.clusters().await.unwrap();
    let cb = clusters
        .iter()
        .find(|c| c.coverage.account_id == *b)
        .unwrap();
    assert_eq!(cb.coverage.coverage_status, CoverageStatus::Healthy);
}

#[tokio::test]
async fn auto_enable_new_monitors_only_accounts_that_join_later() {
    let org = org(&[("DefaultAutoEnable", "NEW")]).await;
    let old = org.accounts(2, "old").await;
    for a in &old {
        org.member_role(a, EXTERNAL_ID).await;
    }
    let deps = org.deps();
    let (config, _coverage) = stores(&org);
    let first = deps.sweep(Timestamp::now(), None).await.unwrap();
    // Two members and the management account, all there before auto-enable was set.
    assert_eq!(
        first.count_by_sweep_state.get(&SweepState::Disabled),
        Some(&3),
        "{first:?}"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let new = org.accounts(1, "new").await.remove(0);
    org.member_role(&new, EXTERNAL_ID).await;
    let second = deps.sweep(Timestamp::now(), None).await.unwrap();
    assert_eq!(
        second.count_by_sweep_state.get(&SweepState::Swept),
        Some(&1),
        "{second:?}"
    );
    let stored = config.load().await.unwrap();
    assert_eq!(stored.accounts[&new].monitoring, Monitoring::Enabled);
    assert_eq!(stored.accounts[&old[0]].monitoring, Monitoring::Disabled);
}

const AGENT_IMAGE: &str = "registry.example/peregrine/agent:0.1.0@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// The SQS endpoints of `vpc` that are not deleted, as (id, tag keys).
async fn endpoints(ec2: &aws_sdk_ec2::Client, vpc: &str) -> Vec<(String, Vec<String>)> {
    ec2.describe_vpc_endpoints()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("vpc-id")
                .values(vpc)
                .build(),
        )
        .send()
        .await
        .unwrap()
        .vpc_endpoints()
        .iter()
        .filter(|e| {
            !e.state()
                .is_some_and(|s| s.as_str().eq_ignore_ascii_case("deleted"))
        })
        .map(|e| {
            (
                e.vpc_endpoint_id().unwrap().to_owned(),
                e.tags()
                    .iter()
                    .filter_map(|t| t.key().map(str::to_owned))
                    .collect(),
            )
        })
        .collect()
}

#[tokio::test]
async fn auto_management_sets_a_cluster_up_once_and_releases_its_endpoint_when_it_is_deleted() {
    let api = peregrine_testkit::kube::ApiServer::start().await;
    let org = org(&[
        ("DefaultAgentManagement", "AUTO"),
        ("AgentImage", AGENT_IMAGE),
    ])
    .await;
    let account = org.accounts(1, "auto").await.remove(0);
    org.member_role(&account, EXTERNAL_ID).await;
    let (vpc, node) = org.managed_cluster(&account, "prod", &api).await;
    org.heartbeat("prod", &node, Duration::from_secs(20)).await;
    let inside = org.inside(&account).await;
    let ec2 = aws_sdk_ec2::Client::new(&inside);
    let eks = aws_sdk_eks::Client::new(&inside);
    let deps = org.deps();
    let (_config, coverage) = stores(&org);

    let first = deps.sweep(clock(), None).await.unwrap();
    assert_eq!(first.clusters_managed, 1, "{first:?}");
    let rows = coverage.clusters().await.unwrap();
    assert_eq!(
        first.management_changes, 1,
        "{first:?} {:?}",
        rows[0].coverage.issue
    );
    let row = coverage.clusters().await.unwrap().remove(0).coverage;
    assert_eq!(row.management_type, ManagementType::AutoManaged);
    assert_eq!(
        row.coverage_status,
        CoverageStatus::Healthy,
        "{:?}",
        row.issue
    );
    // The SQS endpoint, tagged as Peregrine's and as serving prod.
    let made = endpoints(&ec2, &vpc).await;
    assert_eq!(made.len(), 1, "{made:?}");
    assert!(
        made[0].1.contains(&"peregrine:managed-by".to_owned()),
        "{made:?}"
    );
    assert!(
        made[0].1.contains(&"peregrine:cluster/prod".to_owned()),
        "{made:?}"
    );
    // The agent's Pod Identity association and the sweeper's access entry.
    let associations = eks
        .list_pod_identity_associations()
        .cluster_name("prod")
        .send()
        .await
        .unwrap();
    assert_eq!(associations.associations().len(), 1);
    assert_eq!(
        associations.associations()[0].service_account(),
        Some("peregrine-agent")
    );
    let entries = eks
        .list_access_entries()
        .cluster_name("prod")
        .send()
        .await
        .unwrap();
    assert_eq!(
        entries.access_entries(),
        [format!("arn:aws:iam::{account}:role/PeregrineCoverageRole")]
    );
    // The DaemonSet, server-side applied by Peregrine's field manager with the image.
    let ds = api
        .object("/apis/apps/v1/namespaces/peregrine/daemonsets/peregrine-agent")
        .expect("the DaemonSet was applied");
    assert_eq!(
        ds.pointer("/spec/template/spec/containers/0/image")
            .and_then(|v| v.as_str()),
        Some(AGENT_IMAGE)
    );
    let applies: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert!(
        applies
            .iter()
            .all(|r| r.query.contains("fieldManager=peregrine")
                && r.content_type.as_deref() == Some("application/apply-patch+yaml")),
        "{applies:?}"
    );
    let version = ds.pointer("/metadata/resourceVersion").cloned();

    // Nothing to do the second time: same endpoint, same objects.
    let second = deps.sweep(clock(), None).await.unwrap();
    assert_eq!(second.clusters_managed, 1);
    assert_eq!(second.management_changes, 0, "{second:?}");
    assert_eq!(endpoints(&ec2, &vpc).await, made);
    let ds = api
        .object("/apis/apps/v1/namespaces/peregrine/daemonsets/peregrine-agent")
        .unwrap();
    assert_eq!(ds.pointer("/metadata/resourceVersion").cloned(), version);

    // The cluster is deleted: the next sweep gives its endpoint share back, and, as prod was
    // the VPC's last covered cluster, the endpoint goes (it would keep the VPC alive).
    eks.delete_addon()
        .cluster_name("prod")
        .addon_name("eks-pod-identity-agent")
        .send()
        .await
        .unwrap();
    eks.delete_cluster().name("prod").send().await.unwrap();
    let third = deps.sweep(clock(), None).await.unwrap();
    assert_eq!(third.clusters_swept, 0, "{third:?}");
    assert_eq!(third.clusters_removed, 1, "{third:?}");
    assert_eq!(third.management_changes, 1, "{third:?}");
    assert_eq!(endpoints(&ec2, &vpc).await, Vec::new());
    let fourth = deps.sweep(clock(), None).await.unwrap();
    assert_eq!(fourth.management_changes, 0, "{fourth:?}");
}

#[tokio::test]
async fn auto_clusters_say_so_when_no_agent_image_is_configured() {
    let api = peregrine_testkit::kube::ApiServer::start().await;
    let org = org(&[("DefaultAgentManagement", "AUTO")]).await;
    let account = org.accounts(1, "auto").await.remove(0);
    org.member_role(&account, EXTERNAL_ID).await;
    let (vpc, node) = org.managed_cluster(&account, "prod", &api).await;
    org.heartbeat("prod", &node, Duration::from_secs(20)).await;
    let deps = org.deps();
    let (_config, coverage) = stores(&org);
    let first = deps.sweep(clock(), None).await.unwrap();
    assert_eq!(first.clusters_managed, 1, "{first:?}");
    let row = coverage.clusters().await.unwrap().remove(0).coverage;
    assert_eq!(row.coverage_status, CoverageStatus::Unhealthy);
    let issue = row.issue.unwrap();
    assert!(
        issue.starts_with("Agent management misconfigured:") && issue.contains("AgentImage"),
        "{issue}"
    );
    let ec2 = aws_sdk_ec2::Client::new(&org.inside(&account).await);
    assert_eq!(endpoints(&ec2, &vpc).await, Vec::new());
    assert!(api.requests().is_empty());
}

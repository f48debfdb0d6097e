//! Finding the clusters: the organization's accounts (Organizations, from the Peregrine
//! account), the member role in each (STS), and in each region its EKS clusters, node groups,
//! worker nodes and SQS VPC endpoints (EKS and EC2, as the member role).
//!
//! Every failure here is a [`CallFailure`]: what the sweep reports as the account's (or the
//! region's) issue. None of it fails the sweep.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use aws_config::SdkConfig;
use aws_sdk_ec2::types::Filter;
use aws_sdk_sts::config::{Credentials, Region, SharedCredentialsProvider};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use futures_util::{FutureExt, StreamExt};
use peregrine_aws::Failure;
use peregrine_event::Timestamp;
use peregrine_org::config::MemberAccount;
use peregrine_org::coverage::{Issue, IssueKind};
use peregrine_org::inventory::{ClusterInventory, NodeInventory, NodegroupInventory, Taint};

use aws_sdk_dynamodb::error::SdkError;

/// EC2's limit on values per filter.
const MAX_FILTER_VALUES: usize = 200;
/// The tags by which EKS, eksctl and Karpenter mark a cluster's instances.
pub const CLUSTER_NAME_TAGS: [&str; 2] = ["eks:cluster-name", "eks:eks-cluster-name"];
const CLUSTER_TAG_PREFIX: &str = "kubernetes.io/cluster/";
const NODEGROUP_TAG: &str = "eks:nodegroup-name";
/// Concurrent DescribeCluster / node group calls within one account and region.
const CLUSTER_CONCURRENCY: usize = 4;

/// A call that failed, as the sweep reports it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{operation}: {code}: {message}")]
pub struct CallFailure {
    pub operation: &'static str,
    /// The service's error code (`AccessDenied`, `ThrottlingException`, ...), or what kind
    /// of failure it was when the service gave none.
    pub code: String,
    pub message: String,
    pub failure: Failure,
}

impl CallFailure {
    pub fn from_sdk<E, R>(operation: &'static str, e: &SdkError<E, R>) -> CallFailure
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: Debug,
    {
        let failure = peregrine_aws::classify(e);
        let (code, message) = match e.as_service_error() {
            Some(se) => (
                se.code().unwrap_or("UnknownError").to_owned(),
                se.message().unwrap_or_default().to_owned(),
            ),
            None => (
                format!("{failure:?}"),
                aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string(),
            ),
        };
        CallFailure {
            operation,
            code,
            message,
            failure,
        }
    }

    /// The issue kind this failure is.
    pub fn kind(&self) -> IssueKind {
        match self.code.as_str() {
            "OptInRequired"
            | "UnrecognizedClientException"
            | "InvalidClientTokenId"
            | "AuthFailure" => IssueKind::RegionNotEnabled,
            "UnauthorizedOperation" => IssueKind::AuthorizationFailure,
            _ => match self.failure {
                Failure::Denied => IssueKind::AuthorizationFailure,
                Failure::Throttled => IssueKind::Throttled,
                Failure::Unavailable | Failure::Invalid => IssueKind::InventoryFailed,
            },
        }
    }

    /// The issue, its detail starting with `scope` (the region, or the role).
    pub fn issue(&self, scope: &str, hint: &str) -> Issue {
        let mut detail = format!(
            "{scope}: {} {}: {}",
            self.operation, self.code, self.message
        );
        if !hint.is_empty() {
            detail.push_str(" (");
            detail.push_str(hint);
            detail.push(')');
        }
        Issue::new(self.kind(), detail)
    }
}

fn timestamp(t: &aws_smithy_types::DateTime) -> Timestamp {
    Timestamp::from_unix_nanos(i64::try_from(t.as_nanos()).unwrap_or(i64::MAX))
}

pub use peregrine_aws::partition;

/// Every account of the organization, all pages.
pub async fn list_accounts(
    client: &aws_sdk_organizations::Client,
) -> Result<Vec<MemberAccount>, CallFailure> {
    let mut out = Vec::new();
    // 20 is ListAccounts' largest page.
    let mut pages = client
        .list_accounts()
        .max_results(20)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| CallFailure::from_sdk("ListAccounts", &e))?;
        for a in page.accounts() {
            let Some(id) = a.id() else { continue };
            // `State` replaces the deprecated `Status`; older answers have only `Status`.
            let state = a
                .state()
                .map(|s| s.as_str().to_owned())
                .or_else(|| a.status().map(|s| s.as_str().to_owned()))
                .unwrap_or_default();
            out.push(MemberAccount {
                id: id.to_owned(),
                name: a.name().unwrap_or_default().to_owned(),
                state,
                joined_at: a.joined_timestamp().map(timestamp),
            });
        }
    }
    Ok(out)
}

/// How the sweeper reaches member accounts.
#[derive(Clone, Debug)]
pub struct MemberRole {
    pub role_name: String,
    pub external_id: Option<String>,
    pub partition: String,
}

impl MemberRole {
    pub fn arn(&self, account: &str) -> String {
        format!(
            "arn:{}:iam::{account}:role/{}",
            self.partition, self.role_name
        )
    }

    /// Assumes the role in `account`: the SDK configuration for that account (regions are set
    /// per call).
    pub async fn assume(
        &self,
        sts: &aws_sdk_sts::Client,
        base: &SdkConfig,
        account: &str,
    ) -> Result<SdkConfig, CallFailure> {
        let out = sts
            .assume_role()
            .role_arn(self.arn(account))
            .role_session_name("peregrine-coverage")
            // The shortest session STS grants; a sweep is shorter than the function's timeout.
            .duration_seconds(900)
            .set_external_id(self.external_id.clone())
            .send()
            .await
            .map_err(|e| CallFailure::from_sdk("AssumeRole", &e))?;
        let c = out.credentials().ok_or_else(|| CallFailure {
            operation: "AssumeRole",
            code: "NoCredentials".into(),
            message: "the answer carries no credentials".into(),
            failure: Failure::Invalid,
        })?;
        let expiry = std::time::SystemTime::try_from(*c.expiration()).ok();
        let credentials = Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_owned()),
            expiry,
            "peregrine-coverage",
        );
        Ok(base
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(credentials))
            .build())
    }
}

/// The SDK configuration of `member` for `region`.
pub fn in_region(member: &SdkConfig, region: &str) -> SdkConfig {
    member
        .to_builder()
        .region(Region::new(region.to_owned()))
        .build()
}

/// One region of one account: its clusters with their node groups and nodes, and the SQS
/// interface endpoints of their VPCs (when asked for).
#[derive(Clone, Debug, Default)]
pub struct RegionInventory {
    pub clusters: Vec<ClusterInventory>,
    /// VPC id → the SQS interface endpoints in it (id, state).
    pub sqs_endpoints: BTreeMap<String, Vec<(String, String)>>,
}

/// Lists a region's clusters, node groups, nodes and (with `with_endpoints`) SQS endpoints.
pub async fn region_inventory(
    cfg: &SdkConfig,
    account: &str,
    region: &str,
    with_endpoints: bool,
) -> Result<RegionInventory, CallFailure> {
    let eks = aws_sdk_eks::Client::new(cfg);
    let ec2 = aws_sdk_ec2::Client::new(cfg);
    let mut names = Vec::new();
    let mut pages = eks.list_clusters().max_results(100).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| CallFailure::from_sdk("ListClusters", &e))?;
        names.extend(page.clusters().iter().cloned());
    }
    // Built first, then streamed: see the same pattern in sweep.rs.
    let futures: Vec<_> = names
        .iter()
        .map(|name| describe(&eks, account, region, name).boxed())
        .collect();
    let described: Vec<Result<ClusterInventory, CallFailure>> = futures_util::stream::iter(futures)
        .buffer_unordered(CLUSTER_CONCURRENCY)
        .collect()
        .await;
    let mut clusters = Vec::with_capacity(described.len());
    for c in described {
        match c {
            Ok(c) => clusters.push(c),
            // A cluster deleted between ListClusters and DescribeCluster.
            Err(e) if e.code == "ResourceNotFoundException" => {}
            Err(e) => return Err(e),
        }
    }
    clusters.sort_by(|a, b| a.name.cmp(&b.name));
    let nodes = instances(&ec2, &names).await?;
    for c in &mut clusters {
        c.nodes = nodes.get(&c.name).cloned().unwrap_or_default();
    }
    let mut inventory = RegionInventory {
        clusters,
        sqs_endpoints: BTreeMap::new(),
    };
    if with_endpoints {
        let vpcs: BTreeSet<String> = inventory
            .clusters
            .iter()
            .filter_map(|c| c.vpc_id.clone())
            .collect();
        inventory.sqs_endpoints = sqs_endpoints(&ec2, region, &vpcs).await?;
    }
    Ok(inventory)
}

async fn describe(
    eks: &aws_sdk_eks::Client,
    account: &str,
    region: &str,
    name: &str,
) -> Result<ClusterInventory, CallFailure> {
    let out = eks
        .describe_cluster()
        .name(name)
        .send()
        .await
        .map_err(|e| CallFailure::from_sdk("DescribeCluster", &e))?;
    let Some(c) = out.cluster() else {
        return Err(CallFailure {
            operation: "DescribeCluster",
            code: "ResourceNotFoundException".into(),
            message: name.to_owned(),
            failure: Failure::Invalid,
        });
    };
    let mut cluster = ClusterInventory::from_eks(c, account, region);
    cluster.name = name.to_owned();
    let mut groups = Vec::new();
    let mut pages = eks
        .list_nodegroups()
        .cluster_name(name)
        .max_results(100)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| CallFailure::from_sdk("ListNodegroups", &e))?;
        groups.extend(page.nodegroups().iter().cloned());
    }
    for group in groups {
        let out = match eks
            .describe_nodegroup()
            .cluster_name(name)
            .nodegroup_name(&group)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                let f = CallFailure::from_sdk("DescribeNodegroup", &e);
                if f.code == "ResourceNotFoundException" {
                    continue;
                }
                return Err(f);
            }
        };
        let Some(g) = out.nodegroup() else { continue };
        cluster.nodegroups.push(NodegroupInventory {
            name: group.clone(),
            status: g.status().map(|s| s.as_str().to_owned()),
            desired_size: g
                .scaling_config()
                .and_then(|s| s.desired_size())
                .map(i64::from),
            ami_type: g.ami_type().map(|t| t.as_str().to_owned()),
            capacity_type: g.capacity_type().map(|t| t.as_str().to_owned()),
            taints: g
                .taints()
                .iter()
                .map(|t| Taint {
                    key: t.key().unwrap_or_default().to_owned(),
                    value: t.value().map(str::to_owned),
                    effect: t
                        .effect()
                        .map(|e| e.as_str().to_owned())
                        .unwrap_or_default(),
                })
                .collect(),
        });
    }
    Ok(cluster)
}

/// The cluster an instance's tags place it in, among `names`.
fn cluster_of<'a>(tags: &'a [aws_sdk_ec2::types::Tag], names: &BTreeSet<&str>) -> Option<&'a str> {
    for t in tags {
        let (Some(k), Some(v)) = (t.key(), t.value()) else {
            continue;
        };
        if CLUSTER_NAME_TAGS.contains(&k) && names.contains(v) {
            return Some(v);
        }
        if let Some(name) = k.strip_prefix(CLUSTER_TAG_PREFIX)
            && (v == "owned" || v == "shared")
            && names.contains(name)
        {
            return Some(name);
        }
    }
    None
}

/// The pending and running instances tagged as one of `clusters`', by cluster.
async fn instances(
    ec2: &aws_sdk_ec2::Client,
    clusters: &[String],
) -> Result<BTreeMap<String, Vec<NodeInventory>>, CallFailure> {
    let mut out: BTreeMap<String, Vec<NodeInventory>> = BTreeMap::new();
    if clusters.is_empty() {
        return Ok(out);
    }
    let names: BTreeSet<&str> = clusters.iter().map(String::as_str).collect();
    let mut keys: Vec<String> = CLUSTER_NAME_TAGS.iter().map(|t| (*t).to_owned()).collect();
    keys.extend(clusters.iter().map(|c| format!("{CLUSTER_TAG_PREFIX}{c}")));
    let mut seen = BTreeSet::new();
    for chunk in keys.chunks(MAX_FILTER_VALUES) {
        let mut pages = ec2
            .describe_instances()
            .filters(
                Filter::builder()
                    .name("tag-key")
                    .set_values(Some(chunk.to_vec()))
                    .build(),
            )
            .filters(
                Filter::builder()
                    .name("instance-state-name")
                    .values("pending")
                    .values("running")
                    .build(),
            )
            .max_results(1000)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| CallFailure::from_sdk("DescribeInstances", &e))?;
            for i in page.reservations().iter().flat_map(|r| r.instances()) {
                let Some(id) = i.instance_id() else { continue };
                let Some(cluster) = cluster_of(i.tags(), &names) else {
                    continue;
                };
                if !seen.insert(id.to_owned()) {
                    continue;
                }
                let tag = |key: &str| {
                    i.tags()
                        .iter()
                        .find(|t| t.key() == Some(key))
                        .and_then(|t| t.value())
                        .map(str::to_owned)
                };
                out.entry(cluster.to_owned())
                    .or_default()
                    .push(NodeInventory {
                        instance_id: id.to_owned(),
                        private_dns_name: i
                            .private_dns_name()
                            .filter(|n| !n.is_empty())
                            .map(str::to_owned),
                        instance_type: i.instance_type().map(|t| t.as_str().to_owned()),
                        state: i
                            .state()
                            .and_then(|s| s.name())
                            .map(|s| s.as_str().to_owned())
                            .unwrap_or_default(),
                        launch_time: i.launch_time().map(timestamp),
                        platform: i.platform().map(|p| p.as_str().to_owned()),
                        architecture: i.architecture().map(|a| a.as_str().to_owned()),
                        nodegroup: tag(NODEGROUP_TAG),
                        subnet_id: i.subnet_id().map(str::to_owned),
                    });
            }
        }
    }
    for nodes in out.values_mut() {
        nodes.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    }
    Ok(out)
}

/// The SQS interface endpoints in `vpcs`, by VPC: (endpoint id, state).
async fn sqs_endpoints(
    ec2: &aws_sdk_ec2::Client,
    region: &str,
    vpcs: &BTreeSet<String>,
) -> Result<BTreeMap<String, Vec<(String, String)>>, CallFailure> {
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    if vpcs.is_empty() {
        return Ok(out);
    }
    let vpcs: Vec<String> = vpcs.iter().cloned().collect();
    for chunk in vpcs.chunks(MAX_FILTER_VALUES) {
        let mut pages = ec2
            .describe_vpc_endpoints()
            .filters(
                Filter::builder()
                    .name("service-name")
                    .values(format!("com.amazonaws.{region}.sqs"))
                    .build(),
            )
            .filters(
                Filter::builder()
                    .name("vpc-id")
                    .set_values(Some(chunk.to_vec()))
                    .build(),
            )
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| CallFailure::from_sdk("DescribeVpcEndpoints", &e))?;
            for e in page.vpc_endpoints() {
                let (Some(vpc), Some(id)) = (e.vpc_id(), e.vpc_endpoint_id()) else {
                    continue;
                };
                let state = e
                    .state()
                    .map(|s| s.as_str().to_ascii_lowercase())
                    .unwrap_or_default();
                out.entry(vpc.to_owned())
                    .or_default()
                    .push((id.to_owned(), state));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: &str, failure: Failure) -> CallFailure {
        CallFailure {
            operation: "Op",
            code: code.into(),
            message: "m".into(),
            failure,
        }
    }

    #[test]
    fn failures_become_issue_kinds() {
        let cases = [
            (
                "AccessDenied",
                Failure::Denied,
                IssueKind::AuthorizationFailure,
            ),
            (
                "UnauthorizedOperation",
                Failure::Invalid,
                IssueKind::AuthorizationFailure,
            ),
            (
                "ThrottlingException",
                Failure::Throttled,
                IssueKind::Throttled,
            ),
            (
                "OptInRequired",
                Failure::Invalid,
                IssueKind::RegionNotEnabled,
            ),
            (
                "UnrecognizedClientException",
                Failure::Denied,
                IssueKind::RegionNotEnabled,
            ),
            (
                "Unavailable",
                Failure::Unavailable,
                IssueKind::InventoryFailed,
            ),
        ];
        for (code, f, kind) in cases {
            assert_eq!(failure(code, f).kind(), kind, "{code}");
        }
        let i = failure("AccessDenied", Failure::Denied).issue("eu-west-1", "hint");
        assert_eq!(
            i.text(),
            "Authorization failure:eu-west-1: Op AccessDenied: m (hint)"
        );
    }

    #[test]
    fn instances_are_placed_by_their_tags() {
        let tag = |k: &str, v: &str| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build();
        let names: BTreeSet<&str> = ["a", "b"].into_iter().collect();
        assert_eq!(
            cluster_of(&[tag("eks:cluster-name", "a")], &names),
            Some("a")
        );
        assert_eq!(
            cluster_of(&[tag("kubernetes.io/cluster/b", "owned")], &names),
            Some("b")
        );
        assert_eq!(
            cluster_of(&[tag("kubernetes.io/cluster/b", "other")], &names),
            None
        );
        assert_eq!(cluster_of(&[tag("eks:cluster-name", "c")], &names), None);
        assert_eq!(partition("cn-north-1"), "aws-cn");
        assert_eq!(partition("eu-west-1"), "aws");
    }
}

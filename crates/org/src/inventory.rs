//! What the sweeper finds in a member account and region: each EKS cluster (`DescribeCluster`),
//! its managed node groups (`ListNodegroups`, `DescribeNodegroup`) and its EC2 worker nodes
//! (`DescribeInstances`, by the cluster's tags). It is what the coverage assessment compares
//! with the agents' heartbeats, and what the agent manager (`crates/manage`) needs to deploy
//! into a cluster: its VPC, subnets, security groups, API endpoint and identity settings.

use std::collections::BTreeMap;

use peregrine_event::Timestamp;
use serde::{Deserialize, Serialize};

/// One EKS cluster with its node groups and nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInventory {
    pub account_id: String,
    pub region: String,
    pub name: String,
    pub arn: String,
    /// `ACTIVE`, `CREATING`, `UPDATING`, `DELETING`, `FAILED`, `PENDING`.
    pub status: String,
    /// The Kubernetes version (`1.31`).
    pub version: Option<String>,
    pub platform_version: Option<String>,
    /// The Kubernetes API server's URL and CA bundle (base64 PEM).
    pub endpoint: Option<String>,
    pub certificate_authority: Option<String>,
    /// `API`, `API_AND_CONFIG_MAP` or `CONFIG_MAP` (access entries need one of the first two).
    pub authentication_mode: Option<String>,
    /// The IAM OIDC issuer URL (for IRSA).
    pub oidc_issuer: Option<String>,
    pub vpc_id: Option<String>,
    pub subnet_ids: Vec<String>,
    /// The additional security groups and the cluster security group EKS created.
    pub security_group_ids: Vec<String>,
    pub cluster_security_group_id: Option<String>,
    pub tags: BTreeMap<String, String>,
    /// `computeConfig.enabled`: EKS Auto Mode (Pod Identity built in).
    #[serde(default)]
    pub auto_mode: bool,
    pub nodegroups: Vec<NodegroupInventory>,
    /// The running (and pending) EC2 instances tagged as this cluster's.
    pub nodes: Vec<NodeInventory>,
}

/// A managed node group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodegroupInventory {
    pub name: String,
    pub status: Option<String>,
    pub desired_size: Option<i64>,
    /// `AL2023_x86_64_STANDARD`, `BOTTLEROCKET_ARM_64`, `WINDOWS_CORE_2022_x86_64`, ...
    pub ami_type: Option<String>,
    pub capacity_type: Option<String>,
    pub taints: Vec<Taint>,
}

/// A Kubernetes taint as EKS reports it (`NO_SCHEDULE`, `NO_EXECUTE`, `PREFER_NO_SCHEDULE`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Taint {
    pub key: String,
    pub value: Option<String>,
    pub effect: String,
}

/// An EC2 worker node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInventory {
    pub instance_id: String,
    /// The node's Kubernetes name under EKS's default (IP-based) naming.
    pub private_dns_name: Option<String>,
    pub instance_type: Option<String>,
    /// `pending` or `running`.
    pub state: String,
    pub launch_time: Option<Timestamp>,
    /// `windows` for Windows nodes (no eBPF agent runs there), else `None`.
    pub platform: Option<String>,
    pub architecture: Option<String>,
    /// The managed node group (`eks:nodegroup-name` tag), if any.
    pub nodegroup: Option<String>,
    pub subnet_id: Option<String>,
}

impl NodeInventory {
    /// The agent runs on Linux nodes only.
    pub fn is_compatible(&self) -> bool {
        !self
            .platform
            .as_deref()
            .is_some_and(|p| p.eq_ignore_ascii_case("windows"))
    }

    /// Whether a heartbeat's `nodeName` is this node: its private DNS name (EKS's default node
    /// name), its instance id, or a resource-based hostname (`i-0abc….<region>.compute.internal`).
    pub fn is_named(&self, node_name: &str) -> bool {
        if self.private_dns_name.as_deref() == Some(node_name) {
            return true;
        }
        match node_name.strip_prefix(self.instance_id.as_str()) {
            Some(rest) => rest.is_empty() || rest.starts_with('.'),
            None => false,
        }
    }
}

impl ClusterInventory {
    /// The node group a node belongs to.
    pub fn nodegroup(&self, node: &NodeInventory) -> Option<&NodegroupInventory> {
        let name = node.nodegroup.as_deref()?;
        self.nodegroups.iter().find(|g| g.name == name)
    }

    /// The nodes its managed node groups want (the sum of their desired sizes).
    pub fn desired_nodes(&self) -> Option<i64> {
        let sizes: Vec<i64> = self
            .nodegroups
            .iter()
            .filter_map(|g| g.desired_size)
            .collect();
        (!sizes.is_empty()).then(|| sizes.iter().sum())
    }
}

#[cfg(feature = "eks")]
impl ClusterInventory {
    /// What DescribeCluster says of a cluster of `account` and `region`, without its node
    /// groups and nodes (the sweeper lists those).
    pub fn from_eks(
        c: &aws_sdk_eks::types::Cluster,
        account: &str,
        region: &str,
    ) -> ClusterInventory {
        let vpc = c.resources_vpc_config();
        ClusterInventory {
            account_id: account.to_owned(),
            region: region.to_owned(),
            name: c.name().unwrap_or_default().to_owned(),
            arn: c.arn().unwrap_or_default().to_owned(),
            status: c
                .status()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            version: c.version().map(str::to_owned),
            platform_version: c.platform_version().map(str::to_owned),
            endpoint: c.endpoint().map(str::to_owned),
            certificate_authority: c
                .certificate_authority()
                .and_then(|a| a.data())
                .map(str::to_owned),
            authentication_mode: c
                .access_config()
                .and_then(|a| a.authentication_mode())
                .map(|m| m.as_str().to_owned()),
            oidc_issuer: c
                .identity()
                .and_then(|i| i.oidc())
                .and_then(|o| o.issuer())
                .map(str::to_owned),
            vpc_id: vpc.and_then(|v| v.vpc_id()).map(str::to_owned),
            subnet_ids: vpc.map(|v| v.subnet_ids().to_vec()).unwrap_or_default(),
            security_group_ids: vpc
                .map(|v| v.security_group_ids().to_vec())
                .unwrap_or_default(),
            cluster_security_group_id: vpc
                .and_then(|v| v.cluster_security_group_id())
                .map(str::to_owned),
            tags: c
                .tags()
                .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
            auto_mode: c
                .compute_config()
                .and_then(|cc| cc.enabled())
                .unwrap_or(false),
            nodegroups: Vec::new(),
            nodes: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_name_nodes_by_dns_name_or_instance_id() {
        let n = NodeInventory {
            instance_id: "i-0abc".into(),
            private_dns_name: Some("ip-10-0-1-5.ec2.internal".into()),
            state: "running".into(),
            ..NodeInventory::default()
        };
        assert!(n.is_named("ip-10-0-1-5.ec2.internal"));
        assert!(n.is_named("i-0abc"));
        assert!(n.is_named("i-0abc.us-east-1.compute.internal"));
        assert!(!n.is_named("i-0abcd"));
        assert!(!n.is_named("ip-10-0-1-6.ec2.internal"));
        assert!(n.is_compatible());
        let w = NodeInventory {
            platform: Some("Windows".into()),
            ..n
        };
        assert!(!w.is_compatible());
    }
}

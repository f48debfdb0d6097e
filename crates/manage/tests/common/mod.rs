//! Test support: a moto per test with a covered cluster in it, and a stand-in Kubernetes API
//! server (no kube-apiserver can run here).
//!
//! The stand-in serves HTTPS with a self-signed certificate (its PEM is the cluster's CA data,
//! as DescribeCluster gives it), records every request, and keeps objects the way server-side
//! apply would: an apply whose body equals the last applied body changes nothing (same
//! `resourceVersion`); anything else stores it under a new `resourceVersion` with the field
//! manager in `managedFields`. It answers 404 for a namespaced object whose Namespace does not
//! exist, and can be told to refuse everything with a status (401, 403).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aws_config::SdkConfig;
use aws_sdk_ec2::types::{AttributeBooleanValue, Filter, VpcEndpoint};
use peregrine_manage::{AgentIdentity, ClusterInventory, ManageConfig};
use peregrine_testkit::moto::Moto;

pub const QUEUE_URL: &str =
    "https://sqs.us-east-1.amazonaws.com/123456789012/peregrine-EventsQueue";
pub const QUEUE_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:peregrine-EventsQueue";
pub const ROLE_TEMPLATE: &str = "arn:{partition}:iam::{account}:role/peregrine-agent-{cluster}";

pub fn image() -> String {
    format!(
        "registry.example/peregrine-agent:0.1.0@sha256:{}",
        "ab".repeat(32)
    )
}

pub fn config() -> ManageConfig {
    let mut cfg = ManageConfig::new(
        QUEUE_URL,
        QUEUE_ARN,
        image(),
        "monitoring",
        AgentIdentity::PodIdentity {
            role_arn: ROLE_TEMPLATE.into(),
        },
    );
    cfg.tags.insert("team".into(), "security".into());
    cfg
}

#[allow(unused_imports)] // each test binary uses its own part
pub use peregrine_testkit::kube::{ApiServer, Recorded, token_url};

// --- AWS side ----------------------------------------------------------------------------------

pub struct Cluster {
    pub inventory: ClusterInventory,
    pub cluster_sg: String,
}

pub struct Env {
    pub moto: Moto,
    pub sdk: SdkConfig,
    pub api: ApiServer,
}

impl Env {
    pub async fn start() -> Env {
        let moto = Moto::start().expect("moto starts (scripts/setup installs it)");
        let sdk = moto.sdk_config().await;
        let api = ApiServer::start().await;
        Env { moto, sdk, api }
    }

    pub fn ec2(&self) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.sdk)
    }

    pub fn eks(&self) -> aws_sdk_eks::Client {
        aws_sdk_eks::Client::new(&self.sdk)
    }

    /// A VPC (10.<n>.0.0/16) with DNS support and hostnames as given.
    pub async fn vpc(&self, n: u8, dns_support: bool, dns_hostnames: bool) -> String {
        let ec2 = self.ec2();
        let vpc = ec2
            .create_vpc()
            .cidr_block(format!("10.{n}.0.0/16"))
            .send()
            .await
            .unwrap()
            .vpc()
            .unwrap()
            .vpc_id()
            .unwrap()
            .to_owned();
        ec2.modify_vpc_attribute()
            .vpc_id(&vpc)
            .enable_dns_support(AttributeBooleanValue::builder().value(dns_support).build())
            .send()
            .await
            .unwrap();
        ec2.modify_vpc_attribute()
            .vpc_id(&vpc)
            .enable_dns_hostnames(
                AttributeBooleanValue::builder()
                    .value(dns_hostnames)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        vpc
    }

    pub async fn subnet(&self, vpc: &str, cidr: &str, az: &str) -> String {
        self.ec2()
            .create_subnet()
            .vpc_id(vpc)
            .cidr_block(cidr)
            .availability_zone(az)
            .send()
            .await
            .unwrap()
            .subnet()
            .unwrap()
            .subnet_id()
            .unwrap()
            .to_owned()
    }

    /// An EKS cluster in `vpc` on `subnets`, with a cluster security group, the Pod Identity
    /// agent add-on (unless `addon` is false) and the stand-in as its API server.
    pub async fn cluster(
        &self,
        name: &str,
        vpc: &str,
        subnets: &[String],
        auth_mode: &str,
        addon: bool,
    ) -> Cluster {
        let eks = self.eks();
        eks.create_cluster()
            .name(name)
            .role_arn("arn:aws:iam::123456789012:role/eks-cluster")
            .resources_vpc_config(
                aws_sdk_eks::types::VpcConfigRequest::builder()
                    .set_subnet_ids(Some(subnets.to_vec()))
                    .build(),
            )
            .access_config(
                aws_sdk_eks::types::CreateAccessConfigRequest::builder()
                    .authentication_mode(auth_mode.into())
                    .build(),
            )
            .send()
            .await
            .unwrap();
        if addon {
            eks.create_addon()
                .cluster_name(name)
                .addon_name("eks-pod-identity-agent")
                .send()
                .await
                .unwrap();
        }
        let described = eks.describe_cluster().name(name).send().await.unwrap();
        let described = described.cluster().unwrap();
        let account = described.arn().unwrap().split(':').nth(4).unwrap();
        let mut inventory = ClusterInventory::try_from(
            &peregrine_org::inventory::ClusterInventory::from_eks(described, account, "us-east-1"),
        )
        .unwrap();
        assert_eq!(inventory.authentication_mode.as_deref(), Some(auth_mode));
        assert_eq!(inventory.vpc_id, vpc);
        let cluster_sg = inventory
            .cluster_security_group_id
            .clone()
            .expect("the launcher gives clusters a cluster security group");
        // The stand-in is the cluster's API server.
        inventory.endpoint = Some(self.api.endpoint.clone());
        inventory.certificate_authority = Some(self.api.ca_data.clone());
        Cluster {
            inventory,
            cluster_sg,
        }
    }

    /// A VPC with DNS on, two AZs (three subnets, two in the first AZ) and a cluster.
    pub async fn covered_cluster(&self, name: &str) -> Cluster {
        let vpc = self.vpc(1, true, true).await;
        let subnets = vec![
            self.subnet(&vpc, "10.1.1.0/24", "us-east-1a").await,
            self.subnet(&vpc, "10.1.2.0/24", "us-east-1a").await,
            self.subnet(&vpc, "10.1.3.0/24", "us-east-1b").await,
        ];
        self.cluster(name, &vpc, &subnets, "API_AND_CONFIG_MAP", true)
            .await
    }

    /// The VPC's SQS endpoints that are not deleted.
    pub async fn endpoints(&self, vpc: &str) -> Vec<VpcEndpoint> {
        self.ec2()
            .describe_vpc_endpoints()
            .filters(Filter::builder().name("vpc-id").values(vpc).build())
            .send()
            .await
            .unwrap()
            .vpc_endpoints()
            .iter()
            .filter(|e| e.state().map(|s| s.as_str()) != Some("deleted"))
            .cloned()
            .collect()
    }

    pub async fn security_group(
        &self,
        vpc: &str,
        name: &str,
    ) -> Option<aws_sdk_ec2::types::SecurityGroup> {
        self.ec2()
            .describe_security_groups()
            .filters(Filter::builder().name("vpc-id").values(vpc).build())
            .send()
            .await
            .unwrap()
            .security_groups()
            .iter()
            .find(|g| g.group_name() == Some(name))
            .cloned()
    }
}

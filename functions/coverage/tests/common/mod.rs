//! An organization in moto for the sweeper's tests and benchmark: the template provisioned,
//! member accounts created through Organizations, each set up through its
//! OrganizationAccountAccessRole (PeregrineCoverageRole, EKS clusters, EC2 worker nodes), and
//! agent heartbeats written where the detector writes them.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_ec2::types::{
    AttributeBooleanValue, InstanceType, ResourceType, Tag, TagSpecification,
};
use aws_sdk_eks::types::VpcConfigRequest;
use aws_sdk_sqs::types::QueueAttributeName;
use aws_sdk_sts::config::{Credentials, SharedCredentialsProvider};
use peregrine_coverage::{BINARY, Config, CoverageDeps};
use peregrine_event::Timestamp;
use peregrine_provision::{LocalStack, ProvisionOptions, Template, function_config, provision};
use peregrine_store::{Coverage, DynamoHeartbeatStore, HeartbeatRecord, HeartbeatStore, iso};
use peregrine_testkit::moto::Moto;

pub const EXTERNAL_ID: &str = "ext-0123456789";

/// The sweeps' clock: 15 minutes ahead, so nodes launched by the test are past the staleness
/// window's grace for new nodes.
pub fn clock() -> Timestamp {
    Timestamp::from_unix_nanos(Timestamp::now().unix_nanos() + 900 * 1_000_000_000)
}
pub const MANAGEMENT: &str = "123456789012";

pub struct Org {
    pub moto: Moto,
    pub sdk: SdkConfig,
    pub stack: LocalStack,
    pub config: Config,
    /// A Linux image id: moto gives every account the same default images, and listing them
    /// is the slowest call of a set-up.
    image: tokio::sync::OnceCell<String>,
}

pub async fn org(parameters: &[(&str, &str)]) -> Org {
    let moto = Moto::start().expect("moto starts (scripts/setup installs it)");
    let sdk = moto.sdk_config().await;
    let template =
        Template::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml"))
            .unwrap();
    let mut params: BTreeMap<String, String> = parameters
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    params
        .entry("CoverageExternalId".into())
        .or_insert_with(|| EXTERNAL_ID.into());
    let stack = provision(
        &sdk,
        &template,
        &ProvisionOptions {
            prefix: "pgcov".into(),
            parameters: params,
            ..ProvisionOptions::default()
        },
    )
    .await
    .unwrap();
    let config: Config = function_config(&stack, BINARY).unwrap();
    aws_sdk_organizations::Client::new(&sdk)
        .create_organization()
        .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
        .send()
        .await
        .unwrap();
    Org {
        moto,
        sdk,
        stack,
        config,
        image: tokio::sync::OnceCell::new(),
    }
}

impl Org {
    pub fn deps(&self) -> CoverageDeps {
        CoverageDeps::from_sdk(&self.sdk, self.config.clone())
    }

    pub fn dynamo(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk)
    }

    /// Creates `n` member accounts; their ids, in creation order.
    pub async fn accounts(&self, n: usize, prefix: &str) -> Vec<String> {
        let orgs = aws_sdk_organizations::Client::new(&self.sdk);
        let mut ids = Vec::new();
        for i in 0..n {
            let out = orgs
                .create_account()
                .account_name(format!("{prefix}-{i}"))
                .email(format!("{prefix}-{i}@example.com"))
                .send()
                .await
                .unwrap();
            ids.push(
                out.create_account_status()
                    .unwrap()
                    .account_id()
                    .unwrap()
                    .to_owned(),
            );
        }
        ids
    }

    /// The SDK configuration inside `account`, through OrganizationAccountAccessRole.
    pub async fn inside(&self, account: &str) -> SdkConfig {
        let c = aws_sdk_sts::Client::new(&self.sdk)
            .assume_role()
            .role_arn(format!(
                "arn:aws:iam::{account}:role/OrganizationAccountAccessRole"
            ))
            .role_session_name("setup")
            .send()
            .await
            .unwrap();
        let c = c.credentials().unwrap();
        self.sdk
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                c.access_key_id(),
                c.secret_access_key(),
                Some(c.session_token().to_owned()),
                None,
                "setup",
            )))
            .build()
    }

    /// Creates PeregrineCoverageRole in `account`, trusting the sweeper with `external_id`.
    pub async fn member_role(&self, account: &str, external_id: &str) {
        let cfg = self.inside(account).await;
        let trust = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{MANAGEMENT}:root")},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": external_id}}
            }]
        });
        aws_sdk_iam::Client::new(&cfg)
            .create_role()
            .role_name("PeregrineCoverageRole")
            .assume_role_policy_document(trust.to_string())
            .send()
            .await
            .unwrap();
    }

    /// Creates a cluster with `nodes` running worker nodes in `account` (and one managed node
    /// group); the nodes' private DNS names, sorted.
    pub async fn cluster(
        &self,
        account: &str,
        name: &str,
        tags: &[(&str, &str)],
        nodes: i32,
    ) -> Vec<String> {
        let cfg = self.inside(account).await;
        self.cluster_in(&cfg, account, name, tags, nodes).await
    }

    pub async fn cluster_in(
        &self,
        cfg: &SdkConfig,
        account: &str,
        name: &str,
        tags: &[(&str, &str)],
        nodes: i32,
    ) -> Vec<String> {
        let eks = aws_sdk_eks::Client::new(cfg);
        let mut create = eks
            .create_cluster()
            .name(name)
            .role_arn(format!("arn:aws:iam::{account}:role/eks"))
            .resources_vpc_config(VpcConfigRequest::builder().subnet_ids("subnet-1").build());
        for (k, v) in tags {
            create = create.tags(*k, *v);
        }
        create.send().await.unwrap();
        eks.create_nodegroup()
            .cluster_name(name)
            .nodegroup_name("default")
            .node_role(format!("arn:aws:iam::{account}:role/node"))
            .subnets("subnet-1")
            .scaling_config(
                aws_sdk_eks::types::NodegroupScalingConfig::builder()
                    .desired_size(nodes.max(1))
                    .min_size(0)
                    .max_size(10)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        if nodes == 0 {
            return Vec::new();
        }
        let ec2 = aws_sdk_ec2::Client::new(cfg);
        let image = self.linux_image(&ec2).await;
        let out = ec2
            .run_instances()
            .image_id(image)
            .min_count(nodes)
            .max_count(nodes)
            .instance_type(InstanceType::T3Medium)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .tags(Tag::builder().key("eks:cluster-name").value(name).build())
                    .tags(
                        Tag::builder()
                            .key("eks:nodegroup-name")
                            .value("default")
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let mut names: Vec<String> = out
            .instances()
            .iter()
            .map(|i| i.private_dns_name().unwrap().to_owned())
            .collect();
        names.sort();
        names
    }

    /// A cluster in its own VPC (DNS attributes on, subnets in two Availability Zones) in
    /// `account`, whose Kubernetes API is `api` (the stand-in), with the Pod Identity agent
    /// add-on and one running worker node without a node group; its VPC id and the node's
    /// private DNS name.
    pub async fn managed_cluster(
        &self,
        account: &str,
        name: &str,
        api: &peregrine_testkit::kube::ApiServer,
    ) -> (String, String) {
        let cfg = self.inside(account).await;
        let ec2 = aws_sdk_ec2::Client::new(&cfg);
        let vpc = ec2
            .create_vpc()
            .cidr_block("10.7.0.0/16")
            .send()
            .await
            .unwrap()
            .vpc()
            .unwrap()
            .vpc_id()
            .unwrap()
            .to_owned();
        for attribute in [true, false] {
            let on = AttributeBooleanValue::builder().value(true).build();
            let m = ec2.modify_vpc_attribute().vpc_id(&vpc);
            let m = if attribute {
                m.enable_dns_support(on)
            } else {
                m.enable_dns_hostnames(on)
            };
            m.send().await.unwrap();
        }
        let mut subnets = Vec::new();
        for (cidr, az) in [("10.7.1.0/24", "us-east-1a"), ("10.7.2.0/24", "us-east-1b")] {
            subnets.push(
                ec2.create_subnet()
                    .vpc_id(&vpc)
                    .cidr_block(cidr)
                    .availability_zone(az)
                    .send()
                    .await
                    .unwrap()
                    .subnet()
                    .unwrap()
                    .subnet_id()
                    .unwrap()
                    .to_owned(),
            );
        }
        let eks = aws_sdk_eks::Client::new(&cfg);
        eks.create_cluster()
            .name(name)
            .role_arn(format!("arn:aws:iam::{account}:role/eks"))
            .resources_vpc_config(
                VpcConfigRequest::builder()
                    .set_subnet_ids(Some(subnets.clone()))
                    .build(),
            )
            .tags("peregrine-moto:endpoint", &api.endpoint)
            .tags("peregrine-moto:ca", &api.ca_data)
            .send()
            .await
            .unwrap();
        eks.create_addon()
            .cluster_name(name)
            .addon_name("eks-pod-identity-agent")
            .send()
            .await
            .unwrap();
        let image = self.linux_image(&ec2).await;
        let node = ec2
            .run_instances()
            .image_id(image)
            .min_count(1)
            .max_count(1)
            .subnet_id(&subnets[0])
            .instance_type(InstanceType::T3Medium)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .tags(Tag::builder().key("eks:cluster-name").value(name).build())
                    .build(),
            )
            .send()
            .await
            .unwrap()
            .instances()[0]
            .private_dns_name()
            .unwrap()
            .to_owned();
        (vpc, node)
    }

    /// A Linux image (Windows nodes run no agent and are not counted).
    async fn linux_image(&self, ec2: &aws_sdk_ec2::Client) -> String {
        self.image
            .get_or_init(|| async {
                ec2.describe_images()
                    .owners("amazon")
                    .send()
                    .await
                    .unwrap()
                    .images()
                    .iter()
                    .find(|i| i.platform().is_none())
                    .and_then(|i| i.image_id())
                    .unwrap()
                    .to_owned()
            })
            .await
            .clone()
    }

    /// Writes the agent heartbeat of `node` in `cluster`, received `age` before [`clock`].
    /// `cluster` is the cluster's ARN (an agent told it) or its bare name (one that was not).
    pub async fn heartbeat(&self, cluster: &str, node: &str, age: Duration) {
        let arn = peregrine_event::ClusterArn::parse(cluster).ok();
        let table = &self.stack.tables["HeartbeatsTable"];
        let store = DynamoHeartbeatStore::new(self.dynamo(), table);
        let at = Timestamp::from_unix_nanos(
            clock().unix_nanos() - i64::try_from(age.as_nanos()).unwrap(),
        );
        // Unconditional: the test moves a node's heartbeat back in time too.
        self.dynamo()
            .delete_item()
            .table_name(table)
            .key(
                peregrine_store::HEARTBEAT_KEY,
                aws_sdk_dynamodb::types::AttributeValue::S(cluster.into()),
            )
            .key(
                "nodeName",
                aws_sdk_dynamodb::types::AttributeValue::S(node.into()),
            )
            .send()
            .await
            .unwrap();
        let record = HeartbeatRecord {
            cluster_name: arn.as_ref().map_or(cluster, |a| a.cluster_name()).into(),
            cluster_arn: arn.as_ref().map(|a| a.as_str().to_owned()),
            node_name: node.into(),
            agent_id: format!("agent-{node}"),
            agent_version: "0.1.0".into(),
            kernel_release: "6.1.0".into(),
            last_seen: iso(at),
            received_at: iso(at),
            probes_json: "[]".into(),
            probes_attached: 30,
            probes_failed: 0,
            kernel_ringbuf_full: 0,
            kernel_no_scratch: 0,
            user_queue_full: 0,
            spool_dropped: 0,
            spool_messages: 0,
            spool_bytes: 0,
            events_sent: 100,
            uptime_seconds: 3600,
            next_sequence: 7,
            coverage: Coverage::Healthy,
            blinding_json: "[]".into(),
            expires_at: 0,
        };
        assert!(store.put(&record).await.unwrap());
    }

    /// A queue receiving every coverage status-change event from the findings bus.
    pub async fn status_change_queue(&self) -> String {
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        let url = sqs
            .create_queue()
            .queue_name("coverage-changes")
            .send()
            .await
            .unwrap()
            .queue_url()
            .unwrap()
            .to_owned();
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes()
            .unwrap()[&QueueAttributeName::QueueArn]
            .clone();
        let bus = &self.config.event_bus_name;
        let eb = aws_sdk_eventbridge::Client::new(&self.sdk);
        eb.put_rule()
            .name("coverage-changes")
            .event_bus_name(bus)
            .event_pattern(
                r#"{"source":["peregrine"],"detail-type":["Peregrine Coverage Status Change"]}"#,
            )
            .send()
            .await
            .unwrap();
        eb.put_targets()
            .rule("coverage-changes")
            .event_bus_name(bus)
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
        url
    }

    /// The events in `queue` (received and deleted), as JSON.
    pub async fn events(&self, queue: &str) -> Vec<serde_json::Value> {
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        let mut out = Vec::new();
        loop {
            let r = sqs
                .receive_message()
                .queue_url(queue)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            if r.messages().is_empty() {
                return out;
            }
            for m in r.messages() {
                out.push(serde_json::from_str(m.body().unwrap()).unwrap());
                sqs.delete_message()
                    .queue_url(queue)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }
}

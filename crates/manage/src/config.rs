//! The Peregrine stack's facts that management needs, the same for every cluster.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::ManageError;
use crate::inventory::ClusterInventory;
use crate::validate;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManageConfig {
    /// The stack's `EventsQueueUrl` (the manifest's `QUEUE_URL`).
    pub queue_url: String,
    /// The stack's `EventsQueueArn`; its region is the manifest's `AWS_REGION`, and the VPC
    /// endpoint is made only for clusters in that region (an SQS endpoint serves its own
    /// region's queues).
    pub queue_arn: String,
    /// The agent image, pinned by digest (`repo:tag@sha256:<64 hex>`); replaces the manifest's
    /// placeholder image.
    pub agent_image: String,
    /// Where Prometheus runs (the manifest's `MONITORING_NAMESPACE`).
    pub monitoring_namespace: String,
    pub agent_identity: AgentIdentity,
    /// The member-account role the sweeper assumes (`infra/member-account-role.yaml`): its
    /// ARN in the cluster's account is the access entry's principal.
    pub manager_role_name: String,
    pub endpoint_ingress: EndpointIngress,
    /// Extra tags for every AWS resource management creates (besides
    /// `peregrine:managed-by=peregrine` and `peregrine:cluster/<name>`).
    pub tags: BTreeMap<String, String>,
    /// Per Kubernetes request (connect, TLS, response).
    pub kube_timeout: Duration,
}

/// How the agent gets its AWS credentials. `role_arn` is a template: `{partition}`,
/// `{account}`, `{region}` and `{cluster}` are replaced with the cluster's, e.g.
/// `arn:{partition}:iam::{account}:role/peregrine-agent-{cluster}`. The role itself is
/// deployed beforehand (`infra/agent-role.yaml`); management never creates IAM roles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentIdentity {
    /// An EKS Pod Identity association for `peregrine/peregrine-agent`; the manifest's IRSA
    /// annotation is dropped.
    PodIdentity { role_arn: String },
    /// The manifest's `eks.amazonaws.com/role-arn` annotation; no association (a Peregrine
    /// association left from Pod Identity mode is removed).
    Irsa { role_arn: String },
}

/// What the endpoint's security group admits on TCP 443.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EndpointIngress {
    /// The cluster security group (EKS attaches it to managed node groups and Auto Mode
    /// nodes); the VPC's CIDR blocks when the cluster has none.
    #[default]
    ClusterSecurityGroup,
    /// The VPC's CIDR blocks: for self-managed nodes that do not carry the cluster security
    /// group.
    VpcCidr,
}

/// The member-account role's name in `infra/member-account-role.yaml`.
pub const DEFAULT_MANAGER_ROLE: &str = "PeregrineCoverageRole";

impl ManageConfig {
    /// A configuration with the defaults: cluster-security-group ingress, the default member
    /// role, no extra tags, 10 s per Kubernetes request.
    pub fn new(
        queue_url: impl Into<String>,
        queue_arn: impl Into<String>,
        agent_image: impl Into<String>,
        monitoring_namespace: impl Into<String>,
        agent_identity: AgentIdentity,
    ) -> ManageConfig {
        ManageConfig {
            queue_url: queue_url.into(),
            queue_arn: queue_arn.into(),
            agent_image: agent_image.into(),
            monitoring_namespace: monitoring_namespace.into(),
            agent_identity,
            manager_role_name: DEFAULT_MANAGER_ROLE.into(),
            endpoint_ingress: EndpointIngress::default(),
            tags: BTreeMap::new(),
            kube_timeout: Duration::from_secs(10),
        }
    }

    /// Checks every value that ends up in a manifest, a tag or a request.
    pub fn validate(&self) -> Result<(), ManageError> {
        let bad = |what: &str, v: &str| {
            Err(ManageError::Config(format!(
                "{what} {:?} is not valid",
                validate::bounded(v, 256)
            )))
        };
        if !validate::queue_url(&self.queue_url) {
            return bad("queue URL", &self.queue_url);
        }
        if validate::queue_arn_region(&self.queue_arn).is_none() {
            return bad("queue ARN", &self.queue_arn);
        }
        if !validate::image(&self.agent_image) {
            return bad(
                "agent image (pin it by digest: repo:tag@sha256:<64 hex>)",
                &self.agent_image,
            );
        }
        if !validate::dns_label(&self.monitoring_namespace) {
            return bad("monitoring namespace", &self.monitoring_namespace);
        }
        if !validate::role_name(&self.manager_role_name) {
            return bad("manager role name", &self.manager_role_name);
        }
        // The template must give a valid ARN for the longest cluster name's placeholders too;
        // it is checked again, rendered, per cluster.
        let template = self.agent_identity.role_arn_template();
        let probe = fill(template, "aws", "111122223333", "eu-west-1", "c");
        if !validate::role_arn(&probe) {
            return bad(
                "agent role ARN template (placeholders: {partition} {account} {region} {cluster})",
                template,
            );
        }
        if self.tags.len() > 40 {
            return bad("tag list (at most 40 extra tags)", "");
        }
        for (k, v) in &self.tags {
            if !validate::tag(k, 128)
                || !validate::tag(v, 256)
                || k.starts_with("peregrine:")
                || k.is_empty()
            {
                return bad("tag", &format!("{k}={v}"));
            }
        }
        if self.kube_timeout.is_zero() {
            return bad("Kubernetes timeout", "0");
        }
        Ok(())
    }

    /// The region of the Peregrine stack (the queue's).
    pub fn stack_region(&self) -> &str {
        validate::queue_arn_region(&self.queue_arn).unwrap_or_default()
    }

    /// The agent role's ARN for a cluster.
    pub fn agent_role_arn(&self, c: &ClusterInventory) -> Result<String, ManageError> {
        let arn = fill(
            self.agent_identity.role_arn_template(),
            c.partition(),
            &c.account_id,
            &c.region,
            &c.name,
        );
        if validate::role_arn(&arn) {
            Ok(arn)
        } else {
            Err(ManageError::Config(format!(
                "the agent role ARN for cluster {} would be {:?}, which is not a valid role ARN \
                 (role names are at most 64 characters)",
                c.name,
                validate::bounded(&arn, 256)
            )))
        }
    }

    /// The manager's access entry principal in the cluster's account.
    pub fn manager_principal_arn(&self, c: &ClusterInventory) -> String {
        format!(
            "arn:{}:iam::{}:role/{}",
            c.partition(),
            c.account_id,
            self.manager_role_name
        )
    }
}

impl AgentIdentity {
    pub fn role_arn_template(&self) -> &str {
        match self {
            AgentIdentity::PodIdentity { role_arn } | AgentIdentity::Irsa { role_arn } => role_arn,
        }
    }
}

fn fill(template: &str, partition: &str, account: &str, region: &str, cluster: &str) -> String {
    template
        .replace("{partition}", partition)
        .replace("{account}", account)
        .replace("{region}", region)
        .replace("{cluster}", cluster)
}

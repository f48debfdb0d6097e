//! What one management call did, resource by resource, and what it found wrong.

use serde::Serialize;

use crate::validate::bounded;

/// What a call did and found. `actions` lists every resource it looked at, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManageReport {
    pub cluster_arn: String,
    pub actions: Vec<Action>,
    pub issues: Vec<Issue>,
    /// Everything converged: no issue and nothing left pending. False means the sweeper
    /// should report the cluster's issue and call again on its next sweep.
    pub complete: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    pub resource: Resource,
    /// The resource's id: `vpce-…`, `sg-…`, an association id, a principal ARN, a policy ARN,
    /// or `Kind namespace/name` for a Kubernetes object.
    pub id: String,
    pub outcome: Outcome,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Resource {
    Cluster,
    VpcEndpoint,
    EndpointSecurityGroup,
    /// An ingress rule of the endpoint's security group.
    SecurityGroupRule,
    /// The per-cluster tag on a shared endpoint or security group.
    ClusterTag,
    PodIdentityAssociation,
    PodIdentityAgent,
    AccessEntry,
    AccessPolicy,
    KubernetesObject,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "reason")]
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
    Removed,
    /// Not Peregrine's, or not for Peregrine to change; the reason says which.
    LeftAlone(String),
}

/// Something the user has to fix (or wait for), GuardDuty-style.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Issue {
    pub kind: IssueKind,
    pub detail: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum IssueKind {
    /// GuardDuty's "VPC Endpoint Creation Failed": DNS attributes off, a shared VPC.
    VpcEndpointCreationFailed,
    /// The endpoint or its security group could not be removed yet.
    VpcEndpointDeletionFailed,
    /// An association for the agent's service account that is not Peregrine's, with another
    /// role; or IRSA without an OIDC issuer.
    AgentIdentityConflict,
    /// Pod Identity needs the `eks-pod-identity-agent` add-on (or EKS Auto Mode).
    PodIdentityAgentMissing,
    /// The cluster takes no access entries (authentication mode `CONFIG_MAP`).
    KubernetesAccessNotGranted,
    /// A new access entry or policy has not reached the API server yet: GuardDuty's
    /// "resource provisioning in progress".
    ProvisioningInProgress,
    /// An object in the way that Peregrine did not create.
    AgentConflict,
}

impl IssueKind {
    pub fn issue_type(self) -> &'static str {
        match self {
            IssueKind::VpcEndpointCreationFailed => "VPC Endpoint Creation Failed",
            IssueKind::VpcEndpointDeletionFailed => "VPC Endpoint Deletion Failed",
            IssueKind::AgentIdentityConflict => "Agent Identity Conflict",
            IssueKind::PodIdentityAgentMissing => "Pod Identity Agent Missing",
            IssueKind::KubernetesAccessNotGranted => "Kubernetes Access Not Granted",
            IssueKind::ProvisioningInProgress => "Agent provisioning in progress",
            IssueKind::AgentConflict => "Agent Creation Failed",
        }
    }
}

impl std::fmt::Display for Issue {
    /// `Issue type:Extra information`, GuardDuty's format.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind.issue_type(), self.detail)
    }
}

impl ManageReport {
    pub fn new(cluster_arn: &str) -> ManageReport {
        ManageReport {
            cluster_arn: cluster_arn.to_owned(),
            ..ManageReport::default()
        }
    }

    pub(crate) fn record(&mut self, resource: Resource, id: &str, outcome: Outcome) {
        self.actions.push(Action {
            resource,
            id: bounded(id, 512),
            outcome,
        });
    }

    pub(crate) fn left_alone(&mut self, resource: Resource, id: &str, reason: &str) {
        self.record(resource, id, Outcome::LeftAlone(bounded(reason, 512)));
    }

    pub(crate) fn issue(&mut self, kind: IssueKind, detail: &str) {
        self.issues.push(Issue {
            kind,
            detail: bounded(detail, 1024),
        });
    }

    /// Marks the call converged unless it found an issue. (Pending work is an issue.)
    pub(crate) fn finish(&mut self) {
        self.complete = self.issues.is_empty();
    }

    /// Whether the call changed anything.
    pub fn changed(&self) -> bool {
        self.actions.iter().any(|a| {
            matches!(
                a.outcome,
                Outcome::Created | Outcome::Updated | Outcome::Removed
            )
        })
    }

    /// The actions with a given outcome (`Created`, `Removed`, ... compared by variant).
    pub fn with_outcome(&self, outcome: &Outcome) -> Vec<&Action> {
        self.actions
            .iter()
            .filter(|a| std::mem::discriminant(&a.outcome) == std::mem::discriminant(outcome))
            .collect()
    }

    /// The cluster's issue string (the first issue), GuardDuty's `Issue type:Extra
    /// information`; `None` when there is none.
    pub fn issue_string(&self) -> Option<String> {
        self.issues.first().map(Issue::to_string)
    }
}

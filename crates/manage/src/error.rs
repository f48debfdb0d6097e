//! What can stop a management call, each with the step it stopped in, how a caller should treat
//! it ([`Failure`]: retry, slow down, or fix something) and the issue string the sweeper shows
//! for the cluster.

use std::fmt::Debug;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use peregrine_aws::Failure;

use crate::kube::KubeError;
use crate::validate::bounded;

/// The step a failure happened in; it picks the issue type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Step {
    /// The SQS VPC endpoint and its security group.
    VpcEndpoint,
    /// The Pod Identity association (or the IRSA check).
    AgentIdentity,
    /// The EKS access entry and its access policies.
    KubernetesAccess,
    /// The agent's Kubernetes objects.
    Agent,
}

impl Step {
    /// GuardDuty's issue type where one applies ("VPC Endpoint Creation Failed"), ours
    /// otherwise, in the same words.
    pub fn issue_type(self) -> &'static str {
        match self {
            Step::VpcEndpoint => "VPC Endpoint Creation Failed",
            Step::AgentIdentity => "Agent Identity Creation Failed",
            Step::KubernetesAccess => "Kubernetes Access Creation Failed",
            Step::Agent => "Agent Creation Failed",
        }
    }
}

/// The issue type of any failure that is a missing permission, whatever the step.
pub const PERMISSION_ISSUE: &str = "Agent management permission not granted";

#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// The [`crate::ManageConfig`] is unusable (a value fails its shape check).
    #[error("invalid management configuration: {0}")]
    Config(String),
    /// The [`crate::ClusterInventory`] is unusable.
    #[error("invalid cluster inventory: {0}")]
    Inventory(String),
    /// `infra/daemonset.yaml` could not be rendered for this cluster.
    #[error("rendering infra/daemonset.yaml: {0}")]
    Render(String),
    /// The member-account credentials could not be resolved (for the Kubernetes token).
    #[error("member-account credentials: {0}")]
    Credentials(String),
    /// An AWS call failed.
    #[error("{operation} failed ({failure:?}, {}): {message}", code.as_deref().unwrap_or("no error code"))]
    Aws {
        step: Step,
        operation: &'static str,
        failure: Failure,
        code: Option<String>,
        message: String,
    },
    /// Signing the Kubernetes token failed.
    #[error("signing the Kubernetes token: {0}")]
    Token(String),
    /// The cluster's Kubernetes API failed or refused.
    #[error("Kubernetes API {endpoint}: {source}")]
    Kube {
        endpoint: String,
        #[source]
        source: KubeError,
    },
}

impl ManageError {
    /// Builds [`ManageError::Aws`] from an SDK error.
    pub(crate) fn aws<E, R>(step: Step, operation: &'static str, err: &SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: Debug,
    {
        let failure = peregrine_aws::classify(err);
        let code = err.code().map(|c| bounded(c, 128));
        let message = match err.message() {
            Some(m) => bounded(m, 512),
            None => bounded(&DisplayErrorContext(err).to_string(), 512),
        };
        ManageError::Aws {
            step,
            operation,
            failure,
            code,
            message,
        }
    }

    /// How to treat this failure: retry later, slow down, or needs fixing.
    pub fn failure(&self) -> Failure {
        match self {
            ManageError::Config(_) | ManageError::Inventory(_) | ManageError::Render(_) => {
                Failure::Invalid
            }
            ManageError::Credentials(_) | ManageError::Token(_) => Failure::Denied,
            ManageError::Aws { failure, .. } => *failure,
            ManageError::Kube { source, .. } => source.failure(),
        }
    }

    /// The step the failure stopped in, if it got that far.
    pub fn step(&self) -> Option<Step> {
        match self {
            ManageError::Aws { step, .. } => Some(*step),
            ManageError::Kube { .. } | ManageError::Render(_) => Some(Step::Agent),
            ManageError::Credentials(_) | ManageError::Token(_) => Some(Step::KubernetesAccess),
            ManageError::Config(_) | ManageError::Inventory(_) => None,
        }
    }

    /// The cluster's issue string, `Issue type:Extra information` as GuardDuty writes it: a
    /// missing permission is [`PERMISSION_ISSUE`] whatever the step; anything else is the
    /// step's creation failure.
    pub fn issue(&self) -> String {
        let kind = if self.failure() == Failure::Denied {
            PERMISSION_ISSUE
        } else {
            match self.step() {
                Some(step) => step.issue_type(),
                None => "Agent management misconfigured",
            }
        };
        let extra = match self {
            ManageError::Aws {
                operation,
                code,
                message,
                ..
            } => format!(
                "{operation}: {}{}",
                code.as_deref()
                    .map(|c| format!("{c}: "))
                    .unwrap_or_default(),
                message
            ),
            other => other.to_string(),
        };
        format!("{kind}:{}", bounded(&extra, 1024))
    }
}

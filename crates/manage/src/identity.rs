//! The agent's AWS identity: an EKS Pod Identity association for `peregrine/peregrine-agent`
//! with the agent role, or IRSA (the manifest's role annotation, nothing to create here).
//!
//! An association Peregrine created carries `peregrine:managed-by=peregrine`; only such an
//! association is ever updated or deleted. Someone else's association for the service account
//! is left alone: with the agent role it is simply used, with another role it is an issue.

use std::collections::HashMap;

use aws_sdk_eks::Client;
use aws_sdk_eks::types::AddonStatus;

use crate::config::{AgentIdentity, ManageConfig};
use crate::error::{ManageError, Step};
use crate::inventory::ClusterInventory;
use crate::report::{IssueKind, ManageReport, Outcome, Resource};
use crate::{AGENT_NAMESPACE, AGENT_SERVICE_ACCOUNT, MANAGED_BY_KEY, MANAGED_BY_VALUE};

/// The add-on that serves Pod Identity credentials on nodes (EKS Auto Mode has it built in).
pub const POD_IDENTITY_AGENT_ADDON: &str = "eks-pod-identity-agent";

fn err<E, R>(
    operation: &'static str,
) -> impl FnOnce(aws_sdk_eks::error::SdkError<E, R>) -> ManageError
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    move |e| ManageError::aws(Step::AgentIdentity, operation, &e)
}

struct Association {
    id: String,
    role_arn: String,
    ours: bool,
}

/// The associations for the agent's service account.
async fn associations(eks: &Client, c: &ClusterInventory) -> Result<Vec<Association>, ManageError> {
    let pages = eks
        .list_pod_identity_associations()
        .cluster_name(&c.name)
        .namespace(AGENT_NAMESPACE)
        .service_account(AGENT_SERVICE_ACCOUNT)
        .into_paginator()
        .send()
        .try_collect()
        .await
        .map_err(err("ListPodIdentityAssociations"))?;
    let mut out = Vec::new();
    for summary in pages.iter().flat_map(|p| p.associations()) {
        if summary.namespace() != Some(AGENT_NAMESPACE)
            || summary.service_account() != Some(AGENT_SERVICE_ACCOUNT)
        {
            continue;
        }
        let Some(id) = summary.association_id() else {
            continue;
        };
        let described = eks
            .describe_pod_identity_association()
            .cluster_name(&c.name)
            .association_id(id)
            .send()
            .await
            .map_err(err("DescribePodIdentityAssociation"))?;
        let Some(a) = described.association() else {
            continue;
        };
        out.push(Association {
            id: id.to_owned(),
            role_arn: a.role_arn().unwrap_or_default().to_owned(),
            ours: a.tags().is_some_and(|t| {
                t.get(MANAGED_BY_KEY).map(String::as_str) == Some(MANAGED_BY_VALUE)
            }),
        });
    }
    Ok(out)
}

pub async fn ensure(
    eks: &Client,
    c: &ClusterInventory,
    cfg: &ManageConfig,
    report: &mut ManageReport,
) -> Result<(), ManageError> {
    let role = cfg.agent_role_arn(c)?;
    let existing = associations(eks, c).await?;
    match &cfg.agent_identity {
        AgentIdentity::Irsa { .. } => {
            for a in existing.iter().filter(|a| a.ours) {
                eks.delete_pod_identity_association()
                    .cluster_name(&c.name)
                    .association_id(&a.id)
                    .send()
                    .await
                    .map_err(err("DeletePodIdentityAssociation"))?;
                report.record(Resource::PodIdentityAssociation, &a.id, Outcome::Removed);
            }
            if c.oidc_issuer.as_deref().is_none_or(str::is_empty) {
                report.issue(
                    IssueKind::AgentIdentityConflict,
                    "IRSA needs the cluster's OIDC issuer, and the cluster has none",
                );
            }
            report.left_alone(
                Resource::PodIdentityAssociation,
                &format!("{AGENT_NAMESPACE}/{AGENT_SERVICE_ACCOUNT}"),
                &format!("IRSA: the service account's eks.amazonaws.com/role-arn is {role}"),
            );
            return Ok(());
        }
        AgentIdentity::PodIdentity { .. } => {}
    }

    match existing.first() {
        None => {
            let mut tags: HashMap<String, String> = cfg.tags.clone().into_iter().collect();
            tags.insert(MANAGED_BY_KEY.into(), MANAGED_BY_VALUE.into());
            let out = eks
                .create_pod_identity_association()
                .cluster_name(&c.name)
                .namespace(AGENT_NAMESPACE)
                .service_account(AGENT_SERVICE_ACCOUNT)
                .role_arn(&role)
                .set_tags(Some(tags))
                .send()
                .await
                .map_err(err("CreatePodIdentityAssociation"))?;
            let id = out
                .association()
                .and_then(|a| a.association_id())
                .unwrap_or_default();
            report.record(Resource::PodIdentityAssociation, id, Outcome::Created);
        }
        Some(a) if a.role_arn == role => {
            let outcome = if a.ours {
                Outcome::Unchanged
            } else {
                Outcome::LeftAlone("not Peregrine's, but with the agent role: used as it is".into())
            };
            report.record(Resource::PodIdentityAssociation, &a.id, outcome);
        }
        Some(a) if a.ours => {
            eks.update_pod_identity_association()
                .cluster_name(&c.name)
                .association_id(&a.id)
                .role_arn(&role)
                .send()
                .await
                .map_err(err("UpdatePodIdentityAssociation"))?;
            report.record(Resource::PodIdentityAssociation, &a.id, Outcome::Updated);
        }
        Some(a) => {
            report.left_alone(
                Resource::PodIdentityAssociation,
                &a.id,
                "not Peregrine's, with another role",
            );
            report.issue(
                IssueKind::AgentIdentityConflict,
                &format!(
                    "association {} for {AGENT_NAMESPACE}/{AGENT_SERVICE_ACCOUNT} uses {}, not \
                     the agent role {role}; delete it or give it the agent role",
                    a.id, a.role_arn
                ),
            );
        }
    }

    if c.auto_mode {
        report.left_alone(
            Resource::PodIdentityAgent,
            POD_IDENTITY_AGENT_ADDON,
            "EKS Auto Mode has Pod Identity built in",
        );
        return Ok(());
    }
    match eks
        .describe_addon()
        .cluster_name(&c.name)
        .addon_name(POD_IDENTITY_AGENT_ADDON)
        .send()
        .await
    {
        Ok(out) => {
            let status = out.addon().and_then(|a| a.status());
            if matches!(status, Some(AddonStatus::Active | AddonStatus::Updating)) {
                report.record(
                    Resource::PodIdentityAgent,
                    POD_IDENTITY_AGENT_ADDON,
                    Outcome::LeftAlone("present".into()),
                );
            } else {
                report.issue(
                    IssueKind::PodIdentityAgentMissing,
                    &format!(
                        "the {POD_IDENTITY_AGENT_ADDON} add-on is {}",
                        status.map(|s| s.as_str().to_owned()).unwrap_or_default()
                    ),
                );
            }
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            report.issue(
                IssueKind::PodIdentityAgentMissing,
                &format!(
                    "Pod Identity needs the {POD_IDENTITY_AGENT_ADDON} add-on: aws eks \
                     create-addon --cluster-name {} --addon-name {POD_IDENTITY_AGENT_ADDON}",
                    c.name
                ),
            );
        }
        Err(e) => return Err(err("DescribeAddon")(e)),
    }
    Ok(())
}

/// Deletes Peregrine's association for the agent's service account, if there is one.
pub async fn remove(
    eks: &Client,
    c: &ClusterInventory,
    report: &mut ManageReport,
) -> Result<(), ManageError> {
    for a in associations(eks, c).await? {
        if !a.ours {
            report.left_alone(Resource::PodIdentityAssociation, &a.id, "not Peregrine's");
            continue;
        }
        eks.delete_pod_identity_association()
            .cluster_name(&c.name)
            .association_id(&a.id)
            .send()
            .await
            .map_err(err("DeletePodIdentityAssociation"))?;
        report.record(Resource::PodIdentityAssociation, &a.id, Outcome::Removed);
    }
    Ok(())
}

//! The EKS access entry through which management reaches the cluster's Kubernetes API: one for
//! the member-account role (the token's signer), of type `STANDARD`, tagged as Peregrine's.
//!
//! Its permissions, as narrow as EKS's predefined access policies allow:
//!
//! - always `AmazonEKSAdminPolicy` scoped to the `peregrine` namespace: the ServiceAccount,
//!   ConfigMap, DaemonSet and NetworkPolicy live there;
//! - `AmazonEKSClusterAdminPolicy` (cluster scope) only while the two cluster-scoped objects,
//!   the Namespace and the PriorityClass, are being created, changed or removed; it is
//!   disassociated as soon as that is done. No narrower predefined policy can create a
//!   namespace or a priority class, and a custom RBAC role would itself need cluster-admin
//!   to create. (Deploying a privileged `hostPID` DaemonSet is root on every node anyway;
//!   the narrow steady state limits what a mistake in management can touch.)

use std::collections::HashMap;

use aws_sdk_eks::Client;
use aws_sdk_eks::types::{AccessScope, AccessScopeType, AssociatedAccessPolicy};

use crate::config::ManageConfig;
use crate::error::{ManageError, Step};
use crate::inventory::ClusterInventory;
use crate::report::{IssueKind, ManageReport, Outcome, Resource};
use crate::{AGENT_NAMESPACE, MANAGED_BY_KEY, MANAGED_BY_VALUE};

fn err<E, R>(
    operation: &'static str,
) -> impl FnOnce(aws_sdk_eks::error::SdkError<E, R>) -> ManageError
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    move |e| ManageError::aws(Step::KubernetesAccess, operation, &e)
}

pub fn admin_policy(partition: &str) -> String {
    format!("arn:{partition}:eks::aws:cluster-access-policy/AmazonEKSAdminPolicy")
}

pub fn cluster_admin_policy(partition: &str) -> String {
    format!("arn:{partition}:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy")
}

/// Management's access to one cluster, as found or made by [`ensure`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    pub principal: String,
    /// Peregrine created the entry (it carries the tag); otherwise nothing it holds is removed.
    pub ours: bool,
    /// Something was associated or created during this call: the API server may not know it
    /// yet, so a 401/403 means "wait", not "denied".
    pub fresh: bool,
    /// `AmazonEKSClusterAdminPolicy` is associated.
    pub cluster_admin: bool,
}

/// Whether the cluster still exists.
pub async fn cluster_exists(eks: &Client, c: &ClusterInventory) -> Result<bool, ManageError> {
    match eks.describe_cluster().name(&c.name).send().await {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Ok(false)
        }
        Err(e) => Err(err("DescribeCluster")(e)),
    }
}

/// The entry for `principal`: `Some(ours)` if it exists.
async fn describe(
    eks: &Client,
    c: &ClusterInventory,
    principal: &str,
) -> Result<Option<bool>, ManageError> {
    match eks
        .describe_access_entry()
        .cluster_name(&c.name)
        .principal_arn(principal)
        .send()
        .await
    {
        Ok(out) => Ok(Some(out.access_entry().is_some_and(|e| {
            e.tags().is_some_and(|t| {
                t.get(MANAGED_BY_KEY).map(String::as_str) == Some(MANAGED_BY_VALUE)
            })
        }))),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(err("DescribeAccessEntry")(e)),
    }
}

async fn policies(
    eks: &Client,
    c: &ClusterInventory,
    principal: &str,
) -> Result<Vec<AssociatedAccessPolicy>, ManageError> {
    let pages = eks
        .list_associated_access_policies()
        .cluster_name(&c.name)
        .principal_arn(principal)
        .into_paginator()
        .send()
        .try_collect()
        .await
        .map_err(err("ListAssociatedAccessPolicies"))?;
    Ok(pages
        .into_iter()
        .flat_map(|p| p.associated_access_policies.unwrap_or_default())
        .collect())
}

fn not_api_mode(c: &ClusterInventory, report: &mut ManageReport, detail: &str) {
    report.issue(
        IssueKind::KubernetesAccessNotGranted,
        &format!(
            "cluster {} takes no access entries ({detail}); set its authentication mode to \
             API_AND_CONFIG_MAP (aws eks update-cluster-config --access-config \
             authenticationMode=API_AND_CONFIG_MAP)",
            c.name
        ),
    );
}

/// Ensures the entry and its namespace-scoped policy. `None`: the cluster takes no access
/// entries (an issue says so) and the Kubernetes step is skipped.
pub async fn ensure(
    eks: &Client,
    c: &ClusterInventory,
    cfg: &ManageConfig,
    report: &mut ManageReport,
) -> Result<Option<Access>, ManageError> {
    if c.authentication_mode.as_deref() == Some("CONFIG_MAP") {
        not_api_mode(c, report, "authentication mode CONFIG_MAP");
        return Ok(None);
    }
    let principal = cfg.manager_principal_arn(c);
    let mut access = Access {
        principal: principal.clone(),
        ours: true,
        fresh: false,
        cluster_admin: false,
    };
    match describe(eks, c, &principal).await? {
        Some(true) => report.record(Resource::AccessEntry, &principal, Outcome::Unchanged),
        Some(false) => {
            access.ours = false;
            report.left_alone(
                Resource::AccessEntry,
                &principal,
                "not created by Peregrine: used, and never deleted",
            );
        }
        None => {
            let mut tags: HashMap<String, String> = cfg.tags.clone().into_iter().collect();
            tags.insert(MANAGED_BY_KEY.into(), MANAGED_BY_VALUE.into());
            match eks
                .create_access_entry()
                .cluster_name(&c.name)
                .principal_arn(&principal)
                .r#type("STANDARD")
                .set_tags(Some(tags))
                .send()
                .await
            {
                Ok(_) => {}
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_invalid_request_exception()) =>
                {
                    let detail = e
                        .as_service_error()
                        .and_then(|s| s.meta().message())
                        .unwrap_or("InvalidRequestException")
                        .to_owned();
                    not_api_mode(c, report, &detail);
                    return Ok(None);
                }
                Err(e) => return Err(err("CreateAccessEntry")(e)),
            }
            access.fresh = true;
            report.record(Resource::AccessEntry, &principal, Outcome::Created);
        }
    }

    let partition = c.partition();
    let admin = admin_policy(partition);
    let existing = policies(eks, c, &principal).await?;
    access.cluster_admin = existing
        .iter()
        .any(|p| p.policy_arn() == Some(cluster_admin_policy(partition).as_str()));
    let current = existing
        .iter()
        .find(|p| p.policy_arn() == Some(admin.as_str()));
    let covers = current.and_then(|p| p.access_scope()).is_some_and(|s| {
        s.r#type() == Some(&AccessScopeType::Cluster)
            || s.namespaces().iter().any(|n| n == AGENT_NAMESPACE)
    });
    let label = format!("{admin} namespace/{AGENT_NAMESPACE}");
    if covers {
        report.record(Resource::AccessPolicy, &label, Outcome::Unchanged);
    } else {
        // Keep whatever namespaces someone else scoped it to.
        let mut namespaces: Vec<String> = current
            .and_then(|p| p.access_scope())
            .map(|s| s.namespaces().to_vec())
            .unwrap_or_default();
        namespaces.push(AGENT_NAMESPACE.into());
        eks.associate_access_policy()
            .cluster_name(&c.name)
            .principal_arn(&principal)
            .policy_arn(&admin)
            .access_scope(
                AccessScope::builder()
                    .r#type(AccessScopeType::Namespace)
                    .set_namespaces(Some(namespaces))
                    .build(),
            )
            .send()
            .await
            .map_err(err("AssociateAccessPolicy"))?;
        access.fresh = true;
        let outcome = if current.is_some() {
            Outcome::Updated
        } else {
            Outcome::Created
        };
        report.record(Resource::AccessPolicy, &label, outcome);
    }
    Ok(Some(access))
}

/// Associates `AmazonEKSClusterAdminPolicy` (cluster scope) for the cluster-scoped objects.
pub async fn grant_cluster_admin(
    eks: &Client,
    c: &ClusterInventory,
    access: &mut Access,
    report: &mut ManageReport,
) -> Result<(), ManageError> {
    let policy = cluster_admin_policy(c.partition());
    if access.cluster_admin {
        report.record(Resource::AccessPolicy, &policy, Outcome::Unchanged);
        return Ok(());
    }
    eks.associate_access_policy()
        .cluster_name(&c.name)
        .principal_arn(&access.principal)
        .policy_arn(&policy)
        .access_scope(
            AccessScope::builder()
                .r#type(AccessScopeType::Cluster)
                .build(),
        )
        .send()
        .await
        .map_err(err("AssociateAccessPolicy"))?;
    access.cluster_admin = true;
    access.fresh = true;
    report.record(Resource::AccessPolicy, &policy, Outcome::Created);
    Ok(())
}

/// Disassociates `AmazonEKSClusterAdminPolicy` once the cluster-scoped objects are done. On an
/// entry Peregrine did not create it is left: someone else may rely on it.
pub async fn revoke_cluster_admin(
    eks: &Client,
    c: &ClusterInventory,
    access: &mut Access,
    report: &mut ManageReport,
) -> Result<(), ManageError> {
    if !access.cluster_admin {
        return Ok(());
    }
    let policy = cluster_admin_policy(c.partition());
    if !access.ours {
        report.left_alone(
            Resource::AccessPolicy,
            &policy,
            "on an access entry that is not Peregrine's",
        );
        return Ok(());
    }
    match eks
        .disassociate_access_policy()
        .cluster_name(&c.name)
        .principal_arn(&access.principal)
        .policy_arn(&policy)
        .send()
        .await
    {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) => {}
        Err(e) => return Err(err("DisassociateAccessPolicy")(e)),
    }
    access.cluster_admin = false;
    report.record(Resource::AccessPolicy, &policy, Outcome::Removed);
    Ok(())
}

/// The existing entry, for removal: `None` if there is none.
pub async fn existing(
    eks: &Client,
    c: &ClusterInventory,
    cfg: &ManageConfig,
) -> Result<Option<Access>, ManageError> {
    let principal = cfg.manager_principal_arn(c);
    let Some(ours) = describe(eks, c, &principal).await? else {
        return Ok(None);
    };
    let cluster_admin = policies(eks, c, &principal)
        .await?
        .iter()
        .any(|p| p.policy_arn() == Some(cluster_admin_policy(c.partition()).as_str()));
    Ok(Some(Access {
        principal,
        ours,
        fresh: false,
        cluster_admin,
    }))
}

/// Deletes the entry (and with it its policies) if Peregrine created it.
pub async fn remove(
    eks: &Client,
    c: &ClusterInventory,
    access: &Access,
    report: &mut ManageReport,
) -> Result<(), ManageError> {
    if !access.ours {
        report.left_alone(
            Resource::AccessEntry,
            &access.principal,
            "not created by Peregrine",
        );
        return Ok(());
    }
    match eks
        .delete_access_entry()
        .cluster_name(&c.name)
        .principal_arn(&access.principal)
        .send()
        .await
    {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) => {}
        Err(e) => return Err(err("DeleteAccessEntry")(e)),
    }
    report.record(Resource::AccessEntry, &access.principal, Outcome::Removed);
    Ok(())
}

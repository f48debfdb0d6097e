//! The agent's Kubernetes objects: `infra/daemonset.yaml` rendered for the cluster and applied
//! object by object with server-side apply (field manager `peregrine`, forced), in file order.
//!
//! The namespaced objects are applied on every call (a no-op apply changes nothing, and drift
//! is put back). The cluster-scoped ones (the Namespace and the PriorityClass) need
//! `AmazonEKSClusterAdminPolicy` for a moment ([`crate::access`]), so they are applied only
//! when their rendering changed: its SHA-256 is kept in an annotation of the ConfigMap, which
//! the namespace-scoped policy can read.
//!
//! A 401 or 403 right after management created the access entry or associated a policy is
//! the API server not knowing it yet: the call ends with a "provisioning in progress" issue and
//! the next sweep carries on.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::access::{self, Access};
use crate::config::{AgentIdentity, ManageConfig};
use crate::error::ManageError;
use crate::inventory::ClusterInventory;
use crate::kube::{KubeClient, KubeError};
use crate::render::{self, Object, Scope, Values};
use crate::report::{IssueKind, ManageReport, Outcome, Resource};
use crate::{FIELD_MANAGER, token};

/// On the ConfigMap: the SHA-256 of the cluster-scoped objects as last applied.
pub const CLUSTER_OBJECTS_ANNOTATION: &str = "peregrine.io/cluster-objects-sha256";

/// The manifest rendered for `c`, the ConfigMap annotated with the cluster objects' hash.
pub fn rendered(c: &ClusterInventory, cfg: &ManageConfig) -> Result<Vec<Object>, ManageError> {
    let values = Values {
        agent_role_arn: cfg.agent_role_arn(c)?,
        aws_region: cfg.stack_region().to_owned(),
        cluster_name: c.name.clone(),
        cluster_arn: c.arn.clone(),
        queue_url: cfg.queue_url.clone(),
        monitoring_namespace: cfg.monitoring_namespace.clone(),
    };
    let pod_identity = matches!(cfg.agent_identity, AgentIdentity::PodIdentity { .. });
    let mut objects = render::render(&values, &cfg.agent_image, pod_identity)?;
    let hash = cluster_objects_hash(&objects);
    let cm = objects
        .iter_mut()
        .find(|o| o.kind == "ConfigMap")
        .ok_or_else(|| ManageError::Render("the manifest has no ConfigMap".into()))?;
    let meta = cm
        .body
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| ManageError::Render("the ConfigMap has no metadata".into()))?;
    let annotations = meta
        .entry("annotations")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    if let Some(a) = annotations.as_object_mut() {
        a.insert(CLUSTER_OBJECTS_ANNOTATION.into(), Value::String(hash));
    }
    Ok(objects)
}

fn cluster_objects_hash(objects: &[Object]) -> String {
    let mut h = Sha256::new();
    for o in objects.iter().filter(|o| o.scope == Scope::Cluster) {
        h.update(o.body.to_string().as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

fn kube_err(c: &ClusterInventory, source: KubeError) -> ManageError {
    ManageError::Kube {
        endpoint: c.endpoint.clone().unwrap_or_default(),
        source,
    }
}

async fn client(
    member: &aws_config::SdkConfig,
    c: &ClusterInventory,
    cfg: &ManageConfig,
) -> Result<KubeClient, ManageError> {
    let endpoint = c
        .endpoint
        .as_deref()
        .filter(|e| !e.is_empty())
        .ok_or_else(|| ManageError::Inventory(format!("cluster {} has no API endpoint", c.name)))?;
    let ca = c
        .certificate_authority
        .as_deref()
        .filter(|e| !e.is_empty())
        .ok_or_else(|| {
            ManageError::Inventory(format!("cluster {} has no certificate authority", c.name))
        })?;
    let token = token::token_for(member, c.partition(), &c.region, &c.name).await?;
    KubeClient::new(endpoint, ca, token, cfg.kube_timeout).map_err(|e| kube_err(c, e))
}

fn resource_version(v: &Value) -> Option<&str> {
    v.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
}

fn managed_by_us(v: &Value) -> bool {
    v.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .is_some_and(|fields| {
            fields
                .iter()
                .any(|f| f.get("manager").and_then(Value::as_str) == Some(FIELD_MANAGER))
        })
}

/// Applies one object and records whether it was created, changed or already so.
async fn apply_one(
    kube: &mut KubeClient,
    o: &Object,
    report: &mut ManageReport,
) -> Result<(), KubeError> {
    let path = o.path();
    let before = kube.get(&path).await?;
    let after = kube.apply(&path, FIELD_MANAGER, &o.body).await?;
    let outcome = match before {
        None => Outcome::Created,
        Some(b)
            if resource_version(&b).is_some()
                && resource_version(&b) == resource_version(&after) =>
        {
            Outcome::Unchanged
        }
        Some(_) => Outcome::Updated,
    };
    report.record(Resource::KubernetesObject, &o.label(), outcome);
    Ok(())
}

fn pending(report: &mut ManageReport, access: &Access, e: &KubeError) {
    report.issue(
        IssueKind::ProvisioningInProgress,
        &format!(
            "the API server does not accept {} yet ({e}); an access entry or policy takes a \
             moment to apply; retried next sweep",
            access.principal
        ),
    );
}

/// Brings the agent's objects to the rendered manifest.
pub async fn ensure(
    member: &aws_config::SdkConfig,
    c: &ClusterInventory,
    cfg: &ManageConfig,
    eks: &aws_sdk_eks::Client,
    mut access: Access,
    report: &mut ManageReport,
) -> Result<(), ManageError> {
    let objects = rendered(c, cfg)?;
    let hash = cluster_objects_hash(&objects);
    let mut kube = client(member, c, cfg).await?;

    let cm = objects
        .iter()
        .find(|o| o.kind == "ConfigMap")
        .ok_or_else(|| ManageError::Render("the manifest has no ConfigMap".into()))?;
    let current = match kube.get(&cm.path()).await {
        Ok(v) => v,
        Err(e) if e.is_auth() && access.fresh => {
            pending(report, &access, &e);
            return Ok(());
        }
        Err(e) => return Err(kube_err(c, e)),
    };
    let applied_hash = current
        .as_ref()
        .and_then(|v| v.pointer("/metadata/annotations"))
        .and_then(|a| a.get(CLUSTER_OBJECTS_ANNOTATION))
        .and_then(Value::as_str);

    if applied_hash == Some(hash.as_str()) {
        for o in objects.iter().filter(|o| o.scope == Scope::Cluster) {
            report.record(Resource::KubernetesObject, &o.label(), Outcome::Unchanged);
        }
    } else {
        access::grant_cluster_admin(eks, c, &mut access, report).await?;
        for o in objects.iter().filter(|o| o.scope == Scope::Cluster) {
            match apply_one(&mut kube, o, report).await {
                Ok(()) => {}
                Err(e) if e.is_auth() && access.fresh => {
                    pending(report, &access, &e);
                    return Ok(());
                }
                Err(e) => return Err(kube_err(c, e)),
            }
        }
    }
    access::revoke_cluster_admin(eks, c, &mut access, report).await?;

    for o in objects.iter().filter(|o| o.scope == Scope::Namespaced) {
        match apply_one(&mut kube, o, report).await {
            Ok(()) => {}
            Err(e) if e.is_auth() && access.fresh => {
                pending(report, &access, &e);
                return Ok(());
            }
            Err(e) => return Err(kube_err(c, e)),
        }
    }
    Ok(())
}

/// Deletes the agent's objects that Peregrine's field manager applied (last first: the
/// Namespace, with anything left in it, goes last), then the access entry if it is
/// Peregrine's.
pub async fn remove(
    member: &aws_config::SdkConfig,
    c: &ClusterInventory,
    cfg: &ManageConfig,
    eks: &aws_sdk_eks::Client,
    report: &mut ManageReport,
) -> Result<(), ManageError> {
    let Some(mut access) = access::existing(eks, c, cfg).await? else {
        report.left_alone(
            Resource::KubernetesObject,
            crate::AGENT_NAMESPACE,
            "no access entry for management: nothing was applied through one",
        );
        return Ok(());
    };
    let objects = rendered(c, cfg)?;
    if access.ours {
        access::grant_cluster_admin(eks, c, &mut access, report).await?;
    }
    let mut kube = client(member, c, cfg).await?;
    for o in objects.iter().rev() {
        let path = o.path();
        let result: Result<Option<bool>, KubeError> = async {
            match kube.get(&path).await? {
                None => Ok(None),
                Some(v) if managed_by_us(&v) => Ok(kube.delete(&path).await?.then_some(true)),
                Some(_) => Ok(Some(false)),
            }
        }
        .await;
        match result {
            Ok(None) => {}
            Ok(Some(true)) => {
                report.record(Resource::KubernetesObject, &o.label(), Outcome::Removed)
            }
            Ok(Some(false)) => report.left_alone(
                Resource::KubernetesObject,
                &o.label(),
                "not applied by Peregrine's field manager",
            ),
            Err(e) if e.is_auth() && access.fresh => {
                pending(report, &access, &e);
                return Ok(());
            }
            Err(e) => return Err(kube_err(c, e)),
        }
    }
    access::remove(eks, c, &access, report).await?;
    Ok(())
}

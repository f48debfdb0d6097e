//! ListCoverage and GetCoverageStatistics over the cluster rows the coverage sweeper writes to
//! CoverageTable (`peregrine-store`'s `CoverageStore`, `peregrine-org`'s `ClusterCoverage`),
//! in GuardDuty's shapes: a `CoverageResource` with `CoverageEksClusterDetails` per cluster,
//! filtered by `filterCriteria`, sorted by `sortCriteria`, paged by a `nextToken` bound to the
//! criteria (as ListFindings' is). Peregrine adds, beside GuardDuty's fields, the region, every
//! issue, and the node counts and names GuardDuty does not show.

use std::cmp::Ordering;

use peregrine_org::coverage::{ClusterCoverage, oldest_version};
use peregrine_store::{CoverageStore, iso};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::ops::parse;
use crate::{ApiDeps, Operation, Request, token};
use peregrine_criteria::{Scalar, SortKey, quoted};

/// `maxResults`: 1 to this (the default).
pub const MAX_RESULTS: i64 = 50;
/// Most criteria in `filterCriterion`, and values in one condition.
pub const MAX_CRITERIA: usize = 50;
pub const MAX_VALUES: usize = 50;

pub(crate) async fn run(
    deps: &ApiDeps,
    op: Operation,
    req: &Request<'_>,
) -> Result<Value, ApiError> {
    match op {
        Operation::ListCoverage => list(deps, parse(&req.body)?).await,
        Operation::GetCoverageStatistics => statistics(deps, parse(&req.body)?).await,
        other => Err(ApiError::NotFound(format!(
            "{} is not a coverage operation.",
            other.name()
        ))),
    }
}

/// GuardDuty's `CoverageFilterCriteria`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FilterCriteria {
    #[serde(default)]
    filter_criterion: Vec<FilterCriterion>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FilterCriterion {
    criterion_key: String,
    filter_condition: FilterCondition,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FilterCondition {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    equals: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    not_equals: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SortCriteria {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attribute_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    order_by: Option<String>,
}

/// What a criterion key reads from a cluster (`CoverageFilterCriterionKey`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    AccountId,
    ResourceType,
    CoverageStatus,
    ClusterName,
    ClusterArn,
    ManagementType,
    /// `ADDON_VERSION`, `AGENT_VERSION`: any agent version the cluster runs.
    AgentVersion,
    /// `ECS_CLUSTER_NAME`, `INSTANCE_ID`: no EKS cluster has one.
    Absent,
}

impl Key {
    fn parse(s: &str) -> Result<Key, ApiError> {
        Ok(match s {
            "ACCOUNT_ID" => Key::AccountId,
            "RESOURCE_TYPE" => Key::ResourceType,
            "COVERAGE_STATUS" => Key::CoverageStatus,
            "EKS_CLUSTER_NAME" | "CLUSTER_NAME" => Key::ClusterName,
            "CLUSTER_ARN" => Key::ClusterArn,
            "MANAGEMENT_TYPE" => Key::ManagementType,
            "ADDON_VERSION" | "AGENT_VERSION" => Key::AgentVersion,
            "ECS_CLUSTER_NAME" | "INSTANCE_ID" => Key::Absent,
            other => {
                return Err(ApiError::bad(format!(
                    "criterionKey {} is not one of ACCOUNT_ID, RESOURCE_TYPE, COVERAGE_STATUS, EKS_CLUSTER_NAME, CLUSTER_NAME, CLUSTER_ARN, MANAGEMENT_TYPE, ADDON_VERSION, AGENT_VERSION, ECS_CLUSTER_NAME, INSTANCE_ID.",
                    quoted(other)
                )));
            }
        })
    }

    fn values(self, c: &ClusterCoverage) -> Vec<String> {
        match self {
            Key::AccountId => vec![c.account_id.clone()],
            Key::ResourceType => vec!["EKS".into()],
            Key::CoverageStatus => vec![c.coverage_status.as_str().into()],
            Key::ClusterName => vec![c.cluster_name.clone()],
            Key::ClusterArn => vec![c.cluster_arn.clone()],
            Key::ManagementType => vec![c.management_type.as_str().into()],
            Key::AgentVersion => c.agent_versions.keys().cloned().collect(),
            Key::Absent => Vec::new(),
        }
    }
}

/// Compiled criteria: every one must hold.
struct Criteria(Vec<(Key, Vec<String>, Vec<String>)>);

impl Criteria {
    fn compile(c: Option<&FilterCriteria>) -> Result<Criteria, ApiError> {
        let list = c.map(|c| c.filter_criterion.as_slice()).unwrap_or_default();
        if list.len() > MAX_CRITERIA {
            return Err(ApiError::bad(format!(
                "filterCriterion has {} criteria; at most {MAX_CRITERIA}.",
                list.len()
            )));
        }
        let mut out = Vec::with_capacity(list.len());
        for f in list {
            let key = Key::parse(&f.criterion_key)?;
            let cond = &f.filter_condition;
            if cond.equals.is_none() && cond.not_equals.is_none() {
                return Err(ApiError::bad(format!(
                    "The filterCondition of {} has neither equals nor notEquals.",
                    quoted(&f.criterion_key)
                )));
            }
            for values in [&cond.equals, &cond.not_equals].into_iter().flatten() {
                if values.is_empty() || values.len() > MAX_VALUES {
                    return Err(ApiError::bad(format!(
                        "A condition on {} has {} values; give 1 to {MAX_VALUES}.",
                        quoted(&f.criterion_key),
                        values.len()
                    )));
                }
                if values.iter().any(|v| v.len() > 512) {
                    return Err(ApiError::bad("A condition value is longer than 512 bytes."));
                }
            }
            out.push((
                key,
                cond.equals.clone().unwrap_or_default(),
                cond.not_equals.clone().unwrap_or_default(),
            ));
        }
        Ok(Criteria(out))
    }

    fn matches(&self, c: &ClusterCoverage) -> bool {
        self.0.iter().all(|(key, equals, not_equals)| {
            let have = key.values(c);
            (equals.is_empty() || have.iter().any(|v| equals.contains(v)))
                && !have.iter().any(|v| not_equals.contains(v))
        })
    }
}

/// A sort attribute (`CoverageSortKey`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SortBy {
    AccountId,
    CoverageStatus,
    Issue,
    AddonVersion,
    UpdatedAt,
    ClusterName,
    /// `ECS_CLUSTER_NAME`, `INSTANCE_ID`: the same for every EKS cluster.
    Absent,
}

struct Sort {
    by: SortBy,
    descending: bool,
}

impl Sort {
    fn compile(s: Option<&SortCriteria>) -> Result<Sort, ApiError> {
        let by = match s.and_then(|s| s.attribute_name.as_deref()) {
            None | Some("ACCOUNT_ID") => SortBy::AccountId,
            Some("COVERAGE_STATUS") => SortBy::CoverageStatus,
            Some("ISSUE") => SortBy::Issue,
            Some("ADDON_VERSION") => SortBy::AddonVersion,
            Some("UPDATED_AT") => SortBy::UpdatedAt,
            Some("EKS_CLUSTER_NAME" | "CLUSTER_NAME") => SortBy::ClusterName,
            Some("ECS_CLUSTER_NAME" | "INSTANCE_ID") => SortBy::Absent,
            Some(other) => {
                return Err(ApiError::bad(format!(
                    "sortCriteria.attributeName {} is not one of ACCOUNT_ID, COVERAGE_STATUS, ISSUE, ADDON_VERSION, UPDATED_AT, EKS_CLUSTER_NAME, CLUSTER_NAME, ECS_CLUSTER_NAME, INSTANCE_ID.",
                    quoted(other)
                )));
            }
        };
        let descending = match s.and_then(|s| s.order_by.as_deref()) {
            None | Some("ASC") => false,
            Some("DESC") => true,
            Some(other) => {
                return Err(ApiError::bad(format!(
                    "sortCriteria.orderBy {} is not ASC or DESC.",
                    quoted(other)
                )));
            }
        };
        Ok(Sort { by, descending })
    }

    /// A cluster's position: its sort value and its unique id (`account#region#name`).
    fn key(&self, c: &ClusterCoverage) -> SortKey {
        let value = match self.by {
            SortBy::AccountId => c.account_id.clone(),
            SortBy::CoverageStatus => c.coverage_status.as_str().to_owned(),
            SortBy::Issue => c.issue.clone().unwrap_or_default(),
            SortBy::AddonVersion => oldest_version(c).unwrap_or_default(),
            SortBy::UpdatedAt => iso(c.updated_at),
            SortBy::ClusterName => c.cluster_name.clone(),
            SortBy::Absent => String::new(),
        };
        SortKey {
            value: Some(Scalar::Str(value)),
            id: format!("{}#{}#{}", c.account_id, c.region, c.cluster_name),
        }
    }

    fn cmp(&self, a: &SortKey, b: &SortKey) -> Ordering {
        let text = |k: &SortKey| match &k.value {
            Some(Scalar::Str(s)) => s.clone(),
            _ => String::new(),
        };
        let o = text(a).cmp(&text(b)).then_with(|| a.id.cmp(&b.id));
        if self.descending { o.reverse() } else { o }
    }
}

/// GuardDuty's `CoverageResource` for a cluster, with Peregrine's additions.
fn resource(detector: &str, c: &ClusterCoverage) -> Value {
    let mut details = json!({
        "clusterName": c.cluster_name,
        "coveredNodes": c.covered_nodes,
        "compatibleNodes": c.compatible_nodes,
        "managementType": c.management_type.as_str(),
        // Peregrine's.
        "clusterArn": c.cluster_arn,
        "kubernetesVersion": c.kubernetes_version,
        "degradedNodes": c.degraded_nodes,
        "startingNodes": c.starting_nodes,
        "incompatibleNodes": c.incompatible_nodes,
        "desiredNodes": c.desired_nodes,
        "nodesWithoutAgent": c.nodes_without_agent,
        "agentVersions": c.agent_versions,
    });
    if let (Some(version), Some(d)) = (oldest_version(c), details.as_object_mut()) {
        d.insert("addonDetails".into(), json!({"addonVersion": version}));
    }
    let mut r = json!({
        "resourceId": c.cluster_name,
        "detectorId": detector,
        "accountId": c.account_id,
        "resourceDetails": {"resourceType": "EKS", "eksClusterDetails": details},
        "coverageStatus": c.coverage_status.as_str(),
        "updatedAt": iso(c.updated_at),
        // Peregrine's.
        "region": c.region,
        "issues": c.issues.iter().map(|i| i.text()).collect::<Vec<_>>(),
    });
    if let (Some(issue), Some(o)) = (&c.issue, r.as_object_mut()) {
        o.insert("issue".into(), json!(issue));
    }
    r
}

/// The clusters of the latest sweep that meet `criteria`.
async fn clusters(deps: &ApiDeps, criteria: &Criteria) -> Result<Vec<ClusterCoverage>, ApiError> {
    Ok(deps
        .coverage
        .clusters()
        .await?
        .into_iter()
        .map(|c| c.coverage)
        .filter(|c| criteria.matches(c))
        .collect())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ListRequest {
    #[serde(default)]
    next_token: Option<String>,
    #[serde(default)]
    max_results: Option<i64>,
    #[serde(default)]
    filter_criteria: Option<FilterCriteria>,
    #[serde(default)]
    sort_criteria: Option<SortCriteria>,
}

async fn list(deps: &ApiDeps, r: ListRequest) -> Result<Value, ApiError> {
    let max = r.max_results.unwrap_or(MAX_RESULTS);
    if !(1..=MAX_RESULTS).contains(&max) {
        return Err(ApiError::bad(format!(
            "maxResults is {max}; it must be 1 to {MAX_RESULTS}."
        )));
    }
    let criteria = Criteria::compile(r.filter_criteria.as_ref())?;
    let sort = Sort::compile(r.sort_criteria.as_ref())?;
    let digest = token::digest_of(&json!({
        "coverage": {"c": r.filter_criteria, "s": r.sort_criteria}
    }));
    let after = match r.next_token.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => Some(token::decode(t, &digest)?),
        None => None,
    };
    let mut rows: Vec<(SortKey, ClusterCoverage)> = clusters(deps, &criteria)
        .await?
        .into_iter()
        .map(|c| (sort.key(&c), c))
        .filter(|(k, _)| {
            after
                .as_ref()
                .is_none_or(|a| sort.cmp(k, a) == Ordering::Greater)
        })
        .collect();
    rows.sort_by(|(a, _), (b, _)| sort.cmp(a, b));
    let max = usize::try_from(max).unwrap_or(1);
    let more = rows.len() > max;
    rows.truncate(max);
    let detector = &deps.config.detector_id;
    let resources: Vec<Value> = rows.iter().map(|(_, c)| resource(detector, c)).collect();
    let mut out = json!({"resources": resources});
    if let (true, Some((last, _)), Some(o)) = (more, rows.last(), out.as_object_mut()) {
        o.insert("nextToken".into(), json!(token::encode(&digest, last)));
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StatisticsRequest {
    statistics_type: Vec<String>,
    #[serde(default)]
    filter_criteria: Option<FilterCriteria>,
}

async fn statistics(deps: &ApiDeps, r: StatisticsRequest) -> Result<Value, ApiError> {
    if r.statistics_type.is_empty() {
        return Err(ApiError::bad(
            "statisticsType needs COUNT_BY_RESOURCE_TYPE and/or COUNT_BY_COVERAGE_STATUS.",
        ));
    }
    let (mut by_type, mut by_status) = (false, false);
    for t in &r.statistics_type {
        match t.as_str() {
            "COUNT_BY_RESOURCE_TYPE" => by_type = true,
            "COUNT_BY_COVERAGE_STATUS" => by_status = true,
            other => {
                return Err(ApiError::bad(format!(
                    "statisticsType {} is not COUNT_BY_RESOURCE_TYPE or COUNT_BY_COVERAGE_STATUS.",
                    quoted(other)
                )));
            }
        }
    }
    let criteria = Criteria::compile(r.filter_criteria.as_ref())?;
    let clusters = clusters(deps, &criteria).await?;
    let mut stats = serde_json::Map::new();
    if by_type {
        stats.insert("countByResourceType".into(), json!({"EKS": clusters.len()}));
    }
    if by_status {
        let mut counts = std::collections::BTreeMap::<&str, u64>::new();
        for c in &clusters {
            *counts.entry(c.coverage_status.as_str()).or_default() += 1;
        }
        stats.insert("countByCoverageStatus".into(), json!(counts));
    }
    Ok(json!({"coverageStatistics": stats}))
}

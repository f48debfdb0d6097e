//! The operations: each parses its body strictly (GuardDuty's field names; an unknown field is
//! a 400), reads or updates FindingsTable, and answers GuardDuty's response shape.

use std::collections::{BTreeMap, BTreeSet};

use peregrine_store::StoredFinding;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::store::Plan;
use crate::{ApiDeps, Operation, token};
use peregrine_criteria::{Criteria, FindingCriteria, Sort, SortCriteria, quoted};

/// ListFindings' and GetFindings' `maxResults` and id limits, as GuardDuty's.
pub const MAX_RESULTS: i64 = 50;
pub const MAX_IDS: usize = 50;
/// GetFindingsStatistics' `maxResults` limit.
pub const MAX_GROUPS: i64 = 100;
/// UpdateFindingsFeedback's `comments` limit.
pub const MAX_COMMENT_CHARS: usize = 1024;
/// Conditional-write attempts per finding before the request gives up (500, retryable).
const WRITE_ATTEMPTS: usize = 5;

pub async fn run(deps: &ApiDeps, op: Operation, body: &[u8]) -> Result<Value, ApiError> {
    match op {
        Operation::List => list(deps, parse(body)?).await,
        Operation::Get => get(deps, parse(body)?).await,
        Operation::Statistics => statistics(deps, parse(body)?).await,
        Operation::Archive => {
            let r: IdsRequest = parse(body)?;
            update(deps, &r.finding_ids, |f| set_archived(f, true)).await
        }
        Operation::Unarchive => {
            let r: IdsRequest = parse(body)?;
            update(deps, &r.finding_ids, |f| set_archived(f, false)).await
        }
        Operation::Feedback => feedback(deps, parse(body)?).await,
        other => Err(ApiError::NotFound(format!(
            "{} is not a findings operation.",
            other.name()
        ))),
    }
}

/// A client's text in a message: printable, bounded.
pub(crate) fn sanitize(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    clean
}

pub(crate) fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad(format!(
            "The request body is not valid: {}",
            sanitize(&e.to_string())
        ))
    })
}

fn check_ids(ids: &[String]) -> Result<Vec<String>, ApiError> {
    if ids.is_empty() || ids.len() > MAX_IDS {
        return Err(ApiError::bad(format!(
            "findingIds has {} ids; give 1 to {MAX_IDS}.",
            ids.len()
        )));
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if id.is_empty() || id.len() > 300 || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiError::bad(format!(
                "The finding id {} is not valid.",
                quoted(id)
            )));
        }
        if seen.insert(id.as_str()) {
            out.push(id.clone());
        }
    }
    Ok(out)
}

fn json_of(f: &StoredFinding) -> Value {
    serde_json::to_value(&f.finding).unwrap_or(Value::Null)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ListRequest {
    #[serde(default)]
    finding_criteria: Option<FindingCriteria>,
    #[serde(default)]
    sort_criteria: Option<SortCriteria>,
    #[serde(default)]
    max_results: Option<i64>,
    #[serde(default)]
    next_token: Option<String>,
}

async fn list(deps: &ApiDeps, r: ListRequest) -> Result<Value, ApiError> {
    let max = r.max_results.unwrap_or(MAX_RESULTS);
    if !(1..=MAX_RESULTS).contains(&max) {
        return Err(ApiError::bad(format!(
            "maxResults is {max}; it must be 1 to {MAX_RESULTS}."
        )));
    }
    let criteria = Criteria::compile(r.finding_criteria.as_ref())?;
    let sort = Sort::compile(r.sort_criteria.as_ref())?;
    let digest = token::query_digest(r.finding_criteria.as_ref(), r.sort_criteria.as_ref());
    let after = match r.next_token.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => Some(token::decode(t, &digest)?),
        None => None,
    };
    let mut matching: Vec<_> = deps
        .store
        .candidates(&Plan::for_criteria(&criteria))
        .await?
        .iter()
        .map(json_of)
        .filter(|f| criteria.matches(f))
        .map(|f| sort.key(&f))
        .filter(|k| {
            after
                .as_ref()
                .is_none_or(|a| sort.cmp(k, a) == std::cmp::Ordering::Greater)
        })
        .collect();
    matching.sort_by(|a, b| sort.cmp(a, b));
    let max = usize::try_from(max).unwrap_or(1);
    let more = matching.len() > max;
    matching.truncate(max);
    let next = match matching.last() {
        Some(last) if more => token::encode(&digest, last),
        _ => String::new(),
    };
    let ids: Vec<&str> = matching.iter().map(|k| k.id.as_str()).collect();
    Ok(json!({"findingIds": ids, "nextToken": next}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GetRequest {
    finding_ids: Vec<String>,
    #[serde(default)]
    sort_criteria: Option<SortCriteria>,
}

async fn get(deps: &ApiDeps, r: GetRequest) -> Result<Value, ApiError> {
    let ids = check_ids(&r.finding_ids)?;
    let sort = Sort::compile(r.sort_criteria.as_ref())?;
    let found = deps.store.get_many(&ids).await?;
    let mut findings: Vec<Value> = found.iter().map(json_of).collect();
    if r.sort_criteria.is_some() {
        findings.sort_by(|a, b| sort.cmp(&sort.key(a), &sort.key(b)));
    } else {
        // The order asked for.
        findings.sort_by_key(|f| {
            let id = f.get("id").and_then(Value::as_str).unwrap_or_default();
            ids.iter().position(|i| i == id)
        });
    }
    Ok(json!({"findings": findings}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StatisticsRequest {
    #[serde(default)]
    finding_criteria: Option<FindingCriteria>,
    #[serde(default)]
    finding_statistic_types: Option<Vec<String>>,
    #[serde(default)]
    group_by: Option<String>,
    #[serde(default)]
    order_by: Option<String>,
    #[serde(default)]
    max_results: Option<i64>,
}

/// A statistics group: how a finding's key is read and how a group is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GroupBy {
    Account,
    Date,
    FindingType,
    Resource,
    Severity,
    Cluster,
    Namespace,
}

impl GroupBy {
    fn parse(s: &str) -> Result<GroupBy, ApiError> {
        Ok(match s {
            "ACCOUNT" => GroupBy::Account,
            "DATE" => GroupBy::Date,
            "FINDING_TYPE" => GroupBy::FindingType,
            "RESOURCE" => GroupBy::Resource,
            "SEVERITY" => GroupBy::Severity,
            "CLUSTER" => GroupBy::Cluster,
            "NAMESPACE" => GroupBy::Namespace,
            other => {
                return Err(ApiError::bad(format!(
                    "groupBy {} is not ACCOUNT, DATE, FINDING_TYPE, RESOURCE, SEVERITY, CLUSTER or NAMESPACE.",
                    quoted(other)
                )));
            }
        })
    }

    fn response_field(self) -> &'static str {
        match self {
            GroupBy::Account => "groupedByAccount",
            GroupBy::Date => "groupedByDate",
            GroupBy::FindingType => "groupedByFindingType",
            GroupBy::Resource => "groupedByResource",
            GroupBy::Severity => "groupedBySeverity",
            GroupBy::Cluster => "groupedByCluster",
            GroupBy::Namespace => "groupedByNamespace",
        }
    }
}

fn text(f: &Value, pointer: &str) -> String {
    f.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

#[derive(Default)]
struct Group {
    total: u64,
    last: String,
    max_severity: f64,
    first: Option<Value>,
}

async fn statistics(deps: &ApiDeps, r: StatisticsRequest) -> Result<Value, ApiError> {
    let group_by = match (&r.finding_statistic_types, &r.group_by) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(ApiError::bad(
                "Give either findingStatisticTypes or groupBy, and not both.",
            ));
        }
        (Some(types), None) => {
            if types.is_empty() || types.iter().any(|t| t != "COUNT_BY_SEVERITY") {
                return Err(ApiError::bad(
                    "findingStatisticTypes takes only COUNT_BY_SEVERITY.",
                ));
            }
            if r.order_by.is_some() || r.max_results.is_some() {
                return Err(ApiError::bad(
                    "orderBy and maxResults apply only with groupBy.",
                ));
            }
            None
        }
        (None, Some(g)) => Some(GroupBy::parse(g)?),
    };
    let descending = match r.order_by.as_deref() {
        None | Some("DESC") => true,
        Some("ASC") => false,
        Some(other) => {
            return Err(ApiError::bad(format!(
                "orderBy {} is not ASC or DESC.",
                quoted(other)
            )));
        }
    };
    let max = r.max_results.unwrap_or(25);
    if !(1..=MAX_GROUPS).contains(&max) {
        return Err(ApiError::bad(format!(
            "maxResults is {max}; it must be 1 to {MAX_GROUPS}."
        )));
    }
    let criteria = Criteria::compile(r.finding_criteria.as_ref())?;
    let findings: Vec<Value> = deps
        .store
        .candidates(&Plan::for_criteria(&criteria))
        .await?
        .iter()
        .map(json_of)
        .filter(|f| criteria.matches(f))
        .collect();

    let severity = |f: &Value| f.get("severity").and_then(Value::as_f64).unwrap_or(0.0);
    let Some(group_by) = group_by else {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for f in &findings {
            *counts.entry(format!("{:.1}", severity(f))).or_default() += 1;
        }
        return Ok(json!({"findingStatistics": {"countBySeverity": counts}}));
    };

    let mut groups: BTreeMap<Vec<String>, Group> = BTreeMap::new();
    for f in &findings {
        let updated = text(f, "/updatedAt");
        let key = match group_by {
            GroupBy::Account => vec![text(f, "/accountId")],
            GroupBy::Date => vec![updated.chars().take(10).collect()],
            GroupBy::FindingType => vec![text(f, "/type")],
            GroupBy::Severity => vec![format!("{:.1}", severity(f))],
            GroupBy::Resource | GroupBy::Cluster => {
                vec![text(f, "/resource/eksClusterDetails/name")]
            }
            GroupBy::Namespace => vec![
                text(f, "/resource/eksClusterDetails/name"),
                text(
                    f,
                    "/resource/kubernetesDetails/kubernetesWorkloadDetails/namespace",
                ),
            ],
        };
        let g = groups.entry(key).or_default();
        g.total += 1;
        if updated > g.last {
            g.last = updated;
        }
        g.max_severity = g.max_severity.max(severity(f));
        if g.first.is_none() {
            g.first = Some(f.clone());
        }
    }
    let mut rows: Vec<(Vec<String>, Group)> = groups.into_iter().collect();
    rows.sort_by(|(ka, a), (kb, b)| {
        let o = a.total.cmp(&b.total).then_with(|| kb.cmp(ka));
        if descending { o.reverse() } else { o }
    });
    rows.truncate(usize::try_from(max).unwrap_or(1));
    let total = findings.len().max(1) as f64;
    let out: Vec<Value> = rows
        .into_iter()
        .map(|(key, g)| {
            let k = |i: usize| key.get(i).cloned().unwrap_or_default();
            let mut row = json!({"totalFindings": g.total, "lastGeneratedAt": g.last});
            let extra = match group_by {
                GroupBy::Account => json!({"accountId": k(0)}),
                GroupBy::Date => json!({"date": k(0), "severity": g.max_severity}),
                GroupBy::FindingType => json!({"findingType": k(0)}),
                GroupBy::Severity => json!({
                    "severity": k(0).parse::<f64>().unwrap_or(0.0),
                    "percentage": (g.total as f64) * 100.0 / total,
                }),
                GroupBy::Resource => json!({
                    "resourceId": k(0),
                    "resourceType": "EKSCluster",
                    "accountId": g.first.as_ref().map(|f| text(f, "/accountId")).unwrap_or_default(),
                }),
                GroupBy::Cluster => json!({"clusterName": k(0)}),
                GroupBy::Namespace => json!({"clusterName": k(0), "namespace": k(1)}),
            };
            if let (Some(row), Value::Object(extra)) = (row.as_object_mut(), extra) {
                row.extend(extra);
            }
            row
        })
        .collect();
    Ok(json!({"findingStatistics": {group_by.response_field(): out}}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct IdsRequest {
    finding_ids: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FeedbackRequest {
    finding_ids: Vec<String>,
    feedback: String,
    #[serde(default)]
    comments: Option<String>,
}

/// Sets `service.archived`; `false` when it already was.
fn set_archived(f: &mut StoredFinding, archived: bool) -> bool {
    let changed = f.finding.service.archived != archived;
    f.finding.service.archived = archived;
    changed
}

async fn feedback(deps: &ApiDeps, r: FeedbackRequest) -> Result<Value, ApiError> {
    let feedback = match r.feedback.as_str() {
        "USEFUL" | "NOT_USEFUL" => r.feedback.clone(),
        other => {
            return Err(ApiError::bad(format!(
                "feedback {} is not USEFUL or NOT_USEFUL.",
                quoted(other)
            )));
        }
    };
    let comments = r.comments.filter(|c| !c.is_empty());
    if comments
        .as_ref()
        .is_some_and(|c| c.chars().count() > MAX_COMMENT_CHARS)
    {
        return Err(ApiError::bad(format!(
            "comments is longer than {MAX_COMMENT_CHARS} characters."
        )));
    }
    update(deps, &r.finding_ids, |f| {
        let s = &mut f.finding.service;
        let changed =
            s.user_feedback.as_deref() != Some(&feedback) || s.user_feedback_comments != comments;
        s.user_feedback = Some(feedback.clone());
        s.user_feedback_comments = comments.clone();
        changed
    })
    .await
}

/// Applies `change` to each finding (unknown ids are ignored, as GuardDuty does), each as a
/// write conditional on the version read; a finding the detector rewrote in between is
/// re-read and changed again.
async fn update(
    deps: &ApiDeps,
    ids: &[String],
    change: impl Fn(&mut StoredFinding) -> bool,
) -> Result<Value, ApiError> {
    let ids = check_ids(ids)?;
    for id in &ids {
        let mut done = false;
        for _ in 0..WRITE_ATTEMPTS {
            let Some(mut f) = deps.store.get(id).await? else {
                done = true;
                break;
            };
            let read = f.version;
            if !change(&mut f) {
                done = true;
                break;
            }
            if deps.store.put_if_version(&f, read).await? {
                done = true;
                break;
            }
        }
        if !done {
            return Err(ApiError::Contended(id.clone()));
        }
    }
    Ok(json!({}))
}

//! Suppression filters: CreateFilter, UpdateFilter, GetFilter, ListFilters and DeleteFilter
//! over FiltersTable, validated as GuardDuty validates them. The criteria are compiled by
//! `peregrine-criteria`, the code ListFindings and the detector use, so a filter that is
//! accepted here is one the detector can apply.
//!
//! Ranks are kept contiguous (1..=n), as GuardDuty keeps them: creating a filter at rank r
//! (absent: after the last) moves the filters at r and after down by one; updating a rank
//! moves the filter there; deleting closes the gap. Each change is one DynamoDB transaction of
//! the rows whose rank or content changed, conditional on the versions read, retried when
//! another change came in between.

use std::collections::BTreeMap;

use peregrine_criteria::{
    Action, FindingCriteria, MAX_FILTERS, MAX_RANK, check_description, check_name, check_tags,
    quoted,
};
use peregrine_criteria::{Criteria, Filter, Use};
use peregrine_store::{FilterWrite, MAX_FILTER_ITEM_BYTES, StoredFilter};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::ApiDeps;
use crate::error::ApiError;
use crate::ops::parse;

/// ListFilters' `maxResults`, as GuardDuty's (1..=50, default 50).
pub const MAX_LIST_RESULTS: usize = 50;
/// Transaction attempts before a change gives up (500, retryable).
const WRITE_ATTEMPTS: usize = 5;
/// `clientToken` is at most 64 characters.
const MAX_CLIENT_TOKEN_CHARS: usize = 64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateRequest {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    rank: Option<i64>,
    finding_criteria: FindingCriteria,
    #[serde(default)]
    client_token: Option<String>,
    #[serde(default)]
    tags: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct UpdateRequest {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    rank: Option<i64>,
    #[serde(default)]
    finding_criteria: Option<FindingCriteria>,
}

/// The criteria as stored: compiled (so they are valid for a filter) and bounded in size.
fn checked_criteria(fc: &FindingCriteria) -> Result<Value, ApiError> {
    Criteria::compile_for(Some(fc), Use::Filter)?;
    let v = serde_json::to_value(fc).map_err(|_| ApiError::bad("findingCriteria is not valid."))?;
    if v.to_string().len() > MAX_FILTER_ITEM_BYTES {
        return Err(ApiError::bad(format!(
            "findingCriteria is larger than {MAX_FILTER_ITEM_BYTES} bytes."
        )));
    }
    Ok(v)
}

fn rank_in(rank: Option<i64>, max: usize) -> Result<Option<usize>, ApiError> {
    match rank {
        None => Ok(None),
        Some(r) if (1..=i64::from(MAX_RANK)).contains(&r) => {
            Ok(Some(usize::try_from(r).unwrap_or(1).min(max)))
        }
        Some(r) => Err(ApiError::bad(format!(
            "rank is {r}; it must be 1 to {MAX_RANK}."
        ))),
    }
}

fn action(a: Option<&str>) -> Result<Option<Action>, ApiError> {
    a.map(Action::parse).transpose().map_err(ApiError::from)
}

/// The writes that turn `before` (in rank order) into `after` (the new order, with the
/// changed filter in place): every row whose rank or content changed, with its version bumped.
fn writes(before: &[StoredFilter], after: Vec<StoredFilter>) -> Vec<FilterWrite> {
    let mut out = Vec::new();
    for (i, mut f) in after.into_iter().enumerate() {
        f.filter.rank = u32::try_from(i + 1).unwrap_or(MAX_RANK);
        match before.iter().find(|b| b.filter.name == f.filter.name) {
            Some(b) if b.filter == f.filter => {}
            Some(b) => {
                let expected = b.version;
                f.version = expected + 1;
                out.push(FilterWrite::Put {
                    filter: f,
                    expected: Some(expected),
                });
            }
            None => {
                f.version = 1;
                out.push(FilterWrite::Put {
                    filter: f,
                    expected: None,
                });
            }
        }
    }
    out
}

/// Reads every filter, plans a change and applies it as one transaction, retrying when a
/// concurrent change got in first. `plan` returns the writes, or `Ok(None)` when nothing is to
/// be written (an idempotent repeat), or a client error.
async fn change(
    deps: &ApiDeps,
    plan: impl Fn(Vec<StoredFilter>) -> Result<Option<Vec<FilterWrite>>, ApiError>,
) -> Result<(), ApiError> {
    for _ in 0..WRITE_ATTEMPTS {
        let current = deps.filters.all().await?;
        let Some(w) = plan(current)? else {
            return Ok(());
        };
        if w.is_empty() || deps.filters.transact(&w).await? {
            return Ok(());
        }
    }
    Err(ApiError::Contended("filters".into()))
}

pub async fn create(deps: &ApiDeps, body: &[u8]) -> Result<Value, ApiError> {
    let r: CreateRequest = parse(body)?;
    check_name(&r.name)?;
    let description = r.description.unwrap_or_default();
    check_description(&description)?;
    let action = action(r.action.as_deref())?.unwrap_or_default();
    let criteria = checked_criteria(&r.finding_criteria)?;
    let tags = r.tags.unwrap_or_default();
    check_tags(&tags)?;
    if let Some(t) = &r.client_token
        && (t.is_empty() || t.chars().count() > MAX_CLIENT_TOKEN_CHARS)
    {
        return Err(ApiError::bad(format!(
            "clientToken must be 1 to {MAX_CLIENT_TOKEN_CHARS} characters."
        )));
    }
    rank_in(r.rank, usize::MAX)?;
    let new = StoredFilter {
        filter: Filter {
            name: r.name.clone(),
            description,
            action,
            rank: 0,
            finding_criteria: criteria,
            tags,
        },
        version: 1,
        client_token: r.client_token.clone(),
    };
    change(deps, |current| {
        if let Some(existing) = current.iter().find(|f| f.filter.name == r.name) {
            // A retry of the same create (same clientToken) succeeds without a second write.
            if r.client_token.is_some() && existing.client_token == r.client_token {
                return Ok(None);
            }
            return Err(ApiError::bad(format!(
                "A filter named {} already exists.",
                quoted(&r.name)
            )));
        }
        if current.len() >= MAX_FILTERS {
            return Err(ApiError::bad(format!(
                "The detector already has {MAX_FILTERS} filters, the most it can have; delete one first."
            )));
        }
        let at = rank_in(r.rank, current.len() + 1)?.unwrap_or(current.len() + 1);
        let mut after = current.clone();
        after.insert(at - 1, new.clone());
        Ok(Some(writes(&current, after)))
    })
    .await?;
    Ok(json!({"name": r.name}))
}

fn not_found(name: &str) -> ApiError {
    ApiError::bad(format!(
        "The request is rejected because the filter {} does not exist.",
        quoted(name)
    ))
}

pub async fn update(deps: &ApiDeps, name: &str, body: &[u8]) -> Result<Value, ApiError> {
    check_name(name)?;
    let r: UpdateRequest = parse(body)?;
    if let Some(d) = &r.description {
        check_description(d)?;
    }
    let action = action(r.action.as_deref())?;
    let criteria = r
        .finding_criteria
        .as_ref()
        .map(checked_criteria)
        .transpose()?;
    rank_in(r.rank, usize::MAX)?;
    change(deps, |current| {
        let Some(pos) = current.iter().position(|f| f.filter.name == name) else {
            return Err(not_found(name));
        };
        let mut after = current.clone();
        let mut f = after.remove(pos);
        if let Some(d) = &r.description {
            f.filter.description = d.clone();
        }
        if let Some(a) = action {
            f.filter.action = a;
        }
        if let Some(c) = &criteria {
            f.filter.finding_criteria = c.clone();
        }
        let at = rank_in(r.rank, after.len() + 1)?.unwrap_or(pos + 1);
        after.insert(at - 1, f);
        Ok(Some(writes(&current, after)))
    })
    .await?;
    Ok(json!({"name": name}))
}

pub async fn delete(deps: &ApiDeps, name: &str) -> Result<Value, ApiError> {
    check_name(name)?;
    change(deps, |current| {
        let Some(pos) = current.iter().position(|f| f.filter.name == name) else {
            return Err(not_found(name));
        };
        let mut after = current.clone();
        let gone = after.remove(pos);
        let mut w = writes(&current, after);
        w.push(FilterWrite::Delete {
            name: gone.filter.name,
            expected: gone.version,
        });
        Ok(Some(w))
    })
    .await?;
    Ok(json!({}))
}

pub async fn get(deps: &ApiDeps, name: &str) -> Result<Value, ApiError> {
    check_name(name)?;
    let f = deps
        .filters
        .get(name)
        .await?
        .ok_or_else(|| not_found(name))?;
    serde_json::to_value(&f.filter).map_err(|_| ApiError::bad("The filter cannot be read."))
}

/// ListFilters: names in rank order; `nextToken` is the rank-order position to start from.
pub async fn list(deps: &ApiDeps, query: &str) -> Result<Value, ApiError> {
    let mut max = MAX_LIST_RESULTS;
    let mut start = 0usize;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "maxResults" => {
                max = v
                    .parse::<usize>()
                    .ok()
                    .filter(|m| (1..=MAX_LIST_RESULTS).contains(m))
                    .ok_or_else(|| {
                        ApiError::bad(format!(
                            "maxResults is {}; it must be 1 to {MAX_LIST_RESULTS}.",
                            quoted(&v)
                        ))
                    })?;
            }
            "nextToken" if !v.is_empty() => {
                start = v
                    .strip_prefix("f")
                    .and_then(|n| n.parse::<usize>().ok())
                    .filter(|n| *n <= MAX_FILTERS)
                    .ok_or_else(|| ApiError::bad("The nextToken is not valid."))?;
            }
            "nextToken" => {}
            other => {
                return Err(ApiError::bad(format!(
                    "ListFilters takes maxResults and nextToken, not {}.",
                    quoted(other)
                )));
            }
        }
    }
    let all = deps.filters.all().await?;
    let names: Vec<&str> = all
        .iter()
        .skip(start)
        .take(max)
        .map(|f| f.filter.name.as_str())
        .collect();
    let end = start + names.len();
    let mut out = json!({"filterNames": names});
    if end < all.len() {
        out["nextToken"] = json!(format!("f{end}"));
    }
    Ok(out)
}

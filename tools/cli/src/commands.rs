//! Each command as the API calls it makes and how their answers are shown. Arguments are
//! checked and request bodies built in [`Request::new`], before any credentials are loaded.

use std::io::Write;

use serde_json::{Map, Value, json};

use crate::client::{Client, segment};
use crate::error::CliError;
use crate::output::{self, Table, at, key_values};
use crate::{
    Command, CoverageCommand, CoverageFilter, FilterAction, FiltersCommand, FindingsCommand,
    OrgCommand, Output, Paging, SetsCommand,
};

/// GetFindings takes at most this many ids per call.
const GET_BATCH: usize = 50;

/// Threat or trusted entity sets: the same operations on their own paths and fields.
#[derive(Clone, Copy, Debug)]
pub enum SetKind {
    Threat,
    Trusted,
}

impl SetKind {
    fn path(self) -> &'static str {
        match self {
            SetKind::Threat => "/threatentityset",
            SetKind::Trusted => "/trustedentityset",
        }
    }
    fn list_field(self) -> &'static str {
        match self {
            SetKind::Threat => "threatEntitySetIds",
            SetKind::Trusted => "trustedEntitySetIds",
        }
    }
}

/// A command, checked, with its request body built.
pub enum Request {
    ListFindings {
        body: Map<String, Value>,
        all: bool,
    },
    GetFindings {
        ids: Vec<Value>,
    },
    Statistics {
        body: Value,
        group: Option<String>,
    },
    Archive {
        ids: Vec<String>,
        archive: bool,
    },
    Feedback {
        body: Value,
    },
    CreateFilter {
        body: Value,
    },
    ListFilters {
        paging: Paging,
    },
    GetFilter {
        name: String,
    },
    UpdateFilter {
        name: String,
        body: Value,
    },
    DeleteFilter {
        name: String,
    },
    CreateSet {
        kind: SetKind,
        body: Value,
    },
    ListSets {
        kind: SetKind,
        paging: Paging,
    },
    GetSet {
        kind: SetKind,
        id: String,
    },
    UpdateSet {
        kind: SetKind,
        id: String,
        body: Value,
    },
    DeleteSet {
        kind: SetKind,
        id: String,
    },
    ListCoverage {
        body: Map<String, Value>,
        all: bool,
    },
    CoverageStatistics {
        body: Value,
    },
    ShowOrg,
    UpdateOrg {
        body: Value,
    },
    SampleFindings {
        types: Vec<String>,
    },
}

impl Request {
    pub fn new(command: Command) -> Result<Request, CliError> {
        Ok(match command {
            Command::Findings(c) => findings(c)?,
            Command::Filters(c) => filters(c)?,
            Command::ThreatSets(c) => sets(SetKind::Threat, c)?,
            Command::TrustedSets(c) => sets(SetKind::Trusted, c)?,
            Command::Coverage(CoverageCommand::List {
                filter,
                sort,
                paging,
            }) => {
                let mut body = Map::new();
                if let Some(f) = coverage_filter(&filter)? {
                    body.insert("filterCriteria".into(), f);
                }
                list_fields(&mut body, sort.as_deref(), &paging)?;
                Request::ListCoverage {
                    body,
                    all: paging.all,
                }
            }
            Command::Coverage(CoverageCommand::Stats { filter }) => {
                let mut body = json!({
                    "statisticsType": ["COUNT_BY_RESOURCE_TYPE", "COUNT_BY_COVERAGE_STATUS"]
                });
                if let Some(f) = coverage_filter(&filter)? {
                    body["filterCriteria"] = f;
                }
                Request::CoverageStatistics { body }
            }
            Command::Org(OrgCommand::Show) => Request::ShowOrg,
            Command::Org(OrgCommand::Update {
                auto_enable,
                default_agent_management,
                cluster_scope,
                body,
            }) => {
                let mut b = match body {
                    Some(text) => json_object(&text, "--body")?,
                    None => Map::new(),
                };
                for (field, value) in [
                    ("autoEnableOrganizationMembers", auto_enable),
                    ("defaultAgentManagement", default_agent_management),
                    ("clusterScope", cluster_scope),
                ] {
                    if let Some(v) = value {
                        b.insert(field.into(), json!(v.to_ascii_uppercase()));
                    }
                }
                if b.is_empty() {
                    return Err(CliError::Usage(
                        "org update: nothing to change (--auto-enable, --default-agent-management, --cluster-scope or --body)"
                            .into(),
                    ));
                }
                Request::UpdateOrg {
                    body: Value::Object(b),
                }
            }
            Command::SampleFindings { types } => Request::SampleFindings { types },
        })
    }

    pub async fn run(
        self,
        client: &Client,
        output: Output,
        out: &mut impl Write,
    ) -> Result<(), CliError> {
        let table = output == Output::Table;
        match self {
            Request::ListFindings { body, all } => {
                let (ids, next) =
                    list_pages(client, "/findings", body, all, "findingIds", Method::Post).await?;
                if table {
                    let findings = get_findings(client, &ids).await?;
                    findings_table(&findings, false).write(out)?;
                    more(&next);
                } else {
                    output::json(out, &json!({"findingIds": ids, "nextToken": next}))?;
                }
            }
            Request::GetFindings { ids } => {
                let findings = get_findings(client, &ids).await?;
                if table {
                    findings_table(&findings, true).write(out)?;
                } else {
                    output::json(out, &json!({ "findings": findings }))?;
                }
            }
            Request::Statistics { body, group } => {
                let v = client.post("/findings/statistics", &body).await?;
                if table {
                    statistics_table(&v, group.as_deref()).write(out)?;
                } else {
                    output::json(out, &v)?;
                }
            }
            Request::Archive { ids, archive } => {
                let path = if archive {
                    "/findings/archive"
                } else {
                    "/findings/unarchive"
                };
                let v = client.post(path, &json!({ "findingIds": ids })).await?;
                let verb = if archive { "archived" } else { "unarchived" };
                done(out, table, &v, &format!("{verb}: {} finding(s)", ids.len()))?;
            }
            Request::Feedback { body } => {
                let v = client.post("/findings/feedback", &body).await?;
                let n = body["findingIds"].as_array().map_or(0, Vec::len);
                let what = body["feedback"].as_str().unwrap_or_default();
                done(out, table, &v, &format!("feedback {what}: {n} finding(s)"))?;
            }
            Request::CreateFilter { body } => {
                let v = client.post("/filter", &body).await?;
                shown(out, table, &v)?;
            }
            Request::ListFilters { paging } => {
                let mut query = Map::new();
                page_fields(&mut query, &paging);
                let (names, next) = list_pages(
                    client,
                    "/filter",
                    query,
                    paging.all,
                    "filterNames",
                    Method::Get,
                )
                .await?;
                if table {
                    let mut t = Table::new(&[
                        ("NAME", 64),
                        ("ACTION", 8),
                        ("RANK", 4),
                        ("DESCRIPTION", 60),
                    ]);
                    for name in names.iter().filter_map(Value::as_str) {
                        let f = client
                            .get(&format!("/filter/{}", segment(name)), &[])
                            .await?;
                        t.row(&[
                            name.to_owned(),
                            at(&f, "/action"),
                            at(&f, "/rank"),
                            at(&f, "/description"),
                        ]);
                    }
                    t.write(out)?;
                    more(&next);
                } else {
                    output::json(out, &json!({"filterNames": names, "nextToken": next}))?;
                }
            }
            Request::GetFilter { name } => {
                let v = client
                    .get(&format!("/filter/{}", segment(&name)), &[])
                    .await?;
                shown(out, table, &v)?;
            }
            Request::UpdateFilter { name, body } => {
                let v = client
                    .post(&format!("/filter/{}", segment(&name)), &body)
                    .await?;
                shown(out, table, &v)?;
            }
            Request::DeleteFilter { name } => {
                let v = client
                    .delete(&format!("/filter/{}", segment(&name)))
                    .await?;
                done(out, table, &v, "deleted")?;
            }
            Request::CreateSet { kind, body } => {
                let v = client.post(kind.path(), &body).await?;
                shown(out, table, &v)?;
            }
            Request::ListSets { kind, paging } => {
                let mut query = Map::new();
                page_fields(&mut query, &paging);
                let (ids, next) = list_pages(
                    client,
                    kind.path(),
                    query,
                    paging.all,
                    kind.list_field(),
                    Method::Get,
                )
                .await?;
                if table {
                    let mut t = Table::new(&[
                        ("ID", 40),
                        ("NAME", 40),
                        ("FORMAT", 11),
                        ("STATUS", 14),
                        ("LOCATION", 80),
                    ]);
                    for id in ids.iter().filter_map(Value::as_str) {
                        let s = client
                            .get(&format!("{}/{}", kind.path(), segment(id)), &[])
                            .await?;
                        t.row(&[
                            id.to_owned(),
                            at(&s, "/name"),
                            at(&s, "/format"),
                            at(&s, "/status"),
                            at(&s, "/location"),
                        ]);
                    }
                    t.write(out)?;
                    more(&next);
                } else {
                    output::json(out, &json!({kind.list_field(): ids, "nextToken": next}))?;
                }
            }
            Request::GetSet { kind, id } => {
                let v = client
                    .get(&format!("{}/{}", kind.path(), segment(&id)), &[])
                    .await?;
                shown(out, table, &v)?;
            }
            Request::UpdateSet { kind, id, body } => {
                let v = client
                    .post(&format!("{}/{}", kind.path(), segment(&id)), &body)
                    .await?;
                done(out, table, &v, "updated")?;
            }
            Request::DeleteSet { kind, id } => {
                let v = client
                    .delete(&format!("{}/{}", kind.path(), segment(&id)))
                    .await?;
                done(out, table, &v, "deleted")?;
            }
            Request::ListCoverage { body, all } => {
                let (resources, next) =
                    list_pages(client, "/coverage", body, all, "resources", Method::Post).await?;
                if table {
                    let mut t = Table::new(&[
                        ("RESOURCE", 64),
                        ("ACCOUNT", 12),
                        ("CLUSTER", 40),
                        ("STATUS", 10),
                        ("NODES", 9),
                        ("ISSUE", 60),
                        ("UPDATED", 24),
                    ]);
                    for r in &resources {
                        let cluster = "/resourceDetails/eksClusterDetails";
                        let nodes = match (
                            r.pointer(&format!("{cluster}/coveredNodes")),
                            r.pointer(&format!("{cluster}/compatibleNodes")),
                        ) {
                            (Some(c), Some(n)) => format!("{c}/{n}"),
                            _ => String::new(),
                        };
                        t.row(&[
                            at(r, "/resourceId"),
                            at(r, "/accountId"),
                            at(r, &format!("{cluster}/clusterName")),
                            at(r, "/coverageStatus"),
                            nodes,
                            at(r, "/issue"),
                            at(r, "/updatedAt"),
                        ]);
                    }
                    t.write(out)?;
                    more(&next);
                } else {
                    output::json(out, &json!({"resources": resources, "nextToken": next}))?;
                }
            }
            Request::CoverageStatistics { body } => {
                let v = client.post("/coverage/statistics", &body).await?;
                if table {
                    let mut t = Table::new(&[("STATISTIC", 24), ("KEY", 40), ("COUNT", 12)]);
                    for (stat, field) in [
                        ("resource type", "countByResourceType"),
                        ("coverage status", "countByCoverageStatus"),
                    ] {
                        if let Some(m) = v["coverageStatistics"][field].as_object() {
                            for (k, n) in m {
                                t.row(&[stat.to_owned(), k.clone(), output::text(n)]);
                            }
                        }
                    }
                    t.write(out)?;
                } else {
                    output::json(out, &v)?;
                }
            }
            Request::ShowOrg => {
                let v = client.get("/admin", &[]).await?;
                shown(out, table, &v)?;
            }
            Request::UpdateOrg { body } => {
                let v = client.post("/admin", &body).await?;
                done(out, table, &v, "updated")?;
            }
            Request::SampleFindings { types } => {
                let body = if types.is_empty() {
                    json!({})
                } else {
                    json!({ "findingTypes": types })
                };
                let v = client.post("/findings/create", &body).await?;
                let what = if types.is_empty() {
                    "every type".to_owned()
                } else {
                    format!("{} type(s)", types.len())
                };
                done(out, table, &v, &format!("sample findings created: {what}"))?;
            }
        }
        Ok(())
    }
}

fn findings(c: FindingsCommand) -> Result<Request, CliError> {
    Ok(match c {
        FindingsCommand::List {
            criteria,
            sort,
            paging,
        } => {
            let mut body = Map::new();
            if let Some(fc) = criteria.finding_criteria()? {
                body.insert("findingCriteria".into(), fc);
            }
            list_fields(&mut body, sort.as_deref(), &paging)?;
            Request::ListFindings {
                body,
                all: paging.all,
            }
        }
        FindingsCommand::Get { ids } => Request::GetFindings {
            ids: ids.into_iter().map(Value::String).collect(),
        },
        FindingsCommand::Stats {
            criteria,
            group_by,
            order,
            max,
        } => {
            let mut body = Map::new();
            let group = group_by.map(|g| match g.to_ascii_lowercase().as_str() {
                "type" => "FINDING_TYPE".to_owned(),
                other => other.to_ascii_uppercase(),
            });
            match &group {
                Some(g) => {
                    body.insert("groupBy".into(), json!(g));
                    if let Some(o) = order {
                        body.insert("orderBy".into(), json!(o.to_ascii_uppercase()));
                    }
                    if let Some(m) = max {
                        body.insert("maxResults".into(), json!(m));
                    }
                }
                None => {
                    body.insert("findingStatisticTypes".into(), json!(["COUNT_BY_SEVERITY"]));
                }
            }
            if let Some(fc) = criteria.finding_criteria()? {
                body.insert("findingCriteria".into(), fc);
            }
            Request::Statistics {
                body: Value::Object(body),
                group,
            }
        }
        FindingsCommand::Archive { ids } => Request::Archive { ids, archive: true },
        FindingsCommand::Unarchive { ids } => Request::Archive {
            ids,
            archive: false,
        },
        FindingsCommand::Feedback {
            ids,
            useful,
            not_useful: _,
            comment,
        } => {
            let mut body = json!({
                "findingIds": ids,
                "feedback": if useful { "USEFUL" } else { "NOT_USEFUL" },
            });
            if let Some(c) = comment {
                body["comments"] = json!(c);
            }
            Request::Feedback { body }
        }
    })
}

fn action(a: FilterAction) -> &'static str {
    match a {
        FilterAction::Noop => "NOOP",
        FilterAction::Archive => "ARCHIVE",
    }
}

fn filters(c: FiltersCommand) -> Result<Request, CliError> {
    Ok(match c {
        FiltersCommand::Create {
            name,
            action: act,
            rank,
            description,
            tags,
            criteria,
        } => {
            let Some(fc) = criteria.finding_criteria()? else {
                return Err(CliError::Usage(
                    "filters create: a filter needs criteria (--type, --severity, ..., or --criteria)"
                        .into(),
                ));
            };
            let mut body = json!({ "name": name, "findingCriteria": fc });
            if let Some(a) = act {
                body["action"] = json!(action(a));
            }
            if let Some(r) = rank {
                body["rank"] = json!(r);
            }
            if let Some(d) = description {
                body["description"] = json!(d);
            }
            if !tags.is_empty() {
                body["tags"] = tag_map(&tags)?;
            }
            Request::CreateFilter { body }
        }
        FiltersCommand::List { paging } => Request::ListFilters { paging },
        FiltersCommand::Get { name } => Request::GetFilter { name },
        FiltersCommand::Update {
            name,
            action: act,
            rank,
            description,
            criteria,
        } => {
            let mut body = Map::new();
            if let Some(a) = act {
                body.insert("action".into(), json!(action(a)));
            }
            if let Some(r) = rank {
                body.insert("rank".into(), json!(r));
            }
            if let Some(d) = description {
                body.insert("description".into(), json!(d));
            }
            if let Some(fc) = criteria.finding_criteria()? {
                body.insert("findingCriteria".into(), fc);
            }
            if body.is_empty() {
                return Err(CliError::Usage(
                    "filters update: nothing to change (--action, --rank, --description or criteria)"
                        .into(),
                ));
            }
            Request::UpdateFilter {
                name,
                body: Value::Object(body),
            }
        }
        FiltersCommand::Delete { name } => Request::DeleteFilter { name },
    })
}

fn sets(kind: SetKind, c: SetsCommand) -> Result<Request, CliError> {
    Ok(match c {
        SetsCommand::Create {
            name,
            format,
            location,
            activate,
            expected_bucket_owner,
            tags,
        } => {
            let mut body = json!({
                "name": name,
                "format": format.to_ascii_uppercase(),
                "location": location,
                "activate": activate,
            });
            if let Some(o) = expected_bucket_owner {
                body["expectedBucketOwner"] = json!(o);
            }
            if !tags.is_empty() {
                body["tags"] = tag_map(&tags)?;
            }
            Request::CreateSet { kind, body }
        }
        SetsCommand::List { paging } => Request::ListSets { kind, paging },
        SetsCommand::Get { id } => Request::GetSet { kind, id },
        SetsCommand::Update {
            id,
            name,
            location,
            activate,
            expected_bucket_owner,
        } => {
            let mut body = Map::new();
            if let Some(n) = name {
                body.insert("name".into(), json!(n));
            }
            if let Some(l) = location {
                body.insert("location".into(), json!(l));
            }
            if let Some(a) = activate {
                body.insert("activate".into(), json!(a));
            }
            if let Some(o) = expected_bucket_owner {
                body.insert("expectedBucketOwner".into(), json!(o));
            }
            if body.is_empty() {
                return Err(CliError::Usage(
                    "update: nothing to change (--name, --location, --activate or --expected-bucket-owner)"
                        .into(),
                ));
            }
            Request::UpdateSet {
                kind,
                id,
                body: Value::Object(body),
            }
        }
        SetsCommand::Delete { id } => Request::DeleteSet { kind, id },
    })
}

fn coverage_filter(f: &CoverageFilter) -> Result<Option<Value>, CliError> {
    let mut criteria = Vec::new();
    for (key, value) in [
        ("CLUSTER_NAME", &f.cluster),
        ("COVERAGE_STATUS", &f.status),
        ("ACCOUNT_ID", &f.account),
    ] {
        if let Some(v) = value {
            criteria.push(json!({"criterionKey": key, "filterCondition": {"equals": [v]}}));
        }
    }
    for spec in &f.filters {
        let (key, condition, value) = if let Some((k, v)) = spec.split_once("!=") {
            (k, "notEquals", v)
        } else if let Some((k, v)) = spec.split_once('=') {
            (k, "equals", v)
        } else {
            return Err(CliError::Usage(format!(
                "--filter {spec:?}: expected KEY=VALUE or KEY!=VALUE"
            )));
        };
        criteria.push(json!({"criterionKey": key, "filterCondition": {condition: [value]}}));
    }
    Ok((!criteria.is_empty()).then(|| json!({ "filterCriterion": criteria })))
}

/// `updatedAt:desc` → (`updatedAt`, `DESC`); the order defaults to DESC.
fn sort_spec(s: &str, flag: &str) -> Result<(String, &'static str), CliError> {
    let (attribute, order) = s.rsplit_once(':').unwrap_or((s, "desc"));
    let order = match order.to_ascii_lowercase().as_str() {
        "asc" => "ASC",
        "desc" => "DESC",
        _ => {
            return Err(CliError::Usage(format!(
                "{flag} {s:?}: expected FIELD, FIELD:asc or FIELD:desc"
            )));
        }
    };
    if attribute.is_empty() {
        return Err(CliError::Usage(format!("{flag} {s:?}: no field")));
    }
    Ok((attribute.to_owned(), order))
}

/// `sortCriteria` from `--sort`, and the paging fields.
fn list_fields(
    body: &mut Map<String, Value>,
    sort: Option<&str>,
    paging: &Paging,
) -> Result<(), CliError> {
    if let Some(s) = sort {
        let (attribute, order) = sort_spec(s, "--sort")?;
        body.insert(
            "sortCriteria".into(),
            json!({"attributeName": attribute, "orderBy": order}),
        );
    }
    page_fields(body, paging);
    Ok(())
}

fn page_fields(body: &mut Map<String, Value>, paging: &Paging) {
    if let Some(m) = paging.max {
        body.insert("maxResults".into(), json!(m));
    }
    if let Some(t) = &paging.next_token {
        body.insert("nextToken".into(), json!(t));
    }
}

fn tag_map(tags: &[String]) -> Result<Value, CliError> {
    let mut m = Map::new();
    for t in tags {
        let (k, v) = t
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--tag {t:?}: expected KEY=VALUE")))?;
        m.insert(k.to_owned(), json!(v));
    }
    Ok(Value::Object(m))
}

fn json_object(text: &str, flag: &str) -> Result<Map<String, Value>, CliError> {
    match serde_json::from_str(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(CliError::Usage(format!("{flag}: expected a JSON object"))),
        Err(e) => Err(CliError::Usage(format!("{flag} is not JSON: {e}"))),
    }
}

#[derive(Clone, Copy)]
enum Method {
    Post,
    Get,
}

/// One page, or every page (following `nextToken`) when `all`: the items of `field`, and the
/// last answer's `nextToken` (empty after the last page).
async fn list_pages(
    client: &Client,
    path: &str,
    mut body: Map<String, Value>,
    all: bool,
    field: &str,
    method: Method,
) -> Result<(Vec<Value>, String), CliError> {
    let mut items = Vec::new();
    loop {
        let v = match method {
            Method::Post => client.post(path, &Value::Object(body.clone())).await?,
            Method::Get => {
                let query: Vec<(&str, String)> = body
                    .iter()
                    .map(|(k, v)| (k.as_str(), output::text(v)))
                    .collect();
                client.get(path, &query).await?
            }
        };
        let page = v[field]
            .as_array()
            .ok_or_else(|| CliError::Reply(format!("no {field} list in the answer")))?;
        items.extend(page.iter().cloned());
        let next = v["nextToken"].as_str().unwrap_or_default().to_owned();
        if !all || next.is_empty() {
            return Ok((items, next));
        }
        if body.get("nextToken").and_then(Value::as_str) == Some(next.as_str()) {
            return Err(CliError::Reply(
                "the API returned the same nextToken twice".into(),
            ));
        }
        body.insert("nextToken".into(), json!(next));
    }
}

/// GetFindings for any number of ids, in batches, in the order given.
async fn get_findings(client: &Client, ids: &[Value]) -> Result<Vec<Value>, CliError> {
    let mut findings = Vec::with_capacity(ids.len());
    for batch in ids.chunks(GET_BATCH) {
        let v = client
            .post("/findings/get", &json!({ "findingIds": batch }))
            .await?;
        let page = v["findings"]
            .as_array()
            .ok_or_else(|| CliError::Reply("no findings list in the answer".into()))?;
        findings.extend(page.iter().cloned());
    }
    Ok(findings)
}

/// GuardDuty's severity bands.
fn severity_word(v: &Value) -> String {
    let Some(n) = v.as_f64() else {
        return output::text(v);
    };
    let word = match n {
        n if n >= 9.0 => "CRITICAL",
        n if n >= 7.0 => "HIGH",
        n if n >= 4.0 => "MEDIUM",
        _ => "LOW",
    };
    format!("{word} {n}")
}

fn findings_table(findings: &[Value], detail: bool) -> Table {
    let mut columns = vec![
        ("ID", 36),
        ("SEVERITY", 12),
        ("TYPE", 64),
        ("CLUSTER", 32),
        ("NAMESPACE", 24),
        ("POD", 40),
        ("PROCESS", 24),
        ("COUNT", 6),
        ("ARCHIVED", 8),
        ("UPDATED", 24),
    ];
    if detail {
        columns.extend([("FEEDBACK", 10), ("TITLE", 80)]);
    }
    let mut t = Table::new(&columns);
    let workload = "/resource/kubernetesDetails/kubernetesWorkloadDetails";
    for f in findings {
        let mut row = vec![
            at(f, "/id"),
            severity_word(&f["severity"]),
            at(f, "/type"),
            at(f, "/resource/eksClusterDetails/name"),
            at(f, &format!("{workload}/namespace")),
            at(f, &format!("{workload}/name")),
            at(f, "/service/runtimeDetails/process/name"),
            at(f, "/service/count"),
            at(f, "/service/archived"),
            at(f, "/updatedAt"),
        ];
        if detail {
            row.extend([at(f, "/service/userFeedback"), at(f, "/title")]);
        }
        t.row(&row);
    }
    t
}

fn statistics_table(v: &Value, group: Option<&str>) -> Table {
    let stats = &v["findingStatistics"];
    let Some(group) = group else {
        let mut t = Table::new(&[("SEVERITY", 16), ("COUNT", 12)]);
        if let Some(m) = stats["countBySeverity"].as_object() {
            for (severity, n) in m {
                let s = severity.parse::<f64>().map(|x| severity_word(&json!(x)));
                t.row(&[s.unwrap_or_else(|_| severity.clone()), output::text(n)]);
            }
        }
        return t;
    };
    let (field, keys): (&str, &[(&'static str, &str, usize)]) = match group {
        "ACCOUNT" => ("groupedByAccount", &[("ACCOUNT", "/accountId", 12)]),
        "DATE" => (
            "groupedByDate",
            &[("DATE", "/date", 12), ("SEVERITY", "/severity", 8)],
        ),
        "FINDING_TYPE" => ("groupedByFindingType", &[("TYPE", "/findingType", 64)]),
        "RESOURCE" => (
            "groupedByResource",
            &[
                ("RESOURCE", "/resourceId", 64),
                ("TYPE", "/resourceType", 12),
                ("ACCOUNT", "/accountId", 12),
            ],
        ),
        "SEVERITY" => (
            "groupedBySeverity",
            &[("SEVERITY", "/severity", 8), ("PERCENT", "/percentage", 8)],
        ),
        "CLUSTER" => ("groupedByCluster", &[("CLUSTER", "/clusterName", 40)]),
        _ => (
            "groupedByNamespace",
            &[
                ("CLUSTER", "/clusterName", 40),
                ("NAMESPACE", "/namespace", 40),
            ],
        ),
    };
    let mut columns: Vec<(&'static str, usize)> = keys.iter().map(|k| (k.0, k.2)).collect();
    columns.extend([("TOTAL", 10), ("LAST", 24)]);
    let mut t = Table::new(&columns);
    for row in stats[field]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let mut cells: Vec<String> = keys.iter().map(|k| at(row, k.1)).collect();
        cells.extend([at(row, "/totalFindings"), at(row, "/lastGeneratedAt")]);
        t.row(&cells);
    }
    t
}

/// A mutation's answer: the API's JSON, or a line for people.
fn done(out: &mut impl Write, table: bool, v: &Value, line: &str) -> Result<(), CliError> {
    if table {
        writeln!(out, "{line}")?;
    } else {
        output::json(out, v)?;
    }
    Ok(())
}

/// An object's answer: the API's JSON, or its fields as KEY VALUE rows.
fn shown(out: &mut impl Write, table: bool, v: &Value) -> Result<(), CliError> {
    if table {
        key_values(v).write(out)?;
    } else {
        output::json(out, v)?;
    }
    Ok(())
}

/// On a page of a longer list, say how to get the next (stderr: stdout holds the table).
fn more(next: &str) {
    if !next.is_empty() {
        eprintln!(
            "more: --next-token {} (or --all)",
            peregrine_termsafe::field(next, 4096)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_specs() {
        assert_eq!(
            sort_spec("updatedAt:desc", "--sort").unwrap(),
            ("updatedAt".into(), "DESC")
        );
        assert_eq!(
            sort_spec("severity:ASC", "--sort").unwrap(),
            ("severity".into(), "ASC")
        );
        assert_eq!(
            sort_spec("service.count", "--sort").unwrap(),
            ("service.count".into(), "DESC")
        );
        assert_eq!(sort_spec("x:up", "--sort").unwrap_err().exit_code(), 2);
    }

    #[test]
    fn coverage_filters() {
        let f = CoverageFilter {
            cluster: Some("prod".into()),
            filters: vec!["ADDON_VERSION!=1.0".into()],
            ..Default::default()
        };
        assert_eq!(
            coverage_filter(&f).unwrap().unwrap(),
            json!({"filterCriterion": [
                {"criterionKey": "CLUSTER_NAME", "filterCondition": {"equals": ["prod"]}},
                {"criterionKey": "ADDON_VERSION", "filterCondition": {"notEquals": ["1.0"]}},
            ]})
        );
        let bad = CoverageFilter {
            filters: vec!["nope".into()],
            ..Default::default()
        };
        assert_eq!(coverage_filter(&bad).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn severity_words() {
        assert_eq!(severity_word(&json!(8)), "HIGH 8");
        assert_eq!(severity_word(&json!(5.0)), "MEDIUM 5");
        assert_eq!(severity_word(&json!(9.5)), "CRITICAL 9.5");
        assert_eq!(severity_word(&json!(2)), "LOW 2");
    }
}

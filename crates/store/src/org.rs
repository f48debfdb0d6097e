//! The organization's tables: ConfigTable (the organization's and each account's settings,
//! [`ConfigStore`]) and CoverageTable (what the sweeper found, [`CoverageStore`]), in DynamoDB.
//!
//! **ConfigTable** is keyed by `pk`: `ORGANIZATION` for the organization's row, `ACCOUNT#<id>`
//! for an account's. Every setting is a top-level string attribute (`autoEnable`,
//! `monitoring`, `management`, `clusterScope`, ...), so the table reads and edits by hand until
//! the API does it.
//!
//! **CoverageTable** is keyed by `pk` and `sk`:
//!
//! | row | `pk` | `sk` | `kind`, `id` (index `byKind`) |
//! |---|---|---|---|
//! | a cluster | `ACCOUNT#<account>` | `CLUSTER#<region>#<name>` | `CLUSTER`, `<account>#<region>#<name>` |
//! | an account | `ACCOUNT#<account>` | `ACCOUNT` | `ACCOUNT`, `<account>` |
//! | a node | `NODES#<account>#<region>#<cluster>` | `NODE#<instance id>` | (none) |
//! | the statistics | `STATISTICS` | `LATEST` | (none) |
//!
//! Each row carries its record as JSON in `coverage` (the `peregrine-org` type, camelCase) and
//! the fields one filters on as attributes (`accountId`, `region`, `clusterName`,
//! `coverageStatus`, `issue`, `updatedAt`). A cluster row also keeps its publishing state:
//! `lastPublishedStatus` (the status the last event announced), `statusChangedAt` and
//! `previousStatus`.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeValue, DeleteRequest, PutRequest, ReturnValue, WriteRequest,
};
use peregrine_aws::backoff::RetryPolicy;
use peregrine_event::Timestamp;
use peregrine_org::config::{AccountSettings, Management, Monitoring, OrgSettings, Origin};
use peregrine_org::coverage::{
    AccountCoverage, ClusterCoverage, CoverageStatistics, CoverageStatus, NodeCoverage,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::dynamo::{Item, aws_error, build_error, get_s, s};
use crate::model::{iso, parse_iso};
use crate::traits::StoreError;

/// The coverage table's index of cluster and account rows.
pub const KIND_INDEX: &str = "byKind";
const ORG_KEY: &str = "ORGANIZATION";
const BATCH: usize = 25;

/// Everything ConfigTable holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrgConfig {
    /// `None` until the first sweep (or the API) writes it.
    pub org: Option<OrgSettings>,
    pub accounts: BTreeMap<String, AccountSettings>,
    /// Account rows that cannot be read (an edit by hand gone wrong): account id → why. The
    /// sweeper leaves such an account alone and reports it.
    pub invalid: BTreeMap<String, String>,
}

/// ConfigTable.
pub trait ConfigStore: Send + Sync {
    /// Every row (a Scan: one row per account).
    fn load(&self) -> impl Future<Output = Result<OrgConfig, StoreError>> + Send;

    /// Writes the organization's row; with `only_if_absent`, `Ok(false)` when one exists.
    fn put_org(
        &self,
        settings: &OrgSettings,
        only_if_absent: bool,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Writes an account's row if it is still as read: absent when `read_at` is `None`, else
    /// last updated at `read_at`. `Ok(false)` when somebody changed it meanwhile.
    fn put_account(
        &self,
        settings: &AccountSettings,
        read_at: Option<Timestamp>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// A cluster row with its publishing state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCluster {
    pub coverage: ClusterCoverage,
    /// The status the last event announced (`None`: none published yet).
    pub last_published: Option<CoverageStatus>,
    pub status_changed_at: Option<Timestamp>,
    pub previous_status: Option<CoverageStatus>,
}

/// CoverageTable.
pub trait CoverageStore: Send + Sync {
    /// Every cluster row (the `byKind` index, eventually consistent).
    fn clusters(&self) -> impl Future<Output = Result<Vec<StoredCluster>, StoreError>> + Send;

    /// Every account row.
    fn accounts(&self) -> impl Future<Output = Result<Vec<AccountCoverage>, StoreError>> + Send;

    /// A cluster's node rows.
    fn nodes(
        &self,
        account: &str,
        region: &str,
        cluster: &str,
    ) -> impl Future<Output = Result<Vec<NodeCoverage>, StoreError>> + Send;

    /// Writes `put` and deletes the rows of the instances in `delete`, of one cluster.
    fn write_nodes(
        &self,
        account: &str,
        region: &str,
        cluster: &str,
        put: &[NodeCoverage],
        delete: &[String],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Writes a cluster's row, keeping its publishing state, and returns the row as it was.
    fn put_cluster(
        &self,
        cluster: &ClusterCoverage,
    ) -> impl Future<Output = Result<Option<StoredCluster>, StoreError>> + Send;

    /// Records, if the row still has `cluster`'s status, that the status changed (from
    /// `changed_from`, at `cluster.updated_at`) and/or that it has been published. `Ok(false)`
    /// when the status moved on meanwhile.
    fn settle_cluster(
        &self,
        cluster: &ClusterCoverage,
        changed_from: Option<CoverageStatus>,
        published: bool,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Deletes a cluster's row and its node rows.
    fn delete_cluster(
        &self,
        account: &str,
        region: &str,
        cluster: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn put_account(
        &self,
        account: &AccountCoverage,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn delete_account(&self, account: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn put_statistics(
        &self,
        stats: &CoverageStatistics,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn statistics(
        &self,
    ) -> impl Future<Output = Result<Option<CoverageStatistics>, StoreError>> + Send;
}

fn account_key(account: &str) -> String {
    format!("ACCOUNT#{account}")
}

fn corrupt(key: &str, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

fn is_conditional_failure<E: aws_sdk_dynamodb::error::ProvideErrorMetadata, R>(
    e: &aws_sdk_dynamodb::error::SdkError<E, R>,
) -> bool {
    e.as_service_error()
        .and_then(|se| se.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

// ---------------------------------------------------------------------------------------------
// ConfigTable
// ---------------------------------------------------------------------------------------------

/// ConfigTable in DynamoDB.
#[derive(Clone, Debug)]
pub struct DynamoConfigStore {
    client: Client,
    table: String,
}

impl DynamoConfigStore {
    pub fn new(client: Client, table: &str) -> Self {
        DynamoConfigStore {
            client,
            table: table.to_owned(),
        }
    }
}

/// The organization's row.
pub fn org_item(o: &OrgSettings) -> Item {
    Item::from([
        ("pk".to_owned(), s(ORG_KEY)),
        ("autoEnable".to_owned(), s(o.auto_enable.as_str())),
        ("autoEnableSince".to_owned(), s(iso(o.auto_enable_since))),
        (
            "defaultManagement".to_owned(),
            s(o.default_management.as_str()),
        ),
        ("clusterScope".to_owned(), s(o.cluster_scope.as_str())),
        ("updatedAt".to_owned(), s(iso(o.updated_at))),
    ])
}

/// An account's row.
pub fn account_settings_item(a: &AccountSettings) -> Item {
    let mut item = Item::from([
        ("pk".to_owned(), s(account_key(&a.account_id))),
        ("accountId".to_owned(), s(&a.account_id)),
        ("monitoring".to_owned(), s(a.monitoring.as_str())),
        ("management".to_owned(), s(a.management.as_str())),
        ("origin".to_owned(), s(a.origin.as_str())),
        ("updatedAt".to_owned(), s(iso(a.updated_at))),
    ]);
    if let Some(scope) = a.cluster_scope {
        item.insert("clusterScope".to_owned(), s(scope.as_str()));
    }
    item
}

fn parse_field<T: std::str::FromStr>(item: &Item, key: &str, name: &str) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    get_s(item, name)
        .ok_or_else(|| corrupt(key, format!("no `{name}`")))?
        .parse()
        .map_err(|e: T::Err| corrupt(key, e.to_string()))
}

fn parse_time(item: &Item, key: &str, name: &str) -> Result<Option<Timestamp>, StoreError> {
    match get_s(item, name) {
        None => Ok(None),
        Some(t) => parse_iso(t)
            .map(Some)
            .ok_or_else(|| corrupt(key, format!("`{name}` is not an ISO-8601 time"))),
    }
}

/// Reads the organization's row back. Hand-edited rows may leave out `autoEnableSince` and
/// `updatedAt` (read as the epoch), `defaultManagement` (`MANUAL`) and `clusterScope` (`ALL`).
pub fn org_from_item(item: &Item) -> Result<OrgSettings, StoreError> {
    let key = ORG_KEY;
    Ok(OrgSettings {
        auto_enable: parse_field(item, key, "autoEnable")?,
        auto_enable_since: parse_time(item, key, "autoEnableSince")?.unwrap_or_default(),
        default_management: match get_s(item, "defaultManagement") {
            None => Management::Manual,
            Some(_) => parse_field(item, key, "defaultManagement")?,
        },
        cluster_scope: match get_s(item, "clusterScope") {
            None => peregrine_org::config::ClusterScope::All,
            Some(_) => parse_field(item, key, "clusterScope")?,
        },
        updated_at: parse_time(item, key, "updatedAt")?.unwrap_or_default(),
    })
}

/// Reads an account's row back. `monitoring` is required; `management` defaults to `MANUAL`,
/// `origin` to `ADMINISTRATOR`.
pub fn account_settings_from_item(item: &Item) -> Result<AccountSettings, StoreError> {
    let key = get_s(item, "pk").unwrap_or("?").to_owned();
    let account_id = key
        .strip_prefix("ACCOUNT#")
        .ok_or_else(|| corrupt(&key, "not an account row"))?
        .to_owned();
    Ok(AccountSettings {
        monitoring: parse_field::<Monitoring>(item, &key, "monitoring")?,
        management: match get_s(item, "management") {
            None => Management::Manual,
            Some(_) => parse_field(item, &key, "management")?,
        },
        cluster_scope: match get_s(item, "clusterScope") {
            None => None,
            Some(_) => Some(parse_field(item, &key, "clusterScope")?),
        },
        origin: match get_s(item, "origin") {
            None => Origin::Administrator,
            Some(_) => parse_field(item, &key, "origin")?,
        },
        updated_at: parse_time(item, &key, "updatedAt")?.unwrap_or_default(),
        account_id,
    })
}

impl ConfigStore for DynamoConfigStore {
    async fn load(&self) -> Result<OrgConfig, StoreError> {
        let mut out = OrgConfig::default();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| aws_error("Scan", &e))?;
            for item in page.items() {
                match get_s(item, "pk") {
                    Some(ORG_KEY) => out.org = Some(org_from_item(item)?),
                    Some(k) if k.starts_with("ACCOUNT#") => {
                        match account_settings_from_item(item) {
                            Ok(a) => {
                                out.accounts.insert(a.account_id.clone(), a);
                            }
                            Err(e) => {
                                let id = k.trim_start_matches("ACCOUNT#").to_owned();
                                out.invalid.insert(id, e.to_string());
                            }
                        }
                    }
                    other => tracing::warn!(pk = ?other, "config row of unknown kind ignored"),
                }
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }

    async fn put_org(
        &self,
        settings: &OrgSettings,
        only_if_absent: bool,
    ) -> Result<bool, StoreError> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(org_item(settings)));
        if only_if_absent {
            put = put.condition_expression("attribute_not_exists(pk)");
        }
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_failure(&e) => Ok(false),
            Err(e) => Err(aws_error("PutItem", &e)),
        }
    }

    async fn put_account(
        &self,
        settings: &AccountSettings,
        read_at: Option<Timestamp>,
    ) -> Result<bool, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(account_settings_item(settings)));
        let put = match read_at {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(at) => put
                .condition_expression("updatedAt = :read OR (attribute_exists(pk) AND attribute_not_exists(updatedAt))")
                .expression_attribute_values(":read", s(iso(at))),
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_failure(&e) => Ok(false),
            Err(e) => Err(aws_error("PutItem", &e)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// CoverageTable
// ---------------------------------------------------------------------------------------------

/// CoverageTable in DynamoDB.
#[derive(Clone, Debug)]
pub struct DynamoCoverageStore {
    client: Client,
    table: String,
    retry: RetryPolicy,
}

impl DynamoCoverageStore {
    pub fn new(client: Client, table: &str) -> Self {
        DynamoCoverageStore {
            client,
            table: table.to_owned(),
            retry: RetryPolicy {
                max_attempts: 8,
                base_delay: Duration::from_millis(50),
                max_delay: Duration::from_secs(2),
            },
        }
    }

    async fn query_pk(&self, pk: &str) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(pk))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| aws_error("Query", &e))?;
            out.extend(page.items().iter().cloned());
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }

    async fn query_kind(&self, kind: &str) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(KIND_INDEX)
                .key_condition_expression("#k = :k")
                .expression_attribute_names("#k", "kind")
                .expression_attribute_values(":k", s(kind))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| aws_error("Query", &e))?;
            out.extend(page.items().iter().cloned());
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }

    /// BatchWriteItem in chunks of 25, retrying unprocessed items with backoff.
    async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<(), StoreError> {
        for chunk in requests.chunks(BATCH) {
            let mut pending = chunk.to_vec();
            let mut attempt = 1;
            loop {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending.clone())
                    .send()
                    .await;
                let unprocessed = match out {
                    Ok(o) => o
                        .unprocessed_items()
                        .and_then(|u| u.get(&self.table))
                        .cloned()
                        .unwrap_or_default(),
                    Err(e) => {
                        let err = aws_error("BatchWriteItem", &e);
                        if !err.is_transient() || attempt >= self.retry.max_attempts {
                            return Err(err);
                        }
                        pending
                    }
                };
                if unprocessed.is_empty() {
                    break;
                }
                if attempt >= self.retry.max_attempts {
                    return Err(StoreError::Aws {
                        operation: "BatchWriteItem",
                        failure: peregrine_aws::Failure::Throttled,
                        message: format!("{} items still unprocessed", unprocessed.len()),
                    });
                }
                tokio_sleep(self.retry.delay(attempt)).await;
                attempt += 1;
                pending = unprocessed;
            }
        }
        Ok(())
    }
}

async fn tokio_sleep(d: Duration) {
    tokio::time::sleep(d).await;
}

fn json<T: Serialize>(key: &str, v: &T) -> Result<AttributeValue, StoreError> {
    serde_json::to_string(v)
        .map(s)
        .map_err(|e| corrupt(key, e.to_string()))
}

fn from_json<T: DeserializeOwned>(item: &Item) -> Result<T, StoreError> {
    let key = format!(
        "{}/{}",
        get_s(item, "pk").unwrap_or("?"),
        get_s(item, "sk").unwrap_or("?")
    );
    let text = get_s(item, "coverage").ok_or_else(|| corrupt(&key, "no `coverage`"))?;
    serde_json::from_str(text).map_err(|e| corrupt(&key, e.to_string()))
}

fn cluster_sk(region: &str, cluster: &str) -> String {
    format!("CLUSTER#{region}#{cluster}")
}

fn nodes_pk(account: &str, region: &str, cluster: &str) -> String {
    format!("NODES#{account}#{region}#{cluster}")
}

fn status_attr(item: &Item, name: &str) -> Option<CoverageStatus> {
    get_s(item, name).and_then(|v| v.parse().ok())
}

fn stored_cluster(item: &Item) -> Result<StoredCluster, StoreError> {
    Ok(StoredCluster {
        coverage: from_json(item)?,
        last_published: status_attr(item, "lastPublishedStatus"),
        status_changed_at: get_s(item, "statusChangedAt").and_then(parse_iso),
        previous_status: status_attr(item, "previousStatus"),
    })
}

fn key(pk: String, sk: String) -> Item {
    Item::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

fn node_item(n: &NodeCoverage) -> Result<Item, StoreError> {
    let pk = nodes_pk(&n.account_id, &n.region, &n.cluster_name);
    let sk = format!("NODE#{}", n.instance_id);
    let mut item = key(pk.clone(), sk);
    item.insert("accountId".into(), s(&n.account_id));
    item.insert("region".into(), s(&n.region));
    item.insert("clusterName".into(), s(&n.cluster_name));
    item.insert("instanceId".into(), s(&n.instance_id));
    item.insert("coverageStatus".into(), s(n.coverage_status.as_str()));
    if let Some(issue) = &n.issue {
        item.insert("issue".into(), s(issue));
    }
    item.insert("updatedAt".into(), s(iso(n.updated_at)));
    item.insert("coverage".into(), json(&pk, n)?);
    Ok(item)
}

/// The rows of `items` that `parse` reads; an unreadable one is logged and skipped, so one bad
/// row never hides the rest.
fn readable<T>(
    items: &[Item],
    parse: impl Fn(&Item) -> Result<T, StoreError>,
    what: &str,
) -> Vec<T> {
    items
        .iter()
        .filter_map(|item| match parse(item) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(error = %e, row = what, "unreadable row skipped");
                None
            }
        })
        .collect()
}

impl CoverageStore for DynamoCoverageStore {
    async fn clusters(&self) -> Result<Vec<StoredCluster>, StoreError> {
        let items = self.query_kind("CLUSTER").await?;
        Ok(readable(&items, stored_cluster, "cluster"))
    }

    async fn accounts(&self) -> Result<Vec<AccountCoverage>, StoreError> {
        let items = self.query_kind("ACCOUNT").await?;
        Ok(readable(&items, from_json, "account"))
    }

    async fn nodes(
        &self,
        account: &str,
        region: &str,
        cluster: &str,
    ) -> Result<Vec<NodeCoverage>, StoreError> {
        let items = self.query_pk(&nodes_pk(account, region, cluster)).await?;
        Ok(readable(&items, from_json, "node"))
    }

    async fn write_nodes(
        &self,
        account: &str,
        region: &str,
        cluster: &str,
        put: &[NodeCoverage],
        delete: &[String],
    ) -> Result<(), StoreError> {
        let mut requests = Vec::with_capacity(put.len() + delete.len());
        for n in put {
            let req = PutRequest::builder()
                .set_item(Some(node_item(n)?))
                .build()
                .map_err(|e| build_error("BatchWriteItem", e))?;
            requests.push(WriteRequest::builder().put_request(req).build());
        }
        let pk = nodes_pk(account, region, cluster);
        for id in delete {
            let req = DeleteRequest::builder()
                .set_key(Some(key(pk.clone(), format!("NODE#{id}"))))
                .build()
                .map_err(|e| build_error("BatchWriteItem", e))?;
            requests.push(WriteRequest::builder().delete_request(req).build());
        }
        self.batch_write(requests).await
    }

    async fn put_cluster(&self, c: &ClusterCoverage) -> Result<Option<StoredCluster>, StoreError> {
        let id = format!("{}#{}#{}", c.account_id, c.region, c.cluster_name);
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(account_key(&c.account_id)))
            .key("sk", s(cluster_sk(&c.region, &c.cluster_name)))
            .return_values(ReturnValue::AllOld);
        let mut sets = Vec::new();
        for (i, (name, value)) in [
            ("kind", s("CLUSTER")),
            ("id", s(&id)),
            ("accountId", s(&c.account_id)),
            ("region", s(&c.region)),
            ("clusterName", s(&c.cluster_name)),
            ("coverageStatus", s(c.coverage_status.as_str())),
            ("updatedAt", s(iso(c.updated_at))),
            ("coverage", json(&id, c)?),
        ]
        .into_iter()
        .enumerate()
        {
            sets.push(format!("#a{i} = :v{i}"));
            update = update
                .expression_attribute_names(format!("#a{i}"), name)
                .expression_attribute_values(format!(":v{i}"), value);
        }
        let mut expression = format!("SET {}", sets.join(", "));
        update = update.expression_attribute_names("#issue", "issue");
        match &c.issue {
            Some(issue) => {
                expression.push_str(", #issue = :issue");
                update = update.expression_attribute_values(":issue", s(issue));
            }
            None => expression.push_str(" REMOVE #issue"),
        }
        let out = update
            .update_expression(expression)
            .send()
            .await
            .map_err(|e| aws_error("UpdateItem", &e))?;
        match out.attributes() {
            Some(old) if !old.is_empty() => stored_cluster(old).map(Some),
            _ => Ok(None),
        }
    }

    async fn settle_cluster(
        &self,
        c: &ClusterCoverage,
        changed_from: Option<CoverageStatus>,
        published: bool,
    ) -> Result<bool, StoreError> {
        let mut sets = Vec::new();
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(account_key(&c.account_id)))
            .key("sk", s(cluster_sk(&c.region, &c.cluster_name)))
            .condition_expression("coverageStatus = :s")
            .expression_attribute_values(":s", s(c.coverage_status.as_str()));
        if let Some(previous) = changed_from {
            sets.push("statusChangedAt = :t, previousStatus = :p");
            update = update
                .expression_attribute_values(":t", s(iso(c.updated_at)))
                .expression_attribute_values(":p", s(previous.as_str()));
        }
        if published {
            sets.push("lastPublishedStatus = :s");
        }
        if sets.is_empty() {
            return Ok(true);
        }
        match update
            .update_expression(format!("SET {}", sets.join(", ")))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_failure(&e) => Ok(false),
            Err(e) => Err(aws_error("UpdateItem", &e)),
        }
    }

    async fn delete_cluster(
        &self,
        account: &str,
        region: &str,
        cluster: &str,
    ) -> Result<(), StoreError> {
        let nodes = self.query_pk(&nodes_pk(account, region, cluster)).await?;
        let mut requests = Vec::with_capacity(nodes.len());
        for item in nodes {
            let (Some(pk), Some(sk)) = (get_s(&item, "pk"), get_s(&item, "sk")) else {
                continue;
            };
            let req = DeleteRequest::builder()
                .set_key(Some(key(pk.to_owned(), sk.to_owned())))
                .build()
                .map_err(|e| build_error("BatchWriteItem", e))?;
            requests.push(WriteRequest::builder().delete_request(req).build());
        }
        self.batch_write(requests).await?;
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(account_key(account), cluster_sk(region, cluster))))
            .send()
            .await
            .map_err(|e| aws_error("DeleteItem", &e))?;
        Ok(())
    }

    async fn put_account(&self, a: &AccountCoverage) -> Result<(), StoreError> {
        let mut item = key(account_key(&a.account_id), "ACCOUNT".into());
        item.insert("kind".into(), s("ACCOUNT"));
        item.insert("id".into(), s(&a.account_id));
        item.insert("accountId".into(), s(&a.account_id));
        item.insert("sweepState".into(), s(a.sweep_state.as_str()));
        item.insert("monitoring".into(), s(a.monitoring.as_str()));
        item.insert("updatedAt".into(), s(iso(a.updated_at)));
        item.insert("coverage".into(), json(&a.account_id, a)?);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| aws_error("PutItem", &e))?;
        Ok(())
    }

    async fn delete_account(&self, account: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(account_key(account), "ACCOUNT".into())))
            .send()
            .await
            .map_err(|e| aws_error("DeleteItem", &e))?;
        Ok(())
    }

    async fn put_statistics(&self, stats: &CoverageStatistics) -> Result<(), StoreError> {
        let mut item = key("STATISTICS".into(), "LATEST".into());
        if let Some(t) = stats.sweep_finished_at {
            item.insert("updatedAt".into(), s(iso(t)));
        }
        item.insert("coverage".into(), json("STATISTICS", stats)?);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| aws_error("PutItem", &e))?;
        Ok(())
    }

    async fn statistics(&self) -> Result<Option<CoverageStatistics>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key("STATISTICS".into(), "LATEST".into())))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| aws_error("GetItem", &e))?;
        out.item().map(from_json).transpose()
    }
}

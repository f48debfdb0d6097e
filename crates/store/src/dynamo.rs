//! DynamoDB implementations of [`FindingStore`] and [`HeartbeatStore`], and the findings
//! table's item schema.
//!
//! Only the calls the template's roles allow are used: the detector's `GetItem`, `PutItem` and
//! `UpdateItem` (TransactGetItems and TransactWriteItems are authorised per item by exactly
//! those), the publisher's `Query` on `byPublishState`, `GetItem` and `UpdateItem`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Get, Put, TransactGetItem, TransactWriteItem};
use peregrine_aws::{Failure, classify};
use peregrine_event::Timestamp;
use peregrine_finding::Finding;

use crate::model::{
    ChunkOutcome, ChunkWrite, HubPending, Outbox, PUBLISH_PENDING, StoredFinding, day, iso,
    parse_iso,
};
use crate::traits::{
    Coverage, Cursor, DuePage, FindingStore, HeartbeatReader, HeartbeatRecord, HeartbeatStore,
    StoreError, latest_per_node,
};

/// The outbox index (template.yaml, FindingsTable): sparse, keyed by `publishState` and sorted
/// by `publishDueAt`.
pub const PUBLISH_INDEX: &str = "byPublishState";
/// The Security Hub outbox's index: sparse, keyed by `securityHubState` and sorted by
/// `securityHubDueAt`.
pub const SECURITY_HUB_INDEX: &str = "bySecurityHubState";

/// Attribute names of a FindingsTable item. The template's key schema and GSIs use `id`,
/// `type`, `severityLabel`, `clusterName`, `updatedDay`, `updatedAt`, `publishState` and
/// `publishDueAt`.
pub mod attr {
    pub const ID: &str = "id";
    pub const FINDING: &str = "finding";
    pub const TYPE: &str = "type";
    pub const SEVERITY: &str = "severity";
    pub const SEVERITY_LABEL: &str = "severityLabel";
    pub const CLUSTER_NAME: &str = "clusterName";
    pub const ACCOUNT_ID: &str = "accountId";
    /// The workload's namespace (`byNamespace`); absent for host findings.
    pub const NAMESPACE: &str = "namespace";
    pub const REGION: &str = "region";
    pub const CREATED_AT: &str = "createdAt";
    pub const UPDATED_AT: &str = "updatedAt";
    pub const UPDATED_DAY: &str = "updatedDay";
    pub const COUNT: &str = "count";
    pub const VERSION: &str = "version";
    pub const PUBLISH_STATE: &str = "publishState";
    pub const PUBLISH_DUE_AT: &str = "publishDueAt";
    pub const LAST_PUBLISHED_AT: &str = "lastPublishedAt";
    pub const LAST_PUBLISHED_COUNT: &str = "lastPublishedCount";
    /// The Security Hub outbox: `PENDING` while an import is due (`bySecurityHubState`).
    pub const SECURITY_HUB_STATE: &str = "securityHubState";
    pub const SECURITY_HUB_DUE_AT: &str = "securityHubDueAt";
    pub const SECURITY_HUB_ATTEMPTS: &str = "securityHubAttempts";
    pub const SECURITY_HUB_IMPORTED_AT: &str = "securityHubImportedAt";
    /// BatchDedupeTable's key and TTL attribute.
    pub const BATCH_KEY: &str = "batchKey";
    pub const EXPIRES_AT: &str = "expiresAt";
}

pub(crate) type Item = HashMap<String, AttributeValue>;

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// The FindingsTable item for a stored finding. Empty strings are left out: DynamoDB refuses
/// them as index keys.
pub fn finding_item(f: &StoredFinding) -> Result<Item, serde_json::Error> {
    let finding = &f.finding;
    let mut item = Item::new();
    item.insert(attr::ID.into(), s(&finding.id));
    item.insert(attr::FINDING.into(), s(serde_json::to_string(finding)?));
    item.insert(attr::TYPE.into(), s(&finding.finding_type));
    item.insert(attr::SEVERITY.into(), n(finding.severity));
    item.insert(attr::SEVERITY_LABEL.into(), s(finding.severity_label()));
    if let Some(cluster) = finding
        .resource
        .eks_cluster_details
        .as_ref()
        .map(|c| c.name.as_str())
        .filter(|c| !c.is_empty())
    {
        item.insert(attr::CLUSTER_NAME.into(), s(cluster));
    }
    if !finding.account_id.is_empty() {
        item.insert(attr::ACCOUNT_ID.into(), s(&finding.account_id));
    }
    if !finding.region.is_empty() {
        item.insert(attr::REGION.into(), s(&finding.region));
    }
    let updated = finding.updated_at.timestamp();
    item.insert(
        attr::CREATED_AT.into(),
        s(iso(finding.created_at.timestamp())),
    );
    item.insert(attr::UPDATED_AT.into(), s(iso(updated)));
    item.insert(attr::UPDATED_DAY.into(), s(day(updated)));
    item.insert(attr::COUNT.into(), n(finding.service.count));
    item.insert(attr::VERSION.into(), n(f.version));
    if let Some(due) = f.outbox.pending_due {
        item.insert(attr::PUBLISH_STATE.into(), s(PUBLISH_PENDING));
        item.insert(attr::PUBLISH_DUE_AT.into(), s(iso(due)));
    }
    if let Some(at) = f.outbox.last_published_at {
        item.insert(attr::LAST_PUBLISHED_AT.into(), s(iso(at)));
    }
    if let Some(c) = f.outbox.last_published_count {
        item.insert(attr::LAST_PUBLISHED_COUNT.into(), n(c));
    }
    if let Some(hub) = f.outbox.security_hub {
        item.insert(attr::SECURITY_HUB_STATE.into(), s(PUBLISH_PENDING));
        item.insert(attr::SECURITY_HUB_DUE_AT.into(), s(iso(hub.due)));
        if hub.attempts > 0 {
            item.insert(attr::SECURITY_HUB_ATTEMPTS.into(), n(hub.attempts));
        }
    }
    if let Some(at) = f.outbox.last_imported_at {
        item.insert(attr::SECURITY_HUB_IMPORTED_AT.into(), s(iso(at)));
    }
    if let Some(at) = f.expires_at {
        item.insert(attr::EXPIRES_AT.into(), n(at));
    }
    if let Some(ns) = finding
        .resource
        .kubernetes_details
        .as_ref()
        .and_then(|k| k.kubernetes_workload_details.as_ref())
        .and_then(|w| w.namespace.as_deref())
        .filter(|ns| !ns.is_empty())
    {
        item.insert(attr::NAMESPACE.into(), s(ns));
    }
    Ok(item)
}

pub(crate) fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

pub(crate) fn get_u64(item: &Item, name: &str) -> Option<u64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

/// Reads a FindingsTable item back.
pub fn stored_finding(item: &Item) -> Result<StoredFinding, StoreError> {
    let key = get_s(item, attr::ID).unwrap_or("?").to_owned();
    let corrupt = |reason: String| StoreError::Corrupt {
        key: key.clone(),
        reason,
    };
    let json = get_s(item, attr::FINDING).ok_or_else(|| corrupt("no `finding` string".into()))?;
    let finding: Finding = serde_json::from_str(json)
        .map_err(|e| corrupt(format!("`finding` is not a finding: {e}")))?;
    let version = get_u64(item, attr::VERSION).ok_or_else(|| corrupt("no `version`".into()))?;
    let time = |name: &str| -> Result<Option<Timestamp>, StoreError> {
        match get_s(item, name) {
            None => Ok(None),
            Some(t) => parse_iso(t)
                .map(Some)
                .ok_or_else(|| corrupt(format!("`{name}` is not a time"))),
        }
    };
    let pending = get_s(item, attr::PUBLISH_STATE) == Some(PUBLISH_PENDING);
    let pending_due = if pending {
        // Pending without a due time is due now: publish rather than lose it.
        Some(time(attr::PUBLISH_DUE_AT)?.unwrap_or(Timestamp::from_unix_nanos(0)))
    } else {
        None
    };
    let security_hub = if get_s(item, attr::SECURITY_HUB_STATE) == Some(PUBLISH_PENDING) {
        Some(HubPending {
            // Pending without a due time is due now, as for the publish.
            due: time(attr::SECURITY_HUB_DUE_AT)?.unwrap_or(Timestamp::from_unix_nanos(0)),
            attempts: get_u64(item, attr::SECURITY_HUB_ATTEMPTS)
                .and_then(|a| u32::try_from(a).ok())
                .unwrap_or(0),
        })
    } else {
        None
    };
    Ok(StoredFinding {
        finding,
        version,
        outbox: Outbox {
            pending_due,
            last_published_at: time(attr::LAST_PUBLISHED_AT)?,
            last_published_count: get_u64(item, attr::LAST_PUBLISHED_COUNT),
            security_hub,
            last_imported_at: time(attr::SECURITY_HUB_IMPORTED_AT)?,
        },
        expires_at: item
            .get(attr::EXPIRES_AT)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok()),
    })
}

pub(crate) fn aws_error<E, R>(operation: &'static str, e: &SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: Debug,
{
    StoreError::Aws {
        operation,
        failure: classify(e),
        message: crate::traits::error_text(e),
    }
}

pub(crate) fn build_error(operation: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Aws {
        operation,
        failure: Failure::Invalid,
        message: e.to_string(),
    }
}

/// TransactGetItems takes at most 100 items in AWS, but moto (5.2.5) still enforces the old
/// limit of 25; 25 works with both, at a few more calls per chunk.
const MAX_TRANSACT_GET: usize = 25;

/// FindingsTable and BatchDedupeTable in DynamoDB.
#[derive(Clone, Debug)]
pub struct DynamoFindingStore {
    client: Client,
    findings_table: String,
    dedupe_table: String,
    security_hub: bool,
    filters: Option<crate::filters::DynamoFilterStore>,
}

impl DynamoFindingStore {
    pub fn new(client: Client, findings_table: &str, dedupe_table: &str) -> Self {
        DynamoFindingStore {
            client,
            findings_table: findings_table.to_owned(),
            dedupe_table: dedupe_table.to_owned(),
            security_hub: false,
            filters: None,
        }
    }

    /// With FiltersTable (`FILTERS_TABLE`), [`FindingStore::filters`] reads it; without, there
    /// are no filters.
    pub fn with_filters_table(mut self, table: Option<&str>) -> Self {
        self.filters =
            table.map(|t| crate::filters::DynamoFilterStore::new(self.client.clone(), t));
        self
    }

    /// With the Security Hub export on, recording a publish also makes an import due.
    pub fn with_security_hub_export(mut self, on: bool) -> Self {
        self.security_hub = on;
        self
    }

    /// One page of a sparse outbox index (`state = PENDING AND due <= now`), oldest due first.
    async fn query_pending(
        &self,
        index: &str,
        state: &str,
        due: &str,
        now: Timestamp,
        cursor: Option<Cursor>,
        limit: i32,
    ) -> Result<DuePage, StoreError> {
        let start = cursor.map(|c| c.0.into_iter().map(|(k, v)| (k, s(v))).collect::<Item>());
        let resp = self
            .client
            .query()
            .table_name(&self.findings_table)
            .index_name(index)
            .key_condition_expression("#s = :pending AND #d <= :now")
            .expression_attribute_names("#s", state)
            .expression_attribute_names("#d", due)
            .expression_attribute_values(":pending", s(PUBLISH_PENDING))
            .expression_attribute_values(":now", s(iso(now)))
            .projection_expression("#i")
            .expression_attribute_names("#i", attr::ID)
            .set_exclusive_start_key(start)
            .limit(limit.max(1))
            .send()
            .await
            .map_err(|e| aws_error("Query", &e))?;
        let ids = resp
            .items()
            .iter()
            .filter_map(|i| get_s(i, attr::ID).map(str::to_owned))
            .collect();
        let next = resp.last_evaluated_key().map(|k| {
            Cursor(
                k.iter()
                    .filter_map(|(name, v)| Some((name.clone(), v.as_s().ok()?.clone())))
                    .collect::<BTreeMap<_, _>>(),
            )
        });
        Ok(DuePage { ids, next })
    }

    /// A conditional UpdateItem that answers `Ok(false)` when its condition failed.
    async fn update_if(
        &self,
        update: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
    ) -> Result<bool, StoreError> {
        match update.send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(aws_error("UpdateItem", &e)),
        }
    }

    fn dedupe_put(&self, chunk: &ChunkWrite) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.dedupe_table)
            .item(attr::BATCH_KEY, s(&chunk.dedupe_key))
            .item(attr::EXPIRES_AT, n(chunk.dedupe_expires_at))
            .item("findings", n(chunk.writes.len()))
            .condition_expression("attribute_not_exists(#k)")
            .expression_attribute_names("#k", attr::BATCH_KEY)
            .build()
            .map_err(|e| build_error("TransactWriteItems", e))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn finding_put(&self, w: &crate::model::FindingWrite) -> Result<TransactWriteItem, StoreError> {
        let item = finding_item(&w.item).map_err(|e| build_error("TransactWriteItems", e))?;
        let put = Put::builder()
            .table_name(&self.findings_table)
            .set_item(Some(item));
        let put = match w.expected_version {
            None => put
                .condition_expression("attribute_not_exists(#id)")
                .expression_attribute_names("#id", attr::ID),
            Some(v) => put
                .condition_expression("#v = :v")
                .expression_attribute_names("#v", attr::VERSION)
                .expression_attribute_values(":v", n(v)),
        };
        let put = put
            .build()
            .map_err(|e| build_error("TransactWriteItems", e))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

/// Reads the cancellation reasons of a cancelled chunk transaction. The dedupe marker is the
/// first action.
fn chunk_outcome(
    e: &SdkError<TransactWriteItemsError, impl Debug>,
) -> Option<Result<ChunkOutcome, StoreError>> {
    let TransactWriteItemsError::TransactionCanceledException(c) = e.as_service_error()? else {
        return match e.as_service_error()? {
            TransactWriteItemsError::TransactionInProgressException(_) => {
                Some(Ok(ChunkOutcome::Conflict))
            }
            _ => None,
        };
    };
    let codes: Vec<&str> = c
        .cancellation_reasons()
        .iter()
        .map(|r| r.code().unwrap_or("None"))
        .collect();
    if codes.first() == Some(&"ConditionalCheckFailed") {
        return Some(Ok(ChunkOutcome::AlreadyApplied));
    }
    if codes
        .iter()
        .any(|c| *c == "ConditionalCheckFailed" || *c == "TransactionConflict")
    {
        return Some(Ok(ChunkOutcome::Conflict));
    }
    let failure = if codes
        .iter()
        .any(|c| *c == "ThrottlingError" || *c == "ProvisionedThroughputExceeded")
    {
        Failure::Throttled
    } else {
        Failure::Invalid
    };
    Some(Err(StoreError::Aws {
        operation: "TransactWriteItems",
        failure,
        message: format!("transaction cancelled, reasons {codes:?}"),
    }))
}

impl FindingStore for DynamoFindingStore {
    async fn filters(&self) -> Result<Vec<peregrine_criteria::Filter>, StoreError> {
        match &self.filters {
            None => Ok(Vec::new()),
            Some(t) => Ok(t.all().await?.into_iter().map(|f| f.filter).collect()),
        }
    }

    async fn get_many(&self, ids: &[String]) -> Result<HashMap<String, StoredFinding>, StoreError> {
        let mut out = HashMap::with_capacity(ids.len());
        for part in ids.chunks(MAX_TRANSACT_GET) {
            let gets = part
                .iter()
                .map(|id| {
                    Get::builder()
                        .table_name(&self.findings_table)
                        .key(attr::ID, s(id))
                        .build()
                        .map(|g| TransactGetItem::builder().get(g).build())
                        .map_err(|e| build_error("TransactGetItems", e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let resp = self
                .client
                .transact_get_items()
                .set_transact_items(Some(gets))
                .send()
                .await
                .map_err(|e| {
                    let mut err = aws_error("TransactGetItems", &e);
                    // Cancelled by a concurrent transaction on the same items: transient.
                    if let (StoreError::Aws { failure, .. }, Some(se)) =
                        (&mut err, e.as_service_error())
                        && se.is_transaction_canceled_exception()
                    {
                        *failure = Failure::Unavailable;
                    }
                    err
                })?;
            for r in resp.responses() {
                if let Some(item) = r.item() {
                    let f = stored_finding(item)?;
                    out.insert(f.finding.id.clone(), f);
                }
            }
        }
        Ok(out)
    }

    async fn transact_chunk(&self, chunk: &ChunkWrite) -> Result<ChunkOutcome, StoreError> {
        let mut actions = Vec::with_capacity(chunk.writes.len() + 1);
        actions.push(self.dedupe_put(chunk)?);
        for w in &chunk.writes {
            actions.push(self.finding_put(w)?);
        }
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(actions))
            .send()
            .await
        {
            Ok(_) => Ok(ChunkOutcome::Applied),
            Err(e) => match chunk_outcome(&e) {
                Some(outcome) => outcome,
                None => Err(aws_error("TransactWriteItems", &e)),
            },
        }
    }

    async fn query_due(
        &self,
        now: Timestamp,
        cursor: Option<Cursor>,
        limit: i32,
    ) -> Result<DuePage, StoreError> {
        self.query_pending(
            PUBLISH_INDEX,
            attr::PUBLISH_STATE,
            attr::PUBLISH_DUE_AT,
            now,
            cursor,
            limit,
        )
        .await
    }

    async fn mark_published(
        &self,
        id: &str,
        version: u64,
        at: Timestamp,
        count: u64,
    ) -> Result<bool, StoreError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.findings_table)
            .key(attr::ID, s(id))
            .condition_expression("#v = :v")
            .expression_attribute_names("#lpa", attr::LAST_PUBLISHED_AT)
            .expression_attribute_names("#lpc", attr::LAST_PUBLISHED_COUNT)
            .expression_attribute_names("#v", attr::VERSION)
            .expression_attribute_names("#ps", attr::PUBLISH_STATE)
            .expression_attribute_names("#pd", attr::PUBLISH_DUE_AT)
            .expression_attribute_values(":at", s(iso(at)))
            .expression_attribute_values(":count", n(count))
            .expression_attribute_values(":v", n(version))
            .expression_attribute_values(":next", n(version.saturating_add(1)));
        // With the Security Hub export on, what was published is due for import now, its
        // failed attempts (of an older version) forgotten.
        let update = if self.security_hub {
            update
                .update_expression(
                    "SET #lpa = :at, #lpc = :count, #v = :next, #hs = :pending, #hd = :at \
                     REMOVE #ps, #pd, #ha",
                )
                .expression_attribute_names("#hs", attr::SECURITY_HUB_STATE)
                .expression_attribute_names("#hd", attr::SECURITY_HUB_DUE_AT)
                .expression_attribute_names("#ha", attr::SECURITY_HUB_ATTEMPTS)
                .expression_attribute_values(":pending", s(PUBLISH_PENDING))
        } else {
            update.update_expression("SET #lpa = :at, #lpc = :count, #v = :next REMOVE #ps, #pd")
        };
        self.update_if(update).await
    }

    async fn query_hub_due(
        &self,
        now: Timestamp,
        cursor: Option<Cursor>,
        limit: i32,
    ) -> Result<DuePage, StoreError> {
        self.query_pending(
            SECURITY_HUB_INDEX,
            attr::SECURITY_HUB_STATE,
            attr::SECURITY_HUB_DUE_AT,
            now,
            cursor,
            limit,
        )
        .await
    }

    async fn mark_imported(
        &self,
        id: &str,
        version: u64,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        // Conditional on the version imported, so a newer version stays due; the version is
        // not bumped, so this never makes a publish or a detector write retry.
        let update = self
            .client
            .update_item()
            .table_name(&self.findings_table)
            .key(attr::ID, s(id))
            .update_expression("SET #hi = :at REMOVE #hs, #hd, #ha")
            .condition_expression("#v = :v")
            .expression_attribute_names("#hi", attr::SECURITY_HUB_IMPORTED_AT)
            .expression_attribute_names("#hs", attr::SECURITY_HUB_STATE)
            .expression_attribute_names("#hd", attr::SECURITY_HUB_DUE_AT)
            .expression_attribute_names("#ha", attr::SECURITY_HUB_ATTEMPTS)
            .expression_attribute_names("#v", attr::VERSION)
            .expression_attribute_values(":at", s(iso(at)))
            .expression_attribute_values(":v", n(version));
        self.update_if(update).await
    }

    async fn defer_import(
        &self,
        id: &str,
        version: u64,
        due: Timestamp,
        attempts: u32,
    ) -> Result<bool, StoreError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.findings_table)
            .key(attr::ID, s(id))
            .update_expression("SET #hd = :due, #ha = :n")
            .condition_expression("#v = :v AND #hs = :pending")
            .expression_attribute_names("#hd", attr::SECURITY_HUB_DUE_AT)
            .expression_attribute_names("#ha", attr::SECURITY_HUB_ATTEMPTS)
            .expression_attribute_names("#hs", attr::SECURITY_HUB_STATE)
            .expression_attribute_names("#v", attr::VERSION)
            .expression_attribute_values(":due", s(iso(due)))
            .expression_attribute_values(":n", n(attempts))
            .expression_attribute_values(":pending", s(PUBLISH_PENDING))
            .expression_attribute_values(":v", n(version));
        self.update_if(update).await
    }

    async fn forget_import(&self, id: &str, version: u64) -> Result<bool, StoreError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.findings_table)
            .key(attr::ID, s(id))
            .update_expression("REMOVE #hs, #hd, #ha")
            .condition_expression("#v = :v")
            .expression_attribute_names("#hs", attr::SECURITY_HUB_STATE)
            .expression_attribute_names("#hd", attr::SECURITY_HUB_DUE_AT)
            .expression_attribute_names("#ha", attr::SECURITY_HUB_ATTEMPTS)
            .expression_attribute_names("#v", attr::VERSION)
            .expression_attribute_values(":v", n(version));
        self.update_if(update).await
    }
}

/// HeartbeatsTable's partition key: the cluster's ARN, or its name for an agent that sent none
/// ([`HeartbeatRecord::cluster_key`]). The sort key is `nodeName`.
pub const HEARTBEAT_KEY: &str = "cluster";

/// HeartbeatsTable in DynamoDB.
#[derive(Clone, Debug)]
pub struct DynamoHeartbeatStore {
    client: Client,
    table: String,
}

impl DynamoHeartbeatStore {
    pub fn new(client: Client, table: &str) -> Self {
        DynamoHeartbeatStore {
            client,
            table: table.to_owned(),
        }
    }
}

/// The HeartbeatsTable item for a heartbeat.
pub fn heartbeat_item(r: &HeartbeatRecord) -> Item {
    let mut item = Item::new();
    item.insert(HEARTBEAT_KEY.to_owned(), s(r.cluster_key()));
    if let Some(arn) = &r.cluster_arn {
        item.insert("clusterArn".to_owned(), s(arn));
    }
    for (k, v) in [
        ("clusterName", &r.cluster_name),
        ("nodeName", &r.node_name),
        ("agentId", &r.agent_id),
        ("agentVersion", &r.agent_version),
        ("kernelRelease", &r.kernel_release),
        ("lastSeen", &r.last_seen),
        ("receivedAt", &r.received_at),
        ("probes", &r.probes_json),
        ("coverage", &r.coverage.as_str().to_owned()),
        ("blindingReasons", &r.blinding_json),
    ] {
        // Key attributes are always set (an empty one is refused by DynamoDB, as it should
        // be: the agent always names its cluster and node).
        if !v.is_empty() || k == "nodeName" {
            item.insert(k.to_owned(), s(v));
        }
    }
    for (k, v) in [
        ("probesAttached", r.probes_attached),
        ("probesFailed", r.probes_failed),
        ("kernelRingbufFull", r.kernel_ringbuf_full),
        ("kernelNoScratch", r.kernel_no_scratch),
        ("userQueueFull", r.user_queue_full),
        ("spoolDropped", r.spool_dropped),
        ("spoolMessages", r.spool_messages),
        ("spoolBytes", r.spool_bytes),
        ("eventsSent", r.events_sent),
        ("uptimeSeconds", r.uptime_seconds),
        ("nextSequence", r.next_sequence),
    ] {
        item.insert(k.to_owned(), n(v));
    }
    item.insert(attr::EXPIRES_AT.to_owned(), n(r.expires_at));
    item
}

/// Reads a HeartbeatsTable item back. Lenient: an attribute an older detector did not write
/// reads as empty or zero (`coverage` as `HEALTHY`, `blindingReasons` as `[]`).
pub fn heartbeat_from_item(item: &Item) -> Result<HeartbeatRecord, StoreError> {
    let text = |k: &str| get_s(item, k).unwrap_or_default().to_owned();
    let num = |k: &str| get_u64(item, k).unwrap_or_default();
    let (cluster_name, node_name) = (text("clusterName"), text("nodeName"));
    if cluster_name.is_empty() || node_name.is_empty() {
        return Err(StoreError::Corrupt {
            key: format!("{cluster_name}/{node_name}"),
            reason: "a heartbeat row without clusterName or nodeName".into(),
        });
    }
    Ok(HeartbeatRecord {
        cluster_name,
        cluster_arn: get_s(item, "clusterArn").map(str::to_owned),
        node_name,
        agent_id: text("agentId"),
        agent_version: text("agentVersion"),
        kernel_release: text("kernelRelease"),
        last_seen: text("lastSeen"),
        received_at: text("receivedAt"),
        probes_json: get_s(item, "probes").unwrap_or("[]").to_owned(),
        probes_attached: num("probesAttached"),
        probes_failed: num("probesFailed"),
        kernel_ringbuf_full: num("kernelRingbufFull"),
        kernel_no_scratch: num("kernelNoScratch"),
        user_queue_full: num("userQueueFull"),
        spool_dropped: num("spoolDropped"),
        spool_messages: num("spoolMessages"),
        spool_bytes: num("spoolBytes"),
        events_sent: num("eventsSent"),
        uptime_seconds: num("uptimeSeconds"),
        next_sequence: num("nextSequence"),
        coverage: match get_s(item, "coverage") {
            Some("DEGRADED") => Coverage::Degraded,
            _ => Coverage::Healthy,
        },
        blinding_json: get_s(item, "blindingReasons").unwrap_or("[]").to_owned(),
        expires_at: item
            .get(attr::EXPIRES_AT)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or_default(),
    })
}

impl DynamoHeartbeatStore {
    /// Every row of one partition.
    async fn partition(&self, key: &str, out: &mut Vec<HeartbeatRecord>) -> Result<(), StoreError> {
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#c = :c")
                .expression_attribute_names("#c", HEARTBEAT_KEY)
                .expression_attribute_values(":c", s(key))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| aws_error("Query", &e))?;
            for item in page.items() {
                match heartbeat_from_item(item) {
                    Ok(r) => out.push(r),
                    Err(e) => tracing::warn!(error = %e, "unreadable heartbeat row skipped"),
                }
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(()),
            }
        }
    }
}

impl HeartbeatReader for DynamoHeartbeatStore {
    async fn cluster_heartbeats(
        &self,
        arn: &str,
        name: &str,
    ) -> Result<Vec<HeartbeatRecord>, StoreError> {
        let mut out = Vec::new();
        self.partition(arn, &mut out).await?;
        self.partition(name, &mut out).await?;
        Ok(latest_per_node(out))
    }
}

impl HeartbeatStore for DynamoHeartbeatStore {
    async fn put(&self, record: &HeartbeatRecord) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(heartbeat_item(record)))
            .condition_expression("attribute_not_exists(#c) OR #ls <= :ls")
            .expression_attribute_names("#c", HEARTBEAT_KEY)
            .expression_attribute_names("#ls", "lastSeen")
            .expression_attribute_values(":ls", s(&record.last_seen))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(aws_error("PutItem", &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use peregrine_finding::{
        EksClusterDetails, FindingEnv, NewFinding, Resource, RuleExplanation, RuntimeContext,
    };

    #[test]
    fn items_round_trip_with_index_attributes() {
        let env = FindingEnv {
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            partition: "aws".into(),
            cluster_name: "prod".into(),
            ..FindingEnv::default()
        };
        let now = parse_iso("2026-11-24T10:00:00.5Z").unwrap();
        let finding = Finding::new(
            &env,
            NewFinding {
                finding_type: "Execution:Runtime/NewBinaryExecuted".into(),
                severity: 5.0,
                title: "t".into(),
                description: "d".into(),
                aggregation_key: "k".into(),
                rule: RuleExplanation::default(),
                process: None,
                context: RuntimeContext::default(),
                resource: Resource {
                    resource_type: "EKSCluster".into(),
                    eks_cluster_details: Some(EksClusterDetails {
                        name: "prod".into(),
                        ..EksClusterDetails::default()
                    }),
                    ..Resource::default()
                },
                event_time: now,
                now,
            },
        );
        let stored = StoredFinding {
            finding,
            version: 7,
            outbox: Outbox {
                pending_due: Some(now),
                last_published_at: parse_iso("2026-11-24T09:00:00Z"),
                last_published_count: Some(3),
                security_hub: Some(HubPending {
                    due: parse_iso("2026-11-24T09:00:00Z").unwrap(),
                    attempts: 2,
                }),
                last_imported_at: parse_iso("2026-11-24T08:00:00Z"),
            },
            expires_at: Some(1_772_000_000),
        };
        let item = finding_item(&stored).unwrap();
        assert_eq!(get_s(&item, "severityLabel"), Some("Medium"));
        assert_eq!(get_s(&item, "clusterName"), Some("prod"));
        assert_eq!(get_s(&item, "updatedDay"), Some("2026-11-24"));
        assert_eq!(get_s(&item, "updatedAt"), Some("2026-11-24T10:00:00.500Z"));
        assert_eq!(get_s(&item, "publishState"), Some("PENDING"));
        assert_eq!(item.get("severity").unwrap().as_n().unwrap(), "5");
        assert_eq!(get_s(&item, "securityHubState"), Some("PENDING"));
        assert_eq!(
            get_s(&item, "securityHubDueAt"),
            Some("2026-11-24T09:00:00.000Z")
        );
        assert_eq!(get_u64(&item, "securityHubAttempts"), Some(2));
        assert_eq!(stored_finding(&item).unwrap(), stored);

        // Published: the sparse index attributes are gone.
        let published = StoredFinding {
            outbox: Outbox {
                pending_due: None,
                security_hub: None,
                ..stored.outbox
            },
            ..stored
        };
        let item = finding_item(&published).unwrap();
        assert!(!item.contains_key("publishState") && !item.contains_key("publishDueAt"));
        assert!(!item.contains_key("securityHubState") && !item.contains_key("securityHubDueAt"));
        assert_eq!(stored_finding(&item).unwrap(), published);

        let mut broken = item.clone();
        broken.insert("finding".into(), s("{"));
        assert!(matches!(
            stored_finding(&broken),
            Err(StoreError::Corrupt { .. })
        ));
    }
}

//! The adapters the functions use, behind small traits: the findings store (with the batch
//! dedupe markers), the findings bus, Security Hub and the heartbeat store. DynamoDB, EventBridge
//! and Security Hub implement them in `dynamo.rs`, `eventbridge.rs` and `securityhub.rs`;
//! `memory.rs` has in-memory ones for unit tests of the aggregation and publishing logic.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::future::Future;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use peregrine_aws::Failure;
use peregrine_criteria::Filter;
use peregrine_event::Timestamp;
use peregrine_finding::asff::AsffFinding;
use peregrine_finding::eventbridge::PutEventsEntry;

use crate::model::{ChunkOutcome, ChunkWrite, StoredFinding};

/// A short description: the service's code and message, else the whole error chain (which,
/// for a service error, would include the raw response).
pub(crate) fn error_text<E, R>(e: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: Debug,
{
    match e.as_service_error() {
        Some(se) => format!(
            "{}: {}",
            se.code().unwrap_or("unknown error"),
            se.message().unwrap_or_default()
        ),
        None => DisplayErrorContext(e).to_string(),
    }
}

/// A failed store call.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An AWS call failed; `failure` says whether retrying can help.
    #[error("{operation} failed ({failure:?}): {message}")]
    Aws {
        operation: &'static str,
        failure: Failure,
        message: String,
    },
    /// A stored item cannot be read back (written by something else, or damaged).
    #[error("stored item {key} is unreadable: {reason}")]
    Corrupt { key: String, reason: String },
}

impl StoreError {
    pub fn failure(&self) -> Failure {
        match self {
            StoreError::Aws { failure, .. } => *failure,
            StoreError::Corrupt { .. } => Failure::Invalid,
        }
    }

    /// Worth retrying within the same invocation: throttling or an unavailable endpoint.
    pub fn is_transient(&self) -> bool {
        matches!(self.failure(), Failure::Throttled | Failure::Unavailable)
    }
}

/// Where the outbox query stopped; pass it back to continue. Opaque: the key attributes of
/// the last item read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cursor(pub BTreeMap<String, String>);

/// One page of findings whose publish is due.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DuePage {
    pub ids: Vec<String>,
    pub next: Option<Cursor>,
}

/// FindingsTable and BatchDedupeTable.
pub trait FindingStore: Send + Sync {
    /// Strongly consistent reads of the given ids; absent ids are missing from the map.
    fn get_many(
        &self,
        ids: &[String],
    ) -> impl Future<Output = Result<HashMap<String, StoredFinding>, StoreError>> + Send;

    /// Writes a chunk atomically: its dedupe marker (only if absent) and every finding (only
    /// if still at the version read, or still absent for a new one).
    fn transact_chunk(
        &self,
        chunk: &ChunkWrite,
    ) -> impl Future<Output = Result<ChunkOutcome, StoreError>> + Send;

    /// Findings with `publishState = PENDING` and `publishDueAt <= now`, oldest due first, at
    /// most `limit` per page (from the `byPublishState` index, so possibly a little stale).
    fn query_due(
        &self,
        now: Timestamp,
        cursor: Option<Cursor>,
        limit: i32,
    ) -> impl Future<Output = Result<DuePage, StoreError>> + Send;

    /// Records a publish: clears the pending state and sets `lastPublishedAt` and
    /// `lastPublishedCount`, only if the finding is still at `version` (the one published).
    /// `Ok(false)` when it changed meanwhile: it stays pending and is published again with
    /// the newer data. With the Security Hub export on, it also makes an import due at `at`.
    fn mark_published(
        &self,
        id: &str,
        version: u64,
        at: Timestamp,
        count: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Findings with `securityHubState = PENDING` and `securityHubDueAt <= now`, oldest due
    /// first (the `bySecurityHubState` index).
    fn query_hub_due(
        &self,
        now: Timestamp,
        cursor: Option<Cursor>,
        limit: i32,
    ) -> impl Future<Output = Result<DuePage, StoreError>> + Send;

    /// Records an import into Security Hub: clears the pending import and sets
    /// `securityHubImportedAt`, only if the finding is still at `version`. `Ok(false)` when it
    /// changed meanwhile: the newer version stays due. The version is not bumped.
    fn mark_imported(
        &self,
        id: &str,
        version: u64,
        at: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Sets a failed import back: due again at `due`, after `attempts` failed attempts, only if
    /// the finding is still at `version` and pending. The version is not bumped.
    fn defer_import(
        &self,
        id: &str,
        version: u64,
        due: Timestamp,
        attempts: u32,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Drops a pending import that will never be made (a finding of another account), only if
    /// the finding is still at `version`. The version is not bumped.
    fn forget_import(
        &self,
        id: &str,
        version: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The suppression filters (FiltersTable), read consistently, in rank order. A store
    /// without a filters table has none.
    fn filters(&self) -> impl Future<Output = Result<Vec<Filter>, StoreError>> + Send {
        async { Ok(Vec::new()) }
    }
}

/// A failed BatchImportFindings call (as a whole; per-finding failures are
/// [`ImportResult::Failed`]).
#[derive(Debug, thiserror::Error)]
#[error("BatchImportFindings failed ({failure:?}): {code}: {message}")]
pub struct HubError {
    pub failure: Failure,
    /// The service's error code (`InvalidAccessException`: Security Hub is not enabled).
    pub code: String,
    pub message: String,
}

/// What became of one finding of a BatchImportFindings call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportResult {
    Imported,
    Failed { code: String, message: String },
}

/// Security Hub, as a finding provider sees it.
pub trait FindingHub: Send + Sync {
    /// Imports at most 100 findings in one call; one result per finding, in order.
    fn batch_import(
        &self,
        findings: &[AsffFinding],
    ) -> impl Future<Output = Result<Vec<ImportResult>, HubError>> + Send;
}

/// A failed PutEvents call (as a whole; per-entry failures are [`EntryResult::Failed`]).
#[derive(Debug, thiserror::Error)]
#[error("PutEvents failed ({failure:?}): {message}")]
pub struct BusError {
    pub failure: Failure,
    pub message: String,
}

/// What became of one PutEvents entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryResult {
    Published { event_id: String },
    Failed { code: String, message: String },
}

/// The findings bus (EventBridge).
pub trait FindingBus: Send + Sync {
    /// Puts at most 10 entries (and at most 256 KiB) in one call; one result per entry, in
    /// order.
    fn put_events(
        &self,
        entries: &[PutEventsEntry],
    ) -> impl Future<Output = Result<Vec<EntryResult>, BusError>> + Send;
}

/// A node's coverage as its last heartbeat reports it (the row's `coverage`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Coverage {
    /// The agent reports no reason to be blind.
    #[default]
    Healthy,
    /// The agent reports itself blind (sustained drops, probes not attached, a restart loop);
    /// the row's `blindingReasons` say why.
    Degraded,
}

impl Coverage {
    pub fn as_str(self) -> &'static str {
        match self {
            Coverage::Healthy => "HEALTHY",
            Coverage::Degraded => "DEGRADED",
        }
    }
}

/// One agent heartbeat as stored in HeartbeatsTable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatRecord {
    pub cluster_name: String,
    /// The cluster's ARN when the agent or its sender binding gave it.
    pub cluster_arn: Option<String>,
    pub node_name: String,
    pub agent_id: String,
    pub agent_version: String,
    pub kernel_release: String,
    /// The heartbeat's own time (ISO-8601).
    pub last_seen: String,
    /// When the detector stored it (ISO-8601).
    pub received_at: String,
    /// The probes as a JSON array of `{program, target, state, error}`.
    pub probes_json: String,
    pub probes_attached: u64,
    pub probes_failed: u64,
    pub kernel_ringbuf_full: u64,
    pub kernel_no_scratch: u64,
    pub user_queue_full: u64,
    pub spool_dropped: u64,
    pub spool_messages: u64,
    pub spool_bytes: u64,
    pub events_sent: u64,
    pub uptime_seconds: u64,
    /// The sequence number the agent's next batch will carry.
    pub next_sequence: u64,
    /// `DEGRADED` when the heartbeat carries blinding reasons, else `HEALTHY`.
    pub coverage: Coverage,
    /// The blinding reasons as a JSON array of `{code, detail}`; `[]` when healthy.
    pub blinding_json: String,
    /// Epoch seconds: the table's TTL attribute.
    pub expires_at: i64,
}

/// HeartbeatsTable.
pub trait HeartbeatStore: Send + Sync {
    /// Stores the heartbeat unless a newer one from the same node is already stored;
    /// `Ok(false)` when it was older (a late redelivery) and left alone.
    fn put(
        &self,
        record: &HeartbeatRecord,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

impl HeartbeatRecord {
    /// The table's partition key (`cluster`): the cluster's ARN when known, else its name. EKS
    /// names cannot hold a `:`, so the two never collide.
    pub fn cluster_key(&self) -> &str {
        self.cluster_arn.as_deref().unwrap_or(&self.cluster_name)
    }
}

/// Keeps, per node, the row with the latest `lastSeen` (ISO-8601 UTC, so it orders as text).
pub fn latest_per_node(rows: Vec<HeartbeatRecord>) -> Vec<HeartbeatRecord> {
    let mut by_node: std::collections::BTreeMap<String, HeartbeatRecord> = Default::default();
    for r in rows {
        match by_node.get(&r.node_name) {
            Some(old) if old.last_seen >= r.last_seen => {}
            _ => {
                by_node.insert(r.node_name.clone(), r);
            }
        }
    }
    by_node.into_values().collect()
}

/// HeartbeatsTable, read (the coverage sweeper).
pub trait HeartbeatReader: Send + Sync {
    /// Every row of a cluster, whatever its age: those its agents keyed by `arn` and those
    /// keyed by its bare `name` (agents that were not told the ARN, which any same-named
    /// cluster in another account or region shares). One row per node: the latest.
    fn cluster_heartbeats(
        &self,
        arn: &str,
        name: &str,
    ) -> impl Future<Output = Result<Vec<HeartbeatRecord>, StoreError>> + Send;
}

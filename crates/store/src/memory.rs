//! In-memory adapters for fast unit tests of the aggregation and publishing logic. They follow
//! the DynamoDB and EventBridge semantics the functions rely on (conditional writes,
//! all-or-nothing chunks, per-entry results); the moto tests prove the real ones.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use peregrine_aws::Failure;
use peregrine_event::Timestamp;
use peregrine_finding::asff::AsffFinding;
use peregrine_finding::eventbridge::PutEventsEntry;

use crate::model::{ChunkOutcome, ChunkWrite, HubPending, Outbox, StoredFinding, iso};
use crate::traits::{
    BusError, Cursor, DuePage, EntryResult, FindingBus, FindingHub, FindingStore, HeartbeatReader,
    HeartbeatRecord, HeartbeatStore, HubError, ImportResult, StoreError, latest_per_node,
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

type Interference = Box<dyn FnOnce(&mut HashMap<String, StoredFinding>) + Send>;

/// Findings and dedupe markers in memory.
#[derive(Default)]
pub struct MemoryFindingStore {
    findings: Mutex<HashMap<String, StoredFinding>>,
    dedupe: Mutex<HashSet<String>>,
    /// Runs just before the next transaction, as a concurrent writer would.
    interfere: Mutex<Vec<Interference>>,
    transactions: Mutex<usize>,
    /// (transactions to let through, then how many to fail as throttled).
    throttle: Mutex<(usize, usize)>,
    security_hub: bool,
    filters: Mutex<Vec<peregrine_criteria::Filter>>,
    /// Reads of the filters to fail (as throttled) before they succeed again.
    fail_filters: Mutex<usize>,
}

impl MemoryFindingStore {
    /// Replaces the suppression filters.
    pub fn set_filters(&self, filters: Vec<peregrine_criteria::Filter>) {
        *lock(&self.filters) = filters;
    }

    /// Makes the next `n` reads of the filters fail as DynamoDB throttling would.
    pub fn fail_filters_next(&self, n: usize) {
        *lock(&self.fail_filters) = n;
    }

    pub fn new() -> Self {
        Self::default()
    }

    /// With the Security Hub export on, recording a publish also makes an import due.
    pub fn with_security_hub_export(mut self, on: bool) -> Self {
        self.security_hub = on;
        self
    }

    /// A snapshot of one finding.
    pub fn get(&self, id: &str) -> Option<StoredFinding> {
        lock(&self.findings).get(id).cloned()
    }

    /// A snapshot of every finding.
    pub fn all(&self) -> Vec<StoredFinding> {
        lock(&self.findings).values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        lock(&self.findings).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dedupe_keys(&self) -> Vec<String> {
        let mut v: Vec<String> = lock(&self.dedupe).iter().cloned().collect();
        v.sort();
        v
    }

    /// Transactions attempted so far (applied or not).
    pub fn transactions(&self) -> usize {
        *lock(&self.transactions)
    }

    /// Makes the next `n` transactions fail as DynamoDB throttling would.
    pub fn throttle_next(&self, n: usize) {
        self.throttle_after(0, n);
    }

    /// Lets `skip` transactions through, then fails the next `n` as throttled.
    pub fn throttle_after(&self, skip: usize, n: usize) {
        *lock(&self.throttle) = (skip, n);
    }

    /// Stores a finding as is, as another writer would.
    pub fn insert(&self, f: StoredFinding) {
        lock(&self.findings).insert(f.finding.id.clone(), f);
    }

    /// Makes a concurrent writer change the table between the next read and write.
    pub fn interfere_once(
        &self,
        f: impl FnOnce(&mut HashMap<String, StoredFinding>) + Send + 'static,
    ) {
        lock(&self.interfere).push(Box::new(f));
    }
}

impl FindingStore for MemoryFindingStore {
    async fn filters(&self) -> Result<Vec<peregrine_criteria::Filter>, StoreError> {
        let mut fail = lock(&self.fail_filters);
        if *fail > 0 {
            *fail -= 1;
            return Err(StoreError::Aws {
                operation: "Scan",
                failure: Failure::Throttled,
                message: "throttled (in-memory store)".into(),
            });
        }
        let mut f = lock(&self.filters).clone();
        f.sort_by(|a, b| (a.rank, &a.name).cmp(&(b.rank, &b.name)));
        Ok(f)
    }

    async fn get_many(&self, ids: &[String]) -> Result<HashMap<String, StoredFinding>, StoreError> {
        let findings = lock(&self.findings);
        Ok(ids
            .iter()
            .filter_map(|id| findings.get(id).map(|f| (id.clone(), f.clone())))
            .collect())
    }

    async fn transact_chunk(&self, chunk: &ChunkWrite) -> Result<ChunkOutcome, StoreError> {
        *lock(&self.transactions) += 1;
        {
            let mut throttle = lock(&self.throttle);
            if throttle.0 > 0 {
                throttle.0 -= 1;
            } else if throttle.1 > 0 {
                throttle.1 -= 1;
                return Err(StoreError::Aws {
                    operation: "TransactWriteItems",
                    failure: Failure::Throttled,
                    message: "injected throttling".into(),
                });
            }
        }
        let pending: Vec<Interference> = lock(&self.interfere).drain(..).collect();
        let mut findings = lock(&self.findings);
        for f in pending {
            f(&mut findings);
        }
        let mut dedupe = lock(&self.dedupe);
        if dedupe.contains(&chunk.dedupe_key) {
            return Ok(ChunkOutcome::AlreadyApplied);
        }
        let conflict = chunk
            .writes
            .iter()
            .any(|w| findings.get(&w.item.finding.id).map(|f| f.version) != w.expected_version);
        if conflict {
            return Ok(ChunkOutcome::Conflict);
        }
        dedupe.insert(chunk.dedupe_key.clone());
        for w in &chunk.writes {
            findings.insert(w.item.finding.id.clone(), w.item.clone());
        }
        Ok(ChunkOutcome::Applied)
    }

    async fn query_due(
        &self,
        now: Timestamp,
        cursor: Option<Cursor>,
        limit: i32,
    ) -> Result<DuePage, StoreError> {
        Ok(self.due_page(now, cursor, limit, "publishDueAt", |o| o.pending_due))
    }

    async fn mark_published(
        &self,
        id: &str,
        version: u64,
        at: Timestamp,
        count: u64,
    ) -> Result<bool, StoreError> {
        let mut findings = lock(&self.findings);
        match findings.get_mut(id) {
            Some(f) if f.version == version => {
                f.version += 1;
                f.outbox.pending_due = None;
                f.outbox.last_published_at = Some(at);
                f.outbox.last_published_count = Some(count);
                if self.security_hub {
                    f.outbox.security_hub = Some(HubPending {
                        due: at,
                        attempts: 0,
                    });
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn query_hub_due(
        &self,
        now: Timestamp,
        cursor: Option<Cursor>,
        limit: i32,
    ) -> Result<DuePage, StoreError> {
        Ok(self.due_page(now, cursor, limit, "securityHubDueAt", |o| {
            o.security_hub.map(|h| h.due)
        }))
    }

    async fn mark_imported(
        &self,
        id: &str,
        version: u64,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut findings = lock(&self.findings);
        match findings.get_mut(id) {
            Some(f) if f.version == version => {
                f.outbox.security_hub = None;
                f.outbox.last_imported_at = Some(at);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn defer_import(
        &self,
        id: &str,
        version: u64,
        due: Timestamp,
        attempts: u32,
    ) -> Result<bool, StoreError> {
        let mut findings = lock(&self.findings);
        match findings.get_mut(id) {
            Some(f) if f.version == version && f.outbox.security_hub.is_some() => {
                f.outbox.security_hub = Some(HubPending { due, attempts });
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn forget_import(&self, id: &str, version: u64) -> Result<bool, StoreError> {
        let mut findings = lock(&self.findings);
        match findings.get_mut(id) {
            Some(f) if f.version == version => {
                f.outbox.security_hub = None;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

impl MemoryFindingStore {
    /// One page of an outbox, in (due, id) order as the sparse indexes sort it.
    fn due_page(
        &self,
        now: Timestamp,
        cursor: Option<Cursor>,
        limit: i32,
        due_attr: &str,
        pending: impl Fn(&Outbox) -> Option<Timestamp>,
    ) -> DuePage {
        let findings = lock(&self.findings);
        let mut due: Vec<(String, String)> = findings
            .values()
            .filter_map(|f| {
                pending(&f.outbox)
                    .filter(|d| iso(*d) <= iso(now))
                    .map(|d| (iso(d), f.finding.id.clone()))
            })
            .collect();
        due.sort();
        let start = cursor
            .and_then(|c| Some((c.0.get(due_attr)?.clone(), c.0.get("id")?.clone())))
            .map(|after| due.partition_point(|x| x <= &after))
            .unwrap_or(0);
        let limit = usize::try_from(limit.max(1)).unwrap_or(1);
        let page: Vec<(String, String)> = due.iter().skip(start).take(limit).cloned().collect();
        let next = if start + page.len() < due.len() {
            page.last().map(|(d, id)| {
                Cursor(BTreeMap::from([
                    (due_attr.to_owned(), d.clone()),
                    ("id".to_owned(), id.clone()),
                ]))
            })
        } else {
            None
        };
        DuePage {
            ids: page.into_iter().map(|(_, id)| id).collect(),
            next,
        }
    }
}

/// A bus that records what it was given, and can be told to fail.
#[derive(Default)]
pub struct MemoryBus {
    events: Mutex<Vec<PutEventsEntry>>,
    failing: Mutex<Option<String>>,
    calls: Mutex<usize>,
}

impl MemoryBus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every entry accepted so far.
    pub fn events(&self) -> Vec<PutEventsEntry> {
        lock(&self.events).clone()
    }

    pub fn calls(&self) -> usize {
        *lock(&self.calls)
    }

    /// Fails every entry with this error code until called with `None`.
    pub fn fail_entries(&self, code: Option<&str>) {
        *lock(&self.failing) = code.map(str::to_owned);
    }
}

impl FindingBus for MemoryBus {
    async fn put_events(&self, entries: &[PutEventsEntry]) -> Result<Vec<EntryResult>, BusError> {
        *lock(&self.calls) += 1;
        if entries.len() > 10 {
            return Err(BusError {
                failure: Failure::Invalid,
                message: format!("{} entries, over 10", entries.len()),
            });
        }
        let failing = lock(&self.failing).clone();
        let mut events = lock(&self.events);
        Ok(entries
            .iter()
            .map(|e| match &failing {
                Some(code) => EntryResult::Failed {
                    code: code.clone(),
                    message: "injected".into(),
                },
                None => {
                    events.push(e.clone());
                    EntryResult::Published {
                        event_id: format!("event-{}", events.len()),
                    }
                }
            })
            .collect())
    }
}

/// Security Hub in memory: the findings it took, by `Id` (an import of the same `Id` replaces
/// it, as Security Hub updates it); it can be told to refuse calls or single findings.
#[derive(Default)]
pub struct MemoryHub {
    findings: Mutex<BTreeMap<String, AsffFinding>>,
    /// Errors the next calls fail with, in order.
    refusals: Mutex<Vec<HubError>>,
    /// Finding ids refused with this error code, call after call.
    failing: Mutex<BTreeMap<String, String>>,
    calls: Mutex<usize>,
}

impl MemoryHub {
    pub fn new() -> Self {
        Self::default()
    }

    /// What Security Hub holds now, by `Id`.
    pub fn findings(&self) -> BTreeMap<String, AsffFinding> {
        lock(&self.findings).clone()
    }

    pub fn calls(&self) -> usize {
        *lock(&self.calls)
    }

    /// Fails the next call with this error (queued after earlier ones).
    pub fn refuse_next(&self, e: HubError) {
        lock(&self.refusals).push(e);
    }

    /// Refuses the finding with this `Id` with this error code, or takes it again (`None`).
    pub fn fail_finding(&self, id: &str, code: Option<&str>) {
        let mut failing = lock(&self.failing);
        match code {
            Some(c) => {
                failing.insert(id.to_owned(), c.to_owned());
            }
            None => {
                failing.remove(id);
            }
        }
    }
}

impl FindingHub for MemoryHub {
    async fn batch_import(&self, findings: &[AsffFinding]) -> Result<Vec<ImportResult>, HubError> {
        *lock(&self.calls) += 1;
        {
            let mut refusals = lock(&self.refusals);
            if !refusals.is_empty() {
                return Err(refusals.remove(0));
            }
        }
        if findings.len() > peregrine_finding::asff::MAX_FINDINGS_PER_CALL {
            return Err(HubError {
                failure: Failure::Invalid,
                code: "InvalidInputException".into(),
                message: format!("{} findings, over 100", findings.len()),
            });
        }
        let failing = lock(&self.failing).clone();
        let mut held = lock(&self.findings);
        Ok(findings
            .iter()
            .map(|f| match failing.get(&f.id) {
                Some(code) => ImportResult::Failed {
                    code: code.clone(),
                    message: "injected".into(),
                },
                None => {
                    held.insert(f.id.clone(), f.clone());
                    ImportResult::Imported
                }
            })
            .collect())
    }
}

/// Heartbeats in memory, keyed like the table.
#[derive(Default)]
pub struct MemoryHeartbeats {
    rows: Mutex<BTreeMap<(String, String), HeartbeatRecord>>,
}

impl MemoryHeartbeats {
    pub fn new() -> Self {
        Self::default()
    }

    /// The row of `node` under `cluster` (the cluster's ARN, or its name for an agent that did
    /// not send one).
    pub fn get(&self, cluster: &str, node: &str) -> Option<HeartbeatRecord> {
        lock(&self.rows)
            .get(&(cluster.to_owned(), node.to_owned()))
            .cloned()
    }
}

impl HeartbeatStore for MemoryHeartbeats {
    async fn put(&self, record: &HeartbeatRecord) -> Result<bool, StoreError> {
        let mut rows = lock(&self.rows);
        let key = (record.cluster_key().to_owned(), record.node_name.clone());
        if rows
            .get(&key)
            .is_some_and(|r| r.last_seen > record.last_seen)
        {
            return Ok(false);
        }
        rows.insert(key, record.clone());
        Ok(true)
    }
}

impl HeartbeatReader for MemoryHeartbeats {
    async fn cluster_heartbeats(
        &self,
        arn: &str,
        name: &str,
    ) -> Result<Vec<HeartbeatRecord>, StoreError> {
        let rows: Vec<HeartbeatRecord> = lock(&self.rows)
            .iter()
            .filter(|((c, _), _)| c == arn || c == name)
            .map(|(_, r)| r.clone())
            .collect();
        Ok(latest_per_node(rows))
    }
}

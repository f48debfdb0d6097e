//! In-memory adapters for fast unit tests of the aggregation and publishing logic. They follow
//! the DynamoDB and EventBridge semantics the functions rely on (conditional writes,
//! all-or-nothing chunks, per-entry results); the moto tests prove the real ones.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use peregrine_aws::Failure;
use peregrine_event::Timestamp;
use peregrine_finding::eventbridge::PutEventsEntry;

use crate::model::{ChunkOutcome, ChunkWrite, StoredFinding, iso};
use crate::traits::{
    BusError, Cursor, DuePage, EntryResult, FindingBus, FindingStore, HeartbeatReader,
    HeartbeatRecord, HeartbeatStore, StoreError, latest_per_node,
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
}

impl MemoryFindingStore {
    pub fn new() -> Self {
        Self::default()
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
        let findings = lock(&self.findings);
        // (due, id) order, as the index sorts by publishDueAt.
        let mut due: Vec<(String, String)> = findings
            .values()
            .filter_map(|f| {
                f.outbox
                    .pending_due
                    .filter(|d| iso(*d) <= iso(now))
                    .map(|d| (iso(d), f.finding.id.clone()))
            })
            .collect();
        due.sort();
        let start = cursor
            .and_then(|c| Some((c.0.get("publishDueAt")?.clone(), c.0.get("id")?.clone())))
            .map(|after| due.partition_point(|x| x <= &after))
            .unwrap_or(0);
        let limit = usize::try_from(limit.max(1)).unwrap_or(1);
        let page: Vec<(String, String)> = due.iter().skip(start).take(limit).cloned().collect();
        let next = if start + page.len() < due.len() {
            page.last().map(|(d, id)| {
                Cursor(BTreeMap::from([
                    ("publishDueAt".to_owned(), d.clone()),
                    ("id".to_owned(), id.clone()),
                ]))
            })
        } else {
            None
        };
        Ok(DuePage {
            ids: page.into_iter().map(|(_, id)| id).collect(),
            next,
        })
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
                Ok(true)
            }
            _ => Ok(false),
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

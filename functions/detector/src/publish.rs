//! Publishing findings on the bus, and the outbox publisher.
//!
//! A publish is recorded in the finding (pending state cleared, `lastPublishedAt`,
//! `lastPublishedCount`) only after PutEvents accepted its entry, and only if the finding is
//! still the version that was published. So a failed PutEvents never loses a finding (it stays
//! pending and the publisher retries it every minute), and an update that lands while a publish
//! is in flight is published again with the newer data.

use std::ops::Range;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use lambda_runtime::{Diagnostic, LambdaEvent};
use peregrine_event::Timestamp;
use peregrine_finding::FindingError;
use peregrine_finding::eventbridge::{self, MAX_ENTRY_BYTES, PutEventsEntry};
use serde::Serialize;

use crate::bus::EventBridgeBus;
use crate::config::Config;
use crate::dynamo::DynamoFindingStore;
use crate::model::StoredFinding;
use crate::store::{EntryResult, FindingBus, FindingStore, StoreError};

/// PutEvents takes at most 10 entries per call.
pub const MAX_ENTRIES_PER_CALL: usize = 10;
/// ... and at most 256 KiB per call, all entries together.
pub const MAX_CALL_BYTES: usize = 256 * 1024;
/// Findings read per outbox page (TransactGetItems takes 100).
const PAGE: i32 = 100;
/// The publisher stops starting pages this long before the invocation's deadline.
const DEADLINE_MARGIN: Duration = Duration::from_secs(5);

/// One finding to publish, with the version and count it is published at.
#[derive(Clone, Debug, PartialEq)]
pub struct PublishItem {
    pub id: String,
    pub version: u64,
    pub count: u64,
    pub entry: PutEventsEntry,
}

impl PublishItem {
    /// The PutEvents entry for a stored finding: `Source: peregrine`, `DetailType: Peregrine
    /// Finding`, the finding as `Detail`, and the cluster's ARN as the resource when known.
    pub fn new(s: &StoredFinding) -> Result<PublishItem, FindingError> {
        let mut entry = eventbridge::entry(&s.finding)?;
        if let Some(arn) = s
            .finding
            .resource
            .eks_cluster_details
            .as_ref()
            .and_then(|c| c.arn.clone())
        {
            entry.resources = vec![arn];
        }
        Ok(PublishItem {
            id: s.finding.id.clone(),
            version: s.version,
            count: s.finding.service.count,
            entry,
        })
    }
}

/// The size EventBridge counts for an entry (its time, source, detail-type, detail and
/// resources).
pub fn entry_bytes(e: &PutEventsEntry) -> usize {
    14 + e.source.len()
        + e.detail_type.len()
        + e.detail.len()
        + e.resources.iter().map(String::len).sum::<usize>()
}

/// Splits entries into PutEvents calls of at most [`MAX_ENTRIES_PER_CALL`] entries and
/// [`MAX_CALL_BYTES`].
pub fn call_ranges(entries: &[&PutEventsEntry]) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, e) in entries.iter().enumerate() {
        let b = entry_bytes(e).min(MAX_ENTRY_BYTES);
        if i > start && (i - start >= MAX_ENTRIES_PER_CALL || bytes + b > MAX_CALL_BYTES) {
            ranges.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += b;
    }
    if start < entries.len() {
        ranges.push(start..entries.len());
    }
    ranges
}

/// What became of a set of publishes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishCounts {
    /// Accepted by EventBridge.
    pub published: usize,
    /// Refused by EventBridge (the call or the entry): still pending.
    pub failed: usize,
    /// Published, but the finding changed meanwhile: still pending, with the newer data.
    pub superseded: usize,
    /// Published, but recording it failed: still pending, so it will be published again.
    pub unmarked: usize,
}

impl PublishCounts {
    pub fn add(&mut self, o: PublishCounts) {
        self.published += o.published;
        self.failed += o.failed;
        self.superseded += o.superseded;
        self.unmarked += o.unmarked;
    }

    /// Findings that are still pending after the attempt.
    pub fn still_pending(&self) -> usize {
        self.failed + self.superseded + self.unmarked
    }
}

/// Puts the items on the bus and records each accepted one in the store.
pub async fn send_and_mark<S: FindingStore, B: FindingBus>(
    store: &S,
    bus: &B,
    items: &[PublishItem],
    now: Timestamp,
) -> PublishCounts {
    let mut counts = PublishCounts::default();
    let entries: Vec<&PutEventsEntry> = items.iter().map(|i| &i.entry).collect();
    for range in call_ranges(&entries) {
        let (Some(batch), Some(batch_items)) = (entries.get(range.clone()), items.get(range))
        else {
            continue;
        };
        let owned: Vec<PutEventsEntry> = batch.iter().map(|e| (*e).clone()).collect();
        let results = match bus.put_events(&owned).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, entries = owned.len(), "PutEvents failed; the findings stay pending");
                counts.failed += owned.len();
                continue;
            }
        };
        for (item, result) in batch_items.iter().zip(results) {
            match result {
                EntryResult::Failed { code, message } => {
                    tracing::warn!(finding_id = %item.id, code = %code, message = %message, "PutEvents entry failed; the finding stays pending");
                    counts.failed += 1;
                }
                EntryResult::Published { event_id } => {
                    counts.published += 1;
                    match store
                        .mark_published(&item.id, item.version, now, item.count)
                        .await
                    {
                        Ok(true) => {
                            tracing::debug!(finding_id = %item.id, event_id = %event_id, count = item.count, "published")
                        }
                        Ok(false) => {
                            tracing::info!(finding_id = %item.id, "published, but the finding changed meanwhile; it stays pending with the newer data");
                            counts.superseded += 1;
                        }
                        Err(e) => {
                            tracing::warn!(finding_id = %item.id, error = %e, "published, but recording it failed; it will be published again");
                            counts.unmarked += 1;
                        }
                    }
                }
            }
        }
    }
    counts
}

/// The publisher's adapters and settings, built once per cold start.
pub struct PublisherDeps<S, B> {
    pub store: S,
    pub bus: B,
    pub config: Config,
}

/// The publisher's production adapters.
pub type AwsPublisherDeps = PublisherDeps<DynamoFindingStore, EventBridgeBus>;

impl AwsPublisherDeps {
    pub fn from_sdk(sdk: &SdkConfig, config: Config) -> Self {
        PublisherDeps {
            store: DynamoFindingStore::new(
                aws_sdk_dynamodb::Client::new(sdk),
                &config.findings_table,
                &config.dedupe_table,
            ),
            bus: EventBridgeBus::new(
                aws_sdk_eventbridge::Client::new(sdk),
                &config.event_bus_name,
            ),
            config,
        }
    }
}

/// A publisher run that could not complete; the next scheduled run repeats it.
#[derive(Debug, thiserror::Error)]
pub enum PublisherError {
    #[error("reading the outbox: {0}")]
    Store(#[from] StoreError),
}

impl From<PublisherError> for Diagnostic {
    fn from(e: PublisherError) -> Diagnostic {
        Diagnostic {
            error_type: "PublisherError".into(),
            error_message: e.to_string(),
        }
    }
}

/// What a publisher run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishSummary {
    /// Findings whose publish was due (confirmed by a consistent read).
    pub due: usize,
    /// Accepted by EventBridge.
    pub published: usize,
    /// Still pending after the run (failed, superseded by a newer version, or not recorded).
    pub still_pending: usize,
    /// Refused by EventBridge, or not publishable at all.
    pub failed: usize,
}

/// The publisher Lambda's handler: publishes every due finding.
pub async fn handle_schedule<S: FindingStore, B: FindingBus>(
    deps: &PublisherDeps<S, B>,
    event: LambdaEvent<serde_json::Value>,
) -> Result<PublishSummary, PublisherError> {
    let deadline = deadline_instant(event.context.deadline);
    publish_due(deps, Timestamp::now(), deadline).await
}

/// The invocation's deadline (epoch milliseconds, 0 when unknown) as an instant, less a margin.
fn deadline_instant(deadline_ms: u64) -> Option<Instant> {
    if deadline_ms == 0 {
        return None;
    }
    let now_ms = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_millis(),
    )
    .ok()?;
    let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms));
    Some(Instant::now() + left.saturating_sub(DEADLINE_MARGIN))
}

/// Publishes every finding due at `now`, page by page, until the outbox is drained or the
/// deadline nears. `now` is a parameter so tests can run the clock forward.
pub async fn publish_due<S: FindingStore, B: FindingBus>(
    deps: &PublisherDeps<S, B>,
    now: Timestamp,
    deadline: Option<Instant>,
) -> Result<PublishSummary, PublisherError> {
    let mut summary = PublishSummary::default();
    let mut counts = PublishCounts::default();
    let mut cursor = None;
    loop {
        let page = deps.store.query_due(now, cursor, PAGE).await?;
        // The index is eventually consistent: confirm each candidate with a consistent read
        // and publish what is stored now.
        let current = deps.store.get_many(&page.ids).await?;
        let mut items = Vec::new();
        for id in &page.ids {
            let Some(stored) = current.get(id) else {
                continue;
            };
            if stored.outbox.pending_due.is_none_or(|d| d > now) {
                continue;
            }
            summary.due += 1;
            match PublishItem::new(stored) {
                Ok(item) => items.push(item),
                Err(e) => {
                    tracing::error!(finding_id = %id, error = %e, "finding cannot be published");
                    summary.failed += 1;
                    summary.still_pending += 1;
                }
            }
        }
        counts.add(send_and_mark(&deps.store, &deps.bus, &items, now).await);
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            tracing::warn!(
                due = summary.due,
                "deadline near; the rest waits for the next run"
            );
            break;
        }
    }
    summary.published += counts.published;
    summary.failed += counts.failed;
    summary.still_pending += counts.still_pending();
    tracing::info!(
        due = summary.due,
        published = summary.published,
        still_pending = summary.still_pending,
        failed = summary.failed,
        "publisher run"
    );
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(detail_len: usize) -> PutEventsEntry {
        PutEventsEntry {
            source: "peregrine".into(),
            detail_type: "Peregrine Finding".into(),
            detail: "x".repeat(detail_len),
            resources: Vec::new(),
        }
    }

    #[test]
    fn calls_hold_at_most_ten_entries_and_256_kib() {
        let small: Vec<PutEventsEntry> = (0..23).map(|_| entry(100)).collect();
        let refs: Vec<&PutEventsEntry> = small.iter().collect();
        assert_eq!(call_ranges(&refs), vec![0..10, 10..20, 20..23]);
        // 100 KiB entries: two per call.
        let big: Vec<PutEventsEntry> = (0..5).map(|_| entry(100 * 1024)).collect();
        let refs: Vec<&PutEventsEntry> = big.iter().collect();
        assert_eq!(call_ranges(&refs), vec![0..2, 2..4, 4..5]);
        assert!(call_ranges(&[]).is_empty());
    }
}

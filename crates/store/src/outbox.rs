//! Publishing stored findings on the bus: the outbox protocol both functions follow.
//!
//! A publish is recorded in the finding (pending state cleared, `lastPublishedAt`,
//! `lastPublishedCount`) only after PutEvents accepted its entry, and only if the finding is
//! still the version that was published. So a failed PutEvents never loses a finding (it stays
//! pending and the publisher retries it every minute), and an update that lands while a publish
//! is in flight is published again with the newer data.

use std::ops::Range;

use peregrine_event::Timestamp;
use peregrine_finding::FindingError;
use peregrine_finding::eventbridge::{self, MAX_ENTRY_BYTES, PutEventsEntry};
use serde::Serialize;

use crate::model::StoredFinding;
use crate::traits::{EntryResult, FindingBus, FindingStore};

/// PutEvents takes at most 10 entries per call.
pub const MAX_ENTRIES_PER_CALL: usize = 10;
/// ... and at most 256 KiB per call, all entries together.
pub const MAX_CALL_BYTES: usize = 256 * 1024;

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

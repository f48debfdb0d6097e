//! Aggregation, pure: folding a batch's findings by id, cutting them into transaction-sized
//! chunks, merging each with what is stored, and deciding when the result is published.
//!
//! GuardDuty's semantics (reference §3.3): a new finding is published at once; later
//! occurrences fold into the same id (`count` grows, the latest details win) and the updated
//! finding is published at most once per `FindingPublishingFrequency`.

use std::collections::BTreeMap;

use peregrine_event::Timestamp;
use peregrine_finding::{Finding, FindingError};

use peregrine_store::{FindingWrite, Outbox, PublishingFrequency, StoredFinding, add};

/// TransactWriteItems takes at most 100 actions: the chunk's dedupe marker plus 99 findings.
pub const MAX_FINDINGS_PER_CHUNK: usize = 99;
/// TransactWriteItems takes at most 4 MB; chunks stay well under it. Each finding is measured
/// by its JSON plus room for the item's other attributes.
pub const MAX_CHUNK_BYTES: usize = 3 * 1024 * 1024;
/// Bytes counted per finding for the attributes beside the JSON.
const ITEM_OVERHEAD_BYTES: usize = 1024;

/// The batch's findings with repeats folded into one per id (`record_occurrence`), ordered by
/// id. The order makes chunking deterministic, so a redelivered batch maps onto the same
/// chunks and the same dedupe markers.
pub fn group_findings(findings: Vec<Finding>) -> Result<Vec<Finding>, FindingError> {
    let mut by_id: BTreeMap<String, Finding> = BTreeMap::new();
    for f in findings {
        match by_id.get_mut(&f.id) {
            Some(existing) => existing.record_occurrence(&f)?,
            None => {
                by_id.insert(f.id.clone(), f);
            }
        }
    }
    Ok(by_id.into_values().collect())
}

/// Cuts grouped findings into chunks of at most [`MAX_FINDINGS_PER_CHUNK`] findings and about
/// [`MAX_CHUNK_BYTES`]. `size` measures one finding (its JSON length). A finding larger than
/// the byte budget gets a chunk of its own.
pub fn chunk<T>(items: Vec<T>, size: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut chunks: Vec<Vec<T>> = Vec::new();
    let mut current: Vec<T> = Vec::new();
    let mut bytes = 0usize;
    for item in items {
        let s = size(&item).saturating_add(ITEM_OVERHEAD_BYTES);
        if !current.is_empty()
            && (current.len() >= MAX_FINDINGS_PER_CHUNK
                || bytes.saturating_add(s) > MAX_CHUNK_BYTES)
        {
            chunks.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes = bytes.saturating_add(s);
        current.push(item);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// When an updated finding is next published: one frequency after the last publish, never
/// earlier than a publish that is already pending; `now` for a finding never published and not
/// pending.
pub fn next_publish_due(
    current: &Outbox,
    now: Timestamp,
    frequency: PublishingFrequency,
) -> Timestamp {
    let after_last = current
        .last_published_at
        .map(|t| add(t, frequency.duration()));
    match (current.pending_due, after_last) {
        (Some(pending), Some(after_last)) => pending.max(after_last),
        (Some(pending), None) => pending,
        (None, Some(after_last)) => after_last,
        (None, None) => now,
    }
}

/// The write for one grouped finding of a batch, given what is stored under its id.
///
/// - Not stored: a new finding, version 1, publish due now (the detector publishes it right
///   after the transaction, and the publisher does if that fails).
/// - Stored: the occurrence is folded into the stored finding and a publish is scheduled by
///   [`next_publish_due`]; the write is conditional on the version that was read.
pub fn plan_write(
    occurrence: &Finding,
    current: Option<&StoredFinding>,
    now: Timestamp,
    frequency: PublishingFrequency,
) -> Result<FindingWrite, FindingError> {
    match current {
        None => Ok(FindingWrite::new_finding(occurrence.clone(), now)),
        Some(stored) => {
            let mut merged = stored.finding.clone();
            merged.record_occurrence(occurrence)?;
            // A finding stored before the size bounds existed may keep its older, unbounded
            // details when the occurrence is late; bound the merge before it is written.
            merged.bound();
            Ok(FindingWrite {
                item: StoredFinding {
                    finding: merged,
                    version: stored.version.saturating_add(1),
                    outbox: Outbox {
                        pending_due: Some(next_publish_due(&stored.outbox, now, frequency)),
                        ..stored.outbox
                    },
                    expires_at: stored.expires_at,
                },
                expected_version: Some(stored.version),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use peregrine_finding::{FindingEnv, NewFinding, Resource, RuleExplanation, RuntimeContext};
    use peregrine_store::{HubPending, parse_iso};

    fn t(s: &str) -> Timestamp {
        parse_iso(s).unwrap()
    }

    fn finding(key: &str, event_time: &str, now: &str) -> Finding {
        let env = FindingEnv {
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            partition: "aws".into(),
            detector_id: "peregrine".into(),
            cluster_name: "prod".into(),
            node_name: "n1".into(),
            ..FindingEnv::default()
        };
        Finding::new(
            &env,
            NewFinding {
                finding_type: "PrivilegeEscalation:Runtime/CGroupsReleaseAgentModified".into(),
                severity: 8.0,
                title: format!("title {event_time}"),
                description: String::new(),
                aggregation_key: key.into(),
                rule: RuleExplanation::default(),
                process: None,
                context: RuntimeContext::default(),
                resource: Resource::default(),
                event_time: t(event_time),
                now: t(now),
            },
        )
    }

    #[test]
    fn repeats_fold_into_one_finding_per_id() {
        let a1 = finding("a", "2026-11-24T10:00:00Z", "2026-11-24T10:05:00Z");
        let a2 = finding("a", "2026-11-24T10:01:00Z", "2026-11-24T10:05:00Z");
        let b = finding("b", "2026-11-24T10:00:30Z", "2026-11-24T10:05:00Z");
        let a3 = finding("a", "2026-11-24T09:59:00Z", "2026-11-24T10:05:00Z");
        let grouped = group_findings(vec![a1.clone(), b.clone(), a2, a3]).unwrap();
        assert_eq!(grouped.len(), 2);
        let a = grouped.iter().find(|f| f.id == a1.id).unwrap();
        assert_eq!(a.service.count, 3);
        assert_eq!(
            a.service.event_first_seen.unwrap().timestamp(),
            t("2026-11-24T09:59:00Z")
        );
        assert_eq!(
            a.service.event_last_seen.unwrap().timestamp(),
            t("2026-11-24T10:01:00Z")
        );
        // The latest occurrence's details win; the late one does not overwrite them.
        assert_eq!(a.title, "title 2026-11-24T10:01:00Z");
        // Ordered by id, whatever the input order.
        let again = group_findings(vec![b, a1]).unwrap();
        assert!(again.windows(2).all(|w| w[0].id < w[1].id));
        assert_eq!(
            grouped.iter().map(|f| &f.id).collect::<Vec<_>>(),
            again.iter().map(|f| &f.id).collect::<Vec<_>>()
        );
    }

    #[test]
    fn chunks_respect_count_and_bytes() {
        let chunks = chunk((0..250).collect::<Vec<u32>>(), |_| 10);
        assert_eq!(
            chunks.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![99, 99, 52]
        );
        // 1 MiB findings: three plus their overhead would pass 3 MiB, so two per chunk.
        let chunks = chunk(vec![1usize << 20; 5], |s| *s);
        assert_eq!(
            chunks.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![2, 2, 1]
        );
        // A finding over the budget still gets written, alone.
        let chunks = chunk(vec![10usize, 4 << 20, 10], |s| *s);
        assert_eq!(
            chunks.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![1, 1, 1]
        );
        assert!(chunk(Vec::<u8>::new(), |_| 1).is_empty());
    }

    #[test]
    fn due_time_follows_the_publishing_frequency() {
        let now = t("2026-11-24T10:05:00Z");
        let f = PublishingFrequency::FifteenMinutes;
        // Never published, nothing pending: now.
        assert_eq!(next_publish_due(&Outbox::default(), now, f), now);
        // Published at 10:00: 10:15.
        let published = Outbox {
            pending_due: None,
            last_published_at: Some(t("2026-11-24T10:00:00Z")),
            last_published_count: Some(1),
            ..Outbox::default()
        };
        assert_eq!(
            next_publish_due(&published, now, f),
            t("2026-11-24T10:15:00Z")
        );
        assert_eq!(
            next_publish_due(&published, now, PublishingFrequency::SixHours),
            t("2026-11-24T16:00:00Z")
        );
        // Last published long ago: due in the past, i.e. at the publisher's next run.
        let old = Outbox {
            last_published_at: Some(t("2026-11-24T08:00:00Z")),
            ..published
        };
        assert_eq!(next_publish_due(&old, now, f), t("2026-11-24T08:15:00Z"));
        // Already pending later than one frequency after the last publish: kept.
        let pending_later = Outbox {
            pending_due: Some(t("2026-11-24T11:00:00Z")),
            ..published
        };
        assert_eq!(
            next_publish_due(&pending_later, now, f),
            t("2026-11-24T11:00:00Z")
        );
        // A new finding whose first publish failed stays due at its original time.
        let failed_first = Outbox {
            pending_due: Some(t("2026-11-24T10:00:00Z")),
            ..Outbox::default()
        };
        assert_eq!(
            next_publish_due(&failed_first, now, f),
            t("2026-11-24T10:00:00Z")
        );
    }

    #[test]
    fn planned_writes_are_conditional_on_what_was_read() {
        let now = t("2026-11-24T10:20:00Z");
        let occurrence = finding("a", "2026-11-24T10:19:00Z", "2026-11-24T10:20:00Z");
        let new = plan_write(&occurrence, None, now, PublishingFrequency::FifteenMinutes).unwrap();
        assert!(new.is_new());
        assert_eq!(new.item.version, 1);
        assert_eq!(new.item.outbox.pending_due, Some(now));

        let stored = StoredFinding {
            finding: finding("a", "2026-11-24T10:00:00Z", "2026-11-24T10:00:00Z"),
            version: 3,
            outbox: Outbox {
                pending_due: None,
                last_published_at: Some(t("2026-11-24T10:00:01Z")),
                last_published_count: Some(1),
                // Published, and not yet taken by Security Hub.
                security_hub: Some(HubPending {
                    due: t("2026-11-24T10:00:01Z"),
                    attempts: 2,
                }),
                last_imported_at: None,
            },
            expires_at: None,
        };
        let upd = plan_write(
            &occurrence,
            Some(&stored),
            now,
            PublishingFrequency::FifteenMinutes,
        )
        .unwrap();
        assert_eq!(upd.expected_version, Some(3));
        assert_eq!(upd.item.version, 4);
        assert_eq!(upd.item.finding.service.count, 2);
        assert_eq!(
            upd.item.finding.created_at.timestamp(),
            t("2026-11-24T10:00:00Z")
        );
        assert_eq!(upd.item.finding.updated_at.timestamp(), now);
        assert_eq!(upd.item.outbox.pending_due, Some(t("2026-11-24T10:15:01Z")));
        assert_eq!(upd.item.outbox.last_published_count, Some(1));
        // An update leaves a pending Security Hub import as it was: the update is imported
        // after it is published.
        assert_eq!(upd.item.outbox.security_hub, stored.outbox.security_hub);

        let other = finding("b", "2026-11-24T10:19:00Z", "2026-11-24T10:20:00Z");
        assert!(plan_write(&other, Some(&stored), now, PublishingFrequency::OneHour).is_err());
    }
}

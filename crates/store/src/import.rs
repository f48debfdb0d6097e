//! Importing published findings into Security Hub: the second outbox, beside the EventBridge
//! one and independent of it.
//!
//! With the export on, recording a publish also makes an import due (`securityHubState`).
//! An import is recorded only after Security Hub took the finding, and only if the finding is
//! still the version that was imported; these writes never bump the version, so the Security
//! Hub side can never make a publish or a detector write fail or retry. What Security Hub
//! refuses stays pending:
//!
//! - throttling or an outage: retried with backoff within the invocation, then left for the
//!   next run (and the run stops calling);
//! - AccessDenied, or Security Hub not enabled (`InvalidAccessException`): left for the next
//!   run, which tries again; the run stops calling;
//! - a finding refused on its own (`FailedFindings`), or a request refused as invalid: set
//!   back by [`import_retry_delay`] (1 minute, doubling, at most an hour), so one finding
//!   Security Hub will not take cannot crowd out the others.
//!
//! Delivery is at least once: a crash between the import and the record imports the finding
//! again, which Security Hub takes as an update of the same `Id`.

use std::ops::Range;
use std::time::{Duration, Instant};

use peregrine_aws::Failure;
use peregrine_aws::backoff::{Backoff, Jitter, RetryPolicy};
use peregrine_event::Timestamp;
use peregrine_finding::asff::{self, AsffError, AsffFinding, MAX_FINDINGS_PER_CALL};
use peregrine_finding::json_len;
use serde::{Deserialize, Serialize};

use crate::model::{StoredFinding, add};
use crate::securityhub::hub_failure;
use crate::traits::{FindingHub, FindingStore, HubError, ImportResult};

/// A BatchImportFindings request stays under this many bytes of findings (each is at most
/// `asff::MAX_ASFF_BYTES`).
pub const MAX_IMPORT_CALL_BYTES: usize = 4 * 1024 * 1024;

/// Longest error text from Security Hub put in a log line (it may quote the finding).
const MAX_LOGGED_ERROR_CHARS: usize = 512;

/// One finding to import, with the version it is imported at.
#[derive(Clone, Debug, PartialEq)]
pub struct ImportItem {
    pub id: String,
    pub version: u64,
    /// Failed attempts so far.
    pub attempts: u32,
    pub asff: AsffFinding,
}

impl ImportItem {
    /// The ASFF finding for a stored finding, under `product_arn`.
    pub fn new(s: &StoredFinding, product_arn: &str) -> Result<ImportItem, AsffError> {
        Ok(ImportItem {
            id: s.finding.id.clone(),
            version: s.version,
            attempts: s.outbox.security_hub.map_or(0, |h| h.attempts),
            asff: asff::to_asff(&s.finding, product_arn)?,
        })
    }
}

/// How long a finding Security Hub refused waits before it is tried again, after `attempts`
/// failed attempts: 1 minute, doubling, at most an hour.
pub fn import_retry_delay(attempts: u32) -> Duration {
    Backoff {
        base: Duration::from_secs(60),
        max: Duration::from_secs(3_600),
        jitter: Jitter::Full,
    }
    .ceiling(attempts.saturating_sub(1))
}

/// Splits findings into BatchImportFindings calls of at most 100 findings and
/// [`MAX_IMPORT_CALL_BYTES`].
pub fn import_ranges(items: &[ImportItem]) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let mut start = 0;
    let mut bytes = 0usize;
    for (i, item) in items.iter().enumerate() {
        let b = json_len(&item.asff);
        if i > start
            && (i - start >= MAX_FINDINGS_PER_CALL
                || bytes.saturating_add(b) > MAX_IMPORT_CALL_BYTES)
        {
            ranges.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes = bytes.saturating_add(b);
    }
    if start < items.len() {
        ranges.push(start..items.len());
    }
    ranges
}

/// What became of a set of imports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportCounts {
    /// Taken by Security Hub.
    pub imported: usize,
    /// Refused (the call or the finding), or not attempted after a refusal: still pending.
    pub failed: usize,
    /// Imported, but the finding changed meanwhile: still pending, with the newer data.
    pub superseded: usize,
    /// Imported, but recording it failed: still pending, so it will be imported again.
    pub unmarked: usize,
}

impl ImportCounts {
    pub fn add(&mut self, o: ImportCounts) {
        self.imported += o.imported;
        self.failed += o.failed;
        self.superseded += o.superseded;
        self.unmarked += o.unmarked;
    }

    /// Findings that are still pending after the attempt.
    pub fn still_pending(&self) -> usize {
        self.failed + self.superseded + self.unmarked
    }
}

/// Security Hub's words, bounded and defused for a log line.
pub fn loggable(message: &str) -> String {
    asff::text(message, MAX_LOGGED_ERROR_CHARS).unwrap_or_default()
}

/// Sets a refused finding back by [`import_retry_delay`]; a failure to record it only means it
/// is tried again sooner.
pub async fn set_back<S: FindingStore>(
    store: &S,
    id: &str,
    version: u64,
    attempts: u32,
    now: Timestamp,
) {
    let attempts = attempts.saturating_add(1);
    let due = add(now, import_retry_delay(attempts));
    if let Err(e) = store.defer_import(id, version, due, attempts).await {
        tracing::warn!(finding_id = %id, error = %e, "could not set the Security Hub import back; it is tried again at the next run");
    }
}

fn transient(f: Failure) -> bool {
    matches!(f, Failure::Throttled | Failure::Unavailable)
}

/// Imports the items into Security Hub and records each one it took. Returns what became of
/// them and, when the run should stop calling Security Hub (it refused the account, or kept
/// throttling), the refusal.
pub async fn import_and_mark<S: FindingStore, H: FindingHub>(
    store: &S,
    hub: &H,
    items: &[ImportItem],
    now: Timestamp,
    retry: &RetryPolicy,
    deadline: Option<Instant>,
) -> (ImportCounts, Option<HubError>) {
    let mut counts = ImportCounts::default();
    let ranges = import_ranges(items);
    for (n, range) in ranges.iter().enumerate() {
        let Some(mut batch) = items
            .get(range.clone())
            .map(|b| b.iter().collect::<Vec<_>>())
        else {
            continue;
        };
        let mut attempt = 1;
        while !batch.is_empty() {
            let findings: Vec<AsffFinding> = batch.iter().map(|i| i.asff.clone()).collect();
            let mut again = Vec::new();
            let mut refusal = None;
            match hub.batch_import(&findings).await {
                Ok(results) => {
                    for (item, result) in batch.iter().zip(results) {
                        match result {
                            ImportResult::Imported => {
                                match store.mark_imported(&item.id, item.version, now).await {
                                    Ok(true) => {
                                        counts.imported += 1;
                                        tracing::debug!(finding_id = %item.id, "imported into Security Hub");
                                    }
                                    Ok(false) => {
                                        counts.imported += 1;
                                        counts.superseded += 1;
                                        tracing::info!(finding_id = %item.id, "imported into Security Hub, but the finding changed meanwhile; the newer version stays due");
                                    }
                                    Err(e) => {
                                        counts.imported += 1;
                                        counts.unmarked += 1;
                                        tracing::warn!(finding_id = %item.id, error = %e, "imported into Security Hub, but recording it failed; it will be imported again");
                                    }
                                }
                            }
                            ImportResult::Failed { code, message } => {
                                let failure = hub_failure(Some(&code))
                                    .unwrap_or_else(|| peregrine_aws::classify_code(Some(&code)));
                                if transient(failure) {
                                    again.push(*item);
                                } else {
                                    counts.failed += 1;
                                    tracing::warn!(
                                        finding_id = %item.id,
                                        code = %loggable(&code),
                                        message = %loggable(&message),
                                        attempts = item.attempts + 1,
                                        security_hub_failed = 1,
                                        "Security Hub refused the finding; it stays pending and is tried again later"
                                    );
                                    set_back(store, &item.id, item.version, item.attempts, now)
                                        .await;
                                }
                            }
                        }
                    }
                }
                Err(e) if transient(e.failure) => {
                    again = batch.clone();
                    refusal = Some(e);
                }
                Err(e) => {
                    counts.failed += batch.len();
                    tracing::warn!(
                        code = %loggable(&e.code),
                        message = %loggable(&e.message),
                        failure = ?e.failure,
                        security_hub_failed = batch.len(),
                        "Security Hub refused the import; the findings stay pending for the next run"
                    );
                    if e.failure == Failure::Invalid {
                        // The request itself: set its findings back, and go on with the rest.
                        for item in &batch {
                            set_back(store, &item.id, item.version, item.attempts, now).await;
                        }
                        break;
                    }
                    // The account refuses (AccessDenied, Security Hub not enabled): the other
                    // calls would be refused too.
                    let rest: usize = ranges.iter().skip(n + 1).map(|r| r.len()).sum();
                    counts.failed += rest;
                    return (counts, Some(e));
                }
            }
            if again.is_empty() {
                break;
            }
            let delay = retry.delay(attempt);
            let out_of_time = deadline.is_some_and(|d| Instant::now() + delay >= d);
            if attempt >= retry.max_attempts || out_of_time {
                // Still throttled or unavailable: leave them for the next run, and stop
                // calling in this one.
                counts.failed += again.len();
                let rest: usize = ranges.iter().skip(n + 1).map(|r| r.len()).sum();
                counts.failed += rest;
                let e = refusal.unwrap_or_else(|| HubError {
                    failure: Failure::Throttled,
                    code: "FailedFindings".into(),
                    message: "findings refused as throttled or unavailable".into(),
                });
                tracing::warn!(
                    code = %loggable(&e.code),
                    message = %loggable(&e.message),
                    attempts = attempt,
                    security_hub_failed = again.len() + rest,
                    "Security Hub stayed unavailable; the findings stay pending for the next run"
                );
                return (counts, Some(e));
            }
            tokio::time::sleep(delay).await;
            attempt += 1;
            batch = again;
        }
    }
    (counts, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_findings_wait_longer_each_time_up_to_an_hour() {
        assert_eq!(import_retry_delay(1), Duration::from_secs(60));
        assert_eq!(import_retry_delay(2), Duration::from_secs(120));
        assert_eq!(import_retry_delay(6), Duration::from_secs(1_920));
        assert_eq!(import_retry_delay(7), Duration::from_secs(3_600));
        assert_eq!(import_retry_delay(400), Duration::from_secs(3_600));
    }
}

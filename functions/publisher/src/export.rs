//! The Security Hub export's run: every minute, after the publishing, imports the findings
//! whose import is due (published since their last import, or set back after a refusal), page
//! by page, through the protocol of [`peregrine_store::import_and_mark`]. It never fails the
//! run: what Security Hub does not take stays pending for the next one.

use std::time::Instant;

use peregrine_aws::backoff::RetryPolicy;
use peregrine_event::Timestamp;
use peregrine_store::{
    FindingHub, FindingStore, ImportCounts, ImportItem, import_and_mark, product_account, set_back,
};
use serde::{Deserialize, Serialize};

/// Findings read per page of the Security Hub outbox (one BatchImportFindings call takes 100).
const PAGE: i32 = 100;

/// What a Security Hub export run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportSummary {
    /// Findings whose import was due (confirmed by a consistent read).
    pub due: usize,
    /// Taken by Security Hub.
    pub imported: usize,
    /// Refused by Security Hub (or not tried after it refused the account), or not mappable.
    pub failed: usize,
    /// Findings of another account (their cluster's, from its ARN), which Security Hub does not
    /// take under this account's product: not imported, and no longer due.
    pub skipped: usize,
    /// Still pending after the run: refused, superseded by a newer version, or not recorded.
    pub still_pending: usize,
    /// The outbox could not be read: the run stopped there.
    pub unreadable: bool,
}

/// Imports every finding whose Security Hub import is due at `now`, until the outbox is
/// drained, Security Hub refuses, or the deadline nears.
pub async fn export_due<S: FindingStore, H: FindingHub>(
    store: &S,
    hub: &H,
    product_arn: &str,
    now: Timestamp,
    deadline: Option<Instant>,
    retry: &RetryPolicy,
) -> ExportSummary {
    let mut summary = ExportSummary::default();
    let mut counts = ImportCounts::default();
    let account = product_account(product_arn);
    let mut cursor = None;
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            tracing::warn!(
                security_hub_due = summary.due,
                "deadline near; the rest of the Security Hub imports waits for the next run"
            );
            break;
        }
        let read = async {
            let page = store.query_hub_due(now, cursor.take(), PAGE).await?;
            let current = store.get_many(&page.ids).await?;
            Ok::<_, peregrine_store::StoreError>((page, current))
        };
        let (page, current) = match read.await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "reading the Security Hub outbox failed; the next run tries again");
                summary.unreadable = true;
                break;
            }
        };
        let mut items = Vec::new();
        for id in &page.ids {
            // The index is eventually consistent: what is stored now decides.
            let Some(stored) = current.get(id) else {
                continue;
            };
            let Some(pending) = stored.outbox.security_hub.filter(|h| h.due <= now) else {
                continue;
            };
            summary.due += 1;
            if account.is_some_and(|a| a != stored.finding.account_id) {
                // Under the default product Security Hub takes only the calling account's
                // findings; this one is its cluster's account's.
                tracing::info!(
                    finding_id = %id,
                    account = %stored.finding.account_id,
                    security_hub_skipped = 1,
                    "not imported into Security Hub: the finding is another account's"
                );
                summary.skipped += 1;
                if let Err(e) = store.forget_import(id, stored.version).await {
                    tracing::warn!(finding_id = %id, error = %e, "could not drop the Security Hub import; it is skipped again at the next run");
                }
                continue;
            }
            match ImportItem::new(stored, product_arn) {
                Ok(item) => items.push(item),
                Err(e) => {
                    tracing::error!(
                        finding_id = %id,
                        error = %e,
                        security_hub_failed = 1,
                        "finding cannot be imported into Security Hub; it is tried again later"
                    );
                    summary.failed += 1;
                    summary.still_pending += 1;
                    set_back(store, id, stored.version, pending.attempts, now).await;
                }
            }
        }
        let (c, refusal) = import_and_mark(store, hub, &items, now, retry, deadline).await;
        counts.add(c);
        if refusal.is_some() {
            break;
        }
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    summary.imported += counts.imported;
    summary.failed += counts.failed;
    summary.still_pending += counts.still_pending();
    tracing::info!(
        security_hub_due = summary.due,
        security_hub_imported = summary.imported,
        security_hub_failed = summary.failed,
        security_hub_still_pending = summary.still_pending,
        security_hub_skipped = summary.skipped,
        "security hub export"
    );
    summary
}

//! The outbox publisher: every minute, publishes the findings whose publish is due (updates at
//! the publishing frequency, and anything an earlier publish failed on), page by page, through
//! the outbox protocol of [`peregrine_store::send_and_mark`]; then, with the Security Hub
//! export on, imports what was published ([`crate::export::export_due`]).

use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use lambda_runtime::LambdaEvent;
use peregrine_aws::backoff::RetryPolicy;
use peregrine_event::Timestamp;
use peregrine_lambda::InvocationError;
use peregrine_store::{
    DynamoFindingStore, EventBridgeBus, FindingBus, FindingHub, FindingStore, PublishCounts,
    PublishItem, SecurityHubImporter, StoreError, send_and_mark,
};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::export::{ExportSummary, export_due};

/// Findings read per outbox page (TransactGetItems takes 100).
const PAGE: i32 = 100;
/// The publisher stops starting pages this long before the invocation's deadline.
const DEADLINE_MARGIN: Duration = Duration::from_secs(5);

/// The publisher's adapters and settings, built once per cold start.
pub struct PublisherDeps<S, B, H> {
    pub store: S,
    pub bus: B,
    /// Security Hub, when the export is on (`config.security_hub_product_arn`).
    pub hub: Option<H>,
    pub config: Config,
    /// Retries of a throttled or unavailable Security Hub within one run.
    pub retry: RetryPolicy,
}

/// The publisher's production adapters.
pub type AwsPublisherDeps = PublisherDeps<DynamoFindingStore, EventBridgeBus, SecurityHubImporter>;

impl AwsPublisherDeps {
    pub fn from_sdk(sdk: &SdkConfig, config: Config) -> Self {
        let export = config.security_hub_product_arn.is_some();
        PublisherDeps {
            // The publisher writes no dedupe markers.
            store: DynamoFindingStore::new(
                aws_sdk_dynamodb::Client::new(sdk),
                &config.findings_table,
                "",
            )
            .with_security_hub_export(export),
            bus: EventBridgeBus::new(
                aws_sdk_eventbridge::Client::new(sdk),
                &config.event_bus_name,
            ),
            hub: export.then(|| SecurityHubImporter::new(aws_sdk_securityhub::Client::new(sdk))),
            config,
            retry: RetryPolicy::default(),
        }
    }
}

/// A publisher run that could not complete; the next scheduled run repeats it.
#[derive(Debug, thiserror::Error)]
pub enum PublisherError {
    #[error("reading the outbox: {0}")]
    Store(#[from] StoreError),
}

impl InvocationError for PublisherError {
    fn error_type(&self) -> &'static str {
        "PublisherError"
    }
}

peregrine_lambda::into_diagnostic!(PublisherError);

/// What a publisher run did (the function's response).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The Security Hub export's run, when it is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_hub: Option<ExportSummary>,
}

/// The publisher Lambda's handler: publishes every due finding.
pub async fn handle_schedule<S: FindingStore, B: FindingBus, H: FindingHub>(
    deps: &PublisherDeps<S, B, H>,
    event: LambdaEvent<serde_json::Value>,
) -> Result<PublishSummary, PublisherError> {
    let deadline = peregrine_lambda::stop_before(event.context.deadline, DEADLINE_MARGIN);
    publish_due(deps, Timestamp::now(), deadline).await
}

/// Publishes every finding due at `now`, page by page, until the outbox is drained or the
/// deadline nears; then, with the export on, imports what is due into Security Hub (whatever
/// Security Hub does, it runs after the publishing and cannot fail it). `now` is a parameter so
/// tests can run the clock forward.
pub async fn publish_due<S: FindingStore, B: FindingBus, H: FindingHub>(
    deps: &PublisherDeps<S, B, H>,
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
    if let (Some(hub), Some(product_arn)) =
        (&deps.hub, deps.config.security_hub_product_arn.as_deref())
    {
        summary.security_hub =
            Some(export_due(&deps.store, hub, product_arn, now, deadline, &deps.retry).await);
    }
    Ok(summary)
}

//! The EventBridge implementation of [`FindingBus`].

use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use peregrine_aws::classify;
use peregrine_finding::eventbridge::PutEventsEntry;

use crate::traits::{BusError, EntryResult, FindingBus};

/// Publishes onto one event bus (`EVENT_BUS_NAME`).
#[derive(Clone, Debug)]
pub struct EventBridgeBus {
    client: Client,
    bus_name: String,
}

impl EventBridgeBus {
    pub fn new(client: Client, bus_name: &str) -> Self {
        EventBridgeBus {
            client,
            bus_name: bus_name.to_owned(),
        }
    }
}

impl FindingBus for EventBridgeBus {
    async fn put_events(&self, entries: &[PutEventsEntry]) -> Result<Vec<EntryResult>, BusError> {
        let request: Vec<PutEventsRequestEntry> = entries
            .iter()
            .map(|e| {
                PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus_name)
                    .source(&e.source)
                    .detail_type(&e.detail_type)
                    .detail(&e.detail)
                    .set_resources((!e.resources.is_empty()).then(|| e.resources.clone()))
                    .build()
            })
            .collect();
        let resp = self
            .client
            .put_events()
            .set_entries(Some(request))
            .send()
            .await
            .map_err(|e| BusError {
                failure: classify(&e),
                message: crate::traits::error_text(&e),
            })?;
        // One result per entry, in order; an entry the response does not account for is
        // treated as failed, so it stays pending rather than being marked published.
        let results = resp.entries();
        Ok((0..entries.len())
            .map(|i| match results.get(i) {
                Some(r) if r.error_code().is_none() => EntryResult::Published {
                    event_id: r.event_id().unwrap_or_default().to_owned(),
                },
                Some(r) => EntryResult::Failed {
                    code: r.error_code().unwrap_or_default().to_owned(),
                    message: r.error_message().unwrap_or_default().to_owned(),
                },
                None => EntryResult::Failed {
                    code: "Missing".to_owned(),
                    message: format!(
                        "PutEvents answered {} results for {} entries (FailedEntryCount {})",
                        results.len(),
                        entries.len(),
                        resp.failed_entry_count()
                    ),
                },
            })
            .collect())
    }
}

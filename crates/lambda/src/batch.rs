//! The partial-batch helper: runs a handler per SQS record, each in its own tracing span and
//! behind `catch_unwind`, and reports the records that failed or panicked as
//! `batchItemFailures`, so one bad message never fails its siblings.
//!
//! Lambda (with `ReportBatchItemFailures`) deletes the rest and makes only the failed records
//! visible again; after `maxReceiveCount` receives SQS moves them to the dead-letter queue.

use std::any::Any;
use std::fmt::Display;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsMessage};
use tracing::Instrument;

/// A future whose panics become `Err` (the release profile unwinds, see the workspace's
/// `Cargo.toml`), so the panic of one message is that message's failure only.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

fn panic_message(p: &(dyn Any + Send)) -> &str {
    p.downcast_ref::<&str>()
        .copied()
        .or_else(|| p.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not a string)")
}

/// Runs `f` on every record in order and returns the failures. A record without a message id
/// cannot be named in the response; it is reported with an empty identifier, which makes Lambda
/// retry the whole batch (better than losing it).
pub async fn partial_batch<F, Fut, E>(records: Vec<SqsMessage>, mut f: F) -> SqsBatchResponse
where
    F: FnMut(SqsMessage) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display,
{
    let mut failures = Vec::new();
    for record in records {
        let id = record.message_id.clone().unwrap_or_default();
        let receive_count = record
            .attributes
            .get("ApproximateReceiveCount")
            .cloned()
            .unwrap_or_default();
        let span = tracing::info_span!("message", message_id = %id, receive_count = %receive_count);
        let outcome = CatchUnwind(Box::pin(f(record)))
            .instrument(span.clone())
            .await;
        let _enter = span.enter();
        let failed = match outcome {
            Ok(Ok(())) => false,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "message failed; it will be redelivered");
                true
            }
            Err(panic) => {
                tracing::error!(
                    panic = panic_message(panic.as_ref()),
                    "message handler panicked; only this message fails"
                );
                true
            }
        };
        if failed {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failures.push(failure);
        }
    }
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, body: &str) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.into());
        m.body = Some(body.into());
        m
    }

    #[tokio::test]
    async fn a_failure_or_panic_fails_only_its_message() {
        let records = vec![
            record("ok-1", "fine"),
            record("err", "error"),
            record("boom", "panic"),
            record("ok-2", "fine"),
        ];
        let mut seen = Vec::new();
        let response = partial_batch(records, |r| {
            seen.push(r.message_id.clone().unwrap_or_default());
            async move {
                tokio::task::yield_now().await;
                match r.body.as_deref() {
                    Some("error") => Err("bad body"),
                    Some("panic") => panic!("handler bug"),
                    _ => Ok(()),
                }
            }
        })
        .await;
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(failed, ["err", "boom"]);
        assert_eq!(seen, ["ok-1", "err", "boom", "ok-2"]);
    }
}

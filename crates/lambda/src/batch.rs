//! The partial-batch helper: runs a handler per SQS record, each in its own tracing span and
//! behind `catch_unwind`, and reports the records that failed or panicked as
//! `batchItemFailures`, so one bad message never fails its siblings.
//!
//! Lambda (with `ReportBatchItemFailures`) deletes the rest and makes only the failed records
//! visible again; after `maxReceiveCount` receives SQS moves them to the dead-letter queue.
//!
//! [`partial_batch_until`] also stops starting records once a deadline passes, and returns the
//! unstarted ones as failures: they are redelivered, rather than lost with an invocation that
//! Lambda kills at its timeout (which would fail the whole batch, finished records included).

use std::any::Any;
use std::fmt::Display;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
pub async fn partial_batch<F, Fut, E>(records: Vec<SqsMessage>, f: F) -> SqsBatchResponse
where
    F: FnMut(SqsMessage) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display,
{
    partial_batch_until(records, None, f).await
}

/// When to stop starting records: `margin` before the invocation's deadline
/// (`lambda_runtime::Context::deadline`, Unix milliseconds). `None` when the deadline is
/// unknown (0), as in a context built by hand.
pub fn stop_before(deadline_ms: u64, margin: Duration) -> Option<Instant> {
    if deadline_ms == 0 {
        return None;
    }
    let now_ms = u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()?
            .as_millis(),
    )
    .ok()?;
    let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms));
    Some(Instant::now() + left.saturating_sub(margin))
}

/// [`partial_batch`] that starts no record once `stop_at` has passed: those records are
/// returned as failures without being run, so SQS redelivers them. A record already started
/// runs to its end.
pub async fn partial_batch_until<F, Fut, E>(
    records: Vec<SqsMessage>,
    stop_at: Option<Instant>,
    mut f: F,
) -> SqsBatchResponse
where
    F: FnMut(SqsMessage) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display,
{
    let mut failures = Vec::new();
    let total = records.len();
    let mut not_started = 0;
    for (index, record) in records.into_iter().enumerate() {
        let id = record.message_id.clone().unwrap_or_default();
        if not_started > 0 || stop_at.is_some_and(|d| Instant::now() >= d) {
            if not_started == 0 {
                tracing::warn!(
                    not_started = total - index,
                    records = total,
                    "invocation deadline near; the records not started are returned for redelivery"
                );
            }
            not_started += 1;
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failures.push(failure);
            continue;
        }
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

    #[tokio::test]
    async fn records_not_started_by_the_deadline_are_returned() {
        let records = vec![
            record("a", "fine"),
            record("b", "slow"),
            record("c", "fine"),
        ];
        // "slow" runs until the deadline has passed, however fast or slow this machine is, so
        // the outcome depends on no timing.
        let stop_at = Instant::now() + Duration::from_secs(1);
        let mut seen = Vec::new();
        let response = partial_batch_until(records, Some(stop_at), |r| {
            seen.push(r.message_id.clone().unwrap_or_default());
            async move {
                if r.body.as_deref() == Some("slow") {
                    while Instant::now() <= stop_at {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                Ok::<(), &str>(())
            }
        })
        .await;
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(
            seen,
            ["a", "b"],
            "the started record finishes; c is never started"
        );
        assert_eq!(failed, ["c"]);
    }

    #[test]
    fn stop_before_is_the_deadline_less_the_margin() {
        assert_eq!(stop_before(0, Duration::from_secs(5)), None);
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let at = stop_before(now_ms + 60_000, Duration::from_secs(10)).unwrap();
        let left = at.saturating_duration_since(Instant::now());
        assert!(
            left > Duration::from_secs(45) && left <= Duration::from_secs(50),
            "{left:?}"
        );
        // A deadline nearer than the margin (or past) means stop now.
        let at = stop_before(now_ms + 1_000, Duration::from_secs(10)).unwrap();
        assert!(at <= Instant::now());
    }
}

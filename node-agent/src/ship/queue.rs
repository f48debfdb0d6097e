//! Where shipped messages go: a [`MessageQueue`]. SQS in production; [`MemoryQueue`] keeps them
//! in memory, and can be told to throttle or to be down, for tests of the batcher and sender.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use aws_sdk_sqs::{Client, types::SendMessageBatchRequestEntry};
use peregrine_aws::{Failure, classify};

/// A call that failed as a whole: what it means for the caller, and what went wrong.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct QueueError {
    pub failure: Failure,
    pub message: String,
}

/// One entry of a batch the queue did not take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedEntry {
    /// Its index in the batch sent.
    pub index: usize,
    /// The queue's error code.
    pub code: String,
    /// The queue says the message itself is at fault (retrying it cannot help).
    pub sender_fault: bool,
}

/// Per-entry SendMessageBatch codes that say the message itself can never be taken
/// (<https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessageBatch.html#API_SendMessageBatch_Errors>).
/// Only these set a message aside: any other code, known or not, is retried, since dropping a
/// message for an error we do not understand would lose events silently.
const PERMANENT_ENTRY_CODES: &[&str] = &[
    "InvalidMessageContents",
    "MessageTooLong",
    "InvalidParameterValue",
    "InvalidAttributeName",
    "InvalidAttributeValue",
];

impl FailedEntry {
    /// The queue will never take this message: a known permanent code, blamed on the sender.
    pub fn is_permanent(&self) -> bool {
        self.sender_fault && PERMANENT_ENTRY_CODES.contains(&self.code.as_str())
    }
}

/// The answer to a batch: entries taken, and entries refused. An entry in neither stays
/// where it was and is sent again later.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub successful: Vec<usize>,
    pub failed: Vec<FailedEntry>,
}

/// A message queue, as the sender and the heartbeats use it.
pub trait MessageQueue: Send + Sync + 'static {
    /// Sends up to 10 messages (1 MiB in all) in one call.
    fn send_batch(
        &self,
        bodies: &[&str],
    ) -> impl Future<Output = Result<BatchOutcome, QueueError>> + Send;

    /// Sends one message.
    fn send(&self, body: String) -> impl Future<Output = Result<(), QueueError>> + Send;
}

impl<Q: MessageQueue> MessageQueue for Arc<Q> {
    fn send_batch(
        &self,
        bodies: &[&str],
    ) -> impl Future<Output = Result<BatchOutcome, QueueError>> + Send {
        (**self).send_batch(bodies)
    }

    fn send(&self, body: String) -> impl Future<Output = Result<(), QueueError>> + Send {
        (**self).send(body)
    }
}

/// An SQS queue. Endpoint, region and credentials come from the SDK's configuration.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    pub fn new(sdk: &aws_config::SdkConfig, url: impl Into<String>) -> SqsQueue {
        SqsQueue {
            client: Client::new(sdk),
            url: url.into(),
        }
    }
}

fn sqs_error<E, R>(e: &aws_sdk_sqs::error::SdkError<E, R>) -> QueueError
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    QueueError {
        failure: classify(e),
        message: aws_sdk_sqs::error::DisplayErrorContext(e).to_string(),
    }
}

impl MessageQueue for SqsQueue {
    async fn send_batch(&self, bodies: &[&str]) -> Result<BatchOutcome, QueueError> {
        let mut entries = Vec::with_capacity(bodies.len());
        for (i, body) in bodies.iter().enumerate() {
            let entry = SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(*body)
                .build()
                .map_err(|e| QueueError {
                    failure: Failure::Invalid,
                    message: format!("building an SQS entry: {e}"),
                })?;
            entries.push(entry);
        }
        let out = self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| sqs_error(&e))?;
        Ok(BatchOutcome {
            successful: out
                .successful()
                .iter()
                .filter_map(|ok| ok.id().parse().ok())
                .collect(),
            failed: out
                .failed()
                .iter()
                .filter_map(|f| {
                    Some(FailedEntry {
                        index: f.id().parse().ok()?,
                        code: f.code().to_string(),
                        sender_fault: f.sender_fault(),
                    })
                })
                .collect(),
        })
    }

    async fn send(&self, body: String) -> Result<(), QueueError> {
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sqs_error(&e))
    }
}

/// What a [`MemoryQueue`] answers to its next batch.
#[derive(Clone, Debug)]
pub enum Scripted {
    /// The whole call fails.
    Fail(Failure),
    /// These entries (index, error code, sender's fault) are refused; the others are taken.
    FailEntries(Vec<(usize, &'static str, bool)>),
}

/// A queue in memory. It takes everything, unless it is down or told otherwise for a call.
#[derive(Debug, Default)]
pub struct MemoryQueue {
    state: Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    received: Vec<String>,
    script: VecDeque<Scripted>,
    down: Option<Failure>,
    calls: usize,
}

impl MemoryQueue {
    pub fn new() -> MemoryQueue {
        MemoryQueue::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// While `Some`, every call fails this way (an outage, or lost permissions).
    pub fn set_down(&self, failure: Option<Failure>) {
        self.state().down = failure;
    }

    /// The answer to a coming batch call (in order; calls after the script run out succeed).
    pub fn script(&self, answer: Scripted) {
        self.state().script.push_back(answer);
    }

    /// Every message taken so far, in the order taken.
    pub fn received(&self) -> Vec<String> {
        self.state().received.clone()
    }

    /// Calls made, successful or not.
    pub fn calls(&self) -> usize {
        self.state().calls
    }
}

fn down(f: Failure) -> QueueError {
    QueueError {
        failure: f,
        message: format!("the in-memory queue is down ({f:?})"),
    }
}

impl MessageQueue for MemoryQueue {
    async fn send_batch(&self, bodies: &[&str]) -> Result<BatchOutcome, QueueError> {
        let mut st = self.state();
        st.calls += 1;
        if let Some(f) = st.down {
            return Err(down(f));
        }
        let refused = match st.script.pop_front() {
            Some(Scripted::Fail(f)) => return Err(down(f)),
            Some(Scripted::FailEntries(refused)) => refused,
            None => Vec::new(),
        };
        let mut out = BatchOutcome::default();
        for (index, body) in bodies.iter().enumerate() {
            match refused.iter().find(|(i, _, _)| *i == index) {
                Some((_, code, sender_fault)) => out.failed.push(FailedEntry {
                    index,
                    code: (*code).to_string(),
                    sender_fault: *sender_fault,
                }),
                None => {
                    st.received.push((*body).to_string());
                    out.successful.push(index);
                }
            }
        }
        Ok(out)
    }

    async fn send(&self, body: String) -> Result<(), QueueError> {
        let mut st = self.state();
        st.calls += 1;
        if let Some(f) = st.down {
            return Err(down(f));
        }
        st.received.push(body);
        Ok(())
    }
}

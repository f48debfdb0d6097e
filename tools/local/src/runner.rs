//! The local runner: does what Lambda's SQS event-source mapping and the publisher's schedule
//! do in AWS, calling the functions' library handlers in-process.
//!
//! - **Event-source mapping.** Long-polls the detector's queue (up to 10 messages per
//!   ReceiveMessage), gathers up to the template's `BatchSize` within its batching window (and
//!   at most 6 MB, Lambda's payload limit), builds an `SqsEvent` as Lambda does, calls the
//!   detector's `handle` with a context naming the function's ARN, deletes the records that
//!   succeeded and leaves `batchItemFailures` (and everything, if the handler fails or times
//!   out) to come back after the queue's visibility timeout. `retry_after` shortens that wait
//!   locally by setting the failed messages' visibility, which real Lambda does not do.
//! - **Schedule.** Runs the publisher every `publish_interval` (moto never fires schedules).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_lambda_events::sqs::{SqsEvent, SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageSystemAttributeName,
};
use lambda_runtime::{Context, LambdaEvent};
use peregrine_detector::{
    AwsDeps, AwsPublisherDeps, Config, ConfigError, DetectorError, PublishSummary, PublisherError,
    handle, handle_schedule,
};
use peregrine_event::Timestamp;

use crate::provision::{LocalStack, Queue};
use crate::spec::FunctionSpec;

/// The binaries (template `Metadata.BuildProperties.Binary`) whose handlers the runner calls.
pub const DETECTOR_BINARY: &str = "peregrine-detector";
pub const PUBLISHER_BINARY: &str = "peregrine-publisher";

/// Lambda's limit on an invocation's payload, which bounds an SQS batch.
const MAX_BATCH_BYTES: usize = 6 * 1024 * 1024;
/// SQS's largest message.
const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("no function in the template runs {0} (Metadata.BuildProperties.Binary)")]
    NoFunction(&'static str),
    #[error("function {0} has no SQS event source in the template")]
    NoEventSource(String),
    #[error("function {function}: {source}")]
    Config {
        function: String,
        source: ConfigError,
    },
    #[error(transparent)]
    Detector(#[from] DetectorError),
    #[error(transparent)]
    Publisher(#[from] PublisherError),
    #[error("{operation}: {message}")]
    Sqs {
        operation: &'static str,
        message: String,
    },
}

fn sqs_error<E: std::error::Error + 'static>(operation: &'static str, e: E) -> RunnerError {
    RunnerError::Sqs {
        operation,
        message: aws_sdk_sqs::error::DisplayErrorContext(e).to_string(),
    }
}

/// How the runner polls and schedules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunnerOptions {
    /// Most messages per detector invocation (the template's `BatchSize`).
    pub batch_size: usize,
    /// How long to keep gathering once a first message arrived (the template's
    /// `MaximumBatchingWindowInSeconds`).
    pub batching_window: Duration,
    /// Long-poll wait of the first ReceiveMessage (at most 20 s).
    pub wait_time: Duration,
    /// When set, failed messages become visible again after this long instead of the queue's
    /// visibility timeout.
    pub retry_after: Option<Duration>,
    /// How often the publisher runs (the template's schedule).
    pub publish_interval: Duration,
}

impl RunnerOptions {
    /// The event source's and the schedule's settings from the template.
    pub fn from_stack(stack: &LocalStack) -> RunnerOptions {
        let detector = find(stack, DETECTOR_BINARY).ok();
        let source = detector.and_then(|f| f.sqs.as_ref());
        RunnerOptions {
            batch_size: source
                .and_then(|s| usize::try_from(s.batch_size).ok())
                .unwrap_or(10)
                .max(1),
            batching_window: source.map(|s| s.batching_window).unwrap_or_default(),
            wait_time: Duration::from_secs(20),
            retry_after: None,
            publish_interval: find(stack, PUBLISHER_BINARY)
                .ok()
                .and_then(|f| f.schedule)
                .unwrap_or(Duration::from_secs(60)),
        }
    }
}

fn find<'s>(stack: &'s LocalStack, binary: &'static str) -> Result<&'s FunctionSpec, RunnerError> {
    stack
        .functions
        .values()
        .find(|f| f.binary.as_deref() == Some(binary))
        .ok_or(RunnerError::NoFunction(binary))
}

/// The configuration a function's handler gets from its template environment.
pub fn function_config(stack: &LocalStack, binary: &'static str) -> Result<Config, RunnerError> {
    let f = find(stack, binary)?;
    let env = stack.function_env(&f.logical_id).unwrap_or_default();
    let get = |k: &str| env.get(k).cloned();
    let config = if binary == DETECTOR_BINARY {
        Config::detector_from(get)
    } else {
        Config::publisher_from(get)
    };
    config.map_err(|source| RunnerError::Config {
        function: f.logical_id.clone(),
        source,
    })
}

/// What one event-source cycle did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PollReport {
    pub received: usize,
    /// Records the handler reported as failed (left for redelivery).
    pub failed: Vec<String>,
    pub deleted: usize,
    /// The handler's error (or timeout), when the whole invocation failed.
    pub invocation_error: Option<String>,
}

/// The event-source mapping and schedule stand-in.
pub struct Runner {
    sqs: aws_sdk_sqs::Client,
    queue: Queue,
    region: String,
    account_id: String,
    detector_fn: FunctionSpec,
    publisher_fn: FunctionSpec,
    detector: AwsDeps,
    publisher: AwsPublisherDeps,
    options: RunnerOptions,
    invocations: AtomicU64,
}

impl Runner {
    /// Builds the handlers' dependencies from the functions' template environment.
    pub fn from_stack(
        sdk: &SdkConfig,
        stack: &LocalStack,
        options: RunnerOptions,
    ) -> Result<Runner, RunnerError> {
        let detector = function_config(stack, DETECTOR_BINARY)?;
        let publisher = function_config(stack, PUBLISHER_BINARY)?;
        Runner::new(sdk, stack, options, detector, publisher)
    }

    /// As [`Runner::from_stack`], with the handlers' configuration given (tests point them at
    /// a missing bus, say).
    pub fn new(
        sdk: &SdkConfig,
        stack: &LocalStack,
        options: RunnerOptions,
        detector: Config,
        publisher: Config,
    ) -> Result<Runner, RunnerError> {
        let detector_fn = find(stack, DETECTOR_BINARY)?.clone();
        let publisher_fn = find(stack, PUBLISHER_BINARY)?.clone();
        let queue = stack
            .event_source_queue(&detector_fn.logical_id)
            .cloned()
            .ok_or_else(|| RunnerError::NoEventSource(detector_fn.logical_id.clone()))?;
        Ok(Runner {
            sqs: aws_sdk_sqs::Client::new(sdk),
            queue,
            region: stack.context.region.clone(),
            account_id: stack.context.account_id.clone(),
            detector: AwsDeps::from_sdk(sdk, detector)?,
            publisher: AwsPublisherDeps::from_sdk(sdk, publisher),
            detector_fn,
            publisher_fn,
            options,
            invocations: AtomicU64::new(0),
        })
    }

    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    pub fn options(&self) -> &RunnerOptions {
        &self.options
    }

    fn context(&self, f: &FunctionSpec) -> Context {
        let n = self.invocations.fetch_add(1, Ordering::Relaxed);
        let now_ms = u64::try_from(Timestamp::now().unix_nanos() / 1_000_000).unwrap_or_default();
        let timeout_ms = u64::try_from(f.timeout.as_millis()).unwrap_or(u64::MAX);
        let mut ctx = Context::default();
        ctx.request_id = format!("local-{n:08}");
        ctx.invoked_function_arn = f.arn.clone();
        ctx.deadline = now_ms.saturating_add(timeout_ms);
        ctx
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Message>, RunnerError> {
        let max = i32::try_from(max.clamp(1, 10)).unwrap_or(10);
        let wait = i32::try_from(wait.as_secs().min(20)).unwrap_or(20);
        let resp = self
            .sqs
            .receive_message()
            .queue_url(&self.queue.url)
            .max_number_of_messages(max)
            .wait_time_seconds(wait)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| sqs_error("ReceiveMessage", e))?;
        Ok(resp.messages().to_vec())
    }

    /// Gathers one batch: waits up to `wait_time` for a first message, then keeps receiving
    /// within the batching window until the batch is full.
    pub async fn receive_batch(&self) -> Result<Vec<Message>, RunnerError> {
        let size = self.options.batch_size.max(1);
        let mut batch = self.receive(size, self.options.wait_time).await?;
        if batch.is_empty() {
            return Ok(batch);
        }
        let deadline = Instant::now() + self.options.batching_window;
        let mut bytes: usize = batch.iter().map(|m| m.body().map_or(0, str::len)).sum();
        while batch.len() < size {
            let room = (MAX_BATCH_BYTES.saturating_sub(bytes)) / MAX_MESSAGE_BYTES;
            let left = deadline.saturating_duration_since(Instant::now());
            if room == 0 || left.is_zero() {
                break;
            }
            let more = self
                .receive((size - batch.len()).min(room), Duration::ZERO)
                .await?;
            if more.is_empty() {
                tokio::time::sleep(left.min(Duration::from_millis(100))).await;
                continue;
            }
            bytes += more
                .iter()
                .map(|m| m.body().map_or(0, str::len))
                .sum::<usize>();
            batch.extend(more);
        }
        Ok(batch)
    }

    /// The `SqsEvent` Lambda would build for these messages.
    pub fn sqs_event(&self, messages: &[Message]) -> SqsEvent {
        let records = messages
            .iter()
            .map(|m| {
                let mut r = SqsMessage::default();
                r.message_id = m.message_id().map(str::to_owned);
                r.receipt_handle = m.receipt_handle().map(str::to_owned);
                r.body = m.body().map(str::to_owned);
                r.md5_of_body = m.md5_of_body().map(str::to_owned);
                r.md5_of_message_attributes = m.md5_of_message_attributes().map(str::to_owned);
                r.attributes = m
                    .attributes()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                    .collect::<HashMap<_, _>>();
                r.message_attributes = m
                    .message_attributes()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| {
                        let mut a = SqsMessageAttribute::default();
                        a.string_value = v.string_value().map(str::to_owned);
                        a.data_type = Some(v.data_type().to_owned());
                        (k.clone(), a)
                    })
                    .collect();
                r.event_source = Some("aws:sqs".into());
                r.event_source_arn = Some(self.queue.arn.clone());
                r.aws_region = Some(self.region.clone());
                r
            })
            .collect();
        let mut event = SqsEvent::default();
        event.records = records;
        event
    }

    /// Invokes the detector on a batch and settles it with SQS as Lambda would.
    pub async fn process(&self, messages: Vec<Message>) -> Result<PollReport, RunnerError> {
        let mut report = PollReport {
            received: messages.len(),
            ..PollReport::default()
        };
        if messages.is_empty() {
            return Ok(report);
        }
        let event = LambdaEvent::new(self.sqs_event(&messages), self.context(&self.detector_fn));
        let outcome =
            tokio::time::timeout(self.detector_fn.timeout, handle(&self.detector, event)).await;
        let failed: Vec<String> = match outcome {
            Ok(Ok(response)) => response
                .batch_item_failures
                .into_iter()
                .map(|f| f.item_identifier)
                .collect(),
            Ok(Err(e)) => {
                report.invocation_error = Some(e.to_string());
                messages
                    .iter()
                    .filter_map(|m| m.message_id().map(str::to_owned))
                    .collect()
            }
            Err(_) => {
                report.invocation_error = Some(format!(
                    "timed out after {:?} (the function's Timeout)",
                    self.detector_fn.timeout
                ));
                messages
                    .iter()
                    .filter_map(|m| m.message_id().map(str::to_owned))
                    .collect()
            }
        };
        // Lambda treats an empty or unknown identifier as a failure of the whole batch.
        let whole_batch = failed.iter().any(|id| {
            id.is_empty() || !messages.iter().any(|m| m.message_id() == Some(id.as_str()))
        });
        let (done, retry): (Vec<&Message>, Vec<&Message>) = messages.iter().partition(|m| {
            !whole_batch && !failed.iter().any(|id| m.message_id() == Some(id.as_str()))
        });
        report.deleted = self.delete(&done).await?;
        if let Some(after) = self.options.retry_after {
            self.make_visible(&retry, after).await?;
        }
        report.failed = retry
            .iter()
            .filter_map(|m| m.message_id().map(str::to_owned))
            .collect();
        tracing::info!(
            received = report.received,
            deleted = report.deleted,
            failed = report.failed.len(),
            invocation_error = report.invocation_error.as_deref().unwrap_or(""),
            "detector invocation settled"
        );
        Ok(report)
    }

    /// One event-source cycle: receive a batch (waiting up to `wait_time`), invoke, settle.
    pub async fn poll_once(&self) -> Result<PollReport, RunnerError> {
        let messages = self.receive_batch().await?;
        self.process(messages).await
    }

    async fn delete(&self, messages: &[&Message]) -> Result<usize, RunnerError> {
        let mut deleted = 0;
        for part in messages.chunks(10) {
            let entries = part
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(m.receipt_handle().unwrap_or_default())
                        .build()
                        .map_err(|e| sqs_error("DeleteMessageBatch", e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let resp = self
                .sqs
                .delete_message_batch()
                .queue_url(&self.queue.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| sqs_error("DeleteMessageBatch", e))?;
            deleted += resp.successful().len();
            for f in resp.failed() {
                tracing::warn!(
                    entry = f.id(),
                    code = f.code(),
                    "delete failed; the message will be redelivered"
                );
            }
        }
        Ok(deleted)
    }

    async fn make_visible(
        &self,
        messages: &[&Message],
        after: Duration,
    ) -> Result<(), RunnerError> {
        let secs = i32::try_from(after.as_secs()).unwrap_or(i32::MAX);
        for part in messages.chunks(10) {
            let entries = part
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(m.receipt_handle().unwrap_or_default())
                        .visibility_timeout(secs)
                        .build()
                        .map_err(|e| sqs_error("ChangeMessageVisibilityBatch", e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.sqs
                .change_message_visibility_batch()
                .queue_url(&self.queue.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| sqs_error("ChangeMessageVisibilityBatch", e))?;
        }
        Ok(())
    }

    /// The scheduled event EventBridge would send the publisher.
    pub fn scheduled_event(&self) -> serde_json::Value {
        serde_json::json!({
            "version": "0",
            "id": format!("local-{}", self.invocations.load(Ordering::Relaxed)),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": self.account_id,
            "time": Timestamp::now().to_rfc3339_millis(),
            "region": self.region,
            "resources": [format!(
                "arn:aws:events:{}:{}:rule/{}-schedule",
                self.region, self.account_id, self.publisher_fn.name
            )],
            "detail": {}
        })
    }

    /// One publisher run, as the schedule would start it.
    pub async fn publish_once(&self) -> Result<PublishSummary, RunnerError> {
        let event = LambdaEvent::new(self.scheduled_event(), self.context(&self.publisher_fn));
        match tokio::time::timeout(
            self.publisher_fn.timeout,
            handle_schedule(&self.publisher, event),
        )
        .await
        {
            Ok(r) => Ok(r?),
            Err(_) => {
                tracing::warn!(timeout = ?self.publisher_fn.timeout, "publisher run timed out; the next run continues");
                Ok(PublishSummary::default())
            }
        }
    }

    /// Polls and publishes until `shutdown` completes. A batch being processed is finished
    /// (and settled) before returning; only a receive still waiting is abandoned.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let signal = async {
            shutdown.await;
            tracing::info!("shutting down: finishing the batch in hand");
            let _ = stop_tx.send(true);
        };
        let poller = async {
            let mut stop = stop_rx.clone();
            loop {
                if *stop.borrow() {
                    break;
                }
                let received = tokio::select! {
                    _ = stop.changed() => break,
                    r = self.receive_batch() => r,
                };
                let result = match received {
                    Ok(messages) => self.process(messages).await.map(|_| ()),
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    tracing::warn!(error = %e, "event source cycle failed; retrying");
                    tokio::select! {
                        _ = stop.changed() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        };
        let publisher = async {
            let mut stop = stop_rx.clone();
            let mut tick = tokio::time::interval(self.options.publish_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tick.tick() => {}
                }
                if let Err(e) = self.publish_once().await {
                    tracing::warn!(error = %e, "publisher run failed; the next run repeats it");
                }
            }
        };
        tokio::join!(signal, poller, publisher);
    }
}

/// The function environment the runner gives a handler, for printing.
pub fn describe_env(stack: &LocalStack, binary: &'static str) -> Option<BTreeMap<String, String>> {
    let f = find(stack, binary).ok()?;
    stack.function_env(&f.logical_id)
}

//! The local runner: does what Lambda's triggers do in AWS, for every function of the table in
//! [`crate::functions`], calling the functions' library handlers in-process.
//!
//! - **SQS event-source mapping.** Long-polls the function's queue (up to 10 messages per
//!   ReceiveMessage), gathers up to the template's `BatchSize` within its batching window (and
//!   at most 6 MB, Lambda's payload limit), builds an `SqsEvent` as Lambda does, calls the
//!   handler with a context naming the function's ARN, deletes the records that succeeded and
//!   leaves `batchItemFailures` (and everything, if the handler fails or times out) to come back
//!   after the queue's visibility timeout. `retry_after` shortens that wait locally by setting
//!   the failed messages' visibility, which real Lambda does not do.
//! - **Schedule.** Sends the scheduled event every `publish_interval` to the publisher and
//!   every `sweep_interval` to the coverage sweeper (moto never fires schedules).
//! - **HTTP.** Each endpoint of an HTTP-triggered function (its function URL, its HTTP API
//!   routes) gets a listener on `127.0.0.1` (`http_port`, 0 for any free port; see
//!   [`Runner::http_endpoints`]). Each request is read (at most 6 MB), authenticated when the
//!   template says `AWS_IAM` (locally: a well-formed SigV4 header, see
//!   [`crate::http::check_sigv4`]), routed, turned into the event Lambda delivers, and the
//!   handler's answer into the response (see [`crate::http`]).

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageSystemAttributeName,
};
use aws_sdk_sts::config::ProvideCredentials;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use lambda_runtime::{Context, Diagnostic, LambdaEvent};
use peregrine_coverage::SweepSummary;
use peregrine_event::Timestamp;
use peregrine_provision::{ApiKind, HttpAuth};
use peregrine_publisher::PublishSummary;
use serde_json::Value;

use crate::functions::{
    COVERAGE_BINARY, FUNCTIONS, Handler, LocalFunction, PUBLISHER_BINARY, StartError, Trigger,
};
use crate::http::{
    EventContext, HttpKind, HttpRequest, HttpResponse, IamCaller, MAX_PAYLOAD_BYTES,
};
use peregrine_provision::{FunctionError, FunctionSpec, LocalStack, Queue, find_function};

/// Lambda's limit on an invocation's payload, which bounds an SQS batch.
const MAX_BATCH_BYTES: usize = 6 * 1024 * 1024;
/// SQS's largest message.
const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(transparent)]
    Function(#[from] FunctionError),
    #[error("function {0} has no SQS event source in the template")]
    NoEventSource(String),
    #[error(
        "function {0} has no HTTP endpoint in the template (FunctionUrlConfig or an HttpApi event)"
    )]
    NoHttpEndpoint(String),
    #[error("function {function}: {what} is not supported locally")]
    HttpUnsupported { function: String, what: String },
    #[error("function {function}: cannot listen on {addr}: {source}")]
    Listen {
        function: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("function {function}: {source}")]
    Config {
        function: String,
        source: StartError,
    },
    #[error("function {function} cannot start: {source}")]
    Start {
        function: String,
        source: StartError,
    },
    #[error("function {function} failed ({}): {}", diagnostic.error_type, diagnostic.error_message)]
    Invocation {
        function: String,
        diagnostic: Diagnostic,
    },
    #[error("function {function} answered {response}, not what its trigger expects: {source}")]
    Response {
        function: String,
        response: String,
        source: serde_json::Error,
    },
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
    /// Most messages per invocation of an SQS-triggered function (the template's `BatchSize`).
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
    /// How often the coverage sweeper runs (the template's `CoverageSweepRate`).
    pub sweep_interval: Duration,
    /// The port of the first HTTP endpoint on 127.0.0.1; the next ones take the ports after
    /// it, in table order. 0: any free port for each.
    pub http_port: u16,
}

impl RunnerOptions {
    /// The event source's and the schedule's settings from the template (of the table's first
    /// SQS-triggered and first scheduled function).
    pub fn from_stack(stack: &LocalStack) -> RunnerOptions {
        let first = |trigger: Trigger| {
            FUNCTIONS
                .iter()
                .filter(|f| f.trigger == trigger)
                .find_map(|f| find(stack, f.binary).ok())
        };
        let source = first(Trigger::Sqs).and_then(|f| f.sqs.as_ref());
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
            sweep_interval: find(stack, COVERAGE_BINARY)
                .ok()
                .and_then(|f| f.schedule)
                .unwrap_or(Duration::from_secs(300)),
            http_port: 0,
        }
    }
}

fn find<'s>(stack: &'s LocalStack, binary: &str) -> Result<&'s FunctionSpec, RunnerError> {
    Ok(find_function(stack, binary)?)
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

impl PollReport {
    fn add(&mut self, other: PollReport) {
        self.received += other.received;
        self.failed.extend(other.failed);
        self.deleted += other.deleted;
        self.invocation_error = self.invocation_error.take().or(other.invocation_error);
    }
}

/// A function of the table, found in the template, with its handler built.
struct Running {
    binary: &'static str,
    spec: FunctionSpec,
    trigger: Trigger,
    /// The SQS trigger's queue.
    queue: Option<Queue>,
    /// The HTTP trigger's listeners, bound when the runner is built.
    listeners: Vec<Listener>,
    handler: Handler,
}

/// A bound HTTP endpoint of a function.
struct Listener {
    kind: HttpKind,
    socket: std::net::TcpListener,
    addr: SocketAddr,
}

/// An HTTP endpoint the runner serves, for printing and for clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpEndpoint {
    /// The function's logical id.
    pub function: String,
    pub binary: &'static str,
    pub kind: HttpKind,
    pub addr: SocketAddr,
}

impl HttpEndpoint {
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

/// The runner's own identity (its credentials' key and STS GetCallerIdentity), which names a
/// caller signing with that key.
#[derive(Clone, Debug, Default)]
struct OwnIdentity {
    access_key: Option<String>,
    arn: Option<String>,
    user_id: Option<String>,
}

/// The event-source mapping, schedule and HTTP front stand-in.
pub struct Runner {
    sqs: aws_sdk_sqs::Client,
    sts: aws_sdk_sts::Client,
    credentials: Option<aws_sdk_sts::config::SharedCredentialsProvider>,
    identity: tokio::sync::OnceCell<OwnIdentity>,
    region: String,
    account_id: String,
    functions: Vec<Running>,
    options: RunnerOptions,
    invocations: AtomicU64,
}

/// The HTTP endpoints a function's template entry asks for.
fn http_kinds(spec: &FunctionSpec) -> Result<Vec<HttpKind>, RunnerError> {
    let unsupported = |what: &str| RunnerError::HttpUnsupported {
        function: spec.logical_id.clone(),
        what: what.to_owned(),
    };
    let mut kinds = Vec::new();
    if spec.url.is_some() {
        kinds.push(HttpKind::FunctionUrl);
    }
    for route in &spec.routes {
        match route.api {
            ApiKind::HttpApi => {}
            ApiKind::HttpApiV1 => {
                return Err(unsupported(&format!(
                    "event {}: HttpApi payload format 1.0",
                    route.event
                )));
            }
            ApiKind::RestApi => {
                return Err(unsupported(&format!(
                    "event {}: a REST API (Type: Api); use HttpApi or a function URL",
                    route.event
                )));
            }
        }
    }
    if !spec.routes.is_empty() {
        kinds.push(HttpKind::HttpApi);
    }
    if kinds.is_empty() {
        return Err(RunnerError::NoHttpEndpoint(spec.logical_id.clone()));
    }
    Ok(kinds)
}

impl Runner {
    /// Runs every function of [`FUNCTIONS`], built from its template environment.
    pub fn from_stack(
        sdk: &SdkConfig,
        stack: &LocalStack,
        options: RunnerOptions,
    ) -> Result<Runner, RunnerError> {
        Runner::new(sdk, stack, options, FUNCTIONS)
    }

    /// As [`Runner::from_stack`], with the table given (tests run a function of their own).
    pub fn new(
        sdk: &SdkConfig,
        stack: &LocalStack,
        options: RunnerOptions,
        table: &[LocalFunction],
    ) -> Result<Runner, RunnerError> {
        let mut functions = Vec::with_capacity(table.len());
        let mut next_port = options.http_port;
        for row in table {
            let spec = find(stack, row.binary)?.clone();
            let queue = match row.trigger {
                Trigger::Sqs => Some(
                    stack
                        .event_source_queue(&spec.logical_id)
                        .cloned()
                        .ok_or_else(|| RunnerError::NoEventSource(spec.logical_id.clone()))?,
                ),
                Trigger::Schedule | Trigger::Http => None,
            };
            let mut listeners = Vec::new();
            if row.trigger == Trigger::Http {
                for kind in http_kinds(&spec)? {
                    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, next_port));
                    let listen = |source| RunnerError::Listen {
                        function: spec.logical_id.clone(),
                        addr,
                        source,
                    };
                    let socket = std::net::TcpListener::bind(addr).map_err(listen)?;
                    socket.set_nonblocking(true).map_err(listen)?;
                    let addr = socket.local_addr().map_err(listen)?;
                    if next_port != 0 {
                        next_port = next_port.saturating_add(1);
                    }
                    listeners.push(Listener { kind, socket, addr });
                }
            }
            let env = stack.function_env(&spec.logical_id).unwrap_or_default();
            let handler = (row.start)(sdk, &|k| env.get(k).cloned()).map_err(|source| {
                RunnerError::Start {
                    function: spec.logical_id.clone(),
                    source,
                }
            })?;
            functions.push(Running {
                binary: row.binary,
                spec,
                trigger: row.trigger,
                queue,
                listeners,
                handler,
            });
        }
        Ok(Runner {
            sqs: aws_sdk_sqs::Client::new(sdk),
            sts: aws_sdk_sts::Client::new(sdk),
            credentials: sdk.credentials_provider(),
            identity: tokio::sync::OnceCell::new(),
            region: stack.context.region.clone(),
            account_id: stack.context.account_id.clone(),
            functions,
            options,
            invocations: AtomicU64::new(0),
        })
    }

    fn triggered(&self, trigger: Trigger) -> impl Iterator<Item = &Running> {
        self.functions.iter().filter(move |f| f.trigger == trigger)
    }

    /// The queue of the first SQS-triggered function (the one agents send to).
    pub fn queue(&self) -> Option<&Queue> {
        self.triggered(Trigger::Sqs).find_map(|f| f.queue.as_ref())
    }

    pub fn options(&self) -> &RunnerOptions {
        &self.options
    }

    /// The HTTP endpoints being served (bound when the runner was built).
    pub fn http_endpoints(&self) -> Vec<HttpEndpoint> {
        self.triggered(Trigger::Http)
            .flat_map(|f| {
                f.listeners.iter().map(|l| HttpEndpoint {
                    function: f.spec.logical_id.clone(),
                    binary: f.binary,
                    kind: l.kind,
                    addr: l.addr,
                })
            })
            .collect()
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

    /// Invokes a function within its timeout: `None` when it timed out.
    async fn invoke(&self, f: &Running, payload: Value) -> Option<Result<Value, Diagnostic>> {
        let event = LambdaEvent::new(payload, self.context(&f.spec));
        tokio::time::timeout(f.spec.timeout, f.handler.invoke(event))
            .await
            .ok()
    }

    async fn receive(
        &self,
        queue: &Queue,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Message>, RunnerError> {
        let max = i32::try_from(max.clamp(1, 10)).unwrap_or(10);
        let wait = i32::try_from(wait.as_secs().min(20)).unwrap_or(20);
        let resp = self
            .sqs
            .receive_message()
            .queue_url(&queue.url)
            .max_number_of_messages(max)
            .wait_time_seconds(wait)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| sqs_error("ReceiveMessage", e))?;
        Ok(resp.messages().to_vec())
    }

    /// Gathers one batch from a queue: waits up to `wait_time` for a first message, then keeps
    /// receiving within the batching window until the batch is full.
    async fn receive_batch(&self, queue: &Queue) -> Result<Vec<Message>, RunnerError> {
        let size = self.options.batch_size.max(1);
        let mut batch = self.receive(queue, size, self.options.wait_time).await?;
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
                .receive(queue, (size - batch.len()).min(room), Duration::ZERO)
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
    pub fn sqs_event(&self, queue: &Queue, messages: &[Message]) -> SqsEvent {
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
                r.event_source_arn = Some(queue.arn.clone());
                r.aws_region = Some(self.region.clone());
                r
            })
            .collect();
        let mut event = SqsEvent::default();
        event.records = records;
        event
    }

    /// Invokes an SQS-triggered function on a batch and settles it with SQS as Lambda would.
    async fn process(
        &self,
        f: &Running,
        queue: &Queue,
        messages: Vec<Message>,
    ) -> Result<PollReport, RunnerError> {
        let mut report = PollReport {
            received: messages.len(),
            ..PollReport::default()
        };
        if messages.is_empty() {
            return Ok(report);
        }
        let event = serde_json::to_value(self.sqs_event(queue, &messages)).map_err(|source| {
            RunnerError::Response {
                function: f.spec.logical_id.clone(),
                response: "(the SQS event)".into(),
                source,
            }
        })?;
        let every = || {
            messages
                .iter()
                .filter_map(|m| m.message_id().map(str::to_owned))
                .collect()
        };
        let failed: Vec<String> = match self.invoke(f, event).await {
            Some(Ok(response)) => serde_json::from_value::<SqsBatchResponse>(response)
                .map_err(|source| RunnerError::Response {
                    function: f.spec.logical_id.clone(),
                    response: "its response".into(),
                    source,
                })?
                .batch_item_failures
                .into_iter()
                .map(|f| f.item_identifier)
                .collect(),
            Some(Err(e)) => {
                report.invocation_error = Some(e.error_message);
                every()
            }
            None => {
                report.invocation_error = Some(format!(
                    "timed out after {:?} (the function's Timeout)",
                    f.spec.timeout
                ));
                every()
            }
        };
        // Lambda treats an empty or unknown identifier as a failure of the whole batch.
        let whole_batch = failed.iter().any(|id| {
            id.is_empty() || !messages.iter().any(|m| m.message_id() == Some(id.as_str()))
        });
        let (done, retry): (Vec<&Message>, Vec<&Message>) = messages.iter().partition(|m| {
            !whole_batch && !failed.iter().any(|id| m.message_id() == Some(id.as_str()))
        });
        report.deleted = self.delete(queue, &done).await?;
        if let Some(after) = self.options.retry_after {
            self.make_visible(queue, &retry, after).await?;
        }
        report.failed = retry
            .iter()
            .filter_map(|m| m.message_id().map(str::to_owned))
            .collect();
        tracing::info!(
            function = %f.spec.logical_id,
            received = report.received,
            deleted = report.deleted,
            failed = report.failed.len(),
            invocation_error = report.invocation_error.as_deref().unwrap_or(""),
            "invocation settled"
        );
        Ok(report)
    }

    /// One event-source cycle of one function: receive a batch, invoke, settle.
    async fn poll(&self, f: &Running) -> Result<PollReport, RunnerError> {
        let Some(queue) = &f.queue else {
            return Ok(PollReport::default());
        };
        let messages = self.receive_batch(queue).await?;
        self.process(f, queue, messages).await
    }

    /// One event-source cycle of every SQS-triggered function (waiting up to `wait_time` for
    /// each), their reports added up.
    pub async fn poll_once(&self) -> Result<PollReport, RunnerError> {
        let mut report = PollReport::default();
        for f in self.triggered(Trigger::Sqs) {
            report.add(self.poll(f).await?);
        }
        Ok(report)
    }

    async fn delete(&self, queue: &Queue, messages: &[&Message]) -> Result<usize, RunnerError> {
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
                .queue_url(&queue.url)
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
        queue: &Queue,
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
                .queue_url(&queue.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| sqs_error("ChangeMessageVisibilityBatch", e))?;
        }
        Ok(())
    }

    /// The scheduled event EventBridge would send a function.
    pub fn scheduled_event(&self, f: &FunctionSpec) -> Value {
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
                self.region, self.account_id, f.name
            )],
            "detail": {}
        })
    }

    /// One scheduled run of a function: its response, or `None` when it timed out.
    async fn fire(&self, f: &Running) -> Result<Option<Value>, RunnerError> {
        match self.invoke(f, self.scheduled_event(&f.spec)).await {
            Some(Ok(response)) => Ok(Some(response)),
            Some(Err(diagnostic)) => Err(RunnerError::Invocation {
                function: f.spec.logical_id.clone(),
                diagnostic,
            }),
            None => {
                tracing::warn!(function = %f.spec.logical_id, timeout = ?f.spec.timeout, "scheduled run timed out; the next run continues");
                Ok(None)
            }
        }
    }

    /// One scheduled run of the function running `binary`.
    pub async fn fire_once(&self, binary: &'static str) -> Result<Option<Value>, RunnerError> {
        let f = self
            .triggered(Trigger::Schedule)
            .find(|f| f.spec.binary.as_deref() == Some(binary))
            .ok_or_else(|| FunctionError::NoFunction(binary.to_owned()))?;
        self.fire(f).await
    }

    /// One publisher run, as the schedule would start it.
    pub async fn publish_once(&self) -> Result<PublishSummary, RunnerError> {
        match self.fire_once(PUBLISHER_BINARY).await? {
            None => Ok(PublishSummary::default()),
            Some(response) => {
                serde_json::from_value(response.clone()).map_err(|source| RunnerError::Response {
                    function: PUBLISHER_BINARY.into(),
                    response: response.to_string(),
                    source,
                })
            }
        }
    }

    /// One coverage sweep, as the schedule would start it: the sweep's summary, or `None`
    /// when it timed out.
    pub async fn sweep_once(&self) -> Result<Option<SweepSummary>, RunnerError> {
        match self.fire_once(COVERAGE_BINARY).await? {
            None => Ok(None),
            Some(response) => {
                serde_json::from_value(response.clone())
                    .map(Some)
                    .map_err(|source| RunnerError::Response {
                        function: COVERAGE_BINARY.into(),
                        response: response.to_string(),
                        source,
                    })
            }
        }
    }

    /// Runs every function on its trigger until `shutdown` completes. A batch being processed
    /// is finished (and settled) before returning; only a receive still waiting is abandoned.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let signal = async {
            shutdown.await;
            tracing::info!("shutting down: finishing the batch in hand");
            let _ = stop_tx.send(true);
        };
        let loops: Vec<Pin<Box<dyn Future<Output = ()> + Send + '_>>> = self
            .functions
            .iter()
            .map(|f| -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
                match f.trigger {
                    Trigger::Sqs => Box::pin(self.poll_loop(f, stop_rx.clone())),
                    Trigger::Schedule => Box::pin(self.schedule_loop(f, stop_rx.clone())),
                    Trigger::Http => Box::pin(self.http_loop(f, stop_rx.clone())),
                }
            })
            .collect();
        tokio::join!(signal, futures_util::future::join_all(loops));
    }

    async fn poll_loop(&self, f: &Running, mut stop: tokio::sync::watch::Receiver<bool>) {
        let Some(queue) = &f.queue else { return };
        loop {
            if *stop.borrow() {
                break;
            }
            let received = tokio::select! {
                _ = stop.changed() => break,
                r = self.receive_batch(queue) => r,
            };
            let result = match received {
                Ok(messages) => self.process(f, queue, messages).await.map(|_| ()),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::warn!(function = %f.spec.logical_id, error = %e, "event source cycle failed; retrying");
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }

    async fn schedule_loop(&self, f: &Running, mut stop: tokio::sync::watch::Receiver<bool>) {
        let period = if f.binary == COVERAGE_BINARY {
            self.options.sweep_interval
        } else {
            self.options.publish_interval
        };
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.fire(f).await {
                tracing::warn!(function = %f.spec.logical_id, error = %e, "scheduled run failed; the next run repeats it");
            }
        }
    }
}

impl Runner {
    /// Serves every endpoint of an HTTP-triggered function until stopped. Connections are
    /// served concurrently; on stop, requests in flight are abandoned.
    async fn http_loop(&self, f: &Running, stop: tokio::sync::watch::Receiver<bool>) {
        let serving = f
            .listeners
            .iter()
            .map(|l| self.serve_endpoint(f, l, stop.clone()));
        futures_util::future::join_all(serving).await;
    }

    async fn serve_endpoint(
        &self,
        f: &Running,
        l: &Listener,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let listener = match l
            .socket
            .try_clone()
            .and_then(tokio::net::TcpListener::from_std)
        {
            Ok(listener) => listener,
            Err(e) => {
                tracing::error!(function = %f.spec.logical_id, addr = %l.addr, error = %e, "cannot serve HTTP");
                return;
            }
        };
        tracing::info!(function = %f.spec.logical_id, kind = ?l.kind, url = %format!("http://{}/", l.addr), "serving HTTP");
        let mut connections = FuturesUnordered::new();
        loop {
            if *stop.borrow() {
                break;
            }
            tokio::select! {
                _ = stop.changed() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let kind = l.kind;
                        let service = hyper::service::service_fn(move |req| async move {
                            Ok::<_, Infallible>(self.http_request(f, kind, peer, req).await)
                        });
                        connections.push(
                            hyper::server::conn::http1::Builder::new()
                                .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                        );
                    }
                    Err(e) => tracing::warn!(function = %f.spec.logical_id, error = %e, "accept failed"),
                },
                Some(done) = connections.next(), if !connections.is_empty() => {
                    if let Err(e) = done {
                        tracing::debug!(function = %f.spec.logical_id, error = %e, "HTTP connection ended with an error");
                    }
                }
            }
        }
    }

    /// The runner's own identity, looked up once.
    async fn own_identity(&self) -> &OwnIdentity {
        self.identity
            .get_or_init(|| async {
                let access_key = match &self.credentials {
                    Some(p) => p
                        .provide_credentials()
                        .await
                        .ok()
                        .map(|c| c.access_key_id().to_owned()),
                    None => None,
                };
                let me = self.sts.get_caller_identity().send().await.ok();
                OwnIdentity {
                    access_key,
                    arn: me.as_ref().and_then(|m| m.arn().map(str::to_owned)),
                    user_id: me.as_ref().and_then(|m| m.user_id().map(str::to_owned)),
                }
            })
            .await
    }

    /// One HTTP request through a function, as its function URL or HTTP API would take it.
    async fn http_request(
        &self,
        f: &Running,
        kind: HttpKind,
        peer: SocketAddr,
        req: Request<Incoming>,
    ) -> HttpResponse {
        let too_large = || {
            crate::http::front_error(
                kind,
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "Request must be smaller than {MAX_PAYLOAD_BYTES} bytes for the InvokeFunction operation"
                ),
            )
        };
        let (parts, body) = req.into_parts();
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_PAYLOAD_BYTES as u64) {
            return too_large();
        }
        let body = match Limited::new(body, MAX_PAYLOAD_BYTES).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return too_large(),
            Err(e) => {
                return crate::http::front_error(
                    kind,
                    StatusCode::BAD_REQUEST,
                    &format!("reading the body: {e}"),
                );
            }
        };
        let request = HttpRequest {
            method: parts.method,
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or_default().to_owned(),
            headers: parts.headers,
            body,
            peer,
        };
        let (route, auth) = match kind {
            HttpKind::FunctionUrl => (None, f.spec.url.as_ref().map_or(HttpAuth::None, |u| u.auth)),
            HttpKind::HttpApi => {
                match crate::http::match_route(&f.spec.routes, &request.method, &request.path) {
                    Some((route, params)) => (Some((route, params)), route.auth),
                    None => {
                        return crate::http::front_error(kind, StatusCode::NOT_FOUND, "Not Found");
                    }
                }
            }
        };
        let iam = match auth {
            HttpAuth::None => None,
            HttpAuth::AwsIam => {
                match crate::http::check_sigv4(&request.headers, &self.region, kind.service()) {
                    Ok(sig) => {
                        let own = self.own_identity().await;
                        let mine = own.access_key.as_deref() == Some(sig.access_key.as_str());
                        Some(IamCaller {
                            access_key: sig.access_key,
                            account_id: self.account_id.clone(),
                            user_arn: own.arn.clone().filter(|_| mine),
                            user_id: own.user_id.clone().filter(|_| mine),
                        })
                    }
                    Err(e) => {
                        tracing::info!(function = %f.spec.logical_id, error = %e, "HTTP request refused");
                        return crate::http::front_error(
                            kind,
                            StatusCode::FORBIDDEN,
                            &e.to_string(),
                        );
                    }
                }
            }
        };
        let ctx = EventContext {
            account_id: self.account_id.clone(),
            request_id: format!("local-http-{:08}", self.invocations.load(Ordering::Relaxed)),
            iam,
        };
        let event = match route {
            None => serde_json::to_value(crate::http::function_url_event(&request, &ctx)),
            Some((route, params)) => {
                serde_json::to_value(crate::http::http_api_event(&request, route, params, &ctx))
            }
        };
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                return crate::http::front_error(
                    kind,
                    StatusCode::BAD_REQUEST,
                    &format!("the request cannot be an event: {e}"),
                );
            }
        };
        if serde_json::to_vec(&event).map_or(0, |v| v.len()) > MAX_PAYLOAD_BYTES {
            return too_large();
        }
        let (status, message) = match kind {
            HttpKind::FunctionUrl => (StatusCode::BAD_GATEWAY, "Internal Server Error"),
            HttpKind::HttpApi => (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
        };
        match self.invoke(f, event).await {
            Some(Ok(answer)) => crate::http::response(answer).unwrap_or_else(|why| {
                tracing::warn!(function = %f.spec.logical_id, why = %why, "the function's answer is not an HTTP response");
                crate::http::front_error(kind, status, message)
            }),
            Some(Err(d)) => {
                tracing::warn!(function = %f.spec.logical_id, error_type = %d.error_type, error = %d.error_message, "function failed");
                crate::http::front_error(kind, status, message)
            }
            None => {
                tracing::warn!(function = %f.spec.logical_id, timeout = ?f.spec.timeout, "function timed out");
                match kind {
                    HttpKind::FunctionUrl => crate::http::front_error(kind, status, message),
                    HttpKind::HttpApi => crate::http::front_error(
                        kind,
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Service Unavailable",
                    ),
                }
            }
        }
    }
}

/// The function environment the runner gives a handler, for printing.
pub fn describe_env(stack: &LocalStack, binary: &'static str) -> Option<BTreeMap<String, String>> {
    let f = find(stack, binary).ok()?;
    stack.function_env(&f.logical_id)
}

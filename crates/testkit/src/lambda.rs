//! What Lambda hands a function: an SQS event as the event-source mapping builds it, and the
//! invocation context.
//!
//! ```
//! use peregrine_testkit::lambda::SqsEventBuilder;
//! let event = SqsEventBuilder::new("arn:aws:sqs:us-east-1:123456789012:events")
//!     .message("m-1", "body")
//!     .build();
//! assert_eq!(event.records[0].attributes["ApproximateReceiveCount"], "1");
//! ```

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
#[cfg(feature = "lambda")]
use lambda_runtime::Context;

/// An `SqsEvent` under construction: the queue's messages in order, each delivered for the
/// first time, with the system attributes the event-source mapping passes on.
#[derive(Clone, Debug)]
pub struct SqsEventBuilder {
    queue_arn: String,
    region: Option<String>,
    sent: Option<(i64, String)>,
    records: Vec<SqsMessage>,
}

impl SqsEventBuilder {
    pub fn new(queue_arn: &str) -> Self {
        SqsEventBuilder {
            queue_arn: queue_arn.into(),
            region: None,
            sent: None,
            records: Vec::new(),
        }
    }

    /// The records' `awsRegion`.
    pub fn region(mut self, region: &str) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Every message was sent at `sent_ms` (Unix milliseconds) by `sender_id`, and first
    /// received 200 ms later.
    pub fn sent(mut self, sent_ms: i64, sender_id: &str) -> Self {
        self.sent = Some((sent_ms, sender_id.into()));
        self
    }

    /// One more message.
    pub fn message(mut self, message_id: &str, body: &str) -> Self {
        let mut m = SqsMessage::default();
        m.message_id = Some(message_id.into());
        m.body = Some(body.into());
        self.records.push(m);
        self
    }

    /// The receipt handle of the last message.
    pub fn receipt_handle(mut self, handle: &str) -> Self {
        if let Some(m) = self.records.last_mut() {
            m.receipt_handle = Some(handle.into());
        }
        self
    }

    pub fn build(self) -> SqsEvent {
        let mut event = SqsEvent::default();
        event.records = self
            .records
            .into_iter()
            .map(|mut m| {
                m.attributes
                    .insert("ApproximateReceiveCount".into(), "1".into());
                if let Some((sent_ms, sender)) = &self.sent {
                    for (k, v) in [
                        ("SentTimestamp", sent_ms.to_string()),
                        ("SenderId", sender.clone()),
                        (
                            "ApproximateFirstReceiveTimestamp",
                            (sent_ms + 200).to_string(),
                        ),
                    ] {
                        m.attributes.insert(k.into(), v);
                    }
                }
                m.event_source = Some("aws:sqs".into());
                m.event_source_arn = Some(self.queue_arn.clone());
                m.aws_region.clone_from(&self.region);
                m
            })
            .collect();
        event
    }
}

/// The SQS event of `(message id, body)` pairs from the queue `queue_arn`.
pub fn sqs_event(queue_arn: &str, messages: &[(&str, &str)]) -> SqsEvent {
    messages
        .iter()
        .fold(SqsEventBuilder::new(queue_arn), |b, (id, body)| {
            b.message(id, body)
        })
        .build()
}

#[cfg(feature = "lambda")]
/// An invocation's context: its request id and the function's ARN (no deadline).
pub fn context(request_id: &str, function_arn: &str) -> Context {
    let mut ctx = Context::default();
    ctx.request_id = request_id.into();
    ctx.invoked_function_arn = function_arn.into();
    ctx
}

/// A function URL request (payload format 2.0) as Lambda hands it to the function: `method`
/// and `path`, the query string both raw and as parameters, and a JSON body.
pub fn function_url_request(
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    body: Option<String>,
) -> aws_lambda_events::lambda_function_urls::LambdaFunctionUrlRequest {
    use aws_lambda_events::lambda_function_urls::{
        LambdaFunctionUrlRequest, LambdaFunctionUrlRequestContext,
        LambdaFunctionUrlRequestContextHttpDescription,
    };
    let mut http = LambdaFunctionUrlRequestContextHttpDescription::default();
    http.method = Some(method.to_owned());
    http.path = Some(path.to_owned());
    http.protocol = Some("HTTP/1.1".into());
    http.source_ip = Some("127.0.0.1".into());
    http.user_agent = Some("peregrine-testkit".into());
    let mut context = LambdaFunctionUrlRequestContext::default();
    context.account_id = Some("123456789012".into());
    context.request_id = Some("r-1".into());
    context.http = http;
    let mut request = LambdaFunctionUrlRequest::default();
    request.version = Some("2.0".into());
    request.raw_path = Some(path.to_owned());
    request.raw_query_string = Some(
        query
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&"),
    );
    request.query_string_parameters = query
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    request.headers.insert(
        "content-type",
        aws_lambda_events::http::HeaderValue::from_static("application/json"),
    );
    request.request_context = context;
    request.body = body;
    request
}

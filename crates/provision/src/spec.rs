//! What the template asks for, resolved for a local stack: queues, tables, buses, rules, queue
//! policies and the functions' configuration (environment, event sources). These are plain
//! values, compared with what an endpoint describes back (see `provision.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

use crate::template::{Resolver, TemplateError, json_text, json_u64, kinds};

fn invalid(at: &str, message: impl Into<String>) -> TemplateError {
    TemplateError::Invalid {
        at: at.to_owned(),
        message: message.into(),
    }
}

/// The resolved `Properties` of a resource (an empty object when it has none), leaving out
/// `skip`: properties with no local meaning (KMS keys, say), which may reference resources that
/// do not exist locally.
fn properties(
    r: &Resolver<'_>,
    id: &str,
    skip: &[&str],
) -> Result<serde_json::Map<String, Json>, TemplateError> {
    let at = format!("Resources.{id}.Properties");
    let mut out = serde_json::Map::new();
    let Some(props) = r.template().properties(id) else {
        return Ok(out);
    };
    let props = props
        .as_mapping()
        .ok_or_else(|| invalid(&at, "is not a mapping"))?;
    for (k, v) in props {
        let key = k
            .as_str()
            .ok_or_else(|| invalid(&at, "a property name is not a string"))?;
        if skip.contains(&key) {
            continue;
        }
        if let Some(value) = r.resolve(v, &format!("{at}.{key}"))? {
            out.insert(key.to_owned(), value);
        }
    }
    Ok(out)
}

fn tags(props: &serde_json::Map<String, Json>) -> BTreeMap<String, String> {
    props
        .get("Tags")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| Some((json_text(t.get("Key")?)?, json_text(t.get("Value")?)?)))
        .collect()
}

/// An SQS queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueSpec {
    pub logical_id: String,
    pub name: String,
    pub arn: String,
    /// SQS attribute names and values (`VisibilityTimeout`, `RedrivePolicy` as JSON, ...).
    pub attributes: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    /// The logical id of the dead-letter queue, when the queue has a redrive policy.
    pub dead_letter_queue: Option<String>,
    pub max_receive_count: Option<u64>,
}

/// Queue properties that map one to one onto SQS attributes.
const QUEUE_ATTRIBUTES: &[&str] = &[
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
    "SqsManagedSseEnabled",
];
/// Queue properties accepted and not applied locally (moto has no KMS integration).
const QUEUE_IGNORED: &[&str] = &[
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "QueueName",
];

impl QueueSpec {
    pub fn from_template(r: &Resolver<'_>, id: &str) -> Result<QueueSpec, TemplateError> {
        let at = format!("Resources.{id}.Properties");
        let props = properties(r, id, QUEUE_IGNORED)?;
        let mut attributes = BTreeMap::new();
        let mut dead_letter_queue = None;
        let mut max_receive_count = None;
        for (k, v) in &props {
            if QUEUE_ATTRIBUTES.contains(&k.as_str()) {
                let text =
                    json_text(v).ok_or_else(|| invalid(&at, format!("{k} is not a scalar")))?;
                attributes.insert(k.clone(), text);
            } else if k == "RedrivePolicy" {
                let target = v
                    .get("deadLetterTargetArn")
                    .and_then(json_text)
                    .ok_or_else(|| invalid(&at, "RedrivePolicy has no deadLetterTargetArn"))?;
                let count = v
                    .get("maxReceiveCount")
                    .and_then(json_u64)
                    .ok_or_else(|| invalid(&at, "RedrivePolicy has no maxReceiveCount"))?;
                dead_letter_queue = r
                    .template()
                    .resources_of(kinds::QUEUE)
                    .into_iter()
                    .find(|q| r.arn(q, &at).is_ok_and(|a| a == target));
                max_receive_count = Some(count);
                attributes.insert(
                    "RedrivePolicy".into(),
                    serde_json::json!({"deadLetterTargetArn": target, "maxReceiveCount": count})
                        .to_string(),
                );
            } else if k != "Tags" {
                return Err(invalid(
                    &at,
                    format!("queue property {k} is not supported locally"),
                ));
            }
        }
        Ok(QueueSpec {
            logical_id: id.to_owned(),
            name: r.physical_name(id)?,
            arn: r.arn(id, &at)?,
            attributes,
            tags: tags(&props),
            dead_letter_queue,
            max_receive_count,
        })
    }
}

/// A key schema element: (attribute name, `HASH` or `RANGE`).
pub type KeyElement = (String, String);

/// A global secondary index.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct IndexSpec {
    pub name: String,
    pub key_schema: Vec<KeyElement>,
    pub projection_type: String,
    pub non_key_attributes: Vec<String>,
}

/// A DynamoDB table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableSpec {
    pub logical_id: String,
    pub name: String,
    /// (attribute name, `S`/`N`/`B`), sorted by name.
    pub attribute_definitions: Vec<(String, String)>,
    pub key_schema: Vec<KeyElement>,
    /// Sorted by name.
    pub global_secondary_indexes: Vec<IndexSpec>,
    pub billing_mode: String,
    /// The TTL attribute, when TTL is enabled.
    pub ttl_attribute: Option<String>,
    pub stream_view_type: Option<String>,
    pub tags: BTreeMap<String, String>,
}

const TABLE_IGNORED: &[&str] = &[
    "SSESpecification",
    "PointInTimeRecoverySpecification",
    "TableName",
    "DeletionProtectionEnabled",
    "ContributorInsightsSpecification",
    "TableClass",
];

/// Two members of an object, as text.
fn pair(v: &Json, a: &str, b: &str) -> Option<(String, String)> {
    Some((json_text(v.get(a)?)?, json_text(v.get(b)?)?))
}

fn key_schema(v: Option<&Json>, at: &str) -> Result<Vec<KeyElement>, TemplateError> {
    v.and_then(Json::as_array)
        .ok_or_else(|| invalid(at, "KeySchema is missing"))?
        .iter()
        .map(|k| {
            pair(k, "AttributeName", "KeyType")
                .ok_or_else(|| invalid(at, "a KeySchema element lacks AttributeName or KeyType"))
        })
        .collect()
}

impl TableSpec {
    pub fn from_template(r: &Resolver<'_>, id: &str) -> Result<TableSpec, TemplateError> {
        let at = format!("Resources.{id}.Properties");
        let props = properties(r, id, TABLE_IGNORED)?;
        for k in props.keys() {
            let known = [
                "Tags",
                "AttributeDefinitions",
                "KeySchema",
                "GlobalSecondaryIndexes",
                "BillingMode",
                "TimeToLiveSpecification",
                "StreamSpecification",
            ];
            if !known.contains(&k.as_str()) {
                return Err(invalid(
                    &at,
                    format!("table property {k} is not supported locally"),
                ));
            }
        }
        let mut attribute_definitions: Vec<(String, String)> = props
            .get("AttributeDefinitions")
            .and_then(Json::as_array)
            .ok_or_else(|| invalid(&at, "AttributeDefinitions is missing"))?
            .iter()
            .map(|a| {
                pair(a, "AttributeName", "AttributeType")
                    .ok_or_else(|| invalid(&at, "an attribute definition is incomplete"))
            })
            .collect::<Result<_, _>>()?;
        attribute_definitions.sort();
        let mut global_secondary_indexes = Vec::new();
        for g in props
            .get("GlobalSecondaryIndexes")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            let name = g
                .get("IndexName")
                .and_then(json_text)
                .ok_or_else(|| invalid(&at, "a GSI has no IndexName"))?;
            let projection = g.get("Projection");
            global_secondary_indexes.push(IndexSpec {
                key_schema: key_schema(g.get("KeySchema"), &format!("{at}.{name}"))?,
                projection_type: projection
                    .and_then(|p| p.get("ProjectionType"))
                    .and_then(json_text)
                    .unwrap_or_else(|| "ALL".into()),
                non_key_attributes: projection
                    .and_then(|p| p.get("NonKeyAttributes"))
                    .and_then(Json::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(json_text)
                    .collect(),
                name,
            });
        }
        global_secondary_indexes.sort();
        let ttl = props.get("TimeToLiveSpecification");
        let ttl_attribute = ttl
            .filter(|t| t.get("Enabled").and_then(json_text).as_deref() == Some("true"))
            .and_then(|t| t.get("AttributeName"))
            .and_then(json_text);
        Ok(TableSpec {
            logical_id: id.to_owned(),
            name: r.physical_name(id)?,
            attribute_definitions,
            key_schema: key_schema(props.get("KeySchema"), &at)?,
            global_secondary_indexes,
            billing_mode: props
                .get("BillingMode")
                .and_then(json_text)
                .unwrap_or_else(|| "PROVISIONED".into()),
            ttl_attribute,
            stream_view_type: props
                .get("StreamSpecification")
                .and_then(|s| s.get("StreamViewType"))
                .and_then(json_text),
            tags: tags(&props),
        })
    }

    /// What differs between this (the template) and `actual` (described from an endpoint).
    pub fn differences(&self, actual: &TableSpec) -> Vec<String> {
        let mut d = Vec::new();
        if self.key_schema != actual.key_schema {
            d.push(format!(
                "key schema {:?} != {:?}",
                actual.key_schema, self.key_schema
            ));
        }
        if self.attribute_definitions != actual.attribute_definitions {
            d.push(format!(
                "attribute definitions {:?} != {:?}",
                actual.attribute_definitions, self.attribute_definitions
            ));
        }
        if self.global_secondary_indexes != actual.global_secondary_indexes {
            d.push(format!(
                "GSIs {:?} != {:?}",
                actual.global_secondary_indexes, self.global_secondary_indexes
            ));
        }
        if self.billing_mode != actual.billing_mode {
            d.push(format!(
                "billing mode {} != {}",
                actual.billing_mode, self.billing_mode
            ));
        }
        if self.ttl_attribute != actual.ttl_attribute {
            d.push(format!(
                "TTL attribute {:?} != {:?}",
                actual.ttl_attribute, self.ttl_attribute
            ));
        }
        d
    }
}

/// An EventBridge bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusSpec {
    pub logical_id: String,
    pub name: String,
    pub tags: BTreeMap<String, String>,
}

impl BusSpec {
    pub fn from_template(r: &Resolver<'_>, id: &str) -> Result<BusSpec, TemplateError> {
        let props = properties(r, id, &["Policy", "KmsKeyIdentifier", "DeadLetterConfig"])?;
        Ok(BusSpec {
            logical_id: id.to_owned(),
            name: r.physical_name(id)?,
            tags: tags(&props),
        })
    }
}

/// An EventBridge rule with its targets.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleSpec {
    pub logical_id: String,
    pub name: String,
    pub bus: String,
    pub event_pattern: Option<Json>,
    pub schedule: Option<String>,
    pub state: String,
    pub description: Option<String>,
    /// (target id, target ARN).
    pub targets: Vec<(String, String)>,
    pub tags: BTreeMap<String, String>,
}

impl RuleSpec {
    pub fn from_template(r: &Resolver<'_>, id: &str) -> Result<RuleSpec, TemplateError> {
        let at = format!("Resources.{id}.Properties");
        let props = properties(r, id, &["RoleArn"])?;
        let mut targets = Vec::new();
        for t in props
            .get("Targets")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            if t.get("InputTransformer").is_some()
                || t.get("Input").is_some()
                || t.get("InputPath").is_some()
            {
                // moto fails a whole PutEvents when a transformer's path is missing
                // (../shared/reference/aws-local.md); local rules deliver the event as is.
                return Err(invalid(
                    &at,
                    "target input transformers are not supported locally",
                ));
            }
            let tid = t
                .get("Id")
                .and_then(json_text)
                .ok_or_else(|| invalid(&at, "a target has no Id"))?;
            let arn = t
                .get("Arn")
                .and_then(json_text)
                .ok_or_else(|| invalid(&at, "a target has no Arn"))?;
            targets.push((tid, arn));
        }
        Ok(RuleSpec {
            logical_id: id.to_owned(),
            name: r.physical_name(id)?,
            bus: r.rule_bus(id)?,
            event_pattern: props.get("EventPattern").cloned(),
            schedule: props.get("ScheduleExpression").and_then(json_text),
            state: props
                .get("State")
                .and_then(json_text)
                .unwrap_or_else(|| "ENABLED".into()),
            description: props.get("Description").and_then(json_text),
            targets,
            tags: tags(&props),
        })
    }
}

/// An SQS queue policy: the logical ids of its queues and the policy document.
#[derive(Clone, Debug, PartialEq)]
pub struct QueuePolicySpec {
    pub logical_id: String,
    pub queue_urls: Vec<String>,
    pub policy: Json,
}

impl QueuePolicySpec {
    /// Needs the queues' URLs recorded in the resolver first.
    pub fn from_template(r: &Resolver<'_>, id: &str) -> Result<QueuePolicySpec, TemplateError> {
        let at = format!("Resources.{id}.Properties");
        let props = properties(r, id, &[])?;
        Ok(QueuePolicySpec {
            logical_id: id.to_owned(),
            queue_urls: props
                .get("Queues")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
                .filter_map(json_text)
                .collect(),
            policy: props
                .get("PolicyDocument")
                .cloned()
                .ok_or_else(|| invalid(&at, "no PolicyDocument"))?,
        })
    }
}

/// The SQS event source of a function (what Lambda's event-source mapping does, and what the
/// local runner does instead).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqsSource {
    /// The queue's logical id.
    pub queue: String,
    pub batch_size: u64,
    pub batching_window: Duration,
    pub report_batch_item_failures: bool,
}

/// A function's configuration: everything the local runner needs to call its handler as
/// Lambda would.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionSpec {
    pub logical_id: String,
    pub name: String,
    pub arn: String,
    /// `Metadata.BuildProperties.Binary`: which binary (handler) the function runs.
    pub binary: Option<String>,
    /// Globals' variables overlaid with the function's own.
    pub environment: BTreeMap<String, String>,
    pub timeout: Duration,
    pub memory_mb: u64,
    pub sqs: Option<SqsSource>,
    /// The period of a `rate(...)` schedule event.
    pub schedule: Option<Duration>,
    /// The function URL (`FunctionUrlConfig`, the function's own or from `Globals`).
    pub url: Option<FunctionUrlSpec>,
    /// The routes of its `Api` and `HttpApi` events, in template order.
    pub routes: Vec<HttpRoute>,
}

fn get<'v>(v: &'v Yaml, path: &[&str]) -> Option<&'v Yaml> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

/// `rate(1 minute)`, `rate(5 minutes)`, `rate(2 hours)`, `rate(1 day)`.
pub fn parse_rate(expr: &str) -> Option<Duration> {
    let inner = expr.trim().strip_prefix("rate(")?.strip_suffix(')')?;
    let (n, unit) = inner.trim().split_once(' ')?;
    let n: u64 = n.parse().ok()?;
    let secs = match unit.trim().trim_end_matches('s') {
        "minute" => 60,
        "hour" => 3600,
        "day" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(n.checked_mul(secs)?))
}

impl FunctionSpec {
    pub fn from_template(r: &Resolver<'_>, id: &str) -> Result<FunctionSpec, TemplateError> {
        let at = format!("Resources.{id}.Properties");
        let template = r.template();
        let globals = template
            .section("Globals")
            .and_then(|g| g.get("Function"))
            .cloned()
            .unwrap_or(Yaml::Null);
        let own = template.properties(id).cloned().unwrap_or(Yaml::Null);
        let mut environment = BTreeMap::new();
        for (source, at) in [(&globals, "Globals.Function"), (&own, at.as_str())] {
            if let Some(vars) = get(source, &["Environment", "Variables"]) {
                let resolved = r.resolve(vars, &format!("{at}.Environment.Variables"))?;
                for (k, v) in resolved
                    .as_ref()
                    .and_then(Json::as_object)
                    .into_iter()
                    .flatten()
                {
                    let text = json_text(v)
                        .ok_or_else(|| invalid(at, format!("variable {k} is not a scalar")))?;
                    environment.insert(k.clone(), text);
                }
            }
        }
        let number = |key: &str, default: u64| -> Result<u64, TemplateError> {
            match own.get(key).or_else(|| globals.get(key)) {
                None => Ok(default),
                Some(v) => r
                    .resolve(v, &format!("{at}.{key}"))?
                    .as_ref()
                    .and_then(json_u64)
                    .ok_or_else(|| invalid(&at, format!("{key} is not a number"))),
            }
        };
        let timeout = Duration::from_secs(number("Timeout", 3)?);
        let memory_mb = number("MemorySize", 128)?;
        let mut sqs = None;
        let mut schedule = None;
        let url = match (
            own.get("FunctionUrlConfig"),
            globals.get("FunctionUrlConfig"),
        ) {
            (Some(v), _) => Some(function_url(r, v, &at)?),
            (None, Some(v)) => Some(function_url(r, v, "Globals.Function")?),
            (None, None) => None,
        };
        let mut routes = Vec::new();
        for (name, event) in own
            .get("Events")
            .and_then(Yaml::as_mapping)
            .into_iter()
            .flatten()
        {
            let name = name.as_str().unwrap_or("?");
            let at = format!("{at}.Events.{name}");
            // Routes read their properties one by one: ApiId is a !Ref to an API, which has no
            // local physical name to resolve to.
            if let Some(kind @ ("Api" | "HttpApi")) = event.get("Type").and_then(Yaml::as_str) {
                routes.push(http_route(r, name, kind, event, &at)?);
                continue;
            }
            let props = match event.get("Properties") {
                Some(p) => r.resolve(p, &at)?.unwrap_or(Json::Null),
                None => Json::Null,
            };
            match event.get("Type").and_then(Yaml::as_str) {
                Some("SQS") => {
                    let arn = props
                        .get("Queue")
                        .and_then(json_text)
                        .ok_or_else(|| invalid(&at, "an SQS event needs a Queue"))?;
                    let queue = template
                        .resources_of(kinds::QUEUE)
                        .into_iter()
                        .find(|q| r.arn(q, &at).is_ok_and(|a| a == arn))
                        .ok_or_else(|| {
                            invalid(&at, format!("{arn} is not a queue of this template"))
                        })?;
                    sqs = Some(SqsSource {
                        queue,
                        batch_size: props.get("BatchSize").and_then(json_u64).unwrap_or(10),
                        batching_window: Duration::from_secs(
                            props
                                .get("MaximumBatchingWindowInSeconds")
                                .and_then(json_u64)
                                .unwrap_or(0),
                        ),
                        report_batch_item_failures: props
                            .get("FunctionResponseTypes")
                            .and_then(Json::as_array)
                            .is_some_and(|a| a.iter().any(|t| t == "ReportBatchItemFailures")),
                    });
                }
                Some("Schedule") | Some("ScheduleV2") => {
                    let expr = props
                        .get("Schedule")
                        .or_else(|| props.get("ScheduleExpression"))
                        .and_then(json_text)
                        .unwrap_or_default();
                    schedule = parse_rate(&expr);
                }
                _ => {}
            }
        }
        Ok(FunctionSpec {
            logical_id: id.to_owned(),
            name: r.physical_name(id)?,
            arn: r.arn(id, &at)?,
            binary: template
                .resource(id)
                .and_then(|res| get(res, &["Metadata", "BuildProperties", "Binary"]))
                .and_then(Yaml::as_str)
                .map(str::to_owned),
            environment,
            timeout,
            memory_mb,
            sqs,
            schedule,
            url,
            routes,
        })
    }
}

/// Who may call a function's HTTP endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpAuth {
    /// Anyone (`AuthType: NONE`, `Authorizer: NONE`).
    None,
    /// SigV4-signed requests only (`AuthType: AWS_IAM`, `Authorizer: AWS_IAM`).
    AwsIam,
}

/// A function URL (`FunctionUrlConfig`): every method and path reaches the function, with a
/// `LambdaFunctionUrlRequest` (payload format 2.0). `Cors` is accepted and not applied locally;
/// `InvokeMode` must be `BUFFERED` (the default).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionUrlSpec {
    pub auth: HttpAuth,
}

/// Which API Gateway an `Api`/`HttpApi` event routes through, and so which event it delivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiKind {
    /// `Type: HttpApi` with `PayloadFormatVersion` 2.0 (the default): `ApiGatewayV2httpRequest`.
    HttpApi,
    /// `Type: HttpApi` with `PayloadFormatVersion: "1.0"`: the REST-style proxy event.
    HttpApiV1,
    /// `Type: Api` (a REST API): `ApiGatewayProxyRequest`.
    RestApi,
}

/// One route of an `Api`/`HttpApi` event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRoute {
    /// The event's name under `Events`.
    pub event: String,
    pub api: ApiKind,
    /// Upper case; `ANY` for every method.
    pub method: String,
    /// A path template (`/findings/{id}`, `/files/{proxy+}`), or `None` for an `HttpApi`'s
    /// `$default` route (neither `Path` nor `Method` given): whatever no other route takes.
    pub path: Option<String>,
    pub auth: HttpAuth,
}

impl HttpRoute {
    /// API Gateway's route key: `GET /findings/{id}`, or `$default`.
    pub fn route_key(&self) -> String {
        match &self.path {
            Some(path) => format!("{} {path}", self.method),
            None => "$default".to_owned(),
        }
    }
}

/// `FunctionUrlConfig` keys SAM allows: (key, applied locally).
const FUNCTION_URL_KEYS: &[&str] = &["AuthType", "Cors", "InvokeMode"];
/// `Type: HttpApi` event properties SAM allows.
const HTTP_API_KEYS: &[&str] = &[
    "ApiId",
    "Auth",
    "Method",
    "Path",
    "PayloadFormatVersion",
    "RouteSettings",
    "TimeoutInMillis",
];
/// `Type: Api` event properties SAM allows.
const REST_API_KEYS: &[&str] = &[
    "Auth",
    "Method",
    "Path",
    "RequestModel",
    "RequestParameters",
    "RestApiId",
    "TimeoutInMillis",
];
const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY",
];

fn check_keys(v: &Yaml, allowed: &[&str], what: &str, at: &str) -> Result<(), TemplateError> {
    let map = v
        .as_mapping()
        .ok_or_else(|| invalid(at, format!("{what} is not a mapping")))?;
    for k in map.keys() {
        let key = k
            .as_str()
            .ok_or_else(|| invalid(at, format!("a key of {what} is not a string")))?;
        if !allowed.contains(&key) {
            return Err(invalid(
                at,
                format!(
                    "{what} has {key}, which SAM does not allow (allowed: {})",
                    allowed.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// A resolved scalar property of a mapping, as text.
fn text_at(
    r: &Resolver<'_>,
    v: &Yaml,
    key: &str,
    at: &str,
) -> Result<Option<String>, TemplateError> {
    let Some(x) = v.get(key) else {
        return Ok(None);
    };
    match r.resolve(x, &format!("{at}.{key}"))? {
        None => Ok(None),
        Some(j) => json_text(&j)
            .map(Some)
            .ok_or_else(|| invalid(at, format!("{key} is not a scalar"))),
    }
}

fn function_url(r: &Resolver<'_>, v: &Yaml, at: &str) -> Result<FunctionUrlSpec, TemplateError> {
    let at = format!("{at}.FunctionUrlConfig");
    check_keys(v, FUNCTION_URL_KEYS, "FunctionUrlConfig", &at)?;
    let auth = match text_at(r, v, "AuthType", &at)?.as_deref() {
        Some("AWS_IAM") => HttpAuth::AwsIam,
        Some("NONE") => HttpAuth::None,
        Some(other) => {
            return Err(invalid(
                &at,
                format!("AuthType {other} is neither AWS_IAM nor NONE"),
            ));
        }
        None => return Err(invalid(&at, "AuthType is required (AWS_IAM or NONE)")),
    };
    match text_at(r, v, "InvokeMode", &at)?.as_deref() {
        None | Some("BUFFERED") => {}
        Some("RESPONSE_STREAM") => {
            return Err(invalid(
                &at,
                "InvokeMode RESPONSE_STREAM is not supported locally (only BUFFERED)",
            ));
        }
        Some(other) => {
            return Err(invalid(
                &at,
                format!("InvokeMode {other} is neither BUFFERED nor RESPONSE_STREAM"),
            ));
        }
    }
    Ok(FunctionUrlSpec { auth })
}

/// The logical id an `ApiId`/`RestApiId` refers to (`!Ref MyApi` or `{Ref: MyApi}`).
fn ref_target(v: &Yaml) -> Option<&str> {
    match v {
        Yaml::Tagged(t) if t.tag == "Ref" => t.value.as_str(),
        Yaml::Mapping(m) if m.len() == 1 => m.get("Ref").and_then(Yaml::as_str),
        _ => None,
    }
}

/// An authorizer name as a local [`HttpAuth`]: only IAM and no auth can be had locally.
fn authorizer(name: &str, at: &str) -> Result<HttpAuth, TemplateError> {
    match name {
        "AWS_IAM" => Ok(HttpAuth::AwsIam),
        "NONE" => Ok(HttpAuth::None),
        other => Err(invalid(
            at,
            format!(
                "authorizer {other} is not supported locally (only AWS_IAM and NONE): \
                 Cognito, JWT and Lambda authorizers have no local stand-in"
            ),
        )),
    }
}

/// A route's event (`Type: Api` or `HttpApi`), with the default authorizer of its API: the
/// referenced `ApiId`/`RestApiId` resource's `Auth.DefaultAuthorizer`, else the implicit API's
/// in `Globals`.
fn http_route(
    r: &Resolver<'_>,
    name: &str,
    kind: &str,
    event: &Yaml,
    at: &str,
) -> Result<HttpRoute, TemplateError> {
    let rest = kind == "Api";
    let empty = Yaml::Mapping(Default::default());
    let props = event.get("Properties").unwrap_or(&empty);
    check_keys(
        props,
        if rest { REST_API_KEYS } else { HTTP_API_KEYS },
        &format!("a {kind} event"),
        at,
    )?;
    let api = if rest {
        ApiKind::RestApi
    } else {
        match text_at(r, props, "PayloadFormatVersion", at)?.as_deref() {
            None | Some("2.0") => ApiKind::HttpApi,
            Some("1.0") => ApiKind::HttpApiV1,
            Some(other) => {
                return Err(invalid(
                    at,
                    format!("PayloadFormatVersion {other} is neither 1.0 nor 2.0"),
                ));
            }
        }
    };
    let method = text_at(r, props, "Method", at)?;
    let path = text_at(r, props, "Path", at)?;
    let (method, path) = match (method, path) {
        (Some(m), Some(p)) => {
            let m = m.to_ascii_uppercase();
            let m = if m == "X-AMAZON-APIGATEWAY-ANY-METHOD" {
                "ANY".to_owned()
            } else {
                m
            };
            if !METHODS.contains(&m.as_str()) {
                return Err(invalid(at, format!("Method {m} is not an HTTP method")));
            }
            check_path(&p, at)?;
            (m, Some(p))
        }
        (None, None) if !rest => ("ANY".to_owned(), None),
        _ if rest => return Err(invalid(at, "an Api event needs both Path and Method")),
        _ => {
            return Err(invalid(
                at,
                "an HttpApi event needs both Path and Method, or neither (the $default route)",
            ));
        }
    };
    let api_ref = props.get(if rest { "RestApiId" } else { "ApiId" });
    let api_resource = match api_ref {
        None => None,
        Some(v) => {
            let id = ref_target(v).ok_or_else(|| {
                invalid(at, "the API id is not a !Ref to an API of this template")
            })?;
            let want = if rest {
                "AWS::Serverless::Api"
            } else {
                "AWS::Serverless::HttpApi"
            };
            if r.template().resource_type(id) != Some(want) {
                return Err(invalid(
                    at,
                    format!("{id} is not an {want} of this template"),
                ));
            }
            r.template().properties(id)
        }
    };
    let default_auth = match api_resource {
        Some(api) => api.get("Auth"),
        None => r
            .template()
            .section("Globals")
            .and_then(|g| g.get(if rest { "Api" } else { "HttpApi" }))
            .and_then(|g| g.get("Auth")),
    };
    let own = props.get("Auth");
    if let Some(auth) = own {
        let allowed: &[&str] = if rest {
            &[
                "Authorizer",
                "AuthorizationScopes",
                "InvokeRole",
                "OverrideApiAuth",
            ]
        } else {
            &["Authorizer", "AuthorizationScopes"]
        };
        check_keys(auth, allowed, "the event's Auth (locally)", at)?;
    }
    let name_of = |auth: Option<&Yaml>, key: &str| -> Result<Option<String>, TemplateError> {
        match auth {
            Some(a) => text_at(r, a, key, at),
            None => Ok(None),
        }
    };
    let auth = match name_of(own, "Authorizer")? {
        Some(a) => authorizer(&a, at)?,
        None => match name_of(default_auth, "DefaultAuthorizer")? {
            Some(a) => authorizer(&a, at)?,
            None => HttpAuth::None,
        },
    };
    Ok(HttpRoute {
        event: name.to_owned(),
        api,
        method,
        path,
        auth,
    })
}

/// `/findings`, `/findings/{id}`, `/files/{proxy+}` (greedy only last).
fn check_path(path: &str, at: &str) -> Result<(), TemplateError> {
    let bad = |why: &str| Err(invalid(at, format!("Path {path}: {why}")));
    if !path.starts_with('/') {
        return bad("does not start with /");
    }
    let segments: Vec<&str> = path[1..].split('/').collect();
    for (i, s) in segments.iter().enumerate() {
        if let Some(inner) = s.strip_prefix('{') {
            let Some(name) = inner.strip_suffix('}') else {
                return bad("a {parameter} is not closed");
            };
            let name = match name.strip_suffix('+') {
                Some(n) if i + 1 == segments.len() => n,
                Some(_) => return bad("a greedy {parameter+} must be the last segment"),
                None => name,
            };
            if name.is_empty() || name.contains(['{', '}', '+']) {
                return bad("a {parameter} has no valid name");
            }
        } else if s.contains(['{', '}']) {
            return bad("a {parameter} must be a whole segment");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("rate(1 minute)"), Some(Duration::from_secs(60)));
        assert_eq!(
            parse_rate("rate(5 minutes)"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(parse_rate("rate(2 hours)"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_rate("cron(0 12 * * ? *)"), None);
        assert_eq!(parse_rate("rate(1 fortnight)"), None);
    }

    fn function(yaml: &str) -> Result<FunctionSpec, TemplateError> {
        let template = crate::Template::parse("test", yaml).unwrap();
        let ctx = crate::StackContext {
            stack_name: "pg".into(),
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            partition: "aws".into(),
        };
        let r = Resolver::new(&template, &ctx, &BTreeMap::new());
        FunctionSpec::from_template(&r, "F")
    }

    /// A function `F` with these properties (indented under `Properties`), and `extra`
    /// resources and sections.
    fn with(props: &str, extra: &str) -> Result<FunctionSpec, TemplateError> {
        function(&format!(
            "Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Properties:\n{props}\n{extra}"
        ))
    }

    #[test]
    fn function_urls_and_routes_are_read() {
        let f = with(
            r#"
      FunctionUrlConfig: {AuthType: AWS_IAM, Cors: {AllowOrigins: ["*"]}}
      Events:
        Get: {Type: HttpApi, Properties: {ApiId: !Ref Api, Path: "/findings/{id}", Method: get}}
        Post: {Type: HttpApi, Properties: {Path: /findings, Method: POST, Auth: {Authorizer: NONE}}}
        Rest: {Type: Api, Properties: {Path: "/x/{proxy+}", Method: any, Auth: {Authorizer: AWS_IAM}}}
        Default: {Type: HttpApi}"#,
            r#"
  Api:
    Type: AWS::Serverless::HttpApi
    Properties: {Auth: {EnableIamAuthorizer: true, DefaultAuthorizer: AWS_IAM}}
"#,
        )
        .unwrap();
        assert_eq!(
            f.url,
            Some(FunctionUrlSpec {
                auth: HttpAuth::AwsIam
            })
        );
        let routes: Vec<(&str, ApiKind, String, HttpAuth)> = f
            .routes
            .iter()
            .map(|r| (r.event.as_str(), r.api, r.route_key(), r.auth))
            .collect();
        assert_eq!(
            routes,
            [
                (
                    "Get",
                    ApiKind::HttpApi,
                    "GET /findings/{id}".into(),
                    HttpAuth::AwsIam
                ),
                (
                    "Post",
                    ApiKind::HttpApi,
                    "POST /findings".into(),
                    HttpAuth::None
                ),
                (
                    "Rest",
                    ApiKind::RestApi,
                    "ANY /x/{proxy+}".into(),
                    HttpAuth::AwsIam
                ),
                (
                    "Default",
                    ApiKind::HttpApi,
                    "$default".into(),
                    HttpAuth::None
                ),
            ]
        );
        // The implicit API's default authorizer comes from Globals.
        let f = with(
            "      Events: {E: {Type: HttpApi, Properties: {Path: /a, Method: GET}}}",
            "Globals: {HttpApi: {Auth: {EnableIamAuthorizer: true, DefaultAuthorizer: AWS_IAM}}}",
        )
        .unwrap();
        assert_eq!(f.routes[0].auth, HttpAuth::AwsIam);
        assert_eq!(f.url, None);
    }

    #[test]
    fn unknown_http_shapes_are_errors() {
        let cases = [
            (
                "      FunctionUrlConfig: {Cors: {}}",
                "AuthType is required",
            ),
            (
                "      FunctionUrlConfig: {AuthType: COGNITO}",
                "neither AWS_IAM nor NONE",
            ),
            (
                "      FunctionUrlConfig: {AuthType: NONE, Qualifier: live}",
                "SAM does not allow",
            ),
            (
                "      FunctionUrlConfig: {AuthType: NONE, InvokeMode: RESPONSE_STREAM}",
                "not supported locally",
            ),
            (
                "      Events: {E: {Type: HttpApi, Properties: {Path: /a}}}",
                "or neither",
            ),
            (
                "      Events: {E: {Type: Api, Properties: {Path: /a}}}",
                "both Path and Method",
            ),
            (
                "      Events: {E: {Type: HttpApi, Properties: {Path: /a, Method: FETCH}}}",
                "not an HTTP method",
            ),
            (
                "      Events: {E: {Type: HttpApi, Properties: {Path: a, Method: GET}}}",
                "does not start with /",
            ),
            (
                "      Events: {E: {Type: HttpApi, Properties: {Path: \"/{p+}/x\", Method: GET}}}",
                "must be the last segment",
            ),
            (
                "      Events: {E: {Type: HttpApi, Properties: {Path: /a, Method: GET, Stage: v1}}}",
                "SAM does not allow",
            ),
            (
                "      Events: {E: {Type: HttpApi, Properties: {Path: /a, Method: GET, Auth: {Authorizer: MyJwt}}}}",
                "not supported locally",
            ),
            (
                "      Events: {E: {Type: Api, Properties: {Path: /a, Method: GET, Auth: {ApiKeyRequired: true}}}}",
                "SAM does not allow",
            ),
            (
                "      Events: {E: {Type: HttpApi, Properties: {Path: /a, Method: GET, PayloadFormatVersion: \"3.0\"}}}",
                "neither 1.0 nor 2.0",
            ),
            (
                "      Events: {E: {Type: HttpApi, Properties: {ApiId: some-id, Path: /a, Method: GET}}}",
                "not a !Ref",
            ),
            (
                "      Events: {E: {Type: HttpApi, Properties: {ApiId: !Ref F, Path: /a, Method: GET}}}",
                "is not an AWS::Serverless::HttpApi",
            ),
        ];
        for (props, message) in cases {
            let err = with(props, "").unwrap_err().to_string();
            assert!(err.contains(message), "{props}: {err}");
        }
    }
}

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
        for (name, event) in own
            .get("Events")
            .and_then(Yaml::as_mapping)
            .into_iter()
            .flatten()
        {
            let name = name.as_str().unwrap_or("?");
            let at = format!("{at}.Events.{name}");
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
        })
    }
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
}

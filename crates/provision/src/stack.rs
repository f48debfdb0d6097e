//! Creates (or checks) the template's data-plane resources in any endpoint: the SQS queues
//! (with redrive policies and queue policies), the DynamoDB tables (keys, GSIs, billing mode,
//! TTL), the EventBridge buses and rules with their SQS targets. Idempotent: a resource that
//! exists is verified against the template and never recreated.
//!
//! Physical names are `<prefix>-<LogicalId>` (the prefix is the stack name), or the name the
//! template gives (the bus: `peregrine-findings-${AWS::StackName}`). Functions are not created;
//! their resolved configuration (environment with local names, event sources) is returned for
//! the local runner.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType, TableStatus,
    TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value as Json;

use crate::spec::{
    BusSpec, FunctionSpec, IndexSpec, QueuePolicySpec, QueueSpec, RuleSpec, TableSpec,
};
use crate::template::{Resolver, StackContext, Template, TemplateError, json_text, kinds};

/// Why the stack could not be provisioned or checked.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("{operation} for {resource}: {message}")]
    Aws {
        operation: &'static str,
        resource: String,
        message: String,
    },
    #[error("{resource} ({kind}) does not exist; run with --provision to create it")]
    Missing {
        resource: String,
        kind: &'static str,
    },
    #[error(
        "{resource} exists but differs from the template: {}; delete it (or the whole local stack) and provision again",
        differences.join("; ")
    )]
    Drift {
        resource: String,
        differences: Vec<String>,
    },
    #[error("the SDK configuration has no region (set AWS_REGION)")]
    NoRegion,
    #[error("table {table} did not become ACTIVE within {waited:?}")]
    NotActive { table: String, waited: Duration },
}

fn aws<E: std::error::Error + 'static>(
    operation: &'static str,
    resource: &str,
    e: E,
) -> ProvisionError {
    ProvisionError::Aws {
        operation,
        resource: resource.to_owned(),
        message: aws_sdk_sqs::error::DisplayErrorContext(e).to_string(),
    }
}

/// A template's tags as EventBridge tags (for a bus or a rule).
fn eventbridge_tags(
    tags: &std::collections::BTreeMap<String, String>,
    operation: &'static str,
    resource: &str,
) -> Result<Vec<aws_sdk_eventbridge::types::Tag>, ProvisionError> {
    tags.iter()
        .map(|(k, v)| {
            aws_sdk_eventbridge::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| aws(operation, resource, e))
        })
        .collect()
}

/// Create what is missing, or only check that everything exists as the template says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Create,
    Check,
}

#[derive(Clone, Debug)]
pub struct ProvisionOptions {
    /// The stack name locally: physical names are `<prefix>-<LogicalId>`.
    pub prefix: String,
    /// Template parameter overrides.
    pub parameters: BTreeMap<String, String>,
    pub mode: Mode,
}

impl Default for ProvisionOptions {
    fn default() -> Self {
        ProvisionOptions {
            prefix: "peregrine".into(),
            parameters: BTreeMap::new(),
            mode: Mode::Create,
        }
    }
}

/// A queue that exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queue {
    pub name: String,
    pub url: String,
    pub arn: String,
}

/// The provisioned stack: physical names by logical id, the functions' configuration and the
/// template's outputs.
#[derive(Clone, Debug)]
pub struct LocalStack {
    pub context: StackContext,
    pub queues: BTreeMap<String, Queue>,
    pub tables: BTreeMap<String, String>,
    pub buses: BTreeMap<String, String>,
    pub rules: BTreeMap<String, String>,
    pub functions: BTreeMap<String, FunctionSpec>,
    /// The template's outputs that have a local value.
    pub outputs: BTreeMap<String, String>,
    /// Outputs without one (KMS key, roles), with the reason.
    pub skipped_outputs: BTreeMap<String, String>,
}

impl LocalStack {
    pub fn function(&self, logical_id: &str) -> Option<&FunctionSpec> {
        self.functions.get(logical_id)
    }

    /// A function's environment as Lambda would give it: the template's variables with local
    /// physical names, plus `AWS_REGION`.
    pub fn function_env(&self, logical_id: &str) -> Option<BTreeMap<String, String>> {
        let mut env = self.functions.get(logical_id)?.environment.clone();
        env.insert("AWS_REGION".into(), self.context.region.clone());
        Some(env)
    }

    /// The queue a function's SQS event source reads.
    pub fn event_source_queue(&self, logical_id: &str) -> Option<&Queue> {
        let source = self.functions.get(logical_id)?.sqs.as_ref()?;
        self.queues.get(&source.queue)
    }

    /// `NAME=value` pairs to export: `PEREGRINE_QUEUE_URL` (the detector's event source, what
    /// agents send to) and `PEREGRINE_<OUTPUT>` for every output with a local value.
    pub fn exports(&self) -> Vec<(String, String)> {
        let mut v = Vec::new();
        if let Some(q) = self
            .functions
            .keys()
            .find_map(|f| self.event_source_queue(f))
        {
            v.push(("PEREGRINE_QUEUE_URL".to_owned(), q.url.clone()));
        }
        for (name, value) in &self.outputs {
            v.push((
                format!("PEREGRINE_{}", screaming_snake(name)),
                value.clone(),
            ));
        }
        v
    }
}

/// `HighSeverityFindingsQueueUrl` → `HIGH_SEVERITY_FINDINGS_QUEUE_URL`.
pub fn screaming_snake(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let chars: Vec<char> = s.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if prev.is_ascii_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_ascii_uppercase() && next_lower)
            {
                out.push('_');
            }
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// The account, region and partition of the credentials in `sdk` (STS GetCallerIdentity).
pub async fn stack_context(sdk: &SdkConfig, prefix: &str) -> Result<StackContext, ProvisionError> {
    let region = sdk
        .region()
        .map(|r| r.to_string())
        .ok_or(ProvisionError::NoRegion)?;
    let me = aws_sdk_sts::Client::new(sdk)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| aws("GetCallerIdentity", "sts", e))?;
    let account_id = me.account().unwrap_or_default().to_owned();
    let partition = me
        .arn()
        .and_then(|a| a.split(':').nth(1))
        .filter(|p| !p.is_empty())
        .unwrap_or("aws")
        .to_owned();
    Ok(StackContext {
        stack_name: prefix.to_owned(),
        account_id,
        region,
        partition,
    })
}

/// Provisions (or checks) the template's queues, tables, buses and rules.
pub async fn provision(
    sdk: &SdkConfig,
    template: &Template,
    options: &ProvisionOptions,
) -> Result<LocalStack, ProvisionError> {
    let ctx = stack_context(sdk, &options.prefix).await?;
    let mut r = Resolver::new(template, &ctx, &options.parameters);
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let dynamo = aws_sdk_dynamodb::Client::new(sdk);
    let events = aws_sdk_eventbridge::Client::new(sdk);

    // Queues: dead-letter queues first, so redrive targets exist.
    let mut specs: Vec<QueueSpec> = template
        .resources_of(kinds::QUEUE)
        .iter()
        .map(|id| QueueSpec::from_template(&r, id))
        .collect::<Result<_, _>>()?;
    specs.sort_by_key(|s| s.dead_letter_queue.is_some());
    let mut queues = BTreeMap::new();
    for spec in &specs {
        let url = ensure_queue(&sqs, spec, options.mode).await?;
        r.set_queue_url(&spec.logical_id, &url);
        queues.insert(
            spec.logical_id.clone(),
            Queue {
                name: spec.name.clone(),
                url,
                arn: spec.arn.clone(),
            },
        );
    }

    let mut tables = BTreeMap::new();
    for id in template.resources_of(kinds::TABLE) {
        let spec = TableSpec::from_template(&r, &id)?;
        ensure_table(&dynamo, &spec, options.mode).await?;
        tables.insert(id, spec.name);
    }

    let mut buses = BTreeMap::new();
    for id in template.resources_of(kinds::BUS) {
        let spec = BusSpec::from_template(&r, &id)?;
        ensure_bus(&events, &spec, options.mode).await?;
        buses.insert(id, spec.name);
    }

    let mut rules = BTreeMap::new();
    for id in template.resources_of(kinds::RULE) {
        let spec = RuleSpec::from_template(&r, &id)?;
        ensure_rule(&events, &spec, options.mode).await?;
        rules.insert(id, spec.name);
    }

    if options.mode == Mode::Create {
        for id in template.resources_of(kinds::QUEUE_POLICY) {
            let spec = QueuePolicySpec::from_template(&r, &id)?;
            apply_queue_policy(&sqs, &spec).await?;
        }
    }

    let mut functions = BTreeMap::new();
    for id in template.resources_of(kinds::FUNCTION) {
        functions.insert(id.clone(), FunctionSpec::from_template(&r, &id)?);
    }

    let mut outputs = BTreeMap::new();
    let mut skipped_outputs = BTreeMap::new();
    for (name, decl) in template.section("Outputs").into_iter().flatten() {
        let Some(name) = name.as_str() else { continue };
        let Some(value) = decl.get("Value") else {
            continue;
        };
        match r.resolve(value, &format!("Outputs.{name}")) {
            Ok(Some(v)) => match json_text(&v) {
                Some(text) => {
                    outputs.insert(name.to_owned(), text);
                }
                None => {
                    skipped_outputs.insert(name.to_owned(), "not a scalar".to_owned());
                }
            },
            Ok(None) => {}
            Err(e) => {
                skipped_outputs.insert(name.to_owned(), e.to_string());
            }
        }
    }

    Ok(LocalStack {
        context: ctx.clone(),
        queues,
        tables,
        buses,
        rules,
        functions,
        outputs,
        skipped_outputs,
    })
}

fn same_attribute(name: &str, want: &str, have: &str) -> bool {
    if name == "RedrivePolicy" {
        let parse = |s: &str| -> Option<(String, u64)> {
            let v: Json = serde_json::from_str(s).ok()?;
            Some((
                json_text(v.get("deadLetterTargetArn")?)?,
                crate::template::json_u64(v.get("maxReceiveCount")?)?,
            ))
        };
        return parse(want).is_some() && parse(want) == parse(have);
    }
    want.eq_ignore_ascii_case(have)
}

async fn ensure_queue(
    sqs: &aws_sdk_sqs::Client,
    spec: &QueueSpec,
    mode: Mode,
) -> Result<String, ProvisionError> {
    match sqs.get_queue_url().queue_name(&spec.name).send().await {
        Ok(found) => {
            let url = found.queue_url().unwrap_or_default().to_owned();
            let attrs = sqs
                .get_queue_attributes()
                .queue_url(&url)
                .attribute_names(QueueAttributeName::All)
                .send()
                .await
                .map_err(|e| aws("GetQueueAttributes", &spec.name, e))?;
            let have = attrs.attributes().cloned().unwrap_or_default();
            let differences: Vec<String> = spec
                .attributes
                .iter()
                .filter_map(|(k, want)| {
                    let actual = have.get(&QueueAttributeName::from(k.as_str()));
                    match actual {
                        Some(a) if same_attribute(k, want, a) => None,
                        other => Some(format!("{k} is {other:?}, the template says {want}")),
                    }
                })
                .collect();
            if !differences.is_empty() {
                return Err(ProvisionError::Drift {
                    resource: spec.name.clone(),
                    differences,
                });
            }
            tracing::info!(queue = %spec.name, "queue exists and matches the template");
            Ok(url)
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_queue_does_not_exist()) =>
        {
            if mode == Mode::Check {
                return Err(ProvisionError::Missing {
                    resource: spec.name.clone(),
                    kind: kinds::QUEUE,
                });
            }
            let attributes: HashMap<QueueAttributeName, String> = spec
                .attributes
                .iter()
                .map(|(k, v)| (QueueAttributeName::from(k.as_str()), v.clone()))
                .collect();
            let created = sqs
                .create_queue()
                .queue_name(&spec.name)
                .set_attributes(Some(attributes))
                .set_tags((!spec.tags.is_empty()).then(|| spec.tags.clone().into_iter().collect()))
                .send()
                .await
                .map_err(|e| aws("CreateQueue", &spec.name, e))?;
            tracing::info!(queue = %spec.name, "queue created");
            Ok(created.queue_url().unwrap_or_default().to_owned())
        }
        Err(e) => Err(aws("GetQueueUrl", &spec.name, e)),
    }
}

async fn apply_queue_policy(
    sqs: &aws_sdk_sqs::Client,
    spec: &QueuePolicySpec,
) -> Result<(), ProvisionError> {
    let policy = spec.policy.to_string();
    for url in &spec.queue_urls {
        sqs.set_queue_attributes()
            .queue_url(url)
            .attributes(QueueAttributeName::Policy, &policy)
            .send()
            .await
            .map_err(|e| aws("SetQueueAttributes", &spec.logical_id, e))?;
    }
    Ok(())
}

fn key_elements(
    k: &[(String, String)],
    table: &str,
) -> Result<Vec<KeySchemaElement>, ProvisionError> {
    k.iter()
        .map(|(name, kind)| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(KeyType::from(kind.as_str()))
                .build()
                .map_err(|e| aws("CreateTable", table, e))
        })
        .collect()
}

/// A table as an endpoint describes it, in the template's terms.
pub async fn describe_table(
    dynamo: &aws_sdk_dynamodb::Client,
    name: &str,
) -> Result<Option<TableSpec>, ProvisionError> {
    let described = match dynamo.describe_table().table_name(name).send().await {
        Ok(d) => d,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(aws("DescribeTable", name, e)),
    };
    let Some(t) = described.table() else {
        return Ok(None);
    };
    let keys = |k: &[KeySchemaElement]| -> Vec<(String, String)> {
        k.iter()
            .map(|e| {
                (
                    e.attribute_name().to_owned(),
                    e.key_type().as_str().to_owned(),
                )
            })
            .collect()
    };
    let mut attribute_definitions: Vec<(String, String)> = t
        .attribute_definitions()
        .iter()
        .map(|a| {
            (
                a.attribute_name().to_owned(),
                a.attribute_type().as_str().to_owned(),
            )
        })
        .collect();
    attribute_definitions.sort();
    let mut global_secondary_indexes: Vec<IndexSpec> = t
        .global_secondary_indexes()
        .iter()
        .map(|g| IndexSpec {
            name: g.index_name().unwrap_or_default().to_owned(),
            key_schema: keys(g.key_schema()),
            projection_type: g
                .projection()
                .and_then(|p| p.projection_type())
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default(),
            non_key_attributes: g
                .projection()
                .map(|p| p.non_key_attributes().to_vec())
                .unwrap_or_default(),
        })
        .collect();
    global_secondary_indexes.sort();
    let ttl = dynamo
        .describe_time_to_live()
        .table_name(name)
        .send()
        .await
        .map_err(|e| aws("DescribeTimeToLive", name, e))?;
    let ttl_attribute = ttl
        .time_to_live_description()
        .filter(|d| {
            d.time_to_live_status()
                .is_some_and(|s| s.as_str() == "ENABLED" || s.as_str() == "ENABLING")
        })
        .and_then(|d| d.attribute_name())
        .map(str::to_owned);
    Ok(Some(TableSpec {
        logical_id: String::new(),
        name: name.to_owned(),
        attribute_definitions,
        key_schema: keys(t.key_schema()),
        global_secondary_indexes,
        billing_mode: t
            .billing_mode_summary()
            .and_then(|b| b.billing_mode())
            .map(|b| b.as_str().to_owned())
            .unwrap_or_else(|| "PROVISIONED".into()),
        ttl_attribute,
        stream_view_type: t
            .stream_specification()
            .filter(|s| s.stream_enabled())
            .and_then(|s| s.stream_view_type())
            .map(|v| v.as_str().to_owned()),
        tags: BTreeMap::new(),
    }))
}

async fn wait_active(dynamo: &aws_sdk_dynamodb::Client, name: &str) -> Result<(), ProvisionError> {
    let waited = Duration::from_secs(120);
    let deadline = Instant::now() + waited;
    loop {
        let d = dynamo
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| aws("DescribeTable", name, e))?;
        if d.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(ProvisionError::NotActive {
                table: name.to_owned(),
                waited,
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn ensure_table(
    dynamo: &aws_sdk_dynamodb::Client,
    spec: &TableSpec,
    mode: Mode,
) -> Result<(), ProvisionError> {
    if let Some(actual) = describe_table(dynamo, &spec.name).await? {
        let differences = spec.differences(&actual);
        if !differences.is_empty() {
            // TTL alone may lag (a stack created by a run that stopped half-way): finish it.
            let only_ttl = differences.len() == 1 && actual.ttl_attribute.is_none();
            if !(only_ttl && mode == Mode::Create) {
                return Err(ProvisionError::Drift {
                    resource: spec.name.clone(),
                    differences,
                });
            }
        } else {
            tracing::info!(table = %spec.name, "table exists and matches the template");
            return Ok(());
        }
    } else {
        if mode == Mode::Check {
            return Err(ProvisionError::Missing {
                resource: spec.name.clone(),
                kind: kinds::TABLE,
            });
        }
        create_table(dynamo, spec).await?;
    }
    if let Some(attribute) = &spec.ttl_attribute {
        wait_active(dynamo, &spec.name).await?;
        let ttl = TimeToLiveSpecification::builder()
            .attribute_name(attribute)
            .enabled(true)
            .build()
            .map_err(|e| aws("UpdateTimeToLive", &spec.name, e))?;
        dynamo
            .update_time_to_live()
            .table_name(&spec.name)
            .time_to_live_specification(ttl)
            .send()
            .await
            .map_err(|e| aws("UpdateTimeToLive", &spec.name, e))?;
    }
    Ok(())
}

async fn create_table(
    dynamo: &aws_sdk_dynamodb::Client,
    spec: &TableSpec,
) -> Result<(), ProvisionError> {
    let name = spec.name.as_str();
    let definitions = spec
        .attribute_definitions
        .iter()
        .map(|(a, t)| {
            AttributeDefinition::builder()
                .attribute_name(a)
                .attribute_type(ScalarAttributeType::from(t.as_str()))
                .build()
                .map_err(|e| aws("CreateTable", name, e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let indexes = spec
        .global_secondary_indexes
        .iter()
        .map(|g| {
            GlobalSecondaryIndex::builder()
                .index_name(&g.name)
                .set_key_schema(Some(key_elements(&g.key_schema, name)?))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(g.projection_type.as_str()))
                        .set_non_key_attributes(
                            (!g.non_key_attributes.is_empty())
                                .then(|| g.non_key_attributes.clone()),
                        )
                        .build(),
                )
                .build()
                .map_err(|e| aws("CreateTable", name, e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let stream = match &spec.stream_view_type {
        Some(v) => Some(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::from(v.as_str()))
                .build()
                .map_err(|e| aws("CreateTable", name, e))?,
        ),
        None => None,
    };
    let tags = spec
        .tags
        .iter()
        .map(|(k, v)| {
            aws_sdk_dynamodb::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| aws("CreateTable", name, e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if spec.billing_mode != "PAY_PER_REQUEST" {
        return Err(ProvisionError::Aws {
            operation: "CreateTable",
            resource: name.to_owned(),
            message: format!(
                "billing mode {} is not supported locally (only PAY_PER_REQUEST)",
                spec.billing_mode
            ),
        });
    }
    dynamo
        .create_table()
        .table_name(name)
        .set_attribute_definitions(Some(definitions))
        .set_key_schema(Some(key_elements(&spec.key_schema, name)?))
        .set_global_secondary_indexes((!indexes.is_empty()).then_some(indexes))
        .billing_mode(BillingMode::PayPerRequest)
        .set_stream_specification(stream)
        .set_tags((!tags.is_empty()).then_some(tags))
        .send()
        .await
        .map_err(|e| aws("CreateTable", name, e))?;
    tracing::info!(table = %name, "table created");
    Ok(())
}

async fn ensure_bus(
    events: &aws_sdk_eventbridge::Client,
    spec: &BusSpec,
    mode: Mode,
) -> Result<(), ProvisionError> {
    match events.describe_event_bus().name(&spec.name).send().await {
        Ok(_) => {
            tracing::info!(bus = %spec.name, "event bus exists");
            Ok(())
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            if mode == Mode::Check {
                return Err(ProvisionError::Missing {
                    resource: spec.name.clone(),
                    kind: kinds::BUS,
                });
            }
            let tags = eventbridge_tags(&spec.tags, "CreateEventBus", &spec.name)?;
            events
                .create_event_bus()
                .name(&spec.name)
                .set_tags((!tags.is_empty()).then_some(tags))
                .send()
                .await
                .map_err(|e| aws("CreateEventBus", &spec.name, e))?;
            tracing::info!(bus = %spec.name, "event bus created");
            Ok(())
        }
        Err(e) => Err(aws("DescribeEventBus", &spec.name, e)),
    }
}

async fn ensure_rule(
    events: &aws_sdk_eventbridge::Client,
    spec: &RuleSpec,
    mode: Mode,
) -> Result<(), ProvisionError> {
    let found = match events
        .describe_rule()
        .name(&spec.name)
        .event_bus_name(&spec.bus)
        .send()
        .await
    {
        Ok(d) => Some(d),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            None
        }
        Err(e) => return Err(aws("DescribeRule", &spec.name, e)),
    };
    if let Some(rule) = found {
        let mut differences = Vec::new();
        let pattern: Option<Json> = rule
            .event_pattern()
            .and_then(|p| serde_json::from_str(p).ok());
        if pattern != spec.event_pattern {
            differences.push(format!(
                "event pattern {pattern:?}, the template says {:?}",
                spec.event_pattern
            ));
        }
        let targets = events
            .list_targets_by_rule()
            .rule(&spec.name)
            .event_bus_name(&spec.bus)
            .send()
            .await
            .map_err(|e| aws("ListTargetsByRule", &spec.name, e))?;
        for (id, arn) in &spec.targets {
            if !targets
                .targets()
                .iter()
                .any(|t| t.id() == id && t.arn() == arn)
            {
                differences.push(format!("target {id} ({arn}) is missing"));
            }
        }
        if !differences.is_empty() {
            return Err(ProvisionError::Drift {
                resource: spec.name.clone(),
                differences,
            });
        }
        tracing::info!(rule = %spec.name, "rule exists and matches the template");
        return Ok(());
    }
    if mode == Mode::Check {
        return Err(ProvisionError::Missing {
            resource: spec.name.clone(),
            kind: kinds::RULE,
        });
    }
    let tags = eventbridge_tags(&spec.tags, "PutRule", &spec.name)?;
    events
        .put_rule()
        .name(&spec.name)
        .event_bus_name(&spec.bus)
        .set_event_pattern(spec.event_pattern.as_ref().map(Json::to_string))
        .set_schedule_expression(spec.schedule.clone())
        .state(aws_sdk_eventbridge::types::RuleState::from(
            spec.state.as_str(),
        ))
        .set_description(spec.description.clone())
        .set_tags((!tags.is_empty()).then_some(tags))
        .send()
        .await
        .map_err(|e| aws("PutRule", &spec.name, e))?;
    if !spec.targets.is_empty() {
        let targets = spec
            .targets
            .iter()
            .map(|(id, arn)| {
                aws_sdk_eventbridge::types::Target::builder()
                    .id(id)
                    .arn(arn)
                    .build()
                    .map_err(|e| aws("PutTargets", &spec.name, e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let put = events
            .put_targets()
            .rule(&spec.name)
            .event_bus_name(&spec.bus)
            .set_targets(Some(targets))
            .send()
            .await
            .map_err(|e| aws("PutTargets", &spec.name, e))?;
        if put.failed_entry_count() > 0 {
            return Err(ProvisionError::Aws {
                operation: "PutTargets",
                resource: spec.name.clone(),
                message: format!("{} targets failed", put.failed_entry_count()),
            });
        }
    }
    tracing::info!(rule = %spec.name, bus = %spec.bus, "rule created");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_names_become_variable_names() {
        assert_eq!(screaming_snake("EventsQueueUrl"), "EVENTS_QUEUE_URL");
        assert_eq!(
            screaming_snake("HighSeverityFindingsQueueUrl"),
            "HIGH_SEVERITY_FINDINGS_QUEUE_URL"
        );
        assert_eq!(screaming_snake("KMSKeyArn"), "KMS_KEY_ARN");
    }
}

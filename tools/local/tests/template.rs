//! What gets provisioned is what template.yaml says: names, key schemas, GSIs (names, keys,
//! projections), TTL attributes, queue settings, the bus, the rule and the functions'
//! environment, described back from moto and compared with the template text itself.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

mod common;

use std::collections::BTreeSet;

use aws_sdk_sqs::types::QueueAttributeName;
use common::*;
use peregrine_local::{Mode, ProvisionError, ProvisionOptions, provision};
use serde_json::Value;
use serde_yaml_ng::Value as Yaml;

/// The template as plain YAML: tags are left as they are, only literal values are compared.
fn raw() -> Yaml {
    serde_yaml_ng::from_str(&std::fs::read_to_string(template_path()).unwrap()).unwrap()
}

fn resources_of(raw: &Yaml, kind: &str) -> Vec<String> {
    raw["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(kind))
        .map(|(k, _)| k.as_str().unwrap().to_owned())
        .collect()
}

/// (index name, key schema, projection type).
type Gsi = (String, Vec<(String, String)>, String);

fn text(v: &Yaml) -> String {
    match v {
        Yaml::String(s) => s.clone(),
        Yaml::Number(n) => n.to_string(),
        Yaml::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

fn keys_of(v: &Yaml) -> Vec<(String, String)> {
    v.as_sequence()
        .unwrap()
        .iter()
        .map(|k| (text(&k["AttributeName"]), text(&k["KeyType"])))
        .collect()
}

fn described_keys(k: &[aws_sdk_dynamodb::types::KeySchemaElement]) -> Vec<(String, String)> {
    k.iter()
        .map(|e| {
            (
                e.attribute_name().to_owned(),
                e.key_type().as_str().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn provisioned_resources_match_the_template() {
    let prefix = "pgtest";
    let local = local_with_prefix(prefix).await;
    let raw = raw();
    let dynamo = local.dynamo();

    // Tables: name, keys, attribute definitions, every GSI, billing, TTL.
    let tables = resources_of(&raw, "AWS::DynamoDB::Table");
    assert_eq!(tables.len(), 7, "{tables:?}");
    for id in &tables {
        let props = &raw["Resources"][id.as_str()]["Properties"];
        let name = format!("{prefix}-{id}");
        assert_eq!(local.stack.tables[id], name);
        let d = dynamo
            .describe_table()
            .table_name(&name)
            .send()
            .await
            .unwrap();
        let t = d.table().unwrap();
        assert_eq!(t.table_name(), Some(name.as_str()));
        assert_eq!(
            described_keys(t.key_schema()),
            keys_of(&props["KeySchema"]),
            "{id}"
        );
        let want: BTreeSet<(String, String)> = props["AttributeDefinitions"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|a| (text(&a["AttributeName"]), text(&a["AttributeType"])))
            .collect();
        let have: BTreeSet<(String, String)> = t
            .attribute_definitions()
            .iter()
            .map(|a| {
                (
                    a.attribute_name().to_owned(),
                    a.attribute_type().as_str().to_owned(),
                )
            })
            .collect();
        assert_eq!(have, want, "{id}");
        assert_eq!(
            t.billing_mode_summary()
                .and_then(|b| b.billing_mode())
                .map(|b| b.as_str()),
            Some(text(&props["BillingMode"]).as_str())
        );
        let want_gsis: BTreeSet<Gsi> = props["GlobalSecondaryIndexes"]
            .as_sequence()
            .map(|s| s.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|g| {
                (
                    text(&g["IndexName"]),
                    keys_of(&g["KeySchema"]),
                    text(&g["Projection"]["ProjectionType"]),
                )
            })
            .collect();
        let have_gsis: BTreeSet<Gsi> = t
            .global_secondary_indexes()
            .iter()
            .map(|g| {
                (
                    g.index_name().unwrap().to_owned(),
                    described_keys(g.key_schema()),
                    g.projection()
                        .unwrap()
                        .projection_type()
                        .unwrap()
                        .as_str()
                        .to_owned(),
                )
            })
            .collect();
        assert_eq!(have_gsis, want_gsis, "{id}");
        let ttl = dynamo
            .describe_time_to_live()
            .table_name(&name)
            .send()
            .await
            .unwrap();
        let ttl = ttl.time_to_live_description().unwrap();
        let spec = &props["TimeToLiveSpecification"];
        if spec.is_mapping() {
            assert_eq!(
                ttl.time_to_live_status().map(|s| s.as_str()),
                Some("ENABLED"),
                "{id}"
            );
            assert_eq!(
                ttl.attribute_name(),
                Some(text(&spec["AttributeName"]).as_str()),
                "{id}"
            );
        } else {
            assert_ne!(
                ttl.time_to_live_status().map(|s| s.as_str()),
                Some("ENABLED"),
                "{id}"
            );
        }
    }
    // FindingsTable has the eight GSIs, and the two outbox indexes the code queries are among
    // them, keyed by the attributes the code writes.
    let findings = &raw["Resources"]["FindingsTable"]["Properties"]["GlobalSecondaryIndexes"];
    let names: Vec<String> = findings
        .as_sequence()
        .unwrap()
        .iter()
        .map(|g| text(&g["IndexName"]))
        .collect();
    assert_eq!(names.len(), 8);
    for index in ["byNamespace", "byAccount"] {
        assert!(names.iter().any(|n| n == index), "{names:?}");
    }
    // Findings expire (FindingRetentionDays) through the TTL the detector sets.
    assert_eq!(
        text(
            &raw["Resources"]["FindingsTable"]["Properties"]["TimeToLiveSpecification"]["AttributeName"]
        ),
        peregrine_store::attr::EXPIRES_AT
    );
    for (index, state, due) in [
        (
            peregrine_store::PUBLISH_INDEX,
            peregrine_store::attr::PUBLISH_STATE,
            peregrine_store::attr::PUBLISH_DUE_AT,
        ),
        (
            peregrine_store::SECURITY_HUB_INDEX,
            peregrine_store::attr::SECURITY_HUB_STATE,
            peregrine_store::attr::SECURITY_HUB_DUE_AT,
        ),
    ] {
        let outbox = findings
            .as_sequence()
            .unwrap()
            .iter()
            .find(|g| text(&g["IndexName"]) == index)
            .unwrap_or_else(|| panic!("the publisher's index {index} is in the template"));
        assert_eq!(
            keys_of(&outbox["KeySchema"]),
            [
                (state.to_owned(), "HASH".to_owned()),
                (due.to_owned(), "RANGE".to_owned())
            ],
            "{index}"
        );
    }

    // Queues: names, sizes, visibility, retention, redrive.
    let sqs = local.sqs();
    for id in resources_of(&raw, "AWS::SQS::Queue") {
        let props = &raw["Resources"][id.as_str()]["Properties"];
        let name = format!("{prefix}-{id}");
        let url = sqs.get_queue_url().queue_name(&name).send().await.unwrap();
        let url = url.queue_url().unwrap();
        assert_eq!(local.stack.queues[&id].url, url);
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .unwrap();
        let attrs = attrs.attributes().unwrap();
        for key in [
            "MaximumMessageSize",
            "MessageRetentionPeriod",
            "VisibilityTimeout",
        ] {
            if !props[key].is_null() {
                assert_eq!(
                    attrs[&QueueAttributeName::from(key)],
                    text(&props[key]),
                    "{id}.{key}"
                );
            }
        }
        let redrive = &props["RedrivePolicy"];
        match attrs.get(&QueueAttributeName::RedrivePolicy) {
            Some(policy) => {
                let policy: Value = serde_json::from_str(policy).unwrap();
                assert_eq!(
                    policy["maxReceiveCount"].to_string().trim_matches('"'),
                    text(&redrive["maxReceiveCount"])
                );
                // `!GetAtt EventsDeadLetterQueue.Arn`
                let Yaml::Tagged(dlq) = &redrive["deadLetterTargetArn"] else {
                    panic!("deadLetterTargetArn is a !GetAtt")
                };
                let dlq = dlq.value.as_str().unwrap();
                let dlq_id = dlq.trim_end_matches(".Arn");
                assert_eq!(
                    policy["deadLetterTargetArn"],
                    local.stack.queues[dlq_id].arn.as_str()
                );
            }
            None => assert!(redrive.is_null(), "{id} should have a redrive policy"),
        }
    }

    // The bus, named by the template's !Sub with the prefix as stack name, and the rule with
    // its pattern and target.
    let bus = format!("peregrine-findings-{prefix}");
    assert_eq!(local.stack.buses["FindingsBus"], bus);
    let events = aws_sdk_eventbridge::Client::new(&local.sdk);
    events.describe_event_bus().name(&bus).send().await.unwrap();
    let rule_name = format!("{prefix}-HighSeverityFindingsRule");
    let rule = events
        .describe_rule()
        .name(&rule_name)
        .event_bus_name(&bus)
        .send()
        .await
        .unwrap();
    let pattern: Value = serde_json::from_str(rule.event_pattern().unwrap()).unwrap();
    let want: Value = serde_json::to_value(
        &raw["Resources"]["HighSeverityFindingsRule"]["Properties"]["EventPattern"],
    )
    .unwrap();
    assert_eq!(pattern, want);
    assert_eq!(
        pattern["detail"]["severity"][0]["numeric"],
        serde_json::json!([">=", 7])
    );
    let targets = events
        .list_targets_by_rule()
        .rule(&rule_name)
        .event_bus_name(&bus)
        .send()
        .await
        .unwrap();
    assert_eq!(targets.targets().len(), 1);
    assert_eq!(
        targets.targets()[0].arn(),
        local.stack.queues["HighSeverityFindingsQueue"].arn
    );

    // The functions' environment: Globals plus their own variables, with local names.
    let detector = local.stack.function_env("DetectorFunction").unwrap();
    let expect = [
        ("FINDINGS_TABLE", format!("{prefix}-FindingsTable")),
        ("DEDUPE_TABLE", format!("{prefix}-BatchDedupeTable")),
        ("HEARTBEATS_TABLE", format!("{prefix}-HeartbeatsTable")),
        ("EVENT_BUS_NAME", bus.clone()),
        ("FINDING_PUBLISHING_FREQUENCY", "FIFTEEN_MINUTES".to_owned()),
        ("DEDUPE_TTL_SECONDS", "1209600".to_owned()),
        ("DETECTOR_ID", prefix.to_owned()),
        ("AGENT_SENDERS", String::new()),
        ("CLOCK_SKEW_FUTURE_SECONDS", "600".to_owned()),
        ("CLOCK_SKEW_PAST_SECONDS", "86400".to_owned()),
        ("FILTERS_TABLE", format!("{prefix}-FiltersTable")),
        ("FINDING_RETENTION_DAYS", "90".to_owned()),
        // SecurityHubExport is Disabled by default.
        ("SECURITY_HUB_PRODUCT_ARN", String::new()),
        ("RUST_LOG", "info".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
    ];
    for (k, v) in &expect {
        assert_eq!(detector.get(*k), Some(v), "{k}");
    }
    assert_eq!(detector.len(), expect.len(), "{detector:?}");
    let publisher = local.stack.function_env("PublisherFunction").unwrap();
    assert_eq!(
        publisher.get("FINDINGS_TABLE"),
        detector.get("FINDINGS_TABLE")
    );
    assert_eq!(publisher.get("EVENT_BUS_NAME"), Some(&bus));
    assert!(!publisher.contains_key("DEDUPE_TABLE"));
    assert_eq!(
        publisher
            .get("SECURITY_HUB_PRODUCT_ARN")
            .map(String::as_str),
        Some("")
    );
    let publisher_config: peregrine_publisher::Config =
        peregrine_local::function_config(&local.stack, peregrine_publisher::BINARY).unwrap();
    assert_eq!(
        publisher_config.security_hub_product_arn, None,
        "export off"
    );
    let f = &local.stack.functions["DetectorFunction"];
    let source = f.sqs.as_ref().unwrap();
    assert_eq!(
        (source.queue.as_str(), source.batch_size),
        ("EventsQueue", 10)
    );
    assert!(source.report_batch_item_failures);
    assert_eq!(f.timeout.as_secs(), 60);
    assert_eq!(
        local.stack.functions["PublisherFunction"]
            .schedule
            .map(|d| d.as_secs()),
        Some(60)
    );

    // The coverage sweeper: its schedule, its tables and the heartbeats it reads.
    let sweeper = &local.stack.functions["CoverageFunction"];
    assert_eq!(sweeper.binary.as_deref(), Some("peregrine-coverage"));
    assert_eq!(sweeper.schedule.map(|d| d.as_secs()), Some(300));
    assert!(sweeper.timeout.as_secs() < 300, "runs never overlap");
    let env = local.stack.function_env("CoverageFunction").unwrap();
    for (k, table) in [
        ("CONFIG_TABLE", "ConfigTable"),
        ("COVERAGE_TABLE", "CoverageTable"),
        ("HEARTBEATS_TABLE", "HeartbeatsTable"),
    ] {
        assert_eq!(env.get(k), Some(&format!("{prefix}-{table}")), "{k}");
    }
    assert_eq!(env.get("EVENT_BUS_NAME"), Some(&bus));
    assert_eq!(
        env.get("MEMBER_ROLE_NAME").map(String::as_str),
        Some("PeregrineCoverageRole")
    );
    assert_eq!(
        env.get("HEARTBEAT_STALE_AFTER_SECONDS").map(String::as_str),
        Some("180")
    );
    peregrine_local::function_config::<peregrine_coverage::Config>(
        &local.stack,
        "peregrine-coverage",
    )
    .expect("the template's environment is a valid sweeper configuration");

    // The exported environment names the template's outputs.
    let exports: std::collections::BTreeMap<String, String> =
        local.stack.exports().into_iter().collect();
    assert_eq!(
        exports["PEREGRINE_QUEUE_URL"],
        local.stack.queues["EventsQueue"].url
    );
    assert_eq!(
        exports["PEREGRINE_HIGH_SEVERITY_FINDINGS_QUEUE_URL"],
        local.stack.queues["HighSeverityFindingsQueue"].url
    );
    assert_eq!(
        exports["PEREGRINE_FINDINGS_TABLE_NAME"],
        format!("{prefix}-FindingsTable")
    );
    assert!(local.stack.skipped_outputs.contains_key("EncryptionKeyArn"));
}

#[tokio::test]
async fn provisioning_is_idempotent_and_detects_drift() {
    let local = local().await;
    // Again: everything exists and matches; nothing is recreated (the data stays).
    local.send("EventsQueue", "kept").await;
    let again = provision(&local.sdk, &local.template, &ProvisionOptions::default())
        .await
        .unwrap();
    assert_eq!(again.queues, local.stack.queues);
    let checked = provision(
        &local.sdk,
        &local.template,
        &ProvisionOptions {
            mode: Mode::Check,
            ..ProvisionOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(checked.tables, local.stack.tables);
    assert_eq!(
        local
            .drain("EventsQueue", std::time::Duration::from_secs(1))
            .await,
        ["kept"]
    );

    // Check mode on a stack that does not exist names what is missing.
    let err = provision(
        &local.sdk,
        &local.template,
        &ProvisionOptions {
            prefix: "absent".into(),
            mode: Mode::Check,
            ..ProvisionOptions::default()
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ProvisionError::Missing { .. }), "{err}");

    // A table that exists with another key schema is reported, not replaced.
    let dynamo = local.dynamo();
    dynamo
        .create_table()
        .table_name("drift-HeartbeatsTable")
        .attribute_definitions(
            aws_sdk_dynamodb::types::AttributeDefinition::builder()
                .attribute_name("clusterName")
                .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            aws_sdk_dynamodb::types::KeySchemaElement::builder()
                .attribute_name("clusterName")
                .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    let err = provision(
        &local.sdk,
        &local.template,
        &ProvisionOptions {
            prefix: "drift".into(),
            ..ProvisionOptions::default()
        },
    )
    .await
    .unwrap_err();
    match &err {
        ProvisionError::Drift {
            resource,
            differences,
        } => {
            assert_eq!(resource, "drift-HeartbeatsTable");
            assert!(
                differences.iter().any(|d| d.contains("key schema")),
                "{differences:?}"
            );
        }
        other => panic!("expected drift, got {other}"),
    }
}

#[tokio::test]
async fn parameters_override_template_defaults() {
    let local = local().await;
    let stack = provision(
        &local.sdk,
        &local.template,
        &ProvisionOptions {
            prefix: "hourly".into(),
            parameters: [
                (
                    "FindingPublishingFrequency".to_owned(),
                    "ONE_HOUR".to_owned(),
                ),
                ("DetectorBatchSize".to_owned(), "25".to_owned()),
            ]
            .into(),
            mode: Mode::Create,
        },
    )
    .await
    .unwrap();
    let env = stack.function_env("DetectorFunction").unwrap();
    assert_eq!(env["FINDING_PUBLISHING_FREQUENCY"], "ONE_HOUR");
    assert_eq!(env["FINDINGS_TABLE"], "hourly-FindingsTable");
    assert_eq!(
        stack.functions["DetectorFunction"]
            .sqs
            .as_ref()
            .unwrap()
            .batch_size,
        25
    );
    let config: peregrine_detector::Config =
        peregrine_local::function_config(&stack, peregrine_local::functions::DETECTOR_BINARY)
            .unwrap();
    assert_eq!(
        config.publishing_frequency,
        peregrine_store::PublishingFrequency::OneHour
    );
}

/// The statement with this `Sid`, looking through `!If` and other tags.
fn statement<'a>(v: &'a Yaml, sid: &str) -> Option<&'a Yaml> {
    match v {
        Yaml::Mapping(m) => {
            if v["Sid"].as_str() == Some(sid) {
                return Some(v);
            }
            m.values().find_map(|x| statement(x, sid))
        }
        Yaml::Sequence(items) => items.iter().find_map(|x| statement(x, sid)),
        Yaml::Tagged(t) => statement(&t.value, sid),
        _ => None,
    }
}

/// The condition of the `!If [condition, statement, ...]` whose statement has this `Sid`.
fn condition_of(v: &Yaml, sid: &str) -> Option<String> {
    match v {
        Yaml::Tagged(t) if t.tag == "!If" => {
            let items = t.value.as_sequence()?;
            if items.get(1).is_some_and(|s| s["Sid"].as_str() == Some(sid)) {
                return items.first().map(text);
            }
            items.iter().find_map(|x| condition_of(x, sid))
        }
        Yaml::Tagged(t) => condition_of(&t.value, sid),
        Yaml::Mapping(m) => m.values().find_map(|x| condition_of(x, sid)),
        Yaml::Sequence(items) => items.iter().find_map(|x| condition_of(x, sid)),
        _ => None,
    }
}

/// The text of a `!Ref` (or `!Join`…) tag: (tag, value as YAML).
/// The arguments of a `!If`.
fn tagged_if(v: &Yaml) -> Option<&Yaml> {
    match v {
        Yaml::Tagged(t) if t.tag == "!If" => Some(&t.value),
        _ => None,
    }
}

fn tagged(v: &Yaml) -> (String, String) {
    match v {
        Yaml::Tagged(t) => (
            t.tag.to_string(),
            serde_yaml_ng::to_string(&t.value)
                .unwrap()
                .trim()
                .to_owned(),
        ),
        other => panic!("not tagged: {other:?}"),
    }
}

#[test]
fn the_queue_admits_only_agent_roles_through_listed_endpoints() {
    let raw = raw();
    let params = &raw["Parameters"];
    assert_eq!(
        params["AllowedSourceVpce"]["Type"].as_str(),
        Some("CommaDelimitedList")
    );
    assert_eq!(
        params["AgentPrincipalArns"]["Type"].as_str(),
        Some("CommaDelimitedList")
    );
    assert_eq!(params["AgentSenders"]["Default"].as_str(), Some(""));
    assert_eq!(text(&params["ClockSkewFutureSeconds"]["Default"]), "600");
    assert_eq!(text(&params["ClockSkewPastSeconds"]["Default"]), "86400");
    // A list condition must join before comparing with "" (a list never equals a string).
    let cond = serde_yaml_ng::to_string(&raw["Conditions"]["HasAllowedSourceVpce"]).unwrap();
    assert!(
        cond.contains("!Join") && cond.contains("AllowedSourceVpce"),
        "{cond}"
    );

    let policy = &raw["Resources"]["EventsQueuePolicy"]["Properties"]["PolicyDocument"];
    let agents = statement(policy, "SendOnlyAsAnAgentRole").expect("the agent-role deny");
    assert_eq!(agents["Effect"].as_str(), Some("Deny"));
    assert_eq!(agents["Principal"].as_str(), Some("*"));
    assert_eq!(agents["Action"].as_str(), Some("sqs:SendMessage"));
    assert_eq!(
        tagged(&agents["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]),
        ("!Ref".to_owned(), "AgentPrincipalArns".to_owned())
    );
    let vpce = statement(policy, "SendOnlyThroughTheVpcEndpoint").expect("the endpoint deny");
    assert_eq!(vpce["Effect"].as_str(), Some("Deny"));
    assert_eq!(
        tagged(&vpce["Condition"]["StringNotEquals"]["aws:SourceVpce"]),
        ("!Ref".to_owned(), "AllowedSourceVpce".to_owned())
    );

    let env = &raw["Resources"]["DetectorFunction"]["Properties"]["Environment"]["Variables"];
    for (k, p) in [
        ("AGENT_SENDERS", "AgentSenders"),
        ("CLOCK_SKEW_FUTURE_SECONDS", "ClockSkewFutureSeconds"),
        ("CLOCK_SKEW_PAST_SECONDS", "ClockSkewPastSeconds"),
    ] {
        assert_eq!(tagged(&env[k]), ("!Ref".to_owned(), p.to_owned()), "{k}");
    }
}

#[tokio::test]
async fn sender_parameters_reach_the_detector_config() {
    let local = local_with(
        "bound",
        &[
            ("AgentSenders", "AROAEXAMPLEROLEID01=prod-eu"),
            ("ClockSkewFutureSeconds", "120"),
            (
                "AllowedSourceVpce",
                "vpce-0123456789abcdef0,vpce-0fedcba9876543210",
            ),
        ],
    )
    .await;
    let config: peregrine_detector::Config =
        peregrine_local::function_config(&local.stack, peregrine_local::functions::DETECTOR_BINARY)
            .unwrap();
    assert_eq!(
        config
            .agent_senders
            .as_ref()
            .and_then(|m| m.cluster_of("AROAEXAMPLEROLEID01:i-0abc"))
            .map(peregrine_detector::Bound::cluster_name),
        Some("prod-eu")
    );
    assert_eq!(config.skew.future.as_secs(), 120);
    assert_eq!(config.skew.past.as_secs(), 86_400);
}

#[test]
fn the_security_hub_export_is_a_parameter_wired_to_both_functions_and_one_grant() {
    let raw = raw();
    let p = &raw["Parameters"]["SecurityHubExport"];
    assert_eq!(p["Default"].as_str(), Some("Disabled"));
    assert_eq!(
        p["AllowedValues"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(text)
            .collect::<Vec<_>>(),
        ["Enabled", "Disabled"]
    );
    let cond = serde_yaml_ng::to_string(&raw["Conditions"]["ExportToSecurityHub"]).unwrap();
    assert!(
        cond.contains("!Equals") && cond.contains("SecurityHubExport") && cond.contains("Enabled"),
        "{cond}"
    );
    // The account's own default product: what the grant names and the functions are told.
    let product = "arn:${AWS::Partition}:securityhub:${AWS::Region}:${AWS::AccountId}:product/${AWS::AccountId}/default";
    for function in ["DetectorFunction", "PublisherFunction"] {
        let v = &raw["Resources"][function]["Properties"]["Environment"]["Variables"]["SECURITY_HUB_PRODUCT_ARN"];
        let text = serde_yaml_ng::to_string(v).unwrap();
        assert!(
            text.contains("!If") && text.contains("ExportToSecurityHub") && text.contains(product),
            "{function}: {text}"
        );
    }
    // Only the publisher may import, only under that product, only with the export on.
    let policy = &raw["Resources"]["PublisherFunctionRole"]["Properties"]["Policies"];
    let grant = statement(policy, "ImportFindingsIntoSecurityHub").expect("the import grant");
    assert_eq!(grant["Effect"].as_str(), Some("Allow"));
    assert_eq!(
        grant["Action"].as_str(),
        Some("securityhub:BatchImportFindings")
    );
    assert_eq!(
        tagged(&grant["Resource"]),
        ("!Sub".to_owned(), product.to_owned())
    );
    assert_eq!(
        condition_of(policy, "ImportFindingsIntoSecurityHub").as_deref(),
        Some("ExportToSecurityHub"),
        "the grant exists only with the export on"
    );
    for role in ["DetectorFunctionRole", "CoverageFunctionRole"] {
        let text =
            serde_yaml_ng::to_string(&raw["Resources"][role]["Properties"]["Policies"]).unwrap();
        assert!(
            !text.contains("securityhub:"),
            "{role} has no Security Hub grant"
        );
    }
}

/// The findings API: reachable only through IAM (its function URL's AuthType), and its role
/// reads findings and rewrites them (archive, feedback, samples) but deletes none; manages
/// FiltersTable and entity sets; reads coverage; reads and writes the organization's
/// configuration; touches no other table; and reads S3 objects only in the buckets of
/// EntitySetBuckets (none by default). The detector only reads FiltersTable.
#[tokio::test]
async fn the_api_is_iam_only_and_its_role_touches_only_its_tables() {
    let raw = raw();
    let api = &raw["Resources"]["ApiFunction"];
    assert_eq!(
        text(&api["Properties"]["FunctionUrlConfig"]["AuthType"]),
        "AWS_IAM"
    );
    let local = local().await;
    let spec = &local.stack.functions["ApiFunction"];
    assert_eq!(
        spec.url.as_ref().map(|u| u.auth),
        Some(peregrine_provision::HttpAuth::AwsIam)
    );
    assert_eq!(spec.binary.as_deref(), Some("peregrine-api"));
    peregrine_local::function_config::<peregrine_api::Config>(&local.stack, "peregrine-api")
        .expect("the template's environment is a valid API configuration");

    let policy =
        &raw["Resources"]["ApiFunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"];
    let Yaml::Sequence(statements) = &policy["Statement"] else {
        panic!("no statements: {policy:?}");
    };
    let mut dynamo = BTreeSet::new();
    let mut s3 = Vec::new();
    for s in statements {
        // The S3 statement is `!If [HasEntitySetBuckets, statement, NoValue]`.
        let s = match s.get("Fn::If").or_else(|| tagged_if(s)) {
            Some(Yaml::Sequence(branches)) => {
                assert_eq!(text(&branches[0]), "HasEntitySetBuckets", "{s:?}");
                s3.push(branches[1].clone());
                continue;
            }
            _ => s,
        };
        let actions: Vec<String> = match &s["Action"] {
            Yaml::Sequence(a) => a.iter().map(text).collect(),
            a => vec![text(a)],
        };
        let resources = format!("{:?}", s["Resource"]);
        assert!(
            !actions.iter().any(|a| a.starts_with("s3:")),
            "S3 only under HasEntitySetBuckets: {actions:?}"
        );
        for a in actions.iter().filter(|a| a.starts_with("dynamodb:")) {
            let table = [
                "FindingsTable",
                "FiltersTable",
                "EntitySetsTable",
                "ConfigTable",
                "CoverageTable",
            ]
            .into_iter()
            .find(|t| resources.contains(t))
            .unwrap_or_else(|| panic!("{a} on {resources}"));
            assert!(!resources.contains("*\""), "{a} on {resources}");
            dynamo.insert(format!("{table} {a}"));
        }
    }
    let want: BTreeSet<String> = [
        "FindingsTable dynamodb:BatchGetItem",
        "FindingsTable dynamodb:GetItem",
        "FindingsTable dynamodb:PutItem",
        "FindingsTable dynamodb:Query",
        "FindingsTable dynamodb:Scan",
        "FiltersTable dynamodb:ConditionCheckItem",
        "FiltersTable dynamodb:DeleteItem",
        "FiltersTable dynamodb:GetItem",
        "FiltersTable dynamodb:PutItem",
        "FiltersTable dynamodb:Scan",
        "EntitySetsTable dynamodb:GetItem",
        "EntitySetsTable dynamodb:Scan",
        "EntitySetsTable dynamodb:PutItem",
        "EntitySetsTable dynamodb:DeleteItem",
        "ConfigTable dynamodb:Scan",
        "ConfigTable dynamodb:PutItem",
        "CoverageTable dynamodb:Query",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(dynamo, want);
    let detector =
        &raw["Resources"]["DetectorFunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"];
    let read = statement(detector, "ReadFilters").unwrap();
    assert_eq!(text(&read["Action"]), "dynamodb:Scan");
    assert!(format!("{:?}", read["Resource"]).contains("FiltersTable"));
    let query = statement(policy, "QueryFindingIndexes").unwrap();
    let indexes = format!("{:?}", query["Resource"]);
    assert!(
        indexes.contains("/index/byType") && indexes.contains("/index/byCluster"),
        "{indexes}"
    );
    let coverage = format!(
        "{:?}",
        statement(policy, "ReadCoverage").unwrap()["Resource"]
    );
    assert!(coverage.contains("/index/byKind"), "{coverage}");
    // s3:GetObject (HeadObject) on the objects of the listed buckets, and nothing else.
    assert_eq!(s3.len(), 1, "one S3 statement");
    assert_eq!(text(&s3[0]["Action"]), "s3:GetObject");
    let resource = format!("{:?}", s3[0]["Resource"]);
    assert!(
        resource.contains("EntitySetBuckets") && resource.contains("/*"),
        "{resource}"
    );
    assert!(
        raw["Parameters"]["EntitySetBuckets"]["Default"]
            .as_str()
            .is_some_and(str::is_empty),
        "no bucket by default"
    );
}

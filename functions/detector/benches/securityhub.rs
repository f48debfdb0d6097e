//! The Security Hub export on the findings of a busy node (10,000 events, 12 compromised pods
//! attacking three times: 36 findings), against moto provisioned from template.yaml with
//! `SecurityHubExport=Enabled`.
//!
//! `cargo bench -p peregrine-detector --bench securityhub`
//!
//! Prints the ASFF mapping's cost per finding and the size of what it makes (typical and
//! hostile findings), then one publisher run importing the 36 findings into moto's Security
//! Hub, the same run over in-memory adapters (so moto's share is visible), and a run that
//! publishes the 36 updates and imports them again.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark: failing loudly is the point

use std::time::{Duration, Instant};

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::LambdaEvent;
use peregrine_detector::{AwsDeps, Config, Invocation, detect, finding_env, handle_at};
use peregrine_event::Timestamp;
use peregrine_finding::asff::to_asff;
use peregrine_finding::json_len;
use peregrine_provision::{ProvisionOptions, Template, function_config, provision};
use peregrine_publisher::{AwsPublisherDeps, PublisherDeps, publish_due};
use peregrine_store::memory::{MemoryBus, MemoryFindingStore, MemoryHub};
use peregrine_store::{HubPending, StoredFinding, add, stored_finding};
use peregrine_testkit::{lambda, moto::Moto, samples};

const QUEUE_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:peregrine-events";
const MINUTE: i64 = 60_000_000_000;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn sqs_event(id: &str, body: &str, arn: &str) -> LambdaEvent<SqsEvent> {
    LambdaEvent::new(
        lambda::sqs_event(QUEUE_ARN, &[(id, body)]),
        lambda::context(id, arn),
    )
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn stored(sdk: &aws_config::SdkConfig, table: &str) -> Vec<StoredFinding> {
    aws_sdk_dynamodb::Client::new(sdk)
        .scan()
        .table_name(table)
        .send()
        .await
        .unwrap()
        .items()
        .iter()
        .map(|i| stored_finding(i).unwrap())
        .collect()
}

async fn run() {
    let moto = Moto::start().expect("moto (scripts/setup installs it)");
    let sdk = moto.sdk_config().await;
    let template = Template::load(
        &std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml"),
    )
    .unwrap();
    let stack = provision(
        &sdk,
        &template,
        &ProvisionOptions {
            parameters: [("SecurityHubExport".to_owned(), "Enabled".to_owned())].into(),
            ..ProvisionOptions::default()
        },
    )
    .await
    .unwrap();
    aws_sdk_securityhub::Client::new(&sdk)
        .enable_security_hub()
        .send()
        .await
        .unwrap();
    let config: Config = function_config(&stack, peregrine_detector::BINARY).unwrap();
    let product = config.security_hub_product_arn.clone().unwrap();
    let deps = AwsDeps::from_sdk(&sdk, config.clone()).unwrap();
    let publisher = AwsPublisherDeps::from_sdk(
        &sdk,
        function_config(&stack, peregrine_publisher::BINARY).unwrap(),
    );
    let arn = stack.functions["DetectorFunction"].arn.clone();
    let table = stack.tables["FindingsTable"].clone();

    let t0 = Timestamp::now();
    let at = |m: i64| Timestamp::from_unix_nanos(t0.unix_nanos() + m * MINUTE);
    let body = |seq: u64| {
        samples::encode(
            "i-0bench",
            seq,
            &samples::busy_node(10_000, 12, 3, 42),
            Timestamp::now(),
        )
        .unwrap()
        .remove(0)
        .body
    };
    let r = handle_at(&deps, sqs_event("b-1", &body(100), &arn), at(0))
        .await
        .unwrap();
    assert!(r.batch_item_failures.is_empty());
    let findings = stored(&sdk, &table).await;
    println!(
        "input: {} findings of a busy node, published by the detector, due for import",
        findings.len()
    );

    // The mapping, pure: the best of 20 rounds over all findings.
    let mut best = Duration::MAX;
    let mut sizes = Vec::new();
    for _ in 0..20 {
        let start = Instant::now();
        let mapped: Vec<_> = findings
            .iter()
            .map(|f| to_asff(&f.finding, &product).unwrap())
            .collect();
        best = best.min(start.elapsed());
        sizes = mapped
            .iter()
            .map(|a| (json_len(a), a.product_fields.len()))
            .collect();
    }
    sizes.sort();
    let finding_sizes: Vec<usize> = findings.iter().map(|f| json_len(&f.finding)).collect();
    println!(
        "mapping: {:.1} µs per finding (best of 20 rounds of {})",
        best.as_secs_f64() * 1e6 / findings.len() as f64,
        findings.len()
    );
    println!(
        "ASFF JSON: {}–{} bytes (median {}), {}–{} product fields; the findings themselves {}–{} bytes",
        sizes[0].0,
        sizes[sizes.len() - 1].0,
        sizes[sizes.len() / 2].0,
        sizes.iter().map(|s| s.1).min().unwrap(),
        sizes.iter().map(|s| s.1).max().unwrap(),
        finding_sizes.iter().min().unwrap(),
        finding_sizes.iter().max().unwrap(),
    );

    // The most hostile finding a workload can ask for.
    let inv = Invocation::from_function_arn(&arn, None).unwrap();
    let hostile_events = vec![samples::hostile_release_agent_write().unwrap()];
    let msg = samples::encode("i-0bench", 1, &hostile_events, Timestamp::now())
        .unwrap()
        .remove(0)
        .body;
    let Ok(peregrine_wire::Message::Batch { header, events }) = peregrine_wire::decode(&msg) else {
        panic!("a batch")
    };
    let env = finding_env(&inv, &header, &config.detector_id);
    let (_, mut hostile) = detect(&deps.engine, &events, &env, Timestamp::now());
    let hostile = hostile.remove(0);
    let start = Instant::now();
    let a = to_asff(&hostile, &product).unwrap();
    let d = start.elapsed();
    println!(
        "hostile finding: {} bytes as a finding, {} bytes in ASFF, {} product fields, mapped in {:.0} µs",
        json_len(&hostile),
        json_len(&a),
        a.product_fields.len(),
        d.as_secs_f64() * 1e6
    );

    // One publisher run: nothing to publish, 36 imports.
    println!();
    let start = Instant::now();
    let s = publish_due(&publisher, at(1), None).await.unwrap();
    let moto_run = start.elapsed();
    let sh = s.security_hub.unwrap();
    assert_eq!(sh.imported, findings.len());
    println!(
        "publisher run, {} imports (moto): {:.1} ms",
        sh.imported,
        ms(moto_run)
    );

    // The same run over in-memory adapters.
    let store = MemoryFindingStore::new().with_security_hub_export(true);
    for f in &findings {
        store.insert(StoredFinding {
            outbox: peregrine_store::Outbox {
                security_hub: Some(HubPending {
                    due: at(0),
                    attempts: 0,
                }),
                ..f.outbox
            },
            ..f.clone()
        });
    }
    let mem = PublisherDeps {
        store,
        bus: MemoryBus::new(),
        hub: Some(MemoryHub::new()),
        config: publisher.config.clone(),
        retry: publisher.retry,
    };
    let start = Instant::now();
    let s = publish_due(&mem, at(1), None).await.unwrap();
    let mem_run = start.elapsed();
    assert_eq!(s.security_hub.unwrap().imported, findings.len());
    println!(
        "publisher run, {} imports (in-memory): {:.1} ms; moto's share {:.1} ms",
        findings.len(),
        ms(mem_run),
        ms(moto_run.saturating_sub(mem_run))
    );

    // The same attacks again: 36 updates, published at the frequency and imported again.
    let r = handle_at(&deps, sqs_event("b-2", &body(101), &arn), at(2))
        .await
        .unwrap();
    assert!(r.batch_item_failures.is_empty());
    let start = Instant::now();
    let s = publish_due(&publisher, add(at(1), Duration::from_secs(15 * 60)), None)
        .await
        .unwrap();
    let d = start.elapsed();
    let sh = s.security_hub.unwrap();
    println!(
        "publisher run, {} updates published and {} imported again (moto): {:.1} ms",
        s.published,
        sh.imported,
        ms(d)
    );
}

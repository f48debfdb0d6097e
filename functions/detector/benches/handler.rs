//! The detector handler on one SQS message of 10,000 realistic events (a busy node with a few
//! compromised pods: 36 distinct findings), against moto provisioned from template.yaml.
//!
//! `cargo bench -p peregrine-detector --bench handler`
//!
//! Prints wall time per phase (decode, detection, storage and publishing), the same storage
//! phase over in-memory adapters (so moto's share is visible), moto's per-call latency, and
//! memory: peak bytes allocated per phase (a counting global allocator) and the process's
//! VmHWM.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark: failing loudly is the point

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::LambdaEvent;
use peregrine_detector::{
    AwsDeps, Config, Deps, Invocation, detect, finding_env, handle_at, store_findings,
};
use peregrine_event::Timestamp;
use peregrine_provision::{ProvisionOptions, Template, function_config, provision};
use peregrine_store::memory::{MemoryBus, MemoryFindingStore, MemoryHeartbeats};
use peregrine_testkit::{lambda, moto::Moto, samples};
use peregrine_wire::Message;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded to the system allocator with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f`, returning its result, the wall time and the peak heap above the starting level.
fn measure<T>(f: impl FnOnce() -> T) -> (T, Duration, usize) {
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let start = Instant::now();
    let out = f();
    let elapsed = start.elapsed();
    (
        out,
        elapsed,
        PEAK.load(Ordering::Relaxed).saturating_sub(base),
    )
}

async fn measure_async<T>(f: impl std::future::Future<Output = T>) -> (T, Duration, usize) {
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let start = Instant::now();
    let out = f.await;
    let elapsed = start.elapsed();
    (
        out,
        elapsed,
        PEAK.load(Ordering::Relaxed).saturating_sub(base),
    )
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn mib(b: usize) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn row(name: &str, d: Duration, peak: usize, note: &str) {
    println!(
        "{name:<44} {:>9.1} ms {:>8.2} MiB  {note}",
        ms(d),
        mib(peak)
    );
}

/// The events queue, as the event-source mapping names it in each record.
const QUEUE_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:peregrine-events";

fn sqs_event(id: &str, body: &str, arn: &str) -> LambdaEvent<SqsEvent> {
    LambdaEvent::new(
        lambda::sqs_event(QUEUE_ARN, &[(id, body)]),
        lambda::context(id, arn),
    )
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument (as `cargo test --benches` passes)
    // is ignored, and the run is the same.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let hwm_start = vm_hwm_kib();
    let moto = Moto::start().expect("moto (scripts/setup installs it)");
    let sdk = moto.sdk_config().await;
    let template = Template::load(
        &std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml"),
    )
    .unwrap();
    let stack = provision(&sdk, &template, &ProvisionOptions::default())
        .await
        .unwrap();
    let config: Config = function_config(&stack, peregrine_detector::BINARY).unwrap();
    let deps = AwsDeps::from_sdk(&sdk, config.clone()).unwrap();
    let arn = stack.functions["DetectorFunction"].arn.clone();
    let inv = Invocation::from_function_arn(&arn, None).unwrap();

    let events = samples::busy_node(10_000, 12, 3, 42);
    let messages = samples::encode("i-0bench", 100, &events, Timestamp::now()).unwrap();
    assert_eq!(messages.len(), 1, "one SQS message");
    let body = messages[0].body.clone();
    drop(events);
    println!(
        "input: 1 SQS message, {} events, {} bytes on the wire ({:.1} B/event)",
        messages[0].event_count,
        body.len(),
        body.len() as f64 / messages[0].event_count as f64
    );
    println!("{:<44} {:>12} {:>12}", "phase", "wall", "peak heap");

    // Decode and detection are pure: the best of a few runs.
    let mut best_decode = (Duration::MAX, 0);
    let mut decoded = None;
    for _ in 0..5 {
        let (m, d, peak) = measure(|| peregrine_wire::decode(&body).unwrap());
        if d < best_decode.0 {
            best_decode = (d, peak);
        }
        decoded = Some(m);
    }
    let Some(Message::Batch { header, events }) = decoded else {
        panic!("a batch")
    };
    row(
        "decode (base64, zstd, protobuf, events)",
        best_decode.0,
        best_decode.1,
        "best of 5",
    );

    let env = finding_env(&inv, &header, &config.detector_id);
    let now = Timestamp::now();
    let mut best_detect = (Duration::MAX, 0);
    let mut found = (0, Vec::new());
    for _ in 0..5 {
        let (f, d, peak) = measure(|| detect(&deps.engine, &events, &env, now));
        if d < best_detect.0 {
            best_detect = (d, peak);
        }
        found = f;
    }
    let (matches, findings) = found;
    let distinct = peregrine_detector::group_findings(findings.clone())
        .unwrap()
        .len();
    row(
        "detection (built-in catalog)",
        best_detect.0,
        best_detect.1,
        &format!("best of 5; {matches} matches, {distinct} findings"),
    );

    // Storage and publishing against moto: first all new (read, transaction, PutEvents, mark
    // published), then the same findings again from another batch (read, merge, transaction).
    let (report, d, peak) =
        measure_async(store_findings(&deps, "i-0bench#100", findings.clone(), now)).await;
    let report = report.unwrap();
    assert_eq!(report.new_findings, distinct);
    assert_eq!(report.publish.published, distinct);
    row(
        "store + publish, new findings (moto)",
        d,
        peak,
        &format!(
            "{} chunk(s), {} published",
            report.chunks_applied, report.publish.published
        ),
    );
    let moto_new = d;
    let (report, d, peak) =
        measure_async(store_findings(&deps, "i-0bench#101", findings.clone(), now)).await;
    let report = report.unwrap();
    assert_eq!(report.updated_findings, distinct);
    row(
        "store, updates (moto)",
        d,
        peak,
        "read, merge, conditional write",
    );
    let moto_update = d;

    // The same over in-memory adapters: the logic's own cost.
    let mem = Deps::new(
        MemoryFindingStore::new(),
        MemoryBus::new(),
        MemoryHeartbeats::new(),
        config.clone(),
    )
    .unwrap();
    let (_, d_mem_new, peak) =
        measure_async(store_findings(&mem, "k#1", findings.clone(), now)).await;
    row(
        "store + publish, new findings (in-memory)",
        d_mem_new,
        peak,
        "",
    );
    let (_, d_mem_upd, peak) =
        measure_async(store_findings(&mem, "k#2", findings.clone(), now)).await;
    row("store, updates (in-memory)", d_mem_upd, peak, "");

    // End to end through the handler: a fresh batch, then its redelivery.
    let fresh = samples::encode(
        "i-0bench",
        102,
        &samples::busy_node(10_000, 12, 3, 42),
        Timestamp::now(),
    )
    .unwrap()
    .remove(0)
    .body;
    for (name, note) in [
        (
            "handle(): decode + detect + store (moto)",
            "updates of existing findings",
        ),
        (
            "handle(): the same message redelivered",
            "chunk skipped by its dedupe marker",
        ),
    ] {
        let (r, d, peak) = measure_async(handle_at(
            &deps,
            sqs_event("b-1", &fresh, &arn),
            Timestamp::now(),
        ))
        .await;
        assert!(r.unwrap().batch_item_failures.is_empty());
        row(name, d, peak, note);
    }

    // moto's latency per call, for scale.
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let table = stack.tables["FindingsTable"].clone();
    let start = Instant::now();
    let calls = 20;
    for _ in 0..calls {
        dynamo
            .get_item()
            .table_name(&table)
            .key(
                "id",
                aws_sdk_dynamodb::types::AttributeValue::S("none".into()),
            )
            .send()
            .await
            .unwrap();
    }
    let per_call = start.elapsed() / calls;
    println!();
    println!("moto: {:.1} ms per GetItem (mean of {calls})", ms(per_call));
    println!(
        "moto's share of storage: new {:.1} of {:.1} ms, updates {:.1} of {:.1} ms",
        ms(moto_new.saturating_sub(d_mem_new)),
        ms(moto_new),
        ms(moto_update.saturating_sub(d_mem_upd)),
        ms(moto_update)
    );
    println!(
        "VmHWM: {} KiB at start, {} KiB at the end (this process; moto runs in its own)",
        hwm_start,
        vm_hwm_kib()
    );
}

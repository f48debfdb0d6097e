//! Peregrine's detector Lambda, as a library: `main.rs` only builds clients and hands [`handle`]
//! to `lambda_runtime::run`; tests, the benchmark and the local runner (`tools/local`) call the
//! same functions in-process.
//!
//! [`handle`]: an SQS batch of agent messages → findings aggregated exactly once per agent
//! batch in DynamoDB, new findings published on EventBridge at once, per-message failures
//! reported as `batchItemFailures` (through `peregrine-lambda`'s partial-batch helper).
//!
//! The store, the bus and the heartbeat store are `peregrine-store`'s traits, with DynamoDB and
//! EventBridge implementations and in-memory ones for tests. See `docs/pipeline.md`.

mod aggregate;
mod config;
mod detector;
mod sender;

pub use crate::aggregate::{
    MAX_CHUNK_BYTES, MAX_FINDINGS_PER_CHUNK, chunk, group_findings, next_publish_due, plan_write,
};
/// The Lambda binary (`BuildProperties.Binary` in template.yaml).
pub const BINARY: &str = "peregrine-detector";

pub use crate::config::{
    Config, ConfigError, DEFAULT_DEADLINE_MARGIN, DEFAULT_DEDUPE_TTL, DEFAULT_FINDING_RETENTION,
    HEARTBEAT_TTL,
};
pub use crate::detector::{
    AwsDeps, Clamped, Deps, DetectorError, Invocation, MessageError, MessageReport, StoreReport,
    batch_key, clamp_times, detect, detect_flagged, finding_env, handle, handle_at, heartbeat_key,
    heartbeat_record, load_archive_rules, process_message, process_message_with, store_findings,
    store_findings_with, wire_error_kind,
};
pub use crate::sender::{
    Bound, DEFAULT_SKEW, Rejection, SenderMap, SenderMapError, SkewWindow, authorize,
};
pub use peregrine_aws::backoff::RetryPolicy;

//! Peregrine's detector and publisher Lambdas, as a library: the functions' `main.rs` files only
//! build clients and hand [`handle`] / [`handle_schedule`] to `lambda_runtime::run`; tests, the
//! benchmark and the local runner (`tools/local`) call the same functions in-process.
//!
//! - [`handle`]: an SQS batch of agent messages → findings aggregated exactly once per agent
//!   batch in DynamoDB, new findings published on EventBridge at once, per-message failures
//!   reported as `batchItemFailures`.
//! - [`handle_schedule`]: the outbox; publishes finding updates whose time has come
//!   (`FINDING_PUBLISHING_FREQUENCY`) and anything an earlier publish failed on.
//!
//! Adapters sit behind small traits ([`FindingStore`], [`FindingBus`], [`HeartbeatStore`]) with
//! DynamoDB/EventBridge implementations and in-memory ones ([`memory`]). See `docs/pipeline.md`.

mod aggregate;
mod batch;
mod bus;
mod config;
mod detector;
mod dynamo;
pub mod memory;
mod model;
mod publish;
mod store;
mod telemetry;

pub use crate::aggregate::{
    MAX_CHUNK_BYTES, MAX_FINDINGS_PER_CHUNK, chunk, group_findings, next_publish_due, plan_write,
};
pub use crate::batch::partial_batch;
pub use crate::bus::EventBridgeBus;
pub use crate::config::{Config, ConfigError, HEARTBEAT_TTL, PublishingFrequency};
pub use crate::detector::{
    AwsDeps, Deps, DetectorError, Invocation, MessageError, MessageReport, StoreReport, batch_key,
    detect, finding_env, handle, handle_at, heartbeat_record, process_message, store_findings,
    wire_error_kind,
};
pub use crate::dynamo::{
    DynamoFindingStore, DynamoHeartbeatStore, PUBLISH_INDEX, attr, finding_item, heartbeat_item,
    stored_finding,
};
pub use crate::model::{
    ChunkOutcome, ChunkWrite, FindingWrite, Outbox, PUBLISH_PENDING, StoredFinding, day, iso,
    parse_iso,
};
pub use crate::publish::{
    AwsPublisherDeps, MAX_CALL_BYTES, MAX_ENTRIES_PER_CALL, PublishCounts, PublishItem,
    PublishSummary, PublisherDeps, PublisherError, call_ranges, handle_schedule, publish_due,
    send_and_mark,
};
pub use crate::store::{
    BusError, Cursor, DuePage, EntryResult, FindingBus, FindingStore, HeartbeatRecord,
    HeartbeatStore, StoreError,
};
pub use crate::telemetry::init_logging;
pub use peregrine_aws::backoff::RetryPolicy;
